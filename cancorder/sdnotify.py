"""systemd's notify protocol without a dependency: datagrams to ``$NOTIFY_SOCKET``.

A ``Type=notify`` unit learns from these messages that the service is ready (``READY=1``: every
listener is bound), what it is doing (``STATUS=``), that it is alive (``WATCHDOG=1``) and that
it is stopping (``STOPPING=1``). Outside systemd (no ``$NOTIFY_SOCKET``) every call does
nothing. A leading ``@`` in the socket name means Linux's abstract namespace.
"""
import os
import socket
import time


class Notifier:
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or ""
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address if address[:1] in ("/", "\0") else None
        self._sock = None
        #: seconds between WATCHDOG=1 pings (half of WatchdogSec=), None without a watchdog
        self.watchdog_interval = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if self._address and usec.isdigit() and int(usec) > 0 and \
                (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2e6
        self._last_ping = 0.0
        self.failures = 0

    @property
    def enabled(self):
        return self._address is not None

    def send(self, *assignments):
        """Send ``KEY=value`` lines as one datagram; errors are counted, never raised (the
        service must not die because its supervisor went away)."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError:
            self.failures += 1
            return False
        return True

    def ready(self, status=None):
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text):
        return self.send(f"STATUS={text}")

    def stopping(self, status=None):
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog_due(self, now=None):
        """True when a WATCHDOG=1 ping is due (the caller decides whether all is well)."""
        if self.watchdog_interval is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self._last_ping >= self.watchdog_interval

    def watchdog(self, now=None):
        self._last_ping = time.monotonic() if now is None else now
        return self.send("WATCHDOG=1")

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
