"""``--metrics [ADDR:]PORT``: Prometheus metrics and a health check over HTTP.

Nothing is counted per frame for the metrics: a custom collector reads the counters the buses
keep anyway (source counters, broadcaster totals, sinks' ``stats()``) when Prometheus scrapes,
so serving metrics costs nothing between scrapes. ``/healthz`` answers 200 while every bus is
up and 503 with a one-line reason otherwise (for a load balancer, a container probe or a
watchdog script).
"""
import dataclasses
import http.server
import math
import socket
import threading

from .errors import UsageError

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
    if not down:
        return True, f"ok: {len(buses)} bus{'es' if len(buses) != 1 else ''} up"
    return False, "; ".join(f'bus "{bus.name}" down: {bus.down_reason or "not open"}'
                            for bus in down)


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
    """A small HTTP server on its own thread: /metrics and /healthz."""

    def __init__(self, address, snapshot):
        self.host, self.port = address
        self._snapshot = snapshot
        self.registry = build_registry(snapshot)
        self._httpd = None
        self._thread = None

    def start(self):
        handler = _handler(self.registry, self._snapshot)
        try:
            self._httpd = _HTTPServer(self.host, self.port, handler)
        except OSError as exc:
            where = f"{self.host}:{self.port}" if self.host else str(self.port)
            raise UsageError(f"--metrics {where}: cannot listen ({exc.strerror or exc}): choose "
                             "another port") from None
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def close(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(2.0)
            self._httpd = None


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host, port, handler):
        if not host and socket.has_dualstack_ipv6():
            self.address_family = socket.AF_INET6
            host = "::"
        elif ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host or "0.0.0.0", port), handler, bind_and_activate=False)
        try:
            if self.address_family == socket.AF_INET6 and host == "::":
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise


def _handler(registry, snapshot):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, line = health(snapshot())
                self._reply(200 if ok else 503, (line + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _reply(self, code, body, content_type):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # no line per scrape on stderr
            pass

    return Handler
