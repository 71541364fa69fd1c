"""DiskWriter's image method with the record copy and the write() overlapped in two threads
(asbru/writers/overlap.py): the same bytes as the serial loops, errors raised by the send()
that met them, clean pipes from one send to the next, no thread after close()."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asbru import formats
from asbru.cli.warmup import example_string
from asbru.errors import AsbruError
from asbru.packet_writer import DiskWriter, HeaderInfo
from asbru.writers import disk, overlap
from asbru.writers.payload import _RULES

WRITABLE = [n for n in sorted(formats.list()) if example_string(n, "write") is not None]
THREAD = "asbru-disk_writer-write"


@pytest.fixture
def overlapped_calls(monkeypatch) -> list[int]:
    """Counts the sends that went through the overlapped loops."""
    calls: list[int] = []
    real = overlap.finish_copy

    def counted(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(overlap, "finish_copy", counted)
    return calls


def _data(fmt: str, ntime: int, nsrc: int, seed: int) -> np.ndarray:
    """Random bytes in the array type the format's writer accepts."""
    p = formats.get(fmt, "write").params
    scalars, pair = _RULES[str(p.write_dtype)]
    raw = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, int(p.payload_size)),
                                               dtype=np.uint8)
    if pair is not None:
        return raw.view(pair).reshape(ntime, nsrc, int(p.samples_per_packet), 2)
    return raw.view(scalars[0])


def _header() -> HeaderInfo:
    h = HeaderInfo()
    h.set_nsrc(3)
    h.set_nchan(4)
    h.set_chan0(7)
    return h


def _write(path: Path, fmt: str, method: str, sends: list[np.ndarray]) -> tuple:
    with open(path, "wb") as fh, DiskWriter(fmt, fh, method=method) as w:
        seq = 1
        for data in sends:
            assert w.send(_header(), seq, 2, 5, 1, data) == data.shape[0] * data.shape[1]
            seq += 2 * data.shape[0]
    return path.read_bytes(), w.stats


@pytest.mark.parametrize("name", WRITABLE)
def test_overlapped_image_writes_the_bytes_of_writev_and_of_the_serial_copy(
        name: str, tmp_path: Path, overlapped_calls: list[int], monkeypatch) -> None:
    fmt = example_string(name, "write")
    wf = formats.get(fmt, "write")
    rec = int(wf.header.size) + int(wf.params.payload_size)
    nsrc = 3
    ntime = (5 << 20) // (rec * nsrc) + 1            # about 5 MiB per send: 5 slots and a bit
    sends = [_data(fmt, ntime, nsrc, 1), _data(fmt, ntime - 5, nsrc, 2)]
    npkt = (2 * ntime - 5) * nsrc

    got, stats = _write(tmp_path / "overlapped", fmt, "image", sends)
    assert len(overlapped_calls) == 2                 # both sends took the overlapped loops
    assert stats == (npkt, npkt * rec, 0, 0)
    by_writev, _ = _write(tmp_path / "writev", fmt, "writev", sends)
    monkeypatch.setattr(overlap, "MIN_SLOTS_PER_SEND", 1 << 40)  # the serial image loop
    serial, _ = _write(tmp_path / "serial", fmt, "image", sends)
    assert len(overlapped_calls) == 2
    assert len(got) == npkt * rec
    assert got == by_writev == serial


def test_small_slots_many_turns_and_sends_below_the_threshold(
        tmp_path: Path, overlapped_calls: list[int], monkeypatch) -> None:
    # 5-record slots: one send goes round the 4 slots hundreds of times; a send of fewer
    # than 4 slots between two long ones is written serially, and the long one after it
    # finds the pipes empty
    monkeypatch.setattr(disk, "STAGE_BYTES", 5 * 1048)
    sends = [_data("tbn", 700, 3, 3), _data("tbn", 2, 3, 4), _data("tbn", 333, 3, 5)]
    got, stats = _write(tmp_path / "a", "tbn", "image", sends)
    assert len(overlapped_calls) == 2
    expected, _ = _write(tmp_path / "b", "tbn", "writev", sends)
    assert got == expected and stats.nvalid == 1035 * 3 and stats.ninvalid == 0


@pytest.mark.parametrize("seq,seq_inc", [((1 << 64) - 300, 1), (-(1 << 63) + 40, -1),
                                          ((1 << 62) + 7, 1 << 55)])
