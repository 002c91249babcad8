"""Logging for the whole process: one handler on the ``cancorder`` logger, installed by the CLI.

Every part logs through the standard ``logging`` module (``logging.getLogger("cancorder.x")``)
and knows nothing of terminals. The handler writes one line per record to stderr, rich-formatted
for people (``HH:MM:SS text``, ``warning:``/``error:`` in colour on a terminal, plain when
piped). ``bus`` in a record's extra names the bus a line is about.

Repeated events (garbage from an adapter, a client refused, a connection storm, an adapter that
stays unplugged) are bounded by one shared filter: a record whose extra holds ``rate_key``
passes at most once per interval per key (``rate_interval`` in the extra, default 5 s), and the
next one that passes says how many were held back in between.
"""
import logging
import sys
import threading
import time

ROOT = "cancorder"
RATE_INTERVAL = 5.0  # seconds between two lines of the same repeated event


def get(name):
    """The logger of one part, e.g. ``get("source")`` -> ``cancorder.source``."""
    return logging.getLogger(f"{ROOT}.{name}")


class RateLimitFilter(logging.Filter):
    """At most one record per ``rate_key`` per interval; the next says how many were held."""

    def __init__(self, interval=RATE_INTERVAL, clock=time.monotonic):
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._state = {}  # key -> (time the next record may pass, records held back)

    def filter(self, record):
        key = getattr(record, "rate_key", None)
        if key is None:
            return True
        interval = getattr(record, "rate_interval", self.interval)
        now = self._clock()
        with self._lock:
            due, held = self._state.get(key, (0.0, 0))
            if now < due:
                self._state[key] = (due, held + 1)
                return False
            self._state[key] = (now + interval, 0)
        if held:
            record.msg = (f"{record.getMessage()} (and {held:,} more like it in the last "
                          f"{interval:g} s)")
            record.args = ()
        return True


_STYLES = {logging.WARNING: "yellow", logging.ERROR: "bold red", logging.CRITICAL: "bold red",
           logging.DEBUG: "dim"}


class HumanHandler(logging.Handler):
    """``HH:MM:SS [warning: ]text`` on stderr through rich (colour only on a terminal)."""

    def __init__(self, console=None):
        super().__init__()
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.console = console

    def emit(self, record):
        from rich.markup import escape

        try:
            text = escape(record.getMessage())
            if record.exc_info and record.levelno >= logging.ERROR and \
                    logging.getLogger(ROOT).isEnabledFor(logging.DEBUG):
                text += "\n" + escape(logging.Formatter().formatException(record.exc_info))
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            style = _STYLES.get(record.levelno)
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            self.console.print(f"[dim]{stamp}[/dim] [{style}]{text}[/{style}]" if style
                               else f"[dim]{stamp}[/dim] {text}")
        except Exception:  # a log line must never take the process down
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line, for journald, Loki or any collector.

    ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``bus`` (null for the process),
    ``event`` (a short stable name where the code gives one with ``extra={"event": ...}``, else
    the logger's name), ``message`` (the human text) and ``fields`` (every other ``extra=``
    value, and the traceback when there is one).
    """

    def format(self, record):
        import datetime
        import json

        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        fields = {key: _plain(value) for key, value in vars(record).items()
                  if key not in _RECORD_ATTRIBUTES and not key.startswith("_")}
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json.dumps({
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "bus": getattr(record, "bus", None),
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
            "fields": fields,
        }, ensure_ascii=False, separators=(",", ":"))


#: LogRecord attributes that are not extra fields
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "bus", "event", "rate_key", "taskName"}


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def json_handler(stream=None):
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


#: the format setup() installed last: the command line's final error line follows it
_active_format = "human"


def error_line(text, exit_code, stream=None):
    """The last line of a failing command: ``error: text``, or a JSON object in json mode."""
    stream = stream if stream is not None else sys.stderr
    if _active_format == "json":
        record = logging.LogRecord(ROOT, logging.ERROR, __file__, 0, "%s", (text,), None)
        record.event = "exit"
        record.exit_code = exit_code
        print(JsonFormatter().format(record), file=stream)
    else:
        print(f"error: {text}", file=stream)


def setup(debug=False, handler=None, log_format="human"):
    """Install the one handler (and the shared rate limit) on the ``cancorder`` logger.

    python-can logs warnings of its own at import and on a failed open ("Kvaser canlib is
    unavailable"): they would follow our one clear error line, so they show only with --debug.
    ``log_format`` "json" writes JSON lines instead of the human ones. Returns the handler
    (tests pass their own to read what was logged).
    """
    global _active_format
    root = logging.getLogger(ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
    _active_format = log_format
    if handler is None:
        handler = json_handler() if log_format == "json" else HumanHandler()
    handler.addFilter(RateLimitFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        logging.getLogger("asyncio").setLevel(logging.INFO)
    else:
        logging.getLogger("can").setLevel(logging.ERROR)
    return handler
