"""``--web [ADDR:]PORT``: a status page and a live monitor in a browser, on the logger itself.

    page.WebPage   the routes (/, /static/*, /api/status, /api/events, /api/download) and the
                   ticker: served by metrics.MetricsServer's loop (one HTTP server piece, on
                   the metrics port or a port of its own)
    live.LiveFeed  a RecordSink per bus: while someone watches, its thread counts the bus's
                   frames into monitor.Monitor's table (the model of ``dump --monitor``)
    static/        the page: plain HTML, CSS and JavaScript, nothing fetched from elsewhere
"""
