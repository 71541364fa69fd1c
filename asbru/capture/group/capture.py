"""One capture, N receive threads, one ring (docs/multicore.md): the leader's side
(:class:`GroupCapture`, whatever the threads receive from) and ``UDPCapture(...,
threads=N)`` / ``UDPCapture(..., socks=[...])`` (:class:`GroupUDPCapture`); the sniffer's
and the disk reader's are in :mod:`.sniffer` and :mod:`.disk`.

The thread that calls ``recv()`` is the *leader*: it runs the single-thread capture engine
unchanged, fed by the followers' hand-off queues (:mod:`.handoff`).  Each source (socket,
packet socket, share of a file) has a *follower* thread (:mod:`.follower` and its kin)
that places the packets of the open window itself.  GroupCapture adds the leader's side of
the protocol to the engine:

* before each compiled run it publishes the window (``OPEN`` while a sequence is active,
  ``GATHER`` otherwise) -- a publication that only adds a gulp needs no wait;
* before a commit it publishes the window without the gulp it commits (the followers go on
  placing into the other one), before a vote or the end of a sequence ``GATHER``, and waits
  until every follower has acknowledged it, then folds the followers' largest seqs into
  ``W_LAST``;
* a commit merges the followers' mask planes into the gulp's mask (a cell set by two
  threads is one packet and one duplicate) before zero-filling and flagging.
"""
from __future__ import annotations

import os
import socket
import threading
import weakref
from typing import Any, Optional

import numpy as np

from asbru.errors import ArgumentError, AsbruError
from asbru.capture import backends
from asbru.capture import layout as L
from asbru.capture.stats import CaptureStats
from asbru.capture.udp import UDPCapture, socket_fd

from . import follower, handoff, masks, steer
from . import shared as S

THREADS_MAX = 256
IDLE_MS = 20          # a waiting follower looks at the stop flag this often
QUEUE_BYTES = 32 << 20
# the longest a commit waits for a receive thread whose stream has not left the gulp yet
WATERMARK_S = 0.05

# the leader's receive backend: the followers' hand-off queues
backends.register(backends.Backend(
    "group", "asbru.capture.group.handoff",
    depends_on=("asbru.capture.layout", "asbru.sockets.syscalls", "asbru.capture.group.shared",
                "asbru.capture.borrow")))


class GroupStats(CaptureStats):
    """The leader's counters plus every follower's (and the duplicate corrections made when
    masks are merged); ``as_dict()['per_thread']`` breaks them down."""

    _SUMMED = (L.C_NVALID, L.C_NVALID_BYTES, L.C_NINVALID, L.C_NINVALID_BYTES, L.C_NLATE,
               L.C_NLATE_BYTES, L.C_NDUP, L.C_NDUP_BYTES, L.C_NGOOD_BYTES, L.C_NMISSING_BYTES,
               L.C_NRECEIVED, L.C_NUNLEARNED)

    def __init__(self, nsrc: int, nf: int, ctl: np.ndarray) -> None:
        super().__init__(nsrc)
        self.fcnt = np.zeros((nf, L.NCNT), dtype=np.int64)       # written by the followers
        self.fpsrc = np.zeros((nf, L.NPS, nsrc), dtype=np.int64)
        self.corr = np.zeros((nf + 1, L.NCNT), dtype=np.int64)   # written by the leader
        self.corr_psrc = np.zeros((nf + 1, L.NPS, nsrc), dtype=np.int64)
        self._ctl = ctl

    def _row(self, cnt: np.ndarray, psrc: np.ndarray) -> dict[str, Any]:
        return {"nreceived": int(cnt[L.C_NRECEIVED]), "nvalid": int(cnt[L.C_NVALID]),
                "nlate": int(cnt[L.C_NLATE]), "nduplicate": int(cnt[L.C_NDUP]),
                "ninvalid": int(cnt[L.C_NINVALID]), "nvalid_bytes": int(cnt[L.C_NVALID_BYTES]),
                "per_source_valid": psrc[L.PS_VALID].copy()}

    def as_dict(self) -> dict[str, Any]:
        lead = self.cnt
        lead_ps = self.psrc
        total = lead.copy()
        ps = lead_ps.copy()
        idx = list(self._SUMMED)
        total[idx] += self.fcnt[:, idx].sum(axis=0) + self.corr[:, idx].sum(axis=0)
        ps += self.fpsrc.sum(axis=0) + self.corr_psrc.sum(axis=0)
        if total[L.C_ERRNO] == 0 and self.fcnt[:, L.C_ERRNO].any():
            total[L.C_ERRNO] = int(self.fcnt[:, L.C_ERRNO].max())
        saved = self.cnt, self.psrc
        try:
            self.cnt, self.psrc = total, ps
            out = super().as_dict()
        finally:
            self.cnt, self.psrc = saved
        rows = [dict(self._row(lead + self.corr[0], lead_ps + self.corr_psrc[0]), thread="leader",
                     nhanded=0)]
        for i in range(self.fcnt.shape[0]):
            r = self._row(self.fcnt[i] + self.corr[i + 1], self.fpsrc[i] + self.corr_psrc[i + 1])
            r["thread"] = f"follower {i}"
            r["nhanded"] = int(self._ctl[S.F_BASE + i * S.F_STRIDE + S.F_NHAND])
            # time spent waiting for the leader (a commit, or the window's next gulp)
            r["wait_seconds"] = int(self._ctl[S.F_BASE + i * S.F_STRIDE + S.F_WAIT_NS]) * 1e-9
            rows.append(r)
        out["per_thread"] = rows
        out["threads"] = self.fcnt.shape[0]
        return out


