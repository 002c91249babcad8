"""What a supervisor sees of a running server: systemd's notify protocol and the metrics page.

The server calls ``ServiceMonitor`` at four points: ``start`` before any bus opens (the metrics
port is bound first, so a port clash is a usage error before anything is served), ``ready``
once every bus's listener is bound, ``tick`` from its main loop, ``stopping``/``close`` on the
way out. The main loop is the one place that can notice a stuck source: every bus's source
thread stamps ``bus.heartbeat`` each time round its loop (a read returns at least every
READ_TIMEOUT, and the reopen loop stamps it too), so ``WATCHDOG=1`` is sent only while every
heartbeat is fresher than ``stuck_after`` seconds. A source blocked inside its library stops
the pings, and systemd's WatchdogSec= restarts the service.
"""
import logging
import math
import os
import time

from .metrics import BusSnapshot, MetricsServer, health
from .report import plural
from .sdnotify import Notifier

STATUS_INTERVAL = 5.0  # seconds between two STATUS= lines
STUCK_AFTER = 10.0  # a source thread silent this long is stuck (a normal open takes < 5 s)

log = logging.getLogger("cancorder.server")


def snapshot_of(bus, now=None):
    """One bus's counters for the metrics page and /healthz (read, never reset)."""
    now = time.monotonic() if now is None else now
    counters = bus.source.counters()
    b = bus.broadcaster
    up = bus.up and bus.crash is None and b is not None
    reason = ""
    if bus.crash is not None:
        reason = f"source crashed ({type(bus.crash).__name__}: {bus.crash})"
    elif b is None:
        reason = "starting (the adapter is being opened)"
    elif not bus.up:
        since = getattr(bus, "down_since", None)
        reason = (getattr(bus, "down_reason", "") or "adapter not open") + \
            (f", for {now - since:.0f} s" if since is not None else "")
    sinks = {}
    for sink in bus.sinks:
        name = sink.metrics_name or type(sink).__name__.lower()
        stats = sink.stats()
        if name in sinks:  # two sinks of one kind on a bus (--record twice): their sum
            merged = sinks[name]
            for key, value in stats.items():
                if _number(value) and _number(merged.get(key, 0)):
                    merged[key] = merged.get(key, 0) + value
                elif isinstance(value, str) and value and not merged.get(key):
                    merged[key] = value  # a sink's "unhealthy" reason: the first one said
            continue
        sinks[name] = dict(stats)
    return BusSnapshot(
        name=bus.name, up=up, down_reason=reason, frames_received=counters.received,
        frames_sent=counters.frames, bytes_sent=b.bytes_sent if b is not None else 0,
        clients=b.main_clients if b is not None else 0,  # ECUconnect's (socketcand: its own)
        clients_dropped_lag=b.clients_dropped_lag if b is not None else 0,
        reopens=bus.reopens, frames_dropped=counters.dropped, bus_errors=counters.bus_errors,
        controller_restarts=counters.restarts,
        bus_state=getattr(bus.source, "bus_state", None) or "",  # None: cannot tell
        seconds_since_frame=(now - bus.last_frame) if bus.last_frame is not None else math.nan,
        skipped={kind: getattr(counters, kind) for kind in
                 ("remote", "error", "invalid", "garbage", "filtered")},
        sinks=sinks)


