"""``serve --config FILE.toml``: the keys go through the command-line flags' own parsers."""
import argparse
import subprocess
import sys
import textwrap

import pytest

from cancorder import argtypes
from cancorder.cli import serving_sources
from cancorder.commands import _config as config
from cancorder.errors import ConfigError
from tests.helpers import ROOT, cancorder_env


@pytest.fixture(scope="module")
def parsers():
    return serving_sources()


def write(tmp_path, text, name="cancorder.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load(tmp_path, text, parsers):
    return config.load(write(tmp_path, text), parsers)


def error_of(tmp_path, text, parsers):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, parsers)
    return str(caught.value)


def test_bus_keys_resolve_like_the_flags(tmp_path, parsers):
    cfg = load(tmp_path, """
        bitrate = 250000
        [metrics]
        listen = "127.0.0.1:9100"
        [[bus]]
        name = "powertrain"
        interface = "slcan"
        channel = "socket://127.0.0.1:5000"
        filter = ["7E8:7FF", "18DAF110:1FFFFFFF"]
        opt = "sleep_after_open=0"
        client_buffer = "512K"
        zeroconf = false
        data-bitrate = 2000000
        fd = true
        listen_only = true
        timestamps = "host"
        port = 42500
        bind = "127.0.0.1"
        service_name = "car-powertrain"
        max_clients = 8
        [[bus]]
        source = "mock-uds"
        seed = 7
        speed = 2.5
        async = true
        [[bus]]
        source = "toucan"
        name = "body"
        channel = 1
        bitrate = 125000
        """, parsers)
    assert cfg.args.metrics == ("127.0.0.1", 9100)
    powertrain, sim, body = cfg.buses
    # the same Namespace the command line gives (the process flags of the file included)
    cli = parsers["python-can"].parser.parse_args(
        ["-i", "slcan", "-c", "socket://127.0.0.1:5000", "-b", "250000", "--filter", "7E8:7FF",
         "--filter", "18DAF110:1FFFFFFF", "--opt", "sleep_after_open=0", "--client-buffer",
         "512K", "--no-zeroconf", "--data-bitrate", "2000000", "--fd", "--listen-only",
         "--timestamps", "host", "-p", "42500", "--bind", "127.0.0.1", "--service-name",
         "car-powertrain", "--max-clients", "8", "--metrics", "127.0.0.1:9100"])
    for key, value in vars(cli).items():
        if key not in ("func", "debug"):
            assert getattr(powertrain.args, key) == value, key
    assert powertrain.name == "powertrain" and powertrain.command == "serve"
    assert sim.name == "bus2" and sim.command == "mock-uds"
    assert (sim.args.seed, sim.args.speed, sim.args.free_running) == (7, 2.5, True)
    assert not hasattr(sim.args, "bitrate")  # the top-level default only goes where it fits
    assert (body.command, body.args.channel, body.args.bitrate) == ("touCAN", 1, 125000)


def test_a_new_flag_is_a_config_key_without_new_code(tmp_path, parsers):
    # the recording flags came after the config file, and are keys of it without new code
    parsers = serving_sources()
    cfg = load(tmp_path, """
        [[bus]]
        channel = "can0"
        record = ["logs/%Y%m%d-{channel}-{n}.log.gz"]
        rotate_size = "100M"
        keep-files = 5
        """, parsers)
    assert cfg.buses[0].args.record == ["logs/%Y%m%d-{channel}-{n}.log.gz"]
    assert cfg.buses[0].args.rotate_size == 100 << 20
    assert cfg.buses[0].args.keep_files == 5
    message = error_of(tmp_path, '[[bus]]\nchannel = "can0"\nkeep_files = 0\n', parsers)
    assert message.endswith('bus 1: keep_files 0: must be at least 1')


