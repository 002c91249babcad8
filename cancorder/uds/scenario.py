"""What is said on the bus: a workshop tester and one ECU, cycle after cycle.

A cycle is some OBD-II polling (functional requests, as a scan tool or a telematics unit does
between sessions) followed by a complete reprogramming session:

    10 03, TesterPresent (3E 80, functional) while idle time passes, 22 reads (VIN F190 and the
    part, serial and software numbers: multi-frame answers), 19 01 / 19 02, 85 02 and 28 03 01,
    10 02 (78 responsePending, then positive), 27 seed/key, 31 01 FF00 erase (several 78s),
    34 RequestDownload, 36 TransferData blocks (counter 01, 02 .. FF, 00 ..), 37, 31 01 FF01,
    28 00 01 and 85 01, 14 FF FF FF, 19 01 (zero DTCs now), 11 01, 10 01.

Faults are injected with probability ``error_rate`` per request, and the tester reacts as a real
one does: 21 busyRepeatRequest -> the identical request again; a wrong key -> 35 invalidKey -> a
new seed request; 71/72 on a transfer block -> the same block (same counter) again; a wrongly
counted block -> 73 wrongBlockSequenceCounter (the only way a 73 happens) -> the block with the
right counter; an ECU that needs longer -> 78s, each within P2* of the previous one.

The scenario produces messages; IsoTpLink frames them; the VirtualClock says when.
"""
import collections

from ..errors import DurationReached, SimulationError
from . import BOUNDARY, CYCLE, NOTE
from .ecu import (BUSY_REPEAT_REQUEST, CHECK_DEPENDENCIES_ROUTINE, DID_NAMES, ERASE_ROUTINE,
                  FLASH_START, GENERAL_PROGRAMMING_FAILURE, INVALID_KEY, NEGATIVE_RESPONSE,
                  NRC_NAMES, P2_SERVER_MAX, P2_STAR_SERVER_MAX, RESPONSE_PENDING, S3_SERVER,
                  SECURITY_LEVEL, TRANSFER_DATA_SUSPENDED, WRONG_BLOCK_SEQUENCE_COUNTER, Ecu,
                  dtc_text, negative, security_key)
from .isotp import Node
from .vehicle import BITMAP_PIDS, LIVE_PIDS, Vehicle

IDENTIFICATION_READS = (0xF190, 0xF187, 0xF189, 0xF18C, 0xF191, 0xF195)
TESTER_PRESENT = b"\x3E\x80"  # suppressPosRspMsgIndicationBit: no answer
TESTER_PRESENT_PERIOD = (1.8, 2.2)  # s, well inside S3
MAX_FAULTS_PER_REQUEST = 2  # then the request goes through (an ECU would lock out otherwise)
# Response delays (s): every first response frame starts within P2, every 78 is followed by
# the next response within P2*.
RESPONSE_DELAY = (0.002, 0.035)
PENDING_INTERVAL = (1.0, 2.5)
assert RESPONSE_DELAY[1] < P2_SERVER_MAX and PENDING_INTERVAL[1] < P2_STAR_SERVER_MAX
assert TESTER_PRESENT_PERIOD[1] < S3_SERVER


