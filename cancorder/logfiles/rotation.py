"""Rotation and retention: ``RotatingLog`` writes the record batches of one recording to the
files its template names, for ``--record`` (every serving command, through ``sinks.Recorder``),
``dump -o`` and ``mock-uds --output`` (through ``recording.Recording``).

- A file being written is ``NAME.part`` (naming.py); it is renamed to NAME when it is complete.
  Rotation by size and/or on wall-clock boundaries; retention by count and/or total size
  deletes the oldest closed files.
- Retention deletes only files this recording created (this template for this bus, earlier
  runs included), as listed in its index (index.py); ``.part`` files a crash left are finished
  at the start (cut back to their last whole frame) and then count like any other.
- Text is flushed to disk at least once a second. A write that fails (disk full) never raises
  into the caller: the file is cut back to its last whole frame and finished, one line says
  what happened, frames are counted as not recorded, and recording resumes in a new file once
  there is room again. A file being written that another program deletes or replaces is
  noticed within a second, said, and recording goes on in a new one.
"""
import collections
import dataclasses
import fcntl
import logging
import os
import time

from .._fast import logfile
from ..errors import UsageError
from ..report import plural
from . import marks
from .index import RecordingIndex
from .naming import PART, PathTemplate, next_boundary
from .writers import finish_leftover, open_file

LOG = logging.getLogger("cancorder.record")

FLUSH_INTERVAL = 1.0  # text reaches the disk at least this often
SIZE_CHECK_INTERVAL = 0.1  # python-can writers: how often their file size is looked at
SLICE_BYTES = 64 << 10  # ...and after how many record bytes at most (see RotatingLog)
RETRY_INTERVAL = 5.0  # after a failure, how often a new file is tried
MIN_FREE = 256 << 10  # ...and the free space it needs before trying (on a small file system,
# an eighth of it)
LOW_FREE = 16 << 20  # --upload: below this, retention deletes files not yet uploaded


# ---- the writer of one template ----

@dataclasses.dataclass
class RecordOptions:
    """One recording: ``path`` (a template), rotation and retention; ``flag`` names the option
    in messages (--record, -o, --output)."""

    path: str
    rotate_size: int = None
    rotate_time: float = None
    keep_files: int = None
    keep_size: int = None
    flag: str = "--record"
    # --upload: retention keeps a file the store has not confirmed (logfiles.marks) unless the
    # disk would fill otherwise
    keep_unsent: bool = False


def check_record_options(options):
    """Validate before anything is opened: the format, the fields, the folder (created)."""
    template = PathTemplate(options.path, flag=options.flag)
    folder = os.path.dirname(os.path.abspath(template.render(time.time(), 1)))
    if "%" not in os.path.dirname(options.path) and "{" not in os.path.dirname(options.path):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UsageError(f"{options.flag} {options.path}: {folder} is a file, not a "
                             "folder")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{options.flag} {options.path}: cannot create the folder "
                             f"{folder}: {exc.strerror or exc}") from None
        if not os.access(folder, os.W_OK):
            raise UsageError(f"{options.flag} {options.path}: the folder {folder} is not "
                             "writable")
    if "%" not in options.path and "{" not in options.path:
        _try_to_write(options)
    return template


def _try_to_write(options):
    """A fixed name is tried for real before anything starts (a client connects, a bus is
    served): a folder of that name, a file system that refuses it, no permission."""
    if os.path.isdir(options.path):
        raise UsageError(f"{options.flag} {options.path}: that is a folder; give a file name")
    probe = options.path + PART
    if os.path.exists(probe):
        return
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise UsageError(f"{options.flag} {options.path}: cannot write the file here: "
                         f"{exc.strerror or exc}") from None
    os.remove(probe)


