"""``vdif`` -- VLBI Data Interchange Format frames (VDIF 1.0/1.1).

The header is four (legacy, 16 bytes) or eight (32 bytes) 32-bit **little-endian** words with
bit fields (see ``HEADER``).  The payload is kept as raw VDIF bytes; the ring holds one time
slot per frame, the frames of the threads side by side: ``[frame][thread nsrc][payload]``.
``seq = seconds * frames_per_second + frame_number``.  Capture strings: ``vdif`` (UDP: any
frame size) and ``vdif_N`` (N = the whole frame size in bytes; a DiskReader reads N-byte
records).

Deliberate differences from Bifrost (docs/differences-from-bifrost.md, formats #10), wire format unchanged:

* ``time_tag`` counts samples since the reference epoch:
  ``seconds * sample_rate + frame_number * samples_per_frame`` (= ``seq * samples_per_frame``).
  Bifrost used ``seq * sample_rate``, which has no unit.
* Frames per second come, in this order, from ``sample_rate=`` (samples per second per
  channel, as in ``baseband``: ``fps = sample_rate / samples_per_frame``), from the EDV 3
  header's sample rate (word 4: bits 0-22 the rate, bit 23 the unit, 1 = MHz, 0 = kHz; real
  samples at twice the field, complex at the field; word 5 = 0xACABFEED), or are learnt.
  With either of the first two nothing is held.
* Learning (frames of any thread in range take part: all threads share one frame
  numbering): ``decode`` returns HOLD while the capture watches one second; the largest
  frame numbers seen in it are kept, and once 3 frames of the *next* second have arrived the
  second is complete (frames of the two seconds after count too) and ``fps`` = (the largest
  frame number that has a neighbour within 2 among the kept ones, or came 3 times, or is 0 or
  1) + 1, so one corrupt frame number cannot set it, nor one stray frame of
  a later second end the watch early (an earlier asbru was 4x wrong after one).  Frames of
  other seconds that outnumber the watched one restart the watch there.  The held frames are
  then decoded again (the engine does that), so the first, partial second is kept.  Bifrost
  learnt it from the first backwards step of the frame number over all threads together
  and dropped everything before it.
* A recording that ends while still learning adopts the estimate if at least one frame of
  the next second arrived; a recording of one second or less per thread (like every sample
  file shipped with ``baseband``) has no rate to learn: its frames are counted invalid and
  a warning names ``sample_rate``.
* If the last frame of the learning second was lost, ``fps`` comes out one short; once 3
  frames say frame number ``fps``, ``fps`` becomes that number + 1
  (``sample_rate`` is a CHANGE field, so a new sequence starts with the corrected
  numbering).  Any other frame number ``>= fps`` is INVALID.
* The frame-length field must equal the packet (record) size; the invalid bit makes a frame
  INVALID; a zero-length payload or a sample size that does not fit is INVALID.
* ``sample_rate`` is samples per second per channel (``fps * samples_per_frame``); Bifrost
  passed it to the callback as a 32-bit int, asbru as a Python int.
* A writer exists (Bifrost had none), see ``fill``: write strings ``vdif_N`` (N = frame size,
  32-byte header, ``u8`` payload of ``N - 32`` bytes per frame).  ``send(info, seq, 1, thread,
  1, data)`` numbers frames ``seq = seconds * fps + frame``; HeaderInfo fields:
  ``decimation`` = frames per second, ``tuning`` = ``(ref_epoch << 16) | (nbit << 8) |
  is_complex`` (Bifrost's packing of these three), ``nchan`` = channels (a power of two),
  ``gain`` = station id; ``src`` = thread id.
"""
from __future__ import annotations

import numpy as np

from .spec import ST_FINISH as spec_ST_FINISH
from .spec import (CFG_NSRC, CFG_SAMPLE_RATE, CFG_SRC0, COMPLEX, EPOCH, H_DECIMATION, H_GAIN, H_NCHAN,
                   H_TUNING, HOLD, INVALID, NBIT, NCHAN, PAYLOAD_OFFSET, PAYLOAD_SIZE,
                   SAMPLE_RATE, SEQ, SRC, TIME_TAG, VALID, X0, X1, BitField, Field,
                   FormatError, FormatParams, Header, copy_to_ring, kernel, parse_int_suffix, rd_le32,
                   wr_le32)
from .spec import time_tag_at
from .spec import default_capture_config

