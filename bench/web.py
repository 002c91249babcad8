"""What the --web live view costs the logger: `serve` at 30,000 frames/s with 0 and with 4
browsers watching.

    .venv/bin/python -m bench.web                    # the figures of docs/web.md
    .venv/bin/python -m bench.web --seconds 3 --reps 1   # a smoke run

Everything runs over 127.0.0.1, as in bench.serve (whose C pieces it uses): the C SLCAN
emulator sends 30,000 frames/s in 1 ms bursts, `cancorder serve -i slcan --web 127.0.0.1:PORT`
(compiled core) serves them, and one checking C client (bench/c/clients.c) measures each
frame's delay from the emulator's write to its read. With 4 viewers, 4 pages of Debian's
Chromium (Playwright, headless, nothing downloaded) show the live view (/#live) for the whole
run, so the server computes the table and pushes it 5 times a second.

Reported per case, medians over --reps (the two cases alternate, so both see the same
machine): the server's CPU (utime + stime from /proc, the whole process) as % of one core,
the client's p99 and max delay, and whether it got every frame. The goal (issue 32): the 4
viewers together cost under 2 % of a core more than none, and p99 does not change.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import _load  # noqa: E402
from bench.serve import SUBJECTS, Subject, build_c, run_stream  # noqa: E402
from tests.helpers import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RATE = 30000
SUBJECT = "cancorder --web"


def watch(browser, port, viewers):
    """``viewers`` pages on the live view, each with its event stream open (the bus is
    silent between runs: the rows come with the run's frames)."""
    pages = []
    for _ in range(viewers):
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/#live")
        pages.append(page)
    for page in pages:
        page.wait_for_selector("#connection.live", timeout=30000)
    return pages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="of traffic per run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=4)
    _load.add_arguments(parser)
    args = parser.parse_args()
    load = _load.start("bench.web", args)

    from playwright.sync_api import sync_playwright

    web = free_port()
    SUBJECTS[SUBJECT] = (["--web", f"127.0.0.1:{web}"], {})
    count = int(RATE * args.seconds)
    results = {0: [], args.viewers: []}
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        binaries = build_c(folder)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        subject = Subject(SUBJECT, binaries)
        try:
            for _ in range(args.reps):
                for viewers in results:
                    pages = watch(browser, web, viewers)
                    try:
                        time.sleep(1.0)  # the feed counting, the stream flowing
                        results[viewers].append(run_stream(subject, binaries, "burst", RATE,
                                                           count, 1))
                    finally:
                        for page in pages:
                            page.close()
                    time.sleep(1.0)  # the last viewer gone: the feed stops counting
        finally:
            subject.close()
            browser.close()
    print(f"\nserve -i slcan at {RATE:,} frames/s (1 ms bursts), 1 ECUconnect client, "
          f"{args.seconds:g} s per run, medians of {args.reps}")
    print(f"{'viewers':>8} {'CPU % core':>11} {'p99 ms':>8} {'max ms':>8}  every frame")
    base = None
    for viewers, runs in results.items():
        cpu = statistics.median(r["cpu_percent"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        worst = statistics.median(r["max_ms"] for r in runs)
        every = all(r["every_frame"] for r in runs)
        print(f"{viewers:>8} {cpu:>11.1f} {p99:>8.2f} {worst:>8.2f}  {'yes' if every else 'NO'}")
        if base is None:
            base = cpu
        else:
            print(f"the {viewers} viewers together: {cpu - base:+.1f} % of a core")
    _load.finish(load, {str(viewers): runs for viewers, runs in results.items()})


if __name__ == "__main__":
    main()
