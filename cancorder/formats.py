"""Text forms of decoded frames, shared by `serve -v` and `dump`.

A frame is the decoder's tuple ``(timestamp_us, can_id, flags, data)``.
"""
from ._fast import wire

FLAG_EXT, FLAG_FD, FLAG_BRS, FLAG_ESI = wire.FLAG_EXT, wire.FLAG_FD, wire.FLAG_BRS, wire.FLAG_ESI


def candump_line(frame, channel="can0"):
    """The can-utils log line: ``(1700000000.123456) can0 123#01FF``; FD ``123##<flags><data>``.

    python-can's CanutilsLogReader and can-utils' canplayer read it back.
    """
    micros, can_id, flags, data = frame
    ident = f"{can_id:08X}" if flags & FLAG_EXT else f"{can_id:03X}"
    if flags & FLAG_FD:
        fd_flags = (1 if flags & FLAG_BRS else 0) | (2 if flags & FLAG_ESI else 0)
        body = f"{ident}##{fd_flags:X}{data.hex().upper()}"
    else:
        body = f"{ident}#{data.hex().upper()}"
    return f"({micros // 1000000}.{micros % 1000000:06d}) {channel} {body}"


def frame_to_message(frame, channel=None):
    """A python-can Message for the log writers."""
    import can

    micros, can_id, flags, data = frame
    return can.Message(timestamp=micros / 1e6, arbitration_id=can_id,
                       is_extended_id=bool(flags & FLAG_EXT), is_fd=bool(flags & FLAG_FD),
                       bitrate_switch=bool(flags & FLAG_BRS),
                       error_state_indicator=bool(flags & FLAG_ESI), data=data,
                       channel=channel, check=False)
