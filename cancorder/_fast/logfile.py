"""Log files straight from and to wire records: the recorder's and replay's hot loops.

``CandumpEncoder`` writes can-utils log lines (``(1700000000.123456) can0 123#01FF``, FD
``123##1<data>``) from records, ``CandumpParser`` turns such lines back into records: neither
builds a python-can Message or a tuple per frame. ``Retimer`` and the record helpers shift and
cut record batches for replay (filters are wire.RecordFilter's).

This is plain Python with a ``.pxd`` beside it (compiled by setup.py, like wire.py). The two
twins share one body: only the setup differs, where the compiled one takes C pointers into the
bytes and the pure one indexes the same objects (``bytes[i]`` is an int in both worlds).
Records handed in are whole records from a cancorder source; a record cut short raises
ValueError. This module imports nothing else of cancorder (errors are raised by the callers).
"""
try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import HEADER_SIZE, MAX_RECORD_SIZE, valid_length, write_header

if not cython.compiled:  # compiled, logfile.pxd cimports them: C calls
    from .wire import write_hex, write_hex_digits

_HEADER = HEADER_SIZE  # a C constant in the compiled loops (logfile.pxd)
_HEX = b"0123456789ABCDEF"
#: longest line for one record, without the channel: "(" 20 digits "." 6 ") " " " 8 "##" 1
#: 128 hex digits "\n"
_LINE_MAX = 1 + 20 + 1 + 6 + 2 + 1 + 8 + 2 + 1 + 128 + 1
_CAN_ERR_FLAG = 0x20000000


def _stamp(src, pos):
    """The record's timestamp (big-endian uint64 at ``pos``)."""
    value = 0  # unsigned 64-bit when compiled: the shifts stay in range
    i = 0
    while i < 8:
        value = (value << 8) | src[pos + i]
        i += 1
    return value


def _can_id(src, pos):
    """The record's id (big-endian uint32 at ``pos + 8``)."""
    value = 0
    i = 8
    while i < 12:
        value = (value << 8) | src[pos + i]
        i += 1
    return value


def _record_end(src, pos, size):
    end = pos + _HEADER + src[pos + 13]
    if end > size:
        raise ValueError(f"records end inside a record (byte {pos} of {size})")
    return end


class CandumpEncoder:
    """Records -> candump log lines (bytes: ASCII, the channel name UTF-8), as python-can's
    CanutilsLogReader and can-utils' canplayer read them. ``frames`` counts the lines written."""

    def __init__(self, channel="can0"):
        self._channel = channel.encode("utf-8")  # any name a user gives, as UTF-8 text
        self._buffer = bytearray(64 * (_LINE_MAX + len(self._channel)))
        self.frames = 0

    def encode(self, records):
        size = len(records)
        nchan = len(self._channel)
        need = (size // _HEADER + 1) * (_LINE_MAX + nchan)
        if len(self._buffer) < need:
            self._buffer = bytearray(need)
        if cython.compiled:
            src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
            dst = cython.cast(cython.p_uchar, self._buffer)
            hexd = cython.cast(cython.p_uchar, cython.cast(bytes, _HEX))
            chan = cython.cast(cython.p_uchar, self._channel)
        else:
            src = records
            dst = self._buffer
            hexd = _HEX
            chan = self._channel
        digits = bytearray(20) if not cython.compiled else None
        pos = 0
        o = 0
        count = 0
        while size - pos >= _HEADER:
            end = _record_end(src, pos, size)
            micros = _stamp(src, pos)
            can_id = _can_id(src, pos)
            flags = src[pos + 12]
            seconds = micros // 1000000
            fraction = micros % 1000000
            dst[o] = 0x28  # (
            o += 1
            # the seconds' digits, most significant first
            k = 0
            while True:
                if cython.compiled:
                    tmp[k] = 0x30 + seconds % 10
                else:
                    digits[k] = 0x30 + seconds % 10
                k += 1
                seconds //= 10
                if seconds == 0:
                    break
            while k > 0:
                k -= 1
                dst[o] = tmp[k] if cython.compiled else digits[k]
                o += 1
            dst[o] = 0x2E  # .
            o += 1
            i = 5
            while i >= 0:
                dst[o + i] = 0x30 + fraction % 10
                fraction //= 10
                i -= 1
            o += 6
            dst[o] = 0x29  # )
            dst[o + 1] = 0x20
            o += 2
            i = 0
            while i < nchan:
                dst[o + i] = chan[i]
                i += 1
            o += nchan
            dst[o] = 0x20
            o += 1
            o = write_hex_digits(dst, o, can_id, 8 if flags & 1 else 3, hexd)
            dst[o] = 0x23  # #
            o += 1
            if flags & 2:
                dst[o] = 0x23
                dst[o + 1] = hexd[((flags >> 2) & 1) | ((flags >> 2) & 2)]  # BRS 1, ESI 2
                o += 2
            o = write_hex(dst, o, src, pos + _HEADER, end, hexd)
            dst[o] = 0x0A
            o += 1
            count += 1
            pos = end
        if pos != size:
            raise ValueError(f"records end inside a record (byte {pos} of {size})")
        self.frames += count
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, dst), o)
        return bytes(memoryview(dst)[:o])