def _sock_timeout_ms(sock: Any, fd: int, probe: Optional[socket.socket]) -> int:
    """The leader's receive timeout: the first socket's (ms; -1 = none)."""
    try:
        blocking = os.get_blocking(fd)
    except OSError:
        blocking = True
    if not blocking and hasattr(sock, "gettimeout"):
        t = sock.gettimeout()
        return -1 if t is None else max(0, int(round(t * 1000)))
    if probe is None:
        return -1
    import struct
    try:
        sec, usec = struct.unpack("ll", probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    except OSError:
        return -1
    ms = sec * 1000 + (usec + 999) // 1000
    return -1 if ms == 0 else int(ms)


class GroupCapture:
    """The leader's side of a capture received by several threads (see the module doc),
    whatever the threads receive from: mixed in before a capture engine class.

    A subclass says where its followers receive from: :meth:`_open_sources` (open what the
    threads read, return how many), :meth:`_follower_kernel` (the bound follower module
    whose ``follow`` they run), :meth:`_follower_io` (a follower's own io words and receive
    arrays), :meth:`_leader_poll_ms` (the leader's receive timeout) and, for an ordered
    stream, :meth:`_first_positions`.  ``threads=N``, ``cores=[...]`` are common."""

    _backend = "group"
    #: how long a commit waits for a thread whose stream has not left the gulp yet
    _watermark_s = WATERMARK_S

    def _group_init(self, threads: Any, cores: Any) -> None:
        """Before the engine's ``__init__``: the thread count and their cores."""
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or \
                    not 1 <= threads <= THREADS_MAX:
                raise ArgumentError(f"threads must be an integer in 1..{THREADS_MAX} (receive "
                                    f"threads); got {threads!r}")
            self._nthreads = int(threads)
        self._cores = self._check_cores(cores)
        self._ended = True           # until the engine is up: end()/__del__ do nothing
        self._threads: list[threading.Thread] = []
        self._own: list[Any] = []    # what the capture opened (closed when it stops)

    def _group_start(self) -> None:
        """After the engine's ``__init__``: the followers run."""
        self._logs.update("bind", {"ncore": len(self._fds), "core0": self.core})
        self._start_followers()

    def _check_cores(self, cores: Any) -> Optional[list[int]]:
        """``cores=[c0, c1, ...]``: pin receive thread i to CPU ci (one per thread)."""
        if cores is None:
            return None
        try:
            out = [int(c) for c in cores]
        except (TypeError, ValueError):
            raise ArgumentError(f"cores must be a list of CPU numbers, one per receive thread; "
                                f"got {cores!r}") from None
        have = os.sched_getaffinity(0)
        if len(out) != self._nthreads or any(c not in have for c in out):
            raise ArgumentError(f"cores must list {self._nthreads} CPU numbers (one per receive "
                                f"thread) from this process's CPUs {sorted(have)}; got {cores!r}")
        return out

    # -- what a subclass provides ----------------------------------------------------------
    def _open_sources(self) -> int:
        raise NotImplementedError

    def _follower_kernel(self) -> Any:
        raise NotImplementedError

    def _follower_io(self, i: int) -> tuple[np.ndarray, Any, Any, Any]:
        """Follower ``i``'s io words and its two receive arrays, and what must stay alive."""
        raise NotImplementedError

    def _leader_poll_ms(self) -> int:
        raise NotImplementedError

    def _first_positions(self) -> Optional[list[int]]:
        """An ordered stream: each follower's first stamp (None: no order, see F_POS)."""
        return None

    def _close_own(self) -> None:
        for s in self._own:
            s.close()
        self._own = []

    def _follower_base_io(self, fd: int, nfio: int) -> np.ndarray:
        """A follower's io words (``nfio`` of them) with the common ones set."""
        fio = np.zeros(nfio, dtype=np.int64)
        fio[follower.FIO_FD] = fd
        fio[follower.FIO_NMSG] = getattr(self, "_nbatch", 64)
        fio[follower.FIO_EVFD] = self._evfd
        fio[follower.FIO_POLLFD_ADDR] = fio.ctypes.data + 8 * follower.FIO_POLLFD
        fio[follower.FIO_ONE] = 1
        fio[follower.FIO_ONE_ADDR] = fio.ctypes.data + 8 * follower.FIO_ONE
        fio[follower.FIO_IDLE_MS] = IDLE_MS
        return fio

    # -- set-up ------------------------------------------------------------------------------
    def _setup_backend(self) -> None:
        from asbru.sockets.msgvec import RecvVec
        nf = self._open_sources()
        ctl = np.zeros(S.ctl_size(nf), dtype=np.int64)
        ctl[S.G_NF] = nf
        first = self._first_positions()
        for i in range(nf):
            ctl[S.F_BASE + i * S.F_STRIDE + S.F_POS] = S.POS_ANY if first is None else first[i]
        self._ctl = ctl
        nsrc, n, bufsize = self.nsrc, self.buffer_ntime, self._max_packet
        nbatch = getattr(self, "_nbatch", 64)
        # the leader's engine counts in stats_obj.cnt; the totals add the followers'
        self.stats_obj = GroupStats(nsrc, nf, ctl)
        self._rv = RecvVec(nbatch, bufsize, control=False)
        self._rbuf = self._rv.buffers
        self._rlen = np.zeros(nbatch, dtype=np.int64)
        self._meta = self._rv.hdrs
        self._aux = self._rv.control
        self._auxlens = self._rv.controllens
        rows = max(4 * nbatch, min(4096, QUEUE_BYTES // bufsize))
        self._qbuf = np.zeros((nf, rows, bufsize), dtype=np.uint8)
        self._qlen = np.zeros((nf, rows), dtype=np.int64)
        self._qstamp = np.zeros((nf, rows), dtype=np.int64)
        self._evfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        io = np.zeros(handoff.NIO_GROUP, dtype=np.int64)
        io[L.IO_POLL_MS] = -1
        io[L.IO_POLLFD_ADDR] = io.ctypes.data + 8 * L.IO_POLLFD
        io[handoff.IO_CTL] = ctl.ctypes.data
        io[handoff.IO_NCTL] = ctl.size
        io[handoff.IO_QBUF] = self._qbuf.ctypes.data
        io[handoff.IO_QLEN] = self._qlen.ctypes.data
        io[handoff.IO_QSTAMP] = self._qstamp.ctypes.data
        io[handoff.IO_QROWS] = rows
        io[handoff.IO_EVFD] = self._evfd
        self._io = io
        # followers: own receive arrays, mask planes (3 per follower: two open gulps and
        # one being cleared), copies of the window and the decode state
        self._fmask = np.zeros((nf, 3, n, nsrc), dtype=np.uint8)
        self._planes: dict[int, int] = {}
        self._plane_next = 0
        self._published = np.full(S.WINDOW_WORDS, -7, dtype=np.int64)
        self._seqid = 0
        self._ts = np.zeros(2, dtype=np.int64)
        self._fmod = self._follower_kernel()
        self._fargs = []
        for i in range(nf):
            fio, a, b, keep = self._follower_io(i)
            loc = np.full(S.WINDOW_WORDS + 1, -1, dtype=np.int64)
            self._fargs.append((ctl, i, fio, a, b, self._qbuf[i], self._qlen[i],
                                self._qstamp[i], self._fmask[i], self._cfg, np.zeros(S.NSTATE, dtype=np.int64),
                                np.full(self._d.size, -1, dtype=np.int64), self._chg,
                                self.stats_obj.fcnt[i], self.stats_obj.fpsrc[i], loc, keep))

    @staticmethod
    def compile_follower(fmod: Any, fmt: Any, nfio: int, a: np.ndarray, b: np.ndarray) -> None:
        """Compile (or load) ``fmod.follow`` for receive arrays like ``a``, ``b`` before
        anything is received: called with stand-ins and a stopped control block, it returns
        at once (the types are the capture's own, so the cache entry is shared)."""
        from asbru.formats import spec
        ctl = np.zeros(S.ctl_size(1), dtype=np.int64)
        ctl[S.G_STOP] = 1
        q = np.zeros((1, 1, 8), dtype=np.uint8)
        i64 = np.int64
        fmod.follow(ctl, 0, np.zeros(nfio, dtype=i64), a, b, q[0], np.zeros((1, 1), dtype=i64)[0],
                    np.zeros((1, 1), dtype=i64)[0], np.zeros((1, 3, 1, 1), dtype=np.uint8)[0],
                    fmt.capture_config(1, 0), np.zeros(spec.NSTATE, dtype=i64),
                    np.full(spec.NDESC, -1, dtype=i64), np.asarray(fmt.change, dtype=i64),
                    np.zeros((1, L.NCNT), dtype=i64)[0], np.zeros((1, L.NPS, 1), dtype=i64)[0],
                    np.full(S.WINDOW_WORDS + 1, -1, dtype=i64))

    def _start_followers(self) -> None:
        # compile (or load) the follower now: a stopped control block makes it return at once
        probe_ctl = self._ctl.copy()
        probe_ctl[S.G_STOP] = 1
        a = self._fargs[0]
        self._fmod.follow(probe_ctl, a[1], a[2].copy(), *a[3:9], a[9], a[10].copy(), a[11].copy(),
                          a[12], a[13].copy(), a[14].copy(), a[15].copy())
        self._ended = False
        for a in self._fargs:
            core = None if self._cores is None else self._cores[a[1]]
            t = threading.Thread(target=_follow, args=(self._fmod.follow, core) + a[:16],
                                 name=f"asbru-follower-{a[1]}", daemon=True)
            self._threads.append(t)
        self._stopper = weakref.finalize(self, _stop, self._ctl, list(self._threads),
                                         self._own, self._evfd)
        for t in self._threads:
            t.start()

    # -- the window protocol (docs/multicore.md) ---------------------------------------------
    def _window_words(self, state: int, retire_first: bool = False) -> np.ndarray:
        """The window words for ``state``; ``retire_first``: the open window without its
        first gulp (which is about to be committed)."""
        w = self._win
        words = self._published.copy()
        words[:] = 0
        o = -S.G_STATE
        words[o + S.G_STATE] = state
        words[o + S.G_SEQID] = self._seqid
        if state == S.ST_OPEN:
            g = self._gulps[1:] if retire_first else self._gulps
            words[o + S.G_S] = w[L.W_S] + (w[L.W_N] if retire_first else 0)
            words[o + S.G_K] = len(g)
            words[o + S.G_N] = w[L.W_N]
            words[o + S.G_NSRC] = w[L.W_NSRC]
            words[o + S.G_P] = w[L.W_P]
            words[o + S.G_GA] = g[0].data.ctypes.data
            words[o + S.G_SLOTA] = self._planes[id(g[0])]
            if len(g) > 1:
                words[o + S.G_GB] = g[1].data.ctypes.data
                words[o + S.G_SLOTB] = self._planes[id(g[1])]
            words[o + S.G_CUR:o + S.G_CUR + self._cur.size] = self._cur
            words[o + S.G_FSTATE:o + S.G_FSTATE + self._fstate.size] = self._fstate
        return words

    def _group_open(self) -> None:
        """Publish the window as it is now (OPEN while a sequence is active)."""
        w = self._win
        active = (w[L.W_MODE] == L.MODE_ACTIVE and not self._confirming and len(self._gulps) > 0)
        words = self._window_words(S.ST_OPEN if active else S.ST_GATHER)
        if not np.array_equal(words, self._published):
            S.publish(self._ctl, words)
            self._published = words

    def _group_quiesce(self, state: int, retire_first: bool = False) -> None:
        """Publish ``state`` (GATHER or PAUSE; or OPEN with ``retire_first``: the window
        without its first gulp), wait until every follower has let go of older windows, and
        fold their largest placed seqs into W_LAST."""
        words = self._window_words(state, retire_first)
        if not np.array_equal(words, self._published):
            S.publish(self._ctl, words)
            self._published = words
        S.wait_acked(self._ctl, len(self._fds), int(self._ctl[S.G_EPOCH]))
        w = self._win
        if w[L.W_MODE] == L.MODE_ACTIVE or self._confirming:
            for i in range(len(self._fds)):
                r = S.F_BASE + i * S.F_STRIDE
                if self._ctl[r + S.F_SEQID] == self._seqid:
                    last = int(self._ctl[r + S.F_LAST])
                    if last != S.LAST_NONE and last > w[L.W_LAST]:
                        w[L.W_LAST] = last

    # -- engine hooks ----------------------------------------------------------------------
    def _run(self, nofetch: int) -> int:
        if not self._ended:
            self._group_open()
        r = super()._run(nofetch)
        if r != L.RS_BUDGET and r != L.RS_ADVANCE and not self._ended:
            self._group_quiesce(S.ST_GATHER)
        return r

    def _begin_sequence(self) -> None:
        self._seqid += 1
        super()._begin_sequence()

    def _advance(self) -> None:
        if len(self._gulps) == 2 and not self._ended:
            # the first gulp is about to be committed: first let every receive thread's
            # stream leave it (one thread may lag the others by a batch or a time slice),
            # then take it out of the window and wait until every thread has let go of it.
            # The threads go on placing into the second gulp meanwhile: a pause here would
            # stop the slowest thread too, the one every commit waits for.
            S.wait_watermark(self._ctl, len(self._fds), int(self._win[L.W_S] + self._win[L.W_N]),
                             int(self._watermark_s * 1e9), self._ts)
            self._group_quiesce(S.ST_OPEN, retire_first=True)
        super()._advance()

    def _reserve(self, span: Any = None) -> None:
        super()._reserve(span)
        g = self._gulps[-1]
        plane = self._plane_next
        self._plane_next = (plane + 1) % 3
        self._fmask[:, plane] = 0
        self._planes[id(g)] = plane

    def _commit(self, g: Any, nslots: int, next_size: int = 0) -> Any:
        plane = self._planes.pop(id(g), None)
        if plane is not None:
            self._merge_masks(g, plane)
        return super()._commit(g, nslots, next_size)

    def _merge_masks(self, g: Any, plane: int) -> None:
        """Fold the followers' mask planes into the gulp's mask (:func:`.masks.merge`)."""
        st = self.stats_obj
        self._win[L.W_PLACED0] = masks.merge(g.mask, self._fmask, plane, st.corr, st.corr_psrc,
                                             int(self._win[L.W_P]))

    # -- public ----------------------------------------------------------------------------
    def recv(self) -> int:
        if not self._ended:
            self._io[L.IO_POLL_MS] = self._leader_poll_ms()
        try:
            return super().recv()  # type: ignore[misc]
        finally:
            if not self._ended:
                self._group_open()

    def end(self) -> None:
        if self._ended or self._in_callback:
            return super().end()
        try:
            self._ctl[S.G_STOP] = 1
            # the followers finish the packets they hold (placing them, or handing them
            # over): take the hand-offs until every one has left and the queues are empty
            self._io[L.IO_POLL_MS] = 1000
            while not self._followers_finished():
                self._pump(nofetch=0)
        finally:
            for t in self._threads:
                t.join()
            super().end()
            self._stopper()

    def _followers_finished(self) -> bool:
        c = self._ctl
        for i in range(len(self._fds)):
            r = S.F_BASE + i * S.F_STRIDE
            if c[r + S.F_DONE] == 0 and self._threads[i].is_alive():
                return False
            if c[r + S.F_QTAIL] < c[r + S.F_QHEAD]:
                return False
        return True

    def _start_staging(self) -> Any:
        return None


class GroupUDPCapture(GroupCapture, UDPCapture):
    """A UDPCapture whose receiving is spread over several threads: ``threads=N`` sockets of
    one SO_REUSEPORT group steered by source, or ``socks=[...]`` (one thread per socket).

    ``UDPCapture(..., threads=N)`` makes one; a subclass of UDPCapture gets the same
    through :func:`group_class`."""

    def __init__(self, fmt: str, sock: Any, *args: Any, threads: Any = None, socks: Any = None,
                 cores: Any = None, **kwargs: Any) -> None:
        self._group_plan(sock, threads, socks)
        self._group_init(threads, cores)
        super().__init__(fmt, sock, *args, **kwargs)
        self._group_start()

    def _group_plan(self, sock: Any, threads: Any, socks: Any) -> None:
        extra = [] if socks is None else list(socks)
        if socks is not None and not isinstance(socks, (list, tuple)):
            raise ArgumentError(f"socks must be a list of bound sockets (one receive thread "
                                f"each); got {type(socks).__name__}")
        for i, s in enumerate(extra):
            socket_fd(s, f"socks[{i}]")
        if extra and isinstance(threads, (int, np.integer)) and not isinstance(threads, bool) \
                and threads != len(extra) + 1:
            raise ArgumentError(f"threads={threads} but {len(extra) + 1} sockets (sock and socks): "
                                f"give one thread per socket (leave threads out), or threads "
                                f"without socks to spread one port over threads")
        self._user_socks = [sock] + extra
        self._nthreads = len(extra) + 1
        self.steering = "one socket per address" if extra else "SO_REUSEPORT by source"

    def _open_group_sockets(self) -> None:
        """threads=N on one socket: N-1 more sockets in its SO_REUSEPORT group, steered by
        source."""
        fd0 = self._fd
        probe = socket.socket(fileno=os.dup(fd0))
        try:
            if probe.type != socket.SOCK_DGRAM or probe.family not in (socket.AF_INET, socket.AF_INET6):
                raise ArgumentError("threads: sock must be a bound UDP socket")
            name = probe.getsockname()
            reuse = probe.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            rcvbuf = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            family = probe.family
        finally:
            probe.close()
        addr = name[0]
        import ipaddress
        if ipaddress.ip_address(addr.split("%")[0]).is_multicast:
            raise ArgumentError("threads: a multicast group delivers a copy to every socket: "
                                "give one socket per group with socks=[...] instead")
        if not reuse:
            raise ArgumentError("threads: sock must be bound with SO_REUSEPORT (UDPSocket.bind's "
                                "default, reuse_port=True) so that more sockets can share its port")
        from asbru.sockets.options import SO_RCVBUFFORCE
        for _ in range(self._nthreads - 1):
            s = socket.socket(family, socket.SOCK_DGRAM)
            self._own.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                    break
                except OSError:
                    continue
            try:
                s.bind(name)
            except OSError as exc:
                self._close_own()
                raise AsbruError(f"threads: cannot add a socket to {addr} port {name[1]}: "
                                 f"{exc.strerror}") from None
        try:
            steer.attach(self._own[0], steer.by_source(self._nthreads))
        except OSError:
            self.steering = "SO_REUSEPORT (the kernel's flow hash)"

    def _open_sources(self) -> int:
        from asbru.sockets.drops import DropCounter
        if len(self._user_socks) == 1 and self._nthreads > 1:
            self._open_group_sockets()
        self._fds = ([socket_fd(s, "sock") for s in self._user_socks] +
                     [s.fileno() for s in self._own])
        self._probe = socket.socket(fileno=os.dup(self._fd))
        self._own.append(self._probe)
        self._drops_all = [DropCounter(fd) for fd in self._fds]
        return len(self._fds)

    def _follower_kernel(self) -> Any:
        return follower.bind()

    def _follower_io(self, i: int) -> tuple[np.ndarray, Any, Any, Any]:
        from asbru.sockets.msgvec import RecvVec
        rv = RecvVec(self._nbatch, self._bufsize, control=False)
        fio = self._follower_base_io(self._fds[i], follower.NFIO)
        fio[follower.FIO_ADDR] = rv.addr
        return fio, rv.buffers, rv.hdrs, rv

    def _leader_poll_ms(self) -> int:
        return _sock_timeout_ms(self._sock, self._fd, self._probe)

    def _update_kernel_drops(self) -> None:
        total = 0
        for dc in getattr(self, "_drops_all", []):
            if dc.available:
                total += dc.total()
        self.stats_obj.cnt[L.C_NKDROPS] = total


def _follow(follow: Any, core: Optional[int], *args: Any) -> None:
    """A receive thread: pinned to ``core`` if given, then the compiled loop (no GIL)."""
    if core is not None:
        os.sched_setaffinity(0, {core})     # this thread only
    follow(*args)


def _stop(ctl: np.ndarray, threads: list, own: list, evfd: int) -> None:
    """Stop the followers (end(), or the capture was dropped without end()) and close what
    the capture opened."""
    if ctl[S.G_STOP] == 0:
        ctl[S.G_STOP] = 2        # dropped without end(): hand-offs nobody will take are dropped
    for t in threads:
        if t.is_alive():
            t.join()
    for s in own:
        s.close()
    try:
        os.close(evfd)
    except OSError:
        pass


_GROUP_CLASSES: dict[type, type] = {UDPCapture: GroupUDPCapture}


def _group_base(cls: type) -> type:
    """The multi-thread class for ``cls``'s kind of capture."""
    from asbru.capture.disk import DiskReader
    from asbru.capture.sniffer import UDPSniffer
    if issubclass(cls, UDPSniffer):
        from .sniffer import GroupUDPSniffer
        return GroupUDPSniffer
    if issubclass(cls, DiskReader):
        from .disk import GroupDiskReader
        return GroupDiskReader
    if issubclass(cls, UDPCapture):
        return GroupUDPCapture
    raise ArgumentError(f"threads: {cls.__name__} cannot spread its receiving over threads")


def group_class(cls: type) -> type:
    """``cls`` (UDPCapture, UDPSniffer, DiskReader or a subclass of one) spread over
    threads: its multi-thread class, or for a subclass a class with the group's methods
    before ``cls``'s."""
    if issubclass(cls, GroupCapture):
        return cls
    if cls not in _GROUP_CLASSES:
        base = _group_base(cls)
        if cls in base.__bases__:
            _GROUP_CLASSES[cls] = base
        else:
            _GROUP_CLASSES[cls] = type(f"Group{cls.__name__}", (base, cls),
                                       {"__module__": cls.__module__})
    return _GROUP_CLASSES[cls]
