"""ISO 15765-2 (ISO-TP) segmentation: one diagnostic message in, timed CAN frames out.

The sender's frames and the receiver's flow control are produced together, as they appear on
the bus: a single frame (SF), or a first frame (FF), a flow-control frame (FC) from the receiver,
consecutive frames (CF) numbered 1..15, 0, 1.., a new FC after every block of BS frames, CFs
spaced at least the STmin that the FC declared. Classic CAN frames carry 8 bytes; with CAN FD
the transmit data length is 64 and the SF/FF escape sequences of ISO 15765-2:2016 apply.
Frames are padded (DLC 8, or the next valid CAN FD length) with the padding byte.
"""
from .._fast import wire

from . import FRAME

FD_LENGTHS = (8, 12, 16, 20, 24, 32, 48, 64)
FF_DL_12BIT_MAX = 4095  # longer messages use the FF escape (32-bit length)


def st_min_byte(seconds):
    """Encode a separation time, rounding up to the next value the STmin byte can say
    (0x00-0x7F: 0-127 ms, 0xF1-0xF9: 100-900 us), so the sender honours at least it."""
    micros = int(round(seconds * 1e6))
    if micros <= 0:
        return 0x00
    if micros <= 900:
        return 0xF0 + -(-micros // 100)
    return min(0x7F, -(-micros // 1000))


def st_min_us(value):
    """The separation time (microseconds) an STmin byte asks for (reserved values: 127 ms)."""
    if value <= 0x7F:
        return value * 1000
    if 0xF1 <= value <= 0xF9:
        return (value - 0xF0) * 100
    return 127000  # ISO 15765-2: treat a reserved value as the longest STmin


def padded_length(n, fd):
    """The CAN frame length that carries n bytes of ISO-TP data, padded."""
    if n <= 8 or not fd:
        return 8
    for length in FD_LENGTHS:
        if length >= n:
            return length
    raise ValueError(f"{n} bytes do not fit a CAN FD frame")


class Node:
    """One ISO-TP endpoint: the id it transmits on, and the flow control it grants as a receiver
    (block size, and its minimum separation time as a real-world duration)."""

    def __init__(self, name, tx_id, block_size=0, st_min=0.0):
        self.name = name
        self.tx_id = tx_id
        self.block_size = block_size
        self.st_min = st_min


class IsoTpLink:
    """Segments messages for one bus (11- or 29-bit ids, classic or FD, a padding byte).

    ``send`` is a generator of timeline entries ``(t_us, FRAME, (can_id, flags, data))``; it advances the
    shared clock as the frames go by. Every frame occupies the bus for its transmission time,
    so no two frames overlap and timestamps strictly increase.
    """

    def __init__(self, clock, rng, extended=False, fd=False, padding=0xCC,
                 bitrate=500_000, data_bitrate=2_000_000):
        self.clock = clock
        self.rng = rng
        self.extended = extended
        self.fd = fd
        # the wire flags of every frame this link sends (FD frames always switch bit rate)
        self._flags = (wire.FLAG_EXT if extended else 0) | \
            (wire.FLAG_FD | wire.FLAG_BRS if fd else 0)
        self.padding = padding
        self.bitrate = bitrate
        self.data_bitrate = data_bitrate
        self.tx_dl = 64 if fd else 8
        # The longest single frame: 7 bytes after a 1-byte PCI on classic CAN, 62 after the
        # 2-byte escape PCI on CAN FD.
        self.sf_max = 62 if fd else 7
        self.frames = 0

    # ---- messages ----

    def send(self, payload, sender, receiver, can_id=None):
        """The frames of one message. ``can_id`` overrides the sender's id (a functional request,
        which must fit one single frame: ISO 15765-2 has no flow control for functional ids)."""
        payload = bytes(payload)
        n = len(payload)
        if n == 0:
            raise ValueError("an ISO-TP message has at least one byte")
        tx_id = sender.tx_id if can_id is None else can_id
        if n <= self.sf_max:
            if n <= 7:
                yield self._frame(tx_id, bytes((n,)) + payload)
            else:
                yield self._frame(tx_id, bytes((0x00, n)) + payload)
            return
        if can_id is not None:
            raise ValueError(f"a functional request must fit a single frame ({n} bytes)")
        if n <= FF_DL_12BIT_MAX:
            header = bytes((0x10 | (n >> 8), n & 0xFF))
        else:
            header = bytes((0x10, 0x00)) + n.to_bytes(4, "big")
        room = self.tx_dl - len(header)
        yield self._frame(tx_id, header + payload[:room])
        sent = room
        sequence = 1
        rng = self.rng
        clock = self.clock
        cf_room = self.tx_dl - 1
        while sent < n:
            # The receiver's flow control: after the FF and after every block of BS frames.
            clock.wait(rng.uniform(0.0002, 0.0015))
            block_size = receiver.block_size
            # The declared STmin scales with --speed like every delay; rounding it up to an
            # encodable value keeps what the sender honours at least what was declared.
            st_min = st_min_byte(receiver.st_min / clock.speed)
            yield self._frame(receiver.tx_id, bytes((0x30, block_size, st_min)))
            separation = st_min_us(st_min)
            clock.wait(rng.uniform(0.0001, 0.0008))
            last_cf = None
            count = 0
            while sent < n and (block_size == 0 or count < block_size):
                if last_cf is not None:
                    # STmin runs from the end of the previous CF to the start of this one
                    clock.at_least(last_cf + separation)
                    clock.wait(rng.uniform(0.00002, 0.0002))
                chunk = payload[sent:sent + cf_room]
                entry = self._frame(tx_id, bytes((0x20 | sequence,)) + chunk)
                last_cf = entry[0]
                yield entry
                sent += len(chunk)
                sequence = (sequence + 1) & 0x0F
                count += 1

    # ---- frames ----

    def _frame(self, can_id, data):
        """One frame, put on the bus now. Its timestamp is the end of its transmission (when a
        logger receives it), and the clock moves there: whatever the sender or the receiver
        does next (a response delay, STmin before the next CF) counts from the end of the
        frame, as ISO 15765-2 and ISO 14229-2 measure it. Only one node talks at a time in this
        conversation, so no frame waits for the bus."""
        length = padded_length(len(data), self.fd)
        if length > len(data):
            data += bytes((self.padding,)) * (length - len(data))
        self.clock.wait(self.transmit_seconds(length))  # the bus is ours from now on
        t_us = self.clock.now_us
        self.frames += 1
        return (t_us, FRAME, (can_id, self._flags, bytes(data)))

    def transmit_seconds(self, length):
        """How long a data frame of ``length`` bytes occupies the bus (with typical stuffing)."""
        id_bits = 18 if self.extended else 0
        if not self.fd:
            return (47 + id_bits + 8 * length) * 1.1 / self.bitrate
        crc = 21 if length > 16 else 17
        nominal = 30 + id_bits + 12  # arbitration up to BRS, then ACK, EOF and intermission
        data = 8 * length + crc + 12  # DLC, ESI, CRC with its stuff count, at the data rate
        return nominal * 1.1 / self.bitrate + data * 1.1 / self.data_bitrate
