"""Consumers of records: everything besides the ECUconnect clients that a bus feeds.

Every consumer implements RecordSink. The bus's source thread calls ``put(records)`` for every
batch, in order, right after handing it to the broadcaster, so ``put`` must never block: a
consumer with slow work (a terminal, a disk, a network) does it in its own thread behind a
bounded queue, and counts and says what it had to drop. A feature adds one consumer here
(its class, its options field in server.BusOptions or ServerOptions, one line in
``build_sinks``) instead of touching the pump.
"""
import collections
import logging
import sys
import threading
import time

from ._fast import logfile, wire
from .report import plural


class RecordSink:
    """The interface; the defaults do nothing, so a sink overrides only what it needs."""

    def start(self, bus):
        """Called once before the first batch; ``bus`` is a server.BusInfo."""

    def put(self, records):
        """One batch of records (bytes). Called from the source thread: never block."""
        raise NotImplementedError

    def close(self, timeout):
        """Flush what is queued (for at most ``timeout`` s) and stop."""

    def stats(self):
        """Counters by name, for metrics."""
        return {}

    def summary(self):
        """A short phrase for the status and totals lines ("" when there is nothing to say)."""
        return ""


class FramePrinter(RecordSink):
    """``-v``: one candump line per frame on stdout, from its own thread.

    The queue is bounded: when the terminal cannot keep up with the bus, whole batches are
    skipped and counted rather than slowing down the proxy.
    """

    MAX_QUEUED = 2048  # record batches

    def __init__(self, stream=None):
        self._stream = stream
        self._channel = "can0"
        self._queue = collections.deque(maxlen=self.MAX_QUEUED)
        self._ready = threading.Event()
        self._stop = False
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="frame-printer", daemon=True)

    def start(self, bus):
        self._channel = bus.log_channel
        if self._stream is None:
            self._stream = sys.stdout
        self._thread.start()

    def put(self, records):
        if len(self._queue) == self.MAX_QUEUED:
            self.skipped += 1  # the oldest batch falls out of the deque unprinted
        self._queue.append(records)
        self._ready.set()

    def close(self, timeout):
        self._stop = True
        self._ready.set()
        self._thread.join(timeout)

    def stats(self):
        return {"batches_not_printed": self.skipped}

    def summary(self):
        return f"{plural(self.skipped, 'batch')} not printed" if self.skipped else ""

    def _run(self):
        from .formats import candump_line

        decoder = wire.StreamDecoder()
        while True:
            self._ready.wait()
            self._ready.clear()
            lines = []
            while self._queue:
                for frame in decoder.feed(self._queue.popleft()):
                    lines.append(candump_line(frame, self._channel))
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (BrokenPipeError, ValueError, OSError):
                    return
            if self._stop and not self._queue:
                return


