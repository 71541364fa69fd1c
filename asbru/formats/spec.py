"""Building blocks that a format file uses to describe itself.

A format is one module in ``asbru.formats`` (or a third-party module registered under
the ``asbru.formats`` entry-point group).  It declares, with the names below:

``NAME``            the format's name (``"chips"``).
``HEADER``          a :class:`Header`: field table (name, offset, wire type, bit fields);
                    ``HEADER.dtype`` is the equivalent numpy structured dtype.
``parse(fmt, role)``  -> :class:`FormatParams` from a format string such as ``"chips_132"``;
                    ``role`` is ``"capture"`` (UDP / sniffer), ``"disk"`` (DiskReader) or
                    ``"write"`` (DiskWriter / UDPTransmit).  Raise :class:`FormatError`
                    with a one-line message for a string it does not accept.
``capture_config(params, nsrc, src0)`` -> int64 array handed to ``decode`` as ``cfg``
                    (``cfg[CFG_NSRC]`` and ``cfg[CFG_SRC0]`` always first; start from
                    :func:`new_capture_config`, or use :func:`default_capture_config`).
``decode(pkt, cfg, state, d)``  compiled: fill descriptor ``d`` from packet ``pkt``
                    (a uint8 array of exactly the packet's bytes); return VALID, INVALID
                    or HOLD.  ``state`` is an int64 scratch array (``NSTATE`` long, zeroed at
                    capture start) for formats that learn parameters from the stream.
``place(payload, d, slot, nsrc)``  compiled: copy ``payload`` into the ring time slot
                    ``slot`` (uint8, ``nsrc * P`` bytes, P = the sequence's payload size)
                    at the position of source ``d[SRC]``.  Must never write outside
                    ``slot``.  Called with an all-zero payload to zero-fill a missing slot.
                    Copy whole payloads (or runs of at least a cache line) with
                    :func:`copy_to_ring` (streaming stores), small pieces with
                    :func:`copy_bytes` / :func:`copy_unchecked`.
``place_row(addrs, d, slot, nsrc)``  optional, compiled: place all ``nsrc`` payloads of one
                    time slot at once (``addrs``: int64 addresses of the payloads' first
                    bytes, by source; each ``d[PAYLOAD_SIZE]`` bytes; ``d`` is the sequence's
                    descriptor with ``SEQ`` set).  Return True if placed, False to have the
                    engine call ``place`` for each.  For layouts that interleave sources in
                    pieces smaller than a cache line (CHIPS): writing the slot in address
                    order with streaming stores (:func:`stream_pair32`) avoids reading every
                    line from memory first.  A format with ``place_row`` must place from
                    ``d[SRC]``, ``d[SEQ]`` and the CHANGE fields only (as zero-fill does).
``CHANGE``          descriptor fields whose change starts a new sequence.
``CALLBACK_FAMILY`` ``"pointer"`` (callback writes ``time_tag_ptr``) or ``"value"``.
``callback_args(seq0, d, nsrc)``  -> tuple of the sequence callback's leading arguments
                    (Bifrost's order, without ``time_tag_ptr``/``hdr_ptr``/``hdr_size_ptr``).
``time_tag_of(seq, d)``  -> the time tag of time index ``seq`` (value-family formats).
``write_config(params)`` -> int64 array handed to ``fill`` as ``wcfg`` (writable formats).
``fill(hdr, info, wcfg, seq, src, framecount)``  compiled: write one header into ``hdr``
                    (uint8, ``HEADER.size`` bytes) from HeaderInfo array ``info``.

``SIGNATURE``       optional :class:`Signature`: bytes every packet has (sync word, frame
                    ID) and its packet sizes, for tools that recognise formats on the wire.
``synth_recipe(params, nsrc)``  optional -> dict of :class:`asbru.cli.synth.Recipe` fields:
                    how ``asbru generate`` makes a valid stream of the format.
``reader_format(fmt)``  optional -> the capture/DiskReader string that reads what writer
                    string ``fmt`` writes (pbeam: ``pbeam1_N`` -> ``pbeam_N``); default
                    ``fmt`` itself (:func:`asbru.formats.reader_string`).
``proclog_type(params)``  optional -> the writers' proclog "type" string (Bifrost's
                    ``ibeam<B>``, ``tbf256``); default ``NAME``.

Compiled functions are plain Python functions decorated with :func:`kernel`; they may only
use numba-compatible code, the header accessors (:meth:`Header.readers`,
:meth:`Header.writers`: the table's offsets, so ``decode`` and ``fill`` never restate
them), the time-tag rule (:func:`split_time_tag`) and the byte helpers below.  Prefix
format strings (``chips_N``, ``ibeamB_N``...) parse with :func:`channel_format`;
``time_tag_of`` of a tick-counting format is :func:`time_tag_at`.
"""
from __future__ import annotations

