"""Run a Python script inside a private network namespace (Zeroconf must never multicast on
the machine's real network). The namespace has only loopback, with multicast routed on it."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, cancorder_env

SETUP = ("ip link set lo up && ip link set lo multicast on && "
         "ip route add 224.0.0.0/4 dev lo && exec \"$@\"")


def netns_available():
    if os.geteuid() != 0:
        return "needs root for unshare -n"
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", SETUP, "sh", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n failed: {probe.stderr.strip()}"
    return None


def run_in_netns(script, *args, timeout=120):
    """Run ``python script args`` in a fresh namespace; the script prints one JSON object."""
    why = netns_available()
    if why:
        pytest.skip(why)
    env = cancorder_env(CANCORDER_ZEROCONF_INTERFACES="127.0.0.1")
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", SETUP, "sh", sys.executable, script, *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, f"netns script failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])
