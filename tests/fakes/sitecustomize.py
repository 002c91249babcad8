"""Test-only hardware fakes for cancorder subprocesses (never installed; tests/commands/test_detect.py
puts this folder first on PYTHONPATH so Python imports it at start-up).

CANCORDER_FAKE_SERIAL_PORTS  JSON list of pyserial ListPortInfo fields ({"device", "vid",
                             "pid", "description", ...}): what serial.tools.list_ports.comports
                             returns
CANCORDER_FAKE_GS_USB=none   gs_usb's GsUsb.scan() finds no device (instead of asking libusb)
CANCORDER_FAKE_SLCAN_CRASH   a channel: cancorder's SLCAN source on that channel raises
                             RuntimeError (a bug, not a lost adapter) once frames came
"""
import json
import os


def _install():
    ports = os.environ.get("CANCORDER_FAKE_SERIAL_PORTS")
    if ports is not None:
        from serial.tools import list_ports, list_ports_common

        fakes = []
        for fields in json.loads(ports):
            info = list_ports_common.ListPortInfo(fields["device"], skip_link_detection=True)
            for key, value in fields.items():
                setattr(info, key, value)
            fakes.append(info)
        list_ports.comports = lambda include_links=False: list(fakes)
    if os.environ.get("CANCORDER_FAKE_GS_USB") == "none":
        from gs_usb.gs_usb import GsUsb

        GsUsb.scan = classmethod(lambda cls: [])
    crash_channel = os.environ.get("CANCORDER_FAKE_SLCAN_CRASH")
    if crash_channel is not None:
        from cancorder.sources.slcan import SlcanSource

        real_reader = SlcanSource.reader

        def reader(self):  # what the source thread reads through
            read = real_reader(self)
            if self.channel != crash_channel:
                return read

            def crashing(timeout):
                records = read(timeout)
                if records:
                    raise RuntimeError("the fake driver fell over")
                return records

            return crashing

        SlcanSource.reader = reader


_install()
