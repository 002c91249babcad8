"""The broadcaster: one select loop that owns the listening sockets and every client socket.

Source threads hand over bytes of records with ``submit``; they go to every client with one
non-blocking ``send`` per client per flush, and a flush happens at most once per ``coalesce``
seconds (1 ms):
- on a quiet link (the last flush is half a window old, nothing pending) ``submit`` sends at once,
  from the caller's thread: no hand-over, no wake-up of the loop, no delay for a lone frame
  (up to 16 clients; with more the loop, woken, sends at once if the window has passed);
- under load records wait in ``_pending`` for the loop, which flushes them one window after the
  previous flush (select timeouts), so at 30,000 frames/s there are about a thousand flushes a
  second instead of 30,000. While frames keep coming the loop stays "armed": it looks again one
  window after each flush, so sources write nothing to the wake-up socket; once a window passes
  with nothing to send it sleeps until a client or a source needs it.
``_lock`` makes the two senders one: the loop holds it while it handles events (never while it
waits in select), ``submit`` while it sends.

A client that cannot keep up accumulates a backlog; when it passes ``client_buffer`` bytes the
client is dropped with a log line naming it and how far behind it was. Nobody else waits for it.
Bytes a client sends are read and discarded; a closed client is noticed at once.

Plain Python; broadcast.pxd types it and setup.py compiles it when it can.
"""
import collections
import itertools
import selectors
import socket
import threading
import time

_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE
_WAKE = "wake"
_LISTENER = "listener"
_IOV_MAX = 64  # backlog pieces gathered into one sendmsg (the kernel allows 1024)
#: A submit at least this fraction of a window after the last flush, with nothing pending,
#: finds a quiet link and is sent at once. Half a window, so that frames arriving about once
#: per window (1,000 frames/s, bursts of a USB adapter, a source that gathers a window per
#: read) go out directly even with the scheduler's jitter, rather than each waking the loop
#: for what little of the window was left; a busy link (a second submit within half a window)
#: is coalesced by the loop, one flush per window.
QUIET = 0.5
#: ... and when no more clients than this are connected. Measured (bench.serve, 1,000 frames/s
#: in 1 ms bursts): sending from the source thread costs 30 % less CPU than waking the loop with
#: 4 and 16 clients, but 8 % more with 32 and 30 % more with 64, where the loop sends better.
DIRECT_CLIENTS = 16


class Client:
    """One connected client and what it has not been sent yet."""

    def __init__(self, sock, name):
        self.sock = sock
        self.name = name
        self.backlog = collections.deque()
        self.backlog_bytes = 0
        self.behind_since = 0.0
        self.sent = 0
        self.closed = False


