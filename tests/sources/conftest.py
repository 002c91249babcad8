import pytest


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
