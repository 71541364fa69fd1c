"""asbru demo: synthetic CHIPS traffic -> UDPCapture -> Ring -> file, verified.

What runs (all in this process, on 127.0.0.1):

* a **sender** thread: asbru's ``UDPTransmit`` sends CHIPS packets for 16 sources
  (132 channels each: 4224 payload bytes), paced with ``set_rate_limit``;
* the **capture** thread: ``UDPCapture`` receives them into a ``Ring`` (one gulp =
  ``--gulp`` time slots x 16 sources); a Bifrost-style sequence callback writes a JSON
  header;
* a **reader** thread: reads the ring (guaranteed reads) and writes every byte to a file,
  keeping the per-(time, source) "received" flags the capture attached;
* the main thread shows live statistics, then checks the file against what was sent:
  every (time, source) must hold exactly the bytes sent, or -- if the packet was lost --
  zeros with its flag cleared.

Exit status 0 when the file verifies, 1 when it does not.  ``--seconds`` sets the length.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from asbru.address import Address
from asbru.packet_capture import PacketCaptureCallback, UDPCapture
from asbru.packet_writer import HeaderInfo, UDPTransmit
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

HSIZE = 16            # CHIPS header bytes
NINPUT = 32           # payload bytes per channel (16 stands x 2 pols x ci4)
CHUNK = 25            # time slots per send() call
POOL = 251            # distinct random payloads the sender cycles through (prime)
CHAN0 = 1034


# --------------------------------------------------------------------------------------
# The data: a pure function of (seq, source), so the check can regenerate what was sent
class Payloads:
    def __init__(self, nsrc: int, payload: int, seed: int = 2024) -> None:
        self.nsrc = nsrc
        self.payload = payload
        self.pool = np.random.default_rng(seed).integers(0, 256, size=(POOL, payload), dtype=np.uint8)

    def block(self, seq0: int, ntime: int) -> np.ndarray:
        """Payloads of time slots ``seq0 .. seq0+ntime-1``: shape (ntime, nsrc, payload)."""
        seq = np.arange(seq0, seq0 + ntime, dtype=np.int64)[:, None]
        src = np.arange(self.nsrc, dtype=np.int64)[None, :]
        out = self.pool[(seq * 7 + src * 31) % POOL]
        # stamp (seq, src) into the first bytes: a misplaced packet can never look right
        out[:, :, 0:8] = seq.astype("<u8").view(np.uint8).reshape(ntime, 1, 8)
        out[:, :, 8] = src.astype(np.uint8)
        return out


def chips_slots(payloads: np.ndarray) -> np.ndarray:
    """Ring layout of CHIPS time slots: [time][channel][source][32 bytes]."""
    ntime, nsrc, p = payloads.shape
    return payloads.reshape(ntime, nsrc, p // NINPUT, NINPUT).transpose(0, 2, 1, 3)


# --------------------------------------------------------------------------------------
def compile_writer(fmt: str) -> None:
    """Compile (or load) UDPTransmit's kernels for ``fmt`` before the timed run."""
    from asbru import formats
    from asbru.capture.precompile import announce
    from asbru.cli.warmup import compile_one
    from asbru.formats import batch
    f = formats.get(fmt, "write")
    filler = sys.modules[batch.header_filler(f).__module__]
    with announce(filler, f.name, "write", entry="fill_headers"):   # says it only when compiling
        compile_one(f.name, "write")


