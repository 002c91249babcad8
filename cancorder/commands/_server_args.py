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
    net.add_argument("--max-clients-per-host", type=positive_int, default=32, metavar="N",
                     help="refuse clients beyond this many from one address, so that one host "
                          "cannot take every slot (default: 32)")
    net.add_argument("--client-buffer", type=byte_size, default=4 << 20, metavar="SIZE",
                     help="drop a client that falls this far behind: the most a client's "
                          "backlog may hold (bytes, or 512K, 4M; default: 4M)")
    net.add_argument("--client-buffer-total", type=byte_size, default=64 << 20, metavar="SIZE",
                     help="the most all clients' backlogs together may hold; beyond it the "
                          "client furthest behind is dropped (default: 64M)")
    net.add_argument("--allow", metavar="CIDR", action="append", default=[],
                     help="accept clients (ECUconnect and socketcand) only from this network, "
                          "e.g. 192.168.1.0/24 (repeatable; default: everyone)")
    scd = parser.add_argument_group("socketcand (SavvyCAN, Kayak, python-can's socketcand)")
    scd.add_argument("--socketcand", metavar="[ADDR:]PORT", nargs="?", type=socketcand_address,
                     const=("", 29536), default=None,
                     help="also serve socketcand's raw mode on this port (default port 29536); "
                          "clients open the bus by its channel name")
    scd.add_argument("--no-beacon", action="store_true",
                     help="do not broadcast the socketcand discovery beacon (UDP 42000)")
    scd.add_argument("--allow-transmit", action="store_true",
                     help="let socketcand clients put frames on the bus (< send >): only "
                          "peers inside --allow, or this machine when --allow is not given; "
                          "--listen-only always wins")
    net.add_argument("--metrics", type=listen_address, default=None, metavar="[ADDR:]PORT",
                     help="serve Prometheus metrics on http://ADDR:PORT/metrics and a health "
                          "check on /healthz (default ADDR: every address)")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--stats", action="store_true",
                        help="a status line (frames/s, clients, drops) every 2 seconds")
    add_record_arguments(parser, "--record", repeatable=True)
    add_mqtt_arguments(parser)


def bus_options(args, process):
    """How the one bus of a command line is served."""
    from ..server import BusOptions
    from ..socketcand import parse_networks

    check(args.socketcand is not None or not (args.no_beacon or args.allow_transmit),
          "--no-beacon and --allow-transmit are socketcand options: add --socketcand [PORT]")
    check(args.client_buffer_total >= args.client_buffer,
          f"--client-buffer-total ({args.client_buffer_total:,} bytes) is less than "
          f"--client-buffer ({args.client_buffer:,} bytes): all clients together cannot hold "
          "less than one; raise --client-buffer-total or lower --client-buffer")
    return BusOptions(bind=args.bind, port=args.port, max_clients=args.max_clients,
                      max_clients_per_host=args.max_clients_per_host,
                      client_buffer=args.client_buffer,
                      client_buffer_total=args.client_buffer_total, zeroconf=not args.no_zeroconf,
                      service_name=args.service_name, process=process,
                      allow=parse_networks(args.allow),
                      socketcand=args.socketcand,
                      beacon=not args.no_beacon, allow_transmit=args.allow_transmit,
                      listen_only=getattr(args, "listen_only", False),
                      mqtt=mqtt_options(args),
                      record=record_options(args))


def server_options(args, print_frames=None):
    from ..server import ServerOptions

    return ServerOptions(print_frames=args.verbose if print_frames is None else print_frames,
                         stats=args.stats, metrics=args.metrics)


def record_filter(args):
    """The compiled --filter of a serving command (None: every frame passes)."""
    from ..filters import record_filter as build

    return build(args.filters)


def serve(source, args, process, print_frames=None):
    """Serve one source as the command line says; returns the exit code."""
    from ..server import Bus, Server

    return Server([Bus(source, bus_options(args, process))],
                  server_options(args, print_frames)).run()


def serve_buses(buses, config):
    """Serve the buses of a config file (config.ProcessConfig); returns the exit code."""
    from ..server import Server, ServerOptions

    return Server(buses, ServerOptions(print_frames=config.verbose, stats=config.stats,
                                       metrics=config.metrics)).run()


