"""``cancorder dump``: show (and record) the stream of any ECUconnect Logger, or a log file
(played through the replay source, with replay's --speed --start --end --channel)."""
import argparse

from .. import argtypes
from ..filters import add_filter_argument
from ..mqtt.connection import add_login_arguments
from ..sinks.recorder import add_record_arguments, record_options
from . import _server_args as sa


SOURCES = {}  # it serves no bus: no source kind of a config file


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "dump", parents=[common], help="show and record the frames a logger streams",
        description="Connect to an ECUconnect Logger (cancorder's own servers, the original "
                    "proxies, ECUconnect hardware) and print one line per frame. Without a "
                    "target, look for loggers on the network over Zeroconf and connect when "
                    "exactly one answers.")
    parser.add_argument("target", nargs="?", metavar="HOST[:PORT]|FILE|mqtt://...",
                        help="the logger (default port 42420), or a log file to read (.asc "
                             ".blf .csv .db .log .mf4 .pcapng .trc; --monitor and --stats replay it in "
                             "real time, --speed at any pace), or "
                             "mqtt[s]://[USER@]HOST[:PORT]/TOPIC to subscribe to loggers "
                             "publishing to a broker (wildcards allowed: cancorder/+/+); leave "
                             "out to browse Zeroconf")
    parser.add_argument("--browse", action="store_true",
                        help="only list the loggers that answer on the network, then exit")
    parser.add_argument("--browse-time", type=argtypes.seconds, default=3.0, metavar="S",
                        help="how long to listen for loggers (default: 3 s)")
    parser.add_argument("-f", "--format", choices=("pretty", "candump", "raw", "json",
                                                   "influx"),
                        default="pretty",
                        help="pretty: time, id, flags, length, hex and ASCII (colour on a "
                             "terminal); candump: can-utils log lines; raw: xxd-style hex "
                             "dump of the records received (those --filter passes); json: "
                             "one object per line; influx: InfluxDB line protocol, one line "
                             "per message --dbc decodes (tags logger, channel, message; the "
                             "signals as fields)")
    add_record_arguments(parser, "-o", "--output", repeatable=True,
                            help="also record to FILE, format by extension: .log .log.gz .asc "
                                 ".asc.gz .blf .csv .trc .txt .db .pcapng (.mf4 with asammdf); "
                                 "strftime fields and {channel} {n} in the name; repeatable")
    sa.add_playback_arguments(
        parser.add_argument_group("a log file (FILE), played like cancorder replay plays it"),
        channel_group=parser, speed_default=argparse.SUPPRESS,
        speed_help="as fast as it is read (default: 1 with --monitor and --stats, which show "
                   "rates; max otherwise)",
        channel_help="channel name written in candump/json lines and log files (default: "
                     "can0); with a log FILE, also: only this channel of a multi-channel file "
                     "(its number in an .asc/.blf, 1, 2...; its name in a .log, can1)",
        channel_metavar=None)
    parser.add_argument("-n", "--count", type=argtypes.positive_int, default=None, metavar="N",
                        help="stop after N frames (after --filter)")
    parser.add_argument("--duration", type=argtypes.seconds, default=None, metavar="S",
                        help="stop S seconds after connecting")
    add_filter_argument(parser, "show only frames whose id matches")
    parser.add_argument("--stats", action="store_true",
                        help="instead of one line per frame, a live table of frames/s per id "
                             "and in total (files given with -o are still written)")
    parser.add_argument("--monitor", action="store_true",
                        help="a full-screen live table, one row per id: count, rate, period "
                             "and jitter, the bytes that changed lit up (keys: q quit, p pause, "
                             "s sort, c clear, / filter, arrows and PageUp/PageDown scroll)")
    check = parser.add_argument_group("checking test traffic (cancorder gen, mcangen)")
    check.add_argument("--check", nargs="?", const="auto", default=None,
                       choices=("auto", "quality-test", "sequence"), metavar="MODE",
                       help="instead of one line per frame, verify sequence and quality-test "
                            "frames per id (--filter picks the ids): missing (with the gaps), "
                            "duplicate, reordered, corrupt, jitter, latency, and what the "
                            "logger itself dropped; a status line every 5 s, a summary at the "
                            "end. MODE: auto (default: CA FE payloads are quality-test, 8-byte "
                            "ones below 2^48 sequence), quality-test or sequence")
    check.add_argument("--expect", type=argtypes.positive_int, default=None, metavar="N",
                       help="with --check: each stream's sender sent N frames (gen -n N): "
                            "those never received, at the start or the end, count as missing")
    check.add_argument("--json", action="store_true",
                       help="with --check: the summary as one JSON object on stdout")
    check.add_argument("--strict", action="store_true",
                       help="with --check: exit 2 when a frame was missing, corrupt or dropped "
                            "by the logger, or no checked frame arrived")
    parser.add_argument("--dbc", action="append", default=[], metavar="FILE",
                        help="decode signals with this database (.dbc .arxml .kcd .sym, "
                             "through cantools; repeatable): in pretty, json, --stats and "
                             "--monitor")
    understand = parser.add_argument_group("messages over many frames, signal filters")
    understand.add_argument("--isotp", action="append", default=[], metavar="TX:RX|auto",
                            help="show each ISO-TP transfer between these two hex ids as one "
                                 "line (payload, frame count, duration, the UDS service named) "
                                 "instead of its frames; TX:RX/ext: extended addressing; auto: "
                                 "the diagnostic ids (7DF-7EF, 18DA/18DB....) and pairs found "
                                 "from first frames and flow control; repeatable; in pretty, "
                                 "json and --monitor (key m)")
    understand.add_argument("--j1939", action="store_true",
                            help="show each J1939 transport-protocol transfer (BAM, RTS/CTS) "
                                 "as one PGN message with its source and destination, "
                                 "decoded by --dbc when it knows the PGN")
    understand.add_argument("--where", default=None, metavar="CONDITION",
                            help="only frames whose decoded signals (--dbc) meet CONDITION, "
                                 "e.g. 'EngineSpeed > 3000 and Gear == \"Drive\"': "
                                 "comparisons (== != < <= > >=), and, or, not, parentheses, "
                                 "Message.Signal for one message's signal; in every format, "
                                 "-o and --monitor")
    parser.add_argument("--reconnect", action="store_true",
                        help="when the logger goes away (or is not up yet), keep retrying "
                             "with backoff")
    parser.add_argument("--timeout", type=argtypes.seconds, default=5.0, metavar="S",
                        help="give up connecting after S seconds (default: 5)")
    add_login_arguments(parser.add_argument_group("MQTT (with an mqtt:// target)"))
    parser.set_defaults(func=_do_dump)
    return parser


