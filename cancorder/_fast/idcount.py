"""The live table's per-frame work: counting frames into one row per id (monitor.Monitor).

A row holds what the table shows of one id: its last data, how many frames, the sums of the
periods between them (mean period and jitter), and ``diff``, the bytes changed since the last
refresh (bit i: byte i). Everything that costs more (rates, change times, text) happens once per
refresh in monitor.py, for the visible rows only.

Two ways in, one body: ``count_frames`` takes the wire decoder's tuples (``dump --monitor``
reading a logger, a log file, MQTT); ``count_records`` reads the broadcaster's records
themselves (the web page's live feed), so nothing is decoded into Python objects except the data
of a row whose bytes changed. Compiled, a frame costs a dict lookup and a few C operations.
"""
try:
    import cython
except ImportError:  # a pure-Python install: only cython.compiled is read at run time
    from . import _nocython as cython

from .wire import FLAG_EXT, HEADER_SIZE

EXT_BIT = 1 << 32  # in a row key: 29-bit ids sort after 11-bit ones
ALL_CHANGED = (1 << 64) - 1  # a new length: every byte counts as changed
_NEVER = float("-inf")


MAX_DATA = 64  # CAN FD's longest frame


class Row:
    """One id on one channel (``key``: the sort order, channel first, then the 11/29-bit id).

    The data lives in a buffer of its own, updated in place: a frame whose bytes changed costs
    no allocation; ``data`` makes the bytes when a refresh reads them.

    ``shown`` is what a view last made of this row (the web page's JSON), valid while
    ``count == shown_count``: every frame counted changes ``count``, so a row that took no
    frame since is not made again (the count is 1 or more once a row exists: 0 is "never").
    """

    def __init__(self, key, channel, can_id, flags, micros, now):
        self.key = key
        self.channel = channel
        self.can_id = can_id
        self.flags = flags
        self._data = bytearray(MAX_DATA)
        self.length = 0
        self.count = 0
        self.last_us = micros
        self.sum_period = 0.0  # microseconds between frames, summed (mean period)
        self.sum_period2 = 0.0  # their squares (jitter: the standard deviation)
        self.seen = now  # monotonic time of the last frame
        self.changed = now  # ... of the last change of the data
        self.diff = 0
        self.changed_at = []  # per byte: when it last changed (stamped at a refresh)
        self.counted = 0  # count at the last rate update
        self.rate = 0.0
        self.shown = None
        self.shown_count = 0

    @property
    def data(self):
        return bytes(self._data[:self.length])


def count_frames(rows, frames, order, channel, now, max_rows):
    """Count ``(timestamp_us, can_id, flags, data)`` frames into ``rows`` (id key -> Row).

    ``order`` is the channel's place in the sort; at most ``max_rows`` rows (negative: no limit).
    Returns the frames not counted because the table was full.
    """
    unlisted = 0
    ext_flag, ext_bit = FLAG_EXT, EXT_BIT
    for frame in frames:
        micros, can_id, flags, data = frame
        key = can_id | ext_bit if flags & ext_flag else can_id
        row = rows.get(key)
        if row is None:
            if 0 <= max_rows <= len(rows):
                unlisted += 1
                continue
            row = rows[key] = Row((order, key), channel, can_id, flags, micros, now)
        src = data if type(data) is bytes else bytes(data)
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(bytes, src))
        else:
            p = src
        _take(row, micros, flags, p, 0, len(src), now)
    return unlisted


