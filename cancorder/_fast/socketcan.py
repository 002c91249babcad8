"""SocketCAN frames, as one ``recvmmsg`` call leaves them, straight into wire records.

The SocketCAN source (cancorder/sources/socketcan.py) owns the socket and calls ``recvmmsg``
(through ctypes: one call per batch) on the buffers of a ``FrameUnpacker``: ``headers`` (one
``struct mmsghdr`` per slot), ``frames`` (one ``struct canfd_frame`` per slot) and ``control``
(each slot's ancillary data). ``unpack(count, now_us)`` then walks them once: the frame, its
kernel receive time (SO_TIMESTAMPING: the hardware stamp where the driver gives one, else the
software one) and the socket's drop counter (SO_RXQ_OVFL), and writes the records. No
python-can Message, no Python object per frame. It also resets each slot's control length for
the next call (the kernel overwrites it).

The other way, ``FramePacker.send_batch(fd, records, timeout_ms)`` turns wire records into
``struct can_frame``/``canfd_frame`` slots and hands them to the kernel in one ``sendmmsg``
call per batch (compiled: in C, the GIL released; the pure twin writes each frame with
``os.write``). A full transmit queue (ENOBUFS: the interface's queue; EAGAIN: the socket's
send buffer) is waited out (POLLOUT, then a short pause that grows while it stays full) and
the rest sent: no frame is dropped, and the loop never spins.

Layouts (Linux, 64-bit, little-endian: the only place AF_CAN exists for cancorder):
    struct mmsghdr    64 bytes: msg_control at 32, msg_controllen at 40, msg_len at 56
    struct canfd_frame 72 bytes: can_id (u32, with EFF/RTR/ERR flags), len, flags, 2 pad,
                       data at 8; a classic frame is its first 16 bytes (msg_len 16)
    struct cmsghdr    16 bytes (u64 len, i32 level, i32 type), data 8-aligned
"""
try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import FLAG_BRS, FLAG_ESI, FLAG_EXT, FLAG_FD, MAX_RECORD_SIZE

if not cython.compiled:  # compiled, socketcan.pxd cimports them: C calls
    import ctypes
    import errno as _errno
    import os as _os
    import select as _select
    import time as _time
    from errno import EAGAIN, EINTR, ENOBUFS

    from .wire import put_header, valid_length

    _LIBC = []  # ctypes' recvmmsg, looked up on first use

CAN_EFF_FLAG = 0x80000000
CAN_RTR_FLAG = 0x40000000
CAN_ERR_FLAG = 0x20000000
CAN_EFF_MASK = 0x1FFFFFFF
CAN_SFF_MASK = 0x7FF
CANFD_BRS = 0x01
CANFD_ESI = 0x02
CANFD_FDF = 0x04
CAN_MTU = 16
CANFD_MTU = 72
HEADER_SLOT = 64  # sizeof(struct mmsghdr)
FRAME_SLOT = 72  # sizeof(struct canfd_frame)
#: one SCM_TIMESTAMPING (16 + 48) and one SO_RXQ_OVFL (16 + 4, padded to 24) per frame
CONTROL_SLOT = 128
SOL_SOCKET = 1
SCM_TIMESTAMPING = 37  # SO_TIMESTAMPING_OLD: three struct timespec (software, -, hardware)
SO_RXQ_OVFL = 40
MSG_DONTWAIT = 0x40
#: the first pause after ENOBUFS (POLLOUT says nothing of the interface's queue) and the
#: longest it grows to while the queue stays full, in microseconds
PAUSE_FIRST_US = 100
PAUSE_MAX_US = 1600


def le32(p, pos):
    """The little-endian 32-bit number at p[pos:pos + 4]."""
    return p[pos] | (p[pos + 1] << 8) | (p[pos + 2] << 16) | (p[pos + 3] << 24)


def le64(p, pos):
    """The little-endian 64-bit number at p[pos:pos + 8] (timestamps, lengths: below 2^63)."""
    return le32(p, pos) | (le32(p, pos + 4) << 32)


