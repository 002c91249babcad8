"""GVRET served from the records of one bus: SavvyCAN's "Network Connection (GVRET)", and the
other tools that speak ESP32RET's binary protocol over TCP (the facts: _fast/gvret).

    source thread --submit(records)--> the bus's connection core (_fast/broadcast) --encode
        (FrameEncoder, once a flush)--> every client in binary mode
    client commands --CommandReader (a Session per client)--> replies, and frames to send
        --transmit thread--> source

This module is the protocol and nothing of connection handling: the bus's connection core
accepts, counts (--max-clients, --max-clients-per-host over every protocol), keeps alive,
buffers, drops laggards on a frame boundary and closes.

Each bus is a GVRET device of one bus (bus 0) on a port of its own: the connection core is the
bus's, and SavvyCAN opens one connection per device anyway, numbering the buses of all its
connections one after another. A client gets frames once it switched to binary mode (0xE7, the
first thing SavvyCAN sends); one that has not within HANDSHAKE_TIMEOUT s is closed. Queries are
answered as ESP32RET answers them, with the bus's own bit rate and listen-only state. The bus
is cancorder's: a request to set it up otherwise (another bit rate, listen-only, disabled) is
refused (counted, a log line) and answered with the parameters it keeps, so that the client
shows them. Frames a client sends go through the same rule as socketcand's (--allow-transmit,
--allow, --listen-only); GVRET has no error reply, so a refusal is a count and a log line.

SavvyCAN connects to TCP port 23 only (connections/gvretserial.cpp), so 23 is the default;
binding it needs a privilege (docs/gvret.md: setcap, or a redirect from 23 to a port above
1023). SavvyCAN lists the devices whose UDP datagrams reach its port 17222 (ESP32RET sends 1C EF
AC ED every second to the broadcast address): the beacon here is sent the same way, only on
the networks the listener is bound to, unless --no-beacon.
"""
import errno
import logging
import threading
import time

from .._fast import gvret as protocol
from .._fast.broadcast import Protocol
from ..access import (parse_networks, peer_allowed, transmit_networks, transmit_off_reason,
                      transmit_phrase)
from ..argtypes import Claim, listen_address
from ..errors import UsageError
from ..listeners import beacon_loop, bind_error, bind_listener, broadcast_networks, \
    broadcast_target
from .base import (RecordSink, TransmitThread, frame_text, protocol_stats,
                   protocol_summary)

DEFAULT_PORT = 23  # the only port SavvyCAN connects to
BEACON_PORT = 17222
BEACON = b"\x1c\xef\xac\xed"
BEACON_INTERVAL = 1.0
MAX_ERRORS = 5  # bad commands a client may send before it is closed
HANDSHAKE_TIMEOUT = 30.0  # s from connecting to binary mode
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def gvret_address(text):
    """--gvret: ``[ADDR:]PORT``, 0 for any free port (tests)."""
    return listen_address(text, free_port_allowed=True)


def bitrate_number(text):
    """The bus's bit rate as GVRET reports it (bit/s), 0 when it is not known."""
    try:
        return int(str(text).strip().lower().removesuffix("bit/s").strip())
    except (TypeError, ValueError):
        return 0


class Gvret(Protocol):
    """GVRET's binary frames for the connection core, and a Session per client."""

    name = "GVRET"
    label = "GVRET "
    passthrough = False
    handshake_timeout = HANDSHAKE_TIMEOUT

    def __init__(self, server):
        self.server = server
        self._encoder = protocol.FrameEncoder()
        self.counts = (0,)

    def encode(self, records):
        frames = self._encoder.frames
        stream = self._encoder.encode(records)
        self.counts = (self._encoder.frames - frames,)
        return stream

    def rest_of_unit(self, data, skip):
        return protocol.rest_of_unit(data, skip)

    def connected(self, core, client):
        return Session(self.server, core, client)


