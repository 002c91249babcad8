"""The SocketCAN unpacker, fed buffers laid out as recvmmsg leaves them (both variants).

The kernel itself is exercised in the VM (tests/sources/test_socketcan.py); here each field's
place is checked against struct layouts written independently with ``struct``."""
import ctypes
import errno
import socket
import struct
import threading
import time

from cancorder._fast import wire

SOL_SOCKET, SCM_TIMESTAMPING, SO_RXQ_OVFL = 1, 37, 40


def put_message(u, fast, i, raw_id, data, fd_flags=None, software=None, hardware=None,
                drops=None):
    """Write message ``i`` as the kernel would: frame, msg_len, ancillary data."""
    size = 72 if fd_flags is not None else 16
    frame = struct.pack("=IBBxx64s", raw_id, len(data), fd_flags or 0, data)
    u.frames[i * 72:i * 72 + 72] = frame
    control = b""
    if software is not None or hardware is not None:
        sw, hw = software or (0, 0), hardware or (0, 0)
        control += struct.pack("=QiiqqqqqQ", 64, SOL_SOCKET, SCM_TIMESTAMPING, sw[0], sw[1],
                               0, 0, hw[0], hw[1])[:64]
    if drops is not None:
        control += struct.pack("=QiiI4x", 20, SOL_SOCKET, SO_RXQ_OVFL, drops)
    base = i * fast.socketcan.CONTROL_SLOT
    u.control[base:base + len(control)] = control
    struct.pack_into("=Q", u.headers, i * 64 + 40, len(control))
    struct.pack_into("=I", u.headers, i * 64 + 56, size)


def test_frames_become_records_with_kernel_times(fast):
    sc = fast.socketcan
    u = sc.FrameUnpacker(8)
    put_message(u, fast, 0, 0x123, b"\x01\x02\x03", software=(1700000000, 123456789), drops=0)
    put_message(u, fast, 1, 0x80000000 | 0x1ABCDEF0, b"\xAA" * 8,
                software=(1700000001, 1000), hardware=(1700000002, 5000), drops=3)
    put_message(u, fast, 2, 0x7FF, bytes(range(64)), fd_flags=sc.CANFD_BRS | sc.CANFD_ESI |
                sc.CANFD_FDF, software=(1700000003, 0))
    put_message(u, fast, 3, 0x40000000 | 0x55, b"")  # remote
    put_message(u, fast, 4, 0x20000000 | 0x44, b"\x00\x10" + bytes(6))  # error: passive
    put_message(u, fast, 5, 0x42, b"\x09")  # no timestamp: now
    records = u.unpack(6, 99)
    frames = wire.StreamDecoder().feed(records)
    assert frames == [
        (1700000000123456, 0x123, 0, b"\x01\x02\x03"),
        (1700000002000005, 0x1ABCDEF0, wire.FLAG_EXT, b"\xAA" * 8),
        (1700000003000000, 0x7FF, wire.FLAG_FD | wire.FLAG_BRS | wire.FLAG_ESI, bytes(range(64))),
        (99, 0x42, 0, b"\x09")]
    assert (u.packed, u.remote, u.error, u.invalid) == (4, 1, 1, 0)
    assert (u.hardware, u.software, u.dropped) == (1, 2, 3)
    assert u.error_frames == [(0x44, b"\x00\x10" + bytes(6))]
    # the control lengths are ready for the next call
    assert all(struct.unpack_from("=Q", u.headers, i * 64 + 40)[0] == sc.CONTROL_SLOT
               for i in range(8))


def test_impossible_lengths_are_invalid(fast):
    u = fast.socketcan.FrameUnpacker(2)
    put_message(u, fast, 0, 0x1, bytes(13), fd_flags=4)
    put_message(u, fast, 1, 0x2, b"")
    u.frames[72 + 4] = 9  # the second: a classic frame of 9 bytes
    assert u.unpack(2, 5) == b""
    assert u.invalid == 2


def aim(u):
    """Point each ``struct mmsghdr`` of ``u`` at one iovec (its frame slot) and its control
    slot, as the SocketCAN source does; returns what must outlive the calls."""
    def address(buffer):
        return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    iovecs = bytearray(16 * u.slots)
    for i in range(u.slots):
        struct.pack_into("=QQ", iovecs, 16 * i, address(u.frames) + 72 * i, 72)
        struct.pack_into("=QI4xQQQQ", u.headers, 64 * i, 0, 0, address(iovecs) + 16 * i, 1,
                         address(u.control) + 128 * i, 128)
    return iovecs


def can_frame(can_id, data):
    return struct.pack("=IBxxx8s", can_id, len(data), data)


def test_receive_batches_waits_with_the_gil_released_and_reports_failures(fast):
    """``receive`` on datagrams (a Unix socket pair stands in for the kernel's CAN socket: the
    same recvmmsg): 0 when nothing comes, at most ``slots`` a call, other threads run while it
    waits (a wait holding the GIL would keep the sender below from sending until it timed
    out), and a failure is minus its errno."""
    u = fast.socketcan.FrameUnpacker(4)
    keep = aim(u)
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        fd = reader.fileno()
        assert u.receive(fd, 0) == 0
        got = []
        waiter = threading.Thread(target=lambda: got.append(u.receive(fd, 3000)))
        started = time.monotonic()
        waiter.start()
        time.sleep(0.2)
        writer.send(can_frame(0x123, b"\x01\x02"))
        waiter.join(10)
        assert got == [1] and time.monotonic() - started < 2.0
        assert wire.StreamDecoder().feed(u.unpack(1, 7)) == [(7, 0x123, 0, b"\x01\x02")]
        for k in range(5):
            writer.send(can_frame(0x100 + k, bytes([k])))
        assert u.receive(fd, 100) == 4
        assert [f[1] for f in wire.StreamDecoder().feed(u.unpack(4, 8))] == \
            [0x100, 0x101, 0x102, 0x103]
        assert u.receive(fd, 100) == 1
        assert wire.StreamDecoder().feed(u.unpack(1, 9)) == [(9, 0x104, 0, b"\x04")]
        assert u.receive(fd, 50) == 0  # nothing more: the wait ends empty
    finally:
        reader.close()
        writer.close()
    assert u.receive(-1, 0) == -errno.EBADF
    del keep