def test_headers_filled_batch_by_batch_wrap_as_in_one_fill(
        seq: int, seq_inc: int, tmp_path: Path, overlapped_calls: list[int], monkeypatch) -> None:
    # slots of 3 time steps: the headers are filled in many batches, and the sequence
    # numbers cross 2**64 (or -2**63) inside the send; framecount (tbn) goes on across sends
    monkeypatch.setattr(disk, "STAGE_BYTES", 3 * 2 * 1048)
    data = [_data("tbn", 250, 2, 12), _data("tbn", 101, 2, 13)]
    files = []
    for method in ("image", "writev"):
        with open(tmp_path / method, "wb") as fh, DiskWriter("tbn", fh, method=method) as w:
            for d in data:
                w.send(_header(), seq, seq_inc, 3, 2, d)
        files.append((tmp_path / method).read_bytes())
    assert len(overlapped_calls) == 2 and files[0] == files[1]


def test_error_in_the_write_thread_is_raised_by_its_send(overlapped_calls: list[int]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full not available")
    data = _data("chips_4", 20000, 2, 6)             # 40000 records of 144 B: 5.5 MiB
    with open("/dev/full", "wb", buffering=0) as fh, DiskWriter("chips_4", fh) as w:
        for k in (1, 2):                             # the pipes are clean for the next send
            with pytest.raises(AsbruError) as exc:
                w.send(_header(), 0, 1, 0, 1, data)
            msg = str(exc.value)
            assert "\n" not in msg and "ENOSPC" in msg and "after 0 of 40000 packets" in msg
            assert w.stats == (0, 0, k * 40000, k * 40000 * 144)
    assert len(overlapped_calls) == 2


def test_error_midway_counts_the_records_written(tmp_path: Path,
                                                overlapped_calls: list[int]) -> None:
    # a pipe whose reader goes away after 2 MiB: write() fails with EPIPE in the write
    # thread while the copier is slots ahead; the records before are in the pipe, whole
    r, wfd = os.pipe()
    got = bytearray()

    def read_some() -> None:
        while len(got) < 2 << 20:
            b = os.read(r, min(65536, (2 << 20) - len(got)))
            if not b:
                break
            got.extend(b)
        os.close(r)

    reader = threading.Thread(target=read_some)
    reader.start()
    data = _data("chips_4", 20000, 2, 7)
    with os.fdopen(wfd, "wb", buffering=0) as fh:
        w = DiskWriter("chips_4", fh)
        with pytest.raises(AsbruError) as exc:
            w.send(_header(), 0, 1, 0, 1, data)
        w.close()
    reader.join(10)
    msg = str(exc.value)
    st = w.stats
    assert "\n" not in msg and "EPIPE" in msg and f"after {st.nvalid} of 40000 packets" in msg
    assert (2 << 20) // 144 <= st.nvalid < 40000
    assert st.nvalid + st.ninvalid == 40000 and st.nvalid_bytes == st.nvalid * 144
    assert len(overlapped_calls) == 1
    with open(tmp_path / "ref", "wb") as fh:
        DiskWriter("chips_4", fh, method="writev").send(_header(), 0, 1, 0, 1, data)
    assert bytes(got) == (tmp_path / "ref").read_bytes()[:len(got)]


def test_nonblocking_pipe_short_writes_in_the_write_thread(monkeypatch,
                                                           overlapped_calls: list[int]) -> None:
    # 64 KiB of pipe, slots of 40 records: the write thread meets EAGAIN and short writes
    monkeypatch.setattr(disk, "STAGE_BYTES", 40 * 1048)
    r, wfd = os.pipe()
    os.set_blocking(wfd, False)
    data = _data("tbn", 200, 4, 8)
    chunks: list[bytes] = []

    def drain() -> None:
        while (b := os.read(r, 65536)):
            chunks.append(b)

    reader = threading.Thread(target=drain)
    reader.start()
    with os.fdopen(wfd, "wb", buffering=0) as fh:
        w = DiskWriter("tbn", fh)
        assert w.send(_header(), 0, 1, 0, 1, data) == 800
        w.close()
    reader.join(30)
    os.close(r)
    recs = np.frombuffer(b"".join(chunks), np.uint8).reshape(800, 1048)
    assert np.array_equal(recs[:, 24:], data.reshape(800, 1024).view(np.uint8))
    assert w.stats == (800, 800 * 1048, 0, 0) and len(overlapped_calls) == 1


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD)]


def test_close_leaves_no_thread_and_no_descriptor(tmp_path: Path) -> None:
    fds = set(os.listdir("/proc/self/fd"))
    assert _threads() == []
    data = _data("chips_4", 16000, 2, 9)
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("chips_4", fh)
        w.send(_header(), 0, 1, 0, 1, data)
        assert len(_threads()) == 1
        w.close()
        assert _threads() == []
        w.send(_header(), 0, 1, 0, 1, data)   # a send after close() starts it again
        with w:
            assert len(_threads()) == 1
        assert _threads() == []
        fh.flush()
        assert os.path.getsize(tmp_path / "x") == 2 * 32000 * 144
    assert set(os.listdir("/proc/self/fd")) == fds


