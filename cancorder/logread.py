"""Log files as a frame feed for ``dump FILE`` (the monitor replays them): python-can's
LogReader reads every format it knows (.asc .blf .csv .db .log .mf4 .trc, also gzipped).

Frames come out as ``(timestamp_us, can_id, flags, data, channel)``; ``LogFile.play`` hands them
on in batches, paced by their timestamps when asked (the monitor and --stats show rates, which
only mean something in real time), or as fast as they are read (pretty, json...).
"""
import os
import time

from ._fast import wire
from .errors import CancorderError, UsageError

#: what python-can's LogReader reads (a .gz of any of them too)
SUFFIXES = (".asc", ".blf", ".csv", ".db", ".log", ".mf4", ".trc")
PLAY_BATCH = 2000  # frames per batch when reading as fast as possible
PACE_STEP = 0.02  # seconds between batches when paced


def looks_like_log(text):
    """True when TARGET names a log file rather than a logger (HOST[:PORT])."""
    return _log_name(text).endswith(SUFFIXES) or os.path.isfile(text)


def _log_name(path):
    name = path.lower()
    return name[:-3] if name.endswith(".gz") else name


def message_to_frame(message):
    """A python-can Message -> ``(timestamp_us, can_id, flags, data, channel)``; None for remote
    and error frames (the wire format carries neither)."""
    if message.is_remote_frame or message.is_error_frame:
        return None
    flags = ((wire.FLAG_EXT if message.is_extended_id else 0)
             | (wire.FLAG_FD if message.is_fd else 0)
             | (wire.FLAG_BRS if message.bitrate_switch else 0)
             | (wire.FLAG_ESI if message.error_state_indicator else 0))
    return (int(round(message.timestamp * 1e6)), message.arbitration_id, flags,
            bytes(message.data), message.channel)


class LogFile:
    """A log file given as the dump target."""

    def __init__(self, path, realtime=True):
        self.path = path
        self.realtime = realtime
        self.skipped = 0  # remote and error frames
        self.label = path
        self._reader = None  # opened by check()

    def __str__(self):
        return self.path

    def check(self):
        """UsageError unless the file is there and python-can has a reader for it."""
        if not os.path.isfile(self.path):
            raise UsageError(f"{self.path}: no such log file (a logger is given as "
                             "HOST[:PORT])")
        if not _log_name(self.path).endswith(SUFFIXES):
            raise UsageError(f"{self.path}: python-can cannot read this kind of log (it reads "
                             f"{' '.join(SUFFIXES)}, also gzipped)")
        self._reader = self._open()  # a file that is no log fails here, before any screen

    def _open(self):
        import can

        try:
            return can.LogReader(self.path)
        except OSError as exc:
            raise UsageError(f"{self.path}: {exc.strerror or exc}") from None
        except Exception as exc:  # python-can's readers raise their own kinds (BLFParseError...)
            raise UsageError(f"{self.path}: cannot read it: {_reason(exc)}") from None

    def frames(self):
        """Every data frame in the file, in file order."""
        reader, self._reader = self._reader or self._open(), None
        try:
            for message in reader:
                frame = message_to_frame(message)
                if frame is None:
                    self.skipped += 1
                    continue
                yield frame
        except Exception as exc:  # a damaged file: what came before it was handed on
            raise CancorderError(f"{self.path}: unreadable after the frames shown: "
                                 f"{_reason(exc)}") from None
        finally:
            stop = getattr(reader, "stop", None)
            if stop is not None:
                stop()

    def play(self, deliver, wait):
        """Hand the frames to ``deliver(frames, channel) -> True to stop`` in batches;
        ``wait(seconds) -> True to stop`` paces them when ``realtime``. Returns True when
        stopped early, False at the end of the file."""
        pending = {}  # channel -> [4-tuples]
        count = 0
        started = first = None
        for frame in self.frames():
            if self.realtime:
                if first is None:
                    started, first = time.monotonic(), frame[0]
                due = started + (frame[0] - first) / 1e6
                ahead = due - time.monotonic()
                if ahead > 0:  # hand on what is due, then sleep (at least a step: batches)
                    if count and self._flush(pending, deliver):
                        return True
                    count = 0
                    if wait(max(ahead, PACE_STEP)):
                        return True
            pending.setdefault(frame[4], []).append(frame[:4])
            count += 1
            if count >= PLAY_BATCH:
                if self._flush(pending, deliver):
                    return True
                count = 0
        return self._flush(pending, deliver)

    @staticmethod
    def _flush(pending, deliver):
        batches = list(pending.items())
        pending.clear()
        for channel, frames in batches:
            if deliver(frames, channel):
                return True
        return False


def _reason(exc):
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
