"""A python-can interface for any cancorder logger: ``can.Bus(interface="cancorder",
channel="HOST:PORT")``, registered through python-can's ``can.interface`` entry point
(pyproject.toml), so that python-can's tools (``python -m can.logger -i cancorder -c
HOST:PORT``, ``can.viewer``, ``can.player``) and every script written for ``can.Bus`` read a
logger's ECUconnect stream.

Frames arrive with the logger's timestamps and flags as ``can.Message``s (decoded by
``_fast.wire``'s stream decoder, as ``cancorder dump`` reads them); ``can_filters`` are
python-can's own (applied in software by BusABC). ``send()`` goes through the logger's
socketcand transmit (``transmit.SocketcandTransmitter``) when the logger allows it, and raises
``can.CanOperationError`` naming the cause when it does not.

``channel``: ``HOST:PORT`` (or ``HOST``, port 42420), or a logger's Zeroconf instance name, or
None (the one logger Zeroconf finds). ``socketcand``: the logger's socketcand port, or
``HOST:PORT`` (default: the logger's host, port 29536); ``bus``: the socketcand bus to open.
"""
import collections
import select

import can

from . import client
from ._fast import wire
from .errors import CancorderError, ConnectError, UsageError

BROWSE_SECONDS = 2.0  # how long a Zeroconf name (or no channel) is looked for
RECV_SIZE = 256 << 10


class CancorderBus(can.BusABC):
    """A cancorder logger's bus (see the module text)."""

    def __init__(self, channel=None, can_filters=None, socketcand=None, bus=None,
                 browse_time=BROWSE_SECONDS, **kwargs):
        try:
            self._target = _target(channel, float(browse_time))
            self._sock = client.connect(self._target)
        except (CancorderError, OSError) as exc:
            raise can.CanInitializationError(str(exc)) from None
        self._decoder = wire.StreamDecoder()
        self._pending = collections.deque()
        self._socketcand = socketcand
        self._socketcand_bus = bus
        self._transmitter = None
        self.channel_info = f"cancorder logger {self._target}"
        self._channel = str(channel) if channel else str(self._target)
        super().__init__(channel=channel, can_filters=can_filters, **kwargs)

    def _recv_internal(self, timeout):
        if not self._pending:
            if self._sock is None:
                raise can.CanOperationError(f"{self._target}: the connection is closed")
            if not select.select([self._sock], [], [], timeout)[0]:
                return None, False
            try:
                chunk = self._sock.recv(RECV_SIZE)
            except OSError as exc:
                raise can.CanOperationError(f"{self._target}: the connection broke "
                                            f"({exc.strerror or exc})") from None
            if not chunk:
                raise can.CanOperationError(f"{self._target}: the logger closed the "
                                            "connection")
            try:
                frames = self._decoder.feed(chunk)
            except wire.WireFormatError as exc:
                raise can.CanOperationError(f"{self._target}: {exc}") from None
            self._pending.extend(frames)
            if not self._pending:
                return None, False
        micros, can_id, flags, data = self._pending.popleft()
        return can.Message(timestamp=micros / 1e6, arbitration_id=can_id,
                           is_extended_id=bool(flags & wire.FLAG_EXT),
                           is_fd=bool(flags & wire.FLAG_FD),
                           bitrate_switch=bool(flags & wire.FLAG_BRS),
                           error_state_indicator=bool(flags & wire.FLAG_ESI),
                           data=data, channel=self._channel, is_rx=True, check=False), False

    def send(self, msg, timeout=None):
        from .errors import RemoteTransmitError
        from .transmit import SocketcandTransmitter

        if msg.is_remote_frame or msg.is_error_frame:
            raise can.CanOperationError("a logger sends data frames only (its records and "
                                        "transmit carry no remote or error frame)")
        flags = ((wire.FLAG_EXT if msg.is_extended_id else 0)
                 | (wire.FLAG_FD if msg.is_fd else 0)
                 | (wire.FLAG_BRS if msg.bitrate_switch else 0)
                 | (wire.FLAG_ESI if msg.error_state_indicator else 0))
        try:
            if self._transmitter is None:
                self._transmitter = SocketcandTransmitter(self._socketcand_target(),
                                                          bus=self._socketcand_bus)
            self._transmitter.send(msg.arbitration_id, flags, bytes(msg.data))
        except (RemoteTransmitError, ConnectError, UsageError) as exc:
            if self._transmitter is not None and isinstance(exc, ConnectError):
                self._transmitter.close()
                self._transmitter = None
            raise can.CanOperationError(str(exc)) from None

    def _socketcand_target(self):
        from .transmit import SOCKETCAND_PORT, socketcand_target

        where = self._socketcand
        if where is None or str(where).isdigit():
            port = int(where) if where is not None else SOCKETCAND_PORT
            return client.Target(self._target.host, port,
                                 addresses=self._target.addresses)
        return socketcand_target(str(where))

    def shutdown(self):
        super().shutdown()
        if self._transmitter is not None:
            self._transmitter.close()
            self._transmitter = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @staticmethod
    def _detect_available_configs():
        """The loggers Zeroconf finds, as python-can configs (``can.detect_available_configs``)."""
        try:
            from .discovery import browse

            found = browse(BROWSE_SECONDS, resolve_timeout=BROWSE_SECONDS)
        except Exception:  # no Zeroconf here (no network, no multicast): none found
            return []
        return [{"interface": "cancorder", "channel": logger.endpoint, "name": logger.name}
                for logger in found]


def _target(channel, browse_time):
    """Where ``channel`` points: HOST[:PORT], or a logger's Zeroconf name, or (None) the one
    logger Zeroconf finds."""
    text = str(channel).strip() if channel is not None else ""
    if text and (":" in text or text.replace(".", "").isdigit()):
        return client.parse_target(text)
    from .discovery import browse

    found = browse(browse_time, resolve_timeout=browse_time)
    if text:
        named = [logger for logger in found if logger.name == text]
        if not named:  # no logger of that name: a host name
            return client.parse_target(text)
        found = named
    if len(found) != 1:
        raise ConnectError(
            f"{len(found)} loggers answered on Zeroconf within {browse_time:g} s: "
            + ("give channel='HOST:PORT'" if not found else
               "choose one: channel=" + " or ".join(repr(lg.endpoint) for lg in found)))
    logger = found[0]
    return client.Target(logger.addresses[0] if logger.addresses else logger.server.rstrip("."),
                         logger.port, addresses=logger.addresses,
                         label=f"'{logger.name}' ({logger.endpoint})")
