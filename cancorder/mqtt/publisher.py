"""The MQTT publisher: a RecordSink that batches records, keeps them in the outbox until the
broker acknowledges them, and publishes them in order (QoS 1) from its own thread.

    put(records) (source thread) --bounded queue--> publisher thread:
        batches (every 50 ms or 64 KB) --> outbox (DiskSpool or MemoryOutbox) --> paho, QoS 1
        PUBACK --> outbox.commit;  connection lost --> outbox.rewind, reconnect with backoff

The thread owns the paho client and drives it with its own select (paho's loop_read,
loop_write, loop_misc): no lock is shared with paho, and a fresh client per connection means
nothing paho queued on a dead connection is re-sent out of order. The TCP clients never wait
for any of this: ``put`` only appends to a queue (bounded: beyond it, frames are counted and
dropped, and said once).
"""
import collections
import json
import os
import select
import threading
import time

from .._fast import wire
from ..errors import CancorderError
from ..sinks.base import RecordSink
from . import payload as mqtt_payload
from .connection import CONNECT_TIMEOUT
from .spool import DiskSpool, MemoryOutbox
from ..report import plural

BATCH_INTERVAL = 0.05
BATCH_BYTES = 64 << 10
WINDOW = 32  # batches published and not yet acknowledged
QUEUE_LIMIT = 64 << 20  # bytes of records waiting for the publisher thread
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
DROP_LOG_INTERVAL = 5.0
DEFAULT_SPOOL_SIZE = 1 << 30
LOST = "lost the MQTT broker"