class Session:
    """One GVRET client's side of the protocol: its commands and its state."""

    def __init__(self, server, core, client):
        self.server = server
        self.core = core
        self.client = client
        self.name = client.name
        self.reader = protocol.CommandReader()
        self.binary = False
        self.errors = 0
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
        if kind == protocol.BINARY:
            if not self.binary:
                self.binary = True
                self.core.start_stream(self.client, 0)
        elif kind == protocol.QUERY:
            self.core.send(self.client, self.server.answer(item[1]))
        elif kind == protocol.SEND:
            self._transmit(item[1], item[2], item[3], item[4])
        elif kind == protocol.SETTING:
            self._setting(item[1], item[2])
        elif kind == protocol.ECHO:
            self._refuse(item[1], item[2], item[3], "echoing a frame to the clients (command "
                                                   "0B) is not served")
        else:
            self._bad(item[1])

    def _setting(self, command, payload):
        server = self.server
        if command == protocol.SETUP_BUSES:
            wanted = server.refused_setup(int.from_bytes(payload[:4], "little"))
            if wanted:
                server.settings_refused += 1
                server._log("info", f"GVRET client {self.name} asked for {wanted}: refused, "
                                    f"cancorder keeps the bus as it is "
                                    f"({server.bus_phrase()})",
                            ("gvret-setup-refused", server.bus_name))
                self.core.send(self.client, server.answer(protocol.BUS_PARAMETERS))
        elif command == protocol.SETUP_EXTENDED_BUSES:
            words = [int.from_bytes(payload[k:k + 4], "little") for k in (0, 4, 8)]
            if any(word & 0x80000000 and word & 0x40000000 for word in words):
                server.settings_refused += 1
                server._log("info", f"GVRET client {self.name} asked to enable single-wire CAN "
                                    "or LIN: refused, this device has none",
                            ("gvret-setup-refused", server.bus_name))
                self.core.send(self.client, protocol.EXTENDED_BUSES_REPLY)
        # digital outputs, single-wire mode, system type: nothing of the kind here

    def _bad(self, message):
        self.errors += 1
        server = self.server
        server._log("info", f"GVRET client {self.name}: {message}",
                    f"gvret-bad {self.client.host}")
        if self.errors >= MAX_ERRORS and not self.client.close_when_sent:
            server.clients_closed_errors += 1
            server._log("warning", f"GVRET client {self.name} closed: {self.errors} bad "
                                   "commands", f"gvret-closed {self.client.host}")
            self.core.close_after_sending(self.client, "closed")

    def _refuse(self, can_id, flags, data, why):
        server = self.server
        server.transmit_refused += 1
        server._log("warning", f"GVRET client {self.name}: transmit of "
                               f"{frame_text(can_id, flags, data)} refused: {why}",
                    ("gvret-transmit-refused", server.bus_name))

    def _transmit(self, can_id, flags, data, bus):
        server = self.server
        if not self.may_transmit:
            self._refuse(can_id, flags, data, server.transmit_off_reason(self.client.host))
            return
        if bus != 0:
            self._refuse(can_id, flags, data, f"bus {bus}: this GVRET device has bus 0 only "
                                              "(a port per bus)")
            return
        refusal = server.source.transmit_refusal(flags, data)
        if refusal is not None:
            self._refuse(can_id, flags, data, refusal)
            return
        if not server.transmitter.put((self, can_id, flags, data)):
            server.transmit_failed += 1
            server._log("warning", f"GVRET client {self.name}: transmit of "
                                   f"{frame_text(can_id, flags, data)} failed: the transmit "
                                   "queue is full (the adapter is not keeping up)",
                        ("gvret-transmit-failed", server.bus_name))


