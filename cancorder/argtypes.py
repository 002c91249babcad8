"""The value types of the command-line flags (and so of a config file's keys): argparse turns
their ArgumentTypeError into one usage line (exit 2), a config file into one line naming the key."""
import argparse
import collections
import dataclasses
import re


def port_number(text):
    value = _int(text, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 1..65535")
    return value


class Address(collections.namedtuple("Address", "host port")):
    """(host, port) of a listening address; shown as it is written: ``[ADDR:]PORT``."""

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if host else str(self.port)


def listen_address(text, free_port_allowed=False):
    """``[ADDR:]PORT`` -> Address(host, port); host "" means every address (``[::1]:9100``
    for IPv6).

    With ``free_port_allowed`` a port of 0 means "any free one" (the server logs which).
    """
    match = re.fullmatch(r"\s*(?:\[([0-9A-Fa-f:.]+)\]:|([^\s:\[\]]*):)?(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text}: expected [ADDR:]PORT, e.g. 9100 or "
                                         "127.0.0.1:9100")
    host = match.group(1) or match.group(2) or ""
    if free_port_allowed and int(match.group(3)) == 0:
        return Address(host, 0)
    return Address(host, port_number(match.group(3)))


#: a --web-token: characters that go into a URL and a cookie as they are
WEB_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,256}")


def web_token(text):
    if not WEB_TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError("a token of letters, digits, '.', '_', '~' or '-' "
                                         "(e.g. from: openssl rand -hex 16)")
    return text


#: a bus's name (--name, a config's ``name``): the metrics label, the log field, a socketcand name
BUS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def bus_name(text):
    if not BUS_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text}: letters, digits, '.', '_', ':' or '-', at "
                                         "most 64, e.g. can0 or powertrain")
    return text


def positive_int(text):
    value = _int(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def non_negative_int(text):
    value = _int(text, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def bitrate(text):
    """Bit/s: ``500000``, ``500k``, ``1M``, ``83.3k`` (SLCAN's 83.3 kbit/s; ``83333`` too)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(?:bit/s|bps)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text}: expected a bit rate in bit/s such as 500000, "
                                         "500k or 1M")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    value = round(float(match.group(1)) * scale)
    if not 1000 <= value <= 20_000_000:
        raise argparse.ArgumentTypeError(f"{text}: a CAN bit rate is 1k..20M bit/s, e.g. 500k")
    return value


def ranged(convert, what, low, high, complaint):
    """An argparse type: ``convert(text)`` (int, float, ...) that must lie in low..high.

    A text convert rejects says ``expected <what>``; a value outside the range (NaN too) says
    ``complaint``; both after the text, e.g. ``2: a probability is 0..1``.
    """
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: expected {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: {complaint}")
        return value

    return parse


#: a CAN id in hex, with or without 0x (mock-uds --tester-id, gen --id)
can_id = ranged(lambda text: int(text, 16), "a CAN id in hex, e.g. 7E0", 0, 0x1FFFFFFF,
                "a CAN id is at most 1FFFFFFF")

#: a duration in seconds, more than 0 (``--duration``, ``--timeout``, ``--browse-time``)
seconds = ranged(float, "a number of seconds", 1e-9, float("inf"), "must be more than 0 seconds")


def byte_size(text, minimum=1 << 10, why=""):
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text}: expected a size such as 4194304, 512K or 4M")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    value = int(match.group(1)) * scale
    if value < minimum:
        shown = f"{minimum >> 20}M" if minimum >= 1 << 20 else f"{minimum >> 10}K"
        raise argparse.ArgumentTypeError(f"{text}: at least {shown}{why}")
    return value


def backend_option(text):
    """``key=value`` for the backend. The value stays text: the source that owns the key
    converts it (python-can's own ``cast_from_string`` for python-can's keyword arguments)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
        raise argparse.ArgumentTypeError(f"{text}: expected key=value, e.g. --opt poll_interval=0.01")
    return key.strip(), value.strip()


def _int(text, what):
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: expected {what}") from None


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def duration(text):
    """``30s``, ``15m``, ``1h``, ``1d`` or seconds: a rotation period (at least 1 s)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text}: expected a time such as 30s, 15m, 1h or 1d")
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2) or ""]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1 s")
    return value


# ---- paths: the value stays as written; the type says what the process does with it (the
# service installer checks that the unit lets the service do it: service/__init__.py) ----

def read_path(text):
    """A file the process reads (a log file to replay, a TLS certificate, a library)."""
    return text


def write_folder(text):
    """A folder the process writes in (the MQTT spool)."""
    return text


def write_pattern(text):
    """A file name pattern the process writes, in the folder its fixed part names (--record)."""
    return text


PATH_TYPES = (read_path, write_folder, write_pattern)


@dataclasses.dataclass(frozen=True)
class Claim:
    """Something a bus's flags take for the bus alone (its port, its adapter, its spool folder):
    two buses of one config file that claim the same ``resource`` are refused with
    "<what> is also <the other bus>'s: <advice>"."""

    resource: object  # hashable: equal resources clash
    what: str  # the key and its value as a config file spells them, e.g. 'port 42500'
    # (None: the advice says it all)
    advice: str
    owner: str = None  # who holds it when no bus does (e.g. "the metrics port")


def replay_speed(text):
    """--speed: a factor, or ``max`` (None: as fast as possible)."""
    if text.strip().lower() == "max":
        return None
    return ranged(float, "a factor such as 2 or 0.5, or max", 0.001, 10000,
                  "the speed factor is 0.001..10000 (or max)")(text)


def offset(text):
    """--start/--end: seconds from the first frame, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: expected a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more seconds")
    return value


def cansend_frame(text):
    """A frame in can-utils cansend's syntax (``123#11.22``, ``1ABCDEF0##1...``) ->
    ``(can_id, flags, data)``."""
    from .formats import parse_cansend

    try:
        return parse_cansend(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
