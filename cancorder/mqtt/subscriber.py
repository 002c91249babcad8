"""Reading cancorder batches back from a broker: for ``dump mqtt://...`` and ``relay``.

The subscription is QoS 1 in a session the broker keeps while the subscriber is away (MQTT 5
session expiry), a broker restart included when it persists: nothing published meanwhile is
lost. QoS 1 may deliver a batch twice (after a reconnect): SequenceTracker drops what it has
seen, and a jump in frame numbers is reported as frames missing.
"""
import json
import os
import threading

from ..errors import MqttError, PayloadError
from . import payload as mqtt_payload
from .connection import CONNECT_TIMEOUT

SESSION_EXPIRY = 3600  # s the broker keeps our subscription and queued batches while we are away
RECEIVE_MAXIMUM = 65535  # unacknowledged messages (manual_ack) the broker may send: MQTT's most
STATUS_SUFFIX = "/status"


def label_for(topic_filter):
    """A function topic -> the short name shown per frame: the levels the wildcards matched
    (``cancorder/+/+`` shows ``truck42/can0``), or the last two levels of a plain topic."""
    levels = topic_filter.split("/")
    wild = next((i for i, level in enumerate(levels) if level in ("+", "#")), None)
    skip = wild if wild is not None else max(0, len(levels) - 2)

    def label(topic):
        return "/".join(topic.split("/")[skip:]) or topic

    return label


