"""The outbox: every batch waits here, in order, until the broker has acknowledged it.

The publisher appends each batch, takes them in order with ``next_unsent`` to publish, and
``commit``s each one (in order) when its PUBACK comes; when the connection drops it
``rewind``s to the first unacknowledged one, so nothing is lost and the subscriber removes the
duplicates by sequence number. Full, the outbox drops its oldest batches and counts them.

    MemoryOutbox  without --mqtt-spool: a bounded deque (lost when cancorder stops)
    DiskSpool     --mqtt-spool DIR: segment files of length-prefixed payloads and a cursor file
                  naming the first unacknowledged byte, so a restart resumes where it stopped

A disk that fills up before --mqtt-spool-size is not a failure: the oldest batches are dropped
to make room (counted, said once), and a cursor that cannot be saved is kept in memory and
saved again later (a restart before then re-sends a little: the subscribers remove duplicates).
Nothing here raises OSError once the spool is open, so the publisher, the TCP serving and the
recording never stop for it.

Spool files (DIR/000000000001.seg ...): each entry is a uint32 big-endian length then the
payload (payload.py); DIR/cursor holds "SEGMENT OFFSET" of the first entry not acknowledged;
DIR/lock is held (flock) by the cancorder using the folder.
"""
import collections
import errno
import os
import struct
import time

from ..errors import PayloadError, SpoolError
from . import payload as mqtt_payload
from ..report import plural

