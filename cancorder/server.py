"""The server: runs one or more buses, each a source feeding its consumers.

    Bus: source (its own thread) --records--> Broadcaster (select loop) --> ECUconnect clients
                                          \\-> RecordSinks (-v printer, and the consumers
                                              features add: recorder, publishers...)
         Advertiser (Zeroconf) says where the bus listens
    Server: the buses, signals, the status line, the exit code

Every serving subcommand builds its Source and hands it to a Bus; the server knows no source
kind. Sources know no server: what they may know of clients comes through a ClientGate.
"""
import dataclasses
import logging
import threading
import time

from ._fast import broadcast, pump
from .access import peer_allowed
from .errors import EXIT_FAILURE, EXIT_OK, CancorderError, SourceError, SourceLostError, \
    UsageError
from .listeners import open_listeners
from .protocol import RETRY_FIRST, RETRY_MAX
from .report import plural
from .signals import stop_on_signals
from .sinks.base import BusInfo
from .sources.base import ClientGate

READ_TIMEOUT = 0.1  # a bounded read keeps shutdown prompt
SIGNAL_CHECK = 0.1  # how soon the main loop acts on a SIGINT/SIGTERM it was told of
DRAIN_WAIT = 30.0  # how long a finished source's last frames may take to reach the clients

log = logging.getLogger("cancorder.server")


@dataclasses.dataclass
class BusOptions:
    """How one bus is served (the serving flags; one [[bus]] table of a config)."""

    name: str = None  # for log lines and metrics labels; default: the source's channel
    bind: str = None
    port: int = None
    max_clients: int = 64
    max_clients_per_host: int = 32
    client_buffer: int = 4 << 20
    client_buffer_total: int = 64 << 20
    zeroconf: bool = True
    service_name: str = None
    process: str = "cancorder serve"
    allow: list = dataclasses.field(default_factory=list)  # client networks; empty: everyone
    listen_only: bool = False  # the bus is opened listen-only: nothing is ever transmitted
    # the consumers besides the ECUconnect clients: factory(bus_info, server_options) ->
    # RecordSink each, made by sinks.registry from the consumers' flags
    sinks: list = dataclasses.field(default_factory=list)
    transmit_flag: str = None  # the flag by which a consumer may put frames on the bus, if given


@dataclasses.dataclass
class ServerOptions:
    """What holds for the whole process."""

    print_frames: bool = False  # -v: the status lines too (its frames: sinks/printer.py)
    stats: bool = False  # a status line every stats_interval (also shown with print_frames)
    stats_interval: float = 2.0
    drain_timeout: float = 3.0
    coalesce: float = 0.001
    metrics: tuple = None  # --metrics: (host, port) of /metrics and /healthz
    notifier: object = None  # sdnotify.Notifier (default: from $NOTIFY_SOCKET)
    stuck_after: float = None  # seconds without a source-thread heartbeat = stuck (watchdog)
    web: object = None  # --web: web.page.WebPage, served by the ServiceMonitor
    # consumers every bus gets besides its own (the web page's live feed): factories as in
    # BusOptions.sinks
    bus_sinks: list = dataclasses.field(default_factory=list)


