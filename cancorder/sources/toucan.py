"""Rusoku TouCAN adapters through the CAN API V3 library (libUVCANTOU from MacCAN-TouCAN), with ctypes.

``ToucanLibrary`` finds and loads the library and declares every function it exports;
``ToucanSource`` opens one TouCAN channel, reads frames in batches and packs them into records.

Frames are packed straight from the ``can_message_t`` the library fills (one ``struct`` unpack
and one ``wire.pack_frame`` per frame): reading the ctypes bit-field attributes is 1.3 to 1.4
times slower, building a python-can Message per frame for ``wire.Packer`` 1.4 to 2.8 times
(bench/toucan.py).
"""
import ctypes
import ctypes.util
import logging
import os
import struct
import sys
import threading
import time

from .._fast import wire
from ..errors import LayoutError, SourceInitError, SourceLostError, TransmitError, \
    UsageError
from .base import MAX_BATCH, Source, SourceCounters

log = logging.getLogger("cancorder.source")

LIBRARY_ENV = "CANCORDER_TOUCAN_LIBRARY"
DEFAULT_LIBRARY = "/usr/local/lib/libUVCANTOU.dylib"
LOADER_NAME = "UVCANTOU"  # what ctypes.util.find_library looks for (libUVCANTOU.dylib / .so)
INSTALL_HINT = ("install MacCAN-TouCAN (https://github.com/mac-can/MacCAN-TouCAN: `make all` "
                f"then `make install` puts libUVCANTOU.dylib in /usr/local/lib), or give its "
                f"path with --library or {LIBRARY_ENV}")
LINUX_HINT = ("; on Linux TouCAN needs no library: its SocketCAN kernel driver makes it a CAN "
              "interface, so serve it with `cancorder serve -i socketcan -c can0`")

# ---- the CAN API V3 definitions (can_defs.h / can_api.h) ----

# operation mode flags for can_init
CANMODE_MON = 0x01   # monitor (listen-only): never acknowledge or send
CANMODE_ERR = 0x02   # deliver status frames
CANMODE_NRTR = 0x04  # suppress remote frames
CANMODE_NXTD = 0x08  # suppress 29-bit frames

# bits of the can_message_t flag byte (bit-fields from the lowest bit: xtd rtr fdf brs esi - - sts)
TOUCAN_XTD, TOUCAN_RTR, TOUCAN_FDF, TOUCAN_BRS, TOUCAN_ESI, TOUCAN_STS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x80

# can_test results
CANBRD_NOT_TESTABLE, CANBRD_NOT_PRESENT, CANBRD_PRESENT, CANBRD_OCCUPIED = -2, -1, 0, 1

CANREAD_INFINITE = 65535  # a can_read timeout this long never ends: ours stay below it

