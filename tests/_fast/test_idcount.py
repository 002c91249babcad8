"""The live table's per-id counter (_fast/idcount): from tuples and from wire records, compiled
and pure, against a plain model of what a row must hold (count, last data, the bytes that
changed, the period sums), on hypothesis-made traffic."""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cancorder._fast import variant
from cancorder._fast.wire import FD_LENGTHS, pack_frame

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KINDS = ("compiled", "pure")


def module(kind):
    try:
        return variant(kind).idcount
    except ImportError:
        if kind == "compiled":
            pytest.skip("no compiled core in this build")
        raise


@st.composite
def traffic(draw):
    """Frames of a few ids (11- and 29-bit, the same number both ways), data often repeated,
    lengths sometimes changing, timestamps rising with gaps up to an hour."""
    ids = draw(st.lists(st.tuples(st.integers(0, 0x7FF), st.booleans()), min_size=1,
                        max_size=6))
    frames = []
    micros = draw(st.integers(0, 1 << 60))
    for _ in range(draw(st.integers(1, 60))):
        can_id, ext = draw(st.sampled_from(ids))
        fd = draw(st.booleans())
        n = draw(st.sampled_from(FD_LENGTHS if fd else range(9)))
        data = draw(st.one_of(st.binary(min_size=n, max_size=n), st.just(bytes(n))))
        micros += draw(st.integers(0, 3_600_000_000))
        frames.append((micros, can_id, (1 if ext else 0) | (2 if fd else 0), data))
    return frames


def model(frames):
    """What each row must show: key -> (count, last data, changed-byte mask or None for
    'all', sum of periods, sum of squared periods)."""
    rows = {}
    for micros, can_id, flags, data in frames:
        key = can_id | (1 << 32) if flags & 1 else can_id
        if key not in rows:
            rows[key] = [1, data, 0, 0, 0.0, micros]
            continue
        row = rows[key]
        period = micros - row[5]
        row[0] += 1
        row[3] += period
        row[4] += float(period) * period
        row[5] = micros
        old = row[1]
        if len(old) != len(data):
            row[2] = None
        elif row[2] is not None:
            row[2] |= sum(1 << i for i in range(len(data)) if old[i] != data[i])
        row[1] = data
    return rows


def check(rows, expected):
    assert set(rows) == set(expected)
    for key, (count, data, mask, sum_period, sum_period2, last_us) in expected.items():
        row = rows[key]
        assert (row.count, row.data, row.last_us) == (count, data, last_us)
        assert row.diff == ((1 << 64) - 1 if mask is None else mask)
        assert row.sum_period == pytest.approx(sum_period, rel=1e-12)
        assert row.sum_period2 == pytest.approx(sum_period2, rel=1e-12)
        assert row.key == ("order", key)
        assert len(row.changed_at) == len(row.data) or mask is None


@given(traffic())
@FUZZ
def test_tuples_and_records_count_what_the_model_says(frames):
    expected = model(frames)
    records = b"".join(pack_frame(*frame) for frame in frames)
    for kind in KINDS:
        idcount = module(kind)
        from_tuples = {}
        assert idcount.count_frames(from_tuples, frames, "order", None, 1.0, -1) == 0
        check(from_tuples, expected)
        from_records = {}
        total, unlisted, tail = idcount.count_records(from_records, records, "order", None, 1.0,
                                                      -1, 5)
        assert (total, unlisted) == (len(frames), 0)
        check(from_records, expected)
        assert records[tail:] == b"".join(pack_frame(*f) for f in frames[-5:])


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_table_counts_new_ids_as_unlisted(kind):
    idcount = module(kind)
    frames = [(i, 0x100 + i % 5, 0, b"\x01") for i in range(50)]
    rows = {}
    assert idcount.count_frames(rows, frames, 0, None, 0.0, 3) == 20  # ids 0x103, 0x104: 10 each
    assert sorted(rows) == [0x100, 0x101, 0x102] and rows[0x100].count == 10
    records = b"".join(pack_frame(*frame) for frame in frames)
    rows = {}
    assert idcount.count_records(rows, records, 0, None, 0.0, 3, 1)[:2] == (50, 20)


