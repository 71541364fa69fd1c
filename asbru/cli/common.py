"""Shared pieces of the ``asbru`` commands: argument parsing, format lookup, output."""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from typing import Any

from rich.console import Console

from ..errors import ArgumentError

# stdout for results, stderr for live displays and messages (so `--json | jq` stays clean)
# (tables piped to a file or a pager get 160 columns instead of rich's 80 unless COLUMNS says)
out = Console(highlight=False,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """One JSON document on stdout (plain print: rich would wrap long lines)."""
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


def endpoint(host: str, port: int) -> str:
    """``HOST:PORT`` as it is written back on the command line: IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def warn_refused(refused: int, host: str, port: int) -> None:
    """One stderr line when the destination answered with ICMP port-unreachable."""
    if refused:
        err.print(f"asbru: warning: {endpoint(host, port)} refused the datagrams (ICMP port "
                  f"unreachable, {refused} report(s)): nothing listens there", soft_wrap=True)


def parse_hostport(value: str, option: str, allow_port_zero: bool = False) -> tuple[str, int, int]:
    """``"127.0.0.1:4015"``, ``"[::1]:4015"``, ``"localhost:4015"`` -> (host, port, family).

    The host is resolved here so that a typo fails now with one line, not later inside a
    socket call.
    """
    example = "e.g. 127.0.0.1:4015 or [::1]:4015"
    if not isinstance(value, str) or ":" not in value:
        raise ArgumentError(f"{option}: expected HOST:PORT ({example}), got {value!r}")
    if value.startswith("["):
        host, sep, port_s = value[1:].partition("]:")
        if not sep:
            raise ArgumentError(f"{option}: expected [IPV6]:PORT ({example}), got {value!r}")
    else:
        host, _, port_s = value.rpartition(":")
        if ":" in host:
            raise ArgumentError(f"{option}: write IPv6 addresses in brackets ({example}), got {value!r}")
    if not port_s.isdigit():
        raise ArgumentError(f"{option}: port must be a number 1..65535 ({example}), got {value!r}")
    port = int(port_s)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise ArgumentError(f"{option}: port must be in {low}..65535, got {port}")
    if host == "":
        host = "0.0.0.0"
    try:
        ip = ipaddress.ip_address(host)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return str(ip), port, family
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        raise ArgumentError(f"{option}: unknown host {host!r} ({example})") from None
    fam, _, _, _, addr = infos[0]
    return str(addr[0]), port, fam


def get_format(fmt: str, role: str, option: str = "FORMAT"):
    """``asbru.formats.get`` with the argument named in the error message."""
    from .. import formats
    from ..formats.spec import FormatError
    try:
        return formats.get(fmt, role)
    except FormatError as exc:
        raise ArgumentError(f"{option}: {exc}") from None


def get_reader_format(fmt: str, role: str = "disk", option: str = "--format"):
    """Resolve ``fmt`` for reading; accept the writer spelling as well (the format's
    ``reader_format``: pbeam1_N reads as pbeam_N)."""
    from .. import formats
    from ..formats.spec import FormatError
    last: Exception | None = None
    for cand in dict.fromkeys((fmt, formats.reader_string(fmt))):
        for r in (role, "capture") if role != "capture" else (role,):
            try:
                return formats.get(cand, r)
            except FormatError as exc:
                last = last or exc
    raise ArgumentError(f"{option}: {last}")


def positive(value: int | float, option: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ArgumentError(f"{option}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def probability(value: float, option: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ArgumentError(f"{option}: must be a probability in 0..1, got {value}")


def interface_address(value: str | None, option: str = "--interface") -> str:
    """The IPv4 address naming the interface multicast goes through (default: the kernel's)."""
    if value is None:
        return "0.0.0.0"
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ArgumentError(f"{option}: expected the IPv4 address of an interface "
                            f"(e.g. 127.0.0.1), got {value!r}") from None
    if ip.version != 4:
        raise ArgumentError(f"{option}: only IPv4 interface addresses are accepted, got {value!r}")
    return str(ip)


def connect_sender(host: str, port: int, family: int, interface: str | None = None,
                   option: str = "--to") -> socket.socket:
    """A UDP socket connected to host:port; multicast leaves through ``interface``."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        if ipaddress.ip_address(host).is_multicast and family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton(interface_address(interface)))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.connect((host, port))
    except OSError as exc:
        sock.close()
        raise ArgumentError(f"{option}: cannot send to {endpoint(host, port)} ({exc.strerror})") from None
    return sock
