"""The capture engine: compiled receive loops, the sequence state machine, callbacks,
statistics.  Public names live in :mod:`asbru.packet_capture` (Bifrost's module)."""
from __future__ import annotations

from .callbacks import PacketCaptureCallback
from .disk import DiskReader
from .engine import CaptureEngine
from .status import Status
from .udp import UDPCapture

__all__ = ["CaptureEngine", "DiskReader", "PacketCaptureCallback", "Status", "UDPCapture"]
