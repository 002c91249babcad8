"""``dump --monitor``: a full-screen live table, one row per id (and per channel when frames
come from several), in the spirit of can.viewer and cansniffer.

    any thread --add(frames)--> per-id rows (counts, period sums, changed-byte masks), under a lock
    UI thread: keys (stdin in cbreak mode) and, 5 times a second, a snapshot of the rows
               -> filter, sort -> only the rows that fit the screen are decoded and rendered

``add`` is the whole per-frame cost: a dict lookup and a few integer operations per frame, in
batches as they arrive (the decoder's batches from a socket, or a log file's). Everything that
costs more (sorting, hex text, highlighting, DBC decoding, rich) runs once per refresh and only
for the visible rows, so the screen keeps up with a saturated bus of thousands of ids.

Frames are the wire decoder's tuples ``(timestamp_us, can_id, flags, data)``; ``add_labelled``
takes ``(timestamp_us, can_id, flags, data, channel)`` from sources with several channels
(a log file with channels, several loggers); ``feed`` takes any iterator of either.
"""
import logging
import math
import os
import select
import sys
import threading
import time

from ._fast import idcount, wire
from .errors import UsageError

FLAG_EXT = wire.FLAG_EXT
REFRESH_INTERVAL = 0.2  # 5 screens a second, so that a loaded machine still gets 4
RATE_WINDOW = 1.0  # frames/s per row is measured over about this long
CHANGED_FOR = 1.0  # a byte that changed within this many seconds is highlighted
ADD_CHUNK = 4096  # frames counted per hold of the lock
STALE_AFTER = 2.0  # a row not seen for this long (and 3 of its periods) is dimmed
SORTS = ("id", "rate", "last change")

KEYS_HELP = "q quit  p pause  s sort  c clear  / filter  ↑↓ PgUp PgDn Home End scroll"


