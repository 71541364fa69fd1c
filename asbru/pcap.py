"""Classic pcap files (what ``tcpdump -w`` writes): find the UDP payload of every record.

Only the classic format is read (magic ``a1b2c3d4`` microsecond or ``a1b23c4d`` nanosecond
timestamps, either byte order); pcapng is recognised and refused with a one-line hint.
Link types: Ethernet (1, with up to two 802.1Q/802.1ad VLAN tags), Linux cooked capture
SLL (113) and SLL2 (276), raw IP (101, and the historical 12/14) and BSD loopback (0).
Network layer: IPv4 (header options allowed; fragments are skipped because one fragment
alone is not a datagram) and IPv6 (hop-by-hop, routing and destination-options extension
headers walked; fragments skipped).

The walk over the records is one compiled call (no Python loop per packet) that only
produces offsets and lengths into the file's bytes, so a large capture is read through a
memory map without copying.  Every read is bounds-checked: a truncated or corrupt file
ends the walk (``truncated`` is then set) instead of reading past the buffer.
"""
from __future__ import annotations

import dataclasses
import os

import numba
import numpy as np

from .errors import ArgumentError

__all__ = ["PcapPayloads", "is_pcap", "is_pcapng", "read_payloads", "walk_records",
           "LINKTYPE_ETHERNET", "LINKTYPE_LINUX_SLL", "LINKTYPE_LINUX_SLL2", "LINKTYPE_RAW",
           "LINKTYPE_NULL"]

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GLOBAL_HEADER = 24
RECORD_HEADER = 16

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = (12, 14)   # DLT_RAW on some BSDs / OpenBSD

# walk statuses per record (kind array)
UDP = 0          # a UDP payload was found
NOT_UDP = 1      # parsed fine but not UDP (ARP, TCP, ICMP, ...)
FRAGMENT = 2     # an IP fragment (cannot be a whole datagram)
MALFORMED = 3    # headers inconsistent with the captured bytes


@dataclasses.dataclass
class PcapPayloads:
    """UDP payloads of a pcap file: ``buf[offsets[k]: offsets[k] + lengths[k]]``."""
    buf: np.ndarray          # uint8, the whole file (memory-mapped)
    offsets: np.ndarray      # int64 per UDP record
    lengths: np.ndarray      # int64 per UDP record (captured payload bytes)
    timestamps: np.ndarray   # float64 seconds per UDP record
    dst_ports: np.ndarray    # int64 per UDP record
    linktype: int
    nrecords: int            # records in the file
    skipped: int             # records that were not (whole) UDP datagrams
    truncated: bool          # the file ended inside a record


def is_pcapng(head: bytes) -> bool:
    return head[:4] == PCAPNG_MAGIC


def _magic(head: bytes) -> tuple[str, bool] | None:
    """(byte order '<' or '>', nanosecond timestamps) for a classic pcap global header."""
    if len(head) < 4:
        return None
    for order in ("<", ">"):
        m = int.from_bytes(head[:4], "little" if order == "<" else "big")
        if m == MAGIC_USEC:
            return order, False
        if m == MAGIC_NSEC:
            return order, True
    return None


def is_pcap(path: str | os.PathLike) -> bool:
    """True if the file starts with a classic pcap magic number (either byte order)."""
    with open(path, "rb") as fh:
        return _magic(fh.read(4)) is not None


@numba.njit(cache=True, nogil=True)
def _u16(b, p, big):
    if big:
        return (np.int64(b[p]) << 8) | np.int64(b[p + 1])
    return (np.int64(b[p + 1]) << 8) | np.int64(b[p])


@numba.njit(cache=True, nogil=True)
def _u32(b, p, big):
    if big:
        return ((np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16)
                | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3]))
    return ((np.int64(b[p + 3]) << 24) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 1]) << 8) | np.int64(b[p]))


@numba.njit(cache=True, nogil=True)
def _ip_payload(b, p, end, ethertype, out):
    """Parse an IP packet at b[p:end].  Sets out = [kind, payload_off, payload_len, dport]."""
    out[0] = MALFORMED
    if ethertype == 0x0800:
        if p + 20 > end:
            return
        vihl = np.int64(b[p])
        if (vihl >> 4) != 4:
            return
        ihl = (vihl & 15) * 4
        if ihl < 20 or p + ihl > end:
            return
        total = _u16(b, p + 2, True)
        if total < ihl:
            return
        frag = _u16(b, p + 6, True)
        proto = np.int64(b[p + 9])
        if proto != 17:
            out[0] = NOT_UDP
            return
        if (frag & 0x2000) != 0 or (frag & 0x1FFF) != 0:
            out[0] = FRAGMENT
            return
        ip_end = p + total
        if ip_end > end:
            ip_end = end           # snaplen cut the datagram: keep what was captured
        u = p + ihl
    elif ethertype == 0x86DD:
        if p + 40 > end:
            return
        if (np.int64(b[p]) >> 4) != 6:
            return
        plen = _u16(b, p + 4, True)
        nxt = np.int64(b[p + 6])
        ip_end = p + 40 + plen
        if ip_end > end:
            ip_end = end
        u = p + 40
        for _ in range(8):         # bounded walk over extension headers
            if nxt == 0 or nxt == 43 or nxt == 60:
                if u + 2 > ip_end:
                    return
                hlen = (np.int64(b[u + 1]) + 1) * 8
                nxt = np.int64(b[u])
                u += hlen
                if u > ip_end:
                    return
            else:
                break
        if nxt == 44:
            out[0] = FRAGMENT
            return
        if nxt != 17:
            out[0] = NOT_UDP
            return
    else:
        out[0] = NOT_UDP
        return
    if u + 8 > ip_end:
        return
    ulen = _u16(b, u + 4, True)
    if ulen < 8 and not (ulen == 0 and ethertype == 0x86DD):   # IPv6 jumbograms use 0
        return
    pay = u + 8
    n = ip_end - pay
    if ulen >= 8 and ulen - 8 < n:
        n = ulen - 8
    if n < 0:
        return
    out[0] = UDP
    out[1] = pay
    out[2] = n
    out[3] = _u16(b, u + 2, True)


