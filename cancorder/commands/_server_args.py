"""Arguments every serving subcommand (serve, touCAN, mock-uds) shares, and their parsing."""
import argparse
import re

from ..errors import UsageError
from ..filters import add_filter_argument


def add_server_arguments(parser, verbose_help="log one line per frame (never slows the proxy: "
                                              "lines are skipped when the terminal lags)"):
    add_filter_argument(parser.add_argument_group("frames"))
    net = parser.add_argument_group("network")
    net.add_argument("-p", "--port", type=port_number, default=None,
                     help="TCP port (default: the first free port from 42420)")
    net.add_argument("--bind", metavar="ADDR", default=None,
                     help="listen on this address only (default: every IPv4 and IPv6 address)")
    net.add_argument("--service-name", default=None,
                     help="Zeroconf instance name (default: 'ECUconnect-Logger <host>:<port>')")
    net.add_argument("--no-zeroconf", action="store_true",
                     help="do not advertise the service over Zeroconf/mDNS")
    net.add_argument("--max-clients", type=positive_int, default=64,
                     help="refuse clients beyond this many (default: 64)")
    net.add_argument("--client-buffer", type=byte_size, default=4 << 20, metavar="SIZE",
                     help="drop a client that falls this far behind (bytes, or 512K, 4M; "
                          "default: 4M)")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--stats", action="store_true",
                        help="a status line (frames/s, clients, drops) every 2 seconds")


def bus_options(args, process):
    """How the one bus of a command line is served."""
    from ..server import BusOptions

    return BusOptions(bind=args.bind, port=args.port, max_clients=args.max_clients,
                      client_buffer=args.client_buffer, zeroconf=not args.no_zeroconf,
                      service_name=args.service_name, process=process)


def server_options(args, print_frames=None):
    from ..server import ServerOptions

    return ServerOptions(print_frames=args.verbose if print_frames is None else print_frames,
                         stats=args.stats)


def record_filter(args):
    """The compiled --filter of a serving command (None: every frame passes)."""
    from ..filters import record_filter as build

    return build(args.filters)


def serve(source, args, process, print_frames=None):
    """Serve one source as the command line says; returns the exit code."""
    from ..server import Bus, Server

    return Server([Bus(source, bus_options(args, process))],
                  server_options(args, print_frames)).run()


def make_reporter(args):
    from ..report import Reporter

    return Reporter()


# ---- value parsers (argparse turns their ArgumentTypeError into a usage line, exit 2) ----

def port_number(text):
    value = _int(text, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 1..65535")
    return value


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
    value = _int(text, "a bit rate in bit/s such as 500000")
    if not 1000 <= value <= 20_000_000:
        raise argparse.ArgumentTypeError(f"{text}: a CAN bit rate is in bit/s, e.g. 500000")
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


#: a duration in seconds, more than 0 (``--duration``, ``--timeout``, ``--browse-time``)
seconds = ranged(float, "a number of seconds", 1e-9, float("inf"), "must be more than 0 seconds")


def byte_size(text):
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text}: expected a size such as 4194304, 512K or 4M")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    value = int(match.group(1)) * scale
    if value < 1024:
        raise argparse.ArgumentTypeError(f"{text}: at least 1K")
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


def check(condition, message):
    if not condition:
        raise UsageError(message)
