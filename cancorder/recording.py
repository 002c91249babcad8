"""Recording frames into files with python-can's log writers, chosen by the file's extension.

`.log` (can-utils), `.asc` (Vector), `.blf` (Vector binary), `.csv`, `.trc` (PEAK), `.txt`
(python-can's printer), `.db` (SQLite), `.mf4` (ASAM MDF, needs asammdf), each optionally
`.gz`-compressed where python-can allows it. Whoever opens a Recording must close it on every
way out: only ``close`` (python-can's ``stop``) writes what a format keeps for the end (BLF's
last container and header, MF4's whole file).
"""
import os
import pathlib
import sys

from .errors import CancorderError, UsageError
from .formats import FLAG_FD, frame_to_message
from .report import plural

#: formats whose python-can writer cannot store CAN FD frames (TRCWriter logs a warning per
#: frame and drops it): FD frames are not passed to them, and counted
NO_FD = {".trc": "python-can's TRC writer has no CAN FD support"}
#: formats that store FD frames without their FD/BRS/ESI flags (python-can's CSV columns)
FD_FLAGS_LOST = {".csv": "python-can's CSV format has no FD, BRS or ESI columns",
                 ".db": "python-can's SQLite table has no FD, BRS or ESI columns"}
FD_NOTE = {**NO_FD, **FD_FLAGS_LOST}


def writer_suffixes():
    from can.io.logger import MESSAGE_WRITERS

    return sorted(MESSAGE_WRITERS)


def check_output_path(path):
    """Fail early, with the fix, for a file python-can cannot write (before connecting: a
    ``--no-loop`` session must not be lost to a bad ``-o``)."""
    name = os.path.basename(path)
    suffix = _suffix(name)
    known = writer_suffixes()
    if suffix not in known:
        raise UsageError(f"-o {path}: cannot tell the format from the extension "
                         f"'{suffix or '(none)'}': use one of {', '.join(known)}")
    if name.lower().endswith(".gz"):
        _check_compressible(path, name, suffix)
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
    if os.path.isdir(path):
        raise UsageError(f"-o {path}: that is a folder: give a file name")
    existed = os.path.exists(path)
    try:  # the one honest test (root passes every permission check, /proc refuses root too)
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write the file: {exc.strerror or exc}") from None
    if not existed:
        os.unlink(path)


def _check_compressible(path, name, suffix):
    """python-can gzips text and binary stream writers, not BLF or SQLite, and only a name
    with exactly two extensions (``x.log.gz``, not ``x.v2.log.gz``)."""
    from can.io.generic import BinaryIOMessageWriter, TextIOMessageWriter
    from can.io.logger import MESSAGE_WRITERS

    if len(pathlib.PurePath(name).suffixes) != 2:
        raise UsageError(f"-o {path}: python-can reads the format of a .gz file from a name "
                         f"with exactly two extensions (like x{suffix}.gz): drop the other dots")
    writer = MESSAGE_WRITERS[suffix]
    if suffix in (".blf", ".db") or not issubclass(
            writer, (BinaryIOMessageWriter, TextIOMessageWriter)):
        raise UsageError(f"-o {path}: python-can cannot gzip {suffix} files: record to "
                         f"{os.path.basename(path)[:-3]} (BLF compresses itself) or to "
                         ".log.gz/.asc.gz")


#: the latest instant every writer can store: the date formats (.asc, .blf, .trc headers)
#: go through datetime, whose last year is 9999
LATEST_US = 253402300799 * 1000000
#: BLF stores each frame's offset from the first one in nanoseconds, as uint64
BLF_SPAN_US = ((1 << 64) - 1) // 1000


class _Output:
    """One ``-o FILE``: its writer, how many frames it holds, and the last point (size in
    bytes, frames) where the file on disk ended on a whole frame."""

    def __init__(self, path, writer):
        self.path = path
        self.suffix = _suffix(path)
        self.writer = writer
        self.frames = 0
        self.fd_left_out = 0  # FD frames not written (.trc) or written without flags (.csv)
        self.out_of_range = 0  # frames whose timestamp this format cannot store
        self.first_us = None
        self.good_size = None
        self.good_frames = 0
        self.failed = None  # the OSError that ended it
        file = getattr(writer, "file", None)
        # plain files only: a gzip stream cut short is not readable, so it is not cut
        self.file = file if file is not None and not path.lower().endswith(".gz") \
            and self.suffix != ".mf4" else None

    def holds(self, frame):
        """False for a frame this format cannot store (counted and skipped)."""
        micros = frame[0]
        if micros > LATEST_US and self.suffix in DATED:
            return False
        if self.suffix == ".blf":
            if self.first_us is None:
                self.first_us = micros
            elif micros - self.first_us > BLF_SPAN_US:
                return False
        return True

    def checkpoint(self):
        """Push what the writer holds to the file and remember where it ends."""
        if self.file is None:
            return
        self.file.flush()
        self.good_size = self.file.tell()
        self.good_frames = self.frames

    def salvage(self, exc):
        """Writing failed (disk full): cut the file back to its last whole frame, drop what the
        writer still buffers, close it; ``frames`` becomes what the file holds."""
        self.failed = exc
        if self.file is None or self.good_size is None:
            _close_quietly(self.writer)
            return
        try:
            descriptor = self.file.fileno()
            os.ftruncate(descriptor, self.good_size)
            null = os.open(os.devnull, os.O_WRONLY)
            try:  # whatever the writer still buffers now goes nowhere
                os.dup2(null, descriptor)
            finally:
                os.close(null)
        except (OSError, ValueError):
            pass
        try:
            self.file.close()
        except (OSError, ValueError):
            pass
        self.frames = self.good_frames
        if self.suffix == ".blf":  # whole containers hold an unknown part of the frames
            self.frames = _count_frames(self.path)


