"""``tbn`` -- LWA transient buffer, narrow band: 512 complex 8-bit samples of one input.

A frame is exactly 1048 bytes: a 24-byte header and 512 ``ci8`` samples.  The ring holds one
time slot per frame time, samples interleaved by input: ``[sample 512][input nsrc][re, im]``.

Deliberate differences from Bifrost (docs/differences-from-bifrost.md, formats #11), wire format unchanged:

* The source is the full 14-bit input id (Bifrost masked it to 10 bits, so inputs above 1023
  collided with lower ones).  ``src = input_id - 1 - src0``.
* The tuning word is read as unsigned (Bifrost rejected words >= 2**31).
* A frame with the TBW flag set is INVALID, as in Bifrost.
* Decimation is not in the header.  Give it as ``sample_rate=`` (samples per second:
  ``decimation = 196 MHz / sample_rate``) and every frame decodes at once; otherwise it is
  learnt from the stream without losing a frame: ``decode`` returns HOLD until it is known and
  the engine decodes the held frames again.  The learner keeps the last 16 distinct time tags
  (any input: all inputs share one time grid) and votes: sorted, their consecutive
  differences are whole frame steps (``512 * decimation`` ticks) where no frame was lost; the
  most common difference (a multiple of 512 ticks) is adopted once 2 differences agree and
  they outnumber the differences it cannot explain.  One stray, early, duplicated or
  bit-flipped time tag adds at most two odd differences, so it never decides (Bifrost took
  the first difference it saw, from the first input, and dropped the first frame of every
  input; an earlier asbru took the gcd of forward differences, which one bit flip fooled).
  The phase of the grid (time tag modulo the step) is the one most of the table's time tags
  share; once adopted, a frame off that grid is INVALID (one frame, nothing more).
* A stream that ends (or goes quiet) while still learning adopts the best estimate the held
  frames support: two frame times are enough, as in the LWA Software Library's reader.
* Re-learning: after adoption the vote runs every 4 new time tags and on every off-grid one;
  a different step or phase is adopted when at least 6 differences (and most time tags)
  agree on it (``decimation`` is a CHANGE field: a new sequence starts).  Until then frames
  on the old grid decode with the old step and frames off it are INVALID, so no frame is
  placed with a wrong decimation.
* Known gap: a single-input stream that loses every other frame is indistinguishable from
  half the rate.
* The sequence callback's ``time_tag`` is the time tag of ``seq0`` (``time_tag_of``), not of
  the packet that triggered the callback.
"""
from __future__ import annotations

import numpy as np

from .drx import place_interleaved
from .spec import ST_FINISH as spec_ST_FINISH
from .spec import (CFG_NSRC, CFG_SAMPLE_RATE, CFG_SRC0, DECIMATION, GAIN, H_GAIN, H_TUNING, HOLD, INVALID,
                   PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, TUNING, VALID,
                   BitField, Field, FormatError, FormatParams, Header, kernel, rd_be16,
                   rd_be32, rd_be64, wr_be16, wr_be32, wr_be64)
from .spec import time_tag_at
from .spec import default_capture_config
from .spec import Signature

NAME = "tbn"

HEADER = Header([
    Field("sync", 0, "u32be", "Mark 5C sync word, bytes DE C0 DE 5C"),
    Field("frame_count_word", 4, "u32be", "ID byte (0) and 24-bit frame count; not decoded",
          bits=(BitField("frame_count", 0, 24, "frame counter (writer: per time row)"),
                BitField("id", 24, 8, "always 0"))),
    Field("tuning_word", 8, "u32be", "f = word * 196 MHz / 2**32 (unsigned)"),
    Field("tbn_id", 12, "u16be", "input id and flags",
          bits=(BitField("input_id", 0, 14, "1-based input: 2*(stand-1) + pol + 1"),
                BitField("reserved", 14, 1, "not used"),
                BitField("tbw", 15, 1, "1 = TBW frame: rejected"))),
    Field("gain", 14, "u16be", "gain setting"),
    Field("time_tag", 16, "u64be", "196 MHz ticks since 1970-01-01"),
])

HEADER_SIZE = 24
SAMPLES = 512
PAYLOAD = SAMPLES * 2          # ci8: int8 re, int8 im
FRAME_SIZE = HEADER_SIZE + PAYLOAD
# sync word, ID byte 0 (TBN), the one frame size: how tools recognise TBN on the wire
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"), (4, b"\x00")), packet_sizes=(FRAME_SIZE,))
WRITE_DTYPE = "ci8"

CHANGE = ("tuning", "decimation")
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "decimation", "tuning_word", "nsrc")

