"""Messages spread over many frames, put back together for ``dump`` and the monitor:
ISO-TP (ISO 15765-2, with UDS named by udsoncan) and the J1939 transport protocol (BAM and
RTS/CTS, SAE J1939-21).

    frames --Reassembler.feed--> the same frames in order, except those of a transfer, which
                                 come out as one Message when it completes (or is broken)

The frame layouts are parsed by can-isotp (``isotp.protocol.PDU``: single, first and
consecutive frames, flow control, CAN FD escapes); this module only follows the transfers on
a bus it listens to (it never sends a flow control). A transfer that loses a frame, gets one
out of order or is cut short comes out as a Message with ``error`` set and the bytes received:
never silently wrong. It imports nothing of the server (client side).
"""
import functools

from ._fast import wire
from .errors import UsageError

FLAG_EXT = wire.FLAG_EXT

#: ids used for diagnostics by convention, followed from the first frame in ``--isotp auto``:
#: OBD-II 11-bit (7DF functional, 7E0-7EF physical) and 29-bit normal-fixed (18DA/18DB)
_DIAG_11BIT = range(0x7DF, 0x7F0)
_DIAG_29BIT_PREFIXES = (0x18DA, 0x18DB)
#: a first frame and the flow control that answers it, at most this far apart (auto pairing)
PAIRING_WINDOW_US = 1_000_000

# J1939-21 transport protocol
PF_TP_CM = 0xEC  # connection management: RTS, CTS, EndOfMsgAck, BAM, Abort
PF_TP_DT = 0xEB  # data transfer: a sequence number and 7 bytes
TP_RTS, TP_CTS, TP_EOM, TP_BAM, TP_ABORT = 0x10, 0x11, 0x13, 0x20, 0xFF
J1939_GLOBAL = 0xFF


class Message:
    """One reassembled message. ``kind`` is "isotp" or "j1939"; ``start_us`` its first frame,
    ``end_us`` its last; ``frames`` how many frames carried it (flow control and TP.CM
    included); ``error`` None, or why the bytes are not the whole message."""

    __slots__ = ("kind", "start_us", "end_us", "frames", "data", "error", "can_id", "flags",
                 "partner_id", "pgn", "source", "destination", "length")

    def __init__(self, kind, start_us, can_id, flags, length):
        self.kind = kind
        self.start_us = self.end_us = start_us
        self.can_id = can_id  # the sender's id (ISO-TP) or the TP.CM's (J1939)
        self.flags = flags
        self.partner_id = None  # ISO-TP: the id its flow control came from
        self.pgn = self.source = self.destination = None  # J1939
        self.length = length  # announced
        self.frames = 0
        self.data = bytearray()
        self.error = None

    @property
    def duration_us(self):
        return self.end_us - self.start_us

    def label(self):
        """``7E0>7E8`` (sender, then the id of its partner), ``7DF``, or ``PGN FECA 00>FF``."""
        if self.kind == "j1939":
            return f"PGN {self.pgn:05X} {self.source:02X}>{self.destination:02X}"
        width = 8 if self.flags & FLAG_EXT else 3
        text = f"{self.can_id:0{width}X}"
        if self.partner_id is not None:
            text += f">{self.partner_id:0{width}X}"
        return text

    def j1939_id(self):
        """A 29-bit id that carries this PGN from its source (priority 6, the default), for
        the DBC's PGN match."""
        pgn = self.pgn
        if (pgn >> 8) & 0xFF < 240:
            pgn |= self.destination
        return (6 << 26) | (pgn << 8) | self.source


def uds_summary(data):
    """What a UDS (or OBD-II) payload is (see _uds_summary), by its first three bytes."""
    if not data:
        return ""
    return _uds_summary(bytes(data[:3]) if data[0] == 0x7F else bytes(data[:1]))


