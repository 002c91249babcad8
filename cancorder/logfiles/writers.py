"""One open log file, written from wire records: ``CandumpFile`` (candump ``.log``/``.log.gz``
by the compiled encoder), ``PcapngFile`` (``.pcapng``/``.pcapng.gz``, compiled too) and
``PythonCanFile`` (every other format, through python-can's writer for the extension).
``open_file`` picks by the format table.

Both offer the same small interface to ``rotation.RotatingLog``: ``write(records, count)``
(frames the file holds), ``flush``, ``size``, ``close``, ``abort`` (after a failure: keep what
is whole on disk), and the counts ``frames`` (whole on disk), ``unflushed`` (taken, not on disk
yet: after a failure, the frames lost), ``good`` (bytes on disk). A write, flush or close that
raises OSError has already counted the frames it took in ``unflushed``.

Text (candump and python-can's text formats, plain or gzip) goes to the disk through
``DiskText``, which knows the file offset after each whole frame: a disk that takes only part
of a flush leaves the file cut back to the last whole frame that fits, never half a line.
SQLite (``SqliteWriter``) holds exactly its committed frames; MF4 reserves the disk room of each
frame before asammdf takes it (``RoomReservation``), as its file is written only at the end.
"""
import bisect
import ctypes
import errno
import os
import re
import sqlite3
import struct
import zlib

from .._fast import logfile, pcap, wire

#: formats that write calendar dates (python-can's datetime): nothing after the year 9999
LAST_DATED_US = 253402300800 * 1000000  # 10000-01-01 00:00:00 UTC
FLUSH_BYTES = 256 << 10  # text: also written out once this much is pending
COMMIT_ROWS = 10_000  # SQLite: also committed once this many frames are pending
# MF4: the most a saved file takes (measured with asammdf 8.8 uncompressed: 8 KiB of blocks,
# then 84 bytes a frame: an 8-byte timestamp and a 76-byte record; compressed is smaller)
MF4_BASE_BYTES = 16 << 10
MF4_FRAME_BYTES = 96
#: MF4: what asammdf (through python-can's MF4Writer) writes on one core, said when a
#: recording starts: 93 us a frame measured (8-byte frames, 60,000 in batches of 30, load 2,
#: asammdf 8.x), about 10,000 frames/s; a busier bus loses frames from the recording (counted)
MF4_FRAMES_PER_S = 10_000
RESERVE_FRAMES = 1024  # room is reserved for this many frames at a time (or for what fits)
GZIP_LEVEL = 6
#: BLF containers: zlib's fastest level. Measured on a bus's frames (30,000 frames/s, 8-byte
#: frames): level 6 (python-can's) costs 3.4 us a frame (10 % of a core), level 1 0.2 us, and
#: the file grows only from 7.3 to 8.6 bytes a frame
BLF_ZLIB_LEVEL = 1
ZIP_SYNC_BYTES = 64 << 10  # text through zlib between two sync points (what it may hold back)


def _create(path):
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)


def _write_all(fd, data, offset):
    """Write ``data`` at ``offset``; on OSError, ``exc.written`` says how much got there."""
    view = memoryview(data)
    done = 0
    try:
        while done < len(view):
            step = os.pwrite(fd, view[done:], offset + done)
            if step == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += step
    except OSError as exc:
        exc.written = done
        raise