class Recorder(RecordSink):
    """``--record``: a record sink. ``put`` only queues (bounded: when the disk cannot keep up,
    batches are dropped and counted, never waited for); the writing thread does the rest."""

    MAX_QUEUED_BYTES = 32 << 20
    CLOSE_WAIT = 30.0
    metrics_name = "recording"  # cancorder_recording_<stat>{bus} on the metrics page

    def __init__(self, options, clock=time.time, max_queued=None):
        from .logfiles.rotation import check_record_options

        check_record_options(options)
        self.options = options
        self.clock = clock
        self.max_queued = max_queued or self.MAX_QUEUED_BYTES
        self.log = logging.getLogger("cancorder.record")
        self.dropped = 0  # frames dropped at the queue (the disk was too slow)
        self._rotating = None
        self._queue = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._said_slow = False
        self._dead = False
        self._failed = None
        self._in_hand = []  # batches taken from the queue; the first _written are written
        self._written = 0
        self._thread = None

    def start(self, bus):
        from .logfiles.rotation import RotatingLog

        self.log = bus.log
        self._failed = bus.failed
        fields = {"channel": bus.channel, "interface": bus.interface, "port": bus.port}
        self._rotating = RotatingLog(self.options, fields, self.log, self.clock,
                                     log_channel=bus.log_channel)
        self._rotating.open()  # from the moment the source opens, clients or not
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def put(self, records):
        size = len(records)
        with self._lock:
            if self._dead or self._queued + size > self.max_queued:
                full = True
            else:
                full = False
                self._queue.append(records)
                self._queued += size
        if full:
            self.dropped += logfile.count_records(records)
            if not self._said_slow:
                self._said_slow = True
                self.log.warning("recording cannot keep up (the disk is too slow): frames "
                                 "are dropped from the recording and counted; serving goes on")
            return
        self._ready.set()

    def close(self, timeout=5.0):
        self._stopping = True
        self._ready.set()
        if self._thread is not None:
            # what is queued is written and the file finished: worth more than the clients'
            # drain time (the thread is a daemon: it would die with the process)
            self._thread.join(max(timeout, self.CLOSE_WAIT))
            if self._thread.is_alive():
                self.log.warning("the recorder did not finish within "
                                 f"{max(timeout, self.CLOSE_WAIT):g} s: the file being written "
                                 "stays a .part file")

    def _run(self):
        try:
            self._loop()
        except Exception as exc:  # a bug (a full disk is handled inside): never silent
            self._dead = True
            with self._lock:
                for records in self._in_hand[self._written:] + list(self._queue):
                    self.dropped += logfile.count_records(records)
                self._queue.clear()
            if self._failed is not None:
                self._failed("the recorder", exc)  # the server stops with exit 1
            else:
                self.log.error(f"the recorder stopped: {type(exc).__name__}: {exc}")

    def _loop(self):
        rotating = self._rotating
        while True:
            now = self.clock()
            wait = max(0.0, min(rotating.next_deadline(now) - now, 1.0))
            self._ready.wait(wait)
            self._ready.clear()
            while True:
                with self._lock:
                    if not self._queue:
                        break
                    batch = self._in_hand = list(self._queue)
                    self._written = 0
                    self._queue.clear()
                    self._queued = 0
                now = self.clock()
                for records in batch:
                    rotating.write(records, now)
                    self._written += 1
                self._in_hand, self._written = [], 0
            rotating.tick()
            if self._stopping:
                with self._lock:
                    empty = not self._queue
                if empty:
                    break
        rotating.close()

    # ---- reporting ----

    def stats(self):
        """On the metrics page as cancorder_recording_<key>{bus} (several --record of one
        bus add up)."""
        r = self._rotating
        if r is None:
            return {"frames": 0, "lost_frames": self.dropped, "files": 0, "bytes": 0,
                    "errors": 0}
        return {"frames": r.frames, "lost_frames": r.lost + self.dropped,
                "files": r.file_count, "bytes": r.bytes_written, "errors": r.errors}

    def summary(self):
        r = self._rotating
        if r is None:
            return "recorded nothing"
        lost = r.lost + self.dropped
        text = f"recorded {plural(r.frames, 'frame')} to {r.describe()}"
        if lost:
            text += f"; {plural(lost, 'frame')} could not be recorded"
        for note in r.notes():
            text += f"; {note}"
        return text


def build_sinks(bus_options, server_options, bus):
    """The consumers one bus feeds, from its options."""
    sinks = []
    print_frames = bus_options.print_frames
    if print_frames if print_frames is not None else server_options.print_frames:
        sinks.append(FramePrinter())
    sinks.extend(Recorder(options) for options in bus_options.record)
    if bus_options.socketcand is not None:
        from .socketcand import SocketcandServer

        sinks.append(SocketcandServer.from_options(bus_options, server_options, bus))
    if bus_options.mqtt is not None:
        from .mqtt.publisher import MqttPublisher

        sinks.append(MqttPublisher.from_options(bus_options.mqtt))
    return sinks