@pytest.mark.parametrize("line, expected", [
    ('bitrate = "fast"', 'bus "powertrain": bitrate "fast": expected a bit rate in bit/s'),
    ("port = 70000", 'bus "powertrain": port 70000: a port is 1..65535'),
    ('fd = "yes"', 'bus "powertrain": fd "yes": expected true or false'),
    ('timestamps = "gps"', 'bus "powertrain": timestamps "gps": choose one of adapter, host'),
    ('filter = ["7E8:7FF", "x"]', 'bus "powertrain": filter "x": expected ID:MASK or ID~MASK in hex'),
    ('client_buffer = "12"', 'bus "powertrain": client_buffer "12": at least 1K'),
    ('bitrat = 500000', 'bus "powertrain": bitrat is not a flag of the python-can source '
                        '(did you mean bitrate?)'),
    ('metrics = 9100', 'bus "powertrain": metrics belongs to the whole process'),
    ('source = "pcan"', 'bus "powertrain": source "pcan": choose one of python-can, slcan, '
                        'toucan, mock-uds, replay'),
    ('channel = ["a", "b"]', 'bus "powertrain": channel a list: expected one value'),
    ('name = 5', 'bus 1: name 5: letters, digits'),
])
def test_errors_name_file_bus_and_key(tmp_path, parsers, line, expected):
    name = "" if line.startswith("name") else 'name = "powertrain"\n'
    message = error_of(tmp_path, f"[[bus]]\n{name}{line}\n", parsers)
    path = tmp_path / "cancorder.toml"
    assert message.startswith(f"config {path}, "), message
    assert expected in message, message
    assert "\n" not in message


def test_unnamed_bus_is_named_by_index(tmp_path, parsers):
    message = error_of(tmp_path, '[[bus]]\nchannel = "can0"\n[[bus]]\nbitrate = "x"\n', parsers)
    assert ", bus 2: bitrate " in message


@pytest.mark.parametrize("text, expected", [
    ('[[bus]]\nport = 42500\nchannel="a"\n[[bus]]\nname = "b"\nport = 42500\nchannel="b"\n',
     'bus "b": port 42500 is also bus 1\'s'),
    ('[[bus]]\nchannel = "can0"\n[[bus]]\nchannel = "can0"\n',
     'bus 2: channel "can0" is also bus 1\'s'),
    ('[[bus]]\nname = "x"\nchannel = "a"\n[[bus]]\nname = "x"\nchannel = "b"\n',
     'bus 2 and bus 1 are both named "x"'),
    ('metrics = 42500\n[[bus]]\nport = 42500\n', "port 42500 is also the metrics port"),
    ('[[bus]]\nauto = true\n[[bus]]\nauto = true\n', "auto on more than one bus"),
    ('bogus = 1\n[[bus]]\nchannel = "can0"\n', "unknown key bogus"),
    ('[[bus]]\nchannel = "can0"\n[metrics]\nlisten = "x:y"\n', "listen \"x:y\": expected [ADDR:]PORT"),
    ('[[bus]]\nchannel = "can0"\n[metrics]\nport = 9100\n', "[metrics]: unknown key port"),
    ('log_format = "xml"\n[[bus]]\nchannel = "can0"\n', 'log_format "xml": choose one of human, json'),
    ('channel = "can0"\n', "no [[bus]] table"),
    ('[[bus]]\nchannel = "can0"\n[[bus\n', "not valid TOML"),
    ('[[bus]]\nsource = "mock-uds"\nbitrate = 5\n', "bitrate is not a flag of the mock-uds source"),
    ('[[bus]]\nsource = "mock-uds"\noutput = "x.log"\n', "output belongs to the whole process"),
    ('[[bus]]\nchannel = "can0"\nmqtt_spool_size = "512K"\n',
     'bus 1: mqtt_spool_size "512K": at least 1M (a batch is up to 64K)'),
    ('[[bus]]\nchannel = "can0"\nmqtt_spool_size = "10"\n', 'mqtt_spool_size "10": at least 1M'),
])
def test_config_mistakes(tmp_path, parsers, text, expected):
    message = error_of(tmp_path, text, parsers)
    assert expected in message, message


def test_same_channel_on_different_interfaces_is_fine(tmp_path, parsers):
    cfg = load(tmp_path, '[[bus]]\ninterface = "slcan"\nchannel = "0"\n'
                         '[[bus]]\ninterface = "gs_usb"\nchannel = "0"\n'
                         '[[bus]]\nsource = "toucan"\nchannel = 0\n', parsers)
    assert [b.name for b in cfg.buses] == ["bus1", "bus2", "bus3"]


