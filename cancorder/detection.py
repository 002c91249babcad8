"""What cancorder could serve from: adapters on this machine, loggers on the network.

Used by `cancorder detect` (a table of everything, each row with the command that would use
it) and by `cancorder serve --auto` (the first usable adapter that opens). Each probe is
cheap and never raises: a missing library or a permission problem becomes a row that says
how to fix it.

- SocketCAN: interfaces whose ``/sys/class/net/*/type`` is 280 (ARPHRD_CAN); state and bit rate
  from ``ip -details -json link`` where the kernel reports them.
- Serial ports (pyserial's list_ports) with their USB VID:PID; known SLCAN adapters are marked.
- gs_usb devices (candleLight, CANable with candlelight firmware) through gs_usb/pyusb.
- The TouCAN CAN API V3 library (Rusoku, macOS).
- python-can's own detection, only for the backends named with --interfaces (slow: it
  imports each vendor library).
- Loggers announced over Zeroconf (--network).
"""
import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess

#: where network interfaces are listed; CANCORDER_SYSFS_NET points elsewhere (the tests fake it)
SYSFS_NET = "/sys/class/net"
ARPHRD_CAN = 280

#: USB ids of adapters that speak SLCAN (LAWICEL) on a serial port
KNOWN_SLCAN = {
    (0x16D0, 0x117E): "CANable / CANable 2.0 (slcan firmware)",
    (0xAD50, 0x60C4): "CANtact / CANable (early slcan firmware)",
    (0x04D8, 0x000A): "USBtin (Microchip CDC)",
    (0x0403, 0xFFA8): "LAWICEL CANUSB",
}
#: words in a serial port's USB strings that identify an SLCAN adapter with a generic id
#: (LAWICEL CANUSB since 2015 ships with FTDI's standard 0403:6001)
SLCAN_PRODUCT_WORDS = ("canable", "cantact", "canusb", "usbtin", "slcan")
#: generic ids many SLCAN clones use: shown as "maybe", never opened by serve --auto
POSSIBLE_SLCAN = {
    (0x0483, 0x5740): "STM32 virtual COM port (many SLCAN clones use it)",
}
#: where the TouCAN library is looked for (cancorder/sources/toucan.py should share this list)
TOUCAN_ENV = "CANCORDER_TOUCAN_LIBRARY"
TOUCAN_PATHS = ("/usr/local/lib/libUVCANTOU.dylib",)
TOUCAN_NAME = "UVCANTOU"
TOUCAN_SYMBOLS = ("can_init", "can_start", "can_read", "can_exit")

DEFAULT_BITRATE = 500000
LIBUSB_FIX = ("install libusb (Debian/Ubuntu: sudo apt install libusb-1.0-0; macOS: brew "
              "install libusb; Windows: libusb-1.0.dll beside the program)")
USB_PERMISSION_FIX = ('add a udev rule, e.g. SUBSYSTEM=="usb", ATTRS{idVendor}=="1d50", '
                      'ATTRS{idProduct}=="606f", MODE="0666" in /etc/udev/rules.d/'
                      "99-candlelight.rules, then replug the adapter (or run as root)")
SERIAL_PERMISSION_FIX = ("add your user to the dialout group (sudo usermod -aG dialout $USER, "
                         "then log in again) or run as root")


@dataclasses.dataclass
class Found:
    """One row of `cancorder detect`."""

    kind: str  # socketcan, slcan, serial, gs_usb, toucan, python-can, logger, problem
    name: str  # can0, /dev/ttyACM0, gs_usb 0, TouCAN, a logger's instance name
    details: str = ""
    command: str = ""  # the exact cancorder command that uses it ("" when nothing can)
    fix: str = ""  # for problems and unusable rows: what to do
    usable: bool = False  # serve --auto may try to open it
    interface: str = None  # python-can interface and channel for serve --auto
    channel: object = None

    def as_dict(self):
        return dataclasses.asdict(self)


def sysfs_net():
    return os.environ.get("CANCORDER_SYSFS_NET") or SYSFS_NET


def _serve_command(interface, channel, bitrate=True):
    command = f"cancorder serve -i {interface} -c {_quote(channel)}"
    return command + (f" -b {DEFAULT_BITRATE}" if bitrate else "")


def _quote(value):
    import shlex

    return shlex.quote(str(value))


# ---- SocketCAN ----

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def ip_link_details(name=None):
    """``ip -details -json link`` (of one interface, or all), by interface name ({} when ip
    is missing or says nothing). The SocketCAN source reads its bit rate and state here."""
    ip = shutil.which("ip")
    if ip is None:
        return {}
    try:
        done = subprocess.run([ip, "-details", "-json", "link", "show"]
                              + (["dev", name] if name else []), capture_output=True,
                              text=True, timeout=5)
        links = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    return {link.get("ifname"): link for link in links if isinstance(link, dict)}


