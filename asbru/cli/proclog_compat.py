"""Publishing and reading per-process statistics for ``capture`` and ``top``.

The real implementation is :mod:`asbru.proclog` (Bifrost's layout: ``<root>/<pid>/<block>/
<log>`` files of ``key : value`` lines, root ``/dev/shm/asbru``).  This module uses it when
it is importable and otherwise falls back to a minimal writer/reader of the same layout, so
the command line works (and ``top`` sees ``capture``) whichever lands first.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

try:  # the library's own implementation, when present
    from .. import proclog as _proclog  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the tree state
    _proclog = None


def root() -> Path:
    for name in ("proclog_root", "root", "proclog_dir"):
        fn = getattr(_proclog, name, None) if _proclog is not None else None
        if callable(fn):
            try:
                return Path(fn())
            except Exception:
                pass
        elif isinstance(fn, (str, os.PathLike)):
            return Path(fn)
    env = os.environ.get("ASBRU_PROCLOG_DIR")
    if env:
        return Path(env)
    return Path("/dev/shm/asbru") if os.path.isdir("/dev/shm") else Path("/tmp/asbru")


def _render(contents: dict[str, Any] | str) -> str:
    if isinstance(contents, str):
        return contents
    return "".join(f"{k} : {v}\n" for k, v in contents.items())


def _parse_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class _FallbackLog:
    """One ``<root>/<pid>/<block>/<log>`` file, rewritten whole on every update."""

    def __init__(self, block: str, log: str) -> None:
        self.dir = root() / str(os.getpid()) / block
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / log

    def update(self, contents: dict[str, Any] | str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(_render(contents))
        os.replace(tmp, self.path)   # readers never see a half-written file


def _free_block(base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... if this process already uses it."""
    pdir = root() / str(os.getpid())
    name, k = base, 1
    while (pdir / name).exists():
        k += 1
        name = f"{base}_{k}"
    return name


class Publisher:
    """The logs of one block (e.g. ``cli_capture``) of this process."""

    def __new__(cls, block: str):
        blocklogs = getattr(_proclog, "BlockLogs", None) if _proclog is not None else None
        if blocklogs is not None:
            try:
                return blocklogs(block)   # same interface: update(log, contents), close()
            except OSError:
                pass
        return super().__new__(cls)

    def __init__(self, block: str) -> None:
        self._logs: dict[str, Any] = {}
        self._factory = getattr(_proclog, "ProcLog", None) if _proclog is not None else None
        self.block = block if self._factory is not None else _free_block(block)
        self._created: list[Path] = []

    def update(self, log: str, contents: dict[str, Any]) -> None:
        try:
            lg = self._logs.get(log)
            if lg is None:
                if self._factory is not None:
                    lg = self._factory(f"{self.block}/{log}")
                else:
                    lg = _FallbackLog(self.block, log)
                    self._created.append(lg.dir)
                self._logs[log] = lg
            lg.update(contents)
        except OSError:
            pass  # monitoring must never stop a capture

    def close(self) -> None:
        """Remove this block's files (the process is done with them)."""
        for lg in self._logs.values():
            close = getattr(lg, "close", None) or getattr(lg, "remove", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    pass
        for d in dict.fromkeys(self._created):
            shutil.rmtree(d, ignore_errors=True)
            try:
                d.parent.rmdir()   # the pid directory, if nothing else is in it
            except OSError:
                pass
        self._logs.clear()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_pids() -> list[int]:
    """PIDs that have published statistics and are still running."""
    if _proclog is not None and hasattr(_proclog, "list_pids"):
        try:
            return sorted(int(p) for p in _proclog.list_pids() if _pid_alive(int(p)))
        except Exception:
            pass
    r = root()
    if not r.is_dir():
        return []
    pids = []
    for entry in r.iterdir():
        if entry.name.isdigit() and _pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return sorted(pids)


def load_by_pid(pid: int) -> dict[str, dict[str, dict[str, Any]]]:
    """``{block: {log: {key: value}}}`` for one process (values int, float or str)."""
    if _proclog is not None and hasattr(_proclog, "load_by_pid"):
        try:
            return _proclog.load_by_pid(pid)
        except Exception:
            pass
    out: dict[str, dict[str, dict[str, Any]]] = {}
    pdir = root() / str(pid)
    if not pdir.is_dir():
        return out
    for block in sorted(pdir.iterdir()):
        if not block.is_dir():
            continue
        logs: dict[str, dict[str, Any]] = {}
        for f in sorted(block.rglob("*")):
            if not f.is_file() or f.name.endswith(".tmp"):
                continue
            try:
                text = f.read_text()
            except OSError:
                continue
            vals: dict[str, Any] = {}
            for line in text.splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    vals[key.strip()] = _parse_value(value.strip())
            logs[str(f.relative_to(block))] = vals
        out[block.name] = logs
    return out
