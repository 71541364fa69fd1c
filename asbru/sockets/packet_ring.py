"""AF_PACKET TPACKET_V3 memory-mapped receive ring for the sniffer.

The kernel copies each matching packet into a block of a ring shared with user space;
compiled code walks a block once the kernel hands it over (``TP_STATUS_USER``), reads the
UDP payload straight out of the ring, and gives the block back (``TP_STATUS_KERNEL``).
There is no per-packet system call.

Set-up (:class:`PacketRing`): ``PACKET_VERSION = TPACKET_V3``, ``PACKET_IGNORE_OUTGOING``
(on ``lo`` every packet is otherwise seen twice: leaving and arriving), a classic BPF
filter (IPv4, UDP, destination port and address; see :mod:`asbru.sockets.bpf`) and
``PACKET_RX_RING``; then the ring is ``mmap``-ed and exposed as a numpy uint8 array.

Compiled use (all helpers are module-level ``@njit(nogil=True, cache=True)``)::

    b = 0                                          # next block, cyclic
    while ...:
        if block_status(ring, bsize, b) & TP_STATUS_USER == 0:
            r = wait(pollfd, timeout_ms)           # 0: timeout, <0: -errno
            continue
        n = walk_block(ring, bsize, b, off, length)  # UDP payloads at ring[off[i]:off[i]+length[i]]
        ... use the payloads ...
        release_block(ring, bsize, b)
        b = (b + 1) % nblock

Memory ordering: the status word is read, then an acquire fence orders the reads of the
block after it; a release fence orders all reads of the block before the store that
returns it to the kernel (the ordering the kernel's ``smp_wmb``/``smp_rmb`` pair expects).
"""
from __future__ import annotations

import mmap
import socket
import struct
from typing import Optional

import numpy as np
from llvmlite import ir as _ir
from numba import config as _nbconfig, njit, types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

from asbru.sockets.address import Address
from asbru.errors import ArgumentError, AsbruError, PermissionNeeded
from asbru.sockets import bpf
from asbru.sockets import syscalls as sc

__all__ = [
    "PacketRing", "block_status", "walk_block", "release_block", "wait",
    "TP_STATUS_KERNEL", "TP_STATUS_USER", "TP_STATUS_LOSING", "TP_STATUS_BLK_TMO",
    "max_frames_per_block",
]

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 2
TP_STATUS_LOSING = 4
TP_STATUS_BLK_TMO = 1 << 5

# struct tpacket_block_desc { u32 version; u32 offset_to_priv; struct tpacket_hdr_v1 h1; }
# struct tpacket_hdr_v1 { u32 block_status; u32 num_pkts; u32 offset_to_first_pkt;
#                         u32 blk_len; u64 seq_num; ... }
_BD_STATUS = 8
_BD_NUM_PKTS = 12
_BD_FIRST = 16
_BD_LEN = 20
_BD_MIN = 48           # block descriptor incl. two timestamps
# struct tpacket3_hdr { u32 next_offset, sec, nsec, snaplen, len, status; u16 mac, net; ... }
_F_NEXT = 0
_F_SNAPLEN = 12
_F_LEN = 16
_F_NET = 26
_F_HDR = 48            # TPACKET3_HDRLEN rounded; frames are at least this far apart

_NEEDS_RAW = ("sniff: the packet sniffer needs CAP_NET_RAW "
              "(run as root or `setcap cap_net_raw+ep` on the python binary)")


