"""Where the broker is and how to log in: ``mqtt://[user[:pass]@]host[:port]/TOPIC`` URLs,
credentials from a file or the environment, TLS, a paho client, and one clear line per failure.
"""
import dataclasses
import os
import re
import socket
import string
import urllib.parse

from ..argtypes import read_path
from ..errors import UsageError

DEFAULT_TOPIC = "cancorder/{system}/{channel}"
TOPIC_FIELDS = ("system", "channel", "interface")
PASSWORD_ENV = "CANCORDER_MQTT_PASSWORD"
CONNECT_TIMEOUT = 5.0
KEEPALIVE = 15
#: CONNACK reason codes that mean "who you are is wrong" (MQTT 5: 134, 135; 3.1.1: 4, 5)
LOGIN_REFUSED = {134, 135, 4, 5}
UNSPECIFIED = 128  # the reason code paho gives a connection closed under it
HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH


@dataclasses.dataclass
class MqttSettings:
    tls: bool
    host: str
    port: int
    topic: str
    username: str = None
    password: str = None
    ca: str = None
    cert: str = None
    key: str = None

    def __str__(self):
        """``mqtt://host:port/topic``: what is shown (the monitor's title), never the password."""
        return f"{self.where}/{self.topic}"

    @property
    def where(self):
        """``mqtt://host:port`` (never the password): for log lines."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def topic_for(self, system, channel, interface):
        """The publishing topic with {system} {channel} {interface} filled in."""
        values = {"system": system, "channel": channel, "interface": interface}
        return self.topic.format(**{k: _topic_level(str(v or "unknown")) for k, v in values.items()})

    def client(self, client_id, will=None, manual_ack=False, reconnect=True):
        """A paho client (MQTT 5) set up with the credentials, TLS and last will; not connected.
        ``manual_ack``: a QoS-1 message is acknowledged only by ``client.ack(mid, qos)``.
        ``reconnect``: False, a lost connection ends paho's loop (no retry)."""
        from paho.mqtt import client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, manual_ack=manual_ack,
                             reconnect_on_failure=reconnect)
        client.connect_timeout = CONNECT_TIMEOUT
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set_context(self.tls_context())
        if will is not None:
            topic, payload = will
            client.will_set(topic, payload, qos=1, retain=True)
        return client

    def connect(self, client, clean_start=True, session_expiry=None, receive_maximum=None):
        """Open the TCP (and TLS) connection and send CONNECT; raises OSError/ssl errors.

        ``session_expiry`` (seconds) asks the broker to keep the session (subscriptions and
        QoS-1 messages queued for it) while the client is away, a broker restart included.
        ``receive_maximum``: how many unacknowledged messages the broker may send us (Mosquitto
        sends its max_inflight_messages, 20 by default, to a client that does not say).
        """
        properties = None
        if session_expiry or receive_maximum:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.CONNECT)
            if session_expiry:
                properties.SessionExpiryInterval = int(session_expiry)
            if receive_maximum:
                properties.ReceiveMaximum = int(receive_maximum)
        client.connect(self.host, self.port, keepalive=KEEPALIVE, clean_start=clean_start,
                       properties=properties)

    def tls_context(self):
        context = _ssl().create_default_context(cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context

    # ---- messages ----

    def connect_failure(self, exc):
        """One line for an exception raised while connecting."""
        if isinstance(exc, socket.gaierror):
            return (f"MQTT broker {self.where}: unknown host '{self.host}' ({exc.strerror}); "
                    "check the host in the URL")
        if isinstance(exc, ConnectionRefusedError):
            return (f"MQTT broker {self.where} refused the connection: is the broker running "
                    f"and listening on port {self.port}?")
        ssl = _ssl(required=False)
        if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
            if exc.verify_code == HOSTNAME_MISMATCH:
                return (f"MQTT broker {self.where}: its TLS certificate is not for "
                        f"'{self.host}' ({exc.verify_message}); connect with a name the "
                        "certificate names")
            return (f"MQTT broker {self.where}: its TLS certificate is not trusted "
                    f"({exc.verify_message}); give the CA that signed it with --mqtt-ca")
        if ssl is not None and isinstance(exc, ssl.SSLError):
            return (f"MQTT broker {self.where}: TLS handshake failed ({exc.reason or exc}); "
                    "is that port a TLS listener, and does the broker accept --mqtt-cert?")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return (f"MQTT broker {self.where}: no answer within {CONNECT_TIMEOUT:g} s "
                    "(host off, or a firewall drops the connection)")
        if isinstance(exc, OSError):
            return f"MQTT broker {self.where}: {exc.strerror or exc}"
        return f"MQTT broker {self.where}: {type(exc).__name__}: {exc}"

    def refusal(self, reason_code):
        """One line for a CONNACK that says no."""
        value = getattr(reason_code, "value", reason_code)
        if value in LOGIN_REFUSED:
            who = f"as '{self.username}'" if self.username is not None else "without a user name"
            return (f"MQTT broker {self.where} refused the login {who}: {reason_code} (check "
                    f"the user and password: in the URL, --mqtt-password-file or "
                    f"${PASSWORD_ENV})")
        return f"MQTT broker {self.where} refused the connection: {reason_code}"

    def closed_early(self, reason_code):
        """One line for a connection closed before the broker's CONNACK. paho reports a
        closed socket as "Unspecified error" (128): say what usually causes it."""
        if getattr(reason_code, "value", reason_code) != UNSPECIFIED:
            return self.refusal(reason_code)  # the broker's own reason
        if self.tls and not self.cert:
            return (f"MQTT broker {self.where} closed the TLS connection before answering: "
                    "does it require a client certificate? give one with --mqtt-cert and "
                    "--mqtt-key")
        if self.tls:
            return (f"MQTT broker {self.where} closed the TLS connection before answering: "
                    "does it accept the client certificate of --mqtt-cert?")
        return (f"MQTT broker {self.where} closed the connection before answering (a TLS "
                "port needs mqtts://)")

    def no_connack(self):
        return (f"MQTT broker {self.where}: connected but no MQTT answer within "
                f"{CONNECT_TIMEOUT:g} s (a TLS port needs mqtts://)")


def parse_url(text, ca=None, cert=None, key=None, password_file=None, subscribe=False,
              environ=None):
    """MqttSettings from ``mqtt[s]://[user[:password]@]host[:port][/TOPIC]``.

    A publishing TOPIC may use {system}, {channel}, {interface} (default
    cancorder/{system}/{channel}); a subscribing one may use MQTT wildcards (+ and #) and must
    be given. The password comes from the URL, else ``password_file``, else
    $CANCORDER_MQTT_PASSWORD. Files are checked now: a typo fails before anything starts.
    """
    environ = os.environ if environ is None else environ
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("mqtt", "mqtts"):
        raise UsageError(f"{_safe(text)}: expected an mqtt:// or mqtts:// URL, e.g. "
                         "mqtt://broker.example.com/cancorder/{system}/{channel}")
    # everything after the host is the topic, # and ? included (MQTT URLs have no fragment)
    netloc, _, topic = rest.partition("/")
    parsed = urllib.parse.urlsplit("//" + netloc)
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        raise UsageError(f"{_safe(text)}: the port must be a number from 1 to 65535") from None
    if not host:
        raise UsageError(f"{_safe(text)}: the broker's host is missing")
    tls = scheme == "mqtts"
    topic = urllib.parse.unquote(topic)
    if subscribe:
        if not topic:
            raise UsageError(f"{_safe(text)}: give the topic to subscribe to, e.g. "
                             "mqtt://HOST/cancorder/+/+")
        _check_filter(topic, text)
    else:
        topic = topic or DEFAULT_TOPIC
        _check_template(topic, text)
    username = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    if password is None and password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"--mqtt-password-file {password_file}: cannot read it "
                             f"({exc.strerror or exc})") from None
    if password is None and environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    if password is not None and username is None:
        raise UsageError(f"{_safe(text)}: a password needs a user name: "
                         "mqtt://USER@HOST/... (the password from the file or environment)")
    for flag, path in (("--mqtt-ca", ca), ("--mqtt-cert", cert), ("--mqtt-key", key)):
        if path and not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    if (ca or cert) and not tls:
        raise UsageError("--mqtt-ca and --mqtt-cert are for TLS: use an mqtts:// URL")
    if key and not cert:
        raise UsageError("--mqtt-key goes with --mqtt-cert (the client certificate)")
    settings = MqttSettings(tls, host, port or (8883 if tls else 1883), topic, username,
                            password, ca, cert, key)
    if tls:
        try:
            settings.tls_context()
        except OSError as exc:  # ssl.SSLError is one
            raise UsageError(f"TLS files for {settings.where}: {exc} (--mqtt-ca must be PEM "
                             "certificates, --mqtt-cert/--mqtt-key a matching PEM pair)") from None
    return settings


