"""SLCAN (LAWICEL) lines straight to wire records, without a python-can Message per frame.

Lines end in ``\\r``; ``\\a`` (BEL) is the adapter's error reply. Frame lines:
    tIIILDD..   11-bit      TIIIIIIIILDD..   29-bit      (L: DLC 0..8)
    rIIIL       11-bit remote                RIIIIIIIIL  29-bit remote
    dIIILDD..   FD          DIIIIIIIILDD..   FD 29-bit   (L: hex DLC code 0..F -> 0..64 bytes)
    bIIILDD..   FD + BRS    BIIIIIIIILDD..   FD + BRS 29-bit
each optionally followed by 4 hex digits: the adapter's millisecond clock (0..59999, wraps),
checked whether or not it is used (``--timestamps host``). Replies to commands (an empty line:
OK; z/Z: transmit done; F: status; V/v: version; N: serial number) are counted in ``replies``.

The parser keeps a partial line across reads. A line longer than any SLCAN line is junk up to
its terminator, however the reads split it. Anything else is counted as garbage and skipped
(the source warns, rate-limited); it never raises on input. The result never depends on how
the stream is split into reads.

The same code runs compiled and pure: ``p``/``out`` are C pointers when compiled and the
bytearrays themselves in pure Python, and indexing means the same for both.
"""
import os as _os
import select as _select
import time as _time

try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import FD_LENGTHS, FLAG_BRS, FLAG_EXT, FLAG_FD, HEX_VALUES, MAX_EXTENDED_ID, \
    MAX_STANDARD_ID, write_header

if not cython.compiled:  # compiled, slcan.pxd cimports it: a C call
    from .wire import hex_number

_MAX_LINE = 160  # "B" + 8 id + 1 dlc + 128 data + 4 stamp = 142 bytes, plus slack
_MINUTE_US = 60000000
_HEX = HEX_VALUES
_FD_LENGTHS = bytes(FD_LENGTHS)
# first letters of the replies an adapter may send besides frames (z/Z: transmit done,
# F: status flags, V/v: version, N: serial number)
_REPLIES = b"zZFVvN"


