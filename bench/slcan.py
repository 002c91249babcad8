"""SLCAN through `cancorder serve`: cancorder's own source against python-can's slcan backend.

    python -m bench.slcan

An SLCAN emulator in its own process writes pre-built frame lines (29-bit, 8 bytes, payload =
sequence number) into a loopback socket; `cancorder serve -i slcan -c socket://...` reads them
and one client counts and checks every frame. Reported per backend, in one run: frames/s
delivered to the client, CPU-seconds of the serve process per 10,000 frames, and frames lost or
altered. Runs: as fast as the socket takes them (both backends) and paced at 30,000 frames/s
for 10 s (cancorder's source; python-can cannot keep that pace).
"""
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cancorder._fast import wire  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402


class CheckingClient:
    """Reads the stream in a thread and checks each frame's sequence number as it comes,
    keeping only counts (two million frames kept as tuples would cost the reader, not serve)."""

    def __init__(self, port):
        import socket
        import threading

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.received = 0
        self.bad = 0
        self.first = self.last = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        decoder = wire.StreamDecoder()
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            now = time.monotonic()
            if self.first is None:
                self.first = now
            i = self.received
            for _, can_id, _, data in decoder.feed(chunk):
                if can_id != i % 0x20000000 or data != i.to_bytes(8, "big"):
                    self.bad += 1
                i += 1
            self.received = i
            self.last = now

    def close(self):
        self.sock.close()
        self._thread.join(5)


def process_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(backend, count, rate):
    emulator = subprocess.Popen(
        [sys.executable, "-m", "tests.emulators.slcan_adapter", "--count", str(count),
         "--rate", str(rate)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=cancorder_env())
    port = int(emulator.stdout.readline())
    server = CancorderProcess(["serve", "-i", "slcan", "-c", f"socket://127.0.0.1:{port}",
                               "-b", "1000000", "--no-zeroconf", "--bind", "127.0.0.1",
                               "--client-buffer", "256M",
                               "--opt", f"slcan_backend={backend}"])
    try:
        client = CheckingClient(server.port())
        server.wait_for("connected")
        cpu0 = process_cpu(server.proc.pid)
        emulator.stdin.write("go\n")
        emulator.stdin.flush()
        deadline = time.monotonic() + 300
        while client.received < count and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu = process_cpu(server.proc.pid) - cpu0
        client.close()
        received = client.received
        return {"backend": backend, "rate_asked": rate or "max", "frames": count,
                "received": received, "lost_or_altered": count - received + client.bad,
                "frames_per_s": received / max((client.last or 0) - (client.first or 0), 1e-9),
                "cpu_s_per_10k": cpu / max(received, 1) * 10000}
    finally:
        server.stop()
        emulator.stdin.close()
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)


def main():
    results = [
        run("cancorder", 2000000, 0),
        run("python-can", 20000, 0),
        run("cancorder", 300000, 30000),
    ]
    print(f"{'backend':12s} {'rate asked':>10s} {'frames':>8s} {'lost':>5s} "
          f"{'frames/s':>10s} {'CPU-s/10k':>10s}")
    for r in results:
        print(f"{r['backend']:12s} {str(r['rate_asked']):>10s} {r['received']:>8,d} "
              f"{r['lost_or_altered']:>5d} {r['frames_per_s']:>10,.0f} {r['cpu_s_per_10k']:>10.4f}")
    ratio = results[1]["cpu_s_per_10k"] / results[0]["cpu_s_per_10k"]
    print(f"CPU per frame, python-can / cancorder (both unpaced): {ratio:.0f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
