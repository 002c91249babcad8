"""Inside a private network namespace: the standalone executable (argv[1]) advertises a
mock-uds logger over Zeroconf, lists it with `detect --network` and streams from it with `dump`
found by browsing (no target). Prints one JSON object."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402


def main(exe):
    env = cancorder_env()
    env.pop("PYTHONPATH", None)
    scratch = os.path.dirname(exe)

    def cancorder(*args):
        proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=scratch)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: a one-file executable passes it on to its child
            out, err = proc.communicate()
        return proc.returncode, out, err

    server = CancorderProcess(["mock-uds", "--service-name", "exe-bench", "--speed", "50"],
                              command=[exe], env=env, cwd=scratch)
    result = {}
    try:
        result["port"] = server.port()
        server.wait_for("advertised as")
        code, out, err = cancorder("detect", "--network", "--json", "--browse-time", "2")
        result["detect_code"], result["detect_log"] = code, err
        result["detect"] = json.loads(out or "[]")
        code, out, err = cancorder("dump", "--browse-time", "2", "-f", "candump", "-n", "5")
        result["dump_code"], result["dump_lines"], result["dump_log"] = \
            code, out.splitlines(), err
        result["exit_code"] = server.terminate()
    finally:
        server.terminate()
        result["server_log"] = server.log
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
