"""cancorder's own SLCAN (LAWICEL) source: bulk reads through pyserial, the compiled parser.

python-can's slcan backend reads one byte per call and builds a Message per frame: about 4,000
frames/s for a whole core, below a saturated 500 kbit/s bus. This source reads whatever the
port holds and turns SLCAN lines straight into wire records (cancorder._fast.slcan).

It speaks to the adapter like python-can does (so adapters that work there work here): ``C``,
then ``S0``..``S9`` (or ``sXXYY`` register timing), ``Y2``/``Y5`` for a CAN FD data rate, then
``O`` (``L`` for listen-only); ``C`` at the end. python-can also sends an empty command and a
second ``O``; they do nothing useful, so this source leaves them out.
"""
import logging
import os
import select
import threading
import time

from .._fast import slcan, wire
from ..errors import SourceInitError, SourceLostError, TransmitError, UsageError
from .base import Source, SourceCounters

#: python-can's table (S9 = 83.3 kbit/s, as in the CANable firmware)
BITRATE_COMMANDS = {10000: "S0", 20000: "S1", 50000: "S2", 100000: "S3", 125000: "S4",
                    250000: "S5", 500000: "S6", 750000: "S7", 1000000: "S8", 83300: "S9",
                    83333: "S9"}  # 83.3k as python-can writes it, and as 1e6 / 12 rounds
DATA_BITRATE_COMMANDS = {2000000: "Y2", 5000000: "Y5"}
#: --opt keys this source understands (the rest belong to python-can's backend)
OPTIONS = {"tty_baudrate", "rtscts", "sleep_after_open", "btr"}
READ_SIZE = 1 << 16
#: A read that comes this soon after the previous one means the link is busy (over ~3,000
#: reads/s: an adapter writing frame by frame at a high rate) ...
BUSY_INTERVAL_NS = 300000
#: ... and then waits one flush window (the broadcaster's 1 ms) first, so that one read takes
#: what came meanwhile instead of one read, one parse call and one hand-over per line. Under
#: load the broadcaster would hold the records that long anyway; on a quiet link nothing waits.
GATHER = 0.001

log = logging.getLogger("cancorder.source")
#: seconds after opening without one reply or frame before saying the port may not be SLCAN
NOT_SLCAN_AFTER = 5.0
#: seconds an adapter that answers commands has to answer a transmit (z/Z, or BEL: refused).
#: Waited once for an adapter that never answers transmits (then taken at its silence for good),
#: so it is generous: at 0.5 s a loaded machine whose reader thread read a BEL late took an
#: answering adapter for a silent one, and a refused frame for a sent one
TRANSMIT_ANSWER_TIMEOUT = 2.0


def _reads_plain_fd(port):
    """True when the port's bytes are its file descriptor's bytes (a POSIX serial port or a
    socket:// URL): then one os.read replaces pyserial's read, which would select again and
    loop. Other URL handlers (spy://, rfc2217://, loop://) transform or log: pyserial reads."""
    module = type(port).__module__
    return module in ("serial.serialposix", "serial.urlhandler.protocol_socket")


def split_channel(channel):
    """python-can's syntax: ``/dev/ttyUSB0@115200`` -> ('/dev/ttyUSB0', 115200)."""
    port, sep, baud = str(channel).rpartition("@")
    if sep and baud.isdigit() and "://" not in baud:
        return port, int(baud)
    return str(channel), None


def frame_line(can_id, flags, data):
    """The SLCAN command that transmits a frame: t/T (classic), d/D (FD), b/B (FD + BRS)."""
    n = len(data)
    if flags & wire.FLAG_FD:
        kind = "b" if flags & wire.FLAG_BRS else "d"
        dlc = wire.FD_LENGTHS.index(n)
    else:
        kind = "t"
        dlc = n
    if flags & wire.FLAG_EXT:
        return f"{kind.upper()}{can_id:08X}{dlc:X}{data.hex().upper()}\r".encode("ascii")
    return f"{kind}{can_id:03X}{dlc:X}{data.hex().upper()}\r".encode("ascii")


