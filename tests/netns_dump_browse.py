"""Inside a private network namespace: `cancorder serve` advertises itself; `dump --browse`
lists it, `dump` without a target finds and connects to it, `detect --network` lists it, `dump` to
its socketcand port names its ECUconnect port; once it is gone, `dump` says nobody answered. Prints one JSON object."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import can  # noqa: E402

from tests.emulators.slcan_adapter import SlcanEmulator  # noqa: E402
from tests.helpers import ROOT, CancorderProcess, cancorder_env  # noqa: E402


def cancorder(*args):
    return subprocess.run([sys.executable, "-m", "cancorder", *args], capture_output=True,
                          text=True, env=cancorder_env(), cwd=ROOT, timeout=60)


def main():
    emu = SlcanEmulator()
    server = CancorderProcess(["serve", "-i", "slcan", "-c", emu.url, "--service-name",
                               "dump-browse", "--socketcand", "127.0.0.1:29536",
                               "--no-beacon"])
    result = {}
    dump = None
    try:
        result["port"] = server.port()
        server.wait_for("advertised as")
        browse = cancorder("dump", "--browse", "--browse-time", "2")
        result["browse_code"], result["browse"] = browse.returncode, browse.stdout
        result["browse_log"] = browse.stderr

        dump = CancorderProcess(["dump", "--browse-time", "2", "-f", "candump", "-n", "3"],
                                stdout=subprocess.PIPE)
        server.wait_for(r"connected \(1 connected\)", timeout=30)
        frame = can.Message(arbitration_id=0x321, is_extended_id=False, data=b"\xc0\xff\xee")
        deadline = time.monotonic() + 20
        while dump.proc.poll() is None and time.monotonic() < deadline:
            emu.send_messages([frame])
            time.sleep(0.1)
        result["dump_code"] = dump.proc.wait(10)
        result["dump_lines"] = dump.proc.stdout.read().splitlines()
        result["dump_log"] = dump.log

        detect = cancorder("detect", "--network", "--json", "--browse-time", "2")
        result["detect_code"] = detect.returncode
        result["detect"] = json.loads(detect.stdout or "[]")
        result["detect_log"] = detect.stderr

        # its socketcand port by mistake: named, with the ECUconnect port Zeroconf gives
        wrong = cancorder("dump", "127.0.0.1:29536")
        result["socketcand_code"], result["socketcand_log"] = wrong.returncode, wrong.stderr

        result["exit_code"] = server.terminate()
        empty = cancorder("dump", "--browse-time", "1")
        result["empty_browse_code"], result["empty_log"] = empty.returncode, empty.stderr
    finally:
        if dump is not None:
            dump.stop()
        server.stop()
        emu.close()
        result["server_log"] = server.log
    print(json.dumps(result))


if __name__ == "__main__":
    main()
