import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# python-can merges these into every can.Bus(): keep the developer's settings out of the tests.
for _var in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE", "CAN_CONFIG"):
    os.environ.pop(_var, None)
os.environ.pop("CANCORDER_PURE", None)


def _stale_compiled_modules():
    stale = []
    for so in glob.glob(os.path.join(ROOT, "cancorder", "_fast", "*.so")) + \
            glob.glob(os.path.join(ROOT, "cancorder", "_fast", "*.pyd")):
        base = os.path.basename(so).split(".")[0]
        for source in (base + ".py", base + ".pxd"):
            path = os.path.join(os.path.dirname(so), source)
            if os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(so):
                stale.append(f"{os.path.basename(so)} is older than {source}")
    return stale


def pytest_configure(config):
    # pytest-xdist registers it; the serial pass runs without xdist (-p no:xdist)
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker")
    stale = _stale_compiled_modules()
    if stale:
        pytest.exit("stale compiled core (" + "; ".join(stale) + "): run `make dev`", 2)
    if os.environ.get("CANCORDER_REQUIRE_CYTHON", "") not in ("", "0"):
        import cancorder._fast as fast

        if fast.IMPLEMENTATION != "compiled":
            pytest.exit("CANCORDER_REQUIRE_CYTHON=1 but the compiled core is not built "
                        "(run `make dev`)", 2)


def pytest_collection_modifyitems(config, items):
    # the VM is booted once per test process: under pytest-xdist (make test's --dist loadgroup)
    # every test that uses it goes to one worker, so the suite boots one VM, not one a worker;
    # and it runs in make test's serial pass: a TCG guest starved by four workers beside it
    # missed frames of cangen's and took over 120 s to start a serve (a fresh-clone CI run)
    for item in items:
        if "socketcan_vm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("socketcan_vm"))
            item.add_marker(pytest.mark.serial)
            item.add_marker(pytest.mark.vm)


@pytest.fixture(params=["compiled", "pure"])
def fast(request):
    """The _fast modules of one variant: every test that takes it runs on both."""
    import cancorder._fast as fast_package

    try:
        return fast_package.variant(request.param)
    except ImportError as exc:
        if os.environ.get("CANCORDER_REQUIRE_CYTHON", "") not in ("", "0"):
            raise
        pytest.skip(f"{request.param} variant unavailable: {exc}")


@pytest.fixture
def slcan_emulator():
    from tests.emulators.slcan_adapter import SlcanEmulator

    emu = SlcanEmulator()
    yield emu
    emu.close()


@pytest.fixture
def cancorder_process():
    """Start ``cancorder`` subprocesses; every one is terminated (by its pid) at teardown."""
    from tests.helpers import CancorderProcess

    started = []

    def start(*args, **kwargs):
        proc = CancorderProcess(list(args), **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        # pytest shows this only for a failed test: what the process said, for the CI log
        print(f"--- {' '.join(map(str, proc.proc.args))}\n{proc.log}")


@pytest.fixture
def broker(tmp_path):
    """Start Mosquitto brokers (tests/mosquitto.py: each its own folder, config and loopback
    ports); every one is stopped by its pid at teardown."""
    import shutil

    from tests.mosquitto import MOSQUITTO, Mosquitto

    if not os.path.exists(MOSQUITTO) or not shutil.which("mosquitto_passwd"):
        pytest.fail("the MQTT tests need Debian's mosquitto package (.ci/run installs it)")
    started = []

    def make(**kwargs):
        instance = Mosquitto(tmp_path / f"broker{len(started)}", **kwargs)
        started.append(instance)
        return instance.start()

    yield make
    for instance in started:
        instance.stop()


@pytest.fixture(scope="session")
def socketcan_vm(tmp_path_factory):
    """One QEMU VM per test run with a real kernel, vcan0 and vcanfd0 (tests/vm.py).

    Without qemu, the kernel package or can-utils the tests fail (not skip) with the line
    that says what to install: the SocketCAN path must run in CI.
    """
    from tests.vm import Vm, VmUnavailable

    vm = Vm(str(tmp_path_factory.mktemp("vm")))
    try:
        vm.boot()
    except VmUnavailable as exc:
        vm.stop()
        pytest.fail(str(exc), pytrace=False)
    yield vm
    vm.stop()
