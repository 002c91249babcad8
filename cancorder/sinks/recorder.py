"""``--record``: every frame of a bus to rotating log files (``recording.RotatingLog``), from a
thread of its own; and the recording flags, shared with ``dump -o`` and ``mock-uds --output``."""
import collections
import logging
import os
import threading
import time

from .._fast import logfile
from ..argtypes import byte_size, duration, positive_int, write_pattern
from ..logfiles import writers
from ..errors import UsageError
from ..logfiles.naming import PART
from ..report import plural
from .base import RecordSink, recording_fields


class Recorder(RecordSink):
    """``--record``: a record sink. ``put`` only queues (bounded: when the disk or the format's
    writer cannot keep up, batches are dropped and counted, never waited for); the writing
    thread does the rest."""

    MAX_QUEUED_BYTES = 32 << 20
    MAX_LAG = 10.0  # a batch older than this when the writer gets to it is dropped, counted
    CLOSE_WAIT = 30.0  # on a stop: the most the file may take to be finished
    STOP_WRITING = 10.0  # ...and queued batches are written for this long at most (the rest
    # dropped and counted): a writer that fell behind (asammdf's at 30,000 frames/s) would keep a
    # stopping serve waiting for the whole of its backlog; 10 s keeps what a slow disk can still
    # take, well inside a supervisor's stop timeout (systemd's 90 s)
    metrics_name = "recording"  # cancorder_recording_<stat>{bus} on the metrics page

    @classmethod
    def add_arguments(cls, parser):
        add_record_arguments(parser, "--record", repeatable=True)

    @classmethod
    def factories(cls, args):
        """One recorder per ``--record PATH`` (every path checked and its folder made now)."""
        return [lambda bus, server_options, options=options: cls(options)
                for options in record_options(args)]

    def __init__(self, options, clock=time.time, max_queued=None):
        from ..logfiles.rotation import check_record_options

        check_record_options(options)
        self.options = options
        self.clock = clock
        self.max_queued = max_queued or self.MAX_QUEUED_BYTES
        self.log = logging.getLogger("cancorder.record")
        self.dropped = 0  # frames dropped at the queue (the disk or the writer was too slow)
        self._rotating = None
        self._queue = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._stop_writing_at = None  # monotonic: after a stop, when queued batches are dropped
        self._finished = False  # the thread is done and the file finished
        self._said_slow = False
        self._dead = False
        self._failed = None
        self._in_hand = []  # batches taken from the queue; the first _written are written
        self._written = 0
        self._thread = None

    def start(self, bus):
        from ..logfiles.rotation import RotatingLog

        self.log = bus.log
        self._failed = bus.failed
        self._rotating = RotatingLog(self.options, recording_fields(bus), self.log, self.clock,
                                     log_channel=bus.log_channel)
        self._rotating.open()  # from the moment the source opens, clients or not
        if self._rotating.format.suffix == ".mf4":  # the one format slower than a busy bus
            self.log.info(f"recording {self._rotating.format.extension}: asammdf writes about "
                          f"{writers.MF4_FRAMES_PER_S:,} frames/s; on a busier bus the frames "
                          "it cannot take are dropped from the recording, counted and said "
                          "(.blf or .log keep up)")
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def put(self, records):
        size = len(records)
        with self._lock:
            if self._dead or self._queued + size > self.max_queued:
                full = True
            else:
                full = False
                self._queue.append((time.monotonic(), records))
                self._queued += size
        if full:
            self._drop(records, "the disk is too slow")
            return
        self._ready.set()

    def _drop(self, records, why):
        self.dropped += logfile.count_records(records)
        if not self._said_slow:
            self._said_slow = True
            self.log.warning(f"recording cannot keep up ({why}): frames are dropped from the "
                             "recording and counted; serving goes on")

    def close(self, timeout=5.0):
        self._stop_writing_at = time.monotonic() + min(self.STOP_WRITING,
                                                       max(timeout, self.CLOSE_WAIT) / 3)
        self._stopping = True
        self._ready.set()
        if self._thread is not None:
            # what is queued is written and the file finished: worth more than the clients'
            # drain time (the thread is a daemon: it would die with the process)
            self._thread.join(max(timeout, self.CLOSE_WAIT))
            if self._thread.is_alive():
                self.log.warning("the recorder did not finish within "
                                 f"{max(timeout, self.CLOSE_WAIT):g} s: the file being written "
                                 "stays a .part file (the next start keeps what of it reads), "
                                 "and only the finished files count as recorded")

    def _run(self):
        try:
            self._loop()
        except Exception as exc:  # a bug (a full disk is handled inside): never silent
            self._dead = True
            with self._lock:
                for _, records in self._in_hand[self._written:] + list(self._queue):
                    self.dropped += logfile.count_records(records)
                self._queue.clear()
            if self._failed is not None:
                self._failed("the recorder", exc)  # the server stops with exit 1
            else:
                self.log.error(f"the recorder stopped: {type(exc).__name__}: {exc}")

    def _loop(self):
        rotating = self._rotating
        while True:
            now = self.clock()
            wait = max(0.0, min(rotating.next_deadline(now) - now, 1.0))
            self._ready.wait(wait)
            self._ready.clear()
            while True:
                with self._lock:
                    if not self._queue:
                        break
                    batch = self._in_hand = list(self._queue)
                    self._written = 0
                    self._queue.clear()
                    self._queued = 0
                now = self.clock()
                for put_at, records in batch:
                    late = time.monotonic()
                    if self._stop_writing_at is not None and late >= self._stop_writing_at:
                        self._drop(records, "the stop came with more queued than could be "
                                          "written in time")
                    elif late - put_at > self.MAX_LAG:
                        # a writer slower than the bus (asammdf's for .mf4 at 30,000 frames/s)
                        # would fall ever further behind: skipping what is stale lets it catch
                        # up, and what it skips is counted like a full disk's
                        self._drop(records, f"the {rotating.format.extension} writer is more "
                                          f"than {self.MAX_LAG:g} s behind the bus")
                    else:
                        rotating.write(records, now)
                    self._written += 1
                self._in_hand, self._written = [], 0
            rotating.tick()
            if self._stopping:
                with self._lock:
                    empty = not self._queue
                if empty:
                    break
        rotating.close()
        self._finished = True

    # ---- reporting ----

    def stats(self):
        """On the metrics page as cancorder_recording_<key>{bus} (several --record of one
        bus add up)."""
        r = self._rotating
        if r is None:
            return {"frames": 0, "lost_frames": self.dropped, "files": 0, "bytes": 0,
                    "errors": 0}
        stats = {"frames": r.frames, "lost_frames": r.lost + self.dropped,
                 "files": r.file_count, "bytes": r.bytes_written, "errors": r.errors}
        if self.options.keep_unsent:  # --upload: files retention had to delete unsent
            stats["deleted_unsent_files"] = r.deleted_unsent
        return stats

    def files(self):
        r = self._rotating
        if r is None:
            return []
        found = [(path, size, False) for path, size in r.closed_files()]
        current = r.current
        if current is not None:
            try:
                found.append((current, os.stat(current + PART).st_size, True))
            except OSError:  # between two files
                pass
        return found

    def summary(self):
        r = self._rotating
        if r is None:
            return "recorded nothing"
        recorded, lost, where = r.frames, r.lost + self.dropped, r.describe()
        if self._thread is not None and self._stopping and not self._finished:
            # the thread is still writing: only the finished files hold their frames; those
            # taken by the open file or still queued are not recorded
            with self._lock:
                queued = self._in_hand[self._written:] + list(self._queue)
            recorded = r.recorded
            lost += r.frames - recorded + sum(logfile.count_records(records)
                                              for _, records in queued)
            where = r.describe(finished_only=True)
        text = f"recorded {plural(recorded, 'frame')} to {where}"
        if lost:
            text += f"; {plural(lost, 'frame')} could not be recorded"
        for note in r.notes():
            text += f"; {note}"
        return text


