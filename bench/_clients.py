"""Bench helper process: N TCP clients of one server, read in one select loop.

    python -m bench._clients PORT N BYTES_EACH

Prints one JSON line when every client got BYTES_EACH bytes: elapsed seconds from the first
byte. (bench.core (b); bench.serve has checking clients in C.)
"""
import json
import selectors
import socket
import sys
import time


def main():
    port, count, expected = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    selector = selectors.DefaultSelector()
    received = {}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = 0
    print("ready", flush=True)
    first = None
    remaining = count
    while remaining:
        for key, _ in selector.select(30):
            sock = key.fileobj
            data = sock.recv(1 << 20)
            if first is None:
                first = time.perf_counter()
            if not data:
                if expected == 0:  # a control run: nothing was to come
                    return
                raise SystemExit(f"server closed a client after {received[sock]} bytes")
            received[sock] += len(data)
            if received[sock] >= expected:
                selector.unregister(sock)
                remaining -= 1
    elapsed = time.perf_counter() - first
    result = {"elapsed": elapsed, "bytes": sum(received.values())}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