def require_terminal(stdin=None, stdout=None):
    """UsageError unless both ends are a terminal (keys come from stdin, the screen is stdout)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    for name, stream in (("output", stdout), ("input", stdin)):
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        if not tty:
            raise UsageError(f"--monitor is a full-screen view and needs a terminal, but the "
                             f"{name} is not one: use --stats (a table that also works in a "
                             "pipe) or --format json")


class View:
    """A copy of what one row shows, taken under the lock (the screen then renders unlocked)."""

    __slots__ = ("key", "channel", "can_id", "flags", "data", "count", "rate", "period",
                 "jitter", "seen", "changed", "changed_at", "name")

    def __init__(self, row, name):
        self.key = row.key
        self.channel = row.channel
        self.can_id = row.can_id
        self.flags = row.flags
        self.data = row.data
        self.count = row.count
        self.rate = row.rate
        intervals = row.count - 1
        if intervals > 0:
            mean = row.sum_period / intervals
            self.period = mean / 1000.0  # ms
            variance = max(0.0, row.sum_period2 / intervals - mean * mean)
            self.jitter = math.sqrt(variance) / 1000.0
        else:
            self.period = self.jitter = None
        self.seen = row.seen
        self.changed = row.changed
        self.changed_at = list(row.changed_at)
        self.name = name

    def ident(self):
        return _ident(self)


def _limit(max_rows):
    return -1 if max_rows is None else max_rows  # idcount's "no limit"


def _ident(row):
    """The id as written: 3 hex digits for 11-bit, 8 for 29-bit (a Row or a View)."""
    return f"{row.can_id:08X}" if row.flags & FLAG_EXT else f"{row.can_id:03X}"


class Monitor:
    """The live table. ``start()`` takes over the screen and the keyboard; ``add`` from any
    thread; ``stop()`` gives the terminal back as it was. ``on_quit`` is called (from the UI
    thread) when the user presses q; ``quit_requested`` is set then too.

    Without a real terminal (tests, the benchmark, the screenshot script) pass ``keys=None``
    and a rich Console of your own; ``render()`` returns the current screen as a renderable.
    """

    def __init__(self, console=None, signals=None, title="", on_quit=None,
                 keys=sys.stdin, refresh_interval=REFRESH_INTERVAL, clock=time.monotonic,
                 capture_log=True, reassembler=None, max_rows=None):
        self.console = console
        self.reassembler = reassembler  # reassembly.Reassembler: the messages view (key m)
        self.showing_messages = False
        self._messages = {}  # label -> MessageRow
        self.signals = signals  # dbc.SignalDecoder or None
        self.title = title
        self.on_quit = on_quit
        self.keys = keys
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.quit_requested = threading.Event()
        self.capture_log = capture_log  # the cancorder log to the status line while shown
        self._log = None
        self.total = 0
        # rows per channel at most (None: no limit); frames of ids beyond it are counted in
        # total and unlisted only (the web page's bound against a flood of distinct ids)
        self.max_rows = max_rows
        self.unlisted = 0
        self.status = ""  # the last log line or state worth saying (the line under the title)
        self.sort = SORTS[0]
        self.filter_text = ""
        self.editing_filter = False
        self.paused = False
        self.offset = 0  # the first visible row, in the sorted and filtered list
        self.refreshes = 0  # screens drawn (the benchmark reads it)
        self._tables = {}  # channel -> {id key: Row}
        # (how many rows, the first in id order, for tick_and_show): rows are only added (or
        # all cleared), so the same number of rows is the same rows, sorted once
        self._first = None
        self._lock = threading.Lock()
        self._frozen = None  # the views shown while paused
        self._rate_time = clock()
        self._total_counted = 0
        self.total_rate = 0.0
        self._refresh_times = []
        self._live = None
        self._thread = None
        self._stopping = threading.Event()
        self._saved_tty = None
        self._wake_r = self._wake_w = -1  # a pipe while started: wakes the UI thread
        self.error = None  # what broke the UI thread, if anything did (the caller reports it)

    # ---- frames in (any thread) ----

    def add(self, frames, channel=None):
        """Count a batch of ``(timestamp_us, can_id, flags, data)`` frames from ``channel``."""
        if not frames:
            return
        now = self.clock()
        if len(frames) > ADD_CHUNK:  # a big backlog: let the screen in between the slices
            for start in range(0, len(frames), ADD_CHUNK):
                self._add(frames[start:start + ADD_CHUNK], channel, now)
        else:
            self._add(frames, channel, now)

    def _add(self, frames, channel, now):
        with self._lock:
            rows = self._rows(channel)
            self.unlisted += idcount.count_frames(rows, frames, _channel_order(channel), channel,
                                                  now, _limit(self.max_rows))
            self.total += len(frames)
            if self.reassembler is not None:
                self._add_messages(self.reassembler.feed(frames))

    def add_records(self, records, channel=None, keep_last=0):
        """Count wire records (whole ones) without decoding them: the web page's live feed.
        Returns where the last ``keep_last`` records start (its trace decodes only those)."""
        now = self.clock()
        with self._lock:
            rows = self._rows(channel)
            frames, unlisted, tail = idcount.count_records(
                rows, records, _channel_order(channel), channel, now, _limit(self.max_rows), keep_last)
            self.unlisted += unlisted
            self.total += frames
        return tail

    def _rows(self, channel):
        rows = self._tables.get(channel)
        if rows is None:
            rows = self._tables[channel] = {}
        return rows

    def _add_messages(self, items):
        from .reassembly import Message

        messages = self._messages
        for item in items:
            if isinstance(item, Message):
                label = item.label()
                row = messages.get(label)
                if row is None:
                    messages[label] = MessageRow(item)
                else:
                    row.add(item)

    def add_labelled(self, frames):
        """Count ``(timestamp_us, can_id, flags, data, channel)`` frames (any mix of channels)."""
        groups = {}
        for frame in frames:
            groups.setdefault(frame[4], []).append(frame[:4])
        for channel, group in groups.items():
            self.add(group, channel)

    def feed(self, frames, batch=1000, stop=None):
        """Consume an iterator of 4- or 5-tuples into the table, ``batch`` at a time, until it
        ends, q is pressed or ``stop`` (an Event) is set."""
        pending = []
        for frame in frames:
            pending.append(frame)
            if len(pending) >= batch:
                self._add_any(pending)
                pending = []
                if self.quit_requested.is_set() or (stop is not None and stop.is_set()):
                    return
        self._add_any(pending)

    def _add_any(self, frames):
        if frames and len(frames[0]) > 4:
            self.add_labelled(frames)
        else:
            self.add(frames)

    # ---- the screen ----

    def start(self):
        """Take over the screen (the alternate screen, cursor hidden) and the keyboard."""
        from rich.console import Console
        from rich.live import Live

        if self.console is None:
            self.console = Console(highlight=False)
        self._wake_r, self._wake_w = os.pipe()
        if self.keys is not None:
            self._cbreak()
        if self.capture_log:
            self._log = ScreenLog(self)
            self._log.install()
        self._live = Live(self.render(), console=self.console, screen=True, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False)
        try:
            self._live.start()
        except BaseException:
            self._restore_tty()
            self._release_log()
            raise
        self._thread = threading.Thread(target=self._run_ui, name="monitor", daemon=True)
        self._thread.start()

    def _release_log(self):
        if self._log is not None:
            log, self._log = self._log, None
            log.uninstall()

    def stop(self):
        """Give the terminal back (main screen, cursor, echo), whatever happened."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            if self._live is not None:
                self._live.stop()
                self._live = None
        finally:
            self._restore_tty()
            self._release_log()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._wake_r = self._wake_w = -1

    # the Dump client drives every display through these two (the --stats table has them too)
    def refresh_if_due(self, now=None):
        """Nothing to do: the UI thread refreshes on its own clock."""

    def hold(self, reason, over):
        """The stream ended (``reason``): keep the table on screen until q, or ``over()``."""
        self.status = f"{reason}: press q to quit"
        self._wake()
        while not self.quit_requested.wait(0.2):
            if over() or self._thread is None or not self._thread.is_alive():
                return

    def note(self, text):
        """A log line while the screen is ours: shown under the title."""
        self.status = text
        self._wake()

    def _wake(self):
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def _run_ui(self):
        try:
            self._ui()
        except Exception as exc:  # a bug here must end the run visibly, not freeze the screen
            self.error = exc
            self.quit_requested.set()
            if self.on_quit is not None:
                self.on_quit()

    def _ui(self):
        fd = self.keys.fileno() if self.keys is not None else None
        watched = [self._wake_r] + ([fd] if fd is not None else [])
        next_refresh = self.clock()
        while not self._stopping.is_set():
            timeout = max(0.0, next_refresh - self.clock())
            try:
                readable = select.select(watched, [], [], timeout)[0]
            except (OSError, ValueError):
                return
            redraw = False
            if self._wake_r in readable:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
                redraw = True
            if fd is not None and fd in readable:
                try:
                    typed = os.read(fd, 1024)
                except OSError:
                    typed = b""
                if not typed:  # the terminal went away
                    watched.remove(fd)
                    fd = None
                else:
                    self.handle_keys(typed)
                    redraw = True
            if self._stopping.is_set():
                return
            now = self.clock()
            if now >= next_refresh:
                next_refresh = max(next_refresh + self.refresh_interval, now)
                self.tick(now)
                redraw = True
            if redraw:
                self.redraw(now)

    def tick(self, now=None):
        """Once per refresh: rates, and the bytes that changed since the last one."""
        now = self.clock() if now is None else now
        with self._lock:
            self._tick(now)

    def _tick(self, now):
        elapsed = now - self._rate_time
        if elapsed < RATE_WINDOW / 4:  # too soon for the rates: the changed bytes only
            for rows in self._tables.values():
                idcount.tick_rows(rows, now, elapsed, 0.0)
            return
        weight = min(1.0, elapsed / RATE_WINDOW)
        for rows in self._tables.values():
            idcount.tick_rows(rows, now, elapsed, weight)
        fresh = (self.total - self._total_counted) / elapsed
        self.total_rate += (fresh - self.total_rate) * weight
        self._total_counted = self.total
        self._rate_time = now

    def _all_rows(self):
        for rows in self._tables.values():
            yield from rows.values()

    def redraw(self, now=None):
        if self._live is None:
            return
        try:
            self._live.update(self.render(now), refresh=True)
        except Exception as exc:  # the screen must never take the capture down with it
            self.status = f"screen: {exc}"
            return
        stamp = self.clock()
        self.refreshes += 1
        self._refresh_times.append(stamp)
        while self._refresh_times and self._refresh_times[0] < stamp - 2.0:
            self._refresh_times.pop(0)

    @property
    def refresh_rate(self):
        """Screens drawn per second over the last two seconds."""
        times = self._refresh_times
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    # ---- keys ----

    def handle_keys(self, typed):
        """Act on bytes read from the terminal (several keys, escape sequences included)."""
        text = typed.decode("utf-8", "replace")
        index = 0
        while index < len(text):
            char = text[index]
            if char == "\x1b":
                sequence = _escape_sequence(text, index)
                index += len(sequence)
                self._special(_SEQUENCES.get(sequence, "escape" if sequence == "\x1b" else None))
                continue
            index += 1
            if self.editing_filter:
                self._edit_filter(char)
            else:
                self._command(char)

    def _command(self, char):
        if char in "qQ":
            self.quit_requested.set()
            if self.on_quit is not None:
                self.on_quit()
        elif char in "pP ":
            self.paused = not self.paused
            self._frozen = self.snapshot() if self.paused else None
        elif char in "sS":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
            self.offset = 0
        elif char in "cC":
            with self._lock:
                self._tables.clear()
                self._first = None
                self._messages.clear()
                self.total = self._total_counted = 0
                self.total_rate = 0.0
            if self.paused:
                self._frozen = []
            self.offset = 0
        elif char == "/":
            self.editing_filter = True
        elif char in "mM" and self.reassembler is not None:
            self.showing_messages = not self.showing_messages
            self.offset = 0

    def _edit_filter(self, char):
        if char in "\r\n":
            self.editing_filter = False
        elif char in "\x7f\b":
            self.filter_text = self.filter_text[:-1]
        elif char.isprintable():
            self.filter_text += char
        self.offset = 0

    def _special(self, key):
        if key is None:
            return
        if self.editing_filter:
            if key == "escape":  # Esc while typing: no filter at all
                self.filter_text = ""
                self.editing_filter = False
            return
        if key == "escape":
            self.filter_text = ""
            return
        page = max(1, self._page_rows())
        step = {"up": -1, "down": 1, "page up": -page, "page down": page,
                "home": -sys.maxsize, "end": sys.maxsize}.get(key)
        if step is not None:
            self.offset = max(0, self.offset + step)  # the upper bound is applied when drawn

    # ---- what is shown ----

    def snapshot(self):
        """Views of every row, taken under the lock (what a pause freezes)."""
        with self._lock:
            return [self._view(row) for row in self._all_rows()]

    def tick_and_show(self, now, limit, show):
        """``tick``, then ``(show(row, name) for the first limit rows in id order, how many rows
        there are)``, in one hold of the lock: every frame a row has counted is stamped
        (changed bytes, rate) when ``show`` reads it, so what it makes of a row stays true
        until the row's count changes (the web page's per-row cache)."""
        import heapq

        with self._lock:
            self._tick(now)
            count = sum(len(rows) for rows in self._tables.values())
            if self._first is None or self._first[0] != count:
                self._first = (count, heapq.nsmallest(limit, self._all_rows(),
                                                      key=lambda row: row.key))
            return [show(row, self._name(row)) for row in self._first[1]], count

    def _view(self, row):
        return View(row, self._name(row))

    def _name(self, row):
        return self.signals.name_for(row.can_id, row.flags) if self.signals is not None else None

    def visible(self, rows):
        """Filter and sort ``rows`` (Rows or Views) as the keys asked; a new list."""
        wanted = self.filter_text.strip().lower()
        if wanted:
            rows = [row for row in rows
                    if wanted in _ident(row).lower()
                    or wanted in (self._name(row) or "").lower()
                    or (row.channel is not None and wanted == str(row.channel).lower())]
        else:
            rows = list(rows)
        if self.sort == "rate":
            rows.sort(key=lambda row: (-row.rate, row.key))
        elif self.sort == "last change":
            rows.sort(key=lambda row: (-row.changed, row.key))
        else:
            rows.sort(key=lambda row: row.key)
        return rows

    def _page(self, lines_free):
        """(Views of the rows from ``offset`` that can fit, how many rows pass the filter).
        Live, the rows are sorted under the lock and only that page is copied into Views."""
        if self.paused and self._frozen is not None:
            ordered = self.visible(self._frozen)
            self.offset = max(0, min(self.offset, len(ordered) - lines_free))
            return ordered[self.offset:self.offset + lines_free], len(ordered)
        with self._lock:
            ordered = self.visible(self._all_rows())
            self.offset = max(0, min(self.offset, len(ordered) - lines_free))
            return ([self._view(row) for row in ordered[self.offset:self.offset + lines_free]],
                    len(ordered))

    def _page_rows(self):
        height = self.console.size.height if self.console is not None else 40
        return height - 5  # title, status, header, footer, and one line of margin

    def render(self, now=None):
        """The whole screen: title bar, status line, the visible rows, the key help.

        Each row is one Text laid out in fixed columns here (a rich Table measures every cell
        of every row at each refresh, which costs several times more)."""
        from rich.console import Group
        from rich.text import Text

        now = self.clock() if now is None else now
        lines_free = max(1, self._page_rows())
        if self.showing_messages:
            return self._render_messages(lines_free)
        candidates, matching = self._page(lines_free)  # no empty last page: offset clamped
        with self._lock:
            several_channels = len(self._tables) > 1
        data_width = max([3 * len(view.data) - 1 for view in candidates] + [len("Data")])
        columns = _COLUMNS if not several_channels else (("Chan", 6, "<"),) + _COLUMNS
        header = "".join(f"{name:{align}{width}} " for name, width, align in columns)
        header += f"{'Data':<{data_width}}"
        if self.signals is not None:
            header += "  Message / signals"
        indent = " " * (len(header) - (len("  Message / signals") if self.signals else 0) + 2)

        lines = [Text(header, style="bold reverse", no_wrap=True, overflow="ellipsis")]
        rows_shown = 0
        for view in candidates:
            decoded = (self.signals.decode(view.can_id, view.flags, view.data)
                       if self.signals is not None and view.name is not None else None)
            signal_lines = _signal_lines(decoded)
            if rows_shown and len(lines) + len(signal_lines) > lines_free:
                break
            stale = now - view.seen > max(STALE_AFTER, 3 * (view.period or 0) / 1000.0)
            line = Text(no_wrap=True, overflow="ellipsis")
            if several_channels:
                line.append(f"{_channel_order(view.channel)[:6]:<6} ")
            start = len(line)
            line.append(_ROW.format(view.ident(), _flags_text(view.flags), view.count,
                                    view.rate, _ms(view.period), _ms(view.jitter),
                                    len(view.data)))
            line.stylize("bold", start, start + 8)  # the id
            line.append_text(_data_text(view, now))
            if self.signals is not None and view.name is not None:
                line.append(" " * (data_width - (3 * len(view.data) - 1) + 2))
                line.append_text(_name_text(view, decoded))
            if stale:
                line.stylize("dim")
            lines.append(line)
            rows_shown += 1
            for text in signal_lines:
                beneath = Text(indent + text, no_wrap=True, overflow="ellipsis",
                               style="dim" if stale else "")
                lines.append(beneath)
            if len(lines) > lines_free:
                break

        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" cancorder monitor ", style="bold reverse")
        title.append(f" {self.title}  " if self.title else "  ")
        title.append(f"{self.total:,} frames  {self.total_rate:,.0f}/s  {matching:,} ids  "
                     f"sort: {self.sort}  refresh {self.refresh_rate:.1f}/s")
        if self.paused:
            title.append("  PAUSED", style="bold yellow reverse")
        if self.filter_text or self.editing_filter:
            title.append(f"  filter: {self.filter_text}", style="bold cyan")
            if self.editing_filter:
                title.append("▏ (Enter keeps it, Esc clears)", style="cyan")
        status = Text(f" {self.status}", style="yellow", no_wrap=True, overflow="ellipsis")
        first = self.offset + 1 if matching else 0
        footer = Text(f" {self._keys_help()}    rows {first:,}-{self.offset + rows_shown:,} of "
                      f"{matching:,}", style="dim", no_wrap=True, overflow="ellipsis")
        return Group(title, status, *lines, footer)

    def _keys_help(self):
        if self.reassembler is None:
            return KEYS_HELP
        return KEYS_HELP.replace("/ filter", "/ filter  m " + (
            "frames" if self.showing_messages else "messages"))

    def _render_messages(self, lines_free):
        """The second view (key m): one row per ISO-TP pair or J1939 PGN and addresses, with
        how many messages, their rate (by the frames' own times), the last one's length,
        bytes and what it is (its UDS service, its DBC decoding, or why it is broken)."""
        from rich.console import Group
        from rich.text import Text

        with self._lock:
            rows = sorted(self._messages.values(), key=lambda row: row.label)
        wanted = self.filter_text.strip().lower()
        if wanted:
            rows = [row for row in rows if wanted in row.label.lower()]
        self.offset = max(0, min(self.offset, len(rows) - lines_free))
        page = rows[self.offset:self.offset + lines_free]
        header = (f"{'Pair / PGN':<20} {'Kind':<8} {'Messages':>9} {'Rate/s':>8} "
                  f"{'Broken':>7} {'Len':>5}  Last message")
        lines = [Text(header, style="bold reverse", no_wrap=True, overflow="ellipsis")]
        for row in page:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"{row.label:<20} ", style="bold")
            line.append(f"{'ISO-TP' if row.last.kind == 'isotp' else 'J1939':<8} "
                        f"{row.count:>9,} {row.rate:>8,.1f} {row.broken:>7,} "
                        f"{len(row.last.data):>5}  ")
            line.append(bytes(row.last.data[:16]).hex(" ").upper()
                        + (" ..." if len(row.last.data) > 16 else ""))
            about = self._message_about(row.last)
            if about:
                line.append("  " + about, style="red" if row.last.error else "cyan")
            lines.append(line)
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" cancorder monitor ", style="bold reverse")
        title.append(f" {self.title}  " if self.title else "  ")
        title.append(f"{self.total:,} frames  {len(rows):,} pairs and PGNs  (messages)")
        if self.paused:
            title.append("  PAUSED", style="bold yellow reverse")
        status = Text(f" {self.status}", style="yellow", no_wrap=True, overflow="ellipsis")
        footer = Text(f" {self._keys_help()}    rows {self.offset + 1 if rows else 0:,}-"
                      f"{self.offset + len(page):,} of {len(rows):,}", style="dim",
                      no_wrap=True, overflow="ellipsis")
        return Group(title, status, *lines, footer)

    def _message_about(self, message):
        from .reassembly import uds_summary

        if message.error:
            return f"!{message.error}"
        if message.kind == "isotp":
            return uds_summary(bytes(message.data))
        if self.signals is not None:
            decoded = self.signals.decode(message.j1939_id(), FLAG_EXT, bytes(message.data))
            if decoded is not None:
                return decoded.text()
        return ""

    # ---- the terminal ----

    def _cbreak(self):
        """Keys one at a time, no echo; Ctrl-C still signals (the client stops cleanly)."""
        import termios

        fd = self.keys.fileno()
        self._saved_tty = (fd, termios.tcgetattr(fd))
        mode = termios.tcgetattr(fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, mode)

    def _restore_tty(self):
        if self._saved_tty is None:
            return
        import termios

        fd, saved = self._saved_tty
        self._saved_tty = None
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        except (termios.error, OSError):
            pass


