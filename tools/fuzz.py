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

#: result counter indices of the compiled loop
(N_VALID, N_INVALID, N_HOLD, N_PLACED, N_ZEROFILL, N_REJECT_SIZE, N_BAD_SRC, N_BAD_PAYLOAD,
 N_GUARD, N_HELD_VALID, N_HELD_INVALID, N_HELD_HOLD) = range(12)
NCOUNT = 12
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


_FUZZ_TEMPLATE = '''\
"""Generated by asbru tools/fuzz.py for format module {modname} (do not edit)."""
import numba
import numpy as np
from {modname} import decode as _decode, place as _place

VALID = {valid}
HOLD = {hold}
SEQ = {seq}
SRC = {src}
POFF = {poff}
PSIZE = {psize}


@numba.njit(cache=True, nogil=True)
def _guards_ok(slots, row, sb, g):
    base = row * (sb + 2 * g)
    ok = True
    for i in range(g):
        want = (i * 37 + 11) & 0xFF
        if slots[base + i] != want:
            ok = False
            slots[base + i] = want
        if slots[base + g + sb + i] != want:
            ok = False
            slots[base + g + sb + i] = want
    return ok


@numba.njit(cache=True, nogil=True)
def _mutate(work, tpl, tl, fields, hsize, maxlen):
    # -> length of the mutated packet in work[:len]
    r = np.random.randint(0, 100)
    ln = tl
    work[:tl] = tpl[:tl]
    if r < 12:
        return ln                                     # pristine
    if r < 27:
        return np.random.randint(0, tl + 1)           # truncated
    if r < 42:                                        # bit flips, mostly in the header
        lim = hsize + 16
        if lim > ln:
            lim = ln
        if lim <= 0:
            return ln
        for _ in range(np.random.randint(1, 9)):
            b = np.random.randint(0, lim)
            work[b] ^= np.uint8(1 << np.random.randint(0, 8))
        return ln
    nmut = 1 if r < 70 else 3
    if r < 85:                                        # absurd header field values
        for _ in range(nmut):
            k = np.random.randint(0, fields.shape[0])
            off = fields[k, 0]
            nb = fields[k, 1]
            kind = np.random.randint(0, 7)
            for i in range(nb):
                if off + i >= ln:
                    break
                if kind == 0:
                    v = 0
                elif kind == 1:
                    v = 0xFF
                elif kind == 2:
                    v = 0x80 if i == 0 else 0            # huge (top bit set)
                elif kind == 3:
                    v = 1 if i == nb - 1 else 0          # 1
                elif kind == 4:
                    v = np.random.randint(0, 256)
                elif kind == 5:
                    v = np.random.randint(2, 64) if i == nb - 1 else 0   # smallish
                else:
                    v = 0x7F if i == 0 else 0xFF         # largest signed
                work[off + i] = v
        if r >= 80:                                   # ... and a truncation near the payload
            ln = hsize + np.random.randint(-4, 5) * np.random.randint(0, 9)
            if ln < 0:
                ln = 0
            if ln > tl:
                ln = tl
        return ln
    if r < 92:                                        # random garbage header, random length
        ln = np.random.randint(0, maxlen + 1)
        lim = hsize + 32
        if lim > ln:
            lim = ln
        for i in range(lim):
            work[i] = np.random.randint(0, 256)
        return ln
    # over-long packet: extra random bytes
    ln = tl + np.random.randint(1, maxlen - tl + 1) if maxlen > tl else tl
    for i in range(tl, ln):
        work[i] = np.random.randint(0, 256)
    return ln


@numba.njit(cache=True, nogil=True)
def _place_checked(pkt, ln, d, slots, nsrc, p, g, zero, counts):
    po = d[POFF]
    ps = d[PSIZE]
    src = d[SRC]
    if src < 0 or src >= nsrc:
        counts[{n_bad_src}] += 1                      # decode broke its contract
        return False
    if po < 0 or ps < 0 or po + ps > ln:
        counts[{n_bad_payload}] += 1                  # decode broke its contract
        return False
    if ps != p:
        counts[{n_reject_size}] += 1                  # the engine refuses it (invalid)
        return False
    sb = nsrc * p
    s = d[SEQ]
    nrow = slots.shape[0] // (sb + 2 * g)
    row = ((s % nrow) + nrow) % nrow
    base = row * (sb + 2 * g) + g
    _place(pkt[po:po + ps], d, slots[base:base + sb], nsrc)
    counts[{n_placed}] += 1
    if not _guards_ok(slots, row, sb, g):
        counts[{n_guard}] += 1
    if counts[{n_placed}] % 8 == 0:                   # zero-fill a missing source
        keep = d[SRC]
        d[SRC] = np.random.randint(0, nsrc)
        _place(zero[:p], d, slots[base:base + sb], nsrc)
        d[SRC] = keep
        counts[{n_zero}] += 1
        if not _guards_ok(slots, row, sb, g):
            counts[{n_guard}] += 1
    return True


@numba.njit(cache=True, nogil=True)
def fuzz_run(tpl, tlens, fields, hsize, npkt, seed, cfg, state, nsrc, p, slots, g, zero,
             counts, work, held, d, reset_every):
    np.random.seed(seed)
    ntpl = tpl.shape[0]
    maxlen = work.shape[0]
    nheld = -1
    for k in range(npkt):
        if reset_every > 0 and k % reset_every == 0:
            state[:] = 0                              # a new capture: learning starts over
            nheld = -1
        t = k % ntpl if np.random.randint(0, 4) != 0 else np.random.randint(0, ntpl)
        ln = _mutate(work, tpl[t], tlens[t], fields, hsize, maxlen)
        for q in range(d.shape[0]):
            d[q] = -1
        r = _decode(work[:ln], cfg, state, d)
        if r == VALID:
            if _place_checked(work, ln, d, slots, nsrc, p, g, zero, counts):
                counts[{n_valid}] += 1
            else:
                counts[{n_invalid}] += 1
            if nheld >= 0:                            # the engine re-decodes held packets
                for q in range(d.shape[0]):
                    d[q] = -1
                r2 = _decode(held[:nheld], cfg, state, d)
                if r2 == VALID:
                    counts[{n_held_valid}] += 1
                    _place_checked(held, nheld, d, slots, nsrc, p, g, zero, counts)
                elif r2 == HOLD:
                    counts[{n_held_hold}] += 1
                else:
                    counts[{n_held_invalid}] += 1
                nheld = -1
        elif r == HOLD:
            counts[{n_hold}] += 1
            held[:ln] = work[:ln]
            nheld = ln
        else:
            counts[{n_invalid}] += 1
    return counts[{n_valid}]
'''


def fuzzer(fmt: formats.Format) -> Callable:
    """The compiled ``fuzz_run`` for ``fmt`` (generated module, cached by numba)."""
    modname = fmt.module.__name__
    if sys.modules.get(modname) is not fmt.module:
        sys.modules[modname] = fmt.module
    src = _FUZZ_TEMPLATE.format(
        modname=modname, valid=spec.VALID, hold=spec.HOLD, seq=spec.SEQ, src=spec.SRC,
        poff=spec.PAYLOAD_OFFSET, psize=spec.PAYLOAD_SIZE, n_valid=N_VALID, n_invalid=N_INVALID,
        n_hold=N_HOLD, n_placed=N_PLACED, n_zero=N_ZEROFILL, n_reject_size=N_REJECT_SIZE,
        n_bad_src=N_BAD_SRC, n_bad_payload=N_BAD_PAYLOAD, n_guard=N_GUARD,
        n_held_valid=N_HELD_VALID, n_held_invalid=N_HELD_INVALID, n_held_hold=N_HELD_HOLD)
    mod = engine.generated_module(f"fuzz_{fmt.name}", src, depends_on=(fmt.module, spec))
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
