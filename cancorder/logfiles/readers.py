"""Reading log files: the one reader of every log python-can reads, for ``cancorder replay``
and ``dump FILE`` (both through sources/replay.py).

``LogRecords`` turns a file into batches of wire records: candump ``.log``/``.log.gz`` and
``.pcapng``/``.pcapng.gz`` by the compiled parsers (``_fast.logfile``, ``_fast.pcap``: no
python-can Message per frame), every other format
(``.asc .blf .csv .db .trc``, ``.mf4`` with asammdf, gzip of the text ones and of ``.blf``)
through python-can's reader for the extension, with the recorded (absolute) timestamps. Remote
and error frames are counted and skipped (the wire format carries neither). Damage (a line that
is not a frame, a frame missing bytes, a truncated gzip or BLF) raises LogFileError naming the
file and the line or byte, after the batches before it.
"""
import gzip
import os
import re
import struct
import zlib

from .._fast import logfile, pcap, wire
from ..errors import LogFileError, UsageError
from ..report import plural
from .formats import COMPILED, channel_label, read_format

CHUNK = 256 << 10  # bytes of a .log read at once
GZIP_PIECE = 16 << 10  # bytes of a .log.gz decompressed at once (a damaged one: retried bytewise)
MESSAGE_BATCH = 2048  # python-can Messages packed at once


# ---- what a path is ----