_SEQUENCES = {
    "\x1b[A": "up", "\x1b[B": "down", "\x1bOA": "up", "\x1bOB": "down",
    "\x1b[5~": "page up", "\x1b[6~": "page down",
    "\x1b[H": "home", "\x1b[F": "end", "\x1bOH": "home", "\x1bOF": "end",
    "\x1b[1~": "home", "\x1b[4~": "end", "\x1b[7~": "home", "\x1b[8~": "end",
}


class MessageRow:
    """One ISO-TP pair or J1939 PGN (with its addresses) in the messages view."""

    __slots__ = ("label", "count", "broken", "first_us", "last")

    def __init__(self, message):
        self.label = message.label()
        self.count = 1
        self.broken = 1 if message.error else 0
        self.first_us = message.start_us
        self.last = message

    def add(self, message):
        self.count += 1
        self.broken += 1 if message.error else 0
        self.last = message

    @property
    def rate(self):
        """Messages per second over the time they span (the frames' own clock: a log file
        read at any speed gives the bus's rate)."""
        span = self.last.start_us - self.first_us
        return (self.count - 1) / (span / 1e6) if span > 0 else 0.0


def _channel_order(channel):
    return "" if channel is None else str(channel)


def _escape_sequence(text, index):
    """The escape sequence starting at ``index`` (CSI or SS3), or a lone Esc."""
    if index + 1 >= len(text) or text[index + 1] not in "[O":
        return "\x1b"
    end = index + 2
    while end < len(text) and not ("@" <= text[end] <= "~"):
        end += 1
    return text[index:end + 1]