import ctypes
import dataclasses
from typing import Any, Sequence

import numba
import numpy as np
from llvmlite import ir as _llvm_ir
from numba import types as _nbtypes
from numba.core import cgutils as _cgutils
from numba.core import config as _nbconfig
from numba.extending import intrinsic

# ---------------------------------------------------------------------------------------
# decode() results
VALID = 0
INVALID = 1
HOLD = 2  # not decodable yet: the format is still learning a parameter from the stream

# ---------------------------------------------------------------------------------------
# Descriptor layout: one int64 row per packet.  -1 in a CHANGE field means "this packet
# does not say" (e.g. a DRX packet of tuning 1 says nothing about tuning 2).
DESCRIPTOR_FIELDS = (
    "seq", "src", "nsrc", "nchan", "chan0", "tuning", "tuning1", "decimation",
    "time_tag", "gain", "beam", "sync", "payload_offset", "payload_size",
    "nbit", "complex", "epoch", "sample_rate", "navg", "x0", "x1", "x2", "x3", "x4",
)
NDESC = len(DESCRIPTOR_FIELDS)
(SEQ, SRC, NSRC, NCHAN, CHAN0, TUNING, TUNING1, DECIMATION, TIME_TAG, GAIN, BEAM, SYNC,
 PAYLOAD_OFFSET, PAYLOAD_SIZE, NBIT, COMPLEX, EPOCH, SAMPLE_RATE, NAVG,
 X0, X1, X2, X3, X4) = range(NDESC)
DESC_INDEX = {name: i for i, name in enumerate(DESCRIPTOR_FIELDS)}
#: spare slots: each format names the ones it uses (its ``SLOTS``: name -> slot, e.g.
#: ``{"phase": X1}``; its decode/place write ``d[PHASE]`` with ``PHASE = X1``) and its
#: ``CHANGE`` may list them by those names
SPARE_SLOTS = (X0, X1, X2, X3, X4)

# capture config (cfg) common leading entries
CFG_NSRC = 0
CFG_SRC0 = 1
NCFG = 20  # capture_config arrays are this long (format-specific entries from index 2 to 14)
# the user's ``sample_rate=`` (samples per second; 0 = not given), set by the capture engine
# for a format that learns its rate from the stream (``LEARNS`` declared)
CFG_SAMPLE_RATE = 15
# where the engine writes the addresses of the format's compiled decode / place / place_row
# (0: none), through which the format-independent loops call them (asbru/formats/indirect.py)
CFG_FN_DECODE = 16
CFG_FN_PLACE = 17
CFG_FN_PLACE_ROW = 18
# 1 when the format's decode keeps state between packets (``state``), written by the engine
CFG_USES_STATE = 19

NSTATE = 64  # decode state scratch length
# decode state entry the engine sets to 1 while it decodes the held packets one last time
# (the stream ended or went quiet while the format was still learning): a learning format
# then adopts the best estimate its state supports, if any, instead of HOLD
ST_FINISH = NSTATE - 1

# HeaderInfo array layout (writers)
HEADERINFO_FIELDS = ("nsrc", "nchan", "chan0", "tuning", "gain", "decimation", "tuning1", "beam")
NINFO = len(HEADERINFO_FIELDS)
(H_NSRC, H_NCHAN, H_CHAN0, H_TUNING, H_GAIN, H_DECIMATION, H_TUNING1, H_BEAM) = range(NINFO)


def new_capture_config(nsrc: int, src0: int) -> np.ndarray:
    """A zeroed ``int64[NCFG]`` capture config with ``nsrc`` and ``src0`` filled in; a format
    adds its own entries from index 2."""
    cfg = np.zeros(NCFG, dtype=np.int64)
    cfg[CFG_NSRC] = nsrc
    cfg[CFG_SRC0] = src0
    return cfg


def default_capture_config(params: "FormatParams", nsrc: int, src0: int) -> np.ndarray:
    """``capture_config`` of a format whose decoder needs nothing beyond nsrc and src0
    (declare ``capture_config = default_capture_config``)."""
    return new_capture_config(nsrc, src0)


class FormatError(ValueError):
    """A format string or format argument that cannot be used (one-line message)."""


