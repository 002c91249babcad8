"""``--web``: the status page and the live monitor, in a real Chromium (Debian's, driven by
Playwright: nothing downloaded) against a real ``serve``/``mock-uds``."""
import os
import re
import subprocess
import sys
import time

import cantools
import pytest

from tests.helpers import cancorder_env, free_port, http_get, served_client, wait_until
from tests.test_dbc import DBC

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("the web tests need Debian's chromium package (.ci/run installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser page on one logger, every request it makes kept (``requests``)."""

    def __init__(self, browser, port, **context):
        self.base = f"http://127.0.0.1:{port}"
        self.context = browser.new_context(accept_downloads=True, **context)
        self.page = self.context.new_page()
        self.requests = []
        self.page.on("request", lambda request: self.requests.append(request.url))

    def open(self, path="/"):
        return self.page.goto(self.base + path)

    def outside(self):
        """Requests to anything but the logger (the page must work with no internet)."""
        return [url for url in self.requests if not url.startswith(self.base + "/")
                and not url.startswith("data:")]

    def close(self):
        self.context.close()


@pytest.fixture
def page_on(browser):
    pages = []

    def make(port, **context):
        page = Page(browser, port, **context)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def text_of(page, selector):
    element = page.page.query_selector(selector)
    return element.inner_text() if element is not None else None


def until(condition, timeout=10.0, what="the page"):
    assert wait_until(condition, timeout), f"{what} did not show it within {timeout:g} s"


def start_mock_uds(cancorder_process, *extra):
    web = free_port()
    proc = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--async",
                             "--web", f"127.0.0.1:{web}", *extra)
    proc.wait_for(r"web page on http://127\.0\.0\.1:(\d+)/")
    return proc, web


def test_page_shows_the_bus_its_rate_and_a_connected_client(cancorder_process, page_on):
    proc, web = start_mock_uds(cancorder_process)
    client = served_client(proc)
    try:
        page = page_on(web)
        assert page.open().status == 200
        bus = '#buses .bus'
        until(lambda: text_of(page, f"{bus} .state") == "up")
        until(lambda: float((text_of(page, f"{bus} .rate") or "0").replace(",", "")) > 0)
        address = f"127.0.0.1:{client.sock.getsockname()[1]}"
        until(lambda: address in [cell.inner_text() for cell in
                                  page.page.query_selector_all(f"{bus} table.clients td.address")])
        assert "version" in text_of(page, "#process")
        assert page.outside() == []
        # a phone's screen: nothing wider than it (wide tables scroll inside their box)
        phone = page_on(web, viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.open()
        until(lambda: text_of(phone, f"{bus} .state") == "up")
        for view in ("status", "live"):
            phone.page.click(f"#tab-{view}")
            phone.page.wait_for_timeout(300)
            assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, view
    finally:
        client.close()


def test_live_table_fills_decodes_filters_and_pauses(cancorder_process, page_on, tmp_path):
    dbc = tmp_path / "obd.dbc"
    dbc.write_text(DBC)
    proc, web = start_mock_uds(cancorder_process, "--dbc", str(dbc))
    page = page_on(web)
    page.open("/#live")
    rows = "#live tbody tr"

    def ids():
        return {row.get_attribute("data-id") for row in page.page.query_selector_all(rows)}

    until(lambda: {"7DF", "7E0", "7E8"} <= ids(), 15)
    count = f'{rows}[data-id="7E0"] td.count'
    first = int(text_of(page, count).replace(",", ""))
    until(lambda: int(text_of(page, count).replace(",", "")) > first, what="a growing count")

    # the signals shown are the database's decoding of the data shown (7DF: OBD_Request)
    request = f'{rows}[data-id="7DF"]'
    until(lambda: page.page.query_selector(f'{request} .signal[data-signal="Mode"]') is not None)
    page.page.click("#pause")  # frozen: the row and its signals can be read together
    data = bytes.fromhex(text_of(page, f"{request} td.data").replace(" ", ""))
    shown = {s.get_attribute("data-signal"): s.inner_text().split("=", 1)[1]
             for s in page.page.query_selector_all(f"{request} .signal")}
    expected = cantools.database.load_string(DBC).get_message_by_frame_id(0x7DF).decode(data)
    assert shown == {name: str(value) for name, value in expected.items()}
    assert "OBD_Request" in text_of(page, request)

    # paused: nothing changes; resumed: the counts move on
    paused = text_of(page, count)
    time.sleep(1.2)
    assert text_of(page, count) == paused
    page.page.click("#pause")
    until(lambda: text_of(page, count) != paused, what="a resumed count")

    page.page.fill("#filter", "7e8")
    until(lambda: ids() == {"7E8"})
    page.page.fill("#filter", "")
    until(lambda: {"7DF", "7E0", "7E8"} <= ids())
    assert page.outside() == []


def test_a_closed_recording_downloads_byte_identical(cancorder_process, page_on, tmp_path):
    proc, web = start_mock_uds(cancorder_process, "--record",
                               str(tmp_path / "rec-{n}.log"), "--rotate-size", "4K")
    page = page_on(web)
    page.open()
    link = "#buses a.download"
    until(lambda: page.page.query_selector(link) is not None, 20, "a closed recording")
    name = page.page.query_selector(link).inner_text()
    with page.page.expect_download() as download:
        page.page.click(f'{link}:text-is("{name}")')
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)
    assert saved.read_bytes() == (tmp_path / name).read_bytes()
    assert saved.stat().st_size > 0
    # only the files of the recording are offered: any other path is refused
    status, _ = http_get(web, f"/api/download?bus=can0&file={tmp_path / 'nope.log'}")
    assert status == 404
    assert page.outside() == []


