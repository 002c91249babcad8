"""socketcand's text protocol: frame lines from wire records, and a strict reader of commands.

socketcand (github.com/linux-can/socketcand, doc/protocol.md and src/state_raw.c) writes, in raw
mode, one element per frame, with no line ends:
    < frame 123 1700000000.000001 0102AABB >      11-bit id: 3 upper-case hex digits
    < frame 1ABCDEF0 1700000000.000001  >         29-bit id: 8 digits (clients tell them apart
                                                  by the number of digits); no data: two spaces
The data is upper-case hex, two digits a byte, no spaces. CAN FD frames are written in the form
of socketcand's CAN FD branch (rawmode-canfd, issue 12 there), ``< fdframe ID SEC.USEC DATA >``,
and only to clients that asked for them (``< rawmode fd >``): a client that did not ask never
sees a line it cannot read, as with socketcand, whose raw socket withholds FD frames then.

Commands from clients are elements ``< word args... >``. The reader is bounded and strict: an
element longer than ``max_length``, a second ``<`` before the ``>``, bytes outside an element,
bad hex, a length that does not match the data, an id out of range: each is an ERROR item the
server answers with ``< error ... >`` (and closes the client after a few).

Plain Python; socketcand.pxd types it and setup.py compiles it. One body for both builds:
``p``/``out`` are C pointers when compiled and the bytearrays themselves in pure Python.
"""
try:
    import cython
except ImportError:  # Cython is a build dependency only; the pure twin runs without it
    from . import _nocython as cython

from .wire import FD_LENGTHS, FLAG_EXT, FLAG_FD, HEX_VALUES, MAX_EXTENDED_ID, MAX_STANDARD_ID

if not cython.compiled:  # compiled, socketcand.pxd cimports them: C calls
    from .wire import hex_number, write_hex, write_hex_digits

MAX_COMMAND = 512  # bytes between '<' and '>': "< sendfd 1FFFFFFF 64 ff ff ... >" is 210
MAX_BUS_NAME = 64

# Items feed() returns: (kind, ...)
ERROR = 0      # (ERROR, message)
OPEN = 1       # (OPEN, bus_name)
RAWMODE = 2    # (RAWMODE, wants_fd)
ECHO = 3       # (ECHO,)
SEND = 4       # (SEND, can_id, flags, data): flags as in the wire records (EXT, FD)
BCMMODE = 5    # (BCMMODE,)

_UPPER_HEX = b"0123456789ABCDEF"
# socketcand commands of its other modes (BCM, control, ISO-TP): known, not served here
_OTHER_MODES = (b"add", b"update", b"delete", b"filter", b"muxfilter", b"subscribe",
                b"unsubscribe", b"controlmode", b"statistics", b"isotpmode", b"isotpconf",
                b"sendpdu")
_LINE_MAX = 48 + 128  # "< fdframe " + 8 id + " " + 20.6 stamp + " " + 128 hex + " >" < 176