def count_records(rows, records, order, channel, now, max_rows, keep_last):
    """``count_frames`` for wire records (whole ones, as a broadcaster's batch holds them).

    Returns ``(frames, unlisted, tail)``: ``tail`` is where the last ``keep_last`` records
    start (at most 64), for a trace of the latest frames.
    """
    size = len(records)
    src = records if type(records) is bytes else bytes(records)
    if cython.compiled:
        p = cython.cast(cython.p_uchar, cython.cast(bytes, src))
    else:
        p = src
    keep = min(max(keep_last, 1), 64)
    starts = [0] * 64
    header, ext_flag, ext_bit = HEADER_SIZE, FLAG_EXT, EXT_BIT
    pos = 0
    frames = 0
    unlisted = 0
    while pos + header <= size:
        n = p[pos + 13]
        end = pos + header + n
        if end > size:
            break
        high = p[pos]  # widened before shifting: the timestamp has 64 bits
        high = (high << 24) | (p[pos + 1] << 16) | (p[pos + 2] << 8) | p[pos + 3]
        low = p[pos + 4]
        low = (low << 24) | (p[pos + 5] << 16) | (p[pos + 6] << 8) | p[pos + 7]
        micros = (high << 32) | low
        can_id = ((p[pos + 8] & 0x1F) << 24) | (p[pos + 9] << 16) | (p[pos + 10] << 8) | p[pos + 11]
        flags = p[pos + 12]
        key = can_id | ext_bit if flags & ext_flag else can_id
        starts[frames % keep] = pos
        frames += 1
        row = rows.get(key)
        if row is None:
            if 0 <= max_rows <= len(rows):
                unlisted += 1
                pos = end
                continue
            row = rows[key] = Row((order, key), channel, can_id, flags, micros, now)
        _take(row, micros, flags, p, pos + header, n, now)
        pos = end
    tail = starts[frames % keep] if frames >= keep else 0
    return frames, unlisted, tail


def _take(row, micros, flags, p, start, n, now):
    """One frame of this row's id, its ``n`` data bytes at ``p[start:]``."""
    if row.count:
        period = micros - row.last_us
        fperiod = period
        row.sum_period += fperiod
        row.sum_period2 += fperiod * fperiod
    row.last_us = micros
    row.count += 1
    row.seen = now
    row.flags = flags
    n = min(n, MAX_DATA)
    q = row._data
    i = 0
    if row.length != n:
        while i < n:
            q[i] = p[start + i]
            i += 1
        row.length = n
        if row.count == 1:  # the first frame: nothing changed yet
            row.changed_at = [_NEVER] * n
        else:
            row.diff = ALL_CHANGED
            row.changed = now
        return 0
    one = 1
    mask = row.diff
    differs = False
    while i < n:
        if q[i] != p[start + i]:
            q[i] = p[start + i]
            mask |= one << i
            differs = True
        i += 1
    if differs:
        row.diff = mask
        row.changed = now
    return 0


def tick_rows(rows, now, elapsed, weight):
    """Once per refresh, every row of one table (id key -> Row): its rate, a moving average
    given ``weight`` of what it counted in the last ``elapsed`` seconds (weight 0: rates left
    as they are), and the time of the bytes changed since the last refresh (``diff``)."""
    for row in rows.values():
        if weight > 0.0:
            fresh = (row.count - row.counted) / elapsed
            row.rate += (fresh - row.rate) * weight
            row.counted = row.count
        if row.diff:
            _stamp(row, now)
    return 0


def _stamp(row, now):
    diff = row.diff  # bit i: byte i changed
    row.diff = 0
    n = row.length
    changed_at = row.changed_at
    if len(changed_at) != n:  # a new length: all bytes are new
        row.changed_at = [now] * n
        return 0
    i = 0
    while diff and i < n:
        if diff & 1:
            changed_at[i] = now
        diff >>= 1
        i += 1
    return 0


def row_json(row, named):
    """The row as the web page's live feed sends it (its JSON array, as bytes): made once per
    change of the row (``Row.shown``). ``named`` is the JSON of its message name and signals
    (``null,null`` without a database). Times are the monotonic clock's, to the millisecond."""
    intervals = row.count - 1
    if intervals > 0:
        period = "%.2f" % (row.sum_period / intervals / 1000.0)
    else:
        period = "null"
    parts = []
    for at in row.changed_at:
        parts.append("null" if at == _NEVER else "%.3f" % at)
    if row.flags & FLAG_EXT:
        ident = "%08X" % row.can_id
    else:
        ident = "%03X" % row.can_id
    data = row._data[:row.length].hex(" ").upper()
    return ('["%s",%d,%d,%s,"%s",[%s],%.3f,%.3f,%s]' % (
        ident, row.flags, row.count, period, data, ",".join(parts), row.seen, row.changed,
        named)).encode()

