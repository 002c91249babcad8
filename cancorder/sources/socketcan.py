"""cancorder's own SocketCAN source: a raw CAN socket read in batches, no python-can Message.

python-can's socketcan backend costs a recvmsg call, a struct unpack and a Message per frame
(tens of microseconds each on a small board: frames are lost on a busy bus). This source asks
the kernel for up to BATCH frames per ``recvmmsg`` call and turns them into wire records in
compiled code (cancorder._fast.socketcan: `FrameUnpacker.receive` waits and reads with the GIL
released, `unpack` makes the records). What the kernel knows comes with them:

- CAN FD frames (CAN_RAW_FD_FRAMES is always on; an interface with ``mtu 72`` carries them);
- ``--filter`` is handed to the kernel as CAN_RAW_FILTER (frames outside it never reach this
  process), and still applied in ``Source.read`` like every source's;
- receive times from SO_TIMESTAMPING: the adapter's hardware stamp where the driver gives one,
  the kernel's software stamp otherwise (said once, at the first frame);
- the socket's drop counter (SO_RXQ_OVFL with the frames, SO_MEMINFO when the bus is quiet):
  frames the kernel dropped because this process did not read them in time are counted
  (``dropped``), not invisible;
- error frames (CAN_RAW_ERR_FILTER): the bus state (error active / warning / passive / bus
  off, restarted) is logged when it changes and counted;
- the interface going down (ENETDOWN) or away (ENODEV) is a lost adapter: the server reopens
  it with backoff, and opening fails (so the server waits) until the interface is up again.

Transmit (socketcand) writes through the same socket; ``gen -i socketcan`` hands it whole
batches of records (``send_records``: one sendmmsg per batch, `FramePacker.send_batch`).
"""
import ctypes
import errno
import logging
import os
import socket
import struct
import threading
import time

from .._fast import socketcan as fastcan
from .._fast import wire
from ..detection import ip_link_details, link_bitrates
from ..errors import SourceInitError, SourceLostError, TransmitError, UsageError
from .base import Source, SourceCounters

log = logging.getLogger("cancorder.source")

#: frames one recvmmsg call takes at most
BATCH = 256
#: --opt keys this source understands (``backend`` chooses it; python-can's take the rest)
OPTIONS = set()
SOL_CAN_RAW = 101
CAN_RAW_FILTER = 1
CAN_RAW_ERR_FILTER = 2
CAN_RAW_FD_FRAMES = 5
CAN_INV_FILTER = 0x20000000
CAN_ERR_MASK = 0x1FFFFFFF
SO_TIMESTAMPING = 37
SO_RXQ_OVFL = 40
SO_MEMINFO = 55
SK_MEMINFO_DROPS = 8  # the index of the socket's drop counter in SO_MEMINFO's u32 array
# SOF_TIMESTAMPING_RX_HARDWARE | RX_SOFTWARE | SOFTWARE | RAW_HARDWARE
TIMESTAMPING_FLAGS = 0x04 | 0x08 | 0x10 | 0x40
IFF_UP = 0x1
# error frame classes (linux/can/error.h) and the controller status bits of data[1]
CAN_ERR_CRTL = 0x04
CAN_ERR_BUSOFF = 0x40
CAN_ERR_BUSERROR = 0x80
CAN_ERR_RESTARTED = 0x100
CAN_ERR_CRTL_WARNING = 0x04 | 0x08  # RX or TX warning
CAN_ERR_CRTL_PASSIVE = 0x10 | 0x20  # RX or TX passive
CAN_ERR_CRTL_ACTIVE = 0x40
CAN_ERR_CRTL_OVERFLOW = 0x01 | 0x02  # the controller's RX or TX buffer overflowed
#: the bus states, as ``ip -details link`` says them
STATE_NAMES = {"ERROR-ACTIVE": "error active", "ERROR-WARNING": "error warning",
               "ERROR-PASSIVE": "error passive", "BUS-OFF": "bus off", "STOPPED": "stopped"}

def _address(buffer):
    """Where a bytearray's bytes are (it is never resized after this)."""
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