class DiskText:
    """The text of one file on its way to the disk, only ever cut at a whole frame.

    ``add(data)`` takes text (bytes); ``mark(frames)`` says that the text so far ends after
    ``frames`` more whole frames (``lines_are_frames``: every line is one frame, and the cut
    may fall after any of them; ``frame_ends``: the same for frames that are not lines). ``flush`` writes out what is pending (gzip: up to a sync
    point). When the disk takes only part of it, the file is cut back to the last whole frame
    that fits (gzip: the stream is finished right there, so it reads to its end) and the OSError
    is raised: then ``frames`` is what the file holds and ``unflushed`` what it could not take.
    """

    def __init__(self, fd, gz, lines_are_frames=False, frame_ends=None):
        self.fd = fd
        # where whole frames end in text: one per line, or ``frame_ends(text)`` (binary
        # blocks), or else the marks
        self._frame_ends = _line_ends if lines_are_frames else frame_ends
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gz else None
        self._z_at_good = self._z.copy() if gz else None
        self._text = []  # pending text, as written (gzip: before compression)
        self._text_bytes = 0
        self._compressed = 0  # gzip: pieces of _text compressed already
        self._out = []  # gzip: the compressed pending bytes
        self._out_bytes = 0
        self._z_in = 0
        self._marks = []  # (end of a whole frame in the pending text, frames up to there)
        self.good = 0  # bytes on disk, ending on a whole frame
        self.frames = 0  # whole frames on disk
        self.unflushed = 0  # frames taken, not on disk yet
        self.finished = False  # nothing more goes to this file (closed, or cut)

    def add(self, data):
        if data:
            self._text.append(data)
            self._text_bytes += len(data)

    def mark(self, frames):
        self.unflushed += frames
        if self._frame_ends is None:
            self._marks.append((self._text_bytes, self.unflushed))

    def settle(self):
        """gzip: compress what came in since (so that ``pending`` stays near the truth)."""
        if self._z is None or self._compressed == len(self._text):
            return
        data = b"".join(self._text[self._compressed:])
        self._compressed = len(self._text)
        self._z_in += len(data)
        out = self._z.compress(data)
        if self._z_in >= ZIP_SYNC_BYTES:  # make zlib give out what it holds: the size
            self._z_in = 0                # seen by --rotate-size stays true
            out += self._z.flush(zlib.Z_SYNC_FLUSH)
        if out:
            self._out.append(out)
            self._out_bytes += len(out)

    @property
    def pending(self):
        """Bytes waiting for the disk (gzip: compressed)."""
        return self._out_bytes if self._z is not None else self._text_bytes

    def flush(self, finish=False):
        if self.finished:
            return
        if self._z is not None:
            self.settle()
            self._out.append(self._z.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH))
            data = b"".join(self._out)
        else:
            data = b"".join(self._text)
        try:
            _write_all(self.fd, data, self.good)
        except OSError as exc:
            self._cut(exc.written)
            raise
        self.good += len(data)
        self.frames += self.unflushed
        self.unflushed = 0
        self._clear()
        if finish:
            self.finished = True
        elif self._z is not None:
            self._z_at_good = self._z.copy()

    def abort(self):
        """After a failure elsewhere: what is on disk stays, ending on a whole frame (gzip: with
        its trailer where there is room)."""
        if not self.finished:
            self._cut(0)

    def close(self):
        """Let the descriptor go (once: its number may be another file's afterwards)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    # ---- cutting at a whole frame ----

    def _clear(self):
        self._text, self._text_bytes, self._compressed = [], 0, 0
        self._out, self._out_bytes, self._marks = [], 0, []

    def _whole_frames(self, text):
        """Where whole frames end in the pending ``text``: [(end, frames up to there)]."""
        if self._frame_ends is not None:
            return self._frame_ends(text)
        return self._marks

    def _cut(self, written):
        """The disk took ``written`` bytes of the pending ones: keep the whole frames that fit,
        and finish the file there."""
        self.finished = True
        text = b"".join(self._text)
        points = self._whole_frames(text)
        kept = frames = 0
        try:
            if self._z is None:
                index = bisect.bisect_right([end for end, _ in points], written) - 1
                if index >= 0:
                    kept, frames = points[index]
                os.ftruncate(self.fd, self.good + kept)
            else:
                kept, frames = self._fit_gzip(text, points)
        except OSError:
            try:
                os.ftruncate(self.fd, self.good)
            except OSError:
                pass
            kept = frames = 0
        self.good += kept
        self.frames += frames
        self.unflushed -= frames
        self._clear()

    def _fit_gzip(self, text, points):
        """The most whole frames whose compressed text and the gzip trailer fit after the last
        sync point (bisection: each try is written for real)."""
        def stream(count):
            z = self._z_at_good.copy()
            end = points[count - 1][0] if count else 0
            return z.compress(text[:end]) + z.flush(zlib.Z_FINISH)

        def fits(data):
            try:
                _write_all(self.fd, data, self.good)
                return True
            except OSError:
                return False
            finally:
                os.ftruncate(self.fd, self.good)

        os.ftruncate(self.fd, self.good)
        if not fits(stream(0)):
            return 0, 0  # not even the trailer: the prefix reads up to the sync point
        low, high = 0, len(points)  # stream(low) fits; find the largest
        while low < high:
            middle = (low + high + 1) // 2
            if fits(stream(middle)):
                low = middle
            else:
                high = middle - 1
        data = stream(low)
        _write_all(self.fd, data, self.good)
        return len(data), (points[low - 1][1] if low else 0)


class SqliteWriter:
    """python-can's SQLite table (``messages``, the columns its SqliteReader reads), written
    in the recording's thread. python-can's own SqliteWriter commits in a thread of its own,
    which dies unseen when the disk is full; here a commit that fails is rolled back (the file
    holds exactly the committed frames) and the pending frames are committed again in ever
    smaller pieces, so that the whole frames that fit are kept; then OSError is raised.

    ``committed``: frames in the file; ``pending``: taken, not committed yet."""

    TABLE = "messages"
    INSERT = f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)"

    def __init__(self, path):
        self.path = path
        self._rows = []
        self.committed = 0
        try:
            self._db = sqlite3.connect(path)
            try:
                with self._db:
                    self._db.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (ts REAL, "
                                     "arbitration_id INTEGER, extended INTEGER, remote INTEGER, "
                                     "error INTEGER, dlc INTEGER, data BLOB)")
            except BaseException:
                self._db.close()
                raise
        except sqlite3.Error as exc:
            raise _os_error(exc) from exc

    @property
    def pending(self):
        return len(self._rows)

    def on_message_received(self, msg):
        self._rows.append((msg.timestamp, msg.arbitration_id, msg.is_extended_id,
                           msg.is_remote_frame, msg.is_error_frame, msg.dlc, bytes(msg.data)))

    def commit(self):
        rows, self._rows = self._rows, []
        done, piece, failure = 0, len(rows), None
        while done < len(rows) and piece:
            try:
                with self._db:  # committed, or rolled back on an error
                    self._db.executemany(self.INSERT, rows[done:done + piece])
            except sqlite3.Error as exc:
                failure = exc
                piece //= 2
                continue
            done += piece
            self.committed += piece
            piece = min(piece, len(rows) - done)
        if done < len(rows):
            self._rows = rows[done:]
            raise _os_error(failure)

    def file_size(self):
        """The file, and what its pending frames will add (about 40 bytes each)."""
        return os.path.getsize(self.path) + 40 * len(self._rows)

    def stop(self):
        """Commit what is pending and close (on failure: still open, for ``abort``)."""
        self.commit()
        self._db.close()

    def abort(self):
        """Close without committing what is pending (rolled back: the file holds the committed
        frames; ``pending`` still counts the frames lost)."""
        try:
            self._db.close()
        except sqlite3.Error:
            pass


def _os_error(exc):
    """An SQLite error as the OSError the recording handles (a full disk: ENOSPC)."""
    code = getattr(exc, "sqlite_errorcode", None)
    full = code == sqlite3.SQLITE_FULL or "full" in str(exc)
    return OSError(errno.ENOSPC if full else errno.EIO,
                   os.strerror(errno.ENOSPC) if full else f"SQLite: {exc}")


class RoomReservation:
    """Room on the recording's disk for a file that is written only when it is closed (MF4:
    asammdf keeps the frames in a temporary file elsewhere and writes the whole file in
    ``save``). Room for each frame is reserved (``fallocate``, the file's size unchanged)
    before the writer takes it: a full disk is noticed when it comes (``take`` raises OSError),
    every frame taken has its room, and the file is saved whole at the end. ``release`` gives
    back what the saved file did not use."""

    KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE

    def __init__(self, fd, base, per_frame):
        self.fd = fd
        self._base, self._per_frame = base, per_frame
        self.frames = 0
        self.reserved = 0
        self._fallocate = _libc_fallocate()

    def take(self):
        """Room for one more frame, or OSError (ENOSPC) when the disk has none."""
        need = self._base + (self.frames + 1) * self._per_frame
        if need > self.reserved and self._fallocate is not None:
            ahead = self._base + (self.frames + RESERVE_FRAMES) * self._per_frame
            try:
                self._reserve(ahead)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS):
                    self._fallocate = None  # a file system without it: written unreserved
                else:
                    self._reserve(need)  # the room that is left, frame by frame
        self.frames += 1

    def _reserve(self, size):
        if self._fallocate(self.fd, self.KEEP_SIZE, 0, size) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.reserved = size

    def release(self):
        """After the save: the room beyond the file's end goes back to the disk."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, os.fstat(fd).st_size)
        except OSError:
            pass
        os.close(fd)


def _libc_fallocate():
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int
    return function


class _CompiledFile:
    """A file whose frames the compiled code writes (``_encode``), whole frames only, into a
    DiskText (gzip with zlib directly). Everything reaches the disk in flushes (at least once
    a second, or when FLUSH_BYTES are pending), each ending at a gzip sync point."""

    disk = None

    def write(self, records, count, channel=None):
        disk = self.disk
        disk.add(self._encode(records, channel))
        disk.mark(count)
        disk.settle()
        if disk.pending >= FLUSH_BYTES:
            disk.flush()
        return count  # every frame is held

    def flush(self):
        self.disk.flush()

    frames = property(lambda self: self.disk.frames)
    unflushed = property(lambda self: self.disk.unflushed)
    good = property(lambda self: self.disk.good)

    @property
    def size(self):
        return self.disk.good + self.disk.pending

    def close(self):
        self.disk.flush(finish=True)  # on failure the fd stays open: abort() cuts and closes
        self.disk.close()

    def abort(self, keep=True):
        """After a failure: the file ends on its last whole frame (``keep=False``: it is no
        longer ours, and is only let go)."""
        if keep:
            self.disk.abort()
        try:
            self.disk.close()
        except OSError:
            pass


class CandumpFile(_CompiledFile):
    """candump lines from the records, by the compiled encoder (one line per frame)."""

    def __init__(self, path, channel, gz):
        self.disk = DiskText(_create(path), gz, lines_are_frames=True)
        self._encoder = logfile.CandumpEncoder(channel or "can0")
        self._encoders = {}  # channel -> encoder, for batches of other channels (dump mqtt://)

    def _encode(self, records, channel):
        encoder = self._encoder
        if channel is not None:
            encoder = self._encoders.get(channel)
            if encoder is None:
                encoder = self._encoders[channel] = logfile.CandumpEncoder(channel)
        return encoder.encode(records)


class PcapngFile(_CompiledFile):
    """pcapng from the records, by the compiled encoder: a Section Header Block, an Interface
    Description Block per channel (added where its first frame comes), a packet block per
    frame."""

    def __init__(self, path, channel, gz):
        self.disk = DiskText(_create(path), gz, frame_ends=pcap.block_ends)
        self._encoder = pcap.PcapngEncoder()
        self._channel = channel or "can0"
        self._interfaces = {}  # channel name -> interface number
        self.disk.add(pcap.section_header())
        self._interface(self._channel)

    def _interface(self, name):
        number = self._interfaces.get(name)
        if number is None:
            number = self._interfaces[name] = len(self._interfaces)
            self.disk.add(pcap.interface_block(name))
        return number

    def _encode(self, records, channel):
        return self._encoder.encode(records, self._interface(channel or self._channel))


class BlfFile:
    """BLF from the records by the compiled encoder (``_fast.logfile.BlfEncoder``), in the
    layout python-can's BLFReader and Vector's tools read: the 144-byte file header, then
    LOG_CONTAINER objects (zlib), each holding whole frames (at most 128 KiB of them
    uncompressed). A container reaches the disk when it is full and at every flush (at least
    once a second), and the file header is written again after it (start time, sizes,
    objects): the file is a whole BLF after every container, whatever ends the recording. A
    disk that takes only part of a container leaves the file cut back to the last whole one."""

    def __init__(self, path, channel):
        from can.io import blf

        self._blf = blf
        self.fd = _create(path)
        self._channel = channel
        self._channels = {}  # a channel as given -> BLF's number for it
        self._encoder = logfile.BlfEncoder(self._number(channel), LAST_DATED_US)
        self.good = 0  # bytes on disk, ending after a whole container
        self.frames = 0  # frames in those containers
        self._failed = 0  # frames taken by a write that failed (lost)
        self._uncompressed = blf.FILE_HEADER_SIZE  # what the header says of the objects
        self.fd_frames = 0  # BLF keeps CAN FD frames and their flags
        self.unholdable_why = "after the year 9999"
        self._closed = False
        try:
            self._write_header()
        except BaseException:
            os.close(self.fd)
            raise
        self.good = blf.FILE_HEADER_SIZE

    @property
    def unflushed(self):
        return self._encoder.frames + self._failed

    @property
    def unholdable(self):
        return self._encoder.unholdable

    @property
    def size(self):
        """On disk, and the container being filled (uncompressed: a file is rotated a little
        early rather than late)."""
        return self.good + self._encoder.size

    def write(self, records, count, channel=None):
        encoder = self._encoder
        encoder.channel = self._number(self._channel if channel is None else channel)
        skipped = encoder.unholdable
        pos = 0
        try:
            while True:
                pos = encoder.add(records, pos)
                if not encoder.full():
                    break
                self._write_container()
        except OSError:
            self._failed += logfile.count_records(records[pos:]) if pos < len(records) else 0
            raise
        return count - (encoder.unholdable - skipped)

    def flush(self):
        if self._encoder.frames:
            self._write_container()

    def close(self):
        self.flush()  # on failure the fd stays open: abort() cuts and closes
        self._closed = True
        os.close(self.fd)

    def abort(self, keep=True):
        """After a failure: the file ends after its last whole container, with a true header
        (``keep=False``: it is no longer ours, and is only let go)."""
        if self._closed:
            return
        self._closed = True
        self._failed += self._encoder.frames
        self._encoder.take()
        try:
            if keep:
                os.ftruncate(self.fd, self.good)
                self._write_header()
        except OSError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass

    def _number(self, channel):
        number = self._channels.get(channel)
        if number is None:
            from can.util import channel2int

            index = channel2int(channel)  # python-can counts from 0, BLF from 1
            number = self._channels[channel] = 1 if index is None else index + 1
        return number

    def _write_container(self):
        blf = self._blf
        encoder = self._encoder
        frames = encoder.frames
        data = encoder.take()
        packed = zlib.compress(data, BLF_ZLIB_LEVEL)
        size = blf.OBJ_HEADER_BASE_STRUCT.size + blf.LOG_CONTAINER_STRUCT.size + len(packed)
        container = b"".join((
            blf.OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", blf.OBJ_HEADER_BASE_STRUCT.size, 1, size,
                                            blf.LOG_CONTAINER),
            blf.LOG_CONTAINER_STRUCT.pack(blf.ZLIB_DEFLATE, len(data)),
            packed, bytes(size % 4)))  # the padding python-can's reader skips
        try:
            _write_all(self.fd, container, self.good)
        except OSError:
            self._failed += frames
            try:
                os.ftruncate(self.fd, self.good)  # never half a container
            except OSError:
                pass
            raise
        self.good += len(container)
        self.frames += frames
        self._uncompressed += (blf.OBJ_HEADER_BASE_STRUCT.size + blf.LOG_CONTAINER_STRUCT.size
                               + len(data))
        self._write_header()

    def _write_header(self):
        """The file header as python-can's BLFWriter writes it, true for what is on disk."""
        blf = self._blf
        encoder = self._encoder
        start = stop = None
        if encoder.started:
            start, stop = encoder.start_us / 1e6, encoder.stop_us / 1e6
        header = blf.FILE_HEADER_STRUCT.pack(
            b"LOGG", blf.FILE_HEADER_SIZE, blf.BLFWriter.application_id, 0, 0, 0, 2, 6, 8, 1,
            self.good, self._uncompressed, self.frames, 0,
            *blf.timestamp_to_systemtime(start), *blf.timestamp_to_systemtime(stop))
        _write_all(self.fd, header + bytes(blf.FILE_HEADER_SIZE - len(header)), 0)


