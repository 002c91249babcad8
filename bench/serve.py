"""What users run, measured from outside: `cancorder serve -i slcan` beside a minimal C proxy.

    .venv/bin/python -m bench.serve              (make bench; about 20 minutes)
    .venv/bin/python -m bench.serve --quick      (a subset, one repetition: a few minutes)

Everything is a process of its own, talking over 127.0.0.1:
- an SLCAN adapter emulator in C (bench/c/slcan_emu.c), fed the way adapters feed a host: one
  write per frame ("frame"), or every 1 ms one write of the frames due ("burst": a USB
  adapter's rhythm), or as fast as the socket takes 64 KiB writes ("unpaced"); every frame's
  data is the emulator's monotonic clock at its write;
- the server under test, with default flags (only --bind 127.0.0.1 --no-zeroconf, so that
  nothing leaves loopback): `cancorder serve -i slcan -c socket://127.0.0.1:PORT`, compiled
  core; the same with the pure-Python twin (CANCORDER_PURE=1); the same with python-can's
  reader (--opt slcan_backend=python-can); and the references, a minimal C proxy compiled here
  (bench/c/proxy.c: one epoll loop, 64 KiB reads, the same records, non-blocking sends, a
  4 MiB backlog per client) in its two flush policies: "C same policy" flushes as serve does
  (at once on a quiet link, else at the window's end), "C coalescing" (--coalesce) always
  waits one 1 ms window, so the cost of serve's latency choice is visible;
- N checking clients in C (bench/c/clients.c) that read 64 KiB at a time, check that every
  frame arrives once and in order, and measure each frame's delay from the adapter's write to
  their read.

Reported per point, for serve and both references: CPU-seconds of the server process per
10,000 frames (utime + stime from /proc/PID/stat, from just before the emulator starts to the
moment every client has every frame), p50 and p99 delay, and whether every client got every
frame; medians over --reps repetitions, the subjects of one point run back to back so that
they see the same machine. Also: a silent bus and a 100 frames/s bus (CPU % of one core, 1
client), and unpaced frames/s received by 16 and 64 clients. The machine's load average is
printed at the start, at each repetition and at the end; --record FILE keeps the figures only
from a quiet run (bench/_load.py).
"""
import argparse
import ast
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
from tests.helpers import CancorderProcess, cancorder_env  # noqa: E402

C_SOURCES = os.path.join(ROOT, "bench", "c")
RATES = (1000, 10000, 30000)
MODES = ("frame", "burst")
CLIENTS = (1, 4, 16, 64)
SECONDS = {1000: 6.0, 10000: 4.0, 30000: 3.0}  # of traffic per run, before --scale
IDLE_SECONDS = 15.0
UNPACED_FRAMES = {16: 1_000_000, 64: 300_000}
TICK = os.sysconf("SC_CLK_TCK")

SUBJECTS = {
    # name: (command after `python -m cancorder`, extra environment)
    "cancorder": ([], {}),
    "pure": ([], {"CANCORDER_PURE": "1"}),
    "python-can": (["--opt", "slcan_backend=python-can"], {}),
}
REFERENCE = "C same policy"  # bench/c/proxy.c: serve's own flush policy
COALESCING = "C coalescing"  # bench/c/proxy.c --coalesce: one flush per window, always
REFERENCES = {REFERENCE: [], COALESCING: ["--coalesce"]}


def build_c(directory):
    """Compile the emulator, the proxy and the clients with the system's cc."""
    paths = {}
    for name in ("slcan_emu", "proxy", "clients"):
        out = os.path.join(directory, name)
        subprocess.run(["cc", "-O2", "-o", out, os.path.join(C_SOURCES, name + ".c")],
                       check=True)
        paths[name] = out
    return paths