def link_bitrates(info_data):
    """(bit rate, data bit rate) of a CAN link from ``ip -details -json``'s ``info_data``
    (None where unset): a driver that calculates its bit timing gives them under
    ``bittiming``/``data_bittiming``, one with a fixed list of rates (the kernel's slcan) as
    flat ``bittiming_bitrate``/``data_bittiming_bitrate``."""
    def rate(section):
        value = (info_data.get(section) or {}).get("bitrate") or \
            info_data.get(f"{section}_bitrate")
        return value if isinstance(value, int) and 0 < value < 0xFFFFFFFF else None
    return rate("bittiming"), rate("data_bittiming")


def socketcan_interfaces():
    root = sysfs_net()
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    can_names = [name for name in names
                 if _read(os.path.join(root, name, "type")) == str(ARPHRD_CAN)]
    if not can_names:
        return []
    details = ip_link_details()
    found = []
    for name in can_names:
        operstate = (_read(os.path.join(root, name, "operstate")) or "unknown").lower()
        link = details.get(name, {})
        info = link.get("linkinfo", {})
        kind = info.get("info_kind") or ("can" if os.path.exists(os.path.join(root, name, "device"))
                                         else "virtual")
        data = info.get("info_data", {}) or {}
        bitrate, data_bitrate = link_bitrates(data)
        # operstate is "unknown" for interfaces without carrier (vcan): then IFF_UP decides
        sys_flags = _read(os.path.join(root, name, "flags")) or "0"
        admin_up = "UP" in (link.get("flags") or []) or (
            int(sys_flags, 16) & 1 if re.fullmatch(r"0x[0-9a-fA-F]+", sys_flags) else False)
        up = operstate == "up" or (operstate == "unknown" and bool(admin_up))
        parts = [kind, "up" if up else "down"]
        if data.get("state"):
            parts.append(data["state"])  # ERROR-ACTIVE, ERROR-PASSIVE, BUS-OFF, STOPPED
        if bitrate:
            parts.append(f"{bitrate:,} bit/s")
        if data_bitrate:
            parts.append(f"data {data_bitrate:,} bit/s")
        fix = ""
        if not up:
            fix = (f"sudo ip link set {name} up" if kind in ("vcan", "vxcan", "virtual") else
                   f"sudo ip link set {name} up type can bitrate {bitrate or DEFAULT_BITRATE}")
        elif data.get("state") == "BUS-OFF":
            fix = f"bus off: check wiring and bit rate, then sudo ip link set {name} down; up"
        found.append(Found("socketcan", name, ", ".join(parts),
                           _serve_command("socketcan", name, bitrate=False), fix=fix,
                           usable=up and data.get("state") != "BUS-OFF",
                           interface="socketcan", channel=name))
    # real adapters before virtual ones, up before down
    found.sort(key=lambda f: (not f.usable, f.details.startswith(("vcan", "vxcan", "virtual"))))
    return found


# ---- serial ports ----

def _slcan_kind(port):
    ids = (port.vid, port.pid)
    if ids in KNOWN_SLCAN:
        return KNOWN_SLCAN[ids], True
    words = " ".join(str(x) for x in (port.description, port.manufacturer, port.product) if x)
    if any(word in words.lower() for word in SLCAN_PRODUCT_WORDS):
        return "SLCAN adapter (by its USB name)", True
    if ids in POSSIBLE_SLCAN:
        return f"maybe SLCAN: {POSSIBLE_SLCAN[ids]}", False
    return None, False


def serial_ports():
    try:
        from serial.tools import list_ports
    except ImportError:
        return [Found("problem", "serial ports", "pyserial is not installed",
                      fix="pip install pyserial")]
    try:
        ports = sorted(list_ports.comports(), key=lambda p: p.device)
    except Exception as exc:  # a broken sysfs or registry: say so, keep detecting the rest
        return [Found("problem", "serial ports", f"listing serial ports failed: {exc}")]
    found = []
    for port in ports:
        what, known = _slcan_kind(port)
        parts = []
        if port.vid is not None and port.pid is not None:
            parts.append(f"USB {port.vid:04x}:{port.pid:04x}")
        if port.description and port.description != "n/a":
            parts.append(port.description)
        if port.serial_number:
            parts.append(f"serial {port.serial_number}")
        fix = ""
        if os.path.exists(port.device) and not os.access(port.device, os.R_OK | os.W_OK):
            fix = f"no permission to open {port.device}: {SERIAL_PERMISSION_FIX}"
            known_usable = False
        else:
            known_usable = known
        if what:
            parts.insert(0, what)
        elif not fix:
            fix = "not a known SLCAN adapter: the command works if it speaks SLCAN (LAWICEL)"
        found.append(Found("slcan" if known else "serial", port.device, ", ".join(parts),
                           _serve_command("slcan", port.device), fix=fix, usable=known_usable,
                           interface="slcan", channel=port.device))
    found.sort(key=lambda f: f.kind != "slcan")
    return found


