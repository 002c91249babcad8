"""``dump --check``: verifies sequence and quality-test traffic (``cancorder gen``, mcangen) as
it arrives, per stream (one CAN id): received, missing (with the gaps), duplicate, reordered,
corrupt; the spacing jitter of the arrivals (the records' timestamps) and of the sender (the
quality-test milliseconds); the latency of the sender's clock against the arrivals, after
aligning the first frame; and what the logger itself dropped (a lag drop, an MQTT gap),
named as the logger's.

It takes the place of the live table in ``client.Dump`` (``start``, ``add``, ``refresh_if_due``,
``stop``): every source dump reads (a logger, ``mqtt://``, a log file) is checked alike.
The payload layouts are ``_fast/traffic``'s (their one home).
"""
import json
import math
import threading
import time

from ._fast import traffic
from .report import plural

MODES = ("auto", "quality-test", "sequence")
#: a sequence payload is taken for one (mode auto) below this value: a 64-bit random payload
#: is that small once in 65,536
SEQUENCE_LIMIT = 1 << 48
#: seconds between two status lines
STATUS_EVERY = 5.0
#: gaps listed in the summary (the count covers them all)
GAPS_SHOWN = 20


class Spacing:
    """Running mean and standard deviation of the intervals between events (Welford)."""

    def __init__(self):
        self.last = None
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.worst = 0.0  # the largest interval

    def add(self, value):
        if self.last is not None:
            interval = value - self.last
            self.n += 1
            delta = interval - self.mean
            self.mean += delta / self.n
            self._m2 += delta * (interval - self.mean)
            self.worst = max(self.worst, interval)
        self.last = value

    @property
    def jitter(self):
        return math.sqrt(self._m2 / self.n) if self.n > 1 else 0.0

    def as_dict(self, unit):
        return {f"mean_{unit}": round(self.mean, 3), f"jitter_{unit}": round(self.jitter, 3),
                f"max_{unit}": round(self.worst, 3)}