def count_records(records):
    """How many records ``records`` holds (for counting what could not be recorded)."""
    size = len(records)
    if cython.compiled:
        src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
    else:
        src = records
    pos = 0
    count = 0
    while size - pos >= _HEADER:
        pos = _record_end(src, pos, size)
        count += 1
    return count


def whole_prefix(records, start, limit):
    """End offset of the whole records from ``start`` that fit in ``limit`` bytes (at least
    one record, whatever its size): cuts a large batch at record boundaries."""
    size = len(records)
    if cython.compiled:
        src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
    else:
        src = records
    pos = start
    while size - pos >= _HEADER:
        end = _record_end(src, pos, size)
        if end - start > limit and pos > start:
            break
        pos = end
    return pos


def first_stamp(records, start=0):
    """The timestamp of the record at byte ``start`` (``records`` must hold one there)."""
    if start < 0 or len(records) - start < _HEADER:
        raise ValueError("no record")
    if cython.compiled:
        return _stamp(cython.cast(cython.p_uchar, cython.cast(bytes, records)), start)
    return _stamp(records, start)


def due_prefix(records, limit_us, start=0):
    """Where the records from byte ``start`` whose timestamp is at most ``limit_us`` end
    (``start`` itself when the first is later): with ``start`` 0, their byte length."""
    size = len(records)
    if cython.compiled:
        src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
    else:
        src = records
    pos = start
    while size - pos >= _HEADER:
        if _stamp(src, pos) > limit_us:
            break
        pos = _record_end(src, pos, size)
    return pos


class Retimer:
    """Maps recorded timestamps onto a new timeline: the gaps between frames are kept
    (divided by ``speed``; silences longer than ``max_gap_us`` shortened to it when it is more
    than 0), starting at ``start_us``. A timestamp that goes backwards counts as no gap."""

    def __init__(self, start_us, speed=1.0, max_gap_us=0):
        self.speed = speed
        self.max_gap_us = max_gap_us
        self.out_us = start_us  # the new time of the last record
        self.src_us = 0  # the recorded time of the last record
        self._started = False  # src_us holds one
        self._carry = 0.0  # fractions of a microsecond the division left over

    def restart(self):
        """The next record follows the last one without a gap (a --loop starting again)."""
        self._started = False

    def retime(self, records):
        """A copy of ``records`` with every timestamp mapped onto the new timeline."""
        size = len(records)
        out = bytearray(records)
        if cython.compiled:
            src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
        else:
            src = records
        pos = 0
        while size - pos >= _HEADER:
            end = _record_end(src, pos, size)
            stamp = _stamp(src, pos)
            if self._started and stamp > self.src_us:
                gap = stamp - self.src_us
                if 0 < self.max_gap_us < gap:
                    gap = self.max_gap_us
                scaled = gap / self.speed + self._carry
                whole = cython.cast(cython.longlong, scaled) if cython.compiled else int(scaled)
                self._carry = scaled - whole
                self.out_us += whole
            self.src_us = stamp
            self._started = True
            # the same header with the new time
            write_header(out, pos, self.out_us, _can_id(src, pos), src[pos + 12],
                         src[pos + 13])
            pos = end
        return bytes(out)