class Broadcaster:
    """Sends every submitted byte to every client, in order, without letting one hold others up.

    ``log(level, text)`` receives connection events ("info") and drops ("warning").
    """

    def __init__(self, listeners, client_buffer=4 << 20, max_clients=64, coalesce=0.001,
                 log=None):
        self.client_buffer = client_buffer
        self.max_clients = max_clients
        self.coalesce = coalesce
        self._log = log if log is not None else _no_log
        self._selector = selectors.DefaultSelector()
        self._listeners = list(listeners)
        for listener in self._listeners:
            listener.setblocking(False)
            self._selector.register(listener, _READ, _LISTENER)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, _WAKE)
        self._pending = collections.deque()
        self._lock = threading.Lock()
        self._wake_armed = False
        self._flush_due = -1.0
        self._last_flush = 0.0
        self._clients = {}
        self._changed = threading.Condition()
        self._watchers = 0  # threads in wait_for_clients / wait_drained
        self._stop_requested = False
        self._drain_deadline = 0.0
        self._finished = False
        self.bytes_sent = 0
        self.clients_accepted = 0
        self.clients_refused = 0
        self.clients_dropped_lag = 0
        # admit(address) -> None to accept a client, or the reason it is refused (--allow and
        # a --max-clients shared with other protocols); checked before any byte is sent
        self.admit = None

    # ---- called from any thread ----

    def submit(self, records):
        """Send bytes of records to every client now if the link was idle, else queue them for
        the loop's next flush (thread-safe; mostly no syscall but the sends)."""
        if not records:
            return
        lock = self._lock
        lock.acquire()
        try:
            if not self._pending and not self._stop_requested and \
                    len(self._clients) <= DIRECT_CLIENTS:
                now = time.monotonic()
                if now >= self._last_flush + self.coalesce * QUIET:
                    self._send_all(records, now)
                    return
            self._pending.append(records)
            if self._wake_armed:
                return  # the loop flushes within the window: nobody needs to wake it
            self._wake_armed = True
        finally:
            lock.release()
        self._wake()

    def stop(self, drain_timeout=2.0):
        """Ask the loop to send what is queued (for at most drain_timeout s), then close all."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stop_requested = True
        self._wake()

    @property
    def client_count(self):
        return len(self._clients)

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
                events = selector.select(timeout)
                with self._lock:
                    for key, mask in events:
                        tag = key.data
                        if tag is _WAKE:
                            self._on_wake()
                        elif tag is _LISTENER:
                            self._accept(key.fileobj)
                        else:
                            if mask & selectors.EVENT_READ:
                                self._read(tag)
                            if mask & selectors.EVENT_WRITE and not tag.closed:
                                self._write_backlog(tag)
                    if self._flush_due >= 0.0 and time.monotonic() >= self._flush_due:
                        if self._pending:
                            self._flush()
                        else:
                            self._go_idle()
                    if self._stop_requested and self._stopping_done():
                        break
        finally:
            with self._lock:
                self._close_all()

    def _on_wake(self):
        try:
            self._wake_r.recv(4096)  # one byte per idle period: 4096 drains it
        except BlockingIOError:
            pass
        if self._stop_requested:
            self._close_listeners()
        if self._pending and self._flush_due < 0.0:
            due = self._last_flush + self.coalesce
            if time.monotonic() >= due:
                self._flush()
            else:
                self._flush_due = due

    def _go_idle(self):
        """A window passed with nothing to send: from now on a submit must wake the loop."""
        self._flush_due = -1.0
        self._wake_armed = False
        if self._pending:  # came in while still armed: nobody will wake us for it
            self._flush()

    def _flush(self):
        """The loop's flush of what is pending; it stays armed: it looks again one window on."""
        now = time.monotonic()
        self._flush_due = now + self.coalesce
        pending = self._pending
        count = len(pending)
        if count == 1:
            data = pending.popleft()
        else:
            chunks = []
            while count:
                chunks.append(pending.popleft())
                count -= 1
            data = b"".join(chunks)
        self._send_all(data, now)

    def _send_all(self, data, now):
        """One flush: the same bytes to every client (held by _lock)."""
        self._last_flush = now
        if data:
            for client in list(self._clients.values()):
                self._send(client, data)
        if self._watchers:
            with self._changed:
                self._changed.notify_all()

    def _send(self, client, data):
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
        client.sent += sent
        self.bytes_sent += sent
        if sent < len(data):
            rest = memoryview(data)[sent:]
            client.backlog.append(rest)
            client.backlog_bytes = len(rest)
            client.behind_since = time.monotonic()
            if client.backlog_bytes > self.client_buffer:
                self._drop_laggard(client)
                return
            self._selector.modify(client.sock, _READ_WRITE, client)

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
            self._close(client, f"send failed: {exc.strerror or exc}")
            return
        client.sent += sent
        self.bytes_sent += sent
        client.backlog_bytes -= sent
        while sent:
            head = backlog[0]
            if sent >= len(head):
                sent -= len(head)
                backlog.popleft()
            else:
                backlog[0] = memoryview(head)[sent:]
                sent = 0
        if not backlog:
            client.backlog_bytes = 0
            self._selector.modify(client.sock, _READ, client)
            if self._watchers:
                with self._changed:
                    self._changed.notify_all()

    def _accept(self, listener):
        while True:
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: say so, keep serving the others
                self._log("warning", f"cannot accept a client: {exc.strerror or exc}")
                return
            name = peer_name(address)
            if self.max_clients and len(self._clients) >= self.max_clients:
                self.clients_refused += 1
                self._log("warning", f"client {name} refused: already {len(self._clients)} "
                                     f"clients (--max-clients {self.max_clients})")
                sock.close()
                continue
            if self.admit is not None:
                refusal = self.admit(address)
                if refusal:
                    self.clients_refused += 1
                    self._log("warning", f"client {name} refused: {refusal}")
                    sock.close()
                    continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            client = Client(sock, name)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, _READ, client)
            self.clients_accepted += 1
            self._log("info", f"client {name} connected ({len(self._clients)} connected)")
            with self._changed:
                self._changed.notify_all()

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

    def _drop_laggard(self, client):
        self.clients_dropped_lag += 1
        behind = time.monotonic() - client.behind_since
        self._close(client, f"dropped: {client.backlog_bytes} bytes ({behind:.1f} s) behind, "
                            f"over its --client-buffer of {self.client_buffer} bytes",
                    "warning")

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
        self._log(level, f"client {client.name} {why} ({len(self._clients)} connected)")
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
            if client.backlog:
                return False
        return True

    def _stopping_done(self):
        if self._pending:
            self._flush()
        if time.monotonic() >= self._drain_deadline:
            return True
        for client in list(self._clients.values()):
            if client.backlog:
                return False
        return True

    def _close_listeners(self):
        for listener in self._listeners:
            try:
                self._selector.unregister(listener)
            except (KeyError, ValueError):
                pass
            listener.close()
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
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._changed:
            self._finished = True
            self._changed.notify_all()


def peer_name(address):
    """host:port of a peer for log lines ([v6]:port; an IPv4-mapped address as IPv4)."""
    host, port = address[0], address[1]
    if ":" in host:
        if host.startswith("::ffff:"):
            return f"{host[7:]}:{port}"
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _no_log(level, text):
    pass
