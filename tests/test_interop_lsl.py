"""asbru's LWA formats and VDIF checked against independent implementations (the optional
``asbru[interop]`` extra): the LWA Software Library (LSL) and baseband.

Both directions for TBX, ADP TBF, NDP TBF, COR (33, 72, 112 and 192 channels), DRX, DRX8
and VDIF:

* asbru writes (its DiskWriter's bytes, ``batch.encode_packets``) and the oracle decodes:
  every header field the oracle reports and every sample must be what was written.
* the oracle side writes and asbru reads (its compiled ``decode`` and the header table):
  DRX frames come from LSL's simulator (``lsl.sim.drx``), VDIF frames from baseband's
  writer.  LSL has no writer for TBX, TBF, COR or DRX8; for those the frames are built
  here from LSL's own frame layout (a numpy record of LSL's C structure, nothing taken
  from asbru) and LSL's reader must first read them back to the intended values, so what
  asbru then reads is a frame LSL vouches for.

LSL 4 reads TBX, COR, DRX, DRX8 and VDIF; it dropped TBF, so TBF is read with LSL 3.0.8
installed beside it (``make interop`` puts it in ``.venv/lsl3``; ``ASBRU_LSL3`` overrides).
LSL runs in a subprocess (``tests/helpers/lsl_oracle.py``) with its telemetry switched off.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asbru import formats
from asbru.formats import batch, spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LSL3 = Path(os.environ.get("ASBRU_LSL3", ROOT / ".venv" / "lsl3"))

HAVE_LSL = importlib.util.find_spec("lsl") is not None
HAVE_LSL3 = (LSL3 / "lsl" / "reader" / "tbf.py").is_file()
HAVE_BASEBAND = importlib.util.find_spec("baseband") is not None

needs_lsl = pytest.mark.skipif(not HAVE_LSL, reason="LSL not installed (pip install 'asbru[interop]'; "
                               "needs Debian libgsl-dev libfftw3-dev and a compiler)")
needs_lsl3 = pytest.mark.skipif(not HAVE_LSL3, reason=f"LSL 3 (the last LSL with a TBF reader) not found in "
                                f"{LSL3} (make interop installs it; ASBRU_LSL3 points elsewhere)")
needs_baseband = pytest.mark.skipif(not HAVE_BASEBAND, reason="baseband not installed (pip install 'asbru[interop]')")

SYNC = b"\xde\xc0\xde\x5c"


def lsl_decode(kind: str, raw: bytes, tmp_path: Path, lsl3: bool = False) -> tuple[list[dict], np.ndarray]:
    """Every frame of ``raw`` as LSL reads it: (fields per frame, stacked samples)."""
    src = tmp_path / f"{kind}.frames"
    src.write_bytes(raw)
    out = tmp_path / f"{kind}.npz"
    env = dict(os.environ)
    if lsl3:
        env["PYTHONPATH"] = os.pathsep.join([str(LSL3)] + [p for p in [env.get("PYTHONPATH")] if p])
    res = subprocess.run([sys.executable, str(HERE / "helpers" / "lsl_oracle.py"), kind, str(src), str(out)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    z = np.load(out)
    if lsl3:
        assert str(z["lsl_version"]).startswith("3.")
    return json.loads(str(z["fields"])), z["data"]


def lsl_tbx_ntime(nsrc: int, payload: int) -> int:
    """LSL 4's TBX reader first reads a frame of its largest shape (28 + 8192 bytes) and then
    re-reads at the size the header says: a file must hold at least that much."""
    return max(3, (28 + 8192) // (nsrc * (28 + payload)) + 2)


def nibbles(payload: np.ndarray) -> np.ndarray:
    """ci4 bytes -> int8 [..., (re, im)]: the real part in the high nibble, two's complement."""
    b = payload.astype(np.int16)
    hi, lo = b >> 4, b & 0x0F
    out = np.stack([hi - ((hi & 8) << 1), lo - ((lo & 8) << 1)], axis=-1)
    return out.astype(np.int8)


