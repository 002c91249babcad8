"""The connection core: one select loop per bus that owns its listening sockets and every client
socket, for every protocol the bus speaks (ECUconnect records, socketcand's lines, ...).

A protocol supplies only what is its own (a ``Protocol``): how records become its bytes
(``encode``, once per flush for all its clients), where its units end (``rest_of_unit``: a
record, a line) and, when it reads commands, a session per client (``connected``) that is fed
what the client sends and answers through the core (``send``, ``start_stream``,
``close_after_sending``, ``reply_later``). Everything else is the core's, the same for every
protocol: accept and admission (``max_clients`` and ``max_clients_per_host`` counted over all
protocols, and ``admit``, the bus's --allow), TCP keepalive, a handshake deadline for protocols
that have one, EMFILE/ENFILE back-off, half-close, backlogs, lag drops on a unit boundary and
churn summaries.

Source threads hand over bytes of records with ``submit``; they go to every client with one
non-blocking ``send`` per client per flush, and a flush happens at most once per ``coalesce``
seconds (1 ms):
- on a quiet link (the last flush is half a window old, nothing pending) ``submit`` sends at once,
  from the caller's thread: no hand-over, no wake-up of the loop, no delay for a lone frame
  (up to 64 clients; with more the loop, woken, sends at once if the window has passed);
- under load records wait in ``_pending`` for the loop, which flushes them one window after the
  previous flush (select timeouts), so at 30,000 frames/s there are about a thousand flushes a
  second instead of 30,000. While frames keep coming the loop stays "armed": it looks again one
  window after each flush, so sources write nothing to the wake-up socket; once a window passes
  with nothing to send it sleeps until a client or a source needs it.
``_lock`` makes the two senders one: the loop holds it while it handles events (never while it
waits in select), ``submit`` while it sends.

A client that cannot keep up accumulates a backlog; it never holds more than ``client_buffer``
bytes, and all backlogs together never more than ``total_buffer``: the client that would pass
either is dropped with a log line naming it and how far behind it was (bytes, and seconds since
the oldest byte it is owed was handed over). A dropped client's stream ends on a unit boundary:
the unit it was in the middle of is finished first (for at most DROP_FINISH seconds). Nobody
else waits for it.

A client's EOF is not a disconnect: a half-closed client (``nc -N``, socat with stdin at EOF)
keeps receiving; only an error or a reset ends it. Client sockets have TCP keepalive, so a peer
that vanished is found. Dead connections are reaped before a new client is counted against the
limits. When accept fails for want of descriptors (EMFILE), accepting pauses for ACCEPT_BACKOFF;
repeated events (refusals, a storm of connects) are logged through the shared rate limit (the
``rate_key`` passed to ``log``), so that logs stay bounded.

Plain Python; broadcast.pxd types it and setup.py compiles it when it can.
"""
import collections
import errno
import itertools
import os
import selectors
import socket
import threading
import time

from .wire import HEADER_SIZE

try:
    import cython
except ImportError:  # a pure-Python install
    from . import _nocython as cython

_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE
_WAKE = "wake"
_IOV_MAX = 64  # backlog pieces gathered into one sendmsg (the kernel allows 1024)
DROP_FINISH = 5.0  # seconds a dropped client may take to receive the rest of its last unit
ACCEPT_BACKOFF = 0.5  # seconds without accepting after EMFILE/ENFILE (no descriptors left)
CHURN_FREE = 20  # connection events per second logged one by one; beyond, summarised
#: idle seconds before the first probe, seconds between probes, probes: a vanished peer is
#: closed after about two minutes
KEEPALIVE = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6))
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# what a send meets when the client simply went away: a disconnect, not a failure
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED)
#: A submit at least this fraction of a window after the last flush, with nothing pending,
#: finds a quiet link and is sent at once. Half a window, so that frames arriving about once
#: per window (1,000 frames/s, bursts of a USB adapter, a source that gathers a window per
#: read) go out directly even with the scheduler's jitter, rather than each waking the loop
#: for what little of the window was left; a busy link (a second submit within half a window)
#: is coalesced by the loop, one flush per window.
QUIET = 0.5
#: ... and when no more clients than this are connected. Since each send is one C call
#: (send_bytes), sending from the source thread is worth it up to 64 clients: bench.serve
#: --quick, quiet, 64 clients: p99 2.2-2.4 -> 0.7 ms (the C proxy's 0.65-0.70), for 10-25 %
#: more CPU than handing the flush to the loop (still 0.95-1.36x the C proxy's). At 16 the loop
#: took over from 17 clients on, a whole window later.
DIRECT_CLIENTS = 64


