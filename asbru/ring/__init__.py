"""The ring buffer (Bifrost's ``bifrost.ring``): thread-safe, zero-copy.

A capture writes each gulp into a :class:`Ring`; readers iterate ``ring.read()`` for
sequences and ``sequence.read(span_size)`` for spans, which are NumPy views of ring memory.
Memory spaces: ``system`` (default), ``cuda_host`` (pinned), ``cuda`` (device memory, spans
are CuPy arrays) and ``shm`` (a ring shared between processes, ``asbru.ring.shm``);
:func:`copy` streams one ring into another across spaces.
"""
from __future__ import annotations

from ..errors import EndOfDataStop, WouldBlock
from .memory import register_space, spaces
from .ring import Ring, RingWriter
from .sequence import ReadSequence, WriteSequence
from .gpu import SpaceUnavailable
from .span import AcquiredSpan, ReadSpan, SpanBase, WriteSpan
from .transfer import copy

__all__ = [
    "Ring", "RingWriter", "WriteSequence", "ReadSequence", "SpanBase", "WriteSpan", "ReadSpan",
    "AcquiredSpan",
    "EndOfDataStop", "WouldBlock", "register_space", "spaces", "copy", "SpaceUnavailable",
]