def _option_flag(key, text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"--opt {key}={text}: expected true or false")


def _option_number(key, text, convert):
    try:
        return convert(str(text))
    except ValueError:
        raise UsageError(f"--opt {key}={text}: expected a number") from None


class SlcanSource(Source):
    can_transmit = True
    filters_itself = True  # inside the compiled parser

    def __init__(self, channel, bitrate=500000, data_bitrate=None, listen_only=False,
                 record_filter=None, timestamps="adapter", options=None, fd=False):
        super().__init__(record_filter)
        self.fd = fd
        if not channel:
            raise UsageError("the slcan interface needs -c/--channel: a serial port "
                             "(/dev/ttyACM0, COM8, /dev/ttyUSB0@115200) or a pyserial URL")
        options = dict(options or {})
        unknown = set(options) - OPTIONS
        if unknown:
            raise UsageError(f"--opt {', '.join(sorted(unknown))}: not an option of cancorder's "
                             "SLCAN source (tty_baudrate, rtscts, sleep_after_open, btr); add "
                             "--opt slcan_backend=python-can to hand options to python-can")
        self.channel = str(channel)
        self.port_name, baud = split_channel(channel)
        # --opt values arrive as text and are read here, by the source that owns the key
        self.baudrate = baud or _option_number("tty_baudrate",
                                               options.get("tty_baudrate", "115200"), int)
        self.rtscts = _option_flag("rtscts", options.get("rtscts", "false"))
        is_url = "://" in self.port_name
        # USB adapters that reset on open need a moment (python-can waits 2 s); a URL does not.
        self.sleep_after_open = _option_number(
            "sleep_after_open", options.get("sleep_after_open", 0 if is_url else 2.0), float)
        self.bitrate = bitrate
        self.setup = ["C"]
        btr = options.get("btr")
        if btr is not None:
            btr = str(btr)
            if len(btr) != 4 or any(ch not in "0123456789abcdefABCDEF" for ch in btr):
                raise UsageError(f"--opt btr={btr}: expected 4 hex digits (BTR0 BTR1), e.g. 031C")
            self.setup.append("s" + btr.upper())
        elif bitrate:
            if bitrate not in BITRATE_COMMANDS:
                rates = ", ".join(str(r) for r in sorted(BITRATE_COMMANDS))
                raise UsageError(f"--bitrate {bitrate} is not possible on slcan: use one of "
                                 f"{rates} (or --opt btr=XXYY for register timing)")
            self.setup.append(BITRATE_COMMANDS[bitrate])
        if data_bitrate:
            if data_bitrate not in DATA_BITRATE_COMMANDS:
                raise UsageError(f"--data-bitrate {data_bitrate} is not possible on slcan: use "
                                 "2000000 or 5000000 (CANable 2.0 firmware)")
            self.setup.append(DATA_BITRATE_COMMANDS[data_bitrate])
        self.setup.append("L" if listen_only else "O")
        self.parser = slcan.SlcanParser(adapter_time=timestamps == "adapter",
                                        record_filter=record_filter)
        self.port = None
        self._poll = self._raw_fd = None
        self._last_read_ns = 0
        self._write_lock = threading.Lock()  # transmit lines never interleave
        # the read thread parses the adapter's answers; a transmit waits for its own
        self._answered = threading.Condition()
        self._answers_seen = 0
        self._answers_transmits = True  # until a transmit went unanswered
        self._setup_answered_by = 0.0  # monotonic time the setup commands' answers are due
        self._seen_garbage = 0
        self._seen_bell = 0
        self._opened_at = None  # while nothing SLCAN was heard since opening
        self._said_not_slcan = False

    @property
    def description(self):
        return f"slcan channel {self.channel}"

    def txt(self):
        return {"interface": "slcan", "channel": self.channel, "bitrate": str(self.bitrate or "")}

    def open(self):
        import serial

        try:
            port = serial.serial_for_url(self.port_name, baudrate=self.baudrate,
                                         rtscts=self.rtscts, timeout=0, write_timeout=2)
        except Exception as exc:  # SerialException, ValueError (bad URL), OSError
            from .pycan import explain_open_error

            raise explain_open_error(exc, "slcan", self.channel, self.bitrate) from exc
        try:
            if self.sleep_after_open:
                time.sleep(self.sleep_after_open)
            for command in self.setup:
                port.write(command.encode("ascii") + b"\r")
            port.flush()
        except Exception as exc:
            port.close()
            raise SourceInitError(f"cannot configure {self.description}: {exc}") from exc
        self.port = port
        self._poll = self._raw_fd = self._reader = None
        self._last_read_ns = 0
        self._opened_at = time.monotonic()
        self._setup_answered_by = self._opened_at + TRANSMIT_ANSWER_TIMEOUT
        self._answers_transmits = True
        try:
            fileno = port.fileno()
        except Exception:  # Windows handles, rfc2217: no select, fall back to timed reads
            return
        self._poll = select.poll()
        self._poll.register(fileno, select.POLLIN)
        if _reads_plain_fd(port):
            self._raw_fd = fileno
            # the whole wake-up (wait, read, parse) in one compiled call
            self._reader = slcan.SlcanReader(fileno, self.parser, READ_SIZE, BUSY_INTERVAL_NS,
                                             int(GATHER * 1e9), self._check_heard,
                                             self._answers_or_bad_input, SourceLostError,
                                             self.description)

    def reader(self):
        return self._reader.read if self._reader is not None else self.read

    def _read(self, timeout):
        if self._reader is not None:
            return self._reader.read(timeout)
        if self._opened_at is not None:
            self._check_heard()
        poll = self._poll
        if poll is None:
            return self._read_timed(timeout)
        try:
            if not poll.poll(timeout * 1000.0):
                return b""
            now_ns = time.time_ns()  # the first bytes' arrival: the timestamp of the lines
            if now_ns - self._last_read_ns < BUSY_INTERVAL_NS:
                time.sleep(GATHER)
                self._last_read_ns = time.time_ns()
            else:
                self._last_read_ns = now_ns
            if self._raw_fd is not None:
                chunk = os.read(self._raw_fd, READ_SIZE)
            else:
                chunk = self.port.read(READ_SIZE)
            if not chunk:
                # readable but empty: the device went away (pyserial says so for sockets)
                raise OSError("the adapter stopped answering (unplugged?)")
        except Exception as exc:  # SerialException, OSError, ValueError on a closed port
            raise SourceLostError(f"{self.description} failed: {exc}") from exc
        return self._parse(chunk, now_ns // 1000)

    def _read_timed(self, timeout):
        """Where the port has no file descriptor to poll: pyserial's own timed read."""
        port = self.port
        try:
            port.timeout = timeout
            first = port.read(1)
            port.timeout = 0
            if not first:
                return b""
            chunk = first + port.read(READ_SIZE)
        except Exception as exc:
            raise SourceLostError(f"{self.description} failed: {exc}") from exc
        return self._parse(chunk, time.time_ns() // 1000)

    def _parse(self, chunk, now_us):
        records = self.parser.feed(chunk, now_us)
        self._answers_or_bad_input()
        return records

    def _answers_or_bad_input(self):
        """After a parse: warn of garbage and BELs, wake a transmit waiting for its answer."""
        parser = self.parser
        if parser.garbage != self._seen_garbage or parser.bell != self._seen_bell:
            self._warn_bad_input()
        answers = parser.replies + parser.bell
        if answers != self._answers_seen:  # a transmit may be waiting for its answer
            self._answers_seen = answers
            with self._answered:
                self._answered.notify_all()

    def _check_heard(self):
        """A port that is not an SLCAN adapter (``-c /dev/ttyS0``) would run silently for
        ever: after NOT_SLCAN_AFTER seconds without one reply or frame, say so, once."""
        if self._opened_at is None:
            if self._reader is not None:
                self._reader.watching = False  # decided: the reader stops asking
            return
        p = self.parser
        if p.frames or p.remote or p.replies or p.bell or p.filtered:
            self._opened_at = None  # it speaks SLCAN
            return
        if time.monotonic() - self._opened_at < NOT_SLCAN_AFTER:
            return
        self._opened_at = None
        if self._said_not_slcan:
            return
        self._said_not_slcan = True
        log.warning(f"{self.channel}: no SLCAN reply and no frame in {NOT_SLCAN_AFTER:g} s: is "
                    "it an SLCAN adapter (CANable, USBtin, LAWICEL)? An adapter answers every "
                    "setup command; if this one does not, a quiet bus alone would explain the "
                    "silence, and all may be well")

    def _warn_bad_input(self):
        """Said at most once per interval however much garbage arrives (the shared limit)."""
        parser = self.parser
        parts = []
        if parser.garbage != self._seen_garbage:
            parts.append(f"{parser.garbage:,} unreadable lines skipped so far "
                         f"(last: {parser.last_garbage!r})")
        if parser.bell != self._seen_bell:
            parts.append(f"{parser.bell:,} error replies (BEL) from the adapter so far")
        self._seen_garbage, self._seen_bell = parser.garbage, parser.bell
        log.warning(f"{self.description}: " + "; ".join(parts),
                    extra={"rate_key": ("slcan bad input", self.channel)})

    def send(self, can_id, flags, data):
        """Write the frame's line and wait for the adapter's answer: ``z``/``Z`` (sent) or BEL
        (refused: TransmitError). A frame the bus cannot carry never reaches the adapter.

        An adapter answers every command in order and one transmit is out at a time, so the
        next answer after the line is its own. Adapters that answer nothing (some firmwares)
        are not waited for: one that answered no command since opening, or left a transmit
        unanswered for TRANSMIT_ANSWER_TIMEOUT s, is taken at its silence.
        """
        refusal = self.transmit_refusal(flags, data)
        if refusal is not None:
            raise TransmitError(f"{self.description}: {refusal}")
        port = self.port
        if port is None:
            raise TransmitError(f"{self.description} is not open")
        line = frame_line(can_id, flags, bytes(data))
        parser = self.parser
        with self._write_lock:
            self._wait_for_setup_answers(port)
            answers, refusals = parser.replies + parser.bell, parser.bell
            try:
                port.write(line)
                port.flush()
            except Exception as exc:  # SerialException, OSError, a write timeout
                raise TransmitError(f"{self.description}: {exc}") from exc
            if not answers or not self._answers_transmits:
                return
            deadline = time.monotonic() + TRANSMIT_ANSWER_TIMEOUT
            with self._answered:
                while parser.replies + parser.bell == answers:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.port is not port:
                        break
                    self._answered.wait(left)
            if parser.bell != refusals:
                raise TransmitError(f"{self.description}: the adapter refused the frame "
                                    "(it answered BEL: its channel closed, bus off or its "
                                    "transmit buffer full)")
            if parser.replies + parser.bell == answers and self.port is port:
                self._answers_transmits = False
                log.info(f"{self.description}: the adapter does not answer transmits; frames "
                         "it refuses cannot be told from frames it sent")

    def _wait_for_setup_answers(self, port):
        """A transmit right after opening: the read thread may not have read the setup
        commands' answers yet, and without them this adapter would be taken for a silent one
        (its refusal for a sent frame). Wait for them, at most until they are due."""
        parser = self.parser
        with self._answered:
            while parser.replies + parser.bell < len(self.setup):
                left = self._setup_answered_by - time.monotonic()
                if left <= 0 or self.port is not port:
                    break
                self._answered.wait(left)

    def close(self):
        port, self.port = self.port, None
        self._reader = None
        if port is None:
            return
        try:
            port.write(b"C\r")
            port.flush()
        except Exception:
            pass  # unplugged: nothing to close on the adapter
        try:
            port.close()
        except Exception:
            pass

    def counters(self):
        p = self.parser
        return SourceCounters(frames=p.frames, remote=p.remote, garbage=p.garbage,
                              filtered=p.filtered)