class Protocol:
    """What a protocol supplies to the core; this base is ECUconnect's: records as they are.

    ``passthrough``: every client gets the records themselves from its first flush on (no
    encoding, no session). Otherwise ``encode(records)`` returns one bytes object per stream a
    client may ask for (socketcand: classic frames, and frames with CAN FD), with the frames
    each holds in ``counts``; a client gets nothing until its session starts a stream.
    ``handshake_timeout``: seconds a new client has to start a stream (0: no handshake).
    """

    name = "ECUconnect"
    label = ""  # before "client NAME ..." in log lines: which protocol's client
    passthrough = True
    handshake_timeout = 0.0

    def encode(self, records):
        return (records,)

    counts = (0,)

    def rest_of_unit(self, data, skip):
        """Bytes from ``skip`` to the next unit boundary of ``data`` (which starts on one)."""
        return _phase(data, 0, skip)

    def connected(self, core, client):
        """A session for a new client (fed with ``feed(data)``), or None: its input is discarded."""
        return None


ECUCONNECT = Protocol()


class Service:
    """One protocol served by the core: its clients and its counters."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.passthrough = protocol.passthrough
        self.label = protocol.label
        self.clients = {}
        self.accepted = 0
        self.refused = 0
        self.dropped_lag = 0
        self.bytes_sent = 0
        self.units_sent = 0


class Listener:
    """A listening socket and the protocol spoken on it."""

    def __init__(self, sock, service):
        self.sock = sock
        self.service = service


class Client:
    """One connected client, its protocol's session and what it has not been sent yet."""

    def __init__(self, sock, name, host, service):
        self.sock = sock
        self.name = name
        self.host = host
        self.service = service
        self.session = None
        self.stream = 0 if service.passthrough else -1  # which encoded stream it gets (-1: none)
        self.held = None  # pieces held until hold_until (a protocol's grace), or None
        self.hold_until = 0.0
        self.handshake_by = 0.0  # closed if it has not started a stream by then (0: no deadline)
        self.close_when_sent = False
        self.close_reason = ""
        self.backlog = collections.deque()
        self.times = collections.deque()  # when each backlog piece was handed over
        self.backlog_bytes = 0
        self.behind_since = 0.0
        # the backlog's first piece is the tail of head_origin (whole units) after its
        # first head_skip bytes: where the unit boundaries are, found only when dropped
        self.head_origin = None
        self.head_skip = 0
        self.sent = 0
        self.closed = False
        self.half_closed = False  # sent EOF: reads no more, still receives
        self.sent_at_eof = 0
        self.finishing = False  # dropped: sending the rest of its last unit, then closed
        self.finish_by = 0.0
        self.mask = _READ  # the selector events it is registered for (0: none)
        self.fd = sock.fileno()  # compiled, flushes send on it without a Python call


