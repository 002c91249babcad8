"""ECUconnect Logger records, and the CAN facts every part of cancorder shares.

One record per CAN frame, 14 + N bytes (wire-protocol.md in the shared docs):
    uint64 BE timestamp (us since the Unix epoch) | uint32 BE id | flags | N | payload
flags: bit0 EXT, bit1 FD, bit2 BRS, bit3 ESI; N is the payload length in bytes.

This module is the one home of the CAN limits (id ranges, the CAN FD length table, the flag
bits, the header size) and of ``write_header``; the SLCAN parser cimports it. It imports nothing
else of cancorder, so ``_fast`` stands alone.

Plain Python: wire.pxd gives it C types and setup.py compiles it with Cython when it can. The
same body runs in both builds: ``p`` is a C pointer when compiled and the bytearray itself in
pure Python, and indexing means the same for both.
"""
import struct

try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

HEADER_SIZE = 14
MAX_RECORD_SIZE = 78  # 14 + 64
FLAG_EXT = 0x01
FLAG_FD = 0x02
FLAG_BRS = 0x04
FLAG_ESI = 0x08
FLAGS_DEFINED = 0x0F
MAX_STANDARD_ID = 0x7FF
MAX_EXTENDED_ID = 0x1FFFFFFF
#: payload length in bytes by DLC code 0..15 (classic CAN stops at 8)
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)
#: one microsecond past the last timestamp a record can hold
MAX_TIMESTAMP_US = 1 << 64
# Hot loops copy these module constants into typed locals first (see the .pxd): compiled, a
# module constant is a Python object looked up by name at every use.

_HEADER = struct.Struct(">QIBB")
_unpack_header_from = _HEADER.unpack_from
_pack_header_into = _HEADER.pack_into


class WireFormatError(Exception):
    """A byte stream is not valid ECUconnect Logger records.

    ``offset`` is the stream offset of the first byte of the bad record, ``data`` the bytes
    shown as evidence (the header, or what there was of it), ``frames`` the good frames decoded
    from the same chunk before the bad record (a reader still shows and records them).
    Re-exported by cancorder.errors; the CLI shows it as one line and exits 3.
    """

    exit_code = 3

    def __init__(self, reason, offset, data=b"", frames=()):
        self.reason = reason
        self.offset = offset
        self.data = bytes(data)
        self.frames = list(frames)
        shown = " ".join(f"{b:02x}" for b in self.data[:32])
        super().__init__(f"malformed stream at byte {offset}: {reason}"
                         + (f" (bytes: {shown})" if shown else ""))


def valid_length(n, is_fd):
    """True if a payload of n bytes exists on the bus (n > 8 only on CAN FD)."""
    if n <= 8:
        return n >= 0
    return is_fd and (n == 12 or n == 16 or n == 20 or n == 24 or n == 32 or n == 48 or n == 64)


#: ascii -> hex digit value, 255 for anything that is not a hex digit (the text parsers' table)
HEX_VALUES = bytes(int(chr(c), 16) if chr(c) in "0123456789abcdefABCDEF" else 255
                   for c in range(256))


def hex_number(p, start, end, hexval):
    """The hex digits p[start:end] as a number, or -1 if one is not a hex digit (``hexval``:
    HEX_VALUES; compiled, ``p`` and ``hexval`` are pointers to the bytes). SLCAN lines and
    socketcand commands are read with it."""
    value = 0
    while start < end:
        v = hexval[p[start]]
        if v > 15:
            return -1
        value = (value << 4) | v
        start += 1
    return value


def write_hex(out, o, src, start, end, hexd):
    """Bytes src[start:end] as hex digits (``hexd``: the 16 digits) at out[o:]; returns the
    end. The text encoders (candump lines, socketcand frames) write a frame's data with it."""
    while start < end:
        out[o] = hexd[src[start] >> 4]
        out[o + 1] = hexd[src[start] & 0xF]
        o += 2
        start += 1
    return o


def write_hex_digits(out, o, value, digits, hexd):
    """``value`` as exactly ``digits`` hex digits at out[o:] (a CAN id: 3 or 8); returns the
    end."""
    k = digits - 1
    while k >= 0:
        out[o + k] = hexd[value & 0xF]
        value >>= 4
        k -= 1
    return o + digits


def max_id(flags):
    """The largest id a frame with these flags can carry."""
    return MAX_EXTENDED_ID if flags & FLAG_EXT else MAX_STANDARD_ID


def write_header(buf, pos, micros, can_id, flags, n):
    """Write a record header at ``buf[pos:pos + 14]``; returns where the payload starts."""
    if cython.compiled:
        return put_header(cython.cast(cython.p_uchar, buf), pos, micros, can_id, flags, n)
    return put_header(buf, pos, micros, can_id, flags, n)


