"""Frames from any python-can interface (socketcan, gs_usb, slcan, pcan, kvaser, vector...)."""
import errno
import os
import sys
import time

from ..errors import SourceInitError, SourceLostError, TransmitError, UsageError
from .base import MAX_BATCH, Source

#: how to ask each backend for listen-only (python-can has no common flag for it)
LISTEN_ONLY_OPTIONS = {
    "slcan": {"listen_only": True},
    "vector": {"listen_only": True},
    "nixnet": {"listen_only": True},
    "kvaser": {"driver_mode": False},  # python-can's kvaser: False is DRIVER_MODE_SILENT
}
DEFAULT_CHANNELS = {"socketcan": "can0", "gs_usb": 0, "virtual": "vcan0"}
#: the vendor library each backend loads, for the message when it is missing
VENDOR_LIBRARIES = {
    "pcan": "PEAK's PCAN-Basic (libpcanbasic, PCANBasic.dll) from peak-system.com",
    "kvaser": "Kvaser CANlib (the Kvaser drivers; linuxcan on Linux)",
    "ixxat": "the IXXAT VCI driver",
    "vector": "Vector's XL Driver Library (Windows)",
    "neovi": "Intrepid's python-ics and its driver",
    "systec": "SYS TEC's USB-CANmodul driver (Windows)",
    "nican": "NI-CAN (Windows)",
    "nixnet": "NI-XNET",
}
#: a frame stamped within this many seconds of the wall clock is taken as Unix time
UNIX_TIME_TOLERANCE = 86400.0


def default_interface():
    return "socketcan" if sys.platform.startswith("linux") else "gs_usb"


def channel_value(channel):
    """python-can wants device indexes (gs_usb, kvaser, vector) as int, names as str."""
    if isinstance(channel, str) and channel.isdigit():
        return int(channel)
    return channel


class PythonCanSource(Source):
    """Reads a python-can Bus; batches what the driver already holds; maps timestamps."""

    can_transmit = True

    def __init__(self, interface, channel=None, bitrate=500000, fd=False, data_bitrate=None,
                 record_filter=None, listen_only=False, timestamps="adapter", options=None):
        super().__init__(record_filter)
        self.interface = interface
        self.channel = channel_value(channel) if channel is not None \
            else DEFAULT_CHANNELS.get(interface)
        self.bitrate = bitrate
        self.timestamps = timestamps
        self.bus = None
        self._clock_checked = False
        # --opt values arrive as text; python-can's own rules turn them into its kwargs
        from can.util import cast_from_string

        kwargs = {key: cast_from_string(value) for key, value in (options or {}).items()}
        if bitrate and not {"btr", "timing"} & set(kwargs):  # python-can: mutually exclusive
            kwargs.setdefault("bitrate", bitrate)
        if fd:
            kwargs.setdefault("fd", True)
        self.fd = bool(kwargs.get("fd"))  # --fd, or --opt fd=true
        if data_bitrate:
            kwargs.setdefault("data_bitrate", data_bitrate)
        if listen_only:
            if interface not in LISTEN_ONLY_OPTIONS:
                hint = (" (for socketcan set it on the interface: ip link set can0 type can "
                        "bitrate 500000 listen-only on)") if interface == "socketcan" else ""
                raise UsageError(f"--listen-only: python-can's {interface} interface cannot "
                                 f"be put in listen-only mode{hint}")
            for key, value in LISTEN_ONLY_OPTIONS[interface].items():
                kwargs.setdefault(key, value)
        if interface == "slcan":
            if self.channel is None:
                raise UsageError("the slcan interface needs -c/--channel: a serial port "
                                 "(/dev/ttyACM0, COM8, /dev/ttyUSB0@115200) or a pyserial URL")
            if "://" in str(self.channel):
                # python-can sleeps 2 s after opening so USB adapters can reset; a network
                # URL has nothing to reset.
                kwargs.setdefault("sleep_after_open", 0)
        self.kwargs = kwargs

    @property
    def description(self):
        return f"{self.interface} channel {self.channel}"

    def txt(self):
        return {"interface": self.interface, "channel": str(self.channel),
                "bitrate": str(self.bitrate or "")}

    def open(self):
        import can

        self._clock_checked = False
        try:
            self.bus = can.Bus(interface=self.interface, channel=self.channel, **self.kwargs)
        except Exception as exc:  # every backend raises its own: explain them all
            raise explain_open_error(exc, self.interface, self.channel, self.bitrate) from exc

    def _read(self, timeout):
        bus = self.bus
        try:
            msg = bus.recv(timeout)
            if msg is None:
                return b""
            batch = [msg]
            while len(batch) < MAX_BATCH:
                more = bus.recv(0)
                if more is None:
                    break
                batch.append(more)
        except Exception as exc:  # CanOperationError, OSError, SerialException, USBError...
            raise SourceLostError(f"{self.description} failed: {_root_message(exc)}") from exc
        if self.timestamps == "host":
            now = time.time()
            for msg in batch:
                msg.timestamp = now
        elif not self._clock_checked:
            self._check_clock(batch[0].timestamp)
        return self.packer.pack(batch)

    def _check_clock(self, stamp):
        """Device-relative clocks (gs_usb) are mapped to Unix time at the first frame."""
        self._clock_checked = True
        now = time.time()
        self.packer.ts_offset = 0.0 if abs(now - stamp) < UNIX_TIME_TOLERANCE else now - stamp

    def send(self, can_id, flags, data):
        import can

        bus = self.bus
        if bus is None:
            raise TransmitError(f"{self.description} is not open")
        message = can.Message(arbitration_id=can_id, is_extended_id=bool(flags & 1),
                              is_fd=bool(flags & 2), bitrate_switch=bool(flags & 4),
                              data=data)
        try:
            bus.send(message, timeout=1.0)
        except Exception as exc:  # CanOperationError, CanError, OSError...
            raise TransmitError(f"{self.description}: {_root_message(exc)}") from exc

    def close(self):
        bus, self.bus = self.bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except Exception:
                pass


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return seen


