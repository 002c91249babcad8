"""``dump --check``'s counting (cancorder/check.py) on generated traffic with loss injected on
purpose: every loss is found exactly, at the right sequence numbers."""
import io
import json

from cancorder.check import StreamCheck
from tests.helpers import generated_frames

QUALITY = dict(data_mode="quality-test", exact_id=0x7E0, test_id=3)


def checked(frames, batch=100, **options):
    check = StreamCheck(out=io.StringIO(), as_json=True, **options)
    check.start()
    for k in range(0, len(frames), batch):
        check.add(frames[k:k + batch])
    check.stop()
    return check, json.loads(check.out.getvalue())


def test_clean_traffic_across_the_16_bit_wrap_is_ok():
    check, result = checked(generated_frames(150_000, **QUALITY))
    stream, = result["streams"]
    assert result["ok"] and not check.lost
    assert (stream["received"], stream["missing"], stream["duplicates"], stream["reordered"],
            stream["corrupt"], stream["wraps"]) == (150_000, 0, 0, 0, 0, 2)
    assert stream["arrival"]["mean_ms"] == 0.1 and stream["arrival"]["jitter_ms"] == 0.0
    assert stream["test_ids"] == [3]
    # the payload clock counts whole ms while the arrivals are exact: latency within 1 ms
    assert -0.001 <= stream["latency_ms"]["min"] and stream["latency_ms"]["max"] < 1.0


def test_every_1000th_frame_dropped_is_found_at_its_number():
    frames = generated_frames(100_000, **QUALITY)
    dropped = list(range(999, 100_000, 1000))
    kept = [f for k, f in enumerate(frames) if k % 1000 != 999]
    check, result = checked(kept, expect=100_000)  # the last one (99,999) too
    stream, = result["streams"]
    assert stream["missing"] == len(dropped) == 100
    assert stream["gaps"] == [[n, n] for n in dropped]  # across the wrap at 65,536 too
    assert check.lost and not result["ok"]


def test_sequence_mode_dropped_frames_at_64_bit_numbers():
    frames = generated_frames(5000, data_mode="sequence", exact_id=0x100)
    kept = [f for k, f in enumerate(frames) if k % 1000 != 0 or k == 0]
    _, result = checked(kept)
    stream, = result["streams"]
    assert stream["mode"] == "sequence"
    assert stream["gaps"] == [[1000, 1000], [2000, 2000], [3000, 3000], [4000, 4000]]


def test_a_duplicated_batch_two_swapped_batches_and_a_flipped_bit():
    frames = generated_frames(10_000, **QUALITY)
    batches = [frames[k:k + 100] for k in range(0, 10_000, 100)]
    batches.insert(11, list(batches[10]))  # batch 10 again
    batches[40], batches[41] = batches[41], batches[40]  # 39 <-> 40 of the original
    flipped = list(batches[70][5])
    flipped[3] = bytes([flipped[3][0] ^ 0x10]) + flipped[3][1:]  # one bit of the marker
    batches[70][5] = tuple(flipped)
    check = StreamCheck(out=io.StringIO(), as_json=True)
    for one in batches:
        check.add(one)
    check.stop()
    stream, = json.loads(check.out.getvalue())["streams"]
    assert stream["duplicates"] == 100
    assert stream["reordered"] == 100  # the batch that came late filled its gap
    assert stream["corrupt"] == 1 and "marker DA FE" in stream["corrupt_examples"][0]
    # the corrupt frame's number is missing: nothing else
    assert stream["missing"] == 1 and stream["gaps"] == [[6905, 6905]]


def test_expect_counts_what_never_came_at_both_ends_and_no_frame_is_a_loss():
    frames = generated_frames(1000, **QUALITY)
    _, result = checked(frames[10:990], expect=1000)
    assert result["streams"][0]["gaps"] == [[0, 9], [990, 999]]
    check, result = checked([], expect=1000)
    assert check.lost and result["streams"] == []


def test_a_logger_close_then_a_reconnect_names_the_skipped_frames_as_the_loggers():
    frames = generated_frames(3000, **QUALITY)
    check = StreamCheck(out=io.StringIO())
    check.add(frames[:1000])
    check.connection_ended("the logger closed the connection")
    check.add(frames[1500:])
    check.stop()
    text = check.out.getvalue()
    assert "the logger dropped frames itself: the logger closed the connection: 500 frames " \
           "of 7E0 quality-test (1000-1499) went out while this client was away" in text
    assert check.logger_missing == 500 and check.lost
    assert "check: LOSS" in text


def test_other_ids_are_not_checked():
    frames = generated_frames(100, **QUALITY) + generated_frames(100, data_mode="random", id_min=1,
                                                   id_max=5, length_min=3, length_max=3)
    check, result = checked(frames)
    assert result["unchecked"] == 100 and len(result["streams"]) == 1 and result["ok"]


def test_a_gap_longer_than_half_the_16_bit_range_is_measured_by_the_clock():
    frames = generated_frames(200_000, **QUALITY)
    _, result = checked(frames[:1000] + frames[51_000:])  # 50,000 frames (5 s) gone
    stream, = result["streams"]
    assert stream["gaps"] == [[1000, 50_999]] and stream["duplicates"] == 0
    assert stream["last"] == 199_999 and stream["wraps"] == 3
