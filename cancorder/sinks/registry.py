"""The consumers a serving command may feed: their flags on the command's parser, and the sinks
(as factories) that the parsed flags of one bus ask for.

The server imports neither this nor a consumer (it gets the factories in its BusOptions), and
the interface (``base``) imports no consumer: adding one is a module and a line here.
"""


def consumers():
    """The consumer classes, in the order their flags appear in --help (each module is
    imported here only: a consumer knows no other)."""
    from .mqtt import MqttSink
    from .printer import FramePrinter
    from .recorder import Recorder
    from .socketcand import SocketcandServer
    from .gvret import GvretServer
    from .upload import UploadSink

    return (FramePrinter, SocketcandServer, Recorder, MqttSink, GvretServer, UploadSink)


def add_arguments(parser):
    """Every consumer's flags, on a serving command's parser."""
    for consumer in consumers():
        consumer.add_arguments(parser)


def sink_factories(args):
    """The factories ``factory(bus_info, server_options) -> RecordSink`` of every sink one
    bus's parsed flags ask for (each consumer checks its flags here: a UsageError)."""
    return [factory for consumer in consumers() for factory in consumer.factories(args)]


def transmit_flag(args):
    """The first flag given by which a consumer may put frames on the bus, or None."""
    return next(filter(None, (consumer.transmit_flag(args) for consumer in consumers())), None)


def claims(args):
    """What the consumers of one bus take for it alone (argtypes.Claim each)."""
    return [claim for consumer in consumers() for claim in consumer.claims(args)]