def put_le64(p, pos, value):
    i = 0
    while i < 8:
        p[pos + i] = (value >> (8 * i)) & 0xFF
        i += 1


class FrameUnpacker:
    """The buffers of ``slots`` messages for recvmmsg, and the loop that reads them.

    Counters: ``frames`` (data frames turned into records), ``remote``, ``error`` (error
    frames: each also kept in ``error_frames`` as ``(class bits, data)`` for the bus state),
    ``invalid``, ``hardware``/``software`` (frames stamped by the adapter / by the kernel;
    neither: stamped with ``now_us``), ``dropped`` (the socket's drop counter, as last seen).
    """

    def __init__(self, slots):
        self.slots = slots
        self.headers = bytearray(slots * HEADER_SLOT)
        self.frames = bytearray(slots * FRAME_SLOT)
        self.control = bytearray(slots * CONTROL_SLOT)
        self._out = bytearray(slots * MAX_RECORD_SIZE)
        self.packed = 0
        self.remote = 0
        self.error = 0
        self.invalid = 0
        self.hardware = 0
        self.software = 0
        self.dropped = 0
        self.error_frames = []
        i = 0
        while i < slots:
            put_le64(self.headers, i * HEADER_SLOT + 40, CONTROL_SLOT)
            i += 1
        if not cython.compiled:
            self._poller = None
            self._poll_fd = -1

    def receive(self, fd, timeout_ms):
        """One ``recvmmsg`` into the slots (their headers set up by the caller); when nothing is
        waiting, first a wait of at most ``timeout_ms`` for a frame. Compiled, both system
        calls run in C with the GIL released: a wake-up costs no Python call but this one.
        The count of messages (0: none came), or minus the errno of a failure other than
        EAGAIN/EINTR (ENETDOWN: the interface went down)."""
        if cython.compiled:
            headers = cython.cast(cython.p_void, cython.cast(cython.p_uchar, self.headers))
            slots = self.slots
            with cython.nogil:
                n = recvmmsg(fd, headers, slots, MSG_DONTWAIT, cython.NULL)
                failure = errno if n < 0 else 0
                if n < 0 and (failure == EAGAIN or failure == EINTR):
                    waiting.fd = fd
                    waiting.events = POLLIN
                    waiting.revents = 0
                    if poll(cython.address(waiting), 1, timeout_ms) > 0:
                        n = recvmmsg(fd, headers, slots, MSG_DONTWAIT, cython.NULL)
                        failure = errno if n < 0 else 0
                    else:
                        n = 0
                        failure = 0
            if n < 0:
                return 0 if failure == EAGAIN or failure == EINTR else -failure
            return n
        if not _LIBC:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint,
                                      ctypes.c_int, ctypes.c_void_p]
            libc.recvmmsg.restype = ctypes.c_int
            _LIBC.append(libc.recvmmsg)
        call = _LIBC[0]
        headers = ctypes.addressof((ctypes.c_char * len(self.headers)).from_buffer(self.headers))
        n = call(fd, headers, self.slots, MSG_DONTWAIT, None)
        if n < 0:
            failure = ctypes.get_errno()
            if failure not in (_errno.EAGAIN, _errno.EINTR):
                return -failure
            if self._poll_fd != fd:
                self._poller = _select.poll()
                self._poller.register(fd, _select.POLLIN)
                self._poll_fd = fd
            if not self._poller.poll(timeout_ms):
                return 0
            n = call(fd, headers, self.slots, MSG_DONTWAIT, None)
            if n < 0:
                failure = ctypes.get_errno()
                return 0 if failure in (_errno.EAGAIN, _errno.EINTR) else -failure
        return n

    def unpack(self, count, now_us):
        """Records of the first ``count`` messages recvmmsg filled; bytes."""
        if cython.compiled:
            h = cython.cast(cython.p_uchar, self.headers)
            f = cython.cast(cython.p_uchar, self.frames)
            c = cython.cast(cython.p_uchar, self.control)
            out = cython.cast(cython.p_uchar, self._out)
        else:
            h, f, c, out = self.headers, self.frames, self.control, self._out
        ext_flag, fd_flag, brs_flag, esi_flag = FLAG_EXT, FLAG_FD, FLAG_BRS, FLAG_ESI
        o = 0
        i = 0
        while i < count:
            hp = i * HEADER_SLOT
            fp = i * FRAME_SLOT
            size = le32(h, hp + 56)
            # the ancillary data: when the kernel received the frame, and its drop counter
            cp = i * CONTROL_SLOT
            cend = cp + le64(h, hp + 40)
            put_le64(h, hp + 40, CONTROL_SLOT)  # for the next call
            micros = now_us
            while cp + 16 <= cend:
                clen = le64(c, cp)
                if clen < 16:
                    break
                if le32(c, cp + 8) == SOL_SOCKET:
                    kind = le32(c, cp + 12)
                    if kind == SCM_TIMESTAMPING and clen >= 64:
                        seconds = le64(c, cp + 48)
                        nanos = le64(c, cp + 56)
                        if seconds or nanos:
                            self.hardware += 1
                        else:
                            seconds = le64(c, cp + 16)
                            nanos = le64(c, cp + 24)
                            if seconds or nanos:
                                self.software += 1
                        if seconds or nanos:
                            micros = seconds * 1000000 + nanos // 1000
                    elif kind == SO_RXQ_OVFL and clen >= 20:
                        self.dropped = le32(c, cp + 16)
                cp += (clen + 7) & ~7
            i += 1
            raw_id = le32(f, fp)
            n = f[fp + 4]
            if raw_id & CAN_ERR_FLAG:
                self.error += 1
                if n > 8:
                    n = 8
                self.error_frames.append((raw_id & CAN_EFF_MASK, bytes(self.frames[fp + 8:fp + 8 + n])))
                continue
            if raw_id & CAN_RTR_FLAG:
                self.remote += 1
                continue
            if raw_id & CAN_EFF_FLAG:
                can_id = raw_id & CAN_EFF_MASK
                flags = ext_flag
            else:
                can_id = raw_id & CAN_SFF_MASK
                flags = 0
            if size == CANFD_MTU:
                flags |= fd_flag
                if f[fp + 5] & CANFD_BRS:
                    flags |= brs_flag
                if f[fp + 5] & CANFD_ESI:
                    flags |= esi_flag
                if n > 64 or not valid_length(n, True):
                    self.invalid += 1
                    continue
            elif size != CAN_MTU or n > 8:
                self.invalid += 1
                continue
            start = put_header(out, o, micros, can_id, flags, n)
            if cython.compiled:
                memcpy(out + start, f + fp + 8, n)
            else:
                out[start:start + n] = f[fp + 8:fp + 8 + n]
            o = start + n
            self.packed += 1
        if cython.compiled:
            return PyBytes_FromStringAndSize(cython.cast(cython.p_char, out), o)
        return bytes(memoryview(self._out)[:o])



