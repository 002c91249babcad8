"""Facts of the ECUconnect Logger service that servers and clients share.

The record format itself lives in ``_fast/wire``; this is where a logger listens and how both
sides retry (the server reopening an adapter, ``dump --reconnect`` reconnecting).
"""
DEFAULT_PORT = 42420
PORT_SEARCH = 100  # ports tried from DEFAULT_PORT when --port is not given
SERVICE_TYPE = "_ecuconnect-log._tcp.local."
RETRY_FIRST = 0.5  # seconds before the first retry, doubling...
RETRY_MAX = 5.0  # ...up to this
