"""Frames of ``cancorder gen`` (generator.py), served like a bus: known traffic at an exact
rate and count, so that any client (and ``dump --check``) can be tested against it.

Like the simulator, it waits for the first client by default and then runs its whole count
(a client that leaves does not pause it: the frames it misses are a checker's to count).
At the end ``read`` returns None and the server stops once the clients have everything.
"""
import logging
import time

from .base import MAX_BATCH, Source, first_client

log = logging.getLogger("cancorder.source")


class GenSource(Source):
    def __init__(self, timeline, wait_for_client=True, record_filter=None):
        super().__init__(record_filter)
        self.timeline = timeline
        self.wait_for_client = wait_for_client
        self.fd = timeline.settings.fd
        self._clients = None
        self.frames = 0

    @property
    def description(self):
        return f"the traffic generator ({self.timeline.settings.describe()})"

    def txt(self):
        return {"interface": "virtual", "channel": "gen",
                "data_mode": self.timeline.settings.data_mode}

    def use_clients(self, gate):
        self._clients = gate

    def open(self):
        pass  # a generator is never lost

    def _read(self, timeout):
        timeline = self.timeline
        deadline = time.monotonic() + timeout
        if timeline.started is None:
            if self.wait_for_client and not first_client(self._clients, deadline):
                return b""
            timeline.start()
            log.info(f"{self.description}: started")
        if timeline.finished:
            return None
        if timeline.schedule.rate == 0 and self._clients is not None:
            # as fast as the clients take it, not faster (a client that keeps up loses nothing)
            if not self._clients.wait_drained(max(0.0, deadline - time.monotonic())):
                return b""
        n = timeline.due_now(MAX_BATCH)
        if n == 0:
            wait = min(timeline.pause(), deadline - time.monotonic())
            if wait > 0:
                time.sleep(wait)
            n = timeline.due_now(MAX_BATCH)
            if n == 0:
                return b""
        self.frames += n
        return timeline.records(n)

    def counters(self):
        counters = super().counters()
        counters.frames = self.frames - counters.filtered
        return counters

    def close(self):
        pass
