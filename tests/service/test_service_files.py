"""The shipped service files: a unit systemd accepts, udev rules, a launchd plist, the installer."""
import os
import plistlib
import re
import shutil
import subprocess
import sys

import pytest

from cancorder import service
from cancorder.cli import serving_sources
from cancorder.commands import _config as config
from tests.helpers import ROOT

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def installed(tmp_path, *extra):
    root = tmp_path / "root"
    done = subprocess.run(
        [sys.executable, "-m", "cancorder", "service", "install", "bench", "--root", str(root), *extra],
        capture_output=True, text=True, timeout=60,
        cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return root, done.stdout


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze missing: .ci/run installs "
                                                    "Debian's systemd package")
def test_systemd_analyze_verifies_the_installed_unit(tmp_path):
    root, out = installed(tmp_path)
    template = root / "etc/systemd/system/cancorder@.service"
    instance = tmp_path / "cancorder@bench.service"
    shutil.copy(template, instance)
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(instance)], capture_output=True,
                          text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values too: they are warnings naming the file
    assert done.returncode == 0, done.stderr
    assert instance.name not in done.stderr and "cancorder" not in done.stderr, done.stderr
    text = template.read_text()
    assert re.search(r"^ExecStart=/\S+ serve --config /etc/cancorder/%i.toml$", text, re.M)
    assert "/usr/local/bin/cancorder" not in text  # the installed program's own path


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze missing")
def test_systemd_analyze_would_catch_a_broken_unit(tmp_path):
    """The check above is a real one: a misspelt key or a missing program is reported."""
    text = service.unit_text().replace("NoNewPrivileges=", "NoNewPrivilegez=")
    broken = tmp_path / "cancorder@x.service"
    broken.write_text(text)
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True,
                          text=True, timeout=60)
    assert "NoNewPrivilegez" in done.stderr
    broken.write_text(service.unit_text(["/nonexistent/cancorder"]))
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "/nonexistent/cancorder" in done.stderr


def test_unit_has_what_the_service_promises():
    keys = {}
    for line in service.shipped(service.UNIT).splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            keys.setdefault(key, value)
    assert keys["Type"] == "notify" and keys["Restart"] == "on-failure"
    assert keys["DynamicUser"] == "yes" and "dialout" in keys["SupplementaryGroups"].split()
    assert keys["ProtectSystem"] == "strict" and keys["NoNewPrivileges"] == "yes"
    assert set(keys["RestrictAddressFamilies"].split()) >= {
        "AF_CAN", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"}
    assert "ReadWritePaths" in keys and "WatchdogSec" in keys
    assert keys["RestartPreventExitStatus"] == "2"  # a bad config is not restarted forever


def test_udev_rules_cover_the_adapters():
    rules = [line for line in service.shipped(service.UDEV_RULES).splitlines()
             if line.strip() and not line.startswith("#")]
    ids = set()
    for rule in rules:
        # every clause is KEY==value, KEY=value or KEY+=value with a quoted value
        for clause in rule.split(", "):
            assert re.fullmatch(r'[A-Z]+(\{\w+\})?(==|\+=|=)"[^"]*"', clause), clause
        vendor = re.search(r'ATTRS\{idVendor\}=="(\w{4})"', rule).group(1)
        product = re.search(r'ATTRS\{idProduct\}=="(\w{4})"', rule).group(1)
        ids.add(f"{vendor}:{product}")
        assert 'MODE="0660"' in rule and ('GROUP="plugdev"' in rule or 'GROUP="dialout"' in rule)
    assert {"1d50:606f", "16d0:117e", "16d0:0eac"} <= ids  # candleLight, CANable slcan, TouCAN


def test_launchd_plist(tmp_path):
    root, _ = installed(tmp_path, "--platform", "macos")
    path = root / "Library/LaunchDaemons/org.cancorder.bench.plist"
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == "org.cancorder.bench"
    assert plist["ProgramArguments"][-3:] == ["serve", "--config",
                                              "/usr/local/etc/cancorder/bench.toml"]
    assert os.path.isabs(plist["ProgramArguments"][0])
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["UserName"] != "root"
    assert (root / "usr/local/etc/cancorder/bench.toml").exists()


def test_install_writes_files_and_keeps_an_existing_config(tmp_path):
    root, out = installed(tmp_path)
    conf = root / "etc/cancorder/bench.toml"
    assert (root / "etc/udev/rules.d/60-cancorder.rules").exists()
    assert "systemctl enable --now cancorder@bench" in out
    # the example config is a valid config
    assert [b.name for b in config.load(str(conf), serving_sources()).buses] == ["powertrain", "body"]
    conf.write_text("# mine\n")
    root, out = installed(tmp_path)
    assert conf.read_text() == "# mine\n" and "kept " in out


def test_install_refuses_a_bad_config_before_writing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[bus]]\nbitrate = "fast"\n')
    done = subprocess.run([sys.executable, "-m", "cancorder", "service", "install", "x",
                           "--root", str(tmp_path / "root"), "--config", str(bad)],
                          capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2 and 'bitrate "fast"' in done.stderr
    assert not (tmp_path / "root").exists()


# ---- issue 22, item 11: the unit can start what install wrote ----

def test_readme_production_path_in_the_units_sandbox(tmp_path):
    """In a mount namespace that hides what the unit hides (tests/service/
    namespace_install_check.py): install refuses the checkout's venv (pyenv's Python is in
    /root) and a config writing outside /var/lib/cancorder or in /tmp, and docs/production.md's
    /opt/cancorder set-up installs a unit whose ExecStart runs as a user of its own and
    records."""
    from tests.helpers import cancorder_env, free_port

    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare -m and setpriv for the unit's sandbox")
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable,
         "tests/service/namespace_install_check.py", str(tmp_path), str(free_port())],
        capture_output=True, text=True, env=cancorder_env(), cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "ok", done.stdout


def test_unit_has_descriptors_for_many_clients():
    """LimitNOFILE=: systemd's default soft limit (1024) is too few for 8 buses at the
    default --max-clients over both protocols, with their recordings and the metrics port."""
    limits = [line.split("=", 1)[1] for line in service.shipped(service.UNIT).splitlines()
              if line.startswith("LimitNOFILE=")]
    assert limits and int(limits[0]) >= 8 * 2 * 64 + 1024
