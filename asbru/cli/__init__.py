"""The ``asbru`` command line: capture, replay, generate, inspect, formats, top, doctor.

``asbru.cli.main.app`` is the typer application (console script ``asbru`` and
``python -m asbru``); each command lives in its own module.
"""
from __future__ import annotations