RETURN_CODES = {
    0: ("CANERR_NOERROR", "no error"),
    -1: ("CANERR_BOFF", "the controller is bus off"),
    -2: ("CANERR_EWRN", "error warning: an error counter reached 96"),
    -3: ("CANERR_BERR", "bus error"),
    -8: ("CANERR_ONLINE", "the controller is already started"),
    -9: ("CANERR_OFFLINE", "the controller is not started (stopped, or bus off)"),
    -10: ("CANERR_MSG_LST", "frames were lost"),
    -20: ("CANERR_TX_BUSY", "the transmitter is busy"),
    -30: ("CANERR_RX_EMPTY", "no frame within the timeout"),
    -40: ("CANERR_QUE_OVR", "the receive queue overran: frames were lost"),
    -50: ("CANERR_TIMEOUT", "timed out"),
    -90: ("CANERR_RESOURCE", "the library ran out of resources"),
    -91: ("CANERR_BAUDRATE", "bit rate not possible"),
    -92: ("CANERR_HANDLE", "invalid handle (the adapter is gone, or was never opened)"),
    -93: ("CANERR_ILLPARA", "illegal parameter"),
    -94: ("CANERR_NULLPTR", "null pointer"),
    -95: ("CANERR_NOTINIT", "not initialized"),
    -96: ("CANERR_YETINIT", "already initialized"),
    -97: ("CANERR_LIBRARY", "the library failed to load or initialize"),
    -98: ("CANERR_NOTSUPP", "not supported"),
    -99: ("CANERR_FATAL", "fatal error in the library or the adapter"),
    -100: ("CANERR_VENDOR", "vendor-specific error"),
}
RC_RX_EMPTY = -30
RC_TIMEOUT = -50
#: what a call's error means for that call (the library reuses codes: NOTINIT from can_init is
#: its "no such channel")
CALL_MEANINGS = {
    ("can_test", -95): "no such channel",
    ("can_init", -95): "no such channel",
    ("can_test", -92): "no such channel",
    ("can_init", -92): "no adapter at this index",
    ("can_init", -96): "the channel is already open (another program, or another cancorder, "
                       "is using this adapter)",
    ("can_test", -93): "this adapter does not support the operation mode",
    ("can_init", -93): "this adapter does not support the operation mode",
    ("can_start", -91): "the adapter refused the bit rate",
    ("can_read", -9): "the controller stopped (bus off, or the adapter was reset)",
}
#: can_read codes that report the bus, not a failure of the adapter
READ_BUS_CODES = {-1: "bus off", -2: "error warning", -3: "bus error", -10: "overrun",
                  -40: "overrun"}

# TouCAN status frames: data[0] holds one of these state codes (CANAL status codes)
STATUS_OK, STATUS_OVERRUN, STATUS_BUSLIGHT, STATUS_BUSHEAVY, STATUS_BUSOFF = 0, 1, 2, 3, 4
BUS_STATES = {
    STATUS_OK: ("error active", "the bus is healthy again"),
    STATUS_BUSLIGHT: ("error warning", "an error counter reached 96"),
    STATUS_BUSHEAVY: ("error passive", "an error counter reached 128"),
    STATUS_BUSOFF: ("bus off", "the controller left the bus after too many errors"),
}
BUS_ERRORS = {0x20: "stuff", 0x21: "form", 0x23: "acknowledge", 0x24: "bit 1", 0x25: "bit 0",
              0x27: "CRC"}
#: bit rate -> the library's preset index (CiA indexes); TouCAN has no 800 kbit/s setting
BITRATE_PRESETS = {1000000: 0, 800000: -1, 500000: -2, 250000: -3, 125000: -4, 100000: -5,
                   50000: -6, 20000: -7, 10000: -8}
UNSUPPORTED_BITRATES = {800000}
TOUCAN_BITRATES = tuple(b for b in BITRATE_PRESETS if b not in UNSUPPORTED_BITRATES)


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class CanMessage(ctypes.Structure):
    """can_message_t."""

    _fields_ = [("id", ctypes.c_uint32),
                ("xtd", ctypes.c_uint8, 1), ("rtr", ctypes.c_uint8, 1),
                ("fdf", ctypes.c_uint8, 1), ("brs", ctypes.c_uint8, 1),
                ("esi", ctypes.c_uint8, 1), ("reserved", ctypes.c_uint8, 2),
                ("sts", ctypes.c_uint8, 1),
                ("dlc", ctypes.c_uint8),
                ("data", ctypes.c_uint8 * 64),
                ("timestamp", Timespec)]


class _NominalTiming(ctypes.Structure):
    _fields_ = [("brp", ctypes.c_uint16), ("tseg1", ctypes.c_uint16),
                ("tseg2", ctypes.c_uint16), ("sjw", ctypes.c_uint16), ("sam", ctypes.c_uint8)]


class _DataTiming(ctypes.Structure):
    _fields_ = [("brp", ctypes.c_uint16), ("tseg1", ctypes.c_uint16),
                ("tseg2", ctypes.c_uint16), ("sjw", ctypes.c_uint16)]


