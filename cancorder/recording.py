"""Recording frames into files with python-can's log writers, chosen by the file's extension.

`.log` (can-utils), `.asc` (Vector), `.blf` (Vector binary), `.csv`, `.trc` (PEAK), `.txt`
(python-can's printer), `.db` (SQLite), `.mf4` (ASAM MDF, needs asammdf), each optionally
`.gz`-compressed where python-can allows it. Whoever opens a Recording must close it on every
way out: only ``close`` (python-can's ``stop``) writes what a format keeps for the end (BLF's
last container and header, MF4's whole file).
"""
import os
import sys

from .errors import CancorderError, UsageError
from .formats import FLAG_FD, frame_to_message

#: formats whose python-can writer cannot store CAN FD frames (TRCWriter logs a warning per
#: frame and drops it): FD frames are not passed to them, and counted
NO_FD = {".trc": "python-can's TRC writer has no CAN FD support"}
#: formats that store FD frames without their FD/BRS/ESI flags (python-can's CSV columns)
FD_FLAGS_LOST = {".csv": "python-can's CSV format has no FD, BRS or ESI columns"}


def writer_suffixes():
    from can.io.logger import MESSAGE_WRITERS

    return sorted(MESSAGE_WRITERS)


def check_output_path(path):
    """Fail early, with the fix, for a file python-can cannot write (before connecting)."""
    suffix = _suffix(os.path.basename(path))
    known = writer_suffixes()
    if suffix not in known:
        raise UsageError(f"-o {path}: cannot tell the format from the extension "
                         f"'{suffix or '(none)'}': use one of {', '.join(known)}")
    if suffix == ".mf4":
        try:
            import asammdf  # noqa: F401
        except ImportError:
            # the standalone executable leaves asammdf out: pip cannot add it there
            where = ("which the standalone executable leaves out: use a Python install"
                     if getattr(sys, "frozen", False) else "pip install asammdf")
            raise UsageError(f"-o {path}: writing MF4 needs asammdf ({where}), "
                             "or record to .blf/.asc/.log instead") from None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"-o {path}: the folder {directory} does not exist")


class Recording:
    """Every ``-o FILE``: each frame goes to every writer; ``close`` finishes every file."""

    def __init__(self, paths, channel="can0"):
        self.paths = list(paths)
        self.channel = channel
        self.frames = 0
        self._writers = []
        self._fd = {}  # path -> FD frames dropped or stored without their flags
        self.opened = False  # every file was created

    def __bool__(self):
        return bool(self.paths)

    def open(self):
        if not self.paths:
            return
        import can

        for path in self.paths:
            check_output_path(path)
            try:
                writer = can.Logger(path)
            except OSError as exc:
                self.close()
                raise UsageError(f"-o {path}: cannot create the file: "
                                 f"{exc.strerror or exc}") from exc
            except (ValueError, NotImplementedError) as exc:
                self.close()
                raise UsageError(f"-o {path}: {exc}") from exc
            self._writers.append((path, writer))
        self.opened = True

    def write(self, frames):
        if not self._writers:
            return
        channel = self.channel
        every = [writer.on_message_received for _, writer in self._writers]
        fd_capable = [writer.on_message_received for path, writer in self._writers
                      if _suffix(path) not in NO_FD]
        fd_paths = [path for path, _ in self._writers if _suffix(path) in NO_FD or
                    _suffix(path) in FD_FLAGS_LOST]
        try:
            for frame in frames:
                message = frame_to_message(frame, channel)
                if frame[2] & FLAG_FD:
                    for path in fd_paths:
                        self._fd[path] = self._fd.get(path, 0) + 1
                    for receive in fd_capable:
                        receive(message)
                else:
                    for receive in every:
                        receive(message)
        except OSError as exc:
            raise CancorderError(f"writing the recording failed: {exc.strerror or exc} "
                                 "(disk full?)") from exc
        self.frames += len(frames)

    def notes(self):
        """What a format could not keep, one line per file (for the end-of-run summary)."""
        notes = []
        for path, count in self._fd.items():
            suffix = _suffix(path)
            if suffix in NO_FD:
                notes.append(f"{path}: {count:,} CAN FD frames not recorded ({NO_FD[suffix]}; "
                             "use .blf, .asc or .log)")
            else:
                notes.append(f"{path}: {count:,} CAN FD frames recorded without their FD/BRS/"
                             f"ESI flags ({FD_FLAGS_LOST[suffix]}; use .blf, .asc or .log)")
        return notes

    def close(self):
        """Flush and close every file (safe to call twice); raises if one could not be finished."""
        writers, self._writers = self._writers, []
        failed = []
        for path, writer in writers:
            try:
                writer.stop()
            except Exception as exc:  # go on: the other files must be closed too
                failed.append(f"{path}: {exc}")
        if failed:
            raise CancorderError("could not finish the recording: " + "; ".join(failed))


def _suffix(path):
    name = path.lower()
    return os.path.splitext(name[:-3] if name.endswith(".gz") else name)[1]
