"""Recording wire records into log files: one implementation for ``--record`` (every serving
command), ``dump -o`` and ``mock-uds --output``.

- The format comes from the extension: every python-can writer (``.asc .blf .csv .db .log .mf4
  .trc .txt``; ``.mf4`` needs asammdf) and gzip-compressed text (``.log.gz .asc.gz .csv.gz
  .trc.gz .txt.gz``). candump ``.log``/``.log.gz`` is written from the records by compiled code
  (``_fast.logfile``), with no python-can Message per frame; the others through python-can.
- The path is a template: strftime fields and ``{channel} {interface} {port} {n}``.
- A file being written is ``NAME.part``; it is renamed to NAME when it is complete, so an
  uploader never takes half a file. Rotation by size and/or on wall-clock boundaries;
  retention by count and/or total size deletes the oldest closed files.
- Text is flushed to disk at least once a second. A write that fails (disk full) never raises
  into the caller: the file is cut back to its last flush and finished, one line says what
  happened, frames are counted as not recorded, and recording resumes in a new file once there
  is space again.

``RotatingLog`` does the writing (synchronous, one thread at a time); ``sinks.Recorder`` is the
server's record sink around it (own thread behind a bounded queue: it never slows the bus);
``Recording`` serves the clients (``dump -o``, ``mock-uds --output``), which write in line.
"""
import collections
import dataclasses
import glob
import io
import logging
import os
import struct
import re
import string
import sys
import threading
import time
import zlib

from .._fast import logfile, wire
from ..errors import CancorderError, UsageError
from ..report import plural

LOG = logging.getLogger("cancorder.record")

PART = ".part"
#: formats that write calendar dates (python-can's datetime): nothing after the year 9999
DATED = (".asc", ".blf", ".trc")
LAST_DATED_US = 253402300800 * 1000000  # 10000-01-01 00:00:00 UTC
FLUSH_INTERVAL = 1.0  # text reaches the disk at least this often
SIZE_CHECK_INTERVAL = 0.1  # python-can writers: how often their file size is looked at
SLICE_BYTES = 64 << 10  # ...and after how many record bytes at most (see RotatingLog)
FLUSH_BYTES = 256 << 10  # candump: also write out once this much is pending
RETRY_INTERVAL = 5.0  # after a failure, how often a new file is tried
MIN_FREE = 256 << 10  # ...and the free space it needs before trying
GZIP_LEVEL = 6
ZIP_SYNC_BYTES = 64 << 10  # text through zlib between two sync points (what it may hold back)

TEMPLATE_FIELDS = ("channel", "interface", "port", "n")
#: formats whose python-can writer cannot store CAN FD frames (TRCWriter logs a warning per
#: frame and drops it): FD frames are not passed to them, and counted
NO_FD = {".trc": "python-can's TRC writer has no CAN FD support"}
#: formats that store FD frames without their FD/BRS/ESI flags (python-can's CSV columns)
FD_FLAGS_LOST = {".csv": "python-can's CSV format has no FD, BRS or ESI columns",
                 ".db": "python-can's SQLite table has no FD, BRS or ESI columns"}
#: python-can writes these only to a file of their own, never through gzip
NO_GZIP = (".blf", ".db", ".mf4")


# ---- what a path means ----

class LogFormat:
    """The format an extension names: ``suffix`` (".log"), ``gz``, ``fast`` (the compiled
    candump writer), ``extension`` (".log.gz": what file names end with)."""

    def __init__(self, suffix, gz):
        self.suffix = suffix
        self.gz = gz
        self.fast = suffix == ".log"
        self.extension = suffix + (".gz" if gz else "")


def writer_suffixes():
    from can.io.logger import MESSAGE_WRITERS

    return sorted(MESSAGE_WRITERS)


def log_format(path, flag="--record"):
    """The LogFormat of ``path``, or a UsageError naming ``flag`` and the choices."""
    name = os.path.basename(path).lower()
    gz = name.endswith(".gz")
    suffix = os.path.splitext(name[:-3] if gz else name)[1]
    known = writer_suffixes()
    choices = (", ".join(known) + ", or " + ", ".join(
        s + ".gz" for s in known if s not in NO_GZIP))
    if suffix not in known:
        raise UsageError(f"{flag} {path}: cannot tell the format from the extension "
                         f"'{suffix + ('.gz' if gz else '') or '(none)'}': use one of {choices}")
    if gz and len(os.path.basename(path).split(".")) != 3:
        raise UsageError(f"{flag} {path}: python-can reads the format of a .gz file from a name "
                         f"with exactly two extensions (like x{suffix}.gz): drop the other dots")
    if gz and suffix in NO_GZIP:
        raise UsageError(f"{flag} {path}: python-can cannot write {suffix} through gzip "
                         f"(leave out .gz; {suffix} is compressed or binary already)")
    if suffix == ".mf4":
        try:
            import asammdf  # noqa: F401
        except ImportError:
            # the standalone executable leaves asammdf out: pip cannot add it there
            where = ("which the standalone executable leaves out: use a Python install"
                     if getattr(sys, "frozen", False) else "pip install asammdf")
            raise UsageError(f"{flag} {path}: writing MF4 needs asammdf ({where}), "
                             "or record to .blf/.asc/.log instead") from None
    return LogFormat(suffix, gz)