def test_missing_file(tmp_path, parsers):
    with pytest.raises(ConfigError, match=r"config .*nope.toml: cannot read it \(No such file"):
        config.load(str(tmp_path / "nope.toml"), parsers)


def test_describe_is_toml_that_loads_back_the_same(tmp_path, parsers):
    cfg = load(tmp_path, """
        metrics = "9100"
        [[bus]]
        name = "a"
        interface = "slcan"
        channel = "socket://127.0.0.1:5000"
        filter = ["7E8:7FF"]
        opt = ["sleep_after_open=0"]
        zeroconf = false
        [[bus]]
        source = "mock-uds"
        name = "sim"
        seed = 3
        """, parsers)
    text = config.describe(cfg)
    again = config.load(write(tmp_path, text, "again.toml"), parsers)
    assert again.args.metrics == cfg.args.metrics == ("", 9100)
    for first, second in zip(cfg.buses, again.buses):
        assert vars(first.args) == vars(second.args)
    assert "zeroconf = false" in text and "client_buffer = 4194304" in text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cancorder", *args], cwd=ROOT,
                          env=cancorder_env(), capture_output=True, text=True, timeout=60)


def test_check_prints_resolved_buses_and_exits(tmp_path):
    path = write(tmp_path, '[[bus]]\nname = "engine"\ninterface = "slcan"\n'
                           'channel = "socket://127.0.0.1:1"\n')
    done = run_cli("serve", "--config", path, "--check")
    assert done.returncode == 0, done.stderr
    assert '[[bus]]\nname = "engine"\nsource = "python-can"\ninterface = "slcan"' in done.stdout


def test_config_error_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path, '[[bus]]\nname = "powertrain"\nbitrate = "fast"\n')
    done = run_cli("serve", "--config", path, "--check")
    assert done.returncode == 2
    assert done.stderr == (f'error: config {path}, bus "powertrain": bitrate "fast": expected a '
                           "bit rate in bit/s such as 500000, 500k or 1M\n")


def test_bus_flags_beside_config_are_refused(tmp_path):
    path = write(tmp_path, '[[bus]]\nchannel = "can0"\n')
    done = run_cli("serve", "--config", path, "-b", "250000", "--check")
    assert done.returncode == 2
    assert "-b cannot be given beside it" in done.stderr
    done = run_cli("serve", "--check")
    assert done.returncode == 2 and "--check checks a config file" in done.stderr


def test_listen_address_parser():
    assert argtypes.listen_address("9100") == ("", 9100)
    assert argtypes.listen_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert argtypes.listen_address("[::1]:9100") == ("::1", 9100)
    assert argtypes.listen_address("localhost:80") == ("localhost", 80)
    for bad in ("", "x", "1.2.3.4:", "1:2:3", "99999"):
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.listen_address(bad)


def test_the_readme_example_is_a_valid_config(tmp_path, parsers):
    """The example config of docs/production.md (moved there from the README)."""
    text = open(f"{ROOT}/docs/production.md", encoding="utf-8").read()
    start = text.index("```toml", text.index("## Production")) + len("```toml")
    cfg = load(tmp_path, text[start:text.index("```", start)], parsers)
    assert [(b.name, b.command) for b in cfg.buses] == [
        ("powertrain", "serve"), ("body", "serve"), ("bench", "mock-uds")]
    assert len(config.build_buses(cfg, check=True)) == 3


def test_verbose_prints_frames_of_every_bus_but_the_narrating_simulator(tmp_path, parsers):
    cfg = load(tmp_path, 'verbose = true\n[[bus]]\nchannel = "can0"\n'
                         '[[bus]]\nsource = "mock-uds"\n', parsers)
    from cancorder.sinks.printer import FramePrinter

    serve_bus, sim_bus = config.build_buses(cfg)

    def printers(bus):  # the sinks the bus will build (a printer needs nothing of the bus)
        return [make(None, None) for make in bus.options.sinks]

    assert [type(sink) for sink in printers(serve_bus)] == [FramePrinter]
    assert printers(sim_bus) == []
    assert sim_bus.source.narrate is not None  # -v narrates the scenario instead