#: (header, width, alignment) of the columns before Data
_COLUMNS = (("ID", 8, "<"), ("Flags", 10, "<"), ("Count", 9, ">"), ("Rate/s", 9, ">"),
            ("Period ms", 10, ">"), ("Jitter ms", 10, ">"), ("Len", 4, ">"))
_ROW = "{:<8} {:<10} {:>9,} {:>9,.1f} {:>10} {:>10} {:>4} "  # the same widths, for a row

_FLAG_TEXTS = {}


def _flags_text(flags):
    text = _FLAG_TEXTS.get(flags)
    if text is None:
        names = [name for bit, name in ((wire.FLAG_EXT, "EXT"), (wire.FLAG_FD, "FD"),
                                        (wire.FLAG_BRS, "BRS"), (wire.FLAG_ESI, "ESI"))
                 if flags & bit]
        text = _FLAG_TEXTS[flags] = " ".join(names)
    return text


def _ms(value):
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _data_text(view, now):
    """The payload in hex, the bytes that changed within CHANGED_FOR seconds highlighted."""
    from rich.text import Text

    text = Text()
    changed_at = view.changed_at
    recent = now - CHANGED_FOR
    for index, byte in enumerate(view.data):
        if index:
            text.append(" ")
        hot = index < len(changed_at) and changed_at[index] >= recent
        text.append(f"{byte:02X}", style="bold black on yellow" if hot else None)
    return text


