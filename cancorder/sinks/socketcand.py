"""socketcand's raw mode served from the records of one bus (SavvyCAN, Kayak, python-can).

    source thread --submit(records)--> the bus's connection core (_fast/broadcast) --encode
        (FrameEncoder, once a flush)--> every client in raw mode
    client commands --CommandReader (a Session per client)--> replies, and ``< send >``
        --transmit thread--> source

This module is the protocol and nothing of connection handling: the bus's connection core
accepts, counts (--max-clients, --max-clients-per-host over every protocol), keeps alive,
buffers, drops laggards on a line boundary and closes; ``Socketcand`` tells it how records
become lines, where a line ends, and gives each client a ``Session`` that reads its commands.

A client is greeted with ``< hi >``, opens the bus by its channel name or by the bus's name
(--name, a config's ``name``: python-can's ``channel="can0"``) (``< open can0 >`` ->
``< ok >``; a wrong name -> ``< error could not open bus: open ... >`` naming the ones that
work, and the connection closes as socketcand closes it), switches to raw mode
(``< rawmode >``, or ``< rawmode fd >`` to also get CAN FD frames as ``< fdframe ... >``) and
then receives every frame. ``< echo >`` is echoed.

A client is closed at its MAX_ERRORS-th bad command; its input never costs more than the
reader's bound; one that has not reached raw mode within HANDSHAKE_TIMEOUT s is closed. Transmit (``< send >``/``< sendfd >``) is off unless the bus
allows it, and then only for peers inside the allowed networks; frames go to the source's
``send`` from a thread of their own, so a slow adapter never stalls the loop. Every refusal
(transmit off, a CAN FD frame for a classic bus) and every failure (the adapter said no) is
an ``< error ... >`` to the client, a count, and a line in the log (rate-limited).

A UDP beacon (``<CANBeacon ...>`` to port 42000 every BEACON_INTERVAL s, as socketcand sends
it) names the bus so that ``can.detect_available_configs("socketcand")`` and SavvyCAN find it.
"""
import errno
import logging
import socket
import threading

from .._fast import socketcand as protocol
from .._fast.broadcast import Protocol
from ..access import (parse_networks, peer_allowed, transmit_networks, transmit_off_reason,
                      transmit_phrase)
from ..argtypes import Claim, listen_address
from ..errors import UsageError
from ..listeners import beacon_loop, bind_error, bind_listener, broadcast_networks, \
    broadcast_target
from .base import RecordSink, TransmitThread, frame_text, protocol_stats, protocol_summary

DEFAULT_PORT = 29536
BEACON_PORT = 42000
BEACON_INTERVAL = 3.0
MAX_ERRORS = 5  # bad commands a client may send before it is closed
RAWMODE_GRACE = 0.1  # s between "< ok >" to rawmode and the first frame (see _start_raw)
HANDSHAKE_TIMEOUT = 30.0  # s from connecting to raw mode: an idle connection holds no slot
TRANSMIT_QUEUE = 256
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
CLASSIC, WITH_FD = 0, 1  # the two streams a client may ask for (rawmode, rawmode fd)

HI = b"< hi >"
OK = b"< ok >"
ECHO = b"< echo >"
TRANSMIT_DISABLED = b"< error transmit disabled >"


def error_reply(message):
    """``< error message >`` with nothing in the message that could end the element early."""
    text = "".join(ch if " " <= ch <= "~" and ch not in "<>" else "?" for ch in message)
    return b"< error " + text.encode("ascii") + b" >"


def socketcand_address(text):
    """--socketcand: ``[ADDR:]PORT``, 0 for any free port (tests)."""
    return listen_address(text, free_port_allowed=True)


class Socketcand(Protocol):
    """socketcand's raw mode for the connection core: frame lines, line boundaries, a Session
    per client."""

    name = "socketcand"
    label = "socketcand "
    passthrough = False
    handshake_timeout = HANDSHAKE_TIMEOUT

    def __init__(self, server):
        self.server = server
        self._encoder = protocol.FrameEncoder()
        self.counts = (0, 0)

    def encode(self, records):
        encoder = self._encoder
        frames, fd_frames = encoder.frames, encoder.fd_frames
        classic, with_fd = encoder.encode(records)
        fd = encoder.fd_frames - fd_frames
        total = encoder.frames - frames
        self.counts = (total - fd, total)
        return classic, with_fd

    def rest_of_unit(self, data, skip):
        """Every element ends with ``>`` (``<`` and ``>`` never stand inside one)."""
        if skip == 0 or data[skip - 1] == 0x3E:
            return 0
        end = bytes(data).find(b">", skip)
        return len(data) - skip if end < 0 else end + 1 - skip

    def connected(self, core, client):
        core.send(client, HI)
        return Session(self.server, core, client)


