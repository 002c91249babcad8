"""The adapter flags (``-i -c -b --fd --data-bitrate --opt``...) and the source they open:
``serve`` reads a bus through them, ``gen -i`` sends onto one through the same source."""
from .. import argtypes
from ._server_args import check


def add_adapter_arguments(bus, reads=True):
    """The flags, in ``bus`` (an argument group). ``reads=False`` (gen: it only sends) leaves
    out --auto, --fd (gen's own --fd says both), --listen-only and --timestamps."""
    bus.add_argument("-i", "--interface", default=None,
                     help="python-can interface: socketcan, gs_usb, slcan, pcan, kvaser, "
                          "vector... (default: socketcan on Linux, gs_usb elsewhere)")
    bus.add_argument("-c", "--channel", default=None,
                     help="channel: can0, a device index, /dev/ttyACM0, COM8, a pyserial URL "
                          "(socket://host:port)")
    bus.add_argument("-b", "--bitrate", type=argtypes.bitrate, default=500000,
                     help="bit rate in bit/s: 500000, 500k, 1M, 83.3k (default: 500k)")
    if reads:
        bus.add_argument("--auto", action="store_true",
                         help="use the first adapter that opens among those cancorder detect "
                              "finds")
        bus.add_argument("--fd", action="store_true", help="open the bus in CAN FD mode")
    bus.add_argument("--data-bitrate", "--data_bitrate", type=argtypes.bitrate, default=None,
                     help="CAN FD data-phase bit rate in bit/s, e.g. 2M (with --fd; "
                          "--data_bitrate as python-can spells it works too)")
    if reads:
        bus.add_argument("--listen-only", action="store_true",
                         help="never acknowledge or send on the bus (where the backend can)")
        bus.add_argument("--timestamps", choices=("adapter", "host"), default="adapter",
                         help="adapter: the frame's own receive time (device clocks mapped to "
                              "Unix time); host: stamped on arrival (default: adapter)")
    bus.add_argument("--opt", dest="options", action="append", type=argtypes.backend_option,
                     default=[], metavar="KEY=VALUE",
                     help="pass an option to the python-can backend (repeatable); "
                          "backend=python-can reads socketcan and slcan through python-can "
                          "instead of cancorder's own readers")


def adapter_source(args, interface, channel, record_filter=None):
    """The source of one adapter: cancorder's own SocketCAN and SLCAN sources (unless --opt
    backend=python-can, or slcan_backend=python-can as before), python-can's bus for
    everything else."""
    from ..sources.pycan import PythonCanSource

    options = dict(args.options)
    backend = options.pop("backend", None)
    backend = options.pop("slcan_backend", None) or backend or "cancorder"
    check(backend in ("cancorder", "python-can"),
          "--opt backend: use cancorder (the default) or python-can")
    listen_only = getattr(args, "listen_only", False)
    timestamps = getattr(args, "timestamps", "host")
    if interface == "socketcan" and backend == "cancorder":
        from ..sources.socketcan import SocketcanSource

        check(not args.data_bitrate, "--data-bitrate: set it on the interface (ip link "
                                     "set CHANNEL type can ... dbitrate N fd on)")
        return SocketcanSource(channel or "can0", record_filter=record_filter,
                               timestamps=timestamps, bitrate=args.bitrate,
                               listen_only=listen_only, options=options)
    if interface == "slcan" and backend == "cancorder":
        from ..sources.slcan import SlcanSource

        return SlcanSource(channel, bitrate=args.bitrate, fd=args.fd,
                           data_bitrate=args.data_bitrate,
                           listen_only=listen_only, record_filter=record_filter,
                           timestamps=timestamps, options=options)
    return PythonCanSource(
        interface, channel, bitrate=args.bitrate, fd=args.fd,
        data_bitrate=args.data_bitrate, record_filter=record_filter,
        listen_only=listen_only, timestamps=timestamps, options=options)