def kernel_filters(record_filter):
    """``--filter``'s rules as the kernel's ``struct can_filter`` array (CAN_RAW_FILTER).

    A rule for 11-bit or 29-bit ids only puts the EFF flag in the mask; an inverse rule sets
    CAN_INV_FILTER. The kernel passes a frame when any filter does, as ``RecordFilter``."""
    packed = b""
    for can_id, mask, extended, inverse in record_filter.rules:
        fid, fmask = can_id & CAN_ERR_MASK, mask & CAN_ERR_MASK
        if extended is not None:
            fmask |= fastcan.CAN_EFF_FLAG
            if extended:
                fid |= fastcan.CAN_EFF_FLAG
        if inverse:
            fid |= CAN_INV_FILTER
        packed += struct.pack("=II", fid, fmask)
    return packed


def frame_bytes(can_id, flags, data):
    """The ``struct can_frame`` (or ``canfd_frame`` for FD) that transmits a frame."""
    raw_id = can_id | (fastcan.CAN_EFF_FLAG if flags & wire.FLAG_EXT else 0)
    if flags & wire.FLAG_FD or len(data) > 8:
        fd_flags = fastcan.CANFD_FDF
        if flags & wire.FLAG_BRS:
            fd_flags |= fastcan.CANFD_BRS
        if flags & wire.FLAG_ESI:
            fd_flags |= fastcan.CANFD_ESI
        return struct.pack("=IBBxx64s", raw_id, len(data), fd_flags, bytes(data))
    return struct.pack("=IBxxx8s", raw_id, len(data), bytes(data))


