"""``--mqtt URL``: every batch of a bus published to an MQTT broker (the publishing itself, paho
and the spool, is ``mqtt.publisher``); its flags and how it is built from them."""
import json
import os

from ..argtypes import Claim, byte_size, ranged, write_folder
from ..errors import UsageError
from ..mqtt.connection import add_login_arguments, settings_from_args
from ..mqtt.publisher import DEFAULT_SPOOL_SIZE, MqttPublisher
from ..mqtt.spool import check_folder


def spool_size(text):
    """--mqtt-spool-size: a size of at least 1M (a batch is up to 64K)."""
    return byte_size(text, 1 << 20, " (a batch is up to 64K)")


signals_rate = ranged(float, "messages a second, e.g. 2 or 0.5", 0.001, 1000,
                      "0.001..1000 messages a second")


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
        group.add_argument("--mqtt-signals", action="store_true",
                           help="also publish each message --dbc decodes as JSON on "
                                "TOPIC/signals/MESSAGE (values with units), at most "
                                "--mqtt-signals-rate times a second per message")
        group.add_argument("--mqtt-signals-rate", type=signals_rate, default=1.0,
                           metavar="N", help="with --mqtt-signals: at most N messages a second "
                                             "per message name (default: 1)")
        group.add_argument("--mqtt-homeassistant", action="store_true",
                           help="with --mqtt-signals: publish Home Assistant discovery configs "
                                "for the signals (retained under homeassistant/sensor/; removed "
                                "when cancorder stops cleanly)")
        add_login_arguments(group)

    @classmethod
    def factories(cls, args):
        """What ``--mqtt`` asks for; every flag (the URL, the TLS files) is checked now."""
        signal_flags = [flag for flag, given in (
            ("--mqtt-signals", args.mqtt_signals), ("--mqtt-homeassistant",
                                                    args.mqtt_homeassistant)) if given]
        if not args.mqtt:
            if args.mqtt_spool:
                raise UsageError("--mqtt-spool needs --mqtt URL")
            if signal_flags:
                raise UsageError(f"{signal_flags[0]} is a setting of MQTT publishing: add "
                                 "--mqtt URL")
            return []
        if signal_flags and not (args.mqtt_signals and args.dbc):
            raise UsageError("--mqtt-signals publishes what --dbc FILE decodes: give both"
                             + (" (--mqtt-homeassistant describes those signals)"
                                if args.mqtt_homeassistant else ""))
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
        signals, rate, homeassistant = None, args.mqtt_signals_rate, args.mqtt_homeassistant
        if args.mqtt_signals:
            from ..dbc import load_databases

            signals = load_databases(args.dbc)  # a bad database stops here, before serving

        def build(bus, server_options):
            topics = None
            if signals is not None:
                from ..mqtt.signals import SignalTopics

                topics = SignalTopics(signals, rate, homeassistant)
            return cls(settings, spool_dir=spool_dir, spool_size=size, signal_topics=topics)

        return [build]

    @classmethod
    def claims(cls, args):
        """The spool folder: every bus needs its own."""
        if not args.mqtt_spool:
            return []
        return [Claim(("spool folder", os.path.realpath(args.mqtt_spool)),
                      f"mqtt_spool {json.dumps(args.mqtt_spool)}",
                      "every bus needs its own spool folder")]
