"""``cancorder mock-uds``: a seeded UDS-on-CAN simulator, served like a real bus (or written to
a log file with --output)."""
from .. import argtypes
from ..sinks.recorder import record_options
from . import _server_args as sa

DEFAULT_IDS = (0x7E0, 0x7E8)
DEFAULT_EXTENDED_IDS = (0x18DA10F1, 0x18DAF110)  # normal-fixed: target 0x10 (engine), tester F1


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "mock-uds", parents=[common], help="serve simulated UDS diagnostic traffic (no hardware)",
        description="Simulate a workshop tester reprogramming an ECU over UDS on CAN (ISO 14229 "
                    "over ISO-TP), with OBD-II polling between sessions, and serve the frames "
                    "like a real bus, or write them to a log file.")
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--tester-id", type=can_id, default=None, metavar="ID",
                     help="the tester's request id, hex (default: 7E0; 18DA10F1 with "
                          "--extended-ids)")
    sim.add_argument("--ecu-id", type=can_id, default=None, metavar="ID",
                     help="the ECU's response id, hex (default: 7E8; 18DAF110 with "
                          "--extended-ids)")
    sim.add_argument("--extended-ids", action="store_true",
                     help="29-bit normal-fixed addressing (18DA<ecu><tester>, functional "
                          "18DB33F1) instead of 11-bit ids")
    sim.add_argument("--fd", action="store_true",
                     help="ISO-TP over CAN FD: frames of up to 64 bytes, bit-rate switch")
    sim.add_argument("-s", "--speed", type=speed_factor, default=1.0, metavar="FACTOR",
                     help="run this many times faster than real time (default: 1); the STmin "
                          "the flow-control frames declare is still honoured")
    sim.add_argument("--seed", type=seed_number, default=None, metavar="N",
                     help="random seed: the same seed gives the same frames and relative "
                          "timing (default: a new one, shown in the log)")
    sim.add_argument("--blocks", type=argtypes.positive_int, default=300, metavar="N",
                     help="TransferData blocks per session (default: 300, enough for the block "
                          "counter to wrap from FF to 00)")
    sim.add_argument("--block-size", type=block_size, default=128, metavar="N",
                     help="data bytes per TransferData block, 1..65533 (default: 128; the ECU "
                          "announces N+2 as its maxNumberOfBlockLength)")
    sim.add_argument("--error-rate", type=probability, default=0.05, metavar="P",
                     help="probability that a request meets a fault: 21 busyRepeatRequest, 35 "
                          "invalidKey, 71/72 on a block, 73 after a wrong counter, extra 78 "
                          "responsePending (default: 0.05; 0 disables them)")
    sim.add_argument("--padding", type=padding_byte, default=0xCC, metavar="BYTE",
                     help="ISO-TP padding byte, hex (default: CC)")
    sim.add_argument("--no-loop", action="store_true",
                     help="one cycle (OBD polling + session), then exit once the clients got "
                          "everything")
    sim.add_argument("--async", dest="free_running", action="store_true",
                     help="run free from the start (default: a session starts when a client "
                          "is connected)")
    sim.add_argument("--duration", type=argtypes.seconds, default=None, metavar="SECONDS",
                     help="stop after exactly this much traffic time (an exchange that would "
                          "run past it is left out whole)")
    output = sim.add_argument("--output", default=None, metavar="FILE",
                              help="write the traffic to FILE instead of serving, as fast as it "
                                   "is generated (any format --record takes; the rotation flags "
                                   "apply); one cycle unless --duration says how long")
    sim.add_argument("--channel", default="can0",
                     help="with --output: the channel name written in the file (.log lines; "
                          "can-utils' log2asc and canplayer match it; default: can0)")
    sa.add_server_arguments(parser, verbose_help="narrate the phases of the simulation "
                                                 "(sessions, security access, erase, download)")
    parser.command_line_flags.append(output)  # instead of serving: no key of a config file
    # -v narrates the scenario here instead of printing frames
    parser.set_defaults(func=_do_mock_uds, process=PROCESS, source_from_args=source_from_args,
                        prints_frames=False)
    return parser


#: the process TXT key of its Zeroconf record
PROCESS = "cancorder mock-uds"
#: what a config file's ``source`` key may name for these flags
SOURCES = {"mock-uds": sa.SourceKind()}