class _TextSink:
    """What one of python-can's text writers writes to: its text goes into the file's
    DiskText (python-can takes any object with ``write``; TRC asks for ``\\r\\n`` through
    ``reconfigure`` and for the ``name``)."""

    def __init__(self, disk, name):
        self._disk = disk
        self.name = name
        self.closed = False
        self._newline = None

    def write(self, text):
        if self._newline:
            text = text.replace("\n", self._newline)
        self._disk.add(text.encode("utf-8"))
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def reconfigure(self, newline=None, **kwargs):
        self._newline = newline if newline not in (None, "", "\n") else None

    def tell(self):
        return self._disk.good + self._disk.pending

    def flush(self):
        pass  # the DiskText decides when text reaches the disk

    def close(self):
        self.closed = True


class PythonCanFile:
    """Every other format, through python-can's writer for the extension. Text formats write
    into a DiskText (whole frames on disk, cut at a whole frame); SQLite (.db) through
    SqliteWriter (whole frames after every commit); the others (.mf4) are opened on the
    ``.part`` path directly and hold their frames once closed."""

    def __init__(self, path, fmt, channel):
        from can.io.generic import TextIOMessageWriter
        from can.io.logger import MESSAGE_WRITERS

        self.suffix = fmt.suffix
        self._spec = fmt.spec
        self._channel = channel
        cls = MESSAGE_WRITERS[fmt.suffix]
        self.disk = None
        self.room = None
        if issubclass(cls, TextIOMessageWriter):
            self.disk = DiskText(_create(path), fmt.gz)
            try:
                self.writer = cls(file=_TextSink(self.disk, path))
            except BaseException:
                self.disk.close()
                raise
        else:
            fd = _create(path)  # the name is ours (O_EXCL), then the writer opens it
            self.room = None
            if fmt.suffix == ".mf4":
                self.room = RoomReservation(fd, MF4_BASE_BYTES, MF4_FRAME_BYTES)
            else:
                os.close(fd)
            try:
                self.writer = SqliteWriter(path) if fmt.suffix == ".db" else cls(file=path)
            except BaseException:
                if self.room is not None:
                    self.room.release()
                raise
        self._sqlite = self.writer if fmt.suffix == ".db" else None
        self._path = path
        self._decoder = wire.StreamDecoder()
        self._frames = 0  # binary formats: frames in the file once it is closed
        self._unflushed = 0
        self.fd_frames = 0  # CAN FD frames dropped or stored without their flags
        self.unholdable = 0  # frames the format cannot store (a timestamp after the year 9999)
        self.unholdable_why = ""
        self._good = 0
        self._aborted = False

    @property
    def frames(self):
        if self.disk is not None:
            return self.disk.frames
        return self._sqlite.committed if self._sqlite is not None else self._frames

    @property
    def unflushed(self):
        if self.disk is not None:
            return self.disk.unflushed
        return self._sqlite.pending if self._sqlite is not None else self._unflushed

    good = property(lambda self: self.disk.good if self.disk else self._good)

    def write(self, records, count, channel=None):
        """``channel``: what the writer is given for these frames instead of the file's own
        (a name, or a number for a format that keeps numbers)."""
        from ..formats import frame_to_message

        receive = self.writer.on_message_received
        channel = self._channel if channel is None else channel
        disk = self.disk
        # TRC's writer logs a warning per FD frame and drops it: such frames are not passed
        # to it, and counted (as are FD frames stored without their flags)
        no_fd = self._spec.fd_lost == "frames"
        counts_fd = bool(self._spec.fd_lost)
        dated = self._spec.dated
        room = self.room
        written = skipped = 0
        try:
            for frame in self._decoder.feed(records):
                if frame[2] & wire.FLAG_FD and counts_fd:
                    self.fd_frames += 1
                    if no_fd:
                        skipped += 1
                        continue
                if dated and frame[0] >= LAST_DATED_US:
                    self.unholdable += 1
                    self.unholdable_why = "after the year 9999"
                    skipped += 1
                    continue
                try:
                    message = frame_to_message(frame, channel)
                    if room is not None:
                        room.take()  # OSError: this frame and the rest of the batch are lost
                    receive(message)
                except (ValueError, OverflowError, struct.error) as exc:
                    # a valid record this format cannot hold: counted and skipped
                    self.unholdable += 1
                    self.unholdable_why = str(exc)
                    skipped += 1
                    continue
                written += 1
                if disk is not None:
                    disk.mark(1)
        except OSError:
            if disk is None and self._sqlite is None:  # a binary writer failed mid-batch:
                self._unflushed += count - skipped   # the batch is lost with it
            raise
        if disk is not None:
            disk.settle()
            if disk.pending >= FLUSH_BYTES:
                disk.flush()
        elif self._sqlite is not None:
            if self._sqlite.pending >= COMMIT_ROWS:
                self._sqlite.commit()
        else:
            self._unflushed += written
        return written

    def flush(self):
        if self.disk is not None:
            self.disk.flush()
            return
        if self._sqlite is not None:
            self._sqlite.commit()
            self._good = self.size
            return
        file = getattr(self.writer, "file", None)
        if file is not None and hasattr(file, "flush"):
            file.flush()
        self._good = self.size

    @property
    def size(self):
        if self.disk is not None:
            return self.disk.good + self.disk.pending
        try:
            return self.writer.file_size()
        except (AttributeError, NotImplementedError, OSError, ValueError):
            pass
        try:
            return os.path.getsize(self._path)
        except OSError:
            return 0

    def close(self):
        try:
            self.writer.stop()  # text: the writer's last lines (ASC's End TriggerBlock)
            if self.room is not None:
                self.room.release()
            if self.disk is not None:
                self.disk.flush(finish=True)
                self.disk.close()
        except BaseException:
            self.abort()
            raise
        if self.disk is None:
            if self._sqlite is None:
                self._frames += self._unflushed
                self._unflushed = 0
            self._good = self.size

    def abort(self, keep=True):
        """After a failure: text is cut back to its last whole frame; a binary file is left
        as its writer left it, and its frames counted by reading it back (``keep=False``: the
        file is no longer ours, and is only let go)."""
        if self._aborted:
            return
        self._aborted = True
        if self.disk is not None:
            if keep:
                self.disk.abort()
            try:
                self.disk.close()
            except OSError:
                pass
            return
        if self._sqlite is not None:  # what is committed is whole: the rest is lost
            self._sqlite.abort()
            try:
                self._good = os.path.getsize(self._path)
            except OSError:
                pass
            return
        try:
            self.writer.stop()
        except Exception:
            pass
        try:  # a stop that failed left it open: nothing buffered may reach the disk later
            self.writer.file.close()
        except Exception:
            pass
        if self.room is not None:
            self.room.release()
        if keep:
            self._frames = count_frames(self._path, self.suffix)
        self._unflushed = max(0, self._unflushed - self._frames)