def test_collected_writer_leaves_no_thread(tmp_path: Path) -> None:
    import gc
    with open(tmp_path / "x", "wb") as fh:
        DiskWriter("chips_4", fh).send(_header(), 0, 1, 0, 1, _data("chips_4", 16000, 2, 9))
        gc.collect()
        for t in threading.enumerate():
            if t.name.startswith(THREAD):
                t.join(5)
    assert _threads() == []


def test_pinned_or_paced_writers_copy_and_write_in_one_thread(
        tmp_path: Path, overlapped_calls: list[int]) -> None:
    data = _data("chips_4", 16000, 2, 10)
    with open(tmp_path / "x", "wb") as fh:
        with DiskWriter("chips_4", fh, core=max(os.sched_getaffinity(0))) as w:
            w.send(_header(), 0, 1, 0, 1, data)
        with DiskWriter("chips_4", fh) as w:
            w.set_rate_limit(100_000_000)
            w.send(_header(), 0, 1, 0, 1, data)
    assert overlapped_calls == [] and _threads() == []


@pytest.mark.parametrize("side", ["copier", "writer"])
def test_a_side_that_dies_does_not_hang_send_and_the_next_send_is_whole(
        side: str, tmp_path: Path, monkeypatch) -> None:
    # compiled code raises no Python exceptions; this is the guard for a bug there: the
    # other side reads end-of-file, send() raises, and the next send() gets fresh pipes
    name = "copy_records" if side == "copier" else "write_slots"
    real = getattr(overlap, name)
    boom = {"left": 1}

    def failing(*args):
        if boom["left"]:
            boom["left"] -= 1
            raise RuntimeError(f"{side} failed")
        return real(*args)
    monkeypatch.setattr(overlap, name, failing)
    data = _data("chips_4", 16000, 2, 11)
    with open(tmp_path / "x", "wb") as fh, DiskWriter("chips_4", fh) as w:
        with pytest.raises(RuntimeError, match=f"{side} failed"):
            w.send(_header(), 0, 1, 0, 1, data)
        fh.seek(0)
        fh.truncate()
        assert w.send(_header(), 0, 1, 0, 1, data) == 32000
    with open(tmp_path / "ref", "wb") as fh:
        DiskWriter("chips_4", fh, method="writev").send(_header(), 0, 1, 0, 1, data)
    assert (tmp_path / "x").read_bytes() == (tmp_path / "ref").read_bytes()


def test_a_forked_child_writes_with_a_thread_of_its_own(tmp_path: Path) -> None:
    # the parent's writer thread does not exist in a child made by fork(): the child's
    # first large send must start its own (not wait forever for the parent's)
    data = _data("chips_4", 16000, 2, 14)
    with open(tmp_path / "parent", "wb") as fh, DiskWriter("chips_4", fh) as w:
        w.send(_header(), 0, 1, 0, 1, data)
        pid = os.fork()
        if pid == 0:  # the child: write its own file, exit without running pytest's teardown
            code = 1
            try:
                with open(tmp_path / "child", "wb") as cfh:
                    w._target = cfh
                    code = 0 if w.send(_header(), 0, 1, 0, 1, data) == 32000 else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's send() did not return within 30 s")
        status = done[1]
        w.send(_header(), 16000, 1, 0, 1, data)      # the parent's thread and pipes still work
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "child").read_bytes() == (tmp_path / "parent").read_bytes()[:32000 * 144]


def test_an_interrupted_send_counts_what_it_wrote(tmp_path: Path, monkeypatch) -> None:
    # Ctrl-C reaches Python between two header batches of an overlapped send: the send
    # stops there, the records already written are counted valid and the rest invalid
    real = overlap.copy_records
    calls = {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(overlap, "copy_records", interrupted)
    data = _data("chips_4", 20000, 2, 15)
    with open(tmp_path / "x", "wb") as fh, DiskWriter("chips_4", fh) as w:
        with pytest.raises(KeyboardInterrupt):
            w.send(_header(), 0, 1, 0, 1, data)
    st = w.stats
    got = (tmp_path / "x").read_bytes()
    assert 0 < st.nvalid < 40000 and st.nvalid + st.ninvalid == 40000
    assert len(got) == st.nvalid * 144 == st.nvalid_bytes and st.ninvalid_bytes == st.ninvalid * 144
    with open(tmp_path / "ref", "wb") as fh:
        DiskWriter("chips_4", fh, method="writev").send(_header(), 0, 1, 0, 1, data)
    assert got == (tmp_path / "ref").read_bytes()[:len(got)]
