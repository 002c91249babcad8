"""What a recording's path means: the template (strftime fields, ``{channel} {interface}
{port} {n}``), the ``.part`` name of a file being written, and the wall-clock boundaries of
time rotation."""
import os
import re
import string
import time

from ..errors import UsageError
from .formats import log_format

#: a file being written is NAME.part; it is renamed to NAME when it is complete, so an uploader
#: never takes half a file
PART = ".part"
TEMPLATE_FIELDS = ("channel", "interface", "port", "n")


def _safe(value):
    """A field value as part of a file name: no separators, nothing a shell trips over."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "_", str(value)).strip("_")  # dots would confuse
    # python-can's readers about the extension
    return text or "_"



class PathTemplate:
    """``logs/%Y%m%d/%H%M%S-{channel}.log.gz``: strftime fields (local time) and
    ``{channel} {interface} {port} {n}`` (``{n}``: the file's number in this run, from 1;
    format specs such as ``{n:04d}`` work)."""

    def __init__(self, pattern, fields=None, flag="--record"):
        self.pattern = pattern
        self.flag = flag
        self.format = log_format(pattern, flag)
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(pattern)
                     if name is not None]
        except ValueError as exc:
            raise UsageError(f"{flag} {pattern}: {exc} (a literal brace is written {{{{ or }}}})"
                             ) from None
        unknown = sorted({name for name in names if name not in TEMPLATE_FIELDS})
        if unknown:
            raise UsageError(f"{flag} {pattern}: unknown field {{{unknown[0]}}}: the fields are "
                             + ", ".join("{%s}" % f for f in TEMPLATE_FIELDS)
                             + " and strftime's (%Y %m %d %H %M %S ...)")
        self.fields = {key: "" for key in TEMPLATE_FIELDS if key != "n"}
        self.fields.update({k: _safe(v) for k, v in (fields or {}).items() if v is not None})
        try:
            self.render(time.time(), 1)
        except (ValueError, IndexError, KeyError) as exc:
            raise UsageError(f"{flag} {pattern}: {exc}") from None

    def render(self, now, n):
        text = time.strftime(self.pattern, time.localtime(now))
        return text.format(n=n, **self.fields)

    def fixed_folder(self):
        """The deepest folder every name of this template is in (the part of the path before
        its first field): where the recording's index lives."""
        cuts = [i for i in (self.pattern.find("%"), self.pattern.find("{")) if i >= 0]
        head = self.pattern[:min(cuts)] if cuts else self.pattern
        return os.path.dirname(head) or "."

    def key(self):
        """What tells this recording from any other in the same folder: the template, the bus
        (its channel and interface: two buses with one template are two recordings) and any
        other field the template names."""
        named = {name for _, name, _, _ in string.Formatter().parse(self.pattern) if name}
        return self.pattern + "".join(f"\0{k}={v}" for k, v in sorted(self.fields.items())
                                      if k in ("channel", "interface") or k in named)


def next_boundary(now, period):
    """The next multiple of ``period`` seconds in local time after ``now`` (hourly files start
    at :00, daily ones at local midnight)."""
    offset = time.localtime(now).tm_gmtoff
    return ((now + offset) // period + 1) * period - offset

