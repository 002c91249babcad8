"""Text forms of decoded frames, shared by `serve -v` and `dump`.

A frame is the decoder's tuple ``(timestamp_us, can_id, flags, data)``. The formatters turn a
whole batch of frames into one string (``format(frames)``), so a caller writes once per batch
instead of once per frame: that is what lets `dump` keep up with a saturated bus on a pipe.
"""
import math
import time

from ._fast import logfile, wire
from .report import plural

FLAG_EXT, FLAG_FD, FLAG_BRS, FLAG_ESI = wire.FLAG_EXT, wire.FLAG_FD, wire.FLAG_BRS, wire.FLAG_ESI

#: printable ASCII as itself, everything else as "." (the right-hand column of hex dumps)
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def candump_line(frame, channel="can0"):
    """The can-utils log line: ``(1700000000.123456) can0 123#01FF``; FD ``123##<flags><data>``.

    python-can's CanutilsLogReader and can-utils' canplayer read it back. One line through the
    recorder's compiled encoder (CandumpFormatter does whole batches).
    """
    return CandumpFormatter(channel).format([frame])[:-1]


def parse_cansend(text):
    """can-utils cansend's frame ``ID#DATA`` (3 hex digits a standard id, 8 an extended one),
    CAN FD's ID, two '#', F and DATA (F the flags digit: BRS 1, ESI 2), ``ID#R`` (remote), data
    bytes optionally separated by dots -> ``(can_id, flags, data)``; ValueError says what is
    wrong.
    Read by the candump parser (the same text after a candump line's time and channel)."""
    frame = text.strip()
    head, mark, rest = frame.partition("#")
    if mark:
        frame = head + mark + rest.replace(".", "")
    if not frame.isascii() or any(ch.isspace() for ch in frame):
        raise ValueError(f"{text!r}: expected ID#DATA, ID#R or, for CAN FD, ID, two '#', "
                         "FLAGS and DATA (hex, no spaces)")
    parser = logfile.CandumpParser()
    records = parser.feed(b"(0.0) x " + frame.encode("ascii") + b"\n")
    if parser.error_reason is not None:
        raise ValueError(f"{text!r}: {parser.error_reason}")
    if parser.remote:
        raise ValueError(f"{text!r}: a remote frame (ID#R), which a logger cannot send (its "
                         "records and transmit carry no RTR bit)")
    if parser.error:
        raise ValueError(f"{text!r}: an error frame (CAN_ERR_FLAG in the id), which no bus "
                         "takes as a frame to send")
    try:  # the id's range: the decoder's check
        _, can_id, flags, data = wire.StreamDecoder().feed(records)[0]
    except wire.WireFormatError as exc:
        raise ValueError(f"{text!r}: {exc.reason}") from None
    return can_id, flags, data


def frame_to_message(frame, channel=None):
    """A python-can Message for the log writers."""
    import can

    micros, can_id, flags, data = frame
    return can.Message(timestamp=micros / 1e6, arbitration_id=can_id,
                       is_extended_id=bool(flags & FLAG_EXT), is_fd=bool(flags & FLAG_FD),
                       bitrate_switch=bool(flags & FLAG_BRS),
                       error_state_indicator=bool(flags & FLAG_ESI), data=data,
                       channel=channel, check=False)


def flag_names(flags):
    """``"FD BRS ESI"``: the flags a reader cares about (EXT shows in the id's width)."""
    return " ".join(name for bit, name in ((FLAG_FD, "FD"), (FLAG_BRS, "BRS"), (FLAG_ESI, "ESI"))
                    if flags & bit)


class CandumpFormatter:
    """``--format candump``: can-utils log lines, by the compiled encoder the recorder writes
    ``.log`` files with (the frames packed back into records: one encoder, one text)."""

    def __init__(self, channel="can0"):
        self.channel = channel

    @property
    def channel(self):
        return self._channel

    @channel.setter
    def channel(self, name):  # dump mqtt:// names each batch's channel
        self._channel = name
        self._encoder = logfile.CandumpEncoder(name)

    def format(self, frames):
        pack = wire.pack_frame
        records = b"".join([pack(*frame) for frame in frames])
        return self._encoder.encode(records).decode("utf-8")

    def finish(self):
        return ""