# decode state (int64[NSTATE], zero at capture start; spec.ST_FINISH is the engine's)
ST_STEP = 0      # adopted frame step in ticks (512 * decimation); 0 = not known yet
ST_PHASE = 1     # adopted grid phase: time tag modulo ST_STEP
ST_TN = 2        # time tags in the table
ST_TI = 3        # next table index to overwrite (oldest)
ST_LAST_T = 4    # the last time tag fed to the table (cheap skip for the other inputs)
ST_NEW = 5       # new time tags since the last vote (after adoption)
ST_HAVE = 6      # 1 once ST_LAST_T is set
TABLE = 16       # distinct recent time tags kept for the vote
ST_TBL = 8       # table: state[ST_TBL:ST_TBL + TABLE]
ST_SCR = ST_TBL + TABLE  # _vote's scratch: the sorted copy, then each time tag's phase
LEARN_VOTES = 2     # agreeing differences that adopt a first step
RELEARN_VOTES = 6   # agreeing differences that replace an adopted step or phase
VOTE_EVERY = 4      # after adoption: new time tags between two votes
MAX_STEP = 1 << 40  # sanity bound: a larger "step" is not a TBN cadence
CLOCK_HZ = 196_000_000
LEARNS = "decimation (its sample rate)"


def check_sample_rate(rate: int) -> None:
    """``sample_rate=`` must give a whole decimation of the 196 MHz clock."""
    if rate <= 0 or CLOCK_HZ % rate != 0:
        raise FormatError(f"tbn: sample_rate {rate} does not divide the 196 MHz clock into a "
                          f"whole decimation (e.g. 100000 for decimation 1960)")


def matches(fmt: str) -> bool:
    """Bifrost selects TBN only for the exact string ``"tbn"``."""
    return fmt == "tbn"


def parse(fmt: str, role: str) -> FormatParams:
    if fmt != "tbn":
        raise FormatError(f"format {fmt!r}: TBN is selected by the exact string 'tbn'")
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HEADER_SIZE,
                        payload_size=PAYLOAD, record_size=FRAME_SIZE,
                        fixed_packet_size=FRAME_SIZE, samples_per_packet=SAMPLES,
                        write_dtype=WRITE_DTYPE)


capture_config = default_capture_config


@kernel
def _table_add(state, t):
    """Remember time tag ``t`` (if new); returns True when it was new."""
    if state[ST_HAVE] != 0 and t == state[ST_LAST_T]:
        return False
    state[ST_HAVE] = 1
    state[ST_LAST_T] = t
    n = state[ST_TN]
    for i in range(n):
        if state[ST_TBL + i] == t:
            return False
    if n < TABLE:
        state[ST_TBL + n] = t
        state[ST_TN] = n + 1
    else:
        i = state[ST_TI]
        state[ST_TBL + i] = t
        state[ST_TI] = (i + 1) % TABLE
    return True


@kernel
def _vote(state, need):
    """Adopt the step the table's differences agree on (see the module docstring): at least
    ``need`` equal differences that outnumber the ones it cannot explain.  Returns True
    when ST_STEP/ST_PHASE changed.

    Compile time: no ``%`` inside a counting loop.  LLVM vectorizes such a loop and
    scalarizes each 64-bit remainder (with numba's sign fix-up) lane by lane; re-optimized
    in each of the ~10 loop functions that link ``decode``, the n*n phase count alone grew
    this function to ~18k lines of LLVM and a cold TBN kernel to ~57 s.  So the phases are
    taken once into the scratch, and the bad-difference count stops at its verdict."""
    n = state[ST_TN]
    if n < 2:
        return False
    for i in range(n):  # insertion sort of a copy
        v = state[ST_TBL + i]
        j = i
        while j > 0 and state[ST_SCR + j - 1] > v:
            state[ST_SCR + j] = state[ST_SCR + j - 1]
            j -= 1
        state[ST_SCR + j] = v
    best = np.int64(0)
    best_n = 0
    for i in range(1, n):
        c = state[ST_SCR + i] - state[ST_SCR + i - 1]
        if c <= 0 or c % SAMPLES != 0 or c > MAX_STEP:
            continue
        k = 0
        for j in range(1, n):
            if state[ST_SCR + j] - state[ST_SCR + j - 1] == c:
                k += 1
        if k > best_n or (k == best_n and c < best):
            best = c
            best_n = k
    if best_n < need:
        return False
    bad = 0
    for j in range(1, n):
        if (state[ST_SCR + j] - state[ST_SCR + j - 1]) % best != 0:
            bad += 1
            if bad >= best_n:
                return False
    # the phase most time tags share (ties: the newest time tag's)
    newest = state[ST_LAST_T]
    phase = newest % best
    phase_n = 0
    for i in range(n):  # the sorted copy is done with: the scratch takes each tag's phase
        state[ST_SCR + i] = state[ST_TBL + i] % best
    for i in range(n):
        p = state[ST_SCR + i]
        k = 0
        for j in range(n):
            if state[ST_SCR + j] == p:
                k += 1
        if k > phase_n or (k == phase_n and p == newest % best):
            phase = p
            phase_n = k
    if best == state[ST_STEP] and phase == state[ST_PHASE]:
        return False
    if state[ST_STEP] > 0 and 2 * phase_n <= n:
        return False  # a new grid must hold most of the table
    state[ST_STEP] = best
    state[ST_PHASE] = phase
    return True


