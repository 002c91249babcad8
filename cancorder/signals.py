"""SIGINT and SIGTERM as a request to stop, so every way out runs the same clean shutdown.

Ctrl-C, ``kill`` and a service manager all end a server or a recording by closing files and
sockets properly instead of raising KeyboardInterrupt wherever the main thread happens to be
(for instance in the middle of a BLF writer's block).
"""
import contextlib
import signal
import threading


@contextlib.contextmanager
def stop_on_signals(stop):
    """Inside, SIGINT/SIGTERM call ``stop(name)`` ("SIGINT" or "SIGTERM"); handlers are restored
    on exit. Only the main thread can install handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
