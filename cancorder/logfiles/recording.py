"""The clients' recording (``dump -o``, ``mock-uds --output``): every output written in line,
through the same ``RotatingLog`` as ``--record``."""
import threading

from .._fast import logfile, wire
from ..errors import CancorderError
from ..report import plural
from .rotation import LOG, RotatingLog


class Recording:
    """Every ``-o FILE`` of a client: frames written in line (the client's own pace), with the
    same rotation, retention, .part names and failure handling as --record. A small thread
    ticks the logs (flush every second, time rotation) while the client waits for frames.

    ``channel`` names the frames in the files. A client of several loggers (``dump mqtt://``
    with wildcards) sets ``source_channel`` before each write instead: each logger's name
    goes into the formats that keep names (.log .txt), a number into those that keep numbers
    (.asc .blf .trc .mf4: 1, 2, 3... in order of appearance, the same in every file, each
    said in a line and in the summary), and a format with no channel column (.csv .db) gets a
    warning once a second logger shows up."""

    def __init__(self, options_list, channel="can0", log=None):
        self.options_list = list(options_list)
        self.channel = channel
        self.source_channel = None  # the channel of the frames written next, when not ours
        self.legend = {}  # source channel -> its number in the files that keep numbers
        self.log = log if log is not None else LOG
        self.logs = []
        self.opened = False
        self._lock = threading.Lock()
        self._ticker = None
        self._closed = threading.Event()

    def __bool__(self):
        return bool(self.options_list)

    @property
    def paths(self):
        return [log.describe() for log in self.logs]

    @property
    def frames(self):
        return max((log.frames for log in self.logs), default=0)

    @property
    def lost(self):
        return max((log.lost for log in self.logs), default=0)

    def open(self):
        if not self.options_list:
            return
        for options in self.options_list:
            log = RotatingLog(options, {"channel": self.channel}, self.log,
                              log_channel=self.channel)
            log.open()
            if log.failing:
                for other in self.logs + [log]:
                    other.close()
                raise CancorderError(f"{options.flag} {options.path}: {log._failure}")
            self.logs.append(log)
        self.opened = True
        self._ticker = threading.Thread(target=self._tick, name="recording-ticker",
                                        daemon=True)
        self._ticker.start()

    def write_records(self, records, count=None):
        if count is None:
            count = logfile.count_records(records)
        name = self.source_channel
        with self._lock:
            if name is not None and name not in self.legend:
                self._new_channel(name)
            for log in self.logs:
                log.write(records, count=count, channel=self._file_channel(log, name))

    def _file_channel(self, log, name):
        """What the writer of ``log`` is given for the channel ``name`` (None: its own)."""
        if name is None:
            return None
        spec = log.format.spec
        if spec.channel_column == "number":
            return self.legend[name] - spec.channel_base
        return name if spec.channel_column == "name" else None

    def _numbered(self):
        return [log.options.path for log in self.logs
                if log.format.spec.channel_column == "number"]

    def _new_channel(self, name):
        self.legend[name] = number = len(self.legend) + 1
        numbered = self._numbered()
        if numbered:
            self.log.info(f"{', '.join(numbered)}: channel {number} is {name}")
        if number == 2:
            first = next(iter(self.legend))
            for log in self.logs:
                if not log.format.spec.channel_column:
                    self.log.warning(
                        f"{log.options.flag} {log.options.path}: {log.format.suffix} has no "
                        f"channel column: the frames of {first}, {name} and any other logger "
                        "are mixed in it (.log, .asc or .blf keep them apart)")

    def write(self, frames):
        """Decoded frames (the client's, after --filter): packed back into records."""
        if frames:
            pack = wire.pack_frame
            self.write_records(b"".join([pack(*frame) for frame in frames]), len(frames))

    def _tick(self):
        while not self._closed.wait(0.25):
            with self._lock:
                for log in self.logs:
                    log.tick()

    def summary(self):
        """``1,234 frames to a.log, 1,230 frames to b.trc``: each output's own count."""
        text = ", ".join(f"{plural(log.frames, 'frame')} to {log.describe()}"
                         for log in self.logs)
        numbered = self._numbered()
        if numbered and self.legend:
            text += (f"; channels in {', '.join(numbered)}: "
                     + ", ".join(f"{number} {name}" for name, number in self.legend.items()))
        return text

    def notes(self):
        return [note for log in self.logs for note in log.notes()] + [
            f"{log.options.flag} {log.options.path}: {plural(log.lost, 'frame')} could not be "
            "recorded" for log in self.logs if log.lost]

    def close(self):
        """Finish every file (safe to call twice)."""
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join(2.0)
        with self._lock:
            for log in self.logs:
                log.close()