NAME = "vdif"

HEADER = Header([
    Field("word0", 0, "u32le", "seconds, legacy and invalid flags",
          bits=(BitField("seconds", 0, 30, "seconds from the reference epoch"),
                BitField("legacy", 30, 1, "1 = 16-byte header (words 4-7 absent)"),
                BitField("invalid", 31, 1, "1 = frame data invalid: rejected"))),
    Field("word1", 4, "u32le", "frame number and reference epoch",
          bits=(BitField("frame_number", 0, 24, "frame within the second"),
                BitField("ref_epoch", 24, 6, "half-years since 2000-01-01"),
                BitField("unassigned", 30, 2, ""))),
    Field("word2", 8, "u32le", "frame length, channels, version",
          bits=(BitField("frame_length", 0, 24, "whole frame in units of 8 bytes"),
                BitField("log2_nchan", 24, 5, "log2 of the channel count"),
                BitField("version", 29, 3, "VDIF version"))),
    Field("word3", 12, "u32le", "station, thread, sample format",
          bits=(BitField("station_id", 0, 16, ""),
                BitField("thread_id", 16, 10, "the source"),
                BitField("bits_per_sample_minus_1", 26, 5, "nbit - 1"),
                BitField("is_complex", 31, 1, "1 = complex samples"))),
    Field("extended_user_data", 16, "bytes", "words 4-7 (not in legacy frames); not decoded",
          size=16),
])

HEADER_SIZE = 32
LEGACY_HEADER_SIZE = 16
WRITE_DTYPE = "u8"

CHANGE = ("nchan", "payload_size", "epoch", "nbit", "complex", "sample_rate")
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
SAMPLES_PER_FRAME = X0  # samples per frame (time tag = seq * it)
FRAMES_PER_SECOND = X1  # frames per second (learnt or given)
SLOTS = {"samples_per_frame": SAMPLES_PER_FRAME, "frames_per_second": FRAMES_PER_SECOND}
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "ref_epoch", "sample_rate", "vdif_nchan", "nbit",
                 "is_complex", "nsrc")

# decode state (int64[NSTATE], zero at capture start; spec.ST_FINISH is the engine's)
ST_FPS = 0        # learnt frames per second (0 = not known)
ST_SEC = 1        # 1 + the second being watched (0 = none)
ST_NSEC = 2       # frames seen in the watched second
ST_NNEXT = 3      # frames seen of the next second
ST_OTHER = 4      # 1 + another second frames came from (0 = none)
ST_NOTHER = 14    # frames of that other second (after the TOP table)
ST_OVER = 5       # a frame number >= fps, seen ST_NOVER times (one-short correction)
ST_NOVER = 6
ST_TOPN = 7       # frames seen with the largest frame number (ST_TOP)
ST_TOP = 8        # the TOP largest distinct frame numbers of the watched second, descending
TOP = 6
LEARN_VOTES = 3   # frames of the next second that complete the watched one; also frames
                  # of another second that restart the watch, or saying fps is one short
MAX_FPS = 1 << 24  # the frame number has 24 bits
EDV3_SYNC = 0xACABFEED
LEARNS = "frames per second (its sample rate)"


def check_sample_rate(rate: int) -> None:
    if rate <= 0:
        raise FormatError(f"vdif: sample_rate must be positive; got {rate}")


def matches(fmt: str) -> bool:
    """Bifrost selects VDIF for any string starting with ``vdif``."""
    return fmt.startswith("vdif")


def parse(fmt: str, role: str) -> FormatParams:
    size = None
    if fmt != "vdif" or role != "capture":
        size = parse_int_suffix(fmt, "vdif_", "N (the frame size in bytes)")
        if size % 8 or size <= HEADER_SIZE:
            raise FormatError(f"format {fmt!r}: N is the whole VDIF frame size, a multiple of 8 "
                              f"greater than {HEADER_SIZE}")
    params = FormatParams(name=NAME, fmt=fmt, role=role, header_size=HEADER_SIZE,
                          payload_size=None, record_size=size)
    if role == "write":
        params.payload_size = size - HEADER_SIZE
        params.samples_per_packet = size - HEADER_SIZE
        params.write_dtype = WRITE_DTYPE
    return params


capture_config = default_capture_config


