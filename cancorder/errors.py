"""One small exception family, in the spirit of python-can's.

Every CancorderError is shown to the user as one ``error: ...`` line (the full traceback only
with --debug). The message says what is wrong and, where there is one, how to fix it.
"""


class CancorderError(Exception):
    """Base of everything cancorder reports as a clean one-line error."""

    exit_code = 1


class UsageError(CancorderError):
    """A flag or argument is wrong (bad bitrate, bad --filter, port in use...)."""

    exit_code = 2


class SourceError(CancorderError):
    """Something went wrong with a frame source (adapter, library, simulator)."""


class SourceInitError(SourceError):
    """The source cannot be opened: no device, no driver, no permission, bad setting."""


class SourceLostError(SourceError):
    """The source failed while running (an unplugged adapter): the server reopens it."""


class SourceFinished(SourceError):
    """The source has no more frames (a simulator run with --no-loop): a normal end."""


class WireFormatError(CancorderError):
    """A byte stream is not valid ECUconnect Logger records.

    ``offset`` is the stream offset of the first byte of the bad record, ``data`` the bytes
    shown as evidence (the header, or what there was of it), ``frames`` the good frames decoded
    from the same chunk before the bad record (a reader still shows and records them).
    """

    exit_code = 3

    def __init__(self, reason, offset, data=b"", frames=()):
        self.reason = reason
        self.offset = offset
        self.data = bytes(data)
        self.frames = list(frames)
        shown = " ".join(f"{b:02x}" for b in self.data[:32])
        super().__init__(f"malformed stream at byte {offset}: {reason}"
                         + (f" (bytes: {shown})" if shown else ""))


class ReplayFileError(CancorderError):
    """A log file given to ``cancorder replay`` is damaged (the message names the file and the
    line or byte where): the frames before the damage have been served."""
