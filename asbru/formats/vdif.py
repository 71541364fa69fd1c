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
* Frames per second are learnt per thread and without losing a frame: ``decode`` returns
  HOLD until a frame of the *next* second of the same thread arrives; then
  ``fps = (largest frame number seen in the completed second) + 1`` and the held frames are
  decoded again (the engine does that), so the first, partial second is kept.  Bifrost learnt
  it from the first backwards step of the frame number over all threads together (fooled by
  interleaved threads or reordering) and dropped everything before it.  Threads 0-29 (after
  src0) take part in learning; any thread decodes once the rate is known.
* If the last frame of the learning second was lost, ``fps`` comes out one short; a later
  frame number ``>= fps`` raises ``fps`` to ``frame_number + 1`` (``sample_rate`` is a CHANGE
  field, so a new sequence starts with the corrected numbering).
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

from .spec import (CFG_NSRC, CFG_SRC0, COMPLEX, EPOCH, H_DECIMATION, H_GAIN, H_NCHAN,
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
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "ref_epoch", "sample_rate", "vdif_nchan", "nbit",
                 "is_complex", "nsrc")

# decode state: [0] = frames per second (0 = not known); per learning thread s (< LEARN_THREADS):
# [2 + 2s] = 1 + the second being watched (0 = none), [3 + 2s] = largest frame number in it
ST_FPS = 0
LEARN_THREADS = 30
MAX_FPS = 1 << 24  # the frame number has 24 bits


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
def _learn(state, src, seconds, frame):
    """Per-thread frames-per-second learning (module docstring)."""
    fps = state[ST_FPS]
    if fps > 0:
        if frame >= fps and frame < MAX_FPS:
            state[ST_FPS] = frame + 1  # learnt one short (lost last frame): correct it
        return
    if src < 0 or src >= LEARN_THREADS:
        return
    i = 2 + 2 * src
    if state[i] == 0 or seconds + 1 < state[i]:
        if state[i] == 0:
            state[i] = seconds + 1
            state[i + 1] = frame
        return  # a frame of an earlier second (reordered): no news
    if seconds + 1 == state[i]:
        if frame > state[i + 1]:
            state[i + 1] = frame
        return
    # a frame of a later second: the watched second is complete
    state[ST_FPS] = state[i + 1] + 1


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
    _learn(state, src, seconds, frame)
    fps = state[ST_FPS]
    if fps <= 0:
        return HOLD
    seq = seconds * fps + frame
    d[SEQ] = seq
    d[SRC] = src
    d[TIME_TAG] = seq * spf
    d[NCHAN] = nchan
    d[EPOCH] = (w1 >> 24) & 0x3F
    d[NBIT] = nbit
    d[COMPLEX] = cplx
    d[SAMPLE_RATE] = fps * spf
    d[X0] = spf
    d[X1] = fps
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
    return time_tag_at(seq, d[X0])


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
