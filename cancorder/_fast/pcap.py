"""pcapng files straight from and to wire records: Wireshark's capture format for CAN.

Every frame is an Enhanced Packet Block of link type 227 (LINKTYPE_CAN_SOCKETCAN): the frame as
Linux's SocketCAN hands it to a capture (``struct can_frame``/``canfd_frame``), that is a
big-endian id carrying CAN_EFF_FLAG for extended ids, the payload length, a flags byte (CAN FD:
CANFD_FDF, with CANFD_BRS and CANFD_ESI), two reserved bytes and the payload, padded to the
frame's full size (16 bytes classic, 72 FD) as the kernel's own captures are, so that every
Wireshark tells classic from FD frames (old ones by the size, newer ones by CANFD_FDF).
Timestamps are microseconds (``if_tsresol`` 6); each channel is an Interface Description Block
named by the channel, so a fleet capture keeps its loggers apart.

``PcapngEncoder`` turns records into blocks in one compiled loop (no python-can Message per
frame); ``section_header`` and ``interface_block`` open a file and name a channel;
``PcapngParser`` reads blocks back into records (any byte order, any ``if_tsresol``, in any
chunking); ``block_ends`` tells where whole blocks end (a file cut back after a full disk).

Plain Python with a ``.pxd`` beside it, one body for both twins, like logfile.py. This module
imports nothing else of cancorder but ``_fast``.
"""
import struct

try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import HEADER_SIZE, MAX_EXTENDED_ID, MAX_STANDARD_ID, valid_length, write_header

if not cython.compiled:  # compiled, pcap.pxd cimports them: C calls
    from .logfile import _can_id, _record_end, _stamp

LINKTYPE_CAN_SOCKETCAN = 227
BLOCK_SECTION = 0x0A0D0D0A
BLOCK_INTERFACE = 1
BLOCK_ENHANCED_PACKET = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
# linux/can.h: the id's flag bits, and canfd_frame.flags
CAN_EFF_FLAG = 0x80000000
CAN_RTR_FLAG = 0x40000000
CAN_ERR_FLAG = 0x20000000
CANFD_BRS = 0x01
CANFD_ESI = 0x02
CANFD_FDF = 0x04
CAN_MTU = 16  # sizeof(struct can_frame)
CANFD_MTU = 72  # sizeof(struct canfd_frame)
#: an Enhanced Packet Block without its packet: type, length, interface, time high and low,
#: captured and original length ... and the length again at its end
_EPB_HEAD = 28
_EPB_SIZE_MAX = _EPB_HEAD + CANFD_MTU + 4
_HEADER = HEADER_SIZE  # C constants in the compiled loops (pcap.pxd)
_CAN_MTU = CAN_MTU
_CANFD_MTU = CANFD_MTU
_OPT_END = 0
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_MICROSECONDS = 6  # if_tsresol: 10^-6 s


def _option(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\0" * ((4 - len(value) % 4) % 4)


def _block(kind, body):
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def section_header():
    """The Section Header Block a file starts with (little-endian, length unknown)."""
    return _block(BLOCK_SECTION, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1))


def interface_block(name):
    """The Interface Description Block of one channel: SocketCAN frames, microseconds, and
    the channel's name (any text, as UTF-8)."""
    options = (_option(_OPT_IF_NAME, name.encode("utf-8"))
               + _option(_OPT_IF_TSRESOL, bytes((_MICROSECONDS,)))
               + struct.pack("<HH", _OPT_END, 0))
    return _block(BLOCK_INTERFACE, struct.pack("<HHI", LINKTYPE_CAN_SOCKETCAN, 0, CANFD_MTU)
                  + options)


def _put32(dst, o, value):
    """``value`` as a little-endian uint32 at ``dst[o]``."""
    dst[o] = value & 0xFF
    dst[o + 1] = (value >> 8) & 0xFF
    dst[o + 2] = (value >> 16) & 0xFF
    dst[o + 3] = (value >> 24) & 0xFF


