"""Make docs/web.png and docs/web-live.png, docs/web.md's pictures of the --web page.

    .venv/bin/python tools/web_screenshot.py [FOLDER]      (default: docs/)

A real logger and a real browser: `cancorder mock-uds` (seed 7, its OBD and UDS traffic) with
--web, --dbc docs/example-obd.dbc and a --record rotating every 4 KiB in a scratch folder,
one ECUconnect client connected, and Debian's Chromium (Playwright, headless, nothing
downloaded) at a laptop's width; after 12 s (for the rate chart and a few closed recordings)
the status page and the live view are captured.
"""
import os
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.helpers import CancorderProcess, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLE = 12.0


def main():
    from playwright.sync_api import sync_playwright

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs")
    web = free_port()
    with tempfile.TemporaryDirectory() as folder:
        logger = CancorderProcess(
            ["mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--seed", "7",
             "--web", f"127.0.0.1:{web}", "--dbc", os.path.join(ROOT, "docs", "example-obd.dbc"),
             "--record", os.path.join(folder, "drive-{n}.log"), "--rotate-size", "4K"])
        client = None
        try:
            logger.wait_for("web page on")
            client = socket.create_connection(("127.0.0.1", logger.port()))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(f"http://127.0.0.1:{web}/")
                deadline = time.monotonic() + SETTLE
                while time.monotonic() < deadline:  # the client takes what it is sent
                    client.settimeout(0.1)
                    try:
                        client.recv(1 << 16)
                    except socket.timeout:
                        pass
                page.screenshot(path=os.path.join(out, "web.png"), full_page=True)
                page.click("#tab-live")
                page.wait_for_selector("#live tbody tr")
                page.wait_for_timeout(1500)
                page.screenshot(path=os.path.join(out, "web-live.png"), full_page=True)
                browser.close()
        finally:
            if client is not None:
                client.close()
            logger.stop()
    print(f"wrote {os.path.join(out, 'web.png')} and {os.path.join(out, 'web-live.png')}")


if __name__ == "__main__":
    main()
