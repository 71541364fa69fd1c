"""``tbn`` -- LWA transient buffer, narrow band: 512 complex 8-bit samples of one input.

A frame is exactly 1048 bytes: a 24-byte header and 512 ``ci8`` samples.  The ring holds one
time slot per frame time, samples interleaved by input: ``[sample 512][input nsrc][re, im]``.

Deliberate differences from Bifrost (docs/differences-from-bifrost.md, formats #11), wire format unchanged:

* The source is the full 14-bit input id (Bifrost masked it to 10 bits, so inputs above 1023
  collided with lower ones).  ``src = input_id - 1 - src0``.
* The tuning word is read as unsigned (Bifrost rejected words >= 2**31).
* A frame with the TBW flag set is INVALID, as in Bifrost.
* Decimation is not in the header, so it is learnt from the stream without losing a packet:
  ``decode`` returns HOLD until it is known and the engine decodes the held frames again.
  Every header-valid frame (any input) takes part: all inputs share one time grid, so the
  difference between a frame's time tag and the largest time tag seen so far, when positive,
  is a whole number of frame steps (``512 * decimation`` ticks).  A step value is adopted when
  two consecutive forward differences agree.  A lost frame during learning only gives one odd
  difference, so it never fixes a wrong multiple (Bifrost took the first difference it saw,
  from the first input, and dropped the first frame of every input).  A difference that is not
  a multiple of 512 is never adopted: the frames stay held.
* Re-learning: once a step is known, a forward difference that disagrees with it is a
  candidate, adopted when the next forward difference repeats it (a new sequence starts,
  ``decimation`` is a CHANGE field); a difference equal to the known step drops it.  A
  candidate that is a whole multiple of the known step (the usual case: a frame lost on the
  way) changes nothing until adopted: those frames decode with the known step, at their true
  time positions.  A candidate that is not a multiple (a faster or non-integer cadence)
  holds the frames from that time tag on until it is adopted or dropped, so no frame is
  placed with a wrong decimation.  Bifrost never re-learnt.
* Known gaps: a single corrupt frame whose time tag lies far in the future raises the
  "largest time tag seen" and so stops re-learning until the stream passes that time; a
  single-input stream that loses every other frame is indistinguishable from half the rate.
* The sequence callback's ``time_tag`` is the time tag of ``seq0`` (``time_tag_of``), not of
  the packet that triggered the callback.
"""
from __future__ import annotations

import numpy as np

from .drx import place_interleaved
from .spec import (CFG_NSRC, CFG_SRC0, DECIMATION, GAIN, H_GAIN, H_TUNING, HOLD, INVALID,
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

# decode state (int64[NSTATE], zero at capture start)
ST_STEP = 0      # learnt frame step in ticks (512 * decimation); 0 = not known yet
ST_HAVE = 1      # 1 once a time tag has been seen
ST_MAX_T = 2     # largest time tag seen
ST_CAND = 3      # candidate step (a forward difference that disagrees with ST_STEP)
ST_COUNT = 4     # consecutive forward differences equal to ST_CAND
ST_PENDING = 5   # first time tag of the candidate cadence: frames from here are held
ST_JUMP_T = 6    # a far-forward time tag not yet confirmed by a second one near it
ST_FINE = 7      # a finer step suggested by frames arriving behind the newest
ST_FINE_COUNT = 8  # how many behind-frames agreed with ST_FINE
SLOWER_CONFIRM = 16  # consecutive equal steps needed to adopt a step that is a multiple of the old
MAX_STEP = 1 << 40  # sanity bound: a larger "step" is not a TBN cadence

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
def _gcd(a, b):
    while b != 0:
        a, b = b, a % b
    return a


@kernel
def _learn(state, t):
    """Feed one time tag to the decimation learner (see the module docstring)."""
    if state[ST_HAVE] == 0:
        state[ST_HAVE] = 1
        state[ST_MAX_T] = t
        return
    if t <= state[ST_MAX_T]:
        # a late or re-decoded frame: news only if it sits off the learnt grid, which means
        # reordering fooled the forward differences into a multiple of the true step
        step = state[ST_STEP]
        back = state[ST_MAX_T] - t
        if step > 0 and back % step != 0 and back % SAMPLES == 0:
            g = _gcd(step, back)
            if g % SAMPLES == 0:
                if g == state[ST_FINE]:
                    state[ST_FINE_COUNT] += 1
                else:
                    state[ST_FINE] = g
                    state[ST_FINE_COUNT] = 1
                if state[ST_FINE_COUNT] >= 2:
                    state[ST_STEP] = g
                    state[ST_FINE_COUNT] = 0
        return
    diff = t - state[ST_MAX_T]
    if diff > MAX_STEP:
        # a corrupt time tag or a real restart far ahead: follow it only once a second
        # frame confirms it, or one bad frame would hold the whole stream
        j = state[ST_JUMP_T]
        if j != 0 and 0 <= t - j <= MAX_STEP:
            state[ST_MAX_T] = t if t > j else j
            state[ST_JUMP_T] = 0
            state[ST_COUNT] = 0
        else:
            state[ST_JUMP_T] = t
        return
    state[ST_MAX_T] = t
    if diff == state[ST_STEP]:
        state[ST_COUNT] = 0  # the known cadence goes on: any doubt was a lost frame
        return
    if diff == state[ST_CAND] and state[ST_COUNT] > 0:
        state[ST_COUNT] += 1
    else:
        if state[ST_COUNT] == 0:
            state[ST_PENDING] = t
        state[ST_CAND] = diff
        state[ST_COUNT] = 1
    # a whole multiple of the known step is what lost or reordered frames look like, so a
    # slower cadence must be confirmed by a long run; anything else by two steps
    need = 2
    if state[ST_STEP] > 0 and diff % state[ST_STEP] == 0:
        need = SLOWER_CONFIRM
    if state[ST_COUNT] >= need and diff % SAMPLES == 0 and diff <= MAX_STEP:
        state[ST_STEP] = diff
        state[ST_COUNT] = 0


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
    _learn(state, t)
    src = (tbn_id & 0x3FFF) - 1 - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    step = state[ST_STEP]
    if step <= 0:
        return HOLD
    if state[ST_COUNT] > 0 and t >= state[ST_PENDING] and state[ST_CAND] % step != 0:
        return HOLD  # a step the old cadence cannot explain: wait for the next difference
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
