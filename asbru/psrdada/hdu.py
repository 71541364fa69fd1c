"""A PSRDADA "header + data unit": the header ring at ``key + 1`` and the data ring at ``key``.

:class:`DadaWriter` writes one observation (transfer) at a time as a PSRDADA writer does
(``dada_hdu_lock_write``, one header buffer, ``ipcio_write`` of the data, ``ipcio_close``
which marks end of data, ``dada_hdu_unlock_write``); :class:`DadaReader` reads them back as
``dada_dbdisk`` does.  :func:`create` / :func:`destroy` make and remove a ring as ``dada_db``
does.  Header text is PSRDADA's: ASCII ``KEY value`` lines, NUL-padded to the header
buffer size.
"""
from __future__ import annotations

import threading
from typing import Iterator, Optional

import numpy as np

from ..errors import ArgumentError
from . import sysv
from .ipcbuf import KEY_INCREMENT, READERS, WCHANGE, WRITER, WRITING, XFERS, IpcBuf


def parse_key(key: object) -> int:
    """A PSRDADA key as ``dada_db -k`` takes it: hexadecimal text (``dada``, ``0xdada``) or an int."""
    if isinstance(key, int) and not isinstance(key, bool):
        k = key
    elif isinstance(key, str):
        try:
            k = int(key, 16)
        except ValueError:
            raise ArgumentError(f"PSRDADA key must be hexadecimal (as dada_db -k takes it); got {key!r}") from None
    else:
        raise ArgumentError(f"PSRDADA key must be hexadecimal text or an int; got {key!r}")
    if not 0 < k < 1 << 32:
        raise ArgumentError(f"PSRDADA key must be in 1..ffffffff; got {key!r}")
    return k


def keys_in_use(key: int, nbufs: int = 16) -> bool:
    """Whether any SysV key a ring at ``key`` (data and header blocks) would use is taken."""
    for base in (key, key + 1):
        if sysv.shm_exists(base):
            return True
        for i in range(1, 2 + READERS):
            if sysv.sem_exists(base + i * KEY_INCREMENT):
                return True
        for i in range(nbufs):
            if sysv.shm_exists(base + (2 + READERS + i) * KEY_INCREMENT):
                return True
    return False


def create(key: int, nbufs: int = 4, bufsz: int = 4096 * 128, nreaders: int = 1,
           hdr_nbufs: int = 8, hdr_bufsz: int = 4096) -> None:
    """Create a PSRDADA ring (``dada_db -k KEY -n NBUFS -b BUFSZ -r NREADERS``)."""
    data = IpcBuf.create(key, nbufs, bufsz, nreaders)
    try:
        hdr = IpcBuf.create(key + 1, hdr_nbufs, hdr_bufsz, nreaders)
    except BaseException:
        data.destroy()
        raise
    data.disconnect()
    hdr.disconnect()


def destroy(key: int) -> None:
    """Remove a PSRDADA ring (``dada_db -d -k KEY``)."""
    for k in (key, key + 1):
        try:
            IpcBuf.connect(k).destroy()
        except ArgumentError:
            pass


def format_header(pairs: dict[str, object], size: int) -> bytes:
    """``KEY value`` lines, NUL-padded to ``size`` bytes (one-line error if they do not fit)."""
    lines = []
    for k, v in pairs.items():
        k = str(k)
        if not k or any(c.isspace() for c in k):
            raise ArgumentError(f"PSRDADA header key {k!r} must be one word")
        text = str(v).replace("\n", " ").replace("\r", " ")
        lines.append(f"{k} {text}\n")
    raw = "".join(lines).encode("ascii", "replace")
    if len(raw) >= size:
        raise ArgumentError(f"PSRDADA header of {len(raw)} bytes does not fit the {size}-byte header block")
    return raw + b"\0" * (size - len(raw))


def parse_header(raw: bytes) -> dict[str, str]:
    """``KEY value`` lines (up to the first NUL) as a dict; '#' starts a comment."""
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


