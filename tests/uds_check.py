"""Checks that simulated diagnostic traffic is what a real tester and ECU could have produced.

Three independent readings of the same frames:

1. a strict ISO 15765-2 checker written here: frame lengths, padding, SF/FF (and their
   escapes), a flow-control frame after every FF and after every block of BS frames, CF
   numbering, CF spacing against the STmin each FC declared, nothing multi-frame on the
   functional id, no message left unfinished;
2. can-isotp's own receiver (the `isotp` package) reassembling every direction, which must
   report no error and produce exactly the same messages;
3. udsoncan rebuilding every UDS request from its parameters (the bytes must match) and
   interpreting every response, plus the rules of the scenario: request/response pairing, P2
   and P2* timing, S3 (TesterPresent), the tester's reaction to each negative response, the
   transfer's block counter (01.., FF -> 00) and total size, seed/key, the session's order.

Nothing here asks the simulator what it meant: only the shared secret of the seed/key algorithm
is imported (a tester has to know it too).
"""
import collections
import dataclasses
import logging

from cancorder.uds.ecu import security_key

P2 = 0.050  # s (ISO 14229-2 default P2server_max, as the issue asks)
P2_STAR = 5.0  # s
S3 = 5.0  # s
FD_LENGTHS = (8, 12, 16, 20, 24, 32, 48, 64)
OBD_PIDS = {0x00, 0x05, 0x0C, 0x0D, 0x0F, 0x10, 0x11, 0x1F, 0x20, 0x2F, 0x40, 0x46}

# What the session must contain, in this order (service, sub-function or DID, or None).
SESSION_ORDER = [
    (0x10, 0x03), (0x22, 0xF190), (0x19, 0x01), (0x19, 0x02), (0x85, 0x02), (0x28, 0x03),
    (0x10, 0x02), (0x27, 0x01), (0x27, 0x02), (0x31, 0xFF00), (0x34, None), (0x36, None),
    (0x37, None), (0x31, 0xFF01), (0x28, 0x00), (0x85, 0x01), (0x14, None), (0x19, 0x01),
    (0x11, 0x01), (0x10, 0x01),
]
DID_LENGTHS = {0xF187: 11, 0xF189: 8, 0xF18C: 14, 0xF190: 17, 0xF191: 11, 0xF195: 8}


@dataclasses.dataclass(frozen=True)
class Frame:
    t_us: int
    can_id: int
    extended: bool
    fd: bool
    data: bytes


@dataclasses.dataclass
class Expect:
    """How the run was configured (what the traffic must follow)."""

    tester_id: int = 0x7E0
    ecu_id: int = 0x7E8
    functional_id: int = 0x7DF
    extended: bool = False
    fd: bool = False
    padding: int = 0xCC
    speed: float = 1.0
    error_rate: float = 0.05
    block_size: int = 128
    time_tolerance_us: int = 0  # log formats that store timestamps with rounding

    @classmethod
    def of(cls, config, **extra):
        return cls(tester_id=config.tester_id, ecu_id=config.ecu_id,
                   functional_id=config.functional_id, extended=config.extended, fd=config.fd,
                   padding=config.padding, speed=config.speed, error_rate=config.error_rate,
                   block_size=config.block_size, **extra)


@dataclasses.dataclass
class Message:
    sender: str  # "tester", "ecu" or "functional"
    t_first: int
    t_last: int
    payload: bytes


# ---- frames from the places they come from ----

def frames_from_timeline(entries):
    from cancorder.uds import FRAME

    return [Frame(t, value[0], bool(value[1] & 1), bool(value[1] & 2), bytes(value[2]))
            for t, kind, value in entries if kind == FRAME]


def frames_from_records(records):
    """Decoder tuples (timestamp_us, can_id, flags, data), as a client receives them."""
    return [Frame(t, can_id, bool(flags & 1), bool(flags & 2), bytes(data))
            for t, can_id, flags, data in records]


def frames_from_messages(messages):
    """python-can Messages (a log file read back)."""
    return [Frame(int(round(m.timestamp * 1e6)), m.arbitration_id, m.is_extended_id, m.is_fd,
                  bytes(m.data)) for m in messages]


# ---- 1. strict ISO-TP ----

def _padded_length(n, fd):
    if n <= 8 or not fd:
        return 8
    return next(length for length in FD_LENGTHS if length >= n)


