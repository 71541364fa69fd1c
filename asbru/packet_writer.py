"""Bifrost's ``bifrost.packet_writer`` names: ``HeaderInfo``, ``DiskWriter``, ``UDPTransmit``.

``from asbru.packet_writer import HeaderInfo, DiskWriter, UDPTransmit`` is a drop-in for
Bifrost's module (see ``docs/writing.md`` for the differences).
"""
from __future__ import annotations

from asbru.writers import DiskWriter, HeaderInfo, PacketWriter, UDPTransmit, WriterStats

__all__ = ["HeaderInfo", "DiskWriter", "UDPTransmit", "PacketWriter", "WriterStats"]