class FrameEncoder:
    """Turns bytes of wire records into socketcand frame lines, once per batch.

    ``encode(records)`` returns ``(classic, with_fd)``: the lines for clients that did not ask
    for CAN FD (FD frames left out) and for those that did (FD frames as ``fdframe``). When the
    batch has no FD frame both are the same object. ``frames``/``fd_frames`` count what was
    encoded.
    """

    def __init__(self):
        self.frames = 0
        self.fd_frames = 0
        self._out = bytearray(8192)
        # the CAN facts of wire as typed attributes (compiled, a module constant is a Python
        # object looked up by name at every use)
        self._ext, self._fd = FLAG_EXT, FLAG_FD

    def encode(self, records):
        size = len(records)
        # a record of 14 + n bytes makes a line of at most 48 + 2n characters
        need = (size // 14 + 1) * 48 + 2 * size + _LINE_MAX
        if len(self._out) < need:
            self._out = bytearray(need)
        out_buf = self._out
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(bytes, records))
            out = cython.cast(cython.p_uchar, out_buf)
            hexd = cython.cast(cython.p_uchar, cython.cast(bytes, _UPPER_HEX))
        else:
            p = records
            out = out_buf
            hexd = _UPPER_HEX
        ext = self._ext
        fd = self._fd
        fd_spans = None
        o = 0
        pos = 0
        while pos + 14 <= size:
            micros = 0
            k = pos
            while k < pos + 8:
                micros = (micros << 8) | p[k]
                k += 1
            can_id = 0
            while k < pos + 12:
                can_id = (can_id << 8) | p[k]
                k += 1
            flags = p[pos + 12]
            n = p[pos + 13]
            if pos + 14 + n > size:
                break  # a cut record cannot come from a source; never read past the end
            start = o
            out[o] = 60  # '<'
            out[o + 1] = 32
            o += 2
            if flags & fd:
                out[o] = 102  # 'f'
                out[o + 1] = 100  # 'd'
                o += 2
            out[o] = 102  # "frame "
            out[o + 1] = 114
            out[o + 2] = 97
            out[o + 3] = 109
            out[o + 4] = 101
            out[o + 5] = 32
            o += 6
            o = write_hex_digits(out, o, can_id, 8 if flags & ext else 3, hexd)
            out[o] = 32
            o += 1
            o = _decimal_stamp(out, o, micros)
            out[o] = 32
            o += 1
            o = write_hex(out, o, p, pos + 14, pos + 14 + n, hexd)
            out[o] = 32
            out[o + 1] = 62  # '>'
            o += 2
            if flags & fd:
                self.fd_frames += 1
                if fd_spans is None:
                    fd_spans = []
                fd_spans.append((start, o))
            self.frames += 1
            pos += 14 + n
        with_fd = bytes(out_buf[:o])
        if fd_spans is None:
            return with_fd, with_fd
        return _without(with_fd, fd_spans, o), with_fd


def _decimal_stamp(out, o, micros):
    """Write ``SEC.USEC`` (six digits after the point, as socketcand's %lld.%06lld)."""
    sec = micros // 1000000
    usec = micros - sec * 1000000
    count = 1
    rest = sec // 10
    while rest:
        count += 1
        rest //= 10
    k = o + count - 1
    while True:
        out[k] = 48 + sec % 10
        sec //= 10
        if not sec:
            break
        k -= 1
    o += count
    out[o] = 46  # '.'
    k = o + 6
    while k > o:
        out[k] = 48 + usec % 10
        usec //= 10
        k -= 1
    return o + 7


def _without(lines, spans, end):
    """``lines`` without the byte ranges in ``spans`` (the FD lines), for classic clients."""
    parts = []
    last = 0
    for start, stop in spans:
        if start > last:
            parts.append(lines[last:start])
        last = stop
    if last < end:
        parts.append(lines[last:end])
    return b"".join(parts)


