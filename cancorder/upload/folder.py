"""``cancorder upload DIR URL``: a folder of recordings as the uploader's queue."""
import os

from ..discovery import short_hostname
from ..errors import UsageError
from ..logfiles.formats import log_format
from ..logfiles.marks import is_mark
from ..logfiles.naming import PART
from ..report import plural
from .target import target_from_args
from .uploader import Uploader


def recordings_in(folder):
    """The log files below ``folder`` (any format cancorder records), oldest first; never a
    ``.part`` nor a hidden file (the marks, a recording's index)."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith(".") or name.endswith(PART) or is_mark(name):
                continue
            try:
                log_format(name, "upload")
            except UsageError:
                continue  # not a log file
            path = os.path.join(root, name)
            try:
                found.append((os.path.getmtime(path), path))
            except OSError:
                continue
    return [path for _, path in sorted(found)]


def upload_folder(args, log):
    folder = args.folder
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: no such folder")
    target = target_from_args(args, args.url, flag="upload")
    uploader = Uploader(target, lambda: recordings_in(folder),
                        lambda path: os.path.relpath(path, folder),
                        {"system": short_hostname()}, log, delete=args.upload_delete,
                        limit=args.upload_limit)
    try:
        uploader.run_until_done()
    finally:
        uploader.close(0)
    log.info(f"{uploader.summary()}; {plural(uploader.sent_bytes, 'byte')} sent")
    return 0