def put_header(p, pos, micros, can_id, flags, n):
    """``write_header`` where the buffer's address is known (compiled: a pointer, inlined in
    the packer's loop; pure: the bytearray itself)."""
    if not cython.compiled:
        # the same 14 bytes as the stores below in one call instead of 14 Python stores, which
        # made the pure packer 2.5x slower (the compiled build drops this branch)
        _pack_header_into(p, pos, micros & 0xFFFFFFFFFFFFFFFF, can_id & 0xFFFFFFFF, flags, n)
        return pos + 14
    p[pos] = (micros >> 56) & 0xFF
    p[pos + 1] = (micros >> 48) & 0xFF
    p[pos + 2] = (micros >> 40) & 0xFF
    p[pos + 3] = (micros >> 32) & 0xFF
    p[pos + 4] = (micros >> 24) & 0xFF
    p[pos + 5] = (micros >> 16) & 0xFF
    p[pos + 6] = (micros >> 8) & 0xFF
    p[pos + 7] = micros & 0xFF
    p[pos + 8] = (can_id >> 24) & 0xFF
    p[pos + 9] = (can_id >> 16) & 0xFF
    p[pos + 10] = (can_id >> 8) & 0xFF
    p[pos + 11] = can_id & 0xFF
    p[pos + 12] = flags
    p[pos + 13] = n
    return pos + 14


