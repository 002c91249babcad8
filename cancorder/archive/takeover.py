"""A dead worker's share, taken over by a live one of its group, with the broker's own tools.

Mosquitto (2.0) hands a shared subscription's messages to every member in turn, an offline
member with a kept session too: a worker killed with ``kill -9`` goes on receiving its share,
queued at the broker until it comes back under its name. Ending the session instead (expiry 0)
would not help: the broker drops what the dead worker had received and not acknowledged.

So every worker of a group says it is alive: a retained ``up`` on
``cancorder-archive/GROUP/workers/NAME``, with a Last Will ``down`` that the broker publishes
when the connection ends without a DISCONNECT (a killed process: at once, its socket closes;
a lost machine: after the keepalive). A clean stop clears it. Each worker watches its group's
topics; when a peer is ``down``, the live worker with the lowest name *adopts* the peer's
session: a second client connects under the dead worker's client id, keeping the session, and
receives what the broker queued for it and again what it never acknowledged. It unsubscribes
the dead worker's shared subscription at once (the broker then hands its share to the live
members), writes and acknowledges what the session held like its own messages, then lets go
of the session and marks the peer ``adopted``. If the dead worker comes back meanwhile, the
broker gives it its session and closes the adopter's connection: the adopter drops the
batches it had not stored (the broker delivers them again, to the worker that owns them) and
never reconnects.
"""
import logging
import threading
import time
import urllib.parse

from ..errors import MqttError
from ..mqtt.connection import CONNECT_TIMEOUT
from ..mqtt.subscriber import Subscriber

log = logging.getLogger("cancorder.archive")

PRESENCE_ROOT = "cancorder-archive"
UP, DOWN, ADOPTED = "up", "down", "adopted"
QUIET = 1.0  # s with nothing more from an adopted session (unsubscribed) before letting it go
RETRY = 5.0  # s before trying again to adopt a session the broker would not give


def client_id_of(group, name):
    """A worker's client id at the broker: its session, resumed by the same --group --name."""
    return f"cancorder-archive-{group or 'solo'}-{name}"


def _level(text):
    return urllib.parse.quote(str(text), safe="")


class Presence:
    """This worker's ``up`` (a Last Will ``down``) and its group's states: name -> state."""

    def __init__(self, settings, group, name):
        self.settings = settings
        self.name = name
        self.prefix = f"{PRESENCE_ROOT}/{_level(group)}/workers/"
        self.topic = self.prefix + _level(name)
        self.client_id = client_id_of(group, name) + "-presence"
        self._states = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = None

    def start(self):
        settings = self.settings
        client = settings.client(self.client_id, will=(self.topic, DOWN.encode()))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 5)
        try:
            settings.connect(client)
        except Exception as exc:
            raise MqttError(settings.connect_failure(exc)) from None
        self._client = client
        client.loop_start()
        if not self._ready.wait(CONNECT_TIMEOUT + 1.0):
            self.close(state=None)
            raise MqttError(settings.no_connack())
        return self

    def states(self):
        with self._lock:
            return dict(self._states)

    def mark(self, peer, state):
        """Say a peer's state to the group (retained): ``adopted`` once its share is taken."""
        with self._lock:  # at once here: the broker's echo comes a moment later
            self._states[peer] = state.split(" ", 1)[0]
        client = self._client
        if client is not None:
            client.publish(self.prefix + _level(peer), state.encode(), qos=1, retain=True)

    def close(self, state=""):
        """The last word, retained: "" (cleared) after a clean stop, nothing left to adopt;
        ``down`` after a failure (a clean disconnection sends no will); None: nothing."""
        client, self._client = self._client, None
        if client is None:
            return
        if state is not None:
            try:
                client.publish(self.topic, state.encode(), qos=1,
                               retain=True).wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()

    # ---- paho's thread ----

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        client.subscribe(self.prefix + "+", 1)
        client.publish(self.topic, UP.encode(), qos=1, retain=True)
        self._ready.set()

    def _on_message(self, client, userdata, message):
        peer = urllib.parse.unquote(message.topic[len(self.prefix):])
        state = message.payload.decode(errors="replace").split(" ", 1)[0]
        with self._lock:
            if state:
                self._states[peer] = state
            else:
                self._states.pop(peer, None)


class Adoption:
    """A dead peer's session, held by this worker until what it kept is stored."""

    def __init__(self, peer, subscriber, writer):
        self.peer = peer
        self.subscriber = subscriber
        self.writer = writer  # its own files: dropped whole if the peer takes its session back
        self.started = time.monotonic()
        self.last_arrival = self.started
        self.unsubscribed = None  # when the peer's subscription was removed
        self.batches = 0
        self.frames = 0


def choose_adoptions(name, states, held):
    """The peers this worker should adopt now: those ``down`` and not held, when this worker
    has the lowest name of the live ones (so two survivors never fight over a session)."""
    live = {peer for peer, state in states.items() if state == UP} | {name}
    if min(live) != name:
        return []
    return sorted(peer for peer, state in states.items()
                  if state == DOWN and peer != name and peer not in held)


def adopt(settings, group, peer, on_batch):
    """Connect under ``peer``'s client id (its session kept, never reconnecting: a lost
    connection means the session went back to its owner); raises MqttError."""
    subscriber = Subscriber(settings, on_batch, on_problem=log.warning, role="archive",
                            share_group=group, manual_ack=True,
                            client_id=client_id_of(group, peer), adopting=True)
    subscriber.connect()
    return subscriber
