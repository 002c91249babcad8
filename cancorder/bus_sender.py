"""``cancorder gen -i IFACE -c CHANNEL``: the generator's frames onto a real bus through the
adapter's transmit path (the same sources ``serve`` reads with: SocketCAN and any python-can
interface, cancorder's own SLCAN source), at their instants.

An adapter that vanishes (unplugged, its interface down) is reopened with backoff, as the
server reopens a source; the frame that failed is sent again once it is back, and the
schedule resumes from there (the rate stays the rate: the outage's frames come later, none
is skipped). A frame the adapter took just before it vanished may so go out twice.

Where the source sends records in batches (``sends_records``: SocketCAN, one sendmmsg per
batch), each batch due goes out in one call, and what the adapter had not taken when it
vanished goes out once it is back; elsewhere frame by frame through ``send``. A paced run
wakes up at most once a millisecond (``Timeline.pause``) and sends what fell due meanwhile.
"""
import logging
import threading
import time

from ._fast import wire
from .errors import SourceError
from .protocol import RETRY_FIRST, RETRY_MAX
from .signals import stop_on_signals

log = logging.getLogger("cancorder")
#: frames made in one go at most (the schedule is checked between them)
BATCH = 256
#: seconds a batched send may wait for a full transmit queue before the stop is looked at
SEND_WAIT = 0.2


class BusSender:
    def __init__(self, timeline, source, live=None):
        self.timeline = timeline
        self.source = source
        self.live = live  # generator.LiveStats, or None
        self.sent = 0
        self.outages = 0
        self._stop = threading.Event()
        self._reason = None
        self._up = threading.Event()
        self._reading = threading.Lock()
        self._reader = None
        self._lost = None  # what the reader saw fail

    def stop(self, reason="stopped"):
        if self._reason is None:
            self._reason = reason
        self._stop.set()

    def run(self):
        """Open (a SourceError here is the command's error), send the count (or until a
        signal), close; returns why it stopped."""
        self.source.open()
        self._up.set()
        self._reader = threading.Thread(target=self._drain, name="gen-reader", daemon=True)
        self._reader.start()
        timeline = self.timeline
        try:
            with stop_on_signals(self.stop):
                timeline.start()
                while not self._stop.is_set() and not timeline.finished:
                    n = timeline.due_now(BATCH)
                    if n == 0:
                        self._stop.wait(min(0.2, timeline.pause()))
                        continue
                    if self.source.sends_records:
                        self._send_records(timeline.records(n))
                        if self.live is not None:
                            self.live.tick(self.sent)
                        continue
                    for frame in timeline.frames(n):
                        if not self._send(frame):
                            break
                        if self.live is not None:
                            self.live.tick(self.sent)
        finally:
            self._stop.set()
            self._up.clear()
            with self._reading:
                self.source.close()
            self._reader.join(2)
        return self._reason or "--count reached"

    def _send(self, frame):
        """Send one frame, through outages; False when stopped first."""
        while not self._stop.is_set():
            try:
                self.source.send(*frame)
                if not self._up.is_set():
                    # the adapter failed under the reader while this frame was out: it may
                    # not have taken it (an SLCAN send takes silence for a yes)
                    raise self._lost or SourceError(f"{self.source.description} failed")
            except SourceError as exc:
                if not self._reopen(exc):
                    return False
                continue
            self.sent += 1
            return True
        return False

    def _send_records(self, records):
        """Send a batch of records, through outages and full queues; False when stopped
        first."""
        while records:
            if self._stop.is_set():
                return False
            try:
                taken = self.source.send_records(records, SEND_WAIT)
            except SourceError as exc:
                if not self._reopen(exc):
                    return False
                continue
            # what the kernel took is sent (no silence taken for a yes, unlike _send's case)
            self.sent += wire.take_records(records, 0, taken)[1]
            records = records[taken:]
            if not self._up.is_set():  # the reader saw the adapter fail
                if not self._reopen(self._lost or
                                    SourceError(f"{self.source.description} failed")):
                    return False
        return True

    def _reopen(self, exc):
        self.outages += 1
        log.warning(f"{exc}; reopening it (the frame is sent again once it is back)")
        self._up.clear()
        with self._reading:
            self.source.close()
            delay = RETRY_FIRST
            while not self._stop.wait(delay):
                try:
                    self.source.open()
                except SourceError as again:
                    log.info(f"still waiting: {again}",
                             extra={"rate_key": ("gen reopen", str(again), self.outages),
                                    "rate_interval": 60.0})
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                log.info(f"{self.source.description} is back; sending again")
                self.timeline.resume()
                self._lost = None
                self._up.set()
                return True
        return False

    def _drain(self):
        """Read what the adapter says (an SLCAN adapter's transmit answers are read here) and
        drop the frames: a sender has no use for them."""
        while not self._stop.is_set():
            if not self._up.wait(0.1):
                continue
            with self._reading:
                if not self._up.is_set():
                    continue
                try:
                    self.source.read(0.05)
                except SourceError as exc:
                    self._lost = exc
                    self._up.clear()  # the sender finds out on its next frame and reopens
                except Exception:  # a closed port mid-read at a stop
                    if not self._stop.is_set():
                        raise
            time.sleep(0)  # let the sender take the lock between reads
