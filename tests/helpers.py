"""Test helpers: a cancorder subprocess whose log is watched, and a stream-reading client."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from cancorder._fast import wire

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port(host="127.0.0.1"):
    """A TCP port the kernel has just handed out on ``host``: from its ephemeral range, away from
    the 42420 default that any other cancorder on the machine takes first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as sock:
        return sock.getsockname()[1]


def wait_until(condition, timeout=10.0):
    """True once ``condition()`` is, False if it is not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def cancorder_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("COLUMNS", "200")
    for var in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE", "CAN_CONFIG"):
        env.pop(var, None)
    env.update(extra)
    return env


def stop_process(proc, timeout=10):
    """SIGTERM by pid, SIGKILL if it does not exit within ``timeout`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class CancorderProcess:
    """``python -m cancorder ARGS`` with stderr collected line by line."""

    def __init__(self, args, env=None, command=None, stdout=subprocess.DEVNULL, cwd=ROOT):
        cmd = command or [sys.executable, "-m", "cancorder"]
        self.proc = subprocess.Popen(cmd + args, env=env or cancorder_env(), cwd=cwd,
                                     stdout=stdout, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self):
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern, timeout=20.0):
        """Wait for a stderr line matching ``pattern``; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}; log:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.2))

    def port(self, timeout=30.0):
        return int(self.wait_for(r"on TCP \S*:(\d+)", timeout).group(1))

    def terminate(self, timeout=15.0):
        """SIGTERM, then the exit status (the process must exit by itself)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self):
        stop_process(self.proc)
        self._reader.join(5)


class StreamClient:
    """A TCP client that decodes what it receives in a background thread."""

    def __init__(self, port, host="127.0.0.1", decoder=None):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.settimeout(None)  # here, not in the thread: a test may close it at once
        self.decoder = decoder or wire.StreamDecoder()
        self.frames = []
        self.raw = bytearray()
        self.error = None
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                self.raw += chunk
                frames = self.decoder.feed(chunk)
                with self._changed:
                    self.frames.extend(frames)
                    self._changed.notify_all()
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.closed.set()
            with self._changed:
                self._changed.notify_all()

    def wait_frames(self, count, timeout=20.0):
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.frames) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed.is_set():
                    raise AssertionError(f"got {len(self.frames)} of {count} frames "
                                         f"(error: {self.error})")
                self._changed.wait(min(remaining, 0.2))
        return list(self.frames)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)


def served_client(proc, port=None):
    """A StreamClient of a cancorder process, returned once the server logged it connected:
    the kernel completes a connection before the server's loop accepts it, and frames
    broadcast in between are not this client's (a test that sends at once would lose them)."""
    client = StreamClient(port or proc.port())
    local_port = client.sock.getsockname()[1]
    proc.wait_for(rf"client 127\.0\.0\.1:{local_port} connected")
    return client


def http_get(port, path, host="127.0.0.1"):
    """(status, body text) of a GET, error statuses included (metrics, /healthz)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def generated_frames(count, rate=10000.0, **settings):
    """The first ``count`` frames of ``cancorder gen`` with these TrafficSettings, as decoded
    records (t_us, id, flags, data), stamped at their due instants from a fixed start."""
    from cancorder.generator import Timeline, TrafficSettings

    settings.setdefault("seed", 1)
    timeline = Timeline(TrafficSettings(rate=rate, count=count, **settings))
    timeline.started, timeline.started_us = 0.0, 1_700_000_000_000_000
    stamps = [timeline.started_us + round(timeline.schedule.at(k) * 1e6) for k in range(count)]
    return [(stamp, can_id, flags, data) for stamp, (can_id, flags, data)
            in zip(stamps, timeline.frames(count))]