def add_record_arguments(parser, *flags, repeatable=False, help=None):
    """The recording flag (``--record PATH`` or dump's ``-o FILE``) and the rotation and
    retention flags that go with it."""
    group = parser.add_argument_group("recording")
    group.add_argument(*flags, dest="record", metavar="PATH", type=write_pattern,
                       action="append" if repeatable else "store",
                       default=[] if repeatable else None,
                       help=help or "record every frame to PATH, format by extension (.log "
                                    ".log.gz .asc .asc.gz .blf .csv .trc .txt .db .pcapng, .mf4 "
                                    "with asammdf); strftime fields and {channel} {interface} "
                                    "{port} {n} make the names, e.g. "
                                    "logs/%%Y%%m%%d/%%H%%M%%S-{channel}.log.gz")
    group.add_argument("--rotate-size", type=byte_size, default=None, metavar="SIZE",
                       help="start a new file once one reaches SIZE (e.g. 100M)")
    group.add_argument("--rotate-time", type=duration, default=None, metavar="TIME",
                       help="start a new file on every wall-clock multiple of TIME (e.g. 1h: "
                            "files start at :00; 30s 15m 1h 1d)")
    group.add_argument("--keep-files", type=positive_int, default=None, metavar="N",
                       help="delete the oldest closed recordings beyond N files")
    group.add_argument("--keep-size", type=byte_size, default=None, metavar="SIZE",
                       help="delete the oldest closed recordings while all of them take more "
                            "than SIZE (e.g. 20G)")
    parser.set_defaults(record_flag=flags[0])


def record_options(args):
    """The RecordOptions of every recording path given (validated, folders created), or []."""
    from ..logfiles.rotation import RecordOptions, check_record_options

    paths = args.record if isinstance(args.record, list) else (
        [args.record] if args.record else [])
    flag = args.record_flag
    if not paths:
        given = [name for name, value in (
            ("--rotate-size", args.rotate_size), ("--rotate-time", args.rotate_time),
            ("--keep-files", args.keep_files), ("--keep-size", args.keep_size)) if value]
        if given:
            raise UsageError(f"{', '.join(given)} applies to a recording: add {flag} PATH")
        return []
    result = []
    for path in paths:
        options = RecordOptions(path, rotate_size=args.rotate_size,
                                rotate_time=args.rotate_time, keep_files=args.keep_files,
                                keep_size=args.keep_size, flag=flag,
                                keep_unsent=bool(getattr(args, "upload", None)))
        check_record_options(options)  # a UsageError naming the flag
        result.append(options)
    return result
