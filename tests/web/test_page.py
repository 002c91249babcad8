"""The web page's server in process: each bus's table computed once per tick whatever the
number of viewers, and a viewer that reads nothing bounded (updates dropped, not queued)."""
import socket
import time

from cancorder._fast import wire
from cancorder.metrics import MetricsServer
from cancorder.web import page as web_page
from cancorder.web.live import LiveFeed
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
        for counter in range(40):  # 1,500 ids: updates of a few hundred KB each
            feed.put(_records(1500, counter))
            time.sleep(0.05)
        assert wait_until(lambda: viewer.skipped > 0, 10)
        assert feed.table.total == 40 * 1500  # every frame counted: the feed kept up
        transports = [w.transport for w in server._open]
        assert transports and all(t.get_write_buffer_size() <= web_page.VIEWER_BUFFER + (1 << 20)
                                  for t in transports)
        assert len(viewer.pending) <= 2  # the latest status and live update at most
    finally:
        sock.close()
        server.close()
        feed.close(1)
        web.close()