# ---- gs_usb ----

def _is_permission_error(exc):
    return getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM) or \
        getattr(exc, "backend_error_code", None) == -3  # LIBUSB_ERROR_ACCESS


def gs_usb_devices():
    try:
        import usb.core
        from gs_usb.gs_usb import GsUsb
    except ImportError as exc:
        return [Found("problem", "gs_usb", f"the gs_usb/pyusb packages are missing ({exc})",
                      fix="pip install gs_usb")]
    try:
        devices = GsUsb.scan()
    except usb.core.NoBackendError:
        return [Found("problem", "gs_usb", "libusb is missing: USB adapters (candleLight, "
                      "CANable with candlelight firmware) cannot be found", fix=LIBUSB_FIX)]
    except usb.core.USBError as exc:
        if _is_permission_error(exc):
            return [Found("problem", "gs_usb", "permission denied while scanning USB devices",
                          fix=USB_PERMISSION_FIX)]
        return [Found("problem", "gs_usb", f"scanning USB devices failed: {exc}")]
    found = []
    for index, device in enumerate(devices):
        usb_device = getattr(device, "gs_usb", None)
        parts = []
        vid, pid = getattr(usb_device, "idVendor", None), getattr(usb_device, "idProduct", None)
        fix = ""
        strings = {}
        for field in ("product", "serial_number"):  # reading these opens the device
            try:
                strings[field] = getattr(usb_device, field)
            except (usb.core.USBError, ValueError, AttributeError) as exc:
                if isinstance(exc, usb.core.USBError) and _is_permission_error(exc):
                    fix = f"no permission to open it: {USB_PERMISSION_FIX}"
        product, serial = strings.get("product"), strings.get("serial_number")
        if product:
            parts.append(str(product))
        if vid is not None and pid is not None:
            parts.append(f"USB {vid:04x}:{pid:04x}")
        bus, address = getattr(usb_device, "bus", None), getattr(usb_device, "address", None)
        if bus is not None:
            parts.append(f"bus {bus} address {address}")
        if serial:
            parts.append(f"serial {serial}")
        found.append(Found("gs_usb", f"gs_usb {index}", ", ".join(parts),
                           _serve_command("gs_usb", index), fix=fix, usable=not fix,
                           interface="gs_usb", channel=index))
    return found


# ---- TouCAN ----

def toucan_candidates():
    """Where the TouCAN library may be: $CANCORDER_TOUCAN_LIBRARY, the installer's path, and
    the system's library search (ctypes.util.find_library)."""
    import ctypes.util

    paths = []
    if os.environ.get(TOUCAN_ENV):
        paths.append(os.environ[TOUCAN_ENV])
    paths.extend(TOUCAN_PATHS)
    try:
        system = ctypes.util.find_library(TOUCAN_NAME)
    except Exception:  # find_library runs external tools; it must never stop detection
        system = None
    if system:
        paths.append(system)
    return list(dict.fromkeys(paths))


def toucan_library():
    import ctypes

    from_env = os.environ.get(TOUCAN_ENV)
    for path in toucan_candidates():
        if os.sep in path and not os.path.exists(path):
            if path == from_env:
                return [Found("problem", "TouCAN", f"{TOUCAN_ENV}={path}: no such file",
                              fix=f"point {TOUCAN_ENV} at libUVCANTOU, or unset it")]
            continue
        try:
            library = ctypes.CDLL(path)
        except OSError as exc:
            return [Found("problem", "TouCAN", f"the TouCAN library {path} does not load: {exc}",
                          fix="reinstall the TouCAN library from Rusoku (macOS), or use its "
                              "SocketCAN driver on Linux")]
        missing = [name for name in TOUCAN_SYMBOLS if not hasattr(library, name)]
        if missing:
            return [Found("problem", "TouCAN", f"{path} is not the TouCAN CAN API V3 library "
                          f"(no {', '.join(missing)})")]
        command = "cancorder touCAN"
        if path == from_env:
            command = f"{TOUCAN_ENV}={_quote(path)} {command}"
        return [Found("toucan", "TouCAN", f"CAN API V3 library {path}", command)]
    return []


# ---- python-can's own detection ----

