"""GPU memory spaces beside baselines measured in the same run (needs CuPy and a CUDA GPU).

    python benchmarks/gpu.py [--repeat 5] [--gib 8]

1. The pinned host -> GPU peak: ``cudaMemcpyAsync`` of 64 MiB chunks from pinned memory to
   device memory, two streams in flight (and, for reference, the same from pageable memory).
2. DiskReader (chips_255, 16 sources, a page-cached file) into a ``cuda_host`` ring beside
   the same DiskReader into a ``system`` ring, rounds alternating; target >= 0.95x.
3. ``asbru.ring.copy`` streaming a ``cuda_host`` ring into a ``cuda`` ring (64 MiB spans, a
   writer committing 64 MiB spans into the host ring, a GPU reader acquiring every span of
   the device ring) beside figure 1; target >= 0.8x of the pinned peak.

Without CuPy or a GPU it prints why and exits 0 (so ``make bench`` passes on CPU machines).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.packet_capture import DiskReader, PacketCaptureCallback  # noqa: E402
from asbru.ring import Ring, copy  # noqa: E402
from asbru.ring.gpu import gpu_unavailable_reason  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

MiB = 1 << 20
CHUNK = 64 * MiB
NSRC = 16
GULP = 128
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")


def h2d_gbps(cp, src: np.ndarray, total: int) -> float:
    """GB/s of cudaMemcpyAsync from ``src`` (64 MiB) to the GPU, two streams alternating."""
    dst = [cp.empty(CHUNK, dtype=cp.uint8) for _ in range(2)]
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
    ptr = src.ctypes.data
    n = total // CHUNK

    def run(count: int) -> None:
        for i in range(count):
            cp.cuda.runtime.memcpyAsync(dst[i % 2].data.ptr, ptr, CHUNK, 4, streams[i % 2].ptr)
            if i >= 1:
                streams[(i - 1) % 2].synchronize()
        for s in streams:
            s.synchronize()

    run(4)                                  # warm up
    t0 = time.perf_counter()
    run(n)
    return n * CHUNK / (time.perf_counter() - t0) / 1e9


def chips_file(mib: int) -> tuple[Path, int, int]:
    payload = 8160
    rec = 16 + payload
    ntime = (mib << 20) // (rec * NSRC)
    recs = np.empty((ntime, NSRC, rec), dtype=np.uint8)
    recs[:, :, 16:] = np.random.default_rng(0).integers(0, 256, size=payload, dtype=np.uint8)
    recs[:, :, :16] = 0
    recs[:, :, 0] = np.arange(1, NSRC + 1, dtype=np.uint8)
    recs[:, :, 2] = payload // 32
    recs[:, :, 3] = 1
    recs[:, :, 5] = NSRC
    recs[:, :, 8:16] = np.arange(1, ntime + 1, dtype=">u8").view(np.uint8).reshape(ntime, 1, 8)
    path = SHM / f"asbru-bench-gpu-{os.getpid()}.dat"
    path.write_bytes(recs.tobytes())
    return path, ntime * NSRC, path.stat().st_size


def disk_reader_rounds(path: Path, nrec: int, nbytes: int, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"system": [], "cuda_host": []}
    readers = {}
    handles = []
    for space in out:
        ring = Ring(space=space, name=f"bench_gpu_{space}")
        passes = iter(range(1, 1 << 30))
        cb = PacketCaptureCallback()
        cb.set_chips(lambda seq0, chan0, nchan, nsrc, it=passes: (next(it) << 32, None))
        fh = open(path, "rb")
        handles.append(fh)
        readers[space] = DiskReader("chips_255", fh, ring, NSRC, 0, GULP, 1, cb)

    def once(space: str) -> float:
        dr = readers[space]
        dr.seek(0, os.SEEK_SET)
        before = dr.stats["nvalid"]
        t0 = time.perf_counter()
        while int(dr.recv()) not in (1, 4, 5, 6):
            pass
        dt = time.perf_counter() - t0
        if dr.stats["nvalid"] - before != nrec:
            raise RuntimeError(f"DiskReader ({space}) placed {dr.stats['nvalid'] - before} of {nrec}")
        return nbytes / dt / 1e9

    for space in out:                       # compile + fault the rings
        once(space)
    for _ in range(repeat):
        for space in out:
            out[space].append(once(space))
    for dr in readers.values():
        dr.end()
    for fh in handles:
        fh.close()
    return out


def copy_gbps(total: int) -> tuple[float, dict]:
    """cuda_host ring -> cuda ring with asbru.ring.copy, a host writer and a GPU reader."""
    host = Ring(space="cuda_host", name="bench_copy_host")
    dev = Ring(space="cuda", name="bench_copy_dev")
    host.resize(CHUNK, 4 * CHUNK)
    nspan = total // CHUNK
    got = {"nbyte": 0}

    def write() -> None:
        with host.begin_writing() as w, w.begin_sequence(name="bench", time_tag=1, header="{}") as seq:
            for _ in range(nspan):
                with seq.reserve(CHUNK):
                    pass                     # the bytes are whatever the capture left there

    def gpu_read() -> None:
        for rseq in dev.read(guarantee=True):
            for span in rseq.read(CHUNK):
                got["nbyte"] += span.data.nbytes    # a CuPy array: consumed on the GPU

    result: dict = {}
    tc = threading.Thread(target=lambda: result.update(copy(host, dev, CHUNK)))
    tr = threading.Thread(target=gpu_read)
    tc.start()
    tr.start()
    while host.guaranteed_readers < 1:
        time.sleep(0.001)
    t0 = time.perf_counter()
    write()
    tc.join()
    dt = time.perf_counter() - t0
    tr.join()
    if got["nbyte"] != nspan * CHUNK:
        raise RuntimeError(f"the GPU reader saw {got['nbyte']} of {nspan * CHUNK} bytes")
    return nspan * CHUNK / dt / 1e9, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--gib", type=float, default=8.0, help="GiB moved by the copy figures")
    p.add_argument("--file-mib", type=int, default=1024, help="size of the DiskReader file")
    a = p.parse_args()
    print(describe(gpu=True), flush=True)
    why = gpu_unavailable_reason()
    if why is not None:
        print(f"gpu: skipped: {why}")
        return
    import cupy as cp
    total = int(a.gib * (1 << 30)) // CHUNK * CHUNK
    pinned = np.frombuffer(cp.cuda.alloc_pinned_memory(CHUNK), dtype=np.uint8, count=CHUNK)
    pinned[:] = 1
    pageable = np.ones(CHUNK, dtype=np.uint8)
    peaks, pages, copies = [], [], []
    for _ in range(max(1, a.repeat // 2)):
        peaks.append(h2d_gbps(cp, pinned, total))
        pages.append(h2d_gbps(cp, pageable, min(total, 2 << 30)))
        gbps, res = copy_gbps(total)
        copies.append(gbps)
    peak = statistics.median(peaks)
    print(f"host->GPU cudaMemcpyAsync 64 MiB chunks: pinned {peak:.1f} GB/s, pageable "
          f"{statistics.median(pages):.1f} GB/s", flush=True)
    c = statistics.median(copies)
    print(f"asbru.ring.copy cuda_host ring -> cuda ring (64 MiB spans, {total >> 30} GiB): {c:.1f} GB/s "
          f"(pinned peak {peak:.1f} GB/s, ratio {c / peak:.2f}; target >= 0.80)", flush=True)

    path, nrec, nbytes = chips_file(a.file_mib)
    try:
        rounds = disk_reader_rounds(path, nrec, nbytes, a.repeat)
    finally:
        path.unlink(missing_ok=True)
    s, h = statistics.median(rounds["system"]), statistics.median(rounds["cuda_host"])
    print(f"DiskReader chips_255 ({nbytes >> 20} MiB, page cache) into a cuda_host ring: {h:.2f} GB/s "
          f"(system ring {s:.2f} GB/s, ratio {h / s:.2f}; target >= 0.95; median of {a.repeat})",
          flush=True)


if __name__ == "__main__":
    main()