class SocketcanSource(Source):
    can_transmit = True
    sends_records = True
    fd_advice = "give the interface CAN FD frames: ip link set CHANNEL mtu 72 (vcan), or " \
                "ip link set CHANNEL type can ... fd on"

    def __init__(self, channel="can0", record_filter=None, timestamps="adapter", bitrate=None,
                 listen_only=False, options=None):
        super().__init__(record_filter)
        unknown = set(options or {}) - OPTIONS
        if unknown:
            raise UsageError(f"--opt {', '.join(sorted(unknown))}: not an option of cancorder's "
                             "SocketCAN source; add --opt backend=python-can to hand options "
                             "to python-can")
        if listen_only:
            raise UsageError(f"--listen-only: a socketcan interface cannot be put in listen-only "
                             f"mode by a reader: set it on the interface (ip link set {channel} "
                             "type can bitrate 500000 listen-only on)")
        self.channel = str(channel or "can0")
        self.kernel_stamps = timestamps == "adapter"
        self.requested_bitrate = bitrate
        self.fd_advice = self.fd_advice.replace("CHANNEL", self.channel)
        self.sock = None
        self._reader = None
        self._fd = -1
        self.unpacker = fastcan.FrameUnpacker(BATCH)
        self._headers = self.unpacker.headers
        self._stamps_said = False
        self._send_lock = threading.Lock()
        self.frame_packer = fastcan.FramePacker(BATCH)
        self._full_said = (0, 0)  # the packer's queue_full, buffer_full when last logged
        # totals over every socket this source opened (each reopen starts new counters)
        self.dropped_before = 0
        self.bus_state = "error active"
        self.bus_errors = 0
        self.restarts = 0
        self.bitrate = ""
        self._prepare_headers()

    def _prepare_headers(self):
        """Point each mmsghdr at its frame slot (one iovec each) and its control slot."""
        u = self.unpacker
        self._iovecs = bytearray(16 * u.slots)
        frames, control = _address(u.frames), _address(u.control)
        iovecs = _address(self._iovecs)
        for i in range(u.slots):
            struct.pack_into("=QQ", self._iovecs, 16 * i, frames + i * fastcan.FRAME_SLOT,
                             fastcan.FRAME_SLOT)
            base = i * fastcan.HEADER_SLOT
            struct.pack_into("=QI4xQQQQ", self._headers, base, 0, 0, iovecs + 16 * i, 1,
                             control + i * fastcan.CONTROL_SLOT, fastcan.CONTROL_SLOT)

    @property
    def description(self):
        return f"socketcan channel {self.channel}"

    def txt(self):
        return {"interface": "socketcan", "channel": self.channel, "bitrate": self.bitrate}

    def open(self):
        self._stamps_said = False
        self._reader = None
        try:
            sock = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
        except (OSError, AttributeError) as exc:
            raise SourceInitError("this kernel has no SocketCAN (address family not "
                                  "supported): load the can module (modprobe can-raw), or use "
                                  "another interface") from exc
        try:
            sock.setsockopt(SOL_CAN_RAW, CAN_RAW_FD_FRAMES, 1)
            if self.record_filter is not None and self.record_filter.rules:
                sock.setsockopt(SOL_CAN_RAW, CAN_RAW_FILTER, kernel_filters(self.record_filter))
            sock.setsockopt(SOL_CAN_RAW, CAN_RAW_ERR_FILTER, CAN_ERR_MASK)
            if self.kernel_stamps:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TIMESTAMPING_FLAGS)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            sock.bind((self.channel,))
            # bind on a down interface succeeds but leaves ENETDOWN pending on the socket, and
            # the first read reports it even when the interface is up by then (a reopen while
            # it comes back): that read would close a working socket and lose the frames of
            # the next reopen's wait. Reading SO_ERROR clears it; the up check below comes
            # after, so an interface still (or again) down is refused, and a later down sets
            # a fresh error the reader sees.
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            details = ip_link_details(self.channel).get(self.channel, {})
            up = self._is_up(details)
            if not up:
                raise SourceInitError(f"SocketCAN interface '{self.channel}' is down "
                                      f"(ip link set {self.channel} up)")
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise SourceInitError(
                    f"no SocketCAN interface '{self.channel}': check `ip link` (a virtual one: "
                    f"sudo ip link add dev {self.channel} type vcan; sudo ip link set "
                    f"{self.channel} up)") from exc
            raise SourceInitError(f"cannot open {self.description}: {exc}") from exc
        except SourceInitError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        # the whole wake-up (wait, recvmmsg, unpack) in one compiled call
        self._reader = fastcan.SocketcanReader(self.unpacker, self._fd, self._lost, self._idle,
                                               self._after_unpack)
        self.unpacker.dropped = 0  # a new socket's counter starts at 0
        info = details.get("linkinfo", {}).get("info_data", {})
        self.fd = details.get("mtu") == fastcan.CANFD_MTU if "mtu" in details else None
        bitrate = link_bitrates(info)[0]
        self.bitrate = str(bitrate) if bitrate else ""
        state = STATE_NAMES.get(info.get("state", ""))
        if state:
            self._set_state(state, "the interface says")
        if bitrate and self.requested_bitrate and bitrate != self.requested_bitrate:
            log.info(f"{self.description}: the interface runs at {bitrate} bit/s (set with "
                     f"ip link; --bitrate {self.requested_bitrate} does not change it)")

    def _is_up(self, details):
        if "flags" in details:
            return "UP" in details["flags"]
        try:
            with open(f"/sys/class/net/{self.channel}/flags") as f:
                return bool(int(f.read(), 16) & IFF_UP)
        except (OSError, ValueError):
            return True  # cannot tell: reading will say

    def reader(self):
        if self._reader is None or self.record_filter is not None:
            return self.read  # (--filter: the kernel's filter, then the base class's)
        return self._reader.read

    def _read(self, timeout):
        if self.sock is None:
            raise SourceLostError(f"{self.description} is not open")
        return self._reader.read(timeout)

    def _idle(self):
        if self.sock is not None:
            self._refresh_drops(self.sock)

    def _after_unpack(self, records):
        """Error frames, and the first records' stamps said once."""
        u = self.unpacker
        if u.error_frames:
            frames, u.error_frames = u.error_frames, []
            for class_bits, data in frames:
                self._error_frame(class_bits, data)
        if not self._stamps_said and (u.hardware or u.software or records):
            self._stamps_said = True
            if self._reader is not None:
                self._reader.watching = False
            if not self.kernel_stamps:
                how = "stamped on arrival (--timestamps host)"
            elif u.hardware:
                how = "hardware receive timestamps from the adapter"
            elif u.software:
                how = "the kernel's software receive timestamps (the driver gives no hardware ones)"
            else:
                how = "stamped on arrival (the kernel gave no timestamps)"
            log.info(f"{self.description}: {how}")

    def _refresh_drops(self, sock):
        """The socket's drop counter asked directly: SO_RXQ_OVFL tells it only with the next
        frame received after a drop, and a flood may be followed by silence."""
        try:
            info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * (SK_MEMINFO_DROPS + 1))
        except OSError:
            return
        drops = struct.unpack_from("=I", info, 4 * SK_MEMINFO_DROPS)[0] \
            if len(info) >= 4 * (SK_MEMINFO_DROPS + 1) else 0
        if drops > self.unpacker.dropped:
            self.unpacker.dropped = drops

    def _lost(self, failure):
        why = {errno.ENETDOWN: "the interface went down", errno.ENODEV: "the interface is gone"}
        raise SourceLostError(f"{self.description} failed: "
                              f"{why.get(failure, os.strerror(failure))}")

    def _error_frame(self, class_bits, data):
        """An error frame: the bus state it announces, bus errors counted."""
        status = data[1] if len(data) > 1 else 0
        if class_bits & CAN_ERR_BUSERROR:
            self.bus_errors += 1
        if class_bits & CAN_ERR_RESTARTED:
            self.restarts += 1
            self._set_state("error active", "the controller restarted")
        elif class_bits & CAN_ERR_BUSOFF:
            self._set_state("bus off", "error frame")
        elif class_bits & CAN_ERR_CRTL:
            if status & CAN_ERR_CRTL_PASSIVE:
                self._set_state("error passive", "error frame")
            elif status & CAN_ERR_CRTL_WARNING:
                self._set_state("error warning", "error frame")
            elif status & CAN_ERR_CRTL_ACTIVE:
                self._set_state("error active", "error frame")
            if status & CAN_ERR_CRTL_OVERFLOW:
                log.warning(f"{self.description}: the CAN controller's buffer overflowed "
                            "(frames lost in the adapter)",
                            extra={"rate_key": ("socketcan overflow", self.channel)})

    def _set_state(self, state, why):
        if state == self.bus_state:
            return
        was, self.bus_state = self.bus_state, state
        level = logging.INFO if state == "error active" else logging.WARNING
        log.log(level, f"{self.description}: bus state {state} (was {was}; {why})")

    def send(self, can_id, flags, data):
        refusal = self.transmit_refusal(flags, data)
        if refusal is not None:
            raise TransmitError(f"{self.description}: {refusal}")
        sock = self.sock
        if sock is None:
            raise TransmitError(f"{self.description} is not open")
        frame = frame_bytes(can_id, flags, data)
        with self._send_lock:
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    sock.send(frame)
                    return
                except BlockingIOError:  # the interface's queue is full: wait a moment
                    if time.monotonic() > deadline:
                        raise TransmitError(f"{self.description}: the transmit queue stayed "
                                            "full for 1 s") from None
                    time.sleep(0.001)
                except OSError as exc:  # ENOBUFS, ENETDOWN, EINVAL (FD on a classic bus)
                    raise TransmitError(f"{self.description}: {exc.strerror or exc}") from exc

    def send_records(self, records, timeout):
        """Put the frames of ``records`` (wire records) on the bus, in order, waiting while
        the transmit queue is full; how many bytes of them went (fewer than all when the
        queue stayed full for ``timeout`` seconds: the caller sends the rest). Raises
        SourceLostError when the interface went down or away, TransmitError when the kernel
        refused a frame (a CAN FD frame on a classic interface)."""
        if self.sock is None:
            raise SourceLostError(f"{self.description} is not open")
        with self._send_lock:
            taken = self.frame_packer.send_batch(self._fd, records, max(int(timeout * 1000), 1))
        if taken >= 0:
            return taken
        if -taken in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO, errno.EBADF):
            self._lost(-taken)
        advice = f" ({self.fd_advice})" if -taken == errno.EINVAL and self.fd is False else ""
        raise TransmitError(f"{self.description}: {os.strerror(-taken)}{advice}")

    def close(self):
        sock, self.sock = self.sock, None
        if sock is None:
            return
        self._say_full_queues()
        self._refresh_drops(sock)  # a last look at its drop counter
        self.dropped_before += self.unpacker.dropped
        self.unpacker.dropped = 0
        self._fd = -1
        try:
            sock.close()
        except OSError:
            pass

    def _say_full_queues(self):
        """How often sending found no room since last said (a bus slower than the sender, a
        short txqueuelen): each time waited out, no frame dropped."""
        p = self.frame_packer
        queue, buffer = p.queue_full - self._full_said[0], p.buffer_full - self._full_said[1]
        self._full_said = (p.queue_full, p.buffer_full)
        if queue or buffer:
            log.info(f"{self.description}: the transmit queue was full {queue:,} times "
                     f"(ENOBUFS) and the socket's send buffer {buffer:,} times; each time "
                     "waited for room, no frame dropped")

    def counters(self):
        u = self.unpacker
        filtered = self.record_filter.filtered if self.record_filter is not None else 0
        return SourceCounters(frames=u.packed - filtered, remote=u.remote, error=u.error,
                              invalid=u.invalid, filtered=filtered,
                              bus_errors=self.bus_errors, restarts=self.restarts,
                              dropped=self.dropped_before + u.dropped)