class CandumpParser:
    """candump log lines -> records, in any chunking (``feed``; ``finish`` at the end).

    ``channel`` (bytes) keeps only the lines of that channel (``other_channel`` counts the
    rest). Remote frames and error frames are counted (``remote``, ``error``) and skipped.
    A line that is not a candump frame stops the parser: ``feed`` returns the records of the
    lines before it and sets ``error`` (what is wrong) and ``error_line`` (its number, from 1).
    candump writes no blank lines: one between two lines (a frame line lost) is such damage;
    blank lines before the first line and after the last are not.
    ``first_channel`` is the channel name of the first frame line (bytes, b"" before one).
    ``runs`` tells the channels of what the last ``feed`` returned: ``(offset, name)`` where a
    run of records of one channel starts (a multi-channel log shown per channel).
    """

    def __init__(self, channel=None):
        self._want = channel
        self._tail = b""
        self.line = 0  # lines consumed
        self.frames = 0
        self.remote = 0
        self.error = 0
        self.other_channel = 0
        self.first_channel = b""
        self.runs = []
        self._run_channel = b""
        self.error_reason = None
        self.error_line = 0
        self._out = bytearray(64 * MAX_RECORD_SIZE)
        self._blank_line = 0  # the first blank line since the last line with text (0: none)
        self._started = False  # a line with text was read

    def feed(self, chunk, final=False):
        self.runs = []
        if self.error_reason is not None:
            return b""
        data = self._tail + chunk if self._tail else bytes(chunk)
        size = len(data)
        if not final:
            last = data.rfind(b"\n")
            stop = last + 1
        else:
            stop = size
        self._tail = data[stop:]
        # every line of at least 10 bytes gives at most one record
        need = (stop // 10 + 1) * MAX_RECORD_SIZE
        if len(self._out) < need:
            self._out = bytearray(need)
        if cython.compiled:
            src = cython.cast(cython.p_uchar, cython.cast(bytes, data))
            dst = cython.cast(cython.p_uchar, self._out)
        else:
            src = data
            dst = self._out
        o = 0
        pos = 0
        while pos < stop:
            eol = pos
            while eol < stop and src[eol] != 0x0A:
                eol += 1
            self.line += 1
            end = eol
            while end > pos and (src[end - 1] == 0x0D or src[end - 1] == 0x20
                                 or src[end - 1] == 0x09):
                end -= 1
            p = pos
            while p < end and (src[p] == 0x20 or src[p] == 0x09):
                p += 1
            next_pos = eol + 1
            seconds = fraction = can_id = 0
            chan_start = chan_end = n = flags = 0
            remote = False
            if p == end:  # blank line: damage if another line follows (see finish)
                if self._started and self._blank_line == 0:
                    self._blank_line = self.line
                pos = next_pos
                continue
            self._started = True
            if self._blank_line != 0:
                self.error_reason = ("a blank line between two frame lines (candump writes "
                                     "none: a frame line was lost there)")
                self.error_line = self._blank_line
                self._tail = b""
                break
            reason = None
            # "(" seconds "." fraction ")"
            if src[p] != 0x28:
                reason = "expected '(' and a timestamp at the start of the line"
            else:
                p += 1
                seconds = 0
                ndig = 0
                while p < end and 0x30 <= src[p] <= 0x39 and ndig < 19:
                    seconds = seconds * 10 + (src[p] - 0x30)
                    p += 1
                    ndig += 1
                fraction = 0
                nfrac = 0
                if p < end and src[p] == 0x2E:
                    p += 1
                    while p < end and 0x30 <= src[p] <= 0x39:
                        if nfrac < 6:
                            fraction = fraction * 10 + (src[p] - 0x30)
                            nfrac += 1
                        p += 1
                while nfrac < 6:
                    fraction *= 10
                    nfrac += 1
                if ndig == 0 or p >= end or src[p] != 0x29:
                    reason = "the timestamp is not (seconds.fraction)"
            if reason is None:
                p += 1
                while p < end and (src[p] == 0x20 or src[p] == 0x09):
                    p += 1
                chan_start = p
                while p < end and src[p] != 0x20 and src[p] != 0x09:
                    p += 1
                chan_end = p
                while p < end and (src[p] == 0x20 or src[p] == 0x09):
                    p += 1
                if chan_end == chan_start or p >= end:
                    reason = "expected a channel name and a frame after the timestamp"
            if reason is None:
                id_start = p
                can_id = 0
                while p < end and src[p] != 0x23:
                    v = _hex_value(src[p])
                    if v < 0:
                        break
                    can_id = (can_id << 4) | v
                    p += 1
                id_len = p - id_start
                if p >= end or src[p] != 0x23 or id_len == 0 or id_len > 8:
                    reason = "expected a hex id and '#' (ID#DATA)"
            if reason is None:
                p += 1
                flags = 1 if id_len > 3 else 0
                remote = False
                if p < end and src[p] == 0x23:  # ## : CAN FD, then one hex digit of flags
                    p += 1
                    v = _hex_value(src[p]) if p < end else -1
                    if v < 0:
                        reason = "expected the CAN FD flags digit after '##'"
                    else:
                        flags |= 2 | (4 if v & 1 else 0) | (8 if v & 2 else 0)
                        p += 1
                elif p < end and (src[p] == 0x52 or src[p] == 0x72):  # R: remote frame
                    remote = True
            if reason is None and not remote:
                data_start = o + _HEADER
                n = 0
                while p + 1 < end and src[p] != 0x20 and src[p] != 0x09:
                    hi = _hex_value(src[p])
                    lo = _hex_value(src[p + 1])
                    if hi < 0 or lo < 0 or n >= 64:
                        break
                    dst[data_start + n] = (hi << 4) | lo
                    n += 1
                    p += 2
                # what may follow the data: nothing, or a direction " R"/" T"
                if p < end and src[p] != 0x20 and src[p] != 0x09:
                    reason = "the data is not pairs of hex digits"
                elif n > 8 and not flags & 2:
                    reason = f"{n} data bytes on a classic CAN frame (more than 8 needs '##')"
                elif not valid_length(n, flags & 2):
                    reason = f"{n} data bytes is not a CAN FD length"
            if reason is not None:
                self.error_reason = reason
                self.error_line = self.line
                self._tail = b""
                break
            if remote:
                self.remote += 1
            elif can_id & _CAN_ERR_FLAG and flags & 1:
                self.error += 1
            elif not self._channel_wanted(data, chan_start, chan_end):
                self.other_channel += 1
            else:
                if not self.first_channel:
                    self.first_channel = data[chan_start:chan_end]
                if o == 0 or not self._same_as_run(data, chan_start, chan_end):
                    self._run_channel = data[chan_start:chan_end]
                    self.runs.append((o, self._run_channel))
                micros = seconds * 1000000 + fraction
                o = write_header(self._out, o, micros, can_id, flags, n) + n
                self.frames += 1
            pos = next_pos
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, dst), o)
        return bytes(memoryview(dst)[:o])

    def _channel_wanted(self, data, start, end):
        want = self._want
        if want is None:
            return True
        if end - start != len(want):
            return False
        return data[start:end] == want

    def _same_as_run(self, data, start, end):
        """The channel name at ``data[start:end]`` is the current run's (no slice per frame)."""
        run = self._run_channel
        n = end - start
        if n != len(run):
            return False
        i = 0
        while i < n:
            if data[start + i] != run[i]:
                return False
            i += 1
        return True

    def finish(self):
        """The last line, if it had no newline; an empty result if there was none."""
        if not self._tail:
            return b""
        return self.feed(b"", final=True)