class RotatingLog:
    """Writes record batches to the files of one template, with rotation and retention.

    ``write(records)`` and ``tick()`` (call it at least once a second: flushes, time rotation,
    retries after a failure) take the current time from ``clock`` unless given ``now``.
    Nothing here raises OSError: a failed write is logged once, counted in ``lost``, and
    writing resumes in a new file when possible. Not thread-safe: one thread writes.
    """

    def __init__(self, options, fields=None, log=None, clock=time.time, log_channel="can0"):
        self.options = options
        self.template = PathTemplate(options.path, fields, options.flag)
        self.format = self.template.format
        self.channel = log_channel  # what the files say (candump's channel column)
        self.log = log if log is not None else LOG
        self.clock = clock
        self.index = RecordingIndex(self.template)
        self.recorded = 0  # frames in the finished files of this run (what they hold)
        self.lost = 0  # frames that could not be written
        self.errors = 0  # times writing failed (a full disk, a vanished folder...)
        self.closed_bytes = 0  # bytes of the finished files of this run
        self.files = []  # the closed files of this run, in order
        self.deleted = []  # files retention removed
        self.deleted_unsent = 0  # ...of which the store had not confirmed (--upload)
        self.current = None  # final name of the file being written
        self.fd_frames = collections.Counter()  # path -> CAN FD frames a format could not keep
        self.unholdable = {}  # path -> (frames the format cannot store, why)
        self._file = None
        self._watch = None  # a descriptor of the .part being written: locked, and its identity
        self._n = 0
        self._boundary = None
        self._last_flush = 0.0
        self._last_size_check = 0.0
        self._failure = None  # why writing stopped (str), None while it works
        self._retry_at = 0.0
        self._lost_in_failure = 0
        self._retention_done = False
        self._leftovers_done = False
        # --rotate-size: batches are written in slices of at most this many record bytes, and
        # a python-can writer's size is looked at after as many (or SIZE_CHECK_INTERVAL)
        rotate_size = options.rotate_size or 0
        self._slice_bytes = max(1 << 10, min(SLICE_BYTES, rotate_size // 8))
        self._unchecked = 0  # record bytes written since the size was looked at

    # ---- the interface ----

    @property
    def frames(self):
        """Frames recorded: in the finished files, and taken by the file being written. Read
        by the metrics page from another thread: only plain attribute reads."""
        file = self._file
        return self.recorded + (file.frames + file.unflushed if file is not None else 0)

    def open(self, now=None):
        """Open the first file now (otherwise the first write does)."""
        now = self.clock() if now is None else now
        if self._file is None and self._failure is None:
            self._open(now)

    def write(self, records, now=None, count=None, channel=None):
        """``channel``: these frames' channel as the file writer takes it (None: the file's
        own, ``log_channel``)."""
        if not records:
            return
        now = self.clock() if now is None else now
        size_limit = self.options.rotate_size
        if size_limit and len(records) > self._slice_bytes:
            # a large batch (a client reading a fast logger) goes in slices, so that a file
            # is rotated near --rotate-size rather than after the whole batch
            start = 0
            while start < len(records):
                end = logfile.whole_prefix(records, start, self._slice_bytes)
                self._write(records[start:end], now, None, channel)
                start = end
            return
        self._write(records, now, count, channel)

    def _write(self, records, now, count, channel=None):
        if count is None:
            count = logfile.count_records(records)
        if self._boundary is not None and now >= self._boundary and self._file is not None:
            self._rotate(now)
        if self._file is None:
            if self._failure is not None and now < self._retry_at:
                self._lose(count)
                return
            if not self._open(now):
                self._lose(count)
                return
        try:
            self._file.write(records, count, channel)  # on OSError: in file.unflushed
        except OSError as exc:
            self._fail(exc)
            return
        self._unchecked += len(records)
        self._after_write(now)

    def tick(self, now=None):
        now = self.clock() if now is None else now
        if self._file is not None:
            if self._boundary is not None and now >= self._boundary:
                self._rotate(now)
            elif now - self._last_flush >= FLUSH_INTERVAL:
                self._flush(now)
        elif self._failure is not None and now >= self._retry_at:
            self._open(now)

    def next_deadline(self, now):
        """When ``tick`` has something to do next (for a thread that waits)."""
        if self._file is None:
            return self._retry_at if self._failure is not None else now + FLUSH_INTERVAL
        due = self._last_flush + FLUSH_INTERVAL
        return min(due, self._boundary) if self._boundary is not None else due

    def close(self):
        """Finish the file being written (renamed from .part) and apply retention."""
        if self._file is not None and self._still_ours(self.clock(), reopen=False):
            self._close_current()
            self._apply_retention()

    @property
    def failing(self):
        return self._failure is not None

    @property
    def bytes_written(self):
        """Bytes on disk in this run's files (the one open: what is flushed). Read by the
        metrics page from another thread: only plain attribute reads."""
        file = self._file
        return self.closed_bytes + (file.good if file is not None else 0)

    @property
    def file_count(self):
        """Files written in this run, the one open included."""
        return len(self.files) + (1 if self._file is not None else 0)

    # ---- files ----

    def _open(self, now):
        """True when a new file is open; on failure, logs (once per failure) and schedules a
        retry."""
        if self._failure is not None and not self._has_room(now):
            self._retry_at = now + RETRY_INTERVAL
            return False
        if not self._leftovers_done:
            self._leftovers_done = True
            self._finish_leftovers()
        self._n += 1
        final = self.template.render(now, self._n)
        try:
            folder = os.path.dirname(final)
            if folder:
                os.makedirs(folder, exist_ok=True)
            final = self._free_name(final)
            self.index.add(final)  # listed first: every file of the recording is listed
            self._file = open_file(final + PART, self.format, self.channel)
        except OSError as exc:
            self._n -= 1
            self._note_failure(f"cannot create {final}: {exc.strerror or exc}", now)
            return False
        try:
            self._watch = _lock(final + PART)
        except OSError:
            self._watch = None  # cannot tell it from a newcomer: it is written all the same
        except (ValueError, NotImplementedError) as exc:  # a writer refusing its options
            raise UsageError(f"{self.options.flag} {self.options.path}: {exc}") from exc
        self.current = final
        self._last_flush = self._last_size_check = now
        rotate_time = self.options.rotate_time
        self._boundary = next_boundary(now, rotate_time) if rotate_time else None
        if self._failure is not None:
            lost = plural(self._lost_in_failure, "frame")
            self.log.info(f"recording resumed in {final} ({lost} could not be recorded meanwhile)")
            self._failure = None
            self._lost_in_failure = 0
        if not self._retention_done:  # files of earlier runs count too
            self._retention_done = True
            self._apply_retention()
        return True

    def _free_name(self, final):
        """``final``, or ``NAME-2.ext``... when it (or its .part) exists: never overwrite."""
        if not os.path.exists(final) and not os.path.exists(final + PART):
            return final
        ext = self.format.extension
        stem = final[:-len(ext)] if final.lower().endswith(ext) else final
        number = 2
        while True:
            candidate = f"{stem}-{number}{final[len(stem):]}"
            if not os.path.exists(candidate) and not os.path.exists(candidate + PART):
                return candidate
            number += 1

    def _after_write(self, now):
        size_limit = self.options.rotate_size
        if size_limit:
            if (self.format.fast or now - self._last_size_check >= SIZE_CHECK_INTERVAL
                    or self._unchecked >= self._slice_bytes):
                self._last_size_check = now
                self._unchecked = 0
                if self._file.size >= size_limit:
                    self._rotate(now)
                    return
        if now - self._last_flush >= FLUSH_INTERVAL:
            self._flush(now)

    def _flush(self, now):
        """At least once a second: the file is still ours (then flushed)."""
        self._last_flush = now
        if not self._still_ours(now):
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def _rotate(self, now):
        if self._still_ours(now) and self._close_current():
            self._open(now)
            self._apply_retention()  # with the new file counted: it is one of the N

    def _close_current(self):
        """Finish and rename the current file; False when finishing it failed."""
        file, final = self._file, self.current
        self._file = None
        try:
            file.close()
        except OSError as exc:
            self._file = file
            self._fail(exc)
            return False
        self._finish_name(file, final)
        return True

    def _finish_name(self, file, final):
        fd = getattr(file, "fd_frames", 0)
        if fd:
            self.fd_frames[final] += fd
        if getattr(file, "unholdable", 0):
            self.unholdable[final] = (file.unholdable, file.unholdable_why)
        watch, self._watch = self._watch, None
        try:
            if not file.frames:
                _remove(final + PART)  # no frame made it to the disk: leave no empty file
                return
            self._keep(final)
            self.recorded += file.frames
        finally:
            if watch is not None:
                os.close(watch)  # after the rename: no other run takes it for a leftover

    def _keep(self, final):
        try:
            os.rename(final + PART, final)
        except OSError as exc:
            self.log.warning(f"could not rename {final + PART} to {final}: "
                             f"{exc.strerror or exc}")
            final += PART
        try:
            self.closed_bytes += os.path.getsize(final)
        except OSError:
            pass
        self.files.append(final)

    def _fail(self, exc):
        """A write, flush or close failed: keep the whole frames that are on disk, count the
        rest (the file took them: ``unflushed``), say so once."""
        file, final = self._file, self.current
        self._file = None
        file.abort()
        self._lose(file.unflushed)
        self._finish_name(file, final)
        self._note_failure(f"cannot write {final}: {exc.strerror or exc}", self.clock())

    def _still_ours(self, now, reopen=True):
        """False (said, counted, and a new file opened) when the file being written was
        deleted, moved or replaced by another program: frames must not go on into it."""
        part = self.current + PART
        if self._watch is None:
            return True
        try:
            mine = os.fstat(self._watch)
            there = os.stat(part)
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                return True
            what = "replaced by another file"
        except FileNotFoundError:
            what = "deleted or moved away"
        except OSError:
            return True  # cannot tell: writing goes on and says what fails
        file, self._file = self._file, None
        lost = file.frames + file.unflushed
        file.abort(keep=False)
        os.close(self._watch)
        self._watch = None
        self.lost += lost
        self.errors += 1
        try:
            self.index.forget([self.current])  # whatever is there now is not ours
        except OSError:
            pass
        self.log.warning(f"recording: {part} was {what} while being written: the "
                         f"{plural(lost, 'frame')} in it are lost; recording goes on in a new "
                         "file")
        if reopen:
            self._open(now)
        return False

    def _note_failure(self, why, now):
        self._retry_at = now + RETRY_INTERVAL
        if self._failure is None:
            self.errors += 1
            self._failure = why
            self.log.warning(f"recording stopped: {why}; serving goes on, frames not recorded "
                             f"are counted, and recording resumes in a new file when there is "
                             f"room (tried every {RETRY_INTERVAL:g} s)")

    def _lose(self, count):
        self.lost += count
        self._lost_in_failure += count

    def _has_room(self, now):
        folder = os.path.dirname(os.path.abspath(self.template.render(now, self._n + 1)))
        while folder and not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        try:
            stat = os.statvfs(folder or ".")
        except OSError:
            return True  # let the open say what is wrong
        # a file system smaller than a few MIN_FREE (a small tmpfs) resumes with less
        needed = min(MIN_FREE, stat.f_blocks * stat.f_frsize // 8)
        return stat.f_bavail * stat.f_frsize >= needed

    def _finish_leftovers(self):
        """The ``.part`` files earlier runs of this recording left (a crash): each cut back to
        its last whole frame, given its final name, and said; no other run writes them (a
        writer holds a lock on its .part)."""
        try:
            self.index.forget([])  # names whose files are gone (deleted by hand) go
        except OSError:
            pass
        for final in self.index.paths():
            part = final + PART
            if os.path.exists(final) or not os.path.exists(part):
                continue
            try:
                lock = _lock(part)
            except OSError:
                continue  # being written by a run still alive
            try:
                frames = finish_leftover(part, final, self.format)
            except Exception as exc:  # no room, or a writer refusing what its reader took
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                self.log.warning(f"could not finish {part}, left by an earlier run: {why}; "
                                 "it stays as it is")
                continue
            finally:
                os.close(lock)
            if frames:
                self.log.warning(f"finished {part}, left by an earlier run that did not end "
                                 f"cleanly: cut back to its last whole frame and renamed to "
                                 f"{final} ({plural(frames, 'frame')})")
            else:
                self.log.warning(f"removed {part}, left by an earlier run that did not end "
                                 "cleanly: it held no whole frame")

    # ---- retention ----

    def closed_files(self):
        """The closed files of this recording (every run), oldest first: (path, size). Only
        files its index lists: nothing else is ever deleted."""
        found = []
        for path in self.index.paths():
            try:
                found.append((path, os.stat(path).st_size))
            except OSError:
                continue
        return found

    def _apply_retention(self):
        keep_files, keep_size = self.options.keep_files, self.options.keep_size
        if not keep_files and not keep_size:
            return
        files = self.closed_files()
        # at the end of a run, its last recording stays, whatever its size
        last = os.path.abspath(self.files[-1]) if self._file is None and self.files else None
        current = self._file.size if self._file is not None else 0
        total = sum(size for _, size in files) + current
        count = len(files) + (1 if self._file is not None else 0)
        removed = []
        for path, size in files:
            over_count = keep_files and count > keep_files
            over_size = keep_size and total > keep_size
            if not over_count and not over_size or os.path.abspath(path) == last:
                break
            unsent = self.options.keep_unsent and not marks.is_uploaded(path)
            if unsent and not self._disk_filling():
                continue  # it waits for the uploader; newer files that are sent may go
            try:
                marks.remove_with_mark(path)
            except OSError as exc:
                self.log.warning(f"retention: could not delete {path}: {exc.strerror or exc}")
                continue
            count -= 1
            total -= size
            self.deleted.append(path)
            removed.append(path)
            why = (f"--keep-files {keep_files}" if over_count else
                   f"--keep-size {_size_text(keep_size)}")
            if unsent:
                self.deleted_unsent += 1
                self.log.warning(f"deleted the oldest recording {path} before it was uploaded "
                                 f"({why}: the disk would fill otherwise)")
            else:
                self.log.info(f"deleted the oldest recording {path} ({why})")
        if not removed:
            return
        try:  # only these: a name of this run may be taken again by a newer file
            self.index.forget(removed)
        except OSError as exc:  # the names stay listed: deleted files are skipped anyway
            self.log.warning(f"retention: could not update {self.index.path}: "
                             f"{exc.strerror or exc}")

    def _disk_filling(self):
        """Little room left where the files are: less than two files' worth (16M at least),
        or an eighth of a small file system."""
        try:
            stat = os.statvfs(self.index.folder)
        except OSError:
            return False
        needed = min(max(2 * (self.options.rotate_size or 0), LOW_FREE),
                     stat.f_blocks * stat.f_frsize // 8)
        return stat.f_bavail * stat.f_frsize < needed

    # ---- reporting ----

    def notes(self):
        """What a format could not keep (CAN FD frames), one line per file."""
        notes = []
        spec = self.format.spec
        for path, count in self.fd_frames.items():
            if spec.fd_lost == "frames":
                notes.append(f"{path}: {count:,} CAN FD frames not recorded ({spec.fd_why}; "
                             "use .blf, .asc or .log)")
            else:
                notes.append(f"{path}: {count:,} CAN FD frames recorded without their FD/BRS/"
                             f"ESI flags ({spec.fd_why}; use .blf, .asc or .log)")
        for path, (count, why) in self.unholdable.items():
            noun = "frame" if count == 1 else "frames"
            notes.append(f"{path}: {count:,} {noun} not recorded: their timestamps are beyond "
                         f"what {self.format.suffix} can store ({why}; .log holds any)")
        return notes

    def describe(self, finished_only=False):
        """Where the frames are: the file being written, or the last one kept (never a file
        retention deleted, nor a name no file was written to; ``finished_only``: never the
        file being written)."""
        files = len(self.files) if finished_only else self.file_count
        if self._file is not None and not finished_only:
            where = self.current
        elif self.files:
            where = self.files[-1]
        else:
            return f"no file ({self.options.path}: nothing could be written)"
        if files > 1:
            where = f"{files} files, the last {where}"
        return where


def _size_text(size):
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _lock(path):
    """A descriptor of ``path`` holding an exclusive lock on it (OSError when another holds
    one): the writer's claim on its .part, and what tells the file from a newcomer."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
