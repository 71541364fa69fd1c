"""One capture, N receive threads, one ring: ``UDPCapture(..., threads=N)``,
``UDPCapture(..., socks=[...])``, ``UDPSniffer(..., threads=N)``,
``DiskReader(..., threads=N)``.  The design, the protocol and why it is exact:
docs/multicore.md.

* :mod:`.capture` -- the leader's side (:class:`~.capture.GroupCapture`: publication of the
  window, waiting for the receive threads, merging their masks, statistics) and the UDP
  capture's sockets (``GroupUDPCapture``); :mod:`.sniffer`, :mod:`.disk` -- the sniffer's
  packet sockets and the disk reader's file;
* :mod:`.follower` -- a receive thread on a UDP socket, and the per-packet work of every
  receive thread (a template, bound once for every format); :mod:`.follower_sniff`,
  :mod:`.follower_disk` -- the receive loops on a packet ring and on a file
  (:mod:`.bindings` binds them to the follower);
* :mod:`.handoff` -- the leader's receive backend: the receive threads' hand-off queues;
* :mod:`.shared` -- the control block and the low-level operations on it;
* :mod:`.masks` -- merging mask planes at commit; :mod:`.steer` -- SO_REUSEPORT steering;
  :mod:`.fanout` -- PACKET_FANOUT groups.
"""
