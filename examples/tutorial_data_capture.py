#!/usr/bin/env python3
"""Bifrost's data-capture tutorial (``tutorial/06_data_capture.ipynb``), run with asbru.

The notebook's code cells are reproduced below with ``bifrost`` replaced by ``asbru``
(``s/bifrost/asbru/g`` -- the imports, and the ``bifrost.ndarray`` / ``bifrost.quantize``
calls that use the imported module).  Nothing else in the tutorial's code is changed,
except the one thing that cannot run in any Python 3 (marked ``CHANGED`` below):

* ``ctypes.create_string_buffer(hdr_str)`` needs ``bytes``; ``json.dumps`` gives ``str``.
  The script encodes it (``.encode()``); ``len`` is unchanged for the ASCII JSON.

What the notebook leaves undefined is defined here with real LWA-SV ADP values
(``ADP_EPOCH``, ``FS``, ``CHAN_BW``) and the capture's ``utc_start``.  What the notebook
does not show -- somebody sending CHIPS packets -- is done with asbru's own writer
(``UDPTransmit('chips_N')``, 16 sources) after the capture is up, and the capture's
statistics are read back the Bifrost way, from its ProcLog files.

Things that run as written only because asbru accepts them (Bifrost would not):

* ``UDPCapture('chips', self.sock, self.nsrc, ...)`` has no ring argument.  asbru then
  gives the capture a ring of its own (``capture.ring``); the tutorial's ``oring`` stays
  empty.  Pass ``self.oring`` as the third argument to capture into it.
* the tutorial's keyword names ``max_size``, ``ntime_gulp``, ``ntime_slot`` are accepted.

Environment: ``ASBRU_TUTORIAL_PORT`` (default 10000) is the capture port on 127.0.0.1;
``ASBRU_TUTORIAL_NTIME`` (default 500) the number of spectra sent.
Run: ``python examples/tutorial_data_capture.py`` (writes ``output.dat`` in the current
directory).  Exit status 0 when every packet sent was captured.
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
import time as _time

# --- what the notebook leaves undefined (LWA-SV ADP values) --------------------------------
#: ADP time tags count ticks of the 196 MHz sampling clock since the UNIX epoch (UTC).
ADP_EPOCH = datetime.datetime(1970, 1, 1)
#: ADP sampling rate, Hz (the DP/ADP clock: 196 MHz).
FS = 196e6
#: ADP F-engine channel width, Hz (ADP's "CHAN_BW"; 196 MHz / 7840 = 25 kHz).
CHAN_BW = 25e3
#: the capture's start time (whole UTC seconds): the callback's time tags count from here.
UTC_START = datetime.datetime.fromtimestamp(int(_time.time()), datetime.timezone.utc).replace(tzinfo=None)

PORT = int(os.environ.get("ASBRU_TUTORIAL_PORT", "10000"))
NTIME = int(os.environ.get("ASBRU_TUTORIAL_NTIME", "500"))
NCHAN = 64        # channels per CHIPS packet sent below (payload 32 * 64 = 2048 bytes)
CHAN0 = 1000      # first channel sent (cfreq = (1000 + 31.5) * 25 kHz = 25.79 MHz)

# ===================================================================== notebook cell 1
import asbru  # noqa: E402  (the notebook: ``import bifrost``)

# ===================================================================== notebook cell 2
import json  # noqa: E402
import ctypes  # noqa: E402
import threading  # noqa: E402

from asbru.address import Address  # noqa: E402
from asbru.udp_socket import UDPSocket  # noqa: E402
from asbru.packet_capture import PacketCaptureCallback, UDPCapture  # noqa: E402

addr = Address('127.0.0.1', PORT)   # the notebook: Address('127.0.0.1', 10000)
sock = UDPSocket()
sock.bind(addr)
sock.timeout = 5.0

class CaptureOp(object):
    def __init__(self, log, oring, sock, nsrc=16, src0=0, max_size=9000, ntime_gulp=250, ntime_slot=25000, core=-1):
        self.log = log
        self.oring = oring
        self.sock = sock
        self.nsrc = nsrc
        self.src0 = src0
        self.max_size = max_size
        self.ntime_gulp = ntime_gulp
        self.ntime_slot = ntime_slot
        self.core = core
        self.shutdown_event = threading.Event()

    def shutdown(self):
        self.shutdown_event.set()

    def seq_callback(
        self, seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        timestamp0 = int((self.utc_start - ADP_EPOCH).total_seconds())
        time_tag0 = timestamp0 * int(FS)
        time_tag = time_tag0 + seq0 * (int(FS) // int(CHAN_BW))
        print("++++++++++++++++ seq0     =", seq0)
        print("                 time_tag =", time_tag)
        time_tag_ptr[0] = time_tag
        hdr = {
            "time_tag": time_tag,
            "seq0": seq0,
            "chan0": chan0,
            "nchan": nchan,
            "cfreq": (chan0 + 0.5 * (nchan - 1)) * CHAN_BW,
            "bw": nchan * CHAN_BW,
            "nstand": nsrc * 16,
            "npol": 2,
            "complex": True,
            "nbit": 4,
            "axes": "time,chan,stand,pol",
        }
        print("******** CFREQ:", hdr["cfreq"])
        hdr_str = json.dumps(hdr).encode()  # CHANGED: .encode() -- create_string_buffer needs bytes
        self.header_buf = ctypes.create_string_buffer(hdr_str)
        hdr_ptr[0] = ctypes.cast(self.header_buf, ctypes.c_void_p)
        hdr_size_ptr[0] = len(hdr_str)
        return 0

    def main(self):
        seq_callback = PacketCaptureCallback()
        seq_callback.set_chips(self.seq_callback)
        with UDPCapture('chips', self.sock, self.nsrc, self.src0, self.max_size,
                        self.ntime_gulp, self.ntime_slot, sequence_callback=seq_callback,
                        core=self.core) as capture:
            while not self.shutdown_event.is_set():
                status = capture.recv()
        del capture


# ===================================================================== driving the capture
# (not in the notebook: start CaptureOp, send it CHIPS traffic, watch it through ProcLog)
def _capture_logs(pid: int):
    """The capture's ProcLog block (``stats``, ``sizes``... -- what like_top shows), or None."""
    from asbru.proclog import load_by_pid
    return load_by_pid(pid).get("udp_capture")