def _st_min_us(value):
    if value <= 0x7F:
        return value * 1000
    assert 0xF1 <= value <= 0xF9, f"reserved STmin 0x{value:02X}"
    return (value - 0xF0) * 100


class IsoTpStats(collections.Counter):
    pass


def check_isotp(frames, expect):
    """Reassemble every message, asserting ISO 15765-2 on every frame. Returns (messages, stats)."""
    names = {expect.tester_id: "tester", expect.ecu_id: "ecu", expect.functional_id: "functional"}
    peer = {"tester": "ecu", "ecu": "tester"}
    tx_dl = 64 if expect.fd else 8
    sf_max = 62 if expect.fd else 7
    pad = expect.padding
    open_rx = {}  # sender -> state of its multi-frame message in progress
    messages = []
    stats = IsoTpStats()
    last_t = None
    for index, f in enumerate(frames):
        where = f"frame {index} ({f.can_id:X}#{f.data.hex().upper()} at {f.t_us} us)"
        assert f.can_id in names, f"{where}: an id nobody in the session uses"
        assert f.extended == expect.extended, f"{where}: wrong id width"
        assert f.fd == expect.fd, f"{where}: {'classic' if expect.fd else 'FD'} frame in a " \
                                  f"{'FD' if expect.fd else 'classic'} session"
        if expect.fd:
            assert len(f.data) in FD_LENGTHS, f"{where}: length {len(f.data)} (padding makes 8+)"
        else:
            assert len(f.data) == 8, f"{where}: DLC {len(f.data)}, padding makes every frame 8"
        if last_t is not None:
            assert f.t_us > last_t - expect.time_tolerance_us, f"{where}: time went backwards"
        last_t = f.t_us
        sender = names[f.can_id]
        data = f.data
        kind = data[0] >> 4
        if kind == 0:  # single frame
            assert sender not in open_rx, f"{where}: SF interrupts a multi-frame message"
            if data[0] & 0x0F:
                n, header = data[0] & 0x0F, 1
                assert n <= 7, f"{where}: SF_DL {n}"
                assert len(data) == 8, f"{where}: SF_DL in the low nibble needs CAN_DL 8"
            else:
                assert expect.fd, f"{where}: SF escape on classic CAN"
                n, header = data[1], 2
                assert 8 <= n <= sf_max, f"{where}: SF escape with SF_DL {n}"
                stats["sf escape"] += 1
            assert len(data) == _padded_length(header + n, expect.fd), \
                f"{where}: not the shortest padded frame for {n} bytes"
            assert set(data[header + n:]) <= {pad}, f"{where}: padding is not 0x{pad:02X}"
            messages.append(Message(sender, f.t_us, f.t_us, bytes(data[header:header + n])))
            stats["sf"] += 1
        elif kind == 1:  # first frame
            assert sender != "functional", f"{where}: multi-frame on the functional id"
            assert sender not in open_rx, f"{where}: FF interrupts a multi-frame message"
            n = ((data[0] & 0x0F) << 8) | data[1]
            header = 2
            if n == 0:
                n = int.from_bytes(data[2:6], "big")
                header = 6
                assert n > 4095, f"{where}: FF escape for {n} bytes (only above 4095)"
                stats["ff escape"] += 1
            assert n > sf_max, f"{where}: FF_DL {n} fits a single frame"
            assert len(data) == tx_dl, f"{where}: FF must use the full TX_DL {tx_dl}"
            open_rx[sender] = {"n": n, "data": bytearray(data[header:]), "seq": 1,
                               "awaiting_fc": True, "t_first": f.t_us, "fcs": 0}
            stats["ff"] += 1
        elif kind == 3:  # flow control, from the receiver of the message in progress
            assert sender != "functional", f"{where}: FC on the functional id"
            rx = open_rx.get(peer[sender])
            assert rx is not None and rx["awaiting_fc"], f"{where}: FC nobody waits for"
            assert data[0] == 0x30, f"{where}: flow status {data[0] & 0x0F} (only CTS expected)"
            assert len(data) == 8 and set(data[3:]) <= {pad}, f"{where}: FC padding"
            rx.update(awaiting_fc=False, block=data[1], left=data[1] or None,
                      st_min=_st_min_us(data[2]), last_cf=None)
            rx["fcs"] += 1
            stats["fc"] += 1
            stats[f"fc bs {data[1]} stmin 0x{data[2]:02X}"] += 1
        elif kind == 2:  # consecutive frame
            rx = open_rx.get(sender)
            assert rx is not None, f"{where}: CF without a FF"
            assert not rx["awaiting_fc"], f"{where}: CF before the receiver's flow control"
            assert data[0] & 0x0F == rx["seq"], \
                f"{where}: sequence number {data[0] & 0x0F}, expected {rx['seq']}"
            if rx["seq"] == 0:
                stats["cf sequence wrapped"] += 1
            rx["seq"] = (rx["seq"] + 1) & 0x0F
            if rx["last_cf"] is not None:
                gap = f.t_us - rx["last_cf"]
                assert gap >= rx["st_min"] - expect.time_tolerance_us, \
                    f"{where}: CF {gap} us after the previous one, STmin is {rx['st_min']} us"
                stats["cf gaps checked"] += 1
            rx["last_cf"] = f.t_us
            remaining = rx["n"] - len(rx["data"])
            if remaining > tx_dl - 1:
                assert len(data) == tx_dl, f"{where}: a CF that is not the last has TX_DL"
                rx["data"] += data[1:]
            else:
                assert len(data) == _padded_length(1 + remaining, expect.fd), \
                    f"{where}: last CF is not the shortest padded frame"
                assert set(data[1 + remaining:]) <= {pad}, f"{where}: padding"
                rx["data"] += data[1:1 + remaining]
            stats["cf"] += 1
            if len(rx["data"]) >= rx["n"]:
                messages.append(Message(sender, rx["t_first"], f.t_us, bytes(rx["data"])))
                del open_rx[sender]
            elif rx["left"] is not None:
                rx["left"] -= 1
                if rx["left"] == 0:
                    rx["awaiting_fc"] = True  # the next block needs the next FC
        else:
            raise AssertionError(f"{where}: PCI type {kind}")
    assert not open_rx, f"messages left unfinished: {list(open_rx)}"
    return messages, stats


