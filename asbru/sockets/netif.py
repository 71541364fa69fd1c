"""Network interfaces and their addresses (``getifaddrs``), for resolving interface names,
finding the interface that owns an address or whose subnet contains it, and interface
flags.  Plain Python: used at set-up time only."""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import fcntl
import ipaddress
import os
import socket
import struct

__all__ = ["IfAddr", "interface_addresses", "interface_for_address", "if_index", "if_flags",
           "IFF_UP", "IFF_LOOPBACK", "IFF_PROMISC", "IFF_MULTICAST"]

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_PROMISC = 0x100
IFF_MULTICAST = 0x1000
_SIOCGIFFLAGS = 0x8913


@dataclasses.dataclass(frozen=True)
class IfAddr:
    """One address of one interface."""
    name: str
    index: int
    family: int
    address: str
    prefixlen: int
    flags: int

    @property
    def network(self) -> ipaddress._BaseNetwork:
        return ipaddress.ip_network(f"{self.address.split('%')[0]}/{self.prefixlen}", strict=False)


class _ifaddrs(ctypes.Structure):
    pass


_ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.getifaddrs.argtypes = [ctypes.POINTER(ctypes.POINTER(_ifaddrs))]
_libc.freeifaddrs.argtypes = [ctypes.POINTER(_ifaddrs)]


def _sockaddr(ptr: int) -> tuple[int, bytes] | None:
    if not ptr:
        return None
    family = ctypes.c_uint16.from_address(ptr).value
    if family == socket.AF_INET:
        return family, ctypes.string_at(ptr + 4, 4)
    if family == socket.AF_INET6:
        return family, ctypes.string_at(ptr + 8, 16)
    return None


def interface_addresses() -> list[IfAddr]:
    """Every IPv4/IPv6 address of every interface, in the order the kernel lists them."""
    head = ctypes.POINTER(_ifaddrs)()
    if _libc.getifaddrs(ctypes.byref(head)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getifaddrs: {os.strerror(err)}")
    out: list[IfAddr] = []
    try:
        node = head
        while node:
            ifa = node.contents
            addr = _sockaddr(ifa.ifa_addr)
            if addr is not None:
                family, raw = addr
                mask = _sockaddr(ifa.ifa_netmask)
                prefix = (8 * len(raw)) if mask is None else sum(bin(b).count("1") for b in mask[1])
                name = ifa.ifa_name.decode()
                try:
                    index = socket.if_nametoindex(name)
                except OSError:
                    index = 0
                out.append(IfAddr(name, index, family, socket.inet_ntop(family, raw), prefix,
                                  int(ifa.ifa_flags)))
            node = ifa.ifa_next
    finally:
        _libc.freeifaddrs(head)
    return out


def interface_for_address(address: str, family: int, owned: bool = False) -> IfAddr | None:
    """The interface address equal to ``address`` or (``owned=False``) whose subnet contains it.

    An exact match wins over a subnet match; the wildcard address gives None.
    """
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_unspecified:
        return None
    candidates = [a for a in interface_addresses() if a.family == family]
    for a in candidates:
        if ipaddress.ip_address(a.address.split("%")[0]) == ip:
            return a
    if owned:
        return None
    for a in candidates:
        if ip in a.network:
            return a
    if ip.is_loopback:
        for a in candidates:
            if a.flags & IFF_LOOPBACK:
                return a
    return None


def if_index(name: str) -> int:
    """Interface index of ``name`` (OSError if there is no such interface)."""
    return socket.if_nametoindex(name)


def if_flags(name: str) -> int:
    """The interface's flags (``SIOCGIFFLAGS``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", name.encode()[:15], 0)
        res = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req)
    return struct.unpack("16sH14x", res)[1]
