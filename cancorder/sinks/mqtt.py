"""``--mqtt URL``: every batch of a bus published to an MQTT broker (the publishing itself, paho
and the spool, is ``mqtt.publisher``); its flags and how it is built from them."""
import json
import os

from ..argtypes import Claim, byte_size, write_folder
from ..errors import UsageError
from ..mqtt.connection import add_login_arguments, settings_from_args
from ..mqtt.publisher import DEFAULT_SPOOL_SIZE, MqttPublisher
from ..mqtt.spool import check_folder


def spool_size(text):
    """--mqtt-spool-size: a size of at least 1M (a batch is up to 64K)."""
    return byte_size(text, 1 << 20, " (a batch is up to 64K)")


class MqttSink(MqttPublisher):
    """The publisher as a consumer of one bus."""

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("MQTT publishing")
        group.add_argument("--mqtt", metavar="URL", default=None,
                           help="also publish the frames to an MQTT broker: "
                                "mqtt[s]://[USER[:PASS]@]HOST[:PORT][/TOPIC]; TOPIC may use "
                                "{system} {channel} {interface} (default: "
                                "cancorder/{system}/{channel})")
        group.add_argument("--mqtt-spool", metavar="DIR", default=None, type=write_folder,
                           help="keep the batches the broker has not acknowledged in DIR: they "
                                "survive a lost broker and a restart of cancorder")
        group.add_argument("--mqtt-spool-size", type=spool_size, default=DEFAULT_SPOOL_SIZE,
                           metavar="SIZE",
                           help="at most this much in the spool; beyond it the oldest batches "
                                "are dropped and counted (default: 1G)")
        add_login_arguments(group)

    @classmethod
    def factories(cls, args):
        """What ``--mqtt`` asks for; every flag (the URL, the TLS files) is checked now."""
        if not args.mqtt:
            if args.mqtt_spool:
                raise UsageError("--mqtt-spool needs --mqtt URL")
            return []
        try:
            settings = settings_from_args(args, args.mqtt)
        except UsageError as exc:
            if str(exc).startswith(("--", "TLS ")):  # these name their flag already
                raise
            # a message about the URL names its flag (its config key, in a config file)
            raise UsageError(f"--mqtt {exc}") from None
        spool_dir, size = args.mqtt_spool, args.mqtt_spool_size
        if spool_dir:
            check_folder(spool_dir)  # here, not when the bus starts: nothing served yet
        return [lambda bus, server_options: cls(settings, spool_dir=spool_dir, spool_size=size)]

    @classmethod
    def claims(cls, args):
        """The spool folder: every bus needs its own."""
        if not args.mqtt_spool:
            return []
        return [Claim(("spool folder", os.path.realpath(args.mqtt_spool)),
                      f"mqtt_spool {json.dumps(args.mqtt_spool)}",
                      "every bus needs its own spool folder")]