@pytest.mark.parametrize("kind", KINDS)
def test_the_first_frame_changes_nothing_and_byte_63_is_seen(kind):
    """A new row's bytes are not 'changed' (nothing to compare); a 64-byte CAN FD frame's last
    byte has its own bit; a partial record at the end is left alone."""
    idcount = module(kind)
    first = bytes(64)
    second = bytes(63) + b"\x01"
    records = pack_frame(10, 0x7E8, 2, first) + pack_frame(20, 0x7E8, 2, second)
    rows = {}
    frames, _, _ = idcount.count_records(rows, records + pack_frame(30, 1, 0, b"12")[:-1], 0,
                                         None, 5.0, -1, 1)
    row = rows[0x7E8]
    assert frames == 2 and row.diff == 1 << 63 and row.data == second
    assert row.changed_at == [-math.inf] * 64 and row.changed == 5.0
    assert (row.sum_period, row.sum_period2) == (10.0, 100.0)


@given(traffic(), st.integers(0, 60))
@FUZZ
def test_a_rows_shown_copy_is_stale_exactly_when_it_counted_a_frame(frames, cut):
    """The web page keeps what it made of a row (``shown``) while ``count == shown_count``:
    after more traffic, that holds again for exactly the ids the new frames did not have."""
    before, after = frames[:cut], frames[cut:]
    for kind in KINDS:
        idcount = module(kind)
        as_records = lambda fs: b"".join(pack_frame(*f) for f in fs)  # noqa: E731
        for count, pack in ((idcount.count_frames, list), (idcount.count_records, as_records)):
            rows = {}
            extra = (1,) if count is idcount.count_records else ()
            count(rows, pack(before), "order", None, 1.0, -1, *extra)
            assert all(row.shown is None and row.shown_count == 0 for row in rows.values())
            for row in rows.values():
                row.shown, row.shown_count = ("made", row.key), row.count
            count(rows, pack(after), "order", None, 2.0, -1, *extra)
            touched = {can_id | (1 << 32) if flags & 1 else can_id
                       for _, can_id, flags, _ in after}
            stale = {key for key, row in rows.items() if row.shown_count != row.count}
            assert stale == touched
            assert all(row.shown == ("made", row.key) for key, row in rows.items()
                       if key not in touched)


@given(traffic())
@FUZZ
def test_row_json_says_what_the_row_holds_the_same_in_both_kinds(frames):
    import json

    expected = model(frames)
    made = {}
    for kind in KINDS:
        idcount = module(kind)
        rows = {}
        idcount.count_frames(rows, frames, "order", None, 12.5, -1)
        for key, row in rows.items():
            made.setdefault(key, []).append(idcount.row_json(row, '"Msg",null'))
    for key, (count, data, _, sum_period, _, _) in expected.items():
        assert len(set(made[key])) == 1, made[key]  # the twins agree byte for byte
        ident, flags, sent_count, period, hex_data, changed_at, seen, changed, name, signals = (
            json.loads(made[key][0]))
        assert (sent_count, bytes.fromhex(hex_data), seen, name, signals) == (
            count, data, 12.5, "Msg", None)
        assert int(ident, 16) == key & 0x1FFFFFFF and len(ident) == (8 if key >> 32 else 3)
        assert period == (None if count == 1 else round(sum_period / (count - 1) / 1000, 2))
        assert all(at is None for at in changed_at)  # not stamped: no refresh ran


@given(traffic(), st.floats(0.05, 2.0), st.floats(0.0, 1.0))
@FUZZ
def test_tick_rows_rates_and_change_times_as_the_model_says(frames, elapsed, weight):
    """A refresh: each rate moves ``weight`` of the way to what the row counted in
    ``elapsed`` s, and the bytes changed since (the model's mask) get the refresh's time."""
    expected = model(frames)
    for kind in KINDS:
        idcount = module(kind)
        rows = {}
        idcount.count_frames(rows, frames, "order", None, 1.0, -1)
        for row in rows.values():
            row.rate = 3.0
        assert idcount.tick_rows(rows, 7.5, elapsed, weight) == 0
        for key, (count, data, mask, _, _, _) in expected.items():
            row = rows[key]
            if weight:
                assert row.rate == pytest.approx(3.0 + (count / elapsed - 3.0) * weight)
                assert row.counted == count
            else:
                assert (row.rate, row.counted) == (3.0, 0)
            if mask is None:  # a new length: every byte new
                assert row.changed_at == [7.5] * len(data)
            else:
                assert row.changed_at == [7.5 if mask >> i & 1 else -math.inf
                                          for i in range(len(data))]
            assert row.diff == 0
