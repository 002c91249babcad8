"""When the simulated traffic happens: a virtual clock, and a pacer that follows the wall clock.

The simulator never sleeps while it decides what is said: the scenario and the ISO-TP layer
advance a VirtualClock (integer microseconds, so the same seed gives exactly the same relative
timestamps). Writing a log file (``--output``) uses those instants directly, so a whole session
takes a fraction of a second. Serving uses a WallPacer, which maps the virtual timeline onto the
wall clock and sleeps until each instant is due.
"""
import time


class VirtualClock:
    """Simulated time in microseconds since the traffic started; advanced, never waited for.

    ``wait(seconds)`` takes a real-world duration (a tester's think time, an ECU's response
    delay, a frame's time on the bus) and divides it by ``speed``: ``--speed 10`` makes every
    such delay ten times shorter. ``at_least`` moves to an instant of the emitted timeline (an
    STmin that a flow-control frame declared is honoured as declared, whatever the speed).

    ``scenario_seconds`` adds up the real-world durations only: what the scenario decides by
    time (how long to poll, when to send TesterPresent, how far the car has driven) depends on
    it, so a run at another speed says exactly the same things, only faster.
    """

    def __init__(self, speed=1.0):
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self.now_us = 0
        self.scenario_seconds = 0.0

    def scaled_us(self, seconds):
        """A real-world duration as microseconds of the (sped-up) timeline, at least 1."""
        return max(1, int(round(seconds * 1e6 / self.speed)))

    def wait(self, seconds):
        self.scenario_seconds += seconds
        self.now_us += self.scaled_us(seconds)

    def at_least(self, instant_us):
        """Move forward to ``instant_us`` if that is later than now."""
        if instant_us > self.now_us:
            self.now_us = instant_us


class WallPacer:
    """Puts virtual instants on the wall clock: Unix timestamps for the records, monotonic
    deadlines for sleeping (a wall-clock jump never makes the simulator burst or stall).

    ``anchor(t_us)`` says "virtual instant t_us is now"; the serving source re-anchors when a
    session starts after waiting for a client, so nothing is due in a burst.
    """

    def __init__(self):
        self._epoch_us = None  # Unix time (us) of virtual instant 0
        self._mono = None  # monotonic time (s) of virtual instant 0

    @property
    def anchored(self):
        return self._epoch_us is not None

    def anchor(self, t_us):
        self._epoch_us = int(time.time() * 1e6) - t_us
        self._mono = time.monotonic() - t_us / 1e6

    def unix_time_us(self, t_us):
        """The record timestamp (us since the Unix epoch) of virtual instant ``t_us``."""
        return self._epoch_us + t_us

    def remaining(self, t_us):
        """Seconds until virtual instant ``t_us`` is due (<= 0: it is due)."""
        return self._mono + t_us / 1e6 - time.monotonic()

    def sleep_until(self, t_us, longest):
        """Sleep until ``t_us`` is due but at most ``longest`` seconds; True if it is due."""
        wait = self.remaining(t_us)
        if wait <= 0:
            return True
        time.sleep(min(wait, longest))
        return wait <= longest
