"""The car behind the ECU: values for OBD-II service 01 that change the way an engine's do.

A small driving model (a target speed that changes every few tens of seconds, gears, throttle,
an engine that warms up) integrated over real-world time, so consecutive polls differ a little
and a long run shows warm-up, acceleration and fuel use.
"""
import math

#: the service 01 PIDs the ECU supports (apart from the 00/20/40 support bitmaps)
LIVE_PIDS = (0x05, 0x0C, 0x0D, 0x0F, 0x10, 0x11, 0x1F, 0x2F, 0x46)
#: PIDs 00, 20, 40: "which of the next 32 PIDs are supported"
BITMAP_PIDS = (0x00, 0x20, 0x40)
_GEAR_TOP_SPEED = (20, 35, 55, 75, 95)  # km/h at which the next gear is taken
_GEAR_RPM_PER_KMH = (115, 68, 46, 35, 29, 24)
_IDLE_RPM = 780
_TANK_LITRES = 50.0


def supported(pid):
    return pid in LIVE_PIDS or pid in BITMAP_PIDS


def support_bitmap(base):
    """The 4 bytes answering PID ``base`` (00, 20, 40): bit 31 is PID base+1, bit 0 base+32."""
    value = 0
    for pid in LIVE_PIDS + BITMAP_PIDS:
        if base < pid <= base + 32:
            value |= 1 << (32 - (pid - base))
    return value.to_bytes(4, "big")


class Vehicle:
    def __init__(self, rng):
        self.rng = rng
        self.ambient = rng.uniform(4.0, 28.0)
        self.coolant = self.ambient + rng.uniform(0.0, 15.0)
        self.intake = self.ambient + 4.0
        self.speed = 0.0  # km/h
        self.target_speed = 0.0
        self.rpm = float(_IDLE_RPM)
        self.throttle = 14.0  # percent
        self.maf = 2.5  # g/s
        self.fuel = rng.uniform(25.0, 90.0)  # percent
        self.run_time = 0.0  # seconds since engine start
        self._until_new_target = 0.0

    def restart(self):
        """The engine was stopped and started again (an ECU reset): run time counts anew."""
        self.run_time = 0.0
        self.speed = self.target_speed = 0.0
        self._until_new_target = self.rng.uniform(5.0, 15.0)

    def advance(self, seconds):
        """Live through ``seconds`` of real-world time (in steps of at most one second)."""
        rng = self.rng
        while seconds > 0:
            dt = min(seconds, 1.0)
            seconds -= dt
            self._until_new_target -= dt
            if self._until_new_target <= 0:
                self.target_speed = rng.choice((0, 0, 30, 50, 50, 70, 90, 110, 130))
                self._until_new_target = rng.uniform(10.0, 40.0)
            change = max(-6.0 * dt, min(3.5 * dt, self.target_speed - self.speed))
            self.speed = max(0.0, self.speed + change)
            gear = sum(1 for top in _GEAR_TOP_SPEED if self.speed > top)
            self.rpm = max(_IDLE_RPM, self.speed * _GEAR_RPM_PER_KMH[gear]) + rng.uniform(-25, 25)
            accel = change / dt if dt else 0.0
            self.throttle = min(100.0, max(0.0, 12.0 + 9.0 * max(accel, 0.0) + 0.18 * self.speed
                                                + rng.uniform(-1.5, 1.5)))
            self.maf = self.rpm / 1000.0 * (1.6 + 0.16 * self.throttle)
            # Warm-up towards the thermostat's 90 C; the intake sits above ambient when slow.
            self.coolant += (90.0 - self.coolant) * (1.0 - math.exp(-dt / 240.0))
            self.intake = self.ambient + max(2.0, 14.0 - 0.12 * self.speed) + rng.uniform(-0.5, 0.5)
            litres = self.maf / 14.7 / 740.0 * dt  # air/fuel ratio, petrol density g/ml
            self.fuel = max(5.0, self.fuel - 100.0 * litres / _TANK_LITRES)
            self.run_time += dt

    def pid_data(self, pid):
        """The data bytes of a service 01 answer (after 41 PID), scaled as SAE J1979 says."""
        if pid in BITMAP_PIDS:
            return support_bitmap(pid)
        if pid == 0x05:
            return _u8(self.coolant + 40)
        if pid == 0x0C:
            return _u16(self.rpm * 4)
        if pid == 0x0D:
            return _u8(self.speed)
        if pid == 0x0F:
            return _u8(self.intake + 40)
        if pid == 0x10:
            return _u16(self.maf * 100)
        if pid == 0x11:
            return _u8(self.throttle * 255 / 100)
        if pid == 0x1F:
            return _u16(self.run_time)
        if pid == 0x2F:
            return _u8(self.fuel * 255 / 100)
        if pid == 0x46:
            return _u8(self.ambient + 40)
        raise KeyError(pid)


def _u8(value):
    return bytes((max(0, min(255, int(round(value)))),))


def _u16(value):
    return max(0, min(65535, int(round(value)))).to_bytes(2, "big")
