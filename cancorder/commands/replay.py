"""``cancorder replay``: serve the frames of log files exactly like a bus."""
from .. import argtypes
from . import _server_args as sa


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "replay", parents=[common], help="serve the frames of log files like a live bus",
        description="Serve the frames of log files (.log .asc .blf .csv .trc .db .pcapng, .mf4 with "
                    "asammdf, .gz of the text ones) to ECUconnect clients with their recorded "
                    "spacing, re-based to now, like a live bus: same server, Zeroconf, "
                    "--record, --stats, -v. Several files play as one timeline, in order.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=argtypes.read_path,
                        help="the log files, in order")
    timing = parser.add_argument_group("timing")
    sa.add_playback_arguments(timing, channel_group=parser)
    timing.add_argument("--original-time", action="store_true",
                        help="keep the recorded timestamps (default: re-based to now)")
    timing.add_argument("--loop", action="store_true",
                        help="start again from the first file after the last frame")
    timing.add_argument("--max-gap", type=argtypes.seconds, default=None, metavar="S",
                        help="shorten silences longer than S seconds to S (default: keep them)")
    timing.add_argument("--async", dest="free_running", action="store_true",
                        help="start at once (default: when the first client connects)")
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
    from ..logfiles.readers import check_log_file
    from ..sources.replay import ReplaySource

    for path in args.files:
        check_log_file(path)
    sa.check_playback(args)
    return ReplaySource(args.files, speed=args.speed, loop=args.loop, start=args.start,
                        end=args.end, max_gap=args.max_gap, channel=args.channel,
                        record_filter=sa.record_filter(args),
                        original_time=args.original_time,
                        wait_for_client=not args.free_running)

