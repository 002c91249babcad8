"""Arguments every serving subcommand (serve, touCAN, mock-uds, replay, relay) shares, and
their parsing: the network flags here, each consumer's own (sinks.registry), the process flags."""
import dataclasses

from .. import argtypes
from ..argtypes import Claim
from ..errors import UsageError
from ..filters import add_filter_argument
from ..sinks import registry as sink_registry


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """A value of a config file's ``source`` key: which command's flags a [[bus]] table holds.

    A serving command lists its kinds in ``SOURCES``; cli.build_parser gathers them (with the
    command's parser) into the one registry the command line and config files share.
    """

    implied: tuple = ()  # argv the kind stands for, before the table's own keys
    parser: object = None  # the command's parser (cli.build_parser fills it in)


def add_server_arguments(parser, verbose_help="log one line per frame (never slows the proxy: "
                                              "lines are skipped when the terminal lags)"):
    add_filter_argument(parser.add_argument_group("frames"))
    net = parser.add_argument_group("network")
    # a config file names each [[bus]] with its own name key
    parser.command_line_flags.append(
        net.add_argument("--name", "--bus-name", dest="bus_name", type=argtypes.bus_name,
                         default=None, metavar="NAME",
                         help="name the bus (default: its channel): the bus of log lines and "
                              "metrics, the channel of --record's candump lines, and a name "
                              "socketcand clients may open it by (python-can's "
                              "channel='can0')"))
    net.add_argument("-p", "--port", type=argtypes.port_number, default=None,
                     help="TCP port (default: the first free port from 42420)")
    net.add_argument("--bind", metavar="ADDR", default=None,
                     help="listen on this address only (default: every IPv4 and IPv6 address)")
    net.add_argument("--service-name", default=None,
                     help="Zeroconf instance name (default: 'ECUconnect-Logger <host>:<port>')")
    net.add_argument("--no-zeroconf", action="store_true",
                     help="do not advertise the service over Zeroconf/mDNS")
    net.add_argument("--max-clients", type=argtypes.positive_int, default=64,
                     help="refuse clients beyond this many (default: 64)")
    net.add_argument("--max-clients-per-host", type=argtypes.positive_int, default=32,
                     metavar="N",
                     help="refuse clients beyond this many from one address, so that one host "
                          "cannot take every slot (default: 32)")
    net.add_argument("--client-buffer", type=argtypes.byte_size, default=4 << 20, metavar="SIZE",
                     help="drop a client that falls this far behind: the most a client's "
                          "backlog may hold (bytes, or 512K, 4M; default: 4M)")
    net.add_argument("--client-buffer-total", type=argtypes.byte_size, default=64 << 20,
                     metavar="SIZE",
                     help="the most all clients' backlogs together may hold; beyond it the "
                          "client furthest behind is dropped (default: 64M)")
    net.add_argument("--allow", metavar="CIDR", action="append", default=[],
                     help="accept clients (ECUconnect and socketcand) only from this network, "
                          "e.g. 192.168.1.0/24 (repeatable; default: everyone)")
    # the process's flags: a config file sets them at its top level, for every bus
    parser.process_flags += [
        net.add_argument("--metrics", type=argtypes.listen_address, default=None,
                         metavar="[ADDR:]PORT",
                         help="serve Prometheus metrics on http://ADDR:PORT/metrics and a "
                              "health check on /healthz (default ADDR: every address)"),
        net.add_argument("--web", type=argtypes.listen_address, default=None,
                         metavar="[ADDR:]PORT",
                         help="serve a status page and a live monitor on http://ADDR:PORT/ "
                              "(default ADDR: 127.0.0.1; the --metrics port may be given: "
                              "then both share it); on any other address it needs a token"),
        net.add_argument("--web-token", type=argtypes.web_token, default=None, metavar="TOKEN",
                         help="the token every request to --web must carry "
                              "(open http://ADDR:PORT/?token=TOKEN)"),
        net.add_argument("--web-token-file", type=argtypes.read_path, default=None,
                         metavar="FILE", help="read --web-token from this file (its first line)"),
        net.add_argument("--dbc", action="append", default=[], type=argtypes.read_path,
                         metavar="FILE",
                         help="decode signals with this database (.dbc, .arxml, .kcd, .sym, "
                              "through cantools; repeatable): in --web's live view and for "
                              "--mqtt-signals"),
        parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help),
        parser.add_argument("--stats", action="store_true",
                            help="a status line (frames/s, clients, drops) every 2 seconds")]
    # what -v does (mock-uds narrates instead); the bus is listen-only only where the command
    # has --listen-only; what the adapter takes and whether building the source opens one
    # (serve, touCAN set them)
    parser.set_defaults(prints_frames=True, listen_only=False, adapter_claims=no_claims,
                        source_opens_adapter=opens_no_adapter)
    sink_registry.add_arguments(parser)


