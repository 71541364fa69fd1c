"""The compiled send loops: one call hands a whole ``send()`` batch to the kernel.

Both loops run without the GIL, pace bursts with :mod:`asbru.writers.ratelimit`, and
report into ``out`` (int64, :data:`NOUT` long):

``out[O_NVALID]``/``out[O_NVALID_BYTES]``     packets (and their bytes) handed to the kernel
``out[O_NINVALID]``/``out[O_NINVALID_BYTES]`` packets that failed
``out[O_FATAL]``      errno that stopped the loop (0: none); the rest were counted failed
``out[O_SOFT]``       errno of the last per-packet failure that did not stop it (ECONNREFUSED)
``out[O_NSOFT]``      how many such failures

Memory: every address handed to the kernel is computed from the arrays' own shapes (header
row k of ``hdrs``, payload row k of ``payload``); the loops never take a length from
anywhere else, so nothing outside the caller's arrays can be read.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from asbru.sockets import syscalls as sc
from asbru.writers import ratelimit as rl

NOUT = 8
O_NVALID, O_NVALID_BYTES, O_NINVALID, O_NINVALID_BYTES, O_FATAL, O_SOFT, O_NSOFT = range(7)

MMSG_BATCH = 1024          # sendmmsg accepts at most UIO_MAXIOV messages per call
IOV_MAX = 1024             # writev accepts at most IOV_MAX iovecs per call
STALL_NS = 10_000_000_000  # give up after this long without progress (10 s)
NOBUFS_WAIT_NS = 200_000   # ENOBUFS: poll says "writable" at once; back off this long instead

_EINTR = sc.EINTR
_EAGAIN = sc.EAGAIN
_ENOBUFS = sc.ENOBUFS
_ECONNREFUSED = sc.ECONNREFUSED
_ETIMEDOUT = 110


@njit(nogil=True, cache=True)
def _wait_writable(pfd, fd):
    # struct pollfd {int fd; short events; short revents}, as int32 pair
    pfd[0] = fd
    pfd[1] = sc.POLLOUT
    sc.poll(pfd.ctypes.data, 1, 100)


@njit(nogil=True, cache=True)
def _stalled(ts, since):
    """Start or check a no-progress timer: returns (new ``since``, True when over STALL_NS)."""
    t = rl.now_ns(ts)
    if since == 0:
        return t, False
    return since, t - since > STALL_NS


@njit(nogil=True, cache=True)
def udp_send(fd, hdrs, payload, msgs, iovs, pfd, state, ts, out):
    """Send packet k = header row k + payload row k, for every row, with sendmmsg.

    ``msgs``/``iovs`` are a :class:`asbru.sockets.msgvec.SendVec`'s ``hdrs`` (the mmsghdr
    array, already pointing at ``iovs``) and ``iov`` (two iovecs per message)."""
    npkt = payload.shape[0]
    if hdrs.shape[0] < npkt:
        npkt = hdrs.shape[0]
    hsize = hdrs.shape[1]
    psize = payload.shape[1]
    haddr = np.uint64(hdrs.ctypes.data)
    paddr = np.uint64(payload.ctypes.data)
    nmax = msgs.shape[0]
    if iovs.shape[0] < nmax:
        nmax = iovs.shape[0]
    maddr = msgs.ctypes.data
    rec = hsize + psize
    k = 0
    since = 0
    while k < npkt:
        want = npkt - k
        if want > nmax:
            want = nmax
        want = rl.pace(state, ts, want, k == 0)
        for b in range(want):
            row = iovs[b]
            row[0] = haddr + np.uint64((k + b) * hsize)
            row[1] = np.uint64(hsize)
            row[2] = paddr + np.uint64((k + b) * psize)
            row[3] = np.uint64(psize)
        r = sc.sendmmsg(fd, maddr, want, 0)
        if r > 0:
            k += r
            out[O_NVALID] += r
            out[O_NVALID_BYTES] += r * rec
            rl.paced(state, r)
            since = 0
            continue
        e = sc.errno() if r < 0 else _EAGAIN
        if e == _EINTR:
            continue
        if e == _EAGAIN or e == _ENOBUFS:
            since, over = _stalled(ts, since)
            if over:
                out[O_FATAL] = _ETIMEDOUT
                break
            if e == _ENOBUFS:
                rl.sleep_until(ts, rl.now_ns(ts) + NOBUFS_WAIT_NS)
            else:
                _wait_writable(pfd, fd)
            continue
        if e == _ECONNREFUSED:
            # the peer's port was unreachable (an ICMP error from an earlier datagram,
            # reported on this one): this packet is lost, the stream goes on
            out[O_SOFT] = e
            out[O_NSOFT] += 1
            out[O_NINVALID] += 1
            out[O_NINVALID_BYTES] += rec
            rl.paced(state, 1)
            k += 1
            continue
        out[O_FATAL] = e
        break
    if k < npkt:
        out[O_NINVALID] += npkt - k
        out[O_NINVALID_BYTES] += (npkt - k) * rec
    return k


@njit(nogil=True, cache=True)
def _write_all(fd, iovs, niov, pfd, ts, out):
    """writev the first ``niov`` iovecs completely (resuming after short writes).

    Returns the bytes written; sets ``out[O_FATAL]`` on an error that stops it."""
    done = 0
    first = 0
    since = 0
    while first < niov and iovs[first, 1] == 0:
        first += 1
    while first < niov:
        r = sc.writev(fd, iovs.ctypes.data + first * 16, niov - first)
        if r < 0:
            e = sc.errno()
            if e == _EINTR:
                continue
            if e == _EAGAIN:
                since, over = _stalled(ts, since)
                if over:
                    out[O_FATAL] = _ETIMEDOUT
                    return done
                _wait_writable(pfd, fd)
                continue
            out[O_FATAL] = e
            return done
        if r == 0:
            since, over = _stalled(ts, since)
            if over:
                out[O_FATAL] = _ETIMEDOUT
                return done
            _wait_writable(pfd, fd)
            continue
        since = 0
        done += r
        # skip the iovecs written completely, trim a partly written one
        while first < niov and r > 0:
            ln = np.int64(iovs[first, 1])
            if r >= ln:
                r -= ln
                first += 1
            else:
                iovs[first, 0] += np.uint64(r)
                iovs[first, 1] -= np.uint64(r)
                r = 0
        while first < niov and iovs[first, 1] == 0:
            first += 1
    return done


@njit(nogil=True, cache=True, inline="always")
def _count_written(done, rec, want, state, out):
    """Account one write of ``want`` records of ``rec`` bytes that wrote ``done`` bytes; the
    number of whole records written."""
    full = done // rec if rec > 0 else want
    out[O_NVALID] += full
    out[O_NVALID_BYTES] += full * rec
    rl.paced(state, want)
    return full


@njit(nogil=True, cache=True, inline="always")
def _count_unwritten(k, npkt, rec, out):
    """Records ``k..npkt`` were never written: count them failed; returns ``k``."""
    if k < npkt:
        out[O_NINVALID] += npkt - k
        out[O_NINVALID_BYTES] += (npkt - k) * rec
    return k


@njit(nogil=True, cache=True)
def disk_write_pairs(fd, hdrs, payload, iovs, pfd, state, ts, out):
    """Write packet k = header row k + payload row k with writev (no payload copy)."""
    npkt = payload.shape[0]
    if hdrs.shape[0] < npkt:
        npkt = hdrs.shape[0]
    hsize = hdrs.shape[1]
    psize = payload.shape[1]
    rec = hsize + psize
    haddr = np.uint64(hdrs.ctypes.data)
    paddr = np.uint64(payload.ctypes.data)
    per_call = iovs.shape[0] // 2
    if hsize == 0:
        per_call = iovs.shape[0]
    k = 0
    while k < npkt:
        want = npkt - k
        if want > per_call:
            want = per_call
        want = rl.pace(state, ts, want, k == 0)
        niov = 0
        if hsize == 0:
            # no headers: the payload rows are contiguous, one iovec covers the burst
            iovs[0, 0] = paddr + np.uint64(k * psize)
            iovs[0, 1] = np.uint64(want * psize)
            niov = 1
        else:
            for b in range(want):
                iovs[niov, 0] = haddr + np.uint64((k + b) * hsize)
                iovs[niov, 1] = np.uint64(hsize)
                iovs[niov + 1, 0] = paddr + np.uint64((k + b) * psize)
                iovs[niov + 1, 1] = np.uint64(psize)
                niov += 2
        k += _count_written(_write_all(fd, iovs, niov, pfd, ts, out), rec, want, state, out)
        if out[O_FATAL] != 0:
            break
    return _count_unwritten(k, npkt, rec, out)


@njit(nogil=True, cache=True)
def build_stage(hdrs, payload, k, want, stage, at):
    """Copy records ``k .. k+want`` (header row, payload row) back to back into ``stage``,
    the first at record position ``at``.

    The one copy of the record image: the serial loop below and the overlapped one
    (:mod:`asbru.writers.overlap`) both use it, so their files are the same bytes.  The
    caller guarantees ``(at + want) * (hsize + psize) <= stage.size``."""
    hsize = hdrs.shape[1]
    psize = payload.shape[1]
    rec = hsize + psize
    for b in range(want):
        dst = stage[(at + b) * rec: (at + b + 1) * rec]
        h = hdrs[k + b]
        p = payload[k + b]
        for q in range(hsize):
            dst[q] = h[q]
        d2 = dst[hsize:]
        for q in range(psize):
            d2[q] = p[q]


@njit(nogil=True, cache=True)
def disk_write_image(fd, hdrs, payload, stage, iovs, pfd, state, ts, out):
    """Write packets by copying header+payload pairs into ``stage`` (~1 MiB) and writing it."""
    npkt = payload.shape[0]
    if hdrs.shape[0] < npkt:
        npkt = hdrs.shape[0]
    hsize = hdrs.shape[1]
    psize = payload.shape[1]
    rec = hsize + psize
    per_call = stage.shape[0] // rec if rec > 0 else npkt
    if per_call < 1:
        per_call = 1  # caller guarantees stage holds one record; never write past it below
    k = 0
    while k < npkt:
        want = npkt - k
        if want > per_call:
            want = per_call
        want = rl.pace(state, ts, want, k == 0)
        if rec > stage.shape[0]:
            want = 0
            out[O_FATAL] = sc.EINVAL
            break
        build_stage(hdrs, payload, k, want, stage, 0)
        iovs[0, 0] = np.uint64(stage.ctypes.data)
        iovs[0, 1] = np.uint64(want * rec)
        k += _count_written(_write_all(fd, iovs, 1, pfd, ts, out), rec, want, state, out)
        if out[O_FATAL] != 0:
            break
    return _count_unwritten(k, npkt, rec, out)