def process_cpu(pid):
    """utime + stime of the whole process (every thread, dead ones too), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Emulator:
    def __init__(self, binary):
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.port = int(self.proc.stdout.readline())

    def wait_open(self):
        line = self.proc.stdout.readline().strip()
        if line != "open":
            raise RuntimeError(f"the emulator said {line!r} instead of 'open'")

    def go(self, mode, rate, count):
        self.proc.stdin.write(f"go {mode} {rate} {count}\n")
        self.proc.stdin.flush()

    def wait_sent(self):
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "sent":
            raise RuntimeError(f"the emulator said {line!r} instead of 'sent ...'")
        return float(line[2])

    def close(self):
        self.proc.stdin.close()  # it exits at the end of its input
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Subject:
    """One server under test, fed by its own emulator, alive for a block of runs."""

    def __init__(self, name, binaries):
        self.name = name
        self.emulator = Emulator(binaries["slcan_emu"])
        if name in REFERENCES:
            self.server = CancorderProcess(REFERENCES[name] + [str(self.emulator.port)],
                                           command=[binaries["proxy"]])
        else:
            extra, env = SUBJECTS[name]
            self.server = CancorderProcess(
                ["serve", "-i", "slcan", "-c", f"socket://127.0.0.1:{self.emulator.port}",
                 "--bind", "127.0.0.1", "--no-zeroconf",
                 # every client comes from 127.0.0.1: 64 of them need more than the default 32
                 "--max-clients-per-host", "64"] + extra, env=cancorder_env(**env))
        self.port = self.server.port()
        self.emulator.wait_open()
        self.pid = self.server.proc.pid

    def connected(self):
        """Established connections on the server's port, counted by the kernel (serve's own
        connect lines are summarised under churn since issue 11, so its log cannot say)."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as file:
                    next(file)
                    for line in file:
                        fields = line.split()
                        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                            count += 1
            except OSError:
                pass
        return count

    def wait_connected(self, count, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.connected() != count:
            if time.monotonic() > deadline or self.server.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: {self.connected()} clients connected, "
                                   f"expected {count}; log:\n{self.server.log[-2000:]}")
            time.sleep(0.01)
        time.sleep(0.2)  # established in the kernel: give the server's loop time to accept

    def close(self):
        self.server.stop()
        self.emulator.close()