class CommandReader:
    """Feed bytes a client sent; get complete commands back as tuples (see the kinds above).

    Memory is bounded by ``max_length`` whatever the client sends: an element that grows past
    it is reported once and then skipped up to its ``>``, and so are bytes outside elements.
    ``errors`` counts the ERROR items handed out.
    """

    def __init__(self, max_length=MAX_COMMAND):
        self.max_length = max_length
        self.errors = 0
        self.commands = 0
        self._buf = bytearray()
        self._inside = False
        self._skipped = 0  # bytes dropped since the last report (skipping mode)
        self._skipping = False

    def feed(self, data):
        items = []
        size = len(data)
        if cython.compiled:
            p = cython.cast(cython.p_uchar, cython.cast(bytes, data))
        else:
            p = data
        buf = self._buf
        limit = self.max_length
        i = 0
        while i < size:
            c = p[i]
            if self._skipping:
                # after an error: drop everything up to the next '>' (or a fresh '<')
                if c == 62:
                    self._skipping = False
                    self._skipped = 0
                elif c == 60:
                    self._skipping = False
                    self._skipped = 0
                    self._inside = True
                    del buf[:]
                else:
                    self._skipped += 1
                    if self._skipped > limit:
                        self._skipped = 0
                        self._error(items, f"command not closed within {limit} bytes")
                i += 1
                continue
            if not self._inside:
                if c == 60:
                    self._inside = True
                    del buf[:]
                elif not (c == 32 or c == 9 or c == 10 or c == 13):
                    self._error(items, "expected the start of a command")
                    self._skipping = True
                    self._skipped = 1
                i += 1
                continue
            # inside an element: take bytes up to '>' in one slice
            j = i
            while j < size:
                c = p[j]
                if c == 62 or c == 60:
                    break
                j += 1
            if len(buf) + (j - i) > limit:
                # skip from the first byte past the limit on, counting as the skipping does
                i += limit - len(buf)
                self._inside = False
                self._skipping = True
                self._skipped = 0
                del buf[:]
                self._error(items, f"command longer than {limit} bytes")
                continue
            buf += data[i:j]
            if j == size:
                break
            if p[j] == 60:
                del buf[:]
                self._error(items, "command not closed before the next one")
                i = j + 1  # a fresh element starts here
                continue
            self._inside = False
            items.append(self._command(bytes(buf)))
            del buf[:]
            i = j + 1
        return items

    @property
    def pending(self):
        return len(self._buf)

    def _error(self, items, message):
        self.errors += 1
        items.append((ERROR, message))

    def _command(self, text):
        tokens = text.split()
        if not tokens:
            self.errors += 1
            return (ERROR, "empty command")
        word = tokens[0]
        count = len(tokens)
        if word == b"send" or word == b"sendfd":
            item = _parse_send(tokens, word == b"sendfd")
        elif word == b"open":
            item = _parse_open(tokens)
        elif word == b"rawmode":
            if count == 1:
                item = (RAWMODE, False)
            elif count == 2 and tokens[1] == b"fd":
                item = (RAWMODE, True)
            else:
                item = (ERROR, "rawmode takes no argument but 'fd'")
        elif word == b"echo" and count == 1:
            item = (ECHO,)
        elif word == b"bcmmode" and count == 1:
            item = (BCMMODE,)
        elif word in _OTHER_MODES:
            item = (ERROR, f"'{_shown(word)}' is not served here: cancorder speaks raw mode "
                           "only (open, rawmode, send, echo)")
        else:
            item = (ERROR, "unknown command")
        if item[0] == ERROR:
            self.errors += 1
        else:
            self.commands += 1
        return item


def _parse_open(tokens):
    if len(tokens) != 2:
        return (ERROR, "open takes one bus name, e.g. open can0")
    name = tokens[1]
    if len(name) > MAX_BUS_NAME:
        return (ERROR, f"bus name longer than {MAX_BUS_NAME} characters")
    for c in name:
        if c < 33 or c > 126:
            return (ERROR, "bus name with a character that is not printable ASCII")
    return (OPEN, name.decode("ascii"))