def python_can_configs(interfaces):
    import can

    from .errors import UsageError

    unknown = [name for name in interfaces if name not in can.interfaces.VALID_INTERFACES]
    if unknown:
        raise UsageError(f"--interfaces: unknown python-can interface "
                         f"{', '.join(unknown)}: use some of "
                         f"{', '.join(sorted(can.interfaces.VALID_INTERFACES))}")
    found = []
    for config in can.detect_available_configs(interfaces=list(interfaces)):
        interface, channel = config.get("interface"), config.get("channel")
        extra = {k: v for k, v in config.items() if k not in ("interface", "channel")}
        command = _serve_command(interface, channel)
        command += "".join(f" --opt {_quote(f'{k}={v}')}" for k, v in extra.items())
        found.append(Found("python-can", f"{interface} {channel}",
                           ", ".join(f"{k}={v}" for k, v in extra.items()), command,
                           usable=True, interface=interface, channel=channel))
    return found


# ---- loggers on the network ----

def network_loggers(seconds=3.0):
    from .discovery import browse

    try:
        loggers = browse(seconds)
    except OSError as exc:
        return [Found("problem", "Zeroconf", f"browsing failed: {exc.strerror or exc}")]
    found = []
    for logger in loggers:
        txt = ", ".join(f"{k}={v}" for k, v in sorted(logger.txt.items()))
        found.append(Found("logger", logger.name,
                           f"{', '.join(logger.addresses)} port {logger.port}; {txt}",
                           f"cancorder dump {logger.endpoint}"))
    return found


# ---- all of it ----

def detect(interfaces=(), network=False, browse_seconds=3.0):
    """Every row, in the order serve --auto tries them: SocketCAN, gs_usb, SLCAN, the rest."""
    found = socketcan_interfaces() + gs_usb_devices() + serial_ports() + toucan_library()
    if interfaces:
        seen = {(f.interface, str(f.channel)) for f in found}
        found += [f for f in python_can_configs(interfaces)
                  if (f.interface, str(f.channel)) not in seen]
    if network:
        found += network_loggers(browse_seconds)
    return found


def looked_for(interfaces=(), network=False):
    """What was searched, for the nothing-found message."""
    places = [f"SocketCAN interfaces ({sysfs_net()}/*/type = {ARPHRD_CAN})",
              "serial ports with SLCAN adapters (CANable, CANtact, USBtin, CANUSB)",
              "gs_usb devices (candleLight, CANable with candlelight firmware)",
              "the TouCAN library (" + ", ".join(toucan_candidates()) + ")"]
    if interfaces:
        places.append("python-can's detection for " + ", ".join(interfaces))
    if network:
        places.append("loggers announced over Zeroconf")
    return places


HOW_TO_ADD = ("plug the adapter in (an SLCAN adapter appears as /dev/ttyACM0 or COMn, a "
              "candleLight as a gs_usb device or, on Linux, as can0); bring a SocketCAN "
              "interface up (sudo ip link set can0 up type can bitrate 500000) or make a "
              "virtual one (sudo modprobe vcan; sudo ip link add dev vcan0 type vcan; sudo ip "
              "link set vcan0 up); for PEAK, Kvaser, Vector and other vendors: cancorder "
              "detect --interfaces pcan,kvaser,vector")


def nothing_found_message(interfaces=(), network=False):
    return ("no CAN adapter found. Looked for: " + "; ".join(looked_for(interfaces, network))
            + ". To make one appear: " + HOW_TO_ADD)


def open_first_usable(make_source, reporter, found=None):
    """serve --auto: the first detected adapter that opens, as a closed Source ready to serve.

    ``make_source(interface, channel)`` builds the source; each candidate is opened once to
    prove it works (then closed: the server opens it again) and the choice is logged.
    """
    from .errors import CancorderError, SourceInitError

    found = detect() if found is None else found
    candidates = [f for f in found if f.usable and f.interface]
    if not candidates:
        # what was found but cannot serve, a line each; the error itself stays one short line
        for f in found:
            if f.kind != "serial" and (f.fix or f.kind == "toucan"):
                reporter.warning(f"--auto: {f.name}: {f.details}"
                                 + (f" ({f.fix})" if f.fix else ""))
        if any(f.kind == "toucan" for f in found):
            reporter.warning("--auto: the TouCAN library is served by `cancorder touCAN`, "
                             "not serve")
        places = "; ".join(place.split(" (")[0] for place in looked_for())
        raise SourceInitError(f"--auto: no CAN adapter found. Looked for: {places} "
                              "(cancorder detect says where, and how to make one appear)")
    failures = []
    for candidate in candidates:
        try:
            source = make_source(candidate.interface, candidate.channel)
            source.open()
        except CancorderError as exc:
            reporter.warning(f"--auto: {candidate.name} does not open: {exc}")
            failures.append(candidate.name)
            continue
        source.close()
        reporter.info(f"--auto: using {candidate.kind} {candidate.name}"
                      + (f" ({candidate.details})" if candidate.details else ""))
        return source
    raise SourceInitError(f"--auto: no detected adapter opens (tried {', '.join(failures)}; "
                          "each one's reason is above)")
