"""The simulated ECU: answers UDS (ISO 14229-1) and OBD-II (SAE J1979) requests from its state.

It is a small but honest server: sessions, security access with a seed and a key, the
programming sequence (erase, RequestDownload, TransferData with its block sequence counter,
RequestTransferExit, check dependencies), DTCs, and the negative responses a real ECU gives when
a request comes at the wrong time. ``handle`` returns the final answer and how long the ECU
needs to produce it: the scenario sends 78 responsePending while that lasts.
"""
from .vehicle import Vehicle, supported

P2_SERVER_MAX = 0.050  # s: the ECU starts every response within this
P2_STAR_SERVER_MAX = 5.0  # s: after a 78 responsePending, the next response comes within this
S3_SERVER = 5.0  # s: a non-default session ends after this long without a request

DEFAULT_SESSION, PROGRAMMING_SESSION, EXTENDED_SESSION = 1, 2, 3
SESSION_NAMES = {1: "default", 2: "programming", 3: "extended"}

POSITIVE_RESPONSE_OFFSET = 0x40
NEGATIVE_RESPONSE = 0x7F
NRC_NAMES = {
    0x10: "generalReject",
    0x11: "serviceNotSupported",
    0x12: "subFunctionNotSupported",
    0x13: "incorrectMessageLengthOrInvalidFormat",
    0x21: "busyRepeatRequest",
    0x22: "conditionsNotCorrect",
    0x24: "requestSequenceError",
    0x31: "requestOutOfRange",
    0x33: "securityAccessDenied",
    0x35: "invalidKey",
    0x36: "exceedNumberOfAttempts",
    0x70: "uploadDownloadNotAccepted",
    0x71: "transferDataSuspended",
    0x72: "generalProgrammingFailure",
    0x73: "wrongBlockSequenceCounter",
    0x78: "requestCorrectlyReceived-ResponsePending",
    0x7F: "serviceNotSupportedInActiveSession",
}
BUSY_REPEAT_REQUEST = 0x21
INVALID_KEY = 0x35
TRANSFER_DATA_SUSPENDED = 0x71
GENERAL_PROGRAMMING_FAILURE = 0x72
WRONG_BLOCK_SEQUENCE_COUNTER = 0x73
RESPONSE_PENDING = 0x78

#: services whose first data byte is a sub-function (bit 7: suppress the positive response)
_SUBFUNCTION_SERVICES = (0x10, 0x11, 0x19, 0x27, 0x28, 0x31, 0x3E, 0x85)

SECURITY_LEVEL = 0x01  # 27 01 requests the seed, 27 02 sends the key
ERASE_ROUTINE = 0xFF00
CHECK_DEPENDENCIES_ROUTINE = 0xFF01
FLASH_START = 0x00080000
FLASH_SIZE = 0x40000000  # 1 GiB of simulated flash from FLASH_START
MAX_KEY_ATTEMPTS = 3

#: identification data identifiers and their fixed lengths (ASCII)
DID_LENGTHS = {
    0xF187: 11,  # vehicle manufacturer spare part number
    0xF189: 8,  # ECU software version number
    0xF18C: 14,  # ECU serial number
    0xF190: 17,  # VIN
    0xF191: 11,  # vehicle manufacturer ECU hardware number
    0xF195: 8,  # system supplier ECU software version number
}
DID_NAMES = {0xF187: "spare part number", 0xF189: "software version", 0xF18C: "serial number",
             0xF190: "VIN", 0xF191: "hardware number", 0xF195: "supplier software version"}

# DTC status bits (ISO 14229-1 D.2)
TEST_FAILED, PENDING, CONFIRMED, FAILED_SINCE_CLEAR = 0x01, 0x04, 0x08, 0x20
STATUS_AVAILABILITY_MASK = 0xFF
DTC_FORMAT_ISO14229 = 0x01
#: plausible emission and network faults, as 2-byte SAE J2012 codes (P0301, U0100...)
DTC_POOL = (0x0171, 0x0300, 0x0301, 0x0302, 0x0420, 0x0442, 0x0128, 0x0113, 0x2187, 0x4035,
            0x9318, 0xC100, 0xC121)
