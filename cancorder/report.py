"""What the user sees on stderr: timestamped log lines, a status line, and an error line.

rich gives colour on a terminal and plain text when stderr is piped. Safe to call from any
thread (the broadcaster, the source pump and the main thread all log).
"""
import threading
import time

_STYLES = {"info": "", "warning": "yellow", "error": "bold red", "debug": "dim"}


class Reporter:
    def __init__(self, debug=False, console=None):
        from rich.console import Console

        self.debug_enabled = debug
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._once = set()
        self._lock = threading.Lock()

    def log(self, level, text):
        if level == "debug" and not self.debug_enabled:
            return
        stamp = time.strftime("%H:%M:%S")
        style = _STYLES.get(level, "")
        prefix = f"{level}: " if level in ("warning", "error") else ""
        self.console.print(f"[dim]{stamp}[/dim] [{style}]{prefix}{_escape(text)}[/{style}]"
                           if style else f"[dim]{stamp}[/dim] {_escape(text)}")

    def info(self, text):
        self.log("info", text)

    def warning(self, text):
        self.log("warning", text)

    def debug(self, text):
        self.log("debug", text)

    def once(self, key, level, text):
        """Log ``text`` the first time ``key`` is seen (errors repeating while reopening)."""
        with self._lock:
            if key in self._once:
                return
            self._once.add(key)
        self.log(level, text)

    def forget(self, key):
        with self._lock:
            self._once.discard(key)


def plural(count, word):
    """``1 frame``, ``2 frames``, ``1,000 clients``: a count and its noun, agreeing."""
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _escape(text):
    from rich.markup import escape

    return escape(str(text))
