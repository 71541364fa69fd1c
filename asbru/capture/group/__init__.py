"""One capture, N receive threads, one ring: ``UDPCapture(..., threads=N)`` or
``UDPCapture(..., socks=[...])``.  The design, the protocol and why it is exact:
docs/multicore.md.

* :mod:`.capture` -- the leader's side (a UDPCapture subclass: publication of the window,
  waiting for the receive threads, merging their masks, statistics);
* :mod:`.follower` -- a receive thread (template bound per format);
* :mod:`.handoff` -- the leader's receive backend: the receive threads' hand-off queues;
* :mod:`.shared` -- the control block and the low-level operations on it;
* :mod:`.masks` -- merging mask planes at commit; :mod:`.steer` -- SO_REUSEPORT steering.
"""
