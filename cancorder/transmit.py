"""Putting frames on a logger's bus from a client: socketcand's transmit (``< send ... >``),
which a logger offers when it serves ``--socketcand`` with ``--allow-transmit``. One client for
``cancorder send`` and the python-can interface (``pycan_interface``).

Socketcand answers a frame it takes with nothing: each frame is followed by ``< echo >``, and
what comes back before the echo is that frame's answer (an ``< error ... >``: refused). An
adapter that fails a frame later answers later: the next frame (or ``close``) sees it.
"""
import re
import socket

from . import client
from ._fast import wire
from .errors import ConnectError, RemoteTransmitError

SOCKETCAND_PORT = 29536  # socketcand's own default (sinks/socketcand serves on it too)
ANSWER_TIMEOUT = 5.0  # seconds a logger has to answer a command
FIRST_BUS = "can0"  # opened when no bus is named; a logger that has another says its name
MAX_ELEMENT = 1024
_OTHER_BUSES = re.compile(rb"< error could not open bus: open (\S+)")
_WHY = {
    b"transmit disabled": "its transmit is off, or this host may not transmit (the logger "
                          "must serve --socketcand with --allow-transmit, and --allow this "
                          "host when it is not the logger's own machine)",
}


def socketcand_target(text):
    """``HOST[:PORT]`` of a logger's socketcand listener (default port 29536)."""
    return client.parse_target(text, default_port=SOCKETCAND_PORT)


class SocketcandTransmitter:
    """A socketcand session on ``target`` (a client.Target) with bus ``bus`` open (None: the
    logger's one bus); ``send(can_id, flags, data)`` puts one frame on the bus or raises
    RemoteTransmitError naming the cause."""

    def __init__(self, target, bus=None, timeout=ANSWER_TIMEOUT):
        self.target = target
        self.timeout = timeout
        self.bus = bus or FIRST_BUS
        reply = self._open(self.bus)
        named = _OTHER_BUSES.match(reply)
        if named and bus is None:  # the logger names its bus: open that one
            self.close()
            self.bus = named.group(1).decode("ascii", "replace")
            reply = self._open(self.bus)
        if reply != b"< ok >":
            self.close()
            raise RemoteTransmitError(f"{target}: the logger did not open bus '{self.bus}': "
                                      f"{_text(reply)}")

    def _open(self, bus):
        self._buffer = b""
        try:
            self._sock = socket.create_connection((self.target.host, self.target.port),
                                                  self.timeout)
        except OSError as exc:
            raise ConnectError(f"{self.target}: cannot connect: {exc.strerror or exc} (is the "
                               "logger serving --socketcand on this port?)") from None
        try:
            hello = self._element()
        except ConnectError:  # silence: an ECUconnect port says nothing before frames come
            self.close()
            raise ConnectError(f"{self.target}: no socketcand greeting ('< hi >') within "
                               f"{self.timeout:g} s: not a socketcand port? Name the "
                               "logger's --socketcand port") from None
        if hello != b"< hi >":
            self.close()
            raise ConnectError(f"{self.target}: not a socketcand port (it said "
                               f"{_text(hello)!r}, not '< hi >'): name the logger's "
                               "--socketcand port")
        self._write(f"< open {bus} >")
        return self._element()

    def send(self, can_id, flags, data):
        if flags & (wire.FLAG_BRS | wire.FLAG_ESI):
            raise RemoteTransmitError(
                f"{self.target}: socketcand's sendfd carries no BRS or ESI flag: send the "
                "CAN FD frame without them (ID##0...)")
        width = 8 if flags & wire.FLAG_EXT else 3
        command = "sendfd" if flags & wire.FLAG_FD else "send"
        self._write(f"< {command} {can_id:0{width}X} {len(data)} "
                    + "".join(f"{byte:02X} " for byte in data) + ">< echo >")
        answers = []
        while True:
            element = self._element()
            if element == b"< echo >":
                break
            answers.append(element)
        for answer in answers:
            if answer.startswith(b"< error"):
                why = answer[len(b"< error"):-1].strip()
                raise RemoteTransmitError(
                    f"{self.target}: the logger refused {can_id:0{width}X}"
                    f"{'##' if flags & wire.FLAG_FD else '#'}{bytes(data).hex().upper()}: "
                    f"{_WHY.get(why, why.decode('ascii', 'replace'))}")

    def close(self):
        sock, self._sock = getattr(self, "_sock", None), None
        if sock is not None:
            sock.close()

    # ---- the protocol's elements ----

    def _write(self, text):
        try:
            self._sock.sendall(text.encode("ascii"))
        except OSError as exc:
            raise ConnectError(f"{self.target}: the logger closed the connection "
                               f"({exc.strerror or exc})") from None

    def _element(self):
        """The next ``< ... >`` the logger sends (b"" when it closed the connection)."""
        while True:
            start = self._buffer.find(b"<")
            end = self._buffer.find(b">", start)
            if start >= 0 and end >= 0:
                element, self._buffer = self._buffer[start:end + 1], self._buffer[end + 1:]
                return b"< " + b" ".join(element[1:-1].split()) + b" >"
            if len(self._buffer) > MAX_ELEMENT:
                raise ConnectError(f"{self.target}: not socketcand (no '>' in "
                                   f"{MAX_ELEMENT} bytes)")
            try:
                chunk = self._sock.recv(4096)
            except socket.timeout:
                raise ConnectError(f"{self.target}: no answer within {self.timeout:g} s"
                                   ) from None
            except OSError as exc:
                raise ConnectError(f"{self.target}: {exc.strerror or exc}") from None
            if not chunk:
                return b""
            self._buffer += chunk


def _text(element):
    return element.decode("ascii", "replace") or "nothing: it closed the connection"