class Broadcaster:
    """Sends every submitted byte to every client of every protocol, in order, without letting
    one hold others up.

    ``listeners`` speak ``protocol`` (default ECUconnect): the core's first service, whose
    counters are ``clients_accepted``, ``bytes_sent``...; ``serve`` adds listeners of another
    protocol. ``log(level, text, rate_key)`` receives connection events ("info") and drops
    ("warning"); ``rate_key`` is None, or the key under which a repeated event is summarised.
    """

    def __init__(self, listeners, client_buffer=4 << 20, max_clients=64, coalesce=0.001,
                 log=None, max_clients_per_host=32, total_buffer=64 << 20, protocol=None):
        self.client_buffer = client_buffer
        self.total_buffer = max(total_buffer, client_buffer)
        self.max_clients = max_clients
        self.max_clients_per_host = max_clients_per_host
        self._backlog_total = 0
        self._per_host = {}
        self._finishing = {}  # fileno -> dropped client still owed the rest of a unit
        self._waiting = {}  # fileno -> client with a handshake deadline or held frames
        self._next_check = -1.0  # when _housekeeping is due (-1: nothing to do)
        self._accept_resume = -1.0
        self._churn_window = 0.0
        self._churn_count = 0
        self.coalesce = coalesce
        self._log = log if log is not None else _no_log
        self._selector = selectors.DefaultSelector()
        self._services = []
        self._listeners = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, _WAKE)
        self._pending = collections.deque()
        self._replies = collections.deque()  # (client, bytes) handed over by other threads
        self.queued_bytes = 0  # what _pending holds: at most total_buffer
        self._overflow = 0  # bytes refused since the last flush: every client is dropped then
        self._lock = threading.Lock()
        self._wake_armed = False
        self._flush_due = -1.0
        self._last_flush = -1.0e9  # never: the first submit finds a quiet link
        self._clients = {}
        self._changed = threading.Condition()
        self._watchers = 0  # threads in wait_for_clients / wait_drained
        self._stop_requested = False
        self._drain_deadline = 0.0
        self._finished = False
        self.bytes_overflowed = 0  # records refused because the loop fell too far behind
        # admit(address) -> None to accept a client, or the reason it is refused (the bus's
        # --allow); checked, after the limits, before any byte is sent
        self.admit = None
        self._main = self._add_service(list(listeners), protocol or ECUCONNECT)

    # ---- called from any thread ----

    def serve(self, listeners, protocol):
        """Serve ``protocol`` on these listening sockets too; returns its Service (counters)."""
        with self._lock:
            service = self._add_service(list(listeners), protocol)
        return service

    def submit(self, records):
        """Send bytes of records to every client now if the link was idle, else queue them for
        the loop's next flush (thread-safe; mostly no syscall but the sends)."""
        if not records:
            return
        lock = self._lock
        lock.acquire()
        try:
            direct = False
            now = 0.0
            if not self._pending and not self._overflow and not self._stop_requested and \
                    len(self._clients) <= DIRECT_CLIENTS:
                now = time.monotonic()
                direct = now >= self._last_flush + self.coalesce * QUIET
            if direct:
                check = self._next_check
                self._send_all(records, now)
                if self._next_check == check:
                    return
                # a client dropped just now has a deadline to finish its last unit: the
                # loop, maybe asleep without a timeout, must learn of it
            else:
                size = len(records)
                if self._overflow or self.queued_bytes + size > self.total_buffer:
                    # The loop has not run for that long: no client can get these in order any
                    # more. They are counted, and every client is dropped at the next flush;
                    # nothing after the first of them is queued (a client would get the frames
                    # after the hole).
                    self._overflow += size
                else:
                    self._pending.append(records)
                    self.queued_bytes += size
                if self._wake_armed:
                    return  # the loop flushes within the window: nobody needs to wake it
                self._wake_armed = True
        finally:
            lock.release()
        self._wake()

    def reply_later(self, client, data):
        """Send ``data`` to one client from the loop (a session's answer computed elsewhere,
        e.g. the outcome of a transmit on the adapter's thread)."""
        self._replies.append((client, data))
        self._wake()

    def stop(self, drain_timeout=2.0):
        """Ask the loop to send what is queued (for at most drain_timeout s), then close all."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stop_requested = True
        self._wake()

    @property
    def client_count(self):
        """Clients of every protocol."""
        return len(self._clients)

    @property
    def clients_accepted(self):
        return self._main.accepted

    @property
    def clients_refused(self):
        return sum(service.refused for service in self._services)

    @property
    def clients_dropped_lag(self):
        return self._main.dropped_lag

    @property
    def bytes_sent(self):
        return self._main.bytes_sent

    @property
    def main_clients(self):
        """Clients of the listeners given at construction (ECUconnect's, on a bus)."""
        return len(self._main.clients)

    def client_list(self):
        """(protocol label, client name, bytes queued for it, bytes sent to it) of every
        client, for the status page: read from another thread, so only copies are taken."""
        return [(client.service.label, client.name, client.backlog_bytes, client.sent)
                for client in list(self._clients.values())]

    def wait_for_clients(self, count=1, timeout=None):
        """Block until at least ``count`` clients are connected; False on timeout or stop."""
        with self._changed:
            self._watchers += 1
            try:
                return self._changed.wait_for(
                    lambda: len(self._clients) >= count or self._finished, timeout) \
                    and not self._finished
            finally:
                self._watchers -= 1

    def wait_drained(self, timeout=None):
        """Block until everything submitted so far has been handed to every client's socket."""
        with self._changed:
            self._watchers += 1
            try:
                return self._changed.wait_for(self._is_drained, timeout)
            finally:
                self._watchers -= 1

    # ---- what a protocol's session calls (from the loop, while it handles the client) ----

    def send(self, client, data):
        """Send bytes of whole units to one client (a reply, a greeting), behind its backlog."""
        self._send(client, data)

    def start_stream(self, client, stream, hold=0.0):
        """From now on the client gets stream ``stream`` of every flush; with ``hold``, what
        comes in the first ``hold`` seconds is sent together after them."""
        client.stream = stream
        client.handshake_by = 0.0
        if hold > 0.0:
            client.held = []
            client.hold_until = time.monotonic() + hold
            self._waiting[client.sock.fileno()] = client
            self._schedule(client.hold_until)
        else:
            client.held = None
            self._waiting.pop(client.sock.fileno(), None)

    def stop_stream(self, client):
        client.stream = -1
        client.held = None

    def close_after_sending(self, client, why):
        """Close the client once what it is owed is sent; nothing more is read from it."""
        client.close_when_sent = True
        client.close_reason = why
        if not client.backlog:
            self._close(client, why)

    # ---- the loop (one thread) ----

    def run(self):
        """The select loop; returns after stop() once the clients got what was queued."""
        selector = self._selector
        try:
            while True:
                timeout = None
                if self._flush_due >= 0.0:
                    timeout = max(0.0, self._flush_due - time.monotonic())
                if self._stop_requested:
                    timeout = 0.01 if timeout is None else min(timeout, 0.01)
                if self._next_check >= 0.0:
                    wait = max(0.0, self._next_check - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
                events = selector.select(timeout)
                with self._lock:
                    for key, mask in events:
                        tag = key.data
                        if tag is _WAKE:
                            self._on_wake()
                        elif isinstance(tag, Listener):
                            self._accept(tag)
                        else:
                            if tag.closed:
                                continue
                            if mask & selectors.EVENT_READ:
                                self._read(tag)
                            if mask & selectors.EVENT_WRITE and not tag.closed:
                                self._write_backlog(tag)
                    while self._replies:
                        client, reply = self._replies.popleft()
                        self._send(client, reply)
                    if self._flush_due >= 0.0 and time.monotonic() >= self._flush_due:
                        if self._pending or self._overflow:
                            self._flush()
                        else:
                            self._go_idle()
                    if self._next_check >= 0.0 and time.monotonic() >= self._next_check:
                        self._housekeeping()
                    if self._stop_requested and self._stopping_done():
                        break
        finally:
            with self._lock:
                self._close_all()

    def _add_service(self, listeners, protocol):
        service = Service(protocol)
        self._services.append(service)
        for sock in listeners:
            sock.setblocking(False)
            listener = Listener(sock, service)
            self._listeners.append(listener)
            if self._accept_resume < 0.0:  # else registered when accepting resumes
                self._selector.register(sock, _READ, listener)
        return service

    def _on_wake(self):
        try:
            self._wake_r.recv(4096)  # one byte per idle period: 4096 drains it
        except BlockingIOError:
            pass
        if self._stop_requested:
            self._close_listeners()
        if (self._pending or self._overflow) and self._flush_due < 0.0:
            due = self._last_flush + self.coalesce
            if time.monotonic() >= due:
                self._flush()
            else:
                self._flush_due = due

    def _go_idle(self):
        """A window passed with nothing to send: from now on a submit must wake the loop."""
        self._flush_due = -1.0
        self._wake_armed = False
        if self._pending or self._overflow:  # came in while still armed: nobody will wake us
            self._flush()

    def _flush(self):
        """The loop's flush of what is pending; it stays armed: it looks again one window on."""
        now = time.monotonic()
        self._flush_due = now + self.coalesce
        data = take_all(self._pending)
        self.queued_bytes = 0
        if data:  # empty when all that came was one batch over the bound
            self._send_all(data, now)
        if self._overflow:
            lost, self._overflow = self._overflow, 0
            self.bytes_overflowed += lost
            for client in list(self._clients.values()):
                if not client.finishing and not client.closed:
                    self._drop_laggard(client, None, f"and {lost:,} bytes more could not be "
                                                     "queued: the server fell more than "
                                                     "--client-buffer-total behind the source")

    def _send_all(self, data, now):
        """One flush: the same records to every client, in each protocol's bytes (held by
        _lock)."""
        self._last_flush = now
        if data:
            for service in self._services:
                if not service.clients:
                    continue
                if service.passthrough:
                    for client in list(service.clients.values()):
                        self._send(client, data)
                else:
                    self._send_encoded(service, data)
        if self._watchers:
            with self._changed:
                self._changed.notify_all()

    def _send_encoded(self, service, data):
        """A protocol with its own bytes: encoded once for all its clients, only if one of them
        has started a stream."""
        streams = None
        counts = None
        for client in list(service.clients.values()):
            if client.stream < 0 or client.closed:
                continue
            if streams is None:
                protocol = service.protocol
                streams = protocol.encode(data)
                counts = protocol.counts
            piece = streams[client.stream]
            if not piece:
                continue
            service.units_sent += counts[client.stream]
            if client.held is not None:
                client.held.append(piece)
                client.backlog_bytes += len(piece)
                self._backlog_total += len(piece)
                if client.backlog_bytes > self.client_buffer:
                    self._drop_laggard(client, None, f"over its --client-buffer of "
                                                     f"{self.client_buffer:,} bytes")
                continue
            self._send(client, piece)

    def _send(self, client, data):
        if client.finishing or client.closed:  # dropped during this flush
            return
        if client.backlog:
            self._queue(client, data)
            return
        if cython.compiled and type(data) is bytes:
            # the flush's hot path: a send per client per flush, each a Python method call
            # (argument parsing, the socket's timeout logic) before this
            sent = send_bytes(client.fd, data)
            if sent < 0:
                failure = -sent
                if failure != errno.EAGAIN and failure != errno.EINTR:
                    self._close(client, _send_failure(OSError(failure, os.strerror(failure))))
                    return
                sent = 0
        else:
            try:
                sent = client.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._close(client, _send_failure(exc))
                return
        client.sent += sent
        client.service.bytes_sent += sent
        if sent < len(data):
            now = time.monotonic()
            client.head_origin = data  # whole units: a boundary at 0
            client.head_skip = sent
            client.behind_since = now
            self._queue(client, memoryview(data)[sent:], now)
            if not client.closed:
                self._watch(client, True)
        elif client.close_when_sent:
            self._close(client, client.close_reason)

    def _queue(self, client, data, now=0.0):
        """Add to a client's backlog, within its --client-buffer and the total bound."""
        size = len(data)
        if client.backlog_bytes + size > self.client_buffer:
            self._drop_laggard(client, data, f"over its --client-buffer of "
                                             f"{self.client_buffer:,} bytes")
            return
        if self._backlog_total + size > self.total_buffer:
            furthest = client
            for other in self._clients.values():
                if other.backlog_bytes > furthest.backlog_bytes:
                    furthest = other
            self._drop_laggard(furthest, data if furthest is client else None,
                               f"the furthest behind when all backlogs reached "
                               f"{self.total_buffer:,} bytes (--client-buffer-total)")
            if furthest is client:
                return
        client.backlog.append(data)
        client.times.append(now if now else time.monotonic())
        client.backlog_bytes += size
        self._backlog_total += size

    def _write_backlog(self, client):
        """Send what a lagging client is owed: the queued pieces as they are (sendmsg gathers
        them), never joined into a new buffer on every writable event."""
        backlog = client.backlog
        if not backlog:
            return
        try:
            if len(backlog) == 1:
                sent = client.sock.send(backlog[0])
            else:
                sent = client.sock.sendmsg(list(itertools.islice(backlog, 0, _IOV_MAX)))
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(client, _send_failure(exc))
            return
        client.sent += sent
        client.service.bytes_sent += sent
        client.backlog_bytes -= sent
        self._backlog_total -= sent
        times = client.times
        skip = client.head_skip
        while sent:
            head = backlog[0]
            if sent >= len(head):
                sent -= len(head)
                backlog.popleft()
                times.popleft()
                skip = 0  # the next piece is whole units
                client.head_origin = backlog[0] if backlog else None
            else:
                backlog[0] = memoryview(head)[sent:]
                skip += sent
                sent = 0
        client.head_skip = skip
        if not backlog:
            self._backlog_total -= client.backlog_bytes
            client.backlog_bytes = 0
            if client.finishing:  # its last unit is complete: now it can go
                self._close(client, "", "info", True)
                return
            if client.close_when_sent:
                self._close(client, client.close_reason)
                return
            self._watch(client, False)
            if self._watchers:
                with self._changed:
                    self._changed.notify_all()

    def _watch(self, client, write):
        """Register the events a client needs: reads until its EOF, writes while it is owed."""
        mask = (0 if client.half_closed else _READ) | (selectors.EVENT_WRITE if write else 0)
        if mask == client.mask:
            return
        if client.mask == 0:
            self._selector.register(client.sock, mask, client)
        elif mask == 0:
            self._selector.unregister(client.sock)
        else:
            self._selector.modify(client.sock, mask, client)
        client.mask = mask

    def _accept(self, listener):
        service = listener.service
        while True:
            try:
                sock, address = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:  # accepting again at once would spin
                    self._pause_accepting(exc)
                else:
                    self._log("warning", f"cannot accept a client: {exc.strerror or exc}",
                              "accept failed")
                return
            name = peer_name(address)
            host = _host(address)
            refused = self._refusal(address, host)
            if refused is not None:  # reap the connections already gone, then count again
                self._reap()
                refused = self._refusal(address, host)
            if refused is not None:
                service.refused += 1
                self._log("warning", f"{service.label}client {name} refused: {refused}",
                          service.label + "client refused")
                sock.close()
                continue
            sock.setblocking(False)
            _tune(sock)
            client = Client(sock, name, host, service)
            fileno = sock.fileno()
            self._clients[fileno] = client
            service.clients[fileno] = client
            self._per_host[host] = self._per_host.get(host, 0) + 1
            self._selector.register(sock, _READ, client)
            service.accepted += 1
            self._log("info", f"{service.label}client {name} connected "
                              f"({len(service.clients)} connected)",
                      self._churn("client connected"))
            protocol = service.protocol
            if protocol.handshake_timeout > 0.0:
                client.handshake_by = time.monotonic() + protocol.handshake_timeout
                self._waiting[fileno] = client
                self._schedule(client.handshake_by)
            if not service.passthrough:
                client.session = protocol.connected(self, client)
            with self._changed:
                self._changed.notify_all()

    def _refusal(self, address, host):
        """None to accept a client, or why not: --max-clients, --max-clients-per-host (both
        over every protocol), and ``admit`` (the bus's --allow)."""
        count = len(self._clients)
        if self.max_clients and count >= self.max_clients:
            return f"already {count} {'client' if count == 1 else 'clients'} " \
                   f"(--max-clients {self.max_clients})"
        from_host = self._per_host.get(host, 0)
        if self.max_clients_per_host and from_host >= self.max_clients_per_host:
            return f"already {from_host} {'client' if from_host == 1 else 'clients'} from " \
                   f"{host} (--max-clients-per-host {self.max_clients_per_host})"
        if self.admit is not None:
            return self.admit(address) or None
        return None

    def _pause_accepting(self, exc):
        for listener in self._listeners:
            try:
                self._selector.unregister(listener.sock)
            except (KeyError, ValueError):
                pass
        self._accept_resume = time.monotonic() + ACCEPT_BACKOFF
        self._schedule(self._accept_resume)
        self._log("warning", f"cannot accept clients: {exc.strerror or exc} (raise the "
                             f"descriptor limit, ulimit -n, or lower --max-clients); pausing "
                             f"accepts for {ACCEPT_BACKOFF:g} s", "accept failed")

    def _schedule(self, when):
        if self._next_check < 0.0 or when < self._next_check:
            self._next_check = when

    def _housekeeping(self):
        """Resume accepting after a pause; close dropped clients that took too long; release
        held frames; close clients that did not finish their handshake in time."""
        now = time.monotonic()
        self._next_check = -1.0
        if self._accept_resume >= 0.0:
            if now >= self._accept_resume:
                self._accept_resume = -1.0
                for listener in self._listeners:
                    self._selector.register(listener.sock, _READ, listener)
            else:
                self._schedule(self._accept_resume)
        for client in list(self._finishing.values()):
            if now >= client.finish_by:
                self._close(client, "", "info", True)  # it never took its last unit
            else:
                self._schedule(client.finish_by)
        for client in list(self._waiting.values()):
            self._check_waiting(client, now)

    def _check_waiting(self, client, now):
        if client.closed:
            self._waiting.pop(client.sock.fileno(), None)
            return
        if client.held is not None:
            if now >= client.hold_until:
                self._release(client)
            else:
                self._schedule(client.hold_until)
        if client.handshake_by > 0.0:
            if now >= client.handshake_by:
                self._close(client, f"did not finish its handshake within "
                                    f"{client.service.protocol.handshake_timeout:g} s",
                            "info")
            else:
                self._schedule(client.handshake_by)
        if client.held is None and client.handshake_by <= 0.0:
            self._waiting.pop(client.sock.fileno(), None)

    def _release(self, client):
        """The held frames go out now, in one send."""
        held, client.held = client.held, None
        size = 0
        for piece in held:
            size += len(piece)
        client.backlog_bytes -= size
        self._backlog_total -= size
        if held and not client.closed:
            self._send(client, b"".join(held))

    def _reap(self):
        """Before a client is counted against the limits: close the connections that are
        already gone (a reset or close waiting to be read, an error pending), and half-closed
        ones that took nothing since their EOF (a client that connected and closed looks
        exactly like that)."""
        for key, mask in self._selector.select(0):
            if isinstance(key.data, Client) and mask & _READ:
                client = key.data
                # a client's last command and its EOF may need two reads: read on, so that
                # one that sent a command and left is seen as gone
                for _ in range(4):
                    if not self._read(client) or client.closed or client.half_closed:
                        break
        for client in list(self._clients.values()):
            if not client.half_closed:
                continue
            try:
                pending_error = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                pending_error = -1
            if pending_error:
                self._close(client, "disconnected")
            elif client.sent == client.sent_at_eof:
                self._close(client, "closed its side and took nothing since: taken as gone "
                                    "to make room")

    def _read(self, client):
        """Read what a client sent (True if anything came): its session's commands, or
        nothing that matters; its EOF; or its end."""
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._close(client, f"disconnected ({exc.strerror or exc})")
            return False
        if not data:
            # EOF: the client sends nothing more, but may well go on reading (nc -N)
            client.half_closed = True
            client.sent_at_eof = client.sent
            self._watch(client, bool(client.backlog))
            return False
        if client.session is not None and not client.close_when_sent and not client.finishing:
            client.session.feed(data)
        return True

    def _drop_laggard(self, client, unqueued, why):
        """Drop a client that fell too far behind; ``unqueued``: data it was owed that did not
        go into its backlog (None: none)."""
        service = client.service
        service.dropped_lag += 1
        now = time.monotonic()
        lag = now - client.times[0] if client.times else 0.0
        behind = client.backlog_bytes + (len(unqueued) if unqueued is not None else 0)
        self._log("warning", f"{service.label}client {client.name} dropped: {behind:,} bytes "
                             f"({lag:.1f} s) behind, {why}", self._churn("client dropped"))
        if client.held is not None:  # nothing of the held frames was sent: nothing owed
            self._release_held_count(client)
        head = client.backlog[0] if client.backlog else unqueued
        phase = 0
        if head is not None and client.head_origin is not None:
            if service.passthrough:
                phase = _phase(client.head_origin, 0, client.head_skip)
            else:
                phase = service.protocol.rest_of_unit(client.head_origin, client.head_skip)
        if not phase:
            self._close(client, "", "info", True)
            return
        # Its stream must end on a unit boundary: keep only the rest of the unit it is in the
        # middle of, send that, then close.
        owed = memoryview(head)[:phase]
        self._backlog_total -= client.backlog_bytes - len(owed)
        client.backlog.clear()
        client.times.clear()
        client.backlog.append(owed)
        client.times.append(now)
        client.backlog_bytes = len(owed)
        client.finishing = True
        client.finish_by = now + DROP_FINISH
        self._uncount(client)
        self._finishing[client.sock.fileno()] = client
        self._schedule(client.finish_by)
        self._watch(client, True)

    def _release_held_count(self, client):
        size = 0
        for piece in client.held:
            size += len(piece)
        client.held = None
        client.backlog_bytes -= size
        self._backlog_total -= size

    def _uncount(self, client):
        """No longer one of the clients (it gets no more data and holds no slot)."""
        fileno = client.sock.fileno()
        if self._clients.pop(fileno, None) is not None:
            client.service.clients.pop(fileno, None)
            self._waiting.pop(fileno, None)
            left = self._per_host.get(client.host, 1) - 1
            if left > 0:
                self._per_host[client.host] = left
            else:
                self._per_host.pop(client.host, None)

    def _churn(self, event):
        """None while connections come and go at a human pace; under a storm, the rate key
        that makes the shared limit summarise ``event`` once per interval."""
        now = time.monotonic()
        if now - self._churn_window >= 1.0:
            self._churn_window = now
            self._churn_count = 0
        self._churn_count += 1
        return event if self._churn_count > CHURN_FREE else None

    def _close(self, client, why, level="info", quiet=False):
        if client.closed:
            return
        client.closed = True
        if client.held is not None:
            self._release_held_count(client)
        self._uncount(client)
        self._finishing.pop(client.sock.fileno(), None)
        if client.mask:
            try:
                self._selector.unregister(client.sock)
            except (KeyError, ValueError):
                pass
            client.mask = 0
        client.sock.close()
        self._backlog_total -= client.backlog_bytes
        client.backlog_bytes = 0
        client.backlog.clear()
        client.times.clear()
        if not quiet:
            self._log(level, f"{client.service.label}client {client.name} {why} "
                             f"({len(client.service.clients)} connected)",
                      self._churn("client closed"))
        with self._changed:
            self._changed.notify_all()

    # ---- shutdown ----

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the loop is awake anyway, or gone

    def _is_drained(self):
        if self._pending or self._finished:
            return not self._pending
        for client in list(self._clients.values()):
            if client.backlog or client.held:
                return False
        return True

    def _stopping_done(self):
        if self._pending or self._overflow:
            self._flush()
        for client in list(self._waiting.values()):
            if client.held is not None and not client.closed:
                self._release(client)
        if time.monotonic() >= self._drain_deadline:
            return True
        for client in list(self._clients.values()):
            if client.backlog:
                return False
        return True

    def _close_listeners(self):
        for listener in self._listeners:
            try:
                self._selector.unregister(listener.sock)
            except (KeyError, ValueError):
                pass
            listener.sock.close()
        self._listeners = []

    def _close_all(self):
        self._close_listeners()
        for client in list(self._clients.values()):
            unsent = client.backlog_bytes
            try:
                # Read what the client still sent so close() ends with FIN, not RST
                # (an RST could discard data the client has not read yet).
                client.sock.shutdown(socket.SHUT_WR)
                while client.sock.recv(65536):
                    pass
            except OSError:
                pass
            self._close(client, "closed at shutdown" + (
                f" with {unsent} bytes unsent" if unsent else ""))
        for client in list(self._finishing.values()):
            self._close(client, "", "info", True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._changed:
            self._finished = True
            self._changed.notify_all()


def take_all(pending):
    """What a deque of batches holds, as one bytes object (a lone batch as it is, no copy).

    Safe while another thread appends: it takes the batches that were there when it started,
    one popleft each, so a batch added meanwhile stays for the next flush. The broadcaster's
    and the socketcand server's flushes both start with it.
    """
    count = len(pending)
    if count == 1:
        return pending.popleft()
    chunks = []
    while count:
        chunks.append(pending.popleft())
        count -= 1
    return b"".join(chunks)


def peer_name(address):
    """host:port of a peer for log lines ([v6]:port; an IPv4-mapped address as IPv4)."""
    host, port = address[0], address[1]
    if ":" in host:
        if host.startswith("::ffff:"):
            return f"{host[7:]}:{port}"
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _host(address):
    """The peer's address alone (an IPv4 client of a dual-stack listener as IPv4)."""
    host = address[0]
    return host[7:] if host.startswith("::ffff:") else host


def _tune(sock):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE:
            if hasattr(socket, name):  # not every platform has every knob
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass


def _phase(data, boundary, upto):
    """Bytes from ``upto`` to the first record boundary at or after it, walking the records of
    ``data`` from ``boundary`` (a record boundary)."""
    pos = boundary
    while pos < upto:
        pos += HEADER_SIZE + data[pos + HEADER_SIZE - 1]  # the header's last byte: the length
    return pos - upto


def _send_failure(exc):
    """Why a client is closed after its send raised: a client that left is "disconnected", as
    its reset is when a read meets it; anything else is a failure."""
    if exc.errno in _GONE:
        return f"disconnected ({exc.strerror or exc})"
    return f"send failed: {exc.strerror or exc}"


def _no_log(level, text, rate_key=None):
    pass