def _do_dump(args):
    import sys

    from rich.console import Console

    from ..client import Dump
    from ..formats import StatsTable, make_formatter
    from ..logfiles.recording import Recording

    sa.check(not (args.browse and args.target), "--browse lists the loggers on the network: "
                                                "leave out the target")
    sa.check(not (args.monitor and args.stats), "--monitor and --stats are two views of the "
                                                "same counts: choose one")
    sa.check(not (args.monitor and args.browse), "--browse only lists loggers: leave out "
                                                 "--monitor")
    for flag, given in (("--expect", args.expect), ("--json", args.json),
                        ("--strict", args.strict)):
        sa.check(args.check or not given, f"{flag} is a setting of --check: add --check")
    sa.check(not (args.check and (args.stats or args.monitor)),
             "--check shows its own counts: leave out --stats and --monitor")
    sa.check(args.format != "influx" or args.dbc, "--format influx writes decoded signals: "
                                                  "add --dbc FILE (the database of the bus)")
    is_file = bool(args.target) and _is_log_file(args.target)
    given = [flag for flag, value in (("--speed", "speed" in args),  # no default: given or not
                                      ("--start", args.start is not None),
                                      ("--end", args.end is not None)) if value]
    sa.check(is_file or not given, f"{', '.join(given)}: only for a log file (dump FILE): a "
                                   "logger streams in real time")
    channel = args.channel or "can0"
    recordings = record_options(args)  # checked before browsing or connecting
    mqtt = None
    if args.target and args.target.startswith(("mqtt://", "mqtts://")):
        from ..mqtt.connection import settings_from_args

        mqtt = settings_from_args(args, args.target, subscribe=True)
    signals = None
    if args.dbc:
        from ..dbc import load_databases

        signals = load_databases(args.dbc)  # a bad database stops here, before connecting
    where = None
    if args.where is not None:
        sa.check(signals is not None, "--where tests decoded signals: add --dbc FILE")
        from ..where import SignalCondition

        where = SignalCondition(args.where, signals)
    reassembler = _reassembler(args)
    if args.monitor:
        from ..monitor import require_terminal

        require_terminal()
    reporter = sa.make_reporter(args)
    if args.browse:
        return _print_browse(args.browse_time, sys.stdout)
    target = mqtt or (_log_file(args) if is_file else _target(args, reporter))
    screen = Console(highlight=False)
    stats = StatsTable(screen, signals=signals) if args.stats else None
    if args.check:
        from ..check import StreamCheck

        stats = StreamCheck(args.check, out=sys.stdout, report=reporter.info,
                            as_json=args.json, expect=args.expect)
    if args.monitor:
        from ..monitor import Monitor

        stats = Monitor(screen, signals=signals, title=args.target if is_file else str(target),
                        reassembler=reassembler)
    colour = screen.color_system if screen.is_terminal and not screen.no_color else None
    formatter = make_formatter(args.format, channel, colour, signals,
                               logger=args.target or str(target))
    if reassembler is not None and not args.monitor:
        from ..formats import Reassembled

        formatter = Reassembled(formatter, reassembler)
    recording = Recording(recordings, channel)  # opened once connected
    make_dump = Dump
    if mqtt is not None:
        from ..mqtt.dump import MqttDump as make_dump  # the same client, subscribing
    dump = make_dump(target, reporter, formatter=formatter, out=sys.stdout, recording=recording,
                stats=stats, filters=args.filters, count=args.count, duration=args.duration,
                reconnect=args.reconnect, timeout=args.timeout, where=where)
    if args.check:
        code = dump.run()
        return 2 if args.strict and stats.lost else code
    if not args.monitor:
        return dump.run()
    stats.on_quit = lambda: dump.stop("q pressed")
    code = dump.run()
    if stats.error is not None:
        from ..errors import CancorderError

        raise CancorderError(f"the monitor failed: {stats.error!r}") from stats.error
    return code


