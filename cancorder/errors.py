"""Every exception cancorder raises on purpose: one small family, in the spirit of python-can's.

Every CancorderError is shown to the user as one ``error: ...`` line (the full traceback only
with --debug) and ends the process with its ``exit_code``. The message says what is wrong and,
where there is one, how to fix it. The two errors of the hot path live in ``_fast`` (which
imports nothing of cancorder) and are re-exported here; ``USER_ERRORS`` is what the command
line turns into one line.
"""
from ._fast import CoreUnavailableError
from ._fast.wire import WireFormatError

#: exit codes (README.md, "Exit codes"): what a supervisor such as systemd reads
EXIT_OK = 0  # a signal, or a source that finished (a --no-loop simulation, a replay)
EXIT_FAILURE = 1  # a runtime failure: a source that crashed, a logger that cannot be reached
EXIT_USAGE = 2  # bad usage or configuration: restarting will not help
EXIT_STREAM = 3  # a stream that is not ECUconnect records (dump)


class CancorderError(Exception):
    """Base of everything cancorder reports as a clean one-line error."""

    exit_code = EXIT_FAILURE


class UsageError(CancorderError):
    """A flag or argument is wrong (bad bitrate, bad --filter, port in use...)."""

    exit_code = EXIT_USAGE


class SourceError(CancorderError):
    """Something went wrong with a frame source (adapter, library, simulator)."""


class SourceInitError(SourceError):
    """The source cannot be opened: no device, no driver, no permission, bad setting."""


class LayoutError(SourceInitError):
    """TouCAN: the ctypes structures do not match the library's layout on this platform."""


class SourceLostError(SourceError):
    """The source failed while running (an unplugged adapter): the server reopens it."""


class TransmitError(SourceError):
    """A frame could not be put on the bus (the source cannot transmit, or the adapter refused)."""


class SimulationError(SourceError):
    """The UDS scenario met an answer it has no reaction for (a bug in the simulator)."""


class ConnectError(CancorderError):
    """The logger cannot be reached now (refused, timed out, unreachable): --reconnect retries."""


class ForeignStreamError(CancorderError):
    """``dump``: the port speaks another protocol than ECUconnect (a socketcand port, a web
    server, a text banner such as SSH's): the message names it and where the logger is."""

    exit_code = EXIT_STREAM


class LogFileError(CancorderError):
    """A log file read (``cancorder replay``, ``dump FILE``) is damaged: the message names the
    file and the line or byte where; the frames before the damage have been handed on."""


class PayloadError(CancorderError):
    """An MQTT message is not a cancorder batch (wrong magic or version, bad records)."""


class MqttError(CancorderError):
    """The MQTT broker cannot be used: unknown host, refused, TLS, credentials, ACL."""


class UploadError(CancorderError):
    """The object store refused the uploads (a wrong key or bucket, TLS): ``cancorder upload``
    ends with it, with the exit code of an MQTT login error (EXIT_FAILURE)."""


class ArchiveError(CancorderError):
    """The archive's lake folder cannot be written (a full disk, no permission): the worker
    ends (EXIT_FAILURE) and the broker keeps what it did not acknowledge."""


class SpoolError(UsageError):
    """The MQTT spool folder cannot be used (not writable, in use by another cancorder)."""


class ConfigError(UsageError):
    """A ``--config`` file is wrong: the message names the file, the bus and the key."""


class RemoteTransmitError(CancorderError):
    """A logger would not put a frame on its bus for a client (``cancorder send``, the python-can
    interface): its transmit is off, this host is not allowed, or its adapter refused; the
    message says which, as the logger answered."""


#: what the command line shows as one ``error:`` line (each has an ``exit_code``)
USER_ERRORS = (CancorderError, WireFormatError, CoreUnavailableError)


# ---- control flow: caught where they are raised, never shown to the user ----

class OutputClosed(Exception):
    """``dump``: the reader of its output went away (``dump | head`` has enough); the receive
    loop ends as if asked to stop."""


class UploadStopped(Exception):
    """The uploader was asked to stop in the middle of sending a part: the request is abandoned
    (a multipart upload resumes on the next start)."""


class UploadMismatch(Exception):
    """The store holds something else than the file just sent (size or checksum): the file is
    sent again, as after an outage."""


class DurationReached(Exception):
    """``mock-uds --duration``: the scenario's time is up; it stops at the next boundary
    between two exchanges, from however deep in the exchange's generators it is."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM before the command installed its clean stop (during start-up): start-up
    is abandoned and the process exits like a stop by signal (EXIT_OK)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
