"""Per-process statistics files in Bifrost's ProcLog layout, readable by other processes.

Layout: ``<root>/<pid>/<block>/<log>``, each file a set of ``key : value`` lines rewritten
whole on every update (written to a temporary name and renamed, so a reader never sees a
half-written file).  ``<root>`` is ``$ASBRU_PROCLOG_DIR``, else ``/dev/shm/asbru`` (tmpfs:
updates cost no disk I/O), else ``/tmp/asbru``.  A block name already used by a live object
of this process gets ``_2``, ``_3``, ... (Bifrost's rule); the name is freed when the object
is closed.  The process's directory is removed at interpreter exit, and directories of dead
processes are swept when the first log of a process is created.

Readers (``asbru top`` and friends): :func:`list_pids`, :func:`load_by_pid`,
:func:`load_by_filename`.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ProcLog", "proclog_root", "list_pids", "load_by_pid", "load_by_filename",
           "unique_block_name", "release_block_name"]

_lock = threading.Lock()
_used_blocks: set[str] = set()
_root_cache: Path | None = None
_registered_exit = False


def proclog_root() -> Path:
    """The directory holding every process's logs (created if needed)."""
    global _root_cache
    env = os.environ.get("ASBRU_PROCLOG_DIR")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if _root_cache is not None:
        return _root_cache
    for cand in (Path("/dev/shm/asbru"), Path(tempfile.gettempdir()) / "asbru"):
        try:
            cand.mkdir(parents=True, exist_ok=True)
            if os.access(cand, os.W_OK):
                _root_cache = cand
                return cand
        except OSError:
            continue
    raise OSError("no writable proclog directory (set ASBRU_PROCLOG_DIR)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_dead(root: Path) -> None:
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.name.isdigit() and not _pid_alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def _remove_own_dir() -> None:
    try:
        shutil.rmtree(proclog_root() / str(os.getpid()), ignore_errors=True)
    except OSError:
        pass


def unique_block_name(base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... if a live object of this process uses it."""
    with _lock:
        name, i = base, 1
        while name in _used_blocks:
            i += 1
            name = f"{base}_{i}"
        _used_blocks.add(name)
        return name


def release_block_name(name: str) -> None:
    with _lock:
        _used_blocks.discard(name)


def _format(contents: str | Mapping[str, Any]) -> str:
    if isinstance(contents, str):
        return contents if contents.endswith("\n") or not contents else contents + "\n"
    return "".join(f"{k} : {v}\n" for k, v in contents.items())


class ProcLog:
    """One log file ``<root>/<pid>/<name>`` (``name`` = ``block/log``); Bifrost's class name."""

    def __init__(self, name: str) -> None:
        global _registered_exit
        root = proclog_root()
        with _lock:
            if not _registered_exit:
                _registered_exit = True
                try:
                    _sweep_dead(root)
                except OSError:
                    pass
                atexit.register(_remove_own_dir)
        self.name = name
        self.path = root / str(os.getpid()) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # plain str paths and os-level I/O: captures publish after every recv()
        self._path_s = str(self.path)
        self._tmp_s = str(self.path.with_name(f".{self.path.name}.tmp"))

    def update(self, contents: str | Mapping[str, Any]) -> None:
        """Rewrite the file (atomically) with ``contents`` (a str or a dict of key : value)."""
        data = _format(contents).encode()
        try:
            fd = os.open(self._tmp_s, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(self._tmp_s, self._path_s)
        except OSError:
            pass  # monitoring must never break capture (e.g. the directory was swept)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


class BlockLogs:
    """The logs of one object (one block directory): ``logs.update("stats", {...})``."""

    def __init__(self, kind: str) -> None:
        self.block = unique_block_name(kind)
        self._logs: dict[str, ProcLog] = {}

    def update(self, log: str, contents: str | Mapping[str, Any]) -> None:
        pl = self._logs.get(log)
        if pl is None:
            pl = self._logs[log] = ProcLog(f"{self.block}/{log}")
        pl.update(contents)

    def close(self) -> None:
        """Delete the block's files and free its name."""
        for pl in self._logs.values():
            pl.remove()
        if self._logs:
            try:
                next(iter(self._logs.values())).path.parent.rmdir()
            except OSError:
                pass
        self._logs.clear()
        release_block_name(self.block)


def _convert(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def load_by_filename(filename: str | os.PathLike) -> dict[str, Any]:
    """Parse one log file: ``key : value`` lines; values become int, then float, else str."""
    out: dict[str, Any] = {}
    try:
        text = Path(filename).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        out[key.strip()] = _convert(value.strip())
    return out


def load_by_pid(pid: int, include_rings: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """``{block: {log: {key: value}}}`` for process ``pid`` (rings only if asked)."""
    base = proclog_root() / str(int(pid))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if not base.is_dir():
        return out
    for block in sorted(base.iterdir()):
        if not block.is_dir() or (block.name == "rings" and not include_rings):
            continue
        logs = {}
        for f in sorted(block.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                logs[f.name] = load_by_filename(f)
        out[block.name] = logs
    return out


def list_pids() -> list[int]:
    """Live processes that have logs."""
    root = proclog_root()
    pids = []
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.name.isdigit() and _pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return sorted(pids)
