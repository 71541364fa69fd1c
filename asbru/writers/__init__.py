"""Packet writers: HeaderInfo, DiskWriter, UDPTransmit (Bifrost's names are re-exported by
:mod:`asbru.packet_writer`).  See ``docs/writing.md``."""
from __future__ import annotations

from asbru.writers.base import PacketWriter, WriterStats
from asbru.writers.disk import DiskWriter
from asbru.writers.headerinfo import HeaderInfo
from asbru.writers.udp import UDPTransmit

__all__ = ["HeaderInfo", "DiskWriter", "UDPTransmit", "PacketWriter", "WriterStats"]