_LENGTH = struct.Struct(">I")
SUFFIX = ".seg"
CURSOR_EVERY = 0.25  # seconds between cursor writes (a crash re-sends at most that: duplicates)
MEMORY_LIMIT = 64 << 20
#: errors that mean "no room": the oldest batches make room; any other is this batch's loss
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def check_folder(directory):
    """SpoolError unless ``directory`` can be the spool folder: a folder this process may write
    in, or one it may create there. Creates nothing: ``--check`` and the real start run it while
    the flags are checked, before anything is served (the lock is the running process's, so a
    folder in use is found when the spool opens)."""
    existing = os.path.abspath(directory)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise _unusable(directory, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _unusable(directory, f"{existing} is not writable for this user")
    lock = os.path.join(directory, "lock")
    if os.path.exists(lock) and not os.access(lock, os.W_OK):
        raise _unusable(directory, f"{lock} is not writable for this user")


def _unusable(directory, why):
    return SpoolError(f"--mqtt-spool {directory}: cannot use it as the spool folder ({why})")


class MemoryOutbox:
    """Batches in memory, oldest dropped beyond ``max_bytes``. Tokens are entry numbers."""

    def __init__(self, max_bytes=MEMORY_LIMIT):
        self.max_bytes = max_bytes
        self._entries = collections.deque()  # (payload, frames)
        self._base = 0  # number of _entries[0]
        self._read = 0  # number of the next entry to hand out
        self.bytes = 0
        self.dropped_batches = 0
        self.dropped_frames = 0
        self.where = "memory"

    @property
    def batches(self):
        return len(self._entries)

    def append(self, data, frames):
        """Keep a batch; returns the (batches, frames) dropped to make room."""
        before = (self.dropped_batches, self.dropped_frames)
        if len(data) > self.max_bytes:
            self._count_drop(frames)
        else:
            while self._entries and self.bytes + len(data) > self.max_bytes:
                old, old_frames = self._entries.popleft()
                self.bytes -= len(old)
                self._base += 1
                self._count_drop(old_frames)
            self._read = max(self._read, self._base)
            self._entries.append((data, frames))
            self.bytes += len(data)
        return self.dropped_batches - before[0], self.dropped_frames - before[1]

    def _count_drop(self, frames):
        self.dropped_batches += 1
        self.dropped_frames += frames

    def next_unsent(self):
        """(token, payload, frames) of the next batch to publish, or None."""
        index = self._read - self._base
        if index >= len(self._entries):
            return None
        data, frames = self._entries[index]
        self._read += 1
        return self._read, data, frames

    def commit(self, token):
        """The broker has the batch ``token`` (and every one before it)."""
        while self._entries and self._base < token:
            data, _ = self._entries.popleft()
            self.bytes -= len(data)
            self._base += 1
        self._read = max(self._read, self._base)

    def rewind(self):
        """The connection dropped: hand out again from the first unacknowledged batch."""
        self._read = self._base

    def close(self):
        pass


class _Segment:
    __slots__ = ("number", "path", "size", "batches", "frames", "done_batches", "done_frames")

    def __init__(self, number, path):
        self.number = number
        self.path = path
        self.size = 0
        self.batches = self.frames = self.done_batches = self.done_frames = 0


class DiskSpool:
    """Batches in segment files under ``directory``, at most ``max_bytes`` on disk.

    Tokens are (segment number, offset after the entry, frames). Every batch is written before
    it is published (page cache, no fsync: a power cut may lose the last moments, a crash or
    restart of cancorder does not), so one path serves a connected and a lost broker.
    """

    def __init__(self, directory, max_bytes, log=None):
        import fcntl

        self.directory = directory
        self.where = directory
        self.max_bytes = max_bytes
        self.segment_limit = min(max(max_bytes // 16, 64 << 10), 64 << 20)
        self.dropped_batches = 0
        self.dropped_frames = 0
        self._log = log
        try:
            os.makedirs(directory, exist_ok=True)
            self._lock = open(os.path.join(directory, "lock"), "a+")
        except OSError as exc:
            raise _unusable(directory, exc.strerror or exc) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise SpoolError(f"--mqtt-spool {directory} is in use by another cancorder: give "
                             "each logger its own spool folder") from None
        self._segments = []
        self._writer = None  # append handle of self._segments[-1], or None: start a new one
        self._reader = None  # (number, handle)
        self._cursor_written = 0.0
        self._cursor_dirty = False
        self._said_full = False  # the disk filled up: said once, again after the spool emptied
        self._said_cursor = False  # the cursor could not be saved: said once until it is
        self._load()

    # ---- start-up: what an earlier run left ----

    def _load(self):
        done = self._read_cursor()
        numbers = sorted(int(name[:-len(SUFFIX)]) for name in os.listdir(self.directory)
                         if name.endswith(SUFFIX) and name[:-len(SUFFIX)].isdigit())
        for number in numbers:
            segment = _Segment(number, self._path(number))
            if done is not None and number < done[0]:
                os.remove(segment.path)  # published before the restart
                continue
            self._scan(segment, done[1] if done is not None and number == done[0] else 0)
            if segment.batches > segment.done_batches:
                self._segments.append(segment)
            else:
                os.remove(segment.path)
        first = self._segments[0] if self._segments else None
        self._done = (first.number, done[1] if done and done[0] == first.number else 0) \
            if first else (0, 0)
        self._next = self._done
        if not self._segments:
            self._remove_cursor()
        elif self._log is not None:
            frames = plural(self.pending_frames, "frame")
            self._log.info(f"MQTT spool {self.directory}: {plural(self.batches, 'batch')} "
                           f"({frames}) from an earlier run to publish")

    def _scan(self, segment, done_offset):
        """Count the entries of a segment file; cut a torn last entry (a crash mid-write)."""
        with open(segment.path, "r+b") as handle:
            pos = 0
            while True:
                head = handle.read(_LENGTH.size + mqtt_payload.HEADER_SIZE)
                if len(head) < _LENGTH.size:
                    break
                (length,) = _LENGTH.unpack_from(head)
                try:
                    header, _ = mqtt_payload.read_header(head[_LENGTH.size:])
                except PayloadError:
                    header = None
                end = pos + _LENGTH.size + length
                if header is None or end > os.fstat(handle.fileno()).st_size:
                    if self._log is not None:
                        self._log.warning(f"MQTT spool {segment.path}: a damaged entry at "
                                          f"byte {pos} and what follows are dropped")
                    handle.truncate(pos)
                    break
                segment.batches += 1
                segment.frames += header.count
                if end <= done_offset:
                    segment.done_batches += 1
                    segment.done_frames += header.count
                pos = end
                handle.seek(pos)
            segment.size = pos

    # ---- the outbox interface ----

    @property
    def batches(self):
        return sum(s.batches - s.done_batches for s in self._segments)

    @property
    def pending_frames(self):
        return sum(s.frames - s.done_frames for s in self._segments)

    @property
    def bytes(self):
        return sum(s.size for s in self._segments)

    def append(self, data, frames):
        before = (self.dropped_batches, self.dropped_frames)
        entry = _LENGTH.pack(len(data)) + data
        if len(entry) > self.max_bytes:
            self._count_drop(frames)
        else:
            total = self.bytes
            while self._segments and total + len(entry) > self.max_bytes:
                total -= self._drop_oldest()
            while True:
                problem = self._write_entry(entry, frames)
                if problem is None:
                    break
                # the disk is full before max_bytes: the oldest batches make room, as they
                # do at max_bytes; with nothing of ours left to drop, this batch is the loss
                self._say_full(problem)
                if problem.errno not in _NO_ROOM or not self.bytes:
                    self._count_drop(frames)
                    break
                self._drop_oldest()
        return self.dropped_batches - before[0], self.dropped_frames - before[1]

    def _count_drop(self, frames):
        self.dropped_batches += 1
        self.dropped_frames += frames

    def next_unsent(self):
        while True:
            segment = next((s for s in self._segments if s.number >= self._next[0]), None)
            if segment is None:
                return None
            offset = self._next[1] if segment.number == self._next[0] else 0
            if offset + _LENGTH.size > segment.size:
                if segment is self._segments[-1]:
                    return None
                self._next = (segment.number + 1, 0)
                continue
            handle = self._read_handle(segment.number)
            handle.seek(offset)
            (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
            data = handle.read(length)
            frames = mqtt_payload.read_header(data)[0].count
            self._next = (segment.number, offset + _LENGTH.size + length)
            return (segment.number, self._next[1], frames), data, frames

    def commit(self, token):
        number, end, frames = token
        if (number, end) <= self._done:
            return  # its segment was dropped (full) or it was committed before a rewind
        segment = next((s for s in self._segments if s.number == number), None)
        if segment is None:
            return
        segment.done_batches += 1
        segment.done_frames += frames
        self._done = (number, end)
        while self._segments and (self._segments[0].number < number or
                                  self._segments[0].done_batches == self._segments[0].batches):
            self._remove_segment(self._segments[0])
        if not self._segments:
            self._remove_cursor()  # empty: nothing left on disk
            self._said_full = False
            return
        self._cursor_dirty = True
        if time.monotonic() - self._cursor_written >= CURSOR_EVERY:
            self._write_cursor()

    def rewind(self):
        self._next = self._done

    def close(self):
        if self._cursor_dirty and self._segments:
            self._write_cursor()
            if self._cursor_dirty and self._log is not None:
                self._log.warning(f"MQTT spool {self.directory}: the cursor could not be saved "
                                  "at the stop: the next start re-sends batches the broker "
                                  "already has (the subscribers remove the duplicates)")
        for handle in (self._writer, self._reader[1] if self._reader else None):
            if handle is not None:
                try:
                    handle.close()
                except OSError:
                    pass
        self._writer = self._reader = None
        self._lock.close()

    # ---- files ----

    def _path(self, number):
        return os.path.join(self.directory, f"{number:012d}{SUFFIX}")

    def _write_entry(self, entry, frames):
        """Append one entry to the newest segment (a new one when it is full); None when it
        is written, else the OSError, with nothing of the entry left in the file."""
        try:
            if self._writer is None or self._segments[-1].size >= self.segment_limit:
                self._new_segment()
            view = memoryview(entry)
            while view:  # unbuffered: a write short of room writes part and returns its size
                view = view[self._writer.write(view):]
        except OSError as exc:
            if self._writer is not None:
                try:  # cut what part of the entry got in: the file stays whole entries
                    os.ftruncate(self._writer.fileno(), self._segments[-1].size)
                except OSError:
                    pass
            return exc
        segment = self._segments[-1]
        segment.size += len(entry)
        segment.batches += 1
        segment.frames += frames
        return None

    def _say_full(self, exc):
        if self._said_full or self._log is None:
            return
        self._said_full = True
        self._log.warning(f"MQTT spool {self.directory}: cannot write ({exc.strerror or exc}) "
                          f"with {self.bytes:,} of its {self.max_bytes:,} bytes used: the "
                          "oldest batches are dropped to make room (counted); TCP serving and "
                          "recording go on")

    def _new_segment(self):
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
        number = self._segments[-1].number + 1 if self._segments else max(self._done[0], 0) + 1
        segment = _Segment(number, self._path(number))
        self._writer = open(segment.path, "ab", buffering=0)  # OSError: the caller's
        self._segments.append(segment)

    def _read_handle(self, number):
        if self._reader is None or self._reader[0] != number:
            if self._reader is not None:
                self._reader[1].close()
            self._reader = (number, open(self._path(number), "rb"))
        return self._reader[1]

    def _drop_oldest(self):
        """Full: delete the oldest segment, counting the batches never acknowledged."""
        segment = self._segments[0]
        self.dropped_batches += segment.batches - segment.done_batches
        self.dropped_frames += segment.frames - segment.done_frames
        self._remove_segment(segment)
        after = (segment.number + 1, 0)
        self._done = max(self._done, after)
        self._next = max(self._next, after)
        return segment.size

    def _remove_segment(self, segment):
        self._segments.remove(segment)
        if self._reader is not None and self._reader[0] == segment.number:
            self._reader[1].close()
            self._reader = None
        if self._writer is not None and not self._segments:
            self._writer.close()
            self._writer = None
        try:
            os.remove(segment.path)
        except OSError:
            pass

    def _read_cursor(self):
        try:
            with open(os.path.join(self.directory, "cursor"), encoding="ascii") as handle:
                number, offset = handle.read().split()
                return int(number), int(offset)
        except (OSError, ValueError):
            return None

    def _write_cursor(self):
        """Save where publishing stands; a full disk keeps it in memory until a later try."""
        path = os.path.join(self.directory, "cursor")
        self._cursor_written = time.monotonic()  # a failed try waits CURSOR_EVERY too
        try:
            with open(path + ".tmp", "w", encoding="ascii") as handle:
                handle.write(f"{self._done[0]} {self._done[1]}\n")
            os.replace(path + ".tmp", path)
        except OSError as exc:
            _remove(path + ".tmp")
            if not self._said_cursor and self._log is not None:
                self._log.warning(f"MQTT spool {self.directory}: cannot save the cursor "
                                  f"({exc.strerror or exc}): it is kept in memory and saved "
                                  "when there is room (a restart before then re-sends batches "
                                  "the broker has; the subscribers remove the duplicates)")
            self._said_cursor = True
            return
        self._said_cursor = False
        self._cursor_dirty = False

    def _remove_cursor(self):
        for name in ("cursor", "cursor.tmp"):
            _remove(os.path.join(self.directory, name))
        self._cursor_dirty = False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
