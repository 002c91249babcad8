"""Listening sockets for the servers of a bus (the ECUconnect port, the socketcand port)."""
import errno
import socket

from .errors import UsageError
from .protocol import DEFAULT_PORT, PORT_SEARCH


def open_listeners(bind=None, port=None):
    """Bind the real listening socket: ``bind`` None means every IPv4 and IPv6 address.

    Without ``port`` the first free port from 42420 is taken by binding it for real, so no
    other process can take it between a test and the use.
    Returns (sockets, port, bound host strings).
    """
    ports = [port] if port else range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH)
    last = None
    for candidate in ports:
        try:
            return bind_listener(bind, candidate)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise bind_error(bind, candidate, exc) from exc
            last = exc
    if port:
        raise UsageError(f"port {port} is already in use (another logger?): choose another "
                         "with --port, or leave --port out to take the first free one "
                         f"from {DEFAULT_PORT}") from last
    raise UsageError(f"no free port in {DEFAULT_PORT}..{DEFAULT_PORT + PORT_SEARCH - 1}: "
                     "choose one with --port") from last


def bind_listener(bind, port, flag="--bind", backlog=64):
    """One listening socket on ``bind`` (None: every IPv4 and IPv6 address), ``port``.
    ``backlog``: connections the kernel completes before the server accepts them; beyond it a
    connection's SYN is dropped and retried a second later."""
    if bind is None:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, backlog=backlog)
            return [sock], port, ["::", "0.0.0.0"]
        return [socket.create_server(("0.0.0.0", port), backlog=backlog)], port, ["0.0.0.0"]
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"{flag} {bind}: not an address of this machine ({exc.strerror})")
    family, _, _, _, address = infos[0]
    sock = socket.create_server(address, family=family, backlog=backlog)
    return [sock], port, [address[0]]


def bind_error(bind, port, exc, flag="--bind"):
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"{flag} {bind}: this machine has no such address")
    if exc.errno == errno.EACCES:
        return UsageError(f"port {port}: permission denied (ports below 1024 need root)")
    return UsageError(f"cannot listen on {bind or '*'}:{port}: {exc.strerror or exc}")


def broadcast_networks(bind):
    """The IPv4 networks (ipaddress.IPv4Interface) a listener bound to ``bind`` is reachable on,
    for a discovery beacon: that address's own network, or, bound to every address, every
    IPv4 network of this machine (loopback only when there is nothing else)."""
    import ipaddress

    import ifaddr

    networks = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            try:
                networks.append(ipaddress.ip_interface(f"{ip.ip}/{ip.network_prefix}"))
            except ValueError:
                continue
    if bind not in (None, "", "0.0.0.0", "::"):
        return [n for n in networks if str(n.ip) == bind]
    chosen = [n for n in networks if not n.ip.is_loopback and not n.ip.is_link_local]
    return chosen or [n for n in networks if n.ip.is_loopback]


def broadcast_target(network):
    """Where a beacon for ``network`` goes: its broadcast address (a /32: the address itself)."""
    return str(network.network.broadcast_address) if network.network.prefixlen < 32 \
        else str(network.ip)


def beacon_loop(datagrams, port, interval, stop, log, what, source=None):
    """Send ``datagrams()`` ((target, payload) pairs) to UDP ``port`` every ``interval`` s until
    ``stop`` (an Event) is set; ``source``: the address to send from (None: the kernel's
    choice). A target that fails is said once (``log(level, text)``); returns how many were
    sent."""
    sent = 0
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if source:
            sock.bind((source, 0))
    except OSError as exc:
        log("warning", f"{what} beacon off: {exc.strerror or exc}")
        return sent
    warned = set()
    with sock:
        while True:
            for target, payload in datagrams():
                try:
                    sock.sendto(payload, (target, port))
                    sent += 1
                except OSError as exc:
                    if target not in warned:
                        warned.add(target)
                        log("warning", f"{what} beacon to {target} failed: "
                                       f"{exc.strerror or exc}")
            if stop.wait(interval):
                return sent