def kernel(func):
    """Compile a format function with numba: no GIL, cached on disk, inlined by callers."""
    return numba.njit(cache=True, nogil=True)(func)


# ---------------------------------------------------------------------------------------
# Header description

_WIRE_TYPES = {
    # name: (nbytes, numpy dtype string)
    "u8": (1, "u1"), "i8": (1, "i1"),
    "u16be": (2, ">u2"), "u16le": (2, "<u2"), "i16be": (2, ">i2"),
    "u24be": (3, None),
    "u32be": (4, ">u4"), "u32le": (4, "<u4"), "i32be": (4, ">i4"),
    "u64be": (8, ">u8"), "u64le": (8, "<u8"),
    "f64be": (8, ">f8"), "bytes": (None, None),
}


@dataclasses.dataclass(frozen=True)
class BitField:
    """Bits ``[lsb, lsb + width)`` of the enclosing field's integer value."""
    name: str
    lsb: int
    width: int
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    offset: int
    wire: str  # one of _WIRE_TYPES
    doc: str = ""
    bits: tuple[BitField, ...] = ()
    size: int | None = None  # for wire == "bytes"

    @property
    def nbytes(self) -> int:
        n = _WIRE_TYPES[self.wire][0]
        return self.size if n is None else n


class Header:
    """An ordered table of header fields; ``dtype`` is the numpy structured equivalent."""

    def __init__(self, fields: Sequence[Field], size: int | None = None):
        for f in fields:
            if f.wire not in _WIRE_TYPES:
                raise FormatError(f"field {f.name!r}: unknown wire type {f.wire!r}")
        self.fields = tuple(fields)
        end = max((f.offset + f.nbytes for f in self.fields), default=0)
        self.size = end if size is None else size
        if self.size < end:
            raise FormatError(f"header size {self.size} is smaller than its fields ({end} bytes)")
        names, formats, offsets = [], [], []
        for f in self.fields:
            np_type = _WIRE_TYPES[f.wire][1]
            names.append(f.name)
            formats.append(np_type if np_type is not None else f"V{f.nbytes}")
            offsets.append(f.offset)
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                               "itemsize": self.size})

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise FormatError(f"header has no field {name!r}; fields: {', '.join(f.name for f in self.fields)}")

    def _bits(self, name: str) -> tuple[Field, BitField | None]:
        for f in self.fields:
            if f.name == name:
                return f, None
            for b in f.bits:
                if b.name == name:
                    return f, b
        raise FormatError(f"header has no field or bit field {name!r}")

    def readers(self, *names: str) -> tuple:
        """Compiled readers ``get(buf) -> int64``, one per field or bit field name, in order:
        the field's offset, width and byte order come from this table, so a format's
        ``decode`` never restates them.  Each inlines to the same code as the hand-written
        ``rd_be64(buf, 8)`` it replaces (callers check the buffer length first)."""
        return tuple(_field_reader(*self._bits(n)) for n in names)

    def writers(self, *names: str) -> tuple:
        """Compiled writers ``put(buf, value)``, one per (whole) field name, in order: the
        ``fill`` counterpart of :meth:`readers` (low bits of ``value``, the field's byte
        order; callers check the buffer length first)."""
        out = []
        for n in names:
            f = self.field(n)
            if f.wire not in _WRITE_HELPERS:
                raise FormatError(f"field {n!r}: no compiled writer for wire type {f.wire!r}")
            out.append(_bind_offset(_WRITE_HELPERS[f.wire], f.offset))
        return tuple(out)

    def table(self) -> list[dict[str, Any]]:
        """Rows for tools: name, offset, size, wire type, doc, bit fields."""
        rows = []
        for f in self.fields:
            rows.append({"name": f.name, "offset": f.offset, "size": f.nbytes, "type": f.wire,
                         "doc": f.doc,
                         "bits": [{"name": b.name, "lsb": b.lsb, "width": b.width, "doc": b.doc}
                                  for b in f.bits]})
        return rows

    def unpack(self, raw: bytes | np.ndarray) -> dict[str, int]:
        """Decode one header (Python, for tools and tests; not a hot path)."""
        buf = np.frombuffer(bytes(raw[: self.size]), dtype=np.uint8)
        if buf.size < self.size:
            raise FormatError(f"header needs {self.size} bytes, got {buf.size}")
        out: dict[str, int] = {}
        for f in self.fields:
            chunk = bytes(buf[f.offset: f.offset + f.nbytes])
            if f.wire == "bytes":
                out[f.name] = chunk  # type: ignore[assignment]
                continue
            if f.wire == "f64be":
                out[f.name] = float(np.frombuffer(chunk, ">f8")[0])  # type: ignore[assignment]
                continue
            order = "little" if f.wire.endswith("le") else "big"
            value = int.from_bytes(chunk, order, signed=f.wire.startswith("i"))
            out[f.name] = value
            for b in f.bits:
                out[b.name] = (value >> b.lsb) & ((1 << b.width) - 1)
        return out