class Subscriber:
    """One subscribing client; callbacks run in paho's network thread.

    ``on_batch(label, batch, records)``: a new batch (frames decoded and validated in
    ``batch.records``, the raw records bytes in ``records``), never a duplicate.
    ``on_gap(label, missing)``: frames lost before a batch. ``on_restart(label)``: the
    first batch of a new session on a topic (its logger restarted). ``on_status(label,
    dict)``: a logger's retained status. ``on_problem(text)``: a bad message or a lost broker,
    one line.

    ``share_group`` subscribes as an MQTT 5 shared subscription (``$share/GROUP/TOPIC``: the
    broker hands each message to one member of the group). ``manual_ack`` (the archive): every
    batch is handed on, a redelivery too (under a shared subscription no member sees a
    logger's whole sequence, so none can tell duplicates or gaps), as
    ``on_batch(label, batch, records, acknowledge, redelivered)``; the broker counts it
    delivered only once ``acknowledge()`` is called (``redelivered``: the broker sent it
    before, and was not told it arrived). ``client_id``: a fixed one resumes the same session (and what
    the broker kept for it) after a restart.

    ``adopting`` (archive/takeover.py): the session is a dead group member's; it is unsubscribed
    at once (the broker still sends what it kept for it), and a lost connection is never
    retried (the broker gave the session back to its owner).
    """

    def __init__(self, settings, on_batch, on_gap=None, on_status=None, on_problem=None,
                 role="dump", status=False, on_restart=None, share_group=None,
                 manual_ack=False, client_id=None, adopting=False):
        self.settings = settings
        self.on_batch = on_batch
        self.on_gap = on_gap
        self.on_restart = on_restart
        self.on_status = on_status
        self.on_problem = on_problem
        self.role = role
        self.share_group = share_group
        self.manual_ack = manual_ack
        self.client_id = client_id
        self.adopting = adopting
        self.topics = [settings.topic]
        if status and not settings.topic.endswith("#"):
            self.topics.append(settings.topic + STATUS_SUFFIX)
        self.label = label_for(settings.topic)
        self.tracker = mqtt_payload.SequenceTracker()
        self.batches = 0
        self.frames = 0
        self.bad = 0
        self._client = None
        self._ready = threading.Event()
        self._failure = None
        self._said_bad = set()
        self.connected = False

    def connect(self, timeout=CONNECT_TIMEOUT + 1.0):
        """Connect and subscribe, or raise MqttError with one clear line."""
        settings = self.settings
        client = settings.client(self.client_id or f"cancorder-{self.role}-{os.urandom(4).hex()}",
                                 manual_ack=self.manual_ack, reconnect=not self.adopting)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 5)
        self._ready.clear()
        self._failure = None
        try:
            # a new random client id has no session to resume: clean_start=False only keeps
            # Mosquitto 2.0 from forgetting the session over its own restart (it does with
            # clean_start=True on the first connect, session expiry or not)
            settings.connect(client, clean_start=False, session_expiry=SESSION_EXPIRY,
                             receive_maximum=RECEIVE_MAXIMUM if self.manual_ack else None)
        except Exception as exc:
            raise MqttError(settings.connect_failure(exc)) from None
        self._client = client
        client.loop_start()
        if not self._ready.wait(timeout):
            self._failure = self._failure or settings.no_connack()
        if self._failure is not None:
            self.close()
            raise MqttError(self._failure)

    def close(self, forget=True):
        """Disconnect; ``forget``: the broker may drop the session (False: it keeps what was
        not acknowledged, for this client id's next connection)."""
        client, self._client = self._client, None
        if client is None:
            return
        if not forget:
            client.disconnect()
            client.loop_stop()
            return
        try:  # we are done: the broker may forget the session now
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
            client.disconnect(properties=properties)
        except Exception:
            pass
        client.loop_stop()

    # ---- paho callbacks (its thread) ----

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._failure = self.settings.refusal(reason_code)
            if self._ready.is_set() and self.on_problem:  # refused on a reconnect
                self.on_problem(f"{self._failure}; no more retries")
            self._ready.set()
            client.disconnect()  # no automatic retries with a refused login
            return
        if not self.connected and self._ready.is_set() and self.on_problem:
            self.on_problem(f"MQTT: reconnected to {self.settings.where}")
        self.connected = True
        if self.adopting:
            client.unsubscribe([self.subscription(topic) for topic in self.topics])
            self._ready.set()
            return
        if flags.session_present and self._ready.is_set() and not self.share_group:
            return  # the broker kept our subscription (Mosquitto before 2.0.12 forgets a
            # shared one over its restart: subscribing again is harmless, so a group always does)
        client.subscribe([(self.subscription(topic), 1) for topic in self.topics])

    def subscription(self, topic):
        """The topic filter as subscribed: ``$share/GROUP/...`` in a group."""
        return f"$share/{self.share_group}/{topic}" if self.share_group else topic

    def unsubscribe(self):
        """Stop new messages (the archive's clean stop, before it acknowledges the last)."""
        client = self._client
        if client is not None:
            client.unsubscribe([self.subscription(topic) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self._failure = (f"MQTT broker {self.settings.where} refused the subscription to "
                             f"'{self.settings.topic}': {refused[0]} (check the broker's ACL "
                             "for this user)")
        self._ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self.connected and not self._ready.is_set() and self._failure is None:
            # closed before any CONNACK (a TLS alert: the broker wants a client certificate)
            self._failure = self.settings.closed_early(reason_code)
            self._ready.set()
        if self.adopting:  # no retry (reconnect=False): its owner took the session back
            self.connected = False
            return
        if self.connected and self.on_problem and self._client is not None:
            self.on_problem(f"MQTT: lost the broker {self.settings.where} ({reason_code}); "
                            "reconnecting, the broker keeps what comes meanwhile")
        self.connected = False

    def _on_message(self, client, userdata, message):
        topic = message.topic
        label = self.label(topic)
        if self.manual_ack:
            self._on_message_acknowledged(client, message, label)
            return
        if topic.endswith(STATUS_SUFFIX):
            if self.on_status is not None:
                try:
                    self.on_status(label[:-len(STATUS_SUFFIX)], json.loads(message.payload))
                except ValueError:
                    pass
            return
        try:
            batch = mqtt_payload.decode(message.payload)
        except PayloadError as exc:
            self.bad += 1
            if topic not in self._said_bad and self.on_problem:
                self._said_bad.add(topic)
                self.on_problem(f"{topic}: not a cancorder batch, skipped ({exc}); further "
                                "ones on this topic are skipped silently")
            return
        restarted = self.tracker.is_new_session(topic, batch)
        missing = self.tracker.accept(topic, batch)
        if missing is None:
            return
        if restarted and self.on_restart is not None:
            self.on_restart(label)
        if missing and self.on_gap is not None:
            self.on_gap(label, missing)
        self.batches += 1
        self.frames += batch.count
        self.on_batch(label, batch, message.payload[mqtt_payload.read_header(message.payload)[1]:])

    def _on_message_acknowledged(self, client, message, label):
        mid, qos = message.mid, message.qos

        def acknowledge():
            if qos:
                client.ack(mid, qos)

        if message.topic.endswith(STATUS_SUFFIX):  # a logger's status (a # filter): not kept
            acknowledge()
            return
        try:
            batch = mqtt_payload.decode(message.payload)
        except PayloadError as exc:
            self.bad += 1
            if message.topic not in self._said_bad and self.on_problem:
                self._said_bad.add(message.topic)
                self.on_problem(f"{message.topic}: not a cancorder batch, skipped ({exc}); "
                                "further ones on this topic are skipped silently")
            acknowledge()  # nothing to keep: never again
            return
        self.batches += 1
        self.frames += batch.count
        self.on_batch(label, batch, None, acknowledge, bool(message.dup))