def pack_nibbles(iq: np.ndarray) -> np.ndarray:
    return (((iq[..., 0].astype(np.int16) & 0xF) << 4) | (iq[..., 1].astype(np.int16) & 0xF)).astype(np.uint8)


def frames_of(raw: bytes, size: int) -> np.ndarray:
    a = np.frombuffer(raw, dtype=np.uint8)
    assert a.size % size == 0
    return a.reshape(-1, size)


def asbru_read(fmt: str, raw: bytes, nsrc: int, src0: int) -> tuple[np.ndarray, np.ndarray, list[dict], list[np.ndarray]]:
    """asbru's reading of a file: descriptors, statuses, header-table fields, payloads."""
    f = formats.get(fmt, "disk")
    buf, offsets, lengths = batch.split_records(raw, f.params.record_size)
    desc, status = batch.decode_buffer(f, buf, offsets, lengths, nsrc, src0)
    fields = [f.header.unpack(buf[o:o + ln]) for o, ln in zip(offsets, lengths)]
    payloads = [buf[o + d[spec.PAYLOAD_OFFSET]: o + d[spec.PAYLOAD_OFFSET] + d[spec.PAYLOAD_SIZE]]
                for o, d in zip(offsets, desc)]
    return desc, status, fields, payloads


# ---------------------------------------------------------------------------------------
# asbru writes, LSL reads

T0 = (1 << 60) + 12345 * 8192  # a time tag that needs all 64 bits' care


@needs_lsl
@pytest.mark.parametrize("nchan,nstand", [(4, 64), (12, 64), (16, 64), (8, 128), (12, 256), (16, 256)])
def test_tbx_written_by_asbru_read_by_lsl(nchan, nstand, tmp_path):
    w = formats.get(f"tbx_{nchan}x{nstand}", "write")
    nsrc, p = 2, 2 * nchan * nstand
    ntime = lsl_tbx_ntime(nsrc, p)
    data = np.random.default_rng(nchan * nstand).integers(0, 256, (ntime, nsrc, p), dtype=np.uint8)
    raw = batch.encode_packets(w, batch.headerinfo(), T0, 8192, 2000, nchan, data, framecount0=0xFFFFFE)
    fields, samples = lsl_decode("tbx", raw, tmp_path)
    assert len(fields) == ntime * nsrc
    for k, row in enumerate(fields):
        i, j = divmod(k, nsrc)
        assert row == {"frame_id": 0x08, "frame_count": (0xFFFFFE + i) & 0xFFFFFF, "second_count": 0,
                       "first_chan": 2000 + j * nchan, "nstand": nstand, "nchan": nchan,
                       "timetag": T0 + i * 8192}
        table = w.header.unpack(raw[k * (28 + p):])
        assert (table["id"], table["frame_count"], table["first_chan"], table["nstand"],
                table["nchan"], table["time_tag"]) == (row["frame_id"], row["frame_count"],
                row["first_chan"], row["nstand"], row["nchan"], row["timetag"])
        assert np.array_equal(samples[k], nibbles(data[i, j]).reshape(nchan, nstand, 2, 2))


@needs_lsl3
@pytest.mark.parametrize("fmt,frame_id,nstand", [("tbf", 0x01, 256), ("ndp_tbf", 0x05, 64)])
def test_tbf_written_by_asbru_read_by_lsl(fmt, frame_id, nstand, tmp_path):
    w = formats.get(fmt, "write")
    ntime, nsrc, p = 3, 3, 12 * nstand * 2
    data = np.random.default_rng(nstand).integers(0, 256, (ntime, nsrc, p), dtype=np.uint8)
    raw = batch.encode_packets(w, batch.headerinfo(nsrc=nstand), T0, 8192, 1200, 12, data, framecount0=7)
    fields, samples = lsl_decode("tbf", raw, tmp_path, lsl3=True)
    assert len(fields) == ntime * nsrc
    for k, row in enumerate(fields):
        i, j = divmod(k, nsrc)
        assert row == {"adp_id": frame_id, "frame_count": 7 + i, "second_count": 0,
                       "first_chan": 1200 + 12 * j, "nstand": nstand, "timetag": T0 + i * 8192}
        assert np.array_equal(samples[k], nibbles(data[i, j]).reshape(12, nstand, 2, 2))