class Packer:
    """Turns batches of python-can Messages into one bytes object of records.

    Counts what has no representation on the wire: remote frames, error frames, and frames
    that cannot exist (an id out of range, a length no CAN or CAN FD frame has) or cannot be
    stamped (a NaN or infinite timestamp, or one beyond 2^64 us); both twins count the same.
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
        ext_flag, fd_flag, brs_flag, esi_flag = FLAG_EXT, FLAG_FD, FLAG_BRS, FLAG_ESI
        max_std, max_ext = MAX_STANDARD_ID, MAX_EXTENDED_ID
        if cython.compiled:
            base = cython.cast(cython.p_uchar, buf)
        else:
            base = buf
        pos = 0
        i = 0
        # The try is around a run of frames, not each one: entering it per frame costs the
        # compiled packer 4 % (callgrind). Only the id's conversion to a C integer raises here.
        while i < count:
            try:
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
                    can_id = msg.arbitration_id  # compiled: beyond 64 bits raises OverflowError
                    if msg.is_extended_id:
                        flags = ext_flag
                        if can_id > max_ext or can_id < 0:
                            self.invalid += 1
                            continue
                    else:
                        flags = 0
                        if can_id > max_std or can_id < 0:
                            self.invalid += 1
                            continue
                    if msg.is_fd or n > 8:
                        flags |= fd_flag
                        if msg.bitrate_switch:
                            flags |= brs_flag
                        if msg.error_state_indicator:
                            flags |= esi_flag
                        if n > 8 and not valid_length(n, True):
                            self.invalid += 1
                            continue
                    stamp = msg.timestamp + offset
                    scaled = stamp * 1000000.0 + 0.5
                    # NaN, infinite (beyond the largest double), or at or beyond 2^64 us;
                    # literals, so that the compiled twin compares C doubles
                    if not -1.7976931348623157e308 <= scaled < 18446744073709551616.0:
                        self.invalid += 1
                        continue
                    if stamp <= 0.0:
                        micros = 0
                    elif cython.compiled:
                        micros = cython.cast(cython.ulonglong, scaled)
                    else:
                        micros = int(scaled)
                    if cython.compiled:
                        start = put_header(base, pos, micros, can_id, flags, n)
                    else:  # put_header's pure branch without the call (a fifth of the pure time)
                        _pack_header_into(buf, pos, micros, can_id, flags, n)
                        start = pos + 14
                    if n:
                        if cython.compiled:
                            src = cython.cast(cython.p_uchar, data) if type(data) is bytearray \
                                else cython.cast(cython.p_uchar, cython.cast(bytes, data))
                            memcpy(base + start, src, n)
                        else:
                            buf[start:start + n] = data
                    pos = start + n
                    self.packed += 1
            except OverflowError:  # compiled: an id beyond 64 bits cannot be one (pure: below)
                self.invalid += 1
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, buf), pos)
        return bytes(memoryview(buf)[:pos])


class RecordFilter:
    """Which frames pass: the ``ID:MASK`` rules of python-can and candump, OR'ed together.

    ``rules``: tuples ``(can_id, mask, extended, inverse)``. A frame matches a rule when
    ``frame_id & mask == can_id & mask`` and, if ``extended`` is True or False, its EXT flag
    agrees; an ``inverse`` rule (candump's ``ID~MASK``) passes the frames that do not match.
    A frame passes when any rule passes it. Built once (cancorder.filters parses the text);
    sources apply it in one place (Source.read), the SLCAN parser inside its compiled loop.
    """

    def __init__(self, rules):
        self.rules = tuple(rules)
        self._ids = [rule[0] & rule[1] for rule in self.rules]
        self._masks = [rule[1] for rule in self.rules]
        self._ext = [-1 if rule[2] is None else int(bool(rule[2])) for rule in self.rules]
        self._inverse = [bool(rule[3]) for rule in self.rules]
        self._count = len(self.rules)
        self.filtered = 0

    def passes(self, can_id, extended):
        """True if a frame with this id (and EXT flag) passes; counts those that do not."""
        i = 0
        while i < self._count:
            ext = self._ext[i]
            match = (can_id & self._masks[i]) == self._ids[i] and (ext < 0 or ext == extended)
            if match != self._inverse[i]:
                return True
            i += 1
        self.filtered += 1
        return False

    def apply(self, records):
        """The records that pass, as bytes (the same object when every one passes)."""
        size = len(records)
        if size == 0 or self._count == 0:
            return records
        src = records if type(records) is bytes else bytes(records)
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(bytes, src))
        else:
            p = src
        kept = bytearray()
        header, ext_flag = HEADER_SIZE, FLAG_EXT
        pos = 0
        keep_from = 0  # start of a run of passing records not yet copied
        dropped = False
        while pos + header <= size:
            # & 0x1F: a valid id has 29 bits, and the shift stays inside a C int
            can_id = ((p[pos + 8] & 0x1F) << 24) | (p[pos + 9] << 16) | (p[pos + 10] << 8) | p[pos + 11]
            end = pos + header + p[pos + 13]
            if not self.passes(can_id, p[pos + 12] & ext_flag):
                if pos > keep_from:
                    kept += src[keep_from:pos]
                keep_from = end
                dropped = True
            pos = end
        if not dropped:
            return src
        if keep_from < size:
            kept += src[keep_from:size]
        return bytes(kept)


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
        header, defined, ext_flag, fd_flag = HEADER_SIZE, FLAGS_DEFINED, FLAG_EXT, FLAG_FD
        brs_esi, max_std, max_ext = FLAG_BRS | FLAG_ESI, MAX_STANDARD_ID, MAX_EXTENDED_ID
        pos = 0
        while size - pos >= header:
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
            if flags > defined or n > 8:
                reason = _header_problem(can_id, flags, n)
                if reason is not None:
                    self._fail(reason, pos, out)
            if can_id > (max_ext if flags & ext_flag else max_std) or (
                    (flags & brs_esi) and not flags & fd_flag):
                self._fail(_header_problem(can_id, flags, n), pos, out)
            end = pos + header + n
            if end > size:
                break
            if cython.compiled:
                out.append((micros, can_id, flags,
                            PyBytes_FromStringAndSize(cython.cast(cython.p_char, p + 14), n)))
            else:
                out.append((micros, can_id, flags, bytes(buf[pos + header:end])))
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
            need = f"{HEADER_SIZE + self._buf[13]}" if size >= HEADER_SIZE else "at least 14"
            raise WireFormatError(f"stream ended inside a record ({size} of {need} bytes)",
                                  self.offset, self._buf[:HEADER_SIZE])

    def _fail(self, reason, pos, frames):
        self.frames += len(frames)
        self._error = WireFormatError(reason, self.offset + pos,
                                      self._buf[pos:pos + HEADER_SIZE], frames)
        raise self._error


def _header_problem(can_id, flags, n):
    """Why a record header is invalid, or None if it is valid."""
    if flags & ~FLAGS_DEFINED & 0xFF:
        return f"undefined flag bits set (flags 0x{flags:02x})"
    is_fd = bool(flags & FLAG_FD)
    if n > 8 and not is_fd:
        return f"payload length {n} on a classic CAN frame (more than 8 bytes needs the FD flag)"
    if not valid_length(n, is_fd):
        return f"payload length {n} is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)"
    if flags & (FLAG_BRS | FLAG_ESI) and not is_fd:
        return f"BRS/ESI flag on a classic CAN frame (flags 0x{flags:02x})"
    if flags & FLAG_EXT:
        if can_id > MAX_EXTENDED_ID:
            return f"29-bit id 0x{can_id:x} out of range (max 0x1fffffff)"
    elif can_id > MAX_STANDARD_ID:
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
    """One record from its fields (tests, the simulator, replay and relays use it).

    Raises OverflowError for a timestamp no record can hold."""
    if not 0 <= micros < MAX_TIMESTAMP_US:
        raise OverflowError(f"timestamp {micros} us does not fit a record")
    n = len(data)
    buf = bytearray(HEADER_SIZE + n)
    write_header(buf, 0, micros, can_id, flags, n)
    buf[HEADER_SIZE:] = data
    return bytes(buf)
