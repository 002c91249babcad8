"""The simulator assembled: configuration, the timeline, and writing it to a log file."""
import dataclasses
import random
import time

from .._fast.wire import FLAG_EXT
from ..errors import CancorderError
from . import BOUNDARY, FRAME, NOTE
from .clock import VirtualClock
from .isotp import IsoTpLink
from .scenario import Scenario

OBD_FUNCTIONAL_ID = 0x7DF


@dataclasses.dataclass
class SimulationConfig:
    seed: int = 0
    tester_id: int = 0x7E0
    ecu_id: int = 0x7E8
    extended: bool = False  # 29-bit normal-fixed addressing
    fd: bool = False  # ISO-TP over CAN FD (64-byte frames, bit-rate switch)
    padding: int = 0xCC
    speed: float = 1.0
    blocks: int = 300
    block_size: int = 128  # data bytes in one TransferData block
    error_rate: float = 0.05
    loop: bool = True
    duration: float = None  # seconds of traffic, None: no limit
    bitrate: int = 500_000
    data_bitrate: int = 2_000_000

    @property
    def functional_id(self):
        """0x7DF, or with 29-bit ids 0x18DB33<tester address> (normal-fixed, functional)."""
        if not self.extended:
            return OBD_FUNCTIONAL_ID
        source = self.tester_id & 0xFF if self.tester_id >> 16 == 0x18DA else 0xF1
        return 0x18DB3300 | source


def timeline(config):
    """Every entry of the simulated traffic: (t_us, FRAME|NOTE|CYCLE, value), in time order."""
    rng = random.Random(config.seed)
    clock = VirtualClock(config.speed)
    link = IsoTpLink(clock, rng, extended=config.extended, fd=config.fd, padding=config.padding,
                     bitrate=config.bitrate, data_bitrate=config.data_bitrate)
    entries = Scenario(config, clock, link, rng).run()
    if config.duration is None:
        return (entry for entry in entries if entry[1] != BOUNDARY)
    return _whole_exchanges_until(entries, int(round(config.duration * 1e6)))


def _whole_exchanges_until(entries, end_us):
    exchange = []  # the entries since the last boundary
    for entry in entries:
        if entry[1] == BOUNDARY:
            yield from exchange
            exchange.clear()
        elif entry[0] > end_us:
            return  # the exchange in progress would run past the end: it is left out
        else:
            exchange.append(entry)
    yield from exchange


def write_log(config, options, start_us=None, narrate=None, record_filter=None, channel="can0"):
    """Write the traffic with the recorder (``options``: logfiles.rotation.RecordOptions, so
    rotation and retention apply too), as fast as it is generated; timestamps start at ``start_us``
    (default: now), on ``channel`` (the name in .log lines, which can-utils' log2asc and
    canplayer match). Returns (frames, seconds of traffic, the signal that stopped it or None,
    the Recording). SIGINT/SIGTERM stop it between two frames, never inside a writer, and the
    files are finished on every way out: they stay readable."""
    from .._fast.wire import pack_frame
    from ..logfiles.recording import Recording
    from ..signals import stop_on_signals

    base_us = int(time.time() * 1e6) if start_us is None else start_us
    recording = Recording([options], channel=channel)
    recording.open()
    batch = []
    frames = 0
    last_us = 0
    stopped = []
    try:
        with stop_on_signals(stopped.append):
            for t_us, kind, value in timeline(config):
                if stopped:
                    break
                if kind == FRAME:
                    can_id, flags, data = value
                    if record_filter is not None and not record_filter.passes(
                            can_id, flags & FLAG_EXT):
                        continue
                    batch.append(pack_frame(base_us + t_us, can_id, flags, data))
                    frames += 1
                    last_us = t_us
                    if len(batch) == 512:
                        recording.write_records(b"".join(batch), len(batch))
                        batch = []
                elif kind == NOTE and narrate is not None:
                    narrate(value)
            if batch:
                recording.write_records(b"".join(batch), len(batch))
    finally:
        recording.close()
    if recording.lost:
        raise CancorderError("; ".join(recording.notes()))
    return frames, last_us / 1e6, (stopped[0] if stopped else None), recording