def _reassembler(args):
    """The reassembly.Reassembler --isotp and --j1939 ask for, or None (checked first)."""
    if not args.isotp and not args.j1939:
        return None
    flags = " and ".join(flag for flag, given in (("--isotp", args.isotp),
                                                  ("--j1939", args.j1939)) if given)
    sa.check(args.format in ("pretty", "json") or args.monitor,
             f"{flags} show reassembled messages in -f pretty, -f json and --monitor: -f "
             f"{args.format} writes frames as they are (leave out {flags}, or use -o FILE to "
             "keep the frames too)")
    sa.check(not args.stats and not args.check, f"{flags} show messages, --stats and --check "
                                                "count frames: choose one")
    from ..reassembly import Reassembler, parse_isotp_pair

    pairs = [parse_isotp_pair(text) for text in args.isotp]
    return Reassembler([pair for pair in pairs if pair is not None], isotp_auto=None in pairs,
                       j1939=args.j1939)


def _is_log_file(target):
    from ..logfiles.formats import looks_like_log

    return not target.startswith(("mqtt://", "mqtts://")) and looks_like_log(target)


def _target(args, reporter):
    """A logger: HOST[:PORT], or the one Zeroconf finds."""
    from ..client import parse_target

    if not args.target:
        return _browse_one(args.browse_time, reporter)
    return parse_target(args.target)


def _log_file(args):
    """The replay source of a log file, opened: a file that is no log (or damaged before its
    first frame) fails here, before any screen. Timestamps stay the recorded ones."""
    from ..errors import LogFileError, UsageError
    from ..logfiles.readers import check_log_file
    from ..sources.replay import ReplaySource

    check_log_file(args.target, "no such log file (a logger is given as HOST[:PORT])")
    sa.check_playback(args)
    realtime = 1.0 if args.monitor or args.stats else None  # rates mean something in real time
    source = ReplaySource([args.target], speed=getattr(args, "speed", realtime),
                          start=args.start, end=args.end, channel=args.channel,
                          original_time=True, wait_for_client=False, by_channel=True,
                          empty_ok=True)
    try:
        source.open()
    except LogFileError as exc:
        raise UsageError(str(exc)) from None
    return source


def _browse(seconds):
    from ..discovery import browse
    from ..errors import CancorderError

    try:
        return browse(seconds)
    except OSError as exc:
        raise CancorderError(f"Zeroconf browsing failed: {exc.strerror or exc} (give the "
                             "logger as HOST[:PORT] instead)") from exc


def _describe(logger):
    txt = " ".join(f"{key}={value}" for key, value in sorted(logger.txt.items()))
    addresses = ", ".join(logger.addresses) or logger.server
    return f"{logger.name}  {addresses} port {logger.port}  {txt}".rstrip()


def _print_browse(seconds, out):
    from ..discovery import SERVICE_TYPE

    found = _browse(seconds)
    for logger in found:
        out.write(_describe(logger) + "\n")
    out.flush()
    if not found:
        import sys

        print(f"no logger answered on {SERVICE_TYPE} within {seconds:g} s", file=sys.stderr)
        return 1
    return 0


def _browse_one(seconds, reporter):
    from ..client import Target
    from ..discovery import SERVICE_TYPE
    from ..errors import CancorderError

    reporter.info(f"looking for loggers ({SERVICE_TYPE}) for {seconds:g} s...")
    found = _browse(seconds)
    for logger in found:
        reporter.info(f"found {_describe(logger)}")
    if not found:
        raise CancorderError(f"no logger answered on {SERVICE_TYPE} within {seconds:g} s: give "
                             "its address (cancorder dump HOST[:PORT]) or browse longer "
                             "(--browse-time 10)")
    if len(found) > 1:
        raise CancorderError(f"{len(found)} loggers answered: choose one, e.g. cancorder dump "
                             + " or cancorder dump ".join(logger.endpoint for logger in found))
    logger = found[0]
    return Target(logger.addresses[0] if logger.addresses else logger.server.rstrip("."),
                  logger.port, addresses=logger.addresses,
                  label=f"'{logger.name}' ({logger.endpoint})")
