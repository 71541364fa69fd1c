"""Steering the datagrams of one UDP port over several sockets by their source.

Sockets bound to one address and port with ``SO_REUSEPORT`` form a group; the kernel gives
each datagram to one of them.  By default it picks by a hash of the datagram's addresses
and ports -- already "by source", but unevenly for a few senders.  A classic BPF program
attached with ``SO_ATTACH_REUSEPORT_CBPF`` picks instead: here the socket numbered
``(source address ^ source port) % N`` (the order in which the sockets joined the group),
so that one sender always lands on one socket (its packets stay in order, and duplicates of
a packet meet in one follower) and consecutive addresses or ports spread evenly.

For UDP the program sees the datagram from its payload on; the IP and UDP headers are
read at ``SKF_NET_OFF``-relative offsets (IPv4: the header length from the packet; IPv6:
the UDP header right after the fixed header).
"""
from __future__ import annotations

import socket
import struct

import numpy as np

from asbru.sockets.bpf import SOCK_FILTER

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)
SKF_NET_OFF = -0x100000

# classic BPF opcodes
_LD_W_ABS = 0x20
_LD_H_IND = 0x48
_LD_B_ABS = 0x30
_LDX_B_MSH = 0xB1
_ALU_RSH_K = 0x74
_ALU_XOR_X = 0xAC
_ALU_MOD_K = 0x94
_JEQ_K = 0x15
_RET_A = 0x16
_LD_IMM = 0x00
_MISC_TAX = 0x07
_LDX_IMM = 0x01


def by_source(n: int) -> np.ndarray:
    """The steering program for a group of ``n`` sockets."""
    net = SKF_NET_OFF & 0xFFFFFFFF
    rows = [
        (_LD_B_ABS, 0, 0, net),               # A = first byte of the IP header
        (_ALU_RSH_K, 0, 0, 4),                # A = IP version
        (_JEQ_K, 0, 5, 4),                    # IPv4?  (else skip to IPv6)
        # IPv4: X = header length; A = source port; A ^= source address
        (_LDX_B_MSH, 0, 0, net),
        (_LD_H_IND, 0, 0, net),               # A = ntohs(udp source port) at net + X
        (_MISC_TAX, 0, 0, 0),                 # X = port
        (_LD_W_ABS, 0, 0, (net + 12) & 0xFFFFFFFF),   # A = source address
        (0x05, 0, 0, 4),                      # ja +4 (to the mix)
        # IPv6: source address's last word, source port right after the 40-byte header
        (_LDX_IMM, 0, 0, 40),
        (_LD_H_IND, 0, 0, net),
        (_MISC_TAX, 0, 0, 0),
        (_LD_W_ABS, 0, 0, (net + 20) & 0xFFFFFFFF),   # last word of the source address
        # mix
        (_ALU_XOR_X, 0, 0, 0),
        (_ALU_MOD_K, 0, 0, int(n)),
        (_RET_A, 0, 0, 0),
    ]
    return np.array(rows, dtype=SOCK_FILTER)


def attach(sock: socket.socket, prog: np.ndarray) -> None:
    """Attach ``prog`` to ``sock``'s reuseport group (the kernel copies it)."""
    prog = np.ascontiguousarray(prog, dtype=SOCK_FILTER)
    fprog = struct.pack("HxxxxxxQ", len(prog), prog.ctypes.data)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
