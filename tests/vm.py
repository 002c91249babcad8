"""A QEMU virtual machine with a real Linux kernel, for the SocketCAN tests.

These machines' kernel has no AF_CAN. The VM boots Debian's kernel (``linux-image-amd64``)
under TCG with this machine's root shared read-only over 9p as its own root, a tmpfs for its
writes, and ``vcan0`` (classic) and ``vcanfd0`` (``mtu 72``) up. It has no network device.

Commands reach the guest through a second 9p share (a host folder, writable): the host writes
``N.cmd`` (JSON: argv, env, cwd), the guest's agent (this file, run as ``python vm.py agent
SHARE``) starts it at once, writes its pid to ``N.pid``, its output to ``N.out``/``N.err`` and,
when it ends, its exit status to ``N.rc``. Commands run side by side (a server, a traffic
generator and a client at the same time); the host waits for whatever files it needs.

``python vm.py collect HOST PORT FILE COUNT SECONDS`` (in the guest) connects to an ECUconnect
port and writes the bytes it receives to FILE until COUNT records came or SECONDS passed
without any after the first.

Booting needs an initramfs that can mount a 9p root: one is built once per kernel with
``mkinitramfs`` into CACHE (the image Debian installs has no 9p modules).
"""
import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get("CANCORDER_VM_CACHE",
                       os.path.join(os.path.expanduser("~"), ".cache", "cancorder-vm"))
PACKAGES = "qemu-system-x86 linux-image-amd64 can-utils"
INSTALL_HINT = (f"the SocketCAN tests boot a VM: install {PACKAGES} "
                f"(apt-get install -y {PACKAGES}; .ci/run does)")
#: seconds a boot may take under TCG on a loaded machine (about 20 s on a quiet one)
BOOT_TIMEOUT = 300.0
INITRAMFS_MODULES = ("9p", "9pnet", "9pnet_virtio", "netfs", "virtio_pci")

GUEST_INIT = r"""#!/bin/sh
# PID 1 of the test VM: the host's root is mounted read-only; writes go to tmpfs.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=1777 guest /run
mkdir -p /run/share /run/tmp /run/home /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /run/share
ip link set lo up
modprobe vcan; modprobe can-raw
ip link add dev vcan0 type vcan && ip link set vcan0 up
ip link add dev vcanfd0 type vcan && ip link set vcanfd0 mtu 72 && ip link set vcanfd0 up
export HOME=/run/home TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1
# not exec: the agent is not PID 1, so orphans it never started are not its to reap
@PYTHON@ @AGENT@ agent /run/share > /run/share/agent.log 2>&1
echo o > /proc/sysrq-trigger
sleep 60
"""


class VmUnavailable(Exception):
    """What is missing to boot the VM (said as one line)."""


def kernel_version():
    """The newest installed kernel whose modules are present."""
    versions = []
    for image in glob.glob("/boot/vmlinuz-*"):
        version = image[len("/boot/vmlinuz-"):]
        if os.path.isdir(f"/lib/modules/{version}/kernel"):
            versions.append(version)
    if not versions:
        raise VmUnavailable(INSTALL_HINT + " (no /boot/vmlinuz-* with its modules)")
    return sorted(versions, key=lambda v: [int(p) if p.isdigit() else p
                                          for p in v.replace("-", ".").split(".")])[-1]


def qemu_binary():
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VmUnavailable(INSTALL_HINT + " (qemu-system-x86_64 is missing)")
    for tool in ("cangen", "candump", "cansend"):
        if shutil.which(tool) is None:
            raise VmUnavailable(INSTALL_HINT + f" ({tool} is missing)")
    if shutil.which("mkinitramfs") is None:
        raise VmUnavailable(INSTALL_HINT + " (mkinitramfs is missing: initramfs-tools)")
    return qemu