def _hex_value(c):
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x41 <= c <= 0x46:
        return c - 0x37
    if 0x61 <= c <= 0x66:
        return c - 0x57
    return -1


# ---- BLF (Vector's Binary Logging Format), the objects as python-can's can/io/blf.py and
# Vector's tools read them ----

#: uncompressed bytes of objects in one LOG_CONTAINER (python-can's writer and Vector's)
BLF_CONTAINER_BYTES = 128 * 1024
BLF_CAN_MESSAGE2 = 86
BLF_CAN_FD_MESSAGE_64 = 101
_BLF_HEADER = 32  # an object's base header ("LOBJ", sizes, type: 16) and its header v1 (16)
_BLF_MESSAGE2 = _BLF_HEADER + 24  # channel, flags, dlc, id, 8 data bytes, frame length, bits
_BLF_FD64 = _BLF_HEADER + 40  # its fields, then as many data bytes as the frame has
_BLF_MAX_OBJECT = _BLF_FD64 + 64 + 3
_BLF_TIME_ONE_NANS = 2  # the header's timestamp is in nanoseconds
_BLF_EXT = 0x80000000  # a 29-bit id
_BLF_FD_EDL = 0x1000  # CAN_FD_MESSAGE_64's flags: a CAN FD frame,
_BLF_FD_BRS = 0x2000  # its bit rate switched,
_BLF_FD_ESI = 0x4000  # its sender error-passive
#: after the last moment a BLF can hold: its file header dates the start by calendar, which
#: ends in the year 9999
BLF_LAST_US = 253402300800 * 1000000
BLF_FIRST_DATED_US = 631152000 * 1000000  # 1990-01-01: python-can's first date in a header


