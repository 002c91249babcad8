"""Zeroconf (mDNS/DNS-SD): advertise a logger, and find the ones on the network."""
import dataclasses
import ipaddress
import os
import socket
import threading

from .protocol import SERVICE_TYPE

NAME_PREFIX = "ECUconnect-Logger"


def short_hostname():
    return socket.gethostname().split(".")[0] or "localhost"


def instance_name(service_name, port):
    """The instance name: ``--service-name`` or ``ECUconnect-Logger <host>:<port>``.

    CANcorder only lists instances whose name starts with ECUconnect-Logger, so a custom
    name gets that prefix.
    """
    if not service_name:
        return f"{NAME_PREFIX} {short_hostname()}:{port}"
    if not service_name.startswith(NAME_PREFIX):
        service_name = f"{NAME_PREFIX} {service_name}"
    return service_name.replace(".", "-")  # a dot would split the DNS-SD instance label


def zeroconf_interfaces(bound=None):
    """The interfaces mDNS runs on: those whose addresses the server listens on (``bound``:
    its host strings; a wildcard, or None for a browser, means every interface), so that
    ``--bind 127.0.0.1`` is not announced to the network. ``CANCORDER_ZEROCONF_INTERFACES=
    127.0.0.1`` restricts it further (tests run it inside a private network namespace)."""
    from zeroconf import InterfaceChoice

    chosen = os.environ.get("CANCORDER_ZEROCONF_INTERFACES", "")
    forced = [x.strip() for x in chosen.split(",") if x.strip()]
    if forced:
        return forced
    if bound and not any(host in ("0.0.0.0", "::") for host in bound):
        return [host.split("%")[0] for host in bound]
    return InterfaceChoice.All


def listening_addresses(bound):
    """The addresses to advertise for sockets bound to ``bound`` (a list of host strings)."""
    import ifaddr

    wildcard_v4 = "0.0.0.0" in bound
    wildcard_v6 = "::" in bound
    if not (wildcard_v4 or wildcard_v6):
        return list(bound)
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):  # IPv6: (address, flowinfo, scope_id)
                if wildcard_v6 and not ipaddress.ip_address(ip.ip[0]).is_link_local:
                    found.append(ip.ip[0])
            elif wildcard_v4 or wildcard_v6:  # a dual-stack :: socket takes IPv4 too
                found.append(ip.ip)
    return list(dict.fromkeys(found))


class Advertiser:
    """Registers one ``_ecuconnect-log._tcp`` service; ``close`` unregisters it."""

    def __init__(self, name, port, addresses, properties, bound=None):
        self.name = name
        self.bound = bound
        self.port = port
        self.addresses = addresses
        self.properties = {k: str(v) for k, v in properties.items()}
        self._zeroconf = None
        self._info = None

    def start(self):
        from zeroconf import ServiceInfo, Zeroconf

        host = short_hostname()
        self._info = ServiceInfo(
            SERVICE_TYPE, f"{self.name}.{SERVICE_TYPE}", port=self.port,
            parsed_addresses=self.addresses, properties=self.properties,
            server=f"{host}.local.")
        self._zeroconf = Zeroconf(interfaces=zeroconf_interfaces(self.bound))
        try:
            self._zeroconf.register_service(self._info, allow_name_change=True)
        except Exception:
            self._zeroconf.close()
            self._zeroconf = None
            raise
        self.name = self._info.name[:-len(SERVICE_TYPE) - 1]

    def close(self):
        zc, self._zeroconf = self._zeroconf, None
        if zc is None:
            return
        try:
            zc.unregister_service(self._info)
        finally:
            zc.close()


@dataclasses.dataclass
class FoundLogger:
    """One logger that answered a browse: where to connect and what its TXT keys say."""

    name: str  # the instance name, without the service type
    addresses: list  # IPv4 first, then IPv6 (link-local last: it needs a scope to connect)
    port: int
    txt: dict
    server: str = ""

    @property
    def endpoint(self):
        """``HOST:PORT`` for `cancorder dump` (brackets around an IPv6 address)."""
        host = self.addresses[0] if self.addresses else self.server.rstrip(".")
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def as_dict(self):
        return dataclasses.asdict(self)


def browse(timeout=3.0, resolve_timeout=2.0):
    """Listen for ``_ecuconnect-log._tcp`` loggers for ``timeout`` seconds; a list of FoundLogger.

    Waits the whole time (whoever answers late must still be listed: `dump` connects only when
    exactly one answered), then asks each for its address, port and TXT keys.
    """
    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    names = []
    lock = threading.Lock()

    def on_change(zeroconf, service_type, name, state_change):
        with lock:
            if state_change is ServiceStateChange.Added and name not in names:
                names.append(name)
            elif state_change is ServiceStateChange.Removed and name in names:
                names.remove(name)

    zc = Zeroconf(interfaces=zeroconf_interfaces())
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        try:
            threading.Event().wait(timeout)
        finally:
            browser.cancel()
        with lock:
            answered = sorted(names)
        found = []
        for name in answered:
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=int(resolve_timeout * 1000))
            if info is None or not info.port:
                continue  # it left, or never said where it listens
            txt = {key.decode("utf-8", "replace"): (value or b"").decode("utf-8", "replace")
                   for key, value in info.properties.items()}
            instance = name[:-len(SERVICE_TYPE) - 1] if name.endswith("." + SERVICE_TYPE) else name
            found.append(FoundLogger(instance, _connect_order(info.parsed_addresses()),
                                     info.port, txt, info.server or ""))
        return found
    finally:
        zc.close()


def _connect_order(addresses):
    def rank(address):
        ip = ipaddress.ip_address(address.split("%")[0])
        return (ip.version == 6, ip.is_link_local)

    return sorted(dict.fromkeys(addresses), key=rank)