def count_frames(path, suffix):
    """The frames python-can reads from ``path`` (a file of format ``suffix``), up to any
    damage: what such a file holds."""
    from can.io.player import MESSAGE_READERS

    count = 0
    try:
        with MESSAGE_READERS[suffix](path) as reader:
            for _ in reader:
                count += 1
    except Exception:  # damage ends the count: the frames before it are what can be read
        pass
    return count


def finish_leftover(part, final, fmt):
    """A ``.part`` file an earlier run left (a crash, ``kill -9``, a power cut) becomes
    ``final``, cut back to its last whole frame: text after its last whole line (gzip: the
    readable prefix, recompressed and finished); a binary format rewritten by python-can from
    the frames its reader takes before any damage (a BLF's header is completed that way). Returns the frames the file holds (0: there
    was nothing to keep, and ``part`` is removed); raises OSError when it cannot be done."""
    text_kind = fmt.cut_at_frames or fmt.spec.text or fmt.suffix == ".txt"  # cut at a whole frame
    ends = _whole_frame_ends(fmt)
    if text_kind and not fmt.gz:
        with open(part, "r+b") as file:
            data = file.read()
            end = _last_end(ends, data)
            file.truncate(end)
        kept = data[:end]
    elif text_kind:
        with open(part, "rb") as file:
            data = file.read()
        unzip = zlib.decompressobj(wbits=31)
        text = b""
        for start in range(0, len(data), 4096):  # stop at the damage, keep what came before
            try:
                text += unzip.decompress(data[start:start + 4096])
            except zlib.error:
                break
            if unzip.eof:
                break
        kept = text[:_last_end(ends, text)]
    else:
        kept = None
    if text_kind and not fmt.gz:
        os.rename(part, final)
    elif text_kind:
        _write_new(final, lambda fd: _write_all(fd, _gzip(kept), 0))
        os.remove(part)
    else:
        from can.io.logger import MESSAGE_WRITERS
        from can.io.player import MESSAGE_READERS

        messages = []
        damaged = False
        try:
            with MESSAGE_READERS[fmt.suffix](part) as reader:
                for message in reader:
                    messages.append(message)
        except Exception:  # damage (a container cut short): keep the frames before it
            damaged = True
        if not messages:
            os.remove(part)
            return 0
        if not damaged and fmt.suffix == ".db":  # SQLite: whole after every transaction
            os.rename(part, final)
        else:
            def rewrite(fd):
                os.close(fd)
                with MESSAGE_WRITERS[fmt.suffix](final) as writer:
                    for message in messages:
                        writer.on_message_received(message)
            _write_new(final, rewrite, close=False)
            os.remove(part)
    # candump and python-can's printer (never read back): one line a frame
    frames = (_frames_in(ends, kept) if fmt.cut_at_frames or not fmt.spec.reader else
              count_frames(final, fmt.suffix))
    if not frames:
        os.remove(final)  # nothing whole in it: no empty recording is left
    return frames


