"""The flags of what ``cancorder gen`` sends (mcangen's names), shared by ``gen`` and
``mock-slcan`` (which is ``gen --pty``), and their checked settings."""
from .. import argtypes
from .._fast import traffic
from ._server_args import check


def add_traffic_arguments(parser):
    """The flags of what is sent (gen, and mock-slcan: the same traffic)."""
    gen = parser.add_argument_group("traffic (mcangen's flags)")
    gen.add_argument("-r", "--rate", type=rate, default=5.0, metavar="FPS",
                     help="frames per second, exactly (default: 5; 0: as fast as it is taken)")
    gen.add_argument("-n", "--count", type=argtypes.non_negative_int, default=0, metavar="N",
                     help="stop after exactly N frames (default: 0, no end)")
    gen.add_argument("--seed", type=seed_number, default=None, metavar="N",
                     help="random seed: the same seed gives the same frames (default: a new "
                          "one, shown in the log)")
    gen.add_argument("--data-mode", choices=traffic.DATA_MODES, default="random",
                     help="payloads: random, zero (00), ones (FF), counter (the frame number's "
                          "low byte in every byte), sequence (a 64-bit big-endian frame "
                          "number, 8 bytes), quality-test (CA FE, 16-bit sequence, 16-bit "
                          "milliseconds since the start, --test-id, XOR of bytes 0-6; needs "
                          "--id) (default: random)")
    gen.add_argument("--test-id", type=byte_value, default=0, metavar="N",
                     help="the test id byte of quality-test payloads, 0..255 (default: 0)")
    gen.add_argument("--id", dest="exact_id", type=argtypes.can_id, default=None, metavar="ID",
                     help="every frame on this id, hex (an id above 7FF is extended)")
    gen.add_argument("--id-min", type=argtypes.can_id, default=None, metavar="ID",
                     help="the lowest id, hex (default: 0; 800 for extended ids)")
    gen.add_argument("--id-max", type=argtypes.can_id, default=None, metavar="ID",
                     help="the highest id, hex (default: 7FF; 1FFFFFFF for extended ids)")
    gen.add_argument("--id-kind", choices=traffic.ID_KINDS, default="standard",
                     help="11-bit, 29-bit or both at random (default: standard)")
    gen.add_argument("--id-mode", choices=traffic.ID_MODES, default="random",
                     help="ids at random in the range, or one after the other (default: random)")
    gen.add_argument("--dlc-min", type=length, default=0, metavar="N",
                     help="the shortest payload in bytes (default: 0)")
    gen.add_argument("--dlc-max", type=length, default=None, metavar="N",
                     help="the longest payload in bytes (default: 8; 64 with --fd)")
    gen.add_argument("--fd", action="store_true",
                     help="CAN FD frames (lengths 0-8, 12, 16, 20, 24, 32, 48, 64)")
    gen.add_argument("--brs", action="store_true", help="with --fd: set the bit-rate switch")
    gen.add_argument("--burst", action="store_true",
                     help="alternate a high-rate and a low-rate phase instead of --rate")
    gen.add_argument("--burst-high-rate", type=rate, default=5000.0, metavar="FPS",
                     help="frames/s of the high phase (default: 5000)")
    gen.add_argument("--burst-low-rate", type=rate, default=50.0, metavar="FPS",
                     help="frames/s of the low phase (default: 50)")
    gen.add_argument("--burst-high-ms", type=argtypes.positive_int, default=2000, metavar="MS",
                     help="length of the high phase (default: 2000)")
    gen.add_argument("--burst-low-ms", type=argtypes.positive_int, default=500, metavar="MS",
                     help="length of the low phase (default: 500)")


def traffic_settings(args):
    """The checked settings of the traffic flags (a new seed when none is given)."""
    import random

    from ..generator import TrafficSettings

    quality = args.data_mode == "quality-test"
    check(not quality or args.exact_id is not None,
             "--data-mode quality-test needs --id (the id the checker follows), e.g. --id 7E0")
    exact = args.exact_id is not None
    check(not (exact and (args.id_min is not None or args.id_max is not None)),
             "--id sends on one id: leave out --id-min and --id-max")
    check(args.brs <= args.fd, "--brs is CAN FD's bit-rate switch: add --fd")
    extended = args.id_kind == "extended"
    id_min = args.id_min if args.id_min is not None else (0x800 if extended else 0)
    id_max = args.id_max if args.id_max is not None else (
        0x7FF if args.id_kind == "standard" else 0x1FFFFFFF)
    check(id_min <= id_max, f"--id-min {id_min:X} is above --id-max {id_max:X}")
    check(args.id_kind != "standard" or id_max <= 0x7FF,
             f"--id-max {id_max:X} is a 29-bit id: add --id-kind extended (or mixed)")
    check(not extended or id_max > 0x7FF,
             f"--id-max {id_max:X}: extended ids here are above 7FF (so they cannot be taken "
             "for standard ones): raise --id-max")
    dlc_max = args.dlc_max if args.dlc_max is not None else (64 if args.fd else 8)
    check(args.fd or dlc_max <= 8, f"--dlc-max {dlc_max}: classic CAN carries at most 8 "
                                      "bytes (add --fd for up to 64)")
    check(args.dlc_min <= dlc_max, f"--dlc-min {args.dlc_min} is above --dlc-max {dlc_max}")
    lengths = [n for n in (traffic.FD_LENGTHS if args.fd else range(9))
               if args.dlc_min <= n <= dlc_max]
    check(lengths, f"no CAN FD length lies in {args.dlc_min}..{dlc_max} (lengths over 8 "
                      "are 12, 16, 20, 24, 32, 48, 64)")
    if quality and args.fd:
        check(dlc_max >= 8, "--data-mode quality-test needs 8 bytes at least: raise "
                               "--dlc-max")
        args.dlc_min = max(args.dlc_min, 8)
    check(not (args.burst and args.rate != 5.0),
             "--burst alternates --burst-high-rate and --burst-low-rate: leave out --rate")
    check(not args.burst or (args.burst_high_rate > 0 and args.burst_low_rate > 0),
             "--burst needs both phase rates above 0")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1 << 32)
    burst = ((args.burst_high_rate, args.burst_low_rate, args.burst_high_ms / 1000,
              args.burst_low_ms / 1000) if args.burst else None)
    return TrafficSettings(
        seed=seed, rate=args.rate, count=args.count, data_mode=args.data_mode,
        id_kind=args.id_kind, id_mode=args.id_mode, id_min=id_min, id_max=id_max,
        exact_id=args.exact_id, length_min=args.dlc_min, length_max=dlc_max, fd=args.fd,
        brs=args.brs, test_id=args.test_id, burst=burst)


def _whole(text):
    return int(text, 0)  # 42, 0x2A


rate = argtypes.ranged(float, "frames per second, e.g. 1000", 0, 10_000_000,
                       "a rate is 0 (as fast as taken) up to 10,000,000 frames/s")
seed_number = argtypes.ranged(_whole, "a whole number", 0, (1 << 64) - 1,
                              "the seed is 0..2^64-1")
byte_value = argtypes.ranged(_whole, "a whole number", 0, 255, "one byte: 0..255")
length = argtypes.ranged(_whole, "a number of bytes", 0, 64, "a payload is 0..64 bytes")
