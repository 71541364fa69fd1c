"""``UDPCapture``: the capture engine fed by ``recvmmsg`` on a bound UDP socket."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from asbru import formats
from asbru.errors import ArgumentError
from asbru.formats.spec import FormatError

from . import layout as L
from .args import bind_args, drop_single_thread_keywords, wants_threads
from .args import as_int, as_nsrc, positive_int
from .engine import CaptureEngine
from .staging import Stager, default_stage_bytes

_NAMES = ["ring", "nsrc", "src0", "max_payload_size", "buffer_ntime", "slot_ntime",
          "sequence_callback", "core"]
_ALIASES = {"max_size": "max_payload_size", "ntime_gulp": "buffer_ntime",
            "ntime_slot": "slot_ntime", "buffer_nframe": "buffer_ntime",
            "slot_nframe": "slot_ntime"}
_EXTRA = ("max_jump_gulps", "budget", "hold_packets", "sample_rate", "nbatch", "stage_bytes")
NBATCH = 64
NBATCH_MAX = 1024            # recvmmsg takes at most UIO_MAXIOV messages per call
MAX_PAYLOAD_SIZE = 1 << 16   # no UDP datagram is larger


def socket_fd(sock: Any, what: str) -> int:
    """The descriptor of an object with ``fileno()``; a one-line error if closed/unusable."""
    if not hasattr(sock, "fileno"):
        raise ArgumentError(f"{what} must be an object with fileno() (a bound asbru UDPSocket); "
                            f"got {type(sock).__name__}")
    try:
        fd = int(sock.fileno())
    except (OSError, ValueError):
        fd = -1
    if fd < 0:
        raise ArgumentError(f"{what} is closed or not bound (fileno() = {fd}); bind it first")
    if fd >= 1 << 31:
        raise ArgumentError(f"{what}.fileno() returned {fd}, which is not a file descriptor")
    return fd


class PortSharedWarning(RuntimeWarning):
    """The capture's UDP port is bound by other sockets too (SO_REUSEPORT)."""


def _warn_if_port_shared(fd: int, who: str) -> None:
    from asbru.udp_socket import port_sharers
    n = port_sharers(fd)
    if n:
        import warnings
        warnings.warn(f"{who}: {n} other socket(s) are bound to this UDP port (SO_REUSEPORT): the "
                      f"kernel splits the senders between them, so this capture gets only its "
                      f"share and counts the rest as missing; bind with "
                      f"UDPSocket.bind(addr, reuse_port=False) to keep the port to one socket",
                      PortSharedWarning, stacklevel=3)