def run_stream(subject, binaries, mode, rate, count, clients, idle=15):
    """One run: clients connect, the emulator sends ``count`` frames, every client checks."""
    subject.wait_connected(0)
    proc = subprocess.Popen([binaries["clients"], str(subject.port), str(clients), str(count),
                             str(idle)], stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the clients could not connect")
        subject.wait_connected(clients)
        cpu0, wall0 = process_cpu(subject.pid), time.monotonic()
        subject.emulator.go(mode, rate, count)
        result = json.loads(proc.stdout.readline())
        cpu, wall = process_cpu(subject.pid) - cpu0, time.monotonic() - wall0
        sent_in = subject.emulator.wait_sent()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lost = clients * count - result["frames_min"] * clients if result["complete"] < clients \
        else 0
    return {"cpu_per_10k": cpu / count * 10000, "cpu_percent": cpu / wall * 100,
            "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "max_ms": result["max_ms"],
            # a rate only where every client got every frame (a dropped client has no rate)
            "frames_per_s": count / result["seconds"] if result["seconds"] and
            result["complete"] == clients and not result["bad"] else 0.0,
            "every_frame": result["complete"] == clients and result["bad"] == 0,
            "clients_short": clients - result["complete"], "bad": result["bad"],
            "lost_at_least": lost, "emulator_rate": count / sent_in if sent_in else 0.0}


def run_silent(subject, binaries, seconds):
    """CPU % of one core with one client connected and nothing on the bus."""
    subject.wait_connected(0)
    proc = subprocess.Popen([binaries["clients"], str(subject.port), "1", "1",
                             str(int(seconds) + 30)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        subject.wait_connected(1)
        cpu0, wall0 = process_cpu(subject.pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = process_cpu(subject.pid) - cpu0, time.monotonic() - wall0
        subject.emulator.go("frame", 1000, 1)  # one frame: the server was alive all along
        result = json.loads(proc.stdout.readline())
        subject.emulator.wait_sent()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"cpu_percent": cpu / wall * 100, "every_frame": result["complete"] == 1}


def median_of(runs, key):
    values = [r[key] for r in runs]
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, args, binaries):
        self.args = args
        self.binaries = binaries
        self.results = {}  # (test, params..., subject) -> [runs]

    def record(self, key, run):
        self.results.setdefault(key, []).append(run)
        if self.args.verbose:
            print(f"  {key!r}: {json.dumps(run)}", flush=True)

    def block(self, names, runs):
        """Start the subjects, do ``runs`` (a list of (key, function(subject))) for each, in
        alternating order, stop them."""
        subjects = {name: Subject(name, self.binaries) for name in names}
        try:
            for i, (key, fn) in enumerate(runs):
                order = list(names) if i % 2 == 0 else list(reversed(names))
                for name in order:
                    self.record(key + (name,), fn(subjects[name]))
        finally:
            for subject in subjects.values():
                subject.close()

    def stream(self, mode, rate, clients, seconds=None):
        count = int(rate * (seconds or SECONDS[rate] * self.args.scale))
        key = ("stream", rate, mode, clients)
        return key, lambda s: run_stream(s, self.binaries, mode, rate, count, clients)

    def unpaced(self, clients, count):
        key = ("unpaced", clients)
        return key, lambda s: run_stream(s, self.binaries, "unpaced", 0, count, clients)

    def run(self):
        a = self.args
        rates = (1000, 30000) if a.quick else RATES
        clients_list = (4, 64) if a.quick else CLIENTS
        for rep in range(a.reps):
            print(f"repetition {rep + 1} of {a.reps}, load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            # the headline: cancorder (compiled) beside the C proxy, point by point
            self.block(("cancorder", REFERENCE, COALESCING),
                       [self.stream(m, r, c) for r in rates for m in MODES
                        for c in clients_list])
            self.block(("cancorder", REFERENCE),
                       [self.unpaced(c, int(UNPACED_FRAMES[c] * a.scale)) for c in (16, 64)])
            if not a.quick:
                self.block(("pure",), [self.stream(m, r, 4) for r in rates for m in MODES]
                           + [self.unpaced(c, int(UNPACED_FRAMES[c] * a.scale / 5))
                              for c in (16, 64)])
                self.block(("python-can",),
                           [self.stream(m, 1000, c) for m in MODES for c in clients_list]
                           + [self.unpaced(16, int(20000 * a.scale))])
            # idle costs: one subject alive at a time
            for name in ("cancorder", REFERENCE, COALESCING) + (() if a.quick else ("pure", "python-can")):
                seconds = IDLE_SECONDS * a.scale
                self.block((name,), [
                    (("silent",), lambda s: run_silent(s, self.binaries, seconds)),
                    self.stream_key(("bus100",), "frame", 100, 1, seconds)])
        print(f"done, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def stream_key(self, key, mode, rate, clients, seconds):
        count = int(rate * seconds)
        return key, lambda s: run_stream(s, self.binaries, mode, rate, count, clients)

    # ---- the report ----

    def get(self, key, subject, field):
        runs = self.results.get(key + (subject,), [])
        return median_of(runs, field) if runs else None

    def delivered(self, key, subject):
        runs = self.results.get(key + (subject,), [])
        if not runs:
            return ""
        bad = sum(not r["every_frame"] for r in runs)
        return "yes" if not bad else f"NO in {bad} of {len(runs)}"

    def rate(self, key, subject):
        """Frames/s, median over the runs in which every client got every frame (a run with
        a missed frame has no rate: a zero would drag the median), or None."""
        runs = [r for r in self.results.get(key + (subject,), []) if r["every_frame"]
                and r["frames_per_s"] > 0]
        return median_of(runs, "frames_per_s") if runs else None

    def latency(self, key, subject):
        p50, p99 = self.get(key, subject, "p50_ms"), self.get(key, subject, "p99_ms")
        return f"{_f(p50, 2)} / {_f(p99, 2)} ms" if p99 is not None else "-"

    def report(self):
        keys = sorted({k[:-1] for k in self.results if k[0] == "stream"})
        targets = {"cpu": [0, 0], "p99": [0, 0], "every": [0, 0]}
        _table("CPU-seconds of the server process per 10,000 frames (median), p50 / p99 delay "
               "from the adapter's write to the client's read (medians of the runs' p50 and "
               "p99), every frame to every client in every run; the ratio is against the C "
               "proxy with serve's own flush policy (\"same policy\"), the always-coalescing "
               "C proxy beside it shows what the latency choice costs",
               "frames/s", "adapter writes", "clients", "C same policy", "C coalescing",
               "cancorder", "ratio (same policy / coalescing)", "p50 / p99 C same policy",
               "p50 / p99 C coalescing", "p50 / p99 cancorder", "every frame")
        for key in keys:
            _, rate, mode, clients = key
            ref = self.get(key, REFERENCE, "cpu_per_10k")
            coalescing = self.get(key, COALESCING, "cpu_per_10k")
            ours = self.get(key, "cancorder", "cpu_per_10k")
            if ours is None or (ref is None and coalescing is None):
                continue
            p99 = self.get(key, "cancorder", "p99_ms")
            ref_p99 = self.get(key, REFERENCE, "p99_ms")
            if ref:
                _count(targets["cpu"], ours / ref <= 1.5)
            if ref_p99 is not None and p99 is not None:
                _count(targets["p99"], p99 <= ref_p99 + 0.2)
            every = self.delivered(key, "cancorder")
            _count(targets["every"], every == "yes")
            missed = "".join(f" ({name}: {self.delivered(key, name)})"
                             for name in (REFERENCE, COALESCING)
                             if self.delivered(key, name) not in ("yes", ""))
            print(f"| {rate:,} | {_MODE[mode]} | {clients} | {_f(ref, 4)} | "
                  f"{_f(coalescing, 4)} | {_f(ours, 4)} | "
                  f"{_ratio(ours, ref)} / {_ratio(ours, coalescing)} | "
                  + " | ".join(self.latency(key, name)
                               for name in (REFERENCE, COALESCING, "cancorder"))
                  + f" | {every}{missed} |")
        beside = [k for k in keys if any(k + (s,) in self.results for s in ("pure", "python-can"))]
        if beside:
            _table("Beside it (no target): the pure-Python twin (CANCORDER_PURE=1) and "
                   "python-can's reader (--opt slcan_backend=python-can), same measures",
                   "frames/s", "adapter writes", "clients", "pure CPU-s/10k", "pure p99",
                   "python-can CPU-s/10k", "python-can p99", "every frame (pure / python-can)")
            for key in beside:
                _, rate, mode, clients = key
                print(f"| {rate:,} | {_MODE[mode]} | {clients} | "
                      f"{_f(self.get(key, 'pure', 'cpu_per_10k'), 4)} | "
                      f"{_f(self.get(key, 'pure', 'p99_ms'), 2)} | "
                      f"{_f(self.get(key, 'python-can', 'cpu_per_10k'), 4)} | "
                      f"{_f(self.get(key, 'python-can', 'p99_ms'), 2)} | "
                      f"{self.delivered(key, 'pure') or '-'} / "
                      f"{self.delivered(key, 'python-can') or '-'} |")
        _table("Unpaced (the emulator writes 64 KiB as fast as the socket takes them): frames/s "
               "each client received (median of the runs in which every client got every "
               "frame; \"-\" where no run did)",
               "clients", "C same policy", "cancorder", "cancorder / C", "every frame",
               "C CPU-s/10k", "cancorder CPU-s/10k", "pure-Python twin", "python-can")
        unpaced = [0, 0]
        for clients in (16, 64):
            key = ("unpaced", clients)
            if key + ("cancorder",) not in self.results:
                continue
            ref = self.rate(key, REFERENCE)
            ours = self.rate(key, "cancorder")
            if ref is not None:  # no target where the C proxy itself missed frames
                _count(unpaced, ours is not None and ours >= ref / 2)
            print(f"| {clients} | {_f(ref, 0)} | {_f(ours, 0)} | {_ratio(ours, ref)} | "
                  f"{self.delivered(key, 'cancorder')} (C: "
                  f"{self.delivered(key, REFERENCE) or '-'}) | "
                  f"{_f(self.get(key, REFERENCE, 'cpu_per_10k'), 4)} | "
                  f"{_f(self.get(key, 'cancorder', 'cpu_per_10k'), 4)} | "
                  f"{_f(self.rate(key, 'pure'), 0)} | "
                  f"{_f(self.rate(key, 'python-can'), 0)} |")
        _table("Idle costs: CPU % of one core (median), 1 client connected",
               "bus", "C same policy", "C coalescing", "cancorder", "pure-Python twin",
               "python-can")
        idle = {}
        for key, label in ((("silent",), "silent"), (("bus100",), "100 frames/s, one write "
                                                                 "per frame")):
            idle[key[0]] = self.get(key, "cancorder", "cpu_percent")
            print(f"| {label} | " + " | ".join(
                _f(self.get(key, s, "cpu_percent"), 2) for s in
                (REFERENCE, COALESCING, "cancorder", "pure", "python-can")) + " |")
        print()
        print("Targets (issue 24):")
        print(f"  CPU per frame within 1.5x of the same-policy C proxy: {_met(targets['cpu'])}")
        print(f"  p99 no more than the same-policy C proxy's + 0.2 ms: {_met(targets['p99'])}")
        print(f"  every frame to every client: {_met(targets['every'])}")
        print(f"  unpaced, at least half the C proxy's frames/s: {_met(unpaced)}")
        for name, limit in (("silent", 0.5), ("bus100", 1.0)):
            value = idle.get(name)
            if value is not None:
                print(f"  {name} bus under {limit} % of a core: {value:.2f} % "
                      f"({'met' if value < limit else 'MISSED'})")


_MODE = {"frame": "one per frame", "burst": "every 1 ms"}


def _table(title, *columns):
    print()
    print(title)
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def _count(tally, ok):
    tally[0] += bool(ok)
    tally[1] += 1


def _met(tally):
    met, total = tally
    return f"{met} of {total} points" + ("" if met == total else " (MISSED at the others)")


def _ratio(ours, reference):
    """ours / reference, or "-" where the reference has no figure (or a zero one)."""
    return f"{ours / reference:.2f}x" if ours is not None and reference else "-"


def _f(value, digits):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians over them)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 and 30,000 frames/s, 4 and 64 clients, no pure/python-can")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every run's length (frames and seconds)")
    parser.add_argument("--json", metavar="FILE", help="also write every run to FILE")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every run")
    parser.add_argument("--report", metavar="LOG",
                        help="only print the tables again from the runs a -v run printed")
    _load.add_arguments(parser)
    args = parser.parse_args()
    if args.report:
        bench = Bench(args, {})
        with open(args.report) as f:
            for line in f:
                match = re.match(r"  (\(.*?\)): (\{.*\})$", line)
                if match:
                    bench.record(ast.literal_eval(match.group(1)), json.loads(match.group(2)))
        bench.report()
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # clean up
    if args.quick and args.reps == 3:
        args.reps = 1
    import cancorder._fast as fast

    if fast.IMPLEMENTATION != "compiled":
        raise SystemExit("build the compiled core first (make dev)")
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), "?")
    watch = _load.start("bench.serve", args)
    print(f"bench.serve: {os.cpu_count()} cores ({model}), Python {sys.version.split()[0]}, "
          f"clock ticks {TICK}/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, build_c(tmp))
        started = time.monotonic()
        try:
            bench.run()
        finally:
            bench.report()
            print(f"{time.monotonic() - started:.0f} s")
            runs = [{"key": list(k), "runs": v} for k, v in bench.results.items()]
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(runs, f, indent=1)
        _load.finish(watch, runs)


if __name__ == "__main__":
    main()