FAILURE_TYPES = (0x00, 0x11, 0x12, 0x1C, 0x29, 0x64)

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q
_VIN_VALUES = dict(zip("ABCDEFGHJKLMNPRSTUVWXYZ", (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7,
                                                   9, 2, 3, 4, 5, 6, 7, 8, 9)))
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MANUFACTURERS = ("WVW", "WBA", "WDD", "VF1", "ZFA", "TMB", "YV1", "SAL")


def dtc_text(code):
    """A 2-byte SAE J2012 code as text: the top two bits choose P, C, B or U."""
    return "PCBU"[code >> 14] + f"{code & 0x3FFF:04X}"


def security_key(seed):
    """The ECU's secret: the key that unlocks a 4-byte seed (the tester knows it too)."""
    value = int.from_bytes(seed, "big")
    value = ((value << 7) | (value >> 25)) & 0xFFFFFFFF
    value = ((value ^ 0x5EC0DE17) * 0x01000193) & 0xFFFFFFFF
    return value.to_bytes(4, "big")


def make_vin(rng):
    """A well-formed 17-character VIN with a valid check digit (position 9)."""
    chars = list(rng.choice(_MANUFACTURERS))
    chars += [rng.choice(_VIN_CHARS) for _ in range(5)]
    chars.append("0")  # the check digit, computed below
    chars.append(rng.choice("LMNPRSTVWXY123456789"))  # model year
    chars.append(rng.choice(_VIN_CHARS[:23]))  # plant
    chars += [rng.choice("0123456789") for _ in range(6)]
    total = sum(_VIN_WEIGHTS[i] * (int(c) if c.isdigit() else _VIN_VALUES[c])
                for i, c in enumerate(chars))
    chars[8] = "X" if total % 11 == 10 else str(total % 11)
    return "".join(chars)


def negative(sid, nrc):
    return bytes((NEGATIVE_RESPONSE, sid, nrc))


class Answer:
    """The ECU's final response (None: none is sent) and how long producing it takes (s)."""

    __slots__ = ("response", "busy")

    def __init__(self, response, busy=0.0):
        self.response = response
        self.busy = busy


class Download:
    """An accepted RequestDownload: where, how much, and the transfer's progress."""

    def __init__(self, address, size):
        self.address = address
        self.size = size
        self.received = 0
        self.expected_counter = 1
        self.last_counter = None  # counter of the last accepted block (a repeat is acknowledged)
        self.exited = False


