"""``cancorder mock-slcan``: a virtual SLCAN adapter on a pseudo-terminal, to try ``serve -i
slcan`` (or any SLCAN client) without hardware. It is ``cancorder gen --pty``: the same
traffic flags, the same adapter."""
from ._traffic_args import add_traffic_arguments, traffic_settings


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "mock-slcan", parents=[common], help="a virtual SLCAN adapter on a pseudo-terminal",
        description="Open a pseudo-terminal that behaves as an SLCAN adapter (it answers the "
                    "open, bit rate and version commands, takes transmitted frames, and sends "
                    "frames at the --rate once its channel is opened), print its path, and run "
                    "until stopped. Try: cancorder mock-slcan & then cancorder serve -i slcan "
                    "-c /dev/pts/N. The traffic flags are cancorder gen's (this is gen --pty).")
    add_traffic_arguments(parser)
    parser.add_argument("--dump", action="store_true",
                        help="print each frame sent as a candump line")
    parser.set_defaults(func=_do_mock_slcan)
    return parser


SOURCES = {}  # it serves no bus


def _do_mock_slcan(args):
    from ..slcan_pty import run_adapter
    from ._server_args import make_reporter

    return run_adapter(traffic_settings(args), make_reporter(args), dump=args.dump)