class Sender(threading.Thread):
    def __init__(self, port: int, nsrc: int, nchan: int, rate: int, nslots: int) -> None:
        super().__init__(name="sender", daemon=True)
        self.sock = UDPSocket()
        self.sock.connect(Address("127.0.0.1", port))
        self.tx = UDPTransmit(f"chips_{nchan}", self.sock)
        self.tx.set_rate_limit(rate * nsrc)        # packets per second
        self.info = HeaderInfo()
        self.info.set_nchan(nchan)
        self.info.set_chan0(CHAN0)
        self.info.set_nsrc(nsrc)
        self.data = Payloads(nsrc, NINPUT * nchan)
        self.nslots = nslots
        self.sent = 0
        self.error: Optional[BaseException] = None
        self.stop = threading.Event()
        self.t_end = 0.0

    def run(self) -> None:
        try:
            for seq in range(0, self.nslots, CHUNK):
                if self.stop.is_set():
                    break
                n = min(CHUNK, self.nslots - seq)
                # CHIPS header seq is 1-based: header seq = seq + 1
                self.sent += self.tx.send(self.info, seq + 1, 1, 0, 1, self.data.block(seq, n))
        except BaseException as exc:
            self.error = exc
        finally:
            self.t_end = time.perf_counter()
            self.tx.close()
            self.sock.close()


class Capturer(threading.Thread):
    """recv() until the stream ends (a receive timeout after the sender finished)."""

    def __init__(self, cap: UDPCapture, sender: Sender) -> None:
        super().__init__(name="capture", daemon=True)
        self.cap = cap
        self.sender = sender
        self.statuses: list[int] = []
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            while True:
                s = int(self.cap.recv())
                self.statuses.append(s)
                if s in (4, 5, 6):            # NO_DATA, INTERRUPTED, ERROR
                    if not self.sender.is_alive():
                        break
                elif s == 1 and not self.sender.is_alive():  # ENDED after the last packet
                    break
        except BaseException as exc:
            self.error = exc
        finally:
            self.cap.end()                     # readers see the end of data


class Recorder(threading.Thread):
    """Write every sequence of the ring to ``path``; keep an index and the flags."""

    def __init__(self, ring: Ring, path: Path, span_size: int) -> None:
        super().__init__(name="recorder", daemon=True)
        self.ring = ring
        self.path = path
        self.span_size = span_size
        self.sequences: list[dict[str, Any]] = []
        self.flags: list[np.ndarray] = []
        self.nbytes = 0
        self.overwritten = 0
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            with open(self.path, "wb") as fh:
                for rseq in self.ring.read(guarantee=True):
                    hdr = json.loads(bytes(rseq.header).decode() or "{}")
                    entry = {"time_tag": int(rseq.time_tag), "header": hdr, "offset": self.nbytes,
                             "nbytes": 0}
                    self.sequences.append(entry)
                    flags = []
                    for span in rseq.read(self.span_size):
                        data = span.data_view(np.uint8)[0]
                        fh.write(memoryview(data))
                        if span.flags is not None:
                            flags.append(np.array(span.flags))
                        self.overwritten += span.size_overwritten
                        entry["nbytes"] += data.size
                        self.nbytes += data.size
                    self.flags.append(np.concatenate(flags) if flags else np.zeros((0, 0), np.uint8))
        except BaseException as exc:
            self.error = exc