class GvretServer(RecordSink):
    """A RecordSink: serves one bus's records as a GVRET device (see the module text) on a
    listener of its own, through the bus's connection core. Built from the bus's flags by
    ``factories``."""

    metrics_name = "gvret"  # its stats are the metrics cancorder_gvret_<stat>{bus}

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("GVRET (SavvyCAN's network connection)")
        group.add_argument("--gvret", metavar="[ADDR:]PORT", nargs="?", type=gvret_address,
                           const=("", DEFAULT_PORT), default=None,
                           help="also serve the bus as a GVRET device on this port (default "
                                "23, the port SavvyCAN connects to: it needs a privilege, see "
                                "docs/gvret.md); transmit with --allow-transmit")

    @classmethod
    def transmit_flag(cls, args):
        return "--allow-transmit" if args.gvret is not None and args.allow_transmit else None

    @classmethod
    def claims(cls, args):
        if args.gvret is None or not args.gvret[1]:
            return []
        port = args.gvret[1]
        return [Claim(("tcp port", port), f"GVRET port {port}",
                      "a port serves one bus and one protocol: give GVRET another port")]

    @classmethod
    def factories(cls, args):
        if args.gvret is None:
            return []
        host, port = args.gvret
        allow = parse_networks(args.allow)

        def build(bus, server_options):
            return cls(bus.name, bind=host or args.bind, port=port,
                       allow_transmit=args.allow_transmit, allow=allow,
                       listen_only=bus.listen_only, beacon=not args.no_beacon,
                       bitrate=bitrate_number(bus.bitrate))

        return [build]

    def __init__(self, bus_name, bind=None, port=DEFAULT_PORT, source=None, allow_transmit=False,
                 allow=(), listen_only=False, beacon=True, bitrate=0, log=None):
        self.bus_name = bus_name
        self.bind = bind
        self.port = port
        self.source = source
        self.listen_only = listen_only
        self.bitrate = bitrate
        self.transmit_networks = transmit_networks(allow_transmit, listen_only, allow)
        self.beacon = beacon
        self.protocol = Gvret(self)
        self.service = None
        self.transmitter = TransmitThread(self._send, self._sent, "gvret-transmit")
        self._logger = logging.getLogger("cancorder.gvret")
        self._log_to = log
        self._beacon_stop = threading.Event()
        self._beacon_thread = None
        self._core = None
        self.bound_host = None
        self.clients_closed_errors = 0
        self.transmitted = 0
        self.transmit_refused = 0
        self.transmit_failed = 0
        self.settings_refused = 0
        self.beacons_sent = 0

    # ---- what a client is told ----

    def answer(self, query):
        """The reply to a query, as a device of one bus, this bus."""
        if query == protocol.TIME_SYNC:
            return protocol.time_sync_reply(time.time_ns() // 1000)
        if query == protocol.BUS_PARAMETERS:
            return protocol.bus_parameters_reply(True, self.listen_only, self.bitrate)
        if query == protocol.DEVICE_INFO:
            return protocol.device_info_reply()
        if query == protocol.KEEPALIVE:
            return protocol.KEEPALIVE_REPLY
        if query == protocol.NUMBER_OF_BUSES:
            return protocol.number_of_buses_reply(1)
        if query == protocol.EXTENDED_BUSES:
            return protocol.EXTENDED_BUSES_REPLY
        if query == protocol.DIGITAL_INPUTS:
            return protocol.DIGITAL_INPUTS_REPLY
        return protocol.ANALOG_INPUTS_REPLY

    def refused_setup(self, word):
        """What a set-up word of bus 0 (command 05) asks that differs from the bus, or ""."""
        speed = word & 0xFFFFF
        if word & 0x80000000:
            enabled, listen_only = bool(word & 0x40000000), bool(word & 0x20000000)
        else:  # the old form: a speed, enabled; 0 disables
            enabled, listen_only = word != 0, self.listen_only
        asked = []
        if not enabled:
            asked.append("the bus disabled")
        if enabled and speed and speed != self.bitrate:
            asked.append(f"{speed} bit/s")
        if listen_only != self.listen_only:
            asked.append("listen-only" if listen_only else "the bus not listen-only")
        return ", ".join(asked)

    def bus_phrase(self):
        rate = f"{self.bitrate} bit/s" if self.bitrate else "bit rate not known"
        return rate + (", listen-only" if self.listen_only else "")

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
            self._beacon_thread = threading.Thread(target=self._beacon_loop,
                                                   name="gvret-beacon", daemon=True)
            self._beacon_thread.start()
        where = f"[{self.bound_host}]" if ":" in self.bound_host else self.bound_host
        self._log("info", f"GVRET serves bus '{self.bus_name}' at {where}:{self.port}"
                          + (", beacon on UDP 17222" if self.beacon else "")
                          + transmit_phrase(self.transmit_networks, self.listen_only))

    def put(self, records):
        """Nothing to do: the bus hands every batch to its connection core."""

    def close(self, timeout=2.0):
        self._beacon_stop.set()
        self.transmitter.stop(timeout + 2.0)
        if self._beacon_thread is not None:
            self._beacon_thread.join(timeout + 2.0)

    def stats(self):
        return dict(protocol_stats(self.service, self),
                    settings_refused=self.settings_refused)

    def summary(self):
        return protocol_summary("GVRET", self.stats())

    def _log(self, level, text, rate_key=None):
        if self._log_to is not None:
            self._log_to(level, text)
            return
        extra = {"rate_key": rate_key} if rate_key else None
        self._logger.log(_LEVELS[level], "%s", text, extra=extra)

    def transmit_off_reason(self, host):
        return transmit_off_reason(self.transmit_networks, self.listen_only, host,
                                   "GVRET clients")

    # ---- set-up ----

    def _listen(self):
        try:
            socks, _, bound = bind_listener(self.bind, self.port, "--gvret")
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"--gvret: port {self.port} is already in use: choose another "
                                 "with --gvret ADDR:PORT") from None
            if exc.errno == errno.EACCES:
                raise UsageError(f"--gvret: port {self.port} needs a privilege (ports below "
                                 "1024): give it with `setcap cap_net_bind_service=+ep` on the "
                                 "program, or serve --gvret 2323 and redirect 23 to it (see "
                                 "docs/gvret.md)") from None
            raise bind_error(self.bind, self.port, exc, "--gvret") from None
        sock = socks[0]
        self.bound_host = bound[-1]
        if self.port == 0:
            self.port = sock.getsockname()[1]
        return sock

    # ---- transmit (its own thread) ----

    def _send(self, can_id, flags, data):
        self.source.send(can_id, flags, data)

    def _sent(self, item, exc):
        session, can_id, flags, data = item
        frame = frame_text(can_id, flags, data)
        if exc is not None:
            self.transmit_failed += 1
            self._log("warning", f"GVRET client {session.name}: transmit of {frame} failed: "
                                 f"{exc}", "gvret-transmit-failed")
            return
        self.transmitted += 1
        session.transmitted += 1
        self._log("info", f"GVRET: transmitted {frame} from {session.name} to the bus "
                          f"({self.transmitted:,} in all)", "gvret-transmit")

    # ---- beacon (its own thread) ----

    def _beacon_loop(self):
        def datagrams():
            return [(broadcast_target(network), BEACON)
                    for network in broadcast_networks(self.bind)]

        # bound to one address, sent from it: SavvyCAN connects to the sender
        source = self.bound_host if self.bind and ":" not in self.bound_host else None
        self.beacons_sent = beacon_loop(datagrams, BEACON_PORT, BEACON_INTERVAL,
                                        self._beacon_stop, self._log, "GVRET", source)
