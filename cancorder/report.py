"""A small facade over the ``cancorder`` logger for the command modules and the client.

``log(level, text)``, ``info``, ``warning``, ``debug``; everything goes through ``logging``
and so through the one handler the CLI installed (and its shared rate limit: cancorder.logs).
"""
import logging

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class Reporter:
    def __init__(self, logger=None):
        self.logger = logger or logging.getLogger("cancorder")

    def log(self, level, text):
        self.logger.log(_LEVELS[level], "%s", text)

    def info(self, text):
        self.log("info", text)

    def warning(self, text):
        self.log("warning", text)

    def debug(self, text):
        self.log("debug", text)


def plural(count, word):
    """``1 frame``, ``2 frames``, ``1,000 clients``, ``3 batches``: a count and its noun."""
    if count == 1:
        return f"{count:,} {word}"
    return f"{count:,} {word}{'es' if word.endswith(('ch', 'sh', 's', 'x')) else 's'}"
