"""Classic BPF socket filters (``SO_ATTACH_FILTER``), built as numpy arrays.

Two programs: ``drop_all`` (a socket that must exist but never queue anything) and
``udp4_dest`` (the sniffer's filter: IPv4, not a fragment tail, UDP, destination port
and optionally destination address).  The packet socket is SOCK_DGRAM, so offsets are
relative to the IPv4 header (no link-layer header).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Optional

import numpy as np

from .options import SO_ATTACH_FILTER

__all__ = ["SOCK_FILTER", "drop_all", "udp4_dest", "attach", "SO_ATTACH_FILTER"]


#: struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }
SOCK_FILTER = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])

# opcodes
_LD_B_ABS = 0x30    # A = pkt[k] (byte)
_LD_H_ABS = 0x28    # A = pkt[k:k+2] (network order)
_LD_W_ABS = 0x20
_LDX_MSH = 0xB1     # X = 4 * (pkt[k] & 0xf)  (IPv4 header length)
_LD_H_IND = 0x48    # A = pkt[X + k : X + k + 2]
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06


def _prog(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=SOCK_FILTER)


def drop_all() -> np.ndarray:
    return _prog([(_RET_K, 0, 0, 0)])


def udp4_dest(port: int, address: Optional[str] = None, snaplen: int = 0x40000) -> np.ndarray:
    """Accept IPv4 UDP datagrams to ``port`` (and ``address`` unless None/wildcard).

    The IP header length is read from the packet (``ldx msh``), so IPv4 options are
    handled; non-first fragments are rejected (they carry no UDP header).
    """
    by_address = bool(address) and not ipaddress.ip_address(address).is_unspecified
    # Built with symbolic "R" (reject) jump targets, resolved below.
    rows = [
        (_LD_B_ABS, 0, 0, 0),
        ("and", 0, 0, 0xF0),
        (_JEQ_K, 0, "R", 0x40),          # IPv4
        (_LD_B_ABS, 0, 0, 9),
        (_JEQ_K, 0, "R", 17),            # protocol UDP
        (_LD_H_ABS, 0, 0, 6),
        (_JSET_K, "R", 0, 0x1FFF),       # fragment offset != 0 -> reject
    ]
    if by_address:
        rows += [(_LD_W_ABS, 0, 0, 16), (_JEQ_K, 0, "R", struct.unpack("!I", socket.inet_aton(address))[0])]
    rows += [
        (_LDX_MSH, 0, 0, 0),
        (_LD_H_IND, 0, 0, 2),            # UDP destination port
        (_JEQ_K, 0, "R", int(port)),
        (_RET_K, 0, 0, int(snaplen)),    # accept
        (_RET_K, 0, 0, 0),               # "R": reject
    ]
    reject = len(rows) - 1
    out = []
    for i, (code, jt, jf, k) in enumerate(rows):
        if code == "and":
            code = 0x54                  # ALU AND K
        jt = reject - i - 1 if jt == "R" else jt
        jf = reject - i - 1 if jf == "R" else jf
        out.append((code, jt, jf, k))
    return _prog(out)


def attach(sock: socket.socket, prog: np.ndarray) -> None:
    """``setsockopt(SO_ATTACH_FILTER)``: the kernel copies the program during the call."""
    prog = np.ascontiguousarray(prog, dtype=SOCK_FILTER)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } (pointer at 8)
    fprog = struct.pack("HxxxxxxQ", len(prog), prog.ctypes.data)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    del prog
