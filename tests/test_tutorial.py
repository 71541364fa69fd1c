"""The seed tutorial (Bifrost's 06_data_capture) runs with asbru: examples/tutorial_data_capture.py.

Runs the script in a subprocess (its own cwd, a free port, bounded time) and checks what it
prints: the CHIPS capture's sequence callback lines (seq0, time_tag, CFREQ), that every
packet sent was captured, and that the TBN writer's Input/Output pairs agree with each
other and with the file it wrote.  A second test checks that the script's copy of the
tutorial code is the notebook's, line for line, apart from bifrost -> asbru and the lines
marked ``CHANGED``.
"""
from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "tutorial_data_capture.py"
from helpers.vectors_path import SEED as SEED_DIR  # noqa: E402

SEED = SEED_DIR / "data_capture_tutorial.md"
TIMEOUT = 240  # s, the whole script (it waits 5 s for the tutorial's socket timeout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("tutorial")
    env = dict(os.environ, ASBRU_TUTORIAL_PORT=str(_free_port()), ASBRU_TUTORIAL_NTIME="500")
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    return proc, cwd, t0


def test_script_exits_zero(run):
    proc, _, _ = run
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_capture_callback_lines(run):
    proc, _, t0 = run
    out = proc.stdout
    seq0 = re.findall(r"^\+{16} seq0\s+= (\d+)$", out, re.M)
    tags = re.findall(r"^\s+time_tag = (\d+)$", out, re.M)
    cfreq = re.findall(r"^\*{8} CFREQ: ([0-9.e+]+)$", out, re.M)
    assert seq0 == ["0"], out          # one sequence, first spectrum = seq 0
    assert len(tags) == 1 and len(cfreq) == 1, out
    tt = int(tags[0])
    # time_tag = whole UTC seconds at the start (utc_start) x 196 MHz + seq0 x 7840 ticks
    assert tt % 196_000_000 == 0
    assert abs(tt / 196e6 - t0) < 600
    assert float(cfreq[0]) == pytest.approx((1000 + 0.5 * 63) * 25e3)


def test_capture_received_every_packet(run):
    proc, _, _ = run
    m = re.search(r"^Sent: (\d+) CHIPS packets", proc.stdout, re.M)
    c = re.search(r"^Captured: nvalid = (\d+), ngood_bytes = (\d+), nmissing_bytes = (\d+), "
                  r"ninvalid = (\d+)$", proc.stdout, re.M)
    assert m and c, proc.stdout
    nsent = int(m.group(1))
    assert nsent == 16 * 500
    nvalid, ngood, nmissing, ninvalid = map(int, c.groups())
    assert nvalid == nsent and ngood == nsent * 32 * 64
    assert nmissing == 0 and ninvalid == 0


def _pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"\((-?\d+), (-?\d+)\)", text)]


def test_writer_input_and_output_agree(run):
    proc, cwd, _ = run
    out = proc.stdout
    assert "Input:" in out and "Output:" in out, out
    inp, outp = out.split("Input:")[1].split("Output:")
    lines = [ln for ln in inp.strip().splitlines() if "->" in ln]
    assert len(lines) == 5
    quantized = []
    for k, ln in enumerate(lines):
        m = re.match(r"^\s*(\d) @ 0 : \(?(.+?)\)? -> \((-?\d+), (-?\d+)\)$", ln)
        assert m, ln
        assert int(m.group(1)) == k
        value = complex(m.group(2).replace(" ", ""))
        re_q, im_q = int(m.group(3)), int(m.group(4))
        # quantize(scale=2): the printed value is data*2, rounded (half to even) to ci8
        assert abs(value.real - re_q) <= 0.5 + 1e-4 and abs(value.imag - im_q) <= 0.5 + 1e-4
        quantized.append((re_q, im_q))
    written = _pairs(outp.strip().splitlines()[0])
    assert written == quantized
    # the file: 10 frames x 16 inputs of 1048-byte TBN packets, first payload as printed
    data = (cwd / "output.dat").read_bytes()
    assert len(data) == 10 * 16 * 1048
    first = [(int.from_bytes(data[24 + 2 * k:25 + 2 * k], "little", signed=True),
              int.from_bytes(data[25 + 2 * k:26 + 2 * k], "little", signed=True)) for k in range(5)]
    assert first == quantized
    assert data[:4] == bytes.fromhex("dec0de5c")


# ---- the script carries the notebook's code ---------------------------------------------
def _seed_cells() -> list[str]:
    text = SEED.read_text()
    cells = re.split(r"^In \[\d+\]:\n", text, flags=re.M)[1:]
    return [c.split("\n\n\n")[0] if "class CaptureOp" not in c else c.split("\nThis block")[0]
            for c in cells]


def _norm(line: str) -> str:
    return line.replace("bifrost", "asbru").rstrip()


def _block(lines: list[str], start: str, end: str) -> list[str]:
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith(start))
    j = next(k for k in range(i, len(lines)) if lines[k].strip().startswith(end))
    return lines[i:j + 1]


@pytest.mark.skipif(not SEED.exists(), reason=f"the seed tutorial not available: {SEED} is absent "
                    "(set ASBRU_SHARED or ASBRU_VECTORS)")
@pytest.mark.parametrize("start,end", [("class CaptureOp", "del capture"),
                                       ("with open('output.dat', 'wb')", "bfo.send(desc"),
                                       ("import struct", "print(list(zip(i,q))[:5])")])
def test_script_code_is_the_notebooks(start, end):
    seed = [_norm(ln) for c in _seed_cells() for ln in c.splitlines()]
    ours = SCRIPT.read_text().splitlines()
    a = [ln for ln in _block(seed, start, end) if ln.strip()]
    b = [ln for ln in _block(ours, start, end) if ln.strip() and not ln.strip().startswith("#")]
    indent = len(b[0]) - len(b[0].lstrip())
    b = [ln[indent:] if ln[:indent].strip() == "" else ln for ln in b]
    a_indent = len(a[0]) - len(a[0].lstrip())
    a = [ln[a_indent:] for ln in a]
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        if "# CHANGED" in y:
            continue
        assert x.rstrip() == y.rstrip(), f"notebook: {x!r}\nscript:   {y!r}"


def test_script_is_valid_python():
    ast.parse(SCRIPT.read_text())