def be32(p, pos):
    """The big-endian 32-bit number at p[pos:pos + 4] (a wire record's id)."""
    value = p[pos]
    value = (value << 8) | p[pos + 1]
    value = (value << 8) | p[pos + 2]
    return (value << 8) | p[pos + 3]


def monotonic_ms():
    if cython.compiled:
        clock_gettime(CLOCK_MONOTONIC, cython.address(now))
        return now.tv_sec * 1000 + now.tv_nsec // 1000000
    return int(_time.monotonic() * 1000)


def skip_records(records, pos, k):
    """Where the record ``k`` records after the one at ``pos`` starts."""
    if cython.compiled:
        p = cython.cast(cython.p_uchar, cython.cast(cython.p_char, records))
    else:
        p = records
    while k > 0:
        pos += 14 + p[pos + 13]
        k -= 1
    return pos


class SocketcanReader:
    """One wake-up of the SocketCAN source in one call: ``FrameUnpacker.receive`` (the wait and
    ``recvmmsg``, in C with the GIL released) and ``unpack``. The source's own Python runs only
    for what is rare: ``lost(errno)`` (raises) when the socket fails, ``idle()`` after a wait
    that brought nothing, ``after(records)`` when error frames came or while ``watching``."""

    def __init__(self, unpacker, fd, lost, idle, after):
        self.unpacker = unpacker
        self.fd = fd
        self.lost = lost
        self.idle = idle
        self.after = after
        self.watching = True

    def read(self, timeout):
        """Bytes of records; b"" when nothing came within ``timeout`` seconds."""
        unpacker = self.unpacker
        count = unpacker.receive(self.fd, max(int(timeout * 1000.0), 0))
        if count < 0:
            self.lost(-count)
            return b""
        if count == 0:
            self.idle()
            return b""
        if cython.compiled:
            clock_gettime(CLOCK_REALTIME, cython.address(now))
            now_us = now.tv_sec * 1000000 + now.tv_nsec // 1000
        else:
            now_us = _time.time_ns() // 1000
        records = unpacker.unpack(count, now_us)
        if self.watching or unpacker.error_frames:
            self.after(records)
        return records


