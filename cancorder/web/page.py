"""The web page's routes and its ticker, run by metrics.MetricsServer's asyncio loop.

    GET /                 the page (static/index.html), /static/<file> its script and style
    GET /api/status       the status of every bus and of the process, as JSON
    GET /api/events?bus=  Server-Sent Events: ``status`` once a second, ``live`` (that bus's
                          table and trace) at most 5 times a second
    GET /api/download?bus=&file=   a closed recording of that bus, as written

Everything is computed once per tick for all viewers: the status once a second, a bus's live
table once per LIVE_INTERVAL while someone watches it. A viewer holds at most the latest
update of each kind; one that does not take what it was sent (VIEWER_BUFFER bytes queued in
the socket) misses updates, and one that takes nothing for VIEWER_STALL seconds is cut off.

When a token is set (required on any address but loopback), every request must carry it: as
``?token=`` (the page's address: the answer sets it as a cookie for the page's own requests),
the cookie, or ``Authorization: Bearer``.
"""
import asyncio
import collections
import hmac
import http.cookies
import json
import logging
import os
import time

from ..metrics import reply

LIVE_INTERVAL = 0.2  # s: at most 5 live updates a second
LIVE_BUDGET = 0.01  # of a core per bus for the live table: a table that takes longer to
# compute (thousands of ids) is sent less often
STATUS_INTERVAL = 1.0  # s between two status updates (and rate samples)
HISTORY = 300  # rate samples kept per bus: the chart's 5 minutes
WARNINGS = 30  # the last warnings shown
VIEWER_BUFFER = 256 << 10  # bytes a viewer may leave untaken before its updates are skipped
VIEWER_STALL = 30.0  # s a viewer may take nothing before it is cut off
DOWNLOAD_CHUNK = 256 << 10
COOKIE = "cancorder_token"
METRICS_PATHS = ("/metrics", "/healthz")  # the metrics server's own, when the port is shared
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# nothing but the logger itself: scripts, styles, images, connections (the page works offline)
SECURITY_HEADERS = ("Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
                    "style-src 'self'; script-src 'self'; connect-src 'self'\r\n"
                    "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
                    "Referrer-Policy: no-referrer\r\n")

log = logging.getLogger("cancorder.web")


class _Viewer:
    """One open event stream: the latest update of each kind not yet written."""

    def __init__(self, bus):
        self.bus = bus
        self.pending = {}  # event name -> its message (bytes, or a _LiveEvents)
        self.wake = asyncio.Event()
        self.skipped = 0
        self.live_seq = None  # the live update last written to it

    def offer(self, event, data):
        if event in self.pending:
            self.skipped += 1  # not yet written: the newer replaces it
        self.pending[event] = data
        self.wake.set()


def _event(name, data):
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


class _LiveEvents:
    """A live.LiveUpdate as Server-Sent Events, made once for every viewer of its bus: the
    delta to a viewer that was written the update before it, the whole table to any other (a
    newcomer, or one that missed an update: the next one makes it whole again)."""

    def __init__(self, update):
        self.seq = update.seq
        self.full = _event(b"live", update.full)
        self.delta = None if update.delta is None else _event(b"live", update.delta)

    def for_viewer(self, viewer):
        fits = self.delta is not None and viewer.live_seq == self.seq - 1
        viewer.live_seq = self.seq
        return self.delta if fits else self.full


