"""The one table of log file formats: what each extension can do, for reading and for writing.

Both sides look a path up here: the recorder (``--record``, ``dump -o``, ``mock-uds --output``)
through ``log_format`` and the readers (``cancorder replay``, ``dump FILE``) through
``read_format``; neither keeps a list of its own.

gzip: every text format is read and written through gzip. ``.blf`` is the one format whose two
directions differ: python-can's BLF reader takes a gzip stream (a ``.blf.gz`` someone
compressed), but its writer seeks back to the file header when it closes, which a gzip stream
cannot do, so cancorder never writes ``.blf.gz`` (a BLF is compressed inside already). ``.db``
(SQLite) and ``.mf4`` are opened by name only, either way.
"""
import dataclasses
import os
import shlex
import sys

from ..errors import UsageError

#: who reads or writes a format: compiled code (_fast.logfile: records straight to candump
#: lines and back, and to BLF objects; _fast.pcap for pcapng: records to blocks and back; no
#: python-can Message per frame), or python-can's reader/writer
COMPILED = "compiled"
PYTHON_CAN = "python-can"


@dataclasses.dataclass(frozen=True)
class FileFormat:
    """One extension. ``reader``/``writer``: COMPILED, PYTHON_CAN or None (not supported);
    ``gzip_read``/``gzip_write``: a ``.gz`` of it is read/written; ``fd_lost``: what writing
    loses of CAN FD frames ("" nothing, "flags" FD/BRS/ESI, "frames" the frames themselves)
    and ``fd_why`` why; ``dated``: python-can writes calendar dates (nothing after the year
    9999); ``text``: read through a file object that counts lines (for error messages);
    ``channels_from_one``: python-can numbers the channels from 0, the file (and Vector's
    tools) from 1. ``channel_column``: what a written file keeps of a frame's channel: "name"
    (any text), "number" (python-can's writer stores ``channel_base`` plus the number it is
    given) or "" (nothing: the frames of several channels cannot be told apart)."""

    suffix: str
    reader: str = PYTHON_CAN
    writer: str = PYTHON_CAN
    gzip_read: bool = True
    gzip_write: bool = True
    fd_lost: str = ""
    fd_why: str = ""
    dated: bool = False
    text: bool = False
    channels_from_one: bool = False
    channel_column: str = "number"
    channel_base: int = 1


FORMATS = {fmt.suffix: fmt for fmt in (
    FileFormat(".asc", dated=True, text=True, channels_from_one=True),
    FileFormat(".blf", writer=COMPILED, gzip_write=False, dated=True, channels_from_one=True),
    FileFormat(".csv", fd_lost="flags", text=True, channel_column="",
               fd_why="python-can's CSV format has no FD, BRS or ESI columns"),
    FileFormat(".db", gzip_read=False, gzip_write=False, fd_lost="flags", channel_column="",
               fd_why="python-can's SQLite table has no FD, BRS or ESI columns"),
    FileFormat(".log", reader=COMPILED, writer=COMPILED, channel_column="name"),
    FileFormat(".mf4", gzip_read=False, gzip_write=False, channel_base=0),
    # Wireshark's capture format: SocketCAN frames (link type 227), written by _fast.pcap
    FileFormat(".pcapng", reader=COMPILED, writer=COMPILED, channel_column="name"),
    FileFormat(".trc", fd_lost="frames", dated=True, text=True,
               fd_why="python-can's TRC writer has no CAN FD support"),
    # python-can's Printer: written, never read back
    FileFormat(".txt", reader=None, channel_column="name"),
)}

#: the extensions read, and written
READ_SUFFIXES = tuple(s for s, fmt in FORMATS.items() if fmt.reader)
WRITE_SUFFIXES = tuple(s for s, fmt in FORMATS.items() if fmt.writer)


def _split(path):
    """(suffix, gz) of a file name: ``x.log.gz`` -> (".log", True)."""
    name = os.path.basename(path).lower()
    gz = name.endswith(".gz")
    return os.path.splitext(name[:-3] if gz else name)[1], gz


# ---- writing ----

class LogFormat:
    """The format a path to write names: ``suffix`` (".log"), ``gz``, ``spec`` (its FileFormat),
    ``fast`` (written by compiled code from the records: candump, BLF, pcapng), ``candump``
    (candump lines), ``cut_at_frames`` (candump lines, pcapng blocks: a file cut short keeps
    every whole frame before the cut), ``extension`` (".log.gz": what names end with)."""

    def __init__(self, suffix, gz):
        self.suffix = suffix
        self.gz = gz
        self.spec = FORMATS[suffix]
        self.fast = self.spec.writer == COMPILED
        self.candump = suffix == ".log"
        self.cut_at_frames = suffix in (".log", ".pcapng")
        self.extension = suffix + (".gz" if gz else "")


def log_format(path, flag="--record"):
    """The LogFormat of ``path``, or a UsageError naming ``flag`` and the choices."""
    suffix, gz = _split(path)
    choices = (", ".join(WRITE_SUFFIXES) + ", or " + ", ".join(
        s + ".gz" for s in WRITE_SUFFIXES if FORMATS[s].gzip_write))
    if suffix not in WRITE_SUFFIXES:
        raise UsageError(f"{flag} {path}: cannot tell the format from the extension "
                         f"'{suffix + ('.gz' if gz else '') or '(none)'}': use one of {choices}")
    if gz and len(os.path.basename(path).split(".")) != 3:
        raise UsageError(f"{flag} {path}: python-can reads the format of a .gz file from a name "
                         f"with exactly two extensions (like x{suffix}.gz): drop the other dots")
    if gz and not FORMATS[suffix].gzip_write:
        raise UsageError(f"{flag} {path}: python-can cannot write {suffix} through gzip "
                         f"(leave out .gz; {suffix} is compressed or binary already)")
    if suffix == ".mf4":
        try:
            import asammdf  # noqa: F401
        except ImportError:
            # the standalone executable leaves asammdf out: pip cannot add it there
            # into this very Python: a `make run` set-up leaves asammdf out (the mf4 extra), and
            # a bare `pip` may be another Python's
            where = ("which the standalone executable leaves out: use a Python install"
                     if getattr(sys, "frozen", False)
                     else f"install it: {shlex.quote(sys.executable)} -m pip install asammdf")
            raise UsageError(f"{flag} {path}: writing MF4 needs asammdf ({where}), "
                             "or record to .blf/.asc/.log instead") from None
    return LogFormat(suffix, gz)


# ---- reading ----

def read_format(path):
    """(FileFormat, gz) of a log file to read, or a UsageError naming what can be read."""
    suffix, gz = _split(path)
    fmt = FORMATS.get(suffix)
    if fmt is None or not fmt.reader or (gz and not fmt.gzip_read):
        raise UsageError(f"{path}: cannot tell the format from the extension "
                         f"'{suffix + ('.gz' if gz else '') or '(none)'}': python-can reads "
                         f"{' '.join(READ_SUFFIXES)} (and .gz of the text ones and .blf)")
    return fmt, gz


def looks_like_log(text):
    """True when TARGET names a log file rather than a logger (HOST[:PORT])."""
    name = text.lower()
    return (name[:-3] if name.endswith(".gz") else name).endswith(READ_SUFFIXES) or \
        os.path.isfile(text)


def channel_label(channel, fmt):
    """A python-can Message's channel as the file counts it (None stays None)."""
    if channel is None:
        return None
    if isinstance(channel, int) and fmt.channels_from_one:
        return str(channel + 1)
    return str(channel)
