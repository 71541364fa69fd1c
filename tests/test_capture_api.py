"""Public API of asbru.packet_capture: status codes, both callback styles, errors,
constructor forms, statistics and the proclog files."""
from __future__ import annotations

import ctypes
import json
import os

import numpy as np
import pytest

from asbru import proclog
from asbru.capture.testing import RingCollector, run_capture
from asbru.errors import ArgumentError, AsbruError
from asbru.packet_capture import (BF_CAPTURE_CHANGED, BF_CAPTURE_CONTINUED, BF_CAPTURE_ENDED,
                                  BF_CAPTURE_ERROR, BF_CAPTURE_INTERRUPTED, BF_CAPTURE_NO_DATA,
                                  BF_CAPTURE_STARTED, DiskReader, PacketCaptureCallback,
                                  UDPCapture)
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

from helpers.chips import FMT, P, chips_stream, in_order, slot_of

import helpers.format_harness as fh


def test_status_constants_have_bifrost_values():
    assert [BF_CAPTURE_STARTED, BF_CAPTURE_ENDED, BF_CAPTURE_CONTINUED, BF_CAPTURE_CHANGED,
            BF_CAPTURE_NO_DATA, BF_CAPTURE_INTERRUPTED, BF_CAPTURE_ERROR] == [0, 1, 2, 3, 4, 5, 6]
    assert BF_CAPTURE_ENDED in (1, 4, 5, 6) and isinstance(BF_CAPTURE_ENDED, int)


def _file(tmp_path, ntime=8, nsrc=2, **kw):
    data, pk = chips_stream(ntime, nsrc, **kw)
    path = tmp_path / "c.dat"
    path.write_bytes(b"".join(in_order(pk, ntime, nsrc)))
    return data, path


def _run(path, cb, nsrc=2, fmt=FMT, ring=None):
    ring = ring or Ring(name=f"api_{id(cb)}")
    ring.resize(4096, 1 << 20)
    with open(path, "rb") as f:
        with DiskReader(fmt, f, ring, nsrc, 0, 4, 4, cb) as cap:
            col = RingCollector(ring, 1 << 12)
            statuses = run_capture(cap)
        return cap, statuses, col.join()


def test_bifrost_pointer_style_callback(tmp_path):
    data, path = _file(tmp_path)
    seen = []

    def cb(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        seen.append((seq0, chan0, nchan, nsrc))
        time_tag_ptr[0] = 7_000_000 + seq0
        hdr = json.dumps({"chan0": chan0, "nchan": nchan}).encode()
        buf = ctypes.create_string_buffer(hdr)  # dies with this frame: asbru copies at once
        hdr_ptr[0] = ctypes.cast(buf, ctypes.c_void_p)
        hdr_size_ptr[0] = len(hdr)
        return 0

    pcc = PacketCaptureCallback()
    pcc.set_chips(cb)
    cap, statuses, seqs = _run(path, pcc)
    assert seen == [(1000, 100, 4, 2)]
    assert seqs[0].time_tag == 7_001_000
    assert json.loads(seqs[0].header) == {"chan0": 100, "nchan": 4}


def test_pythonic_callback_and_per_instance_storage(tmp_path):
    data, path = _file(tmp_path)
    a, b = PacketCaptureCallback(), PacketCaptureCallback()
    a.set_chips(lambda seq0, chan0, nchan, nsrc: {"who": "a", "seq0": seq0})
    b.set_chips(lambda seq0, chan0, nchan, nsrc: (42, "b-header"))
    _, _, sa = _run(path, a)
    _, _, sb = _run(path, b)
    assert json.loads(sa[0].header) == {"who": "a", "seq0": 1000} and sa[0].time_tag == 1000
    assert sb[0].header == b"b-header" and sb[0].time_tag == 42


def test_value_family_pointer_style_gets_time_tag_of_seq0(tmp_path):
    vec = fh.load_vector("drx")
    path = tmp_path / "drx.dat"
    path.write_bytes(vec.output)
    got = []

    def cb(seq0, time_tag, decim, chan0, chan1, nsrc, hdr_ptr, hdr_size_ptr):
        got.append((seq0, time_tag, decim, chan0, chan1, nsrc))
        hdr_ptr[0] = b"drx!"   # bytes are accepted too
        hdr_size_ptr[0] = 4
        return 0

    pcc = PacketCaptureCallback()
    pcc.set_drx(cb)
    cap, statuses, seqs = _run(path, pcc, nsrc=4, fmt="drx")
    (seq0, tt, decim, c0, c1, nsrc), = got
    bifrost = vec.reads["clean"].read["callbacks"][0]["args"]
    assert (decim, c0, c1, nsrc) == (bifrost["decim"], bifrost["chan0"], bifrost["chan1"], 4)
    assert tt == seq0 * decim * 4096  # the time tag OF seq0 (time_offset 0 in this file)
    assert seqs[0].time_tag == tt and seqs[0].header == b"drx!"
    assert statuses[0] == 0 and statuses[-1] == 1 and set(statuses[1:-1]) == {2}


def test_callback_exception_surfaces_and_nonzero_return_is_an_error(tmp_path):
    data, path = _file(tmp_path)
    pcc = PacketCaptureCallback()

    def boom(seq0, chan0, nchan, nsrc):
        raise ValueError("callback failed on purpose")

    pcc.set_chips(boom)
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, None, 2, 0, 4, 4, pcc)
        with pytest.raises(ValueError, match="on purpose"):
            cap.recv()
        cap.end()  # the callback that raised is not called again: the exception came once
        st = cap.stats
        assert st["ninvalid"] == st["nreceived"] == 16  # every received packet is counted
    pcc.set_chips(lambda s, c0, nc, ns, tt, hp, hs: 3)
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, None, 2, 0, 4, 4, pcc)
        with pytest.raises(AsbruError) as ei:
            cap.recv()
        assert "returned 3" in str(ei.value) and "\n" not in str(ei.value)
        pcc.set_chips(None)  # a working (absent) callback: the rest is captured
        cap.end()
        assert cap.stats["nvalid"] == 14 and cap.stats["ninvalid"] == 2


