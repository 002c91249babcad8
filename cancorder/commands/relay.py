"""``cancorder relay mqtt://HOST/TOPIC``: serve a remote bus from an MQTT broker as a local
ECUconnect Logger (Zeroconf, TCP clients), so CANcorder on a desk shows a vehicle anywhere."""
from . import _server_args as sa


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "relay", parents=[common], help="serve a bus that a remote cancorder publishes to MQTT",
        description="Subscribe to the batches a remote `cancorder ... --mqtt URL` publishes and "
                    "serve them to TCP clients in the ECUconnect Logger format, advertised "
                    "over Zeroconf, as if the bus were here.")
    parser.add_argument("url", metavar="mqtt[s]://[USER@]HOST[:PORT]/TOPIC",
                        help="the broker and the remote bus's topic, e.g. "
                             "mqtt://broker/cancorder/truck42/can0")
    sa.add_server_arguments(parser)
    parser.set_defaults(func=_do_relay, process=PROCESS, source_from_args=source_from_args)
    return parser


PROCESS = "cancorder relay"
#: what a config file's ``source`` key may name: a remote bus from an MQTT broker
SOURCES = {"relay": sa.SourceKind()}


def _do_relay(args):
    return sa.serve(source_from_args(args), args)


def source_from_args(args):
    """The relay source of a command line or of a ``source = "relay"`` bus of a config."""
    from ..mqtt.connection import settings_from_args
    from ..sources.relay import MqttRelaySource

    return MqttRelaySource(settings_from_args(args, args.url, subscribe=True))