class Stream:
    """One checked stream: the frames of one id with sequence numbers (``width`` bits)."""

    def __init__(self, can_id, kind, channel=None):
        self.can_id = can_id
        self.kind = kind
        self.channel = channel  # dump mqtt://: each logger's streams are their own
        self.width = 16 if kind == "quality-test" else 64
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.corrupt = 0
        self.corrupt_examples = []
        self.first = None  # the first sequence number (unwrapped numbering starts there)
        self.highest = None
        self.gaps = []  # [low, high] of numbers not (yet) received, in order
        self.missing = 0
        self.wraps = 0
        self.arrival = Spacing()  # record timestamps, ms
        self.sender = Spacing()  # quality-test payload clock, ms
        self.test_ids = set()
        self._first_arrival = None
        self._first_ms = None
        self._ms_base = 0
        self._last_ms16 = None
        self.latency_min = self.latency_max = None
        self._latency_sum = 0.0
        self._latency_n = 0

    def add(self, t_us, data):
        if self.kind == "quality-test":
            fields, why = traffic.read_quality(data)
            if fields is None:
                self._corrupt(why, data)
                return
            sequence, millis, test_id = fields
            self.test_ids.add(test_id)
        else:
            if len(data) != 8:
                self._corrupt(f"{len(data)} bytes, not 8", data)
                return
            sequence, millis = traffic.read_sequence(data), None
        self.received += 1
        self._number(sequence, t_us / 1000.0)
        self.arrival.add(t_us / 1000.0)
        if millis is not None:
            self._clock(t_us, millis)

    def _corrupt(self, why, data):
        self.corrupt += 1
        if len(self.corrupt_examples) < 5:
            self.corrupt_examples.append(f"{why} ({bytes(data).hex(' ').upper()})")

    def _number(self, raw, t_ms):
        if self.highest is None:
            self.first = self.highest = raw
            return
        modulus = 1 << self.width
        step = (raw - self.highest) % modulus
        ahead = step < modulus // 2
        arrival = self.arrival
        if self.width == 16 and arrival.n >= 10 and arrival.mean > 0:
            # after a long silence (a client away) more than half the 16-bit range may have
            # gone by: the time since the last frame, at the stream's rate, says how many turns
            elapsed = (t_ms - arrival.last) / arrival.mean
            if elapsed > modulus // 4:
                step += modulus * max(0, round((elapsed - step) / modulus))
                ahead = step > 0
        if step == 0:
            self.duplicates += 1
        elif ahead:  # across wraps too
            number = self.highest + step
            self.wraps += (number >> self.width) - (self.highest >> self.width)
            if step > 1:
                self.gaps.append([self.highest + 1, number - 1])
                self.missing += step - 1
            self.highest = number
        else:  # behind: a late frame fills a gap (reordered), or it came before (duplicate)
            number = self.highest - (modulus - step)
            if self._fill(number):
                self.reordered += 1
                self.missing -= 1
            else:
                self.duplicates += 1

    def _fill(self, number):
        """Take ``number`` out of the gaps; False when it was not missing."""
        for k in range(len(self.gaps) - 1, -1, -1):
            low, high = self.gaps[k]
            if number > high:
                return False
            if number >= low:
                parts = [[low, number - 1]] if number > low else []
                if number < high:
                    parts.append([number + 1, high])
                self.gaps[k:k + 1] = parts
                return True
        return False

    def _clock(self, t_us, ms16):
        """The sender's 16-bit millisecond clock, unwrapped against the arrivals, and its
        latency relative to the first frame's."""
        if self._first_arrival is None:
            self._first_arrival, self._first_ms = t_us, ms16
            millis = ms16
        else:
            expected = self._first_ms + (t_us - self._first_arrival) / 1000.0
            turns = round((expected - ms16) / 65536.0)
            millis = ms16 + 65536 * turns
            latency = (t_us - self._first_arrival) / 1000.0 - (millis - self._first_ms)
            self._latency_sum += latency
            self._latency_n += 1
            if self.latency_min is None or latency < self.latency_min:
                self.latency_min = latency
            if self.latency_max is None or latency > self.latency_max:
                self.latency_max = latency
        self.sender.add(float(millis))

    def expect(self, count):
        """The sender sent numbers 0..count-1 (gen -n): the ones before the first and after the
        last received are missing too. Returns how many after the last."""
        if self.highest is None:
            return 0
        if self.first > 0 and self.first < count:
            self.gaps.insert(0, [0, self.first - 1])
            self.missing += self.first
            self.first = 0
        tail = max(0, count - 1 - self.highest)
        if tail:
            self.gaps.append([self.highest + 1, count - 1])
            self.missing += tail
        return tail

    def gap_text(self):
        shown = [f"{low}" if low == high else f"{low}-{high}" for low, high in
                 self.gaps[:GAPS_SHOWN]]
        more = len(self.gaps) - GAPS_SHOWN
        return ", ".join(shown) + (f" and {more} more gaps" if more > 0 else "")

    @property
    def label(self):
        width = 8 if self.can_id > 0x7FF else 3
        where = f"{self.channel} " if self.channel else ""
        return f"{where}{self.can_id:0{width}X} {self.kind}"

    def as_dict(self):
        out = {"id": self.can_id, "mode": self.kind, "channel": self.channel,
               "received": self.received,
               "missing": self.missing, "gaps": self.gaps, "duplicates": self.duplicates,
               "reordered": self.reordered, "corrupt": self.corrupt,
               "corrupt_examples": self.corrupt_examples, "first": self.first,
               "last": self.highest, "wraps": self.wraps,
               "arrival": self.arrival.as_dict("ms")}
        if self.kind == "quality-test":
            out["test_ids"] = sorted(self.test_ids)
            out["sender"] = self.sender.as_dict("ms")
            if self._latency_n:
                out["latency_ms"] = {"mean": round(self._latency_sum / self._latency_n, 3),
                                     "min": round(self.latency_min, 3),
                                     "max": round(self.latency_max, 3)}
        return out

    def line(self):
        text = (f"{self.label}: received {self.received:,}, missing {self.missing:,}, "
                f"duplicate {self.duplicates:,}, reordered {self.reordered:,}, corrupt "
                f"{self.corrupt:,}")
        if self.wraps:
            text += f", {plural(self.wraps, 'wrap')}"
        return text