class JsonFormatter:
    """``--format json``: one object per line.

    ``timestamp`` is seconds with exactly six decimals (written as text, so no float rounding
    creeps in), ``timestamp_us`` the same instant as an integer; ``data`` is hex.
    """

    _FLAGS = tuple(
        '"extended": %s, "fd": %s, "brs": %s, "esi": %s' % tuple(
            "true" if flags & bit else "false" for bit in (FLAG_EXT, FLAG_FD, FLAG_BRS, FLAG_ESI))
        for flags in range(16))

    def __init__(self, channel="can0", signals=None):
        self.channel = channel
        self.signals = signals  # dbc.SignalDecoder: adds "message" and "signals" (or an error)

    def format(self, frames):
        if self.signals is not None:
            return self._format_decoded(frames)
        return "".join(self._lines(frames))

    def _lines(self, frames):
        flag_text = self._FLAGS
        channel = self.channel
        return [
            f'{{"timestamp": {micros // 1000000}.{micros % 1000000:06d}, "timestamp_us": {micros}, '
            f'"channel": "{channel}", "id": {can_id}, {flag_text[flags & 15]}, '
            f'"length": {len(data)}, "data": "{data.hex()}"}}\n'
            for micros, can_id, flags, data in frames]

    def _format_decoded(self, frames):
        import json

        from .dbc import json_value

        lines = self._lines(frames)
        decode = self.signals.decode
        for index, frame in enumerate(frames):
            decoded = decode(frame[1], frame[2], frame[3])
            if decoded is None:
                continue
            extra = {"message": decoded.name}
            if decoded.error:
                extra["decode_error"] = decoded.error
            else:
                extra["signals"] = {name: json_value(value)
                                    for name, value in decoded.signals.items()}
            lines[index] = lines[index][:-2] + ", " + json.dumps(extra)[1:] + "\n"
        return "".join(lines)

    def format_messages(self, messages):
        """Reassembled messages (reassembly.Message): one object per line, beside the frames'."""
        import json

        from .dbc import json_value
        from .reassembly import uds_summary

        lines = []
        for message in messages:
            micros = message.start_us
            item = {"timestamp": None, "timestamp_us": micros, "channel": self.channel,
                    message.kind: _transfer_fields(message), "frames": message.frames,
                    "duration_us": message.duration_us, "length": len(message.data),
                    "data": bytes(message.data).hex()}
            if message.kind == "isotp" and message.data:
                item["uds"] = uds_summary(message.data)
            decoded = self._decode_message(message)
            if decoded is not None:
                item["message"] = decoded.name
                if decoded.error:
                    item["decode_error"] = decoded.error
                else:
                    item["signals"] = {name: json_value(value)
                                       for name, value in decoded.signals.items()}
            if message.error:
                item["error"] = message.error
            text = json.dumps(item)
            # the time as text with six decimals, like a frame's (no float rounding)
            text = text.replace('"timestamp": null',
                                f'"timestamp": {micros // 1000000}.{micros % 1000000:06d}', 1)
            lines.append(text + "\n")
        return "".join(lines)

    def _decode_message(self, message):
        if self.signals is None or message.kind != "j1939" or message.error:
            return None
        return self.signals.decode(message.j1939_id(), FLAG_EXT, bytes(message.data))

    def finish(self):
        return ""