@dataclasses.dataclass(frozen=True)
class Signature:
    """What every packet of a format has in common, for tools that must recognise a format
    without being told (the Wireshark dissector's heuristic).  A format module declares one
    as ``SIGNATURE`` when it has a sync word; formats without one are recognised by port.

    ``match``: ``(offset, bytes)`` found in every packet (a sync word, a frame ID), or
    ``(offset, (bytes, bytes, ...))`` for one of several.  ``packet_sizes``: the only packet
    sizes (empty: any).  ``size_rule``: ``(h, m)`` when the size is ``h`` plus a positive
    multiple of ``m`` (COR's 32-byte channels)."""
    match: tuple[tuple[int, Any], ...]
    packet_sizes: tuple[int, ...] = ()
    size_rule: tuple[int, int] | tuple[()] = ()

    def alternatives(self) -> list[tuple[int, tuple[bytes, ...]]]:
        """``match`` with every entry as (offset, tuple of accepted byte strings)."""
        return [(off, (want,) if isinstance(want, bytes) else tuple(want)) for off, want in self.match]

    def accepts(self, pkt: bytes) -> bool:
        """Whether ``pkt`` looks like this format (the same test the dissector makes)."""
        n = len(pkt)
        if self.packet_sizes and n not in self.packet_sizes:
            return False
        if self.size_rule:
            h, m = self.size_rule
            if n <= h or (n - h) % m:
                return False
        return all(any(pkt[off: off + len(w)] == w for w in alts) for off, alts in self.alternatives())


# ---------------------------------------------------------------------------------------
# Parsed format string

@dataclasses.dataclass
class FormatParams:
    """What a format string means for one role."""
    name: str                 # the format's NAME
    fmt: str                  # the string as given
    role: str                 # "capture", "disk" or "write"
    header_size: int
    payload_size: int | None  # fixed payload bytes per packet, None if variable
    record_size: int | None = None        # bytes per packet in a file (DiskReader)
    fixed_packet_size: int | None = None  # capture: the only accepted packet size
    samples_per_packet: int | None = None  # writer: last axis of send() data
    write_dtype: str | None = None         # writer: required asbru dtype name
    extra: dict[str, int] = dataclasses.field(default_factory=dict)  # nchan, nbeam, ...


def parse_int_suffix(fmt: str, prefix: str, what: str = "N") -> int:
    """``parse_int_suffix("chips_132", "chips_") -> 132`` with a one-line error otherwise."""
    tail = fmt[len(prefix):]
    if not fmt.startswith(prefix) or not tail.isdigit():
        raise FormatError(f"format {fmt!r}: expected '{prefix}{what}' with {what} a positive integer")
    value = int(tail)
    if value <= 0:
        raise FormatError(f"format {fmt!r}: {what} must be > 0")
    return value


def channel_format(fmt: str, role: str, *, name: str, header_size: int, nchan: int | None,
                   bytes_per_chan: int, samples_per_chan: int, write_dtype: str,
                   extra: dict[str, int] | None = None, usage: str = "") -> FormatParams:
    """Parameters of a "prefix" format string (``chips``, ``cor``, ``ibeam``, ``pbeam``):
    the bare name (``nchan`` None) is accepted for capture only; with N channels per packet
    the capture role records N but does not enforce it (Bifrost's UDP capture looks only at
    the prefix, and so does asbru's), while disk and write fix the packet at
    ``header_size + bytes_per_chan * N`` bytes.  ``extra`` holds the format's other
    parameters (e.g. ``nbeam``); ``usage`` names the string the other roles need."""
    extra = dict(extra or {})
    if nchan is None:
        if role != "capture":
            raise FormatError(f"format {fmt!r}: the {role} role needs {usage or repr(name + '_N')} "
                              "(N channels per packet)")
        return FormatParams(name=name, fmt=fmt, role=role, header_size=header_size,
                            payload_size=None, extra={**extra, "nchan": 0})
    if role == "capture":
        return FormatParams(name=name, fmt=fmt, role=role, header_size=header_size,
                            payload_size=None, extra={**extra, "nchan": 0, "nchan_given": nchan})
    p = bytes_per_chan * nchan
    return FormatParams(name=name, fmt=fmt, role=role, header_size=header_size, payload_size=p,
                        record_size=header_size + p, fixed_packet_size=header_size + p,
                        samples_per_packet=samples_per_chan * nchan, write_dtype=write_dtype,
                        extra={**extra, "nchan": nchan})


