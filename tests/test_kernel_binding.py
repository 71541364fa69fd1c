"""Every compiled loop is ordinary Python: templates bound per format by asbru.formats.engine.

* two bindings of one template never share numba's cached machine code (numba keys its disk
  cache on a function's file, name and first line: a copy that kept the template's file
  would load the other binding's code);
* under NUMBA_DISABLE_JIT=1 a bound kernel runs the template's own lines;
* no module builds numba code from source text; the capture loop's boundary is named.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

_BIND = r'''
import json, sys
import numpy as np
from asbru.formats import engine
import helpers.binding_template as t
out = {}
for name in sys.argv[1].split(","):
    m = engine.bound_module(f"toy_{name}", t, {"_value": f"helpers.binding_parts:{name}"})
    r = int(m.apply(np.int64(3)))
    st = getattr(m.apply, "stats", None)      # None: NUMBA_DISABLE_JIT, a plain function
    fn = getattr(m.apply, "py_func", m.apply)
    out[name] = {"result": r, "hits": sum(st.cache_hits.values()) if st else -1,
                 "misses": sum(st.cache_misses.values()) if st else -1,
                 "file": fn.__code__.co_filename, "module_file": m.__file__,
                 "template_file": t.__file__}
print(json.dumps(out))
'''


def _bind(order: str, tmp: Path, **env: str) -> dict:
    e = dict(os.environ, ASBRU_CACHE_DIR=str(tmp / "kernels"), NUMBA_CACHE_DIR=str(tmp / "numba"),
             PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]), **env)
    if "NUMBA_DISABLE_JIT" not in env:
        e.pop("NUMBA_DISABLE_JIT", None)
    p = subprocess.run([sys.executable, "-c", _BIND, order], env=e, capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_two_bindings_of_one_template_never_load_each_others_machine_code(tmp_path):
    first = _bind("plus_one,times_ten", tmp_path)
    assert first["plus_one"]["result"] == 4 and first["times_ten"]["result"] == 30
    assert first["plus_one"]["misses"] == 1 and first["times_ten"]["misses"] == 1
    # the compiled copy names its binding's file (numba's cache locator keys on it)
    assert first["plus_one"]["file"] == first["plus_one"]["module_file"]
    assert first["plus_one"]["file"] != first["times_ten"]["file"]
    # a second process loads both from the disk cache, the other one first: each its own code
    second = _bind("times_ten,plus_one", tmp_path)
    assert second["times_ten"]["result"] == 30 and second["plus_one"]["result"] == 4
    assert second["times_ten"]["hits"] == 1 and second["plus_one"]["hits"] == 1
    assert second["times_ten"]["misses"] == 0 and second["plus_one"]["misses"] == 0


def test_without_the_jit_a_bound_kernel_runs_the_template_lines(tmp_path):
    out = _bind("times_ten", tmp_path, NUMBA_DISABLE_JIT="1")
    assert out["times_ten"]["result"] == 30
    assert out["times_ten"]["file"] == out["times_ten"]["template_file"]


def test_a_binding_must_give_exactly_what_the_template_binds():
    from asbru.formats import engine, entry_points
    with pytest.raises(ValueError, match="missing"):
        engine.bound_module("incomplete", entry_points, {"_decode": "asbru.formats.chips:decode"})


def _py_files():
    for top in ("asbru", "tools"):
        yield from sorted((ROOT / top).rglob("*.py"))


def test_no_module_builds_compiled_code_from_source_text():
    """Only asbru/formats/engine.py imports a generated file (a binding: import lines and a
    bind() call); no module that compiles calls exec/eval/compile; no string holds numba
    code."""
    found = []
    for path in _py_files():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        compiles = "numba" in text or "bound_kernel" in text
        tree = ast.parse(text, rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in ("exec", "eval", "compile") and isinstance(f, ast.Name) and compiles:
                    found.append(f"{rel}:{node.lineno}: {name}()")
                if name in ("spec_from_file_location", "exec_module") and rel != "asbru/formats/engine.py":
                    found.append(f"{rel}:{node.lineno}: {name}()")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "njit" in node.value and "def " in node.value:
                    found.append(f"{rel}:{node.lineno}: numba source in a string")
    assert found == []


def test_templates_are_valid_modules_whose_kernels_are_plain_functions():
    import importlib
    import types
    names = ["asbru.capture.loop.run", "asbru.formats.entry_points",
             "asbru.capture.backends.udp", "asbru.capture.backends.disk",
             "asbru.capture.backends.disk_resync", "asbru.capture.backends.sniffer",
             "asbru.formats.batch_kernels", "asbru.capture.group.follower",
             "asbru.capture.group.handoff", "asbru.cli.whole_packets_view"]
    for name in names:
        mod = importlib.import_module(name)
        assert all(hasattr(mod, b) for b in mod.BINDS), name   # a valid default binding
        kernels = [v for v in vars(mod).values() if getattr(v, "__asbru_kernel__", False)]
        assert kernels and all(isinstance(k, types.FunctionType) for k in kernels), name


def test_the_loop_reads_every_field_of_its_state_by_name_and_nothing_else():
    from asbru.capture.loop.state import LoopState
    src = (ROOT / "asbru/capture/loop/run.py").read_text()
    run = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "run")
    assert [a.arg for a in run.args.args] == ["s"]
    # s is the fields as a plain tuple: each read as s[_ls.<FIELD>] into a variable of the
    # field's name (so a swapped pair of positions cannot pass), every field once
    reads = {}
    for n in ast.walk(run):
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == "s":
            assert isinstance(n.slice, ast.Attribute) and n.slice.value.id == "_ls", ast.dump(n)
            reads[n.slice.attr] = reads.get(n.slice.attr, 0) + 1
    assert reads == {f.upper(): 1 for f in LoopState._fields}
    for n in ast.walk(run):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and n.value.args \
                and isinstance(n.value.args[0], ast.Subscript) \
                and isinstance(n.value.args[0].value, ast.Name) and n.value.args[0].value.id == "s":
            assert n.targets[0].id.upper() == n.value.args[0].slice.attr
    assert not any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                   and n.value.id == "s" for n in ast.walk(run))


def test_the_engine_hands_each_array_to_the_field_of_its_name():
    """The engine builds run()'s tuple by position (a LoopState's 25 keywords cost
    microseconds once per gulp): each array must land in the field of its name, the two
    open gulps' data and masks included."""
    from asbru.address import Address
    from asbru.capture.engine import _Gulp
    from asbru.capture.loop.state import LoopState
    from asbru.capture.testing import free_udp_port
    from asbru.packet_capture import UDPCapture
    from asbru.ring import Ring
    from asbru.udp_socket import UDPSocket
    import numpy as np
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", free_udp_port()))
    ring = Ring(name="fields")
    cap = UDPCapture("chips", sock, ring, 2, 0, 9000, 4, 1, None)
    try:
        first, second = (_Gulp(None, np.zeros(8, np.uint8), np.zeros((4, 2), np.uint8), 0) for _ in range(2))
        expect = {f: getattr(cap, "_" + f, None) for f in LoopState._fields}
        expect.update(cnt=cap.stats_obj.cnt, psrc=cap.stats_obj.psrc)
        cases = [([], dict(gA=cap._dummy_gulp, gB=cap._dummy_gulp, mA=cap._dummy_mask, mB=cap._dummy_mask)),
                 ([first], dict(gA=first.data, gB=cap._dummy_gulp, mA=first.mask, mB=cap._dummy_mask)),
                 ([first, second], dict(gA=first.data, gB=second.data, mA=first.mask, mB=second.mask))]
        for gulps, open_ in cases:
            cap._gulps = list(gulps)
            got = LoopState(*cap._loop_args())
            for f in LoopState._fields:
                want = {**expect, **open_}[f]
                assert isinstance(want, np.ndarray) and getattr(got, f) is want, f
    finally:
        cap._gulps = []
        cap.end()
        sock.close()