def _cor_expected(vis: np.ndarray, stand0: int, stand1: int) -> np.ndarray:
    # LSL fills YX of an auto-correlation with conj(XY) (ADP sends only the triangle)
    out = vis.reshape(-1, 2, 2).copy()
    if stand0 == stand1:
        out[:, 1, 0] = np.conj(out[:, 0, 1])
    return out


@needs_lsl
@pytest.mark.parametrize("nchan", [33, 72, 112, 192])
def test_cor_written_by_asbru_read_by_lsl(nchan, tmp_path):
    w = formats.get(f"cor_{nchan}", "write")
    nstand, ntime = 3, 2
    nbl = nstand * (nstand + 1) // 2
    rng = np.random.default_rng(nchan)
    vis = (rng.standard_normal((ntime, nbl, 4 * nchan)) + 1j * rng.standard_normal((ntime, nbl, 4 * nchan))).astype(np.complex64)
    navg, ticks = 500, 500 * 1_960_000
    tuning = (3 << 16) | (2 << 8) | 1  # nchan_decim 3, nserver 2, server 1
    info = batch.headerinfo(nsrc=nbl, chan0=1234, gain=9, decimation=navg, tuning=tuning)
    raw = batch.encode_packets(w, info, 1000 * ticks, ticks, 0, 1, vis)
    fields, samples = lsl_decode("cor", raw, tmp_path)
    assert len(fields) == ntime * nbl
    pairs = [(a, b) for a in range(1, nstand + 1) for b in range(a, nstand + 1)]
    for k, row in enumerate(fields):
        i, j = divmod(k, nbl)
        s0, s1 = pairs[j]
        assert row == {"adp_id": 0x02, "frame_count": tuning, "second_count": 0, "first_chan": 1234,
                       "gain": 9, "timetag": (1000 + i) * ticks, "navg": navg, "stand0": s0, "stand1": s1}
        assert np.array_equal(samples[k], _cor_expected(vis[i, j], s0, s1))


@needs_lsl
@pytest.mark.parametrize("fmt", ["drx", "drx8"])
def test_drx_written_by_asbru_read_by_lsl(fmt, tmp_path):
    w = formats.get(fmt, "write")
    ntime, nsrc = 3, 2
    rng = np.random.default_rng(len(fmt))
    data = rng.integers(0, 256, (ntime, nsrc, w.params.payload_size), dtype=np.uint8)
    word, decim = 0x2ABCDEF1, 10
    ident = 3 | (2 << 3)  # beam 3, tuning 2, pol X; src_increment 128 -> pol Y
    raw = batch.encode_packets(w, batch.headerinfo(tuning=word, decimation=decim), T0,
                               4096 * decim, ident, 128, data)
    fields, samples = lsl_decode(fmt, raw, tmp_path)
    assert len(fields) == ntime * nsrc
    flag = 0x40 if fmt == "drx8" else 0
    for k, row in enumerate(fields):
        i, j = divmod(k, nsrc)
        assert row == {"frame_count": 0, "drx_id": (ident + 128 * j) | flag, "second_count": 0,
                       "decimation": decim, "time_offset": 0, "timetag": T0 + i * 4096 * decim,
                       "tuning_word": word, "flags": 0}
        expect = nibbles(data[i, j]) if fmt == "drx" else data[i, j].view(np.int8).reshape(-1, 2)
        assert np.array_equal(samples[k], expect)


def _vdif_stream(nbit=8, nchan=1, fps=100, nthread=2, ntime=4, payload=4096):
    w = formats.get(f"vdif_{32 + payload}", "write")
    data = np.random.default_rng(nbit).integers(0, 256, (ntime, nthread, payload), dtype=np.uint8)
    info = batch.headerinfo(decimation=fps, tuning=(21 << 16) | (nbit << 8), nchan=nchan, gain=0x4C57)
    seq0 = 777 * fps + fps - 2  # crosses a second boundary
    return w, data, seq0, batch.encode_packets(w, info, seq0, 1, 3, 1, data)


