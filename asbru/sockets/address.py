"""``Address``: a resolved socket address (Bifrost's ``bifrost.address.Address``).

Resolution follows Bifrost (docs/sockets.md): empty string -> wildcard; AF_UNIX or a negative
port -> UNIX path; IPv4 literal; IPv6 literal; interface name -> its first address of the
family; host name -> first ``getaddrinfo`` result.  Unlike Bifrost, multicast detection
reads the address bytes in network order (so it is right on any host) and also knows IPv6
(``ff00::/8``); ``mtu`` reads ``IPV6_MTU`` for IPv6.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Union

from asbru.errors import ArgumentError
from asbru.sockets import netif

__all__ = ["Address"]

_FAMILIES = {None: socket.AF_UNSPEC, socket.AF_UNSPEC: socket.AF_UNSPEC,
             socket.AF_INET: socket.AF_INET, socket.AF_INET6: socket.AF_INET6,
             socket.AF_UNIX: socket.AF_UNIX}
_IP_MTU = getattr(socket, "IP_MTU", 14)
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)


class Address:
    """A socket address: ``Address("127.0.0.1", 4015)``, ``Address("::1", 4015)``,
    ``Address("eth0", 4015)``, ``Address("", 4015, socket.AF_INET)``.

    ``sockaddr`` is the tuple Python's ``socket`` module takes for this address.
    """

    def __init__(self, address: str, port: int, family: Optional[int] = None) -> None:
        if isinstance(port, bool) or not isinstance(port, int):
            raise ArgumentError(f"port must be an int, got {port!r}")
        if family not in _FAMILIES:
            raise ArgumentError(
                f"family must be None, socket.AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX, got {family!r}")
        if isinstance(address, bytes):
            address = address.decode()
        if not isinstance(address, str):
            raise ArgumentError(f"address must be a str (IP address, interface or host name), got {address!r}")
        fam = _FAMILIES[family]
        self._port = int(port)
        self._scope_id = 0
        if fam == socket.AF_UNIX or (port < 0 and fam in (socket.AF_UNSPEC, socket.AF_UNIX)):
            self._family = socket.AF_UNIX
            self._host = address
            return
        if not 0 <= port <= 65535:
            raise ArgumentError(f"port must be in 0..65535 (or negative for a UNIX path), got {port}")
        if address == "":
            self._family = fam
            self._host = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}.get(fam, "")
            return
        resolved = (self._literal(address, fam) or self._interface(address, fam)
                    or self._hostname(address, fam))
        if resolved is None:
            raise ArgumentError(
                f"address {address!r}: not a valid IP address, interface or hostname"
                + ("" if fam == socket.AF_UNSPEC else f" of family {socket.AddressFamily(fam).name}"))
        self._family, self._host, self._scope_id = resolved

    # -- resolution steps -------------------------------------------------------------
    @staticmethod
    def _literal(address: str, fam: int) -> tuple[int, str, int] | None:
        for f in (socket.AF_INET, socket.AF_INET6):
            if fam not in (socket.AF_UNSPEC, f):
                continue
            try:
                info = socket.getaddrinfo(address, None, f, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
            except (socket.gaierror, UnicodeError):
                continue
            sa = info[0][4]
            return f, _strip_scope(sa[0]), (sa[3] if f == socket.AF_INET6 else 0)
        return None

    @staticmethod
    def _interface(address: str, fam: int) -> tuple[int, str, int] | None:
        try:
            addrs = [a for a in netif.interface_addresses() if a.name == address
                     and fam in (socket.AF_UNSPEC, a.family)]
        except OSError:
            return None
        if not addrs:
            return None
        a = addrs[0]
        host = _strip_scope(a.address)
        scope = a.index if a.family == socket.AF_INET6 and ipaddress.ip_address(host).is_link_local else 0
        return a.family, host, scope

    @staticmethod
    def _hostname(address: str, fam: int) -> tuple[int, str, int] | None:
        try:
            info = socket.getaddrinfo(address, None, fam, socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError, OSError):
            return None
        for f, _t, _p, _c, sa in info:
            if f in (socket.AF_INET, socket.AF_INET6):
                return int(f), _strip_scope(sa[0]), (sa[3] if f == socket.AF_INET6 else 0)
        return None

    # -- Bifrost properties -------------------------------------------------------------
    @property
    def family(self) -> int:
        return int(self._family)

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """Numeric host string (``"<UNIMPLEMENTED>"`` for UNIX paths, as Bifrost)."""
        if self._family == socket.AF_UNIX:
            return "<UNIMPLEMENTED>"
        return self._host

    @property
    def is_multicast(self) -> bool:
        """IPv4 224.0.0.0/4 or IPv6 ff00::/8."""
        if self._family in (socket.AF_INET, socket.AF_INET6):
            return ipaddress.ip_address(self._host).is_multicast
        return False

    @property
    def mtu(self) -> int:
        """Kernel path MTU to this address (a temporary connected UDP socket's IP_MTU)."""
        fam = self._family if self._family in (socket.AF_INET, socket.AF_INET6) else socket.AF_INET
        level, opt = ((socket.IPPROTO_IP, _IP_MTU) if fam == socket.AF_INET
                      else (socket.IPPROTO_IPV6, _IPV6_MTU))
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.connect(self.sockaddr_for(fam))
                return int(s.getsockopt(level, opt))
        except OSError as exc:
            raise ArgumentError(f"address {self}: no route to read the path MTU ({exc.strerror})") from None

    @property
    def scope_id(self) -> int:
        """IPv6 scope (interface index) for link-local/multicast addresses, else 0."""
        return self._scope_id

    @property
    def sockaddr(self) -> Union[tuple, str]:
        """The address as Python's ``socket`` functions take it."""
        return self.sockaddr_for(self._family)

    def sockaddr_for(self, family: int) -> Union[tuple, str]:
        if family == socket.AF_UNIX:
            return self._host
        if family == socket.AF_INET6:
            host = self._host or "::"
            if self._family == socket.AF_INET:
                host = "::ffff:" + host
            return (host, self._port, 0, self._scope_id)
        return (self._host or "0.0.0.0", self._port)

    def __str__(self) -> str:
        # IPv6 in brackets ("[::1]:4031"), as it is written to be parsed back
        if self._family == socket.AF_INET6:
            return f"[{self.address}]:{self._port}"
        return f"{self.address}:{self._port}"

    def __repr__(self) -> str:
        return f"Address({self._host!r}, {self._port}, family={self._family!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return (self._family, self._host, self._port, self._scope_id) == (
            other._family, other._host, other._port, other._scope_id)

    def __hash__(self) -> int:
        return hash((self._family, self._host, self._port, self._scope_id))


def _strip_scope(host: str) -> str:
    return host.split("%", 1)[0]
