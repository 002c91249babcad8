"""A virtual SLCAN (LAWICEL) adapter on a pseudo-terminal: ``cancorder gen --pty`` and
``cancorder mock-slcan``. Any SLCAN client (``cancorder serve -i slcan -c /dev/pts/N``,
python-can's ``slcan`` interface, slcand) opens the path it prints as it would a CANable.

It answers as a CANable does: ``\\r`` for the set-up commands (``C``, ``S0``-``S8``, ``sXXYY``,
``Y2``/``Y5``, ``M``/``m``, ``X``, ``Z``, ``F``...), ``V1013``/``NGEN0`` for version and serial
number, ``z``/``Z`` for a transmitted frame (counted), BEL for what it does not know. Once its
channel is opened (``O``, or ``L`` listen-only) it sends the generator's frames as SLCAN lines
at their instants; ``C`` stops it until the next ``O`` (the frames continue where they
stopped: none is skipped). Writes the reader does not take yet wait (the schedule waits with
them), so a reader that keeps up gets every frame, and the exact count.
"""
import errno
import logging
import os
import select
import sys
import time
import tty

from .generator import LiveStats, Timeline
from .report import plural
from .signals import stop_on_signals
from .sources.slcan import frame_line

log = logging.getLogger("cancorder")
#: set-up commands answered with CR (a CANable's firmware accepts these)
SETUP_COMMANDS = set("SsYMmXZFWUQ")
VERSION_REPLY = b"V1013\r"
SERIAL_REPLY = b"NGEN0\r"
#: most frames written in one go (a write of ~30 kB: one pty buffer's worth at most)
BATCH = 1024
#: bytes waiting for the reader beyond which no new frame is made
PENDING_LIMIT = 1 << 16


class SlcanPtyAdapter:
    def __init__(self, timeline, on_frame=None, live=None):
        self.timeline = timeline
        self.on_frame = on_frame  # called with each sent frame's (id, flags, data): --dump
        self.live = live  # generator.LiveStats, or None
        self.master, self._slave = os.openpty()
        # raw: no echo, no CR->NL, no line editing; the client sets its own modes on its fd
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.is_open = False
        self.listen_only = False
        self.received = 0  # frames the client transmitted
        self.commands = 0
        self.opens = 0
        self._command = bytearray()
        self._pending = bytearray()
        self._stop = None

    def stop(self, reason="stopped"):
        self._stop = reason

    def close(self):
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def run(self):
        """Until stopped (a signal); returns why."""
        with stop_on_signals(self.stop):
            while self._stop is None:
                self._step()
        return self._stop

    def _step(self):
        timeline = self.timeline
        want_write = bool(self._pending)
        timeout = 0.2
        if self.is_open and not want_write and not timeline.finished:
            if timeline.started is None:
                timeline.start()
            # at most one wake-up a millisecond: a write then carries the frames due by then
            # (a USB adapter's rhythm), not one frame each
            # (Timeline.pause); -r 0: no pause at all
            timeout = min(timeout, 0.0 if timeline.schedule.rate == 0 else timeline.pause())
        readable, writable, _ = select.select([self.master], [self.master] if want_write else [],
                                              [], timeout)
        if readable:
            self._read_commands()
        if self._pending and (writable or not want_write):
            self._flush()
        if self.is_open and len(self._pending) < PENDING_LIMIT and timeline.started is not None:
            n = timeline.due_now(BATCH)
            if n:
                if self.on_frame is None:
                    self._pending += timeline.slcan_lines(n)  # one compiled loop
                else:
                    frames = timeline.frames(n)
                    self._pending += b"".join(frame_line(*frame) for frame in frames)
                    for frame in frames:
                        self.on_frame(frame)
                if self.live is not None:
                    self.live.tick(timeline.sent)
                self._flush()

    def _flush(self):
        try:
            written = os.write(self.master, self._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # nobody has the terminal open: keep it for later
                return
            raise
        del self._pending[:written]

    def _read_commands(self):
        try:
            chunk = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # the last reader closed the terminal
                time.sleep(0.05)
                return
            raise
        replies = bytearray()
        for byte in chunk:
            if byte == 0x0D:  # CR ends a command
                replies += self._answer(bytes(self._command))
                self._command.clear()
            elif byte == 0x07 or byte == 0x0A:
                continue
            elif len(self._command) < 200:
                self._command.append(byte)
        if replies:
            self._pending += replies
            self._flush()

    def _answer(self, command):
        self.commands += 1
        if not command:
            return b"\r"
        kind = chr(command[0])
        if kind in "OL":
            if not self.is_open:
                self.opens += 1
                self.timeline.resume()
            self.is_open, self.listen_only = True, kind == "L"
            return b"\r"
        if kind == "C":
            if self.is_open:
                log.info(f"the client closed the channel: {plural(self.timeline.sent, 'frame')} "
                         f"sent, {plural(self.received, 'transmitted frame')} taken so far")
            self.is_open = False
            return b"\r"
        if kind == "V":
            return VERSION_REPLY
        if kind == "N":
            return SERIAL_REPLY
        if kind in "tTdDbBrR":
            if not self.is_open or self.listen_only:
                return b"\a"  # a closed or listen-only channel sends nothing
            self.received += 1
            return b"Z\r" if kind.isupper() else b"z\r"
        if kind in SETUP_COMMANDS:
            return b"\r"
        return b"\a"


def run_adapter(settings, reporter, dump=False):
    """``gen --pty`` / ``mock-slcan``: print the device path, serve until a signal, exit 0."""
    from .formats import CandumpFormatter

    timeline = Timeline(settings)
    on_frame = None
    if dump:
        formatter = CandumpFormatter("can0")

        def on_frame(frame):
            stamp = time.time_ns() // 1000
            sys.stdout.write(formatter.format([(stamp, frame[0], frame[1], frame[2])]))

    live = None if dump else LiveStats()  # --dump has stdout; the line would mix in
    adapter = SlcanPtyAdapter(timeline, on_frame=on_frame, live=live)
    try:
        print(adapter.path, flush=True)
        reporter.info(f"a virtual SLCAN adapter on {adapter.path} ({settings.describe()}); "
                      f"it sends once its channel is opened: cancorder serve -i slcan -c "
                      f"{adapter.path}")
        reason = adapter.run()
    finally:
        adapter.close()
        if live is not None:
            live.done()
    reporter.info(f"sent {plural(timeline.sent, 'frame')}, took "
                  f"{plural(adapter.received, 'transmitted frame')}; stopped: {reason}")
    return 0
