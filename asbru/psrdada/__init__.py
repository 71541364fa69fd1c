"""PSRDADA rings (SysV shared memory + semaphores) spoken natively: write an asbru ring's
sequences into a PSRDADA ring as observations, read PSRDADA observations into an asbru ring.

No PSRDADA library is needed: the layout and protocol are implemented in :mod:`.ipcbuf`
from PSRDADA's public source, so PSRDADA's own programs share the ring with asbru.
"""
from __future__ import annotations

from .bridge import STANDARD_KEYS, dada_header, dada_to_ring, ring_to_dada
from .hdu import DadaReader, DadaWriter, create, destroy, format_header, keys_in_use, parse_header, parse_key

__all__ = ["ring_to_dada", "dada_to_ring", "dada_header", "STANDARD_KEYS", "DadaWriter", "DadaReader",
           "create", "destroy", "format_header", "parse_header", "parse_key", "keys_in_use"]