class Ecu:
    def __init__(self, rng, block_size=128, vehicle=None):
        self.rng = rng
        self.vehicle = vehicle or Vehicle(rng)
        self.max_block_length = block_size + 2  # 36, the counter, then the data
        self.software_version = rng.randint(100, 899)
        self.identification = {
            0xF187: f"{rng.randint(1, 9)}Q0{rng.randint(100, 999)}{rng.randint(100, 999)}"
                    f"{rng.choice('ABCDEF')} ",
            0xF18C: f"SN{rng.randint(0, 10 ** 12 - 1):012d}",
            0xF190: make_vin(rng),
            0xF191: f"{rng.randint(1, 9)}Q0{rng.randint(100, 999)}{rng.randint(100, 999)}"
                    f"{rng.choice('GHJK')} ",
            0xF195: f"X{rng.randint(0, 9999):04d}.{rng.randint(0, 99):02d}",
        }
        self.dtcs = {}  # 3-byte DTC -> status byte
        active = TEST_FAILED | 0x02 | PENDING  # failing now, this operation cycle
        for _ in range(rng.randint(1, 4)):
            self._add_dtc(CONFIRMED | FAILED_SINCE_CLEAR | rng.choice((0, active)))
        for _ in range(rng.randint(0, 2)):
            self._add_dtc(PENDING | TEST_FAILED | FAILED_SINCE_CLEAR)
        self.power_on()

    # ---- state ----

    def power_on(self):
        """What an ECU starts with after a reset."""
        self.session = DEFAULT_SESSION
        self.unlocked = False
        self.seed = None
        self.failed_keys = 0
        self.communication_enabled = True
        self.dtc_setting_on = True
        self.erased = None  # (address, size) erased in this power cycle
        self.download = None
        self.dependencies_ok = False

    def new_drive_cycle(self):
        """Between sessions the car was driven: a pending fault may appear or be confirmed."""
        rng = self.rng
        pending = [dtc for dtc, status in self.dtcs.items() if not status & CONFIRMED]
        if pending and rng.random() < 0.5:
            self.dtcs[rng.choice(pending)] |= CONFIRMED
        if rng.random() < 0.6:
            self._add_dtc(PENDING | TEST_FAILED | FAILED_SINCE_CLEAR)

    def _add_dtc(self, status):
        code = self.rng.choice(DTC_POOL)
        self.dtcs[(code << 8) | self.rng.choice(FAILURE_TYPES)] = status

    def software_version_text(self):
        return f"SW{self.software_version:06d}"

    def did_value(self, did):
        if did == 0xF189:
            text = self.software_version_text()
        else:
            text = self.identification[did]
        data = text.encode("ascii")
        assert len(data) == DID_LENGTHS[did], (hex(did), text)
        return data

    def obd_codes(self, status_bit):
        """2-byte codes of the DTCs with ``status_bit`` (CONFIRMED: service 03, PENDING: 07)."""
        return sorted({dtc >> 8 for dtc, status in self.dtcs.items() if status & status_bit})

    # ---- OBD-II (functional requests on 0x7DF / 0x18DB33F1) ----

    def obd(self, request):
        """The answer to an OBD-II request, or None (an ECU stays silent when it has none)."""
        sid = request[0]
        if sid == 0x01 and len(request) == 2 and supported(request[1]):
            return bytes((0x41, request[1])) + self.vehicle.pid_data(request[1])
        if sid in (0x03, 0x07) and len(request) == 1:
            codes = self.obd_codes(CONFIRMED if sid == 0x03 else PENDING)
            return bytes((sid + 0x40, len(codes))) + b"".join(c.to_bytes(2, "big") for c in codes)
        return None

    # ---- UDS ----

    def handle(self, request):
        sid = request[0]
        handler = _HANDLERS.get(sid)
        if handler is None:
            return Answer(negative(sid, 0x11))
        if sid in _SUBFUNCTION_SERVICES and len(request) < 2:
            return Answer(negative(sid, 0x13))
        answer = handler(self, request)
        if (sid in _SUBFUNCTION_SERVICES and request[1] & 0x80 and answer.response is not None
                and answer.response[0] != NEGATIVE_RESPONSE):
            answer.response = None  # suppressPosRspMsgIndicationBit
        return answer

    def _session_control(self, request):
        session = request[1] & 0x7F
        if len(request) != 2:
            return Answer(negative(0x10, 0x13))
        if session not in SESSION_NAMES:
            return Answer(negative(0x10, 0x12))
        busy = 0.0
        if session == PROGRAMMING_SESSION:
            if self.session == DEFAULT_SESSION:
                return Answer(negative(0x10, 0x22))  # programming only from the extended session
            busy = self.rng.uniform(0.3, 1.5)  # the ECU jumps into its boot loader
        if session != self.session:
            self.unlocked = False  # a session change locks security access again
            self.seed = None
        self.session = session
        if session == DEFAULT_SESSION:
            # back in the default session, what 28 and 85 switched off is on again
            self.communication_enabled = True
            self.dtc_setting_on = True
        timing = int(P2_SERVER_MAX * 1000).to_bytes(2, "big") + \
            int(P2_STAR_SERVER_MAX * 100).to_bytes(2, "big")  # P2* in units of 10 ms
        return Answer(bytes((0x50, session)) + timing, busy)

    def _ecu_reset(self, request):
        if len(request) != 2:
            return Answer(negative(0x11, 0x13))
        if request[1] & 0x7F != 0x01:
            return Answer(negative(0x11, 0x12))
        if self.dependencies_ok:
            self.software_version += 1  # the new software runs after the reset
        self.power_on()
        return Answer(bytes((0x51, 0x01)))

    def _clear_dtcs(self, request):
        if len(request) != 4:
            return Answer(negative(0x14, 0x13))
        group = int.from_bytes(request[1:4], "big")
        if group != 0xFFFFFF:
            return Answer(negative(0x14, 0x31))
        self.dtcs.clear()
        return Answer(bytes((0x54,)))

    def _read_dtc_information(self, request):
        sub = request[1] & 0x7F
        if sub not in (0x01, 0x02):
            return Answer(negative(0x19, 0x12))
        if len(request) != 3:
            return Answer(negative(0x19, 0x13))
        mask = request[2] & STATUS_AVAILABILITY_MASK
        matching = sorted((dtc, status) for dtc, status in self.dtcs.items() if status & mask)
        if sub == 0x01:
            return Answer(bytes((0x59, 0x01, STATUS_AVAILABILITY_MASK, DTC_FORMAT_ISO14229))
                          + len(matching).to_bytes(2, "big"))
        records = b"".join(dtc.to_bytes(3, "big") + bytes((status,)) for dtc, status in matching)
        return Answer(bytes((0x59, 0x02, STATUS_AVAILABILITY_MASK)) + records)

    def _read_data_by_identifier(self, request):
        if len(request) < 3 or len(request) % 2 == 0:
            return Answer(negative(0x22, 0x13))
        out = bytearray((0x62,))
        for i in range(1, len(request), 2):
            did = int.from_bytes(request[i:i + 2], "big")
            if did not in DID_LENGTHS:
                return Answer(negative(0x22, 0x31))
            out += request[i:i + 2] + self.did_value(did)
        return Answer(bytes(out))

    def _security_access(self, request):
        sub = request[1] & 0x7F
        if self.session == DEFAULT_SESSION:
            return Answer(negative(0x27, 0x7F))
        if sub == SECURITY_LEVEL:
            if len(request) != 2:
                return Answer(negative(0x27, 0x13))
            if self.failed_keys >= MAX_KEY_ATTEMPTS:
                return Answer(negative(0x27, 0x36))
            if self.unlocked:
                return Answer(bytes((0x67, sub)) + bytes(4))  # already unlocked: seed 0
            seed = bytes(self.rng.randint(1, 255) for _ in range(4))
            self.seed = seed
            return Answer(bytes((0x67, sub)) + seed)
        if sub == SECURITY_LEVEL + 1:
            if self.seed is None:
                return Answer(negative(0x27, 0x24))
            if len(request) != 6:
                return Answer(negative(0x27, 0x13))
            seed, self.seed = self.seed, None  # a seed answers one key only
            if request[2:] != security_key(seed):
                self.failed_keys += 1
                return Answer(negative(0x27, 0x36 if self.failed_keys >= MAX_KEY_ATTEMPTS
                                       else INVALID_KEY))
            self.unlocked = True
            self.failed_keys = 0
            return Answer(bytes((0x67, sub)))
        return Answer(negative(0x27, 0x12))

    def _communication_control(self, request):
        sub = request[1] & 0x7F
        if len(request) != 3:
            return Answer(negative(0x28, 0x13))
        if sub not in (0x00, 0x01, 0x02, 0x03):
            return Answer(negative(0x28, 0x12))
        if self.session == DEFAULT_SESSION:
            return Answer(negative(0x28, 0x7F))
        self.communication_enabled = sub == 0x00
        return Answer(bytes((0x68, sub)))

    def _control_dtc_setting(self, request):
        sub = request[1] & 0x7F
        if sub not in (0x01, 0x02):
            return Answer(negative(0x85, 0x12))
        if self.session == DEFAULT_SESSION:
            return Answer(negative(0x85, 0x7F))
        self.dtc_setting_on = sub == 0x01
        return Answer(bytes((0xC5, sub)))

    def _tester_present(self, request):
        if len(request) != 2:
            return Answer(negative(0x3E, 0x13))
        if request[1] & 0x7F != 0x00:
            return Answer(negative(0x3E, 0x12))
        return Answer(bytes((0x7E, 0x00)))

    def _routine_control(self, request):
        if len(request) < 4:
            return Answer(negative(0x31, 0x13))
        if request[1] & 0x7F != 0x01:
            return Answer(negative(0x31, 0x12))
        routine = int.from_bytes(request[2:4], "big")
        head = bytes((0x71, 0x01)) + request[2:4]
        if routine == ERASE_ROUTINE:
            if self.session != PROGRAMMING_SESSION:
                return Answer(negative(0x31, 0x7F))
            if not self.unlocked:
                return Answer(negative(0x31, 0x33))
            region = _memory_range(request[4:])
            if region is None:
                return Answer(negative(0x31, 0x13))
            if not _in_flash(*region):
                return Answer(negative(0x31, 0x31))
            self.erased = region
            self.download = None
            # Erasing flash takes seconds: a few, plus one per MiB.
            busy = self.rng.uniform(5.0, 9.0) + region[1] / 1048576.0
            return Answer(head + b"\x00", busy)
        if routine == CHECK_DEPENDENCIES_ROUTINE:
            if self.session != PROGRAMMING_SESSION:
                return Answer(negative(0x31, 0x7F))
            d = self.download
            ok = d is not None and d.exited and d.received == d.size
            self.dependencies_ok = ok
            return Answer(head + (b"\x00" if ok else b"\x01"), self.rng.uniform(0.0, 0.02))
        return Answer(negative(0x31, 0x31))

    def _request_download(self, request):
        if self.session != PROGRAMMING_SESSION:
            return Answer(negative(0x34, 0x7F))
        if not self.unlocked:
            return Answer(negative(0x34, 0x33))
        if len(request) < 3 or request[1] != 0x00:
            return Answer(negative(0x34, 0x31 if len(request) >= 3 else 0x13))
        region = _memory_range(request[2:])
        if region is None:
            return Answer(negative(0x34, 0x13))
        address, size = region
        erased = self.erased
        if erased is None or not (erased[0] <= address and address + size <= erased[0] + erased[1]):
            return Answer(negative(0x34, 0x70))  # only erased flash can be programmed
        self.download = Download(address, size)
        self.dependencies_ok = False
        return Answer(bytes((0x74, 0x20)) + self.max_block_length.to_bytes(2, "big"))

    def _transfer_data(self, request):
        d = self.download
        if d is None or d.exited:
            return Answer(negative(0x36, 0x24))
        if len(request) < 2:
            return Answer(negative(0x36, 0x13))
        counter = request[1]
        data = len(request) - 2
        if counter == d.last_counter and counter != d.expected_counter:
            return Answer(bytes((0x76, counter)))  # a repeat of the last block: already written
        if counter != d.expected_counter:
            return Answer(negative(0x36, WRONG_BLOCK_SEQUENCE_COUNTER))
        if len(request) > self.max_block_length or data == 0:
            return Answer(negative(0x36, 0x13))
        if d.received + data > d.size:
            return Answer(negative(0x36, TRANSFER_DATA_SUSPENDED))  # more than announced
        d.received += data
        d.last_counter = counter
        d.expected_counter = (counter + 1) & 0xFF  # wraps FF -> 00
        return Answer(bytes((0x76, counter)))

    def _request_transfer_exit(self, request):
        d = self.download
        if d is None or d.exited or d.received != d.size:
            return Answer(negative(0x37, 0x24))
        d.exited = True
        return Answer(bytes((0x77,)))


def _memory_range(data):
    """(address, size) from an addressAndLengthFormatIdentifier and its fields, or None."""
    if not data:
        return None
    size_len, address_len = data[0] >> 4, data[0] & 0x0F
    if not (1 <= address_len <= 4 and 1 <= size_len <= 4):
        return None
    if len(data) != 1 + address_len + size_len:
        return None
    address = int.from_bytes(data[1:1 + address_len], "big")
    size = int.from_bytes(data[1 + address_len:], "big")
    return address, size


def _in_flash(address, size):
    return size > 0 and FLASH_START <= address and address + size <= FLASH_START + FLASH_SIZE


_HANDLERS = {
    0x10: Ecu._session_control,
    0x11: Ecu._ecu_reset,
    0x14: Ecu._clear_dtcs,
    0x19: Ecu._read_dtc_information,
    0x22: Ecu._read_data_by_identifier,
    0x27: Ecu._security_access,
    0x28: Ecu._communication_control,
    0x31: Ecu._routine_control,
    0x34: Ecu._request_download,
    0x36: Ecu._transfer_data,
    0x37: Ecu._request_transfer_exit,
    0x3E: Ecu._tester_present,
    0x85: Ecu._control_dtc_setting,
}