class Session:
    """One socketcand client's side of the protocol: its commands and its state."""

    def __init__(self, server, core, client):
        self.server = server
        self.core = core
        self.client = client
        self.name = client.name
        self.reader = protocol.CommandReader()
        self.state = "nobus"  # nobus -> bcm (after open) -> raw (after rawmode)
        self.errors = 0  # bad commands answered so far
        self.transmitted = 0
        self.may_transmit = server.transmit_networks is not None and \
            peer_allowed((client.host,), server.transmit_networks)

    def feed(self, data):
        client = self.client
        for item in self.reader.feed(data):
            self._command(item)
            if client.closed or client.close_when_sent:
                return

    def _command(self, item):
        kind = item[0]
        server = self.server
        if kind == protocol.SEND:
            if self.state == "nobus":
                self._bad("open a bus first (open BUS)")
            else:
                self._transmit(item[1], item[2], item[3])
        elif kind == protocol.OPEN:
            if self.state != "nobus":
                self._bad("the bus is already open")
            elif item[1] not in server.bus_names:
                names = " or ".join(f"'{name}'" for name in server.bus_names)
                server._log("info", f"socketcand client {self.name} asked for bus "
                                    f"'{item[1]}'; this server has {names}",
                            f"socketcand-wrong-bus {self.client.host}")
                self.core.send(self.client, error_reply(
                    "could not open bus: open " + " or ".join(server.bus_names)))
                self.core.close_after_sending(self.client, "closed")
            else:
                self.state = "bcm"
                self.core.send(self.client, OK)
        elif kind == protocol.RAWMODE:
            if self.state == "nobus":
                self._bad("open a bus first (open BUS)")
            else:
                self._start_raw(item[1])
        elif kind == protocol.ECHO:
            self.core.send(self.client, ECHO)
        elif kind == protocol.BCMMODE:
            if self.state == "nobus":
                self._bad("open a bus first (open BUS)")
            else:
                self.state = "bcm"
                self.core.stop_stream(self.client)
                self.core.send(self.client, OK)
        else:
            self._bad(item[1])

    def _start_raw(self, wants_fd):
        """Frames start RAWMODE_GRACE after the ``< ok >``: python-can's client reads the
        ``< ok >`` with one recv and fails if a frame line arrived in the same read."""
        self.state = "raw"
        self.core.send(self.client, OK)
        self.core.start_stream(self.client, WITH_FD if wants_fd else CLASSIC, RAWMODE_GRACE)

    def _bad(self, message):
        self.errors += 1
        self.core.send(self.client, error_reply(message))
        if self.errors >= MAX_ERRORS and not self.client.close_when_sent:
            self.server.clients_closed_errors += 1
            self.server._log("warning", f"socketcand client {self.name} closed: "
                                        f"{self.errors} bad commands",
                             f"socketcand-bad {self.client.host}")
            self.core.close_after_sending(self.client, "closed")

    def _transmit(self, can_id, flags, data):
        server = self.server
        if not self.may_transmit:
            server.transmit_refused += 1
            self.core.send(self.client, TRANSMIT_DISABLED)
            server._log("warning", f"socketcand client {self.name}: transmit of "
                                   f"{frame_text(can_id, flags, data)} refused: "
                                   f"{server.transmit_off_reason(self.client.host)}",
                        ("socketcand-transmit-off", server.bus_name))
            return
        refusal = server.source.transmit_refusal(flags, data)
        if refusal is not None:  # refused here: nothing the bus cannot carry reaches it
            server.transmit_refused += 1
            self.core.send(self.client, error_reply(f"transmit refused: {refusal}"))
            server._log("warning", f"socketcand client {self.name}: transmit of "
                                   f"{frame_text(can_id, flags, data)} refused: {refusal}",
                        ("socketcand-transmit-refused", server.bus_name))
            return
        if not server.transmitter.put((self, can_id, flags, data)):
            server.transmit_failed += 1
            self.core.send(self.client,
                           error_reply("transmit queue full: the adapter is not keeping up"))