def make_reporter(args):
    from ..report import Reporter

    return Reporter()


# ---- value parsers (argparse turns their ArgumentTypeError into a usage line, exit 2) ----

def port_number(text):
    value = _int(text, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 1..65535")
    return value


def listen_address(text, free_port_allowed=False):
    """``[ADDR:]PORT`` -> (host, port); host "" means every address (``[::1]:9100`` for IPv6).

    With ``free_port_allowed`` a port of 0 means "any free one" (the server logs which).
    """
    match = re.fullmatch(r"\s*(?:\[([0-9A-Fa-f:.]+)\]:|([^\s:\[\]]*):)?(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text}: expected [ADDR:]PORT, e.g. 9100 or "
                                         "127.0.0.1:9100")
    host = match.group(1) or match.group(2) or ""
    if free_port_allowed and int(match.group(3)) == 0:
        return host, 0
    return host, port_number(match.group(3))


def socketcand_address(text):
    """--socketcand: ``[ADDR:]PORT``, 0 for any free port (tests)."""
    return listen_address(text, free_port_allowed=True)


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


def spool_size(text):
    """--mqtt-spool-size: a size of at least 1M (a batch is up to 64K)."""
    return byte_size(text, 1 << 20, " (a batch is up to 64K)")


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


# ---- playing log files (replay, and dump FILE: one declaration, one source) ----

#: dump FILE's --channel help: with a logger the flag keeps its meaning of naming the channel
CHANNEL_HELP = ("only this channel of a multi-channel file: its number in an .asc/.blf (1, "
                "2...), its name in a .log (can1)")


def add_playback_arguments(group, channel_group=None, speed_default=1.0,
                           speed_help="as fast as the clients take it (default: 1)",
                           channel_default=None, channel_help=CHANNEL_HELP,
                           channel_metavar="N"):
    """``--speed --start --end`` (in ``group``) and ``--channel`` (in ``channel_group``, or
    ``group``) of ``cancorder replay`` and ``dump FILE``: both play through sources/replay.py
    (``--filter`` is filters.add_filter_argument in both). The caller says what its default
    speed is and, for dump, what --channel also means (and its old metavar)."""
    group.add_argument("--speed", type=replay_speed, default=speed_default, metavar="X|max",
                       help=f"play X times faster (0.5 slower); max: {speed_help}")
    group.add_argument("--start", type=offset, default=None, metavar="S",
                       help="begin S seconds after the first frame")
    group.add_argument("--end", type=offset, default=None, metavar="S",
                       help="stop S seconds after the first frame")
    (channel_group or group).add_argument("--channel", default=channel_default,
                                          metavar=channel_metavar, help=channel_help)


def check_playback(args):
    """The checks of the playback flags that argparse cannot make alone."""
    check(args.start is None or args.end is None or args.start < args.end,
          f"--start {args.start:g} is not before --end {args.end:g}" if args.end is not None
          and args.start is not None else "")


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


# ---- recording (--record of the serving commands, -o of dump: one implementation) ----

def add_record_arguments(parser, *flags, repeatable=False, help=None):
    """The recording flag (``--record PATH`` or dump's ``-o FILE``) and the rotation and
    retention flags that go with it."""
    group = parser.add_argument_group("recording")
    group.add_argument(*flags, dest="record", metavar="PATH",
                       action="append" if repeatable else "store",
                       default=[] if repeatable else None,
                       help=help or "record every frame to PATH, format by extension (.log "
                                    ".log.gz .asc .asc.gz .blf .csv .trc .txt .db, .mf4 with "
                                    "asammdf); strftime fields and {channel} {interface} "
                                    "{port} {n} make the names, e.g. "
                                    "logs/%%Y%%m%%d/%%H%%M%%S-{channel}.log.gz")
    group.add_argument("--rotate-size", type=byte_size, default=None, metavar="SIZE",
                       help="start a new file once one reaches SIZE (e.g. 100M)")
    group.add_argument("--rotate-time", type=duration, default=None, metavar="TIME",
                       help="start a new file on every wall-clock multiple of TIME (e.g. 1h: "
                            "files start at :00; 30s 15m 1h 1d)")
    group.add_argument("--keep-files", type=positive_int, default=None, metavar="N",
                       help="delete the oldest closed recordings beyond N files")
    group.add_argument("--keep-size", type=byte_size, default=None, metavar="SIZE",
                       help="delete the oldest closed recordings while all of them take more "
                            "than SIZE (e.g. 20G)")
    parser.set_defaults(record_flag=flags[0])


def record_options(args):
    """The RecordOptions of every recording path given (validated, folders created), or []."""
    from ..logfiles.rotation import RecordOptions, check_record_options

    paths = args.record if isinstance(args.record, list) else (
        [args.record] if args.record else [])
    flag = args.record_flag
    if not paths:
        given = [name for name, value in (
            ("--rotate-size", args.rotate_size), ("--rotate-time", args.rotate_time),
            ("--keep-files", args.keep_files), ("--keep-size", args.keep_size)) if value]
        check(not given, f"{', '.join(given)} applies to a recording: add {flag} PATH")
        return []
    result = []
    for path in paths:
        options = RecordOptions(path, rotate_size=args.rotate_size,
                                rotate_time=args.rotate_time, keep_files=args.keep_files,
                                keep_size=args.keep_size, flag=flag)
        check_record_options(options)
        result.append(options)
    return result


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


# ---- MQTT (issue 14) ----

def add_mqtt_login_arguments(group):
    """How to reach the broker: TLS files and where the password comes from."""
    group.add_argument("--mqtt-ca", metavar="FILE", default=None,
                       help="CA certificate(s) (PEM) that signed the broker's certificate "
                            "(mqtts://; default: the system's)")
    group.add_argument("--mqtt-cert", metavar="FILE", default=None,
                       help="client certificate (PEM) for brokers that ask for one")
    group.add_argument("--mqtt-key", metavar="FILE", default=None,
                       help="the client certificate's private key (PEM)")
    group.add_argument("--mqtt-password-file", metavar="FILE", default=None,
                       help="read the password from FILE instead of the URL (or set "
                            "$CANCORDER_MQTT_PASSWORD)")


def add_mqtt_arguments(parser):
    """``--mqtt URL`` and its spool, for every serving command."""
    group = parser.add_argument_group("MQTT publishing")
    group.add_argument("--mqtt", metavar="URL", default=None,
                       help="also publish the frames to an MQTT broker: "
                            "mqtt[s]://[USER[:PASS]@]HOST[:PORT][/TOPIC]; TOPIC may use "
                            "{system} {channel} {interface} (default: "
                            "cancorder/{system}/{channel})")
    group.add_argument("--mqtt-spool", metavar="DIR", default=None,
                       help="keep the batches the broker has not acknowledged in DIR: they "
                            "survive a lost broker and a restart of cancorder")
    group.add_argument("--mqtt-spool-size", type=spool_size, default=1 << 30, metavar="SIZE",
                       help="at most this much in the spool; beyond it the oldest batches are "
                            "dropped and counted (default: 1G)")
    add_mqtt_login_arguments(group)


def mqtt_settings(args, url, subscribe=False):
    from ..mqtt.connection import parse_url

    return parse_url(url, ca=args.mqtt_ca, cert=args.mqtt_cert, key=args.mqtt_key,
                     password_file=args.mqtt_password_file, subscribe=subscribe)


def mqtt_options(args):
    """What ``--mqtt`` asks for (None without it); every flag is checked now."""
    if not args.mqtt:
        check(not args.mqtt_spool, "--mqtt-spool needs --mqtt URL")
        return None
    from ..mqtt.publisher import MqttOptions

    try:
        settings = mqtt_settings(args, args.mqtt)
    except UsageError as exc:
        if str(exc).startswith(("--", "TLS ")):  # these name their flag already
            raise
        # a message about the URL names its flag (its config key, in a config file)
        raise UsageError(f"--mqtt {exc}") from None
    return MqttOptions(settings, spool_dir=args.mqtt_spool, spool_size=args.mqtt_spool_size)