# ---------------------------------------------------------------------------------------
# Time tags.  Formats whose header carries a time tag in ticks number their time slots
# ``seq = time_tag // step`` (step: ticks per time slot) and keep the remainder, the
# stream's phase, so that the time tag of any slot is reproduced exactly:
# ``time_tag = seq * step + phase``.

@numba.njit(inline="always", nogil=True, cache=True)
def split_time_tag(time_tag, step):
    """``(seq, phase)`` of a time tag: its time slot and the ticks past the slot's start
    (``step > 0``; callers check)."""
    return time_tag // step, time_tag % step


def time_tag_at(seq: int, step: int, phase: int = 0) -> int:
    """The time tag of time slot ``seq``: ``seq * step + phase`` (a negative phase, i.e. a
    descriptor that never held one, counts as 0)."""
    return int(seq) * int(step) + max(int(phase), 0)


# ---------------------------------------------------------------------------------------
# Byte helpers usable inside compiled format functions.  Callers check lengths first.

@numba.njit(inline="always", nogil=True, cache=True)
def rd_u8(b, off):
    return np.int64(b[off])


@numba.njit(inline="always", nogil=True, cache=True)
def rd_be16(b, off):
    return (np.int64(b[off]) << 8) | np.int64(b[off + 1])


@numba.njit(inline="always", nogil=True, cache=True)
def rd_be24(b, off):
    return (np.int64(b[off]) << 16) | (np.int64(b[off + 1]) << 8) | np.int64(b[off + 2])


@numba.njit(inline="always", nogil=True, cache=True)
def rd_be32(b, off):
    return ((np.int64(b[off]) << 24) | (np.int64(b[off + 1]) << 16)
            | (np.int64(b[off + 2]) << 8) | np.int64(b[off + 3]))


@numba.njit(inline="always", nogil=True, cache=True)
def rd_le32(b, off):
    return ((np.int64(b[off + 3]) << 24) | (np.int64(b[off + 2]) << 16)
            | (np.int64(b[off + 1]) << 8) | np.int64(b[off]))


@numba.njit(inline="always", nogil=True, cache=True)
def rd_be64(b, off):
    """Big-endian u64 returned as int64 (values >= 2**63 come back negative)."""
    v = np.uint64(0)
    for i in range(8):
        v = (v << np.uint64(8)) | np.uint64(b[off + i])
    return np.int64(v)


@numba.njit(inline="always", nogil=True, cache=True)
def wr_u8(b, off, v):
    b[off] = np.uint8(v & 0xFF)


@numba.njit(inline="always", nogil=True, cache=True)
def wr_be16(b, off, v):
    b[off] = np.uint8((v >> 8) & 0xFF)
    b[off + 1] = np.uint8(v & 0xFF)


@numba.njit(inline="always", nogil=True, cache=True)
def wr_be24(b, off, v):
    b[off] = np.uint8((v >> 16) & 0xFF)
    b[off + 1] = np.uint8((v >> 8) & 0xFF)
    b[off + 2] = np.uint8(v & 0xFF)


@numba.njit(inline="always", nogil=True, cache=True)
def wr_be32(b, off, v):
    b[off] = np.uint8((v >> 24) & 0xFF)
    b[off + 1] = np.uint8((v >> 16) & 0xFF)
    b[off + 2] = np.uint8((v >> 8) & 0xFF)
    b[off + 3] = np.uint8(v & 0xFF)


@numba.njit(inline="always", nogil=True, cache=True)
def wr_le32(b, off, v):
    b[off + 3] = np.uint8((v >> 24) & 0xFF)
    b[off + 2] = np.uint8((v >> 16) & 0xFF)
    b[off + 1] = np.uint8((v >> 8) & 0xFF)
    b[off] = np.uint8(v & 0xFF)


@numba.njit(inline="always", nogil=True, cache=True)
def _wr_be64_compiled(b, off, v):
    u = np.uint64(v)
    for i in range(8):
        b[off + 7 - i] = np.uint8(u & np.uint64(0xFF))
        u = u >> np.uint64(8)


