"""``--metrics [ADDR:]PORT``: Prometheus metrics and a health check over HTTP.

Nothing is counted per frame for the metrics: a custom collector reads the counters the buses
keep anyway (source counters, broadcaster totals, sinks' ``stats()``) when Prometheus scrapes,
so serving metrics costs nothing between scrapes. ``/healthz`` answers 200 while every bus is
up and 503 with a one-line reason otherwise (for a load balancer, a container probe or a
watchdog script).
"""
import asyncio
import dataclasses
import http
import logging
import math
import threading

from .errors import UsageError
from .listeners import bind_listener

MAX_CONNECTIONS = 16  # at once: a scraper, a probe or two and room to spare
ACCEPT_BACKLOG = 2048  # (the kernel caps it at net.core.somaxconn, 4096 on current Linux)
ACCEPT_BATCH = 32  # connections taken from that queue per turn of the loop: a flood never
# holds many more descriptors than MAX_CONNECTIONS, and a probe behind it comes in turn
ACCEPT_RETRY = 0.1  # s before accepting again after accept() failed (out of descriptors)
MAX_REQUEST = 8 << 10  # bytes of request line and headers (a scrape sends a few hundred)
REQUEST_TIMEOUT = 5.0  # s for a whole request to arrive, and for its answer to be taken

log = logging.getLogger("cancorder.metrics")

#: skipped-frame kinds, in the order of the source counters
SKIPPED_KINDS = ("remote", "error", "invalid", "garbage", "filtered")


@dataclasses.dataclass
class BusSnapshot:
    """One bus's counters at scrape time (built by the server, read by the collector)."""
    name: str
    up: bool
    down_reason: str = ""  # why it is not up, one line
    frames_received: int = 0  # every frame the adapter gave, skipped ones included
    frames_sent: int = 0  # data frames passed on to clients and sinks
    bytes_sent: int = 0  # bytes written to ECUconnect clients, all clients together
    clients: int = 0
    clients_dropped_lag: int = 0
    reopens: int = 0
    frames_dropped: int = 0  # frames the kernel dropped before the source read them
    bus_errors: int = 0  # bus errors the adapter reported (SocketCAN: error frames)
    controller_restarts: int = 0  # the CAN controller restarted (after bus off)
    bus_state: str = ""  # the controller's state where the source knows it ("error passive")
    seconds_since_frame: float = math.nan  # NaN: no frame yet
    skipped: dict = dataclasses.field(default_factory=dict)  # kind -> count
    sinks: dict = dataclasses.field(default_factory=dict)  # sink name -> its stats() dict


class BusCollector:
    """A prometheus_client collector over ``snapshot() -> [BusSnapshot]``."""

    def __init__(self, snapshot):
        self._snapshot = snapshot

    def describe(self):
        return []  # the families depend on the sinks present: no fixed description

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        buses = self._snapshot()
        counters = {
            "frames_received": "Frames read from the adapter, skipped ones included",
            "frames_sent": "Data frames passed on to clients and sinks",
            "bytes_sent": "Bytes written to ECUconnect clients (all clients together)",
            "clients_dropped_lag": "Clients dropped because they fell too far behind",
            "adapter_reopens": "Times the adapter was lost and opened again",
            "frames_dropped": "Frames lost before cancorder read them (SocketCAN: the "
                              "kernel's drop counter, SO_RXQ_OVFL)",
            "bus_errors": "Bus errors the adapter reported (SocketCAN: error frames)",
            "controller_restarts": "Times the CAN controller restarted after bus off, where "
                                   "the adapter reports it",
        }
        gauges = {
            "clients_connected": "ECUconnect clients connected now",
            "adapter_up": "1 while the adapter is open and read, 0 while it is lost",
            "seconds_since_last_frame": "Seconds since the last frame arrived (NaN: none yet)",
        }
        values = {
            "frames_received": lambda b: b.frames_received,
            "frames_sent": lambda b: b.frames_sent,
            "bytes_sent": lambda b: b.bytes_sent,
            "clients_dropped_lag": lambda b: b.clients_dropped_lag,
            "adapter_reopens": lambda b: b.reopens,
            "frames_dropped": lambda b: b.frames_dropped,
            "bus_errors": lambda b: b.bus_errors,
            "controller_restarts": lambda b: b.controller_restarts,
            "clients_connected": lambda b: b.clients,
            "adapter_up": lambda b: 1 if b.up else 0,
            "seconds_since_last_frame": lambda b: b.seconds_since_frame,
        }
        for name, doc in counters.items():
            family = CounterMetricFamily(f"cancorder_{name}", doc, labels=["bus"])
            for bus in buses:
                family.add_metric([bus.name], values[name](bus))
            yield family
        for name, doc in gauges.items():
            family = GaugeMetricFamily(f"cancorder_{name}", doc, labels=["bus"])
            for bus in buses:
                family.add_metric([bus.name], values[name](bus))
            yield family
        skipped = CounterMetricFamily("cancorder_frames_skipped",
                                      "Frames not passed on, by kind (remote, error, invalid, "
                                      "garbage, filtered)", labels=["bus", "kind"])
        for bus in buses:
            for kind in SKIPPED_KINDS:
                if kind in bus.skipped:
                    skipped.add_metric([bus.name, kind], bus.skipped[kind])
        yield skipped
        states = GaugeMetricFamily("cancorder_bus_state",
                                   "1 for the CAN controller's present state (error active, "
                                   "error warning, error passive, bus off), where the adapter "
                                   "reports it", labels=["bus", "state"])
        for bus in buses:
            if bus.bus_state:
                states.add_metric([bus.name, bus.bus_state], 1)
        yield states
        # every number a sink reports in stats(): cancorder_<sink>_<stat>{bus}, e.g.
        # cancorder_recording_bytes, cancorder_recording_files, cancorder_recording_errors
        sink_families = {}
        for bus in buses:
            for sink, stats in bus.sinks.items():
                for key, value in stats.items():
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        continue
                    metric = _metric_name(f"cancorder_{sink}_{key}")
                    family = sink_families.get(metric)
                    if family is None:
                        family = sink_families[metric] = GaugeMetricFamily(
                            metric, f"{key} reported by the {sink} sink", labels=["bus"])
                    family.add_metric([bus.name], value)
        yield from sink_families.values()