@pytest.mark.parametrize("line, expected", [
    ('mqtt = "mqtt://127.0.0.1/fleet/{vehicle}"',
     'bus "p": --mqtt mqtt://127.0.0.1/fleet/{vehicle}: unknown topic field {vehicle}'),
    ('mqtt = "http://127.0.0.1/x"', 'bus "p": --mqtt http://127.0.0.1/x: expected an mqtt://'),
    ('mqtt = "mqtts://127.0.0.1/x"\nmqtt_ca = "/nonexistent.pem"',
     'bus "p": --mqtt-ca /nonexistent.pem: no such file'),
    ('mqtt_spool = "/tmp/x"', 'bus "p": --mqtt-spool needs --mqtt URL'),
    ('allow_transmit = true', 'bus "p": --no-beacon and --allow-transmit are socketcand options'),
])
def test_serving_flag_checks_name_the_file_and_bus(tmp_path, parsers, line, expected):
    """The checks that run when a bus is built (its serving flags: --mqtt, --record...) name
    the file and the bus too, with --check and when serving."""
    cfg = load(tmp_path, f'[[bus]]\nname = "p"\nchannel = "can0"\n{line}\n', parsers)
    with pytest.raises(ConfigError) as caught:
        config.build_buses(cfg, check=True)
    message = str(caught.value)
    assert message.startswith(f"config {tmp_path / 'cancorder.toml'}, "), message
    assert expected in message, message
    assert "\n" not in message


def test_a_bad_mqtt_key_with_check_is_one_line(tmp_path):
    path = write(tmp_path, '[[bus]]\nname = "p"\nchannel = "can0"\n'
                           'mqtt = "mqtt://127.0.0.1/a/{foo}"\n')
    done = run_cli("serve", "--config", path, "--check")
    assert done.returncode == 2
    assert done.stderr == (f'error: config {path}, bus "p": --mqtt mqtt://127.0.0.1/a/{{foo}}: '
                           "unknown topic field {foo}: the topic may use {system}, {channel} "
                           "and {interface}\n")


# ---- issue 22, item 7: --check refuses what the real start refuses, before serving ----

@pytest.mark.parametrize("case", ["socketcand twice", "socketcand on a bus port", "spool"])
def test_check_and_start_refuse_alike_before_serving(tmp_path, case):
    """Each of the issue's three configs: --check exits 2 with one line naming the file and
    the bus, and the real start exits 2 with that very line, nothing served before it."""
    from tests.helpers import free_port

    port_a, port_b, shared = free_port(), free_port(), free_port()
    (tmp_path / "file").write_text("not a folder\n")
    second = {
        "socketcand twice": (f'socketcand = "127.0.0.1:{shared}"',
                             f'socketcand port {shared} is also bus "a"\'s: a port serves one '
                             "bus and one protocol: give socketcand another port"),
        "socketcand on a bus port": (f'socketcand = "127.0.0.1:{port_a}"',
                                     f'socketcand port {port_a} is also bus "a"\'s: a port '
                                     "serves one bus and one protocol"),
        "spool": (f'mqtt = "mqtt://127.0.0.1:1/t"\nmqtt_spool = "{tmp_path}/file/spool"',
                  f"--mqtt-spool {tmp_path}/file/spool: cannot use it as the spool folder "
                  f"({tmp_path}/file is not a folder)"),
    }
    line, reason = second[case]
    path = write(tmp_path, f'source = "mock-uds"\nzeroconf = false\n'
                           f'[[bus]]\nname = "a"\nport = {port_a}\n'
                           f'socketcand = "127.0.0.1:{shared}"\n'
                           f'[[bus]]\nname = "b"\nport = {port_b}\n{line}\n')
    expected = f'error: config {path}, bus "b": {reason}'
    checked = run_cli("serve", "--config", path, "--check")
    assert checked.returncode == 2 and checked.stderr.startswith(expected), checked.stderr
    assert checked.stderr.count("\n") == 1, checked.stderr
    started = run_cli("serve", "--config", path)
    assert started.returncode == 2 and started.stderr == checked.stderr, started.stderr
