"""The fake CAN API V3 library (fake_uvcantou.c): building it, and driving it.

``build(folder)`` compiles it with ``cc -shared -fPIC``. ``FakeToucanControl`` drives a copy
loaded by a cancorder subprocess (datagrams to FAKE_TOUCAN_CONTROL, the call log in
FAKE_TOUCAN_LOG); ``FakeToucanLibrary`` drives the copy loaded in this process.
"""
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import time

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_uvcantou.c")

# TouCAN status codes (data[0] of a status frame) and CAN API V3 return codes used by the tests
STATUS_OK, STATUS_OVERRUN, STATUS_BUSLIGHT, STATUS_BUSHEAVY, STATUS_BUSOFF = 0, 1, 2, 3, 4
STATUS_FORM_ERROR = 0x21
CANERR_FATAL = -99
# can_message_t flag byte bits
XTD, RTR, FDF, BRS, ESI, STS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x80


def compiler():
    return shutil.which(os.environ.get("CC", "cc"))


def build(folder):
    """Compile the fake into ``folder``; returns the library's path."""
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    path = os.path.join(folder, "libfakeuvcantou" + suffix)
    done = subprocess.run([compiler(), "-shared", "-fPIC", "-O2", "-Wall", "-o", path, SOURCE,
                           "-lpthread"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling the fake CAN API V3 library failed:\n{done.stderr}")
    return path


def monotonic_timespec(seconds):
    sec = int(seconds)
    return sec, int(round((seconds - sec) * 1e9))


class FakeToucanControl:
    """Commands to a fake loaded by another process, and what it was asked to do."""

    def __init__(self, folder):
        self.socket_path = os.path.join(folder, "control.sock")
        self.log_path = os.path.join(folder, "calls.log")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def env(self):
        return {"FAKE_TOUCAN_CONTROL": self.socket_path, "FAKE_TOUCAN_LOG": self.log_path}

    def send(self, *lines, timeout=10.0):
        """Send command lines in one datagram (waits for the library to bind its socket)."""
        payload = "\n".join(lines).encode()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock.sendto(payload, self.socket_path)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def frame_line(can_id, data=b"", flags=0, dlc=None, stamp=None):
        """``stamp``: a CLOCK_MONOTONIC time in seconds, or None for the moment it is read."""
        sec, nsec = monotonic_timespec(stamp) if stamp is not None else (-1, 0)
        dlc = len(data) if dlc is None else dlc
        return f"frame {can_id:x} {flags} {dlc} {data.hex() or '-'} {sec} {nsec}"

    def push_frame(self, can_id, data=b"", flags=0, dlc=None, stamp=None):
        self.send(self.frame_line(can_id, data, flags, dlc, stamp))

    def push_status(self, *codes):
        self.send(*(f"status {code}" for code in codes))

    def push_failure(self, rc=CANERR_FATAL):
        self.send(f"fail {rc}")

    def calls(self):
        """The call log, one string per call (``init channel=0 mode=0x02 rc=0``...)."""
        try:
            with open(self.log_path) as log:
                return log.read().splitlines()
        except FileNotFoundError:
            return []

    def calls_named(self, name):
        return [line for line in self.calls() if line.split()[0] == name]

    def close(self):
        self._sock.close()


class FakeToucanLibrary:
    """The test-only functions of a fake loaded in this process (state shared with the binding)."""

    def __init__(self, path):
        self.path = path
        lib = self.dll = ctypes.CDLL(path)
        u8, u32, i32, i64 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_int, ctypes.c_int64
        for name, restype, argtypes in (
                ("fake_reset", None, []),
                ("fake_set_present", None, [i32]),
                ("fake_push_frame", None, [u32, u8, u8, ctypes.c_char_p, i64, i64]),
                ("fake_push_burst", None, [ctypes.c_uint, u32]),
                ("fake_push_status", None, [u8]),
                ("fake_push_failure", None, [i32]),
                ("fake_calls", ctypes.c_uint, [ctypes.c_char_p]),
                ("fake_last_mode", i32, []),
                ("fake_last_bitrate_index", i32, []),
                ("fake_queued", ctypes.c_uint, []),
                ("fake_sizeof_message", ctypes.c_size_t, []),
                ("fake_sizeof_bitrate", ctypes.c_size_t, []),
                ("fake_sizeof_speed", ctypes.c_size_t, []),
                ("fake_offsetof_dlc", ctypes.c_size_t, []),
                ("fake_offsetof_data", ctypes.c_size_t, []),
                ("fake_offsetof_timestamp", ctypes.c_size_t, []),
                ("fake_flag_byte", u8, [ctypes.c_char_p])):
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        self.reset()

    def reset(self):
        self.dll.fake_reset()

    def push_frame(self, can_id, data=b"", flags=0, dlc=None, stamp=None):
        sec, nsec = monotonic_timespec(stamp) if stamp is not None else (-1, 0)
        self.dll.fake_push_frame(can_id, flags, len(data) if dlc is None else dlc,
                                 bytes(data).ljust(64, b"\0"), sec, nsec)

    def push_burst(self, count, can_id):
        self.dll.fake_push_burst(count, can_id)

    def push_status(self, code):
        self.dll.fake_push_status(code)

    def push_failure(self, rc=CANERR_FATAL):
        self.dll.fake_push_failure(rc)

    def calls(self, name):
        return self.dll.fake_calls(name.encode())

    def __getattr__(self, name):  # fake_last_mode() -> last_mode()
        return getattr(self.dll, "fake_" + name)