def _chain_text(chain):
    """The messages of an exception chain, each once: one already quoted inside another
    (pyserial's "could not open port X: [Errno 2] ..." quotes its cause) is left out."""
    messages = list(dict.fromkeys(str(e) for e in chain if str(e)))
    return " / ".join(m for m in messages
                      if not any(m != other and m in other for other in messages))


def _root_message(exc):
    return str(exc) or type(exc).__name__


def explain_open_error(exc, interface, channel, bitrate):
    """Turn whatever a python-can backend raised while opening into one clear error."""
    import can

    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = _chain_text(chain)
    errnos = {getattr(e, "errno", None) for e in chain} - {None}
    where = f"{interface} channel {channel}"

    if isinstance(exc, TypeError) and "channel" in text and channel is None:
        return UsageError(f"the {interface} interface needs -c/--channel "
                          "(cancorder detect lists what it finds)")
    if interface in VENDOR_LIBRARIES and (
            "NameError" in names or "library not found" in text.lower()
            or "not available" in text.lower() or "could not load" in text.lower()):
        return SourceInitError(f"the {interface} interface needs {VENDOR_LIBRARIES[interface]}, "
                               f"which is not installed or could not be loaded ({text})")
    if isinstance(exc, can.CanInterfaceNotImplementedError) and "Unknown interface" in text:
        known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
        return UsageError(f"unknown interface '{interface}': use one of {known} "
                          "(cancorder detect lists the adapters it finds)")
    if "NoBackendError" in names:
        return SourceInitError(
            f"{interface} needs libusb, which this machine does not have: install it "
            "(Debian/Ubuntu: apt install libusb-1.0-0; macOS: brew install libusb; "
            "Windows: libusb-1.0.dll beside the program)")
    if errno.EACCES in errnos or errno.EPERM in errnos or "PermissionError" in names:
        fix = ("add a udev rule for the device or run as root" if interface == "gs_usb" else
               "add your user to the dialout group (sudo usermod -aG dialout $USER, then log "
               "in again) or run as root")
        return SourceInitError(f"permission denied opening {where}: {fix}")
    if "ValueError" in names and "bitrate" in text.lower():
        return UsageError(f"--bitrate {bitrate} is not possible on {interface}: {text}")
    if interface == "socketcan":
        if errno.EAFNOSUPPORT in errnos:
            return SourceInitError("this kernel has no SocketCAN (address family not "
                                   "supported): load the can module, or use another interface")
        if errno.ENODEV in errnos or errno.ENXIO in errnos:
            return SourceInitError(
                f"no SocketCAN interface '{channel}': check `ip link` (a virtual one: "
                f"sudo ip link add dev {channel} type vcan; sudo ip link set {channel} up)")
        if errno.ENETDOWN in errnos:
            return SourceInitError(f"SocketCAN interface '{channel}' is down: sudo ip link set "
                                   f"{channel} up type can bitrate {bitrate or 500000}")
    if isinstance(exc, can.CanInterfaceNotImplementedError) or isinstance(exc, ImportError):
        return SourceInitError(f"the {interface} interface is not usable here: {text}")
    if errno.ENOENT in errnos or "could not open port" in text.lower():
        # pyserial's message quotes its cause's, errno text and path included: say it once
        reason = "no such device" if errno.ENOENT in errnos else \
            os.strerror(min(errnos)) if errnos else text
        return SourceInitError(f"cannot open {where}: {reason} (is the adapter plugged in? "
                               "cancorder detect lists what it finds)")
    if isinstance(exc, can.CanInitializationError) and (
            "find" in text.lower() or "found" in text.lower()):
        return SourceInitError(f"no {interface} device found ({text}): plug one in, or see "
                               "cancorder detect")
    return SourceInitError(f"cannot open {where}: {text or type(exc).__name__}")