def _safe(value):
    """A field value as part of a file name: no separators, nothing a shell trips over."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "_", str(value)).strip("_")  # dots would confuse
    # python-can's readers about the extension
    return text or "_"


class PathTemplate:
    """``logs/%Y%m%d/%H%M%S-{channel}.log.gz``: strftime fields (local time) and
    ``{channel} {interface} {port} {n}`` (``{n}``: the file's number in this run, from 1;
    format specs such as ``{n:04d}`` work)."""

    def __init__(self, pattern, fields=None, flag="--record"):
        self.pattern = pattern
        self.flag = flag
        self.format = log_format(pattern, flag)
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(pattern)
                     if name is not None]
        except ValueError as exc:
            raise UsageError(f"{flag} {pattern}: {exc} (a literal brace is written {{{{ or }}}})"
                             ) from None
        unknown = sorted({name for name in names if name not in TEMPLATE_FIELDS})
        if unknown:
            raise UsageError(f"{flag} {pattern}: unknown field {{{unknown[0]}}}: the fields are "
                             + ", ".join("{%s}" % f for f in TEMPLATE_FIELDS)
                             + " and strftime's (%Y %m %d %H %M %S ...)")
        self.fields = {key: "" for key in TEMPLATE_FIELDS if key != "n"}
        self.fields.update({k: _safe(v) for k, v in (fields or {}).items() if v is not None})
        try:
            self.render(time.time(), 1)
        except (ValueError, IndexError, KeyError) as exc:
            raise UsageError(f"{flag} {pattern}: {exc}") from None

    def render(self, now, n):
        text = time.strftime(self.pattern, time.localtime(now))
        return text.format(n=n, **self.fields)

    def matcher(self):
        """(glob, regex) for the closed files this template names, of any run: what
        retention counts. A ``-N`` before the extension (a name that was taken) matches too."""
        ext = self.format.extension
        pattern = self.pattern
        if pattern.lower().endswith(ext):
            pattern = pattern[:-len(ext)]
        globs, regex = [], []
        for literal, name, spec, _ in string.Formatter().parse(pattern):
            for piece in re.split(r"(%.)", literal):
                if re.fullmatch(r"%.", piece):
                    if piece == "%%":
                        globs.append("%")
                        regex.append("%")
                    else:
                        globs.append("*")
                        regex.append(r"[^/]+")
                elif piece:
                    globs.append(glob.escape(piece))
                    regex.append(re.escape(piece))
            if name is None:
                continue
            if name == "n":
                globs.append("*")
                regex.append(r"\d+")
            else:
                value = format(self.fields[name], spec or "")
                globs.append(glob.escape(value))
                regex.append(re.escape(value))
        return ("".join(globs) + "*" + glob.escape(ext),
                re.compile("".join(regex) + r"(?:-\d+)?" + re.escape(ext), re.IGNORECASE))


def _next_boundary(now, period):
    """The next multiple of ``period`` seconds in local time after ``now`` (hourly files start
    at :00, daily ones at local midnight)."""
    offset = time.localtime(now).tm_gmtoff
    return ((now + offset) // period + 1) * period - offset


# ---- one open file ----

class _CandumpFile:
    """candump lines from the records, by the compiled encoder; gzip with zlib directly.

    Everything reaches the disk in whole flushes (``flush``: at least once a second, or when
    FLUSH_BYTES are pending), each ending at a gzip sync point: the file on disk is always
    whole lines (plain) or a readable gzip prefix, and ``abort`` after a failed write cuts the
    file back to the last whole flush and, for gzip, finishes the stream there (a copy of the
    compressor as it was at that point knows the CRC and length).
    """

    def __init__(self, path, channel, gz):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._encoder = logfile.CandumpEncoder(channel or "can0")
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gz else None
        self._z_at_good = self._z.copy() if gz else None
        self._pending = []
        self._pending_bytes = 0
        self._z_in = 0
        self.good = 0  # bytes on disk, all of them whole
        self.frames = 0  # frames on disk
        self.unflushed = 0  # frames taken but not on disk yet

    def write(self, records, count):
        text = self._encoder.encode(records)
        if self._z is not None:
            self._z_in += len(text)
            text = self._z.compress(text)
            if self._z_in >= ZIP_SYNC_BYTES:  # make zlib give out what it holds: the size
                self._z_in = 0                # seen by --rotate-size stays true
                text += self._z.flush(zlib.Z_SYNC_FLUSH)
        if text:
            self._pending.append(text)
            self._pending_bytes += len(text)
        self.unflushed += count
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()
        return count  # candump lines hold every frame

    def flush(self, finish=False):
        if self._z is not None:
            tail = self._z.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
            self._pending.append(tail)
        data = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.good += len(data)
        self.frames += self.unflushed
        self.unflushed = 0
        if self._z is not None and not finish:
            self._z_at_good = self._z.copy()

    @property
    def size(self):
        return self.good + self._pending_bytes

    def close(self):
        self.flush(finish=True)  # on failure the fd stays open: abort() cuts and closes
        os.close(self._fd)

    def abort(self):
        """After a failed write: keep what is whole on disk; frames lost are ``unflushed``."""
        self._pending = []
        try:
            os.ftruncate(self._fd, self.good)
            if self._z_at_good is not None and self.good:
                os.lseek(self._fd, self.good, os.SEEK_SET)
                os.write(self._fd, self._z_at_good.flush(zlib.Z_FINISH))
        except OSError:
            pass  # still no room for the gzip trailer: the prefix reads up to the cut
        try:
            os.close(self._fd)
        except OSError:
            pass


class _PythonCanFile:
    """Every other format, through python-can's writer for the extension (opened on the
    ``.part`` path directly, so the writer never sees the real name)."""

    def __init__(self, path, fmt, channel):
        from can.io.logger import MESSAGE_WRITERS

        self.suffix = fmt.suffix
        self._channel = channel
        self._raw = None
        cls = MESSAGE_WRITERS[fmt.suffix]
        if fmt.gz:
            import gzip

            self._raw = open(path, "xb")
            zipped = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=GZIP_LEVEL,
                                   filename=os.path.basename(path)[:-len(PART + ".gz")])
            self.writer = cls(file=io.TextIOWrapper(zipped, encoding="utf-8"))
        else:
            open(path, "xb").close()  # the name is ours (O_EXCL), then the writer opens it
            self.writer = cls(file=path)
        self._path = path
        self._decoder = wire.StreamDecoder()
        self.frames = 0
        self.unflushed = 0
        self.fd_frames = 0  # CAN FD frames dropped (NO_FD) or stored without their flags
        self.unholdable = 0  # frames the format cannot store (a timestamp after the year 9999)
        self.unholdable_why = ""
        self.good = 0

    def write(self, records, count):
        from ..formats import frame_to_message

        receive = self.writer.on_message_received
        channel = self._channel
        no_fd = self.suffix in NO_FD
        counts_fd = no_fd or self.suffix in FD_FLAGS_LOST
        dated = self.suffix in DATED
        written = 0
        for frame in self._decoder.feed(records):
            if frame[2] & wire.FLAG_FD and counts_fd:
                self.fd_frames += 1
                if no_fd:
                    continue
            if dated and frame[0] >= LAST_DATED_US:
                self.unholdable += 1
                self.unholdable_why = "after the year 9999"
                continue
            try:
                receive(frame_to_message(frame, channel))
            except (ValueError, OverflowError, struct.error) as exc:
                # a valid record this format cannot hold: counted and skipped, the rest goes on
                self.unholdable += 1
                self.unholdable_why = str(exc)
                continue
            written += 1
        self.unflushed += written
        return written

    def flush(self):
        file = getattr(self.writer, "file", None)
        if file is not None and hasattr(file, "flush"):
            file.flush()
        if self._raw is not None:
            self._raw.flush()
        self.frames += self.unflushed
        self.unflushed = 0
        self.good = self.size

    @property
    def size(self):
        if self._raw is not None:
            return self._raw.tell()
        try:
            # BLF: what is on disk plus its container still being filled (uncompressed: a
            # file is rotated a little early rather than late)
            return self.writer.file_size()
        except (AttributeError, NotImplementedError, OSError, ValueError):
            pass
        try:
            return os.path.getsize(self._path)
        except OSError:
            return 0

    def close(self):
        try:
            self.writer.stop()
            if self._raw is not None:
                self._raw.close()
        except BaseException:
            self.abort()
            raise
        self.frames += self.unflushed
        self.unflushed = 0

    def abort(self):
        for close in (self.writer.stop, getattr(self._raw, "close", None)):
            if close is None:
                continue
            try:
                close()
            except Exception:
                pass


def _open_file(path, fmt, channel):
    if fmt.fast:
        return _CandumpFile(path, channel, fmt.gz)
    return _PythonCanFile(path, fmt, channel)


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
        self.frames = 0  # frames in files (on disk, or handed to a writer still open)
        self.lost = 0  # frames that could not be written
        self.errors = 0  # times writing failed (a full disk, a vanished folder...)
        self.closed_bytes = 0  # bytes of the finished files of this run
        self.files = []  # the closed files of this run, in order
        self.deleted = []  # files retention removed
        self.current = None  # final name of the file being written
        self.fd_frames = collections.Counter()  # path -> CAN FD frames a format could not keep
        self.unholdable = {}  # path -> (frames the format cannot store, why)
        self._file = None
        self._n = 0
        self._boundary = None
        self._last_flush = 0.0
        self._last_size_check = 0.0
        self._failure = None  # why writing stopped (str), None while it works
        self._retry_at = 0.0
        self._lost_in_failure = 0
        self._retention_done = False
        # --rotate-size: batches are written in slices of at most this many record bytes, and
        # a python-can writer's size is looked at after as many (or SIZE_CHECK_INTERVAL)
        rotate_size = options.rotate_size or 0
        self._slice_bytes = max(1 << 10, min(SLICE_BYTES, rotate_size // 8))
        self._unchecked = 0  # record bytes written since the size was looked at

    # ---- the interface ----

    def open(self, now=None):
        """Open the first file now (otherwise the first write does)."""
        now = self.clock() if now is None else now
        if self._file is None and self._failure is None:
            self._open(now)

    def write(self, records, now=None, count=None):
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
                self._write(records[start:end], now, None)
                start = end
            return
        self._write(records, now, count)

    def _write(self, records, now, count):
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
            written = self._file.write(records, count)
        except OSError as exc:
            self._fail(exc, count)
            return
        self.frames += written  # what the file holds (a format may leave frames out)
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
        if self._file is not None:
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
        self._n += 1
        final = self.template.render(now, self._n)
        try:
            folder = os.path.dirname(final)
            if folder:
                os.makedirs(folder, exist_ok=True)
            final = self._free_name(final)
            self._file = _open_file(final + PART, self.format, self.channel)
        except OSError as exc:
            self._n -= 1
            self._note_failure(f"cannot create {final}: {exc.strerror or exc}", now)
            return False
        except (ValueError, NotImplementedError) as exc:  # a writer refusing its options
            raise UsageError(f"{self.options.flag} {self.options.path}: {exc}") from exc
        self.current = final
        self._last_flush = self._last_size_check = now
        rotate_time = self.options.rotate_time
        self._boundary = _next_boundary(now, rotate_time) if rotate_time else None
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
        self._last_flush = now
        try:
            self._file.flush()
        except OSError as exc:
            self._fail(exc, 0)

    def _rotate(self, now):
        if self._close_current():
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
            self._fail(exc, 0)
            return False
        self._finish_name(file, final)
        return True

    def _finish_name(self, file, final):
        fd = getattr(file, "fd_frames", 0)
        if fd:
            self.fd_frames[final] += fd
        if getattr(file, "unholdable", 0):
            self.unholdable[final] = (file.unholdable, file.unholdable_why)
        if not file.frames:
            _remove(final + PART)  # no frame made it to the disk: leave no empty file
            return
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

    def _fail(self, exc, count):
        """A write, flush or close failed: keep what is whole, count the rest, say so once."""
        file, final = self._file, self.current
        self._file = None
        lost = count + file.unflushed
        file.abort()
        self.frames -= file.unflushed
        file.unflushed = 0
        self._finish_name(file, final)
        self._lose(lost)
        self._note_failure(f"cannot write {final}: {exc.strerror or exc}", self.clock())

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
        return stat.f_bavail * stat.f_frsize >= MIN_FREE

    # ---- retention ----

    def closed_files(self):
        """The closed files of this template (every run), oldest first: (path, size)."""
        pattern, regex = self.template.matcher()
        found = []
        for path in glob.glob(pattern):
            if not regex.fullmatch(path):
                continue
            try:
                stat = os.stat(path)
            except OSError:
                continue
            found.append((stat.st_mtime, path, stat.st_size))
        found.sort()
        return [(path, size) for _, path, size in found]

    def _apply_retention(self):
        keep_files, keep_size = self.options.keep_files, self.options.keep_size
        if not keep_files and not keep_size:
            return
        files = self.closed_files()
        current = self._file.size if self._file is not None else 0
        total = sum(size for _, size in files) + current
        count = len(files) + (1 if self._file is not None else 0)
        for path, size in files:
            over_count = keep_files and count > keep_files
            over_size = keep_size and total > keep_size
            if not over_count and not over_size:
                break
            try:
                os.remove(path)
            except OSError as exc:
                self.log.warning(f"retention: could not delete {path}: {exc.strerror or exc}")
                continue
            count -= 1
            total -= size
            self.deleted.append(path)
            why = (f"--keep-files {keep_files}" if over_count else
                   f"--keep-size {_size_text(keep_size)}")
            self.log.info(f"deleted the oldest recording {path} ({why})")

    # ---- reporting ----

    def notes(self):
        """What a format could not keep (CAN FD frames), one line per file."""
        notes = []
        for path, count in self.fd_frames.items():
            suffix = self.format.suffix
            if suffix in NO_FD:
                notes.append(f"{path}: {count:,} CAN FD frames not recorded ({NO_FD[suffix]}; "
                             "use .blf, .asc or .log)")
            else:
                notes.append(f"{path}: {count:,} CAN FD frames recorded without their FD/BRS/"
                             f"ESI flags ({FD_FLAGS_LOST[suffix]}; use .blf, .asc or .log)")
        for path, (count, why) in self.unholdable.items():
            noun = "frame" if count == 1 else "frames"
            notes.append(f"{path}: {count:,} {noun} not recorded: their timestamps are beyond "
                         f"what {self.format.suffix} can store ({why}; .log holds any)")
        return notes

    def describe(self):
        files = self.file_count
        where = self.files[-1] if self.files else (self.current or self.options.path)
        if files > 1:
            where = f"{files} files, the last {where}"
        return where


def _size_text(size):
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


# ---- the clients' recording (dump -o, mock-uds --output) ----

class Recording:
    """Every ``-o FILE`` of a client: frames written in line (the client's own pace), with the
    same rotation, retention, .part names and failure handling as --record. A small thread
    ticks the logs (flush every second, time rotation) while the client waits for frames."""

    def __init__(self, options_list, channel="can0", log=None):
        self.options_list = list(options_list)
        self.channel = channel
        self.log = log if log is not None else LOG
        self.logs = []
        self.opened = False
        self._lock = threading.Lock()
        self._ticker = None
        self._closed = threading.Event()

    def __bool__(self):
        return bool(self.options_list)

    @property
    def paths(self):
        return [log.describe() for log in self.logs]

    @property
    def frames(self):
        return max((log.frames for log in self.logs), default=0)

    @property
    def lost(self):
        return max((log.lost for log in self.logs), default=0)

    def open(self):
        if not self.options_list:
            return
        for options in self.options_list:
            log = RotatingLog(options, {"channel": self.channel}, self.log,
                              log_channel=self.channel)
            log.open()
            if log.failing:
                for other in self.logs + [log]:
                    other.close()
                raise CancorderError(f"{options.flag} {options.path}: {log._failure}")
            self.logs.append(log)
        self.opened = True
        self._ticker = threading.Thread(target=self._tick, name="recording-ticker",
                                        daemon=True)
        self._ticker.start()

    def write_records(self, records, count=None):
        if count is None:
            count = logfile.count_records(records)
        with self._lock:
            for log in self.logs:
                log.write(records, count=count)

    def write(self, frames):
        """Decoded frames (the client's, after --filter): packed back into records."""
        if frames:
            pack = wire.pack_frame
            self.write_records(b"".join([pack(*frame) for frame in frames]), len(frames))

    def _tick(self):
        while not self._closed.wait(0.25):
            with self._lock:
                for log in self.logs:
                    log.tick()

    def summary(self):
        """``1,234 frames to a.log, 1,230 frames to b.trc``: each output's own count."""
        return ", ".join(f"{plural(log.frames, 'frame')} to {log.describe()}"
                         for log in self.logs)

    def notes(self):
        return [note for log in self.logs for note in log.notes()] + [
            f"{log.options.flag} {log.options.path}: {plural(log.lost, 'frame')} could not be "
            "recorded" for log in self.logs if log.lost]

    def close(self):
        """Finish every file (safe to call twice)."""
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join(2.0)
        with self._lock:
            for log in self.logs:
                log.close()
