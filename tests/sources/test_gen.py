"""The served generator's pacing (sources/gen.py on generator.Timeline)."""
import time

from cancorder._fast import wire
from cancorder._fast.traffic import read_sequence
from cancorder.generator import Timeline, TrafficSettings
from cancorder.sources.gen import GenSource


def test_paced_reads_carry_a_millisecond_of_frames_not_one_frame_each():
    """At 20,000 frames/s a read returns the frames due in about a millisecond (one read per
    frame or two cost 22-40 % of a core at 30,000 frames/s, and as many passes through the
    server), and the count and order stay exact."""
    settings = TrafficSettings(rate=20000, count=10000, data_mode="sequence", exact_id=0x123,
                               length_min=8)
    source = GenSource(Timeline(settings), wait_for_client=False)
    batches = []
    started = time.monotonic()
    while True:
        records = source.read(0.2)
        if records is None:
            break
        if records:
            batches.append(wire.StreamDecoder().feed(records))
    took = time.monotonic() - started
    numbers = [read_sequence(data) for batch in batches for _, _, _, data in batch]
    assert numbers == list(range(10000))
    assert 0.49 < took < 3.0  # half a second (later on a loaded machine)
    assert len(batches) <= took * 1000 + 20, (len(batches), took)
    # each frame stamped with its own instant: 50 us apart, whatever batch it went in
    stamps = [micros for batch in batches for micros, _, _, _ in batch]
    assert {b - a for a, b in zip(stamps, stamps[1:])} == {50}
