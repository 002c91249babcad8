"""The interface every frame source implements (python-can's BusABC is the model).

A source owns one adapter (or the simulator). The server calls ``open`` once, then ``read`` in
its own thread until it stops; when ``read`` raises SourceLostError the server calls ``close``
and ``open`` again with backoff. ``read`` returns bytes of wire records (possibly empty) so that
sources which parse bytes themselves never build a python-can Message per frame; sources that
receive Messages pack them with ``self.packer``.
"""
import abc

from .._fast import wire
from ..errors import TransmitError

#: frames a source hands over in one batch at most (more waiting are left for the next read)
MAX_BATCH = 1024


class Source(abc.ABC):
    #: True for sources that can put frames on the bus (``send``); the server refuses
    #: --allow-transmit at start-up for the others
    can_transmit = False

    def __init__(self):
        self.packer = wire.Packer()
        self.server = None

    @property
    @abc.abstractmethod
    def description(self):
        """One short phrase for log lines, e.g. ``slcan on socket://127.0.0.1:5000``."""

    def txt(self):
        """TXT keys this source adds to the Zeroconf advertisement (interface, channel, bitrate)."""
        return {}

    def attach(self, server):
        """Called by the server before ``open``; a source may watch its clients."""
        self.server = server

    @abc.abstractmethod
    def open(self):
        """Open the adapter; raise SourceInitError with a clear message when it cannot."""

    @abc.abstractmethod
    def read(self, timeout):
        """Wait at most ``timeout`` seconds; return bytes of records (b"" if nothing came).

        Raise SourceLostError when the adapter failed (it will be reopened), SourceFinished when
        there will be no more frames.
        """

    @abc.abstractmethod
    def close(self):
        """Release the adapter. Must be safe to call twice and after a failure."""

    def send(self, can_id, flags, data):
        """Put one frame on the bus (any thread). ``flags``: the wire flags (EXT, FD, BRS).

        Raises TransmitError when the frame could not be sent.
        """
        raise TransmitError(f"{self.description}: this source cannot transmit")

    def counters(self):
        """Frame totals for the shutdown summary: data frames out and what was skipped."""
        packer = self.packer
        return {"frames": packer.packed, "remote": packer.remote, "error": packer.error,
                "invalid": packer.invalid}
