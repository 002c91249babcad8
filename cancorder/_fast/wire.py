"""ECUconnect Logger records: pack python-can Messages into them, decode a stream of them.

One record per CAN frame, 14 + N bytes (../docs: wire-protocol.md):
    uint64 BE timestamp (us since the Unix epoch) | uint32 BE id | flags | N | payload
flags: bit0 EXT, bit1 FD, bit2 BRS, bit3 ESI; N is the payload length in bytes.

This is plain Python; wire.pxd gives it C types and setup.py compiles it with Cython when it can.
Where the compiled module writes through a C pointer, the pure twin uses struct: the branches
on ``cython.compiled`` are the only places the two differ, and the tests compare their bytes.
"""
import struct

import cython

from ..errors import WireFormatError

HEADER_SIZE = 14
MAX_RECORD_SIZE = 78  # 14 + 64
FLAG_EXT = 0x01
FLAG_FD = 0x02
FLAG_BRS = 0x04
FLAG_ESI = 0x08
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)

_HEADER = struct.Struct(">QIBB")
_pack_header_into = _HEADER.pack_into
_unpack_header_from = _HEADER.unpack_from


def valid_length(n, is_fd):
    """True if a payload of n bytes exists on the bus (n > 8 only on CAN FD)."""
    if n <= 8:
        return n >= 0
    return is_fd and (n == 12 or n == 16 or n == 20 or n == 24 or n == 32 or n == 48 or n == 64)


class Packer:
    """Turns batches of python-can Messages into one bytes object of records.

    Counts what has no representation on the wire: remote frames, error frames, and frames
    that cannot exist (an 11-bit id above 0x7FF, a length no CAN or CAN FD frame has).
    ``ts_offset`` (seconds) is added to every timestamp: it maps a device clock to Unix time.
    """

    def __init__(self, ts_offset=0.0):
        self.ts_offset = ts_offset
        self.packed = 0
        self.remote = 0
        self.error = 0
        self.invalid = 0
        self._buffer = bytearray(64 * MAX_RECORD_SIZE)

    def pack(self, messages):
        """Pack the data frames of ``messages`` (a list) into records; returns bytes."""
        count = len(messages)
        if len(self._buffer) < count * MAX_RECORD_SIZE:
            self._buffer = bytearray(count * MAX_RECORD_SIZE)
        buf = self._buffer
        offset = self.ts_offset
        pos = 0
        i = 0
        while i < count:
            msg = messages[i]
            i += 1
            if msg.is_remote_frame:
                self.remote += 1
                continue
            if msg.is_error_frame:
                self.error += 1
                continue
            data = msg.data
            if data is None:
                data = b""
            elif type(data) is not bytearray and type(data) is not bytes:
                data = bytes(data)
            n = len(data)
            can_id = msg.arbitration_id
            if msg.is_extended_id:
                flags = 1
                if can_id > 0x1FFFFFFF or can_id < 0:
                    self.invalid += 1
                    continue
            else:
                flags = 0
                if can_id > 0x7FF or can_id < 0:
                    self.invalid += 1
                    continue
            if msg.is_fd or n > 8:
                flags |= 2
                if msg.bitrate_switch:
                    flags |= 4
                if msg.error_state_indicator:
                    flags |= 8
                if n > 8 and not valid_length(n, True):
                    self.invalid += 1
                    continue
            stamp = msg.timestamp + offset
            if stamp <= 0.0:
                micros = 0
            elif cython.compiled:
                micros = cython.cast(cython.ulonglong, stamp * 1000000.0 + 0.5)
            else:
                micros = int(stamp * 1000000.0 + 0.5)
            if cython.compiled:
                p = cython.cast(cython.p_uchar, buf) + pos
                p[0] = (micros >> 56) & 0xFF
                p[1] = (micros >> 48) & 0xFF
                p[2] = (micros >> 40) & 0xFF
                p[3] = (micros >> 32) & 0xFF
                p[4] = (micros >> 24) & 0xFF
                p[5] = (micros >> 16) & 0xFF
                p[6] = (micros >> 8) & 0xFF
                p[7] = micros & 0xFF
                p[8] = (can_id >> 24) & 0xFF
                p[9] = (can_id >> 16) & 0xFF
                p[10] = (can_id >> 8) & 0xFF
                p[11] = can_id & 0xFF
                p[12] = flags
                p[13] = n
                if n:
                    src = cython.cast(cython.p_uchar, data) if type(data) is bytearray \
                        else cython.cast(cython.p_uchar, cython.cast(bytes, data))
                    memcpy(p + 14, src, n)
            else:
                _pack_header_into(buf, pos, micros, can_id, flags, n)
                buf[pos + 14:pos + 14 + n] = data
            pos += 14 + n
            self.packed += 1
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, buf), pos)
        return bytes(memoryview(buf)[:pos])