def max_frames_per_block(block_size: int) -> int:
    """Upper bound on frames in one block (size the ``off``/``length`` arrays with it)."""
    return max(1, block_size // (_F_HDR + 28))


# --------------------------------------------------------------------------------------
# Fences (LLVM instructions; cacheable, no call)
@intrinsic
def _fence_acquire_compiled(typingctx):
    def codegen(context, builder, signature, args):
        builder.fence("acquire")
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _fence_release_compiled(typingctx):
    def codegen(context, builder, signature, args):
        builder.fence("release")
        return context.get_dummy_value()
    return types.void(), codegen


def _fence_python() -> None:
    """Both fences under NUMBA_DISABLE_JIT=1 (the walk then runs as Python, for stepping
    through): no instruction.  The interpreter does each numpy load and store in program
    order, and on x86-64 every load is already an acquire and every store a release; on a
    weakly ordered CPU, use the compiled walk for anything but debugging."""


_fence_acquire = _fence_python if _nbconfig.DISABLE_JIT else _fence_acquire_compiled
_fence_release = _fence_python if _nbconfig.DISABLE_JIT else _fence_release_compiled


@intrinsic
def _prefetch_intrinsic(typingctx, addr):
    """llvm.prefetch (read, keep in all cache levels) of the line at address ``addr``: a
    hint that never faults, whatever the address."""
    sig = types.void(types.int64)

    def codegen(context, builder, signature, args):
        i8p = _ir.IntType(8).as_pointer()
        i32 = _ir.IntType(32)
        fnty = _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32])
        fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.inttoptr(args[0], i8p), _ir.Constant(i32, 0),
                          _ir.Constant(i32, 3), _ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


def _prefetch_python(addr: int) -> None:
    """NUMBA_DISABLE_JIT: a hint has nothing to do in Python."""


_prefetch = _prefetch_python if _nbconfig.DISABLE_JIT else _prefetch_intrinsic

#: walk_block asks for the frame header this many frames ahead (guessing the frames are
#: the same size as the current one): the walk is a chain of dependent loads (each header
#: says where the next is), one cache miss after another through a block the kernel wrote
#: long ago; asking ahead keeps several misses in flight
_WALK_AHEAD = 4


@njit(nogil=True, cache=True, inline="always")
def _u32(b, p):
    return (np.uint32(b[p]) | (np.uint32(b[p + 1]) << np.uint32(8))
            | (np.uint32(b[p + 2]) << np.uint32(16)) | (np.uint32(b[p + 3]) << np.uint32(24)))


@njit(nogil=True, cache=True, inline="always")
def _u16(b, p):
    return np.uint32(b[p]) | (np.uint32(b[p + 1]) << np.uint32(8))


@njit(nogil=True, cache=True, inline="always")
def _be16(b, p):
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


# --------------------------------------------------------------------------------------
# Compiled helpers
@njit(nogil=True, cache=True)
def block_status(ring, block_size, b):
    """Status word of block ``b`` (``& TP_STATUS_USER``: ready for us), with acquire ordering."""
    base = b * block_size
    if b < 0 or base + _BD_MIN > ring.shape[0]:
        return 0
    blk = ring[base:base + _BD_MIN]
    s = np.int64(_u32(blk, _BD_STATUS))
    _fence_acquire()
    return s


@njit(nogil=True, cache=True)
def release_block(ring, block_size, b):
    """Give block ``b`` back to the kernel (release fence, then status = TP_STATUS_KERNEL)."""
    base = b * block_size
    if b < 0 or base + _BD_MIN > ring.shape[0]:
        return
    blk = ring[base:base + _BD_MIN]
    _fence_release()
    blk[_BD_STATUS] = 0
    blk[_BD_STATUS + 1] = 0
    blk[_BD_STATUS + 2] = 0
    blk[_BD_STATUS + 3] = 0


