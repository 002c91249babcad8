"""Inside a private network namespace (no DNS server can be reached, nothing leaves the
machine): serve with --mqtt naming a host that does not resolve. Prints one JSON object."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.emulators.slcan_adapter import SlcanEmulator, build_lines  # noqa: E402
from tests.helpers import CancorderProcess, StreamClient, free_port, http_get  # noqa: E402

emulator = SlcanEmulator()
metrics_port = free_port()
serve = CancorderProcess(["serve", "-i", "slcan", "-c", emulator.url, "--no-zeroconf",
                          "--mqtt", "mqtt://no-such-broker.invalid/cancorder/x/y",
                          "--metrics", f"127.0.0.1:{metrics_port}"])
try:
    client = StreamClient(serve.port())
    emulator.wait_open()
    emulator.send_lines(b"".join(build_lines(3000)))
    try:
        frames = len(client.wait_frames(3000))
    except AssertionError as exc:  # what the server said is what explains it
        raise AssertionError(f"{exc}; the server's log:\n" + "\n".join(serve.lines)) from None
    serve.wait_for("unknown host")
    time.sleep(4.0)  # retries with backoff say nothing new
    page = http_get(metrics_port, "/metrics")[1]
    attempts = [float(line.split()[-1]) for line in page.splitlines()
                if line.startswith("cancorder_mqtt_connect_attempts{")]
    client.close()
    code = serve.terminate()
finally:
    serve.stop()
    emulator.close()
print(json.dumps({"frames": frames, "exit": code, "attempts": attempts,
                  "lines": [line for line in serve.lines if "MQTT broker" in line]}))
