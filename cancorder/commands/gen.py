"""``cancorder gen``: test traffic whose every frame can be checked at the other end (mcangen's
data modes, byte for byte), served like a bus (every serving flag), or as a virtual SLCAN
adapter on a pseudo-terminal (--pty; ``cancorder mock-slcan`` is that mode)."""
from . import _server_args as sa
from ._adapter_args import adapter_source, add_adapter_arguments
from ._traffic_args import add_traffic_arguments, traffic_settings


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "gen", parents=[common], help="serve test traffic that dump --check can verify",
        description="Generate CAN traffic at an exact rate and count, reproducible from a "
                    "seed, with payloads a receiver can check (a 64-bit sequence, or the "
                    "CANcorder quality-test layout: CA FE, 16-bit sequence, milliseconds, test "
                    "id, XOR), and serve it like a bus (ECUconnect clients, --record, --mqtt, "
                    "socketcand), or offer it as a virtual SLCAN adapter on a pseudo-terminal "
                    "(--pty). Check it at the other end with cancorder dump --check.")
    add_traffic_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--async", dest="free_running", action="store_true",
                        help="start at once (default: when the first client connects)")
    pty = output.add_argument("--pty", action="store_true",
                              help="instead of serving: a virtual SLCAN adapter on a "
                                   "pseudo-terminal (its path is printed), for cancorder serve "
                                   "-i slcan -c /dev/pts/N or any SLCAN client; it sends once "
                                   "its channel is opened")
    add_adapter_arguments(parser.add_argument_group(
        "onto a bus (-i: send instead of serving; -c, -b, --data-bitrate, --opt as in serve)"),
        reads=False)
    dump = output.add_argument("--dump", action="store_true",
                               help="with --pty: print each frame sent as a candump line "
                                    "(serving: -v prints them)")
    sa.add_server_arguments(parser)
    parser.command_line_flags += [pty, dump]  # a config file's [[bus]] serves
    parser.set_defaults(func=_do_gen, process=PROCESS, source_from_args=source_from_args)
    return parser


#: the process TXT key of its Zeroconf record
PROCESS = "cancorder gen"
#: what a config file's ``source`` key may name for these flags
SOURCES = {"gen": sa.SourceKind()}


def _do_gen(args):
    settings = traffic_settings(args)
    reporter = sa.make_reporter(args)
    sa.check(not (args.pty and args.interface), "--pty offers an adapter, -i sends onto one: "
                                                "choose one")
    serving_only = [flag for flag, given in (("--async", args.free_running),
                                             ("-p/--port", args.port),
                                             ("--record", args.record),
                                             ("--mqtt", getattr(args, "mqtt", None)),
                                             ("--socketcand", getattr(args, "socketcand", None)))
                    if given]
    if args.interface:
        sa.check(not serving_only, f"-i sends onto a bus instead of serving: "
                                   f"{', '.join(serving_only)} cannot apply (leave it out)")
        return _onto_bus(args, settings, reporter)
    sa.check(args.channel is None, "-c/--channel names the adapter of -i: add -i (e.g. -i "
                                   "socketcan -c can0)")
    if args.pty:
        sa.check(not serving_only, f"--pty offers the traffic on a pseudo-terminal instead of "
                                   f"serving it: {', '.join(serving_only)} cannot apply (leave "
                                   "it out)")
        from ..slcan_pty import run_adapter

        return run_adapter(settings, reporter, dump=args.dump)
    sa.check(not args.dump, "--dump prints what the --pty adapter sends: serving, -v prints "
                            "each frame")
    reporter.info(f"{settings.describe()}"
                  + ("" if args.free_running else "; it starts when a client connects "
                                                  "(--async: at once)"))
    return sa.serve(_source(args, settings), args)


def _onto_bus(args, settings, reporter):
    from ..bus_sender import BusSender
    from ..generator import LiveStats, Timeline
    from ..report import plural

    source = adapter_source(args, args.interface, args.channel)
    sender = BusSender(Timeline(settings), source, live=LiveStats())
    reporter.info(f"sending {settings.describe()} onto {source.description}")
    try:
        reason = sender.run()
    finally:
        sender.live.done()
    outages = f", {plural(sender.outages, 'outage')} survived" if sender.outages else ""
    reporter.info(f"sent {plural(sender.sent, 'frame')} onto {source.description}{outages}; "
                  f"stopped: {reason}")
    return 0


def source_from_args(args):
    """The generator one set of gen flags describes (a command line or a [[bus]] table)."""
    sa.check(not args.interface, "a [[bus]] of gen serves its traffic: sending it onto a bus "
                                 "(interface) is for the command line (leave it out)")
    return _source(args, traffic_settings(args))


def _source(args, settings):
    from ..generator import Timeline
    from ..sources.gen import GenSource

    return GenSource(Timeline(settings), wait_for_client=not args.free_running,
                     record_filter=sa.record_filter(args))