@pytest.mark.serial  # a time limit: a neighbour loading the machine would change the result
def test_an_unplugged_adapter_shows_down_within_2_s_and_up_after(cancorder_process, page_on,
                                                                  slcan_emulator):
    web = free_port()
    proc = cancorder_process("serve", "-i", "slcan", "-c", slcan_emulator.url, "--no-zeroconf",
                             "--bind", "127.0.0.1", "-p", str(free_port()), "--web",
                             f"127.0.0.1:{web}")
    slcan_emulator.wait_open()
    proc.wait_for("web page on")
    page = page_on(web)
    page.open()
    state = "#buses .bus .state"
    until(lambda: text_of(page, state) == "up")
    slcan_emulator.drop(refuse_for=3.0)
    unplugged = time.monotonic()
    until(lambda: text_of(page, state) == "reopening", 2.0, "the lost adapter")
    assert time.monotonic() - unplugged <= 2.0
    until(lambda: text_of(page, state) == "up", 15.0, "the adapter back")
    assert page.outside() == []


def test_a_wrong_or_missing_token_is_refused(cancorder_process, page_on):
    proc, web = start_mock_uds(cancorder_process, "--web-token", "s3cret-token")
    page = page_on(web)
    for path in ("/", "/?token=wrong", "/api/status", "/static/app.js", "/api/events"):
        answer = page.open(path)
        assert answer.status == 401, path
        assert "token" in page.page.inner_text("body")
    assert http_get(web, "/api/status")[0] == 401
    assert page.open("/?token=s3cret-token").status == 200  # then the cookie carries it
    until(lambda: text_of(page, "#buses .bus .state") == "up")
    assert "token" not in page.page.url  # not left in the address bar
    assert page.outside() == []


def test_web_on_another_address_needs_a_token():
    done = subprocess.run([sys.executable, "-m", "cancorder", "mock-uds", "--no-zeroconf",
                           "--web", f"0.0.0.0:{free_port()}"], env=cancorder_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --web 0.0.0.0:"), done.stderr
    assert "--web-token" in errors[0] and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == errors[0]


def test_web_shares_the_metrics_port(cancorder_process):
    port = free_port()
    proc = cancorder_process("mock-uds", "--no-zeroconf", "--bind", "127.0.0.1", "--async",
                             "--metrics", f"127.0.0.1:{port}", "--web", f"127.0.0.1:{port}")
    proc.wait_for(rf"web page on http://127\.0\.0\.1:{port}/")
    status, body = http_get(port, "/")
    assert status == 200 and "<title>cancorder</title>" in body
    until(lambda: http_get(port, "/healthz")[0] == 200, 10, "/healthz")
    assert "cancorder_frames_sent_total" in http_get(port, "/metrics")[1]
    assert re.search(r'"buses": \[\{"name": "', http_get(port, "/api/status")[1])


def test_a_config_file_serves_the_page(cancorder_process, tmp_path):
    web, port = free_port(), free_port()
    dbc = tmp_path / "obd.dbc"
    dbc.write_text(DBC)
    config = tmp_path / "cancorder.toml"
    config.write_text(f'web = "127.0.0.1:{web}"\nweb_token = "abc-123"\ndbc = ["{dbc}"]\n'
                      f'[[bus]]\nsource = "mock-uds"\nasync = true\nzeroconf = false\n'
                      f'bind = "127.0.0.1"\nport = {port}\n')
    proc = cancorder_process("serve", "--config", str(config))
    proc.wait_for(rf"web page on http://127\.0\.0\.1:{web}/")
    assert http_get(web, "/api/status")[0] == 401
    until(lambda: '"state": "up"' in http_get(web, "/api/status?token=abc-123")[1], 10,
          "/api/status")


def test_ages_move_on_between_updates_and_a_new_viewer_sees_every_row(page_on):
    """The logger sends times, the page computes the ages: with no frame and no update coming
    (the table's next update held back), a row's age still grows and the row turns stale; a
    viewer opening the page then gets the whole table at once (the latest update)."""
    from tests.web.test_page import _records, _serve

    web, feed, server = _serve()
    try:
        page = page_on(server.port)
        page.open("/#live")
        until(lambda: feed.watched, what="the first viewer's stream")
        feed.put(_records(300, 1))
        rows = "#live tbody tr"
        expected = {f"{0x100 + i:03X}" for i in range(300)}

        def ids(on):
            return {row.get_attribute("data-id") for row in on.page.query_selector_all(rows)}

        until(lambda: ids(page) == expected, what="the 300 rows")
        # then only changed rows come (a delta): they are put in their places
        feed.put(b"".join(_records(300, 2)[i * 22:(i + 1) * 22] for i in range(0, 300, 30)))
        counts = f"{rows} td.count"

        def shown_counts():
            return [int(cell.inner_text()) for cell in page.page.query_selector_all(counts)]

        until(lambda: shown_counts() == [2 if i % 30 == 0 else 1 for i in range(300)], 5,
              "the changed rows' counts")
        web._live_due["can0"] = float("inf")  # no more updates: the page alone ages the rows
        row = f'{rows}[data-id="105"]'

        def age():
            return float(re.match(r"last frame ([\d.]+) s ago",
                                  page.page.get_attribute(row, "title")).group(1))

        first = age()
        until(lambda: age() >= first + 1.5, 5, "a growing age")
        until(lambda: "stale" in (page.page.get_attribute(row, "class") or ""), 5, "a stale row")
        newcomer = page_on(server.port)
        newcomer.open("/#live")
        until(lambda: ids(newcomer) == expected, 5, "every row to the new viewer")
        assert page.outside() == [] and newcomer.outside() == []
    finally:
        server.close()
        feed.close(1)
        web.close()
