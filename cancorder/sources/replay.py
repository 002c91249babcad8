"""Frames from log files (``cancorder replay``), released with their recorded spacing.

Any log python-can reads is turned into wire records by ``logfiles.readers.LogRecords`` (candump
``.log``/``.log.gz`` by the compiled parser, with no python-can Message per frame, the others
through python-can's reader for the extension; the same reader serves ``dump FILE``). Each batch is mapped onto a timeline that starts when the replay
starts (``Retimer``: the recorded gaps, divided by the speed, long silences shortened to
``max_gap``), and a record is handed over once its instant on that timeline has come. The
records carry that instant as their timestamp, or their recorded one with ``original_time``.

A damaged file (a line that is not a frame, a truncated gzip or BLF) ends the replay after the
frames before the damage: ``failure`` then holds the error that names the file and where.
"""
import logging
import time

from .._fast import logfile
from ..errors import LogFileError
from ..logfiles.readers import LogRecords
from .base import Source, SourceCounters, first_client

LOG = logging.getLogger("cancorder.source")
MAX_SLEEP = 0.05
#: Paced frames closer together than this go out together: the source wakes at most once per
#: GATHER (half the core's 1 ms window, which coalesces a busy link anyway). Waking for every
#: frame cost 24 % of a core at 10,000 frames/s (measured: 0.5 ms gathers take 6.5 %); a frame
#: is then at most GATHER late, and a lone frame after a pause is not delayed.
GATHER = 0.0005


class ReplaySource(Source):
    """Serves the frames of ``paths`` in order (one timeline), paced by their timestamps.

    ``speed``: a factor, or None for as fast as the clients take it; ``start``/``end``: offsets
    in seconds from the first frame; ``max_gap``: silences longer than this many seconds are
    shortened to it; ``channel``: one channel of a multi-channel file (the name in a .log,
    the number in an .asc/.blf); ``record_filter``: --filter (applied by Source.read);
    ``wait_for_client``: start when the first client connects (re-anchored then). At the end
    ``read`` returns None; a damaged file ends it early, with ``failure`` set, and so does a
    file with no frame to serve unless ``empty_ok``. ``by_channel``: every ``read`` returns
    the records of one channel, named in ``read_channel`` (the file's label; ``dump FILE``
    shows channels apart).
    """

    def __init__(self, paths, speed=1.0, loop=False, start=None, end=None, max_gap=None,
                 channel=None, record_filter=None, original_time=False, wait_for_client=True,
                 by_channel=False, empty_ok=False):
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
        self.by_channel = by_channel
        self.empty_ok = empty_ok
        self.read_channel = None  # the channel of what the last read returned (by_channel)
        self.failure = None  # the LogFileError that ended the replay early
        self.passes = 0  # times the files were played through
        self.served = 0  # frames handed over (before --filter)
        self._gate = None
        self._files = []  # the LogRecords of the current pass
        self._batches = None
        self._ts0 = None  # the recorded time of the first frame
        self._pending = b""  # records of the current batch (retimed)...
        self._pending_orig = b""
        self._handed_at = -1.0  # monotonic time of the last hand-over
        self._taken = 0  # ...of which the first _taken bytes are handed over (never copied
        # again: slicing off the rest at every hand-over cost a copy of the batch per frame)
        self._pending_channel = None
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
        if self._taken >= len(self._pending):
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
            ready = logfile.due_prefix(self._pending, now_us, self._taken)
            if ready > self._taken:
                return self._hand_over(ready)
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            wait = max((logfile.first_stamp(self._pending, self._taken) - now_us) / 1e6,
                       self._handed_at + GATHER - time.monotonic())
            time.sleep(max(0.0, min(wait, left, MAX_SLEEP)))

    def _hand_over(self, end):
        """The records of the current batch up to byte ``end``."""
        out = (self._pending_orig if self.original_time else self._pending)[self._taken:end]
        self._taken = end
        self._handed_at = time.monotonic()
        self.served += logfile.count_records(out)
        self.read_channel = self._pending_channel
        return out

    def _now_us(self):
        return self._anchor_us + int((time.monotonic() - self._anchor_mono) * 1e6)

    def _anchor(self, deadline):
        """Start the timeline now (after the first client, unless --async)."""
        if self.wait_for_client and not first_client(self._gate, deadline):
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
        self._files = [LogRecords(path, self.channel) for path in self.paths]
        self._batches = self._all_batches()
        self._past_end = False
        self._yielded = 0

    def _all_batches(self):
        for records in self._files:
            for channel, batch in records.batches(self.by_channel):
                if self._first_channel is None and records.first_channel:
                    self._first_channel = records.first_channel
                yield channel, batch

    def _fill(self):
        """Take the next batch (cut to --start/--end, filtered, retimed); False at the end."""
        while True:
            try:
                channel, batch = next(self._batches, (None, None))
            except LogFileError as exc:
                self.failure = exc
                LOG.debug("replay stopped: %s", exc)
                return False
            if batch is None or self._past_end:
                if not self._yielded:  # a pass with nothing to serve: never loop on it
                    if self.passes == 1 and self.failure is None and not self.empty_ok:
                        self.failure = LogFileError(
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
            self._pending_channel = channel
            self._pending_orig = batch
            self._taken = 0
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
        if self.start_us and self._ts0 is not None:
            parts.append(f"none from --start {self.start_us / 1e6:g} s on")
        return f" (skipped: {', '.join(parts)})" if parts else ""
