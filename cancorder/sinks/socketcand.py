"""socketcand's raw mode served from the records of one bus (SavvyCAN, Kayak, python-can).

    source thread --put(records)--> pending --select loop thread--> FrameEncoder (once a batch)
                                                                --> every client in raw mode
    client commands --CommandReader--> replies, and ``< send >`` --transmit thread--> source

A client is greeted with ``< hi >``, opens the bus by its channel name (``< open can0 >`` ->
``< ok >``, a wrong name -> ``< error could not open bus >`` and the connection closes as
socketcand closes it), switches to raw mode (``< rawmode >``, or ``< rawmode fd >`` to also get
CAN FD frames as ``< fdframe ... >``) and then receives every frame. ``< echo >`` is echoed.

The loop keeps the ECUconnect broadcaster's discipline: one non-blocking send per client per
flush, flushes coalesced, a client whose backlog passes ``client_buffer`` bytes is dropped with a
line. A client is closed at its MAX_ERRORS-th bad command; its input never costs
more than the reader's bound. Transmit (``< send >``/``< sendfd >``) is off unless the bus
allows it, and then only for peers inside the allowed networks; frames go to the source's
``send`` from a thread of their own, so a slow adapter never stalls the loop.

A UDP beacon (``<CANBeacon ...>`` to port 42000 every BEACON_INTERVAL s, as socketcand sends
it) names the bus so that ``can.detect_available_configs("socketcand")`` and SavvyCAN find it.
"""
import collections
import errno
import ipaddress
import logging
import queue
import selectors
import socket
import threading
import time
from xml.sax.saxutils import quoteattr

from .._fast import socketcand as protocol
from .._fast.broadcast import peer_name, take_all
from ..access import LOOPBACK, parse_networks, peer_allowed
from ..argtypes import listen_address
from ..errors import UsageError
from ..listeners import bind_error, bind_listener
from .base import RecordSink

DEFAULT_PORT = 29536
BEACON_PORT = 42000
BEACON_INTERVAL = 3.0
MAX_ERRORS = 5  # bad commands a client may send before it is closed
RAWMODE_GRACE = 0.1  # s between "< ok >" to rawmode and the first frame (see _start_raw)
TRANSMIT_QUEUE = 256
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE
_WAKE = "wake"
_LISTENER = "listener"

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