_LOOPS = r'''
import json, sys
from asbru import formats
from asbru.capture import precompile
from asbru.capture.loop import capture_module
out = {}
for fmt in sys.argv[1].split(","):
    f = formats.get(fmt, "capture")
    precompile.compile_capture(f, "udp")
    run = capture_module(f, "udp").run
    out[fmt] = {"hits": sum(run.stats.cache_hits.values()), "misses": sum(run.stats.cache_misses.values()),
                "file": run.py_func.__code__.co_filename}
print(json.dumps(out))
'''


def test_the_capture_loop_is_compiled_once_for_every_format(tmp_path):
    """Issue 14 (compile time): a second format's capture loop is the first one's, loaded
    from the cache -- only the format's small entry points are compiled for it (before,
    each format bound and compiled the whole loop again: 10-17 s per format)."""
    e = dict(os.environ, ASBRU_CACHE_DIR=str(tmp_path / "kernels"), NUMBA_CACHE_DIR=str(tmp_path / "numba"),
             ASBRU_QUIET="1", PYTHONPATH=str(ROOT))
    e.pop("NUMBA_DISABLE_JIT", None)

    def loops(order: str) -> dict:
        p = subprocess.run([sys.executable, "-c", _LOOPS, order], env=e, capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = loops("chips_4")
    assert first["chips_4"]["misses"] == 1 and first["chips_4"]["hits"] == 0
    second = loops("tbn,vdif")
    assert second["tbn"]["misses"] == 0 and second["tbn"]["hits"] == 1
    assert second["tbn"]["file"] == first["chips_4"]["file"] == second["vdif"]["file"]
