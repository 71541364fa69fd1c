"""The ``asbru`` console script: the command line, with Ctrl-C as one line at any moment.

Importing the command line (typer, rich, numpy, numba) takes a few tenths of a second;
an interrupt then would otherwise print the import's traceback.  This module imports
nothing heavy before it can catch it.
"""
from __future__ import annotations

import sys


def main() -> None:
    try:
        from .main import app
        app(prog_name="asbru")
    except KeyboardInterrupt:
        sys.stderr.write("asbru: interrupted\n")
        sys.exit(130)
