"""The SocketCAN unpacker, fed buffers laid out as recvmmsg leaves them (both variants).

The kernel itself is exercised in the VM (tests/sources/test_socketcan.py); here each field's
place is checked against struct layouts written independently with ``struct``."""
import ctypes
import errno
import socket
import struct
import threading
import time

import pytest

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


def test_the_reader_is_one_wake_up_receive_and_unpack_with_hooks_for_the_rare(fast):
    """SocketcanReader.read: b"" and ``idle()`` when nothing came; the records of what came,
    stamped with the host time when the kernel gave none; ``after(records)`` while watching
    (and never after, unless error frames came); a failure goes to ``lost(errno)``."""
    u = fast.socketcan.FrameUnpacker(4)
    keep = aim(u)
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    calls = []

    class Lost(Exception):
        pass

    def lost(failure):
        raise Lost(failure)

    wake = fast.socketcan.SocketcanReader(u, reader.fileno(), lost,
                                          lambda: calls.append("idle"),
                                          lambda records: calls.append(("after", records)))
    try:
        assert wake.read(0.05) == b"" and calls == ["idle"]
        writer.send(can_frame(0x123, b"\x01\x02"))
        before = time.time_ns() // 1000
        records = wake.read(1.0)
        after = time.time_ns() // 1000
        [(stamp, can_id, flags, data)] = wire.StreamDecoder().feed(records)
        assert (can_id, flags, data) == (0x123, 0, b"\x01\x02") and before <= stamp <= after
        assert calls == ["idle", ("after", records)]
        wake.watching = False
        for k in range(5):
            writer.send(can_frame(0x100 + k, bytes([k])))
        first, second = wake.read(1.0), wake.read(1.0)
        assert [f[1] for f in wire.StreamDecoder().feed(first + second)] == \
            [0x100, 0x101, 0x102, 0x103, 0x104]
        assert len(calls) == 2  # no hook for plain records once the source stopped watching
    finally:
        reader.close()
        writer.close()
    failing = fast.socketcan.SocketcanReader(u, -1, lost, lambda: None, lambda r: None)
    with pytest.raises(Lost) as caught:
        failing.read(0.0)
    assert caught.value.args == (errno.EBADF,)
    del keep


# ---- the send side: FramePacker.send_batch ----------------------------------------------------
# A Unix datagram socket pair stands in for the CAN socket (sendmmsg and write alike: one
# datagram a frame); the reference layout is the source's own struct-packed frame_bytes.

SENT_FRAMES = [(0x123, 0, b"\x01\x02\x03"), (0x1ABCDEF0, wire.FLAG_EXT, b"\xAA" * 8),
               (0x7FF, wire.FLAG_FD | wire.FLAG_BRS | wire.FLAG_ESI, bytes(range(64))),
               (0x42, 0, b""), (0x1FFFFFFF, wire.FLAG_EXT | wire.FLAG_FD, bytes(range(12))),
               (0x000, 0, b"\xFF" * 8), (0x7E0, wire.FLAG_FD, b"\x05")]


def records_of_frames(frames):
    return b"".join(wire.pack_frame(1000 + k, *frame) for k, frame in enumerate(frames))


def sending_pair(sndbuf=None):
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    if sndbuf:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return receiver, sender


def received(receiver, count, timeout=10.0):
    receiver.settimeout(timeout)
    return [receiver.recv(128) for _ in range(count)]


def test_send_batch_sends_each_record_as_its_kernel_frame_in_batches(fast):
    """Every record becomes the struct can_frame / canfd_frame the kernel takes (as
    frame_bytes packs it with struct), in order, over several batches of ``slots``."""
    from cancorder.sources.socketcan import frame_bytes

    frames = SENT_FRAMES * 3  # 21 records through 4 slots: 6 sendmmsg batches
    packer = fast.socketcan.FramePacker(4)
    records = records_of_frames(frames)
    receiver, sender = sending_pair()
    try:
        assert packer.send_batch(sender.fileno(), records, 1000) == len(records)
        got = received(receiver, len(frames))
    finally:
        receiver.close()
        sender.close()
    assert got == [frame_bytes(*frame) for frame in frames]
    assert [len(frame) for frame in got[:3]] == [16, 16, 72]
    assert (packer.sent, packer.queue_full, packer.buffer_full) == (21, 0, 0)
    assert packer.send_batch(-1, b"", 10) == 0  # nothing to send: no call


def test_send_batch_waits_for_room_and_drops_nothing(fast):
    """A receiver that does not read yet fills the sender's queue: the send waits (POLLOUT,
    the GIL released: the reader thread below runs meanwhile), then sends the rest; every
    frame arrives once, in order."""
    packer = fast.socketcan.FramePacker(64)
    frames = [(k & 0x7FF, 0, k.to_bytes(4, "big")) for k in range(3000)]
    records = records_of_frames(frames)
    receiver, sender = sending_pair(sndbuf=4096)
    got = []

    def read_later():
        time.sleep(0.3)
        receiver.settimeout(10.0)
        for _ in range(len(frames)):
            got.append(receiver.recv(128))

    reader = threading.Thread(target=read_later)
    reader.start()
    try:
        started = time.monotonic()
        assert packer.send_batch(sender.fileno(), records, 20000) == len(records)
        reader.join(30)
    finally:
        receiver.close()
        sender.close()
    assert time.monotonic() - started >= 0.25  # it waited for the reader
    assert [int.from_bytes(frame[8:12], "big") for frame in got] == list(range(3000))
    assert packer.sent == 3000 and packer.buffer_full > 0 and packer.queue_full == 0


def test_send_batch_returns_what_went_when_the_queue_stays_full(fast):
    """Nobody reads: after ``timeout_ms`` the call returns how many bytes of records went (a
    record boundary), and a later call sends the rest, none twice."""
    packer = fast.socketcan.FramePacker(16)
    frames = [(0x100, 0, k.to_bytes(2, "big")) for k in range(5000)]
    records = records_of_frames(frames)
    receiver, sender = sending_pair(sndbuf=4096)
    try:
        started = time.monotonic()
        taken = packer.send_batch(sender.fileno(), records, 200)
        assert 0.15 < time.monotonic() - started < 5.0
        assert 0 < taken < len(records) and taken % (14 + 2) == 0
        first = received(receiver, taken // 16)
        rest = records[taken:]
        reader = threading.Thread(target=lambda: first.extend(
            received(receiver, len(rest) // 16)))
        reader.start()
        assert packer.send_batch(sender.fileno(), rest, 20000) == len(rest)
        reader.join(30)
    finally:
        receiver.close()
        sender.close()
    assert [int.from_bytes(frame[8:10], "big") for frame in first] == list(range(5000))


def test_send_batch_failure_is_minus_its_errno(fast):
    """A failure before any frame went is minus its errno (the source turns ENETDOWN/ENODEV
    into a lost adapter); one after some went returns what went."""
    packer = fast.socketcan.FramePacker(8)
    records = records_of_frames(SENT_FRAMES)
    assert packer.send_batch(-1, records, 100) == -errno.EBADF
    receiver, sender = sending_pair()
    receiver.close()
    try:
        assert packer.send_batch(sender.fileno(), records, 100) == -errno.ECONNREFUSED
    finally:
        sender.close()
    assert packer.sent == 0
