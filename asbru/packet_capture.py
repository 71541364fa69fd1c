"""Bifrost's ``bifrost.packet_capture`` names: captures, callbacks, status codes.

``UDPCapture``/``DiskReader`` run the receive loop in the calling thread (``recv()``);
``core`` is recorded (proclog ``bind``) but pins nothing: asbru never changes the affinity
of the caller's thread.  See docs/capture.md.
"""
from __future__ import annotations

from typing import Any

from asbru.capture.callbacks import PacketCaptureCallback
from asbru.capture.disk import DiskReader
from asbru.capture.status import (BF_CAPTURE_CHANGED, BF_CAPTURE_CONTINUED, BF_CAPTURE_ENDED,
                                  BF_CAPTURE_ERROR, BF_CAPTURE_INTERRUPTED, BF_CAPTURE_NO_DATA,
                                  BF_CAPTURE_STARTED, Status)
from asbru.capture.udp import UDPCapture
from asbru.errors import ArgumentError

__all__ = [
    "PacketCaptureCallback", "UDPCapture", "UDPSniffer", "UDPVerbsCapture", "DiskReader", "Status",
    "BF_CAPTURE_STARTED", "BF_CAPTURE_ENDED", "BF_CAPTURE_CONTINUED", "BF_CAPTURE_CHANGED",
    "BF_CAPTURE_NO_DATA", "BF_CAPTURE_INTERRUPTED", "BF_CAPTURE_ERROR",
]


class UDPVerbsCapture:
    """Not available: asbru has no InfiniBand verbs backend (Bifrost: UNSUPPORTED)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ArgumentError("UDPVerbsCapture is not supported by asbru (no verbs backend); "
                            "use UDPCapture or UDPSniffer")


def __getattr__(name: str) -> Any:
    # the sniffer backend lives in its own module (asbru.capture.sniffer)
    if name == "UDPSniffer":
        from asbru.capture.sniffer import UDPSniffer
        return UDPSniffer
    raise AttributeError(f"module 'asbru.packet_capture' has no attribute {name!r}")
