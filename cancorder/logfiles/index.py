"""The index of one recording: the files that this template, for this bus, created (every run
of it), listed in a small text file in the template's fixed folder, one name a line, oldest
first. Retention deletes only files listed here, so a user's file or another bus's recording
that happens to match the template is never touched; and a run finds here the ``.part`` files
a crash of an earlier run left behind.

A name is listed *before* its file is created, so every file of the recording is listed (a
crash between the two leaves a name without a file, which is skipped and forgotten).
"""
import hashlib
import os

from .naming import PART

INDEX_PREFIX = ".cancorder-recording-"


class RecordingIndex:
    """``add(path)`` before creating a file, ``paths()`` (oldest first, absolute),
    ``forget(paths)`` after deleting some. Names are kept relative to the folder, so that the
    folder can be moved or mounted elsewhere."""

    def __init__(self, template):
        self.folder = template.fixed_folder()  # relative stays relative: names as given
        digest = hashlib.sha1(template.key().encode("utf-8", "surrogateescape")).hexdigest()
        self.path = os.path.join(self.folder, f"{INDEX_PREFIX}{digest[:16]}")
        fields = " ".join(f"{k}={v}" for k, v in sorted(template.fields.items()) if v)
        self._header = (f"# cancorder: the files recorded by {template.flag} {template.pattern}"
                        f"{' (' + fields + ')' if fields else ''}, oldest first; retention "
                        "deletes only files listed here\n")

    def add(self, path):
        """List ``path`` (raises OSError when the index cannot be written: then the file is
        not created either)."""
        name = os.path.relpath(os.path.abspath(path), self.folder)
        if "\n" in name:
            raise OSError(f"a file name with a line break cannot be listed in {self.path}")
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            line = (name + "\n").encode("utf-8", "surrogateescape")
            if os.fstat(fd).st_size == 0:
                line = self._header.encode("utf-8", "surrogateescape") + line
            if os.write(fd, line) != len(line):  # O_APPEND: one write, whole or refused
                raise OSError(f"{self.path}: the disk took only part of a line")
        finally:
            os.close(fd)

    def paths(self):
        """Every file listed, oldest first (they may no longer exist)."""
        try:
            with open(self.path, "rb") as file:
                lines = file.read().decode("utf-8", "surrogateescape").splitlines()
        except OSError:  # none yet (or unreadable): nothing is known to be ours
            return []
        seen, paths = set(), []
        for line in lines:
            if not line or line.startswith("#") or line in seen:
                continue
            seen.add(line)
            paths.append(os.path.normpath(os.path.join(self.folder, line)))
        return paths

    def forget(self, gone):
        """Drop ``gone`` and every listed name whose file (and .part) no longer exists."""
        listed = self.paths()
        if not listed:
            return
        gone = {os.path.abspath(p) for p in gone}
        keep = [p for p in listed if os.path.abspath(p) not in gone
                and (os.path.exists(p) or os.path.exists(p + PART))]
        if keep == listed:
            return
        text = self._header + "".join(os.path.relpath(p, self.folder) + "\n" for p in keep)
        temporary = self.path + ".new"
        try:
            with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as file:
                file.write(text)
            os.replace(temporary, self.path)  # whole, or the old one as it was
        except OSError:
            try:
                os.remove(temporary)
            except OSError:
                pass
            raise
