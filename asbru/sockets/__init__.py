"""Sockets for compiled code: libc syscalls callable from numba (``syscalls``), mmsghdr/iovec
vectors (``msgvec``) and the AF_PACKET TPACKET_V3 receive ring (``packet_ring``).

Import the submodules directly; this package imports nothing so that importing one of them
does not pull in the others.
"""