@kernel
def _learn(state, t):
    """Feed one time tag to the decimation learner (see the module docstring)."""
    # ``need`` goes in as a plain int64, never a bare constant: numba types a constant
    # argument as a literal and compiles one ``_vote`` per value, and every loop function
    # that calls ``decode`` links, re-optimizes and code-generates each copy again.
    new = _table_add(state, t)
    step = state[ST_STEP]
    if step <= 0:
        if new:
            _vote(state, np.int64(LEARN_VOTES))
        if state[ST_STEP] <= 0 and state[spec_ST_FINISH] != 0:
            _vote(state, np.int64(1))  # the stream ended: the best estimate the table supports
        return
    if not new:
        return
    state[ST_NEW] += 1
    if state[ST_NEW] >= VOTE_EVERY or t % step != state[ST_PHASE]:
        state[ST_NEW] = 0
        _vote(state, np.int64(RELEARN_VOTES))


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size != FRAME_SIZE:
        return INVALID
    if pkt[0] != 0xDE or pkt[1] != 0xC0 or pkt[2] != 0xDE or pkt[3] != 0x5C:
        return INVALID
    tbn_id = rd_be16(pkt, 12)
    if tbn_id & 0x8000:
        return INVALID  # TBW frame
    t = rd_be64(pkt, 16)
    if t < 0:
        return INVALID  # >= 2**63 ticks: absurd
    src = (tbn_id & 0x3FFF) - 1 - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    rate = cfg[CFG_SAMPLE_RATE]
    if rate > 0:
        step = SAMPLES * (CLOCK_HZ // rate)  # given by the user: nothing to learn
    else:
        _learn(state, t)
        step = state[ST_STEP]
        if step <= 0:
            return HOLD
        if t % step != state[ST_PHASE]:
            return INVALID  # off the adopted grid: a corrupt time tag (or a cadence change
            # not yet agreed on)
    d[SEQ] = t // step
    d[SRC] = src
    d[TIME_TAG] = t
    d[TUNING] = rd_be32(pkt, 8)
    d[DECIMATION] = step // SAMPLES
    d[GAIN] = rd_be16(pkt, 14)
    d[PAYLOAD_OFFSET] = HEADER_SIZE
    d[PAYLOAD_SIZE] = PAYLOAD
    return VALID


@kernel
def place(payload, d, slot, nsrc):
    """Sample k of input ``src`` (2 bytes) goes to ``(k * nsrc + src) * 2`` in the slot
    (DRX's interleaved layout with 2-byte samples)."""
    place_interleaved(payload, d, slot, nsrc, 2)


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), time_tag_of(seq0, d), int(d[DECIMATION]), int(d[TUNING]), int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    """Time tag of frame ``seq``, keeping the stream's sub-frame offset."""
    step = int(d[DECIMATION]) * SAMPLES
    if step <= 0:
        return 0
    return time_tag_at(seq, step, int(d[TIME_TAG]) - int(d[SEQ]) * step)


def write_config(params: FormatParams) -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    """Bifrost's ``tbn`` writer: frame count per time row, id = src + 1, time tag = seq."""
    hdr[0] = 0xDE
    hdr[1] = 0xC0
    hdr[2] = 0xDE
    hdr[3] = 0x5C
    wr_be32(hdr, 4, framecount & 0xFFFFFF)
    wr_be32(hdr, 8, info[H_TUNING] & 0xFFFFFFFF)
    wr_be16(hdr, 12, (src + 1) & 0x3FFF)
    wr_be16(hdr, 14, info[H_GAIN] & 0xFFFF)
    wr_be64(hdr, 16, seq)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: 100 kS/s (decimation 1960); the first two
    time steps stay clean and in order, the decoder learns the decimation from them."""
    step = SAMPLES * 1960
    return dict(reader=params.fmt, src0=0, seq0=1000 * step, seq_inc=step, src_value=lambda j: j,
                info=lambda j: {"tuning": 0x10000000, "gain": 20}, max_nsrc=1023, learn_steps=2)
