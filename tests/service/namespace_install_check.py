"""Run by tests/service/test_service_files.py as root inside ``unshare -m`` (argv[1]: a work
folder, argv[2]: a free TCP port): docs/production.md's production path for the systemd unit, checked
where the unit's sandbox is rebuilt by mounts. /etc is a copy (install writes the real paths,
/etc/systemd/system/cancorder@.service and /etc/cancorder/car.toml, into it), /opt and /var/lib
are empty tmpfs; then ProtectHome= and PrivateTmp= are tmpfs over /home, /root, /run/user, /tmp
and /var/tmp, and DynamicUser= a uid of no account. Prints "ok" last, or fails an assertion.

The one step not taken as docs/production.md says: ``pip install .`` has no network here, so the venv
gets what it would install (this checkout and the test venv's packages, both outside the
hidden folders) through a .pth file, and the console script pip would write.
"""
import glob
import os
import re
import shutil
import site
import subprocess
import sys

import can  # now: once /root is hidden, this Python (pyenv's) cannot import what it lacks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

SERVICE_UID = 61234  # DynamicUser=: a uid with no account, no home, no groups
ENV = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8"}


def sh(*command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


def mount(*args):
    done = sh("mount", *args)
    assert done.returncode == 0, done.stderr


def install(command, name, *extra, env=ENV):
    return sh(*command, "service", "install", name, *extra, env=env, cwd="/")


def main(work, port):
    shutil.copytree("/etc", os.path.join(work, "etc"), symlinks=True)
    mount("--bind", os.path.join(work, "etc"), "/etc")
    mount("-t", "tmpfs", "tmpfs", "/opt")
    mount("-t", "tmpfs", "tmpfs", "/var/lib")

    # 1. From a checkout's .venv whose Python is pyenv's in /root: refused, nothing written.
    done = install([sys.executable, "-m", "cancorder"], "car", env={**ENV, "PYTHONPATH": ROOT})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("error: the service could not start ") and \
        re.search(r"which the unit hides \((ProtectHome|PrivateTmp)=yes\)", done.stderr) and \
        "/opt/cancorder/bin/pip install ." in done.stderr and \
        done.stderr.count("\n") == 1, done.stderr
    assert not os.path.exists("/etc/cancorder") and \
        not os.path.exists("/etc/systemd/system/cancorder@.service")

    # 2. docs/production.md: sudo /usr/bin/python3 -m venv /opt/cancorder && ... pip install .
    done = sh("/usr/bin/python3", "-m", "venv", "--without-pip", "/opt/cancorder")
    assert done.returncode == 0, done.stderr
    packages = sh("/opt/cancorder/bin/python", "-c",
                  "import site; print(site.getsitepackages()[0])").stdout.strip()
    # the checkout and its venv's packages stand in for `pip install .` (no network here),
    # seen through /opt, which the unit does not hide, wherever the checkout lies (/tmp, /home;
    # the package folder, not the checkout's own, which a private clone may close: mktemp -d)
    for source, seen_as in ((os.path.join(ROOT, "cancorder"), "/opt/checkout/cancorder"),
                            (site.getsitepackages()[0], "/opt/site")):
        os.makedirs(seen_as)
        mount("--bind", source, seen_as)
    with open(os.path.join(packages, "cancorder-test.pth"), "w") as handle:
        handle.write("/opt/checkout\n/opt/site\n")
    program = "/opt/cancorder/bin/cancorder"
    with open(program, "w") as handle:  # what pip writes for [project.scripts]
        handle.write("#!/opt/cancorder/bin/python\nimport sys\nfrom cancorder.cli import main\n"
                     "sys.exit(main())\n")
    os.chmod(program, 0o755)

    # 3. A config the service could not use: refused, naming the file, the bus and the key.
    configs = os.path.join(work, "configs")
    os.makedirs(configs)
    for record, reason in (("/opt/can/r-{n}.log", "may write only in /var/lib/cancorder"),
                           ("/tmp/r-{n}.log", "the unit hides /tmp (PrivateTmp=yes)")):
        path = os.path.join(configs, "bad.toml")
        with open(path, "w") as handle:
            handle.write(f'[[bus]]\nname = "bench"\nsource = "mock-uds"\nrecord = "{record}"\n')
        done = install([program], "car", "--config", path)
        assert done.returncode == 2 and done.stderr.startswith(
            f'error: config {path}, bus "bench": record "{record}": the service could not '
            "use it: ") and reason in done.stderr, done.stderr
        assert not os.path.exists("/etc/cancorder")

    # 4. A config it can use: installed.
    good = os.path.join(configs, "car.toml")
    with open(good, "w") as handle:
        handle.write(f'[[bus]]\nname = "bench"\nsource = "mock-uds"\nport = {port}\n'
                     'zeroconf = false\nasync = true\nno_loop = true\nspeed = 50\nblocks = 2\n'
                     'record = "/var/lib/cancorder/car-{n}.log"\n')
    done = install([program], "car", "--config", good)
    assert done.returncode == 0, done.stderr
    unit = open("/etc/systemd/system/cancorder@.service").read()
    command = next(line.split("=", 1)[1] for line in unit.splitlines()
                   if line.startswith("ExecStart="))
    assert command.startswith(program + " "), command

    # 5. The unit's sandbox: the home folders and /tmp hidden, a user of its own.
    for folder in ("/home", "/root", "/run/user", "/tmp", "/var/tmp"):
        if os.path.isdir(folder):
            mount("-t", "tmpfs", "tmpfs", folder)
    os.makedirs("/var/lib/cancorder", exist_ok=True)  # StateDirectory=, the service user's
    os.chown("/var/lib/cancorder", SERVICE_UID, SERVICE_UID)
    as_service = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}",
                  "--clear-groups", "--"]
    # the sandbox is real: the checkout venv's program cannot even start in it
    hidden = sh(*as_service, os.path.join(os.path.dirname(sys.executable), "cancorder"),
                "--version", env=ENV, cwd="/")
    assert hidden.returncode != 0 and "version" not in hidden.stdout, hidden.stdout
    # the installed one runs its config and records where the unit lets it
    done = sh(*as_service, *command.replace("%i", "car").split(), env=ENV, cwd="/")
    assert done.returncode == 0, (done.returncode, done.stderr)
    files = glob.glob("/var/lib/cancorder/car-*.log")
    assert files, done.stderr
    recorded = [m for path in files for m in can.LogReader(path)]
    assert len(recorded) > 10, done.stderr
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
