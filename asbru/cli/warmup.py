"""``asbru warmup``: compile the kernels of some or all formats ahead of their first use.

Each (format, backend) pair compiles in a worker process (as many as there are CPUs) into
the shared kernel cache; the first use of that pair in any later process then only loads
it (~0.1-0.2 s).  Backends:

* ``udp``     -- ``UDPCapture``'s loop and ``asbru capture``'s receive kernel
* ``sniffer`` -- ``UDPSniffer``'s loop (compiling needs no CAP_NET_RAW)
* ``disk``    -- ``DiskReader``'s loop (formats with a fixed record size)
* ``write``   -- ``DiskWriter``/``UDPTransmit``: the header filler and the send loops
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import time
from typing import Optional

import typer

from ..errors import ArgumentError
from . import common

BACKENDS = ("udp", "sniffer", "disk", "write")
_ROLE = {"udp": "capture", "sniffer": "capture", "disk": "disk", "write": "write"}
# format strings tried for a format NAME whose role needs a size ("chips" -> "chips_4")
_SUFFIXES = ("", "_4", "1_4", "_4x2", "_1056", "_lwa352_4", "_64", "_1024")


def example_string(name: str, role: str) -> Optional[str]:
    """A format string of ``name`` that ``role`` accepts (the kernels do not depend on the
    size it names), or None."""
    from .. import formats
    from ..formats.spec import FormatError
    for suffix in _SUFFIXES:
        try:
            formats.get(name + suffix, role)
            return name + suffix
        except FormatError:
            continue
    return None


def _compile_writer(fmt: str) -> None:
    import socket

    from ..address import Address
    from ..array import ndarray
    from ..packet_writer import DiskWriter, HeaderInfo, UDPTransmit
    from ..udp_socket import UDPSocket
    from .. import formats
    params = formats.get(fmt, "write").params
    data = ndarray(shape=(1, 1, int(params.samples_per_packet or 1)), dtype=str(params.write_dtype))
    with open(os.devnull, "wb") as fh:
        DiskWriter(fmt, fh).send(HeaderInfo(), 0, 1, 0, 1, data)
    # UDPTransmit's send loop: one datagram to a socket of our own
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        tx = UDPSocket()
        try:
            tx.connect(Address("127.0.0.1", rx.getsockname()[1]))
            UDPTransmit(fmt, tx).send(HeaderInfo(), 0, 1, 0, 1, data)
        finally:
            tx.close()


def compile_one(name: str, backend: str) -> tuple[str, str, float, str]:
    """Compile ``name``'s kernels for ``backend``: (name, backend, seconds, note)."""
    from .. import formats
    t0 = time.perf_counter()
    fmt = example_string(name, _ROLE[backend])
    if fmt is None:
        return name, backend, 0.0, "not available for this format"
    f = formats.get(fmt, _ROLE[backend])
    if backend in ("udp", "sniffer", "disk"):
        if backend == "disk" and not f.params.record_size:
            return name, backend, 0.0, "no fixed record size"
        from ..capture import precompile
        precompile.compile_capture(f, backend)
        if backend == "udp":       # `asbru capture` runs the loop on its whole-packet view
            from ..capture import drain_kernel
            from .whole_packets import whole_packets
            precompile.compile_capture(whole_packets(f), backend)
            drain_kernel.load()      # the staging drain (asbru/capture/staging.py)
    else:
        _compile_writer(fmt)
    return name, backend, time.perf_counter() - t0, ""


def _compile_format(name: str, backends: tuple[str, ...]) -> list[tuple[str, str, float, str]]:
    os.environ.setdefault("ASBRU_QUIET", "1")   # the progress bar says it
    return [compile_one(name, b) for b in backends]


def warmup(
    names: Optional[list[str]] = typer.Argument(None, metavar="[FORMAT ...]", help="format names (default: every registered format)"),
    backend: Optional[list[str]] = typer.Option(None, "--backend", help="udp, sniffer, disk or write (repeatable; default: all)"),
    jobs: int = typer.Option(0, "--jobs", help="worker processes (default: the number of CPUs)"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print the timings as one JSON object"),
) -> None:
    """Compile the kernels of FORMATs ahead of their first use (cached on disk, see docs/cli.md)."""
    from .. import formats
    from ..formats.engine import kernel_cache_dir
    known = formats.list()
    todo = list(names) if names else known
    for n in todo:
        if n not in known:
            try:
                n_base = formats.get(n, "capture").name
            except Exception:
                raise ArgumentError(f"FORMAT: unknown format {n!r}; known formats: {', '.join(known)}") from None
            todo[todo.index(n)] = n_base
    backends = tuple(backend) if backend else BACKENDS
    for b in backends:
        if b not in BACKENDS:
            raise ArgumentError(f"--backend: expected one of {', '.join(BACKENDS)}; got {b!r}")
    common.positive(jobs, "--jobs", allow_zero=True)
    nproc = jobs or os.cpu_count() or 1
    nproc = max(1, min(nproc, len(todo)))
    total = len(todo) * len(backends)
    results: list[tuple[str, str, float, str]] = []
    t0 = time.perf_counter()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    progress = Progress(TextColumn("compiling kernels"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), TextColumn("{task.description}"), console=common.err,
                        disable=json_out or not common.err.is_terminal)
    if not json_out and not common.err.is_terminal:
        common.err.print(f"compiling {total} kernels ({len(todo)} formats x {len(backends)} backends) "
                         f"in {nproc} processes into {kernel_cache_dir()} ...")
    with progress:
        task = progress.add_task("", total=total)
        with cf.ProcessPoolExecutor(max_workers=nproc) as pool:
            # first the loops every format shares, one backend per process (they are most of
            # the time: two processes starting on two formats would both compile them), then
            # each format's own small kernels
            for phase in ([pool.submit(_compile_format, todo[0], (b,)) for b in backends],
                          [pool.submit(_compile_format, n, backends) for n in todo[1:]]):
                for fut in cf.as_completed(phase):
                    done = fut.result()
                    results.extend(done)
                    progress.update(task, advance=len(done), description=done[0][0])
    seconds = time.perf_counter() - t0
    order = {n: i for i, n in enumerate(todo)}
    results.sort(key=lambda r: (order[r[0]], BACKENDS.index(r[1])))
    if json_out:
        common.print_json({"seconds": round(seconds, 2), "processes": nproc,
                           "cache": str(kernel_cache_dir()),
                           "kernels": [{"format": n, "backend": b, "seconds": round(s, 2), "note": note}
                                       for n, b, s, note in results]})
        return
    from rich.table import Table
    t = Table(title=f"kernels compiled in {seconds:.1f} s ({nproc} processes)", show_header=True)
    t.add_column("format")
    for b in backends:
        t.add_column(f"{b} s", justify="right")
    for n in todo:
        row = [n]
        for b in backends:
            r = next(x for x in results if x[0] == n and x[1] == b)
            row.append("-" if r[3] else f"{r[2]:.1f}")
        t.add_row(*row)
    t.caption = f"cache: {kernel_cache_dir()} ('-': the format has no such kernel)"
    common.out.print(t)