def initramfs(version):
    """An initramfs of ``version`` with the 9p modules, built once and kept in CACHE."""
    os.makedirs(CACHE, exist_ok=True)
    target = os.path.join(CACHE, f"initrd.img-{version}-9p")
    with open(os.path.join(CACHE, "build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if os.path.exists(target):
            return target
        conf = os.path.join(CACHE, "initramfs-tools")
        shutil.rmtree(conf, ignore_errors=True)
        shutil.copytree("/etc/initramfs-tools", conf)
        with open(os.path.join(conf, "modules"), "a") as modules:
            modules.write("\n" + "\n".join(INITRAMFS_MODULES) + "\n")
        done = subprocess.run(["mkinitramfs", "-d", conf, "-o", target + ".part", version],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise VmUnavailable(f"mkinitramfs failed for {version}: {done.stderr.strip()[-500:]}")
        os.rename(target + ".part", target)
    return target


class Command:
    """One command running in the guest."""

    def __init__(self, vm, number):
        self.vm = vm
        self.number = number

    def _path(self, suffix):
        return os.path.join(self.vm.share, f"{self.number}.{suffix}")

    @property
    def returncode(self):
        try:
            with open(self._path("rc")) as f:
                return int(f.read())
        except FileNotFoundError:
            return None

    @property
    def stdout(self):
        return _read_text(self._path("out"))

    @property
    def stderr(self):
        return _read_text(self._path("err"))

    @property
    def pid(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = _read_text(self._path("pid"))
            if text.strip():
                return int(text)
            self.vm.check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"the guest never started command {self.number}")

    def wait(self, timeout=120.0):
        """The exit status; TimeoutError when the command is still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            rc = self.returncode
            if rc is not None:
                return rc
            self.vm.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest command {self.number} still running after "
                                   f"{timeout} s:\n{self.stdout}\n{self.stderr}")
            time.sleep(0.05)

    def wait_for(self, pattern, timeout=120.0, stream="stderr"):
        """Wait for a line of the command's output matching ``pattern``; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        ended = False
        while True:
            text = getattr(self, stream)
            for line in text.splitlines():
                match = regex.search(line)
                if match:
                    return match
            if ended:  # its whole output was read after it ended
                raise AssertionError(f"command {self.number} ended (exit {self.returncode}) "
                                     f"without a line matching {pattern!r}:\n{text}")
            ended = self.returncode is not None
            self.vm.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n{text}")
            time.sleep(0.1)

    def signal(self, sig=signal.SIGTERM):
        """Send ``sig`` to the command (inside the guest)."""
        self.vm.run(["kill", f"-{int(sig)}", str(self.pid)], timeout=60)

    def stop(self, timeout=60.0):
        """SIGTERM, then the exit status (SIGKILL if it does not end)."""
        if self.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except TimeoutError:
                self.signal(signal.SIGKILL)
        return self.wait(timeout)


def _read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Vm:
    """A booted guest: ``start(argv)`` runs a command in it, ``run`` waits for it too."""

    def __init__(self, workdir, memory=1024):
        self.workdir = workdir
        self.share = os.path.join(workdir, "share")
        self.console = os.path.join(workdir, "console.log")
        self.memory = memory
        self.process = None
        self._next = 0

    def boot(self, timeout=BOOT_TIMEOUT):
        qemu = qemu_binary()
        version = kernel_version()
        initrd = initramfs(version)
        os.makedirs(self.share, exist_ok=True)
        init = os.path.join(self.workdir, "init")
        with open(init, "w") as f:
            f.write(GUEST_INIT.replace("@PYTHON@", sys.executable)
                    .replace("@AGENT@", os.path.abspath(__file__)))
        os.chmod(init, 0o755)
        argv = [qemu, "-accel", "tcg", "-cpu", "max", "-m", str(self.memory), "-smp", "1",
                "-display", "none", "-monitor", "none", "-serial", f"file:{self.console}",
                "-no-reboot", "-nic", "none",  # the guest reaches no network
                "-kernel", f"/boot/vmlinuz-{version}", "-initrd", initrd,
                "-append", "console=ttyS0 root=hostroot rootfstype=9p "
                           "rootflags=trans=virtio,version=9p2000.L,msize=262144 ro "
                           f"init={init} panic=-1 quiet",
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,"
                           "readonly=on",
                "-virtfs", f"local,path={self.share},mount_tag=share,"
                           "security_model=passthrough"]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        ready = os.path.join(self.share, "ready")
        while not os.path.exists(ready):
            self.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise VmUnavailable(f"the VM did not boot in {timeout:g} s; console:\n"
                                    + _read_text(self.console)[-3000:])
            time.sleep(0.2)
        return self

    def check_alive(self):
        if self.process is not None and self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr \
                else ""
            raise VmUnavailable(f"the VM stopped (qemu exit {self.process.returncode}): "
                                f"{err.strip()[-1000:]}\nconsole:\n"
                                + _read_text(self.console)[-3000:])

    def start(self, argv, env=None, cwd=ROOT):
        """Run ``argv`` in the guest (a list, or a string for ``sh -c``); returns a Command."""
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        self._next += 1
        number = self._next
        path = os.path.join(self.share, f"{number}.cmd")
        with open(path + ".tmp", "w") as f:
            json.dump({"argv": list(argv), "env": env or {}, "cwd": cwd}, f)
        os.rename(path + ".tmp", path)
        return Command(self, number)

    def run(self, argv, env=None, timeout=120.0, check=True):
        """Run ``argv`` to its end; the Command (``check``: a non-zero exit fails)."""
        command = self.start(argv, env=env)
        rc = command.wait(timeout)
        if check and rc != 0:
            raise AssertionError(f"guest command {argv!r} exited {rc}:\n{command.stdout}\n"
                                 f"{command.stderr}")
        return command

    def path(self, name):
        """A file in the share: the same path for the host and (under /run/share) the guest."""
        return os.path.join(self.share, name), f"/run/share/{name}"

    def stop(self):
        """Power the guest off; kill qemu by its pid if it does not go."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(Exception):
                path = os.path.join(self.share, "poweroff")
                open(path, "w").close()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process.stderr:
            process.stderr.close()


# ---- in the guest -----------------------------------------------------------------------------

def agent(share):
    """The guest's command loop (a child of the init script)."""
    running = {}
    started = set()
    open(os.path.join(share, "ready"), "w").close()
    while True:
        if os.path.exists(os.path.join(share, "poweroff")):
            for proc in running.values():
                with contextlib.suppress(Exception):
                    proc.kill()
            os.sync()
            with open("/proc/sysrq-trigger", "w") as f:
                f.write("o")
            time.sleep(60)
        for name in os.listdir(share):
            if not name.endswith(".cmd") or name in started:
                continue
            started.add(name)
            number = name[:-4]
            with open(os.path.join(share, name)) as f:
                spec = json.load(f)
            env = dict(os.environ, **spec["env"])
            # python-can without asammdf in the guest: see vm_guest/asammdf.py
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [os.path.join(HERE, "vm_guest"), env.get("PYTHONPATH")]))
            try:
                proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=env,
                                        stdin=subprocess.DEVNULL,
                                        stdout=open(os.path.join(share, number + ".out"), "wb"),
                                        stderr=open(os.path.join(share, number + ".err"), "wb"))
            except OSError as exc:
                with open(os.path.join(share, number + ".err"), "w") as f:
                    f.write(f"cannot start {spec['argv']}: {exc}\n")
                _write_atomic(os.path.join(share, number + ".rc"), "127")
                continue
            _write_atomic(os.path.join(share, number + ".pid"), str(proc.pid))
            running[number] = proc
        for number, proc in list(running.items()):
            rc = proc.poll()
            if rc is not None:
                del running[number]
                _write_atomic(os.path.join(share, number + ".rc"), str(rc))
        time.sleep(0.02)


def _write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def collect(host, port, path, count, idle):
    """Receive ECUconnect bytes into ``path`` until ``count`` records or ``idle`` s of silence."""
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.settimeout(120.0)  # for the first bytes; then ``idle``
    count = int(count)
    data = bytearray()
    records = pos = 0
    print(f"connected {sock.getsockname()[1]}", flush=True)
    with open(path, "wb") as out:
        while records < count:
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                break
            if not chunk:
                break
            sock.settimeout(float(idle))
            out.write(chunk)
            out.flush()
            data += chunk
            while len(data) - pos >= 14 and len(data) - pos >= 14 + data[pos + 13]:
                pos += 14 + data[pos + 13]
                records += 1
    print(f"records {records}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "agent":
        agent(sys.argv[2])
    elif sys.argv[1] == "collect":
        collect(*sys.argv[2:7])
