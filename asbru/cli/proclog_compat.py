"""The statistics publisher of ``asbru capture``: :class:`asbru.proclog.BlockLogs` whose
updates never raise (monitoring must never stop a capture).

Only ``cli/capture.py`` uses this module; it goes when that command runs on the capture
engine (which publishes through ``asbru.proclog`` itself).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..proclog import BlockLogs


class Publisher(BlockLogs):
    """The logs of one block (e.g. ``cli_capture``) of this process."""

    def update(self, log: str, contents: str | Mapping[str, Any]) -> None:
        try:
            super().update(log, contents)
        except OSError:
            pass  # a full /dev/shm must not stop a capture
