"""The lake: Parquet files of frames (and decoded signals) in a Hive layout, in a folder or an
S3-compatible store, written so that the same batches written twice replace, never double.

    frames/system=S/channel=C/date=YYYY-MM-DD/hour=HH/SESSION-FIRSTSEQ.parquet
    signals/system=S/channel=C/date=YYYY-MM-DD/hour=HH/SESSION-FIRSTSEQ.parquet  (--dbc)
    gaps/system=S/channel=C/date=YYYY-MM-DD/hour=HH/gaps.parquet  (frames missing: see below)

A file holds batches of one logger (system, channel), one publishing session and one hour (the
hour of each batch's first frame: a batch is never split). Its name is the session id and the
sequence number of its first batch: whoever writes those batches again (the same worker after a
crash, before it acknowledged them) writes the same key, and the store keeps one object. Each
row carries its batch's session, sequence number and its frame number in the session, so a
query can count what a logger published and where frames are missing (docs/archive.md).
"""
import datetime
import io
import os
import threading
import time
import urllib.parse

from .._fast import wire

FRAME_COLUMNS = ("system", "channel", "timestamp_us", "id", "extended", "fd", "brs", "esi",
                 "length", "data", "session", "sequence", "frame")
SIGNAL_COLUMNS = ("system", "channel", "timestamp_us", "message", "signal", "value", "label",
                  "session", "sequence", "frame")
#: where frames are missing (a logger's spool dropped them, or they never reached the broker),
#: over any frames files ({frames}); the gaps table holds the same per hour partition
GAPS_SQL = """
select system, channel, session, frame_before + 1 as from_frame, frame - 1 as to_frame,
       frame - frame_before - 1 as missing, make_timestamp(time_before) as after,
       make_timestamp(timestamp_us) as before
from (select system, channel, session, frame, timestamp_us,
             lag(frame) over w as frame_before, lag(timestamp_us) over w as time_before
      from read_parquet('{frames}')
      window w as (partition by system, channel, session order by frame))
where frame - frame_before > 1
order by system, channel, after
"""
ROW_GROUP_ROWS = 128 * 1024  # row groups this big: min/max statistics per 128k frames
DELTA_COLUMNS = ("timestamp_us", "sequence", "frame")
GAPS_QUIET = 5.0  # s after a partition's last file (its hour ended) before its gaps are written
RECORD_OVERHEAD = 16  # bytes a frame counts towards --max-file-size beside its data


def _schemas():
    import pyarrow as pa

    frames = pa.schema([("system", pa.string()), ("channel", pa.string()),
                        ("timestamp_us", pa.int64()), ("id", pa.uint32()),
                        ("extended", pa.bool_()), ("fd", pa.bool_()), ("brs", pa.bool_()),
                        ("esi", pa.bool_()), ("length", pa.uint8()), ("data", pa.binary()),
                        ("session", pa.uint64()), ("sequence", pa.uint64()),
                        ("frame", pa.uint64())])
    signals = pa.schema([("system", pa.string()), ("channel", pa.string()),
                         ("timestamp_us", pa.int64()), ("message", pa.string()),
                         ("signal", pa.string()), ("value", pa.float64()),
                         ("label", pa.string()), ("session", pa.uint64()),
                         ("sequence", pa.uint64()), ("frame", pa.uint64())])
    return frames, signals