class _BitTiming(ctypes.Structure):
    _fields_ = [("frequency", ctypes.c_int32), ("nominal", _NominalTiming),
                ("data", _DataTiming)]


class CanBitrate(ctypes.Union):
    """can_bitrate_t: a preset ``index`` (<= 0) or a bit-timing record ``btr``."""

    _fields_ = [("index", ctypes.c_int32), ("btr", _BitTiming)]


class _PhaseSpeed(ctypes.Structure):
    _fields_ = [("enabled", ctypes.c_bool), ("speed", ctypes.c_float),
                ("samplepoint", ctypes.c_float)]


class CanSpeed(ctypes.Structure):
    """can_speed_t: the bus speed the bit timing gives."""

    _fields_ = [("nominal", _PhaseSpeed), ("data", _PhaseSpeed)]


#: id, flag byte, dlc, data, tv_sec, tv_nsec: the whole can_message_t in one unpack
_MESSAGE = struct.Struct("<IBB64s2xqq")


def _check_layout():
    """The sizes and offsets libUVCANTOU uses (64-bit macOS); a mismatch would garble frames."""
    expected = [("sizeof(can_message_t)", ctypes.sizeof(CanMessage), 88),
                ("offsetof(can_message_t, dlc)", CanMessage.dlc.offset, 5),
                ("offsetof(can_message_t, data)", CanMessage.data.offset, 6),
                ("offsetof(can_message_t, timestamp)", CanMessage.timestamp.offset, 72),
                ("sizeof(can_bitrate_t)", ctypes.sizeof(CanBitrate), 24),
                ("sizeof(can_speed_t)", ctypes.sizeof(CanSpeed), 24),
                ("unpacked can_message_t", _MESSAGE.size, 88)]
    probe = CanMessage()
    for field, mask in (("xtd", TOUCAN_XTD), ("rtr", TOUCAN_RTR), ("fdf", TOUCAN_FDF),
                        ("brs", TOUCAN_BRS), ("esi", TOUCAN_ESI), ("sts", TOUCAN_STS)):
        ctypes.memset(ctypes.byref(probe), 0, ctypes.sizeof(probe))
        setattr(probe, field, 1)
        expected.append((f"bit of can_message_t.{field}", bytes(probe)[4], mask))
    wrong = [f"{what} is {got}, not {want}" for what, got, want in expected if got != want]
    if wrong:
        raise LayoutError("the CAN API V3 structures do not have libUVCANTOU's layout on this "
                          "platform (64-bit macOS is what the library supports): "
                          + "; ".join(wrong))


_check_layout()

_P = ctypes.POINTER
#: every function the library exports: name -> (restype, argtypes)
SIGNATURES = {
    "can_test": (ctypes.c_int, [ctypes.c_int32, ctypes.c_uint8, ctypes.c_void_p,
                                _P(ctypes.c_int)]),
    "can_init": (ctypes.c_int, [ctypes.c_int32, ctypes.c_uint8, ctypes.c_void_p]),
    "can_exit": (ctypes.c_int, [ctypes.c_int]),
    "can_kill": (ctypes.c_int, [ctypes.c_int]),
    "can_start": (ctypes.c_int, [ctypes.c_int, _P(CanBitrate)]),
    "can_reset": (ctypes.c_int, [ctypes.c_int]),
    "can_write": (ctypes.c_int, [ctypes.c_int, _P(CanMessage), ctypes.c_uint16]),
    "can_read": (ctypes.c_int, [ctypes.c_int, _P(CanMessage), ctypes.c_uint16]),
    "can_status": (ctypes.c_int, [ctypes.c_int, _P(ctypes.c_uint8)]),
    "can_busload": (ctypes.c_int, [ctypes.c_int, _P(ctypes.c_uint8), _P(ctypes.c_uint8)]),
    "can_bitrate": (ctypes.c_int, [ctypes.c_int, _P(CanBitrate), _P(CanSpeed)]),
    "can_property": (ctypes.c_int, [ctypes.c_int, ctypes.c_uint16, ctypes.c_void_p,
                                    ctypes.c_uint32]),
    "can_hardware": (ctypes.c_char_p, [ctypes.c_int]),
    "can_firmware": (ctypes.c_char_p, [ctypes.c_int]),
    "can_version": (ctypes.c_char_p, []),
}
#: what cancorder cannot work without; the others are used when present
REQUIRED = ("can_test", "can_init", "can_exit", "can_kill", "can_start", "can_reset", "can_read")
#: older MacCAN-TouCAN releases export can_firmware under this name
ALIASES = {"can_firmware": "can_software"}