# ---- 2. can-isotp ----

def reassemble_with_can_isotp(frames, expect):
    """Every message as can-isotp's receiver sees it: [(sender, payload)]. Asserts no error."""
    import isotp

    errors = []
    params = {"tx_data_length": 64 if expect.fd else 8, "can_fd": expect.fd,
              "max_frame_size": 1 << 24, "listen_mode": True, "tx_padding": expect.padding,
              "rx_consecutive_frame_timeout": 60000, "rx_flowcontrol_timeout": 60000,
              "logger_name": "tests.uds_check.isotp"}
    # can-isotp also logs every error it reports (errors, asserted empty below, is the record)
    # and logs the other direction's flow control, which a listening receiver ignores.
    logging.getLogger("tests.uds_check.isotp").setLevel(logging.CRITICAL)
    fixed = expect.extended and expect.tester_id >> 16 == 0x18DA and expect.ecu_id >> 16 == 0x18DA
    if fixed:
        tester_sa, ecu_sa = expect.tester_id & 0xFF, expect.ecu_id & 0xFF
        mode = isotp.AddressingMode.NormalFixed_29bits
        addresses = {
            # receiver of the ECU's answers: the tester (source F1, target 10 -> rx 18DAF110)
            "ecu": isotp.Address(mode, source_address=tester_sa, target_address=ecu_sa),
            "tester": isotp.Address(mode, source_address=ecu_sa, target_address=tester_sa),
            # functional 18DB33F1: target 33 (every OBD ECU), source F1
            "functional": isotp.Address(mode, source_address=(expect.functional_id >> 8) & 0xFF,
                                        target_address=expect.functional_id & 0xFF),
        }
    else:
        mode = isotp.AddressingMode.Normal_29bits if expect.extended \
            else isotp.AddressingMode.Normal_11bits
        addresses = {
            "ecu": isotp.Address(mode, txid=expect.tester_id, rxid=expect.ecu_id),
            "tester": isotp.Address(mode, txid=expect.ecu_id, rxid=expect.tester_id),
            "functional": isotp.Address(mode, txid=expect.ecu_id, rxid=expect.functional_id),
        }
    queue = collections.deque()
    layers = {}
    for sender, address in addresses.items():
        layers[sender] = isotp.TransportLayerLogic(
            rxfn=lambda timeout: queue.popleft() if queue else None, txfn=_no_transmit,
            address=address, error_handler=errors.append, params=params)
    received = []
    for f in frames:
        msg = isotp.CanMessage(arbitration_id=f.can_id, data=f.data, extended_id=f.extended,
                               is_fd=f.fd, bitrate_switch=f.fd)
        for sender, layer in layers.items():
            queue.append(msg)
            layer.process()
            queue.clear()
            while layer.available():
                received.append((sender, bytes(layer.recv())))
    assert not errors, f"can-isotp reported: {errors[:5]}"
    return received


