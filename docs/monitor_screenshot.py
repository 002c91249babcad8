"""Make docs/monitor.svg, docs/dump.md's picture of `cancorder dump --monitor`.

    .venv/bin/python docs/monitor_screenshot.py [OUT.svg]     (default: docs/monitor.svg)

The frames are real: the UDS simulator's own timeline (the traffic `cancorder mock-uds` serves,
seed 7) and a J1939 engine (EEC1 every 10 ms, two source addresses), decoded with
docs/example-obd.dbc. They go through the monitor exactly as in `dump --monitor`, on a clock
that follows the frames' timestamps; the last screen is recorded by rich
(``Console(record=True)`` then ``save_svg``).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from rich.console import Console  # noqa: E402

from cancorder._fast import wire  # noqa: E402
from cancorder.dbc import load_databases  # noqa: E402
from cancorder.monitor import Monitor  # noqa: E402
from cancorder.uds import FRAME  # noqa: E402
from cancorder.uds.simulation import SimulationConfig, timeline  # noqa: E402

SECONDS = 6.0


def frames():
    """(timestamp_us, can_id, flags, data), in time order, for SECONDS."""
    out = []
    for t_us, kind, value in timeline(SimulationConfig(seed=7, blocks=40)):
        if t_us > SECONDS * 1e6:
            break
        if kind == FRAME:  # (can_id, flags, data)
            out.append((t_us, value[0], value[1], bytes(value[2])))
    for tick in range(int(SECONDS * 100)):  # EEC1 at 100 Hz from 00, at 20 Hz from 17
        rpm = int((900 + 600 * (tick % 300) / 300) / 0.125)
        data = bytes((0xF0, 0x7D, 125 + tick % 40, rpm & 0xFF, rpm >> 8, 0xFF, 0xFF, 0xFF))
        out.append((tick * 10_000 + 3_000, 0x0CF00400, wire.FLAG_EXT, data))
        if tick % 5 == 0:
            out.append((tick * 10_000 + 7_000, 0x18F00417, wire.FLAG_EXT, data))
    out.append((5_900_000, 0x3C1, 0, bytes.fromhex("0102")))  # an id the database does not know
    return sorted(out)


def main(path=os.path.join(HERE, "monitor.svg")):
    console = Console(record=True, width=132, height=34, force_terminal=True,
                      color_system="truecolor", file=open(os.devnull, "w"))
    clock = [0.0]
    monitor = Monitor(console, signals=load_databases([os.path.join(HERE, "example-obd.dbc")]),
                      title="127.0.0.1:42420", keys=None, clock=lambda: clock[0])
    batch, batch_end = [], 0.05
    for frame in frames():
        if frame[0] / 1e6 >= batch_end:
            monitor.add(batch)
            batch = []
            clock[0] = batch_end
            monitor.tick()
            batch_end += 0.05
        batch.append(frame)
    monitor.add(batch)
    clock[0] = SECONDS
    monitor.tick()
    monitor.status = "connected to 127.0.0.1:42420"
    monitor.refreshes = 5
    monitor._refresh_times = [SECONDS - 1.0 + i * 0.2 for i in range(6)]
    console.print(monitor.render())
    console.save_svg(path, title="cancorder dump --monitor --dbc example-obd.dbc")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