def check_log_file(path, missing="no such file"):
    """One UsageError, before anything starts, for a file that cannot be read at all."""
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder, not a log file")
    read_format(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: {missing}")
    try:
        with open(path, "rb") as file:
            head = file.read(1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not head:
        raise UsageError(f"{path}: the file is empty")


# ---- the records of one file ----

#: lines python-can's text readers skip on purpose (headers, comments, events that are no
#: frame: statistics, status, J1939, markers); any other line they skip is damage
_SKIPPED_ON_PURPOSE = {
    ".asc": re.compile(r"(//|date\s|base\s|(no\s+)?internal\s+events\s+logged|begin\s+"
                       r"triggerblock|end\s+triggerblock|\d+\.\d+\s+\S)", re.IGNORECASE),
    ".trc": re.compile(r"(;|\d+\)?\s+\d+(\.\d+)?\s+\S)"),
    ".csv": re.compile(r"timestamp,"),  # its header line
}
#: a line shaped like a frame that the reader skipped all the same (a damaged column)
_FRAME_SHAPED = {
    # time, channel, id, then the direction or (damaged) anything and the d/r column
    ".asc": re.compile(r"\d+\.\d+\s+(\d+\s+[0-9a-f]+x?\s+(rx|tx|\S+\s+[dr])|canfd)\s",
                       re.IGNORECASE),
    # number, time, [type] [bus], then id and direction (2.x) or direction and id (1.x)
    ".trc": re.compile(r"\d+\)?\s+\d+(\.\d+)?\s+(\S+\s+)?(\d+\s+)?([0-9a-f]{3,8}\s+(rx|tx)|"
                       r"(rx|tx)\s+[0-9a-f]{3,8})\s", re.IGNORECASE),
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # NUL bytes, random bytes
_BEGIN_BLOCK = re.compile(r"begin\s+triggerblock", re.IGNORECASE)
_END_BLOCK = re.compile(r"end\s+triggerblock", re.IGNORECASE)
_ENDS_NOTHING = re.compile(r"(//|;|end\s+triggerblock)", re.IGNORECASE)


class _TextLines:
    """A text file handed to python-can's reader that keeps the lines the reader took since
    its last frame. python-can's text readers skip every line they cannot parse, so a
    garbage line, NUL bytes or a damaged column would lose a frame silently: each line the
    reader skipped is checked against what the format holds besides frames (``skipped``),
    and at the end (``finished``) the file must not stop inside a line or an ASC trigger
    block (a cut file). Both return ``(line number, why)`` for damage, else None."""

    def __init__(self, file, suffix):
        self._file = file
        self._purpose = _SKIPPED_ON_PURPOSE.get(suffix)
        self._frame_shaped = _FRAME_SHAPED.get(suffix)
        self.suffix = suffix
        self.line = 0
        self.skipped_lines = 0  # lines taken that held no frame
        self._taken = []  # the lines taken since the last frame
        self._last = ""
        self._open_block = None  # the line of a Begin Triggerblock not ended yet

    def __iter__(self):
        return self

    def __next__(self):
        return self._took(next(self._file))

    def readline(self, *args):
        line = self._file.readline(*args)
        return self._took(line) if line else line

    def _took(self, line):
        self.line += 1
        self._taken.append(line)
        self._last = line
        return line

    def __getattr__(self, name):
        return getattr(self._file, name)

    def skipped(self):
        """The reader made a frame of the line it took last: the lines before it, checked."""
        taken = self._taken
        self._taken = []
        if len(taken) < 2:
            return None
        return self._check(taken[:-1], self.line - len(taken) + 1)

    def finished(self):
        """The reader is done: the lines after its last frame, then the file's end."""
        taken = self._taken
        self._taken = []
        cut = self.cut_short()
        damage = self._check(taken[:-1] if cut and taken else taken,
                             self.line - len(taken) + 1)
        if damage:
            return damage
        if cut:
            return self.line, cut
        if self._open_block is not None:
            return self.line, (f"the file ends early: no End TriggerBlock closes the Begin "
                               f"Triggerblock of line {self._open_block} (a truncated file: "
                               "the frames after it are missing)")
        return None

    def cut_short(self):
        """Why the line taken last is the end of a cut file ("" when it is not): a line
        without its end of line is the file's last, and every writer ends its lines."""
        last = self._last.strip()
        if not last or self._last.endswith(("\n", "\r")) or _ENDS_NOTHING.match(last):
            return ""
        return ("the file ends in the middle of this line (a truncated file: the frames "
                "after it are missing)")

    def _check(self, lines, number):
        for k, line in enumerate(lines):
            self.skipped_lines += 1
            text = line.strip()
            if not text:
                continue
            if _BEGIN_BLOCK.match(text):
                self._open_block = number + k
            elif _END_BLOCK.match(text):
                self._open_block = None
            shown = ascii(text[:32]) + ("..." if len(text) > 32 else "")
            if _CONTROL.search(text):
                return number + k, f"control or NUL bytes where a line should be: {shown}"
            if self._frame_shaped is not None and self._frame_shaped.match(text):
                return number + k, (f"a frame line python-can's {self.suffix} reader cannot "
                                    f"read (it would skip it): {shown}")
            if self._purpose is not None and not self._purpose.match(text):
                return number + k, (f"not a frame, nor anything else a {self.suffix} file "
                                    f"holds: {shown}")
        return None


class LogRecords:
    """The records of one file, in batches (``batches``); damage raises LogFileError naming
    the place, after the batches before it. ``channel``: keep only that channel (its name in a
    .log, its number from 1 in an .asc/.blf); the others are counted in ``other_channel``.
    ``remote``, ``error`` (skipped), ``invalid`` (no frame on the wire), ``frames`` (served),
    ``first_channel`` (the label of the first frame's channel, None before one)."""

    def __init__(self, path, channel=None):
        self.path = path
        self.format, self.gz = read_format(path)
        self.suffix = self.format.suffix
        self.channel = channel
        self.first_channel = None
        self.remote = self.error = self.invalid = self.other_channel = 0
        self.frames = 0
        self._blf_since = None

    def batches(self, by_channel=False):
        """``(channel, records)`` pairs; with ``by_channel`` each batch holds one channel's
        frames and names it (its label, or None where the file has none), otherwise the
        channel is None."""
        try:
            if self.format.reader == COMPILED:
                yield from self._compiled(by_channel)
            else:
                yield from self._python_can(by_channel)
        except LogFileError:
            raise
        except EOFError as exc:
            raise LogFileError(f"{self.path}: the file ends early (truncated after "
                               f"{self.frames:,} frames: {exc})") from None
        except OSError as exc:
            raise LogFileError(f"{self.path}: cannot read it: {exc.strerror or exc}"
                               ) from None

    # ---- candump .log: compiled ----

    def _chunks(self):
        """The file's bytes (gzip decompressed here, so that a damaged or truncated file still
        gives everything before the damage, and the damage's byte offset)."""
        with open(self.path, "rb") as file:
            if not self.gz:
                while True:
                    raw = file.read(CHUNK)
                    if not raw:
                        return
                    yield raw
            unzip = zlib.decompressobj(wbits=31)
            offset = 0  # bytes of the file decompressed so far
            member_open = False
            while True:
                raw = file.read(GZIP_PIECE)
                if not raw:
                    break
                while raw:
                    member_open = True
                    before = unzip.copy()
                    try:
                        out = unzip.decompress(raw)
                    except zlib.error as exc:
                        # zlib gives nothing of a piece it fails on: take the piece again
                        # byte by byte, for the data before the damage and its exact place
                        good, used = _decompress_until_error(before, raw)
                        if good:
                            yield good
                        raise LogFileError(f"{self.path}: byte {offset + used}: damaged gzip "
                                           f"data ({_gzip_why(exc)})") from None
                    if out:
                        yield out
                    if not unzip.eof:
                        offset += len(raw)
                        break
                    offset += len(raw) - len(unzip.unused_data)
                    member_open = False
                    raw = unzip.unused_data  # another gzip member may follow
                    unzip = zlib.decompressobj(wbits=31)
            if member_open:
                raise LogFileError(f"{self.path}: the file ends early at byte {offset} (a "
                                   "truncated gzip)")

    def _compiled(self, by_channel):
        """candump .log and pcapng: the compiled parsers (one interface: feed, finish, the
        counts, runs of channels, the damage)."""
        want = self.channel.encode() if self.channel else None
        pcapng = self.suffix == ".pcapng"
        parser = pcap.PcapngParser(want) if pcapng else logfile.CandumpParser(want)
        names = "utf-8" if pcapng else "ascii"  # pcapng's if_name is UTF-8
        chunks = self._chunks()
        while True:
            chunk = next(chunks, b"")
            records = parser.feed(chunk) if chunk else parser.finish()
            self.remote, self.error = parser.remote, parser.error
            if pcapng:  # packets of other link types, CAN XL frames: no record holds them
                self.invalid = parser.other
            self.other_channel = parser.other_channel
            if self.first_channel is None and parser.first_channel:
                self.first_channel = parser.first_channel.decode(names, "replace")
            if records:
                self.frames += logfile.count_records(records)
                if by_channel:
                    runs = parser.runs
                    for k, (start, name) in enumerate(runs):
                        end = runs[k + 1][0] if k + 1 < len(runs) else len(records)
                        yield name.decode(names, "replace"), records[start:end]
                else:
                    yield None, records
            if parser.error_reason is not None:
                where = (f"byte {parser.error_offset}" if pcapng
                         else f"line {parser.error_line}")
                raise LogFileError(f"{self.path}: {where}: {parser.error_reason}")
            if not chunk:
                return

    # ---- everything else: python-can's readers ----

    def _open_reader(self):
        """(python-can reader, line counter or None)."""
        from can.io.player import MESSAGE_READERS

        cls = MESSAGE_READERS[self.suffix]
        kwargs = {"relative_timestamp": False} if self.suffix == ".asc" else {}
        if self.gz or self.format.text:
            if self.suffix == ".blf":  # binary through gzip: no lines to count
                return cls(gzip.open(self.path, "rb"), **kwargs), None
            opener = gzip.open if self.gz else open
            counter = _TextLines(opener(self.path, "rt", encoding="utf-8", errors="replace"),
                                 self.suffix)
            return cls(counter, **kwargs), counter
        try:
            return cls(self.path, **kwargs), None
        except Exception as exc:  # python-can's readers raise their own kinds (BLFParseError)
            raise LogFileError(f"{self.path}: not a readable {self.suffix} file "
                               f"({_why(exc)})") from None

    def _python_can(self, by_channel):
        reader, counter = self._open_reader()
        packer = wire.Packer()
        wanted = self.channel
        batch = []
        batch_channel = None
        blf = reader.file if self.suffix == ".blf" and not self.gz else None
        try:
            iterator = self._blf_messages(reader, blf) if blf is not None else iter(reader)
            while True:
                try:
                    msg = next(iterator)
                except StopIteration:
                    damage = counter.finished() if counter is not None else None
                    if damage:
                        if batch:
                            yield batch_channel, self._pack(packer, batch, reader, counter)
                        raise LogFileError(f"{self.path}: line {damage[0]}: {damage[1]}")
                    break
                except Exception as exc:
                    if batch:  # the frames before the damage go out first
                        yield batch_channel, self._pack(packer, batch, reader, counter)
                        batch = []
                    if isinstance(exc, EOFError):
                        raise
                    if self.gz and isinstance(exc, (gzip.BadGzipFile, zlib.error)):
                        raise LogFileError(f"{self.path}: near byte {_raw_offset(reader, counter)}"
                                           f": damaged gzip data ({_gzip_why(exc)})") from None
                    cut = counter.cut_short() if counter is not None else ""
                    raise LogFileError(f"{self.path}: {self._where(reader, counter, exc)}: "
                                       f"{cut or _why(exc)}") from None
                damage = counter.skipped() if counter is not None else None
                if damage:  # a line before this frame was lost: the frames before it go out
                    if batch:
                        yield batch_channel, self._pack(packer, batch, reader, counter)
                    raise LogFileError(f"{self.path}: line {damage[0]}: {damage[1]}")
                label = channel_label(msg.channel, self.format)
                if wanted is not None and label != wanted:
                    self.other_channel += 1
                    continue
                damage = _damage(msg) or (counter.cut_short() if counter is not None else "")
                if damage:  # (a frame on a cut line: its last byte may be cut too, "08" to "0")
                    if batch:
                        yield batch_channel, self._pack(packer, batch, reader, counter)
                    raise LogFileError(f"{self.path}: {self._where(reader, counter)}: {damage}")
                if self.first_channel is None and label is not None:
                    self.first_channel = label
                if by_channel and label != batch_channel:
                    if batch:
                        yield batch_channel, self._pack(packer, batch, reader, counter)
                        batch = []
                    batch_channel = label
                batch.append(msg)
                if len(batch) == MESSAGE_BATCH:
                    yield batch_channel, self._pack(packer, batch, reader, counter)
                    batch = []
            if batch:
                yield batch_channel, self._pack(packer, batch, reader, counter)
            self._check_complete(reader)
        finally:
            try:
                reader.stop()
            except Exception:
                pass

    def _blf_messages(self, reader, blf):
        """python-can's BLF reader, and where it was before the object that failed (see
        ``_where``). A container whose compressed data is damaged: python-can loses all of
        it; here the frames of the whole objects before the damage come first, then the
        error."""
        iterator = iter(reader)
        while True:
            self._blf_since = blf.tell()
            try:
                msg = next(iterator)
            except StopIteration:
                return
            except zlib.error as exc:
                yield from _blf_salvage(reader, self.path, self._blf_since, blf.tell(), exc)
                raise
            yield msg

    def _check_complete(self, reader):
        """python-can's BLF reader stops quietly at a cut: the header knows the real size."""
        announced = getattr(reader, "file_size", None) if self.suffix == ".blf" else None
        if self.gz or not announced:
            return
        actual = os.path.getsize(self.path)
        if announced > actual:
            raise LogFileError(f"{self.path}: the file ends early at byte {actual} (its "
                               f"header says {announced})")

    def _pack(self, packer, batch, reader, counter):
        try:
            records = packer.pack(batch)
        except (TypeError, ValueError, OverflowError) as exc:  # a field of the wrong kind
            raise LogFileError(f"{self.path}: {self._where(reader, counter)}: a frame that "
                               f"cannot be one ({_why(exc)})") from None
        self.remote, self.error, self.invalid = packer.remote, packer.error, packer.invalid
        self.frames = packer.packed
        return records

    def _where(self, reader, counter, exc=None):
        if counter is not None:
            return f"line {counter.line}"
        file = getattr(reader, "file", None)
        if self._blf_since is not None:
            try:
                return _blf_place(self.path, self._blf_since, file.tell(), exc)
            except (OSError, ValueError, struct.error):
                pass
        try:
            return f"byte {file.tell()}"
        except Exception:
            return f"after {plural(self.frames, 'frame')}"


def _damage(msg):
    """What makes a Message python-can read no frame ("" when it is one): a field missing (a
    damaged SQLite row), fewer data bytes than its length says (a line cut short)."""
    if not isinstance(msg.timestamp, (int, float)):
        return f"a frame without a timestamp ({msg.timestamp!r})"
    if not isinstance(msg.arbitration_id, int):
        return f"a frame without an id ({msg.arbitration_id!r})"
    if msg.is_remote_frame or msg.is_error_frame:
        return ""
    data = msg.data if msg.data is not None else b""
    dlc = msg.dlc if isinstance(msg.dlc, int) else len(data)
    wanted = dlc if msg.is_fd else min(dlc, 8)  # classic DLC 9..15 means 8 bytes
    if len(data) < wanted:
        return (f"the frame says {wanted} data bytes but holds {len(data)} (a line or record "
                "cut short)")
    return ""


_BLF_OBJECT = struct.Struct("<4sHHLL")  # python-can's OBJ_HEADER_BASE: LOBJ, sizes, type
_BLF_CONTAINER = struct.Struct("<H6xL4x")  # a LOG_CONTAINER's head: method, size
_BLF_ZLIB = 2


def _blf_failed_object(file, since, until):
    """python-can reads a whole container (a compressed run of frames) before it parses any of
    it, so its file position is that container's end: the objects from ``since`` (the position
    before the failing read) to ``until`` are walked to find the one that failed. Returns
    (start, end), or a string naming the place when an object header there is damaged."""
    start = since
    while True:
        file.seek(start)
        head = file.read(_BLF_OBJECT.size)
        if len(head) < _BLF_OBJECT.size:
            return f"byte {start}"
        signature, _, _, size, _ = _BLF_OBJECT.unpack(head)
        if signature != b"LOBJ" or size < _BLF_OBJECT.size:
            return f"byte {start} (an object header)"
        end = start + size + size % 4
        if end >= until:
            return start, end
        start = end


def _blf_zlib_data(file, start, end):
    """The compressed data of the container at ``start``-``end`` (the file is positioned
    after its object header) and where it begins; None for data that is not zlib."""
    method, _ = _BLF_CONTAINER.unpack(file.read(_BLF_CONTAINER.size))
    data_at = start + _BLF_OBJECT.size + _BLF_CONTAINER.size
    if method != _BLF_ZLIB:
        return None, data_at
    return file.read(end - data_at), data_at


def _checksum_failed(exc):
    """zlib found the damage only by the checksum at the end: it may be anywhere before."""
    return "incorrect data check" in str(exc)


def _blf_place(path, since, until, exc):
    """Where in a BLF the reader failed: the container that holds the damage (see
    ``_blf_failed_object``), and a zlib error in it located by decompressing its data
    again."""
    with open(path, "rb") as file:
        found = _blf_failed_object(file, since, until)
        if isinstance(found, str):
            return found
        start, end = found
        place = f"the container at bytes {start}-{end}"
        if not isinstance(exc, zlib.error):
            return place
        data, data_at = _blf_zlib_data(file, start, end)
        if data is None:
            return place
        if _checksum_failed(exc):
            return (f"{place} (its checksum does not match: a byte of its data is damaged, "
                    "and the frames read from it may hold it)")
        _, used = _decompress_until_error(zlib.decompressobj(), data)
        return f"damage noticed at byte {data_at + used}, in {place}"


def _blf_salvage(reader, path, since, until, exc):
    """The Messages of the whole objects a damaged container holds before its damage (its data
    decompressed as far as it goes, parsed by python-can's reader after what the containers
    before left over, up to an object that cannot be one). When zlib found the damage by the
    checksum only, it may be anywhere in the data: the error says so (as for gzip)."""
    parse = getattr(reader, "_parse_container", None)  # python-can's own object parser
    if parse is None:
        return
    try:
        with open(path, "rb") as file:
            found = _blf_failed_object(file, since, until)
            if isinstance(found, str):
                return
            data, _ = _blf_zlib_data(file, *found)
    except (OSError, struct.error):
        return
    if data is None:
        return
    good, _ = _decompress_until_error(zlib.decompressobj(), data)
    try:
        yield from parse(good)
    except Exception:  # the objects after the damage: what came before has been served
        return


def _decompress_until_error(unzip, raw):
    """(the bytes ``unzip`` gives of ``raw`` before it fails, how many bytes of ``raw`` it
    took without failing)."""
    out = []
    for used in range(len(raw)):
        try:
            out.append(unzip.decompress(raw[used:used + 1]))
        except zlib.error:
            return b"".join(out), used
    return b"".join(out), len(raw)


def _raw_offset(reader, counter):
    """How far python-can's reader has read the compressed file (gzip reads ahead a little)."""
    zipped = counter.buffer if counter is not None else reader.file
    try:
        return zipped.fileobj.tell()
    except (AttributeError, OSError, ValueError):
        return "?"


def _gzip_why(exc):
    """zlib's words for a gzip that fails, said plainly where they are cryptic."""
    text = str(exc)
    if any(words in text for words in ("incorrect data check", "incorrect length check",
                                       "CRC check failed", "Incorrect length of data")):
        return ("its checksum does not match the data: some byte of it is damaged, and the "
                "frames read may hold it")
    return text


def _why(exc):
    text = " ".join(str(exc).split())
    if isinstance(exc, zlib.error):  # its class is called "error"
        return f"zlib: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def first_timestamp(path):
    """The Unix time of a log file's first frame (python-can's reader), or None (no frame)."""
    import can

    with can.LogReader(path) as reader:
        for message in reader:
            return message.timestamp
    return None