def _no_transmit(msg):
    raise AssertionError("a listen-mode receiver transmitted")


# ---- 3. UDS and the scenario ----

@dataclasses.dataclass
class Exchange:
    request: Message
    responses: list

    @property
    def final(self):
        return self.responses[-1].payload if self.responses else None


def pair_exchanges(messages):
    exchanges = []
    for m in messages:
        if m.sender in ("tester", "functional"):
            exchanges.append(Exchange(m, []))
        else:
            assert exchanges, f"the ECU spoke first: {m.payload.hex(' ')}"
            exchanges[-1].responses.append(m)
    return exchanges


def check_traffic(frames, expect):
    """All three readings; returns a Counter of what was seen (tests assert on it)."""
    messages, stats = check_isotp(frames, expect)
    isotp_view = reassemble_with_can_isotp(frames, expect)
    assert isotp_view == [(m.sender, m.payload) for m in messages], \
        "can-isotp reassembled different messages"
    seen = collections.Counter(stats)
    seen["messages"] = len(messages)
    check_uds(pair_exchanges(messages), expect, seen)
    return seen


def check_uds(exchanges, expect, seen):
    import udsoncan
    from udsoncan import services

    speed = expect.speed
    tol = expect.time_tolerance_us
    p2_us = P2 * 1e6 / speed + tol
    p2_star_us = P2_STAR * 1e6 / speed + tol
    s3_us = S3 * 1e6 / speed + tol
    did_config = {did: udsoncan.AsciiCodec(n) for did, n in DID_LENGTHS.items()}

    # the tester's next physical request after each exchange (its reaction to an answer)
    next_physical = {}
    following = None
    for ex in reversed(exchanges):
        next_physical[id(ex)] = following
        if ex.request.sender == "tester":
            following = ex.request.payload
    rejected_seed = None
    session = "default"
    session_end = None  # when the last exchange in a non-default session ended
    order = []
    seed = None
    download = None
    expected_counter = None
    last_obd = {}
    for index, ex in enumerate(exchanges):
        req = ex.request.payload
        sid = req[0]
        where = f"exchange {index} ({req[:8].hex(' ')})"
        # ---- timing: P2 for the first answer, P2* after each 78 ----
        previous_end = ex.request.t_last
        for r in ex.responses:
            limit = p2_us if previous_end == ex.request.t_last else p2_star_us
            assert r.t_first - previous_end <= limit, \
                f"{where}: answer {r.t_first - previous_end} us after, limit {limit:.0f} us"
            previous_end = r.t_last
        # ---- S3: in a non-default session the tester never stays silent for S3 ----
        if session != "default" and session_end is not None:
            assert ex.request.t_first - session_end <= s3_us, \
                f"{where}: {ex.request.t_first - session_end} us without a request (S3)"
        if ex.request.sender == "functional":
            _check_functional(ex, where, seen, last_obd)
            session_end = ex.request.t_last if session != "default" else session_end
            continue
        # ---- a physical UDS request: udsoncan must build the same bytes ----
        assert _rebuild_request(req, did_config) == req, f"{where}: udsoncan builds it otherwise"
        assert ex.responses, f"{where}: no answer"
        for r in ex.responses[:-1]:
            assert r.payload == bytes((0x7F, sid, 0x78)), \
                f"{where}: only 78 responsePending may precede the final answer"
            seen[f"78 on {sid:02X}"] += 1
        final = ex.final
        assert final != bytes((0x7F, sid, 0x78)), f"{where}: ends with responsePending"
        response = udsoncan.Response.from_payload(final)
        assert response.valid, f"{where}: udsoncan: {response.invalid_reason}"
        assert response.service.request_id() == sid, f"{where}: answer to another service"
        next_request = next_physical[id(ex)]
        if not response.positive:
            nrc = final[2]
            seen[f"nrc {nrc:02X}"] += 1
            if nrc in (0x21, 0x71, 0x72):
                if nrc != 0x21:
                    assert sid == 0x36, f"{where}: NRC {nrc:02X} outside a transfer"
                if next_request is not None:
                    assert next_request == req, f"{where}: after {nrc:02X} the tester must " \
                                                f"repeat the identical request"
                    seen[f"reaction {nrc:02X}"] += 1
            elif nrc == 0x35:
                assert sid == 0x27 and req[1] == 0x02 and seed is not None
                assert req[2:] != security_key(seed), f"{where}: 35 for the right key"
                if next_request is not None:
                    assert next_request == b"\x27\x01", f"{where}: after 35 a new seed request"
                    seen["reaction 35"] += 1
                rejected_seed, seed = seed, None
            elif nrc == 0x73:
                assert sid == 0x36 and req[1] != expected_counter, \
                    f"{where}: 73 for the right counter {expected_counter:02X}"
                if next_request is not None:
                    assert next_request == bytes((0x36, expected_counter)) + req[2:], \
                        f"{where}: after 73 the block again with counter {expected_counter:02X}"
                    seen["reaction 73"] += 1
            else:
                raise AssertionError(f"{where}: unexpected NRC {nrc:02X}")
            if expect.error_rate == 0:
                raise AssertionError(f"{where}: NRC {nrc:02X} with --error-rate 0")
            session_end = ex.responses[-1].t_last
            continue
        # ---- a positive answer: interpret it with udsoncan and follow the state ----
        key = (sid, None)
        if sid == 0x10:
            services.DiagnosticSessionControl.interpret_response(response)
            data = response.service_data
            assert data.session_echo == req[1]
            assert data.p2_server_max == P2 and data.p2_star_server_max == P2_STAR, where
            session = {1: "default", 2: "programming", 3: "extended"}[req[1]]
            key = (sid, req[1])
            if req[1] == 0x02:
                assert len(ex.responses) >= 2, f"{where}: 10 02 without responsePending"
        elif sid == 0x22:
            did = int.from_bytes(req[1:3], "big")
            services.ReadDataByIdentifier.interpret_response(response, didlist=[did],
                                                             didconfig=did_config)
            value = response.service_data.values[did]
            assert len(value) == DID_LENGTHS[did] and value.isprintable(), value
            if did == 0xF190:
                _check_vin(value)
                seen["vin"] += 1
            key = (sid, did)
        elif sid == 0x19:
            services.ReadDTCInformation.interpret_response(response, subfunction=req[1])
            key = (sid, req[1])
            if req[1] == 0x01:
                seen["dtcs reported"] += response.service_data.dtc_count
                if order and order[-1] == (0x14, None):
                    assert response.service_data.dtc_count == 0, f"{where}: DTCs after 14"
                    seen["zero dtcs after clear"] += 1
            else:
                for dtc in response.service_data.dtcs:
                    assert dtc.id >> 8 != 0, f"{where}: empty DTC"
        elif sid == 0x27:
            mode = services.SecurityAccess.Mode.RequestSeed if req[1] % 2 else \
                services.SecurityAccess.Mode.SendKey
            services.SecurityAccess.interpret_response(response, mode=mode)
            key = (sid, req[1])
            if req[1] == 0x01:
                new_seed = bytes(response.service_data.seed)
                assert len(new_seed) == 4 and new_seed != bytes(4)
                if rejected_seed is not None:
                    assert new_seed != rejected_seed, f"{where}: the same seed after 35"
                    seen["fresh seed after 35"] += 1
                    rejected_seed = None
                seed = new_seed
            else:
                assert seed is not None and req[2:] == security_key(seed), \
                    f"{where}: accepted a key that is not the seed's"
                seen["unlocked"] += 1
        elif sid == 0x28:
            services.CommunicationControl.interpret_response(response)
            assert response.service_data.control_type_echo == req[1]
            key = (sid, req[1])
        elif sid == 0x85:
            services.ControlDTCSetting.interpret_response(response)
            assert response.service_data.setting_type_echo == req[1]
            key = (sid, req[1])
        elif sid == 0x31:
            services.RoutineControl.interpret_response(response)
            routine = response.service_data.routine_id_echo
            assert routine == int.from_bytes(req[2:4], "big")
            assert response.service_data.routine_status_record == b"\x00", f"{where}: failed"
            key = (sid, routine)
            if routine == 0xFF00:
                assert len(ex.responses) >= 3, f"{where}: erase without several 78s"
                download = {"address": int.from_bytes(req[5:9], "big"),
                            "size": int.from_bytes(req[9:13], "big")}
        elif sid == 0x34:
            services.RequestDownload.interpret_response(response)
            max_length = response.service_data.max_length
            assert req[1] == 0x00 and req[2] == 0x44, where
            assert download is not None and int.from_bytes(req[3:7], "big") == download["address"]
            download.update(size=int.from_bytes(req[7:11], "big"), received=0,
                            max_length=max_length, blocks=0)
            assert max_length == expect.block_size + 2, f"{where}: maxNumberOfBlockLength"
            expected_counter = 1
        elif sid == 0x36:
            services.TransferData.interpret_response(response)
            assert response.service_data.sequence_number_echo == req[1], \
                f"{where}: the ECU echoes counter {response.service_data.sequence_number_echo:02X}"
            assert req[1] == expected_counter, \
                f"{where}: block {req[1]:02X} accepted, expected {expected_counter:02X}"
            assert len(req) <= download["max_length"], f"{where}: longer than the ECU allows"
            if expected_counter == 0x00:
                seen["counter wrapped"] += 1
            download["received"] += len(req) - 2
            download["blocks"] += 1
            expected_counter = (expected_counter + 1) & 0xFF
        elif sid == 0x37:
            services.RequestTransferExit.interpret_response(response)
            assert download["received"] == download["size"], \
                f"{where}: {download['received']} bytes sent, {download['size']} announced"
            seen["bytes transferred"] += download["received"]
            seen["blocks"] += download["blocks"]
        elif sid == 0x14:
            services.ClearDiagnosticInformation.interpret_response(response)
        elif sid == 0x11:
            services.ECUReset.interpret_response(response)
            assert response.service_data.reset_type_echo == req[1]
            session = "default"
            key = (sid, req[1])
        else:
            raise AssertionError(f"{where}: service {sid:02X} not in the scenario")
        if key[0] != 0x36 or not order or order[-1][0] != 0x36:
            order.append(key)
        if sid in (0x10, 0x11):
            seen[f"session {session}"] += 1
        session_end = ex.responses[-1].t_last
    if expect.error_rate == 0:
        assert set(k for k in seen if k.startswith("78 on")) <= {"78 on 10", "78 on 31"}
    seen["sessions"] = _count_sessions(order, seen)


