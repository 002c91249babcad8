"""A client of an ECUconnect Logger: connect, receive, decode, hand every frame on.

    socket --recv (up to 1 MB)--> StreamDecoder (compiled) --frames--> filter, --count
        --> Recording (python-can writers, every -o FILE)
        --> the screen: one formatter call and one write per received chunk, or the --stats table

A log file (``dump FILE``) comes in the same way from the replay source (sources/replay.py,
what ``cancorder replay`` serves), read in line instead of from a socket.

Everything runs in the main thread around one ``select`` on the socket and a wake-up socket
that SIGINT and SIGTERM write to, so a signal, ``--duration`` or the server closing all leave
through the same ``finally``: the recording is flushed and closed, nothing received is lost.
"""
import ipaddress
import os
import select
import socket
import sys
import time

from ._fast import wire
from .errors import (CancorderError, ConnectError, ForeignStreamError, OutputClosed, UsageError,
                     WireFormatError)
from .protocol import DEFAULT_PORT, RETRY_FIRST, RETRY_MAX
from .report import plural
from .signals import stop_on_signals
from .sources.base import Source

CONNECT_TIMEOUT = 5.0
RECV_SIZE = 1 << 20
STATS_INTERVAL = 0.5
PLAY_READ = 0.1  # dump FILE: the longest a read of the replay source waits (signals, --duration)
#: a connection closed without a byte within this long was most likely refused (a full logger
#: accepts and closes at once; a quiet bus sends nothing too, but is not closed so soon)
REFUSED_WITHIN = 2.0
#: connected, and not a byte this long: said once (a quiet bus sends nothing, but neither does
#: a port that is not a logger's: its --metrics port, any server that waits to be spoken to)
QUIET_NOTICE = 5.0
#: the first bytes of a connection kept to tell another protocol from ECUconnect records
HEAD_SIZE = 80
#: how long dump asks Zeroconf for the logger's ECUconnect port behind a socketcand port
ZEROCONF_LOOKUP = 1.5
SOCKETCAND_HI = b"< hi >"


class Target:
    """Where to connect: ``host`` (a name or an address) or the addresses a browse found."""

    def __init__(self, host, port=DEFAULT_PORT, addresses=None, label=None):
        self.host = host
        self.port = port
        self.addresses = list(addresses or [])
        self.label = label or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    def __str__(self):
        return self.label


def parse_target(text, default_port=DEFAULT_PORT):
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> Target."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"{text}: an IPv6 address with a port is written [ADDRESS]:PORT")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"{text}: expected [ADDRESS]:PORT")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    elif text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            raise UsageError(f"{text}: expected HOST[:PORT] (an IPv6 address with a port is "
                             "written [ADDRESS]:PORT)") from None
    if not host:
        raise UsageError(f"{text}: the host is missing (expected HOST[:PORT])")
    return Target(host, port)


def _port(text, whole):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{whole}: the port must be a number from 1 to 65535")
    return int(text)


def connect(target, timeout=CONNECT_TIMEOUT):
    """A connected socket, or one clear error: unknown host (UsageError), refused, timed out."""
    if target.addresses:
        candidates = [(address, target.port) for address in target.addresses]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UsageError(f"unknown host '{target.host}': {exc.strerror} (check the name, "
                             "or give the logger's IP address)") from None
        candidates = [info[4] for info in infos]
    problems = []
    for address in dict.fromkeys(candidates):
        try:
            sock = socket.create_connection(address[:2], timeout=timeout)
        except ConnectionRefusedError:
            problems.append("refused")
        except (socket.timeout, TimeoutError):
            problems.append("timeout")
        except OSError as exc:
            problems.append(exc.strerror or str(exc))
        else:
            sock.settimeout(None)
            return sock
    if "refused" in problems:
        raise ConnectError(f"connection refused by {target}: no logger listens there (is it "
                           "running? `cancorder dump` without a target looks for loggers on "
                           "the network)")
    if "timeout" in problems:
        raise ConnectError(f"no answer from {target} within {timeout:g} s (the host is off or "
                           "a firewall drops the connection; --timeout waits longer)")
    raise ConnectError(f"cannot connect to {target}: {problems[0] if problems else 'no address'}")


def frame_filter(rules):
    """--filter on decoded frames, with the same compiled rules the sources use."""
    from .filters import record_filter

    compiled = record_filter(rules)
    if compiled is None:
        return None
    passes = compiled.passes
    ext = wire.FLAG_EXT

    def keep(frames):
        return [frame for frame in frames if passes(frame[1], frame[2] & ext)]

    return keep


