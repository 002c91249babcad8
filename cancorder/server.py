"""The server: wires a frame source, the broadcaster and the Zeroconf advertiser together.

    source (pump thread) --records--> Broadcaster (select loop thread) --> clients
                                      Advertiser (Zeroconf) says where it listens
    main thread: signals, status line, shutdown

Every serving subcommand (serve, touCAN, mock-uds) builds a Source and hands it to Server.run;
the server does not know which source it runs.
"""
import collections
import dataclasses
import errno
import socket
import threading
import time

from ._fast import broadcast, wire
from .errors import CancorderError, SourceError, SourceFinished, SourceLostError, UsageError
from .signals import stop_on_signals

DEFAULT_PORT = 42420
PORT_SEARCH = 100  # ports tried from 42420 when --port is not given
REOPEN_FIRST = 0.5
REOPEN_MAX = 5.0
READ_TIMEOUT = 0.1  # a bounded read keeps shutdown prompt


@dataclasses.dataclass
class ServerOptions:
    bind: str = None
    port: int = None
    max_clients: int = 64
    client_buffer: int = 4 << 20
    zeroconf: bool = True
    service_name: str = None
    process: str = "cancorder serve"
    print_frames: bool = False  # -v of serve/touCAN: a candump line per frame on stdout
    stats: bool = False  # a status line every stats_interval (also shown with print_frames)
    stats_interval: float = 2.0
    drain_timeout: float = 3.0
    coalesce: float = 0.001
    record: list = dataclasses.field(default_factory=list)  # recording.RecordOptions (--record)


def open_listeners(bind=None, port=None):
    """Bind the real listening socket: ``bind`` None means every IPv4 and IPv6 address.

    Without ``port`` the first free port from 42420 is taken by binding it for real, so no
    other process can take it between a test and the use.
    Returns (sockets, port, bound host strings).
    """
    ports = [port] if port else range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH)
    last = None
    for candidate in ports:
        try:
            return _bind(bind, candidate)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise _bind_error(bind, candidate, exc) from exc
            last = exc
    if port:
        raise UsageError(f"port {port} is already in use (another logger?): choose another "
                         "with --port, or leave --port out to take the first free one "
                         f"from {DEFAULT_PORT}") from last
    raise UsageError(f"no free port in {DEFAULT_PORT}..{DEFAULT_PORT + PORT_SEARCH - 1}: "
                     "choose one with --port") from last


def _bind(bind, port):
    if bind is None:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, backlog=64)
            return [sock], port, ["::", "0.0.0.0"]
        return [socket.create_server(("0.0.0.0", port), backlog=64)], port, ["0.0.0.0"]
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--bind {bind}: not an address of this machine ({exc.strerror})")
    family, _, _, _, address = infos[0]
    sock = socket.create_server(address, family=family, backlog=64)
    return [sock], port, [address[0]]


def _bind_error(bind, port, exc):
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"--bind {bind}: this machine has no such address")
    if exc.errno == errno.EACCES:
        return UsageError(f"port {port}: permission denied (ports below 1024 need root)")
    return UsageError(f"cannot listen on {bind or '*'}:{port}: {exc.strerror or exc}")


class FramePrinter:
    """Prints one candump line per frame (-v) from its own thread.

    The queue is bounded: when the terminal cannot keep up with the bus, lines are skipped and
    counted rather than slowing down the proxy.
    """

    MAX_QUEUED = 2048  # record batches

    def __init__(self, stream, channel="can0"):
        self._stream = stream
        self._channel = channel
        self._queue = collections.deque(maxlen=self.MAX_QUEUED)
        self._ready = threading.Event()
        self._stop = False
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="frame-printer", daemon=True)

    def start(self):
        self._thread.start()

    def put(self, records):
        if len(self._queue) == self.MAX_QUEUED:
            self.skipped += 1  # a whole batch not shown
        self._queue.append(records)
        self._ready.set()

    def stop(self):
        self._stop = True
        self._ready.set()
        self._thread.join(2.0)

    def _run(self):
        from .formats import candump_line

        decoder = wire.StreamDecoder()
        while True:
            self._ready.wait()
            self._ready.clear()
            lines = []
            while self._queue:
                for frame in decoder.feed(self._queue.popleft()):
                    lines.append(candump_line(frame, self._channel))
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (BrokenPipeError, ValueError, OSError):
                    return
            if self._stop and not self._queue:
                return


