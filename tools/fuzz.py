#!/usr/bin/env python3
"""Push millions of malformed packets through every capturable format's compiled decode +
place path and prove that nothing is read or written outside a buffer.

    python tools/fuzz.py [--packets N] [--format F ...] [--boundscheck [--bc-packets M]]

Per format, a compiled loop (generated per format like asbru's own batch kernels, so
numba's cache works) takes valid packets written by asbru's writers and mutates them:
truncation, bit flips, header fields set to absurd values (0, all ones, huge, 1, random:
zero decimation/navg/nchan, huge seq, src out of range, nchan larger than the payload),
random garbage, over-long packets.  Each packet goes through the format's ``decode`` and,
when VALID and acceptable to the engine (src in range, payload size equal to the
sequence's), through ``place`` into a ring time slot surrounded by guard bytes; every
eighth valid packet also zero-fills a random source (what the engine does for a missing
packet).  Printed per format: packets, valid / invalid / hold counts, packets/s, contract
violations (decode VALID with src out of range or a payload outside the packet) and
guard-byte violations.  Both must be 0.

``--boundscheck`` re-runs the same loops in a subprocess with ``NUMBA_BOUNDSCHECK=1`` and a
private numba/asbru kernel cache (so nothing compiled without bounds checks is reused):
any out-of-bounds *read* or write then raises IndexError, which is reported and fails
the run.  The subprocess first proves bounds checking is on.

The module is also imported by tests/test_fuzz_formats.py (``FUZZ_FORMATS``,
``templates``, ``fuzzer``, ``run``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asbru import formats  # noqa: E402
from asbru.cli.synth import Recipe, build_clean, recipe_for  # noqa: E402
from asbru.cli.warmup import example_string  # noqa: E402
from asbru.formats import engine, spec  # noqa: E402

from tools import fuzz_kernel  # noqa: E402  (the compiled loop: a template bound per format)
from tools.fuzz_kernel import NCOUNT  # noqa: E402,F401
COUNT_NAMES = ("valid", "invalid", "hold", "placed", "zero_fills", "rejected_size",
               "bad_src", "bad_payload", "guard_violations", "held_then_valid",
               "held_then_invalid", "held_then_hold")

GUARD = 256   # guard bytes before and after every time slot
NSLOT = 16    # time slots (seq mod NSLOT)
EXTRA = 64    # packets may grow this far beyond the longest template
#: the decode state is zeroed every this many packets (as at a capture start), so that the
#: learning formats keep being exercised (a format that learns its rate from the stream holds
#: what comes before it has learnt)
RESET_EVERY = 4096


@dataclasses.dataclass
class FuzzFormat:
    """How to make valid packets of one capturable format (from the format's declarations)."""
    name: str          # registry name
    capture: str       # format string for the capture role
    write: str         # writer format string used to make templates
    nsrc: int
    src0: int
    recipe: Recipe     # the format's synth_recipe: header values, sources, seq steps
    ntime: int = 6


FUZZ_NSRC = 4          # sources per stream, or the most below it that the format allows


def _fuzz_format(name: str) -> FuzzFormat | None:
    """The fuzz setup of registered format ``name``, asked of the format itself: a writer
    string and a capture string (``asbru warmup``'s example strings), and the stream
    ``asbru generate`` makes of it (its ``synth_recipe``).  None for a format that cannot
    be both written and captured, or declares no recipe."""
    write = example_string(name, "write")
    capture = example_string(name, "capture")
    if write is None or capture is None:
        return None
    wf = formats.get(write, "write")
    if getattr(wf.module, "synth_recipe", None) is None:
        return None
    for nsrc in range(FUZZ_NSRC, 0, -1):
        recipe = recipe_for(wf, nsrc)
        if (recipe.max_nsrc is None or nsrc <= recipe.max_nsrc) and not recipe.check_nsrc(nsrc):
            break
    else:
        return None
    # the bare capture string where it reads the writer's packets (it accepts more header
    # values to mutate), else the string the recipe reads them with
    ff = FuzzFormat(name, capture, write, nsrc, recipe.src0, recipe, max(6, recipe.learn_steps + 2))
    cf = formats.get(capture, "capture")
    pkts = stream_of(ff, ff.ntime)
    cfg, state = cf.capture_config(nsrc, ff.src0), np.zeros(spec.NSTATE, dtype=np.int64)
    for _pass in range(2):           # twice: a learning format holds the first ones
        ok = [cf.decode(np.frombuffer(p, np.uint8).copy(), cfg, state,
                        np.full(spec.NDESC, -1, dtype=np.int64)) for _t, _s, p in pkts]
    if ok[-1] != spec.VALID:
        ff.capture = recipe.reader
    return ff


def stream_of(ff: FuzzFormat, ntime: int, seed: int = 0) -> list[tuple[int, int, bytes]]:
    """Valid packets of ``ff`` for ``ntime`` time steps, in send order, as ``(time index,
    source index, bytes)`` (written by the format's header filler, as ``asbru generate``)."""
    wf = formats.get(ff.write, "write")
    rows = build_clean(wf, ff.recipe, ff.nsrc, ntime, np.random.default_rng(seed))
    return [(k // ff.nsrc, k % ff.nsrc, rows[k].tobytes()) for k in range(rows.shape[0])]


FUZZ_FORMATS: dict[str, FuzzFormat] = {
    ff.name: ff for ff in (_fuzz_format(n) for n in formats.list()) if ff is not None}


def stream(name: str, ntime: int, seed: int = 0) -> list[tuple[int, int, bytes]]:
    """Valid packets of ``name`` for ``ntime`` time steps, in send order, as
    ``(time index, source index, bytes)`` (written by asbru's header fillers)."""
    return stream_of(FUZZ_FORMATS[name], ntime, seed)


def templates(name: str, seed: int = 0) -> tuple[formats.Format, np.ndarray, np.ndarray, int]:
    """(capture Format, templates uint8[ntpl, maxlen], lengths int64[ntpl], P): valid packets
    of ``name`` in stream order; P = their payload size (the sequence's)."""
    ff = FUZZ_FORMATS[name]
    p = int(formats.get(ff.write, "write").params.payload_size)
    cf = formats.get(ff.capture, "capture")
    pkts = [x[2] for x in stream(name, ff.ntime, seed)]
    maxlen = max(len(x) for x in pkts)
    tpl = np.zeros((len(pkts), maxlen), dtype=np.uint8)
    lens = np.zeros(len(pkts), dtype=np.int64)
    for i, x in enumerate(pkts):
        tpl[i, :len(x)] = np.frombuffer(x, dtype=np.uint8)
        lens[i] = len(x)
    return cf, tpl, lens, p


def field_table(fmt: formats.Format) -> np.ndarray:
    """int64[nfield, 2]: (offset, nbytes) of every header field, plus each bit field's
    enclosing bytes (so bit fields get absurd values too)."""
    rows = [(f.offset, f.nbytes) for f in fmt.header.fields]
    if not rows:
        rows = [(0, 1)]
    return np.asarray(rows, dtype=np.int64)




def fuzzer(fmt: formats.Format) -> Callable:
    """The compiled ``fuzz_run`` for ``fmt`` (:mod:`tools.fuzz_kernel` bound to it)."""
    m = engine.importable_name(fmt.module)
    mod = engine.bound_module(f"fuzz_{fmt.name}", fuzz_kernel,
                              {"_decode": f"{m}:decode", "_place": f"{m}:place"},
                              depends_on=(spec,))
    return mod.fuzz_run


class Fuzz:
    """Buffers and compiled loop of one format; :meth:`run` feeds ``n`` packets."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.name = name
        ff = FUZZ_FORMATS[name]
        self.ff = ff
        self.fmt, self.tpl, self.tlens, self.p = templates(name, seed)
        self.fields = field_table(self.fmt)
        self.hsize = int(self.fmt.header.size)
        self.cfg = self.fmt.capture_config(ff.nsrc, ff.src0)
        self.state = np.zeros(spec.NSTATE, dtype=np.int64)
        sb = ff.nsrc * self.p
        self.slots = np.zeros(NSLOT * (sb + 2 * GUARD), dtype=np.uint8)
        pattern = ((np.arange(GUARD) * 37 + 11) & 0xFF).astype(np.uint8)
        for r in range(NSLOT):
            b = r * (sb + 2 * GUARD)
            self.slots[b:b + GUARD] = pattern
            self.slots[b + GUARD + sb:b + 2 * GUARD + sb] = pattern
        self.zero = np.zeros(self.p, dtype=np.uint8)
        self.counts = np.zeros(NCOUNT, dtype=np.int64)
        maxlen = self.tpl.shape[1] + EXTRA
        self.work = np.zeros(maxlen, dtype=np.uint8)
        self.held = np.zeros(maxlen, dtype=np.uint8)
        self.d = np.full(spec.NDESC, -1, dtype=np.int64)
        self.kernel = fuzzer(self.fmt)
        self.npkt = 0

    def run(self, n: int, seed: int) -> np.ndarray:
        self.kernel(self.tpl, self.tlens, self.fields, self.hsize, n, seed, self.cfg, self.state,
                    self.fmt_nsrc, self.p, self.slots, GUARD, self.zero, self.counts, self.work,
                    self.held, self.d, RESET_EVERY)
        self.npkt += n
        return self.counts

    @property
    def fmt_nsrc(self) -> int:
        return self.ff.nsrc

    def summary(self) -> dict[str, int]:
        return {k: int(v) for k, v in zip(COUNT_NAMES, self.counts)}


def run(name: str, npkt: int, seed: int = 1, chunk: int = 1_000_000) -> tuple[dict[str, int], float]:
    """Fuzz ``name`` with ``npkt`` packets -> (counts, seconds spent in the compiled loop)."""
    fz = Fuzz(name)
    fz.run(min(1000, npkt), seed)          # compile / load outside the timing
    fz.counts[:] = 0
    done, t = 0, 0.0
    k = 0
    while done < npkt:
        n = min(chunk, npkt - done)
        t0 = time.perf_counter()
        fz.run(n, seed + 1000 * k + 1)
        t += time.perf_counter() - t0
        done += n
        k += 1
    return fz.summary(), t


def _line(name: str, npkt: int, c: dict[str, int], secs: float, tag: str = "") -> str:
    bad = c["bad_src"] + c["bad_payload"]
    return (f"fuzz{tag} {name:7s} packets={npkt} valid={c['valid']} invalid={c['invalid']} "
            f"hold={c['hold']} placed={c['placed']} zero_fills={c['zero_fills']} "
            f"held_then_valid={c['held_then_valid']} rate={npkt / max(secs, 1e-9) / 1e6:.2f} Mpkt/s "
            f"contract_violations={bad} guard_violations={c['guard_violations']}")


def _boundscheck_selftest() -> bool:
    import numba

    @numba.njit
    def oob(a, i):
        return a[i]

    try:
        oob(np.zeros(2), 5)
    except IndexError:
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=10_000_000, help="packets per format (default 10M)")
    ap.add_argument("--format", action="append", choices=sorted(FUZZ_FORMATS),
                    help="format to fuzz (repeatable; default all)")
    ap.add_argument("--boundscheck", action="store_true",
                    help="re-run in a subprocess with NUMBA_BOUNDSCHECK=1 (out-of-bounds -> IndexError)")
    ap.add_argument("--bc-packets", type=int, default=1_000_000,
                    help="packets per format for the bounds-checked run (default 1M)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    names = a.format or list(FUZZ_FORMATS)
    if a.packets <= 0 or a.bc_packets <= 0:
        ap.error("--packets and --bc-packets must be > 0")
    failed = False
    tag = ""
    if a._child:
        if not _boundscheck_selftest():
            print("fuzz[boundscheck] ERROR: numba bounds checking is not active")
            return 2
        print("fuzz[boundscheck] numba bounds checking active: out-of-bounds access raises IndexError")
        tag = "[boundscheck]"
    if True:
        for name in names:
            try:
                c, secs = run(name, a.packets, a.seed)
            except IndexError as exc:
                print(f"fuzz{tag} {name:7s} OUT OF BOUNDS: IndexError: {exc}")
                failed = True
                continue
            print(_line(name, a.packets, c, secs, tag), flush=True)
            if c["bad_src"] or c["bad_payload"] or c["guard_violations"]:
                failed = True
    if a.boundscheck and not a._child:
        env = dict(os.environ, NUMBA_BOUNDSCHECK="1")
        with tempfile.TemporaryDirectory(prefix="asbru-fuzz-bc-") as tmp:
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")
            env["ASBRU_CACHE_DIR"] = str(Path(tmp) / "kernels")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", "--packets",
                   str(a.bc_packets), "--seed", str(a.seed + 7)]
            for name in names:
                cmd += ["--format", name]
            r = subprocess.run(cmd, env=env)
            failed = failed or r.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