class StreamCheck:
    """The streams of one ``dump --check``; ``lost`` says whether anything was lost."""

    def __init__(self, mode="auto", out=None, report=None, as_json=False, expect=None,
                 clock=time.monotonic):
        self.mode = mode
        self.expect = expect  # frames each stream's sender sent (numbers 0..expect-1)
        self.out = out
        self.report = report  # a status line every STATUS_EVERY seconds (Reporter.info)
        self.as_json = as_json
        self.clock = clock
        self.streams = {}
        self.unchecked = 0  # frames of ids that are no checked stream
        self.logger_drops = []  # what the logger said (or showed) it dropped
        self.logger_missing = 0  # frames it dropped, where it says how many
        self._lock = threading.Lock()
        self._next_status = None
        self._closed = None  # why the logger last closed the connection
        self._unseen_since_close = set()  # streams with no frame since then

    # ---- client.Dump's live-view interface ----

    def start(self):
        self._next_status = self.clock() + STATUS_EVERY

    def add(self, frames, channel=None):
        streams = self.streams
        for t_us, can_id, flags, data in frames:
            key = (channel, can_id)
            stream = streams.get(key)
            if stream is None:
                kind = self._kind(data)
                if kind is None:
                    self.unchecked += 1
                    continue
                stream = streams[key] = Stream(can_id, kind, channel)
            if key in self._unseen_since_close:
                self._first_after_close(stream, t_us, data)
                continue
            stream.add(t_us, data)

    def _first_after_close(self, stream, t_us, data):
        """The first frame of a stream after the logger closed the connection (dump
        --reconnect): the numbers it skipped went out while this client was away."""
        self._unseen_since_close.discard((stream.channel, stream.can_id))
        before, gaps = stream.missing, len(stream.gaps)
        stream.add(t_us, data)
        skipped = stream.missing - before
        if skipped:
            low, high = stream.gaps[gaps]
            self.logger_dropped(f"{self._closed}: {plural(skipped, 'frame')} of {stream.label} "
                                f"({low}-{high}) went out while this client was away (a "
                                "logger drops a client that falls more than its "
                                "--client-buffer behind)", skipped)

    def connection_ended(self, why):
        """The logger closed the connection (client.Dump tells; it may reconnect)."""
        self._closed = why
        self._unseen_since_close = set(self.streams)

    def refresh_if_due(self, now=None):
        now = self.clock() if now is None else now
        if self._next_status is None or now < self._next_status:
            return
        self._next_status = now + STATUS_EVERY
        if self.report is not None:
            self.report("check: " + self.status())

    def stop(self):
        if self.expect:
            for stream in self.streams.values():
                tail = stream.expect(self.expect)
                if tail and self._closed:
                    self.logger_dropped(f"{self._closed} before the end: "
                                        f"{plural(tail, 'frame')} of {stream.label} never "
                                        "reached this client", tail)
        if self.out is None:
            return
        if self.as_json:
            self.out.write(json.dumps(self.as_dict()) + "\n")
        else:
            self.out.write("".join(line + "\n" for line in self.summary()))
        self.out.flush()

    # ---- the logger's own losses (from the dump client) ----

    def logger_dropped(self, why, frames=None):
        with self._lock:
            self.logger_drops.append(why)
            if frames:
                self.logger_missing += frames

    # ---- results ----

    def _kind(self, data):
        mode = self.mode
        if mode in ("auto", "quality-test") and len(data) >= 8 and \
                data[:2] == traffic.QUALITY_MARKER:
            return "quality-test"
        if mode == "quality-test":
            return None
        if len(data) == 8 and (mode == "sequence" or
                               traffic.read_sequence(data) < SEQUENCE_LIMIT):
            return "sequence"
        return None

    @property
    def lost(self):
        """Anything missing, corrupt or dropped by the logger, or no checked frame at all."""
        return (not self.streams or self.logger_drops or
                any(s.missing or s.corrupt for s in self.streams.values()))

    def status(self):
        if not self.streams:
            return f"no sequence or quality-test frame yet ({self.unchecked:,} other frames)"
        return "; ".join(s.line() for s in self.streams.values())

    def summary(self):
        lines = []
        if not self.streams:
            lines.append(f"check: no sequence or quality-test frame arrived "
                         f"({plural(self.unchecked, 'other frame')})")
        for stream in self.streams.values():
            lines.append("check: " + stream.line())
            if stream.gaps:
                lines.append(f"  missing numbers: {stream.gap_text()}")
            for example in stream.corrupt_examples:
                lines.append(f"  corrupt: {example}")
            spacing = stream.arrival
            lines.append(f"  arrival spacing {spacing.mean:.3f} ms, jitter {spacing.jitter:.3f} "
                         f"ms, largest {spacing.worst:.3f} ms")
            if stream.kind == "quality-test" and stream.sender.n:
                sender = stream.sender
                lines.append(f"  sender spacing {sender.mean:.3f} ms, jitter "
                             f"{sender.jitter:.3f} ms; latency against the first frame "
                             f"{stream.latency_min:.1f}..{stream.latency_max:.1f} ms; test id "
                             f"{', '.join(str(t) for t in sorted(stream.test_ids))}")
        for why in self.logger_drops:
            lines.append(f"check: the logger dropped frames itself: {why}")
        if self.unchecked and self.streams:
            lines.append(f"check: {plural(self.unchecked, 'frame')} of other ids not checked")
        lines.append("check: " + ("LOSS" if self.lost else "OK: nothing lost"))
        return lines

    def as_dict(self):
        return {"ok": not self.lost, "streams": [s.as_dict() for s in self.streams.values()],
                "unchecked": self.unchecked,
                "logger_drops": {"events": list(self.logger_drops),
                                 "frames": self.logger_missing}}
