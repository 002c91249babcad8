"""Frames from the UDS simulator (``cancorder mock-uds``), released on the wall clock.

The simulator computes its traffic on a virtual timeline (cancorder.uds); this source hands each
frame over when its instant is due and stamps it with that instant, so the records carry exactly
the simulated timing however the operating system schedules the threads.
"""
import logging
import time

from .._fast import wire
from ..uds import CYCLE, FRAME
from ..uds.clock import WallPacer
from ..uds.simulation import timeline
from .base import MAX_BATCH, Source, first_client

log = logging.getLogger("cancorder.source")


class UdsSimulatorSource(Source):
    """Serves the simulator's timeline.

    ``wait_for_client``: the simulation runs only while a client is connected (the default of
    mock-uds): a cycle (OBD polling + session) starts when one is, re-anchored to that moment;
    when the last one leaves, the cycle in progress is abandoned (nobody would see it) and the
    next client gets a cycle from its start: the next one, or with --no-loop the only one
    again. Otherwise it runs free (--async). ``narrate(text)`` receives the scenario's notes
    when they are due (-v). When the timeline ends (--no-loop, --duration) ``read`` returns
    None and the server sees that the clients get everything before it stops.
    """

    def __init__(self, config, wait_for_client=True, narrate=None, record_filter=None):
        super().__init__(record_filter)
        self.config = config
        self.wait_for_client = wait_for_client
        self.narrate = narrate
        self._timeline = None
        self._next = None
        self._pacer = WallPacer()
        self._clients = None
        self._in_cycle = False
        self.frames = 0

    @property
    def description(self):
        cfg = self.config
        return (f"the UDS simulator (tester 0x{cfg.tester_id:X}, ECU 0x{cfg.ecu_id:X}, "
                f"{'CAN FD' if cfg.fd else 'classic CAN'}, seed {cfg.seed})")

    def txt(self):
        cfg = self.config
        width = 8 if cfg.extended else 3
        txt = {"interface": "virtual", "channel": "mock-uds", "bitrate": str(cfg.bitrate),
               "tester_id": f"0x{cfg.tester_id:0{width}X}", "ecu_id": f"0x{cfg.ecu_id:0{width}X}"}
        if cfg.fd:
            txt["data_bitrate"] = str(cfg.data_bitrate)
        return txt

    def use_clients(self, gate):
        self._clients = gate

    def open(self):
        if self._timeline is None:  # a simulator is never lost: open once, keep going
            self._timeline = timeline(self.config)
            self._next = next(self._timeline, None)

    def _read(self, timeout):
        deadline = time.monotonic() + timeout
        pacer = self._pacer
        records = []
        while len(records) < MAX_BATCH:
            entry = self._next
            if entry is None:
                if records:
                    break
                return None  # the simulation is complete
            t_us, kind, value = entry
            if kind == CYCLE:
                if not self._start_cycle(t_us, deadline):
                    break
            elif pacer.remaining(t_us) > 0:
                left = deadline - time.monotonic()
                if records or left <= 0:
                    break
                pacer.sleep_until(t_us, left)
                continue
            elif self._in_cycle and self.wait_for_client and self._clients is not None and \
                    self._clients.count() == 0:
                self._abandon_cycle()
                if records:
                    break
                continue
            elif kind == FRAME:
                can_id, flags, data = value
                records.append(wire.pack_frame(pacer.unix_time_us(t_us), can_id, flags, data))
            elif self.narrate is not None:
                self.narrate(value)
            self._next = next(self._timeline, None)
        self.frames += len(records)
        return b"".join(records)

    def _start_cycle(self, t_us, deadline):
        """False while a cycle has to wait for its first client."""
        gate = self._clients
        waited = self.wait_for_client and gate is not None and gate.count() == 0
        if waited and not first_client(gate, deadline):
            return False
        if waited or not self._pacer.anchored:
            self._pacer.anchor(t_us)  # after a wait the session starts now, not when it was due
        self._in_cycle = True
        return True

    def _abandon_cycle(self):
        """The last client left mid-cycle: skip to the start of the next cycle (computed, not
        waited for), or with --no-loop start the one cycle again, and wait there."""
        log.info(
            "no client: the simulation pauses; the next client gets a cycle from its start")
        self._in_cycle = False
        entry = next(self._timeline, None)
        while entry is not None and entry[1] != CYCLE:
            entry = next(self._timeline, None)
        if entry is None and not self.config.loop:
            self._timeline = timeline(self.config)  # the same seed: the same cycle
            entry = next(self._timeline, None)
        self._next = entry

    def counters(self):
        counters = super().counters()
        filtered = counters.filtered
        counters.frames = self.frames - filtered
        return counters

    def close(self):
        pass  # nothing to release; the timeline continues if the server opens it again
