"""What one ``cancorder gen`` run sends and when: its settings, and the schedule that says at
which instant each frame is due (an exact rate, or burst phases), so that every output (a
served source, the SLCAN pseudo-terminal, a bus) sends the same frames at the same instants.

The frames themselves come from ``_fast/traffic.FrameMaker``; this module only counts time.
"""
import dataclasses
import math
import sys
import time

from ._fast import traffic

#: the shortest wait of a paced output between two batches: the frames that fall due
#: meanwhile go out together, as a USB adapter delivers them (one frame per wake-up cost 22 to
#: 40 % of a core at 30,000 frames/s; one batch a millisecond, a few per cent)
TICK = 0.001


@dataclasses.dataclass
class TrafficSettings:
    """Every choice of one run (the command's flags, checked)."""

    seed: int = 1
    rate: float = 5.0  # frames per second; 0: as fast as the output takes them
    count: int = 0  # 0: no end
    data_mode: str = "random"
    id_kind: str = "standard"
    id_mode: str = "random"
    id_min: int = 0
    id_max: int = 0x7FF
    exact_id: int = None
    length_min: int = 0
    length_max: int = 8
    fd: bool = False
    brs: bool = False
    test_id: int = 0
    burst: tuple = None  # (high rate, low rate, high seconds, low seconds)

    def frame_maker(self):
        return traffic.FrameMaker(
            self.seed, data_mode=self.data_mode, id_kind=self.id_kind, id_mode=self.id_mode,
            id_min=self.id_min, id_max=self.id_max, exact_id=self.exact_id,
            length_min=self.length_min, length_max=self.length_max, fd=self.fd, brs=self.brs,
            test_id=self.test_id)

    def schedule(self):
        if self.burst is not None:
            return BurstSchedule(*self.burst)
        if self.rate == 0:
            return AsFastAsTaken()
        return SteadySchedule(self.rate)

    def describe(self):
        pace = ("burst" if self.burst else "as fast as taken" if self.rate == 0
                else f"{self.rate:g} frames/s")
        count = f"{self.count:,} frames" if self.count else "no end"
        return f"{self.data_mode} traffic, {pace}, {count}, seed {self.seed}"


class SteadySchedule:
    """Frame i is due ``i / rate`` seconds after the start."""

    def __init__(self, rate):
        self.rate = rate

    def at(self, number):
        return number / self.rate

    def due(self, elapsed):
        """How many frames are due ``elapsed`` seconds after the start."""
        if elapsed < 0:
            return 0
        return math.floor(elapsed * self.rate + 1e-9) + 1


class AsFastAsTaken:
    """No pacing: every frame is due at once (the output's own speed sets the rate)."""

    rate = 0

    def at(self, number):
        return 0.0

    def due(self, elapsed):
        return 1 << 62


class BurstSchedule:
    """Alternating phases: ``high_s`` seconds at ``high_rate``, then ``low_s`` at ``low_rate``."""

    def __init__(self, high_rate, low_rate, high_s, low_s):
        self.high_rate, self.low_rate = high_rate, low_rate
        self.high_s, self.low_s = high_s, low_s
        self.high_n = max(1, round(high_rate * high_s))
        self.low_n = max(1, round(low_rate * low_s))
        self.period = high_s + low_s
        self.rate = (self.high_n + self.low_n) / self.period

    def at(self, number):
        cycle, rest = divmod(number, self.high_n + self.low_n)
        start = cycle * self.period
        if rest < self.high_n:
            return start + rest / self.high_rate
        return start + self.high_s + (rest - self.high_n) / self.low_rate

    def due(self, elapsed):
        if elapsed < 0:
            return 0
        cycle, into = divmod(elapsed, self.period)
        base = int(cycle) * (self.high_n + self.low_n)
        if into < self.high_s:
            return base + min(self.high_n, math.floor(into * self.high_rate + 1e-9) + 1)
        return base + self.high_n + min(
            self.low_n, math.floor((into - self.high_s) * self.low_rate + 1e-9) + 1)


