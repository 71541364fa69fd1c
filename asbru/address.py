"""``asbru.address.Address``: Bifrost's module name for :class:`asbru.sockets.address.Address`
(the code lives with the other socket modules in ``asbru/sockets``)."""
from asbru.sockets.address import Address

__all__ = ["Address"]