# --------------------------------------------------------------------------------------
def make_callback() -> PacketCaptureCallback:
    """A Bifrost-style CHIPS sequence callback: JSON header, time tag = seq0."""
    keep: list[Any] = []

    def on_sequence(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        hdr = json.dumps({"seq0": seq0, "chan0": chan0, "nchan": nchan, "nsrc": nsrc,
                          "cfreq": (chan0 + 0.5 * (nchan - 1)) * 196e6 / 8192}).encode()
        buf = ctypes.create_string_buffer(hdr)
        keep[:] = [buf]
        time_tag_ptr[0] = seq0
        hdr_ptr[0] = ctypes.cast(buf, ctypes.c_void_p)
        hdr_size_ptr[0] = len(hdr)
        return 0

    cb = PacketCaptureCallback()
    cb.set_chips(on_sequence)
    return cb


def verify(rec: Recorder, data: Payloads, nsrc: int, nslots_sent: int) -> tuple[bool, str, int]:
    """Compare the file with the regenerated payloads; (ok, message, missing packets)."""
    p = data.payload
    sb = nsrc * p
    slot_chunk = 200
    missing = 0
    checked = 0
    seen: set[int] = set()
    with open(rec.path, "rb") as fh:
        for entry, flags in zip(rec.sequences, rec.flags):
            seq0 = int(entry["header"].get("seq0", entry["time_tag"]))
            nslots = entry["nbytes"] // sb
            if entry["nbytes"] % sb:
                return False, f"sequence at seq {seq0}: {entry['nbytes']} bytes is not whole slots", 0
            if flags.shape != (nslots, nsrc):
                return False, f"sequence at seq {seq0}: flags {flags.shape} != ({nslots}, {nsrc})", 0
            fh.seek(entry["offset"])
            for k in range(0, nslots, slot_chunk):
                n = min(slot_chunk, nslots - k)
                got = np.frombuffer(fh.read(n * sb), dtype=np.uint8).reshape(n, p // NINPUT, nsrc, NINPUT)
                want = chips_slots(data.block(seq0 + k, n)).copy()
                f = flags[k:k + n].astype(bool)
                want[np.broadcast_to(~f[:, None, :, None], want.shape)] = 0   # missing: zeros
                if not np.array_equal(got, want):
                    bad = np.nonzero((got != want).any(axis=(1, 3)))
                    t, s = int(bad[0][0]), int(bad[1][0])
                    return False, (f"slot seq {seq0 + k + t}, source {s} differs from what was sent "
                                   f"(flag {int(f[t, s])})"), 0
                missing += int((~f).sum())
                checked += n
                seen.update(range(seq0 + k, seq0 + k + n))
    never = nslots_sent - len(seen & set(range(nslots_sent)))
    return True, (f"{len(rec.sequences)} sequence(s), {checked} time slots x {nsrc} sources checked, "
                  f"{missing} missing packet(s) zero-filled and flagged"
                  + (f", {never} slot(s) at the edges never captured" if never else "")), missing


# --------------------------------------------------------------------------------------
def stats_row(cap: UDPCapture, sender: Sender, t0: float, last: dict) -> dict[str, Any]:
    st = cap.stats
    now = time.perf_counter()
    dt = max(now - last.get("t", t0), 1e-6)
    db = st["nvalid_bytes"] - last.get("bytes", 0)
    last.update(t=now, bytes=st["nvalid_bytes"])
    p = sender.data.payload
    return {"elapsed": now - t0, "sent": sender.sent, "packets": st["nvalid"],
            "gbps": db * 8 / dt / 1e9, "missing": st["nmissing_bytes"] // p, "late": st["nlate"],
            "invalid": st["ninvalid"], "drops": st["nkernel_drops"]}


def live_table(row: dict[str, Any]) -> Any:
    from rich.table import Table
    t = Table(title=f"asbru demo: CHIPS over 127.0.0.1 -> UDPCapture -> ring -> file  "
                    f"({row['elapsed']:.1f} s)")
    for col in ("sent", "packets", "Gbit/s", "missing", "late", "invalid", "kernel drops"):
        t.add_column(col, justify="right")
    t.add_row(f"{row['sent']:,}", f"{row['packets']:,}", f"{row['gbps']:.3f}", f"{row['missing']:,}",
              f"{row['late']:,}", f"{row['invalid']:,}", f"{row['drops']:,}")
    return t


def show(console: Any, capt: threading.Thread, row: Any) -> None:
    """Live statistics until the capture thread ends: a rich table on a terminal, one
    plain line a second otherwise (logs, CI)."""
    if console.is_terminal:
        from rich.live import Live
        with Live(live_table(row()), console=console, refresh_per_second=4) as live:
            while capt.is_alive():
                capt.join(0.25)
                live.update(live_table(row()))
        return
    while capt.is_alive():
        capt.join(1.0)
        r = row()
        print(f"[{r['elapsed']:5.1f} s] sent {r['sent']} packets {r['packets']} "
              f"{r['gbps']:.3f} Gbit/s missing {r['missing']} late {r['late']} "
              f"invalid {r['invalid']}", flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to send (default 30)")
    ap.add_argument("--nsrc", type=int, default=16, help="sources (default 16)")
    ap.add_argument("--nchan", type=int, default=132, help="channels per packet, 1..255 (default 132)")
    ap.add_argument("--rate", type=int, default=500, help="time slots per second (default 500, "
                                                          "i.e. 8000 packets/s for 16 sources)")
    ap.add_argument("--gulp", type=int, default=100, help="time slots per ring gulp (default 100)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the captured file at this path")
    a = ap.parse_args(argv)
    for name in ("nsrc", "nchan", "rate", "gulp"):
        if getattr(a, name) <= 0:
            ap.error(f"--{name} must be positive")
    if a.nchan > 255 or a.nsrc > 255 or a.seconds <= 0:
        ap.error("--nchan and --nsrc must be 1..255 and --seconds positive")

    from rich.console import Console
    console = Console(soft_wrap=True)
    nslots = max(CHUNK, int(round(a.seconds * a.rate)))
    payload = NINPUT * a.nchan

    rsock = UDPSocket(buffer_size=64 << 20)
    rsock.bind(Address("127.0.0.1", 0))
    rsock.timeout = 0.5
    with socket.socket(fileno=os.dup(rsock.fileno())) as probe:
        port = int(probe.getsockname()[1])          # the port the kernel chose
    ring = Ring(name=f"demo_{os.getpid()}")
    console.print(f"[bold]asbru demo[/bold]: {a.nsrc} sources x {a.nchan} channels "
                  f"({HSIZE + payload} B packets), {a.rate} slots/s = {a.rate * a.nsrc:,} packets/s "
                  f"for {a.seconds:g} s -> 127.0.0.1:{port}")
    # the capture compiles its loop when it is made (saying so on a first run), the sender's
    # kernels are compiled here: the clock below starts with both ready
    cap = UDPCapture("chips", rsock, ring, a.nsrc, 0, 9000, a.gulp, a.gulp, make_callback())
    compile_writer(f"chips_{a.nchan}")

    tmp = None
    if a.keep is not None:
        path = a.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="asbru-demo-")
        path = Path(tmp.name) / "capture.dat"
    try:
        sender = Sender(port, a.nsrc, a.nchan, a.rate, nslots)
        rec = Recorder(ring, path, a.gulp * a.nsrc * payload)
        capt = Capturer(cap, sender)
        rec.start()
        capt.start()
        t0 = time.perf_counter()
        sender.start()
        last: dict = {}
        try:
            show(console, capt, lambda: stats_row(cap, sender, t0, last))
        except KeyboardInterrupt:      # Ctrl-C: stop sending, then verify what was sent
            sender.stop.set()
            console.print("interrupted: stopping the sender, verifying what was sent so far")
            show(console, capt, lambda: stats_row(cap, sender, t0, last))
        sender.stop.set()
        sender.join(10)
        rec.join(30)
        rsock.close()
        for th in (sender, capt, rec):
            if th.error is not None:
                console.print(f"[red]{th.name} failed: {th.error!r}[/red]")
                return 1
        if rec.is_alive():
            console.print("[red]the ring reader did not finish[/red]")
            return 1

        st = cap.stats
        npkt = st["nvalid"]
        # average over the sending time (the capture then waits one receive timeout)
        gbps = st["nvalid_bytes"] * 8 / max(sender.t_end - t0, 1e-9) / 1e9
        ok, msg, missing = verify(rec, sender.data, a.nsrc, sender.sent // a.nsrc)
        if rec.overwritten:
            ok, msg = False, f"the reader lost {rec.overwritten} bytes to overwriting"
        console.print(f"summary: packets {npkt:,} received of {sender.sent:,} sent, "
                      f"{gbps:.3f} Gbit/s (payload), missing {missing:,}, late {st['nlate']:,}, "
                      f"invalid {st['ninvalid']:,}, file {rec.nbytes / 1e6:.1f} MB")
        if ok:
            console.print(f"verified: ring file equals what was sent ({msg})")
            return 0
        console.print(f"[red]NOT verified[/red]: {msg}")
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