def _capture_stats(pid: int):
    """The capture's ``stats`` log (written by every recv()), or None."""
    return (_capture_logs(pid) or {}).get("stats")


def run_capture() -> bool:
    import numpy
    from asbru.packet_writer import HeaderInfo, UDPTransmit
    from asbru.ring import Ring

    op = CaptureOp(logging.getLogger("tutorial.capture"), Ring(name="tutorial"), sock)
    op.utc_start = UTC_START          # the notebook uses self.utc_start without setting it
    thread = threading.Thread(target=op.main, name="CaptureOp")
    thread.start()

    # wait until the capture exists (its ProcLog block appears), then send
    pid = os.getpid()
    deadline = _time.monotonic() + 60
    while _capture_logs(pid) is None and _time.monotonic() < deadline and thread.is_alive():
        _time.sleep(0.05)

    desc = HeaderInfo()
    desc.set_nsrc(16)
    desc.set_nchan(NCHAN)
    desc.set_chan0(CHAN0)
    desc.set_tuning(1)
    rng = numpy.random.default_rng(6)
    noise = rng.standard_normal((8, 16, 32 * NCHAN * 2)).astype(numpy.float32).view(numpy.complex64)
    spectra = asbru.ndarray(shape=noise.shape, dtype='ci4')
    asbru.quantize(asbru.ndarray(noise), spectra, scale=3)

    osock = UDPSocket()
    osock.connect(addr)
    bfo = UDPTransmit('chips_%i' % NCHAN, osock)
    t0 = _time.monotonic()
    for i in range(NTIME):
        # header seq is 1-based: spectrum i is sent as seq i + 1 and captured as seq i
        bfo.send(desc, i + 1, 1, 0, 1, spectra[i % 8][None])
        _time.sleep(0.0005)
    nsent = NTIME * 16
    print("Sent: %i CHIPS packets (16 sources x %i spectra, %i channels) in %.2f s"
          % (nsent, NTIME, NCHAN, _time.monotonic() - t0))

    # the last gulps are committed when the stream stops (socket timeout: 5 s)
    stats = None
    deadline = _time.monotonic() + 30
    while _time.monotonic() < deadline:
        stats = _capture_stats(pid) or stats
        if stats and stats.get("nvalid", 0) >= nsent and stats.get("ngood_bytes", 0) >= nsent * 32 * NCHAN:
            break
        _time.sleep(0.1)
    op.shutdown()
    sock.shutdown()                   # unblock the capture's recv() now instead of in 5 s
    thread.join(30)
    osock.close()
    stats = stats or {}
    print("Captured: nvalid = %s, ngood_bytes = %s, nmissing_bytes = %s, ninvalid = %s"
          % (stats.get("nvalid"), stats.get("ngood_bytes"), stats.get("nmissing_bytes"),
             stats.get("ninvalid")))
    return stats.get("nvalid") == nsent and not thread.is_alive()


def run_writer() -> None:
    # ================================================================= notebook cell 3
    import time
    import numpy
    from asbru.packet_writer import HeaderInfo, DiskWriter

    with open('output.dat', 'wb') as fh:
        bfo = DiskWriter('tbn', fh, core=0)
        desc = HeaderInfo()
        desc.set_tuning(int(round(38e6 / 196e6 * 2**32)))
        desc.set_gain(20)

        time_tag = int(time.time()*196e6)

        data = numpy.random.randn(16, 512*10)
        data = data + 1j*numpy.random.randn(*data.shape)
        for i in range(16):
            data[i,:] *= 4
        data = asbru.ndarray(data.astype(numpy.complex64))

        qdata = asbru.ndarray(shape=data.shape, dtype='ci8')
        asbru.quantize(data, qdata, scale=2)
        print('Input:')
        for i in range(5):
            print('  ', i, '@', 0, ':', data[0,i]*2, '->', qdata[0,i])

        qdata = qdata.reshape(16, -1, 512)
        qdata = qdata.transpose(1,0,2).copy()

        # (the notebook's time tag increment, 10*1960, is kept; one TBN frame is 512*1960)
        bfo.send(desc, time_tag, qdata.shape[0]*1960, 0, 1, qdata)

    import struct
    print('Output:')
    with open('output.dat', 'rb') as fh:
        packet_header = fh.read(24)
        packet_payload = fh.read(512*2)
        packet_payload = struct.unpack('<1024b', packet_payload)
        i, q = packet_payload[0::2], packet_payload[1::2]
        print(list(zip(i,q))[:5])


if __name__ == "__main__":
    ok = run_capture()
    run_writer()
    sock.close()
    sys.exit(0 if ok else 1)
