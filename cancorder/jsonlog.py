"""``--log-format json``: one JSON object per log line, for journald, Loki or any collector.

Each line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``bus`` (the bus name, or
null for the process), ``event`` (a short stable name when the code gives one with
``extra={"event": ...}``, else the logger's name), ``message`` (the human text) and ``fields``
(every other ``extra=`` value, plus the traceback when there is one).
"""
import datetime
import json
import logging

#: LogRecord attributes that are not extra fields
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "bus", "event", "rate_key", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        fields = {key: _plain(value) for key, value in vars(record).items()
                  if key not in _STANDARD and not key.startswith("_")}
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        line = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "bus": getattr(record, "bus", None),
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
            "fields": fields,
        }
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
