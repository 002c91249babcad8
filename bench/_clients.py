"""Bench helper process: N TCP clients of one server, read in one select loop.

    python -m bench._clients PORT N BYTES_EACH [--latency]

Prints one JSON line when every client got BYTES_EACH bytes: elapsed seconds from the first
byte, and with --latency the delay of every frame (read time - the frame's own timestamp).
"""
import json
import selectors
import socket
import sys
import time


def main():
    port, count, expected = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    latency = "--latency" in sys.argv
    if latency:
        sys.path.insert(0, ".")
        from cancorder._fast import wire
    selector = selectors.DefaultSelector()
    received = {}
    decoders = {}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = 0
        if latency:
            decoders[sock] = wire.StreamDecoder()
    print("ready", flush=True)
    delays = []
    first = None
    remaining = count
    while remaining:
        for key, _ in selector.select(30):
            sock = key.fileobj
            data = sock.recv(1 << 20)
            now = time.time()
            if first is None:
                first = time.perf_counter()
            if not data:
                if expected == 0:  # a control run: nothing was to come
                    return
                raise SystemExit(f"server closed a client after {received[sock]} bytes")
            received[sock] += len(data)
            if latency:
                for frame in decoders[sock].feed(data):
                    delays.append(now - frame[0] / 1e6)
            if received[sock] >= expected:
                selector.unregister(sock)
                remaining -= 1
    elapsed = time.perf_counter() - first
    result = {"elapsed": elapsed, "bytes": sum(received.values())}
    if latency:
        delays.sort()
        result["p50_ms"] = delays[len(delays) // 2] * 1000
        result["p99_ms"] = delays[int(len(delays) * 0.99)] * 1000
        result["max_ms"] = delays[-1] * 1000
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
