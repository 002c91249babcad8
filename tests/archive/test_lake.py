"""The lake writer alone: real Parquet files in a folder, read back by DuckDB."""
import pytest

from cancorder._fast import wire
from cancorder.archive.lake import FolderStore, LakeWriter, object_key
from cancorder.mqtt.payload import Batch

duckdb = pytest.importorskip("duckdb")

START_US = 1_765_000_000_000_000  # 2025-12-06 05:46:40 UTC


def batches(session, count, per_batch, start_us=START_US):
    """``count`` batches of ``per_batch`` frames (data: the frame number, 8 bytes)."""
    out = []
    for sequence in range(1, count + 1):
        first = (sequence - 1) * per_batch
        frames = [(start_us + (first + i) * 1000, 0x100 + i % 3, wire.FLAG_EXT if i % 2 else 0,
                   (first + i).to_bytes(8, "big")) for i in range(per_batch)]
        out.append(Batch(session, sequence, first, per_batch, frames))
    return out


def frames_in(lake):
    return duckdb.sql(f"select system, channel, frame, data, extended, timestamp_us from "
                      f"read_parquet('{lake}/frames/**/*.parquet') order by frame").fetchall()


def test_the_same_batches_written_twice_replace_their_files(tmp_path):
    lake = tmp_path / "lake"
    sent = batches(0xABCD, 20, 50)
    acked = []
    for attempt in range(2):  # a worker, then the same batches again (a redelivery)
        writer = LakeWriter(FolderStore(str(lake)), max_size=10 * 50 * 24, max_age=60)
        for batch in sent:
            acked += writer.add("truck1", "can0", batch, batch.sequence)
        acked += writer.close_all()
    names = sorted(p.name for p in lake.rglob("*.parquet"))
    assert names == ["000000000000abcd-00000000000000000001.parquet",
                     "000000000000abcd-00000000000000000011.parquet"]  # closed by size
    rows = frames_in(lake)
    assert [row[2] for row in rows] == list(range(1000))  # once each
    assert all(int.from_bytes(row[3], "big") == row[2] for row in rows)
    assert {row[:2] for row in rows} == {("truck1", "can0")}
    assert [row[4] for row in rows[:4]] == [False, True, False, True]
    assert sorted(acked) == sorted(list(range(1, 21)) * 2)  # every delivery acknowledged
    assert not [p for p in lake.rglob("*") if p.name.startswith(".")]  # no temporary left


def test_a_redelivered_batch_is_acknowledged_with_its_file_or_at_once(tmp_path):
    writer = LakeWriter(FolderStore(str(tmp_path)), max_size=1 << 30, max_age=60)
    first, second = batches(7, 2, 10)
    assert writer.add("t", "c", first, "a") == []
    assert writer.add("t", "c", first, "a-again") == []  # in the open file: waits for it
    assert writer.close_all() == ["a", "a-again"]
    assert writer.add("t", "c", first, "a-late") == ["a-late"]  # stored: acknowledged now
    assert writer.add("t", "c", second, "b") == []
    assert writer.due(now=10**9) == ["b"]  # closed by age
    assert len(frames_in(tmp_path)) == 20


def test_layout_hive_partitions_statistics_and_zstd(tmp_path):
    import pyarrow.parquet as pq

    writer = LakeWriter(FolderStore(str(tmp_path)), max_size=1 << 30, max_age=60)
    for batch in batches(1, 3, 100):
        writer.add("truck/7", "can0", batch, None)
    writer.close_all()
    key = object_key("frames", "truck/7", "can0", "2025-12-06", "05", 1, 1)
    assert key.startswith("frames/system=truck%2F7/channel=can0/date=2025-12-06/hour=05/")
    path = tmp_path / key
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(0).column(2)
    assert column.path_in_schema == "timestamp_us" and column.compression == "ZSTD"
    assert column.statistics.min == START_US and column.statistics.max == START_US + 299_000
    got = duckdb.sql(f"select distinct system, date, hour from read_parquet('{tmp_path}/frames/"
                     f"**/*.parquet', hive_partitioning=true)").fetchall()
    assert [(s, str(d), int(h)) for s, d, h in got] == [("truck/7", "2025-12-06", 5)]


