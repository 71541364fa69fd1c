"""DiskWriter's "image" method with the copy and the write overlapped in two threads.

The serial image loop (:func:`asbru.writers.kernels.disk_write_image`) alternates: copy
1 MiB of records into the staging buffer, write it, copy the next MiB, ...  Here the thread
that called ``send()`` copies records into a ring of :data:`NSLOTS` staging slots while a
second thread writes the slots already filled, in order, so the copy of MiB k+1 runs while
MiB k is in ``write()``.  Both loops are compiled (numba, no GIL).  The copying thread also
fills the headers, in batches of whole time steps just before it copies them (the first
batch one slot, so that the first write starts early), instead of all of them before the
first copy.

The two loops talk through two pipes only, one 8-byte token per slot:

* ``filled`` (copier -> writer): the number of records in the next slot; 0 = no more;
* ``free`` (writer -> copier): the slot was written (0) or the errno that stopped writing.

A pipe read/write is a system call, which orders the memory accesses around it between the
threads (the slot's bytes are stored before the token is written and are read by the
kernel's ``write()`` after the token was read), and it blocks without spinning.  After an
error the writer writes nothing more but still answers every token, and the copier stops
copying at the next token it reads; ``send()`` returns only after both loops ended, so the
error is raised by the ``send()`` whose records failed, with the counts the serial loop
gives (whole records written are valid, the rest invalid).

If either side ends abnormally (a Python exception, which compiled code does not raise), its
Python wrapper closes its pipe end: the other side reads end-of-file and stops, and the
pipes are made anew for the next ``send()``.
"""
from __future__ import annotations

import concurrent.futures
import os
import weakref
from typing import Any

import numpy as np
from numba import njit

from asbru.sockets import syscalls as sc
from asbru.writers import kernels as K
from asbru.writers import ratelimit as rl

__all__ = ["OverlappedImage", "NSLOTS", "MIN_SLOTS_PER_SEND"]

#: staging slots in flight between the copier and the writer
NSLOTS = 3
#: sends shorter than this many slots are written serially: handing the write to the
#: other thread and joining it costs tens of microseconds, more than copying one slot
MIN_SLOTS_PER_SEND = 4

#: header-fill batches after the first (slots' worth of records): one Python round per
#: batch, in the copying thread, which has time to spare while the writer writes
BATCH_SLOTS = 2

_EIO = 5
_U64 = (1 << 64) - 1


def _wrap(v: int) -> int:
    """A time step's sequence number as the filler computes it in int64 (two's complement)."""
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


@njit(nogil=True, cache=True)
def _token(fd, tok, put):
    """Write (``put``) or read the 8-byte token ``tok[0]`` on the pipe ``fd``; 0 or an
    errno (EIO for a short transfer: pipe writes and reads of up to PIPE_BUF bytes are all
    or nothing, so a short read is end-of-file -- the other side is gone)."""
    while True:
        if put:
            r = sc.write_e(fd, tok.ctypes.data, 8)
        else:
            r = sc.read_e(fd, tok.ctypes.data, 8)
        if r == 8:
            return 0
        if r == -sc.EINTR:
            continue
        return -r if r < 0 else _EIO


@njit(nogil=True, cache=True)
def _put(fd, tok):
    return _token(fd, tok, True)


@njit(nogil=True, cache=True)
def _get(fd, tok):
    return _token(fd, tok, False)


# the copier's state between calls (int64 array of NCOPY)
C_SLOTS, C_AT, C_OUTSTANDING, C_STOPPED, C_FAILED = range(5)
NCOPY = 5


@njit(nogil=True, cache=True)
def _hand_over(fill_w, tok, cs):
    """Give the slot being filled (``cs[C_AT]`` records) to the writer."""
    tok[0] = cs[C_AT]
    e = _put(fill_w, tok)
    if e != 0:
        cs[C_FAILED] = e
        return
    cs[C_OUTSTANDING] += 1
    cs[C_SLOTS] += 1
    cs[C_AT] = 0


@njit(nogil=True, cache=True)
def copy_records(hdrs, payload, stages, fill_w, free_r, cs):
    """The copier: every record (header row k, payload row k) into the slots in turn,
    continuing the slot that ``cs`` says is partly filled; a full slot goes to the writer
    with a ``filled`` token.  Waits for a ``free`` token before reusing a slot and stops
    copying when one carries an error (``cs[C_STOPPED]``) or a pipe fails
    (``cs[C_FAILED]``).  Returns the records copied."""
    n = payload.shape[0]
    if hdrs.shape[0] < n:
        n = hdrs.shape[0]
    rec = hdrs.shape[1] + payload.shape[1]
    nslot = stages.shape[0]
    per = stages.shape[1] // rec
    tok = np.zeros(1, dtype=np.int64)
    k = 0
    while k < n and cs[C_STOPPED] == 0 and cs[C_FAILED] == 0:
        if cs[C_AT] == 0 and cs[C_OUTSTANDING] == nslot:
            e = _get(free_r, tok)
            if e != 0:
                cs[C_FAILED] = e
                break
            cs[C_OUTSTANDING] -= 1
            if tok[0] != 0:
                cs[C_STOPPED] = 1
                break
        want = n - k
        if want > per - cs[C_AT]:
            want = per - cs[C_AT]
        K.build_stage(hdrs, payload, k, want, stages[cs[C_SLOTS] % nslot], cs[C_AT])
        cs[C_AT] += want
        k += want
        if cs[C_AT] == per:
            _hand_over(fill_w, tok, cs)
    return k