class _BusLog(logging.LoggerAdapter):
    """Adds the bus name to every record (``bus`` in its extra) and keeps callers' extras."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


class Bus:
    """One source and everything it feeds; its own thread, listener and reopen with backoff.

    ``up`` is False while the adapter is lost; ``finished`` once the source ended; ``crash``
    holds the exception of a source that failed unexpectedly.
    """

    def __init__(self, source, options=None):
        self.source = source
        self.options = options or BusOptions()
        txt = source.txt()
        self.name = self.options.name or txt.get("channel") or source.description
        self.log = _BusLog(log, {"bus": self.name})
        self.broadcaster = None
        self.port = None
        self.bound = []
        self.advertiser = None
        self.sinks = []
        self.up = False
        self.finished = False
        self.crash = None
        self.reopens = 0
        self._pump_loop = None  # _fast.pump.Pump: the source thread's loop, once started
        self._beat = None  # the source thread's heartbeat outside the loop (draining, reopening)
        self.down_reason = ""  # why the adapter is lost (while not up)
        self.down_since = None
        self._stop = threading.Event()
        self._on_end = None
        self._threads = []

    # ---- lifecycle (the server calls these) ----

    def open(self, server_options):
        """Open the source and bind the listener (errors here are the user's to fix)."""
        if self.options.transmit_flag and not self.options.listen_only and \
                not self.source.can_transmit:
            raise UsageError(f"{self.options.transmit_flag}: {self.source.description} cannot "
                             "transmit (only adapters can: serve, touCAN)")
        self.source.use_clients(ClientGate(self._client_count, self._wait_for_client,
                                           self._wait_drained))
        self.source.open()
        self.up = True
        try:
            listeners, self.port, self.bound = open_listeners(self.options.bind,
                                                              self.options.port)
        except BaseException:
            self.source.close()
            raise
        self.broadcaster = broadcast.Broadcaster(
            listeners, client_buffer=self.options.client_buffer,
            total_buffer=self.options.client_buffer_total,
            max_clients=self.options.max_clients,  # over every protocol the bus serves
            max_clients_per_host=self.options.max_clients_per_host,
            coalesce=server_options.coalesce,
            log=self._log_client_event)
        self.broadcaster.admit = self.admit

    def start_sinks(self, server_options):
        """Build and start the consumers (after ``open``, before ``start``): what they take
        (socketcand's port, the spool) is taken before any bus serves or is advertised. They
        get no batch before ``start``."""
        info = self.info()
        for make in list(self.options.sinks) + list(server_options.bus_sinks):
            sink = make(info, server_options)
            sink.start(info)
            self.sinks.append(sink)  # only a started sink is closed

    def start(self, server_options, on_end):
        """Start the broadcaster, advertise, start the source thread."""
        self._on_end = on_end
        if self.crash is not None:  # a consumer died between start_sinks and now
            on_end(self)
        self._start_thread(self._serve_clients, f"connections {self.name}")
        where = ", ".join(f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"
                          for h in self.bound[:1])
        self.log.info(f"serving {self.source.description} on TCP {where}")
        if self.options.zeroconf:
            self._advertise()
        self._start_thread(self._pump, f"source {self.name}")

    def info(self):
        txt = self.txt()
        return BusInfo(name=self.name, channel=txt.get("channel", ""),
                       log_channel=self.options.name or "can0",
                       interface=txt.get("interface", ""), bitrate=txt.get("bitrate", ""),
                       port=self.port, txt=txt, source=self.source, log=self.log,
                       serve=self._serve_protocol, failed=self._consumer_failed,
                       listen_only=self.options.listen_only)

    def txt(self):
        from .discovery import short_hostname

        txt = {"system": short_hostname(), "process": self.options.process}
        txt.update(self.source.txt())
        txt["port"] = str(self.port)
        return txt

    def abandon(self):
        """Undo ``open`` (and ``start_sinks``) for a bus that never started (another bus
        failed to open)."""
        self.broadcaster.stop(0)
        self.broadcaster.run()  # returns at once, having closed the listeners
        self._close_sinks(0)
        self.source.close()

    def stop(self, drain_timeout):
        """Stop reading, send what is queued, unregister, close the sinks and the adapter."""
        self._stop.set()
        source_thread = self._threads[-1] if len(self._threads) > 1 else None
        if source_thread is not None:
            source_thread.join(5.0)
        if self.broadcaster is not None:
            self.broadcaster.stop(drain_timeout)
            if self._threads:
                self._threads[0].join(drain_timeout + 2.0)
        if self.advertiser is not None:
            try:
                self.advertiser.close()
            except Exception as exc:
                self.log.warning(f"Zeroconf unregister failed: {exc}")
        self._close_sinks(drain_timeout)
        self.source.close()

    def _close_sinks(self, drain_timeout):
        for sink in self.sinks:
            try:
                sink.close(drain_timeout)
            except Exception as exc:  # one consumer's trouble never hides the others' totals
                self.log.error(f"{type(sink).__name__} did not close cleanly: {exc}")

    # ---- the source thread ----

    @property
    def heartbeat(self):
        """time.monotonic() the source thread last came round its loop (None: not started)."""
        loop = self._pump_loop
        beat = loop.heartbeat if loop is not None and loop.heartbeat else None
        if beat is None or (self._beat is not None and self._beat > beat):
            return self._beat
        return beat

    @property
    def last_frame(self):
        """time.monotonic() of the last batch (None: none yet)."""
        loop = self._pump_loop
        return loop.last_frame if loop is not None and loop.last_frame else None

    def _pump(self):
        """Read, hand every batch to the broadcaster and the sinks (the compiled loop,
        _fast/pump.py); reopen a lost adapter, drain a finished one."""
        source = self.source
        consumers = [self.broadcaster.submit] + [sink.put for sink in self.sinks]
        loop = self._pump_loop = pump.Pump(consumers, SourceLostError, self._stop.is_set)
        try:
            while True:
                outcome = loop.run(source.reader(), READ_TIMEOUT)
                if outcome == pump.LOST:
                    self._reopen(loop.lost)
                    continue
                if outcome == pump.ENDED:
                    self._drain()
                    self.finished = True
                    self.log.info(f"{source.description}: finished")
                break
        except Exception as exc:  # a bug or an unexpected library error: the process fails
            self.crash = exc
            self.log.error(f"{source.description} failed unexpectedly: "
                           f"{type(exc).__name__}: {exc}", exc_info=True)
        if self._on_end is not None:
            self._on_end(self)

    def _consumer_failed(self, what, exc):
        """A sink's thread died unexpectedly: the bus counts as crashed (exit 1)."""
        if self.crash is None:
            self.crash = exc
        self.log.error(f"{what} failed unexpectedly: {type(exc).__name__}: {exc}; stopping "
                       "(exit 1, for a supervisor to restart)", exc_info=exc)
        if self._on_end is not None:
            self._on_end(self)

    def _drain(self):
        """A finished source: give the clients up to DRAIN_WAIT s to receive everything."""
        give_up = time.monotonic() + DRAIN_WAIT
        while not self._stop.is_set() and time.monotonic() < give_up:
            self._beat = time.monotonic()  # draining is not being stuck (watchdog)
            if self.broadcaster.wait_drained(0.1):
                return

    def _reopen(self, exc):
        self.up = False
        self.down_reason = str(exc)
        self.down_since = time.monotonic()
        self.log.warning(f"{exc}; the server stays up and reopens it")
        self.source.close()
        delay = RETRY_FIRST
        while not self._stop.wait(delay):
            self._beat = time.monotonic()  # waiting for an adapter is not being stuck
            try:
                self.source.open()
            except SourceError as again:
                # the first of each kind, then at most once a minute (the shared limit)
                self.log.info(f"still waiting: {again}", extra={
                    "rate_key": ("reopen", self.name, str(again), self.reopens),
                    "rate_interval": 60.0})
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.up = True
            self.reopens += 1
            self.log.info(f"{self.source.description} is back; frames flow again")
            return

    # ---- pieces ----

    def _client_count(self):
        """Clients of every protocol the bus serves."""
        return self.broadcaster.client_count if self.broadcaster is not None else 0

    def admit(self, address):
        """None to accept a client of any protocol, or why it is refused (a log line); the
        limits are the connection core's."""
        allow = self.options.allow
        if allow and not peer_allowed(address, allow):
            return "outside --allow " + ", ".join(str(n) for n in allow)
        return None

    def _serve_protocol(self, listeners, protocol):
        """BusInfo.serve: the connection core serves ``protocol`` on these listeners too."""
        return self.broadcaster, self.broadcaster.serve(listeners, protocol)

    def _serve_clients(self):
        """The connection core's loop; a bug in it (or in a protocol's session) stops the
        server with exit 1, as a crashed source does."""
        try:
            self.broadcaster.run()
        except Exception as exc:
            self._consumer_failed("the connection loop", exc)

    def _wait_for_client(self, timeout):
        if self.broadcaster is None:
            return False
        return self.broadcaster.wait_for_clients(1, timeout)

    def _wait_drained(self, timeout):
        if self.broadcaster is None:
            return True
        return self.broadcaster.wait_drained(timeout)

    def _log_client_event(self, level, text, rate_key=None):
        """The broadcaster's lines; a ``rate_key`` (a storm of connects, refusals, drops) goes
        through the shared rate limit: one line per interval with the count."""
        self.log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text,
                     extra={"rate_key": (self.name, rate_key)} if rate_key else None)

    def _advertise(self):
        from .discovery import Advertiser, instance_name, listening_addresses

        name = instance_name(self.options.service_name, self.port)
        self.advertiser = Advertiser(name, self.port, listening_addresses(self.bound),
                                     self.txt(), bound=self.bound)
        try:
            self.advertiser.start()
        except Exception as exc:
            self.advertiser = None
            raise CancorderError(f"Zeroconf advertisement failed: {exc} "
                                 "(run with --no-zeroconf to serve without it)") from exc
        self.log.info(f"advertised as '{self.advertiser.name}' "
                      f"({', '.join(self.advertiser.addresses)})")

    def _start_thread(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def totals(self):
        b = self.broadcaster
        text = (f"{self.source.counters().summary()}; clients served {b.clients_accepted}, "
                f"dropped for lag {b.clients_dropped_lag}, refused {b.clients_refused}, "
                f"bytes sent {b.bytes_sent:,}")
        for sink in self.sinks:
            extra = sink.summary()
            if extra:
                text += f"; {extra}"
        return text

    def totals_fields(self):
        """What ``totals`` says, as figures: the fields of the totals line in JSON logs."""
        from .supervision import snapshot_of

        b = self.broadcaster
        counters = self.source.counters()
        skipped = dataclasses.asdict(counters)
        out = skipped.pop("frames")
        return {"frames": {"in": counters.received, "out": out, **skipped},
                "clients_served": b.clients_accepted,
                "clients_dropped_lag": b.clients_dropped_lag,
                "clients_refused": b.clients_refused, "bytes_sent": b.bytes_sent,
                "sinks": snapshot_of(self).sinks}  # by name, as on the metrics page


class Server:
    """Runs its buses until a signal, until every source has finished, or until one crashes.

    ``run`` returns the exit code: 0 for a signal or finished sources, 1 when a source failed
    unexpectedly (a supervisor's Restart=on-failure restarts it). Usage errors raise UsageError
    (exit 2) before anything is served.
    """

    def __init__(self, buses, options=None):
        from .supervision import STUCK_AFTER, ServiceMonitor

        self.buses = list(buses)
        self.options = options or ServerOptions()
        self._stop = threading.Event()
        self.stop_reason = None
        self._signal = None  # set by the signal handler, read by the main loop
        opts = self.options
        #: sd_notify and the metrics page (supervision.py)
        self.monitor = ServiceMonitor(self.buses, metrics=opts.metrics, notifier=opts.notifier,
                                      stuck_after=opts.stuck_after or STUCK_AFTER,
                                      web=opts.web)

    def run(self):
        opts = self.options
        opened = []
        self.monitor.start()  # the metrics port first: a clash is a usage error, nothing served
        try:
            try:
                # every bus's adapter, listeners and consumers, before any bus serves or is
                # advertised: a mistake found here leaves nothing half served
                for bus in self.buses:
                    self._naming_bus(bus, bus.open, opts)
                    opened.append(bus)
                for bus in self.buses:
                    self._naming_bus(bus, bus.start_sinks, opts)
            except BaseException:
                for bus in opened:
                    bus.abandon()
                raise
            # before the "serving" lines: whoever reads them may send SIGTERM at once
            with stop_on_signals(self._on_signal):
                started = []
                try:
                    for bus in self.buses:
                        started.append(bus)
                        bus.start(opts, self._bus_ended)
                    self.monitor.ready()  # every listener is bound and accepting
                    self._wait_and_report()
                finally:
                    self.monitor.stopping()
                    for bus in self.buses:
                        if bus in started:
                            bus.stop(opts.drain_timeout)
                        else:
                            bus.abandon()
        finally:
            self.monitor.close()
        for bus in self.buses:
            self._log_totals(bus)
        return self.exit_code

    def _naming_bus(self, bus, step, opts):
        """``step(opts)``; with several buses its error line says which bus."""
        try:
            step(opts)
        except CancorderError as exc:
            if len(self.buses) > 1 and len(exc.args) == 1:
                exc.args = (f'bus "{bus.name}": {exc}',)
            raise

    @property
    def exit_code(self):
        return EXIT_FAILURE if any(bus.crash is not None for bus in self.buses) else EXIT_OK

    def _on_signal(self, name):
        """SIGINT/SIGTERM: only noted here. A handler runs in the main thread between two
        bytecodes, maybe inside Event.wait holding the Event's own lock, so setting the Event
        from it could deadlock; the main loop turns the note into a stop within one tick."""
        self._signal = name

    def stop(self, reason="stopped"):
        """Ask the server to shut down (thread-safe; not from a signal handler: _on_signal)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    @property
    def stopping(self):
        return self._stop.is_set()

    def _bus_ended(self, bus):
        if bus.crash is not None:
            self.stop(f"{bus.name} crashed")
        elif all(b.finished for b in self.buses):
            self.stop("every source finished")

    def _wait_and_report(self):
        """The main loop: the watchdog and STATUS= (monitor.tick), and the status lines."""
        opts = self.options
        show = opts.print_frames or opts.stats
        last_time = time.monotonic()
        last_frames = {bus: 0 for bus in self.buses}
        while not self._stop.wait(min(self.monitor.tick_interval, SIGNAL_CHECK)):
            if self._signal is not None:
                self.stop(self._signal)
                break
            self.monitor.tick()
            now = time.monotonic()
            if not show or now - last_time < opts.stats_interval:
                continue
            elapsed = max(now - last_time, 1e-9)
            last_time = now
            for bus in self.buses:
                frames = bus.source.counters().frames
                rate = (frames - last_frames[bus]) / elapsed
                last_frames[bus] = frames
                b = bus.broadcaster
                extra = "".join(f", {s}" for s in (sink.summary() for sink in bus.sinks) if s)
                bus.log.info(f"{rate:,.0f} frames/s, {frames:,} in all, "
                             f"{plural(b.main_clients, 'client')}, "
                             f"{b.clients_dropped_lag} dropped for lag{extra}")

    def _log_totals(self, bus):
        bus.log.info(f"totals: {bus.totals()}",
                     extra={"event": "totals", **bus.totals_fields()})