class Dump:
    """Receives from one logger until --count, --duration, a signal or the end of the stream.

    ``formatter`` (formats.*Formatter) writes to ``out`` unless ``stats`` (formats.StatsTable)
    shows the live table instead; ``recording`` (logfiles.recording.Recording) gets every
    frame shown.
    """

    def __init__(self, target, reporter, formatter=None, out=None, recording=None, stats=None,
                 filters=None, count=None, duration=None, reconnect=False,
                 timeout=CONNECT_TIMEOUT, where=None):
        self.target = target
        self.reporter = reporter
        self.formatter = formatter
        self.out = out if out is not None else sys.stdout
        self.recording = recording
        self.stats = stats
        self.passes = frame_filter(filters)
        self.where = where  # where.SignalCondition: --where on decoded signals, after --filter
        self.count = count
        self.duration = duration
        self.reconnect = reconnect
        self.timeout = timeout
        self.received = 0  # frames decoded (before --filter)
        self.shown = 0  # frames that passed --filter and --count
        self.reason = None  # why it stopped, for the summary line
        self.ended = False  # the stream ended by itself (not --count, --duration, a signal)
        self._deadline = None
        self._signal = None
        self._wake_r = self._wake_w = None
        self._connection_bytes = 0

    # ---- the whole run ----

    def run(self):
        """Returns the exit status (0); a malformed stream, an unreachable logger or a broken
        connection raises (the recording is closed first)."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        failed = True
        try:
            with stop_on_signals(self.stop):
                try:
                    if self.stats is not None:
                        self.stats.start()
                    if isinstance(self.target, Source):  # a log file (ReplaySource)
                        self._play(self.target)
                    else:
                        self._connect_and_receive()
                    hold = getattr(self.stats, "hold", None)
                    if hold is not None and self.ended and self._signal is None:
                        # the monitor: the stream ended, but the table stays until q
                        hold(self.reason or "the stream ended", lambda: self._signal is not None)
                    failed = False
                except OutputClosed:
                    failed = False
                finally:
                    self._finish(failed)
        finally:
            self._wake_r.close()
            self._wake_w.close()
        return 0

    def stop(self, reason="stopped"):
        """Thread-safe: end the run at the next chance (tests and signal handlers call it)."""
        if self._signal is None:
            self._signal = reason
        try:
            self._wake_w.send(b"\0")
        except (OSError, AttributeError):
            pass

    def _connect_and_receive(self):
        rep = self.reporter
        delay = RETRY_FIRST
        connected_before = False
        outages = 0
        while True:
            try:
                sock = connect(self.target, self.timeout)
            except ConnectError as exc:
                if not self.reconnect:
                    raise
                # the first of each outage, then at most once a minute (the shared limit)
                rep.logger.warning(f"{exc}; retrying with backoff (--reconnect)",
                                   extra={"rate_key": ("connect", str(exc), outages),
                                          "rate_interval": 60.0})
                if self._wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX)
                continue
            if self.recording and not connected_before:
                try:  # only now: a logger that cannot be reached leaves no empty files
                    self.recording.open()
                except BaseException:
                    sock.close()
                    raise
            outages += 1  # the next outage says its first line again
            rep.info(f"{'reconnected' if connected_before else 'connected'} to {self.target}")
            connected_before = True
            if self._deadline is None and self.duration:
                self._deadline = time.monotonic() + self.duration
            try:
                lost, clean = self._receive(sock)
            finally:
                sock.close()
            if lost is None:
                return
            ended = getattr(self.stats, "connection_ended", None)  # dump --check counts it
            if ended is not None:
                ended(lost)
            if not self.reconnect:
                if not clean:  # a crash or a network failure, not an end: exit non-zero
                    raise ConnectError(f"{lost} (--reconnect keeps trying)")
                self.reason = lost
                self.ended = True
                return
            rep.warning(f"{lost}; reconnecting to {self.target} (--reconnect)")
            # a connection that brought frames starts the backoff again; a refusal does not
            delay = RETRY_FIRST if self._connection_bytes else min(delay * 2, RETRY_MAX)
            if self._wait(delay):
                return

    def _play(self, source):
        """Frames from a log file instead of a logger: the replay source (opened by the
        command), read in line, paced by its --speed. Damage ends it after the frames before
        it (LogFileError)."""
        name = ", ".join(source.paths)
        self.reporter.info(f"reading {name}")
        if self.recording:
            self.recording.open()
        if self.duration:
            self._deadline = time.monotonic() + self.duration
        decode = wire.StreamDecoder().feed
        while True:
            timeout = self._next_timeout()
            records = source.read(PLAY_READ if timeout is None else min(timeout, PLAY_READ))
            if records is None:
                break
            if records and self._deliver(decode(records), source.read_channel):
                self.reason = f"--count {self.count}"
                break
            if self._over():
                break
        if source.failure is not None:
            raise source.failure
        if self.reason is None:
            self.reason = f"end of {name}"
            self.ended = True
        counts = source.counters()
        skipped = counts.remote + counts.error + counts.invalid
        if skipped:
            self.reporter.info(f"{skipped:,} remote, error or impossible frames in {name} "
                               "skipped (the ECUconnect format carries none of them)")

    def _wait(self, seconds):
        """Sleep, but wake for a signal or the --duration deadline; True means stop now."""
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()
        return self._over()

    def _over(self):
        """True once a signal came or --duration has passed (``reason`` says which)."""
        if self._signal is not None:
            self.reason = self._signal
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.reason = f"--duration {self.duration:g} s"
            return True
        return False

    def _next_timeout(self):
        """How long the receive loop may wait: until --duration ends or the --stats table is
        due (None: no limit); refreshes the table when it is due."""
        timeout = None
        now = time.monotonic()
        if self._deadline is not None:
            timeout = max(0.0, self._deadline - now)
        if self.stats is not None:
            self.stats.refresh_if_due(now)
            timeout = STATS_INTERVAL if timeout is None else min(timeout, STATS_INTERVAL)
        return timeout

    def _receive(self, sock):
        """Until the stream ends, returning (why, whether it ended cleanly), or the run is
        over, returning (None, True)."""
        decoder = wire.StreamDecoder()
        wake = self._wake_r
        watched = [sock, wake]
        stats = self.stats
        connected_at = time.monotonic()
        received = self._connection_bytes = 0  # bytes on this connection
        head = b""  # its first bytes
        quiet_said = False
        while True:
            timeout = self._next_timeout()
            if not received and not quiet_said:
                left = max(0.0, connected_at + QUIET_NOTICE - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            readable = select.select(watched, [], [], timeout)[0]
            if wake in readable:
                self._drain_wake()
            if self._over():
                return None, True
            if not received and not quiet_said and \
                    time.monotonic() - connected_at >= QUIET_NOTICE:
                quiet_said = True
                self.reporter.warning(
                    f"connected to {self.target}, but not a byte in {QUIET_NOTICE:g} s: a quiet "
                    "bus sends nothing, and neither does a port that is not a logger's (its "
                    "--metrics port, a server waiting to be spoken to); still waiting")
            if sock not in readable:
                continue
            try:
                chunk = sock.recv(RECV_SIZE)
            except OSError as exc:  # reset by the peer: the stream ends here
                chunk, clean = b"", False
                why = f"the connection to {self.target} broke ({exc.strerror or exc})"
            else:
                why, clean = "the logger closed the connection", True
            if not chunk:
                if clean:
                    why, clean = self._why_closed(decoder, received,
                                                  time.monotonic() - connected_at)
                return why, clean
            if len(head) < HEAD_SIZE and not decoder.frames:
                head += chunk[:HEAD_SIZE - len(head)]
                foreign = foreign_stream(head)
                if foreign:
                    raise ForeignStreamError(f"{self.target} {foreign}"
                                             f"{self._logger_port(sock, head)}")
            received += len(chunk)
            self._connection_bytes = received
            try:
                frames = decoder.feed(chunk)
            except WireFormatError as exc:
                # The records before the bad one are good: show and record them, then stop.
                self._deliver(exc.frames)
                raise
            if frames and self._deliver(frames):
                self.reason = f"--count {self.count}"
                return None, True

    def _logger_port(self, sock, head):
        """For a socketcand port: where this logger's ECUconnect port is, if Zeroconf says."""
        if not head.startswith(SOCKETCAND_HI):
            return ""
        try:
            peer = sock.getpeername()[0]
        except OSError:
            peer = None
        ports = logger_ports(peer, ZEROCONF_LOOKUP) if peer else []
        if ports:
            return (f": the ECUconnect port of this logger is "
                    f"{' or '.join(str(port) for port in ports)} (cancorder dump "
                    f"{_with_port(self.target.host, ports[0])})")
        return (f": connect to its ECUconnect port ({DEFAULT_PORT} unless the logger's -p says "
                f"otherwise; Zeroconf did not name it within {ZEROCONF_LOOKUP:g} s)")

    def _why_closed(self, decoder, received, after):
        """The logger closed the connection: (why, clean). A close before the first byte is
        most likely a refusal (a full logger accepts and closes at once); a close inside a
        record most likely a drop for lag (the logger cuts a client that falls too far
        behind); neither is a clean end."""
        if not received and after < REFUSED_WITHIN:
            return (f"the logger closed the connection at once without sending a byte: it "
                    f"probably refused this client (a logger serves at most --max-clients "
                    f"clients, 64 unless set, and --max-clients-per-host from one address: "
                    f"raise them on the logger, or close another client)"), False
        if decoder.pending:
            return (f"the logger closed the connection in the middle of a record (stream byte "
                    f"{decoder.offset}, {decoder.pending} bytes of it received): it probably "
                    f"dropped this client for lag (it was more than the logger's "
                    f"--client-buffer behind; that incomplete record is not recorded)"), False
        return "the logger closed the connection", True

    def _deliver(self, frames, channel=None):
        """Filter, count, record, show; True when --count is reached."""
        self.received += len(frames)
        if self.passes is not None:
            frames = self.passes(frames)
        if self.where is not None:
            frames = self.where.keep(frames)
        done = False
        if self.count is not None and len(frames) >= self.count - self.shown:
            frames = frames[:self.count - self.shown]
            done = True
        if not frames:
            return done
        self.shown += len(frames)
        if self.recording:
            self.recording.write(frames)
        if self.stats is not None:
            self.stats.add(frames, channel)
        elif self.formatter is not None:
            self._write(self.formatter.format(frames))
        return done

    def _write(self, text):
        if not text:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            # `dump | head`: the reader has enough. Silence the stream so the interpreter's
            # final flush cannot complain, and stop as if asked.
            _silence(self.out)
            self.reason = "the output was closed"
            self.formatter = None
            raise OutputClosed() from None

    def _finish(self, failed):
        rep = self.reporter
        problems = []
        if self.formatter is not None and self.stats is None:
            try:
                self._write(self.formatter.finish())
            except OutputClosed:
                pass
        if self.stats is not None:
            self.stats.stop()
        if self.recording and self.recording.opened:
            try:
                self.recording.close()
            except CancorderError as exc:
                problems.append(exc)
            rep.info(f"recorded {self.recording.summary()}")
            for note in self.recording.notes():
                rep.warning(note)
        filtered = f" ({self.received:,} received)" if self.received != self.shown else ""
        if failed:
            if self.shown:
                rep.info(f"{plural(self.shown, 'frame')}{filtered} before the error")
        else:
            rep.info(f"{plural(self.shown, 'frame')}{filtered}; stopped: {self.reason or 'done'}")
        if problems and not failed:
            raise problems[0]

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass


