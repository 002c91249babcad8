"""A remote bus read back from an MQTT broker (``cancorder relay mqtt://HOST/TOPIC``).

The records of each new batch are handed on exactly as the remote logger packed them, so a
local client sees the remote frames with their own timestamps. Duplicates (QoS 1) are removed
by sequence number and gaps logged; the remote logger's retained status gives the Zeroconf TXT
keys (interface, channel, bitrate). paho reconnects by itself and the broker keeps what is
published meanwhile (a persistent session), so a lost broker is a pause, not an error.
"""
import collections
import logging
import threading

from ..errors import MqttError, SourceInitError, UsageError
from ..mqtt.subscriber import Subscriber
from .base import Source, SourceCounters
from ..report import plural

log = logging.getLogger("cancorder.source")
STATUS_WAIT = 1.0  # s to wait for the remote logger's retained status before serving
QUEUE_LIMIT = 64 << 20  # bytes of records not yet read (the server reads every 0.1 s at most)


class MqttRelaySource(Source):
    def __init__(self, settings):
        super().__init__()
        if any(level in ("+", "#") for level in settings.topic.split("/")):
            raise UsageError(f"relay serves one remote bus: give its topic without wildcards "
                             f"(not '{settings.topic}'); `cancorder dump "
                             f"{settings.where}/{settings.topic}` shows them all")
        self.settings = settings
        self._subscriber = None
        self._chunks = collections.deque()
        self._queued = 0
        self._ready = threading.Condition()
        self._status = {}
        self._status_seen = threading.Event()
        self.frames = 0
        self.dropped = 0

    @property
    def description(self):
        return f"MQTT relay of {self.settings.where}/{self.settings.topic}"

    def txt(self):
        remote = self._status
        txt = {"interface": "mqtt", "channel": remote.get("channel") or self.settings.topic,
               "relay": f"{self.settings.where}/{self.settings.topic}"}
        for key in ("bitrate", "system"):
            if remote.get(key):
                txt["remote_" + key if key == "system" else key] = str(remote[key])
        return txt

    def open(self):
        if self._subscriber is not None:
            return  # paho reconnects by itself: the subscription outlives a lost broker
        subscriber = Subscriber(self.settings, self._on_batch, on_gap=self._on_gap,
                                on_status=self._on_status, on_problem=log.warning,
                                role="relay", status=True)
        try:
            subscriber.connect()
        except MqttError as exc:
            raise SourceInitError(str(exc)) from None
        self._subscriber = subscriber
        self._status_seen.wait(STATUS_WAIT)

    def _read(self, timeout):
        with self._ready:
            if not self._chunks:
                self._ready.wait(timeout)
            chunks = list(self._chunks)
            self._chunks.clear()
            self._queued = 0
        return b"".join(chunks)

    def close(self):
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.close()

    def counters(self):
        # duplicates removed and frames missing are logged as they happen
        return SourceCounters(frames=self.frames)

    # ---- the subscriber's thread ----

    def _on_batch(self, label, batch, records):
        with self._ready:
            if self._queued + len(records) > QUEUE_LIMIT:
                self.dropped += batch.count
                return
            self._chunks.append(bytes(records))
            self._queued += len(records)
            self.frames += batch.count
            self._ready.notify()

    def _on_gap(self, label, missing):
        log.warning(f"{label}: {plural(missing, 'frame')} missing")

    def _on_status(self, label, status):
        if isinstance(status, dict):
            self._status = status
            self._status_seen.set()
