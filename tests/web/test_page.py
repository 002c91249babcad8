"""The web page's server in process: each bus's table computed once per tick whatever the
number of viewers, and a viewer that reads nothing bounded (updates dropped, not queued)."""
import json
import socket
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from cancorder._fast import wire
from cancorder.metrics import MetricsServer
from cancorder.web import page as web_page
from cancorder.web.live import LiveFeed, LiveUpdate
from cancorder.web.page import WebPage
from tests.helpers import wait_until


class _Bus:
    name = "can0"
    failed = None


def _records(ids, counter):
    return b"".join(wire.pack_frame(1_700_000_000_000_000 + counter, 0x100 + i, 0,
                                    bytes([counter & 0xFF, i & 0xFF] + [0] * 6))
                    for i in range(ids))


def _serve(ids=10):
    web = WebPage(("127.0.0.1", 0))
    feed = web.feed(_Bus(), None)
    feed.start(_Bus())
    web.watch(lambda now: [{"name": "can0", "frames": 0, "sinks": []}])
    server = MetricsServer(("127.0.0.1", 0), lambda: [], web=web, metrics=False,
                           flag="--web").start()
    return web, feed, server


def _viewer(port, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/events?bus=can0 HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_the_table_is_computed_once_per_tick_for_any_number_of_viewers():
    web, feed, server = _serve()
    computed = []
    view = feed.view
    feed.view = lambda now=None: computed.append(now) or view(now)
    viewers = []
    try:
        for count in (1, 4):
            while len(viewers) < count:
                viewers.append(_viewer(server.port))
            assert wait_until(lambda: len(web._viewers) == count)
            before = len(computed)
            time.sleep(2.0)
            per_second = (len(computed) - before) / 2.0
            # at most 5 a second (plus one at each newcomer), whatever the viewers
            assert 3 <= per_second <= 5.5, (count, per_second)
    finally:
        for sock in viewers:
            sock.close()
        server.close()
        feed.close(1)
        web.close()


def test_a_viewer_that_reads_nothing_holds_a_bounded_backlog(monkeypatch):
    monkeypatch.setattr(web_page, "LIVE_BUDGET", 1.0)  # every tick's table sent: 5 a second
    web, feed, server = _serve()
    sock = _viewer(server.port, rcvbuf=4096)
    try:
        assert wait_until(lambda: len(web._viewers) == 1 and feed.watched)
        (viewer,) = web._viewers
        # 1,500 ids, every row changing all along: updates of over a hundred KB each (a
        # delta of every row: with no frame coming they would be a few KB)
        puts = 0
        while puts < 40 or (viewer.skipped == 0 and puts < 300):
            feed.put(_records(1500, puts))
            puts += 1
            time.sleep(0.05)
        assert wait_until(lambda: viewer.skipped > 0, 10)
        time.sleep(0.5)  # the feed's last gathering
        assert feed.table.total == puts * 1500  # every frame counted: the feed kept up
        transports = [w.transport for w in server._open]
        assert transports and all(t.get_write_buffer_size() <= web_page.VIEWER_BUFFER + (1 << 20)
                                  for t in transports)
        assert len(viewer.pending) <= 2  # the latest status and live update at most
    finally:
        sock.close()
        server.close()
        feed.close(1)
        web.close()


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.booleans()),
                         max_size=30), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
def test_a_rows_json_is_made_again_exactly_when_the_row_changed(batches):
    """Batches of frames (id, data, 29-bit) each followed by an update: the rows made are
    exactly those that took a frame since the last update, and every row sent is what a fresh
    making of it says (rates and ages aside: the rates go beside the rows, the page ages)."""
    clock = _Clock()
    feed = LiveFeed(clock=clock)
    feed.watch(True)
    made = []
    row_json = feed._row_json
    feed._row_json = lambda row, name: made.append(row.key[1]) or row_json(row, name)
    shown = json.loads(feed.view().full)["rows"]  # what a viewer of every update has
    for batch in batches:
        clock.now += 0.2
        records = b"".join(wire.pack_frame(int(clock.now * 1e6) + i, ident,
                                           wire.FLAG_EXT if ext else 0, bytes([value] * 4))
                           for i, (ident, value, ext) in enumerate(batch))
        feed.table.add_records(records)
        made.clear()
        clock.now += 0.2
        made_now = feed.view()
        update = json.loads(made_now.full)
        assert sorted(made) == sorted({ident | (1 << 32) if ext else ident
                                       for ident, _, ext in batch})
        rows = sorted(feed.table._all_rows(), key=lambda row: row.key)
        assert update["rows"] == [json.loads(row_json(row, None)) for row in rows]
        if made_now.delta is None:  # rows were added: only the whole table will do
            assert len(rows) != len(shown)
            shown = update["rows"]
        else:  # the same rows: the changed ones, by their place, make the table whole
            delta = json.loads(made_now.delta)
            assert delta["since"] == update["seq"] - 1
            assert {k: v for k, v in delta.items() if k not in ("since", "changed")} == {
                k: v for k, v in update.items() if k != "rows"}
            assert sorted(rows[place].key[1] for place, _ in delta["changed"]) == sorted(made)
            for place, row in delta["changed"]:
                shown[place] = row
            assert shown == update["rows"]
        assert update["rates"] == [round(row.rate, 1) for row in rows]
        assert update["now"] == round(clock.now, 3)
        for sent, row in zip(update["rows"], rows):  # times, not ages
            assert (sent[2], sent[6]) == (row.count, round(row.seen, 3))


def test_a_viewer_gets_the_delta_only_on_top_of_the_update_before():
    """Written the update before: the changed rows; a newcomer, or a viewer whose update was
    skipped (slow) or replaced: the whole table."""
    update = LiveUpdate(7, b'{"rows": []}', b'{"changed": []}')
    events = web_page._LiveEvents(update)
    viewer = web_page._Viewer("can0")
    assert events.for_viewer(viewer) == b'event: live\ndata: {"rows": []}\n\n'  # a newcomer
    assert events.for_viewer(viewer) == events.full  # has 7 already: not on top of 6
    viewer.live_seq = 6
    assert events.for_viewer(viewer) == b'event: live\ndata: {"changed": []}\n\n'
    viewer.live_seq = 5  # missed 6
    assert events.for_viewer(viewer) == events.full and viewer.live_seq == 7
    viewer.live_seq = 6
    assert web_page._LiveEvents(LiveUpdate(7, b"{}", None)).for_viewer(viewer) == (
        b"event: live\ndata: {}\n\n")  # rows were added: everyone gets the whole table


def test_the_trace_decodes_only_the_latest_frames_of_a_wake_up(monkeypatch):
    """50 batches of 3 frames gathered in one wake-up: all counted, the trace the last 40 in
    order, and no more decoded than those (not the last few of every batch: about all)."""
    from cancorder.web import live

    decoded = []

    class Counting(wire.StreamDecoder):
        def feed(self, records):
            frames = super().feed(records)
            decoded.extend(frames)
            return frames

    monkeypatch.setattr(live.wire, "StreamDecoder", Counting)
    feed = LiveFeed()
    feed.watch(True)
    frames = [(1_700_000_000_000_000 + n, 0x100 + n % 7, 0, bytes([n & 0xFF])) for n in range(150)]
    for start in range(0, 150, 3):
        feed.put(b"".join(wire.pack_frame(*frame) for frame in frames[start:start + 3]))
    feed._count_queued()
    assert feed.table.total == 150
    assert list(feed.trace) == [(m, i, f, d) for m, i, f, d in frames[-live.TRACE_ROWS:]]
    assert len(decoded) <= live.TRACE_ROWS + 3
