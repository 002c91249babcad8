"""``cancorder serve``: any python-can adapter, served to every client."""
import json

from .. import argtypes
from ..argtypes import Claim
from . import _server_args as sa

#: what a config file's ``source`` key may name for these flags
SOURCES = {"python-can": sa.SourceKind(), "slcan": sa.SourceKind(("--interface=slcan",))}


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "serve", parents=[common], help="serve frames from a python-can adapter",
        description="Read CAN frames from any python-can interface and stream them to TCP "
                    "clients in the ECUconnect Logger format.")
    bus = parser.add_argument_group("adapter")
    bus.add_argument("-i", "--interface", default=None,
                     help="python-can interface: socketcan, gs_usb, slcan, pcan, kvaser, "
                          "vector... (default: socketcan on Linux, gs_usb elsewhere)")
    bus.add_argument("-c", "--channel", default=None,
                     help="channel: can0, a device index, /dev/ttyACM0, COM8, a pyserial URL "
                          "(socket://host:port)")
    bus.add_argument("-b", "--bitrate", type=argtypes.bitrate, default=500000,
                     help="bit rate in bit/s: 500000, 500k, 1M, 83.3k (default: 500k)")
    bus.add_argument("--auto", action="store_true",
                     help="use the first adapter that opens among those cancorder detect finds")
    bus.add_argument("--fd", action="store_true", help="open the bus in CAN FD mode")
    bus.add_argument("--data-bitrate", "--data_bitrate", type=argtypes.bitrate, default=None,
                     help="CAN FD data-phase bit rate in bit/s, e.g. 2M (with --fd; "
                          "--data_bitrate as python-can spells it works too)")
    bus.add_argument("--listen-only", action="store_true",
                     help="never acknowledge or send on the bus (where the backend can)")
    bus.add_argument("--timestamps", choices=("adapter", "host"), default="adapter",
                     help="adapter: the frame's own receive time (device clocks mapped to "
                          "Unix time); host: stamped on arrival (default: adapter)")
    bus.add_argument("--opt", dest="options", action="append", type=argtypes.backend_option,
                     default=[], metavar="KEY=VALUE",
                     help="pass an option to the python-can backend (repeatable); "
                          "backend=python-can reads socketcan and slcan through python-can "
                          "instead of cancorder's own readers")
    sa.add_server_arguments(parser)
    several = parser.add_argument_group("several buses")
    parser.command_line_flags += [
        several.add_argument("--config", metavar="FILE.toml", default=None,
                             help="serve every [[bus]] of this TOML file in one process (the "
                                  "keys are these flags' long names; see docs/production.md)"),
        several.add_argument("--check", action="store_true",
                             help="with --config: validate the file, print the resolved buses, "
                                  "exit")]
    parser.set_defaults(func=_do_serve, process=PROCESS, source_from_args=source_from_args,
                        adapter_claims=adapter_claims, source_opens_adapter=tries_adapters)
    return parser


#: the process TXT key of its Zeroconf record
PROCESS = "cancorder serve"


def _do_serve(args):
    if args.config:
        return _serve_config(args)
    sa.check(not args.check, "--check checks a config file: give it with --config FILE.toml")
    return sa.serve(source_from_args(args), args)


def source_from_args(args):
    """The source one set of serve flags describes (a command line or a [[bus]] table)."""
    from ..sources.pycan import PythonCanSource, default_interface

    sa.check(not args.data_bitrate or args.fd, "--data-bitrate needs --fd")
    sa.check(not (args.auto and (args.interface or args.channel)),
             "--auto chooses the interface and channel itself: leave out -i/-c")
    reporter = sa.make_reporter(args)
    record_filter = sa.record_filter(args)

    def make_source(interface, channel):
        options = dict(args.options)
        backend = options.pop("backend", None)
        backend = options.pop("slcan_backend", None) or backend or "cancorder"
        sa.check(backend in ("cancorder", "python-can"),
                 "--opt backend: use cancorder (the default) or python-can")
        if interface == "socketcan" and backend == "cancorder":
            from ..sources.socketcan import SocketcanSource

            sa.check(not args.data_bitrate, "--data-bitrate: set it on the interface (ip link "
                                            "set CHANNEL type can ... dbitrate N fd on)")
            return SocketcanSource(channel or "can0", record_filter=record_filter,
                                   timestamps=args.timestamps, bitrate=args.bitrate,
                                   listen_only=args.listen_only, options=options)
        if interface == "slcan" and backend == "cancorder":
            from ..sources.slcan import SlcanSource

            return SlcanSource(channel, bitrate=args.bitrate, fd=args.fd,
                               data_bitrate=args.data_bitrate,
                               listen_only=args.listen_only, record_filter=record_filter,
                               timestamps=args.timestamps, options=options)
        return PythonCanSource(
            interface, channel, bitrate=args.bitrate, fd=args.fd,
            data_bitrate=args.data_bitrate, record_filter=record_filter,
            listen_only=args.listen_only,
            timestamps=args.timestamps, options=options)

    if args.auto:
        from ..detection import open_first_usable

        source = open_first_usable(make_source, reporter)
    else:
        source = make_source(args.interface or default_interface(), args.channel)
    return source


def tries_adapters(args):
    """--auto opens the adapters it finds to choose one (--check leaves such a bus out)."""
    return args.auto


def adapter_claims(args):
    """The adapter channel is this bus's alone (and --auto's pick: one bus may auto-pick)."""
    if args.auto:
        return [Claim(("adapter", "auto"), None, "auto on more than one bus would pick the "
                      "same adapter twice: give the others an interface and channel")]
    if args.channel is None:
        return []
    return [Claim(("adapter", PROCESS, args.interface, str(args.channel)),
                  f"channel {json.dumps(args.channel)}", "one adapter channel feeds one bus")]


def _serve_config(args):
    from . import _config

    beside = _config.flags_given_beside(args.command_parser, args)
    if args.bus_name is not None:  # a command-line flag, not a key: a [[bus]] has its name
        beside.append("--name")
    sa.check(not beside, f"--config {args.config} holds the bus settings: "
                         f"{', '.join(beside)} cannot be given beside it (put it in the file)")
    resolved = _config.load(args.config, args.sources)
    _config.apply_command_line(resolved, args.command_parser, args)
    log_format = getattr(resolved.args, "log_format", None)
    if log_format and log_format != getattr(args, "log_format", None):  # the file's own
        from .. import logs

        logs.setup(getattr(args, "debug", False), log_format=log_format)
    buses = _config.build_buses(resolved, check=args.check)
    if args.check:
        print(_config.describe(resolved, buses))
        return 0
    return sa.serve_buses(buses, resolved.args)