class StreamDecoder:
    """Incremental decoder: feed bytes in any chunking, get whole frames back.

    A frame is a tuple ``(timestamp_us, can_id, flags, data)``. Every header is validated;
    a malformed stream raises WireFormatError naming the stream offset of the bad record, with
    the good frames of the same chunk (those before the bad record) in its ``frames``.
    After an error the decoder stays failed: a reader that lost its place cannot find it again.
    """

    def __init__(self):
        self._buf = bytearray()
        self.offset = 0  # stream offset of self._buf[0]
        self.frames = 0
        self._error = None

    @property
    def pending(self):
        """Bytes held that do not yet make a whole record."""
        return len(self._buf)

    def feed(self, chunk):
        if self._error is not None:
            self._error.frames = []  # handed over with the first raise
            raise self._error
        buf = self._buf
        buf += chunk
        size = len(buf)
        out = []
        pos = 0
        while size - pos >= 14:
            if cython.compiled:
                p = cython.cast(cython.p_uchar, buf) + pos
                micros = ((cython.cast(cython.ulonglong, p[0]) << 56)
                          | (cython.cast(cython.ulonglong, p[1]) << 48)
                          | (cython.cast(cython.ulonglong, p[2]) << 40)
                          | (cython.cast(cython.ulonglong, p[3]) << 32)
                          | (cython.cast(cython.ulonglong, p[4]) << 24)
                          | (cython.cast(cython.ulonglong, p[5]) << 16)
                          | (cython.cast(cython.ulonglong, p[6]) << 8)
                          | cython.cast(cython.ulonglong, p[7]))
                can_id = ((cython.cast(cython.uint, p[8]) << 24) | (cython.cast(cython.uint, p[9]) << 16)
                          | (cython.cast(cython.uint, p[10]) << 8) | cython.cast(cython.uint, p[11]))
                flags = p[12]
                n = p[13]
            else:
                micros, can_id, flags, n = _unpack_header_from(buf, pos)
            if flags > 0x0F or n > 8:
                reason = _header_problem(can_id, flags, n)
                if reason is not None:
                    self._fail(reason, pos, out)
            if can_id > (0x1FFFFFFF if flags & 1 else 0x7FF) or ((flags & 0x0C) and not flags & 2):
                self._fail(_header_problem(can_id, flags, n), pos, out)
            end = pos + 14 + n
            if end > size:
                break
            if cython.compiled:
                out.append((micros, can_id, flags,
                            PyBytes_FromStringAndSize(cython.cast(cython.p_char, p + 14), n)))
            else:
                out.append((micros, can_id, flags, bytes(buf[pos + 14:end])))
            pos = end
        if pos:
            del buf[:pos]
            self.offset += pos
            self.frames += len(out)
        return out

    def finish(self):
        """Call at the end of the stream: raises if it ended inside a record."""
        if self._error is not None:
            self._error.frames = []
            raise self._error
        size = len(self._buf)
        if size:
            need = f"{14 + self._buf[13]}" if size >= 14 else "at least 14"
            raise WireFormatError(f"stream ended inside a record ({size} of {need} bytes)",
                                  self.offset, self._buf[:14])

    def _fail(self, reason, pos, frames):
        self.frames += len(frames)
        self._error = WireFormatError(reason, self.offset + pos, self._buf[pos:pos + 14],
                                      frames)
        raise self._error


def _header_problem(can_id, flags, n):
    """Why a record header is invalid, or None if it is valid."""
    if flags & 0xF0:
        return f"undefined flag bits set (flags 0x{flags:02x})"
    is_fd = bool(flags & FLAG_FD)
    if n > 8 and not is_fd:
        return f"payload length {n} on a classic CAN frame (more than 8 bytes needs the FD flag)"
    if not valid_length(n, is_fd):
        return f"payload length {n} is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)"
    if flags & (FLAG_BRS | FLAG_ESI) and not is_fd:
        return f"BRS/ESI flag on a classic CAN frame (flags 0x{flags:02x})"
    if flags & FLAG_EXT:
        if can_id > 0x1FFFFFFF:
            return f"29-bit id 0x{can_id:x} out of range (max 0x1fffffff)"
    elif can_id > 0x7FF:
        return f"11-bit id 0x{can_id:x} out of range (max 0x7ff; 29-bit ids need the EXT flag)"
    return None


def take_records(buf, start, limit):
    """Walk the whole records of ``buf`` from offset ``start``.

    Returns ``(end, count)``: the offset after the last record that keeps ``end - start``
    within ``limit`` bytes (one record at least, when one is whole) and how many records that
    is. Batchers cut a stream of records at record boundaries with it without decoding frames.
    """
    size = len(buf)
    pos = start
    count = 0
    while size - pos >= 14:
        end = pos + 14 + buf[pos + 13]
        if end > size or (end - start > limit and count):
            break
        pos = end
        count += 1
    return pos, count


def pack_frame(micros, can_id, flags, data):
    """One record from its fields (tests, the simulator and the SLCAN twin use it)."""
    return _HEADER.pack(micros, can_id, flags, len(data)) + bytes(data)