def _wr_be64_python(b, off, v):
    """Python twin of ``wr_be64`` (NUMBA_DISABLE_JIT=1): numba converts any integer to
    uint64 modulo 2**64 (seq_inc -1, time tags up to 2**64 - 1); numpy refuses a negative
    Python int, so the same wrap is spelled out."""
    u = int(v) & 0xFFFF_FFFF_FFFF_FFFF
    for i in range(8):
        b[off + 7 - i] = u & 0xFF
        u >>= 8


wr_be64 = _wr_be64_python if _nbconfig.DISABLE_JIT else _wr_be64_compiled


# Field accessors (Header.readers / Header.writers): the table's offset bound into a small
# function that numba inlines, so the machine code is that of a constant offset.
_READ_HELPERS = {"u8": rd_u8, "u16be": rd_be16, "u24be": rd_be24, "u32be": rd_be32,
                 "u32le": rd_le32, "u64be": rd_be64}
_WRITE_HELPERS = {"u8": wr_u8, "u16be": wr_be16, "u24be": wr_be24, "u32be": wr_be32,
                  "u32le": wr_le32, "u64be": wr_be64}


def _field_reader(f: Field, bit: BitField | None):
    if f.wire not in _READ_HELPERS:
        raise FormatError(f"field {f.name!r}: no compiled reader for wire type {f.wire!r}")
    rd, off = _READ_HELPERS[f.wire], f.offset
    if bit is None:
        @numba.njit(inline="always", nogil=True)
        def get(b):
            return rd(b, off)
        return get
    lsb, mask = bit.lsb, (1 << bit.width) - 1

    @numba.njit(inline="always", nogil=True)
    def get_bits(b):
        return (rd(b, off) >> lsb) & mask
    return get_bits


def _bind_offset(wr, off: int):
    # not cached on disk: every accessor shares one qualified name; callers that inline it
    # are cached with the offset folded in
    @numba.njit(inline="always", nogil=True)
    def put(b, v):
        wr(b, off, v)
    return put


# Each intrinsic below (LLVM instructions, no Python body) has a plain-Python twin with the
# same effect on memory, bound to the public name under NUMBA_DISABLE_JIT=1 so that decode,
# place and the capture loop can be stepped through in a debugger (docs/architecture.md,
# "Debug a placement").  With the JIT on, the name is the intrinsic, as before.

def _raw_copy_python(dst_addr: int, src_addr: int, nbytes: int) -> None:
    """Python twin of ``_raw_copy`` and ``_raw_move``: the same bytes copied between the same
    addresses."""
    ctypes.memmove(int(dst_addr), int(src_addr), int(nbytes))


def _address_copy(name: str, raw_op: Any) -> Any:
    """An intrinsic ``name(dst_addr, src_addr, nbytes)`` emitting ``raw_op``
    (``cgutils.raw_memcpy`` or ``raw_memmove``) between two addresses."""
    def typer(typingctx, dst_addr, src_addr, nbytes):
        sig = _nbtypes.void(_nbtypes.int64, _nbtypes.int64, _nbtypes.int64)

        def codegen(context, builder, signature, args):
            d, s, k = args
            i8p = _llvm_ir.IntType(8).as_pointer()
            raw_op(builder, builder.inttoptr(d, i8p), builder.inttoptr(s, i8p), k, 1)
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


# llvm.memcpy: a call to libc's memcpy for a variable size, a few inline moves when
# ``nbytes`` is a compile-time constant after inlining (the 32-byte CHIPS chunks: measured
# here 4x faster than calling memcpy per chunk)
_raw_copy_compiled = _address_copy("_raw_copy_compiled", _cgutils.raw_memcpy)
# llvm.memmove: the two ranges may overlap
_raw_move_compiled = _address_copy("_raw_move_compiled", _cgutils.raw_memmove)

_raw_copy = _raw_copy_python if _nbconfig.DISABLE_JIT else _raw_copy_compiled
_raw_move = _raw_copy_python if _nbconfig.DISABLE_JIT else _raw_move_compiled

#: copies into ring slots of at least this many bytes use streaming stores (copy_to_ring)
STREAM_MIN = 256


def _stream_copy_python(dst_addr: int, src_addr: int, nbytes: int) -> None:
    """Python twin of ``_stream_copy``: the same bytes land (ordering is the fence's job,
    and Python needs none)."""
    ctypes.memmove(int(dst_addr), int(src_addr), int(nbytes))


