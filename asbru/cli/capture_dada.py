"""``asbru capture FORMAT --bind HOST:PORT --dada KEY``: a UDPCapture whose ring is streamed
into an existing PSRDADA ring (made with ``dada_db -k KEY``), one observation per capture
sequence, so PSRDADA programs (dada_dbdisk, dada_dbnull, dspsr, heimdall) read it live.

The header of each observation carries the format's sequence-callback arguments (``nchan``
becomes ``NCHAN``, ``nsrc`` ``NANT``, the others ``ASBRU_<NAME>``), ``UTC_START``,
``OBS_OFFSET 0`` and ``ASBRU_TIME_TAG``; see docs/ring.md.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Optional

from ..errors import ArgumentError
from . import common

GULP = 32            # time slots per ring span


def _header_callback(fmt: str, names: tuple[str, ...]) -> Any:
    """A Pythonic sequence callback taking exactly the format's leading arguments and
    returning them (with the format) as the sequence header."""
    if not names or not all(n.isidentifier() for n in names):
        return None
    params = ", ".join(names)
    ns: dict[str, Any] = {"fmt": fmt}
    exec(f"def cb({params}):\n    return {{'format': fmt, " + ", ".join(f"{n!r}: {n}" for n in names) + "}\n", ns)
    return ns["cb"]


def capture_to_dada(fmt: str, bind: str, nsrc: int, src0: int, max_size: Optional[int],
                    duration: Optional[float], json_out: bool, rcvbuf: int, dada: str) -> None:
    from ..address import Address
    from ..packet_capture import PacketCaptureCallback, UDPCapture
    from ..psrdada import parse_key, ring_to_dada
    from ..psrdada.hdu import DadaWriter
    from ..ring import Ring
    from ..udp_socket import UDPSocket

    f = common.get_format(fmt, "capture")
    host, port, _ = common.parse_hostport(bind, "--bind", allow_port_zero=True)
    common.positive(nsrc, "--nsrc")
    common.positive(src0, "--src0", allow_zero=True)
    if duration is not None:
        common.positive(duration, "--duration")
    key = parse_key(dada)
    DadaWriter(key).close()                       # one-line error now if there is no such ring
    size = max_size or f.params.fixed_packet_size or 9000
    if not 1 <= size <= 65536:
        raise ArgumentError(f"--max-size: must be in 1..65536, got {size}")

    sock = UDPSocket()
    sock.bind(Address(host, port))
    sock.timeout = 0.1
    import socket as _socket
    probe = _socket.socket(fileno=os.dup(sock.fileno()))   # the bound address (port 0 picks one)
    bound = probe.getsockname()[:2]
    probe.close()
    ring = Ring(name=f"cli_dada_{os.getpid()}")
    cb = PacketCaptureCallback()
    func = _header_callback(fmt, f.callback_arg_names)
    if func is not None:
        getattr(cb, f"set_{f.name}")(func)
    cap = UDPCapture(fmt, sock, ring, nsrc, src0, size, GULP, GULP, cb)
    stop = threading.Event()
    result: dict[str, Any] = {}
    bridge = threading.Thread(target=lambda: result.update(ring_to_dada(ring, key, stop=stop)),
                              name="asbru-dada", daemon=True)
    bridge.start()
    why = {"stop": ""}
    old = {s: signal.signal(s, lambda *_: why.__setitem__("stop", "signal")) for s in (signal.SIGTERM, signal.SIGINT)}
    if not json_out:
        common.err.print(f"capturing {fmt} on {bound[0]}:{bound[1]} -> PSRDADA key {key:x} (Ctrl-C to stop)")
    t0 = time.monotonic()
    try:
        while not why["stop"]:
            cap.recv()
            if duration is not None and time.monotonic() - t0 >= duration:
                why["stop"] = "duration"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        cap.end()                                 # ends the ring's writing: the bridge finishes
        bridge.join(30)
        if bridge.is_alive():
            stop.set()
            bridge.join(5)
        sock.close()
    st = cap.stats
    summary = {"format": fmt, "bind": f"{bound[0]}:{bound[1]}", "dada": f"{key:x}",
               "observations": result.get("nobs", 0), "dada_bytes": result.get("nbyte", 0),
               "packets": int(st.get("nvalid", 0)), "missing_bytes": int(st.get("nmissing_bytes", 0)),
               "seconds": round(time.monotonic() - t0, 3), "stopped_by": why["stop"]}
    if json_out:
        common.print_json(summary)
    else:
        for k, v in summary.items():
            common.out.print(f"{k}: {v}")
