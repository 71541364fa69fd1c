"""The ring buffer (Bifrost's ``bifrost.ring``): in-process, thread-safe, zero-copy.

A capture writes each gulp into a :class:`Ring`; readers iterate ``ring.read()`` for
sequences and ``sequence.read(span_size)`` for spans, which are NumPy views of ring memory.
"""
from __future__ import annotations

from ..errors import EndOfDataStop, WouldBlock
from .memory import register_space, spaces
from .ring import Ring, RingWriter
from .sequence import ReadSequence, WriteSequence
from .span import ReadSpan, SpanBase, WriteSpan

__all__ = [
    "Ring", "RingWriter", "WriteSequence", "ReadSequence", "SpanBase", "WriteSpan", "ReadSpan",
    "EndOfDataStop", "WouldBlock", "register_space", "spaces",
]