@njit(nogil=True, cache=True)
def walk_block(ring, block_size, b, off, length):
    """UDP payloads of the IPv4 frames of ready block ``b``.

    Writes ``off[i]`` (byte offset in ``ring``) and ``length[i]`` for each usable frame and
    returns their number (at most ``off.shape[0]``).  Frames that are not IPv4/UDP, are
    truncated (snaplen < the datagram) or whose headers point outside the block are
    skipped.  The IPv4 header length is read from the packet (options allowed).
    """
    base = b * block_size
    if b < 0 or base + block_size > ring.shape[0] or block_size < _BD_MIN:
        return 0
    blk = ring[base:base + block_size]
    npkt = np.int64(_u32(blk, _BD_NUM_PKTS))
    p = np.int64(_u32(blk, _BD_FIRST))
    end = np.int64(_u32(blk, _BD_LEN))
    if end > block_size or end <= 0:
        end = block_size
    cap = min(off.shape[0], length.shape[0])
    addr = blk.ctypes.data
    n = 0
    for _k in range(npkt):
        if p < _BD_MIN or p + _F_HDR > end or n >= cap:
            break
        nxt = np.int64(_u32(blk, p + _F_NEXT))
        if nxt > 0:
            _prefetch(addr + min(p + _WALK_AHEAD * nxt, end - 1))
        snap = np.int64(_u32(blk, p + _F_SNAPLEN))
        wire = np.int64(_u32(blk, p + _F_LEN))
        net = np.int64(_u16(blk, p + _F_NET))
        ip = p + net
        if net >= _F_HDR - 8 and snap >= 28 and snap == wire and ip + snap <= end:
            pkt = blk[ip:ip + snap]
            ihl = np.int64(pkt[0] & 0x0F) * 4
            total = _be16(pkt, 2)
            if (pkt[0] >> 4) == 4 and ihl >= 20 and pkt[9] == 17 and ihl + 8 <= snap \
                    and total <= snap and total >= ihl + 8:
                ulen = _be16(pkt, ihl + 4)
                if ulen >= 8 and ihl + ulen <= total:
                    off[n] = base + ip + ihl + 8
                    length[n] = ulen - 8
                    n += 1
        if nxt <= 0:
            break
        p += nxt
    return n


@njit(nogil=True, cache=True)
def wait(pollfd, timeout_ms):
    """poll() the ring's socket: >0 ready, 0 timeout, -errno on error (EINTR included)."""
    if pollfd.shape[0] < 2:            # one struct pollfd = int32[2]: never read past it
        return -sc.EINVAL
    pollfd[1] = sc.POLLIN | sc.POLLERR
    return sc.poll_e(pollfd.ctypes.data, 1, timeout_ms)


