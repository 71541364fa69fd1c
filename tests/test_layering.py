"""The package layers import downward only: ``asbru/sockets`` (the bottom layer, with the
Bifrost-named ``Address`` and ``UDPSocket``) imports nothing of asbru but itself and
``asbru.errors``; ``formats``, ``ring`` and ``sockets`` never import the capture engine or
the command line; no asbru module imports one that (directly or not) imports it back at
module level; the top-level Bifrost module names are thin re-exports; code outside
``asbru/formats`` names no particular format."""
from __future__ import annotations

import ast
from pathlib import Path

import asbru

PKG = Path(asbru.__file__).parent


def _asbru_imports(path: Path) -> set[str]:
    """Every asbru module ``path`` imports (absolute names), at any nesting level."""
    here = "asbru." + ".".join(path.relative_to(PKG).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("asbru")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("asbru"):
                out.add(name)
    return out


def _module_name(path: Path) -> str:
    parts = ("asbru",) + path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _module_level_imports(path: Path, known: set[str]) -> set[str]:
    """The asbru modules ``path`` imports when it is imported: every import statement
    outside a function body (``if TYPE_CHECKING:`` blocks included: a type checker follows
    them), ``from pkg import mod`` resolved to the module ``pkg.mod``."""
    name = _module_name(path)
    here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue      # imported when called: a deliberate deferral, not a layer
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name in known)
            elif isinstance(child, ast.ImportFrom):
                base = here
                for _ in range(child.level - 1):
                    base = base.rsplit(".", 1)[0]
                mod = (f"{base}.{child.module}" if child.module else base) if child.level \
                    else (child.module or "")
                for a in child.names:
                    sub = f"{mod}.{a.name}"
                    out.add(sub if sub in known else mod)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in known and m != name}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    known = set(paths)
    return {name: _module_level_imports(p, known) for name, p in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    group.append(x)
                    if x == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_circle_among_asbru_modules():
    assert _cycles(_import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_never_import_the_engine_or_the_command_line():
    for layer in ("sockets", "formats", "ring"):
        for path in sorted((PKG / layer).rglob("*.py")):
            for name in _asbru_imports(path):
                assert not name.startswith(("asbru.capture", "asbru.cli")), (layer, path.name, name)


#: files outside asbru/formats that once named particular formats: they ask the format
#: modules (attributes such as CALLBACK_ARGS, synth_recipe, proclog_type) instead
FORMAT_AGNOSTIC = ("asbru/capture/callbacks.py", "asbru/cli/common.py", "asbru/cli/capture.py",
                   "asbru/writers/base.py", "tools/fuzz.py")


def test_format_agnostic_modules_name_no_format():
    from asbru import formats
    names = set(formats.list())
    for rel in FORMAT_AGNOSTIC:
        tree = ast.parse((PKG.parent / rel).read_text())
        literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
                {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not literals & names, (rel, sorted(literals & names))
        assert not {a for a in attrs if a.startswith("set_") and a[4:] in names}, rel


def test_sockets_import_nothing_above_them():
    for path in sorted((PKG / "sockets").glob("*.py")):
        for name in _asbru_imports(path):
            assert name.startswith("asbru.sockets") or name == "asbru.errors", (path.name, name)


def test_bifrost_module_names_re_export_the_sockets_classes():
    from asbru.address import Address
    from asbru.sockets.address import Address as SocketsAddress
    from asbru.sockets.udp import UDPSocket as SocketsUDPSocket
    from asbru.udp_socket import UDPSocket
    assert Address is SocketsAddress and UDPSocket is SocketsUDPSocket
    for shim in ("address.py", "udp_socket.py"):
        assert _asbru_imports(PKG / shim) <= {"asbru.sockets.address", "asbru.sockets.udp"}


def test_no_test_file_imports_another():
    # shared test code lives in tests/helpers; a test file importing another one runs (and
    # collects) that file's module-level code twice and hides where the helper lives
    tests = Path(__file__).parent
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.split(".")[0].startswith("test_")]
            assert not bad, f"{path.name} imports {bad}: move the shared code to tests/helpers"
