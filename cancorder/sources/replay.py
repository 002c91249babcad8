"""Frames from log files (``cancorder replay``), released with their recorded spacing.

Any log python-can reads (``.asc .blf .csv .db .log .trc``, ``.mf4`` with asammdf, gzip of the
text ones) is turned into wire records; candump ``.log``/``.log.gz`` by the compiled parser
(``_fast.logfile``), with no python-can Message per frame, the others through python-can's
reader for the extension. Each batch is mapped onto a timeline that starts when the replay
starts (``Retimer``: the recorded gaps, divided by the speed, long silences shortened to
``max_gap``), and a record is handed over once its instant on that timeline has come. The
records carry that instant as their timestamp, or their recorded one with ``original_time``.

A damaged file (a line that is not a frame, a truncated gzip or BLF) ends the replay after the
frames before the damage: ``failure`` then holds the error that names the file and where.
"""
import gzip
import logging
import os
import time
import zlib

from .._fast import logfile, wire
from ..errors import ReplayFileError, UsageError
from .base import Source, SourceCounters

LOG = logging.getLogger("cancorder.source")
CHUNK = 256 << 10  # bytes of a .log read at once
MESSAGE_BATCH = 2048  # python-can Messages packed at once
MAX_SLEEP = 0.05
GZIP_MAGIC = b"\x1f\x8b"


def replay_suffix(path):
    """(suffix, gz) of a log file, or a UsageError naming what replay reads."""
    from can.io.player import MESSAGE_READERS

    name = os.path.basename(path).lower()
    gz = name.endswith(".gz")
    suffix = os.path.splitext(name[:-3] if gz else name)[1]
    if suffix not in MESSAGE_READERS or (gz and suffix in (".blf", ".db", ".mf4")):
        known = " ".join(sorted(MESSAGE_READERS))
        raise UsageError(f"{path}: cannot tell the format from the extension "
                         f"'{suffix + ('.gz' if gz else '') or '(none)'}': replay reads {known} "
                         "(and .gz of the text ones)")
    return suffix, gz


