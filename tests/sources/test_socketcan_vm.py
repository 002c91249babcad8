"""The VM harness itself: a real kernel with SocketCAN, can-utils as the peers."""


def test_vm_has_vcan_and_can_utils(socketcan_vm):
    """cansend on vcan0 reaches candump in the guest; vcanfd0 carries a 64-byte FD frame."""
    vm = socketcan_vm
    dump = vm.start(["candump", "-L", "-n", "2", "vcan0", "vcanfd0"])
    vm.run("sleep 1; cansend vcan0 123#DEADBEEF && cansend vcanfd0 1F334455##1" + "11" * 64)
    assert dump.wait(60) == 0, dump.stderr
    assert "vcan0 123#DEADBEEF" in dump.stdout, dump.stdout
    # flags nibble 5: BRS as sent, and FDF, which this kernel sets on every CAN FD frame
    assert "vcanfd0 1F334455##5" + "11" * 64 in dump.stdout, dump.stdout
    assert vm.run(["python3", "-c", "import socket; print(socket.AF_CAN)"]).stdout.strip()
