"""Zeroconf (mDNS/DNS-SD): advertise a logger, and find the ones on the network."""
import ipaddress
import os
import socket

SERVICE_TYPE = "_ecuconnect-log._tcp.local."
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


def zeroconf_interfaces():
    """``CANCORDER_ZEROCONF_INTERFACES=127.0.0.1`` restricts mDNS to those addresses (tests
    run it inside a private network namespace on loopback); the default is every interface."""
    from zeroconf import InterfaceChoice

    chosen = os.environ.get("CANCORDER_ZEROCONF_INTERFACES", "")
    return [x.strip() for x in chosen.split(",") if x.strip()] or InterfaceChoice.All


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

    def __init__(self, name, port, addresses, properties):
        self.name = name
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
        self._zeroconf = Zeroconf(interfaces=zeroconf_interfaces())
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