@needs_lsl
def test_vdif_written_by_asbru_read_by_lsl(tmp_path):
    fps, payload = 100, 4096
    w, data, seq0, raw = _vdif_stream(fps=fps, payload=payload)
    fields, samples = lsl_decode("vdif", raw, tmp_path)
    assert len(fields) == data.shape[0] * data.shape[1]
    for k, row in enumerate(fields):
        i, j = divmod(k, data.shape[1])
        sec, frame = divmod(seq0 + i, fps)
        assert row == {"is_invalid": 0, "is_legacy": 0, "seconds_from_epoch": sec, "ref_epoch": 21,
                       "frame_in_second": frame, "version": 0, "nchan": 1,
                       "frame_length": (32 + payload) // 8, "is_complex": 0, "bits_per_sample": 8,
                       "thread_id": 3 + j, "station_id": 0x4C57}
        # LSL's 8-bit integer samples: offset binary, byte - 128
        assert np.array_equal(samples[k].reshape(-1), data[i, j].astype(np.int16) - 128)


@needs_baseband
def test_vdif_written_by_asbru_read_by_baseband(tmp_path):
    from baseband import vdif
    fps, payload = 100, 4096
    w, data, seq0, raw = _vdif_stream(fps=fps, payload=payload)
    path = tmp_path / "a.vdif"
    path.write_bytes(raw)
    n = data.shape[0] * data.shape[1]
    with open(path, "rb") as fh:
        for k in range(n):
            frame = vdif.VDIFFrame.fromfile(fh)
            h = frame.header
            i, j = divmod(k, data.shape[1])
            sec, fr = divmod(seq0 + i, fps)
            assert (h["invalid_data"], h["legacy_mode"], h["seconds"], h["ref_epoch"], h["frame_nr"],
                    h["vdif_version"], h.nchan, h.frame_nbytes, h["complex_data"], h.bps,
                    h["thread_id"], h["station_id"]) == (False, False, sec, 21, fr, 0, 1,
                                                        32 + payload, False, 8, 3 + j, 0x4C57)
            assert frame.payload.words.tobytes() == data[i, j].tobytes()


# ---------------------------------------------------------------------------------------
# LSL / baseband write (or vouch for), asbru reads

def _mark5c_frames(dtype: np.dtype, rows: list[dict], payload: np.ndarray) -> bytes:
    """Frames from a record layout transcribed from LSL's C structures (big-endian fields)."""
    rec = np.zeros(len(rows), dtype=dtype)
    for k, row in enumerate(rows):
        for name, value in row.items():
            rec[k][name] = value
    rec["sync"] = np.frombuffer(SYNC, dtype=np.uint8)
    out = np.concatenate([rec.view(np.uint8).reshape(len(rows), -1), payload.reshape(len(rows), -1)], axis=1)
    return out.tobytes()


# LSL's TBXHeader + timetag (lsl/reader/tbx.cpp): sync, frame_count_word, second_count,
# first_chan (32 bits), nstand, nchan, timetag
LSL_TBX = np.dtype([("sync", "u1", 4), ("frame_count_word", ">u4"), ("second_count", ">u4"),
                    ("first_chan", ">u4"), ("nstand", ">u2"), ("nchan", ">u2"), ("timetag", ">i8")])
# LSL 3's TBFHeader + timetag (lsl/reader/tbf.cpp): first_chan and nstand are 16-bit
LSL_TBF = np.dtype([("sync", "u1", 4), ("frame_count_word", ">u4"), ("second_count", ">u4"),
                    ("first_chan", ">i2"), ("nstand", ">i2"), ("timetag", ">i8")])
# LSL's CORHeader + CORPayload up to the visibilities (lsl/reader/cor.cpp)
LSL_COR = np.dtype([("sync", "u1", 4), ("frame_count_word", ">u4"), ("second_count", ">u4"),
                    ("first_chan", ">i2"), ("gain", ">i2"), ("timetag", ">i8"), ("navg", ">i4"),
                    ("stand0", ">i2"), ("stand1", ">i2")])