def return_code_text(rc, call=None):
    """``CANERR_NOTINIT (-95): no such channel``: the name of a return code and what it means."""
    if rc in RETURN_CODES:
        name, meaning = RETURN_CODES[rc]
    elif -599 <= rc <= -500:
        name, meaning = "TouCAN error", "an error reported by the TouCAN driver"
    elif rc < -100:
        name, meaning = "CANERR_VENDOR", "vendor-specific error"
    else:
        name, meaning = "unknown return code", "not a CAN API V3 code"
    return f"{name} ({rc}): {CALL_MEANINGS.get((call, rc), meaning)}"


def bitrate_index(bitrate):
    """The library's preset index for ``bitrate`` (bit/s); UsageError for what TouCAN lacks."""
    choices = ", ".join(str(b) for b in TOUCAN_BITRATES)
    if bitrate in UNSUPPORTED_BITRATES:
        raise UsageError(f"--bitrate {bitrate} is not supported by TouCAN (the adapter has no "
                         f"{bitrate // 1000} kbit/s setting): use one of {choices}")
    if bitrate not in BITRATE_PRESETS:
        raise UsageError(f"--bitrate {bitrate} is not a TouCAN bit rate: use one of {choices}")
    return BITRATE_PRESETS[bitrate]


class ToucanLibrary:
    """The loaded CAN API V3 library with every function's argtypes/restype declared.

    Functions are attributes (``lib.can_read``); an optional function the library lacks is None.
    """

    def __init__(self, path):
        self.path = path
        try:
            self.dll = ctypes.CDLL(path)
        except OSError as exc:
            raise SourceInitError(f"cannot load the TouCAN library {path}: {exc}") from exc
        missing = []
        for name, (restype, argtypes) in SIGNATURES.items():
            function = None
            for symbol in (name, ALIASES.get(name)):
                if symbol is not None and hasattr(self.dll, symbol):
                    function = getattr(self.dll, symbol)
                    function.restype = restype
                    function.argtypes = argtypes
                    break
            if function is None and name in REQUIRED:
                missing.append(name)
            setattr(self, name, function)
        if missing:
            raise SourceInitError(f"{path} is not a CAN API V3 library (it lacks "
                                  f"{', '.join(missing)}): point --library at libUVCANTOU")

    @classmethod
    def locate(cls, path=None):
        """Load ``path``, else $CANCORDER_TOUCAN_LIBRARY, else the default, else the loader's pick.

        A path the user gave (flag or environment) is used or reported, never skipped.
        """
        if path:
            return cls._load_given(path, "--library")
        if os.environ.get(LIBRARY_ENV):
            return cls._load_given(os.environ[LIBRARY_ENV], LIBRARY_ENV)
        if os.path.exists(DEFAULT_LIBRARY):
            return cls(DEFAULT_LIBRARY)
        found = ctypes.util.find_library(LOADER_NAME)
        if found:
            return cls(found)
        raise SourceInitError(
            f"the TouCAN library libUVCANTOU was not found (tried {DEFAULT_LIBRARY}, and the "
            f"loader's search for lib{LOADER_NAME}; {LIBRARY_ENV} is not set): {INSTALL_HINT}"
            + (LINUX_HINT if sys.platform.startswith("linux") else ""))

    @classmethod
    def _load_given(cls, path, origin):
        # a bare name (no folder) is left to the loader's search
        if os.path.dirname(path) and not os.path.exists(path):
            raise SourceInitError(
                f"the TouCAN library {path} (from {origin}) does not exist: {INSTALL_HINT}"
                + (LINUX_HINT if sys.platform.startswith("linux") else ""))
        return cls(path)

    def text(self, function, *args):
        """A string from can_version/can_hardware/can_firmware, or None."""
        if function is None:
            return None
        value = function(*args)
        return value.decode("utf-8", "replace") if value else None


