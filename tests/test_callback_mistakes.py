"""Sequence callbacks that get things wrong (issue 13): header sizes larger than the
buffer, exceptions, re-entry, wrong arity, values JSON cannot hold, non-integer time tags.
Each is one line naming the callback; no byte outside the callback's buffer is read; every
received packet is counted."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from asbru import formats
from asbru.capture.callbacks import MAX_HEADER_FROM_ADDRESS
from asbru.capture.testing import RingCollector, run_capture
from asbru.errors import ArgumentError, AsbruError
from asbru.formats import batch
from asbru.packet_capture import DiskReader, PacketCaptureCallback
from asbru.ring import Ring

NCHAN = 4
RS = 16 + 32 * NCHAN
FMT = f"chips_{NCHAN}"
NSRC = 2
NREC = 800


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    data = np.random.default_rng(3).integers(0, 256, (NREC // NSRC, NSRC, 32 * NCHAN), dtype=np.uint8)
    raw = batch.encode_packets(formats.get(FMT, "write"),
                               batch.headerinfo(nsrc=NSRC, nchan=NCHAN, chan0=100), 1001, 1, 0, 1,
                               data)
    path = tmp_path_factory.mktemp("cb") / "rec.dat"
    path.write_bytes(raw)
    return path


def capture(path, func):
    """-> (exception from the recv loop or None, exception from end() or None, reader, seqs)."""
    cb = PacketCaptureCallback()
    cb.set_chips(func)
    ring = Ring(name=f"cbm_{id(func):x}")
    ring.resize(4096, 4 << 20)
    err = end_err = None
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, ring, NSRC, 0, 4, 4, cb)
        col = RingCollector(ring, 1 << 16)
        try:
            run_capture(cap)
        except BaseException as exc:   # noqa: BLE001 - the test looks at it
            err = exc
        try:
            cap.end()
        except BaseException as exc:   # noqa: BLE001
            end_err = exc
        seqs = col.join()
    return err, end_err, cap, seqs


def one_line_naming(exc, func_name, *words):
    msg = str(exc)
    assert "\n" not in msg, msg
    assert f"chips sequence callback {func_name!r}" in msg, msg
    for w in words:
        assert w in msg, msg


def all_counted(cap):
    st = cap.stats
    assert st["nreceived"] == NREC
    assert st["nvalid"] + st["ninvalid"] + st["nlate"] + st["nduplicate"] == NREC


# ---------------------------------------------------------------- header size vs buffer
def test_header_size_larger_than_the_cast_buffer_is_refused(recording):
    # main copied hdr_size_ptr[0] bytes of whatever followed the buffer into the ring header
    def big(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        buf = ctypes.create_string_buffer(b'{"a": 1}')
        hdr_ptr[0] = ctypes.cast(buf, ctypes.c_void_p)
        hdr_size_ptr[0] = 4096
        return 0
    err, end_err, cap, seqs = capture(recording, big)
    assert isinstance(err, AsbruError) and end_err is None
    one_line_naming(err, "big", "4096", "9-byte buffer")
    assert seqs == [] and cap.stats["ninvalid"] == NREC
    all_counted(cap)


@pytest.mark.parametrize("kind, size", [("array", 8), ("bytes", 8), ("c_char_p", 9)])
def test_header_size_larger_than_a_ctypes_array_or_bytes_is_refused(recording, kind, size):
    def big(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        hdr_ptr[0] = {"array": lambda: (ctypes.c_char * 8)(),
                      "bytes": lambda: b"12345678",
                      "c_char_p": lambda: ctypes.cast(ctypes.c_char_p(b"12345678"),
                                                      ctypes.c_void_p)}[kind]()
        hdr_size_ptr[0] = 100
        return 0
    err, _, cap, _ = capture(recording, big)
    one_line_naming(err, "big", "100", f"{size}-byte")
    all_counted(cap)


def test_bare_address_sizes_above_the_documented_maximum_are_refused(recording):
    keep = ctypes.create_string_buffer(MAX_HEADER_FROM_ADDRESS + 10)

    def bare(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        hdr_ptr[0] = ctypes.addressof(keep)
        hdr_size_ptr[0] = MAX_HEADER_FROM_ADDRESS + 1
        return 0
    err, _, cap, _ = capture(recording, bare)
    one_line_naming(err, "bare", "bare address", str(MAX_HEADER_FROM_ADDRESS))
    all_counted(cap)


def test_header_within_its_buffer_is_copied_exactly(recording):
    def ok(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        buf = ctypes.create_string_buffer(b'{"chan0": 100}xyz')
        hdr_ptr[0] = ctypes.cast(buf, ctypes.c_void_p)
        hdr_size_ptr[0] = 14
        time_tag_ptr[0] = np.uint64(12345)
        return 0
    err, end_err, cap, seqs = capture(recording, ok)
    assert err is None and end_err is None
    assert seqs[0].header == b'{"chan0": 100}' and seqs[0].time_tag == 12345
    assert cap.stats["nvalid"] == NREC


# ---------------------------------------------------------------- exceptions and re-entry
def test_a_raising_callback_is_not_called_again_and_every_packet_is_counted(recording):
    # main: end() called it again (a second exception) and counted 16 of 800 packets
    calls = []

    def boom(seq0, chan0, nchan, nsrc):
        calls.append(seq0)
        raise RuntimeError("on purpose")
    err, end_err, cap, seqs = capture(recording, boom)
    assert isinstance(err, RuntimeError) and "on purpose" in str(err)
    assert any("'boom'" in n for n in getattr(err, "__notes__", []))
    assert end_err is None and len(calls) == 1 and seqs == []
    st = cap.stats
    assert st["ninvalid"] == NREC
    all_counted(cap)


@pytest.mark.parametrize("method", ["recv", "flush", "end"])
def test_reentering_the_capture_from_its_callback_is_one_line(recording, method):
    # main: RecursionError and no data
    box = {}

    def reenter(seq0, chan0, nchan, nsrc):
        getattr(box["cap"], method)()
        return {}
    cb = PacketCaptureCallback()
    cb.set_chips(reenter)
    with open(recording, "rb") as fh:
        cap = box["cap"] = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, cb)
        with pytest.raises(ArgumentError) as ei:
            run_capture(cap)
        msg = str(ei.value)
        assert "\n" not in msg and f"DiskReader.{method}()" in msg and "callback" in msg
        cap.end()
    all_counted(cap)


# ---------------------------------------------------------------- what the callback gives
def wrong_arity(seq0, chan0):
    return {}


def ndarray_header(seq0, chan0, nchan, nsrc):
    return {"weights": np.ones(4)}


def nan_header(seq0, chan0, nchan, nsrc):
    return {"gain": float("nan")}


def str_time_tag(seq0, chan0, nchan, nsrc):
    return ("123", {})


def float_time_tag(seq0, chan0, nchan, nsrc):
    return (1.5, {})


def float_time_tag_ptr(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
    time_tag_ptr[0] = 2.0
    return 0


def nonzero_return(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
    return 7


@pytest.mark.parametrize("func, words", [
    (wrong_arity, ["4 arguments", "7"]),
    (ndarray_header, ["header['weights']", "numpy array"]),
    (nan_header, ["header['gain']", "nan"]),
    (str_time_tag, ["time tag", "str"]),
    (float_time_tag, ["time tag", "float"]),
    (float_time_tag_ptr, ["time_tag_ptr[0]", "float"]),
    (nonzero_return, ["returned 7"]),
])
def test_every_mistake_names_the_callback_and_what_was_wrong(recording, func, words):
    err, end_err, cap, seqs = capture(recording, func)
    assert isinstance(err, (AsbruError, ArgumentError)), repr(err)
    one_line_naming(err, func.__name__, *words)
    assert end_err is None and seqs == []
    all_counted(cap)


def test_numpy_scalars_in_a_header_are_plain_json(recording):
    def np_header(seq0, chan0, nchan, nsrc):
        return (np.int64(77), {"n": np.int64(3), "f": np.float32(0.5), "ok": np.bool_(True)})
    err, _, cap, seqs = capture(recording, np_header)
    assert err is None
    assert seqs[0].header == b'{"n": 3, "f": 0.5, "ok": true}' and seqs[0].time_tag == 77
