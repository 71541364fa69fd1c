"""``asbru.udp_socket.UDPSocket``: Bifrost's module name for :class:`asbru.sockets.udp.UDPSocket`
(the code lives with the other socket modules in ``asbru/sockets``)."""
from asbru.sockets.udp import DEFAULT_BUFFER_SIZE, UDPSocket, port_sharers

__all__ = ["UDPSocket", "DEFAULT_BUFFER_SIZE", "port_sharers"]