@njit(nogil=True, cache=True)
def finish_copy(fill_w, free_r, cs):
    """Hand over the last, partly filled slot, tell the writer there is no more, and
    collect the token of every slot handed over, so that both pipes are empty for the next
    send.  Returns 0 or the errno of a failed pipe."""
    tok = np.zeros(1, dtype=np.int64)
    if cs[C_AT] > 0 and cs[C_STOPPED] == 0 and cs[C_FAILED] == 0:
        _hand_over(fill_w, tok, cs)
    if cs[C_FAILED] == 0:
        tok[0] = 0
        cs[C_FAILED] = _put(fill_w, tok)
    while cs[C_FAILED] == 0 and cs[C_OUTSTANDING] > 0:
        cs[C_FAILED] = _get(free_r, tok)
        cs[C_OUTSTANDING] -= 1
    return cs[C_FAILED]


@njit(nogil=True, cache=True)
def write_slots(fd, stages, rec, fill_r, free_w, pfd, state, ts, out):
    """The writer: for every ``filled`` token, write that slot (whole, resuming short
    writes) and answer with a ``free`` token; after an error, only answer.  Counts the whole
    records written into ``out`` (as the serial loop does).  Returns the records written."""
    nslot = stages.shape[0]
    tok = np.zeros(1, dtype=np.int64)
    iov = np.zeros((1, 2), dtype=np.uint64)
    k = 0
    j = 0
    while True:
        if _get(fill_r, tok) != 0:
            break              # the copier is gone
        want = tok[0]
        if want <= 0:
            break              # no more slots
        if out[K.O_FATAL] == 0:
            iov[0, 0] = np.uint64(stages[j % nslot].ctypes.data)
            iov[0, 1] = np.uint64(want * rec)
            k += K._count_written(K._write_all(fd, iov, 1, pfd, ts, out), rec, want, state, out)
        tok[0] = out[K.O_FATAL]
        if _put(free_w, tok) != 0:
            break
        j += 1
    return k


def _release(res: dict[str, Any], wait: bool = True) -> None:
    """Stop the writer thread and close the pipes.  ``close()`` waits for the thread to
    end; the finalizer of a collected writer only tells it to (the collection may run in
    any thread, the writer thread included, which cannot wait for itself)."""
    pool = res.pop("pool", None)
    if pool is not None:
        pool.shutdown(wait=wait)
    for fd in res.pop("fds", ()):
        try:
            os.close(fd)
        except OSError:
            pass


def _drain(res: dict[str, Any], fd: int, stages: np.ndarray, rec: int, fill_r: int,
           free_w: int, scratch: tuple, out: np.ndarray) -> int:
    """The writer thread's job (a plain function: the thread holds no reference to the
    OverlappedImage, so a writer is never collected, nor its thread stopped, from there)."""
    try:
        return write_slots(fd, stages, rec, fill_r, free_w, *scratch, out)
    except BaseException:
        os.close(free_w)  # the copier reads end-of-file instead of waiting for us
        res["fds"].remove(free_w)
        raise


def _join(job: concurrent.futures.Future) -> tuple[int, KeyboardInterrupt | None]:
    """The writer thread's result, and a KeyboardInterrupt that came while waiting for it:
    that is held back until the thread has ended (it ends by itself: the copier has stopped,
    and a write makes progress or gives up after 10 s), so that the pipes and slots are
    never released under it; the caller raises it after the counts are in."""
    interrupted = None
    while True:
        try:
            return job.result(), interrupted
        except KeyboardInterrupt as exc:
            if job.done() and job.exception() is exc:
                raise                  # the thread's own (compiled code raises none)
            interrupted = exc