def _name_text(view, decoded):
    from rich.text import Text

    if view.name is None:
        return ""
    if decoded is not None and decoded.error:
        return Text(f"{view.name} !{decoded.error}", style="red")
    return Text(view.name, style="bold cyan")


def _signal_lines(decoded):
    if decoded is None or decoded.error:
        return []
    from .dbc import signal_texts

    return ["  " + text for text in signal_texts(decoded)]


class ScreenLog(logging.Handler):
    """While the monitor owns the screen, the ``cancorder`` log lines go to its status line (a
    line printed under a full-screen view would tear it) and are kept; once the screen is given
    back, the handlers the CLI installed are put back and print every kept line, with the time
    it was logged. The replaced handlers' filters (the shared rate limit) apply meanwhile."""

    def __init__(self, monitor, logger_name="cancorder"):
        super().__init__()
        self.monitor = monitor
        self.logger = logging.getLogger(logger_name)
        self.held = []
        self._replaced = []

    def install(self):
        self._replaced = list(self.logger.handlers)
        for handler in self._replaced:
            for log_filter in handler.filters:
                self.addFilter(log_filter)
            self.logger.removeHandler(handler)
        self.logger.addHandler(self)

    def emit(self, record):
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        self.monitor.note(text)
        self.held.append(record)

    def uninstall(self):
        """Put the real handlers back and print what was held (their filters already ran)."""
        self.logger.removeHandler(self)
        for handler in self._replaced:
            self.logger.addHandler(handler)
        held, self.held = self.held, []
        for record in held:
            for handler in self._replaced:
                if record.levelno >= handler.level:
                    handler.emit(record)
        self._replaced = []
