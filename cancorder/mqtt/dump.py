"""``cancorder dump mqtt://HOST/TOPIC``: the Dump client fed by a subscription instead of a
TCP stream. Filters, --count, --duration, --stats, every format and -o work as for a logger;
each frame is shown with the logger and channel it came from (the topic levels the wildcards
matched, e.g. ``truck42/can0``).
"""
import collections
import select
import threading
import time

from ..client import Dump
from ..errors import MqttError
from ..protocol import RETRY_FIRST, RETRY_MAX
from .subscriber import Subscriber
from ..report import plural


class _Labelled:
    """Prefix every line of a formatter's text with the frame's logger (pretty format)."""

    def __init__(self, formatter):
        self.formatter = formatter
        self.label = ""

    def format(self, frames):
        prefix = self.label + "  "
        return "".join(prefix + line for line in self.formatter.format(frames).splitlines(True))

    def finish(self):
        return self.formatter.finish()


class MqttDump(Dump):
    def __init__(self, settings, reporter, formatter=None, **kwargs):
        from ..formats import PrettyFormatter

        if isinstance(formatter, PrettyFormatter):
            formatter = _Labelled(formatter)
        super().__init__(str(settings), reporter, formatter=formatter, **kwargs)
        self.settings = settings
        self._batches = collections.deque()
        self._lock = threading.Lock()
        self._subscriber = None

    def _connect_and_receive(self):
        rep = self.reporter
        delay = RETRY_FIRST
        while True:
            subscriber = Subscriber(self.settings, self._on_batch, on_gap=self._on_gap,
                                    on_problem=rep.warning, role="dump",
                                    on_restart=self._on_restart)
            try:
                subscriber.connect(self.timeout)
                break
            except MqttError as exc:
                if not self.reconnect:
                    raise
                rep.logger.warning(f"{exc}; retrying with backoff (--reconnect)",
                                   extra={"rate_key": ("mqtt", str(exc)), "rate_interval": 60.0})
                if self._wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX)
        self._subscriber = subscriber
        try:
            if self.recording:
                self.recording.open()
            rep.info(f"subscribed to {self.settings.where}/{self.settings.topic}")
            if self.duration:
                self._deadline = time.monotonic() + self.duration
            self._receive_batches()
        finally:
            subscriber.close()
            tracker = subscriber.tracker
            if tracker.duplicates or tracker.missing or tracker.new_sessions:
                restarts = (f", {plural(tracker.new_sessions, 'logger restart')}"
                            if tracker.new_sessions else "")
                rep.info(f"MQTT: {plural(tracker.duplicates, 'duplicate batch')} removed, "
                         f"{plural(tracker.missing, 'frame')} missing in all{restarts}")

    def _receive_batches(self):
        wake = self._wake_r
        while True:
            select.select([wake], [], [], self._next_timeout())
            self._drain_wake()
            with self._lock:
                batches = list(self._batches)
                self._batches.clear()
            for label, frames in batches:
                self._set_label(label)
                if self._deliver(frames, label):
                    self.reason = f"--count {self.count}"
                    return
            if self._over():
                return

    def _set_label(self, label):
        formatter = self.formatter
        if isinstance(formatter, _Labelled):
            formatter.label = label
        elif hasattr(formatter, "channel"):
            formatter.channel = label
        if self.recording:
            self.recording.source_channel = label  # each logger its own channel in the files

    # ---- from the subscriber's thread ----

    def _on_batch(self, label, batch, records):
        with self._lock:
            self._batches.append((label, batch.records))
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def _on_gap(self, label, missing):
        self.reporter.warning(f"{label}: {plural(missing, 'frame')} missing")
        dropped = getattr(self.stats, "logger_dropped", None)  # dump --check names it
        if dropped is not None:
            dropped(f"{label}: {plural(missing, 'frame')} missing in the MQTT sequence numbers "
                    "(not published, or lost on the way)", missing)

    def _on_restart(self, label):
        self.reporter.warning(f"{label}: the logger restarted (a new session): frames its last "
                              "session did not publish cannot be counted as missing")
