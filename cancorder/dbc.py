"""Signal decoding with CAN databases (``dump --dbc FILE``): .dbc, .arxml, .kcd, .sym through
cantools.

One ``SignalDecoder`` serves every output (pretty, json, --stats, the monitor). It finds the
message for a frame once per id and caches the answer, so a frame of an unknown id costs one
dict lookup. J1939 messages (``VFrameFormat`` J1939PG, or a DBC whose ``ProtocolType`` is
J1939) match on the
parameter group number, so the same PGN from any source address, at any priority, decodes.
A frame that does not fit its message (wrong length, bad multiplexer value) decodes to a
``Decoded`` whose ``error`` says why: the frame is still shown raw, never an exception.
"""
import os

from ._fast import wire
from .errors import UsageError

EXTENSIONS = (".dbc", ".arxml", ".kcd", ".sym")


class Decoded:
    """What a database says about one frame: ``name`` of the message, ``signals`` (name ->
    value; a choice as its name), ``units`` (name -> unit, '' when none), or ``error``."""

    __slots__ = ("name", "signals", "units", "error")

    def __init__(self, name, signals=None, units=None, error=None):
        self.name = name
        self.signals = signals or {}
        self.units = units or {}
        self.error = error

    def text(self):
        """``Name sig=value unit sig=value`` (or ``Name !reason``): the pretty and table form."""
        if self.error:
            return f"{self.name} !{self.error}"
        return " ".join([self.name] + signal_texts(self))


def signal_texts(decoded):
    """``["EngineRPM=1234.5 rpm", "Gear=Drive"]``"""
    units = decoded.units
    return [f"{name}={format_value(value)}{' ' + units[name] if units.get(name) else ''}"
            for name, value in decoded.signals.items()]


def format_value(value):
    """Numbers as people read them (10 significant digits, no float noise); choices by name."""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def json_value(value):
    """A JSON-safe value: numbers stay numbers, choices become their names."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return str(value)


def pgn_of(can_id):
    """The J1939 parameter group number of a 29-bit id (PDU1 formats drop the destination)."""
    pgn = (can_id >> 8) & 0x3FFFF
    if (pgn >> 8) & 0xFF < 240:
        pgn &= 0x3FF00
    return pgn


def load_databases(paths):
    """A SignalDecoder over every ``--dbc FILE``; a file that cannot be read or parsed raises
    UsageError naming the file and cantools' reason (with its line number when it gives one)."""
    databases = []
    for path in paths:
        databases.append((path, _load(path)))
    return SignalDecoder(databases)


def _load(path):
    import cantools

    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "no such file"
        raise UsageError(f"--dbc {path}: {reason}")
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise UsageError(f"--dbc {path}: unknown database format '{extension or path}' "
                         f"(cantools reads {', '.join(EXTENSIONS)})")
    try:
        database = cantools.database.load_file(path)
    except cantools.database.UnsupportedDatabaseFormatError as exc:
        raise UsageError(f"--dbc {path}: cannot parse it: {_one_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"--dbc {path}: not a text database ({exc.reason} at byte "
                         f"{exc.start})") from None
    except OSError as exc:
        raise UsageError(f"--dbc {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # cantools raises plain ValueError/KeyError on some bad files
        raise UsageError(f"--dbc {path}: cannot load it: {_one_line(exc)}") from None
    if not hasattr(database, "messages"):
        raise UsageError(f"--dbc {path}: a diagnostics database, not a CAN database")
    return database


def _protocol_type(database):
    """A DBC's ``BA_ "ProtocolType" "J1939";`` (cantools reads J1939 per message only from
    ``VFrameFormat``, but many J1939 databases say it once for the whole file)."""
    try:
        attribute = database.dbc.attributes.get("ProtocolType")
    except AttributeError:  # not a DBC, or no attributes
        return None
    value = getattr(attribute, "value", None)
    return str(value).lower() if value else None


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


class SignalDecoder:
    """Frames -> Decoded, over one or more databases (the first that knows an id wins)."""

    def __init__(self, databases):
        self.paths = [path for path, _ in databases]
        self._by_id = {}  # (extended, frame id) -> message
        self._by_pgn = {}  # J1939 PGN -> message
        for _, database in databases:
            whole_j1939 = _protocol_type(database) == "j1939"
            for message in database.messages:
                j1939 = whole_j1939 or getattr(message, "protocol", None) == "j1939"
                if message.is_extended_frame and j1939:
                    self._by_pgn.setdefault(pgn_of(message.frame_id), message)
                else:
                    self._by_id.setdefault((message.is_extended_frame, message.frame_id),
                                           message)
        self._cache = {}  # id key -> message or None
        self._units = {}  # message name -> {signal name: unit}

    @property
    def message_count(self):
        return len(self._by_id) + len(self._by_pgn)

    def message_for(self, can_id, flags):
        """The cantools Message for this id, or None."""
        key = can_id | (0x80000000 if flags & wire.FLAG_EXT else 0)
        try:
            return self._cache[key]
        except KeyError:
            pass
        extended = bool(flags & wire.FLAG_EXT)
        message = self._by_id.get((extended, can_id))
        if message is None and extended:
            message = self._by_pgn.get(pgn_of(can_id))
        if len(self._cache) > 65536:  # a flood of distinct 29-bit ids: keep memory bounded
            self._cache.clear()
        self._cache[key] = message
        return message

    def signal_names(self):
        """{message name: set of its signal names}, over every database (``--where``)."""
        return {name: set(units) for name, units in self.signal_units().items()}

    def signal_units(self):
        """{message name: {signal name: unit ('' when none)}}, over every database."""
        return {message.name: {signal.name: signal.unit or "" for signal in message.signals}
                for message in list(self._by_id.values()) + list(self._by_pgn.values())}

    def name_for(self, can_id, flags):
        message = self.message_for(can_id, flags)
        return message.name if message is not None else None

    def decode(self, can_id, flags, data):
        """Decoded, or None when no database knows the id."""
        message = self.message_for(can_id, flags)
        if message is None:
            return None
        try:
            values = message.decode(data, decode_choices=True, scaling=True)
        except Exception as exc:  # cantools: DecodeError, and ValueError/KeyError on odd muxes
            return Decoded(message.name, error=_decode_error(message, data, exc))
        units = self._units.get(message.name)
        if units is None:
            units = self._units[message.name] = {signal.name: signal.unit or ""
                                                 for signal in message.signals}
        return Decoded(message.name, values, units)


def _decode_error(message, data, exc):
    if len(data) != message.length and "size" in str(exc).lower():
        return f"{len(data)} bytes, the database says {message.length}"
    return _one_line(exc)