def _line_ends(text):
    """[(end, lines up to there)] of every whole line of ``text``."""
    return [(m.end(), k + 1) for k, m in enumerate(re.finditer(b"\n", text))]


def _whole_frame_ends(fmt):
    """Where whole frames end in a file of ``fmt``: after each line, or each pcapng block."""
    return pcap.block_ends if fmt.suffix == ".pcapng" else _line_ends


def _last_end(ends, data):
    if ends is _line_ends:  # (no list of every line of a large file)
        return data.rfind(b"\n") + 1
    found = ends(data)
    return found[-1][0] if found else 0


def _frames_in(ends, data):
    if ends is _line_ends:
        return data.count(b"\n")
    found = ends(data)
    return found[-1][1] if found else 0


def _gzip(text):
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return z.compress(text) + z.flush(zlib.Z_FINISH)


def _write_new(path, write, close=True):
    """Create ``path`` (never over another file) and fill it; on failure nothing is left."""
    fd = _create(path)
    try:
        write(fd)
    except BaseException:
        if close:
            os.close(fd)
        try:
            os.remove(path)
        except OSError:
            pass
        raise
    if close:
        os.close(fd)


def open_file(path, fmt, channel):
    if fmt.suffix == ".pcapng":
        return PcapngFile(path, channel, fmt.gz)
    if fmt.candump:
        return CandumpFile(path, channel, fmt.gz)
    if fmt.fast:
        return BlfFile(path, channel)
    return PythonCanFile(path, fmt, channel)