def check_replay_file(path):
    """Fail before serving, with one line, for a file that cannot be replayed at all."""
    replay_suffix(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder, not a log file")
    try:
        with open(path, "rb") as file:
            head = file.read(1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not head:
        raise UsageError(f"{path}: the file is empty")


class _CountingLines:
    """A text file that counts the lines python-can's reader takes (for error messages)."""

    def __init__(self, file):
        self._file = file
        self.line = 0

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self._file)
        self.line += 1
        return line

    def readline(self, *args):
        line = self._file.readline(*args)
        if line:
            self.line += 1
        return line

    def __getattr__(self, name):
        return getattr(self._file, name)


def _channel_matches(msg_channel, wanted):
    if msg_channel is None:
        return False
    if isinstance(msg_channel, int):  # python-can numbers ASC/BLF channels from 0
        return wanted in (str(msg_channel + 1),)
    return str(msg_channel) == wanted


class _FileRecords:
    """The records of one file, in batches; damage raises ReplayFileError naming the place."""

    def __init__(self, path, channel=None):
        self.path = path
        self.suffix, self.gz = replay_suffix(path)
        self.channel = channel
        self.first_channel = None
        self.remote = self.error = self.invalid = self.other_channel = 0
        self.frames = 0

    def batches(self):
        try:
            if self.suffix == ".log":
                yield from self._candump()
            else:
                yield from self._python_can()
        except ReplayFileError:
            raise
        except EOFError as exc:
            raise ReplayFileError(f"{self.path}: the file ends early (truncated after "
                                  f"{self.frames:,} frames: {exc})") from None
        except OSError as exc:
            raise ReplayFileError(f"{self.path}: cannot read it: {exc.strerror or exc}"
                                  ) from None

    def _chunks(self):
        """The file's bytes (gzip decompressed here, so that a truncated file still gives
        everything before the cut, and the cut's byte offset)."""
        with open(self.path, "rb") as file:
            unzip = zlib.decompressobj(wbits=31) if self.gz else None
            offset = 0
            member_open = False
            while True:
                raw = file.read(CHUNK)
                if not raw:
                    break
                offset += len(raw)
                if unzip is None:
                    yield raw
                    continue
                while raw:
                    member_open = True
                    try:
                        out = unzip.decompress(raw)
                    except zlib.error as exc:
                        raise ReplayFileError(f"{self.path}: not a valid gzip file near byte "
                                              f"{offset - len(raw)} ({exc})") from None
                    if out:
                        yield out
                    if not unzip.eof:
                        break
                    member_open = False
                    raw = unzip.unused_data  # another gzip member may follow
                    unzip = zlib.decompressobj(wbits=31)
            if member_open:
                raise ReplayFileError(f"{self.path}: the file ends early at byte {offset} (a "
                                      "truncated gzip): the frames before the cut were served")

    def _candump(self):
        parser = logfile.CandumpParser(self.channel.encode() if self.channel else None)
        chunks = self._chunks()
        while True:
            chunk = next(chunks, b"")
            records = parser.feed(chunk) if chunk else parser.finish()
            self._note_parser(parser)
            if records:
                self.frames += logfile.count_records(records)
                yield records
            if parser.error_reason is not None:
                raise ReplayFileError(f"{self.path}: line {parser.error_line}: "
                                      f"{parser.error_reason}")
            if not chunk:
                return

    def _note_parser(self, parser):
        self.remote, self.error = parser.remote, parser.error
        self.other_channel = parser.other_channel
        if self.first_channel is None and parser.first_channel:
            self.first_channel = parser.first_channel.decode("ascii", "replace")

    def _python_can(self):
        from can.io.player import MESSAGE_READERS

        cls = MESSAGE_READERS[self.suffix]
        kwargs = {"relative_timestamp": False} if self.suffix == ".asc" else {}
        counter = None
        if self.gz:
            counter = _CountingLines(gzip.open(self.path, "rt", encoding="utf-8",
                                               errors="replace"))
            reader = cls(counter, **kwargs)
        elif self.suffix in (".asc", ".csv", ".trc"):
            counter = _CountingLines(open(self.path, "r", encoding="utf-8", errors="replace"))
            reader = cls(counter, **kwargs)
        else:
            try:
                reader = cls(self.path, **kwargs)
            except Exception as exc:
                raise ReplayFileError(f"{self.path}: not a readable {self.suffix} file "
                                      f"({_why(exc)})") from None
        packer = wire.Packer()
        wanted = self.channel
        batch = []
        try:
            iterator = iter(reader)
            while True:
                try:
                    msg = next(iterator)
                except StopIteration:
                    break
                except EOFError:
                    raise
                except Exception as exc:
                    raise ReplayFileError(f"{self.path}: {self._where(reader, counter)}: "
                                          f"{_why(exc)}") from None
                if wanted is not None and not _channel_matches(msg.channel, wanted):
                    self.other_channel += 1
                    continue
                if self.first_channel is None and msg.channel is not None:
                    self.first_channel = (str(msg.channel + 1) if isinstance(msg.channel, int)
                                          else str(msg.channel))
                batch.append(msg)
                if len(batch) == MESSAGE_BATCH:
                    yield self._pack(packer, batch)
                    batch = []
            if batch:
                yield self._pack(packer, batch)
            self._check_complete(reader)
        finally:
            try:
                reader.stop()
            except Exception:
                pass

    def _check_complete(self, reader):
        """python-can's BLF reader stops quietly at a cut: the header knows the real size."""
        announced = getattr(reader, "file_size", None) if self.suffix == ".blf" else None
        actual = os.path.getsize(self.path)
        if announced and announced > actual:
            raise ReplayFileError(f"{self.path}: the file ends early at byte {actual} (its "
                                  f"header says {announced}): the frames before the cut were "
                                  "served")

    def _pack(self, packer, batch):
        records = packer.pack(batch)
        self.remote, self.error, self.invalid = packer.remote, packer.error, packer.invalid
        self.frames = packer.packed
        return records

    def _where(self, reader, counter):
        if counter is not None:
            return f"line {counter.line}"
        file = getattr(reader, "file", None)
        try:
            return f"byte {file.tell()}"
        except Exception:
            return f"after {self.frames:,} frames"


def _why(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ReplaySource(Source):
    """Serves the frames of ``paths`` in order (one timeline), paced by their timestamps.

    ``speed``: a factor, or None for as fast as the clients take it; ``start``/``end``: offsets
    in seconds from the first frame; ``max_gap``: silences longer than this many seconds are
    shortened to it; ``channel``: one channel of a multi-channel file (the name in a .log,
    the number in an .asc/.blf); ``record_filter``: --filter (applied by Source.read);
    ``wait_for_client``: start when the first client connects (re-anchored then). At the end
    ``read`` returns None; a damaged file ends it early, with ``failure`` set.
    """

    def __init__(self, paths, speed=1.0, loop=False, start=None, end=None, max_gap=None,
                 channel=None, record_filter=None, original_time=False, wait_for_client=True):
        super().__init__(record_filter)
        self.paths = list(paths)
        self.speed = speed
        self.loop = loop
        self.start_us = int(round((start or 0) * 1e6))
        self.end_us = None if end is None else int(round(end * 1e6))
        self.max_gap_us = int(round(max_gap * 1e6)) if max_gap else 0
        self.channel = channel
        self.original_time = original_time
        self.wait_for_client = wait_for_client
        self.failure = None  # the ReplayFileError that ended the replay early
        self.passes = 0  # times the files were played through
        self.served = 0  # frames handed over (before --filter)
        self._gate = None
        self._files = []  # _FileRecords of the current pass
        self._batches = None
        self._ts0 = None  # the recorded time of the first frame
        self._pending = b""  # records of the current batch, not handed over yet
        self._pending_orig = b""
        self._retimer = None
        self._anchor_mono = None
        self._anchor_us = None
        self._first_channel = None
        self._counted = {"remote": 0, "error": 0, "invalid": 0, "other_channel": 0}
        self._finished = False

    # ---- what the server sees ----

    @property
    def description(self):
        more = f" and {len(self.paths) - 1} more" if len(self.paths) > 1 else ""
        speed = "as fast as the clients take it" if self.speed is None else (
            "" if self.speed == 1 else f"at {self.speed:g}x")
        return f"replay of {self.paths[0]}{more} {speed}".rstrip()

    def txt(self):
        return {"interface": "replay", "channel": self._first_channel or self.channel or "replay"}

    def use_clients(self, gate):
        self._gate = gate

    def open(self):
        if self._batches is None:
            self._start_pass()
            # the first frames: the channel for the advertisement; a file damaged before its
            # first frame is an error before serving
            if not self._fill() and self.failure is not None:
                raise self.failure

    def close(self):
        pass  # files are opened and closed as the pass goes

    def counters(self):
        counts = dict(self._counted)
        for records in self._files:
            for key in counts:
                counts[key] += getattr(records, key)
        filtered = self.record_filter.filtered if self.record_filter is not None else 0
        return SourceCounters(frames=self.served - filtered, remote=counts["remote"],
                              error=counts["error"], invalid=counts["invalid"],
                              filtered=filtered + counts["other_channel"])

    # ---- reading ----

    def _read(self, timeout):
        if self._finished:
            return None
        deadline = time.monotonic() + timeout
        if self._anchor_mono is None and not self._anchor(deadline):
            return b""
        if not self._pending:
            if not self._fill():
                self._finished = True
                return None
            if not self._pending:
                return b""
        if self.speed is None:
            # as fast as the clients take it: the next batch once they have the last one
            if self._gate is not None and not self._gate.wait_drained(
                    max(0.0, deadline - time.monotonic())):
                return b""
            return self._hand_over(len(self._pending))
        while True:
            now_us = self._now_us()
            ready = logfile.due_prefix(self._pending, now_us)
            if ready:
                return self._hand_over(ready)
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            wait = (logfile.first_stamp(self._pending) - now_us) / 1e6
            time.sleep(max(0.0, min(wait, left, MAX_SLEEP)))

    def _hand_over(self, size):
        out = (self._pending_orig if self.original_time else self._pending)[:size]
        self._pending = self._pending[size:]
        self._pending_orig = self._pending_orig[size:]
        self.served += logfile.count_records(out)
        return out

    def _now_us(self):
        return self._anchor_us + int((time.monotonic() - self._anchor_mono) * 1e6)

    def _anchor(self, deadline):
        """Start the timeline now (after the first client, unless --async)."""
        gate = self._gate
        if self.wait_for_client and gate is not None and gate.count() == 0:
            left = deadline - time.monotonic()
            if left <= 0 or not gate.wait_for_client(left):
                return False
        self._anchor_mono = time.monotonic()
        self._anchor_us = int(time.time() * 1e6)
        self._retimer = logfile.Retimer(self._anchor_us, 1.0 if self.speed is None else
                                        self.speed, self.max_gap_us)
        if self._pending_orig:  # read at open, before there was a timeline
            self._pending = self._retimer.retime(self._pending_orig)
        return True

    def _start_pass(self):
        self.passes += 1
        for records in self._files:
            for key in ("remote", "error", "invalid", "other_channel"):
                self._counted[key] += getattr(records, key)
        self._files = [_FileRecords(path, self.channel) for path in self.paths]
        self._batches = self._all_batches()
        self._past_end = False
        self._yielded = 0

    def _all_batches(self):
        for records in self._files:
            for batch in records.batches():
                if self._first_channel is None and records.first_channel:
                    self._first_channel = records.first_channel
                yield batch

    def _fill(self):
        """Take the next batch (cut to --start/--end, filtered, retimed); False at the end."""
        while True:
            try:
                batch = next(self._batches, None)
            except ReplayFileError as exc:
                self.failure = exc
                LOG.debug("replay stopped: %s", exc)
                return False
            if batch is None or self._past_end:
                if not self._yielded:  # a pass with nothing to serve: never loop on it
                    if self.passes == 1 and self.failure is None:
                        self.failure = ReplayFileError(
                            f"{', '.join(self.paths)}: no CAN frames to replay"
                            + self._why_none())
                    return False
                if not self.loop:
                    return False
                self._start_pass()
                if self._retimer is not None:
                    self._retimer.restart()
                continue
            if self._ts0 is None:
                self._ts0 = logfile.first_stamp(batch)
            batch = self._cut(batch)
            if not batch:
                continue
            self._yielded += 1
            self._pending_orig = batch
            self._pending = self._retimer.retime(batch) if self._retimer is not None else b""
            return True

    def _cut(self, batch):
        if self.start_us:
            skip = logfile.due_prefix(batch, self._ts0 + self.start_us - 1)
            batch = batch[skip:]
        if self.end_us is not None and batch:
            keep = logfile.due_prefix(batch, self._ts0 + self.end_us)
            if keep < len(batch):
                self._past_end = True
                batch = batch[:keep]
        return batch

    def _why_none(self):
        counts = self.counters()
        parts = [f"{getattr(counts, key):,} {name}" for key, name in (
            ("remote", "remote frames"), ("error", "error frames"),
            ("filtered", "held back by --channel/--filter")) if getattr(counts, key)]
        return f" (skipped: {', '.join(parts)})" if parts else ""
