"""Every benchmark script names the machine (CPU model, cores, kernel) in its first line:
each one prints ``benchmarks.machine.describe()`` before anything else.  Checked on the
source (running every benchmark would take minutes), plus ``describe()`` itself."""
from __future__ import annotations

import ast
import platform
from pathlib import Path

import pytest

from benchmarks.machine import describe

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in ("machine.py", "__init__.py"))


def _first_print(fn: ast.FunctionDef) -> ast.Call | None:
    prints = [n for n in ast.walk(fn)
              if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
    return min(prints, key=lambda n: (n.lineno, n.col_offset)) if prints else None


def test_describe_names_cpu_cores_and_kernel():
    line = describe()
    assert line.startswith("machine: ")
    assert " cores, Linux " in line and platform.release() in line


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_prints_the_machine_first(script: Path):
    tree = ast.parse(script.read_text())
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert mains, f"{script.name}: no main()"
    first = _first_print(mains[0])
    assert first is not None, f"{script.name}: main() prints nothing"
    src = ast.unparse(first)
    assert "describe(" in src or "machine(" in src, f"{script.name}: first print is {src}"