def bus_options(args):
    """How the one bus of these flags is served (a command line, or a [[bus]] of a config);
    every flag is checked now."""
    from ..access import parse_networks
    from ..server import BusOptions

    check(args.client_buffer_total >= args.client_buffer,
          f"--client-buffer-total ({args.client_buffer_total:,} bytes) is less than "
          f"--client-buffer ({args.client_buffer:,} bytes): all clients together cannot hold "
          "less than one; raise --client-buffer-total or lower --client-buffer")
    return BusOptions(name=args.bus_name, bind=args.bind, port=args.port,
                      max_clients=args.max_clients,
                      max_clients_per_host=args.max_clients_per_host,
                      client_buffer=args.client_buffer,
                      client_buffer_total=args.client_buffer_total, zeroconf=not args.no_zeroconf,
                      service_name=args.service_name, process=args.process,
                      allow=parse_networks(args.allow),
                      listen_only=args.listen_only,
                      sinks=sink_registry.sink_factories(args),
                      transmit_flag=sink_registry.transmit_flag(args))


def bus_claims(args):
    """What one bus's flags take for it alone: its port, its consumers' (and its adapter's,
    for the commands that set ``adapter_claims``)."""
    found = []
    if args.port is not None:
        found.append(Claim(("tcp port", args.port), f"port {args.port}",
                           "every bus needs its own port (or leave port out)"))
    return found + sink_registry.claims(args) + args.adapter_claims(args)


def no_claims(args):
    return []


def opens_no_adapter(args):
    return False


def process_claims(args):
    """What the process's flags take: the metrics port, the web page's (unless they share)."""
    found = []
    if args.metrics:
        found.append(Claim(("tcp port", args.metrics[1]), f"port {args.metrics[1]}",
                           "choose another", owner="the metrics port"))
    if args.web and not (args.metrics and args.metrics[1] == args.web[1]):
        found.append(Claim(("tcp port", args.web[1]), f"port {args.web[1]}", "choose another",
                           owner="the web page's port"))
    return found


def web_page(args):
    """The --web page of these process flags (None without --web); every flag checked now."""
    import ipaddress

    from ..argtypes import Address

    if args.web is None:
        check(args.web_token is None and args.web_token_file is None,
              "--web-token and --web-token-file are for the web page: give --web "
              "[ADDR:]PORT too")
        check(not args.dbc or getattr(args, "mqtt_signals", False),
              "--dbc decodes signals for the web page and for MQTT: give --web [ADDR:]PORT "
              "or --mqtt-signals too")
        return None
    check(args.web_token is None or args.web_token_file is None,
          "--web-token and --web-token-file both given: give one")
    address = args.web
    if args.metrics and args.metrics[1] == address[1]:
        address = args.metrics  # one port, on the metrics' address
    elif not address[0]:
        address = Address("127.0.0.1", address[1])  # people's page: loopback unless asked
    token = args.web_token
    if args.web_token_file is not None:
        token = _read_token(args.web_token_file)
    host = address[0]
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    where = f"{host or '*'}:{address[1]}"
    check(token or loopback,
          f"--web {where} is reachable from other machines: give --web-token TOKEN or "
          f"--web-token-file FILE (or --web 127.0.0.1:{address[1]} for this machine only)")
    signals = None
    if args.dbc:
        from ..dbc import load_databases

        signals = load_databases(args.dbc)
    from ..web.page import WebPage

    return WebPage(address, token=token, signals=signals)


def _read_token(path):
    try:
        with open(path, encoding="utf-8") as file:
            text = file.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--web-token-file {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        return argtypes.web_token(text)
    except Exception as exc:  # argparse.ArgumentTypeError: the same rule as --web-token
        raise UsageError(f"--web-token-file {path}: {'empty' if not text else exc}") from None


def server_options(args):
    from ..server import ServerOptions

    web = web_page(args)
    return ServerOptions(print_frames=args.verbose and args.prints_frames, stats=args.stats,
                         metrics=args.metrics, web=web,
                         bus_sinks=[web.feed] if web is not None else [])


def record_filter(args):
    """The compiled --filter of a serving command (None: every frame passes)."""
    from ..filters import record_filter as build

    return build(args.filters)


def serve(source, args):
    """Serve one source as the command line says; returns the exit code."""
    from ..server import Bus, Server

    return Server([Bus(source, bus_options(args))], server_options(args)).run()


def serve_buses(buses, process_args):
    """Serve the buses of a config file, with its process flags; returns the exit code."""
    from ..server import Server, ServerOptions

    web = web_page(process_args)
    return Server(buses, ServerOptions(print_frames=process_args.verbose,
                                       stats=process_args.stats,
                                       metrics=process_args.metrics, web=web,
                                       bus_sinks=[web.feed] if web is not None else [])).run()


def make_reporter(args):
    from ..report import Reporter

    return Reporter()


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
    group.add_argument("--speed", type=argtypes.replay_speed, default=speed_default,
                       metavar="X|max", help=f"play X times faster (0.5 slower); max: {speed_help}")
    group.add_argument("--start", type=argtypes.offset, default=None, metavar="S",
                       help="begin S seconds after the first frame")
    group.add_argument("--end", type=argtypes.offset, default=None, metavar="S",
                       help="stop S seconds after the first frame")
    (channel_group or group).add_argument("--channel", default=channel_default,
                                          metavar=channel_metavar, help=channel_help)


def check_playback(args):
    """The checks of the playback flags that argparse cannot make alone."""
    check(args.start is None or args.end is None or args.start < args.end,
          f"--start {args.start:g} is not before --end {args.end:g}" if args.end is not None
          and args.start is not None else "")