class UDPCapture(CaptureEngine):
    """``UDPCapture(fmt, sock, ring, nsrc, src0, max_payload_size, buffer_ntime, slot_ntime,
    sequence_callback, core=None)`` -- or without ``ring`` (the capture then owns one,
    ``.ring``).  ``recv()`` returns a :class:`~asbru.capture.status.Status`."""

    _backend = "udp"
    _kind = "udp_capture"
    _role = "capture"
    _what = "sock"

    def __new__(cls, *args: Any, **kwargs: Any) -> "UDPCapture":
        # threads=N (N > 1) or socks=[...]: one capture received by several threads
        # (asbru/capture/group, docs/multicore.md); otherwise the single-thread capture
        if cls._backend in ("udp", "sniffer") and wants_threads(kwargs):
            from .group.capture import group_class
            cls = group_class(cls)
        return super().__new__(cls)

    def __init__(self, fmt: str, sock: Any, *args: Any, **kwargs: Any) -> None:
        drop_single_thread_keywords(kwargs)      # threads=1: this very capture
        a = bind_args(type(self).__name__, _NAMES, _ALIASES, args, kwargs,
                      {"ring": None, "sequence_callback": None, "core": None}, _EXTRA)
        try:
            f = formats.get(fmt, self._role)
        except FormatError as exc:
            raise ArgumentError(f"fmt: {exc}") from None
        self._sock = sock  # keep the object alive: its descriptor is ours to read
        self._fd = socket_fd(sock, self._what)
        if self._backend == "udp":
            _warn_if_port_shared(self._fd, type(self).__name__)
        nsrc = as_nsrc(a["nsrc"])
        src0 = as_int("src0", a["src0"])
        max_payload = positive_int("max_payload_size", a["max_payload_size"])
        if max_payload > MAX_PAYLOAD_SIZE:
            raise ArgumentError(f"max_payload_size must be at most {MAX_PAYLOAD_SIZE} (the largest "
                                f"UDP datagram); got {max_payload}")
        hsize = f.params.header_size
        if max_payload <= hsize:
            raise ArgumentError(f"max_payload_size must exceed the {f.name} header size ({hsize} bytes) "
                                f"-- it is the largest packet accepted, header included; got {max_payload}")
        if f.params.fixed_packet_size:
            max_payload = int(f.params.fixed_packet_size)  # Bifrost: forced to the frame size
        self._bufsize = max_payload
        self._nbatch = positive_int("nbatch", a.get("nbatch", NBATCH))
        self._stage_bytes = (as_int("stage_bytes", a["stage_bytes"]) if "stage_bytes" in a
                             else default_stage_bytes())
        self._stage: Any = None
        self._staged: Any = None
        if self._nbatch > NBATCH_MAX:
            raise ArgumentError(f"nbatch must be at most {NBATCH_MAX} (the kernel's recvmmsg "
                                f"limit); got {self._nbatch}")
        buffer_ntime = positive_int("buffer_ntime", a["buffer_ntime"])
        slot_ntime = positive_int("slot_ntime", a["slot_ntime"])
        # stage from here on, not only while the loop compiles: allocating the ring and
        # generating the loop come first and take ~0.3 s, which a fast stream's socket buffer
        # does not hold.  _compile_loop takes this stager (_start_staging) and hands its
        # packets to the loop; when the loop needs no compile, that is done below
        self._early_stager = self._new_stager()
        try:
            self._init_engine(f, a["ring"], nsrc, src0, buffer_ntime, slot_ntime,
                              a["sequence_callback"], a["core"], max_payload,
                              max_jump_gulps=a.get("max_jump_gulps"), budget=a.get("budget"),
                              hold_packets=a.get("hold_packets"), sample_rate=a.get("sample_rate"))
        except BaseException:
            if self._early_stager is not None:
                self._early_stager.stop()
            raise
        if self._early_stager is not None:
            stager, self._early_stager = self._early_stager, None
            self._adopt_staged(stager)

    def _setup_backend(self) -> None:
        from asbru.sockets.drops import DropCounter, enable_rxq_ovfl
        from asbru.sockets.msgvec import RecvVec
        # kernel drops: SO_MEMINFO once per recv() (free per datagram); SO_RXQ_OVFL control
        # messages only where the kernel does not report sk_drops that way
        self._drops = DropCounter(self._fd)
        use_cmsg = not self._drops.available and enable_rxq_ovfl(self._fd)
        self._rv = RecvVec(self._nbatch, self._bufsize, control=use_cmsg)
        self._rbuf = self._rv.buffers
        self._rlen = np.zeros(self._nbatch, dtype=np.int64)
        # the backend's own arrays (asbru/capture/backends/udp.py): the mmsghdr rows and
        # the SO_RXQ_OVFL control buffers
        self._meta = self._rv.hdrs
        self._aux = self._rv.control
        self._auxlens = self._rv.controllens
        io = np.zeros(L.NIO, dtype=np.int64)
        io[L.IO_FD] = self._fd
        io[L.IO_ADDR] = self._rv.addr
        io[L.IO_NMSG] = self._nbatch
        io[L.IO_POLL_MS] = self._poll_ms()
        io[L.IO_POLLFD_ADDR] = io.ctypes.data + 8 * L.IO_POLLFD
        self._io = io

    # -- packets that arrive while the loop compiles (asbru/capture/staging.py)
    def _new_stager(self) -> Any:
        if self._stage_bytes <= 0 or type(self)._backend != "udp":
            return None
        return Stager(self._fd, self._bufsize, self._stage_bytes)

    def _start_staging(self) -> Any:
        stager, self._early_stager = self._early_stager, None   # started in __init__
        return stager

    def _adopt_staged(self, stager: Any) -> None:
        n = stager.stop()
        self._staged = stager.summary()
        if n == 0:
            return
        self._stage = stager          # its rows stay alive until the loop has taken them
        io = self._io
        io[L.IO_STAGE_ADDR] = stager.buf.ctypes.data
        io[L.IO_STAGE_LENS] = stager.lens.ctypes.data
        io[L.IO_STAGE_ROW] = stager.row
        io[L.IO_STAGE_N] = n
        io[L.IO_STAGE_POS] = 0

    @property
    def staged(self) -> Any:
        """What the staging drain did while the loop compiled (a dict: ``nstaged``,
        ``nstaged_bytes``, ``noversize``, ``full``, ...; see asbru/capture/staging.py), or
        None when nothing was staged (the loop was ready at once, or ``stage_bytes=0``)."""
        return self._staged

    def _release_stage(self) -> None:
        io = self._io
        if self._stage is not None and io[L.IO_STAGE_POS] >= io[L.IO_STAGE_N]:
            io[L.IO_STAGE_N] = io[L.IO_STAGE_POS] = 0
            io[L.IO_STAGE_ADDR] = io[L.IO_STAGE_LENS] = 0
            self._stage = None

    def _poll_ms(self) -> int:
        # asbru's UDPSocket keeps the descriptor blocking (SO_RCVTIMEO does the timeout);
        # a Python socket with settimeout() is non-blocking: wait in poll() instead
        try:
            blocking = os.get_blocking(self._fd)
        except OSError:
            blocking = True
        if blocking:
            return -2
        t = None
        if hasattr(self._sock, "gettimeout"):
            t = self._sock.gettimeout()
        return -1 if t is None else max(0, int(round(t * 1000)))

    def _update_kernel_drops(self) -> None:
        if not self._drops.available:
            return
        try:
            still_ours = int(self._sock.fileno()) == self._fd   # a closed fd may be reused
        except (OSError, ValueError):
            still_ours = False
        if still_ours:
            self.stats_obj.cnt[L.C_NKDROPS] = self._drops.total()

    def _check_open(self) -> None:
        self._release_stage()
        try:
            fd = int(self._sock.fileno())
        except (OSError, ValueError):
            fd = -1
        if fd != self._fd:
            raise ArgumentError(f"{type(self).__name__}.recv: the {self._what} was closed "
                                f"(fileno() is now {fd}, was {self._fd})")