class PcapngEncoder:
    """Records -> Enhanced Packet Blocks of one interface (``encode(records, interface)``).
    ``frames`` counts the blocks written."""

    def __init__(self):
        self._buffer = bytearray(64 * _EPB_SIZE_MAX)
        self.frames = 0

    def encode(self, records, interface):
        size = len(records)
        need = (size // _HEADER + 1) * _EPB_SIZE_MAX
        if len(self._buffer) < need:
            self._buffer = bytearray(need)
        if cython.compiled:
            src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
            dst = cython.cast(cython.p_uchar, self._buffer)
        else:
            src = records
            dst = self._buffer
        pos = 0
        o = 0
        count = 0
        while size - pos >= _HEADER:
            end = _record_end(src, pos, size)
            micros = _stamp(src, pos)
            can_id = _can_id(src, pos)
            flags = src[pos + 12]
            n = src[pos + 13]
            mtu = _CANFD_MTU if flags & 2 else _CAN_MTU
            length = _EPB_HEAD + mtu + 4
            _put32(dst, o, BLOCK_ENHANCED_PACKET)
            _put32(dst, o + 4, length)
            _put32(dst, o + 8, interface)
            _put32(dst, o + 12, (micros >> 32) & 0xFFFFFFFF)
            _put32(dst, o + 16, micros & 0xFFFFFFFF)
            _put32(dst, o + 20, mtu)
            _put32(dst, o + 24, mtu)
            p = o + _EPB_HEAD
            if flags & 1:
                can_id |= 0x80000000  # CAN_EFF_FLAG
            dst[p] = (can_id >> 24) & 0xFF  # the id is big-endian (network order)
            dst[p + 1] = (can_id >> 16) & 0xFF
            dst[p + 2] = (can_id >> 8) & 0xFF
            dst[p + 3] = can_id & 0xFF
            dst[p + 4] = n
            fd_flags = 0
            if flags & 2:
                fd_flags = 0x04  # CANFD_FDF
                if flags & 4:
                    fd_flags |= 0x01  # CANFD_BRS
                if flags & 8:
                    fd_flags |= 0x02  # CANFD_ESI
            dst[p + 5] = fd_flags
            dst[p + 6] = 0
            dst[p + 7] = 0
            i = 0
            while i < n:
                dst[p + 8 + i] = src[pos + _HEADER + i]
                i += 1
            i = 8 + n
            while i < mtu:  # the kernel's frame is whole: the bytes after the payload are 0
                dst[p + i] = 0
                i += 1
            _put32(dst, p + mtu, length)
            o += length
            count += 1
            pos = end
        if pos != size:
            raise ValueError(f"records end inside a record (byte {pos} of {size})")
        self.frames += count
        return bytes(memoryview(self._buffer)[:o])


def _get32(src, pos, big):
    if big:
        return (src[pos] << 24) | (src[pos + 1] << 16) | (src[pos + 2] << 8) | src[pos + 3]
    return (src[pos + 3] << 24) | (src[pos + 2] << 16) | (src[pos + 1] << 8) | src[pos]


def block_ends(data):
    """[(end, Enhanced Packet Blocks up to there)] of the whole blocks of a pcapng file's
    ``data`` from its start (little- or big-endian, as its first block says)."""
    size = len(data)
    big = size >= 12 and data[8:12] == b"\x1a\x2b\x3c\x4d"
    if cython.compiled:
        src = cython.cast(cython.p_uchar, cython.cast(bytes, data))
    else:
        src = data
    ends = []
    pos = 0
    frames = 0
    while size - pos >= 12:
        kind = _get32(src, pos, big)
        length = _get32(src, pos + 4, big)
        if length < 12 or length % 4 or pos + length > size:
            break
        if kind == BLOCK_ENHANCED_PACKET:
            frames += 1
        pos += length
        ends.append((pos, frames))
    return ends


class PcapngParser:
    """pcapng blocks -> records, in any chunking (``feed``; ``finish`` at the end).

    Frames of link type 227 (SocketCAN) become records; remote and error frames are counted
    (``remote``, ``error``) and skipped, as are the packets of other link types and CAN XL
    frames (``other``). ``channel`` (bytes) keeps only the frames of the interface of that name
    (``other_channel`` counts the rest); an interface without a name is called by its number.
    ``first_channel`` and ``runs`` are CandumpParser's (the interface names). Damage stops the
    parser: ``feed`` returns the records before it and sets ``error_reason`` and
    ``error_offset`` (the byte where the damaged block starts)."""

    def __init__(self, channel=None):
        self._want = channel
        self._tail = b""
        self.offset = 0  # bytes of whole blocks consumed
        self.frames = 0
        self.remote = 0
        self.error = 0
        self.other = 0
        self.other_channel = 0
        self.first_channel = b""
        self.runs = []
        self.error_reason = None
        self.error_offset = 0
        self._big = False
        self._started = False
        self._interfaces = []  # per interface: [name, link type, ticks per second]
        self._run_interface = -1
        self._out = bytearray(64 * (_HEADER + 64))

    def feed(self, chunk, final=False):
        self.runs = []
        if self.error_reason is not None:
            return b""
        data = self._tail + chunk if self._tail else bytes(chunk)
        size = len(data)
        need = (size // 16 + 1) * (_HEADER + 64)  # a packet block holds at most one record
        if len(self._out) < need:
            self._out = bytearray(need)
        if cython.compiled:
            src = cython.cast(cython.p_uchar, cython.cast(bytes, data))
        else:
            src = data
        o = 0
        pos = 0
        while size - pos >= 12:
            if not self._started:
                if _get32(src, pos, False) != BLOCK_SECTION:
                    self._fail("not a pcapng file (it does not start with a Section Header "
                               "Block)", pos)
                    break
            if _get32(src, pos, False) == BLOCK_SECTION:  # its own byte order: the magic's
                if _get32(src, pos + 8, False) == BYTE_ORDER_MAGIC:
                    self._big = False
                elif _get32(src, pos + 8, True) == BYTE_ORDER_MAGIC:
                    self._big = True
                else:
                    self._fail("a Section Header Block without the byte-order magic", pos)
                    break
            big = self._big
            kind = _get32(src, pos, big)
            length = _get32(src, pos + 4, big)
            if length < 12 or length % 4 != 0:
                self._fail(f"a block of length {length} (a multiple of 4 from 12 up)", pos)
                break
            if size - pos < length:
                break  # the rest of the block comes with the next chunk
            if _get32(src, pos + length - 4, big) != length:
                self._fail("a block whose two lengths differ", pos)
                break
            if kind == BLOCK_ENHANCED_PACKET:
                o = self._packet(src, pos, length, big, o, data)
                if self.error_reason is not None:
                    break
            elif kind == BLOCK_SECTION:
                self._started = True
                self._interfaces = []
            elif kind == BLOCK_INTERFACE:
                if length < 20:
                    self._fail("an Interface Description Block cut short", pos)
                    break
                self._interfaces.append(_describe_interface(data[pos:pos + length], big,
                                                            len(self._interfaces)))
            pos += length
        self._tail = data[pos:] if self.error_reason is None else b""
        self.offset += pos
        if final and self._tail and self.error_reason is None:
            self._fail("the file ends inside a block (a truncated file: the frames after it "
                       "are missing)", pos)
            self._tail = b""
        return bytes(memoryview(self._out)[:o])

    def _packet(self, src, pos, length, big, o, data):
        """One Enhanced Packet Block at ``pos``: its record written at ``o``; returns the new
        end of the output."""
        if length < _EPB_HEAD + 4 + 8:
            self.other += 1  # no room for a SocketCAN frame: no CAN frame
            return o
        interface = _get32(src, pos + 8, big)
        if interface >= len(self._interfaces):
            self._fail(f"a packet of interface {interface}, which no Interface Description "
                       "Block describes", pos)
            return o
        name, linktype, ticks = self._interfaces[interface]
        captured = _get32(src, pos + 20, big)
        if linktype != LINKTYPE_CAN_SOCKETCAN:
            self.other += 1
            return o
        if captured + _EPB_HEAD + 4 > length or captured < 8:
            self._fail("a packet longer than its block, or shorter than a CAN frame", pos)
            return o
        p = pos + _EPB_HEAD
        can_id = (src[p] << 24) | (src[p + 1] << 16) | (src[p + 2] << 8) | src[p + 3]
        n = src[p + 4]
        fd_flags = src[p + 5]
        if captured == CANFD_MTU and not fd_flags & CANFD_FDF and n > 8:
            fd_flags |= CANFD_FDF  # a capture from before CANFD_FDF: told by its size
        if fd_flags & 0x80:  # CANXL_XLF: a CAN XL frame, which no record holds
            self.other += 1
            return o
        if can_id & CAN_RTR_FLAG:
            self.remote += 1
            return o
        if can_id & CAN_ERR_FLAG:
            self.error += 1
            return o
        extended = can_id & CAN_EFF_FLAG
        can_id &= MAX_EXTENDED_ID
        fd = fd_flags & CANFD_FDF
        if not extended and can_id > MAX_STANDARD_ID:
            self._fail(f"a standard id 0x{can_id:X} beyond 0x7FF", pos)
            return o
        if 8 + n > captured or not valid_length(n, fd != 0):
            self._fail(f"a frame of {n} data bytes, which a {'CAN FD' if fd else 'classic'} "
                       f"frame cannot be or its {captured}-byte packet cannot hold", pos)
            return o
        if self._want is not None and name != self._want:
            self.other_channel += 1
            return o
        high = _get32(src, pos + 12, big)  # 64 bits wide when compiled (pcap.pxd)
        stamp = (high << 32) | _get32(src, pos + 16, big)
        if ticks == 1000000:
            micros = stamp
        else:  # in Python's integers: nanoseconds times a million overflow 64 bits
            micros = _microseconds(stamp, ticks)
        flags = (1 if extended else 0)
        if fd:
            flags |= 2 | (4 if fd_flags & CANFD_BRS else 0) | (8 if fd_flags & CANFD_ESI else 0)
        if not self.first_channel:
            self.first_channel = name
        if o == 0 or interface != self._run_interface:
            self._run_interface = interface
            self.runs.append((o, name))
        o = write_header(self._out, o, micros, can_id, flags, n)
        self._out[o:o + n] = data[p + 8:p + 8 + n]
        self.frames += 1
        return o + n

    def _fail(self, reason, pos):
        self.error_reason = reason
        self.error_offset = self.offset + pos

    def finish(self):
        """The end of the file: damage if it ends inside a block."""
        return self.feed(b"", final=True)


def _microseconds(stamp, ticks):
    return stamp * 1000000 // ticks


def _describe_interface(block, big, number):
    """[name (bytes), link type, timestamp ticks per second] of an Interface Description
    Block."""
    order = ">" if big else "<"
    linktype = struct.unpack_from(order + "H", block, 8)[0]
    name = b""
    ticks = 1000000  # no if_tsresol: microseconds
    pos = 16
    while pos + 4 <= len(block) - 4:
        code, size = struct.unpack_from(order + "HH", block, pos)
        value = block[pos + 4:pos + 4 + size]
        if code == _OPT_END:
            break
        if code == _OPT_IF_NAME:
            name = value.rstrip(b"\0")
        elif code == _OPT_IF_TSRESOL and size >= 1:
            resolution = value[0]
            ticks = 2 ** (resolution & 0x7F) if resolution & 0x80 else 10 ** resolution
        pos += 4 + size + (4 - size % 4) % 4  # (no negative modulo: cdivision)
    return [name or str(number).encode(), linktype, ticks]
