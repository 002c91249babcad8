"""Quiet measurements only: every benchmark prints the load average at its start and end, and
writes its figures to a file (``--record FILE``, JSON) only when the machine was quiet.

    watch = _load.start("bench.NAME", args)     # after parse_args (with add_arguments)
    ...                                         # the benchmark, printing its tables
    _load.finish(watch, figures)                # figures: anything JSON can hold, or None

Figures measured beside other work are not figures (issue 24: a table measured at load 1.5-2.5
did not reproduce at 0.1-0.6), so ``--record`` is refused when the 1-minute load average was
over QUIET_LOAD at the start (before anything runs) or at the end, unless ``--force``, which
writes them marked ``"noisy": true``. The record holds the figures, everything the benchmark
printed, its command line and both load averages.
"""
import datetime
import io
import json
import os
import platform
import sys

#: the highest 1-minute load average at which a run's figures count as measured quietly
QUIET_LOAD = 1.0


def add_arguments(parser):
    parser.add_argument("--record", metavar="FILE",
                        help="write the figures (JSON: the figures, the output, the load "
                             f"averages) to FILE; refused when the 1-minute load average is "
                             f"over {QUIET_LOAD} at the start or the end, unless --force")
    parser.add_argument("--force", action="store_true",
                        help="with --record: write the figures of a busy machine too, marked "
                             "noisy")


def load_text(load):
    return " ".join(f"{x:.2f}" for x in load)


class Watch:
    """The load average at the start of one benchmark run, and what it printed since."""

    def __init__(self, name, args):
        self.name = name
        self.record = getattr(args, "record", None)
        self.force = getattr(args, "force", False)
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_start = os.getloadavg()
        self.load_end = None
        self.output = _Tee(sys.stdout) if self.record else None

    def busy(self):
        """Where the 1-minute load average was over QUIET_LOAD: "start", "end" or both."""
        return [when for when, load in (("start", self.load_start), ("end", self.load_end))
                if load is not None and load[0] > QUIET_LOAD]


def start(name, args):
    """Print the load average; refuse a --record run on a busy machine before it starts."""
    watch = Watch(name, args)
    print(f"{name}: load average at start {load_text(watch.load_start)} "
          f"({os.cpu_count()} cores)", flush=True)
    if watch.record:
        folder = os.path.dirname(os.path.abspath(watch.record))
        if not os.path.isdir(folder):
            sys.exit(f"error: --record {watch.record}: no folder {folder}; create it or name "
                     "another file")
        if watch.busy() and not watch.force:
            sys.exit(f"error: not measuring: the 1-minute load average is "
                     f"{watch.load_start[0]:.2f}, over {QUIET_LOAD}, so --record's figures "
                     "would be noise; run it on a quiet machine, or add --force to write them "
                     "marked noisy")
        sys.stdout = watch.output
    return watch


def finish(watch, figures=None):
    """Print the load average at the end; write --record's file if the run was quiet (or
    --force); exit 1 (nothing written) if it was not."""
    watch.load_end = os.getloadavg()
    busy = watch.busy()
    print(f"{watch.name}: load average at end {load_text(watch.load_end)}"
          + (f" (over {QUIET_LOAD} at the {' and the '.join(busy)}: noisy figures)"
             if busy else ""), flush=True)
    if not watch.record:
        return
    sys.stdout = watch.output.stream
    if busy and not watch.force:
        sys.exit(f"error: {watch.record} not written: the 1-minute load average was "
                 f"{watch.load_end[0]:.2f} at the end, over {QUIET_LOAD}; run it again on a "
                 "quiet machine, or add --force to write the figures marked noisy")
    record = {
        "bench": watch.name,
        "command": [os.path.basename(sys.executable)] + ["-m", watch.name] + sys.argv[1:],
        "started": watch.started.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "load_average": {"start": list(watch.load_start), "end": list(watch.load_end)},
        "noisy": bool(busy),
        "figures": figures,
        "output": watch.output.getvalue().splitlines(),
    }
    with open(watch.record, "w") as file:
        json.dump(record, file, indent=1)
        file.write("\n")
    print(f"{watch.name}: figures written to {watch.record}"
          + (" (marked noisy: --force)" if busy else ""))


class _Tee(io.StringIO):
    """What the benchmark prints, on its stdout as ever and kept for the record."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def write(self, text):
        self.stream.write(text)
        return super().write(text)

    def flush(self):
        self.stream.flush()