def status_of(bus, now=None):
    """One bus as the web page shows it (a dict ready for JSON): its source and adapter state,
    clients, consumers and their files."""
    now = time.monotonic() if now is None else now
    snap = snapshot_of(bus, now)
    if bus.crash is not None:
        state = "crashed"
    elif bus.finished:
        state = "finished"
    elif bus.broadcaster is None:
        state = "starting"
    elif not snap.up:
        state = "reopening"
    else:
        state = snap.bus_state if snap.bus_state not in ("", "error active") else "up"
    b = bus.broadcaster
    # the core's own protocol (ECUconnect) has no label in its log lines
    clients = [{"protocol": label.strip() or "ECUconnect", "address": name, "queued": queued,
                "sent": sent}
               for label, name, queued, sent in (b.client_list() if b is not None else [])]
    sinks = []
    for sink in bus.sinks:
        name = sink.metrics_name or type(sink).__name__.lower()
        if name == "web":  # the page's own feed
            continue
        files = [{"path": path, "name": os.path.basename(path), "size": size, "open": is_open}
                 for path, size, is_open in sink.files()]
        sinks.append({"name": name, "summary": sink.summary(), "stats": sink.stats(),
                      "files": files})
    return {"name": bus.name, "source": bus.source.description, "state": state,
            "up": snap.up, "reason": snap.down_reason, "bus_state": snap.bus_state,
            "bitrate": bus.source.txt().get("bitrate", ""), "frames": snap.frames_sent,
            "received": snap.frames_received, "reopens": snap.reopens,
            "seconds_since_frame": None if math.isnan(snap.seconds_since_frame)
            else round(snap.seconds_since_frame, 1),
            "port": bus.port, "clients": clients, "sinks": sinks}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ServiceMonitor:
    def __init__(self, buses, metrics=None, notifier=None, stuck_after=STUCK_AFTER, web=None):
        self.buses = buses
        self.metrics_address = metrics
        self.web = web  # web.page.WebPage (--web), served with the metrics or on its own port
        self.web_server = None
        self.notifier = notifier if notifier is not None else Notifier()
        self.stuck_after = stuck_after
        self.metrics = None
        self._last_status = 0.0
        self._last_frames = None
        self._stuck_said = set()

    def snapshot(self):
        now = time.monotonic()
        return [snapshot_of(bus, now) for bus in self.buses]

    def start(self):
        web = self.web
        shared = web is not None and self.metrics_address is not None and \
            tuple(web.address) == tuple(self.metrics_address)
        if web is not None:
            web.watch(self.status)
        if self.metrics_address is not None:
            # one port for both when --web equals --metrics: / for people, /metrics, /healthz
            self.metrics = MetricsServer(self.metrics_address, self.snapshot,
                                         web=web if shared else None).start()
            host = self.metrics_address[0] or "*"
            log.info(f"metrics on http://{host}:{self.metrics.port}/metrics (health: /healthz)")
        if web is not None:
            server = self.metrics if shared else MetricsServer(
                web.address, self.snapshot, web=web, metrics=False, flag="--web").start()
            self.web_server = None if shared else server
            host = web.address[0]
            log.info(f"web page on http://{f'[{host}]' if ':' in host else host}:{server.port}/")

    def status(self, now=None):
        """Every bus as the web page shows it."""
        now = time.monotonic() if now is None else now
        return [status_of(bus, now) for bus in self.buses]

    def ready(self):
        self.notifier.ready(self._status_line(time.monotonic()))

    @property
    def tick_interval(self):
        """How often ``tick`` must run for the watchdog (at most 0.5 s)."""
        interval = self.notifier.watchdog_interval
        return min(0.5, interval / 2) if interval else 0.5

    def tick(self, now=None):
        now = time.monotonic() if now is None else now
        stuck = self.stuck(now)
        for bus in stuck:
            if bus.name not in self._stuck_said:
                self._stuck_said.add(bus.name)
                bus.log.error(f"the source thread has not come round for {self.stuck_after:g} s "
                              "(stuck in the adapter's library?): the watchdog stops, so a "
                              "supervisor restarts the service")
        if not stuck and self.notifier.watchdog_due(now):
            self.notifier.watchdog(now)
        if self.notifier.enabled and now - self._last_status >= STATUS_INTERVAL:
            self.notifier.status(self._status_line(now))

    def stuck(self, now):
        """Buses whose source thread has not stamped its heartbeat for ``stuck_after`` s."""
        return [bus for bus in self.buses
                if getattr(bus, "heartbeat", None) is not None and not bus.finished
                and bus.crash is None and now - bus.heartbeat > self.stuck_after]

    def _status_line(self, now):
        frames = sum(bus.source.counters().frames for bus in self.buses)
        rate = 0.0
        if self._last_frames is not None:
            rate = (frames - self._last_frames) / max(now - self._last_status, 1e-9)
        self._last_frames, self._last_status = frames, now
        up = sum(1 for bus in self.buses if bus.up)
        clients = sum(bus.broadcaster.main_clients for bus in self.buses
                      if bus.broadcaster is not None)
        ok, line = health(self.snapshot())
        text = (f"{up}/{len(self.buses)} buses up, {rate:,.0f} frames/s, "
                f"{plural(clients, 'client')}")
        return text if ok else f"{text}; {line}"

    def stopping(self):
        self.notifier.stopping()

    def close(self):
        if self.metrics is not None:
            self.metrics.close()
        if self.web_server is not None:
            self.web_server.close()
        if self.web is not None:
            self.web.close()
        self.notifier.close()