def test_the_gaps_query_names_what_a_logger_never_delivered(tmp_path):
    from cancorder.archive.lake import GAPS_SQL

    sent = batches(3, 6, 10)
    writer = LakeWriter(FolderStore(str(tmp_path)), max_size=1 << 30, max_age=60)
    for batch in sent[:2] + sent[4:]:  # batches 3 and 4 (frames 20..39) dropped by the spool
        writer.add("truck1", "can0", batch, None)
    writer.close_all()
    gaps = duckdb.sql(GAPS_SQL.format(frames=f"{tmp_path}/frames/**/*.parquet")).fetchall()
    assert [row[:6] for row in gaps] == [("truck1", "can0", 3, 20, 39, 20)]


def test_the_gaps_table_of_an_ended_hour_written_the_same_by_any_worker(tmp_path):
    """Two writers (two workers of a group), each with a part of a logger's batches, both
    write the hour's gaps table: one object, the same bytes, naming only the frames no one
    has (batches 3 and 4), and none for a logger without gaps."""
    from cancorder.archive.lake import gaps_key

    sent = batches(3, 8, 10)
    store = FolderStore(str(tmp_path))
    writers = [LakeWriter(store, max_size=1 << 30, max_age=60) for _ in range(2)]
    for index, batch in enumerate(sent[:2] + sent[4:]):
        writers[index % 2].add("truck1", "can0", batch, None)
    for batch in batches(4, 3, 10):
        writers[0].add("truck2", "can0", batch, None)
    written = []
    for writer in writers:
        writer.close_all()
        assert writer.write_gaps(quiet=60) == []  # too soon after its files
    for writer in writers:
        written.append(writer.write_gaps(quiet=0))
        gaps = tmp_path / gaps_key("truck1", "can0", "2025-12-06", "05")
        written[-1].append(gaps.read_bytes())
    assert written[0][-1] == written[1][-1]
    assert [(partition, [(g["from_frame"], g["to_frame"], g["missing"]) for g in gaps])
            for partition, gaps in written[1][:-1]] == \
        [(("truck1", "can0", "2025-12-06", "05"), [(20, 39, 20)])]
    rows = duckdb.sql(f"select system, channel, session, from_frame, to_frame, missing from "
                      f"read_parquet('{tmp_path}/gaps/**/*.parquet')").fetchall()
    assert rows == [("truck1", "can0", 3, 20, 39, 20)]
    assert (tmp_path / gaps_key("truck2", "can0", "2025-12-06", "05")).exists()


def test_a_folder_that_cannot_be_written_is_one_clear_error(tmp_path):
    from cancorder.errors import ArchiveError

    (tmp_path / "frames").write_text("a file where the lake wants a folder")
    writer = LakeWriter(FolderStore(str(tmp_path)), max_size=1 << 30, max_age=60)
    writer.add("t", "c", batches(1, 1, 5)[0], "ack")
    with pytest.raises(ArchiveError, match="cannot write it"):
        writer.close_all()
    assert writer.pending() == 1  # kept, not acknowledged


def test_a_file_acknowledged_only_in_part_is_not_written_twice(tmp_path):
    """A worker killed while it acknowledged a stored file: the broker delivers the rest of
    that file's batches again (flagged as redeliveries) to the worker started next, which finds
    them in the lake's sequence lists, acknowledges them and writes only what is new."""
    sent = batches(9, 12, 10)
    first = LakeWriter(FolderStore(str(tmp_path)), max_size=1 << 30, max_age=60)
    for batch in sent[:10]:
        first.add("truck1", "can0", batch, batch.sequence)
    assert sorted(first.close_all()) == list(range(1, 11))  # killed after acking 1..5
    again = LakeWriter(FolderStore(str(tmp_path)), max_size=1 << 30, max_age=60)
    acked = []
    for batch in sent[5:10]:
        acked += again.add("truck1", "can0", batch, batch.sequence, redelivered=True)
    for batch in sent[10:]:
        acked += again.add("truck1", "can0", batch, batch.sequence)
    acked += again.close_all()
    assert sorted(acked) == list(range(6, 13))
    assert [row[2] for row in frames_in(tmp_path)] == list(range(120))  # once each
