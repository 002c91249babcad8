"""``cancorder serve``: any python-can adapter, served to every client."""
import json

from ..argtypes import Claim
from . import _server_args as sa
from ._adapter_args import adapter_source, add_adapter_arguments

#: what a config file's ``source`` key may name for these flags
SOURCES = {"python-can": sa.SourceKind(), "slcan": sa.SourceKind(("--interface=slcan",))}


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "serve", parents=[common], help="serve frames from a python-can adapter",
        description="Read CAN frames from any python-can interface and stream them to TCP "
                    "clients in the ECUconnect Logger format.")
    add_adapter_arguments(parser.add_argument_group("adapter"))
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
    from ..sources.pycan import default_interface

    sa.check(not args.data_bitrate or args.fd, "--data-bitrate needs --fd")
    sa.check(not (args.auto and (args.interface or args.channel)),
             "--auto chooses the interface and channel itself: leave out -i/-c")
    reporter = sa.make_reporter(args)
    record_filter = sa.record_filter(args)

    def make_source(interface, channel):
        return adapter_source(args, interface, channel, record_filter)

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