@functools.lru_cache(maxsize=1024)
def _uds_summary(data):
    """What a UDS (or OBD-II) payload is: ``ReadDataByIdentifier request``, ``... positive
    response``, ``TransferData negative response: RequestCorrectlyReceived_ResponsePending
    (0x78, pending)``. Names come from udsoncan; "" for an empty payload."""
    if not data:
        return ""
    from udsoncan import Response
    from udsoncan.BaseService import BaseService

    sid = data[0]
    if sid == 0x7F and len(data) >= 3:
        code = data[2]
        name = Response.Code.get_name(code) or f"NRC 0x{code:02X}"
        pending = ", pending" if code == 0x78 else ""
        return f"{_service_name(data[1], BaseService)} negative response: {name} " \
               f"(0x{code:02X}{pending})"
    if sid < 0x10:
        return f"OBD-II service {sid:02X} request"
    if 0x40 <= sid < 0x50:
        return f"OBD-II service {sid - 0x40:02X} response"
    service = BaseService.from_request_id(sid)
    if service is not None:
        return f"{service.get_name()} request"
    service = BaseService.from_response_id(sid)
    if service is not None:
        return f"{service.get_name()} positive response"
    return f"service 0x{sid:02X}"


def _service_name(sid, base):
    if sid < 0x10:
        return f"OBD-II service {sid:02X}"
    service = base.from_request_id(sid)
    return service.get_name() if service is not None else f"service 0x{sid:02X}"


def parse_isotp_pair(text):
    """``--isotp TX:RX`` (hex ids; ``/ext`` after them: extended addressing, the first data
    byte is the target address) -> (tx, rx, extended_addressing); ``auto`` -> None."""
    if text == "auto":
        return None
    pair, _, addressing = text.partition("/")
    if addressing not in ("", "ext"):
        raise UsageError(f"--isotp {text}: the addressing after '/' is 'ext' (extended "
                         "addressing: the first data byte is the target address)")
    try:
        tx_text, rx_text = pair.split(":")
        tx, rx = int(tx_text, 16), int(rx_text, 16)
    except ValueError:
        raise UsageError(f"--isotp {text}: expected TX:RX, two hex ids such as 7E0:7E8 (or "
                         "auto)") from None
    for value in (tx, rx):
        if not 0 <= value <= 0x1FFFFFFF:
            raise UsageError(f"--isotp {text}: {value:X} is not a CAN id (at most 1FFFFFFF)")
    if tx == rx:
        raise UsageError(f"--isotp {text}: the two ids of a pair differ (request and response)")
    return tx, rx, addressing == "ext"


class _Transfer:
    """An ISO-TP message under way on one id."""

    __slots__ = ("message", "next_sequence")

    def __init__(self, message):
        self.message = message
        self.next_sequence = 1


