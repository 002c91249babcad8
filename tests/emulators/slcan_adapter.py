"""An SLCAN (LAWICEL) adapter emulated on a TCP port of 127.0.0.1.

pyserial opens ``socket://127.0.0.1:PORT`` like a serial port, so python-can's slcan backend and
cancorder's own SLCAN source talk to this as to a CANable. It answers every command with ``\\r``
(``\\a`` for one it does not know; a transmit ``z``/``Z``, or ``\\a`` while
``refuse_transmits``), records the commands, and once the channel is opened (``O`` or ``L``)
writes the frame lines it is given. ``drop()`` ends the connection (the writer reads EOF at
once; bytes that had already reached this side are still taken, then it closes) and refuses new
ones (the port is closed: connecting is refused) for a while, then listens again on the same
port: that is what an unplugged and replugged adapter looks like.
"""
import socket
import threading

CAN_FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)
KNOWN_COMMANDS = set("CSOLVNsFZMmXYtTdDbB")
UNPLUG_DRAIN = 5.0  # s an unplugged connection's last bytes are waited for
TRANSMIT_COMMANDS = "tTdDbB"  # answered z/Z (transmitted), as a CANable does


def slcan_line(msg, timestamp_ms=None):
    """The SLCAN line for a python-can Message (``t``/``T``/``r``/``R``/``d``/``D``/``b``/``B``)."""
    data = bytes(msg.data or b"")
    if msg.is_fd:
        dlc = CAN_FD_LENGTHS.index(len(data))
        kind = "b" if msg.bitrate_switch else "d"
    else:
        dlc = len(data) if not msg.is_remote_frame else msg.dlc
        kind = "r" if msg.is_remote_frame else "t"
    if msg.is_extended_id:
        kind = kind.upper()
        ident = f"{msg.arbitration_id:08X}"
    else:
        ident = f"{msg.arbitration_id:03X}"
    body = "" if msg.is_remote_frame else data.hex().upper()
    stamp = "" if timestamp_ms is None else f"{timestamp_ms % 60000:04X}"
    return f"{kind}{ident}{dlc:X}{body}{stamp}\r".encode()


class SlcanEmulator:
    def __init__(self, host="127.0.0.1", port=0):
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.1)  # so close() need not wait for a blocked accept
        self.host = host
        self.port = self._listener.getsockname()[1]
        self.url = f"socket://{host}:{self.port}"
        self.commands = []
        self.connections = 0
        self.opened = threading.Event()
        self.refuse_transmits = False  # answer transmits with BEL, as a bus-off adapter does
        self._conn = None
        self._lock = threading.Lock()
        self._unplugged = False
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # ---- test API ----

    def wait_open(self, timeout=10.0):
        if not self.opened.wait(timeout):
            raise TimeoutError("nobody opened the emulated SLCAN channel")

    def send_lines(self, data, timeout=10.0):
        """Write raw SLCAN bytes once the channel is open (blocks until written)."""
        self.wait_open(timeout)
        with self._lock:
            conn = self._conn
        if conn is None:
            raise ConnectionError("no connection")
        conn.sendall(data)

    def send_messages(self, messages):
        self.send_lines(b"".join(slcan_line(m) for m in messages))

    def drop(self, refuse_for=1.0):
        """Close the connection (the adapter was unplugged) and refuse new ones for a while."""
        if refuse_for > 0 and not self._closing:
            self._unplugged = True
            self._listener.close()  # connecting is refused now
            threading.Timer(refuse_for, self._replug).start()
        with self._lock:
            conn, self._conn = self._conn, None
            self.opened.clear()
        if conn is None:
            return
        if refuse_for > 0 and not self._closing:
            # unplugged: the writer reads EOF at once, and what had already reached this socket
            # is still taken (the serving thread reads to the writer's close, then closes). A
            # real adapter loses the few frames in its USB buffer; a loaded test machine's
            # serving thread can lag by hundreds, and a writer that does not wait for answers
            # (python-can's slcan) would lose them all to the close: the machine's doing
            try:
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(UNPLUG_DRAIN)
            except OSError:
                conn.close()
            return
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    def _replug(self):
        if self._closing:
            return
        self._listener = socket.create_server((self.host, self.port))
        self._listener.settimeout(0.1)
        self._unplugged = False
        self._thread.join(2)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def close(self):
        self._closing = True
        self.drop(0)
        self._listener.close()
        self._thread.join(2)

    # ---- the adapter ----

    def _accept_loop(self):
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            # a USB serial adapter sends at once: no Nagle (else a write waits for the ACK of
            # the previous one, up to the 40 ms of a delayed ACK)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                old, self._conn = self._conn, conn
                self.connections += 1
            if old is not None:
                old.close()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        pending = b""
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                conn.close()
                return
            if not chunk:
                conn.close()
                return
            pending += chunk
            while b"\r" in pending:
                line, pending = pending.split(b"\r", 1)
                self._command(conn, line.decode("ascii", "replace"))

    def _command(self, conn, command):
        self.commands.append(command)
        reply = b"\r"
        if command and command[0] not in KNOWN_COMMANDS:
            reply = b"\a"
        elif command == "V":
            reply = b"V1013\r"
        elif command == "N":
            reply = b"NA123\r"
        elif command and command[0] in TRANSMIT_COMMANDS:
            reply = b"\a" if self.refuse_transmits else \
                b"Z\r" if command[0].isupper() else b"z\r"
        try:
            conn.sendall(reply)
        except OSError:
            return
        if command in ("O", "L"):
            self.opened.set()
        elif command == "C":
            self.opened.clear()


def build_lines(count):
    """``count`` 29-bit frames whose 8-byte payload is their sequence number."""
    return [f"T{i % 0x20000000:08X}8{i:016X}\r".encode() for i in range(count)]