class InfluxFormatter:
    """``--format influx`` (with ``--dbc``): InfluxDB line protocol, one line per decoded
    message, for ``influx write``, Telegraf's ``execd`` or ``socket_listener``::

        can,logger=10.0.0.5:42420,channel=can0,message=EngineData EngineRPM=1234.5,Gear="Drive" 1700000000123456000

    Tags: ``logger`` (where the frames come from), ``channel``, ``message``; fields: the
    signals (integers as ``5i``, floats as they are, choices as quoted strings); the time in
    nanoseconds. Escaped as the line protocol's grammar says: commas, spaces and ``=`` in tags
    and field keys, ``"`` and backslashes in string values; a line break (which the protocol
    cannot carry) becomes a space. Frames no database knows, frames that do not decode, and
    values InfluxDB cannot store (NaN, infinity) are left out."""

    MEASUREMENT = "can"

    def __init__(self, channel="can0", signals=None, logger=""):
        if signals is None:
            raise ValueError("the influx format needs a database (--dbc)")
        self.signals = signals
        self.logger = logger
        self.channel = channel

    @property
    def channel(self):
        return self._channel

    @channel.setter
    def channel(self, name):  # dump mqtt:// names each batch's channel
        self._channel = name
        self._tags = self.MEASUREMENT + "".join(
            f",{key}={_influx_key(value)}"
            for key, value in (("logger", self.logger), ("channel", name)) if value)

    def format(self, frames):
        decode = self.signals.decode
        lines = []
        for micros, can_id, flags, data in frames:
            decoded = decode(can_id, flags, data)
            if decoded is None or decoded.error:
                continue
            fields = ",".join(f"{_influx_key(name)}={text}"
                              for name, text in ((name, _influx_field(value))
                                                 for name, value in decoded.signals.items())
                              if text is not None)
            if fields:
                lines.append(f"{self._tags},message={_influx_key(decoded.name)} {fields} "
                             f"{micros * 1000}\n")
        return "".join(lines)

    def finish(self):
        return ""


