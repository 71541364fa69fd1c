"""The package layers import downward only: ``asbru/sockets`` (the bottom layer, with the
Bifrost-named ``Address`` and ``UDPSocket``) imports nothing of asbru but itself and
``asbru.errors``; the top-level Bifrost module names are thin re-exports."""
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
