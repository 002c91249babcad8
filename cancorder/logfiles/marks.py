"""Which closed recordings the object store has confirmed: a small sidecar beside each file,
``.NAME.uploaded``, written atomically (a temporary file, fsync, rename) only after the store
confirmed the object whole.

Why a sidecar and not a list: the folder stays the queue. A file without its sidecar is still to
send, whoever made it (a crash, an earlier run, ``dump -o``); a sidecar holds the file's size and
the object it became, so a file that changed since is sent again; deleting a file takes its
sidecar with it (retention, ``--upload-delete``), and nothing else can disagree with the folder.
A crash between the store's confirmation and the sidecar sends the file once more, to the same
key: the object is overwritten, never duplicated (at-least-once).
"""
import json
import os

MARK_SUFFIX = ".uploaded"


def mark_path(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{MARK_SUFFIX}")


def is_mark(name):
    return name.startswith(".") and name.endswith(MARK_SUFFIX)


def read_mark(path):
    """What the sidecar says of ``path`` (a dict), or None when there is none or it does not
    describe the file as it is now (another size)."""
    try:
        with open(mark_path(path), encoding="utf-8") as file:
            mark = json.load(file)
        size = os.path.getsize(path)
    except (OSError, ValueError):
        return None
    if not isinstance(mark, dict) or mark.get("size") != size:
        return None
    return mark


def is_uploaded(path):
    return read_mark(path) is not None


def write_mark(path, **facts):
    """Record that ``path`` is confirmed by the store (``facts``: size, key, etag...), whole or
    not at all."""
    target = mark_path(path)
    temporary = target + ".new"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(facts, file, sort_keys=True)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, target)
    try:  # the rename itself on disk: a crash after this keeps the mark
        fd = os.open(os.path.dirname(target) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def remove_with_mark(path):
    """Delete a recording and its sidecar (OSError from the file's removal is raised)."""
    os.remove(path)
    try:
        os.remove(mark_path(path))
    except OSError:
        pass