def test_set_functions_exist_for_every_capturable_format():
    pcc = PacketCaptureCallback()
    for name in ("simple", "chips", "snap2", "ibeam", "pbeam", "cor", "vdif", "tbn", "drx",
                 "drx8", "example_beacon"):
        getattr(pcc, f"set_{name}")(lambda *a: None)
        assert pcc.get(name) is not None
    with pytest.raises(AttributeError):
        pcc.set_nosuchformat
    with pytest.raises(ArgumentError):
        pcc.set_chips(42)


def test_callback_setters_come_from_the_format_registry():
    # PacketCaptureCallback names no format: a setter exists for every registered format
    # (a plugin's too) and dir() lists them all
    import types

    from asbru import formats
    from asbru.formats import example_beacon
    plugin = types.ModuleType("zz_setter_test")
    for attr in dir(example_beacon):
        setattr(plugin, attr, getattr(example_beacon, attr))
    plugin.NAME = "zz_setter_test"
    plugin.matches = lambda fmt: fmt == "zz_setter_test"
    formats.register(plugin)
    try:
        pcc = PacketCaptureCallback()
        listed = {n for n in dir(pcc) if n.startswith("set_")}
        assert listed == {f"set_{n}" for n in formats.list()} and "set_zz_setter_test" in listed
        setter = pcc.set_zz_setter_test
        assert setter.__name__ == "set_zz_setter_test"
        setter(print)
        assert pcc.get("zz_setter_test") is print
        with pytest.raises(AttributeError):
            pcc.no_such_attribute
    finally:
        formats._runtime.pop("zz_setter_test", None)
        formats._reset_for_tests()


def test_tutorial_form_without_ring_owns_a_ring(tmp_path):
    data, path = _file(tmp_path, ntime=8, nsrc=2)
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, 2, 0, 4, 4, sequence_callback=None, core=0)
        assert isinstance(cap.ring, Ring)
        col = RingCollector(cap.ring, 1 << 12)
        st = run_capture(cap)
        cap.end()
    seqs = col.join()
    assert st[0] == 0 and st[-1] == 1 and seqs[0].data.size == 8 * 2 * P
    s = UDPSocket()
    from asbru.address import Address
    from asbru.capture.testing import free_udp_port
    s.bind(Address("127.0.0.1", free_udp_port()))
    u = UDPCapture("chips", s, 16, 0, 9000, 250, 25000, sequence_callback=None, core=0)
    assert isinstance(u.ring, Ring) and u.nsrc == 16 and u.core == 0
    u.end()
    s.close()


