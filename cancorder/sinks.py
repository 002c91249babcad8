"""Consumers of records: everything besides the ECUconnect clients that a bus feeds.

Every consumer implements RecordSink. The bus's source thread calls ``put(records)`` for every
batch, in order, right after handing it to the broadcaster, so ``put`` must never block: a
consumer with slow work (a terminal, a disk, a network) does it in its own thread behind a
bounded queue, and counts and says what it had to drop. A feature adds one consumer here
(its class, its options field in server.BusOptions or ServerOptions, one line in
``build_sinks``) instead of touching the pump.
"""
import collections
import sys
import threading

from ._fast import wire


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
        return f"{self.skipped:,} batches not printed" if self.skipped else ""

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


def build_sinks(bus_options, server_options, bus):
    """The consumers one bus feeds, from its options."""
    sinks = []
    print_frames = bus_options.print_frames
    if print_frames if print_frames is not None else server_options.print_frames:
        sinks.append(FramePrinter())
    if bus_options.socketcand is not None:
        from .socketcand import SocketcandServer

        sinks.append(SocketcandServer.from_options(bus_options, server_options, bus))
    if bus_options.mqtt is not None:
        from .mqtt.publisher import MqttPublisher

        sinks.append(MqttPublisher.from_options(bus_options.mqtt))
    return sinks
