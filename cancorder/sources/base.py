"""The interface every frame source implements (python-can's BusABC is the model).

A source owns one adapter (or the simulator, or a log file). It opens, reads and closes; it
knows nothing of sockets, servers or clients, and logs through ``logging`` (cancorder.source).
The server calls ``open`` once, then ``read`` in the bus's own thread until it stops:

- ``read`` returns bytes of wire records, ``b""`` when nothing came, ``None`` when the source is
  finished (a normal end: a --no-loop simulation, the end of a replayed file);
- it raises SourceLostError when the adapter failed: the server calls ``close`` and ``open``
  again with backoff; anything else it raises is a crash (exit 1).

Records are bytes so that sources which parse bytes themselves never build a python-can Message
per frame; sources that receive Messages pack them with ``self.packer``. The ``--filter`` rules
are applied here, once, for every source (``read`` wraps ``_read``); a source that filters
inside its own parser says so with ``filters_itself``.
"""
import abc
import dataclasses
import time

from .._fast import wire
from ..errors import TransmitError

#: frames a source hands over in one batch at most (more waiting are left for the next read)
MAX_BATCH = 1024


@dataclasses.dataclass
class SourceCounters:
    """What a source saw: data frames handed over, and each kind of frame it skipped."""

    frames: int = 0  # data frames handed over as records
    remote: int = 0  # remote (RTR) frames: no representation on the wire
    error: int = 0  # error / status frames
    invalid: int = 0  # frames that cannot exist (id out of range, impossible length)
    garbage: int = 0  # unreadable input (SLCAN lines that are not frames)
    filtered: int = 0  # frames --filter held back
    overruns: int = 0  # the adapter reported lost frames
    bus_errors: int = 0  # the adapter reported bus errors
    restarts: int = 0  # the CAN controller restarted (after bus off)
    dropped: int = 0  # frames the kernel dropped before cancorder read them (SO_RXQ_OVFL)

    @property
    def received(self):
        """Every frame that came in, handed over or skipped."""
        return self.frames + self.remote + self.error + self.invalid + self.garbage + \
            self.filtered

    def summary(self):
        """``frames in N, out N, skipped remote N, ...`` for the totals line."""
        text = (f"frames in {self.received:,}, out {self.frames:,}, skipped remote "
                f"{self.remote:,}, error {self.error:,}, invalid {self.invalid:,}")
        for name in ("garbage", "filtered", "overruns", "bus_errors", "restarts",
                     "dropped"):
            value = getattr(self, name)
            if value:
                text += f", {name.replace('_', ' ')} {value:,}"
        return text


class ClientGate:
    """What a source may know of the clients, handed to it by the server (``use_clients``).

    ``count()`` is how many clients are connected; ``wait_for_client(timeout)`` blocks until
    one is (True) or the timeout passes or the server stops (False). The simulator and replay
    use it to start their timeline when someone is watching. ``wait_drained(timeout)`` blocks
    until every client has been handed what was submitted (True) or the timeout passes:
    ``replay --speed max`` goes as fast as the clients take it, not faster.
    """

    def __init__(self, count, wait_for_client, wait_drained=None):
        self.count = count
        self.wait_for_client = wait_for_client
        self.wait_drained = wait_drained or (lambda timeout: True)


def first_client(gate, deadline):
    """The simulator's and replay's "start when the first client connects": True once a
    client is connected (at once when one is, or without a gate: a source read in line by
    ``dump FILE``), False when none came before ``deadline`` (time.monotonic())."""
    if gate is None or gate.count():
        return True
    left = deadline - time.monotonic()
    return left > 0 and gate.wait_for_client(left)


class Source(abc.ABC):
    #: True for sources that can put frames on the bus (``send``); the server refuses
    #: --allow-transmit at start-up for the others
    can_transmit = False
    #: True where ``send_records`` puts a whole batch of records on the bus in one call
    #: (SocketCAN: sendmmsg); gen -i sends through it there, frame by frame elsewhere
    sends_records = False
    #: True where the source applies ``record_filter`` itself (the SLCAN parser's loop)
    filters_itself = False
    #: True when the bus is open in CAN FD mode, False when it is not (then ``send`` refuses
    #: CAN FD frames), None where the source cannot tell (its adapter decides)
    fd = None
    #: how to open the bus in CAN FD mode, said when a CAN FD frame is refused
    fd_advice = "serve it with --fd"
    #: the CAN controller's state as the adapter reports it ("error active", "error warning",
    #: "error passive", "bus off"); None where the source cannot tell. The status line,
    #: /healthz and the metrics show it.
    bus_state = None

    def __init__(self, record_filter=None):
        self.packer = wire.Packer()
        self.record_filter = record_filter

    @property
    @abc.abstractmethod
    def description(self):
        """One short phrase for log lines, e.g. ``slcan channel socket://127.0.0.1:5000``."""

    def txt(self):
        """TXT keys this source adds to the Zeroconf advertisement (interface, channel, bitrate)."""
        return {}

    def use_clients(self, gate):
        """The server hands every source a ClientGate; most have no use for it."""

    @abc.abstractmethod
    def open(self):
        """Open the adapter; raise SourceInitError with a clear message when it cannot."""

    def read(self, timeout):
        """Wait at most ``timeout`` seconds; bytes of records, b"" if nothing came, None at the end.

        Raises SourceLostError when the adapter failed (it will be reopened).
        """
        records = self._read(timeout)
        if records and self.record_filter is not None and not self.filters_itself:
            records = self.record_filter.apply(records)
        return records

    def reader(self):
        """What the source thread calls instead of ``read`` (the same contract): a source
        with a compiled wake-up hands out its compiled read (valid until the next open)."""
        return self.read

    @abc.abstractmethod
    def _read(self, timeout):
        """``read`` without the filter: what the adapter gave."""

    @abc.abstractmethod
    def close(self):
        """Release the adapter. Must be safe to call twice and after a failure."""

    def send(self, can_id, flags, data):
        """Put one frame on the bus (any thread). ``flags``: the wire flags (EXT, FD, BRS).

        Raises TransmitError when the frame could not be sent.
        """
        raise TransmitError(f"{self.description}: this source cannot transmit")

    def transmit_refusal(self, flags, data):
        """Why this bus cannot carry the frame, said before anything reaches the adapter
        (None: it can): a CAN FD frame (more than 8 bytes, or sent as FD) on a bus that is
        not open in CAN FD mode, which an adapter would refuse or cut short."""
        if self.fd is False and (flags & wire.FLAG_FD or len(data) > 8):
            return (f"a CAN FD frame ({len(data)} bytes) on a bus not opened in CAN FD mode "
                    f"({self.fd_advice})")
        return None

    def counters(self):
        """Frame totals: data frames handed over and what was skipped (SourceCounters)."""
        packer = self.packer
        filtered = self.record_filter.filtered if self.record_filter is not None else 0
        return SourceCounters(frames=packer.packed - filtered, remote=packer.remote,
                              error=packer.error, invalid=packer.invalid, filtered=filtered)