class SlcanParser:
    """Feed bytes read from the adapter; get bytes of wire records back.

    ``now_us`` is the host time (us) of the read: the timestamp of frames without an adapter
    clock, and the anchor that maps the adapter's minute-wrapping millisecond clock to Unix time.
    ``record_filter``: a wire.RecordFilter applied to every frame (None passes all).
    """

    def __init__(self, adapter_time=True, record_filter=None):
        self.adapter_time = adapter_time
        self.frames = 0
        self.remote = 0
        self.bell = 0
        self.garbage = 0
        self.replies = 0
        self.last_garbage = b""
        self._skipping = False  # inside an overlong line: junk up to the next terminator
        self._pending = bytearray()
        self._out = bytearray(4096)
        self._base_us = -1
        self._last_ms = 0
        self._filter = record_filter
        # the CAN facts of wire, as typed attributes (compiled, a module constant is a Python
        # object looked up by name at every use)
        self._ext, self._fd, self._brs = FLAG_EXT, FLAG_FD, FLAG_BRS
        self._max_std, self._max_ext = MAX_STANDARD_ID, MAX_EXTENDED_ID

    def feed(self, chunk, now_us):
        pending = self._pending
        if pending:
            pending += chunk
            data = pending
        else:
            data = bytearray(chunk)
        size = len(data)
        # The densest input is "t0000\r": 6 bytes -> a 14-byte record.
        if len(self._out) < (size // 6 + 1) * 14 + 78:
            self._out = bytearray((size // 6 + 1) * 14 + 78)
        out_buf = self._out
        if cython.compiled:
            p = cython.cast(cython.p_uchar, data)
            out = cython.cast(cython.p_uchar, out_buf)
            hexval = cython.cast(cython.p_uchar, cython.cast(bytes, _HEX))
            fdlen = cython.cast(cython.p_uchar, cython.cast(bytes, _FD_LENGTHS))
        else:
            p = data
            out = out_buf
            hexval = _HEX
            fdlen = _FD_LENGTHS
        o = 0
        start = 0
        i = 0
        skipping = self._skipping
        while i < size:
            c = p[i]
            if c != 13 and c != 7:
                i += 1
                continue
            # a whole line: p[start:i]
            if c == 7:
                self.bell += 1
            if skipping:  # the end of an overlong line, already counted
                skipping = False
            elif i > start:
                o = self._line(p, start, i, out, o, hexval, fdlen, now_us)
            elif c == 13:
                self.replies += 1  # an empty line: the adapter's OK to a command
            i += 1
            start = i
        if start < size and (skipping or size - start > _MAX_LINE):
            if not skipping:  # no terminator in sight: junk up to the next one
                self._garbage(data, start, size)
                skipping = True
            start = size
        self._skipping = skipping
        if start == 0 and data is pending:
            pass  # everything is still one partial line
        elif start < size:
            self._pending = bytearray(data[start:size])
        else:
            self._pending = bytearray()
        if o == 0:
            return b""
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, out), o)  # one copy
        return bytes(memoryview(out_buf)[:o])

    @property
    def filtered(self):
        return self._filter.filtered if self._filter is not None else 0

    @property
    def pending(self):
        return len(self._pending)

    def _line(self, p, s, e, out, o, hexval, fdlen, now_us):
        """Parse the line p[s:e]; write its record at out[o:]; return the new end of out."""
        if e - s > _MAX_LINE:  # as an unterminated one would be, however the reads split it
            self._garbage(p, s, e)
            return o
        kind = p[s]
        if kind == 116 or kind == 114 or kind == 100 or kind == 98:  # t r d b
            idlen = 3
            flags = 0
        elif kind == 84 or kind == 82 or kind == 68 or kind == 66:  # T R D B
            idlen = 8
            flags = self._ext
        else:
            if _REPLIES.find(bytes((kind,))) < 0:
                self._garbage(p, s, e)
            else:
                self.replies += 1
            return o
        remote = kind == 114 or kind == 82
        if kind == 100 or kind == 68:
            flags |= self._fd
        elif kind == 98 or kind == 66:
            flags |= self._fd | self._brs
        length = e - s
        if length < idlen + 2:
            self._garbage(p, s, e)
            return o
        j = s + 1 + idlen
        can_id = hex_number(p, s + 1, j, hexval)
        if can_id < 0:
            self._garbage(p, s, e)
            return o
        dlc = hexval[p[j]]
        if dlc > 15 or (dlc > 8 and not flags & self._fd):
            self._garbage(p, s, e)
            return o
        n = fdlen[dlc]
        j += 1
        rest = e - j - (0 if remote else 2 * n)
        if (rest != 0 and rest != 4) or can_id > (self._max_ext if flags & self._ext else self._max_std):
            self._garbage(p, s, e)
            return o
        if remote:
            self.remote += 1
            return o
        if self._filter is not None and not self._filter.passes(can_id, flags & self._ext):
            return o
        # payload first (it may still turn out to be garbage), then the header
        k = 0
        while k < n:
            hi = hexval[p[j]]
            lo = hexval[p[j + 1]]
            if hi > 15 or lo > 15:
                self._garbage(p, s, e)
                return o
            out[o + 14 + k] = (hi << 4) | lo
            j += 2
            k += 1
        micros = now_us
        if rest == 4:  # checked even when unused: a line with a bad stamp is not SLCAN
            stamp = hex_number(p, j, e, hexval)
            if stamp < 0 or stamp >= 60000:
                self._garbage(p, s, e)
                return o
            if self.adapter_time:
                micros = self._adapter_time(stamp, now_us)
        write_header(self._out, o, micros, can_id, flags, n)  # out points into self._out
        self.frames += 1
        return o + 14 + n

    def _adapter_time(self, stamp_ms, now_us):
        """Map the adapter's 0..59999 ms clock to Unix time, anchored to the host clock."""
        if stamp_ms < self._last_ms:
            self._base_us += _MINUTE_US  # the adapter's minute wrapped
        self._last_ms = stamp_ms
        micros = self._base_us + stamp_ms * 1000
        # First frame, or a silence of more than a minute (a missed wrap), or drift:
        # re-anchor so the frame is stamped at the read time.
        if self._base_us < 0 or micros > now_us + 100000 or micros < now_us - 2000000:
            self._base_us = now_us - stamp_ms * 1000
            micros = now_us
        return micros

    def _garbage(self, p, s, e):
        self.garbage += 1
        self.last_garbage = bytes([p[k] for k in range(s, min(e, s + 40))])



class SlcanReader:
    """One wake-up of the SLCAN source in one call: wait for the port, read what it holds,
    parse it. Compiled, the wait (``poll``), the optional gathering pause and the read run in C
    with the GIL released: a wake-up costs no interpreter work but this call. Pure, the same
    steps through ``select.poll``, ``time`` and ``os.read``.

    ``fd`` is the port's descriptor, whose bytes are the adapter's (a tty, a socket). A read
    less than ``busy_ns`` after the previous one waits ``gather_ns`` first, so that it takes
    what came meanwhile (sources/slcan.py says why). ``check()`` (the source's) runs before each
    wait while ``watching`` is set; ``changed()`` after a read whose parse counted replies, BELs
    or garbage. A failed read, or the port's end, raises ``lost`` ("DESCRIPTION failed: ...").
    """

    def __init__(self, fd, parser, read_size, busy_ns, gather_ns, check, changed, lost,
                 description):
        self.fd = fd
        self.parser = parser
        self.busy_ns = busy_ns
        self.gather_ns = gather_ns
        self.check = check
        self.changed = changed
        self.lost = lost
        self.description = description
        self.watching = True
        self.last_read_ns = 0
        self._seen = 0
        self._buffer = bytearray(read_size)
        if not cython.compiled:
            self._poller = _select.poll()
            self._poller.register(fd, _select.POLLIN)

    def read(self, timeout):
        """Bytes of records; b"" when nothing came within ``timeout`` seconds."""
        if self.watching:
            self.check()
        if cython.compiled:
            wait_ms = cython.cast(cython.int, timeout * 1000.0 + 0.999)
            buffer = cython.cast(cython.p_char, self._buffer)
            size = len(self._buffer)
            fd = self.fd
            last = self.last_read_ns
            busy = self.busy_ns
            gather = self.gather_ns
            failure = 0
            with cython.nogil:
                waiting.fd = fd
                waiting.events = POLLIN
                waiting.revents = 0
                ready = poll(cython.address(waiting), 1, wait_ms)
                if ready > 0:
                    # the first bytes' arrival: the timestamp of the lines
                    clock_gettime(CLOCK_REALTIME, cython.address(clock))
                    now_ns = clock.tv_sec * 1000000000 + clock.tv_nsec
                    if now_ns - last < busy:
                        pause.tv_sec = gather // 1000000000
                        pause.tv_nsec = gather % 1000000000
                        nanosleep(cython.address(pause), cython.NULL)
                        clock_gettime(CLOCK_REALTIME, cython.address(clock))
                        last = clock.tv_sec * 1000000000 + clock.tv_nsec
                    else:
                        last = now_ns
                    got = read(fd, buffer, size)
                    if got < 0:
                        failure = errno
            if ready <= 0:
                return b""  # nothing came (or a signal interrupted the wait: the caller loops)
            self.last_read_ns = last
            if got < 0:
                raise self.lost(f"{self.description} failed: "
                                f"{OSError(failure, _os.strerror(failure))}")
            chunk = PyBytes_FromStringAndSize(buffer, got)
        else:
            if not self._poller.poll(timeout * 1000.0):
                return b""
            now_ns = _time.time_ns()
            if now_ns - self.last_read_ns < self.busy_ns:
                _time.sleep(self.gather_ns / 1e9)
                self.last_read_ns = _time.time_ns()
            else:
                self.last_read_ns = now_ns
            try:
                chunk = _os.read(self.fd, len(self._buffer))
            except OSError as exc:
                raise self.lost(f"{self.description} failed: {exc}") from None
        if not chunk:
            # readable but empty: the device went away (pyserial says so for sockets)
            raise self.lost(f"{self.description} failed: the adapter stopped answering "
                            "(unplugged?)")
        parser = self.parser
        records = parser.feed(chunk, now_ns // 1000)
        seen = parser.replies + parser.bell + parser.garbage
        if seen != self._seen:
            self._seen = seen
            self.changed()
        return records