class OverlappedImage:
    """The staging slots, pipes and writer thread of one DiskWriter (made when first used)."""

    def __init__(self, stage_bytes: int, name: str) -> None:
        self.stages = np.zeros((NSLOTS, stage_bytes), dtype=np.uint8)
        self._name = name
        self._res: dict[str, Any] = {}
        self._pfd = np.zeros(2, dtype=np.int32)
        self._ts = np.zeros(2, dtype=np.int64)
        self._unlimited = np.zeros(rl.NSTATE, dtype=np.int64)  # sends here are never paced
        self._hbatch = np.zeros((0, 0), dtype=np.uint8)        # headers of one batch
        weakref.finalize(self, _release, self._res, False)

    def worth_it(self, npkt: int, rec: int) -> bool:
        """Whether a send of ``npkt`` records of ``rec`` bytes is long enough to overlap."""
        return npkt * rec >= MIN_SLOTS_PER_SEND * self.stages.shape[1]

    def _pipes(self) -> tuple[int, int, int, int]:
        if self._res.get("pid", os.getpid()) != os.getpid():
            # a forked child: the parent's writer thread is not here (a pool that believes
            # it has one would never run the job); the pipes are shared with the parent
            self._res.pop("pool", None)
            self._discard_pipes()
        self._res["pid"] = os.getpid()
        if "fds" not in self._res:
            fill_r, fill_w = os.pipe()
            free_r, free_w = os.pipe()
            self._res["fds"] = [fill_r, fill_w, free_r, free_w]
        if self._res.get("pool") is None:
            self._res["pool"] = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"asbru-{self._name}-write")
        fill_r, fill_w, free_r, free_w = self._res["fds"]
        return fill_r, fill_w, free_r, free_w

    def _discard_pipes(self) -> None:
        """After an abnormal end the pipes may hold stale tokens: the next send makes new ones."""
        for fd in self._res.pop("fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass

    def write(self, fd: int, hdrs: np.ndarray, payload: np.ndarray, out: np.ndarray,
              fill: Any = None, fill_args: tuple | None = None) -> None:
        """Write every record (header row k, payload row k) to ``fd``; counts into ``out``
        as :func:`asbru.writers.kernels.disk_write_image` does.

        With ``fill`` (the format's header filler) and ``fill_args`` (its arguments after
        ``hdrs``: info, wcfg, seq, seq_inc, src, src_inc, ntime, nsrc, framecount), the
        headers are filled here, batch by batch of whole time steps just before they are
        copied: the first batch is one slot, the rest :data:`BATCH_SLOTS` slots.  ``hdrs`` is
        then left as it is."""
        npkt = min(hdrs.shape[0], payload.shape[0])
        rec = hdrs.shape[1] + payload.shape[1]
        fill_r, fill_w, free_r, free_w = self._pipes()
        cs = np.zeros(NCOPY, dtype=np.int64)
        job = self._res["pool"].submit(_drain, self._res, fd, self.stages, rec, fill_r, free_w,
                                       (self._pfd, self._unlimited, self._ts), out)
        failed = written = interrupted = None
        try:
            if fill_args is None:
                copy_records(hdrs, payload, self.stages, fill_w, free_r, cs)
            else:
                self._fill_and_copy(hdrs, payload, fill, fill_args, fill_w, free_r, cs)
            failed = finish_copy(fill_w, free_r, cs)
        finally:
            if failed is None or failed != 0:
                # the copier ended abnormally: end-of-file stops the writer
                os.close(fill_w)
                self._res["fds"].remove(fill_w)
            try:
                written, interrupted = _join(job)
            finally:
                if failed is None or failed != 0 or len(self._res.get("fds", ())) < 4:
                    self._discard_pipes()
                if written is not None:
                    # every record is counted, written or not, also when the copier was
                    # interrupted (KeyboardInterrupt) and that is being raised
                    if failed and out[K.O_FATAL] == 0:
                        out[K.O_FATAL] = failed
                    unwritten = npkt - int(written)
                    out[K.O_NINVALID] += unwritten
                    out[K.O_NINVALID_BYTES] += unwritten * rec
        if interrupted is not None:
            raise interrupted

    def _fill_and_copy(self, hdrs: np.ndarray, payload: np.ndarray, fill: Any,
                       fill_args: tuple, fill_w: int, free_r: int, cs: np.ndarray) -> None:
        # the headers of a batch go into a small buffer of their own, which stays in cache
        # between the fill and the copy (``hdrs``, the send's array, is not touched); like
        # the send's array it is zeroed once and then only ever written by the filler
        info, wcfg, seq, seq_inc, src, src_inc, ntime, nsrc, framecount = fill_args
        step = (hdrs.shape[1] + payload.shape[1]) * nsrc   # bytes per time step
        most = max(1, BATCH_SLOTS * self.stages.shape[1] // step)
        if self._hbatch.shape[0] < most * nsrc or self._hbatch.shape[1] != hdrs.shape[1]:
            self._hbatch = np.zeros((most * nsrc, hdrs.shape[1]), dtype=np.uint8)
        hb = self._hbatch
        rows = max(1, self.stages.shape[1] // step)        # the first batch: one slot
        i0 = 0
        while i0 < ntime and cs[C_STOPPED] == 0 and cs[C_FAILED] == 0:
            i1 = min(ntime, i0 + rows)
            n = (i1 - i0) * nsrc
            fill(hb[:n], info, wcfg, _wrap(seq + i0 * seq_inc), seq_inc, src, src_inc,
                 i1 - i0, nsrc, framecount + i0)
            copy_records(hb[:n], payload[i0 * nsrc: i1 * nsrc], self.stages, fill_w, free_r, cs)
            i0 = i1
            rows = most

    def close(self) -> None:
        """Stop the writer thread and close the pipes (a later write() makes them anew)."""
        _release(self._res)