class Scenario:
    def __init__(self, config, clock, link, rng):
        self.config = config
        self.clock = clock
        self.link = link
        self.rng = rng
        self.vehicle = Vehicle(rng)
        self.ecu = Ecu(rng, config.block_size, self.vehicle)
        # Flow control each side grants as a receiver: a boot loader takes flash data in blocks
        # of BS frames with a small STmin; testers often take everything at once.
        self.tester = Node("tester", config.tester_id, rng.choice((0, 0, 4, 8)),
                           rng.choice((0.0, 0.002, 0.005, 0.010)))
        self.ecu_node = Node("ECU", config.ecu_id, rng.choice((8, 16, 32)),
                             rng.choice((0.0005, 0.001, 0.002)))
        self.functional_id = config.functional_id
        self.error_rate = config.error_rate
        # --duration counts time on the emitted timeline (wall-clock time when serving)
        self._end_us = None if config.duration is None else int(round(config.duration * 1e6))
        self._vehicle_seconds = 0.0
        self.stats = collections.Counter()

    # ---- the whole run ----

    def run(self):
        """The timeline: entries (t_us, FRAME, (can_id, flags, data)), (t_us, NOTE, text) and
        (t_us, CYCLE, number)."""
        cycle = 0
        try:
            while True:
                cycle += 1
                yield (self.clock.now_us, CYCLE, cycle)
                if cycle > 1:
                    self.ecu.new_drive_cycle()
                yield from self.obd_polling(cycle, self.rng.uniform(4.0, 8.0))
                yield from self.reprogramming(cycle)
                yield self._note(self._summary(cycle))
                self.stats.clear()
                if not self.config.loop:
                    return
        except DurationReached:
            return

    # ---- OBD-II polling ----

    def obd_polling(self, cycle, seconds):
        clock = self.clock
        yield self._note(f"cycle {cycle}: OBD-II polling on 0x{self.functional_id:X} "
                         f"(service 01 live data, 03 and 07 DTCs)")
        end = clock.scenario_seconds + seconds
        first = True
        while clock.scenario_seconds < end:
            yield from self._boundary()
            pids = (BITMAP_PIDS if first else ()) + LIVE_PIDS
            for pid in pids:
                yield from self.obd_request(bytes((0x01, pid)))
                self._think(0.015, 0.05)
            if first or self.rng.random() < 0.4:
                yield from self.obd_request(b"\x03")
                self._think(0.015, 0.05)
                yield from self.obd_request(b"\x07")
            first = False
            self._think(0.15, 0.4)

    def obd_request(self, request):
        yield from self.link.send(request, self.tester, self.ecu_node, can_id=self.functional_id)
        self.stats["obd requests"] += 1
        self._advance_vehicle()
        response = self.ecu.obd(request)
        if response is not None:
            self._think(0.005, 0.030)
            yield from self.link.send(response, self.ecu_node, self.tester)

    def _advance_vehicle(self):
        now = self.clock.scenario_seconds
        self.vehicle.advance(now - self._vehicle_seconds)
        self._vehicle_seconds = now

    # ---- the reprogramming session ----

    def reprogramming(self, cycle):
        cfg = self.config
        rng = self.rng
        yield self._note(f"cycle {cycle}: diagnostic session, tester 0x{cfg.tester_id:X} -> "
                         f"ECU 0x{cfg.ecu_id:X}")
        yield from self.step(b"\x10\x03", "extended session (10 03)")
        yield from self.idle(rng.uniform(3.0, 6.0))

        values = {}
        for did in IDENTIFICATION_READS:
            response = yield from self.step(b"\x22" + did.to_bytes(2, "big"))
            values[did] = response[3:].decode("ascii", "replace")
        yield self._note(f"identification: VIN {values[0xF190]}, "
                         + ", ".join(f"{DID_NAMES[d]} {values[d].strip()}"
                                     for d in IDENTIFICATION_READS[1:4]))
        count = yield from self.step(b"\x19\x01\xFF")
        records = yield from self.step(b"\x19\x02\xFF")
        codes = [dtc_text(int.from_bytes(records[i:i + 2], "big"))
                 for i in range(3, len(records), 4)]
        yield self._note(f"{int.from_bytes(count[4:6], 'big')} DTCs stored"
                         + (f": {', '.join(codes)}" if codes else ""))
        yield from self.idle(rng.uniform(2.0, 5.0))

        yield from self.step(b"\x85\x02", "DTC setting off (85 02), normal communication off "
                                          "(28 03 01)")
        yield from self.step(b"\x28\x03\x01")
        yield from self.step(b"\x10\x02", "programming session (10 02: the ECU answers "
                                          "responsePending first)")
        yield from self.security_access()

        size = (cfg.blocks - 1) * cfg.block_size + rng.randint(1, cfg.block_size)
        address = FLASH_START
        memory = b"\x44" + address.to_bytes(4, "big") + size.to_bytes(4, "big")
        yield from self.step(b"\x31\x01" + ERASE_ROUTINE.to_bytes(2, "big") + memory,
                             f"erasing {size:,} bytes at 0x{address:08X} (31 01 FF00)")
        response = yield from self.step(b"\x34\x00" + memory)
        length_size = response[1] >> 4
        max_block = int.from_bytes(response[2:2 + length_size], "big")
        yield from self.transfer(size, max_block - 2)
        yield from self.step(b"\x37", "transfer exit (37), check dependencies (31 01 FF01)")
        yield from self.step(b"\x31\x01" + CHECK_DEPENDENCIES_ROUTINE.to_bytes(2, "big"))
        yield from self.step(b"\x28\x00\x01", "communication and DTC setting back on, clear "
                                              "DTCs (14 FF FF FF)")
        yield from self.step(b"\x85\x01")
        yield from self.step(b"\x14\xFF\xFF\xFF")
        count = yield from self.step(b"\x19\x01\xFF")
        yield self._note(f"{int.from_bytes(count[4:6], 'big')} DTCs stored after clearing")
        yield from self.step(b"\x11\x01", "ECU reset (11 01)")
        self.vehicle.restart()
        self._think(0.5, 1.5)  # the ECU boots the new software
        yield from self.step(b"\x10\x01", "back to the default session (10 01): software "
                                          f"{self.ecu.software_version_text()}")

    def step(self, request, note=None):
        """One request of the session: expected to end positively."""
        yield from self._boundary()
        if note:
            yield self._note(note)
        self._think(0.005, 0.06)
        response = yield from self.request(request)
        if response is None or response[0] == NEGATIVE_RESPONSE:
            raise SimulationError(f"{request.hex(' ')} answered {response and response.hex(' ')}")
        return response

    def idle(self, seconds):
        """Time passes with nothing to ask: TesterPresent keeps the session open (S3)."""
        clock = self.clock
        end = clock.scenario_seconds + seconds
        while True:
            period = self.rng.uniform(*TESTER_PRESENT_PERIOD)
            if clock.scenario_seconds + period > end:
                break
            clock.wait(period)
            yield from self.request(TESTER_PRESENT, functional=True)
        clock.wait(max(0.0, end - clock.scenario_seconds))

    def security_access(self):
        yield self._note(f"security access (27 {SECURITY_LEVEL:02X} / 27 {SECURITY_LEVEL + 1:02X})")
        wrong_keys = 0
        while True:
            response = yield from self.step(bytes((0x27, SECURITY_LEVEL)))
            seed = response[2:6]
            self._think(0.01, 0.05)  # the tester computes the key
            request = bytes((0x27, SECURITY_LEVEL + 1)) + security_key(seed)
            response = yield from self.request(
                request, tester_fault=_wrong_key if wrong_keys < MAX_FAULTS_PER_REQUEST else None)
            if response[0] == 0x67:
                yield self._note(f"unlocked (seed {seed.hex().upper()}, key "
                                 f"{request[2:].hex().upper()})")
                return
            if response[2] != INVALID_KEY:
                raise SimulationError(f"security access answered {response.hex(' ')}")
            yield self._note("35 invalidKey: the tester asks for a new seed")
            wrong_keys += 1
            self._think(0.05, 0.2)

    def transfer(self, size, block_data):
        """36 TransferData until ``size`` bytes are down; the counter starts at 1, wraps FF->00."""
        blocks = -(-size // block_data)
        yield self._note(f"download (34): {size:,} bytes in {blocks} blocks of up to "
                         f"{block_data} bytes (36 TransferData)")
        counter = 1
        sent = 0
        while sent < size:
            yield from self._boundary()
            request = bytes((0x36, counter)) + self.rng.randbytes(min(block_data, size - sent))
            wrong = 0
            while True:
                self._think(0.001, 0.005)
                # after a 73 the tester knows the right counter: no second miscount
                response = yield from self.request(
                    request, tester_fault=None if wrong else _skip_counter)
                if response[0] == 0x76:
                    break
                if response[2] != WRONG_BLOCK_SEQUENCE_COUNTER:
                    raise SimulationError(f"TransferData answered {response.hex(' ')}")
                yield self._note(f"73 wrongBlockSequenceCounter: the tester sends block "
                                 f"{counter:02X} with the right counter")
                wrong += 1
            self.stats["blocks"] += 1
            self.stats["bytes"] += len(request) - 2
            sent += len(request) - 2
            counter = (counter + 1) & 0xFF
        yield self._note(f"{sent:,} bytes transferred")

    # ---- one request and what follows ----

    def request(self, request, functional=False, tester_fault=None):
        """The tester sends ``request`` and the ECU answers; returns the final response (None
        when the ECU sends none).

        With probability error_rate one fault is injected: the ECU refuses with 21 (71 or 72
        for a transfer block) before acting on it, and the tester sends the identical request
        again; or the ECU needs longer (78s); or, where ``tester_fault`` makes a faulty variant
        of the request (a wrong key, a skipped block counter), the tester sends that and the
        ECU's genuine answer (35, 73) goes back to the caller.
        """
        sid = request[0]
        faults = 0
        while True:
            fault = None
            if not functional and faults < MAX_FAULTS_PER_REQUEST and self._fault():
                kinds = (TRANSFER_DATA_SUSPENDED, GENERAL_PROGRAMMING_FAILURE) if sid == 0x36 \
                    else (BUSY_REPEAT_REQUEST,)
                kinds += (RESPONSE_PENDING,) + ((_TESTER_FAULT,) if tester_fault else ())
                fault = self.rng.choice(kinds)
                faults += 1
            sent = tester_fault(self.rng, request) if fault is _TESTER_FAULT else request
            yield from self.link.send(sent, self.tester, self.ecu_node,
                                      can_id=self.functional_id if functional else None)
            self.stats["requests"] += 1
            if fault in (BUSY_REPEAT_REQUEST, TRANSFER_DATA_SUSPENDED, GENERAL_PROGRAMMING_FAILURE):
                # The ECU refuses before acting on the request: nothing changed its state.
                yield from self.respond(negative(sid, fault))
                yield self._note(f"{fault:02X} {NRC_NAMES[fault]} on {request[:3].hex(' ')}: "
                                 "the tester sends the same request again")
                self.stats[f"nrc {fault:02X}"] += 1
                self._think(0.01, 0.1)
                tester_fault = None  # the repeat is the identical request
                continue
            answer = self.ecu.handle(sent)
            busy = answer.busy
            if fault == RESPONSE_PENDING:
                busy += self.rng.uniform(0.1, 2.0)  # this time the ECU needs longer
            if answer.response is not None and answer.response[0] == NEGATIVE_RESPONSE:
                self.stats[f"nrc {answer.response[2]:02X}"] += 1
            yield from self.respond(answer.response, busy)
            return answer.response

    def respond(self, response, busy=0.0):
        """The ECU's answer within P2; while it is busy, 78 responsePending within P2 and then
        again before each P2* runs out; the final answer within P2* of the last 78."""
        if response is None:
            return
        rng = self.rng
        clock = self.clock
        clock.wait(rng.uniform(*RESPONSE_DELAY))
        if busy > RESPONSE_DELAY[1]:
            pending = negative(_request_sid(response), RESPONSE_PENDING)
            yield from self.link.send(pending, self.ecu_node, self.tester)
            self.stats["nrc 78"] += 1
            remaining = busy
            while True:
                interval = rng.uniform(*PENDING_INTERVAL)
                if remaining <= interval:
                    break
                clock.wait(interval)
                remaining -= interval
                yield from self.link.send(pending, self.ecu_node, self.tester)
                self.stats["nrc 78"] += 1
            clock.wait(remaining)
        yield from self.link.send(response, self.ecu_node, self.tester)

    # ---- helpers ----

    def _summary(self, cycle):
        stats = self.stats
        nrcs = sorted(key for key in stats if key.startswith("nrc "))
        faults = ", ".join(f"{key[4:]} x{stats[key]}" for key in nrcs) or "none"
        return (f"cycle {cycle} complete: {stats['obd requests']} OBD and {stats['requests']} "
                f"UDS requests, {stats['blocks']} blocks ({stats['bytes']:,} bytes); negative "
                f"responses: {faults}")

    def _fault(self):
        return self.error_rate > 0 and self.rng.random() < self.error_rate

    def _think(self, low, high):
        self.clock.wait(self.rng.uniform(low, high))

    def _note(self, text):
        return (self.clock.now_us, NOTE, text)

    def _boundary(self):
        """Between two exchanges: stop here once --duration is reached, and say where an
        exchange ends, so that the timeline can leave out one that --duration would cut."""
        if self._end_us is not None and self.clock.now_us >= self._end_us:
            raise DurationReached()
        yield (self.clock.now_us, BOUNDARY, None)


_TESTER_FAULT = "tester"


def _wrong_key(rng, request):
    """The tester's fault: a key computed for another ECU variant (the ECU rightly says 35)."""
    return request[:2] + bytes(b ^ rng.randint(1, 255) for b in request[2:])


def _skip_counter(rng, request):
    """The tester's fault: a block counter one ahead (the ECU rightly says 73)."""
    return bytes((0x36, (request[1] + 1) & 0xFF)) + request[2:]


def _request_sid(response):
    """The service id a response answers (a negative response names it in its second byte)."""
    if response[0] == NEGATIVE_RESPONSE:
        return response[1]
    return response[0] - 0x40