def _metric_name(text):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text.lower())


def health(buses):
    """(ok, one line) for /healthz."""
    down = [bus for bus in buses if not bus.up]
    # a controller that is not error active is said; one that is bus off carries no frames
    troubled = [f'bus "{bus.name}" {bus.bus_state}' for bus in buses
                if bus.up and bus.bus_state and bus.bus_state != "error active"]
    bus_off = any(bus.up and bus.bus_state == "bus off" for bus in buses)
    # a sink may say in its stats why the bus is not healthy (the uploader's old backlog)
    sick = [f'bus "{bus.name}" {stats["unhealthy"]}' for bus in buses
            for stats in bus.sinks.values() if stats.get("unhealthy")]
    troubled += sick
    if not down:
        line = f"ok: {len(buses)} bus{'es' if len(buses) != 1 else ''} up"
        if troubled:
            line = ("; ".join(troubled) if bus_off or sick else f"{line}; "
                    + "; ".join(troubled))
        return not bus_off and not sick, line
    return False, "; ".join([f'bus "{bus.name}" down: {bus.down_reason or "not open"}'
                             for bus in down] + troubled)


def build_registry(snapshot):
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.process_collector import ProcessCollector

    from . import __version__, _fast

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    info = Gauge("cancorder_build_info", "cancorder version and core (always 1)",
                 ["version", "core"], registry=registry)
    info.labels(__version__, _fast.IMPLEMENTATION).set(1)
    registry.register(BusCollector(snapshot))
    return registry