class Client:
    """One socketcand connection: its protocol state, its reader and what it was not sent yet."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = address
        self.name = peer_name(address)
        self.reader = protocol.CommandReader()
        self.state = "nobus"  # nobus -> bcm (after open) -> raw (after rawmode)
        self.wants_fd = False
        self.held = None  # frames held during the rawmode grace, or None
        self.hold_until = 0.0
        self.may_transmit = False
        self.backlog = collections.deque()
        self.backlog_bytes = 0
        self.behind_since = 0.0
        self.close_after_send = False
        self.closed = False
        self.errors = 0  # bad commands answered so far
        self.transmitted = 0


class SocketcandServer(RecordSink):
    """A RecordSink: serves one bus's records over socketcand's protocol (see the module text).

    ``start(bus)`` takes from the BusInfo: its logger, ``admit(address)`` (None to accept a
    peer, or why not: the bus's --allow and its --max-clients over every protocol) and the
    source (transmit). Built from the bus's flags by ``factories``.
    """

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("socketcand (SavvyCAN, Kayak, python-can's socketcand)")
        group.add_argument("--socketcand", metavar="[ADDR:]PORT", nargs="?",
                           type=socketcand_address, const=("", DEFAULT_PORT), default=None,
                           help="also serve socketcand's raw mode on this port (default port "
                                "29536); clients open the bus by its channel name")
        group.add_argument("--no-beacon", action="store_true",
                           help="do not broadcast the socketcand discovery beacon (UDP 42000)")
        group.add_argument("--allow-transmit", action="store_true",
                           help="let socketcand clients put frames on the bus (< send >): only "
                                "peers inside --allow, or this machine when --allow is not "
                                "given; --listen-only always wins")

    @classmethod
    def transmit_flag(cls, args):
        return "--allow-transmit" if args.socketcand is not None and args.allow_transmit \
            else None

    @classmethod
    def factories(cls, args):
        """``--socketcand``: one server on the bus's --bind (or the address given), its
        --allow, --client-buffer and listen-only state."""
        if args.socketcand is None:
            if args.no_beacon or args.allow_transmit:
                raise UsageError("--no-beacon and --allow-transmit are socketcand options: add "
                                 "--socketcand [PORT]")
            return []
        host, port = args.socketcand
        allow = parse_networks(args.allow)

        def build(bus, server_options):
            return cls(bus.channel or bus.name, bind=host or args.bind, port=port,
                       allow_transmit=args.allow_transmit, allow=allow,
                       listen_only=bus.listen_only, beacon=not args.no_beacon,
                       client_buffer=args.client_buffer, coalesce=server_options.coalesce,
                       description=f"{bus.txt.get('process')}: {bus.source.description}")

        return [build]

    def __init__(self, bus_name, bind=None, port=DEFAULT_PORT, source=None,
                 allow_transmit=False, allow=(), listen_only=False, beacon=True,
                 client_buffer=4 << 20, coalesce=0.001, admit=None, log=None,
                 description="cancorder"):
        if not bus_name or any(not (" " < ch <= "~") or ch in "<>\"'&" for ch in bus_name):
            raise UsageError(f"socketcand bus name {bus_name!r}: it is the channel name, and "
                             "socketcand clients need one word of printable ASCII (set one "
                             "with -c)")
        if len(bus_name) > protocol.MAX_BUS_NAME:
            raise UsageError(f"socketcand bus name {bus_name!r} is longer than "
                             f"{protocol.MAX_BUS_NAME} characters")
        self.bus_name = bus_name
        self.bind = bind
        self.port = port
        self.source = source
        self.listen_only = listen_only
        self.allow = list(allow)
        # Transmit is granted per peer: never with --listen-only; without --allow only from
        # this machine (a bus must not be writable from the whole network by default).
        self.transmit_networks = None
        if allow_transmit and not listen_only:
            self.transmit_networks = self.allow or list(LOOPBACK)
        self.beacon = beacon
        self.client_buffer = client_buffer
        self.coalesce = coalesce
        self.description = description
        self._admit = admit
        self._logger = logging.getLogger("cancorder.socketcand")
        self._failed = None  # BusInfo.failed: a crash of this loop stops the server (exit 1)
        self._log_to = log  # tests: a log(level, text) callable instead of the logger
        self._encoder = protocol.FrameEncoder()
        self._selector = None
        self._listener = None
        self._wake_r = self._wake_w = None
        self._pending = collections.deque()
        self._armed = False
        self._flush_due = -1.0
        self._last_flush = 0.0
        self._clients = {}
        self._replies = collections.deque()  # (client, bytes) from the transmit thread
        self._transmit_queue = queue.Queue(TRANSMIT_QUEUE)
        self._stop = False
        self._drain_deadline = 0.0
        self._threads = []
        self._beacon_stop = threading.Event()
        self.bound_host = None
        # counters (stats)
        self.clients_accepted = 0
        self.clients_dropped_lag = 0
        self.clients_closed_errors = 0
        self.bytes_sent = 0
        self.frames_sent = 0
        self.transmitted = 0
        self.transmit_refused = 0
        self.transmit_failed = 0
        self.beacons_sent = 0

    # ---- RecordSink ----

    def start(self, bus=None):
        if bus is not None:
            self._logger = bus.log
            self._failed = bus.failed
            self._admit = self._admit or bus.admit
            self.source = self.source or bus.source
        self._listener = self._listen()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, _READ, _LISTENER)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, _WAKE)
        self._spawn(self._run, "socketcand")
        if self.transmit_networks is not None:
            self._spawn(self._transmit_loop, "socketcand-transmit")
        if self.beacon:
            self._spawn(self._beacon_loop, "socketcand-beacon")
        where = f"[{self.bound_host}]" if ":" in self.bound_host else self.bound_host
        self._log("info", f"socketcand serves bus '{self.bus_name}' at {where}:{self.port}"
                          + (", beacon on UDP 42000" if self.beacon else "")
                          + self._transmit_phrase())

    def put(self, records):
        """Queue a batch for every raw-mode client (any thread; never blocks)."""
        if not records:
            return
        self._pending.append(records)
        if not self._armed:
            self._armed = True
            self._wake()

    def close(self, timeout=2.0):
        """Send what is queued (at most ``timeout`` s), then close every client and stop."""
        self._drain_deadline = time.monotonic() + timeout
        self._stop = True
        self._beacon_stop.set()
        self._wake()
        try:
            self._transmit_queue.put_nowait(None)
        except queue.Full:
            pass
        for thread in self._threads:
            thread.join(timeout + 2.0)

    @property
    def client_count(self):
        return len(self._clients)

    metrics_name = "socketcand"  # its stats are the metrics cancorder_socketcand_<stat>{bus}

    def stats(self):
        return {"clients": len(self._clients),
                "clients_accepted": self.clients_accepted,
                "clients_dropped_lag": self.clients_dropped_lag,
                "clients_closed_errors": self.clients_closed_errors,
                "frames_sent": self.frames_sent,
                "bytes_sent": self.bytes_sent,
                "transmitted": self.transmitted,
                "transmit_refused": self.transmit_refused,
                "transmit_failed": self.transmit_failed}

    def summary(self):
        return (f"socketcand: {len(self._clients)} connected, clients served "
                f"{self.clients_accepted}, dropped for lag {self.clients_dropped_lag}, closed "
                f"for bad commands {self.clients_closed_errors}, frames transmitted "
                f"{self.transmitted:,} (refused {self.transmit_refused:,}, failed "
                f"{self.transmit_failed:,})")

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
        sock.setblocking(False)
        return sock

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _transmit_phrase(self):
        if self.transmit_networks is None:
            return ", transmit off" + (" (--listen-only wins)" if self.listen_only else "")
        return ", transmit allowed from " + ", ".join(str(n) for n in self.transmit_networks)

    # ---- the loop ----

    def _run(self):
        selector = self._selector
        try:
            while True:
                now = time.monotonic()
                timeout = None
                if self._flush_due >= 0.0:
                    timeout = max(0.0, self._flush_due - now)
                hold = self._next_hold_release()
                if hold is not None:
                    timeout = max(0.0, hold - now) if timeout is None \
                        else min(timeout, max(0.0, hold - now))
                if self._stop:
                    timeout = 0.01 if timeout is None else min(timeout, 0.01)
                for key, mask in selector.select(timeout):
                    tag = key.data
                    if tag is _WAKE:
                        self._on_wake()
                    elif tag is _LISTENER:
                        self._accept()
                    else:
                        if mask & _READ and not tag.closed:
                            self._read(tag)
                        if mask & selectors.EVENT_WRITE and not tag.closed:
                            self._write_backlog(tag)
                while self._replies:
                    client, reply = self._replies.popleft()
                    if not client.closed:
                        self._send(client, reply)
                if self._flush_due >= 0.0 and time.monotonic() >= self._flush_due:
                    if self._pending:
                        self._flush()
                    else:
                        self._flush_due = -1.0
                        self._armed = False
                        if self._pending:  # came in while still armed
                            self._flush()
                if hold is not None:
                    self._release_holds()
                if self._stop and self._stopping_done():
                    break
        except Exception as exc:  # a bug: the whole process stops with exit 1
            if self._failed is not None:
                self._failed("the socketcand server", exc)
            else:
                self._log("error", f"socketcand server stopped: {exc!r}")
        finally:
            self._close_all()

    def _on_wake(self):
        try:
            self._wake_r.recv(4096)
        except OSError:
            pass
        if self._pending and self._flush_due < 0.0:
            due = self._last_flush + self.coalesce
            if time.monotonic() >= due:
                self._flush()
            else:
                self._flush_due = due

    def _flush(self):
        now = time.monotonic()
        self._flush_due = now + self.coalesce
        self._last_flush = now
        records = take_all(self._pending)
        raw = [c for c in self._clients.values() if c.state == "raw"]
        if not raw:
            return
        before = self._encoder.frames
        classic, with_fd = self._encoder.encode(records)
        frames = self._encoder.frames - before
        for client in raw:
            lines = with_fd if client.wants_fd else classic
            if not lines:
                continue
            if client.held is not None:
                client.held.append(lines)
                if sum(len(x) for x in client.held) > self.client_buffer:
                    self._drop_laggard(client)
                continue
            self.frames_sent += frames
            self._send(client, lines)

    def _next_hold_release(self):
        due = None
        for client in self._clients.values():
            if client.held is not None and (due is None or client.hold_until < due):
                due = client.hold_until
        return due

    def _release_holds(self):
        now = time.monotonic()
        for client in list(self._clients.values()):
            if client.held is not None and client.hold_until <= now:
                held, client.held = client.held, None
                if held:
                    self._send(client, b"".join(held))

    # ---- clients ----

    def _accept(self):
        while True:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: say so, keep serving the others
                self._log("warning", f"socketcand: cannot accept a client: "
                                     f"{exc.strerror or exc}")
                return
            name = peer_name(address)
            if self._admit is not None:  # the bus's --allow and --max-clients
                refusal = self._admit(address)
            elif not peer_allowed(address, self.allow):
                refusal = "outside --allow " + ", ".join(str(n) for n in self.allow)
            else:
                refusal = None
            if refusal:
                self._log("warning", f"socketcand client {name} refused: {refusal}",
                          "socketcand-refused")
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            client = Client(sock, address)
            client.may_transmit = self.transmit_networks is not None and \
                peer_allowed(address, self.transmit_networks)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, _READ, client)
            self.clients_accepted += 1
            # a connection storm from one host logs a line per interval, with a count
            self._log("info", f"socketcand client {name} connected "
                              f"({len(self._clients)} connected)",
                      f"socketcand-connect {address[0]}")
            self._send(client, HI)

    def _read(self, client):
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(client, f"disconnected ({exc.strerror or exc})")
            return
        if not data:
            self._close(client, "disconnected")
            return
        if client.close_after_send:
            return  # it is being closed: its further input does not matter
        for item in client.reader.feed(data):
            self._command(client, item)
            if client.closed or client.close_after_send:
                return

    def _command(self, client, item):
        kind = item[0]
        if kind == protocol.SEND:
            if client.state == "nobus":
                self._bad(client, "open a bus first (open BUS)")
            else:
                self._transmit(client, item[1], item[2], item[3])
        elif kind == protocol.OPEN:
            if client.state != "nobus":
                self._bad(client, "the bus is already open")
            elif item[1] != self.bus_name:
                self._log("info", f"socketcand client {client.name} asked for bus "
                                  f"'{item[1]}'; this server has '{self.bus_name}'",
                          f"socketcand-wrong-bus {client.address[0]}")
                self._send(client, b"< error could not open bus >")
                client.close_after_send = True
                self._close_when_sent(client)
            else:
                client.state = "bcm"
                self._send(client, OK)
        elif kind == protocol.RAWMODE:
            if client.state == "nobus":
                self._bad(client, "open a bus first (open BUS)")
            else:
                self._start_raw(client, item[1])
        elif kind == protocol.ECHO:
            self._send(client, ECHO)
        elif kind == protocol.BCMMODE:
            if client.state == "nobus":
                self._bad(client, "open a bus first (open BUS)")
            else:
                client.state = "bcm"
                client.held = None
                self._send(client, OK)
        else:
            self._bad(client, item[1])

    def _start_raw(self, client, wants_fd):
        """Frames start RAWMODE_GRACE after the ``< ok >``: python-can's client reads the
        ``< ok >`` with one recv and fails if a frame line arrived in the same read."""
        client.state = "raw"
        client.wants_fd = wants_fd
        client.held = []
        client.hold_until = time.monotonic() + RAWMODE_GRACE
        self._send(client, OK)

    def _bad(self, client, message):
        client.errors += 1
        self._send(client, error_reply(message))
        self._check_errors(client)

    def _check_errors(self, client):
        if client.errors >= MAX_ERRORS and not client.close_after_send:
            self.clients_closed_errors += 1
            self._log("warning", f"socketcand client {client.name} closed: "
                                 f"{client.errors} bad commands",
                      f"socketcand-bad {client.address[0]}")
            client.close_after_send = True
            self._close_when_sent(client)

    def _transmit(self, client, can_id, flags, data):
        if not client.may_transmit:
            self.transmit_refused += 1
            self._send(client, TRANSMIT_DISABLED)
            return
        try:
            self._transmit_queue.put_nowait((client, can_id, flags, data))
        except queue.Full:
            self.transmit_failed += 1
            self._send(client, error_reply("transmit queue full: the adapter is not keeping up"))

    def _send(self, client, data):
        if client.closed:
            return
        if client.backlog:
            client.backlog.append(data)
            client.backlog_bytes += len(data)
            if client.backlog_bytes > self.client_buffer:
                self._drop_laggard(client)
            return
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._close(client, f"send failed: {exc.strerror or exc}")
            return
        self.bytes_sent += sent
        if sent < len(data):
            client.backlog.append(memoryview(data)[sent:])
            client.backlog_bytes = len(data) - sent
            client.behind_since = time.monotonic()
            if client.backlog_bytes > self.client_buffer:
                self._drop_laggard(client)
                return
            self._selector.modify(client.sock, _READ_WRITE, client)
        elif client.close_after_send:
            self._close(client, "closed")

    def _write_backlog(self, client):
        backlog = client.backlog
        if not backlog:
            return
        data = backlog[0]
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(client, f"send failed: {exc.strerror or exc}")
            return
        self.bytes_sent += sent
        client.backlog_bytes -= sent
        if sent < len(data):
            backlog[0] = memoryview(data)[sent:]
            return
        backlog.popleft()
        if not backlog:
            client.backlog_bytes = 0
            if client.close_after_send:
                self._close(client, "closed")
                return
            self._selector.modify(client.sock, _READ, client)

    def _close_when_sent(self, client):
        if not client.backlog:
            self._close(client, "closed")

    def _drop_laggard(self, client):
        self.clients_dropped_lag += 1
        behind = time.monotonic() - client.behind_since if client.behind_since else 0.0
        pending = client.backlog_bytes + sum(len(x) for x in client.held or ())
        self._close(client, f"dropped: {pending} bytes ({behind:.1f} s) behind, over its "
                            f"--client-buffer of {self.client_buffer} bytes", "warning")

    def _close(self, client, why, level="info"):
        if client.closed:
            return
        client.closed = True
        self._clients.pop(client.sock.fileno(), None)
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()
        client.backlog.clear()
        client.held = None
        self._log(level, f"socketcand client {client.name} {why} "
                         f"({len(self._clients)} connected)",
                  f"socketcand-close {client.address[0]}" if level == "info" else None)

    # ---- transmit (its own thread) ----

    def _transmit_loop(self):
        while True:
            item = self._transmit_queue.get()
            if item is None:
                return
            client, can_id, flags, data = item
            try:
                self.source.send(can_id, flags, data)
            except Exception as exc:  # the adapter refused or is gone: tell the client
                self.transmit_failed += 1
                self._reply_later(client, error_reply(f"transmit failed: {exc}"))
                self._log_transmit(client, can_id, flags, data, exc)
                continue
            self.transmitted += 1
            client.transmitted += 1
            self._log_transmit(client, can_id, flags, data, None)

    def _reply_later(self, client, reply):
        self._replies.append((client, reply))
        self._wake()

    def _log_transmit(self, client, can_id, flags, data, exc):
        """Rate-limited by the shared filter: a line per interval, saying how many it held."""
        frame = (f"{can_id:08X}" if flags & 1 else f"{can_id:03X}") + \
            ("##" if flags & 2 else "#") + data.hex().upper()
        if exc is not None:
            self._log("warning", f"socketcand client {client.name}: transmit of {frame} "
                                 f"failed: {exc}", "socketcand-transmit-failed")
        else:
            self._log("info", f"socketcand: transmitted {frame} from {client.name} to the bus "
                              f"({self.transmitted:,} in all)", "socketcand-transmit")

    # ---- beacon (its own thread) ----

    def _beacon_loop(self):
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except OSError as exc:
            self._log("warning", f"socketcand beacon off: {exc.strerror or exc}")
            return
        warned = set()
        with sock:
            while True:
                for target, payload in beacon_datagrams(self.bus_name, self.bind, self.port,
                                                        self.description):
                    try:
                        sock.sendto(payload, (target, BEACON_PORT))
                        self.beacons_sent += 1
                    except OSError as exc:
                        if target not in warned:
                            warned.add(target)
                            self._log("warning", f"socketcand beacon to {target} failed: "
                                                 f"{exc.strerror or exc}")
                if self._beacon_stop.wait(BEACON_INTERVAL):
                    return

    # ---- shutdown ----

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except (OSError, AttributeError):
            pass

    def _stopping_done(self):
        if self._pending:
            self._flush()
        self._release_holds_now()
        if time.monotonic() >= self._drain_deadline:
            return True
        return not any(c.backlog for c in self._clients.values())

    def _release_holds_now(self):
        for client in self._clients.values():
            client.hold_until = 0.0
        self._release_holds()

    def _close_all(self):
        try:
            self._selector.unregister(self._listener)
        except (KeyError, ValueError):
            pass
        self._listener.close()
        for client in list(self._clients.values()):
            unsent = client.backlog_bytes
            try:
                client.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close(client, "closed at shutdown" + (
                f" with {unsent} bytes unsent" if unsent else ""))
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def beacon_datagrams(bus_name, bind, port, description):
    """(broadcast address, payload) for each IPv4 network the listener is reachable on.

    socketcand sends one beacon to the broadcast address of the network it serves, with a
    ``can://IP:PORT`` URL clients connect to. Bound to every address, cancorder sends one per
    IPv4 network of this machine (loopback only when there is nothing else).
    """
    import ifaddr

    networks = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            try:
                iface = ipaddress.ip_interface(f"{ip.ip}/{ip.network_prefix}")
            except ValueError:
                continue
            networks.append(iface)
    if bind not in (None, "", "0.0.0.0", "::"):
        chosen = [n for n in networks if str(n.ip) == bind]
    else:
        chosen = [n for n in networks if not n.ip.is_loopback and not n.ip.is_link_local]
        if not chosen:
            chosen = [n for n in networks if n.ip.is_loopback]
    hostname = socket.gethostname()
    out = []
    for iface in chosen:
        payload = (f"<CANBeacon name={quoteattr(hostname)} type=\"SocketCAN\" "
                   f"description={quoteattr(description)}>"
                   f"<URL>can://{iface.ip}:{port}</URL>"
                   f"<Bus name={quoteattr(bus_name)}/></CANBeacon>")
        target = str(iface.network.broadcast_address) if iface.network.prefixlen < 32 \
            else str(iface.ip)
        out.append((target, payload.encode("utf-8")[:1024]))
    return out