#: formats that store a date (python-can turns the timestamps into datetimes)
DATED = {".asc", ".blf", ".trc", ".mf4"}


class Recording:
    """Every ``-o FILE``: each frame goes to every writer that can hold it; ``close`` finishes
    every file. ``frames`` counts the frames handed to the recording; each file's own count is
    in ``summary()``."""

    def __init__(self, paths, channel="can0"):
        self.paths = list(paths)
        self.channel = channel
        self.frames = 0
        self._outputs = []
        self._closed = False
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
            self._outputs.append(_Output(path, writer))
        self.opened = True
        for output in self._outputs:
            output.checkpoint()  # the header python-can wrote is the first whole point

    def write(self, frames):
        outputs = [output for output in self._outputs if output.failed is None]
        if self._closed:
            return
        if not outputs:
            return
        channel = self.channel
        output = None
        try:
            for frame in frames:
                message = frame_to_message(frame, channel)
                fd = frame[2] & FLAG_FD
                for output in outputs:
                    if fd and output.suffix in FD_NOTE:
                        output.fd_left_out += 1
                        if output.suffix in NO_FD:
                            continue
                    if not output.holds(frame):
                        output.out_of_range += 1
                        continue
                    output.writer.on_message_received(message)
                    output.frames += 1
            for output in outputs:
                output.checkpoint()
        except OSError as exc:
            output.salvage(exc)
            raise CancorderError(
                f"writing {output.path} failed: {exc.strerror or exc} (disk full?); it holds "
                f"its first {plural(output.frames, 'frame')}, readable to the last one") from exc
        self.frames += len(frames)

    def summary(self):
        """``N frames to a.log, b.blf`` (or each file with its own count when they differ)."""
        counts = {output.frames for output in self._outputs}
        if len(counts) == 1:
            return f"{plural(counts.pop(), 'frame')} to " + \
                ", ".join(output.path for output in self._outputs)
        return ", ".join(f"{plural(output.frames, 'frame')} to {output.path}"
                         for output in self._outputs)

    def notes(self):
        """What a format could not keep, one line per file (for the end-of-run summary)."""
        notes = []
        for output in self._outputs:
            path, count = output.path, output.fd_left_out
            if count and output.suffix in NO_FD:
                notes.append(f"{path}: {plural(count, 'CAN FD frame')} not recorded "
                             f"({NO_FD[output.suffix]}; use .blf, .asc or .log)")
            elif count:
                notes.append(f"{path}: {plural(count, 'CAN FD frame')} recorded "
                             f"without their FD/BRS/ESI flags ({FD_FLAGS_LOST[output.suffix]}; "
                             "use .blf, .asc or .log)")
            if output.out_of_range:
                notes.append(f"{path}: {plural(output.out_of_range, 'frame')} "
                             f"not recorded: their timestamps are beyond what {output.suffix} "
                             "can store (after the year 9999, or more than 584 years after the "
                             "first frame in .blf); .log keeps them")
        return notes

    def close(self):
        """Flush and close every file (safe to call twice); raises if one could not be
        finished. A file whose last write failed is left ending on its last whole frame."""
        if self._closed:
            return
        self._closed = True
        failed = []
        for output in self._outputs:
            if output.failed is not None:
                continue
            try:
                output.checkpoint()
                output.writer.stop()
            except OSError as exc:
                output.salvage(exc)
                failed.append(f"{output.path}: {exc.strerror or exc} (disk full?); it holds its "
                              f"first {plural(output.frames, 'frame')}")
            except Exception as exc:  # go on: the other files must be closed too
                failed.append(f"{output.path}: {exc}")
        if failed:
            raise CancorderError("could not finish the recording: " + "; ".join(failed))


def _close_quietly(writer):
    try:
        writer.stop()
    except Exception:
        pass


def _count_frames(path):
    import can

    count = 0
    try:
        for _ in can.LogReader(path):
            count += 1
    except Exception:
        pass
    return count


def _suffix(path):
    name = path.lower()
    return os.path.splitext(name[:-3] if name.endswith(".gz") else name)[1]