@kernel
def _top_add(state, frame):
    """Keep the TOP largest distinct frame numbers of the watched second."""
    if state[ST_TOP] == frame + 1:
        state[ST_TOPN] += 1  # the largest frame number again (another thread)
        return
    for i in range(TOP):
        v = state[ST_TOP + i]
        if v == frame + 1:
            return
        if v < frame + 1:  # stored as frame + 1 (0 = empty), descending
            for j in range(TOP - 1, i, -1):
                state[ST_TOP + j] = state[ST_TOP + j - 1]
            state[ST_TOP + i] = frame + 1
            if i == 0:
                state[ST_TOPN] = 1
            return


@kernel
def _estimate(state):
    """fps from the watched second: the largest kept frame number with a neighbour within
    2 among the kept ones, or seen 3 times (threads), + 1 (0 = none)."""
    if state[ST_TOP] > 0 and state[ST_TOPN] >= LEARN_VOTES:
        return state[ST_TOP]
    for i in range(TOP):
        a = state[ST_TOP + i]
        if a <= 0:
            break
        if a <= 2:
            return a  # frame 0 or 1: small enough to need no neighbour (1-2 frames/s)
        if i + 1 < TOP and state[ST_TOP + i + 1] > 0 and a - state[ST_TOP + i + 1] <= 2:
            return a  # (frame + 1)
    return 0


@kernel
def _watch(state, seconds, frame):
    state[ST_SEC] = seconds + 1
    state[ST_NSEC] = 1
    state[ST_NNEXT] = 0
    state[ST_OTHER] = 0
    state[ST_NOTHER] = 0
    for i in range(TOP):
        state[ST_TOP + i] = 0
    state[ST_TOPN] = 0
    _top_add(state, frame)


@kernel
def _learn(state, seconds, frame):
    """Frames-per-second learning (module docstring)."""
    fps = state[ST_FPS]
    if fps > 0:
        return
    w = state[ST_SEC]
    if w == 0:
        _watch(state, seconds, frame)
        return
    if seconds + 1 == w:
        state[ST_NSEC] += 1
        _top_add(state, frame)
    elif w <= seconds <= w + 2:  # the next second (or the two after: few frames/s)
        state[ST_NNEXT] += 1
        if state[ST_NNEXT] >= LEARN_VOTES:
            est = _estimate(state)
            if est > 0:
                state[ST_FPS] = est
            else:
                # nothing trustworthy yet: watch this second, keeping the frame numbers
                # already seen (they are the same numbering; a stream that started on the
                # last frame of a second has only that one, and no neighbour for it)
                nnext = state[ST_NNEXT]
                state[ST_SEC] = seconds + 1
                state[ST_NNEXT] = 0
                state[ST_OTHER] = 0
                state[ST_NOTHER] = 0
                _top_add(state, frame)
                state[ST_NSEC] = nnext
    else:
        if state[ST_OTHER] == seconds + 1:
            state[ST_NOTHER] += 1
        else:
            state[ST_OTHER] = seconds + 1
            state[ST_NOTHER] = 1
        if state[ST_NOTHER] >= LEARN_VOTES and state[ST_NOTHER] > state[ST_NSEC]:
            _watch(state, seconds, frame)  # the watched second was a stray's
    if state[ST_FPS] == 0 and state[spec_ST_FINISH] != 0 and state[ST_NNEXT] > 0:
        state[ST_FPS] = _estimate(state)