def _parse_send(tokens, fd_command):
    """``< send ID LEN DATA.. >`` / ``< sendfd ID LEN DATA.. >`` -> (SEND, id, flags, data).

    ID: 1..8 hex digits; 8 digits, a value above 0x7FF, or bit 31 set (socketcand's
    CAN_EFF_FLAG, as SavvyCAN writes it, also as a negative number: see _negative_hex) make a
    29-bit id. LEN: the number of data bytes, in
    decimal as socketcand reads it or in hex as python-can writes it (they differ only above
    9, where the count of data bytes tells which was meant). DATA: 1 or 2 hex digits a byte (or SavvyCAN's negative form).
    More than 8 bytes, or sendfd, is a CAN FD frame (a CAN FD length: 0..8, 12, ..., 64).
    """
    count = len(tokens)
    what = "sendfd" if fd_command else "send"
    if count < 3:
        return (ERROR, f"{what} needs an id and a length, e.g. {what} 123 2 11 22")
    id_token = tokens[1]
    digits = len(id_token)
    if digits <= 8 and id_token[0] != 45:
        can_id = _hex_token(id_token)
        if can_id < 0:
            return (ERROR, f"bad hex in id '{_shown(id_token)}'")
    else:
        can_id = _negative_hex(id_token, 32)
        if can_id < 0:
            return (ERROR, "id out of range (at most 8 hex digits)")
    flags = 0
    if can_id & 0x80000000:  # socketcand's CAN_EFF_FLAG
        can_id &= 0x7FFFFFFF
        flags = FLAG_EXT
    if can_id > MAX_EXTENDED_ID:
        return (ERROR, f"id {can_id:X} out of range (remote and error frames cannot be sent)")
    if digits == 8 or can_id > MAX_STANDARD_ID:
        flags = FLAG_EXT
    length_token = tokens[2]
    if len(length_token) > 2:
        return (ERROR, f"bad length '{_shown(length_token)}'")
    length_hex = _hex_token(length_token)
    if length_hex < 0:
        return (ERROR, f"bad length '{_shown(length_token)}'")
    length_dec = length_hex if length_hex < 10 else -1
    if length_token.isdigit():
        length_dec = int(length_token)
    n = count - 3
    if n > 64:
        return (ERROR, "more than 64 data bytes")
    if n != length_dec and n != length_hex:
        return (ERROR, f"length {_shown(length_token)} does not match the {n} data bytes")
    data = bytearray(n)
    k = 0
    while k < n:
        token = tokens[3 + k]
        if len(token) <= 2 and token[0] != 45:
            value = _hex_token(token)
        else:
            value = _negative_hex(token, 8)
        if value < 0:
            return (ERROR, f"bad hex byte '{_shown(token)}'")
        data[k] = value
        k += 1
    if fd_command or n > 8:
        if n not in FD_LENGTHS:
            return (ERROR, f"{n} data bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, "
                           "48, 64)")
        flags |= FLAG_FD
    return (SEND, can_id, flags, bytes(data))


def _hex_token(token):
    """The hex digits of ``token`` as a number, -1 if it is empty or one is not a hex digit."""
    size = len(token)
    if size == 0:
        return -1
    if cython.compiled:
        return hex_number(cython.cast(cython.p_uchar, token), 0, size,
                          cython.cast(cython.p_uchar, cython.cast(bytes, HEX_VALUES)))
    return hex_number(token, 0, size, HEX_VALUES)


def _negative_hex(token, bits):
    """A ``bits``-wide value written as the hex of a negative number, as SavvyCAN writes an id
    with bit 31 set and a data byte of 0x80 or more (Qt's ``QString::number(int, 16)`` of a
    signed value: ``-6725ef0f``, or 16 digits sign-extended, ``ffffffff98da10f1``; socketcand's
    sscanf reads both). The value, with its top bit set, or -1 for anything else."""
    size = len(token)
    top = 1  # shifted as a long long when compiled (a C int would overflow)
    top <<= bits - 1
    high = 1
    high <<= 64 - bits
    width = bits // 4
    if token[0] == 45:  # '-'
        if size < 2 or size - 1 > width:
            return -1
        value = _hex_token(token[1:])
        if value <= 0 or value > top:
            return -1
        return (top << 1) - value
    if size != 16:
        return -1
    if _hex_token(token[:16 - width]) != high - 1:
        return -1
    value = _hex_token(token[16 - width:])
    if value < top:
        return -1
    return value


def _shown(token):
    """A token as it may appear inside ``< error ... >``: printable, short, no '<' or '>'."""
    text = token[:24].decode("ascii", "replace")
    return "".join(ch if " " < ch < "~" and ch not in "<>" else "?" for ch in text)
