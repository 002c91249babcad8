"""``cancorder touCAN`` (alias ``toucan``): a Rusoku TouCAN through its CAN API V3 library."""
import json

from .. import argtypes
from ..argtypes import Claim
from . import _server_args as sa

BITRATES = "1000000, 500000, 250000, 125000, 100000, 50000, 20000, 10000"


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "touCAN", aliases=["toucan"], parents=[common],
        help="serve frames from a Rusoku TouCAN through its CAN API V3 library (macOS)",
        description="Read CAN frames from a Rusoku TouCAN adapter through the MacCAN-TouCAN "
                    "library (libUVCANTOU) and stream them to TCP clients in the ECUconnect "
                    "Logger format. On Linux, TouCAN is a SocketCAN interface: use "
                    "`cancorder serve -i socketcan`.")
    adapter = parser.add_argument_group("adapter")
    adapter.add_argument("-c", "--channel", type=argtypes.non_negative_int, default=0,
                         metavar="N",
                         help="TouCAN index: 0 is the first adapter plugged in (default: 0)")
    adapter.add_argument("-b", "--bitrate", type=argtypes.bitrate, default=500000,
                         help=f"bit rate in bit/s, one of {BITRATES} (default: 500000)")
    adapter.add_argument("-l", "--library", metavar="PATH", default=None, type=argtypes.read_path,
                         help="the CAN API V3 library (default: $CANCORDER_TOUCAN_LIBRARY, else "
                              "/usr/local/lib/libUVCANTOU.dylib, else the loader's search)")
    adapter.add_argument("--listen-only", action="store_true",
                         help="monitor mode: never acknowledge or send on the bus")
    adapter.add_argument("--error-frames", action="store_true",
                         help="ask for status frames and log bus state changes (error warning, "
                              "error passive, bus off) and overruns; they are never sent to "
                              "clients")
    sa.add_server_arguments(parser)
    parser.set_defaults(func=_do_toucan, process=PROCESS, source_from_args=source_from_args,
                        adapter_claims=adapter_claims)
    return parser


#: the process TXT key of its Zeroconf record
PROCESS = "cancorder touCAN"
#: what a config file's ``source`` key may name for these flags
SOURCES = {"toucan": sa.SourceKind()}


def _do_toucan(args):
    return sa.serve(source_from_args(args), args)


def source_from_args(args):
    """The source one set of touCAN flags describes (a command line or a [[bus]] table)."""
    from ..sources.toucan import ToucanSource

    return ToucanSource(channel=args.channel, bitrate=args.bitrate, library=args.library,
                        listen_only=args.listen_only, error_frames=args.error_frames,
                        record_filter=sa.record_filter(args))


def adapter_claims(args):
    """The TouCAN of this index is this bus's alone."""
    return [Claim(("adapter", PROCESS, str(args.channel)), f"channel {json.dumps(args.channel)}",
                  "one adapter channel feeds one bus")]