@numba.njit(cache=True, nogil=True)
def walk_records(buf, big, nsec, linktype, offsets, lengths, tstamps, dports, kinds):
    """Walk every record after the global header.

    Fills, per UDP record, offsets/lengths/tstamps/dports (compacted), and per record its
    kind.  Returns (n_udp, n_records, truncated).  Arrays must have room for the number
    of records (the caller bounds it by file size / record header size).
    """
    size = buf.shape[0]
    p = 24
    nrec = 0
    nudp = 0
    truncated = 0
    out = np.zeros(4, dtype=np.int64)
    cap = kinds.shape[0]
    while p < size:
        if p + 16 > size or nrec >= cap:
            truncated = 1
            break
        sec = _u32(buf, p, big)
        frac = _u32(buf, p + 4, big)
        incl = _u32(buf, p + 8, big)
        start = p + 16
        end = start + incl
        if end > size:
            truncated = 1
            break
        kind = MALFORMED
        ip = -1
        ethertype = 0
        if linktype == 1:
            q = start + 12
            if q + 2 <= end:
                ethertype = _u16(buf, q, True)
                q += 2
                for _ in range(2):   # 802.1Q / 802.1ad tags
                    if (ethertype == 0x8100 or ethertype == 0x88A8) and q + 4 <= end:
                        ethertype = _u16(buf, q + 2, True)
                        q += 4
                ip = q
        elif linktype == 113:
            if start + 16 <= end:
                ethertype = _u16(buf, start + 14, True)
                ip = start + 16
        elif linktype == 276:
            if start + 20 <= end:
                ethertype = _u16(buf, start, True)
                ip = start + 20
        elif linktype == 101 or linktype == 12 or linktype == 14:
            if start < end:
                v = np.int64(buf[start]) >> 4
                ethertype = 0x0800 if v == 4 else (0x86DD if v == 6 else 0)
                ip = start
        elif linktype == 0:
            if start + 4 <= end:
                fam = _u32(buf, start, big)   # host order of the capturing machine
                if fam == 2:
                    ethertype = 0x0800
                elif fam == 10 or fam == 24 or fam == 28 or fam == 30:
                    ethertype = 0x86DD
                ip = start + 4
        if ip >= 0:
            _ip_payload(buf, ip, end, ethertype, out)
            kind = out[0]
        kinds[nrec] = kind
        if kind == UDP:
            offsets[nudp] = out[1]
            lengths[nudp] = out[2]
            tstamps[nudp] = sec + frac * (1e-9 if nsec else 1e-6)
            dports[nudp] = out[3]
            nudp += 1
        nrec += 1
        p = end
    return nudp, nrec, truncated


def read_payloads(path: str | os.PathLike, port: int | None = None) -> PcapPayloads:
    """The UDP payloads of a classic pcap file (optionally only those sent to ``port``)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(GLOBAL_HEADER)
    if is_pcapng(head):
        raise ArgumentError(f"{os.fspath(path)}: pcapng files are not supported; convert with "
                            "'editcap -F pcap IN OUT' or capture with 'tcpdump -w' (classic pcap)")
    magic = _magic(head)
    if magic is None or len(head) < GLOBAL_HEADER:
        raise ArgumentError(f"{os.fspath(path)}: not a classic pcap file (bad magic or short header)")
    order, nsec = magic
    linktype = int.from_bytes(head[20:24], "little" if order == "<" else "big") & 0xFFFF
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW,
                        LINKTYPE_NULL, *_RAW_ALIASES):
        raise ArgumentError(f"{os.fspath(path)}: pcap link type {linktype} is not supported; "
                            "accepted: 1 (Ethernet), 113 (Linux SLL), 276 (SLL2), 101 (raw IP), 0 (loopback)")
    buf = np.memmap(path, dtype=np.uint8, mode="r") if size > 0 else np.zeros(0, np.uint8)
    cap = max(1, (size - GLOBAL_HEADER) // RECORD_HEADER + 1)
    offsets = np.zeros(cap, np.int64)
    lengths = np.zeros(cap, np.int64)
    tstamps = np.zeros(cap, np.float64)
    dports = np.zeros(cap, np.int64)
    kinds = np.zeros(cap, np.int64)
    nudp, nrec, trunc = walk_records(buf, order == ">", nsec, linktype, offsets, lengths,
                                     tstamps, dports, kinds)
    sel = slice(0, nudp)
    offsets, lengths, tstamps, dports = offsets[sel], lengths[sel], tstamps[sel], dports[sel]
    if port is not None:
        keep = dports == port
        offsets, lengths, tstamps, dports = offsets[keep], lengths[keep], tstamps[keep], dports[keep]
    return PcapPayloads(buf=buf, offsets=offsets, lengths=lengths, timestamps=tstamps,
                        dst_ports=dports, linktype=linktype, nrecords=int(nrec),
                        skipped=int(nrec - offsets.shape[0]), truncated=bool(trunc))
