"""The interface of every consumer of records, and what a consumer may know of its bus.

The bus's source thread calls ``put(records)`` for every batch, in order, right after handing it
to the broadcaster, so ``put`` must never block: a consumer with slow work (a terminal, a disk, a
network) does it in its own thread behind a bounded queue, and counts and says what it had to
drop. A feature adds one consumer: a module of this package with its class (its flags, how it is
built from them, what it does) and one line in ``registry.CONSUMERS``; the server and the pump
stay as they are.
"""
import dataclasses
import logging


class RecordSink:
    """The interface; the defaults do nothing, so a sink overrides only what it needs."""

    #: its stats() on the metrics page as cancorder_<metrics_name>_<stat>{bus}
    #: (None: the class name in lower case)
    metrics_name = None

    @classmethod
    def add_arguments(cls, parser):
        """Add the flags that ask for this consumer to a serving command's parser (none)."""

    @classmethod
    def factories(cls, args):
        """What the parsed flags ask for: a list of ``factory(bus_info, server_options) ->
        RecordSink``, empty when its flags are not given. The flags are checked here, before
        anything is served (a UsageError); the sinks are built when the bus starts."""
        return []

    @classmethod
    def claims(cls, args):
        """What its flags take for the bus alone (argtypes.Claim each): a config file refuses
        two buses that claim the same thing."""
        return []

    @classmethod
    def transmit_flag(cls, args):
        """The flag given by which its clients may put frames on the bus, or None (the bus
        refuses it, before opening anything, when its source cannot transmit)."""
        return None

    def start(self, bus):
        """Called once before the first batch; ``bus`` is a BusInfo."""

    def put(self, records):
        """One batch of records (bytes). Called from the source thread: never block."""
        raise NotImplementedError

    def close(self, timeout):
        """Flush what is queued (for at most ``timeout`` s) and stop."""

    def stats(self):
        """Counters by name, for metrics."""
        return {}

    def summary(self):
        """A short phrase for the status and totals lines ("" when there is nothing to say)."""
        return ""

    def files(self):
        """The files it writes, for the web page: ``(path, size, open)`` each, oldest first
        (only closed ones may be downloaded from there)."""
        return []


@dataclasses.dataclass
class BusInfo:
    """What a RecordSink may know of the bus it serves (handed to its factory and ``start``)."""

    name: str
    channel: str
    log_channel: str  # the channel written in candump lines and log files (can0 by default)
    interface: str
    bitrate: str
    port: int
    txt: dict
    source: object  # for transmit; a sink never reads from it
    log: logging.LoggerAdapter
    # serve(listeners, protocol) -> (core, service): a sink that speaks a protocol to clients
    # (socketcand) has the bus's connection core serve it on its listeners: accept, --allow,
    # limits over every protocol, buffers, drops (_fast/broadcast)
    serve: object = None
    # failed(what, exc): a sink whose thread died of something unexpected says so here; the
    # server then stops with exit 1, as for a crashed source (a supervisor restarts it all)
    failed: object = None
    listen_only: bool = False  # the bus is opened listen-only: nothing may be transmitted


class TransmitThread:
    """Frames that clients put on the bus, handed to the source's ``send`` from a thread of
    their own behind a bounded queue, so a slow adapter never stalls the connection core.

    ``put((client_state, can_id, flags, data))`` is False when the queue is full; ``done(item,
    exc)`` is called from the thread after each send (``exc`` None when it went out).
    """

    def __init__(self, send, done, name, size=256):
        import queue
        import threading

        self._queue = queue.Queue(size)
        self._full = queue.Full
        self._send = send
        self._done = done
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self):
        self._thread.start()

    def put(self, item):
        try:
            self._queue.put_nowait(item)
        except self._full:
            return False
        return True

    def stop(self, timeout):
        try:
            self._queue.put_nowait(None)
        except self._full:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._send(item[1], item[2], item[3])
            except Exception as exc:  # the adapter refused or is gone: the sink tells the client
                self._done(item, exc)
                continue
            self._done(item, None)


def frame_text(can_id, flags, data):
    """A frame for the log: ``123#01F1``, 29-bit ids in 8 digits, ``##`` before CAN FD data."""
    return (f"{can_id:08X}" if flags & 1 else f"{can_id:03X}") + \
        ("##" if flags & 2 else "#") + data.hex().upper()


def protocol_stats(service, sink):
    """The counters of a sink that serves a protocol through the bus's connection core
    (socketcand, GVRET): the core's for its clients (``service``, None before it started),
    the sink's for bad commands and transmit."""
    return {"clients": len(service.clients) if service else 0,
            "clients_accepted": service.accepted if service else 0,
            "clients_dropped_lag": service.dropped_lag if service else 0,
            "clients_closed_errors": sink.clients_closed_errors,
            "frames_sent": service.units_sent if service else 0,
            "bytes_sent": service.bytes_sent if service else 0,
            "transmitted": sink.transmitted,
            "transmit_refused": sink.transmit_refused,
            "transmit_failed": sink.transmit_failed}


def protocol_summary(name, stats):
    """Those counters as the phrase of the status and totals lines."""
    return (f"{name}: {stats['clients']} connected, clients served "
            f"{stats['clients_accepted']}, dropped for lag {stats['clients_dropped_lag']}, "
            f"closed for bad commands {stats['clients_closed_errors']}, frames transmitted "
            f"{stats['transmitted']:,} (refused {stats['transmit_refused']:,}, failed "
            f"{stats['transmit_failed']:,})")


def recording_fields(bus):
    """The fields of a recording's path (``logfiles.naming.PathTemplate``) on ``bus``: the
    recorder writes by them, the uploader finds the recording's index by them."""
    return {"channel": bus.channel, "interface": bus.interface, "port": bus.port}