class Server:
    """Runs one source behind the broadcaster until a signal or the source ends."""

    def __init__(self, source, options, reporter, extra_txt=None):
        self.source = source
        self.options = options
        self.reporter = reporter
        self.extra_txt = dict(extra_txt or {})
        self.broadcaster = None
        self.port = None
        self.advertiser = None
        self._stop = threading.Event()
        self._stop_reason = None
        self._printer = None
        self.recorders = []
        self.frames_in = 0

    # ---- lifecycle ----

    def run(self):
        """Serve until SIGINT/SIGTERM (or the source ends); returns the exit status (0)."""
        opts = self.options
        rep = self.reporter
        self.source.attach(self)
        self.source.open()
        try:
            listeners, self.port, bound = open_listeners(opts.bind, opts.port)
        except BaseException:
            self.source.close()
            raise
        self.broadcaster = broadcast.Broadcaster(
            listeners, client_buffer=opts.client_buffer, max_clients=opts.max_clients,
            coalesce=opts.coalesce, log=rep.log)
        loop = threading.Thread(target=self.broadcaster.run, name="broadcaster", daemon=True)
        loop.start()
        where = ", ".join(f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"
                          for h in bound[:1])
        self._start_recorders()
        # before the "serving" line: whoever reads it may send SIGTERM at once
        with stop_on_signals(self.stop):
            rep.info(f"serving {self.source.description} on TCP {where}")
            pump = None
            try:
                if opts.zeroconf:
                    self._advertise(bound)
                if opts.print_frames:
                    import sys

                    self._printer = FramePrinter(sys.stdout)
                    self._printer.start()
                pump = threading.Thread(target=self._pump, name="source", daemon=True)
                pump.start()
                self._wait_and_report()
            finally:
                self._shutdown(pump, loop)
        self._print_totals()
        return 0

    def _shutdown(self, pump, loop):
        """Stop reading, send what is queued, unregister, close the adapter."""
        opts = self.options
        self._stop.set()
        if pump is not None:
            pump.join(5.0)
        self.broadcaster.stop(opts.drain_timeout)
        loop.join(opts.drain_timeout + 2.0)
        if self.advertiser is not None:
            try:
                self.advertiser.close()
            except Exception as exc:
                self.reporter.warning(f"Zeroconf unregister failed: {exc}")
        self.source.close()
        if self._printer is not None:
            self._printer.stop()
        for recorder in self.recorders:
            recorder.close()

    def _start_recorders(self):
        """--record: one recorder per path, recording from now on, clients or not."""
        import types

        from .commands._server_args import reporter_log
        from .recording import Recorder

        txt = self.source.txt()
        bus = types.SimpleNamespace(
            name=txt.get("channel"), channel=txt.get("channel"),
            interface=txt.get("interface"), bitrate=txt.get("bitrate"), port=self.port, txt=txt,
            source=self.source, log=reporter_log(self.reporter))
        for options in self.options.record:
            recorder = Recorder(options)
            recorder.start(bus)
            self.recorders.append(recorder)

    def stop(self, reason="stopped"):
        """Ask the server to shut down (thread-safe; signal handlers call it)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    @property
    def stopping(self):
        return self._stop.is_set()

    # ---- pieces ----

    def _advertise(self, bound):
        from .discovery import Advertiser, instance_name, listening_addresses, short_hostname

        txt = {"system": short_hostname(), "process": self.options.process}
        txt.update(self.source.txt())
        txt.update(self.extra_txt)
        txt["port"] = str(self.port)
        name = instance_name(self.options.service_name, self.port)
        self.advertiser = Advertiser(name, self.port, listening_addresses(bound), txt)
        try:
            self.advertiser.start()
        except Exception as exc:
            self.advertiser = None
            raise CancorderError(f"Zeroconf advertisement failed: {exc} "
                                 "(run with --no-zeroconf to serve without it)") from exc
        self.reporter.info(f"advertised as '{self.advertiser.name}' ({', '.join(self.advertiser.addresses)})")

    def _pump(self):
        """The source thread: read, pack, submit; reopen with backoff when the adapter fails."""
        source = self.source
        submit = self.broadcaster.submit
        printer = self._printer
        sinks = [recorder.put for recorder in self.recorders]
        rep = self.reporter
        try:
            while not self._stop.is_set():
                try:
                    records = source.read(READ_TIMEOUT)
                except SourceLostError as exc:
                    lost = exc
                else:
                    lost = None
                if lost is not None:  # outside the except block: no chained contexts
                    self._reopen(lost)
                    continue
                if records:
                    submit(records)
                    if printer is not None:
                        printer.put(records)
                    for put in sinks:
                        put(records)
        except SourceFinished:
            self.stop("source finished")
        except Exception as exc:  # a bug or an unexpected library error: stop cleanly
            rep.log("error", f"{source.description}: {exc}")
            if rep.debug_enabled:
                rep.console.print_exception()
            self.stop("source error")

    def _reopen(self, exc):
        rep = self.reporter
        rep.log("warning", f"{exc}; the server stays up and reopens it")
        self.source.close()
        delay = REOPEN_FIRST
        while not self._stop.wait(delay):
            try:
                self.source.open()
            except SourceError as again:
                rep.once(("reopen", str(again)), "info", f"still waiting: {again}")
                delay = min(delay * 2, REOPEN_MAX)
                continue
            rep.info(f"{self.source.description} is back; frames flow again")
            return

    def _wait_and_report(self):
        opts = self.options
        show = opts.print_frames or opts.stats
        last_time = time.monotonic()
        last_frames = 0
        while not self._stop.wait(opts.stats_interval if show else 0.5):
            if not show:
                continue
            now = time.monotonic()
            frames = self.source.counters()["frames"]
            rate = (frames - last_frames) / max(now - last_time, 1e-9)
            last_time, last_frames = now, frames
            b = self.broadcaster
            skipped = f", {self._printer.skipped} batches not printed" \
                if self._printer is not None and self._printer.skipped else ""
            for recorder in self.recorders:
                stats = recorder.stats()
                skipped += f", {stats['recorded']:,} recorded"
                if stats["record_lost"]:
                    skipped += f", {stats['record_lost']:,} not recorded"
            self.reporter.info(f"{rate:,.0f} frames/s, {frames:,} in all, {b.client_count} "
                               f"clients, {b.clients_dropped_lag} dropped for lag{skipped}")

    def _print_totals(self):
        c = self.source.counters()
        b = self.broadcaster
        frames_in = c["frames"] + c["remote"] + c["error"] + c["invalid"] + c.get("garbage", 0)
        extra = "".join(f", {k} {v:,}" for k, v in c.items()
                        if k not in ("frames", "remote", "error", "invalid"))
        self.reporter.info(
            f"totals: frames in {frames_in:,}, out {c['frames']:,}, skipped remote "
            f"{c['remote']:,}, error {c['error']:,}, invalid {c['invalid']:,}{extra}; "
            f"clients served {b.clients_accepted}, dropped for lag {b.clients_dropped_lag}, "
            f"bytes sent {b.bytes_sent:,}")
        for recorder in self.recorders:
            self.reporter.info(recorder.summary())
