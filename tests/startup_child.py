"""Child of tests/test_startup_loss.py and benchmarks/startup.py (run with a fresh, empty kernel
cache in its environment): a CHIPS sender process runs at ``--rate`` packets/s from 16
sources; while it runs, a UDP socket with an 8 MiB receive buffer is bound, a UDPCapture
is made on it (compiling its loop, cold) and drained until the sender stops.  Prints one
JSON line: the bind time, the capture's counters, and every (time, first seq) the sender
logged, so the parent can count what was sent after the bind.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time

NSRC = 16
NCHAN = 255                # chips_255: 16 + 8160 bytes, the "8 KiB" CHIPS packet
RCVBUF = 8 << 20

SENDER = r'''
import signal, socket, struct, sys, time
stop = [False]
signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
port, rate, seconds, nsrc, nchan = (int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]),
                                    int(sys.argv[4]), int(sys.argv[5]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
payload = bytes(range(256)) * (nchan * 32 // 256) + bytes(nchan * 32 % 256)
log = []
t0 = time.perf_counter()
seq = 1
while not stop[0] and time.perf_counter() - t0 < seconds:
    due = t0 + (seq - 1) * nsrc / rate
    wait = due - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    log.append((time.time(), seq))
    for src in range(nsrc):
        hdr = struct.pack(">BBBBBBHQ", src + 1, 0, nchan, 1, 0, nsrc, 100, seq)
        try:
            s.sendto(hdr + payload, ("127.0.0.1", port))
        except OSError:
            pass            # nobody bound yet (ECONNREFUSED is not reported on unconnected sends)
    seq += 1
log.append((time.time(), seq))
print(repr(log))
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--after", type=float, default=3.0, help="seconds to send after the capture is made")
    ap.add_argument("--lead", type=float, default=0.5, help="seconds the sender runs before the bind")
    ap.add_argument("--stage-bytes", type=int, default=None, help="UDPCapture's staging limit")
    a = ap.parse_args()
    from asbru.address import Address
    from asbru.packet_capture import UDPCapture
    from asbru.udp_socket import UDPSocket
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    # the sender must outlive a cold compile: it is stopped (by its duration) well after
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(port), str(a.rate), "600",
                               str(NSRC), str(NCHAN)], stdout=subprocess.PIPE, text=True)
    time.sleep(a.lead)
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", port), reuse_port=False)
    fd = sock.fileno()
    with socket.socket(fileno=os.dup(fd)) as dup:
        try:
            dup.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)      # SO_RCVBUFFORCE (root)
        except OSError:
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        rcvbuf = dup.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    sock.timeout = 0.5
    t_bind = time.time()
    t0 = time.perf_counter()
    extra = {} if a.stage_bytes is None else {"stage_bytes": a.stage_bytes}
    cap = UDPCapture("chips", sock, None, NSRC, 0, 9000, 64, 1, None, **extra)
    construct_s = time.perf_counter() - t0
    t_end = time.time() + a.after
    nrecv = 0
    while time.time() < t_end:
        cap.recv()
        nrecv += 1
    sender.terminate()
    out, _ = sender.communicate(timeout=30)
    t_stop = time.time()
    # take what is staged and queued (the sender was stopped): until the socket stays empty
    deadline = time.time() + 600
    while time.time() < deadline:
        if int(cap.recv()) not in (0, 1, 2, 3):   # NO_DATA/... once nothing is left
            break
    cap.end()
    st = cap.stats
    print(json.dumps({"t_bind": t_bind, "t_stop": t_stop, "construct_s": construct_s,
                      "rcvbuf": rcvbuf, "nvalid": st["nvalid"], "ninvalid": st["ninvalid"],
                      "nkernel_drops": st["nkernel_drops"], "nreceived": st["nreceived"],
                      "staged": getattr(cap, "staged", None), "packet_bytes": 16 + 32 * NCHAN,
                      "stage_bytes": getattr(cap, "_stage_bytes", None),
                      "sender_log": [list(x) for x in eval(out.strip().splitlines()[-1])]
                      if out.strip() else []}))
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