def _ssl(required=True):
    """Python's ssl module, imported only for mqtts:// (a build may leave TLS out)."""
    try:
        import ssl
    except ImportError:
        if not required:
            return None
        raise UsageError("mqtts:// needs Python's ssl module, which this build of cancorder "
                         "does not have: use mqtt:// or a Python install") from None
    return ssl


def _check_template(topic, text):
    if "+" in topic or "#" in topic:
        raise UsageError(f"{_safe(text)}: a topic to publish to cannot contain the wildcards "
                         "+ or #")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(topic) if name is not None]
    except ValueError as exc:
        raise UsageError(f"{_safe(text)}: bad topic template ({exc})") from None
    unknown = [name for name in names if name not in TOPIC_FIELDS]
    if unknown:
        raise UsageError(f"{_safe(text)}: unknown topic field {{{unknown[0]}}}: the topic may "
                         "use {system}, {channel} and {interface}")


def _check_filter(topic, text):
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or
                                                                i != len(levels) - 1)):
            raise UsageError(f"{_safe(text)}: + must be a whole topic level and # the last one")


def _topic_level(value):
    """A value put into a topic: no level separators or wildcards inside it."""
    return re.sub(r"[/+#\x00]", "_", value)


def _safe(text):
    """The URL without its password, for messages."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", text)


# ---- the login flags (dump mqtt://, relay, --mqtt) ----

def add_login_arguments(group):
    """How to reach the broker: TLS files and where the password comes from."""
    group.add_argument("--mqtt-ca", metavar="FILE", default=None, type=read_path,
                       help="CA certificate(s) (PEM) that signed the broker's certificate "
                            "(mqtts://; default: the system's)")
    group.add_argument("--mqtt-cert", metavar="FILE", default=None, type=read_path,
                       help="client certificate (PEM) for brokers that ask for one")
    group.add_argument("--mqtt-key", metavar="FILE", default=None, type=read_path,
                       help="the client certificate's private key (PEM)")
    group.add_argument("--mqtt-password-file", metavar="FILE", default=None, type=read_path,
                       help="read the password from FILE instead of the URL (or set "
                            "$CANCORDER_MQTT_PASSWORD)")


def settings_from_args(args, url, subscribe=False):
    """The MqttSettings of ``url`` and the login flags (add_login_arguments) beside it."""
    return parse_url(url, ca=args.mqtt_ca, cert=args.mqtt_cert, key=args.mqtt_key,
                     password_file=args.mqtt_password_file, subscribe=subscribe)
