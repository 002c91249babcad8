"""``-v``: the frames of a bus as candump lines on stdout."""
import collections
import sys
import threading

from .._fast import logfile
from ..report import plural
from .base import RecordSink


class FramePrinter(RecordSink):
    """``-v``: one candump line per frame on stdout, from its own thread.

    The queue is bounded: when the terminal cannot keep up with the bus, whole batches are
    skipped and counted rather than slowing down the proxy.
    """

    MAX_QUEUED = 2048  # record batches

    @classmethod
    def factories(cls, args):
        """``-v`` prints frames where the command says that is what it means (mock-uds narrates
        its scenario instead: its ``prints_frames`` default is False)."""
        return [lambda bus, server_options: cls()] if args.verbose and args.prints_frames else []

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
        # the batches are whole records: the recorder's compiled candump encoder writes them
        # as they come, with no frame tuple on the way
        encoder = logfile.CandumpEncoder(self._channel)
        while True:
            self._ready.wait()
            self._ready.clear()
            chunks = []
            while self._queue:
                chunks.append(encoder.encode(self._queue.popleft()))
            if chunks:
                try:
                    self._stream.write(b"".join(chunks).decode("utf-8"))
                    self._stream.flush()
                except (BrokenPipeError, ValueError, OSError):
                    return
            if self._stop and not self._queue:
                return
