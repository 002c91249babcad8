"""The SocketCAN unpacker, fed buffers laid out as recvmmsg leaves them (both variants).

The kernel itself is exercised in the VM (tests/sources/test_socketcan.py); here each field's
place is checked against struct layouts written independently with ``struct``."""
import struct

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
