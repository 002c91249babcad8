"""SIGINT and SIGTERM as a request to stop, so every way out runs the same clean shutdown.

Ctrl-C, ``kill`` and a service manager all end a server or a recording by closing files and
sockets properly instead of raising KeyboardInterrupt wherever the main thread happens to be
(for instance in the middle of a BLF writer's block).
"""
import contextlib
import signal
import threading


@contextlib.contextmanager
def _handling(handler):
    """Inside, ``handler`` receives SIGINT and SIGTERM; the previous handlers come back on exit.
    Only the main thread can install handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_on_signals(stop):
    """Inside, SIGINT/SIGTERM call ``stop(name)`` ("SIGINT" or "SIGTERM")."""
    return _handling(lambda signum, frame: stop(signal.Signals(signum).name))


def interrupt_startup():
    """Inside, until a command installs its clean stop, SIGINT and SIGTERM abandon start-up
    (raising Interrupted; the exit status is 0, as for a stop by signal later). A shell that
    starts a job in the background sets SIGINT to "ignore", and Python then installs no handler
    of its own: a SIGINT before ``stop_on_signals`` was lost, and the logger served for ever."""
    from .errors import Interrupted

    def handler(signum, frame):
        raise Interrupted(signum)

    return _handling(handler)
