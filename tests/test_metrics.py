"""--metrics: the collector reads the buses' counters at scrape time; /healthz."""
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cancorder.errors import UsageError
from cancorder.metrics import BusSnapshot, MetricsServer
from tests.helpers import http_get as fetch


def samples(text):
    """{(sample name, frozenset(labels)): value}"""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def served():
    state = {"buses": []}
    server = MetricsServer(("127.0.0.1", 0), lambda: state["buses"]).start()
    yield server, state
    server.close()


def test_page_reads_counters_at_scrape_time(served):
    server, state = served
    state["buses"] = [
        BusSnapshot("powertrain", up=True, frames_received=1010, frames_sent=1000,
                    bytes_sent=44000, clients=2, clients_dropped_lag=1, reopens=3,
                    seconds_since_frame=0.25, skipped={"remote": 4, "error": 6, "invalid": 0},
                    sinks={"recording": {"bytes": 5000, "files": 2, "errors": 0,
                                         "path": "not a number"}}),
        BusSnapshot("body", up=False, down_reason="adapter lost"),
    ]
    status, text = fetch(server.port, "/metrics")
    assert status == 200
    got = samples(text)

    def value(name, bus, **labels):
        return got[(name, frozenset({"bus": bus, **labels}.items()))]

    assert value("cancorder_frames_received_total", "powertrain") == 1010
    assert value("cancorder_frames_sent_total", "powertrain") == 1000
    assert value("cancorder_bytes_sent_total", "powertrain") == 44000
    assert value("cancorder_clients_connected", "powertrain") == 2
    assert value("cancorder_clients_dropped_lag_total", "powertrain") == 1
    assert value("cancorder_adapter_reopens_total", "powertrain") == 3
    assert value("cancorder_adapter_up", "powertrain") == 1
    assert value("cancorder_adapter_up", "body") == 0
    assert value("cancorder_seconds_since_last_frame", "powertrain") == 0.25
    assert math.isnan(value("cancorder_seconds_since_last_frame", "body"))
    assert value("cancorder_frames_skipped_total", "powertrain", kind="error") == 6
    assert value("cancorder_recording_bytes", "powertrain") == 5000
    assert value("cancorder_recording_files", "powertrain") == 2
    assert not any(name.startswith("cancorder_recording_path") for name, _ in got)
    assert any(name == "process_cpu_seconds_total" for name, _ in got)
    assert any(name == "process_resident_memory_bytes" for name, _ in got)
    # counters move between scrapes without anything registered per frame
    state["buses"][0].frames_sent = 2000
    assert samples(fetch(server.port, "/metrics")[1])[
        ("cancorder_frames_sent_total", frozenset({"bus": "powertrain"}.items()))] == 2000


def test_healthz(served):
    server, state = served
    state["buses"] = [BusSnapshot("a", up=True), BusSnapshot("b", up=True)]
    assert fetch(server.port, "/healthz") == (200, "ok: 2 buses up\n")
    state["buses"][1] = BusSnapshot("b", up=False, down_reason="adapter lost for 3 s")
    assert fetch(server.port, "/healthz") == (503, 'bus "b" down: adapter lost for 3 s\n')
    assert fetch(server.port, "/nothing")[0] == 404


def test_port_in_use_is_a_usage_error(served):
    server, _ = served
    with pytest.raises(UsageError, match=rf"--metrics 127.0.0.1:{server.port}: cannot listen"):
        MetricsServer(("127.0.0.1", server.port), list).start()


def test_a_bus_still_opening_is_not_healthy():
    import types

    from cancorder.metrics import health
    from cancorder.sources.base import SourceCounters
    from cancorder.supervision import snapshot_of

    bus = types.SimpleNamespace(name="slow", up=False, crash=None, broadcaster=None, sinks=[],
                                reopens=0, last_frame=None,
                                source=types.SimpleNamespace(counters=SourceCounters))
    assert health([snapshot_of(bus)]) == (False, 'bus "slow" down: starting (the adapter is '
                                                 'being opened)')