def test_nsrc_sequence_is_a_product(tmp_path):
    data, path = _file(tmp_path, nsrc=4)
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, None, (2, 2), 0, 4, 4, None)
        assert cap.nsrc == 4
        cap.end()


@pytest.mark.parametrize("kwargs, word", [
    (dict(fmt="nosuch"), "fmt"),
    (dict(nsrc=0), "nsrc"),
    (dict(nsrc=-3), "nsrc"),
    (dict(buffer_ntime=0), "buffer_ntime"),
    (dict(max_payload_size=16), "max_payload_size"),
    (dict(slot_ntime=0), "slot_ntime"),
])
def test_bad_udp_arguments_are_one_line_errors(kwargs, word):
    from asbru.address import Address
    from asbru.capture.testing import free_udp_port
    s = UDPSocket()
    s.bind(Address("127.0.0.1", free_udp_port()))
    args = dict(fmt="chips", ring=None, nsrc=2, src0=0, max_payload_size=9000, buffer_ntime=4,
                slot_ntime=4)
    args.update(kwargs)
    fmt = args.pop("fmt")
    with pytest.raises(ArgumentError) as ei:
        UDPCapture(fmt, s, **args, sequence_callback=None)
    msg = str(ei.value)
    assert word in msg and "\n" not in msg
    s.close()


def test_closed_socket_and_ended_capture(tmp_path):
    with pytest.raises(ArgumentError, match="sock"):
        UDPCapture("chips", UDPSocket(), None, 2, 0, 9000, 4, 4, None)  # never bound
    data, path = _file(tmp_path)
    f = open(path, "rb")
    cap = DiskReader(FMT, f, None, 2, 0, 4, 4, None)
    f.close()
    with pytest.raises(ArgumentError, match="closed"):
        cap.recv()
    cap.end()
    with pytest.raises(ArgumentError, match="ended"):
        cap.recv()


def test_stats_published_to_proclog(tmp_path, monkeypatch):
    monkeypatch.setenv("ASBRU_PROCLOG_DIR", str(tmp_path / "logs"))
    data, path = _file(tmp_path, ntime=12, nsrc=2)
    with open(path, "rb") as f1, open(path, "rb") as f2:
        a = DiskReader(FMT, f1, None, 2, 0, 4, 4, None, core=1)
        b = DiskReader(FMT, f2, None, 2, 0, 4, 4, None)
        col = RingCollector(a.ring, 1 << 12)
        run_capture(a)
        logs = proclog.load_by_pid(os.getpid())
        assert set(logs) >= {"disk_reader", "disk_reader_2"}
        blk = logs["disk_reader"]
        st = a.stats
        for key in ("nvalid", "nvalid_bytes", "ninvalid", "nlate", "ngood_bytes",
                    "nmissing_bytes", "nduplicate"):
            assert blk["stats"][key] == st[key]
        assert blk["stats"]["ngood_bytes"] == 12 * 2 * P  # includes the final flush
        assert blk["sizes"] == {"nsrc": 2, "nseq_per_buf": 4, "slot_ntime": 4}
        assert blk["type"] == {"type": FMT} and blk["bind"] == {"ncore": 1, "core0": 1}
        assert blk["chans"]["chan0"] == 100 and blk["chans"]["payload_size"] == P
        assert "process_time" in blk["perf"]
        assert os.getpid() in proclog.list_pids()
        a.end()
        b.end()
        col.join()
        assert "disk_reader" not in proclog.load_by_pid(os.getpid())  # freed at end()
    assert proclog.load_by_filename(tmp_path / "nope") == {}


def test_ring_fill_is_published_for_top(tmp_path, monkeypatch):
    """A guaranteed reader that has not read anything holds what the capture wrote: the
    published ring_fill says how much of the ring that is."""
    monkeypatch.setenv("ASBRU_PROCLOG_DIR", str(tmp_path / "logs"))
    data, path = _file(tmp_path, ntime=12, nsrc=2)
    ring = Ring(name="api_fill")
    ring.resize(4096, 1 << 16)
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, ring, 2, 0, 4, 4, None)
        assert int(cap.recv()) == BF_CAPTURE_STARTED
        held = ring.open_earliest_sequence(guarantee=True)  # reads nothing
        run_capture(cap)
        fill = proclog.load_by_pid(os.getpid())["disk_reader"]["stats"]["ring_fill"]
        assert fill > 0 and fill == round(ring.fill, 4)
        held.close()
        cap.end()