class Timeline:
    """The frames of one run against the clock: ``start()`` anchors it, ``take(limit)`` makes
    the frames due by now (at most ``limit``), ``wait_time()`` says how long until the next one
    is due, ``finished`` is True once ``count`` frames are made."""

    def __init__(self, settings):
        self.settings = settings
        self.maker = settings.frame_maker()
        self.schedule = settings.schedule()
        self.count = settings.count
        self.started = None  # time.monotonic() of frame 0's instant
        self.started_us = None  # the same instant on the Unix clock, in microseconds
        self._quiet_until = 0.0  # caught up: nothing more is made before (time.monotonic())

    def start(self):
        self.started = time.monotonic()
        self.started_us = time.time_ns() // 1000

    def resume(self):
        """After a pause (the pty's channel closed): the next frame is due now, not all those
        that fell due meanwhile at once."""
        if self.started is not None and self.schedule.rate:
            late = -self.wait_time()
            if late > 0:
                self.started += late
                self.started_us += round(late * 1e6)

    @property
    def sent(self):
        return self.maker.sent

    @property
    def finished(self):
        return bool(self.count) and self.maker.sent >= self.count

    def due_now(self, limit):
        """How many frames may be made now (0: none is due yet). Paced, once it has caught up
        (fewer than ``limit`` due), it makes none for TICK: the frames that fall due meanwhile
        go out in one batch, not one a wake-up."""
        now = time.monotonic()
        if now < self._quiet_until:
            return 0
        due = self.schedule.due(now - self.started)
        if self.count:
            due = min(due, self.count)
        n = max(0, min(limit, due - self.maker.sent))
        if n < limit and self.schedule.rate:
            self._quiet_until = now + TICK
        return n

    def wait_time(self):
        """Seconds until the next frame is due (0 or less: now)."""
        return self.started + self.schedule.at(self.maker.sent) - time.monotonic()

    def pause(self):
        """Seconds to wait before ``due_now`` makes frames again: until the next one is due,
        and at least until the TICK after it caught up (a frame goes out at most TICK after
        its instant; the rate and count stay exact). 0: now (unpaced)."""
        return max(0.0, self.wait_time(), self._quiet_until - time.monotonic())

    def _instants(self, n):
        """Each of the next n frames' offsets from the start, in microseconds."""
        at, first = self.schedule.at, self.maker.sent
        if self.schedule.rate == 0:  # no schedule: the instant it is made
            now = round((time.monotonic() - self.started) * 1e6)
            return [now] * n
        return [round(at(first + k) * 1e6) for k in range(n)]

    def records(self, n):
        """The next ``n`` frames as wire records, stamped with their due instants."""
        offsets = self._instants(n)
        base = self.started_us
        return self.maker.records(n, [base + us for us in offsets],
                                  [us // 1000 for us in offsets])

    def slcan_lines(self, n):
        """The next ``n`` frames as SLCAN lines (an adapter's, for the --pty output)."""
        return self.maker.slcan_lines(n, [us // 1000 for us in self._instants(n)])

    def frames(self, n):
        """The next ``n`` frames as (id, flags, data)."""
        return self.maker.frames(n, [us // 1000 for us in self._instants(n)])


class LiveStats:
    """On a terminal, one line rewritten every second: frames sent, the rate, outages (the
    --pty adapter and gen -i; a served generator has --stats)."""

    def __init__(self, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.enabled = self.stream.isatty()
        self._started = self._next = None
        self._last_sent = 0
        self._last_at = None

    def tick(self, sent, note=""):
        if not self.enabled:
            return
        now = self.clock()
        if self._next is None:
            self._started, self._next, self._last_at = now, now + 1.0, now
            return
        if now < self._next:
            return
        rate = (sent - self._last_sent) / (now - self._last_at)
        self.stream.write(f"\r{sent:,} frames sent, {rate:,.0f} frames/s, "
                          f"{now - self._started:,.0f} s{note}   ")
        self.stream.flush()
        self._next, self._last_sent, self._last_at = now + 1.0, sent, now

    def done(self):
        if self.enabled and self._next is not None:
            self.stream.write("\n")
            self.stream.flush()