class MetricsServer:
    """/metrics and /healthz on one thread of its own: an asyncio loop, whatever is asked.

    The port is open to the network, so nothing on it may reach the data path: at most
    ``max_connections`` connections at once (one descriptor each; the listener's backlog holds
    the rest in the kernel), a request of at most MAX_REQUEST bytes that must arrive whole
    within ``request_timeout`` s, one request per connection, no thread per connection. When
    every slot is taken, a new connection closes the oldest one still sending its request, so a
    crowd of idle connections never keeps a scrape or a health check waiting. Every problem is
    a log line through the shared rate limit, never a traceback on stderr.
    """

    def __init__(self, address, snapshot, max_connections=MAX_CONNECTIONS,
                 request_timeout=REQUEST_TIMEOUT, web=None, metrics=True, flag="--metrics"):
        self.host, self.port = address
        self._snapshot = snapshot
        #: the web page's routes (web.page.WebPage), served on this port too; ``metrics``
        #: False: a port of the web page alone (--web on a port of its own)
        self.web = web
        self.serves_metrics = metrics
        self.flag = flag
        self.registry = build_registry(snapshot) if metrics else None
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.connections_closed = 0  # closed before a complete request: slow, too big, evicted
        self._open = {}  # writer -> True while it is still sending its request (in age order)
        self._loop = None
        self._thread = None

    def start(self):
        try:
            # a deep queue: under a flood of connections a probe's connection is still
            # completed at once and served in turn (a dropped SYN is retried only after 1 s)
            listeners, _, _ = bind_listener(self.host or None, self.port, self.flag,
                                            backlog=ACCEPT_BACKLOG)
        except OSError as exc:
            where = f"{self.host}:{self.port}" if self.host else str(self.port)
            raise UsageError(f"{self.flag} {where}: cannot listen ({exc.strerror or exc}): "
                             "choose another port") from None
        self.port = listeners[0].getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_error)
        if self.web is not None:
            self.web.attach(self._loop)
        self._thread = threading.Thread(target=self._run, args=(listeners,), name="metrics",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self):
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2.0)
            self._thread = None

    # ---- the loop's thread ----

    def _run(self, listeners):
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            for sock in listeners:  # bound and listening already: clients queue meanwhile
                sock.setblocking(False)
                loop.add_reader(sock, self._accept, sock)
            loop.run_forever()
        finally:
            for sock in listeners:
                loop.remove_reader(sock)
            for writer in list(self._open):
                writer.transport.abort()
            for sock in listeners:
                sock.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _accept(self, listener):
        """Take a few connections from the kernel's queue (asyncio's own server takes as many
        as its backlog at once: under a flood, more descriptors than the process may have, and
        then it stops accepting for a whole second)."""
        loop = self._loop
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, mostly: said, and tried again soon
                self._loop_error(loop, {"message": "accepting a connection failed",
                                        "exception": exc})
                loop.remove_reader(listener)
                loop.call_later(ACCEPT_RETRY, loop.add_reader, listener, self._accept, listener)
                return
            loop.create_task(self._serve(sock))

    async def _serve(self, sock):
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_REQUEST)
        except OSError:
            sock.close()
            return
        await self._connection(reader, writer)

    async def _connection(self, reader, writer):
        self._open[writer] = True
        if len(self._open) > self.max_connections:
            self._make_room(writer)
        answered = False
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                              self.request_timeout)
            except asyncio.LimitOverrunError:
                self._refused(f"a request longer than {MAX_REQUEST:,} bytes")
                return
            except asyncio.TimeoutError:
                self._refused(f"no complete request within {self.request_timeout:g} s")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # closed by the peer, or to make room for a newer connection
            self._open[writer] = False  # answering: no longer the first to make room
            request = parse_request(head)
            if isinstance(request, bytes):  # a malformed or refused request: its answer
                writer.write(request)
            elif self.web is not None and self.web.serves(request):
                # the page, its data, a live stream or a download: written as it goes, each
                # write taken within request_timeout (web.page)
                await self.web.respond(request, reader, writer, self.request_timeout)
            else:
                writer.write(self._answer(request))
            writer.close()  # once the answer is sent
            await asyncio.wait_for(writer.wait_closed(), self.request_timeout)
            answered = True
        except (asyncio.TimeoutError, ConnectionError):
            pass  # a reader that does not take its answer: cut off below
        except Exception as exc:  # a bug: said, and the port keeps serving
            log.error(f"metrics: answering failed: {type(exc).__name__}: {exc}",
                      extra={"rate_key": ("metrics", "bug", type(exc).__name__)})
        finally:
            self._open.pop(writer, None)
            if not answered:
                writer.transport.abort()

    def _make_room(self, newcomer):
        """Every slot taken: close the oldest connection still sending its request, or, when
        every one is being answered, the newcomer."""
        oldest = next((w for w, reading in self._open.items() if reading and w is not newcomer),
                      newcomer)
        self._open.pop(oldest, None)
        oldest.transport.abort()
        self._refused(f"more than {self.max_connections} connections at once")

    def _refused(self, why):
        self.connections_closed += 1
        log.warning(f"metrics: closed a connection: {why} ({self.connections_closed:,} so far)",
                    extra={"rate_key": ("metrics", why)})

    def _loop_error(self, loop, context):
        """The loop's own trouble (an accept that failed: out of descriptors...), as a line."""
        exc = context.get("exception")
        what = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message")
        log.warning(f"metrics: {context.get('message', 'error')}: {what}",
                    extra={"rate_key": ("metrics", "loop", type(exc).__name__)})

    def _answer(self, request):
        """The reply to /metrics, /healthz or anything else not the web page's."""
        path = request.path
        if path == "/metrics" and self.serves_metrics:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            code, body, kind = 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        elif path == "/healthz" and self.serves_metrics:
            ok, line = health(self._snapshot())
            code, body, kind = 200 if ok else 503, (line + "\n").encode(), \
                "text/plain; charset=utf-8"
        elif self.serves_metrics:
            code, body, kind = 404, b"not found: try /metrics or /healthz\n", "text/plain"
        else:
            code, body, kind = 404, b"not found: try /\n", "text/plain"
        return reply(code, body, kind, head_only=request.method == "HEAD")


@dataclasses.dataclass
class Request:
    """What the server reads of a request: its line and headers (names in lower case)."""
    method: str
    path: str
    query: dict  # name -> its last value
    headers: dict


def parse_request(head):
    """A Request, or the bytes of the answer to one that cannot be served (400, 405)."""
    from urllib.parse import parse_qsl

    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return reply(400, b"bad request\n", "text/plain")
    method, target = words[0], words[1]
    if method not in ("GET", "HEAD"):
        return reply(405, b"only GET\n", "text/plain", extra="Allow: GET, HEAD\r\n")
    path, _, query = target.partition("?")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return Request(method, path, dict(parse_qsl(query, keep_blank_values=True)), headers)


def reply(code, body, content_type, extra="", head_only=False):
    """One HTTP/1.1 response that closes the connection."""
    head = (f"HTTP/1.1 {code} {http.HTTPStatus(code).phrase}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode("latin-1")
    return head if head_only else head + body