class WarningLog(logging.Handler):
    """The last warnings and errors of the cancorder log, for the page."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = collections.deque(maxlen=WARNINGS)

    def emit(self, record):
        try:
            self.lines.append({"time": record.created, "level": record.levelname.lower(),
                               "bus": getattr(record, "bus", ""), "text": record.getMessage()})
        except Exception:  # a bad log call must not break the caller
            pass


class WebPage:
    """The page of one process. ``feed`` is a sink factory for every bus; ``watch`` gives it
    the buses' status; the metrics server's loop calls ``attach``, ``serves``, ``respond``."""

    def __init__(self, address, token=None, signals=None, clock=time.monotonic):
        from .. import __version__, _fast

        self.address = address
        self.token = token
        self.signals = signals
        self.clock = clock
        self.feeds = {}  # bus name -> LiveFeed
        self.version = __version__
        self.core = _fast.IMPLEMENTATION
        self.started = clock()
        self.warnings = WarningLog()
        self._status = lambda now: []  # (now) -> [dict per bus] (supervision.status_of)
        self._history = {}  # bus name -> deque of frames/s, one a second
        self._last_frames = {}
        self._status_json = b"{}"
        self._live = {}  # bus name -> _LiveEvents, the latest
        self._viewers = set()
        self._live_due = {}  # bus name -> when its table is computed next
        self._loop = None
        self._files = self._read_static()

    @staticmethod
    def _read_static():
        files = {}
        for name in sorted(os.listdir(STATIC)):
            kind = STATIC_TYPES.get(os.path.splitext(name)[1])
            if kind is not None:
                with open(os.path.join(STATIC, name), "rb") as file:
                    files[name] = (file.read(), kind)
        return files

    # ---- set-up (the main thread) ----

    def feed(self, bus_info, server_options):
        """The sink factory every bus is given: its LiveFeed."""
        from .live import LiveFeed

        feed = self.feeds[bus_info.name] = LiveFeed(self.signals, clock=self.clock)
        return feed

    def watch(self, status):
        self._status = status
        logging.getLogger("cancorder").addHandler(self.warnings)

    def close(self):
        logging.getLogger("cancorder").removeHandler(self.warnings)

    # ---- the loop's thread ----

    def attach(self, loop):
        self._loop = loop
        loop.call_soon(lambda: loop.create_task(self._tick()))

    async def _tick(self):
        next_status = self.clock()
        while True:
            now = self.clock()
            try:
                if now >= next_status:
                    next_status = max(next_status + STATUS_INTERVAL, now)
                    self._sample(now)
                    self._status_json = json.dumps(self.status(now)).encode()
                    message = _event(b"status", self._status_json)
                    for viewer in self._viewers:
                        viewer.offer("status", message)
                self._update_live(now)
            except Exception as exc:  # a bug: said, and the page goes on with the next tick
                log.error(f"web page: {type(exc).__name__}: {exc}",
                          extra={"rate_key": ("web", "tick", type(exc).__name__)})
            await asyncio.sleep(LIVE_INTERVAL)

    def _sample(self, now):
        for bus in self._status(now):
            name, frames = bus["name"], bus["frames"]
            last = self._last_frames.get(name)
            history = self._history.setdefault(name, collections.deque(maxlen=HISTORY))
            if last is not None:
                history.append(round(max(0, frames - last[0]) / max(now - last[1], 1e-9), 1))
            self._last_frames[name] = (frames, now)

    def _update_live(self, now):
        """Each watched bus's table, computed once, offered to each of its viewers."""
        watched = collections.Counter(viewer.bus for viewer in self._viewers)
        for name, feed in self.feeds.items():
            feed.watch(watched[name] > 0)
            if watched[name] and now >= self._live_due.get(name, 0.0):
                started = time.perf_counter()
                events = self._live[name] = _LiveEvents(feed.view(now))
                cost = time.perf_counter() - started
                self._live_due[name] = now + max(LIVE_INTERVAL, cost / LIVE_BUDGET) - 0.02
                for viewer in self._viewers:
                    if viewer.bus == name:
                        viewer.offer("live", events)

    def status(self, now=None):
        now = self.clock() if now is None else now
        buses = self._status(now)
        for bus in buses:
            history = self._history.get(bus["name"], ())
            bus["history"] = list(history)
            bus["rate"] = history[-1] if history else 0.0
        return {"version": self.version, "core": self.core,
                "uptime": round(now - self.started, 1), "buses": buses,
                "warnings": list(self.warnings.lines)[::-1], "viewers": len(self._viewers)}

    def serves(self, request):
        return request.path not in METRICS_PATHS

    async def respond(self, request, reader, writer, timeout):
        """Answer one request (written to ``writer``; a stream until the viewer leaves)."""
        head_only = request.method == "HEAD"
        refusal = self._refusal(request)
        if refusal is not None:
            writer.write(reply(401, refusal.encode(), "text/plain; charset=utf-8",
                               extra=SECURITY_HEADERS, head_only=head_only))
            return
        path = request.path
        extra = SECURITY_HEADERS
        if self.token and request.query.get("token"):  # the page's own requests carry it now
            extra += (f"Set-Cookie: {COOKIE}={request.query['token']}; Path=/; HttpOnly; "
                      "SameSite=Strict\r\n")
        if path in ("/", "/index.html"):
            body, kind = self._files["index.html"]
        elif path.startswith("/static/") and path[len("/static/"):] in self._files:
            body, kind = self._files[path[len("/static/"):]]
        elif path == "/api/status":
            body, kind = json.dumps(self.status()).encode(), "application/json"
        elif path == "/api/events" and not head_only:
            await self._stream(request, reader, writer, timeout)
            return
        elif path == "/api/download":
            await self._download(request, writer, timeout, head_only)
            return
        else:
            body, kind = b"not found: the page is at /\n", "text/plain"
            writer.write(reply(404, body, kind, extra=extra, head_only=head_only))
            return
        writer.write(reply(200, body, kind, extra=extra, head_only=head_only))

    def _refusal(self, request):
        """None when the request may be answered, else why not (one line)."""
        if not self.token:
            return None
        given = request.query.get("token")
        if given is None:
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
        if given is None:
            cookies = http.cookies.SimpleCookie()
            try:
                cookies.load(request.headers.get("cookie", ""))
            except http.cookies.CookieError:
                pass
            if COOKIE in cookies:
                given = cookies[COOKIE].value
        if given is None:
            return "a token is required: open the page as /?token=TOKEN (--web-token)\n"
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return "wrong token: open the page as /?token=TOKEN (--web-token)\n"
        return None

    async def _stream(self, request, reader, writer, timeout):
        bus = request.query.get("bus") or next(iter(self.feeds), "")
        if bus not in self.feeds:
            writer.write(reply(404, f"no bus named {bus!r}\n".encode(), "text/plain",
                               extra=SECURITY_HEADERS))
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     + SECURITY_HEADERS.encode() + b"Connection: close\r\n\r\nretry: 1000\n\n")
        viewer = _Viewer(bus)
        viewer.offer("status", _event(b"status", self._status_json if self._status_json != b"{}"
                                      else json.dumps(self.status()).encode()))
        self._viewers.add(viewer)
        if bus in self._live:  # the latest table at once, not after a tick
            viewer.offer("live", self._live[bus])
        gone = asyncio.ensure_future(reader.read(1))  # the viewer leaving (or sending junk)
        transport = writer.transport
        taken_at = self.clock()
        try:
            while not gone.done() and not transport.is_closing():
                waiting = asyncio.ensure_future(viewer.wake.wait())
                await asyncio.wait({waiting, gone}, timeout=STATUS_INTERVAL,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                viewer.wake.clear()
                now = self.clock()
                if transport.get_write_buffer_size() > VIEWER_BUFFER:
                    if now - taken_at > VIEWER_STALL:
                        return  # a viewer that takes nothing: cut off
                    viewer.skipped += len(viewer.pending)
                    viewer.pending.clear()
                    continue
                taken_at = now
                pending, viewer.pending = viewer.pending, {}
                for message in pending.values():
                    writer.write(message if type(message) is bytes else message.for_viewer(viewer))
        finally:
            self._viewers.discard(viewer)
            gone.cancel()
            if not any(v.bus == bus for v in self._viewers):
                self.feeds[bus].watch(False)
                self._live.pop(bus, None)  # the next viewer starts a fresh table

    async def _download(self, request, writer, timeout, head_only):
        """A closed recording of one bus, as it is on disk (only files its sinks list)."""
        bus, wanted = request.query.get("bus"), request.query.get("file", "")
        files = {path: size for name, entries in self._files_of(bus).items()
                 for path, size, is_open in entries if not is_open}
        if wanted not in files:
            writer.write(reply(404, b"no such closed recording\n", "text/plain",
                               extra=SECURITY_HEADERS, head_only=head_only))
            return
        try:
            file = open(wanted, "rb")
        except OSError as exc:
            writer.write(reply(404, f"cannot open it: {exc.strerror}\n".encode(), "text/plain",
                               extra=SECURITY_HEADERS, head_only=head_only))
            return
        with file:
            size = os.fstat(file.fileno()).st_size
            name = os.path.basename(wanted).replace('"', "")
            writer.write(
                (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                 f"Content-Length: {size}\r\nContent-Disposition: attachment; "
                 f"filename=\"{name}\"\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n"
                 ).encode("utf-8", "replace"))
            left = 0 if head_only else size
            while left > 0:
                chunk = file.read(min(DOWNLOAD_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), timeout)

    def _files_of(self, bus):
        for entry in self._status(self.clock()):
            if entry["name"] == bus:
                return {sink["name"]: [(f["path"], f["size"], f["open"]) for f in sink["files"]]
                        for sink in entry["sinks"]}
        return {}
