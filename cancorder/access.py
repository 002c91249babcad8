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