def _monotonic_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _wire_flags_table():
    """can_message_t flag byte -> record flags (EXT, FD, BRS, ESI)."""
    table = []
    for bits in range(256):
        flags = wire.FLAG_EXT if bits & TOUCAN_XTD else 0
        if bits & TOUCAN_FDF:
            flags |= wire.FLAG_FD
            if bits & TOUCAN_BRS:
                flags |= wire.FLAG_BRS
            if bits & TOUCAN_ESI:
                flags |= wire.FLAG_ESI
        table.append(flags)
    return tuple(table)


WIRE_FLAGS = _wire_flags_table()
#: payload length by DLC code: classic frames carry at most 8 bytes, FD frames 0..64
CLASSIC_LENGTHS = tuple(min(dlc, 8) for dlc in range(16))
FD_LENGTHS = wire.FD_LENGTHS
MAX_ID = (wire.MAX_STANDARD_ID, wire.MAX_EXTENDED_ID)  # by the xtd bit


class ToucanSource(Source):
    """Frames from one TouCAN channel through the CAN API V3 library."""

    can_transmit = True
    TRANSMIT_TIMEOUT_MS = 100

    def __init__(self, channel=0, bitrate=500000, library=None, listen_only=False,
                 error_frames=False, record_filter=None):
        super().__init__(record_filter)
        self.channel = channel
        self.bitrate = bitrate
        self.index = bitrate_index(bitrate)
        self.mode = (CANMODE_MON if listen_only else 0) | (CANMODE_ERR if error_frames else 0)
        self.lib = ToucanLibrary.locate(library)
        self.frames = self.remote = self.status_frames = self.invalid = 0
        self.overruns = 0
        self.bus_errors = 0
        self.bus_state = "error active"
        self._handle = None
        self._lock = threading.Lock()  # a read and a close never run into each other
        self._message = CanMessage()
        self._message_ref = ctypes.byref(self._message)
        self._pending_loss = None
        self._offset_us = 0
        self._offset_expires = 0.0

    @property
    def description(self):
        return f"TouCAN channel {self.channel}"

    def txt(self):
        return {"interface": "toucan", "channel": str(self.channel), "bitrate": str(self.bitrate)}

    # ---- open / close ----

    def open(self):
        lib = self.lib
        channel = self.channel
        state = ctypes.c_int(CANBRD_NOT_TESTABLE)
        rc = lib.can_test(channel, self.mode, None, ctypes.byref(state))
        if rc != 0:
            raise SourceInitError(self._failure("can_test", rc))
        if state.value == CANBRD_NOT_PRESENT:
            raise SourceInitError(
                f"{self.description}: no TouCAN adapter at index {channel} (CANBRD_NOT_PRESENT):"
                " plug it in, or choose another with -c (the first adapter is 0)")
        if state.value == CANBRD_OCCUPIED:
            raise SourceInitError(
                f"{self.description}: the adapter is in use by another program "
                "(CANBRD_OCCUPIED): close that program, or choose another adapter with -c")
        handle = lib.can_init(channel, self.mode, None)
        if handle < 0:
            raise SourceInitError(self._failure("can_init", handle))
        bitrate = CanBitrate()
        bitrate.index = self.index
        rc = lib.can_start(handle, ctypes.byref(bitrate))
        if rc != 0:
            lib.can_exit(handle)
            raise SourceInitError(self._failure("can_start", rc))
        with self._lock:
            self._handle = handle
            self._pending_loss = None
            self._refresh_clock_offset(time.monotonic())
        self._log("info", f"{self.description}: {self._adapter_summary(handle)}")

    def close(self):
        """can_kill wakes a read blocked in another thread; then can_reset and can_exit, once."""
        handle = self._handle
        if handle is None:
            return
        self.lib.can_kill(handle)
        with self._lock:
            if self._handle is None:  # closed by another thread meanwhile
                return
            self._handle = None
            self.lib.can_reset(handle)
            self.lib.can_exit(handle)

    def send(self, can_id, flags, data):
        """can_write, outside the read lock: the library serves a reader and a writer at once."""
        handle = self._handle
        if handle is None:
            raise TransmitError(f"{self.description} is not open")
        message = CanMessage()
        message.id = can_id
        message.xtd = 1 if flags & wire.FLAG_EXT else 0
        message.fdf = 1 if flags & wire.FLAG_FD else 0
        message.brs = 1 if flags & wire.FLAG_BRS else 0
        n = len(data)
        message.dlc = wire.FD_LENGTHS.index(n) if flags & wire.FLAG_FD else n
        ctypes.memmove(message.data, bytes(data), n)
        rc = self.lib.can_write(handle, ctypes.byref(message), self.TRANSMIT_TIMEOUT_MS)
        if rc != 0:
            raise TransmitError(f"{self.description}: can_write returned "
                                f"{return_code_text(rc)}")

    # ---- reading ----

    def _read(self, timeout):
        if self._pending_loss is not None:  # a failure after the frames of the last batch
            loss, self._pending_loss = self._pending_loss, None
            raise loss
        wait_ms = min(max(int(timeout * 1000), 0), CANREAD_INFINITE - 1)
        can_read = self.lib.can_read
        message = self._message
        message_ref = self._message_ref
        unpack = _MESSAGE.unpack_from
        pack_frame = wire.pack_frame
        wire_flags = WIRE_FLAGS
        with self._lock:
            handle = self._handle
            if handle is None:
                raise SourceLostError(f"{self.description} is not open")
            rc = can_read(handle, message_ref, wait_ms)
            if rc == RC_RX_EMPTY:
                return b""
            now = time.monotonic()
            if now >= self._offset_expires:
                self._refresh_clock_offset(now)
            offset_us = self._offset_us
            records = []
            while True:
                if rc == 0:
                    can_id, bits, dlc, data, sec, nsec = unpack(message)
                    if bits & (TOUCAN_RTR | TOUCAN_STS) or can_id > MAX_ID[bits & TOUCAN_XTD]:
                        self._not_a_data_frame(bits, data)
                    else:
                        n = (FD_LENGTHS if bits & TOUCAN_FDF else CLASSIC_LENGTHS)[dlc & 0x0F]
                        micros = sec * 1000000 + nsec // 1000 + offset_us
                        try:
                            records.append(pack_frame(micros, can_id, wire_flags[bits],
                                                      data[:n]))
                        except OverflowError:  # a timestamp no record can hold
                            self.invalid += 1
                elif rc == RC_RX_EMPTY or rc == RC_TIMEOUT:
                    break
                elif rc in READ_BUS_CODES:
                    self._bus_event(READ_BUS_CODES[rc], f"can_read returned "
                                    f"{return_code_text(rc)}")
                else:
                    loss = SourceLostError(self._failure("can_read", rc))
                    if not records:
                        raise loss
                    self._pending_loss = loss  # hand over what came before it first
                    break
                if len(records) >= MAX_BATCH:
                    break
                rc = can_read(handle, message_ref, 0)
        self.frames += len(records)
        return b"".join(records)

    def _refresh_clock_offset(self, now):
        """The library's timestamps are the host's monotonic clock: this maps them to Unix time.

        Taken again every second, so a stepped or slewed wall clock is followed.
        """
        self._offset_us = (time.time_ns() - _monotonic_ns()) // 1000
        self._offset_expires = now + 1.0

    def _not_a_data_frame(self, bits, data):
        if bits & TOUCAN_STS:
            self.status_frames += 1
            self._status_frame(data[0])
        elif bits & TOUCAN_RTR:
            self.remote += 1
        else:
            self.invalid += 1

    def _status_frame(self, code):
        if code in BUS_STATES:
            state, why = BUS_STATES[code]
            self._bus_event(state, why)
        elif code == STATUS_OVERRUN:
            self._bus_event("overrun", "status frame")
        elif code in BUS_ERRORS:
            self._bus_event("bus error", f"{BUS_ERRORS[code]} error")
        else:
            self._log_repeated(("status", code), "warning",
                               f"{self.description}: unknown status code 0x{code:02x}")

    def _bus_event(self, event, why):
        if event == "overrun":
            self.overruns += 1
            self._log_repeated("overrun", "warning",
                               f"{self.description}: receive overrun: the adapter lost frames "
                               f"({self.overruns} overruns so far)")
        elif event == "bus error":
            self.bus_errors += 1
            self._log_repeated("bus error", "warning",
                               f"{self.description}: bus error ({why}; {self.bus_errors} so far)")
        elif event != self.bus_state:
            self.bus_state = event
            self._log("info" if event == "error active" else "warning",
                      f"{self.description}: bus state {event} ({why})")

    # ---- reporting ----

    def counters(self):
        filtered = self.record_filter.filtered if self.record_filter is not None else 0
        return SourceCounters(frames=self.frames - filtered, remote=self.remote,
                              error=self.status_frames, invalid=self.invalid, filtered=filtered,
                              overruns=self.overruns, bus_errors=self.bus_errors)

    def _failure(self, call, rc):
        return f"{self.description}: {return_code_text(rc, call)}{self._failure_hint(call, rc)}"

    def _failure_hint(self, call, rc):
        if call in ("can_test", "can_init") and rc in (-95, -92):
            return (" (TouCAN indexes count the adapters plugged in, from 0: check the cable, "
                    "or choose another with -c)")
        if rc == -93 and call in ("can_test", "can_init"):
            return f" (mode 0x{self.mode:02x}: try without --listen-only / --error-frames)"
        if call == "can_start" and rc == -91:
            return f" (--bitrate {self.bitrate})"
        if call == "can_read":
            return " (unplugged?)"
        return ""

    def _adapter_summary(self, handle):
        lib = self.lib
        parts = [p for p in (lib.text(lib.can_hardware, handle), lib.text(lib.can_firmware, handle))
                 if p]
        speed = CanSpeed()
        if lib.can_bitrate is not None and \
                lib.can_bitrate(handle, None, ctypes.byref(speed)) == 0 and speed.nominal.speed:
            parts.append(f"{speed.nominal.speed / 1000:g} kbit/s, sample point "
                         f"{speed.nominal.samplepoint * 100:.1f}%")
        else:
            parts.append(f"{self.bitrate / 1000:g} kbit/s")
        if self.mode & CANMODE_MON:
            parts.append("listen-only")
        if self.mode & CANMODE_ERR:
            parts.append("status frames on")
        version = lib.text(lib.can_version)
        if version:
            parts.append(f"library: {version}")
        return ", ".join(parts)

    def _log(self, level, text):
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text)

    def _log_repeated(self, key, level, text):
        """The first of a kind, then at most once per interval (the shared rate limit)."""
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text,
                extra={"rate_key": ("toucan", self.channel, key)})
