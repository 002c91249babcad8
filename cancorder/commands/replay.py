"""``cancorder replay``: serve the frames of log files exactly like a bus."""
import argparse

from .. import argtypes
from . import _server_args as sa


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "replay", parents=[common], help="serve the frames of log files like a live bus",
        description="Serve the frames of log files (.log .asc .blf .csv .trc .db, .mf4 with "
                    "asammdf, .gz of the text ones) to ECUconnect clients with their recorded "
                    "spacing, re-based to now, like a live bus: same server, Zeroconf, "
                    "--record, --stats, -v. Several files play as one timeline, in order.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="the log files, in order")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--speed", type=speed, default=1.0, metavar="X|max",
                        help="play X times faster (0.5 slower); max: as fast as the clients "
                             "take it (default: 1)")
    timing.add_argument("--original-time", action="store_true",
                        help="keep the recorded timestamps (default: re-based to now)")
    timing.add_argument("--loop", action="store_true",
                        help="start again from the first file after the last frame")
    timing.add_argument("--start", type=offset, default=None, metavar="S",
                        help="begin S seconds after the first frame")
    timing.add_argument("--end", type=offset, default=None, metavar="S",
                        help="stop S seconds after the first frame")
    timing.add_argument("--max-gap", type=argtypes.seconds, default=None, metavar="S",
                        help="shorten silences longer than S seconds to S (default: keep them)")
    timing.add_argument("--async", dest="free_running", action="store_true",
                        help="start at once (default: when the first client connects)")
    parser.add_argument("--channel", default=None, metavar="N",
                        help="only this channel of a multi-channel file: its number in an "
                             ".asc/.blf (1, 2...), its name in a .log (can1)")
    sa.add_server_arguments(parser)
    parser.set_defaults(func=_do_replay, process=PROCESS, source_from_args=source_from_args)
    return parser


PROCESS = "cancorder replay"
#: what a config file's ``source`` key may name for these flags
SOURCES = {"replay": sa.SourceKind()}


def _do_replay(args):
    source = source_from_args(args)
    if not args.free_running:
        sa.make_reporter(args).info("the replay starts when a client connects (--async: at once)")
    status = sa.serve(source, args)
    if source.failure is not None:
        raise source.failure  # one line naming the file and where; the frames before it went out
    return status


def source_from_args(args):
    """The ReplaySource these flags describe (also a [[bus]] of a config: source = "replay")."""
    from ..logread import check_log_file
    from ..sources.replay import ReplaySource

    for path in args.files:
        check_log_file(path)
    sa.check(args.start is None or args.end is None or args.start < args.end,
             f"--start {args.start:g} is not before --end {args.end:g}" if args.end is not None
             and args.start is not None else "")
    return ReplaySource(args.files, speed=args.speed, loop=args.loop, start=args.start,
                        end=args.end, max_gap=args.max_gap, channel=args.channel,
                        record_filter=sa.record_filter(args),
                        original_time=args.original_time,
                        wait_for_client=not args.free_running)


def speed(text):
    if text.strip().lower() == "max":
        return None
    return argtypes.ranged(float, "a factor such as 2 or 0.5, or max", 0.001, 10000,
                     "the speed factor is 0.001..10000 (or max)")(text)


def offset(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: expected a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more seconds")
    return value
