"""Proclog for every user (issue 13): captures of several unprivileged users on one machine
all publish statistics, ``asbru top`` run as root sees every one of them, and ``asbru
doctor`` reports a proclog directory other users cannot write.

The other users are forked children of this (root) process that drop to another uid with
setgid/setuid: the Python installation of this test run may not be readable by another
user, and a forked child needs nothing from disk (the capture kernels are compiled before
the fork)."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest

from asbru import formats, proclog
from asbru.capture.testing import run_capture
from asbru.cli import doctor, top
from asbru.formats import batch
from asbru.packet_capture import DiskReader

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or os.geteuid() != 0,
    reason="acting as other users needs root (setuid in a forked child); not root here")

FMT = "chips_4"
NSRC = 2
USERS = (65534, 64001, 64002)     # nobody, and two uids with no account at all


@pytest.fixture
def shared_parent(monkeypatch):
    """A directory every user may create entries in (as /dev/shm is); ASBRU_PROCLOG_DIR is
    <it>/asbru, not yet created."""
    parent = Path(tempfile.mkdtemp(prefix="asbru-users-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    os.chmod(parent, 0o1777)
    monkeypatch.setenv("ASBRU_PROCLOG_DIR", str(parent / "asbru"))
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def recording():
    data = np.random.default_rng(5).integers(0, 256, (400, NSRC, 128), dtype=np.uint8)
    raw = batch.encode_packets(formats.get(FMT, "write"),
                               batch.headerinfo(nsrc=NSRC, nchan=4, chan0=100), 1001, 1, 0, 1, data)
    fd, name = tempfile.mkstemp(suffix=".dat")
    os.write(fd, raw)
    os.close(fd)
    # compile (or load) the disk kernels in this process, so that the children need nothing
    with open(name, "rb") as fh:
        cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None)
        run_capture(cap)
        cap.end()
    yield name
    os.unlink(name)


class Child:
    """A forked process running ``fn`` as ``uid``; it reports one line and then waits until
    :meth:`finish` (so that its proclog files stay while the parent looks)."""

    def __init__(self, uid: int, fn) -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: never returns
            code = 1
            try:
                os.close(r1)
                os.close(w2)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                msg = fn()
                code = 0
            except BaseException as exc:   # noqa: BLE001 - reported to the parent
                msg = f"ERR {type(exc).__name__}: {exc}"
            try:
                os.write(w1, (str(msg).replace("\n", " | ") + "\n").encode())
                os.read(r2, 1)
            finally:
                os._exit(code)
        os.close(w1)
        os.close(r2)
        self.pid = pid
        self._r = os.fdopen(r1, "r")
        self._w = w2

    def line(self) -> str:
        return self._r.readline().strip()

    def finish(self) -> int:
        os.write(self._w, b"x")
        os.close(self._w)
        self._r.close()
        return os.waitpid(self.pid, 0)[1]


def capture_as_child(path: str):
    """What each child does: a whole DiskReader capture (left open: its logs stay)."""
    fh = open(path, "rb")   # noqa: SIM115 - kept open while the parent looks

    def run():
        cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None)
        statuses = run_capture(cap)
        run.keep = cap
        st = cap.stats
        return f"{os.geteuid()} {statuses[-1]} {st['nvalid']}"
    return run


def start_users(recording):
    children = []
    try:
        for uid in USERS:
            c = Child(uid, capture_as_child(recording))
            children.append(c)
            assert c.line().split()[:3] == [str(uid), "1", "800"]
    except BaseException:
        for c in children:
            c.finish()
        raise
    return children


def test_every_user_captures_and_root_top_sees_them_all(shared_parent, recording):
    # main: the first user's root was 0755; the second fell back to /tmp/asbru, the third
    # could not capture at all ("no writable proclog directory")
    children = start_users(recording)
    try:
        base = shared_parent / "asbru"
        mode = os.stat(base).st_mode
        assert stat.S_IMODE(mode) == 0o1777, oct(mode)       # sticky, world-writable
        seen = top.sample()
        pids = {pid for pid, block in seen if block.startswith("disk_reader")}
        assert {c.pid for c in children} <= pids
        for c in children:
            st = seen[(c.pid, "disk_reader")]["stats"]
            assert st["nvalid"] == 800
            assert os.stat(base / str(c.pid)).st_uid in USERS
    finally:
        codes = [c.finish() for c in children]
    assert codes == [0] * len(USERS)


def test_a_root_made_by_an_older_asbru_falls_back_per_user(shared_parent, recording):
    # the shared root exists and only its owner (here root) may write to it
    base = shared_parent / "asbru"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    children = start_users(recording)
    try:
        seen = top.sample()
        for c, uid in zip(children, USERS):
            assert seen[(c.pid, "disk_reader")]["stats"]["nvalid"] == 800
            assert (shared_parent / f"asbru-{uid}" / str(c.pid)).is_dir()
    finally:
        codes = [c.finish() for c in children]
    assert codes == [0] * len(USERS)


def test_doctor_reports_the_proclog_directory(shared_parent, recording):
    base = shared_parent / "asbru"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)

    def check():
        res = {r["check"]: r for r in doctor.checks()}["proclog directory"]
        return f"{res['status']} {res['fix']}"
    c = Child(USERS[0], check)
    try:
        status, *fix = c.line().split()
    finally:
        c.finish()
    assert status == "warn" and "chmod 1777" in " ".join(fix)

    # nothing writable at all: fail, with the variable to set
    os.chmod(shared_parent, 0o755)
    c = Child(USERS[1], check)
    try:
        status, *fix = c.line().split()
    finally:
        c.finish()
    assert status == "fail" and "ASBRU_PROCLOG_DIR" in " ".join(fix)

    # as root: the shared root is there but others cannot write to it
    res = {r["check"]: r for r in doctor.checks()}["proclog directory"]
    assert res["status"] == "warn" and "chmod 1777" in res["fix"]


def test_a_capture_without_any_proclog_directory_still_captures(shared_parent, recording):
    # main: `asbru capture` died with a 44-line traceback; the library refused to construct
    os.chmod(shared_parent, 0o755)

    capture = capture_as_child(recording)   # the file is opened here, as root

    def run():
        import warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out = capture()
        return f"{out.split()[2]} {len(w)} {w[0].message if w else ''}"
    c = Child(USERS[2], run)
    try:
        line = c.line()
    finally:
        c.finish()
    nvalid, nwarn, *msg = line.split()
    assert not line.startswith("ERR"), line
    assert nvalid == "800" and nwarn == "1" and "not published" in " ".join(msg)