def _put_le(dst, o, value, n):
    """``value`` as ``n`` little-endian bytes at ``dst[o]``."""
    i = 0
    while i < n:
        dst[o + i] = value & 0xFF
        value >>= 8
        i += 1


def _fd_dlc(n):
    if n <= 8:
        return n
    if n <= 24:
        return 6 + n // 4  # 12 16 20 24 -> 9 10 11 12
    return 13 if n == 32 else (14 if n == 48 else 15)


class BlfEncoder:
    """Records -> BLF objects, one container's worth at a time, without a python-can Message
    per frame: a CAN_MESSAGE2 per classic frame, a CAN_FD_MESSAGE_64 per CAN FD frame (its
    FD, BRS and ESI flags), each with a version-1 header stamped in nanoseconds after the
    file's start (the first frame's time, cut to the millisecond the file header holds:
    ``start_us``), channel ``channel`` (BLF counts from 1), received.

    ``add(records, start)`` encodes records from byte ``start`` until they end or the container
    is full (``full()``) and returns where it stopped; ``take()`` hands over the container's
    objects (uncompressed: the caller compresses and writes them) and empties it; ``frames``
    is what it holds, ``objects`` every frame encoded. A frame stamped at or after ``last_us``
    is not written, and counted in ``unholdable``."""

    def __init__(self, channel=1, last_us=BLF_LAST_US):
        self.channel = channel
        self.last_us = last_us
        self._buffer = bytearray(BLF_CONTAINER_BYTES)
        self.size = 0
        self.frames = 0
        self.started = False
        self.start_us = 0
        self.stop_us = 0
        self.objects = 0
        self.unholdable = 0

    def add(self, records, start=0):
        size = len(records)
        if cython.compiled:
            src = cython.cast(cython.p_uchar, cython.cast(bytes, records))
            dst = cython.cast(cython.p_uchar, self._buffer)
        else:
            src = records
            dst = self._buffer
        channel = self.channel
        limit = BLF_CONTAINER_BYTES - _BLF_MAX_OBJECT
        pos = start
        o = self.size
        count = 0
        while size - pos >= _HEADER and o <= limit:
            end = _record_end(src, pos, size)
            micros = _stamp(src, pos)
            if micros >= self.last_us:
                self.unholdable += 1
                pos = end
                continue
            if not self.started:
                self.started = True
                # a start before 1990 is no date (python-can writes the header's start as
                # zeros then): such stamps are counted from 0, so that they read back as
                # they were
                self.start_us = micros - micros % 1000 if micros >= BLF_FIRST_DATED_US else 0
            self.stop_us = micros
            offset_ns = (micros - self.start_us) * 1000 if micros > self.start_us else 0
            can_id = _can_id(src, pos)
            flags = src[pos + 12]
            n = end - pos - _HEADER
            if flags & 1:
                can_id |= _BLF_EXT
            if flags & 2:
                obj = _BLF_FD64 + n
                o = _blf_object_header(dst, o, obj, BLF_CAN_FD_MESSAGE_64, offset_ns)
                dst[o] = channel & 0xFF
                dst[o + 1] = _fd_dlc(n)
                dst[o + 2] = n
                dst[o + 3] = 0  # tx count
                _put_le(dst, o + 4, can_id, 4)
                _put_le(dst, o + 8, 0, 4)  # frame length (ns on the bus): unknown
                fd_flags = _BLF_FD_EDL
                if flags & 4:
                    fd_flags |= _BLF_FD_BRS
                if flags & 8:
                    fd_flags |= _BLF_FD_ESI
                _put_le(dst, o + 12, fd_flags, 4)
                # bit timings, time offsets, bit count, direction (0: received), extended
                # data offset (0: none), CRC
                i = 16
                while i < 40:
                    dst[o + i] = 0
                    i += 1
                o += 40
                i = 0
                while i < n:
                    dst[o + i] = src[pos + _HEADER + i]
                    i += 1
                o += n
                i = obj % 4  # padding after the object, as the readers skip it
                while i > 0:
                    dst[o] = 0
                    o += 1
                    i -= 1
            else:
                if n > 8:
                    raise ValueError(f"a classic frame of {n} bytes (byte {pos} of {size})")
                o = _blf_object_header(dst, o, _BLF_MESSAGE2, BLF_CAN_MESSAGE2, offset_ns)
                _put_le(dst, o, channel, 2)
                dst[o + 2] = 0  # flags: received, not remote
                dst[o + 3] = n
                _put_le(dst, o + 4, can_id, 4)
                i = 0
                while i < n:
                    dst[o + 8 + i] = src[pos + _HEADER + i]
                    i += 1
                while i < 16:  # the rest of the 8 data bytes, frame length, bit count
                    dst[o + 8 + i] = 0
                    i += 1
                o += 24
            count += 1
            pos = end
        if o <= limit and pos != size:
            raise ValueError(f"records end inside a record (byte {pos} of {size})")
        self.size = o
        self.frames += count
        self.objects += count
        return pos

    def full(self):
        """No room in this container for one more object of the largest kind."""
        return self.size > BLF_CONTAINER_BYTES - _BLF_MAX_OBJECT

    def take(self):
        """The container's objects; it starts empty again."""
        data = bytes(self._buffer[:self.size])
        self.size = 0
        self.frames = 0
        return data


def _blf_object_header(dst, o, size, kind, stamp_ns):
    """An object's base header and header v1 at ``dst[o]``; returns where its body starts."""
    dst[o] = 0x4C  # LOBJ
    dst[o + 1] = 0x4F
    dst[o + 2] = 0x42
    dst[o + 3] = 0x4A
    _put_le(dst, o + 4, _BLF_HEADER, 2)
    _put_le(dst, o + 6, 1, 2)  # header version 1
    _put_le(dst, o + 8, size, 4)
    _put_le(dst, o + 12, kind, 4)
    _put_le(dst, o + 16, _BLF_TIME_ONE_NANS, 4)
    _put_le(dst, o + 20, 0, 4)  # client index, object version
    _put_le(dst, o + 24, stamp_ns, 8)
    return o + _BLF_HEADER
