"""The benchmarks' own rules: figures only from a quiet machine (bench/_load.py), and the C
reference proxy's two flush policies (bench/c/proxy.c)."""
import json
import os
import subprocess
import sys

import pytest

from bench import _load
from tests.helpers import ROOT


class Args:
    def __init__(self, record=None, force=False):
        self.record, self.force = record, force


def loads(monkeypatch, *values):
    """os.getloadavg gives these 1-minute loads, one per call."""
    queue = list(values)
    monkeypatch.setattr(os, "getloadavg", lambda: (queue.pop(0), 0.5, 0.5))


def test_a_quiet_run_writes_its_figures_with_both_load_averages(monkeypatch, tmp_path, capsys):
    loads(monkeypatch, 0.4, 0.8)
    record = tmp_path / "figures.json"
    watch = _load.start("bench.x", Args(str(record)))
    print("| table | 1 |")
    _load.finish(watch, {"cpu": 1.5})
    out = capsys.readouterr().out
    assert "load average at start 0.40" in out and "load average at end 0.80" in out
    written = json.loads(record.read_text())
    assert written["figures"] == {"cpu": 1.5} and written["noisy"] is False
    assert written["load_average"]["start"][0] == 0.4 and written["load_average"]["end"][0] == 0.8
    assert "| table | 1 |" in written["output"]


def test_a_busy_machine_is_refused_before_measuring_unless_forced(monkeypatch, tmp_path, capsys):
    record = tmp_path / "figures.json"
    loads(monkeypatch, 1.6)
    with pytest.raises(SystemExit) as refused:
        _load.start("bench.x", Args(str(record)))
    assert str(refused.value).startswith("error: not measuring: the 1-minute load average is "
                                         "1.60, over 1.0")
    assert not record.exists()
    loads(monkeypatch, 1.6, 0.3)
    watch = _load.start("bench.x", Args(str(record), force=True))
    _load.finish(watch, [1, 2])
    assert json.loads(record.read_text())["noisy"] is True
    assert "noisy" in capsys.readouterr().out


def test_a_machine_that_got_busy_during_the_run_writes_nothing(monkeypatch, tmp_path):
    record = tmp_path / "figures.json"
    loads(monkeypatch, 0.2, 2.5)
    watch = _load.start("bench.x", Args(str(record)))
    with pytest.raises(SystemExit) as refused:
        _load.finish(watch, [1])
    assert "not written" in str(refused.value) and "2.50 at the end" in str(refused.value)
    assert not record.exists()
    assert sys.stdout is watch.output.stream  # the tee is gone


def test_every_benchmark_takes_record_and_force():
    names = [name[:-3] for name in os.listdir(os.path.join(ROOT, "bench"))
             if name.endswith(".py") and not name.startswith("_")]
    for name in names:
        text = open(os.path.join(ROOT, "bench", name + ".py")).read()
        assert "_load.add_arguments(parser)" in text and "_load.start(" in text \
            and "_load.finish(" in text, name


@pytest.mark.serial
def test_the_c_proxy_sends_a_lone_frame_at_once_or_one_window_later(tmp_path):
    """serve's own policy: a frame on a quiet link goes out at once; --coalesce: one window
    (1 ms) later. 200 frames/s, one write per frame, one checking client: each frame alone in
    its window (at 1,000 frames/s, a frame read late on a loaded machine joins its
    predecessor's window and goes out early: CI saw a --coalesce median of 0.77 ms)."""
    from bench.serve import Emulator, build_c
    from tests.helpers import CancorderProcess

    binaries = build_c(str(tmp_path))
    p50 = {}
    for flags in ([], ["--coalesce"]):
        emulator = Emulator(binaries["slcan_emu"])
        proxy = CancorderProcess(flags + [str(emulator.port)], command=[binaries["proxy"]])
        clients = None
        try:
            port = proxy.port()
            emulator.wait_open()
            clients = subprocess.Popen([binaries["clients"], str(port), "1", "400", "10"],
                                       stdout=subprocess.PIPE, text=True)
            assert clients.stdout.readline().strip() == "ready"
            proxy.wait_for(r"client connected \(1 connected\)")
            emulator.go("frame", 200, 400)
            result = json.loads(clients.stdout.readline())
            emulator.wait_sent()
            assert result["complete"] == 1 and result["bad"] == 0, result
            p50[tuple(flags)] = result["p50_ms"]
        finally:
            if clients is not None and clients.poll() is None:
                clients.kill()
                clients.wait()
            proxy.stop()
            emulator.close()
    assert p50[()] < 0.6, p50  # at once (the frames are 5 ms apart: a quiet link each time)
    assert p50[("--coalesce",)] >= 0.95, p50  # a whole window later