class DadaWriter:
    """Writes observations into an existing PSRDADA ring, one transfer each."""

    def __init__(self, key: int, stop: Optional[threading.Event] = None) -> None:
        self.key = key
        self.data = IpcBuf.connect(key)
        self.hdr = IpcBuf.connect(key + 1)
        self.stop = stop
        self._cur: Optional[np.ndarray] = None
        self._bytes = 0
        self._marked = False
        self._open = False

    @property
    def header_size(self) -> int:
        return self.hdr.bufsz

    def begin(self, header: dict[str, object]) -> None:
        """Lock the ring as its writer and write one observation's header."""
        for block in (self.hdr, self.data):
            while not block.lock_write(timeout=0.2):
                if self.stop is not None and self.stop.is_set():
                    if block is self.data:
                        self.hdr.unlock_write()
                    raise InterruptedError("PSRDADA: stopped while waiting for the writer lock")
        pairs = {"HDR_VERSION": "1.0", "HDR_SIZE": self.hdr.bufsz, **header}
        pairs["HDR_SIZE"] = self.hdr.bufsz
        raw = format_header(pairs, self.hdr.bufsz)
        buf = self.hdr.get_next_write(self.stop)
        buf[:] = np.frombuffer(raw, dtype=np.uint8)
        self.hdr.mark_filled(self.hdr.bufsz)
        self._cur, self._bytes, self._marked, self._open = None, 0, False, True

    def write(self, data: np.ndarray) -> None:
        """Append bytes to the observation (ipcio_write)."""
        src = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        bufsz = self.data.bufsz
        pos = 0
        while pos < src.size:
            if self._bytes == bufsz:
                if not self._marked:
                    self.data.mark_filled(self._bytes)
                self._cur, self._bytes, self._marked = None, 0, True
            if self._cur is None:
                self._cur = self.data.get_next_write(self.stop)
                self._marked, self._bytes = False, 0
            n = min(bufsz - self._bytes, src.size - pos)
            self._cur[self._bytes:self._bytes + n] = src[pos:pos + n]
            self._bytes += n
            pos += n

    def end(self) -> None:
        """End the observation: end of data on its last buffer, then give the lock back."""
        if not self._open:
            return
        data = self.data
        if data.state == WRITING:              # something was written (ipcio_stop_close)
            data.enable_eod()
            data.mark_filled(self._bytes)
            self._marked = True
        s = data.sync
        if s.w_xfer > 0:
            s.w_buf_curr = s.e_buf[(int(s.w_xfer) - 1) % XFERS] + 1
            s.w_buf_next = s.w_buf_curr
        if data.state in (WRITER, WCHANGE, WRITING):
            data.unlock_write()
        self.hdr.unlock_write()
        self._open = False
        self._cur = None

    def close(self) -> None:
        try:
            self.end()
        finally:
            self.data.disconnect()
            self.hdr.disconnect()


class DadaReader:
    """Reads observations out of a PSRDADA ring as one of its readers."""

    def __init__(self, key: int, stop: Optional[threading.Event] = None) -> None:
        self.key = key
        self.data = IpcBuf.connect(key)
        self.hdr = IpcBuf.connect(key + 1)
        self.stop = stop
        self._locked = False

    def lock(self) -> bool:
        for block in (self.hdr, self.data):
            while not block.lock_read(timeout=0.2):
                if self.stop is not None and self.stop.is_set():
                    if block is self.data:
                        self.hdr.unlock_read()
                    return False
        self._locked = True
        return True

    def next_header(self) -> Optional[dict[str, str]]:
        """The next observation's header (None when stopped)."""
        while True:
            buf = self.hdr.get_next_read(self.stop)
            if buf is None:
                if self.hdr.eod():
                    self.hdr.reset_reader()
                    continue
                return None
            raw = bytes(buf)
            self.hdr.mark_cleared()
            if raw.strip(b"\0"):
                return parse_header(raw)

    def blocks(self) -> Iterator[np.ndarray]:
        """The observation's data, one buffer at a time (each view valid until the next)."""
        data = self.data
        while not data.eod():
            buf = data.get_next_read(self.stop)
            if buf is None:
                return
            yield buf
            data.mark_cleared()
        data.reset_reader()

    def close(self) -> None:
        try:
            if self._locked:
                for block in (self.data, self.hdr):
                    try:
                        block.unlock_read()
                    except Exception:
                        pass
        finally:
            self.data.disconnect()
            self.hdr.disconnect()