def _influx_key(text):
    """A tag key or value, or a field key: commas, ``=`` and spaces escaped."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
            .replace(" ", "\\ "))


def _influx_field(value):
    """A field value: ``5i``, ``1.5``, ``"text"`` (None: one InfluxDB cannot store)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    text = str(value).replace("\r", " ").replace("\n", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class XxdFormatter:
    """``--format raw``: the records' bytes as ``xxd`` shows them (``nc HOST PORT | xxd``).

    Like xxd reading a pipe, a line is printed once it has its 16 bytes; ``finish`` prints the
    last partial line. The records are rebuilt from the decoded frames, which gives the bytes
    as received (a record has exactly one encoding) for the frames that passed --filter.
    """

    def __init__(self):
        self.offset = 0
        self._pending = b""

    def format(self, frames):
        pack = wire.pack_frame
        data = self._pending + b"".join([pack(*frame) for frame in frames])
        whole = len(data) - len(data) % 16
        self._pending = data[whole:]
        return self._lines(data, whole)

    def finish(self):
        data, self._pending = self._pending, b""
        return self._lines(data, len(data))

    def _lines(self, data, end):
        out = []
        offset = self.offset
        for pos in range(0, end, 16):
            row = data[pos:pos + 16]
            groups = row.hex(" ", -2)  # pairs of bytes, counted from the left like xxd
            out.append(f"{offset + pos:08x}: {groups:<39}  {row.translate(_PRINTABLE).decode()}\n")
        self.offset = offset + end
        return "".join(out)


class PrettyFormatter:
    """``--format pretty``: local time, id, flags, length, payload in hex and ASCII.

    ``12:34:56.123456  123        8  01 FF 23 45 67 89 AB CD  |..#Eg...|``

    With a ``color_system`` (rich's name for what the terminal can show: "standard", "256",
    "truecolor") every id gets its own stable colour and every byte a shade by value; the
    escape sequences are rendered once per id and once per byte value through rich, then
    joined like plain text, so colour costs no more per frame than plain output.
    """

    ID_WIDTH = 8
    FLAGS_WIDTH = 10  # "FD BRS ESI"

    def __init__(self, color_system=None, signals=None):
        self.signals = signals  # dbc.SignalDecoder: the message and its signals after the bytes
        self._second = -1
        self._second_text = ""
        self._ids = {}
        self._flags = tuple(f"{flag_names(flags):<{self.FLAGS_WIDTH}}" for flags in range(16))
        self._style = None
        if color_system:
            from rich.color import ColorSystem

            self._style = {"standard": ColorSystem.STANDARD, "256": ColorSystem.EIGHT_BIT,
                           "truecolor": ColorSystem.TRUECOLOR,
                           "windows": ColorSystem.WINDOWS}[color_system]
            self._bytes = tuple(self._paint(f"{value:02X}", _byte_colour(value))
                                for value in range(256))
            self._flags = tuple(self._paint(text, "yellow") if text.strip() else text
                                for text in self._flags)

    def _paint(self, text, colour, bold=False, dim=False):
        from rich.style import Style

        return Style(color=colour, bold=bold, dim=dim).render(text, color_system=self._style)

    def _id_text(self, can_id, flags):
        key = can_id | (0x80000000 if flags & FLAG_EXT else 0)
        text = self._ids.get(key)
        if text is None:
            if len(self._ids) > 65536:  # a flood of distinct 29-bit ids: keep memory bounded
                self._ids.clear()
            ident = f"{can_id:08X}" if flags & FLAG_EXT else f"{can_id:03X}"
            text = f"{ident:<{self.ID_WIDTH}}"
            if self._style is not None:
                text = self._paint(text, _id_colour(key), bold=True)
            self._ids[key] = text
        return text

    def _time_text(self, micros):
        second = micros // 1000000
        if second != self._second:  # one localtime() per second, not per frame
            self._second = second
            self._second_text = time.strftime("%H:%M:%S", time.localtime(second))
            if self._style is not None:
                self._second_text = self._paint(self._second_text, None, dim=True)
        return f"{self._second_text}.{micros % 1000000:06d}"

    def format(self, frames):
        if self.signals is not None:
            return "".join([self.line(frame) + self.decoded_text(frame) + "\n"
                            for frame in frames])
        return "".join([self.line(frame) + "\n" for frame in frames])

    def format_messages(self, messages):
        """Reassembled messages: ``time  7E0>7E8  ISO-TP  20  62 F1 90 ...  3 frames 1.2 ms
        ReadDataByIdentifier positive response`` (``!why`` when broken)."""
        from .reassembly import uds_summary

        lines = []
        for message in messages:
            data = bytes(message.data)
            shown = data[:PRETTY_MESSAGE_BYTES].hex(" ").upper()
            if len(data) > PRETTY_MESSAGE_BYTES:
                shown += f" ... (+{len(data) - PRETTY_MESSAGE_BYTES})"
            kind = "ISO-TP" if message.kind == "isotp" else "J1939 TP"
            about = f"{plural(message.frames, 'frame')} {message.duration_us / 1000:.3f} ms"
            if message.kind == "isotp":
                about += "  " + uds_summary(data)
            elif self.signals is not None and not message.error:
                decoded = self.signals.decode(message.j1939_id(), FLAG_EXT, data)
                if decoded is not None:
                    about += "  " + decoded.text()
            if message.error:
                about += f"  !{message.error}"
            label = f"{message.label():<7}"  # 7E0>7E8 and 7DF in one column
            if self._style is not None:
                label = self._paint(label, "magenta", bold=True)
                about = self._paint(about, "red" if message.error else "cyan")
            lines.append(f"{self._time_text(message.start_us)}  {label}  {kind:<10}  "
                         f"{len(data):2d}  {shown}  {about}\n")
        return "".join(lines)

    def decoded_text(self, frame):
        """``  Name sig=value unit ...`` (``  Name !reason`` when it does not decode)."""
        decoded = self.signals.decode(frame[1], frame[2], frame[3])
        if decoded is None:
            return ""
        text = decoded.text()
        if self._style is not None:
            text = self._paint(text, "red" if decoded.error else "cyan")
        return "  " + text

    def line(self, frame):
        micros, can_id, flags, data = frame
        n = len(data)
        ascii_text = data.translate(_PRINTABLE).decode()
        if self._style is None:
            hex_text = data.hex(" ").upper()
        else:
            shades = self._bytes
            hex_text = " ".join([shades[b] for b in data])
            ascii_text = self._paint(ascii_text, None, dim=True) if n else ""
        pad = " " * (3 * (8 - n)) if n < 8 else ""
        if n == 0:
            pad = pad[:-1]
        return (f"{self._time_text(micros)}  {self._id_text(can_id, flags)}  "
                f"{self._flags[flags & 15]}  {n:2d}  {hex_text}{pad}  |{ascii_text}|")

    def finish(self):
        return ""


#: the bytes of a reassembled message a pretty line shows (json has them all)
PRETTY_MESSAGE_BYTES = 32


def _transfer_fields(message):
    if message.kind == "j1939":
        return {"pgn": message.pgn, "source": message.source,
                "destination": message.destination}
    return {"id": message.can_id, "extended": bool(message.flags & FLAG_EXT),
            "partner_id": message.partner_id}


class Reassembled:
    """A pretty or json formatter that shows each ISO-TP / J1939 transfer as one message line
    (reassembly.Reassembler) instead of its frames; every other frame as before."""

    def __init__(self, formatter, reassembler):
        self.formatter = formatter
        self.reassembler = reassembler

    @property
    def channel(self):
        return getattr(self.formatter, "channel", None)

    @channel.setter
    def channel(self, name):  # dump mqtt:// names each batch's channel
        self.formatter.channel = name

    def format(self, frames):
        return self._text(self.reassembler.feed(frames))

    def _text(self, items):
        from .reassembly import Message

        parts = []
        run = []
        for item in items:
            if isinstance(item, Message):
                if run:
                    parts.append(self.formatter.format(run))
                    run = []
                parts.append(self.formatter.format_messages([item]))
            else:
                run.append(item)
        if run:
            parts.append(self.formatter.format(run))
        return "".join(parts)

    def finish(self):
        return self._text(self.reassembler.finish()) + self.formatter.finish()


class StatsTable:
    """``--stats``: frames/s per id and in total, a live table in the spirit of
    ``python -m can.viewer`` (redrawn every ``interval`` seconds by whoever owns the loop).

    On a terminal the table updates in place; piped, only the final table is printed.
    """

    def __init__(self, console=None, interval=0.5, signals=None):
        self.console = console
        self.signals = signals  # dbc.SignalDecoder: the last frame's signals beneath each id
        self.interval = interval
        self.total = 0
        self._rows = {}  # id key -> [count, count at the last redraw, frames/s, last frame]
        self._total_before = 0
        self._total_rate = 0.0
        self._started = None
        self._last = None
        self._live = None

    def start(self):
        from rich.console import Console
        from rich.live import Live

        if self.console is None:
            self.console = Console(highlight=False)
        self._started = self._last = time.monotonic()
        self._live = Live(self.render(), console=self.console, auto_refresh=False,
                          vertical_overflow="visible" if not self.console.is_terminal
                          else "ellipsis")
        self._live.start()

    def add(self, frames, channel=None):
        """Count a batch (one row per id: channels are not told apart here)."""
        rows = self._rows
        for frame in frames:
            key = frame[1] | (0x80000000 if frame[2] & FLAG_EXT else 0)
            row = rows.get(key)
            if row is None:
                rows[key] = [1, 0, 0.0, frame]
            else:
                row[0] += 1
                row[3] = frame
        self.total += len(frames)

    def refresh_if_due(self, now=None):
        now = time.monotonic() if now is None else now
        if self._live is None or now - self._last < self.interval:
            return
        self._update_rates(now)
        self._live.update(self.render(), refresh=True)

    def _update_rates(self, now):
        elapsed = max(now - self._last, 1e-9)
        for row in self._rows.values():
            row[2] = (row[0] - row[1]) / elapsed
            row[1] = row[0]
        self._total_rate = (self.total - self._total_before) / elapsed
        self._total_before = self.total
        self._last = now

    def stop(self):
        if self._live is None:
            return
        self._update_rates(time.monotonic())
        self._live.update(self.render(), refresh=True)
        self._live.stop()
        self._live = None

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = time.monotonic() - self._started if self._started else 0.0
        average = self.total / elapsed if elapsed > 0 else 0.0
        summary = Text(f"{plural(self.total, 'frame')}, {self._total_rate:,.0f} frames/s now, "
                       f"{average:,.0f} frames/s on average over {elapsed:,.1f} s")
        table = Table()
        columns = ("ID", "Flags", "Len", "Count", "Frames/s", "Avg/s", "Last data")
        for column in columns:
            table.add_column(column, justify="right" if column in (
                "Len", "Count", "Frames/s", "Avg/s") else "left",
                no_wrap=column != "Last data", overflow="fold")
        for key in sorted(self._rows):
            count, _, rate, (micros, can_id, flags, data) = self._rows[key]
            ident = f"{can_id:08X}" if flags & FLAG_EXT else f"{can_id:03X}"
            table.add_row(ident, flag_names(flags), str(len(data)), f"{count:,}",
                          f"{rate:,.1f}", f"{count / elapsed if elapsed > 0 else 0.0:,.1f}",
                          data.hex(" ").upper())
            if self.signals is not None:  # the last frame decoded, beneath its bytes
                for line in self._decoded_lines(can_id, flags, data):
                    table.add_row("", "", "", "", "", "", line)
        return Group(summary, table)

    def _decoded_lines(self, can_id, flags, data):
        from rich.text import Text

        from .dbc import signal_texts

        decoded = self.signals.decode(can_id, flags, data)
        if decoded is None:
            return []
        if decoded.error:
            return [Text(f"{decoded.name} !{decoded.error}", style="red")]
        return [Text(decoded.name, style="bold")] + [f"  {text}"
                                                     for text in signal_texts(decoded)]


#: sixteen colours in hue order, readable on a dark background, exact on a 256-colour terminal
_ID_HUES = ((215, 95, 95), (255, 175, 175), (255, 95, 0), (255, 215, 0), (255, 255, 95),
            (95, 135, 0), (135, 255, 0), (135, 175, 95), (175, 255, 175), (0, 175, 0),
            (0, 255, 95), (0, 255, 215), (95, 255, 255), (0, 135, 255), (135, 135, 215),
            (255, 95, 255))  # chosen from the 6x6x6 cube: any two are >= 100 apart in RGB


def _id_colour(key):
    """A stable colour per id, far from the colours of nearby ids: ids 1 to 15 apart (7E0 and
    its reply 7E8, neighbours 7DF and 7E0) always get different palette entries, which are
    5 x 16 steps apart on the hue circle for neighbours and opposite for ids 8 apart."""
    from rich.color import Color

    return Color.from_rgb(*_ID_HUES[(key % 16) * 5 % 16])


def _byte_colour(value):
    """0x00 grey; then blue (low) through green to red (high): a changing byte stands out."""
    import colorsys

    from rich.color import Color

    if value == 0:
        return Color.from_rgb(120, 120, 120)
    hue = (1.0 - value / 255.0) * (2.0 / 3.0)
    r, g, b = colorsys.hls_to_rgb(hue, 0.6, 0.75)
    return Color.from_rgb(r * 255, g * 255, b * 255)


def make_formatter(name, channel="can0", color_system=None, signals=None, logger=""):
    """The formatter for ``--format NAME``; ``color_system`` only matters for pretty,
    ``signals`` (a dbc.SignalDecoder) for pretty, json and influx (which needs them),
    ``logger`` (where the frames come from) for influx."""
    if name == "influx":
        return InfluxFormatter(channel, signals, logger)
    if name == "pretty":
        return PrettyFormatter(color_system, signals)
    if name == "candump":
        return CandumpFormatter(channel)
    if name == "json":
        return JsonFormatter(channel, signals)
    if name == "raw":
        return XxdFormatter()
    raise ValueError(f"unknown format {name!r}")
