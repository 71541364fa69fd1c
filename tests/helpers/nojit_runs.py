"""The work tests/test_nojit.py does twice: compiled, in the test process, and as plain
Python, in a child process started with ``NUMBA_DISABLE_JIT=1`` that runs this file as a
script (``python nojit_runs.py OUT.pickle WORKDIR SNIFFER``).  Every function returns plain data (numpy arrays, ints, lists,
dicts) so that the two runs can be compared byte for byte and count for count.

* :func:`format_run` -- one registered format (:func:`plan`): its writer makes a small stream
  (``asbru generate``'s recipe), each packet is decoded (HOLD packets decoded again the way
  the engine does) and placed into a time slot of its own and into a ring assembled by
  sequence number, and a ``DiskReader`` reads the same stream from a file through the
  capture engine's loop.
* :func:`udp_run` -- a ``UDPTransmit`` sends a CHIPS stream over loopback to a
  ``UDPCapture`` (a few gulps).
* :func:`sniffer_run` -- the same stream to a ``UDPSniffer`` (needs CAP_NET_RAW).
* :func:`writer_run` -- a ``DiskWriter`` file (writev, and the overlapped image method) and
  a paced ``UDPTransmit``.
* :func:`syscalls_run` -- the libc calls' results and errno conventions (``-errno``).
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np

def plan(name: str) -> tuple[str, int, int]:
    """(writer format string, nsrc, ntime) of the small stream made for format ``name``:
    the registry's example string, the first of 2, 3, 4, 1 sources its recipe accepts, and
    4 time steps, or as many as the format needs to learn its rate and one more (VDIF: a
    second and a frame).  Small on purpose: under NUMBA_DISABLE_JIT=1 every byte of
    decode/place/loop runs in the interpreter."""
    from asbru import formats
    from asbru.cli import synth
    from asbru.cli.warmup import example_string
    write_fmt = example_string(name, "write")
    if write_fmt is None:
        raise ValueError(f"format {name!r}: no writer format string to make a stream with")
    recipe = synth.recipe_for(formats.get(write_fmt, "write"), 2)
    nsrc = next(k for k in (2, 3, 4, 1) if not recipe.check_nsrc(k)
                and (recipe.max_nsrc is None or k <= recipe.max_nsrc))
    ntime = max(4, recipe.learn_steps + 1)
    return write_fmt, nsrc, ntime + ntime % 2


def registered() -> list[str]:
    from asbru import formats
    return sorted(formats.list())


#: time slots per gulp of the DiskReader runs (several gulps per stream)
GULP_NTIME = 2
SEED = 5


def _stats(cap: Any) -> dict[str, Any]:
    st = dict(cap.stats)
    st.pop("blocked_seconds")          # wall-clock time, not a count
    st["per_source"] = {k: v.tolist() for k, v in st["per_source"].items()}
    return st


def _sequences(seqs: list) -> list[tuple[int, bytes, np.ndarray, np.ndarray | None]]:
    return [(s.time_tag, s.header, s.data, s.flags) for s in seqs]


def _stream(name: str) -> tuple[np.ndarray, int, str | None, int]:
    """(packets uint8[n, record], nsrc, reader format string or None, src0)."""
    from asbru import formats
    from asbru.cli import synth
    from asbru.formats import batch
    write_fmt, nsrc, ntime = plan(name)
    wf = formats.get(write_fmt, "write")
    recipe = synth.recipe_for(wf, nsrc)
    try:
        formats.get(recipe.reader, "disk")
    except formats.FormatError:
        # writer only (generic_N): its packets are the writer's and nothing reads them
        data = np.random.default_rng(SEED).integers(0, 256, (ntime, nsrc, wf.params.payload_size),
                                                    dtype=np.uint8)
        raw = batch.encode_packets(wf, batch.headerinfo(), 0, 1, 0, 1, data)
        return np.frombuffer(raw, dtype=np.uint8).reshape(ntime * nsrc, -1), nsrc, None, 0
    packets, truth = synth.make_stream(wf, nsrc, ntime, 0.0, 0, 0.0, 0.0, SEED, True)
    rec = packets.record_size
    return packets.buf.reshape(-1, rec), nsrc, truth["reader_format"], truth["src0"]


def format_run(name: str, workdir: str) -> dict[str, Any]:
    from asbru import formats
    from asbru.capture.disk import DiskReader
    from asbru.capture.testing import RingCollector, run_capture
    from asbru.formats import spec
    from asbru.ring import Ring

    from helpers.format_stream import decode_stream

    pkts, nsrc, reader, src0 = _stream(name)
    out: dict[str, Any] = {"stream": pkts.copy()}
    if reader is None:
        return out
    rd = formats.get(reader, "disk")

    # decode, packet by packet (HOLD packets again after the next VALID one)
    valid, invalid, held = decode_stream(rd, [p.tobytes() for p in pkts], nsrc, src0)
    out["invalid"], out["held"] = invalid, held
    out["valid"] = [i for i, _ in valid]
    out["desc"] = np.array([d for _, d in valid], dtype=np.int64)

    # place: each payload into a zeroed slot of its own, and into a ring by sequence number
    seqs = [int(d[spec.SEQ]) for _, d in valid]
    p = int(valid[0][1][spec.PAYLOAD_SIZE]) if valid else 0
    assembled = np.zeros((max(seqs) - min(seqs) + 1 if seqs else 0, nsrc * p), dtype=np.uint8)
    single = np.zeros((len(valid), nsrc * p), dtype=np.uint8)
    for k, (i, d) in enumerate(valid):
        off, size = int(d[spec.PAYLOAD_OFFSET]), int(d[spec.PAYLOAD_SIZE])
        payload = np.ascontiguousarray(pkts[i, off:off + size])
        rd.place(payload, d.copy(), single[k], nsrc)
        rd.place(payload, d.copy(), assembled[seqs[k] - min(seqs)], nsrc)
    out["placed"], out["assembled"] = single, assembled

    # the capture engine's loop: a DiskReader over the same packets in a file
    path = Path(workdir) / f"{name}.dat"
    path.write_bytes(pkts.tobytes())
    ring = Ring(name=f"nojit_{name}_{os.getpid()}")
    with open(path, "rb") as fh:
        cap = DiskReader(reader, fh, ring, nsrc, src0, GULP_NTIME, GULP_NTIME, None)
        collector = RingCollector(ring, 1 << 20)
        out["statuses"] = run_capture(cap, max_calls=1000)
        cap.end()
        out["sequences"] = _sequences(collector.join(30))
        out["stats"] = _stats(cap)
    return out


# ----------------------------------------------------------------------------- network
NET_FMT, NET_NSRC, NET_NCHAN, NET_NTIME, NET_GULP = "chips", 2, 4, 8, 2


def _net_stream() -> np.ndarray:
    return np.random.default_rng(SEED).integers(
        0, 256, (NET_NTIME, NET_NSRC, 32 * NET_NCHAN), dtype=np.uint8)


def _send(port: int) -> int:
    from asbru.address import Address
    from asbru.packet_writer import HeaderInfo, UDPTransmit
    from asbru.udp_socket import UDPSocket
    tx = UDPSocket()
    tx.connect(Address("127.0.0.1", port))
    info = HeaderInfo()
    info.set_nchan(NET_NCHAN)
    info.set_chan0(100)
    info.set_nsrc(NET_NSRC)
    try:
        return int(UDPTransmit(f"{NET_FMT}_{NET_NCHAN}", tx).send(info, 1, 1, 0, 1, _net_stream()))
    finally:
        tx.close()


def _net_capture(cls: Any, sock: Any, port: int, **kwargs: Any) -> dict[str, Any]:
    from asbru.capture.testing import RingCollector, run_capture
    from asbru.ring import Ring
    ring = Ring(name=f"nojit_{cls.__name__}_{os.getpid()}")
    cap = cls(NET_FMT, sock, ring, NET_NSRC, 0, 9000, NET_GULP, 1, None, **kwargs)
    collector = RingCollector(ring, 1 << 16)
    nsent = _send(port)
    statuses = run_capture(cap, max_calls=1000)
    cap.end()
    seqs = collector.join(30)
    sock.close()
    return {"sent": nsent, "statuses": statuses, "sequences": _sequences(seqs),
            "stats": _stats(cap)}


def udp_run() -> dict[str, Any]:
    from asbru.address import Address
    from asbru.capture.testing import free_udp_port
    from asbru.packet_capture import UDPCapture
    from asbru.udp_socket import UDPSocket
    port = free_udp_port()
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", port))
    sock.timeout = 0.3
    return _net_capture(UDPCapture, sock, port)


def sniffer_run() -> dict[str, Any]:
    from asbru.address import Address
    from asbru.capture.testing import free_udp_port
    from asbru.packet_capture import UDPSniffer
    from asbru.udp_socket import UDPSocket
    port = free_udp_port()
    sock = UDPSocket()
    sock.sniff(Address("127.0.0.1", port))
    sock.timeout = 0.3
    return _net_capture(UDPSniffer, sock, port, sniff_block_size=1 << 18, sniff_block_count=8)


def net_expected() -> np.ndarray:
    """The ring bytes of the network stream: CHIPS time slots are [chan][src][32 bytes]."""
    data = _net_stream()
    return data.reshape(NET_NTIME, NET_NSRC, NET_NCHAN, 32).transpose(0, 2, 1, 3).reshape(-1)


def writer_run(workdir: str) -> dict[str, Any]:
    """A DiskWriter's file (the writev loop, and the overlapped image loops) and what a
    rate-limited UDPTransmit sends."""
    import socket

    from asbru.address import Address
    from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit
    from asbru.udp_socket import UDPSocket
    info = HeaderInfo()
    info.set_nchan(NET_NCHAN)
    info.set_chan0(100)
    info.set_nsrc(NET_NSRC)
    path = Path(workdir) / "written.dat"
    with open(path, "wb") as fh:
        DiskWriter(f"{NET_FMT}_{NET_NCHAN}", fh).send(info, 7, 1, 0, 1, _net_stream())
    # the image method with the copy and the write overlapped in two threads: slots of two
    # records, so that the 16 records of the stream go through the 4 slots twice
    from asbru.writers import disk, overlap
    image_path = Path(workdir) / "written_image.dat"
    stage_bytes, disk.STAGE_BYTES = disk.STAGE_BYTES, 2 * (16 + 32 * NET_NCHAN)
    calls = []
    finish_copy = overlap.finish_copy

    def counted(*args: Any) -> int:
        calls.append(1)
        return finish_copy(*args)
    overlap.finish_copy = counted
    try:
        with open(image_path, "wb") as fh, \
                DiskWriter(f"{NET_FMT}_{NET_NCHAN}", fh, method="image") as w:
            w.send(info, 7, 1, 0, 1, _net_stream())
    finally:
        disk.STAGE_BYTES = stage_bytes
        overlap.finish_copy = finish_copy
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    tx = UDPSocket()
    tx.connect(Address("127.0.0.1", rx.getsockname()[1]))
    w = UDPTransmit(f"{NET_FMT}_{NET_NCHAN}", tx)
    w.set_rate_limit(2000)
    nsent = int(w.send(info, 7, 1, 0, 1, _net_stream()))
    got = [rx.recv(9000) for _ in range(nsent)]
    tx.close()
    rx.close()
    return {"file": np.fromfile(path, dtype=np.uint8), "sent": nsent, "datagrams": got,
            "image_file": np.fromfile(image_path, dtype=np.uint8), "overlapped": len(calls)}


def syscalls_run() -> dict[str, Any]:
    """Results of the libc calls compiled code makes, on cases whose answer is fixed."""
    import socket

    from asbru.sockets import msgvec
    from asbru.sockets import syscalls as sc
    from asbru.writers import ratelimit
    buf = np.zeros(16, dtype=np.uint8)
    out: dict[str, Any] = {}
    out["read_bad_fd"] = int(sc.read_e(-1, buf.ctypes.data, 16))
    sc.set_errno(0)
    out["errno_set"] = int(sc.errno())
    r, w = os.pipe()
    try:
        out["lseek_pipe"] = int(sc.lseek_e(r, 0, sc.SEEK_SET))
        out["write"] = int(sc.write_e(w, buf.ctypes.data, 5))
        fds = np.array([[r, sc.POLLIN]], dtype=np.int32)
        out["poll"] = int(sc.poll_e(fds.ctypes.data, 1, 1000))
        out["read"] = int(sc.read_e(r, buf.ctypes.data, 16))
        out["poll_empty"] = int(sc.poll_e(fds.ctypes.data, 1, 0))
    finally:
        os.close(r)
        os.close(w)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    rv = msgvec.RecvVec(4, 64)
    out["recvmmsg_empty"] = int(sc.recvmmsg_e(s.fileno(), rv.addr, 4, sc.MSG_DONTWAIT, 0))
    s.sendto(b"abc", s.getsockname())
    out["recvmmsg_one"] = int(sc.recvmmsg_e(s.fileno(), rv.addr, 4, sc.MSG_DONTWAIT, 0))
    out["recvmmsg_bytes"] = bytes(rv.buffers[0, :rv.lengths[0]])
    s.close()
    ts = np.zeros(2, dtype=np.int64)
    t0 = ratelimit.now_ns(ts)
    ratelimit.sleep_until(ts, t0 + 2_000_000)
    out["slept_2ms"] = bool(ratelimit.now_ns(ts) - t0 >= 2_000_000)
    return out


def _guarded(fn: Any, *args: Any) -> dict[str, Any]:
    # one failing run is reported by its own test, not by all of them
    import traceback
    try:
        return fn(*args)
    except Exception:
        return {"error": traceback.format_exc()}


def run_all(workdir: str, sniffer: bool) -> dict[str, Any]:
    out: dict[str, Any] = {name: _guarded(format_run, name, workdir) for name in registered()}
    out["udp"] = _guarded(udp_run)
    if sniffer:
        out["sniffer"] = _guarded(sniffer_run)
    out["writer"] = _guarded(writer_run, workdir)
    out["syscalls"] = _guarded(syscalls_run)
    return out


if __name__ == "__main__":
    # python tests/helpers/nojit_runs.py OUT.pickle WORKDIR SNIFFER(0/1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from numba.core import config
    result = {"disable_jit": bool(config.DISABLE_JIT),
              "runs": run_all(sys.argv[2], sys.argv[3] == "1")}
    with open(sys.argv[1], "wb") as fh:
        pickle.dump(result, fh)