class FramePacker:
    """Wire records onto a CAN socket: ``send_batch`` packs up to ``slots`` of them at a time
    into frame slots and sends each batch with one ``sendmmsg``.

    Counters: ``sent`` (frames the kernel took), ``queue_full`` (ENOBUFS: the interface's
    transmit queue was full, each time waited out), ``buffer_full`` (EAGAIN: the socket's
    send buffer was, waited out on POLLOUT).
    """

    def __init__(self, slots):
        self.slots = slots
        self.frames = bytearray(slots * FRAME_SLOT)
        self.sent = 0
        self.queue_full = 0
        self.buffer_full = 0
        self._failure = 0
        if cython.compiled:
            self._sizes = None
            self._headers = bytearray(slots * cython.sizeof(mmsghdr))
            self._iovecs = bytearray(slots * cython.sizeof(iovec))
            self._aim()
        else:
            self._sizes = [0] * slots
            self._poller = None
            self._poll_fd = -1

    def _aim(self):
        """Point each message at its own iovec, and that at its frame slot (compiled only:
        the pure twin writes each slot itself)."""
        if cython.compiled:
            hdr = cython.cast(mmsghdr_p, cython.cast(cython.p_uchar, self._headers))
            iov = cython.cast(iovec_p, cython.cast(cython.p_uchar, self._iovecs))
            f = cython.cast(cython.p_uchar, self.frames)
            i = 0
            while i < self.slots:
                fp = i * FRAME_SLOT
                iov[i].iov_base = f + fp
                hdr[i].msg_hdr.msg_iov = iov + i
                hdr[i].msg_hdr.msg_iovlen = 1
                i += 1
        return 0

    def _pack(self, records, pos, total):
        """Fill the slots from the records at ``pos`` on; how many were filled."""
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(cython.p_char, records))
            f = cython.cast(cython.p_uchar, self.frames)
            iov = cython.cast(iovec_p, cython.cast(cython.p_uchar, self._iovecs))
        else:
            p, f = records, self.frames
        ext_flag, fd_flag, brs_flag, esi_flag = FLAG_EXT, FLAG_FD, FLAG_BRS, FLAG_ESI
        count = 0
        while count < self.slots and pos + 14 <= total:
            n = p[pos + 13]
            flags = p[pos + 12]
            raw_id = be32(p, pos + 8)
            if flags & ext_flag:
                raw_id |= CAN_EFF_FLAG
            fp = count * FRAME_SLOT
            f[fp] = raw_id & 0xFF
            f[fp + 1] = (raw_id >> 8) & 0xFF
            f[fp + 2] = (raw_id >> 16) & 0xFF
            f[fp + 3] = (raw_id >> 24) & 0xFF
            f[fp + 4] = n
            f[fp + 6] = 0
            f[fp + 7] = 0
            if flags & fd_flag or n > 8:
                fd_flags = CANFD_FDF
                if flags & brs_flag:
                    fd_flags |= CANFD_BRS
                if flags & esi_flag:
                    fd_flags |= CANFD_ESI
                f[fp + 5] = fd_flags
                size = CANFD_MTU
            else:
                f[fp + 5] = 0  # len8_dlc: none
                size = CAN_MTU
            if cython.compiled:
                memcpy(f + fp + 8, p + pos + 14, n)
                if n < size - 8:
                    memset(f + fp + 8 + n, 0, size - 8 - n)
                iov[count].iov_len = size
            else:
                f[fp + 8:fp + size] = p[pos + 14:pos + 14 + n].ljust(size - 8, b"\0")
                self._sizes[count] = size
            pos += 14 + n
            count += 1
        return count

    def _send_slots(self, fd, first, count):
        """Send slots ``first`` to ``count``: how many the kernel took (0: none; then
        ``_failure`` is the errno that stopped it)."""
        if cython.compiled:
            hdr = cython.cast(mmsghdr_p, cython.cast(cython.p_uchar, self._headers))
            with cython.nogil:
                k = sendmmsg(fd, hdr + first, count - first, MSG_DONTWAIT)
                failure = errno if k < 0 else 0
            self._failure = failure
            return k if k > 0 else 0
        view = memoryview(self.frames)
        i = first
        while i < count:
            fp = i * FRAME_SLOT
            try:
                _os.write(fd, view[fp:fp + self._sizes[i]])
            except OSError as exc:
                self._failure = exc.errno
                return i - first
            i += 1
        return count - first

    def _wait(self, fd, failure, pause_us, timeout_ms):
        """Wait for room: POLLOUT (the socket's send buffer), then after ENOBUFS a pause (the
        interface's queue has no readiness to wait on: POLLOUT alone, the loop would spin)."""
        if cython.compiled:
            with cython.nogil:
                ready.fd = fd
                ready.events = POLLOUT
                ready.revents = 0
                poll(cython.address(ready), 1, timeout_ms)
                if failure == ENOBUFS:
                    pause.tv_sec = 0
                    pause.tv_nsec = pause_us * 1000
                    nanosleep(cython.address(pause), cython.NULL)
            return 0
        if self._poll_fd != fd:
            self._poller = _select.poll()
            self._poller.register(fd, _select.POLLOUT)
            self._poll_fd = fd
        self._poller.poll(timeout_ms)
        if failure == ENOBUFS:
            _time.sleep(pause_us / 1e6)
        return 0

    def send_batch(self, fd, records, timeout_ms):
        """Send every frame of ``records`` (bytes of wire records) on the non-blocking CAN
        socket ``fd``, in order. Returns how many bytes of ``records`` went out: all of them,
        or fewer when the transmit queue stayed full for ``timeout_ms`` (the caller sends the
        rest after looking for a stop); minus the errno of a failure (ENETDOWN: the interface
        went down) when not one frame went before it (else the next call reports it)."""
        total = len(records)
        pos = 0
        deadline = -1
        pause_us = PAUSE_FIRST_US
        while pos < total:
            count = self._pack(records, pos, total)
            if count == 0:
                break
            done = 0
            while done < count:
                k = self._send_slots(fd, done, count)
                if k > 0:
                    done += k
                    self.sent += k
                    pause_us = PAUSE_FIRST_US
                    continue
                failure = self._failure
                if failure == EINTR:
                    continue
                if failure != EAGAIN and failure != ENOBUFS:
                    pos = skip_records(records, pos, done)
                    return pos if pos > 0 else -failure
                if failure == ENOBUFS:
                    self.queue_full += 1
                else:
                    self.buffer_full += 1
                now_ms = monotonic_ms()
                if deadline < 0:
                    deadline = now_ms + timeout_ms
                elif now_ms >= deadline:
                    return skip_records(records, pos, done)
                self._wait(fd, failure, pause_us, deadline - now_ms)
                if failure == ENOBUFS and pause_us < PAUSE_MAX_US:
                    pause_us *= 2
            pos = skip_records(records, pos, count)
        return pos
