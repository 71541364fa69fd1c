"""``UDPSocket`` (Bifrost's ``bifrost.udp_socket.UDPSocket``).

The OS socket is created lazily by ``bind``, ``connect`` or ``sniff``; captures and writers
use only ``fileno()`` and call the kernel from compiled code, so the Python socket object
is kept in blocking mode (Python's own ``settimeout`` would make the descriptor
non-blocking) and ``timeout`` is ``SO_RCVTIMEO``/``SO_SNDTIMEO``.

Fixes over Bifrost (docs/sockets.md): IPv6 bind/connect use the right address length;
``timeout`` can be cleared (0 or None); multicast works for IPv6 and can be pinned to an
interface (``interface=`` or :meth:`set_multicast_interface`); the granted buffer sizes are
exposed.  Captures read the kernel's drop counter themselves (``asbru.sockets.drops``);
``SO_RXQ_OVFL`` is not switched on here because it costs every datagram a trip through the
kernel's control-message path.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from typing import Optional

from asbru.sockets.address import Address
from asbru.errors import ArgumentError, AsbruError, PermissionNeeded
from asbru.sockets import bpf, netif
from asbru.sockets.options import SO_RCVBUFFORCE as _SO_RCVBUFFORCE
from asbru.sockets.options import SO_SNDBUFFORCE as _SO_SNDBUFFORCE

__all__ = ["UDPSocket", "DEFAULT_BUFFER_SIZE", "port_sharers"]

DEFAULT_BUFFER_SIZE = 256 * 1024 * 1024   # Bifrost asks for 256 MiB; the kernel may cap it
_IP_MTU = getattr(socket, "IP_MTU", 14)
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
_ETH_P_IP = 0x0800
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_DROP_MEMBERSHIP = 2
_PACKET_MR_PROMISC = 1

_libc = ctypes.CDLL(None, use_errno=True)

_NEEDS_RAW = ("sniff: the packet sniffer needs CAP_NET_RAW "
              "(run as root or `setcap cap_net_raw+ep` on the python binary)")


class UDPSocket:
    """A datagram socket for captures (``bind``), writers (``connect``) and the sniffer (``sniff``)."""

    def __init__(self, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size <= 0:
            raise ArgumentError(f"buffer_size must be a positive int (bytes), got {buffer_size!r}")
        self._buffer_size = buffer_size
        self._sock: Optional[socket.socket] = None
        self._holder: Optional[socket.socket] = None     # sniffer: keeps the UDP port bound
        self._timeout: Optional[float] = None
        self._mcast_if: Optional[str] = None
        self._connected = False
        self._promisc = False
        self.sniff_address: Optional[Address] = None     #: set by sniff()
        self.sniff_interface: Optional[str] = None       #: interface name the sniffer listens on
        self.bound_address: Optional[Address] = None     #: set by bind()
        self.rcvbuf = 0                                  #: granted SO_RCVBUF (bytes, as the kernel reports)
        self.sndbuf = 0                                  #: granted SO_SNDBUF

    # -- options ------------------------------------------------------------------------
    def set_multicast_interface(self, interface: Optional[str]) -> None:
        """Interface (name, e.g. ``"lo"``) used for multicast joins (bind) and sends (connect)."""
        if interface is not None:
            self._check_interface(interface)
        self._mcast_if = interface

    @staticmethod
    def _check_interface(interface: str) -> int:
        if not isinstance(interface, str):
            raise ArgumentError(f"interface must be an interface name such as 'lo', got {interface!r}")
        try:
            return socket.if_nametoindex(interface)
        except OSError:
            names = ", ".join(n for _i, n in socket.if_nameindex())
            raise ArgumentError(f"interface {interface!r} does not exist (have: {names})") from None

    @staticmethod
    def _check_address(addr: object, what: str) -> Address:
        if not isinstance(addr, Address):
            raise ArgumentError(f"{what}: addr must be an asbru.address.Address, got {type(addr).__name__}")
        return addr

    # -- opening ------------------------------------------------------------------------
    def _open(self, family: int, kind: int = socket.SOCK_DGRAM, proto: int = 0) -> socket.socket:
        s = socket.socket(family, kind, proto)
        self._sock = s
        self._grow_buffers(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3))
        if self._timeout:
            self._apply_timeout(self._timeout)
        return s

    def _grow_buffers(self, s: socket.socket) -> None:
        for force, plain, attr in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF, "rcvbuf"),
                                   (_SO_SNDBUFFORCE, socket.SO_SNDBUF, "sndbuf")):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, self._buffer_size)   # root: beyond rmem_max
            except OSError:
                try:
                    s.setsockopt(socket.SOL_SOCKET, plain, self._buffer_size)  # capped by rmem_max
                except OSError:
                    pass
            setattr(self, attr, s.getsockopt(socket.SOL_SOCKET, plain))

    def _require_closed(self, what: str) -> None:
        if self._sock is not None:
            raise AsbruError(f"{what}: the socket is already open (create a new UDPSocket)")

    def bind(self, addr: Address, interface: Optional[str] = None, *,
             reuse_port: bool = True) -> None:
        """Open a socket of ``addr.family`` and bind it; join ``addr`` if it is a multicast group.

        A multicast bind binds to the group itself (Bifrost) and joins it on ``interface``
        (or :meth:`set_multicast_interface`'s; default: the kernel's choice, INADDR_ANY).
        An AF_UNSPEC address (``Address("", port)``) binds the IPv4 wildcard.

        ``reuse_port`` (default True, as Bifrost): set ``SO_REUSEPORT``, so that several
        sockets may bind the same port -- the kernel then *splits* the flows between them
        (by a hash of each sender's address), and each capture sees only its share.
        ``reuse_port=False``: a second bind of the port fails (EADDRINUSE) instead.  A
        capture on a port that another socket shares warns (see :func:`port_sharers`).
        """
        addr = self._check_address(addr, "bind")
        self._require_closed("bind")
        iface = interface if interface is not None else self._mcast_if
        ifindex = self._check_interface(iface) if iface is not None else 0
        family = addr.family if addr.family in (socket.AF_INET, socket.AF_INET6) else socket.AF_INET
        s = self._open(family)
        try:
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sa = addr.sockaddr_for(family)
            if family == socket.AF_INET6 and addr.is_multicast and ifindex and not addr.scope_id:
                sa = (sa[0], sa[1], 0, ifindex)
            s.bind(sa)
            if addr.is_multicast:
                group = socket.inet_pton(family, addr.address)
                if family == socket.AF_INET:
                    # struct ip_mreqn { in_addr multiaddr; in_addr address; int ifindex; }
                    mreq = group + socket.inet_aton("0.0.0.0") + struct.pack("i", ifindex)
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                else:
                    mreq = group + struct.pack("I", ifindex or addr.scope_id)
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        except OSError as exc:
            self.close()
            raise AsbruError(f"bind: cannot bind to {addr}: {exc.strerror}") from None
        self.bound_address = addr

    def connect(self, addr: Address, interface: Optional[str] = None) -> None:
        """Connect (opening a socket of ``addr.family`` if needed).

        ``Address("", 0)`` (AF_UNSPEC) dissolves an existing association.  For a multicast
        destination, outgoing packets leave through ``interface`` (IPv4: its address in
        IP_MULTICAST_IF, IPv6: its index in IPV6_MULTICAST_IF) with multicast loop on.
        """
        addr = self._check_address(addr, "connect")
        if addr.family == socket.AF_UNSPEC:
            if self._sock is not None:
                unspec = (ctypes.c_char * 16)()   # sockaddr with sa_family = AF_UNSPEC
                _libc.connect(self._sock.fileno(), unspec, 16)
                self._connected = False
            return
        if self._sock is not None:
            if self._sock.family != addr.family or self._sock.type != socket.SOCK_DGRAM:
                raise AsbruError(f"connect: the open socket is {self._sock.family.name}, "
                                 f"{addr} needs a new UDPSocket")
            s = self._sock
        else:
            s = self._open(addr.family)
        iface = interface if interface is not None else self._mcast_if
        try:
            if addr.is_multicast:
                self._set_multicast_sender(s, addr, iface)
            sa = addr.sockaddr
            if addr.family == socket.AF_INET6 and addr.is_multicast and iface and not addr.scope_id:
                sa = (sa[0], sa[1], 0, socket.if_nametoindex(iface))
            s.connect(sa)
        except OSError as exc:
            self.close()
            raise AsbruError(f"connect: cannot connect to {addr}: {exc.strerror}") from None
        self._connected = True

    def _set_multicast_sender(self, s: socket.socket, addr: Address, iface: Optional[str]) -> None:
        if addr.family == socket.AF_INET:
            if iface is not None:
                self._check_interface(iface)
                ips = [a.address for a in netif.interface_addresses()
                       if a.name == iface and a.family == socket.AF_INET]
                if not ips:
                    raise ArgumentError(f"interface {iface!r} has no IPv4 address for multicast")
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ips[0]))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        else:
            if iface is not None:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._check_interface(iface))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)

    def sniff(self, addr: Address, interface: Optional[str] = None) -> None:
        """Open an AF_PACKET socket (IPv4, network layer) on the interface owning ``addr``
        (or whose subnet contains it, or ``interface``) and turn promiscuous mode on.

        The socket takes no packet until :class:`asbru.sockets.packet_ring.PacketRing`
        (through which the sniffer capture reads it) puts in the port/address filter.  When ``addr`` is a local address, the UDP port is also held
        by a bound socket that accepts nothing, so that the kernel does not answer each
        datagram with ICMP port-unreachable.
        """
        addr = self._check_address(addr, "sniff")
        self._require_closed("sniff")
        if addr.family != socket.AF_INET:
            raise ArgumentError(f"sniff: addr must be an IPv4 address (the sniffer decodes IPv4/UDP), got {addr}")
        if interface is None:
            owner = netif.interface_for_address(addr.address, socket.AF_INET)
            if owner is None:
                raise ArgumentError(f"sniff: no interface owns or routes {addr.address}; pass interface='name'")
            interface = owner.name
        self._check_interface(interface)
        # Opened with protocol 0 (no packet reaches it yet) and given a filter that drops
        # everything before bind() hooks it to the interface: PacketRing then swaps in the
        # port filter.  Hooked first, it took every packet of the interface until then
        # (queued outside the ring, and counted in PACKET_STATISTICS as its packets).
        try:
            s = self._open(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        except PermissionError:
            raise PermissionNeeded(_NEEDS_RAW) from None
        try:
            bpf.attach(s, bpf.drop_all())
            s.bind((interface, _ETH_P_IP))
        except OSError as exc:
            self.close()
            raise AsbruError(f"sniff: cannot bind to interface {interface!r}: {exc.strerror}") from None
        self.sniff_address = addr
        self.sniff_interface = interface
        self.promisc = True
        if netif.interface_for_address(addr.address, socket.AF_INET, owned=True) is not None:
            self._hold_port(addr)

    def _hold_port(self, addr: Address) -> None:
        h = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            bpf.attach(h, bpf.drop_all())
            h.bind(addr.sockaddr)
        except OSError:
            h.close()      # port already bound by someone else: they answer for it
            return
        self._holder = h

    # -- closing ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """``shutdown(SHUT_RD)``: a receive blocked in another thread returns 0 ("no data")."""
        if self._sock is None:
            return
        try:
            self._sock.shutdown(socket.SHUT_RD)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTCONN):
                raise AsbruError(f"shutdown: {exc.strerror}") from None

    def close(self) -> None:
        """Promiscuous mode off (errors ignored), then close.  Safe to call twice."""
        if self._sock is not None:
            if self._promisc:
                try:
                    self.promisc = False
                except (OSError, AsbruError):
                    pass
            self._sock.close()
            self._sock = None
        if self._holder is not None:
            self._holder.close()
            self._holder = None
        self._connected = False

    def fileno(self) -> int:
        """The OS descriptor, -1 when not open."""
        return -1 if self._sock is None else self._sock.fileno()

    def __enter__(self) -> "UDPSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- properties ---------------------------------------------------------------------
    @property
    def family(self) -> int:
        """Family of the open socket (AF_PACKET for a sniffer), AF_UNSPEC when not open."""
        return socket.AF_UNSPEC if self._sock is None else int(self._sock.family)

    @property
    def mtu(self) -> int:
        """Path MTU of a connected socket (IP_MTU / IPV6_MTU)."""
        if self._sock is None or not self._connected:
            raise AsbruError("mtu: the socket is not connected (BF_STATUS_INVALID_STATE)")
        if self._sock.family == socket.AF_INET6:
            return int(self._sock.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU))
        return int(self._sock.getsockopt(socket.IPPROTO_IP, _IP_MTU))

    @property
    def timeout(self) -> float:
        """Receive timeout in seconds (SO_RCVTIMEO); 0.0 when none."""
        if self._sock is None:
            return float(self._timeout or 0.0)
        sec, usec = struct.unpack("ll", self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
        # the kernel keeps the timeout in jiffies, so a set value reads back rounded;
        # usec * 1e-6 reproduces Bifrost's read-back (0.2 -> 0.19999999999999998)
        return sec + usec * 1e-6

    @timeout.setter
    def timeout(self, secs: Optional[float]) -> None:
        """Set SO_RCVTIMEO and SO_SNDTIMEO; 0 or None removes the timeout (blocks forever)."""
        if secs is None:
            secs = 0.0
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or secs < 0 or secs != secs:
            raise ArgumentError(f"timeout must be seconds >= 0, or 0/None for no timeout, got {secs!r}")
        self._timeout = float(secs)
        if self._sock is not None:
            self._apply_timeout(self._timeout)

    @property
    def requested_timeout(self) -> float:
        """The receive timeout last given to :attr:`timeout` (seconds; 0.0 for none),
        without asking the kernel (a capture reads it once per ``recv()``)."""
        return float(self._timeout or 0.0)

    def _apply_timeout(self, secs: float) -> None:
        assert self._sock is not None
        usec_total = int(round(secs * 1e6))
        if secs > 0 and usec_total == 0:
            usec_total = 1          # a tiny timeout must not turn into "no timeout"
        tv = struct.pack("ll", usec_total // 1_000_000, usec_total % 1_000_000)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    @property
    def promisc(self) -> bool:
        """Promiscuous mode: this socket's request, or the interface's IFF_PROMISC flag."""
        if self._promisc:
            return True
        if self.sniff_interface is not None:
            return bool(netif.if_flags(self.sniff_interface) & netif.IFF_PROMISC)
        return False

    @promisc.setter
    def promisc(self, on: bool) -> None:
        """Only a sniffing socket can switch it (a packet-socket membership, undone on close)."""
        if self._sock is None or self._sock.family != socket.AF_PACKET or self.sniff_interface is None:
            raise AsbruError("promisc: only a sniffing socket (after sniff()) can change promiscuous mode")
        on = bool(on)
        if on == self._promisc:
            return
        # struct packet_mreq { int ifindex; u16 type; u16 alen; u8 address[8]; }
        mreq = struct.pack("iHH8x", socket.if_nametoindex(self.sniff_interface), _PACKET_MR_PROMISC, 0)
        opt = _PACKET_ADD_MEMBERSHIP if on else _PACKET_DROP_MEMBERSHIP
        self._sock.setsockopt(_SOL_PACKET, opt, mreq)
        self._promisc = on


def port_sharers(fd: int) -> int:
    """How many *other* UDP sockets of this network namespace are bound to the same port
    and address as ``fd`` (or to the wildcard address), read from ``/proc/net/udp[6]``: with
    SO_REUSEPORT the kernel splits the datagrams between them.  0 when unknown."""
    try:
        with socket.socket(fileno=os.dup(fd)) as dup:
            if dup.type != socket.SOCK_DGRAM or dup.family not in (socket.AF_INET, socket.AF_INET6):
                return 0
            port = dup.getsockname()[1]
        inode = os.fstat(fd).st_ino
    except OSError:
        return 0
    others = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    local_port = int(parts[1].rsplit(":", 1)[1], 16)
                    if local_port == port and int(parts[9]) != inode:
                        others += 1
        except (OSError, ValueError, IndexError):
            continue
    return others
