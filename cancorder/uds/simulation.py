"""The simulator assembled: configuration, the timeline, and writing it to a log file."""
import dataclasses
import os
import random
import time

from .._fast.wire import FLAG_EXT
from ..errors import CancorderError, UsageError
from . import BOUNDARY, FRAME, NOTE
from .clock import VirtualClock
from .isotp import IsoTpLink
from .scenario import Scenario

OBD_FUNCTIONAL_ID = 0x7DF
#: python-can writers chosen by extension (can.Logger), and which of them can store CAN FD
LOG_FORMATS = {".log": "candump", ".asc": "Vector ASC", ".blf": "Vector BLF", ".csv": "CSV",
               ".trc": "PCAN-View TRC"}
FD_LOG_FORMATS = (".log", ".asc", ".blf")


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
    """Every entry of the simulated traffic: (t_us, FRAME|NOTE|CYCLE, value), in time order.

    With ``config.duration`` the traffic ends exactly there: nothing after it, and no exchange
    cut in half (one that would run past the end is left out whole)."""
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


def check_log_path(path, fd):
    extension = os.path.splitext(path)[1].lower()
    if extension not in LOG_FORMATS:
        known = ", ".join(f"{ext} ({name})" for ext, name in LOG_FORMATS.items())
        raise UsageError(f"--output {path}: unknown log format '{extension or 'no extension'}': "
                         f"the extension chooses it, one of {known}")
    if fd and extension not in FD_LOG_FORMATS:
        raise UsageError(f"--output {path}: python-can's {LOG_FORMATS[extension]} writer cannot "
                         f"store CAN FD frames: with --fd use {', '.join(FD_LOG_FORMATS)}")


def write_log(config, path, start_us=None, narrate=None, record_filter=None, channel="can0"):
    """Write the traffic to ``path`` with python-can's writer for its extension, as fast as it
    is generated; timestamps start at ``start_us`` (default: now), frames are on ``channel``
    (the name in .log lines, which can-utils' log2asc and canplayer match). Returns (frames, seconds of
    traffic, the signal that stopped it or None). SIGINT/SIGTERM stop it between two frames,
    never inside the writer, and the file is closed on every way out: it stays readable."""
    import can

    from ..formats import frame_to_message
    from ..signals import stop_on_signals

    check_log_path(path, config.fd)
    base_us = int(time.time() * 1e6) if start_us is None else start_us
    try:
        writer = can.Logger(path)
    except OSError as exc:
        raise CancorderError(f"cannot write {path}: {exc.strerror or exc}") from exc
    frames = 0
    last_us = 0
    stopped = []
    try:
        with stop_on_signals(stopped.append):
            write = writer.on_message_received
            for t_us, kind, value in timeline(config):
                if stopped:
                    break
                if kind == FRAME:
                    can_id, flags, data = value
                    if record_filter is not None and not record_filter.passes(
                            can_id, flags & FLAG_EXT):
                        continue
                    # the channel: python-can's .log writer says vcan0 without one
                    write(frame_to_message((base_us + t_us, can_id, flags, data), channel))
                    frames += 1
                    last_us = t_us
                elif kind == NOTE and narrate is not None:
                    narrate(value)
    except OSError as exc:
        raise CancorderError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        writer.stop()
    return frames, last_us / 1e6, (stopped[0] if stopped else None)