class SocketcandServer(RecordSink):
    """A RecordSink: serves one bus's records over socketcand's protocol (see the module text)
    on a listener of its own, through the bus's connection core.

    ``start(bus)`` takes from the BusInfo: ``serve(listeners, protocol)`` (the bus's connection
    core), its logger and the source (transmit). Built from the bus's flags by ``factories``.
    """

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("socketcand (SavvyCAN, Kayak, python-can's socketcand)")
        group.add_argument("--socketcand", metavar="[ADDR:]PORT", nargs="?",
                           type=socketcand_address, const=("", DEFAULT_PORT), default=None,
                           help="also serve socketcand's raw mode on this port (default port "
                                "29536); clients open the bus by its channel name")
        group.add_argument("--no-beacon", action="store_true",
                           help="do not broadcast the discovery beacons (socketcand's on UDP "
                                "42000, GVRET's on UDP 17222)")
        group.add_argument("--allow-transmit", action="store_true",
                           help="let socketcand and GVRET clients put frames on the bus: only "
                                "peers inside --allow, or this machine when --allow is not "
                                "given; --listen-only always wins")

    @classmethod
    def transmit_flag(cls, args):
        return "--allow-transmit" if args.socketcand is not None and args.allow_transmit \
            else None

    @classmethod
    def claims(cls, args):
        """Its port: no other bus's (ECUconnect or socketcand) nor the metrics port (0: any
        free one, taken by nobody else)."""
        if args.socketcand is None or not args.socketcand[1]:
            return []
        port = args.socketcand[1]
        return [Claim(("tcp port", port), f"socketcand port {port}",
                      "a port serves one bus and one protocol: give socketcand another port")]

    @classmethod
    def factories(cls, args):
        """``--socketcand``: one server on the bus's --bind (or the address given), its
        --allow (who may transmit) and listen-only state."""
        if args.socketcand is None:
            if (args.no_beacon or args.allow_transmit) and getattr(args, "gvret", None) is None:
                raise UsageError("--no-beacon and --allow-transmit are socketcand options: add "
                                 "--socketcand [PORT] (or GVRET's --gvret [PORT])")
            return []
        host, port = args.socketcand
        allow = parse_networks(args.allow)

        def build(bus, server_options):
            return cls(bus.channel or bus.name, aliases=(bus.name,), bind=host or args.bind,
                       port=port,
                       allow_transmit=args.allow_transmit, allow=allow,
                       listen_only=bus.listen_only, beacon=not args.no_beacon,
                       description=f"{bus.txt.get('process')}: {bus.source.description}")

        return [build]

    def __init__(self, bus_name, bind=None, port=DEFAULT_PORT, source=None,
                 allow_transmit=False, allow=(), listen_only=False, beacon=True, log=None,
                 description="cancorder", aliases=()):
        for name in (bus_name, *aliases):
            if not name or any(not (" " < ch <= "~") or ch in "<>\"'&" for ch in name):
                raise UsageError(f"socketcand bus name {name!r}: it is the channel name, and "
                                 "socketcand clients need one word of printable ASCII (set "
                                 "one with -c, or name the bus with --name)")
            if len(name) > protocol.MAX_BUS_NAME:
                raise UsageError(f"socketcand bus name {name!r} is longer than "
                                 f"{protocol.MAX_BUS_NAME} characters")
        self.bus_name = bus_name  # the one the beacon announces
        #: every name a client may open the bus by: the channel, and the bus's own name
        self.bus_names = list(dict.fromkeys((bus_name, *aliases)))
        self.bind = bind
        self.port = port
        self.source = source
        self.listen_only = listen_only
        self.allow = list(allow)
        # Transmit is granted per peer (access.transmit_networks)
        self.transmit_networks = transmit_networks(allow_transmit, listen_only, self.allow)
        self.beacon = beacon
        self.description = description
        self.protocol = Socketcand(self)
        self.service = None  # the core's counters for this protocol, once started
        self._logger = logging.getLogger("cancorder.socketcand")
        self._log_to = log  # tests: a log(level, text) callable instead of the logger
        self._core = None
        self.transmitter = TransmitThread(self._send, self._sent, "socketcand-transmit",
                                          TRANSMIT_QUEUE)
        self._threads = []
        self._beacon_stop = threading.Event()
        self.bound_host = None
        # counters (stats); the connection counters are the core's (self.service)
        self.clients_closed_errors = 0
        self.transmitted = 0
        self.transmit_refused = 0
        self.transmit_failed = 0
        self.beacons_sent = 0

    # ---- RecordSink ----

    def start(self, bus):
        self._logger = bus.log
        self.source = self.source or bus.source
        listener = self._listen()
        try:
            self._core, self.service = bus.serve([listener], self.protocol)
        except BaseException:
            listener.close()
            raise
        if self.transmit_networks is not None:
            self.transmitter.start()
        if self.beacon:
            self._spawn(self._beacon_loop, "socketcand-beacon")
        where = f"[{self.bound_host}]" if ":" in self.bound_host else self.bound_host
        also = "".join(f", also opened as '{name}'" for name in self.bus_names[1:])
        self._log("info", f"socketcand serves bus '{self.bus_name}' at {where}:{self.port}"
                          + also + (", beacon on UDP 42000" if self.beacon else "")
                          + self._transmit_phrase())

    def put(self, records):
        """Nothing to do: the bus hands every batch to its connection core, which encodes it
        for this protocol's clients."""

    def close(self, timeout=2.0):
        """Stop the beacon and the transmit thread (the core closes the clients)."""
        self._beacon_stop.set()
        self.transmitter.stop(timeout + 2.0)
        for thread in self._threads:
            thread.join(timeout + 2.0)

    metrics_name = "socketcand"  # its stats are the metrics cancorder_socketcand_<stat>{bus}

    def stats(self):
        return protocol_stats(self.service, self)

    def summary(self):
        return protocol_summary("socketcand", self.stats())

    def _log(self, level, text, rate_key=None):
        if self._log_to is not None:
            self._log_to(level, text)
            return
        extra = {"rate_key": rate_key} if rate_key else None
        self._logger.log(_LEVELS[level], "%s", text, extra=extra)

    # ---- set-up ----

    def _listen(self):
        host = self.bind
        try:
            socks, _, bound = bind_listener(host, self.port, "--socketcand")
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"--socketcand: port {self.port} is already in use (another "
                                 "socketcand?): choose another with --socketcand ADDR:PORT") \
                    from None
            raise bind_error(host, self.port, exc, "--socketcand") from None
        sock = socks[0]
        self.bound_host = bound[-1]  # "0.0.0.0" when bound to every address
        if self.port == 0:
            self.port = sock.getsockname()[1]
        return sock

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def transmit_off_reason(self, host):
        """Why a client on ``host`` may not transmit, and the flag that would let it."""
        return transmit_off_reason(self.transmit_networks, self.listen_only, host,
                                   "socketcand clients")

    def _transmit_phrase(self):
        return transmit_phrase(self.transmit_networks, self.listen_only)

    # ---- transmit (its own thread) ----

    def _send(self, can_id, flags, data):
        self.source.send(can_id, flags, data)

    def _sent(self, item, exc):
        session, can_id, flags, data = item
        if exc is not None:  # the adapter refused or is gone: tell the client
            self.transmit_failed += 1
            self._core.reply_later(session.client, error_reply(f"transmit failed: {exc}"))
        else:
            self.transmitted += 1
            session.transmitted += 1
        self._log_transmit(session, can_id, flags, data, exc)

    def _log_transmit(self, session, can_id, flags, data, exc):
        """Rate-limited by the shared filter: a line per interval, saying how many it held."""
        frame = frame_text(can_id, flags, data)
        if exc is not None:
            self._log("warning", f"socketcand client {session.name}: transmit of {frame} "
                                 f"failed: {exc}", "socketcand-transmit-failed")
        else:
            self._log("info", f"socketcand: transmitted {frame} from {session.name} to the bus "
                              f"({self.transmitted:,} in all)", "socketcand-transmit")

    # ---- beacon (its own thread) ----

    def _beacon_loop(self):
        self.beacons_sent = beacon_loop(
            lambda: beacon_datagrams(self.bus_name, self.bind, self.port, self.description),
            BEACON_PORT, BEACON_INTERVAL, self._beacon_stop, self._log, "socketcand")


def beacon_datagrams(bus_name, bind, port, description):
    """(broadcast address, payload) for each IPv4 network the listener is reachable on.

    socketcand sends one beacon to the broadcast address of the network it serves, with a
    ``can://IP:PORT`` URL clients connect to (the networks: listeners.broadcast_networks).
    """
    chosen = broadcast_networks(bind)
    # imported here: xml.sax.saxutils brings urllib.request and http.client, a tenth of
    # serve's start-up, for a beacon most buses never send
    from xml.sax.saxutils import quoteattr

    hostname = socket.gethostname()
    out = []
    for iface in chosen:
        payload = (f"<CANBeacon name={quoteattr(hostname)} type=\"SocketCAN\" "
                   f"description={quoteattr(description)}>"
                   f"<URL>can://{iface.ip}:{port}</URL>"
                   f"<Bus name={quoteattr(bus_name)}/></CANBeacon>")
        out.append((broadcast_target(iface), payload.encode("utf-8")[:1024]))
    return out
