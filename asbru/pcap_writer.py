"""Write UDP datagrams as a classic pcap file (the reader is :mod:`asbru.pcap`).

What ``tcpdump -w`` would have written had the datagrams crossed an Ethernet link:
microsecond timestamps, link type Ethernet, each record an Ethernet II + IPv4 + UDP frame
around one payload.  The IPv4 header checksum is computed (Wireshark flags a wrong one);
the UDP checksum is 0, which IPv4 defines as "not computed".  Payloads up to 65 507 bytes
(the IPv4 limit) are written whole; nothing is fragmented.

Records are assembled with numpy in one buffer (fixed-size packets without a Python loop;
packets of mixed sizes one Python copy each).
"""
from __future__ import annotations

import ipaddress
import os
import struct

import numpy as np

from .errors import ArgumentError
from .pcap import LINKTYPE_ETHERNET, MAGIC_USEC

__all__ = ["write_pcap", "MAX_UDP_PAYLOAD"]

MAX_UDP_PAYLOAD = 65507
_ETH, _IP, _UDP = 14, 20, 8
_HDRS = _ETH + _IP + _UDP
_SRC_MAC = bytes.fromhex("020000000001")  # locally administered addresses
_DST_MAC = bytes.fromhex("020000000002")


def _ipv4(addr: str, what: str) -> bytes:
    try:
        return ipaddress.IPv4Address(addr).packed
    except ValueError:
        raise ArgumentError(f"{what}: {addr!r} is not an IPv4 address") from None


def _port(value: int, what: str) -> int:
    if not 0 <= int(value) <= 65535:
        raise ArgumentError(f"{what}: {value} is not a UDP port (0..65535)")
    return int(value)


def write_pcap(path: str | os.PathLike, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
               dst_port: int | np.ndarray, *, src_port: int = 40000, src_ip: str = "127.0.0.1",
               dst_ip: str = "127.0.0.1", t0: float = 0.0, interval: float = 1e-6) -> int:
    """Write datagram ``k`` = ``buf[offsets[k]: offsets[k] + lengths[k]]`` to ``dst_port``
    (one port, or one per datagram) at time ``t0 + k * interval``; returns the bytes written."""
    buf = np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = offsets.shape[0]
    if lengths.shape[0] != n:
        raise ArgumentError("write_pcap: offsets and lengths differ in length")
    if n and (lengths.min() < 0 or lengths.max() > MAX_UDP_PAYLOAD):
        raise ArgumentError(f"write_pcap: a payload is longer than {MAX_UDP_PAYLOAD} bytes (the IPv4 limit)")
    if n and (offsets.min() < 0 or (offsets + lengths).max() > buf.size):
        raise ArgumentError("write_pcap: a datagram lies outside the buffer")
    ports = np.broadcast_to(np.asarray(dst_port, dtype=np.int64), (n,))
    for p in np.unique(ports):
        _port(p, "dst_port")
    _port(src_port, "src_port")
    sip, dip = _ipv4(src_ip, "src_ip"), _ipv4(dst_ip, "dst_ip")

    rec_len = 16 + _HDRS + lengths
    starts = 24 + np.concatenate([[0], np.cumsum(rec_len)[:-1]]) if n else np.zeros(0, np.int64)
    out = np.zeros(24 + int(rec_len.sum()), dtype=np.uint8)
    out[:24] = np.frombuffer(struct.pack("<IHHiIII", MAGIC_USEC, 2, 4, 0, 0, 65535 + _HDRS,
                                         LINKTYPE_ETHERNET), dtype=np.uint8)
    if n == 0:
        _dump(path, out)
        return out.size

    t = t0 + np.arange(n) * float(interval)
    sec = np.floor(t).astype(np.int64)
    usec = np.minimum(np.round((t - sec) * 1e6).astype(np.int64), 999_999)
    frame_len = _HDRS + lengths
    words = np.stack([sec, usec, frame_len, frame_len], axis=1).astype("<u4")
    rec = words.view(np.uint8).reshape(n, 16)

    ip_total = _IP + _UDP + lengths
    hdr = np.zeros((n, _HDRS), dtype=np.uint8)
    hdr[:, 0:6] = np.frombuffer(_DST_MAC, np.uint8)
    hdr[:, 6:12] = np.frombuffer(_SRC_MAC, np.uint8)
    hdr[:, 12:14] = (0x08, 0x00)
    ip = hdr[:, _ETH:_ETH + _IP]
    ip[:, 0] = 0x45
    ip[:, 2] = ip_total >> 8
    ip[:, 3] = ip_total & 0xFF
    ident = np.arange(n) & 0xFFFF
    ip[:, 4] = ident >> 8
    ip[:, 5] = ident & 0xFF
    ip[:, 6] = 0x40  # don't fragment
    ip[:, 8] = 64    # TTL
    ip[:, 9] = 17    # UDP
    ip[:, 12:16] = np.frombuffer(sip, np.uint8)
    ip[:, 16:20] = np.frombuffer(dip, np.uint8)
    # ones' complement sum of the ten 16-bit words (checksum field still 0)
    w = ip.astype(np.uint32).reshape(n, 10, 2)
    s = ((w[:, :, 0] << 8) | w[:, :, 1]).sum(axis=1)
    while (s >> 16).any():
        s = (s & 0xFFFF) + (s >> 16)
    csum = (~s) & 0xFFFF
    ip[:, 10] = csum >> 8
    ip[:, 11] = csum & 0xFF
    udp = hdr[:, _ETH + _IP:]
    udp[:, 0] = src_port >> 8
    udp[:, 1] = src_port & 0xFF
    udp[:, 2] = ports >> 8
    udp[:, 3] = ports & 0xFF
    ulen = _UDP + lengths
    udp[:, 4] = ulen >> 8
    udp[:, 5] = ulen & 0xFF

    if (lengths == lengths[0]).all():
        # fixed-size packets (every writer's output): the records form a 2-D array
        table = out[24:].reshape(n, -1)
        table[:, :16] = rec
        table[:, 16:16 + _HDRS] = hdr
        L = int(lengths[0])
        if L and n > 1 and (np.diff(offsets) == offsets[1] - offsets[0]).all() and offsets[1] - offsets[0] >= L:
            step = int(offsets[1] - offsets[0])
            src = np.lib.stride_tricks.as_strided(buf[int(offsets[0]):], shape=(n, L), strides=(step, 1))
            table[:, 16 + _HDRS:] = src
        else:
            for k, o in enumerate(offsets.tolist()):
                table[k, 16 + _HDRS:] = buf[o: o + L]
    else:
        for k, (st, o, L) in enumerate(zip(starts.tolist(), offsets.tolist(), lengths.tolist())):
            out[st: st + 16] = rec[k]
            out[st + 16: st + 16 + _HDRS] = hdr[k]
            out[st + 16 + _HDRS: st + 16 + _HDRS + L] = buf[o: o + L]
    _dump(path, out)
    return out.size


def _dump(path: str | os.PathLike, out: np.ndarray) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(memoryview(out))
    except OSError as exc:
        raise ArgumentError(f"pcap {os.fspath(path)!r}: cannot be written ({exc.strerror})") from None
