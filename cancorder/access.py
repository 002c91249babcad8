"""``--allow``: which peers may connect (ECUconnect and socketcand clients alike), and which may
transmit. One reading of the networks for the server and every consumer that accepts clients."""
import ipaddress

from .errors import UsageError

#: this machine: who may transmit when --allow-transmit is given without --allow
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def parse_networks(texts):
    """--allow values -> ip_network objects (one clear usage error for a bad one)."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise UsageError(f"--allow {text}: expected a network such as 192.168.1.0/24, "
                             "10.0.0.5 or fd00::/8") from None
    return networks


def peer_allowed(address, networks):
    """True if the peer address is inside one of ``networks`` (None or empty: everyone)."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address[0].split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks if net.version == ip.version)


def transmit_networks(allow_transmit, listen_only, allow):
    """Who may put frames on the bus through a protocol's clients (socketcand, GVRET): None
    (nobody) without --allow-transmit or with --listen-only; else the --allow networks, or this
    machine when --allow is not given (a bus must not be writable from the whole network by
    default)."""
    if not allow_transmit or listen_only:
        return None
    return list(allow) or list(LOOPBACK)


def transmit_off_reason(networks, listen_only, host, clients):
    """Why a client on ``host`` may not transmit, and the flag that would let it (``clients``:
    whose, e.g. "socketcand clients")."""
    if networks is not None:
        return (f"{host} is outside the networks allowed to transmit "
                f"({', '.join(str(n) for n in networks)}): add it with --allow")
    if listen_only:
        return "the bus is listen-only (--listen-only wins over --allow-transmit)"
    return f"transmit is off: serve with --allow-transmit to let {clients} send"


def transmit_phrase(networks, listen_only):
    """The end of a protocol's "serves bus ..." line: who may transmit."""
    if networks is None:
        return ", transmit off" + (" (--listen-only wins)" if listen_only else "")
    return ", transmit allowed from " + ", ".join(str(n) for n in networks)
