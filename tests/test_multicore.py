"""One capture received by N threads into one ring (asbru/capture/group, docs/multicore.md).

Real loopback sockets, 16 sources each sending from its own UDP socket (so that steering by
source spreads them over the receive threads), N = 2 and 4 receive threads.  The stream
has gaps, duplicates, late packets, a sequence change and a slow ring reader; every
assertion compares against a single-thread UDPCapture given the very same stream: ring
bytes, flags, time tags, and counts (totals and the per-thread rows summing to them).

The stream is sent one gulp at a time, the next only when the capture has received the
previous one: the threads' relative progress is then bounded (the test machine has two
cores for several threads), so that what is late, duplicate or missing is decided by the
stream alone, as it must be for the two captures to agree.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Optional

import numpy as np
import pytest

from asbru.address import Address
from asbru.capture.testing import RingCollector, TERMINAL
from asbru.errors import ArgumentError
from asbru.packet_capture import PacketCaptureCallback, UDPCapture
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

from helpers.chips_stream import NCHAN, NSRC, NTIME, SEQ0, chips

def stream() -> list[list[tuple[int, bytes]]]:
    """The test stream, one list of (source, datagram) per gulp sent."""
    gulps = []
    rng = np.random.default_rng(17)
    nold = 10
    for g in range(nold + 5):
        chan0 = 100 if g < nold else 228             # gulp nold: the sequence changes
        base = SEQ0 + g * NTIME
        pk = []
        for t in range(NTIME):
            for s in range(NSRC):
                if (g, t, s) in ((1, 3, 5), (4, 0, 0), (11, 7, 15)) or (g == 6 and t == 9):
                    continue                          # gaps (one a whole time slot)
                pk.append((s, chips(s, base + t, chan0)))
                if rng.random() < 0.01:
                    pk.append((s, chips(s, base + t, chan0)))           # a duplicate
        if 3 <= g < nold:
            for s in (2, 9):                          # late: two gulps and more behind
                pk.append((s, chips(s, base - 2 * NTIME - 3, chan0, fill=0xEE)))
        gulps.append(pk)
    return gulps


class SlowCollector(RingCollector):
    """A guaranteed reader that sleeps after each span: the capture waits for it."""

    def __init__(self, ring, span_size, delay):
        self.delay = delay
        super().__init__(ring, span_size)

    def _run(self):
        try:
            for rseq in self.ring.read(guarantee=True):
                from asbru.capture.testing import CollectedSequence
                cs = CollectedSequence(int(rseq.time_tag), bytes(rseq.header))
                self.sequences.append(cs)
                for span in rseq.read(min(self.span_size, int(self.ring.contiguous_span))):
                    cs.chunks.append(np.array(span.data_view(np.uint8)[0]))
                    if span.flags is not None:
                        cs.flag_chunks.append(np.array(span.flags))
                    time.sleep(self.delay)
        except BaseException as exc:
            self.error = exc


def capture_stream(threads: int, gulps, delay: float = 0.0, **kw):
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", 0))
    sock.timeout = 0.5
    port = sock._sock.getsockname()[1]
    ring = Ring(name=f"mc_{threads}_{id(gulps) & 0xffff:x}_{time.monotonic_ns() & 0xffffff:x}")
    calls = []
    cb = PacketCaptureCallback()

    def on_seq(seq0, chan0, nchan, nsrc):
        calls.append((seq0, chan0, nchan, nsrc))
        return seq0, None

    cb.set_chips(on_seq)
    cap = UDPCapture("chips", sock, ring, NSRC, 0, 9000, NTIME, 1, cb, threads=threads, **kw)
    gulp_bytes = NTIME * NSRC * 32 * NCHAN
    col = SlowCollector(ring, gulp_bytes, delay)
    statuses = []
    done = threading.Event()

    def receive():
        try:
            while True:
                st = int(cap.recv())
                statuses.append(st)
                if st in TERMINAL and done.is_set():
                    return
        except BaseException as exc:  # surfaced below
            statuses.append(exc)

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    senders = []
    for _ in range(NSRC):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        senders.append(s)
    sent = 0
    t_end = time.monotonic() + 60
    try:
        for pk in gulps:
            for s, data in pk:
                senders[s].sendto(data, ("127.0.0.1", port))
            sent += len(pk)
            while cap.stats["nreceived"] < sent:
                assert time.monotonic() < t_end, "the capture stopped receiving"
                time.sleep(0.002)
        done.set()
        rx.join(30)
        assert not rx.is_alive()
        cap.end()
        seqs = col.join(30)
    finally:
        for s in senders:
            s.close()
        sock.close()
    assert not any(isinstance(x, BaseException) for x in statuses), statuses
    return cap, seqs, calls, sent


@pytest.fixture(scope="module")
def single():
    gulps = stream()
    return gulps, capture_stream(1, gulps)


COUNTS = ("nvalid", "nvalid_bytes", "nlate", "nlate_bytes", "nduplicate", "nduplicate_bytes",
          "ninvalid", "ngood_bytes", "nmissing_bytes", "nreceived", "nsequences")


@pytest.mark.parametrize("threads,delay", [(2, 0.0), (4, 0.0), (4, 0.02)])
def test_n_threads_fill_one_ring_exactly(single, threads, delay):
    gulps, (cap1, seqs1, calls1, sent) = single
    capn, seqsn, callsn, sentn = capture_stream(threads, gulps, delay)
    assert sent == sentn
    s1, sn = cap1.stats, capn.stats
    # every datagram counted once, as by one thread
    assert {k: sn[k] for k in COUNTS} == {k: s1[k] for k in COUNTS}
    assert s1["nreceived"] == sent
    assert s1["nvalid"] + s1["nlate"] + s1["nduplicate"] + s1["ninvalid"] == sent
    assert s1["nsequences"] == 2 and s1["nlate"] == 2 * 7 and s1["nduplicate"] > 0
    for key in ("valid", "late", "duplicate", "missing"):
        assert np.array_equal(sn["per_source"][key], s1["per_source"][key]), key
    # the per-thread rows add up to the totals, and the followers did place packets
    rows = sn["per_thread"]
    assert len(rows) == threads + 1 and sn["threads"] == threads
    for k in ("nreceived", "nvalid", "nlate", "nduplicate", "ninvalid"):
        assert sum(r[k] for r in rows) == sn[k], k
    assert sum(r["nvalid"] for r in rows[1:]) > sn["nvalid"] // 2
    assert sum(1 for r in rows[1:] if r["nreceived"] > 0) >= 2     # steered over threads
    # the sequence callback: once per sequence, with the same arguments
    assert callsn == calls1 and len(calls1) == 2
    # the ring: same sequences, time tags, bytes and flags
    assert [(q.time_tag, q.header) for q in seqsn] == [(q.time_tag, q.header) for q in seqs1]
    for a, b in zip(seqsn, seqs1):
        assert a.data.size == b.data.size and np.array_equal(a.data, b.data)
        fa, fb = a.flags, b.flags
        assert (fa is None) == (fb is None)
        if fa is not None:
            assert np.array_equal(fa, fb)


def test_ring_holds_the_stream_with_zeroed_gaps(single):
    gulps, (cap1, seqs1, calls1, sent) = single
    first = seqs1[0].data.reshape(-1, NCHAN, NSRC, 32)      # [time][chan][src][32]
    t0 = calls1[0][0]
    assert t0 == SEQ0
    want = np.frombuffer(chips(3, SEQ0 + 2)[16:], np.uint8).reshape(NCHAN, 32)
    assert np.array_equal(first[2, :, 3], want)
    assert not first[1 * NTIME + 3, :, 5].any()             # a gap: zeros
    assert not first[6 * NTIME + 9].any()                   # a whole empty time slot


class TwoPorts:
    """A capture on two sockets (``socks=[b]``: one receive thread each), sources split
    over the ports by parity, a collector on its ring and a thread calling recv() until the
    stream ends; ``finish()`` ends it all and returns the collected sequences."""

    def __init__(self, tag: str, **kw) -> None:
        self.a, self.b = UDPSocket(), UDPSocket()
        self.a.bind(Address("127.0.0.1", 0))
        self.b.bind(Address("127.0.0.1", 0))
        self.a.timeout = 0.3
        self.ports = [self.a._sock.getsockname()[1], self.b._sock.getsockname()[1]]
        ring = Ring(name=f"mc_{tag}_{time.monotonic_ns() & 0xffffff:x}")
        self.cap = UDPCapture("chips", self.a, ring, NSRC, 0, 9000, NTIME, 1, None,
                              socks=[self.b], **kw)
        self.col = RingCollector(ring, NTIME * NSRC * 32 * NCHAN)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.statuses: list = []

    def start(self) -> None:
        st = self.statuses
        self.rx = threading.Thread(target=lambda: st.extend(
            int(self.cap.recv()) for _ in iter(lambda: bool(st) and st[-1] in TERMINAL, True)))
        self.rx.start()

    def send(self, src: int, seq: int, port: Optional[int] = None) -> None:
        self.tx.sendto(chips(src, SEQ0 + seq), ("127.0.0.1", self.ports[src % 2 if port is None else port]))

    def finish(self):
        self.rx.join(30)
        self.cap.end()
        return self.col.join(30)

    def close(self) -> None:
        self.tx.close()
        self.a.close()
        self.b.close()


def test_sockets_per_address(single):
    """socks=[...]: one receive thread per socket (here two ports, sources split by port)."""
    cpu = min(os.sched_getaffinity(0))
    two = TwoPorts("socks", cores=[cpu, cpu])
    cap = two.cap
    try:
        two.start()
        sent = 0
        for t in range(4 * NTIME):
            for s in range(NSRC):
                two.send(s, t)
            sent += NSRC
            if t == 20:      # a copy that arrives on the other socket: one duplicate
                two.send(3, 19, port=0)
                sent += 1
            if t % NTIME == NTIME - 1:
                # a gulp at a time (see the module doc): a backlog on one socket larger
                # than the window would make its packets late
                deadline = time.monotonic() + 30
                while cap.stats["nreceived"] < sent and time.monotonic() < deadline:
                    time.sleep(0.002)
        seqs = two.finish()
    finally:
        two.close()
    d = cap.stats
    assert d["nvalid"] == 4 * NTIME * NSRC and d["nmissing_bytes"] == 0, (d["per_thread"], d["nlate"], d["nsequences"], d["ninvalid"])
    assert d["nduplicate"] == 1 and d["per_source"]["duplicate"][3] == 1
    assert [r["nreceived"] for r in d["per_thread"][1:]] == [2 * NTIME * NSRC + 1, 2 * NTIME * NSRC]
    assert sum(r["nvalid"] for r in d["per_thread"]) == d["nvalid"]
    data = seqs[0].data.reshape(-1, NCHAN, NSRC, 32)
    assert np.array_equal(data[7, :, 12], np.frombuffer(chips(12, SEQ0 + 7)[16:], np.uint8).reshape(NCHAN, 32))


def test_receive_threads_go_on_placing_while_a_gulp_is_committed():
    """A commit takes only the committed gulp away from the receive threads: they go on
    placing the next gulp's packets meanwhile (they used to be paused for every commit,
    the slowest thread too: on the 16-core host that held N = 2 and 4 threads to 0.6-0.8
    of N independent C receivers).  The leader's commit is held here until the threads
    have placed something, or for 3 s."""
    from asbru.capture import layout as L
    two = TwoPorts("commit")
    cap = two.cap
    fcnt = cap.stats_obj.fcnt
    committing = threading.Event()
    during: list[int] = []
    commit = cap._commit

    def held_commit(g, nslots, next_size=0):
        if not during:
            before = int(fcnt[:, L.C_NVALID].sum())
            committing.set()
            deadline = time.monotonic() + 3.0
            while int(fcnt[:, L.C_NVALID].sum()) == before and time.monotonic() < deadline:
                time.sleep(0.002)
            during.append(int(fcnt[:, L.C_NVALID].sum()) - before)
        return commit(g, nslots, next_size)

    cap._commit = held_commit
    sent = 0

    def send(pairs):
        nonlocal sent
        for s, t in pairs:
            two.send(s, t)
        sent += len(pairs)

    def placed_all(deadline=30.0):
        t_end = time.monotonic() + deadline
        while cap.stats["nvalid"] < sent and time.monotonic() < t_end:
            time.sleep(0.002)

    try:
        two.start()
        send([(s, t) for t in range(NTIME) for s in range(NSRC)])        # gulp 0
        placed_all()
        send([(0, NTIME)])                 # gulp 1 opens (a window of gulps 0 and 1)
        placed_all()
        send([(0, 2 * NTIME)])             # beyond the window: gulp 0 is committed
        assert committing.wait(30), "the capture never committed gulp 0"
        # the rest of gulp 1, sent while the leader is in the middle of the commit
        send([(s, t) for t in range(NTIME, 2 * NTIME) for s in range(NSRC) if (s, t) != (0, NTIME)])
        placed_all()
        send([(s, t) for t in range(2 * NTIME, 3 * NTIME) for s in range(NSRC)
              if (s, t) != (0, 2 * NTIME)])
        placed_all()
        seqs = two.finish()
    finally:
        two.close()
    assert during and during[0] > 0, "the receive threads placed nothing while gulp 0 was committed"
    d = cap.stats
    assert d["nvalid"] == sent == 3 * NTIME * NSRC and d["nlate"] == 0 and d["nmissing_bytes"] == 0
    data = seqs[0].data.reshape(-1, NCHAN, NSRC, 32)
    assert np.array_equal(data[NTIME + 5, :, 9],
                          np.frombuffer(chips(9, SEQ0 + NTIME + 5)[16:], np.uint8).reshape(NCHAN, 32))


def test_bad_group_arguments():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", 0), reuse_port=False)
    try:
        with pytest.raises(ArgumentError, match="threads must be an integer"):
            UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, threads=0)
        with pytest.raises(ArgumentError, match="SO_REUSEPORT"):
            UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, threads=2)
        with pytest.raises(ArgumentError, match="one thread per socket"):
            UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, threads=3, socks=[s])
        with pytest.raises(ArgumentError, match="cores must list 2 CPU numbers"):
            UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, socks=[s], cores=[0])
        with pytest.raises(ArgumentError, match="cores: pins receive threads"):
            UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, cores=[0])
    finally:
        s.close()


def test_one_thread_is_the_single_thread_capture():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", 0))
    try:
        cap = UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, threads=1)
        assert type(cap) is UDPCapture and "per_thread" not in cap.stats
        cap.end()
    finally:
        s.close()


def test_threads_steer_each_sender_to_one_socket():
    """threads=N: the BPF program gives sender (address, port) the socket
    (address ^ port) % N of the SO_REUSEPORT group, whatever the packets say."""
    n = 4
    s = UDPSocket()
    s.bind(Address("127.0.0.1", 0))
    s.timeout = 0.3
    port = s._sock.getsockname()[1]
    cap = UDPCapture("chips", s, None, NSRC, 0, 9000, NTIME, 1, None, threads=n)
    if cap.steering != "SO_REUSEPORT by source":
        cap.end()
        s.close()
        pytest.skip(f"the kernel refused the steering program ({cap.steering})")
    senders = []
    want = [0] * n
    try:
        for k in range(8):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.bind(("127.0.0.1", 0))
            senders.append(tx)
            sport = tx.getsockname()[1]
            for t in range(5):
                tx.sendto(chips(k, SEQ0 + t), ("127.0.0.1", port))
            want[(0x7F000001 ^ sport) % n] += 5
        st = []
        while not st or st[-1] not in TERMINAL:
            st.append(int(cap.recv()))
        cap.end()
    finally:
        for tx in senders:
            tx.close()
        s.close()
    assert [r["nreceived"] for r in cap.stats["per_thread"][1:]] == want


def test_cli_capture_threads(tmp_path):
    """``asbru capture --threads 2``: the command's capture on two receive threads records
    every packet of a generated stream (sent by two senders), each once."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from helpers.cli import free_udp_port, run_json, start, stop, wait_published
    port = free_udp_port()
    got = tmp_path / "cap.dat"
    cap = start("capture", "chips_4", "--bind", f"127.0.0.1:{port}", "--nsrc", "4", "--threads", "2",
                "--out", str(got), "--packets", "1600", "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        for seed in (1, 2):      # two senders (two source ports): both threads may get some
            sent = run_json("generate", "chips_4", "--to", f"127.0.0.1:{port}", "--nsrc", "4",
                            "--ntime", "200", "--rate", "4000", "--seed", str(seed), "--json")
            assert sent["send_failed"] == 0
        out, err = cap.communicate(timeout=120)
    finally:
        stop(cap)
    assert cap.returncode == 0, err
    summary = __import__("json").loads([ln for ln in out.splitlines() if ln.strip()][-1])
    assert summary["received"] == 1600 and summary["kept"] == 1600
    rep = run_json("inspect", str(got), "--format", "chips_4", "--nsrc", "4", "--json")
    assert rep["packets"] == rep["valid"] == 1600 and rep["invalid"] == 0


def test_cli_threads_bad_value():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "asbru", "capture", "chips", "--bind", "127.0.0.1:0",
                        "--threads", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--threads" in r.stderr and "Traceback" not in r.stderr