@intrinsic
def _stream_copy_compiled(typingctx, dst_addr, src_addr, nbytes):
    """Copy with non-temporal ("streaming") 32-byte stores for the 32-byte aligned body and
    ordinary copies for the unaligned head and the tail.

    Why: a capture writes each ring byte once and a reader looks at it much later (gulps of
    megabytes are out of cache by then), so an ordinary store first reads the destination
    line from memory (read-for-ownership) only to overwrite it.  Streaming stores skip that
    read: measured here, copying 1-8 KiB payloads into a 128 MiB ring ran at 22.6 GB/s
    against 12.6-14.5 GB/s for memcpy.  Streaming stores are weakly ordered: whoever hands
    the bytes to another thread calls :func:`store_fence` first (the capture loop does, once
    per return to Python).  Not for scatter of pieces smaller than a cache line (CHIPS'
    32-byte chunks): partial-line streaming stores are 4x slower than ordinary ones."""
    sig = _nbtypes.void(_nbtypes.int64, _nbtypes.int64, _nbtypes.int64)

    def codegen(context, builder, signature, args):
        d, s, k = args
        i64 = _llvm_ir.IntType(64)
        i8p = _llvm_ir.IntType(8).as_pointer()
        vty = _llvm_ir.VectorType(i64, 4)
        c32 = _llvm_ir.Constant(i64, 32)
        zero = _llvm_ir.Constant(i64, 0)
        # head: up to the next 32-byte boundary of the destination (at most k bytes)
        head = builder.and_(builder.sub(zero, d), _llvm_ir.Constant(i64, 31))
        head = builder.select(builder.icmp_unsigned("<", k, head), k, head)
        _cgutils.raw_memcpy(builder, builder.inttoptr(d, i8p), builder.inttoptr(s, i8p), head, 1)
        d1 = builder.add(d, head)
        s1 = builder.add(s, head)
        rest = builder.sub(k, head)
        nblk = builder.udiv(rest, c32)
        nt = builder.module.add_metadata([_llvm_ir.Constant(_llvm_ir.IntType(32), 1)])
        with _cgutils.for_range(builder, nblk) as loop:
            off = builder.mul(loop.index, c32)
            v = builder.load(builder.inttoptr(builder.add(s1, off), vty.as_pointer()), align=1)
            st = builder.store(v, builder.inttoptr(builder.add(d1, off), vty.as_pointer()), align=32)
            st.set_metadata("nontemporal", nt)
        body = builder.mul(nblk, c32)
        _cgutils.raw_memcpy(builder, builder.inttoptr(builder.add(d1, body), i8p),
                            builder.inttoptr(builder.add(s1, body), i8p), builder.sub(rest, body), 1)
        return context.get_dummy_value()

    return sig, codegen


_stream_copy = _stream_copy_python if _nbconfig.DISABLE_JIT else _stream_copy_compiled


def _stream_pair32_python(dst_addr: int, a_addr: int, b_addr: int) -> None:
    """Python twin of ``stream_pair32``: 32 bytes from ``a_addr``, then 32 from ``b_addr``."""
    ctypes.memmove(int(dst_addr), int(a_addr), 32)
    ctypes.memmove(int(dst_addr) + 32, int(b_addr), 32)


@intrinsic
def _stream_pair32_compiled(typingctx, dst_addr, a_addr, b_addr):
    """Write 32 bytes from ``a_addr`` then 32 bytes from ``b_addr`` to the 64 bytes at
    ``dst_addr`` (32-byte aligned; 64 for a whole cache line) with streaming stores: two
    adjacent sources' pieces of an interleaved layout filling one line in one go."""
    sig = _nbtypes.void(_nbtypes.int64, _nbtypes.int64, _nbtypes.int64)

    def codegen(context, builder, signature, args):
        d, a, b = args
        i64 = _llvm_ir.IntType(64)
        vp = _llvm_ir.VectorType(i64, 4).as_pointer()
        nt = builder.module.add_metadata([_llvm_ir.Constant(_llvm_ir.IntType(32), 1)])
        va = builder.load(builder.inttoptr(a, vp), align=1)
        vb = builder.load(builder.inttoptr(b, vp), align=1)
        st = builder.store(va, builder.inttoptr(d, vp), align=32)
        st.set_metadata("nontemporal", nt)
        st = builder.store(vb, builder.inttoptr(builder.add(d, _llvm_ir.Constant(i64, 32)), vp),
                           align=32)
        st.set_metadata("nontemporal", nt)
        return context.get_dummy_value()

    return sig, codegen