# LSL's DRXHeader + DRXPayload up to the samples (lsl/reader/drx.cpp, drx8.cpp)
LSL_DRX = np.dtype([("sync", "u1", 4), ("frame_count_word", ">u4"), ("second_count", ">u4"),
                    ("decimation", ">u2"), ("time_offset", ">u2"), ("timetag", ">u8"),
                    ("tuning_word", ">u4"), ("flags", ">u4")])


@needs_lsl
@pytest.mark.parametrize("nchan,nstand", [(12, 64), (16, 256), (4, 128)])
def test_tbx_vouched_by_lsl_read_by_asbru(nchan, nstand, tmp_path):
    nsrc = 3
    ntime = lsl_tbx_ntime(nsrc, 2 * nchan * nstand)
    rng = np.random.default_rng(nstand + nchan)
    iq = rng.integers(-8, 8, (ntime * nsrc, nchan, nstand, 2, 2), dtype=np.int8)
    rows = [{"frame_count_word": (0x08 << 24) | (40 + k), "second_count": 0,
             "first_chan": 3000 + nchan * (k % nsrc), "nstand": nstand, "nchan": nchan,
             "timetag": T0 + 8192 * (k // nsrc)} for k in range(ntime * nsrc)]
    raw = _mark5c_frames(LSL_TBX, rows, pack_nibbles(iq))
    fields, samples = lsl_decode("tbx", raw, tmp_path)
    assert np.array_equal(samples, iq) and [r["first_chan"] for r in fields] == [r["first_chan"] for r in rows]
    desc, status, table, payloads = asbru_read(f"tbx_{nchan}x{nstand}", raw, nsrc, 3000)
    assert (status == spec.VALID).all()
    for k, row in enumerate(rows):
        assert table[k]["frame_count"] == 40 + k and table[k]["id"] == 8
        assert (desc[k, spec.SRC], desc[k, spec.TIME_TAG], desc[k, spec.SEQ], desc[k, spec.NCHAN],
                desc[k, spec.X0]) == (k % nsrc, row["timetag"], row["timetag"] // 8192, nchan, nstand)
        assert np.array_equal(nibbles(payloads[k]).reshape(iq[k].shape), iq[k])


@needs_lsl3
@pytest.mark.parametrize("fmt,frame_id,nstand", [("tbf", 0x01, 256), ("ndp_tbf", 0x05, 64)])
def test_tbf_vouched_by_lsl_read_by_asbru(fmt, frame_id, nstand, tmp_path):
    ntime, nsrc = 2, 2
    iq = np.random.default_rng(nstand).integers(-8, 8, (ntime * nsrc, 12, nstand, 2, 2), dtype=np.int8)
    ticks = formats.get(fmt, "disk").params.extra["ticks"]
    rows = [{"frame_count_word": (frame_id << 24) | k, "second_count": 0,
             "first_chan": 600 + 12 * (k % nsrc), "nstand": nstand,
             "timetag": T0 + ticks * (k // nsrc)} for k in range(ntime * nsrc)]
    raw = _mark5c_frames(LSL_TBF, rows, pack_nibbles(iq))
    fields, samples = lsl_decode("tbf", raw, tmp_path, lsl3=True)
    assert np.array_equal(samples, iq) and [r["adp_id"] for r in fields] == [frame_id] * len(rows)
    desc, status, table, payloads = asbru_read(fmt, raw, nsrc, 600)
    assert (status == spec.VALID).all()
    for k, row in enumerate(rows):
        assert (table[k]["id"], table[k]["frame_count"], table[k]["nstand"]) == (frame_id, k, nstand)
        assert (desc[k, spec.SRC], desc[k, spec.TIME_TAG], desc[k, spec.SEQ]) == \
            (k % nsrc, row["timetag"], row["timetag"] // ticks)
        assert np.array_equal(nibbles(payloads[k]).reshape(iq[k].shape), iq[k])
    # each reader refuses the other's frames (its own ID)
    other = "ndp_tbf" if fmt == "tbf" else "tbf"
    assert formats.get(other, "disk").params.record_size != len(raw) // len(rows) or \
        (asbru_read(other, raw, nsrc, 600)[1] == spec.INVALID).all()


@needs_lsl
@pytest.mark.parametrize("nchan", [33, 72, 112, 192])
@pytest.mark.parametrize("frame_id", [0x02, 0x06])  # ADP, NDP
def test_cor_vouched_by_lsl_read_by_asbru(nchan, frame_id, tmp_path):
    nstand, nserver = 2, 2
    nbl = nstand * (nstand + 1) // 2
    rng = np.random.default_rng(nchan + frame_id)
    pairs = [(a, b) for a in range(1, nstand + 1) for b in range(a, nstand + 1)]
    rows, vis = [], []
    for t in range(2):
        for b, (s0, s1) in enumerate(pairs):
            for server in (1, 2):
                rows.append({"frame_count_word": (frame_id << 24) | (4 << 16) | (nserver << 8) | server,
                             "second_count": 0, "first_chan": 500 + 4 * nchan * (server - 1), "gain": 3,
                             "timetag": (77 + t) * 100 * 1_960_000, "navg": 100, "stand0": s0, "stand1": s1})
                v = (rng.standard_normal((nchan, 2, 2)) + 1j * rng.standard_normal((nchan, 2, 2))).astype(np.complex64)
                if s0 == s1:
                    v[:, 1, 0] = np.conj(v[:, 0, 1])  # what ADP/NDP send for autos and LSL rebuilds
                vis.append(v)
    vis = np.stack(vis)
    raw = _mark5c_frames(LSL_COR, rows, vis.view(np.uint8))
    fields, samples = lsl_decode("cor", raw, tmp_path)
    assert np.array_equal(samples, vis) and [r["adp_id"] for r in fields] == [frame_id] * len(rows)
    desc, status, table, payloads = asbru_read(f"cor_{nchan}", raw, nbl * nserver, 1)
    assert (status == spec.VALID).all()
    for k, row in enumerate(rows):
        server = row["frame_count_word"] & 0xFF
        b = pairs.index((row["stand0"], row["stand1"]))
        assert (table[k]["id"], table[k]["server"], table[k]["nserver"], table[k]["nchan_decim"]) == \
            (frame_id, server, nserver, 4)
        assert (desc[k, spec.SRC], desc[k, spec.SEQ], desc[k, spec.CHAN0], desc[k, spec.NCHAN],
                desc[k, spec.NAVG], desc[k, spec.GAIN], desc[k, spec.TIME_TAG]) == \
            (b * nserver + server - 1, 77 + k // (nbl * nserver), 500, nchan, 100, 3, row["timetag"])
        assert payloads[k].tobytes() == vis[k].tobytes()


@needs_lsl
def test_drx_written_by_lsl_read_by_asbru(tmp_path):
    from lsl.sim import drx as simdrx  # noqa: F401 (imported in the subprocess below)
    # LSL's simulator writes the frames (in a subprocess: LSL's telemetry stays off there)
    out = tmp_path / "sim.drx"
    script = f"""
import os, sys, tempfile
d = tempfile.mkdtemp(); open(os.path.join(d, 'lsl.cfg'), 'w').write('[ telemetry ]\\nenabled = False\\n')
os.environ['LSLCONFIGDIR'] = d
import numpy as np
from lsl.sim import drx
rng = np.random.default_rng(5)
with open({str(out)!r}, 'wb') as fh:
    for t in range(3):
        for tune in (1, 2):
            for pol in (0, 1):
                data = (rng.integers(-8, 8, 4096) + 1j * rng.integers(-8, 8, 4096)).astype(np.complex64)
                word = 0x11111111 * tune
                f = drx.SimFrame(beam=2, tune=tune, pol=pol, decimation=10, time_offset=0,
                                 frame_count=t, obs_time={T0} + t * 40960, flags=word << 32, data=data)
                f.write_raw_frame(fh)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    raw = out.read_bytes()
    fields, samples = lsl_decode("drx", raw, tmp_path)   # what LSL says it wrote
    desc, status, table, payloads = asbru_read("drx", raw, 4, 0)
    assert len(fields) == 12 and (status == spec.VALID).all()
    for k, row in enumerate(fields):
        tune, pol = (row["drx_id"] >> 3) & 7, row["drx_id"] >> 7
        assert (table[k]["beam"], table[k]["tuning"], table[k]["pol"], table[k]["tuning_word"]) == \
            (row["drx_id"] & 7, tune, pol, row["tuning_word"])
        assert (desc[k, spec.SRC], desc[k, spec.TIME_TAG], desc[k, spec.DECIMATION], desc[k, spec.BEAM],
                desc[k, spec.SEQ]) == (2 * (tune - 1) + pol, row["timetag"], 10, 2, row["timetag"] // 40960)
        assert desc[k, spec.TUNING if tune == 1 else spec.TUNING1] == 0x11111111 * tune
        assert np.array_equal(nibbles(payloads[k]), samples[k])


@needs_lsl
def test_drx8_vouched_by_lsl_read_by_asbru(tmp_path):
    n = 4
    iq = np.random.default_rng(8).integers(-128, 128, (n, 4096, 2), dtype=np.int8)
    rows = [{"frame_count_word": ((1 | (1 << 3) | ((k & 1) << 7)) << 24), "second_count": 0,
             "decimation": 20, "time_offset": 0, "timetag": T0 + 4096 * 20 * (k // 2),
             "tuning_word": 0x0BADF00D, "flags": 0} for k in range(n)]
    raw = _mark5c_frames(LSL_DRX, rows, iq.view(np.uint8))
    fields, samples = lsl_decode("drx8", raw, tmp_path)
    assert np.array_equal(samples, iq)
    desc, status, table, payloads = asbru_read("drx8", raw, 2, 0)
    assert (status == spec.VALID).all()
    for k, row in enumerate(fields):
        assert table[k]["drx_id"] == row["drx_id"] and table[k]["tuning_word"] == row["tuning_word"]
        assert (desc[k, spec.SRC], desc[k, spec.TIME_TAG], desc[k, spec.TUNING]) == (k & 1, row["timetag"], 0x0BADF00D)
        assert np.array_equal(payloads[k].view(np.int8).reshape(4096, 2), iq[k])


@needs_baseband
def test_vdif_written_by_baseband_read_by_asbru(tmp_path):
    from baseband import vdif
    fps, payload, nthread = 50, 1024, 3
    path = tmp_path / "bb.vdif"
    rng = np.random.default_rng(3)
    frames = []
    with open(path, "wb") as fh:
        for t in range(3 * fps):
            for th in range(nthread):
                sec, fr = divmod(500 * fps + t, fps)
                h = vdif.VDIFHeader.fromvalues(edv=0, nchan=1, bps=8, complex_data=False, frame_nr=fr,
                                               seconds=sec, ref_epoch=22, thread_id=th, station=0x4142,
                                               payload_nbytes=payload)
                words = rng.integers(0, 1 << 32, payload // 4, dtype=np.uint32)
                frame = vdif.VDIFFrame(h, vdif.VDIFPayload(words, header=h))
                frame.tofile(fh)
                frames.append((sec, fr, th, words.tobytes()))
    raw = path.read_bytes()
    desc, status, table, payloads = asbru_read(f"vdif_{32 + payload}", raw, nthread, 0)
    assert (status == spec.VALID).all()
    for k, (sec, fr, th, words) in enumerate(frames):
        assert (table[k]["seconds"], table[k]["frame_number"], table[k]["thread_id"], table[k]["ref_epoch"],
                table[k]["station_id"], table[k]["bits_per_sample_minus_1"] + 1) == (sec, fr, th, 22, 0x4142, 8)
        assert (desc[k, spec.SRC], desc[k, spec.SEQ], desc[k, spec.EPOCH], desc[k, spec.NBIT],
                desc[k, spec.COMPLEX]) == (th, sec * fps + fr, 22, 8, 0)
        assert payloads[k].tobytes() == words
