"""Per-process statistics files in Bifrost's ProcLog layout, readable by other processes.

Layout: ``<root>/<pid>/<block>/<log>``, each file a set of ``key : value`` lines rewritten
whole on every update (written to a temporary name and renamed, so a reader never sees a
half-written file).  ``<root>`` is ``$ASBRU_PROCLOG_DIR``, else ``/dev/shm/asbru`` (tmpfs:
updates cost no disk I/O), else ``/tmp/asbru``; it is created sticky and world-writable (as
/tmp is) so that every user's processes log there.  Where it exists but is not writable by
this user, ``<root>-<uid>`` beside it is used; readers look in both.  A block name already used by a live object
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
import stat
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ProcLog", "proclog_root", "proclog_roots", "root_status", "list_pids", "load_by_pid",
           "load_by_filename", "unique_block_name", "release_block_name"]

_lock = threading.Lock()
_used_blocks: set[str] = set()
_root_cache: tuple[str, Path] | None = None
SHARED_MODE = 0o1777   # sticky, world-writable: as /tmp is
_registered_exit = False


def _bases() -> list[Path]:
    env = os.environ.get("ASBRU_PROCLOG_DIR")
    if env:
        return [Path(env)]
    return [Path("/dev/shm/asbru"), Path(tempfile.gettempdir()) / "asbru"]


def _user_dir(base: Path, uid: int | None = None) -> Path:
    """The per-user fallback beside a shared root: ``<base>-<uid>`` (``/dev/shm/asbru-1001``)."""
    return base.with_name(f"{base.name}-{os.geteuid() if uid is None else uid}")


def _make_shared(base: Path) -> None:
    """Create ``base`` (and its parents) as /tmp is: sticky and world-writable, so every user
    can make a process directory in it and nobody can remove another user's."""
    if base.is_dir():
        return
    base.parent.mkdir(parents=True, exist_ok=True)
    try:
        base.mkdir()
    except FileExistsError:
        return
    os.chmod(base, SHARED_MODE)   # mkdir's mode is masked by the umask


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _own_private(path: Path) -> bool:
    """A directory we may use as our own: ours, not a symlink (anyone could plant one)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and os.access(path, os.W_OK)


def proclog_root() -> Path:
    """The directory this process writes its logs under (created if needed).

    The shared root (``$ASBRU_PROCLOG_DIR``, else ``/dev/shm/asbru``, else
    ``/tmp/asbru``) is created sticky and world-writable; where a shared root exists but this
    user may not write to it (made by an older asbru, or by hand), the logs go to
    ``<root>-<uid>`` beside it.  Readers (:func:`list_pids`) look in all of them."""
    global _root_cache
    key = os.environ.get("ASBRU_PROCLOG_DIR", "")
    if _root_cache is not None and _root_cache[0] == key:
        return _root_cache[1]
    problems = []
    for base in _bases():
        try:
            _make_shared(base)
        except OSError as exc:
            problems.append(f"{base}: {exc.strerror}")
        if _writable_dir(base):
            _root_cache = (key, base)
            return base
        mine = _user_dir(base)
        try:
            mine.mkdir(mode=0o755, exist_ok=True)
        except OSError as exc:
            problems.append(f"{mine}: {exc.strerror}")
            continue
        if _own_private(mine):
            _root_cache = (key, mine)
            return mine
        problems.append(f"{mine}: not a directory owned by uid {os.geteuid()}")
    raise OSError(f"no writable proclog directory ({'; '.join(problems)}); set ASBRU_PROCLOG_DIR")


def proclog_roots() -> list[Path]:
    """Every directory holding process logs: the shared roots and the per-user ones beside
    them (``<root>-<uid>``), those that exist."""
    out: list[Path] = []
    for base in _bases():
        if base.is_dir():
            out.append(base)
        parent = base.parent
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            continue
        prefix = base.name + "-"
        for name in names:
            if name.startswith(prefix) and name[len(prefix):].isdigit() and (parent / name).is_dir():
                out.append(parent / name)
    return out


def root_status() -> dict[str, Any]:
    """What ``asbru doctor`` reports (it creates nothing): ``status`` ok / warn / fail,
    ``path`` (where this user's processes log), ``detail``, ``fix``."""
    def creatable(path: Path) -> bool:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return _writable_dir(parent)

    problems = []
    for base in _bases():
        if not base.exists():
            if creatable(base):
                return {"status": "ok", "path": str(base),
                        "detail": "not created yet: the first capture makes it sticky and "
                                  "world-writable (every user can log)", "fix": ""}
            problems.append(f"{base} cannot be created")
            continue
        if _writable_dir(base):
            mode = stat.S_IMODE(os.stat(base).st_mode)
            if mode & SHARED_MODE != SHARED_MODE:
                return {"status": "warn", "path": str(base),
                        "detail": f"mode {mode:o}: other users cannot log here (they fall back "
                                  f"to {_user_dir(base, 0).name[:-1]}<uid>)",
                        "fix": f"sudo chmod 1777 {base}   (shared by every user, as /tmp is)"}
            return {"status": "ok", "path": str(base),
                    "detail": "shared by every user (sticky, world-writable)", "fix": ""}
        mine = _user_dir(base)
        if _own_private(mine) or (not mine.exists() and _writable_dir(base.parent)):
            return {"status": "warn", "path": str(mine),
                    "detail": f"{base} is not writable by uid {os.geteuid()}: this user's "
                              f"captures log to {mine} (asbru top finds them; older tools may not)",
                    "fix": f"sudo chmod 1777 {base}   (shared by every user, as /tmp is)"}
        problems.append(f"{base} is not writable and {mine} cannot be used")
    return {"status": "fail", "path": None,
            "detail": f"no writable proclog directory ({'; '.join(problems)}): captures run "
                      f"but publish no statistics", "fix": "export ASBRU_PROCLOG_DIR=/a/writable/directory"}


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


_proc_dir_cache: tuple[int, Path] | None = None


def _process_dir() -> Path:
    """``<root>/<pid>``, created readable by all (monitors of any user read it).  A
    directory of that name left by another user's dead process cannot be removed from a
    sticky root: this process then uses the per-user root instead."""
    global _proc_dir_cache
    pid = os.getpid()
    if _proc_dir_cache is not None and _proc_dir_cache[0] == pid and \
            _proc_dir_cache[1].parent == proclog_root():
        return _proc_dir_cache[1]
    root = proclog_root()
    for base in (root, _user_dir(root)) if root in _bases() else (root,):
        d = base / str(pid)
        try:
            if base != root:
                base.mkdir(mode=0o755, exist_ok=True)
                if not _own_private(base):
                    continue
            d.mkdir(exist_ok=True)
            if _own_private(d):
                os.chmod(d, 0o755)
                _proc_dir_cache = (pid, d)
                return d
        except OSError:
            continue
    raise OSError(f"proclog: {root / str(pid)} belongs to another user and {_user_dir(root)} "
                  f"cannot be used; set ASBRU_PROCLOG_DIR")


def _remove_own_dir() -> None:
    if _proc_dir_cache is not None and _proc_dir_cache[0] == os.getpid():
        shutil.rmtree(_proc_dir_cache[1], ignore_errors=True)


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
        self.path = _process_dir() / name
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


_warned = False


def _warn_once(exc: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"asbru: statistics are not published (asbru top will not see this "
                      f"process): {exc}", RuntimeWarning, stacklevel=3)


class BlockLogs:
    """The logs of one object (one block directory): ``logs.update("stats", {...})``."""

    def __init__(self, kind: str) -> None:
        self.block = unique_block_name(kind)
        self._logs: dict[str, ProcLog] = {}

    def update(self, log: str, contents: str | Mapping[str, Any]) -> None:
        pl = self._logs.get(log)
        if pl is None:
            try:
                pl = ProcLog(f"{self.block}/{log}")
            except OSError as exc:
                _warn_once(exc)   # monitoring must never stop a capture
                return
            self._logs[log] = pl
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


def _pid_dir(pid: int) -> Path | None:
    for root in proclog_roots():
        d = root / str(int(pid))
        if d.is_dir():
            return d
    return None


def load_by_pid(pid: int, include_rings: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """``{block: {log: {key: value}}}`` for process ``pid`` (rings only if asked), from
    whichever proclog root holds it."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    base = _pid_dir(pid)
    if base is None:
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
    """Live processes that have logs, of every user (in every proclog root)."""
    pids = set()
    for root in proclog_roots():
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.isdigit() and _pid_alive(int(entry.name)):
                pids.add(int(entry.name))
    return sorted(pids)
