"""The source thread's loop: read, hand every batch to the consumers, until the source is lost,
ends or the bus stops.

    source read (bytes of records) --> broadcaster.submit, sink.put, ... (the consumers, in order)

Compiled, a wake-up runs no interpreter code of its own: the loop, the heartbeat and the
hand-over are C, and with a source whose read is compiled too (SlcanReader.read) nothing between
the adapter and the clients' sockets is interpreted (issue 24). The bus (server.py) handles what
``run`` returns for: a lost source (reopened), its end (drained), a stop.

Plain Python; pump.pxd types it and setup.py compiles it when it can.
"""
import time

#: what ``run`` returned for
STOPPED = 0
LOST = 1  # ``lost`` holds the exception
ENDED = 2  # the source said None: a finished file


class Pump:
    """``consumers``: callables taking bytes of records; ``lost_error``: the exception class a
    read raises for a lost source; ``stopped``: a callable, true once the bus stops.
    ``heartbeat`` is the time.monotonic() the loop last came round (the watchdog reads it),
    ``last_frame`` that of the last batch (0.0: none yet)."""

    def __init__(self, consumers, lost_error, stopped):
        self.consumers = list(consumers)
        self.lost_error = lost_error
        self.stopped = stopped
        self.heartbeat = 0.0
        self.last_frame = 0.0
        self.lost = None

    def run(self, read, timeout):
        """Loop on ``read(timeout)`` (bytes, b"" for nothing, None at the end) until the bus
        stops (STOPPED), the read raises ``lost_error`` (LOST) or returns None (ENDED)."""
        consumers = self.consumers
        count = len(consumers)
        stopped = self.stopped
        lost_error = self.lost_error
        self.lost = None
        while not stopped():
            self.heartbeat = time.monotonic()
            try:
                records = read(timeout)
            except lost_error as exc:
                self.lost = exc
                return LOST
            if records is None:
                return ENDED
            if records:
                self.last_frame = time.monotonic()
                i = 0
                while i < count:
                    consumers[i](records)
                    i += 1
        return STOPPED
