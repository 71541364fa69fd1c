"""Decode a file of LWA frames with the LWA Software Library (LSL): the independent oracle of
tests/test_interop_lsl.py.  Run as a script in its own process:

    python tests/helpers/lsl_oracle.py KIND FRAMES_FILE OUT.npz

KIND is tbx, tbf, cor, drx, drx8 or vdif.  Every frame LSL reads is written to OUT.npz:
``fields`` (a JSON list, one dict of LSL's header and payload attributes per frame) and
``data`` (the frames' samples as LSL returns them, stacked).  A process of its own because
LSL's telemetry is switched off through its configuration directory (set before the first
import) and because TBF needs LSL 3 (LSL 4 dropped its TBF reader), found through PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np


def _quiet_lsl() -> None:
    # LSL reports usage over the network unless its configuration says not to
    cfgdir = tempfile.mkdtemp(prefix="asbru-lsl-")
    with open(os.path.join(cfgdir, "lsl.cfg"), "w") as fh:
        fh.write("[ telemetry ]\nenabled = False\n")
    os.environ["LSLCONFIGDIR"] = cfgdir


ATTRS = {
    "tbx": ("header", ("frame_id", "frame_count", "second_count", "first_chan", "nstand", "nchan"),
            "payload", ("timetag",)),
    "tbf": ("header", ("adp_id", "frame_count", "second_count", "first_chan", "nstand"),
            "payload", ("timetag",)),
    "cor": ("header", ("adp_id", "frame_count", "second_count", "first_chan", "gain"),
            "payload", ("timetag", "navg", "stand0", "stand1")),
    "drx": ("header", ("frame_count", "drx_id", "second_count", "decimation", "time_offset"),
            "payload", ("timetag", "tuning_word", "flags")),
    "vdif": ("header", ("is_invalid", "is_legacy", "seconds_from_epoch", "ref_epoch",
                        "frame_in_second", "version", "nchan", "frame_length", "is_complex",
                        "bits_per_sample", "thread_id", "station_id"),
             "payload", ()),
}
ATTRS["drx8"] = ATTRS["drx"]


def main(kind: str, path: str, out: str) -> None:
    _quiet_lsl()
    from lsl.reader import errors
    if kind == "tbx":
        from lsl.reader import tbx as mod
        read = mod.read_frame_ci8
    elif kind == "tbf":
        from lsl.reader import tbf as mod  # LSL 3
        read = mod.read_frame_ci8
    elif kind == "cor":
        from lsl.reader import cor as mod
        read = mod.read_frame
    elif kind == "drx":
        from lsl.reader import drx as mod
        read = mod.read_frame_ci8
    elif kind == "drx8":
        from lsl.reader import drx8 as mod
        read = mod.read_frame_ci8
    elif kind == "vdif":
        from lsl.reader import vdif as mod
        read = mod.read_frame_i8
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    import lsl.version
    fields, data = [], []
    with open(path, "rb") as fh:
        while True:
            try:
                frame = read(fh)
            except errors.EOFError:
                break
            part_h, names_h, part_p, names_p = ATTRS[kind]
            row = {n: _plain(getattr(frame.header, n)) for n in names_h}
            row.update({n: _plain(getattr(frame.payload, n)) for n in names_p})
            fields.append(row)
            arr = np.asarray(frame.payload.data)
            if arr.dtype.names:  # LSL's CI8 (re, im) records -> int8 [..., 2]
                arr = arr.view(np.int8).reshape(arr.shape + (2,))
            data.append(arr)
    np.savez(out, fields=json.dumps(fields), data=np.stack(data) if data else np.zeros(0),
             lsl_version=lsl.version.version)


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


if __name__ == "__main__":
    main(*sys.argv[1:4])
