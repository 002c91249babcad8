"""Small things a new user hit (issue 11): each checked where it lives."""
import struct

from cancorder.cli import _exception_name


def test_an_unexpected_library_error_does_not_read_error_error():
    try:
        struct.pack(">Q", 1 << 64)
    except struct.error as exc:
        assert _exception_name(exc) == "struct.error"
    assert _exception_name(ValueError("x")) == "ValueError"