def foreign_stream(head):
    """What the first bytes of a connection are when they are not ECUconnect records (""
    when they may be): a record starts with its timestamp's top byte, 0 until the year 4000,
    so text is another protocol: socketcand's greeting, HTTP, a banner (SSH, SMTP...)."""
    if not head or head[0] == 0:
        return ""
    if head.startswith(SOCKETCAND_HI):
        return ("is a socketcand port (it greets with '< hi >'), not an ECUconnect Logger's "
                "port")
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not line or not all(32 <= byte < 127 or byte == 9 for byte in line):
        return ""  # not text: the record decoder names what is wrong
    text = line.decode("ascii")
    if head.startswith(b"HTTP/"):
        return (f"answers in HTTP ('{text}'), not in ECUconnect records: a web server (a "
                "logger's --metrics port?), not a logger's port")
    return (f"sent text, not ECUconnect records: '{text}' (another service on that port: "
            "check the port)")


def logger_ports(address, seconds):
    """The ECUconnect ports Zeroconf names for loggers at ``address`` (this machine's, for a
    loopback address), or [] when none answers within ``seconds``."""
    try:
        from .discovery import browse, short_hostname

        found = browse(seconds, resolve_timeout=seconds)
    except Exception:  # no Zeroconf here (no network, no multicast): nothing to say
        return []
    local = ipaddress.ip_address(address.split("%")[0]).is_loopback
    ports = []
    for logger in found:
        if address in logger.addresses or (local and logger.txt.get("system") ==
                                           short_hostname()):
            if logger.port not in ports:
                ports.append(logger.port)
    return sorted(ports)


def _with_port(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _silence(stream):
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