# --------------------------------------------------------------------------------------
class PacketRing:
    """A TPACKET_V3 receive ring filtered to IPv4 UDP datagrams for one address and port.

    ``PacketRing(sock)``: ``sock`` is a :class:`~asbru.udp_socket.UDPSocket` on which
    ``sniff(addr)`` was called (the ring filters for ``addr``'s port and, unless it is the
    wildcard, its address).  ``PacketRing.open(addr)`` does both and owns the socket.

    ``retire_ms``: the kernel hands over a block when it is full or this long after its
    first packet.  Short = low latency at low rates, but each partly filled block still
    takes a whole block of the ring, so at low rates the ring holds less; ``0`` lets the
    kernel choose (derived from the link speed).

    Attributes: ``ring`` (uint8, ``block_size * block_count`` bytes, the mmap),
    ``block_size``, ``block_count``, ``fd``, ``pollfd`` (int32[2], a ``struct pollfd`` for
    :func:`wait`), ``off``/``length`` (int64 scratch arrays of
    ``max_frames_per_block(block_size)`` for :func:`walk_block`), ``next_block`` and
    ``blocks_read`` (the Python-level reader's position and count).
    """

    def __init__(self, sock, block_size: int = 1 << 22, block_count: int = 64,
                 retire_ms: int = 8, *, _owns_socket: bool = False) -> None:
        addr: Optional[Address] = getattr(sock, "sniff_address", None)
        if addr is None or sock.fileno() < 0:
            raise ArgumentError("sock must be a UDPSocket on which sniff(addr) was called")
        page = mmap.PAGESIZE
        if (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < page
                or block_size % page or block_size > (1 << 30)):
            raise ArgumentError(f"block_size must be a multiple of the page size ({page}) "
                                f"up to 1 GiB, got {block_size!r}")
        if isinstance(block_count, bool) or not isinstance(block_count, int) or not 1 <= block_count <= 1 << 16:
            raise ArgumentError(f"block_count must be an int in 1..65536, got {block_count!r}")
        if isinstance(retire_ms, bool) or not isinstance(retire_ms, int) or not 0 <= retire_ms <= 60_000:
            raise ArgumentError(f"retire_ms must be an int in 0..60000 (0: kernel default), got {retire_ms!r}")
        self.sock = sock
        self._owns_socket = _owns_socket
        self.address = addr
        self.block_size = block_size
        self.block_count = block_count
        self.fd = sock.fileno()
        s = socket.socket(fileno=_dup(self.fd))          # a handle for setsockopt only
        try:
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError as exc:            # kernels before 4.20
                raise AsbruError(f"sniff: PACKET_IGNORE_OUTGOING is not supported ({exc.strerror}); "
                                 "needs Linux >= 4.20") from None
            bpf.attach(s, bpf.udp4_dest(addr.port, addr.address))
            frame_size = 2048
            req = struct.pack("7I", block_size, block_count, frame_size,
                              block_size // frame_size * block_count, retire_ms, 0, 0)
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except PermissionError:
            raise PermissionNeeded(_NEEDS_RAW) from None
        except OSError as exc:
            raise AsbruError(f"sniff: cannot set up the packet ring: {exc.strerror}") from None
        finally:
            s.close()
        self._mm = mmap.mmap(self.fd, block_size * block_count, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.ring = np.frombuffer(self._mm, dtype=np.uint8)
        self.pollfd = np.array([self.fd, 0], dtype=np.int32)
        nmax = max_frames_per_block(block_size)
        self.off = np.zeros(nmax, dtype=np.int64)
        self.length = np.zeros(nmax, dtype=np.int64)
        self.next_block = 0
        self.blocks_read = 0          #: blocks walked and released by read_payloads()

    @classmethod
    def open(cls, addr: Address, interface: Optional[str] = None, **kwargs) -> "PacketRing":
        """Open a sniffing UDPSocket for ``addr`` (on ``interface`` or the one owning ``addr``)."""
        from asbru.sockets.udp import UDPSocket
        sock = UDPSocket(buffer_size=1 << 20)
        sock.sniff(addr, interface=interface)
        try:
            return cls(sock, _owns_socket=True, **kwargs)
        except BaseException:
            sock.close()
            raise

    # -- Python-level convenience (tests, tools); the capture walks the ring compiled ----
    def poll(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` for the next block to be ready; True if it is."""
        if block_status(self.ring, self.block_size, self.next_block) & TP_STATUS_USER:
            return True
        r = wait(self.pollfd, int(timeout_ms))
        if r < 0 and r != -sc.EINTR:
            raise AsbruError(f"sniff: poll failed (errno {-r})")
        return bool(block_status(self.ring, self.block_size, self.next_block) & TP_STATUS_USER)

    def read_payloads(self, timeout_ms: int = 0) -> list[bytes]:
        """Payloads of every ready block (waiting up to ``timeout_ms`` for the first)."""
        out: list[bytes] = []
        if not self.poll(timeout_ms):
            return out
        while block_status(self.ring, self.block_size, self.next_block) & TP_STATUS_USER:
            n = walk_block(self.ring, self.block_size, self.next_block, self.off, self.length)
            out.extend(self.ring[o:o + ln].tobytes() for o, ln in zip(self.off[:n], self.length[:n]))
            release_block(self.ring, self.block_size, self.next_block)
            self.next_block = (self.next_block + 1) % self.block_count
            self.blocks_read += 1
        return out

    def stats(self) -> tuple[int, int]:
        """(packets, drops) since the previous call (``PACKET_STATISTICS``, reset on read)."""
        with socket.socket(fileno=_dup(self.fd)) as s:
            packets, drops, _freeze = struct.unpack("3I", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        return packets, drops

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Unmap the ring (once no array views of it remain) and close an owned socket."""
        if getattr(self, "_mm", None) is not None:
            self.ring = None  # type: ignore[assignment]
            try:
                self._mm.close()
            except BufferError:
                pass          # a view of the ring is still alive; the GC unmaps later
            self._mm = None
        if self._owns_socket and self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "PacketRing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _dup(fd: int) -> int:
    import os
    return os.dup(fd)
