"""``cancorder send LOGGER FRAME...``: can-utils cansend for a logger's bus, through the
logger's socketcand transmit (``serve --socketcand --allow-transmit``)."""
from .. import argtypes

SOURCES = {}  # it serves no bus


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "send", parents=[common], help="put frames on a logger's bus (cansend's syntax)",
        description="Send frames through a logger's socketcand transmit, written as can-utils "
                    "cansend writes them: 123#11.22.33, 1ABCDEF0#DEADBEEF (8 hex digits: an "
                    "extended id), 123##0112233 (CAN FD; ##1 asks for BRS, which socketcand "
                    "cannot carry). The logger serves --socketcand with --allow-transmit. "
                    "Exits 1 naming the cause when the logger refuses a frame.")
    parser.add_argument("logger", metavar="LOGGER",
                        help="the logger's socketcand listener, HOST[:PORT] (default port "
                             "29536)")
    parser.add_argument("frames", nargs="+", metavar="FRAME", type=argtypes.cansend_frame,
                        help="ID#DATA, ID##FLAGSDATA (CAN FD) or ID#R (remote: refused, as "
                             "no logger can send one)")
    parser.add_argument("--bus", type=argtypes.bus_name, default=None, metavar="NAME",
                        help="the bus to open on a logger that serves several (default: its "
                             "one bus)")
    parser.add_argument("-n", "--count", type=argtypes.positive_int, default=1, metavar="N",
                        help="send the frames N times, in order (a small burst; default 1)")
    parser.add_argument("--interval", type=argtypes.seconds, default=None, metavar="S",
                        help="wait S seconds between frames (default: none)")
    parser.set_defaults(func=_do_send)
    return parser


def _do_send(args):
    import time

    from ..transmit import SocketcandTransmitter, socketcand_target

    transmitter = SocketcandTransmitter(socketcand_target(args.logger), bus=args.bus)
    try:
        first = True
        for _ in range(args.count):
            for can_id, flags, data in args.frames:
                if args.interval and not first:
                    time.sleep(args.interval)
                transmitter.send(can_id, flags, data)
                first = False
    finally:
        transmitter.close()
    return 0
