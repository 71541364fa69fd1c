"""Rings shared between processes (``Ring(space='shm', name=...)``): real processes, real
/dev/shm files, SIGKILL of a writer and of a reader, and the ``asbru rings`` clean-up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from asbru.errors import ArgumentError
from asbru.ring import Ring, shm

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
pytestmark = pytest.mark.skipif(not os.path.isdir(shm.SHM_DIR), reason="no /dev/shm on this machine")


def _name() -> str:
    return f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def name():
    n = _name()
    yield n
    try:
        os.unlink(shm.path_of(n))       # whatever a failing test left behind
    except FileNotFoundError:
        pass


def peer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "shm_peer.py"), *map(str, args)], env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expect(proc: subprocess.Popen, word: str, timeout: float = 60.0) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()))
    t.start()
    t.join(timeout)
    line = box[0] if box else ""
    if word not in line:
        proc.kill()
        raise AssertionError(f"expected {word!r} from peer, got {line!r}; stderr: {proc.stderr.read()[-2000:]}")
    return line


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def wait_until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def n_readers(name: str, guarantee: bool = True) -> int:
    return sum(1 for r in shm.inspect(name)["readers"] if r["alive"] and r["guarantee"] == guarantee)


def test_name_is_required_and_checked():
    with pytest.raises(ArgumentError, match="needs a name"):
        Ring(space="shm")
    with pytest.raises(ArgumentError, match="letters, digits"):
        Ring(space="shm", name="a/b")


def test_two_reader_processes_see_sequences_headers_tags_and_flags(name):
    readers = [peer("read", name, 4000, 1) for _ in range(2)]
    writer = peer("write", name, 3, 50, 4000)
    expect(writer, "ready")
    wait_until(lambda: n_readers(name) == 2, what="two guaranteed readers")
    writer.stdin.write("\n")
    writer.stdin.flush()
    for r in readers:
        expect(r, "ready")
    expect(writer, "done")
    writer.wait(30)
    for r in readers:
        got = finish(r)
        assert got["spans"] == 150 and got["bytes"] == 150 * 4000
        assert got["bad"] == 0 and got["flags_bad"] == 0 and got["overwritten"] == 0
        assert got["sequences"] == [["obs0", 1000, 0], ["obs1", 1001, 1], ["obs2", 1002, 2]]
        assert got["writer_died"] is False
    assert not os.path.exists(shm.path_of(name))        # the last one out removed the file


def test_unguaranteed_reader_is_told_what_was_overwritten(name):
    ring = Ring(space="shm", name=name)
    writer = peer("write", name, 1, 40, 4096)
    expect(writer, "ready")
    writer.stdin.write("\n")
    writer.stdin.flush()
    rseq = ring.open_earliest_sequence(guarantee=False)
    span = rseq.acquire(0, 4096)
    assert np.shares_memory(span.data, ring._buf)               # a view of the shared mapping
    expect(writer, "done")
    writer.wait(30)
    assert span.size_overwritten == 4096                        # lapped by the other process
    span.release()
    last = rseq.acquire(39 * 4096, 4096)
    assert last.size_overwritten == 0 and (last.data == 39).all()
    assert last.flags is not None and (last.flags == 0).all() and last.flags.shape == (64, 1)
    last.release()
    rseq.close()
    ring.close()
    assert not os.path.exists(shm.path_of(name))


def test_sigkill_of_a_reader_and_of_the_writer(name):
    holder = peer("read", name, 4096, 1, "hold-first")      # guaranteed, holds its first span
    survivor = peer("read", name, 4096, 1)
    writer = peer("write", name, 1, 100000, 4096, 0.0005)
    expect(writer, "ready")
    wait_until(lambda: n_readers(name) == 2, what="two guaranteed readers")
    writer.stdin.write("\n")
    writer.stdin.flush()
    expect(holder, "ready")
    expect(holder, "holding")
    expect(survivor, "ready")
    # the writer fills the 16 KiB ring and waits for the reader that holds span 0
    time.sleep(1.0)
    assert shm.inspect(name)["head"] == 16384
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    # the dead reader's guarantee is dropped: the writer goes on
    wait_until(lambda: shm.inspect(name)["head"] > 64 * 4096, timeout=20, what="the writer to go on")
    assert n_readers(name) == 1
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    head = shm.inspect(name)["head"]
    got = finish(survivor, timeout=20)            # the survivor learns the writer is gone
    assert got["writer_died"] is True
    assert got["bytes"] == head and got["spans"] == head // 4096
    assert got["bad"] == 0 and got["flags_bad"] == 0 and got["overwritten"] == 0
    # all three have gone (two killed): the survivor, last to close, removed the file
    assert not os.path.exists(shm.path_of(name))


def test_the_listing_forgets_a_sequence_once_the_writer_has_overwritten_it(name):
    ring = Ring(space="shm", name=name)
    try:
        ring.resize(4096, 16384)
        w = ring.begin_writing()
        with w.begin_sequence("old", 1) as s:
            s.reserve(4096).close()
        listed = lambda: [q["name"] for q in shm.inspect(name)["sequences"]]  # noqa: E731
        with w.begin_sequence("new", 2) as s:
            for _ in range(3):
                s.reserve(4096).close()
            assert listed() == ["old", "new"]       # "old"'s bytes are still in the ring
            s.reserve(4096).close()                 # the tail passes them: `asbru rings` says so
            assert listed() == ["new"]
        w.end_writing()
    finally:
        ring.close()


def test_stale_ring_is_listed_and_removed_by_the_cli(name):
    writer = peer("write", name, 1, 1000000, 4096, 0.001)
    expect(writer, "ready")
    writer.stdin.write("\n")
    writer.stdin.flush()
    wait_until(lambda: shm.inspect(name)["head"] > 0, what="data")
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert os.path.exists(shm.path_of(name))            # nobody was left to remove it
    cli = [sys.executable, "-m", "asbru", "rings"]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, env=ENV, timeout=120)
    mine = [r for r in json.loads(out.stdout)["rings"] if r["name"] == name]
    assert mine and mine[0]["state"] == "stale" and mine[0]["writing"] and not mine[0]["writer_alive"]
    one = subprocess.run([*cli, name], capture_output=True, text=True, env=ENV, timeout=120)
    assert one.returncode == 0 and "stale" in one.stdout and "writing" in one.stdout
    out = subprocess.run([*cli, "--remove-stale", "--json"], capture_output=True, text=True, env=ENV, timeout=120)
    assert name in json.loads(out.stdout)["removed"]
    assert not os.path.exists(shm.path_of(name))
    gone = subprocess.run([*cli, name], capture_output=True, text=True, env=ENV, timeout=120)
    assert gone.returncode == 2 and gone.stderr.startswith("asbru: error: no shared ring named")


def test_cli_refuses_to_remove_a_live_ring(name):
    ring = Ring(space="shm", name=name)
    cli = [sys.executable, "-m", "asbru", "rings", "--remove", name]
    out = subprocess.run(cli, capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 2 and "live process" in out.stderr and str(os.getpid()) in out.stderr
    assert os.path.exists(shm.path_of(name))
    ring.close()
    assert not os.path.exists(shm.path_of(name))


def test_resize_after_data_is_refused_and_fitting_resize_is_a_noop(name):
    ring = Ring(space="shm", name=name)
    ring.resize(4096, 16384)
    with ring.begin_writing() as w, w.begin_sequence(name="a") as seq:
        with seq.reserve(100):
            pass
        ring.resize(4096, 8192)                          # fits: nothing to do
        with pytest.raises(ArgumentError, match="sized once"):
            ring.resize(8192)
    ring.close()


def test_second_writer_refused_while_first_lives(name):
    a = Ring(space="shm", name=name)
    b = Ring(space="shm", name=name)
    a.resize(4096)
    a.begin_writing()
    with pytest.raises(ArgumentError, match="one writer at a time"):
        b.begin_writing()
    b.close()
    a.close()


def test_capture_into_a_shared_ring_read_by_another_process(name, tmp_path):
    """A DiskReader writes into the shared ring; a reader process sees the same bytes and
    flags as an in-process reader of the same capture into a system ring."""
    from helpers.gappy_chips import capture_file as _capture, gappy_file as _gappy_file
    _gappy_file(tmp_path / "g.dat", seed=5)
    # the reference: the same file into an in-process ring
    import hashlib
    ref = Ring(name="ref")
    box = []

    def digest_local():
        for seq in ref.read(guarantee=True):
            h, f = hashlib.sha256(), hashlib.sha256()
            nbyte = 0
            for s in seq.read(1024):
                h.update(s.data.tobytes())
                nbyte += s.size
                f.update(s.flags.tobytes())
            box.append([seq.time_tag, nbyte, h.hexdigest(), f.hexdigest()])
    t = threading.Thread(target=digest_local)
    t.start()
    wait_until(lambda: ref.guaranteed_readers == 1)
    _capture(tmp_path / "g.dat", ref)
    t.join(60)

    ring = Ring(space="shm", name=name)
    reader = peer("digest", name, 1024)
    expect(reader, "ready")
    wait_until(lambda: n_readers(name) == 1)
    _capture(tmp_path / "g.dat", ring)
    ring.close()
    got = json.loads(reader.communicate(timeout=60)[0].strip().splitlines()[-1])
    assert got == box and box[0][1] > 0
    assert not os.path.exists(shm.path_of(name))


def test_top_shows_shared_rings_and_their_readers(name):
    ring = Ring(space="shm", name=name)
    ring.resize(4096, 16384)
    reader = peer("read", name, 4096, 1)
    wait_until(lambda: n_readers(name) == 1, what="a guaranteed reader")
    out = subprocess.run([sys.executable, "-m", "asbru", "top", "--once", "--json", "--interval", "0.1"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    mine = [r for r in json.loads(out.stdout.strip().splitlines()[-1])["rings"] if r["name"] == name]
    assert mine and mine[0]["state"] == "live" and mine[0]["nreaders"] == 1
    assert mine[0]["readers"][0]["pid"] == reader.pid and mine[0]["readers"][0]["guarantee"] is True
    reader.kill()
    reader.wait(10)
    ring.close()


def test_a_ring_left_by_a_crash_is_replaced_when_named_again(name):
    writer = peer("write", name, 1, 1000000, 4096, 0.001)
    expect(writer, "ready")
    writer.stdin.write("\n")
    writer.stdin.flush()
    wait_until(lambda: shm.inspect(name)["head"] > 0, what="data")
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    old = os.stat(shm.path_of(name)).st_ino
    ring = Ring(space="shm", name=name)              # nobody uses the old one: a fresh ring
    assert ring.created and os.stat(shm.path_of(name)).st_ino != old
    ring.resize(8192)                                # sized afresh (the old ring held data)
    ring.close()


def test_commit_then_reserve_on_a_shared_ring(name):
    # the capture engine's once-per-gulp call: the shared ring takes its own commit and
    # reserve in turn, with the same bytes, flags and offsets as the in-process ring
    ring = Ring(space="shm", name=name)
    ring.resize(4096, 8 * 4096)
    mask = (np.arange(16) % 5 + 1).astype(np.uint8).reshape(8, 2)
    with ring.begin_writing() as w, w.begin_sequence(name="cr") as seq:
        a = seq.reserve(4096)
        a.data[0][:] = 7
        b = seq.reserve(4096)
        c = seq.commit_then_reserve(a, mask, 512, 4096)
        assert c.offset == 2 * 4096 and c.size == 4096
        rseq = ring.open_sequence("cr", guarantee=False)
        with rseq.acquire(0, 4096) as sp:
            assert (sp.data[0] == 7).all() and np.array_equal(sp.flags, mask)
        b.close()
        c.close()
    rseq.close()
    ring.close()