class Reassembler:
    """Follows ISO-TP pairs (given, or found by ``auto``) and, with ``j1939``, the J1939
    transport protocol. ``feed(frames)`` returns the frames and Messages in order;
    ``finish()`` the transfers still open, flagged incomplete."""

    def __init__(self, isotp_pairs=(), isotp_auto=False, j1939=False):
        self.isotp_auto = isotp_auto
        self.j1939 = j1939
        if isotp_pairs or isotp_auto:  # can-isotp imports python-can: only when it is used
            from isotp import CanMessage
            from isotp.protocol import PDU

            self._pdu, self._can_message = PDU, CanMessage
        self._partner = {}  # id key -> the id key of the other end of its pair
        self._offset = {}  # id key -> 1 with extended addressing
        for tx, rx, extended_addressing in isotp_pairs:
            flags = FLAG_EXT if tx > 0x7FF or rx > 0x7FF else 0
            self._learn(_key(tx, flags), _key(rx, flags), 1 if extended_addressing else 0)
        self._transfers = {}  # id key -> _Transfer
        self._first_frames = {}  # auto: id key of an unknown id -> (time of its first frame, frame)
        self._sessions = {}  # J1939: (source, destination) -> Message
        self.messages = 0
        self.broken = 0

    def _learn(self, tx_key, rx_key, offset=0):
        self._partner[tx_key] = rx_key
        self._partner[rx_key] = tx_key
        self._offset[tx_key] = self._offset[rx_key] = offset

    # ---- frames in ----

    def feed(self, frames):
        out = []
        partner = self._partner
        auto = self.isotp_auto
        j1939 = self.j1939
        for frame in frames:
            can_id, flags = frame[1], frame[2]
            key = can_id | (0x80000000 if flags & FLAG_EXT else 0)
            if key in partner or (auto and _diagnostic(can_id, flags)):
                if key not in partner:
                    self._conventional_pair(can_id, flags, key)
                if self._isotp(frame, key, out):
                    continue
            elif j1939 and flags & FLAG_EXT and (can_id >> 16) & 0xFF in (PF_TP_CM, PF_TP_DT):
                if self._j1939(frame, out):
                    continue
            elif auto and frame[3] and frame[3][0] >> 4 in (1, 3):
                if self._pair_up(frame, key, out):
                    continue
            out.append(frame)
        return out

    def finish(self):
        """The transfers still open at the end: their bytes so far, flagged."""
        out = []
        for transfer in self._transfers.values():
            message = transfer.message
            self._broken(message, f"incomplete: {len(message.data)} of {message.length} bytes "
                                  "when the stream ended", out)
        for message in self._sessions.values():
            self._broken(message, f"incomplete: {len(message.data)} of {message.length} bytes "
                                  "when the stream ended", out)
        self._transfers.clear()
        self._sessions.clear()
        return out

    def _done(self, message, out):
        self.messages += 1
        out.append(message)

    def _broken(self, message, why, out):
        message.error = why
        self.broken += 1
        self._done(message, out)

    # ---- ISO-TP ----

    def _pair_up(self, frame, key, out):
        """auto: remember a first frame of an unknown id; a flow control from another id soon
        after it pairs the two (and the transfer is followed from that first frame on, though
        the first frame was already shown on its own). True when the frame was taken."""
        micros, data = frame[0], frame[3]
        if data[0] >> 4 == 1:
            if len(self._first_frames) > 4096:
                self._first_frames.clear()
            self._first_frames[key] = (micros, frame)
            return False
        for first_key, (first_us, first_frame) in list(self._first_frames.items()):
            if first_key != key and micros - first_us <= PAIRING_WINDOW_US:
                del self._first_frames[first_key]
                self._learn(first_key, key)
                self._isotp(first_frame, first_key, out)
                return self._isotp(frame, key, out)
        return False

    def _conventional_pair(self, can_id, flags, key):
        """auto: the partner the conventions give a diagnostic id (ISO 15765-4: 7E0+n asks,
        7E8+n answers; normal-fixed 18DA<target><source> is answered by 18DA<source><target>);
        none for the functional ids 7DF and 18DB...."""
        if flags & FLAG_EXT:
            if can_id >> 16 != 0x18DA:
                return
            other = (can_id & 0xFFFF0000) | (can_id & 0xFF) << 8 | (can_id >> 8) & 0xFF
        elif can_id >= 0x7E0:
            other = can_id ^ 0x08
        else:
            return
        other_key = _key(other, flags)
        if other_key != key and other_key not in self._partner:
            self._learn(key, other_key)

    def _pair_with_waiting(self, key, micros):
        """auto: a flow control from an id without a partner answers the first frame that
        waits for one (the latest, on another id)."""
        waiting = [(transfer.message.start_us, other) for other, transfer in
                   self._transfers.items() if other != key and transfer.message.frames == 1
                   and transfer.message.partner_id is None
                   and micros - transfer.message.start_us <= PAIRING_WINDOW_US]
        if waiting:
            other = max(waiting)[1]
            self._learn(other, key)
            self._transfers[other].message.partner_id = key & 0x7FFFFFFF

    def _isotp(self, frame, key, out):
        """True when the frame belongs to a transfer (it is not shown on its own)."""
        micros, can_id, flags, data = frame
        PDU = self._pdu
        try:
            pdu = PDU(self._can_message(arbitration_id=can_id, data=data,
                                  extended_id=bool(flags & FLAG_EXT)),
                      start_of_data=self._offset.get(key, 0))
        except ValueError:
            return False  # not ISO-TP (on a diagnostic id, still shown as a frame)
        kind = pdu.type
        transfers = self._transfers
        if kind == PDU.Type.FLOW_CONTROL:
            if key not in self._partner and self.isotp_auto:
                self._pair_with_waiting(key, micros)
            other = transfers.get(self._partner.get(key))
            if other is None:
                return False
            other.message.frames += 1
            other.message.end_us = micros
            if pdu.flow_status == PDU.FlowStatus.Overflow:
                del transfers[self._partner[key]]
                self._broken(other.message, "the receiver answered overflow: transfer "
                                            "abandoned", out)
            return True
        if kind == PDU.Type.CONSECUTIVE_FRAME:
            transfer = transfers.get(key)
            if transfer is None:
                return False  # no first frame seen (lost, or before we listened): a frame
            message = transfer.message
            message.frames += 1
            message.end_us = micros
            if pdu.seqnum != transfer.next_sequence:
                del transfers[key]
                self._broken(message, f"consecutive frame {pdu.seqnum:X} came where "
                                      f"{transfer.next_sequence:X} was due (a frame lost or out "
                                      f"of order): {len(message.data)} of {message.length} "
                                      "bytes", out)
                return True
            transfer.next_sequence = (transfer.next_sequence + 1) & 0x0F
            message.data += pdu.data[:message.length - len(message.data)]
            if len(message.data) >= message.length:
                del transfers[key]
                self._done(message, out)
            return True
        # a single or first frame: whatever was under way on this id is cut short
        transfer = transfers.pop(key, None)
        if transfer is not None:
            message = transfer.message
            self._broken(message, f"interrupted by a new message: {len(message.data)} of "
                                  f"{message.length} bytes", out)
        message = Message("isotp", micros, can_id, flags, pdu.length)
        partner = self._partner.get(key)
        if partner is not None:
            message.partner_id = partner & 0x7FFFFFFF
        message.frames = 1
        message.data += pdu.data
        if kind == PDU.Type.SINGLE_FRAME:
            self._done(message, out)
        else:
            transfers[key] = _Transfer(message)
        return True

    # ---- J1939 transport protocol ----

    def _j1939(self, frame, out):
        """True when the frame is part of a transfer (TP.CM and TP.DT are never shown alone
        while --j1939 follows them)."""
        micros, can_id, flags, data = frame
        if len(data) < 8:
            return False
        source = can_id & 0xFF
        destination = (can_id >> 8) & 0xFF
        sessions = self._sessions
        if (can_id >> 16) & 0xFF == PF_TP_DT:
            message = sessions.get((source, destination))
            if message is None:
                return False
            message.frames += 1
            message.end_us = micros
            due = len(message.data) // 7 + 1
            if data[0] != due:
                del sessions[(source, destination)]
                self._broken(message, f"data packet {data[0]} came where {due} was due (a "
                                      f"packet lost or out of order): {len(message.data)} of "
                                      f"{message.length} bytes", out)
                return True
            message.data += data[1:8]
            if len(message.data) >= message.length:
                del message.data[message.length:]
                del sessions[(source, destination)]
                self._done(message, out)
            return True
        control = data[0]
        pgn = data[5] | data[6] << 8 | data[7] << 16
        if control in (TP_BAM, TP_RTS):
            if control == TP_BAM:
                destination = J1939_GLOBAL
            old = sessions.pop((source, destination), None)
            if old is not None:
                self._broken(old, f"interrupted by a new transfer: {len(old.data)} of "
                                  f"{old.length} bytes", out)
            message = Message("j1939", micros, can_id, flags, data[1] | data[2] << 8)
            message.pgn, message.source, message.destination = pgn, source, destination
            message.frames = 1
            sessions[(source, destination)] = message
            return True
        if control in (TP_CTS, TP_EOM):  # from the receiver: the session is (destination, source)
            message = sessions.get((destination, source))
            if message is not None:
                message.frames += 1
                message.end_us = micros
            return True
        if control == TP_ABORT:
            message = sessions.pop((source, destination), None) or \
                sessions.pop((destination, source), None)
            if message is not None:
                message.frames += 1
                message.end_us = micros
                self._broken(message, f"aborted (reason {data[1]}): {len(message.data)} of "
                                      f"{message.length} bytes", out)
            return True
        return False


def _key(can_id, flags):
    return can_id | (0x80000000 if flags & FLAG_EXT else 0)


def _diagnostic(can_id, flags):
    if flags & FLAG_EXT:
        return can_id >> 16 in _DIAG_29BIT_PREFIXES
    return can_id in _DIAG_11BIT
