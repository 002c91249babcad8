"""A small facade over the ``cancorder`` logger for the command modules and the client.

``log(level, text)``, ``info``, ``warning``, ``debug`` and ``once`` (a line the first time its
key is seen); everything goes through ``logging`` and so through the one handler the CLI
installed (cancorder.logs).
"""
import logging
import threading

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class Reporter:
    def __init__(self, debug=False, logger=None):
        self.debug_enabled = debug
        self.logger = logger or logging.getLogger("cancorder")
        self._once = set()
        self._lock = threading.Lock()

    def log(self, level, text):
        self.logger.log(_LEVELS[level], "%s", text)

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