def _do_mock_uds(args):
    import time

    from ..report import plural
    from ..uds.simulation import write_log

    config, seed = _simulation(args)
    reporter = sa.make_reporter(args)
    narrate = reporter.info if args.verbose else None

    sa.check(args.output or args.channel == "can0", "--channel names the channel in the "
             "--output file: without --output it cannot apply (leave it out)")
    if args.output:
        serving_only = [flag for flag, given in (
            ("--async", args.free_running), ("-p/--port", args.port), ("--bind", args.bind),
            ("--service-name", args.service_name), ("--stats", args.stats),
            ("--record", args.record)) if given]
        sa.check(not serving_only, f"--output writes a file instead of serving: "
                                   f"{', '.join(serving_only)} cannot apply (leave it out)")
        from ..logfiles.formats import log_format

        args.record, args.record_flag = args.output, "--output"
        options = record_options(args)[0]
        fd_problem = log_format(options.path, "--output").spec.fd_why
        sa.check(not (args.fd and fd_problem), f"--output {args.output}: cannot store CAN FD "
                                               f"frames ({fd_problem}): with --fd use .log, "
                                               ".log.gz, .asc or .blf")
        if args.duration is None:
            config.loop = False  # a file gets one cycle unless --duration says how long
        started = time.perf_counter()
        frames, traffic, stopped_by, recording = write_log(
            config, options, narrate=narrate, record_filter=sa.record_filter(args),
            channel=args.channel)
        reporter.info(f"wrote {plural(frames, 'frame')} ({traffic:,.1f} s of traffic, seed "
                      f"{seed}) to {', '.join(recording.paths)} in "
                      f"{time.perf_counter() - started:.2f} s"
                      + (f"; stopped by {stopped_by}, the file is complete" if stopped_by else ""))
        return 0

    source = _source(args, config, narrate)
    if not args.free_running:
        reporter.info("the simulation starts when a client connects (--async: at once)")
    return sa.serve(source, args)


def source_from_args(args):
    """The simulator one set of mock-uds flags describes (a command line or a [[bus]] table)."""
    config, _ = _simulation(args)
    narrate = sa.make_reporter(args).info if args.verbose else None
    return _source(args, config, narrate)


def _source(args, config, narrate):
    from ..sources.uds import UdsSimulatorSource

    return UdsSimulatorSource(config, wait_for_client=not args.free_running, narrate=narrate,
                              record_filter=sa.record_filter(args))


def _simulation(args):
    """The checked simulation settings and the seed (a new one when none is given)."""
    import random

    from ..uds.ecu import FLASH_SIZE
    from ..uds.simulation import SimulationConfig

    defaults = DEFAULT_EXTENDED_IDS if args.extended_ids else DEFAULT_IDS
    tester_id = defaults[0] if args.tester_id is None else args.tester_id
    ecu_id = defaults[1] if args.ecu_id is None else args.ecu_id
    if not args.extended_ids:
        for flag, value in (("--tester-id", tester_id), ("--ecu-id", ecu_id)):
            sa.check(value <= 0x7FF, f"{flag} {value:X} is a 29-bit id: add --extended-ids, or "
                                     "give an 11-bit id (at most 7FF)")
    sa.check(tester_id != ecu_id, f"--tester-id and --ecu-id are both {tester_id:X}: the "
                                  "tester and the ECU need different ids")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    config = SimulationConfig(
        seed=seed, tester_id=tester_id, ecu_id=ecu_id, extended=args.extended_ids, fd=args.fd,
        padding=args.padding, speed=args.speed, blocks=args.blocks, block_size=args.block_size,
        error_rate=args.error_rate, loop=not args.no_loop, duration=args.duration)
    functional = config.functional_id
    for flag, value in (("--tester-id", tester_id), ("--ecu-id", ecu_id)):
        sa.check(value != functional, f"{flag} {value:X} is the functional (OBD broadcast) id: "
                                      "choose another")
    sa.check(args.blocks * args.block_size <= FLASH_SIZE,
             f"--blocks {args.blocks} x --block-size {args.block_size} is more than the "
             f"simulated ECU's {FLASH_SIZE >> 20} MiB of flash: use fewer or smaller blocks")
    return config, seed


# ---- value parsers ----

def _hex(text):
    return int(text, 16)


def _whole(text):
    try:
        return int(text, 10)  # 007 too
    except ValueError:
        return int(text, 0)  # 0x2A


can_id = argtypes.can_id
padding_byte = argtypes.ranged(_hex, "one byte in hex, e.g. CC or 0x55", 0, 0xFF,
                               "expected one byte in hex, e.g. CC or 0x55")
speed_factor = argtypes.ranged(float, "a factor such as 10 or 0.5", 0.001, 10000,
                               "the speed factor is 0.001..10000")
probability = argtypes.ranged(float, "a probability such as 0.05", 0.0, 1.0,
                              "a probability is 0..1")
block_size = argtypes.ranged(_whole, "a whole number", 1, 65533,
                             "1..65533 (the ECU announces the block length plus 2 in two bytes)")
seed_number = argtypes.ranged(_whole, "a whole number", 0, float("inf"),
                              "the seed is 0 or more")