@kernel
def _over(state, frame):
    """A frame number >= fps: fps was learnt one short only if 3 frames agree."""
    if state[ST_OVER] == frame + 1:
        state[ST_NOVER] += 1
    else:
        state[ST_OVER] = frame + 1
        state[ST_NOVER] = 1
    if state[ST_NOVER] >= LEARN_VOTES:
        state[ST_FPS] = frame + 1
        state[ST_NOVER] = 0
        return True
    return False


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < LEGACY_HEADER_SIZE:
        return INVALID
    w0 = rd_le32(pkt, 0)
    w1 = rd_le32(pkt, 4)
    w2 = rd_le32(pkt, 8)
    w3 = rd_le32(pkt, 12)
    if (w0 >> 31) & 1:
        return INVALID
    hsize = LEGACY_HEADER_SIZE if (w0 >> 30) & 1 else HEADER_SIZE
    frame_len = (w2 & 0xFFFFFF) * 8
    if frame_len != pkt.size or frame_len <= hsize:
        return INVALID
    payload = frame_len - hsize
    nchan = np.int64(1) << ((w2 >> 24) & 0x1F)
    nbit = ((w3 >> 26) & 0x1F) + 1
    cplx = (w3 >> 31) & 1
    bits_per_sample = nbit * nchan * (1 + cplx)
    spf = (payload * 8) // bits_per_sample
    if spf <= 0:
        return INVALID
    seconds = w0 & 0x3FFFFFFF
    frame = w1 & 0xFFFFFF
    src = ((w3 >> 16) & 0x3FF) - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    rate = cfg[CFG_SAMPLE_RATE]
    if rate <= 0 and hsize == HEADER_SIZE and (rd_le32(pkt, 16) >> 24) == 3 \
            and rd_le32(pkt, 20) == EDV3_SYNC:
        w4 = rd_le32(pkt, 16)
        rate = (w4 & 0x7FFFFF) * (1_000_000 if (w4 >> 23) & 1 else 1000) * (2 - cplx)
    if rate > 0:
        fps = rate // spf  # stated: nothing to learn
        if fps * spf != rate or fps > MAX_FPS or frame >= fps:
            return INVALID
    else:
        if state[ST_FPS] <= 0:     # (learnt: no call per frame)
            _learn(state, seconds, frame)
        fps = state[ST_FPS]
        if fps <= 0:
            return HOLD
        if frame >= fps:
            if frame != fps or not _over(state, frame):
                return INVALID  # only "one short" is ever corrected (3 frames must say so)
            fps = state[ST_FPS]
    seq = seconds * fps + frame
    d[SEQ] = seq
    d[SRC] = src
    d[TIME_TAG] = seq * spf
    d[NCHAN] = nchan
    d[EPOCH] = (w1 >> 24) & 0x3F
    d[NBIT] = nbit
    d[COMPLEX] = cplx
    d[SAMPLE_RATE] = fps * spf
    d[SAMPLES_PER_FRAME] = spf
    d[FRAMES_PER_SECOND] = fps
    d[PAYLOAD_OFFSET] = hsize
    d[PAYLOAD_SIZE] = payload
    return VALID


@kernel
def place(payload, d, slot, nsrc):
    """The frame's payload goes, as is, to ``src * P`` (``P`` = payload bytes)."""
    src = d[SRC]
    p = payload.size
    if src < 0 or src >= nsrc:
        return
    o = src * p
    if o + p > slot.size:
        return
    copy_to_ring(slot, o, payload, 0, p)


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), time_tag_of(seq0, d), int(d[EPOCH]), int(d[SAMPLE_RATE]), int(d[NCHAN]),
            int(d[NBIT]), int(d[COMPLEX]), int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    """Samples since the reference epoch at the start of frame ``seq``."""
    return time_tag_at(seq, d[SAMPLES_PER_FRAME])


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.record_size], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    """A 32-byte VDIF header for frame ``seq`` of thread ``src`` (see the module docstring)."""
    fps = info[H_DECIMATION]
    if fps > 0:
        seconds = seq // fps
        frame = seq - seconds * fps
    else:
        seconds = 0
        frame = seq
    log2n = 0
    while (np.int64(1) << (log2n + 1)) <= info[H_NCHAN] and log2n < 31:
        log2n += 1
    tuning = info[H_TUNING]
    nbit = (tuning >> 8) & 0xFF
    if nbit < 1:
        nbit = 1
    wr_le32(hdr, 0, seconds & 0x3FFFFFFF)
    wr_le32(hdr, 4, (frame & 0xFFFFFF) | (((tuning >> 16) & 0x3F) << 24))
    wr_le32(hdr, 8, ((wcfg[0] // 8) & 0xFFFFFF) | (log2n << 24))
    wr_le32(hdr, 12, (info[H_GAIN] & 0xFFFF) | ((src & 0x3FF) << 16)
            | (((nbit - 1) & 0x1F) << 26) | ((tuning & 1) << 31))
    for k in range(16, 32):
        hdr[k] = 0


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: 10 frames per second, threads 0..nsrc-1;
    the first second and one frame stay clean and in order (the decoder learns the frame
    rate from a whole second)."""
    fps = 10
    return dict(reader=params.fmt, src0=0, seq0=100 * fps, seq_inc=1, src_value=lambda j: j,
                info=lambda j: {"decimation": fps, "tuning": 8 << 8, "nchan": 1}, max_nsrc=1024,
                learn_steps=fps + 1)