def _count_sessions(order, seen):
    """How many complete sessions follow SESSION_ORDER (a session cut by --duration: none)."""
    sessions = 0
    position = 0
    for key in order:
        wanted = SESSION_ORDER[position]
        if key[0] == wanted[0] and (wanted[1] is None or key[1] == wanted[1]):
            position += 1
            if position == len(SESSION_ORDER):
                sessions += 1
                position = 0
    return sessions


def _check_functional(ex, where, seen, last_obd):
    req = ex.request.payload
    if req == b"\x3E\x80":
        assert not ex.responses, f"{where}: TesterPresent with suppressPosRsp was answered"
        seen["tester present"] += 1
        return
    assert len(ex.responses) == 1, f"{where}: one answer to an OBD request"
    answer = ex.final
    sid = req[0]
    assert answer[0] == sid + 0x40, f"{where}: answered {answer.hex(' ')}"
    if sid == 0x01:
        pid = req[1]
        assert pid in OBD_PIDS and answer[1] == pid
        value = answer[2:]
        seen[f"pid {pid:02X}"] += 1
        if pid in (0x00, 0x20, 0x40):
            bitmap = int.from_bytes(value, "big")
            supported = {pid + 32 - bit for bit in range(32) if bitmap >> bit & 1}
            assert supported == {p for p in OBD_PIDS if pid < p <= pid + 32}, \
                f"{where}: support bitmap {value.hex()}"
            return
        decoded = _decode_pid(pid, value)
        low, high = {0x05: (-20, 120), 0x0C: (500, 7000), 0x0D: (0, 200), 0x0F: (-20, 80),
                     0x10: (0, 300), 0x11: (0, 100), 0x1F: (0, 65535), 0x2F: (0, 100),
                     0x46: (-20, 50)}[pid]
        assert low <= decoded <= high, f"{where}: PID {pid:02X} = {decoded}"
        values = last_obd.setdefault(pid, set())
        values.add(decoded)
        seen[f"distinct pid {pid:02X}"] = len(values)
    elif sid in (0x03, 0x07):
        count = answer[1]
        assert len(answer) == 2 + 2 * count, f"{where}: count byte {count}, {len(answer)} bytes"
        codes = [int.from_bytes(answer[i:i + 2], "big") for i in range(2, len(answer), 2)]
        assert 0 not in codes
        seen[f"obd {sid:02X}"] += 1
        seen[f"obd {sid:02X} dtcs"] += count
    else:
        raise AssertionError(f"{where}: OBD service {sid:02X} not polled")


