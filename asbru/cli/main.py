"""The ``asbru`` typer application: one sub-command per module, one-line errors.

Errors a user can cause (unknown format, bad HOST:PORT, missing or unreadable file, out of
range option) are printed as ``asbru: error: <one line>`` on stderr with exit code 2 and no
traceback; typer/click usage errors keep their own exit code 2.
"""
from __future__ import annotations

import sys
from typing import Any

import typer

from ..errors import ArgumentError
from ..formats.spec import FormatError


class _App(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (ArgumentError, FormatError) as exc:
            _fail(str(exc))
        except FileNotFoundError as exc:
            _fail(f"{exc.filename}: no such file")
        except PermissionError as exc:
            _fail(f"{exc.filename}: permission denied")
        except BrokenPipeError:
            sys.exit(0)  # `asbru inspect ... | head`
        except KeyboardInterrupt:
            sys.stderr.write("asbru: interrupted\n")
            sys.exit(130)


def _fail(message: str) -> None:
    sys.stderr.write(f"asbru: error: {message.splitlines()[0] if message else 'failed'}\n")
    sys.exit(2)


app = _App(name="asbru", add_completion=False, no_args_is_help=True,
           pretty_exceptions_enable=False,
           help="Packet capture and packet writing tools for radio-telescope data streams.")


def _version(value: bool) -> None:
    if value:
        from .. import __version__
        sys.stdout.write(f"asbru {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", metavar="", callback=_version,
                                       is_eager=True, help="print the version and exit")) -> None:
    """Packet capture and packet writing tools for radio-telescope data streams."""


def _register() -> None:
    from .capture import capture
    from .dissector_cmd import dissector
    from .doctor import doctor
    from .formats_cmd import formats
    from .generate import generate
    from .inspect_cmd import inspect
    from .replay import replay
    from .rings import rings
    from .top import top
    from .warmup import warmup
    app.command()(capture)
    app.command()(replay)
    app.command()(generate)
    app.command()(inspect)
    app.command()(formats)
    app.command()(top)
    app.command()(rings)
    app.command()(doctor)
    app.command()(warmup)
    app.command()(dissector)


_register()


def main() -> None:
    app(prog_name="asbru")


if __name__ == "__main__":
    main()
