"""Zeroconf advertisement, inside a private network namespace only."""
import socket

from tests.netns import run_in_netns


def test_serve_is_advertised_with_every_txt_key_and_gone_after_exit():
    result = run_in_netns("tests/netns_zeroconf_serve.py")
    assert result["names"] == ["ECUconnect-Logger bench-42._ecuconnect-log._tcp.local."], result["log"]
    assert result["info_port"] == result["port"]
    txt = result["txt"]
    assert set(txt) == {"system", "process", "interface", "channel", "bitrate", "port"}
    assert txt["system"] == socket.gethostname().split(".")[0]
    assert txt["process"] == "cancorder serve"
    assert txt["interface"] == "slcan"
    assert txt["channel"].startswith("socket://127.0.0.1:")
    assert txt["bitrate"] == "250000"
    assert txt["port"] == str(result["port"])
    assert "127.0.0.1" in result["addresses"]
    assert result["exit_code"] == 0
    assert result["removed"] == result["names"], result["log"]


def test_mock_uds_is_advertised_with_its_tester_and_ecu_ids():
    result = run_in_netns("tests/netns_zeroconf_mock_uds.py")
    assert result["names"] == ["ECUconnect-Logger uds-bench._ecuconnect-log._tcp.local."], result["log"]
    assert result["info_port"] == result["port"]
    txt = result["txt"]
    assert txt == {"system": socket.gethostname().split(".")[0], "process": "cancorder mock-uds",
                   "interface": "virtual", "channel": "mock-uds", "bitrate": "500000",
                   "data_bitrate": "2000000", "tester_id": "0x18DA10F1",
                   "ecu_id": "0x18DAF110", "port": str(result["port"])}
    assert result["exit_code"] == 0
    assert result["removed"] == result["names"], result["log"]


def test_zeroconf_runs_only_on_the_interfaces_the_server_listens_on():
    """--bind 127.0.0.1 is not announced on the other interfaces (issue 11)."""
    result = run_in_netns("tests/netns_zeroconf_bind.py")
    assert result["before"] == []
    assert result["bind_lo"]["devices"] == ["lo"], result["bind_lo"]["log"]
    assert result["bind_d0"]["devices"] == ["d0"], result["bind_d0"]["log"]
    assert result["everywhere"]["devices"] == ["d0", "lo"], result["everywhere"]["log"]


def test_each_bus_of_a_config_has_its_own_zeroconf_record():
    result = run_in_netns("tests/netns_zeroconf_multibus.py")
    services = result["services"]
    names = {f"ECUconnect-Logger car-{n}._ecuconnect-log._tcp.local."
             for n in ("powertrain", "body", "sim")}
    assert set(services) == names, result["log"]
    by_name = {name.split()[1].split(".")[0]: info for name, info in services.items()}
    ports = {info["port"] for info in services.values()}
    assert len(ports) == 3  # each bus its own listener
    for info in services.values():
        assert set(info["txt"]) >= {"system", "process", "interface", "channel", "bitrate",
                                    "port"}
        assert info["txt"]["port"] == str(info["port"])
    powertrain, body = by_name["car-powertrain"]["txt"], by_name["car-body"]["txt"]
    assert powertrain["channel"] != body["channel"]
    assert (powertrain["bitrate"], body["bitrate"]) == ("500000", "250000")
    assert by_name["car-sim"]["txt"]["process"] == "cancorder mock-uds"
    assert powertrain["process"] == "cancorder serve"
    assert result["exit_code"] == 0
    assert result["removed"] == sorted(names), result["log"]
