"""examples/demo.py (``make demo``): a shortened run in a subprocess exits 0 with the summary;
its verification really compares bytes (a corrupted file fails, a lost packet that is zero
and flagged passes)."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.py"


def _load_demo():
    spec = importlib.util.spec_from_file_location("asbru_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_short_demo_runs_and_verifies(tmp_path):
    out = tmp_path / "capture.dat"
    proc = subprocess.run([sys.executable, str(DEMO), "--seconds", "3", "--rate", "250",
                           "--keep", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    m = re.search(r"summary: packets ([\d,]+) received of ([\d,]+) sent", proc.stdout)
    assert m, proc.stdout[-1500:]
    received, sent = (int(g.replace(",", "")) for g in m.groups())
    assert sent == 3 * 250 * 16 and 0 < received <= sent
    assert "verified: ring file equals what was sent" in proc.stdout
    # the file holds whole time slots of 16 sources x 132 channels x 32 bytes
    assert out.stat().st_size > 0 and out.stat().st_size % (16 * 132 * 32) == 0


class _Rec:
    """What verify() reads from the recorder: the file, its sequences and flags."""

    def __init__(self, path, seq0, nbytes, flags):
        self.path = path
        self.sequences = [{"time_tag": seq0, "header": {"seq0": seq0}, "offset": 0, "nbytes": nbytes}]
        self.flags = [flags]


def test_verify_compares_every_byte(tmp_path):
    demo = _load_demo()
    nsrc, nchan, ntime, seq0 = 3, 2, 10, 40
    data = demo.Payloads(nsrc, 32 * nchan)
    slots = demo.chips_slots(data.block(seq0, ntime)).copy()
    flags = np.ones((ntime, nsrc), dtype=np.uint8)
    # a lost packet: zeros and flag 0 is what the capture writes -> verifies
    slots[4, :, 1, :] = 0
    flags[4, 1] = 0
    path = tmp_path / "f.dat"
    path.write_bytes(slots.tobytes())
    ok, msg, missing = demo.verify(_Rec(path, seq0, slots.size, flags), data, nsrc, seq0 + ntime)
    assert ok and missing == 1, msg
    # one flipped byte anywhere -> fails, naming the slot and source
    raw = bytearray(slots.tobytes())
    pos = (7 * nchan * nsrc + 1 * nsrc + 2) * 32 + 5       # slot 7, channel 1, source 2
    raw[pos] ^= 0x40
    path.write_bytes(bytes(raw))
    ok, msg, _ = demo.verify(_Rec(path, seq0, slots.size, flags), data, nsrc, seq0 + ntime)
    assert not ok and f"seq {seq0 + 7}, source 2" in msg
    # a flagged-missing slot that is not zero -> fails
    path.write_bytes(slots.tobytes())
    flags[2, 0] = 0
    ok, msg, _ = demo.verify(_Rec(path, seq0, slots.size, flags), data, nsrc, seq0 + ntime)
    assert not ok and f"seq {seq0 + 2}, source 0" in msg