def _decode_pid(pid, value):
    a = value[0]
    ab = int.from_bytes(value[:2], "big") if len(value) >= 2 else None
    expected_length = 2 if pid in (0x0C, 0x10, 0x1F) else 1
    assert len(value) == expected_length, f"PID {pid:02X}: {len(value)} bytes"
    return {0x05: lambda: a - 40, 0x0C: lambda: ab / 4, 0x0D: lambda: a, 0x0F: lambda: a - 40,
            0x10: lambda: ab / 100, 0x11: lambda: a * 100 / 255, 0x1F: lambda: ab,
            0x2F: lambda: a * 100 / 255, 0x46: lambda: a - 40}[pid]()


def _check_vin(vin):
    values = dict(zip("ABCDEFGHJKLMNPRSTUVWXYZ", (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9,
                                                   2, 3, 4, 5, 6, 7, 8, 9)))
    weights = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
    assert len(vin) == 17 and not set(vin) & set("IOQ"), vin
    total = sum(w * (int(c) if c.isdigit() else values[c]) for w, c in zip(weights, vin))
    assert vin[8] == ("X" if total % 11 == 10 else str(total % 11)), f"VIN check digit: {vin}"


def _rebuild_request(req, did_config):
    """The request as udsoncan builds it from the parameters read out of ``req``."""
    from udsoncan import CommunicationType, MemoryLocation, services

    sid = req[0]
    if sid == 0x10:
        built = services.DiagnosticSessionControl.make_request(req[1])
    elif sid == 0x11:
        built = services.ECUReset.make_request(req[1])
    elif sid == 0x14:
        built = services.ClearDiagnosticInformation.make_request(int.from_bytes(req[1:4], "big"))
    elif sid == 0x19:
        built = services.ReadDTCInformation.make_request(req[1], status_mask=req[2])
    elif sid == 0x22:
        built = services.ReadDataByIdentifier.make_request(
            [int.from_bytes(req[1:3], "big")], didconfig=did_config)
    elif sid == 0x27:
        mode = services.SecurityAccess.Mode.RequestSeed if req[1] % 2 else \
            services.SecurityAccess.Mode.SendKey
        level = req[1] if req[1] % 2 else req[1] - 1
        built = services.SecurityAccess.make_request(level, mode, data=req[2:])
    elif sid == 0x28:
        built = services.CommunicationControl.make_request(
            req[1], CommunicationType.from_byte(req[2]))
    elif sid == 0x31:
        built = services.RoutineControl.make_request(int.from_bytes(req[2:4], "big"), req[1],
                                                     data=req[4:] or None)
    elif sid == 0x34:
        size_len, address_len = req[2] >> 4, req[2] & 0x0F
        address = int.from_bytes(req[3:3 + address_len], "big")
        size = int.from_bytes(req[3 + address_len:], "big")
        built = services.RequestDownload.make_request(
            MemoryLocation(address, size, address_len * 8, size_len * 8))
    elif sid == 0x36:
        built = services.TransferData.make_request(req[1], req[2:])
    elif sid == 0x37:
        built = services.RequestTransferExit.make_request(req[1:] or None)
    elif sid == 0x85:
        built = services.ControlDTCSetting.make_request(req[1])
    else:
        raise AssertionError(f"service {sid:02X} not in the scenario")
    return built.get_payload()
