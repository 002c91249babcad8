"""One open log file, written from wire records: ``CandumpFile`` (candump ``.log``/``.log.gz``
by the compiled encoder, gzip with zlib directly) and ``PythonCanFile`` (every other format,
through python-can's writer for the extension). ``open_file`` picks by the format table.

Both offer the same small interface to ``rotation.RotatingLog``: ``write(records, count)``
(frames the file holds), ``flush``, ``size``, ``close``, ``abort`` (after a failed write: keep
what is whole on disk), and the counts ``frames`` (on disk), ``unflushed``, ``good`` (bytes on
disk).
"""
import io
import os
import struct
import zlib

from .._fast import logfile, wire
from .naming import PART

#: formats that write calendar dates (python-can's datetime): nothing after the year 9999
LAST_DATED_US = 253402300800 * 1000000  # 10000-01-01 00:00:00 UTC
FLUSH_BYTES = 256 << 10  # candump: also write out once this much is pending
GZIP_LEVEL = 6
ZIP_SYNC_BYTES = 64 << 10  # text through zlib between two sync points (what it may hold back)


class CandumpFile:
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
        self._encoders = {}  # channel -> encoder, for batches of other channels (dump mqtt://)
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gz else None
        self._z_at_good = self._z.copy() if gz else None
        self._pending = []
        self._pending_bytes = 0
        self._z_in = 0
        self.good = 0  # bytes on disk, all of them whole
        self.frames = 0  # frames on disk
        self.unflushed = 0  # frames taken but not on disk yet

    def write(self, records, count, channel=None):
        encoder = self._encoder
        if channel is not None:
            encoder = self._encoders.get(channel)
            if encoder is None:
                encoder = self._encoders[channel] = logfile.CandumpEncoder(channel)
        text = encoder.encode(records)
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


class PythonCanFile:
    """Every other format, through python-can's writer for the extension (opened on the
    ``.part`` path directly, so the writer never sees the real name)."""

    def __init__(self, path, fmt, channel):
        from can.io.logger import MESSAGE_WRITERS

        self.suffix = fmt.suffix
        self._spec = fmt.spec
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
        self.fd_frames = 0  # CAN FD frames dropped or stored without their flags
        self.unholdable = 0  # frames the format cannot store (a timestamp after the year 9999)
        self.unholdable_why = ""
        self.good = 0

    def write(self, records, count, channel=None):
        """``channel``: what the writer is given for these frames instead of the file's own
        (a name, or a number for a format that keeps numbers)."""
        from ..formats import frame_to_message

        receive = self.writer.on_message_received
        channel = self._channel if channel is None else channel
        # TRC's writer logs a warning per FD frame and drops it: such frames are not passed
        # to it, and counted (as are FD frames stored without their flags)
        no_fd = self._spec.fd_lost == "frames"
        counts_fd = bool(self._spec.fd_lost)
        dated = self._spec.dated
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



def open_file(path, fmt, channel):
    if fmt.fast:
        return CandumpFile(path, channel, fmt.gz)
    return PythonCanFile(path, fmt, channel)
