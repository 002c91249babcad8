"""The live view's frames: a RecordSink per bus that counts them while someone watches.

The source thread's whole cost is ``put``: nothing while no one watches the bus, else a bounded
append (a batch that does not fit is dropped and counted: the view may miss frames, the bus
never waits). The feed's own thread counts the records into a ``monitor.Monitor`` (the per-id
table of ``dump --monitor``, used without its screen) without decoding them (compiled:
_fast/idcount.py), and decodes only the last few for the trace; the
page's ticker calls ``view`` at most 5 times a second, once per bus whatever the number of
viewers.
"""
import collections
import json
import threading
import time

from .._fast import idcount, wire
from ..monitor import CHANGED_FOR, Monitor
from ..sinks.base import RecordSink

MAX_QUEUED = 4 << 20  # bytes of records waiting for the feed's thread (about 0.5 s at 30,000/s)
GATHER = 0.05  # s the feed's thread lets batches gather between two wake-ups: a source hands
# over a batch a millisecond, and a thread woken for each cost more than the counting
TRACE_ROWS = 40  # the latest frames shown under the table
MAX_ROWS = 1000  # ids sent in one update, the first in id order (the page filters and sorts
# them): what a live update costs to build and send stays bounded
MAX_IDS = 4096  # ids counted per bus: every 11-bit id and room for 29-bit ones (a flood of
# distinct ids beyond it is counted in the total only, so the table's cost stays bounded)


class LiveUpdate:
    """One live update, made once for every viewer: ``full`` (JSON, every row) for a viewer
    that has nothing yet or missed one, ``delta`` (the rows that changed since update
    ``seq - 1``, by their place in it; None when the rows themselves changed) for the others."""

    __slots__ = ("seq", "full", "delta")

    def __init__(self, seq, full, delta):
        self.seq, self.full, self.delta = seq, full, delta


class LiveFeed(RecordSink):
    """One bus's live table; ``watched`` is switched by the page as viewers come and go."""

    metrics_name = "web"

    def __init__(self, signals=None, clock=time.monotonic):
        self.signals = signals  # dbc.SignalDecoder or None
        self.clock = clock
        self.watched = False
        self.dropped = 0  # frames not counted: the feed's queue was full
        self.table = self._new_table()
        self.trace = collections.deque(maxlen=TRACE_ROWS)
        self._queue = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._stopped = threading.Event()  # wakes the feed's thread from its gathering pause
        self._thread = None
        self._failed = None
        self._seq = 0  # live updates made (each viewer says which one it has)
        self._sent_keys = None  # the rows of the last update, in order

    def _new_table(self):
        return Monitor(signals=self.signals, keys=None, clock=self.clock, capture_log=False,
                       max_rows=MAX_IDS)

    def start(self, bus):
        self._failed = bus.failed
        self._thread = threading.Thread(target=self._run, name=f"web {bus.name}", daemon=True)
        self._thread.start()

    def watch(self, on):
        """The first viewer starts a fresh table; the last one leaving stops the counting."""
        if on and not self.watched:
            with self._lock:
                self.table = self._new_table()
                self.trace.clear()
            self._sent_keys = None
        self.watched = on

    def put(self, records):
        if not self.watched:
            return
        size = len(records)
        with self._lock:
            if self._queued + size > MAX_QUEUED:
                full = True
            else:
                full = False
                self._queue.append(records)
                self._queued += size
        if full:
            self.dropped += size // wire.HEADER_SIZE  # at most: the view says "about"
            return
        self._ready.set()

    def close(self, timeout):
        self._stopping = True
        self._stopped.set()
        self._ready.set()
        if self._thread is not None:
            self._thread.join(min(timeout, 2.0) if timeout else 0.5)

    def _run(self):
        try:
            while not self._stopping:
                self._ready.wait(0.5)
                self._ready.clear()
                self._count_queued()
                self._stopped.wait(GATHER)
        except Exception as exc:  # a bug: said like any consumer's (exit 1)
            if self._failed is None:
                raise
            self._failed("the web page's live feed", exc)

    def _count_queued(self):
        """Count the batches gathered since the last wake-up; decode only the latest
        TRACE_ROWS frames of them all, for the trace (a source hands over a batch a
        millisecond: the last few of each would be about every frame)."""
        with self._lock:
            batches = list(self._queue)
            self._queue.clear()
            self._queued = 0
            table = self.table
        tails = [table.add_records(records, keep_last=TRACE_ROWS) for records in batches]
        latest = []
        for records, tail in zip(reversed(batches), reversed(tails)):  # a batch holds whole records
            latest[:0] = wire.StreamDecoder().feed(records[tail:])
            if len(latest) >= TRACE_ROWS:
                break
        self.trace.extend(latest[-TRACE_ROWS:])

    def view(self, now=None):
        """The table and the trace as the page shows them: a LiveUpdate (JSON bytes).

        Each row is sent as its frames left it (times, not ages: the page computes the ages),
        so a row that took no frame since the last update is the same bytes: it is made once
        and kept with the row (``Row.shown``, valid while its count is unchanged), and only
        the rows made again go in the update's delta. The rates move without frames: they go
        in ``rates``, one per row in id order, in both.
        Row: [id, flags, count, period ms or null, data hex, per byte when it last changed
        (null: never), last frame, last data change, message name, signals]; times are
        ``now``'s clock (seconds).
        """
        now = self.clock() if now is None else now
        table = self.table
        rows, ids = table.tick_and_show(now, MAX_ROWS, self._shown)
        trace = [{"t": micros / 1e6,
                  "id": f"{can_id:08X}" if flags & wire.FLAG_EXT else f"{can_id:03X}",
                  "data": data.hex(" ").upper()}
                 for micros, can_id, flags, data in list(self.trace)]
        self._seq += 1
        head = json.dumps({"seq": self._seq, "now": round(now, 3), "hot_for": CHANGED_FOR,
                           "total": table.total, "rate": round(table.total_rate, 1), "ids": ids,
                           "unlisted": table.unlisted, "dropped": self.dropped,
                           "trace": trace[::-1],
                           "rates": [round(row[2], 1) for row in rows]})[:-1].encode()
        full = b"".join((head, b', "rows": [', b",".join([row[1] for row in rows]), b"]}"))
        keys = [row[0] for row in rows]
        delta = None
        if keys == self._sent_keys:  # the same rows in the same places: the changed ones will do
            changed = b",".join([b"[%d,%s]" % (index, row[1])
                                 for index, row in enumerate(rows) if row[3]])
            delta = b"".join((head, b', "since": %d, "changed": [' % (self._seq - 1), changed,
                              b"]}"))
        self._sent_keys = keys
        return LiveUpdate(self._seq, full, delta)

    def _shown(self, row, name):
        """(key, the row's JSON, its rate, whether it was made again: it took a frame since)."""
        if row.shown_count == row.count:
            return row.key, row.shown, row.rate, False
        row.shown = self._row_json(row, name)
        row.shown_count = row.count
        return row.key, row.shown, row.rate, True

    def _row_json(self, row, name):
        if name is None:
            return idcount.row_json(row, "null,null")
        signals = _signals(self.signals.decode(row.can_id, row.flags, row.data))
        return idcount.row_json(row, json.dumps(name) + "," + json.dumps(signals))


def _signals(decoded):
    if decoded is None:
        return None
    if decoded.error:
        return {"error": decoded.error}
    from ..dbc import format_value

    return {name: format_value(value) + (" " + decoded.units[name]
                                         if decoded.units.get(name) else "")
            for name, value in decoded.signals.items()}
