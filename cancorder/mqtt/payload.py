"""The MQTT payload: one batch of ECUconnect records behind a 36-byte header.

    offset size  field (integers big-endian, like the records)
    0      4     magic b"CCMQ"
    4      1     version (1)
    5      1     header size in bytes (36; a reader skips what a later version adds)
    6      2     reserved, 0
    8      8     session id: random, new each time a cancorder process starts publishing
    16     8     sequence number of this batch in its session: 1, 2, 3...
    24     8     frame number of the first frame: frames published before it in the session
    32     4     frames in this batch
    36     ...   the records, exactly as the TCP stream carries them (wire.py)

The sequence number tells a QoS-1 redelivery (seen before) from a new batch; the frame number
tells how many frames a gap lost.
"""
import collections
import struct

from .._fast import wire
from ..errors import PayloadError

MAGIC = b"CCMQ"
VERSION = 1
_HEADER = struct.Struct(">4sBBHQQQI")
HEADER_SIZE = _HEADER.size  # 36

Batch = collections.namedtuple("Batch", "session sequence first_frame count records")


def encode(session, sequence, first_frame, count, records):
    return _HEADER.pack(MAGIC, VERSION, HEADER_SIZE, 0, session, sequence, first_frame,
                        count) + records


def read_header(payload):
    """The header fields (records left as they are): for the spool, which only counts."""
    if len(payload) < HEADER_SIZE:
        raise PayloadError(f"{len(payload)} bytes: shorter than the {HEADER_SIZE}-byte header")
    magic, version, size, _, session, sequence, first, count = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise PayloadError(f"does not start with {MAGIC!r} (not a cancorder batch; "
                           f"starts {bytes(payload[:8]).hex(' ')})")
    if version != VERSION or size < HEADER_SIZE or size > len(payload):
        raise PayloadError(f"version {version} with a {size}-byte header: this cancorder "
                           f"reads version {VERSION} (upgrade it)")
    return Batch(session, sequence, first, count, None), size


def decode(payload):
    """A Batch whose ``records`` are decoded frames; every record is validated."""
    header, size = read_header(payload)
    decoder = wire.StreamDecoder()
    try:
        frames = decoder.feed(memoryview(payload)[size:])
        decoder.finish()
    except Exception as exc:
        raise PayloadError(f"bad records: {exc}") from None
    if len(frames) != header.count:
        raise PayloadError(f"the header says {header.count} frames, the records hold "
                           f"{len(frames)}")
    return header._replace(records=frames)


class SequenceTracker:
    """Per topic and session: drops batches seen before, measures gaps in frames.

    ``accept(topic, batch)`` returns None for a duplicate (its sequence number is not above the
    last one taken), else the number of frames missing before it (0 when none).
    """

    MAX_STREAMS = 4096  # topics x sessions remembered (a fleet restarting for days)

    def __init__(self):
        self._streams = collections.OrderedDict()  # (topic, session) -> [sequence, next frame]
        self._sessions = collections.OrderedDict()  # topic -> the session of its last batch
        self.duplicates = 0
        self.missing = 0
        self.new_sessions = 0  # a topic's logger restarted: what its last session did not
                               # publish can never be counted

    def is_new_session(self, topic, batch):
        """True for the first batch of a session on a topic that had another before."""
        last = self._sessions.get(topic)
        return last is not None and last != batch.session and \
            (topic, batch.session) not in self._streams

    def accept(self, topic, batch):
        key = (topic, batch.session)
        state = self._streams.get(key)
        if state is None:
            if self.is_new_session(topic, batch):
                self.new_sessions += 1
            if len(self._streams) >= self.MAX_STREAMS:
                self._streams.popitem(last=False)
            self._streams[key] = [batch.sequence, batch.first_frame + batch.count]
            self._sessions[topic] = batch.session
            self._sessions.move_to_end(topic)
            if len(self._sessions) > self.MAX_STREAMS:
                self._sessions.popitem(last=False)
            return 0
        self._streams.move_to_end(key)
        if batch.sequence <= state[0]:
            self.duplicates += 1
            return None
        self._sessions[topic] = batch.session
        missing = max(0, batch.first_frame - state[1])
        self.missing += missing
        state[0] = batch.sequence
        state[1] = batch.first_frame + batch.count
        return missing