def partition_of(timestamp_us):
    """(date, hour) of a frame time (UTC)."""
    moment = datetime.datetime.fromtimestamp(timestamp_us / 1e6, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def object_key(table, system, channel, date, hour, session, first_sequence):
    """The file's key below the lake's root: the same batches always get the same key."""
    def value(text):
        return urllib.parse.quote(str(text), safe="")

    return (f"{table}/system={value(system)}/channel={value(channel)}/date={date}/hour={hour}/"
            f"{session:016x}-{first_sequence:020d}.parquet")


def partition_folder(table, system, channel, date, hour):
    """A partition's folder below the lake's root, ending in /."""
    key = object_key(table, system, channel, date, hour, 0, 0)
    return key[:key.rindex("/") + 1]


def gaps_key(system, channel, date, hour):
    """The gaps of one hour partition: one object, whoever computes them (written again, it
    replaces)."""
    return partition_folder("gaps", system, channel, date, hour) + "gaps.parquet"


def hour_start(date, hour):
    """Unix seconds at the start of a partition's hour (UTC)."""
    moment = datetime.datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def sequences_key(frames_key):
    """Beside each frames file, the list of its batches' sequence numbers (``_`` first: DuckDB's
    *.parquet and pyarrow.dataset skip it), written after the file, before any acknowledgement:
    a batch the broker delivers again is looked up there (see LakeWriter.add)."""
    folder, _, name = frames_key.rpartition("/")
    return f"{folder}/_{name[:-len('.parquet')]}.sequences"


class FolderStore:
    """A local folder: a file appears whole (written under a temporary name, synced, renamed)."""

    def __init__(self, root):
        self.root = root
        self.where = root

    def put(self, key, data):
        from ..errors import ArchiveError

        path = os.path.join(self.root, *key.split("/"))
        folder = os.path.dirname(path)
        temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)  # the rename itself survives a power cut
            finally:
                os.close(descriptor)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise ArchiveError(f"{path}: cannot write it ({exc.strerror or exc}); what was "
                               "not stored stays with the broker for the next start") from None


    def read(self, key):
        """A small object's bytes (the recordings' marks), None when there is none."""
        try:
            with open(os.path.join(self.root, *key.split("/")), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def names(self, folder, start):
        """The names in ``folder`` (a key prefix ending in /) that begin with ``start``."""
        try:
            return [name for name in os.listdir(os.path.join(self.root, *folder.split("/")))
                    if name.startswith(start)]
        except FileNotFoundError:
            return []


class S3Store:
    """An S3-compatible bucket (upload/target.py's Target: endpoint, CA, credentials): one PUT
    per file, which the store makes visible whole or not at all. A network failure is retried
    with backoff until ``stopping`` is set; a refusal (keys, bucket) raises UploadError."""

    def __init__(self, target, stopping=None, log=None):
        self.target = target
        self.where = f"s3://{target.bucket}/{target.prefix}".rstrip("/")
        self.stopping = stopping or threading.Event()
        self.log = log
        self._client = target.client()

    def _full(self, key):
        prefix = self.target.prefix.strip("/")
        return f"{prefix}/{key}" if prefix else key

    def read(self, key):
        """A small object's bytes (the recordings' marks), None when there is none."""
        try:
            return self._client.get_object(Bucket=self.target.bucket,
                                           Key=self._full(key))["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None

    def names(self, folder, start):
        """The names in ``folder`` (a key prefix ending in /) that begin with ``start``."""
        found = []
        for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=self._full(folder + start)):
            found += [item["Key"].rsplit("/", 1)[-1] for item in page.get("Contents", [])]
        return found

    def put(self, key, data):
        from ..errors import UploadError
        from ..upload.target import describe_failure

        full = self._full(key)
        delay = 1.0
        while True:
            try:
                self._client.put_object(Bucket=self.target.bucket, Key=full, Body=data)
                return
            except Exception as exc:
                refused, text = describe_failure(exc, self.target)
                if refused:
                    raise UploadError(text) from None
                if self.log is not None:
                    self.log.warning(f"archive: {text}; retrying in {delay:g} s")
                if self.stopping.wait(delay):
                    raise UploadError(f"stopped before {key} reached {self.where}") from None
                delay = min(delay * 2, 30.0)


class OpenFile:
    """The rows of one lake file being gathered, and what to acknowledge once it is stored."""

    def __init__(self, system, channel, session, first_sequence, date, hour, with_signals):
        self.system, self.channel, self.session = system, channel, session
        self.first_sequence, self.date, self.hour = first_sequence, date, hour
        self.opened = time.monotonic()
        self.sequences = set()
        self.acks = []  # what the caller acknowledges when the file is durable
        self.size = 0
        self.columns = {name: [] for name in FRAME_COLUMNS[2:]}
        self.signals = {name: [] for name in SIGNAL_COLUMNS[2:]} if with_signals else None

    @property
    def rows(self):
        return len(self.columns["timestamp_us"])

    def add(self, batch, decoder):
        session, sequence, first = batch.session, batch.sequence, batch.first_frame
        frames = batch.records
        ext, fd, brs, esi = wire.FLAG_EXT, wire.FLAG_FD, wire.FLAG_BRS, wire.FLAG_ESI
        c = self.columns
        c["timestamp_us"] += [f[0] for f in frames]
        c["id"] += [f[1] for f in frames]
        flags = [f[2] for f in frames]
        c["extended"] += [bool(x & ext) for x in flags]
        c["fd"] += [bool(x & fd) for x in flags]
        c["brs"] += [bool(x & brs) for x in flags]
        c["esi"] += [bool(x & esi) for x in flags]
        datas = [bytes(f[3]) for f in frames]
        c["length"] += [len(d) for d in datas]
        c["data"] += datas
        count = len(frames)
        c["session"] += [session] * count
        c["sequence"] += [sequence] * count
        c["frame"] += range(first, first + count)
        self.size += RECORD_OVERHEAD * count + sum(c["length"][-count:]) if count else 0
        self.sequences.add(sequence)
        if self.signals is not None:
            self._add_signals(frames, session, sequence, first, decoder)

    def _add_signals(self, frames, session, sequence, first, decoder):
        s = self.signals
        for index, (timestamp, can_id, flags, data) in enumerate(frames):
            decoded = decoder.decode(can_id, flags, bytes(data))
            if decoded is None or decoded.error:
                continue
            for name, value in decoded.signals.items():
                s["timestamp_us"].append(timestamp)
                s["message"].append(decoded.name)
                s["signal"].append(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    s["value"].append(float(value))
                    s["label"].append(None)
                else:  # a choice: its number and its name
                    s["value"].append(float(getattr(value, "value", 0)))
                    s["label"].append(str(value))
                s["session"].append(session)
                s["sequence"].append(sequence)
                s["frame"].append(first + index)

    def parquet(self):
        """{table: bytes} of this file: frames, and signals when there are any."""
        import pyarrow as pa

        frames_schema, signals_schema = _schemas()
        out = {"frames": _parquet(pa, frames_schema, self.system, self.channel, self.columns)}
        if self.signals is not None and self.signals["timestamp_us"]:
            # sorted by signal so that a query for one signal reads few row groups
            order = sorted(range(len(self.signals["signal"])),
                           key=lambda i: (self.signals["message"][i], self.signals["signal"][i]))
            ordered = {name: [values[i] for i in order] for name, values in self.signals.items()}
            out["signals"] = _parquet(pa, signals_schema, self.system, self.channel, ordered)
        return out


def _parquet(pa, schema, system, channel, columns):
    import pyarrow.parquet as pq

    rows = len(columns["timestamp_us"])
    arrays = [pa.array([system] * rows, pa.string()).dictionary_encode().cast(pa.string()),
              pa.array([channel] * rows, pa.string())]
    arrays += [pa.array(columns[field.name], field.type) for field in list(schema)[2:]]
    table = pa.Table.from_arrays(arrays, schema=schema)
    sink = io.BytesIO()
    # numbers that climb (times, frame and batch numbers) as deltas: a third of the bytes of
    # dictionary + zstd for the frames table (bench/archive.py's frames: 9.6 -> 3.1 bytes/frame)
    pq.write_table(table, sink, compression="zstd", write_statistics=True,
                   row_group_size=ROW_GROUP_ROWS,
                   use_dictionary=[name for name in schema.names if name not in DELTA_COLUMNS],
                   column_encoding={name: "DELTA_BINARY_PACKED" for name in DELTA_COLUMNS})
    return sink.getvalue()


GAPS_COLUMNS = ("system", "channel", "session", "from_frame", "to_frame", "missing",
                "after_us", "before_us")


def _frames_files(store, system, channel, date, hour):
    folder = partition_folder("frames", system, channel, date, hour)
    return [folder + name for name in store.names(folder, "")
            if name.endswith(".parquet") and not name.startswith((".", "_"))]


def gaps_parquet(store, system, channel, date, hour):
    """The gaps table's file of one hour partition, from the frames files in the store: (its
    bytes, the gaps). A gap belongs to the hour of the frame after it; the hour before is read
    too, so a gap across the hour's start is found (a logger silent longer than an hour: only
    GAPS_SQL over the whole lake finds that one)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    before = datetime.datetime.fromtimestamp(hour_start(date, hour) - 3600,
                                             datetime.timezone.utc)
    pieces = []
    for (d, h), current in (((before.strftime("%Y-%m-%d"), before.strftime("%H")), False),
                            ((date, hour), True)):
        for key in _frames_files(store, system, channel, d, h):
            data = store.read(key)
            if not data:
                continue
            piece = pq.read_table(io.BytesIO(data), columns=["session", "frame", "timestamp_us"])
            pieces.append(piece.append_column("current", pa.repeat(pa.scalar(current),
                                                                   piece.num_rows)))
    columns = {name: [] for name in GAPS_COLUMNS[2:]}
    rows = sum(piece.num_rows for piece in pieces)
    if rows > 1:
        table = pa.concat_tables(pieces).sort_by([("session", "ascending"),
                                                  ("frame", "ascending")])
        session = table["session"]
        frame = table["frame"].cast(pa.int64())
        after, following = frame.slice(0, rows - 1), frame.slice(1)
        jump = pc.and_(pc.and_(pc.equal(session.slice(0, rows - 1), session.slice(1)),
                               pc.greater(pc.subtract(following, after), 1)),
                       table["current"].slice(1))
        at = pc.indices_nonzero(jump)
        next_at = pc.add(at, 1)
        first = pc.add(pc.take(frame, at), 1)
        last = pc.subtract(pc.take(frame, next_at), 1)
        columns = {"session": pc.take(session, next_at).to_pylist(),
                   "from_frame": first.to_pylist(), "to_frame": last.to_pylist(),
                   "missing": pc.add(pc.subtract(last, first), 1).to_pylist(),
                   "after_us": pc.take(table["timestamp_us"], at).to_pylist(),
                   "before_us": pc.take(table["timestamp_us"], next_at).to_pylist()}
    count = len(columns["session"])
    schema = pa.schema([("system", pa.string()), ("channel", pa.string()),
                        ("session", pa.uint64()), ("from_frame", pa.uint64()),
                        ("to_frame", pa.uint64()), ("missing", pa.uint64()),
                        ("after_us", pa.int64()), ("before_us", pa.int64())])
    arrays = [pa.array([system] * count, pa.string()), pa.array([channel] * count, pa.string())]
    arrays += [pa.array(columns[field.name], field.type) for field in list(schema)[2:]]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink, compression="zstd")
    return sink.getvalue(), [dict(zip(GAPS_COLUMNS[2:], row))
                             for row in zip(*(columns[name] for name in GAPS_COLUMNS[2:]))]


class LakeWriter:
    """Batches in, lake files out. ``add`` gathers a batch into its file (a batch seen before,
    already in an open file or stored, only adds its acknowledgement); ``due`` closes the files
    that are big or old enough. Closing a file writes it to the store and returns its
    acknowledgements, for the caller to send only now that the frames are durable."""

    REMEMBERED = 1 << 20  # stored (session, sequence) kept to acknowledge redeliveries at once

    def __init__(self, store, max_size, max_age, decoder=None):
        self.store = store
        self.max_size = max_size
        self.max_age = max_age
        self.decoder = decoder
        self.open = {}  # (system, channel, session, date, hour) -> OpenFile
        self.stored = {}  # (system, channel, session, sequence) -> None, oldest first
        self.files = 0
        self.frames = 0
        self.bytes = 0
        self.stored_frames = {}  # (system, channel) -> frames stored
        self.looked_up = {}  # (partition folder, session) -> sequences found stored there
        self.touched = {}  # (system, channel, date, hour) -> when a file was last stored there
        self.gaps = 0  # gaps written to the gaps table (each computation's, summed)

    def add(self, system, channel, batch, ack, redelivered=False):
        """Take a batch; returns the acknowledgements to send now (a batch stored before).

        ``redelivered``: the broker sent it before without hearing it arrived. A worker killed
        while it acknowledged a stored file may have told the broker of only part of it: such a
        batch is looked up in the lake (the files' sequence lists) and acknowledged, not
        written twice."""
        if (system, channel, batch.session, batch.sequence) in self.stored:
            return [ack]
        for opened in self.open.values():
            if (opened.system, opened.channel, opened.session) == \
                    (system, channel, batch.session) and batch.sequence in opened.sequences:
                opened.acks.append(ack)  # a redelivery of what this file holds
                return []
        date, hour = partition_of(batch.records[0][0]) if batch.records else ("1970-01-01", "00")
        if redelivered and batch.sequence in self._stored_in_lake(system, channel, date, hour,
                                                                   batch.session):
            return [ack]
        key = (system, channel, batch.session, date, hour)
        opened = self.open.get(key)
        if opened is None:
            opened = self.open[key] = OpenFile(system, channel, batch.session, batch.sequence,
                                               date, hour, self.decoder is not None)
        opened.add(batch, self.decoder)
        opened.acks.append(ack)
        return self.close(key) if opened.size >= self.max_size else []

    def _stored_in_lake(self, system, channel, date, hour, session):
        folder = object_key("frames", system, channel, date, hour, session, 0)
        folder = folder[:folder.rindex("/") + 1]
        found = self.looked_up.get((folder, session))
        if found is None:
            found = set()
            for name in self.store.names(folder, f"_{session:016x}-"):
                data = self.store.read(folder + name)
                if data:
                    found.update(int(n) for n in data.split())
            self.looked_up[(folder, session)] = found
        return found

    def due(self, now=None):
        """Close the files older than max_age; their acknowledgements."""
        now = time.monotonic() if now is None else now
        acks = []
        for key in [k for k, f in self.open.items() if now - f.opened >= self.max_age]:
            acks += self.close(key)
        return acks

    def write_gaps(self, quiet=GAPS_QUIET, now=None):
        """Write the gaps table of each hour partition this writer stored files in, once the
        hour has ended and no file of it came for ``quiet`` s (late files: written again);
        returns [((system, channel, date, hour), [gap dicts])] of the partitions written."""
        now = time.monotonic() if now is None else now
        wall = time.time()
        written = []
        for partition, stored_at in list(self.touched.items()):
            if now - stored_at < quiet or hour_start(*partition[2:]) + 3600 > wall or any(
                    (f.system, f.channel, f.date, f.hour) == partition
                    for f in self.open.values()):
                continue
            data, gaps = gaps_parquet(self.store, *partition)
            self.store.put(gaps_key(*partition), data)
            del self.touched[partition]
            self.gaps += len(gaps)
            written.append((partition, gaps))
        return written

    def pending(self):
        return sum(len(f.acks) for f in self.open.values())

    def close_all(self):
        acks = []
        for key in list(self.open):
            acks += self.close(key)
        return acks

    def close(self, key):
        opened = self.open[key]
        for table, data in opened.parquet().items():
            name = object_key(table, opened.system, opened.channel, opened.date, opened.hour,
                              opened.session, opened.first_sequence)
            self.store.put(name, data)
            self.bytes += len(data)
            if table == "frames":
                self.store.put(sequences_key(name), " ".join(
                    str(n) for n in sorted(opened.sequences)).encode())
        del self.open[key]  # only once stored: a failed put keeps the rows for the next try
        self.touched[(opened.system, opened.channel, opened.date, opened.hour)] = \
            time.monotonic()
        self.files += 1
        self.frames += opened.rows
        logger = (opened.system, opened.channel)
        self.stored_frames[logger] = self.stored_frames.get(logger, 0) + opened.rows
        for sequence in opened.sequences:
            self.stored[(opened.system, opened.channel, opened.session, sequence)] = None
        while len(self.stored) > self.REMEMBERED:
            del self.stored[next(iter(self.stored))]
        return opened.acks


def lake_store(args, to, stopping=None):
    """The store of ``--to``: an S3 bucket (upload/target.py's flags) or a local folder."""
    import logging

    from ..errors import UsageError

    if to.startswith("s3://"):
        from ..upload.target import target_from_args

        target = target_from_args(args, to, flag="--to")
        return S3Store(target, stopping, logging.getLogger("cancorder.archive"))
    if "://" in to:
        raise UsageError(f"--to {to}: give a folder or s3://BUCKET/PREFIX")
    try:
        os.makedirs(to, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--to {to}: cannot create the folder ({exc.strerror or exc})") \
            from None
    return FolderStore(to)