stream_pair32 = _stream_pair32_python if _nbconfig.DISABLE_JIT else _stream_pair32_compiled


def _store_fence_python() -> None:
    """Python twin of ``store_fence``: nothing to do -- the Python twins store with
    ordinary (ordered) stores, and the interpreter's lock orders them for other threads."""


@intrinsic
def _store_fence_compiled(typingctx):
    """A full memory fence: orders streaming stores before anything that follows (e.g. the
    commit that lets a reader thread see the bytes)."""
    sig = _nbtypes.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


store_fence = _store_fence_python if _nbconfig.DISABLE_JIT else _store_fence_compiled


def _out_of_line_python() -> None:
    """Python twin of ``out_of_line``: the interpreter inlines nothing."""


@intrinsic
def _out_of_line_compiled(typingctx):
    """Mark the compiled function that calls this as LLVM ``noinline``.

    For a format's rarely taken slow path (TBN's cadence vote).  numba links a callee's
    LLVM module into every caller's, and LLVM inlines what it may: a large slow path
    reached from ``decode`` was copied into each of the ~10 loop functions that call
    ``decode`` and optimized and code-generated there again, seconds apiece.  A call
    costs nothing on a path taken once per new time tag."""
    sig = _nbtypes.void()

    def codegen(context, builder, signature, args):
        builder.function.attributes.add("noinline")
        return context.get_dummy_value()

    return sig, codegen


out_of_line = _out_of_line_python if _nbconfig.DISABLE_JIT else _out_of_line_compiled


@numba.njit(inline="always", nogil=True, cache=True)
def _clipped(dst, dst_off, src, src_off, n):
    """How many of ``n`` bytes fit both arrays from these offsets (0 if none)."""
    if dst_off < 0 or src_off < 0:
        return 0
    m = n
    if dst_off + m > dst.size:
        m = dst.size - dst_off
    if src_off + m > src.size:
        m = src.size - src_off
    return m if m > 0 else 0


@numba.njit(inline="always", nogil=True, cache=True)
def copy_bytes(dst, dst_off, src, src_off, n):
    """Copy ``n`` bytes, clipped to both arrays' bounds; returns the number copied.

    Both arrays must be C-contiguous uint8 (slices of packets and ring slots are)."""
    m = _clipped(dst, dst_off, src, src_off, n)
    if m > 0:
        _raw_copy(dst.ctypes.data + dst_off, src.ctypes.data + src_off, m)
    return m


@numba.njit(inline="always", nogil=True, cache=True)
def copy_to_ring(dst, dst_off, src, src_off, n):
    """:func:`copy_bytes` for a payload going into a ring slot: the same clipping, and
    streaming stores (``_stream_copy``) from :data:`STREAM_MIN` bytes on.  The capture
    engine fences before it commits; other callers handing ``dst`` to another thread call
    :func:`store_fence` first.  In a loop of many copies, keep locked instructions out of
    it (numba's reference counting of array slices is one: the capture loop works on
    borrowed arrays, ``asbru.capture.borrow``): each one waits until the streaming stores
    before it have reached memory, which made 1 KiB copies 4x slower here."""
    m = _clipped(dst, dst_off, src, src_off, n)
    if m >= STREAM_MIN:
        _stream_copy(dst.ctypes.data + dst_off, src.ctypes.data + src_off, m)
    elif m > 0:
        _raw_copy(dst.ctypes.data + dst_off, src.ctypes.data + src_off, m)
    return m


@numba.njit(inline="always", nogil=True, cache=True)
def copy_unchecked(dst, dst_off, src, src_off, n):
    """Copy ``n`` bytes WITHOUT bounds checks: only after the caller has checked that the
    whole set of copies it makes fits both arrays (e.g. once per packet).  With a constant
    ``n`` this compiles to inline moves."""
    _raw_copy(dst.ctypes.data + dst_off, src.ctypes.data + src_off, n)


@numba.njit(nogil=True, cache=True)
def place_source_block(payload, d, slot, nsrc):
    """The most common ring placement, layout ``[time][src][payload]``: the whole payload
    of source ``d[SRC]`` at ``src * P`` of the time slot (P = ``d[PAYLOAD_SIZE]``).  A format
    whose payloads land this way declares ``place = place_source_block``."""
    src = d[SRC]
    p = d[PAYLOAD_SIZE]
    if src < 0 or src >= nsrc or p <= 0:
        return
    copy_to_ring(slot, src * p, payload, 0, p)