class MqttPublisher(RecordSink):
    metrics_name = "mqtt"  # cancorder_mqtt_<stat>{bus} on the metrics page

    def __init__(self, settings, spool_dir=None, spool_size=DEFAULT_SPOOL_SIZE, session=None,
                 batch_interval=BATCH_INTERVAL, batch_bytes=BATCH_BYTES, signal_topics=None):
        self.settings = settings
        self.signal_topics = signal_topics  # mqtt.signals.SignalTopics: --mqtt-signals
        self._failed = None  # BusInfo.failed: a crash of the publishing thread stops the server
        self.spool_dir = spool_dir
        self.spool_size = spool_size
        self.session = session if session is not None else int.from_bytes(os.urandom(8), "big")
        self.batch_interval = batch_interval
        self.batch_bytes = batch_bytes
        self.topic = self.status_topic = None
        self._log = None
        self._txt = {}
        self._outbox = None
        # source thread -> publisher thread
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._queued = 0
        self._queue_dropped = 0
        self._said_behind = False
        self._armed = False  # set by the publisher thread under _lock: see put()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._stop_deadline = None
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        # publisher thread only
        self._pending = bytearray()
        self._pending_since = None
        self._sequence = 0
        self._frame_number = 0
        self._client = None
        self._connected = False
        self._connect_started = 0.0
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._problem = None
        self._last_problem = None  # said once; said again only after things worked again
        self._refused = False  # the last problem was the broker refusing our topic
        self._said = set()  # problems said since publishing last worked
        self._inflight = collections.deque()  # [mid, token, frames, acked]
        self._by_mid = {}
        self._drops_logged = (0, 0.0)
        self.published_batches = 0
        self.published_frames = 0
        self.connect_attempts = 0  # how often it tried the broker (retries show here)
        self._stats = {}

    # ---- RecordSink ----

    def start(self, bus):
        self._log = bus.log
        self._failed = getattr(bus, "failed", None)
        self._txt = dict(bus.txt)
        self.topic = self.settings.topic_for(self._txt.get("system"), bus.channel,
                                             bus.interface)
        self.status_topic = self.topic + "/status"
        if self.signal_topics is not None:
            self.signal_topics.start(self.topic, self._txt)
        if self.spool_dir:
            self._outbox = DiskSpool(self.spool_dir, self.spool_size, self._log)
        else:
            self._outbox = MemoryOutbox()
        self._update_stats()
        self._thread.start()

    def put(self, records):
        with self._lock:
            if self._queued + len(records) > QUEUE_LIMIT:
                self._queue_dropped += wire.take_records(records, 0, len(records))[1]
                first = not self._said_behind
                self._said_behind = True
                wake = False
            else:
                was_idle = not self._queue
                self._queue.append(records)
                self._queued += len(records)
                # armed: the thread holds pending bytes and wakes within batch_interval by
                # itself, so a batch finding the queue empty need not wake it (it used to: a
                # pipe write and a thread wake-up for every batch of the source, ~1,000 a second)
                wake = (was_idle and not self._armed) or self._queued >= self.batch_bytes
                first = False
        if first:
            self._log.warning("MQTT publisher falls behind the bus: frames are dropped (the "
                              "TCP clients are not affected)")
        if wake:
            self._wake()

    def close(self, timeout=3.0):
        """Publish what is waiting for up to ``timeout`` s, say offline, keep the rest spooled."""
        if not self._thread.is_alive():
            return
        self._stop_deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake()
        self._thread.join(timeout + CONNECT_TIMEOUT + 2.0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def stats(self):
        return dict(self._stats)

    def summary(self):
        s = self._stats
        waiting = s.get("waiting_batches", 0)
        text = (f"MQTT {self.settings.where}/{self.topic}: {s.get('published_frames', 0):,} "
                f"frames published in {plural(s.get('published_batches', 0), 'batch')}")
        if waiting:
            text += f", {plural(waiting, 'batch')} left in {self._outbox.where}"
        dropped = s.get("dropped_frames", 0) + s.get("queue_dropped_frames", 0)
        if dropped:
            text += f", {plural(dropped, 'frame')} dropped"
        return text

    # ---- the thread ----

    def _run(self):
        try:
            while True:
                now = time.monotonic()
                self._batch(now)
                if self._stopping:
                    self._batch(now, flush=True)
                    if (not self._connected or self._outbox.batches == 0
                            or now >= self._stop_deadline):
                        break
                self._service(now)
                self._update_stats()
                self._wait(self._timeout(now))
            self._say_offline()
        except CancorderError as exc:
            self._log.error(f"MQTT publishing stopped: {exc}")
        except Exception as exc:  # a bug: the whole process stops with exit 1
            if self._failed is not None:
                self._failed("MQTT publishing", exc)
            else:
                self._log.error(f"MQTT publishing stopped: {type(exc).__name__}: {exc}")
        finally:
            self._drop_client()
            if self._outbox is not None:
                self._update_stats()
                self._outbox.close()

    def _batch(self, now, flush=False):
        """Queue -> pending bytes -> batches of at most batch_bytes, at most every interval."""
        with self._lock:
            chunks = list(self._queue)
            self._queue.clear()
            self._queued = 0
        if chunks and self.signal_topics is not None:
            self._publish_signals(chunks, now)
        if chunks:
            if not self._pending:
                self._pending_since = now
            self._pending += b"".join(chunks)
        pending = self._pending
        start = 0
        while len(pending) - start >= self.batch_bytes or (
                len(pending) > start and (flush or now - self._pending_since >= self.batch_interval)):
            end, count = wire.take_records(pending, start, self.batch_bytes)
            if not count:
                break
            self._sequence += 1
            data = mqtt_payload.encode(self.session, self._sequence, self._frame_number, count,
                                       bytes(pending[start:end]))
            self._frame_number += count
            dropped = self._outbox.append(data, count)  # a full disk drops, counts, goes on
            if dropped[0]:
                self._say_dropped()
            start = end
        if start:
            del pending[:start]
            self._pending_since = now
        with self._lock:
            self._armed = bool(pending)  # _timeout wakes the thread within batch_interval
            missed = bool(self._queue) and not pending
        if missed:  # put while still armed, and nothing pending now: nobody else will wake us
            self._wake()

    def _publish_signals(self, chunks, now):
        """--mqtt-signals: the due messages' values, live (QoS 0, dropped while offline)."""
        due = self.signal_topics.due(b"".join(chunks), now)
        if self._client is None or not self._connected:
            return
        for topic, payload in due:
            self._client.publish(topic, payload, qos=0)

    def _timeout(self, now):
        timeouts = [1.0]
        if self._pending:
            timeouts.append(self._pending_since + self.batch_interval - now)
        if self._client is None:
            timeouts.append(self._retry_at - now)
        if self._stopping:
            timeouts.append(0.05)
        return max(0.0, min(timeouts))

    def _service(self, now):
        client = self._client
        if client is None:
            if now >= self._retry_at:
                self._connect()
            return
        if not self._connected:
            if self._problem is not None and client.socket() is None:
                self._fail(self._problem)  # closed during connect itself (a TLS alert)
                return
            if now - self._connect_started > CONNECT_TIMEOUT:
                self._fail(self.settings.no_connack())
            return
        from paho.mqtt.client import MQTT_ERR_SUCCESS

        while len(self._inflight) < WINDOW:
            item = self._outbox.next_unsent()
            if item is None:
                break
            token, data, frames = item
            info = client.publish(self.topic, data, qos=1)
            if info.rc != MQTT_ERR_SUCCESS:
                self._fail(f"{LOST} {self.settings.where} (publishing failed: {info.rc})")
                return
            entry = [info.mid, token, frames, False]
            self._inflight.append(entry)
            self._by_mid[info.mid] = entry

    def _wait(self, timeout):
        client = self._client
        sock = client.socket() if client is not None else None
        readable = [self._wake_r]
        writable = []
        if sock is not None:
            readable.append(sock)
            if client.want_write():
                writable.append(sock)
            if getattr(sock, "pending", None) and sock.pending():
                timeout = 0.0  # TLS: bytes already decrypted wait in the SSL object
        try:
            ready_r, ready_w, _ = select.select(readable, writable, [], timeout)
        except (OSError, ValueError):  # the socket was closed under us
            ready_r, ready_w = [], []
        if self._wake_r in ready_r:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if sock is None:
            return
        from paho.mqtt.client import MQTT_ERR_SUCCESS

        rc = MQTT_ERR_SUCCESS
        if sock in ready_r or (getattr(sock, "pending", None) and sock.pending()):
            rc = client.loop_read(max_packets=WINDOW + 4)
        if rc == MQTT_ERR_SUCCESS and (sock in ready_w or client.want_write()):
            rc = client.loop_write()
        if rc == MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        if rc != MQTT_ERR_SUCCESS and self._problem is None:
            self._problem = f"{LOST} {self.settings.where} (connection closed)"
        if self._problem is not None:
            self._fail(self._problem)

    # ---- connection ----

    def _connect(self):
        self.connect_attempts += 1
        client = self.settings.client(f"cc-{self.session:016x}",
                                      will=(self.status_topic, self._status(False)))
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        self._problem = None
        try:
            self.settings.connect(client)
        except Exception as exc:
            self._client = client
            self._fail(self.settings.connect_failure(exc))
            return
        self._client = client
        self._connect_started = time.monotonic()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._problem = self.settings.refusal(reason_code)
            return
        self._connected = True
        client.publish(self.status_topic, self._status(True), qos=1, retain=True)
        if self.signal_topics is not None and self.signal_topics.homeassistant:
            for topic, config in self.signal_topics.discovery():
                client.publish(topic, config, qos=1, retain=True)
        if self._last_problem is None and self.published_batches == 0:
            self._log.info(f"MQTT: publishing to {self.settings.where}/{self.topic}")
        elif self._last_problem is not None and not self._refused:
            self._recovered()
        # after a refused publish, only an acknowledged batch shows that it works again

    def _recovered(self):
        self._log.info(f"MQTT: reconnected to {self.settings.where}/{self.topic}; "
                       f"{self._outbox.batches:,} waiting batches go first")
        self._last_problem = None
        self._said.clear()
        self._refused = False
        self._backoff = BACKOFF_FIRST

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        entry = self._by_mid.pop(mid, None)
        if entry is None:
            return  # the status message
        if reason_code is not None and reason_code.is_failure:
            self._refused = True
            if self._problem is None:
                self._problem = (f"MQTT broker {self.settings.where} refused to publish on "
                                 f"'{self.topic}': {reason_code} (check the broker's ACL for "
                                 "this user)")
            return
        entry[3] = True
        if self._last_problem is not None:
            self._recovered()
        inflight = self._inflight
        while inflight and inflight[0][3]:
            _, token, frames, _ = inflight.popleft()
            self._outbox.commit(token)
            self.published_batches += 1
            self.published_frames += frames

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self._problem is None:
            self._problem = (f"{LOST} {self.settings.where} ({reason_code})"
                             if self._connected else self.settings.closed_early(reason_code))

    def _fail(self, message):
        """Drop the connection; everything unacknowledged goes out again after a backoff."""
        self._drop_client()
        self._outbox.rewind()
        # each problem is said once until publishing works again; a dropped connection is
        # only news when nothing else was wrong (it follows every refusal)
        lost = message.startswith(LOST)
        if message not in self._said and not (lost and self._said):
            self._log.warning(f"{message}; TCP serving goes on, batches wait in "
                              f"{self._outbox.where}, retrying with backoff")
            self._said.add(message)
        self._last_problem = message
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _drop_client(self):
        client, self._client = self._client, None
        self._connected = False
        self._problem = None
        self._inflight.clear()
        self._by_mid.clear()
        if client is None:
            return
        try:
            sock = client.socket()
            if sock is not None:
                sock.close()
        except Exception:
            pass

    def _say_offline(self):
        """A clean stop: publish offline ourselves (the will is only for a vanished logger)."""
        client = self._client
        if client is None or not self._connected:
            return
        if self.signal_topics is not None and self.signal_topics.homeassistant:
            # Home Assistant removes the entities: a logger stopped on purpose is gone
            for topic, empty in self.signal_topics.removals():
                client.publish(topic, empty, qos=1, retain=True)
        info = client.publish(self.status_topic, self._status(False), qos=1, retain=True)
        deadline = time.monotonic() + 1.0
        while not info.is_published() and time.monotonic() < deadline and self._client:
            self._wait(0.05)
        if self._client is not None:
            client.disconnect()
            client.loop_write()

    def _status(self, online):
        status = {"online": online, "session": f"{self.session:016x}", "topic": self.topic}
        status.update(self._txt)
        return json.dumps(status, sort_keys=True)

    # ---- accounting ----

    def _say_dropped(self):
        outbox = self._outbox
        logged_frames, logged_at = self._drops_logged
        now = time.monotonic()
        if now - logged_at < DROP_LOG_INTERVAL:
            return
        self._log.warning(f"MQTT outbox full ({outbox.where}, {outbox.max_bytes:,} bytes): "
                          f"dropped the oldest batches, {outbox.dropped_frames - logged_frames:,} "
                          f"frames now, {outbox.dropped_frames:,} ({outbox.dropped_batches:,} "
                          "batches) in all")
        self._drops_logged = (outbox.dropped_frames, now)

    def _update_stats(self):
        outbox = self._outbox
        self._stats = {
            "connected": int(self._connected),
            "connect_attempts": self.connect_attempts,
            "published_batches": self.published_batches,
            "published_frames": self.published_frames,
            "waiting_batches": outbox.batches,
            "spool_bytes": outbox.bytes,
            "dropped_batches": outbox.dropped_batches,
            "dropped_frames": outbox.dropped_frames,
            "queue_dropped_frames": self._queue_dropped,
        }

    def _wake(self):
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass
