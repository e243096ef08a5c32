"""Parsing and validating a ``.safetensors`` header, in Python, without the library.

Listing then needs no tensor data and no ``safetensors`` import, and a corrupt file is
reported with its path and the rule it breaks, instead of the library's "invalid offset for
tensor" or "file not fully covered".

The format: an 8-byte little-endian unsigned header length ``N``, ``N`` bytes of UTF-8 JSON
mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an
optional ``"__metadata__"`` string-to-string map, or ``null`` for none), then the data
region. Offsets are relative to the data region, and the tensors must tile it exactly: no
gaps, no overlaps, no trailing bytes (the library enforces the same rules, so a file
accepted here opens there).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lowrank.errors import FileFormatError
from lowrank.io._dtypes import SAFETENSORS_CODES
from lowrank.io._files import open_regular
from lowrank.io._info import TensorInfo

__all__ = ["METADATA_KEY", "Entry", "Header", "file_stamp", "read_header"]

# The library's own limit; a larger "header" is a corrupt length field.
_MAX_HEADER_BYTES = 100_000_000
# NumPy's limit for a dimension and for an array's byte size (intp); a shape beyond it can
# be neither held nor loaded, even when a zero dimension makes the tensor empty.
_MAX_INTP = 2**63 - 1
METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class Entry:
    """One validated header entry."""

    info: TensorInfo
    code: str
    begin: int  # absolute byte offset of the data in the file


@dataclass(frozen=True)
class Header:
    """A validated header, and the identity of the file it was read from."""

    entries: dict[str, Entry]  # in header order
    metadata: dict[str, str]
    stamp: tuple[int, ...] = ()  # see file_stamp()


class _DuplicateKeyError(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of repeated keys silently; in a header that hides a tensor.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(
    path: Path, name: str, spec: object, data_size: int
) -> tuple[str, list[int], int, int]:
    where = f"safetensors file '{path}': tensor '{name}'"
    if not isinstance(spec, dict):
        raise FileFormatError(f"{where} must be described by a JSON object; got {spec!r}")
    code = spec.get("dtype")
    shape = spec.get("shape")
    offsets = spec.get("data_offsets")
    if not isinstance(code, str) or code not in SAFETENSORS_CODES:
        raise FileFormatError(
            f"{where} has unknown dtype {code!r}; "
            f"known safetensors dtypes are {', '.join(SAFETENSORS_CODES)}"
        )
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise FileFormatError(
            f"{where} shape must be a list of non-negative integers; got {shape!r}"
        )
    _check_shape_size(where, shape, SAFETENSORS_CODES[code].bits)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise FileFormatError(
            f"{where} data_offsets must be [begin, end] with 0 <= begin <= end; got {offsets!r}"
        )
    begin, end = offsets
    elements = 1
    for d in shape:
        elements *= d  # bounded by _check_shape_size
    bits = elements * SAFETENSORS_CODES[code].bits
    if bits % 8:
        raise FileFormatError(f"{where} shape {shape} of dtype {code} does not fill whole bytes")
    if end > data_size:
        raise FileFormatError(
            f"{where} data_offsets [{begin}, {end}] point past the end of the data region, "
            f"which holds {data_size} bytes: the file is truncated or its header is corrupt"
        )
    if end - begin != bits // 8:
        raise FileFormatError(
            f"{where} data_offsets [{begin}, {end}] span {end - begin} bytes, but shape "
            f"{shape} of dtype {code} needs {bits // 8} bytes"
        )
    return code, shape, begin, end


def _check_shape_size(where: str, shape: list[int], bits: int) -> None:
    # The library refuses a shape whose element count overflows (it computes it in usize),
    # and NumPy one with a dimension or a byte size (zero dimensions left out) beyond intp.
    # Refused here, at listing, rather than when the file is read: the library then refuses
    # the whole file, the valid tensors in it too.
    size = -(-bits // 8)
    for d in shape:
        if d > _MAX_INTP:
            raise FileFormatError(
                f"{where} has the impossible shape {shape}: dimension {d} exceeds 2**63 - 1"
            )
        if d:
            size *= d
            if size > _MAX_INTP:
                raise FileFormatError(
                    f"{where} has the impossible shape {shape}: its size overflows 64 bits"
                )


def _check_tiling(path: Path, spans: list[tuple[int, int, str]], data_size: int) -> None:
    expected, previous = 0, ""
    for begin, end, name in sorted(spans):
        if begin < expected:
            raise FileFormatError(
                f"safetensors file '{path}': tensor '{name}' (bytes [{begin}, {end})) "
                f"overlaps tensor '{previous}', which ends at byte {expected}"
            )
        if begin > expected:
            raise FileFormatError(
                f"safetensors file '{path}': bytes [{expected}, {begin}) of the data region "
                f"before tensor '{name}' belong to no tensor; the format requires the tensors "
                "to tile the data region"
            )
        expected, previous = end, name
    if expected != data_size:
        raise FileFormatError(
            f"safetensors file '{path}': the tensors cover {expected} bytes, but the data "
            f"region holds {data_size}; the file has trailing bytes or is corrupt"
        )


def _read_header_uncached(fh: BinaryIO, path: Path, file_size: int) -> Header:
    fh.seek(0)
    prefix = fh.read(8)
    if len(prefix) < 8:
        raise FileFormatError(
            f"safetensors file '{path}' is truncated: it holds {len(prefix)} bytes, "
            "fewer than the 8-byte header length"
        )
    (length,) = struct.unpack("<Q", prefix)
    if length > file_size - 8:
        raise FileFormatError(
            f"safetensors file '{path}' is truncated or not a safetensors file: its header "
            f"length field says {length} bytes, but only {file_size - 8} bytes follow it"
        )
    if length > _MAX_HEADER_BYTES:
        raise FileFormatError(
            f"safetensors file '{path}' has a header length of {length} bytes, more than "
            f"the format's limit of {_MAX_HEADER_BYTES}; the file is corrupt"
        )
    raw = fh.read(length)
    if len(raw) < length:
        raise FileFormatError(
            f"safetensors file '{path}' ended after {8 + len(raw)} bytes, inside its "
            f"{length}-byte header; the file was truncated while it was being read"
        )
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"safetensors file '{path}' has a header that is not UTF-8 text ({exc.reason} at "
            f"byte {8 + exc.start}); the file is corrupt or not a safetensors file"
        ) from None
    except json.JSONDecodeError as exc:
        raise FileFormatError(
            f"safetensors file '{path}' has a header that is not valid JSON ({exc.msg} at "
            f"header character {exc.pos}); the file is corrupt or not a safetensors file"
        ) from None
    except _DuplicateKeyError as exc:
        raise FileFormatError(
            f"safetensors file '{path}' has a header that names '{exc.args[0]}' twice"
        ) from None
    except RecursionError:  # json's decoder recurses once per nested array or object
        raise FileFormatError(
            f"safetensors file '{path}' has a header that nests JSON arrays or objects too "
            "deeply to be read; the file is corrupt or not a safetensors file"
        ) from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise FileFormatError(
            f"safetensors file '{path}' has a header that is not valid JSON ({exc}); the "
            "file is corrupt or not a safetensors file"
        ) from None
    if not isinstance(parsed, dict):
        raise FileFormatError(
            f"safetensors file '{path}' must have a JSON object as header; "
            f"got {type(parsed).__name__}"
        )
    metadata = parsed.pop(METADATA_KEY, None)
    if metadata is None:  # "__metadata__": null is no metadata, as for the library
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FileFormatError(
            f"safetensors file '{path}': {METADATA_KEY} must map strings to strings; "
            f"got {metadata!r}"
        )
    data_start = 8 + length
    data_size = file_size - data_start
    entries: dict[str, Entry] = {}
    spans: list[tuple[int, int, str]] = []
    for name, spec in parsed.items():
        code, shape, begin, end = _parse_entry(path, name, spec, data_size)
        info = TensorInfo(
            name=name,
            shape=tuple(shape),
            dtype=SAFETENSORS_CODES[code].name,
            file=path,
            nbytes=end - begin,
            format="safetensors",
        )
        entries[name] = Entry(info=info, code=code, begin=data_start + begin)
        spans.append((begin, end, name))
    _check_tiling(path, spans, data_size)
    return Header(entries=entries, metadata=metadata)


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What identifies one version of a file: device, inode, size, mtime and ctime.

    Size and mtime alone are not enough: ``cp -p``, ``rsync -a`` and ``tar x`` give a
    replacement the old mtime, and a same-size replacement would be read with the old
    header. A new file (rename, ``rsync``'s default) has a new inode; a file rewritten in
    place has a new ctime, which no tool can set back.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_CACHE_SIZE = 32
_cache: OrderedDict[tuple[Path, tuple[int, ...]], Header] = OrderedDict()
_cache_lock = threading.Lock()


def read_header(path: Path) -> Header:
    """The validated header of the safetensors file at the absolute ``path``.

    Headers are cached by the file's stamp (see ``file_stamp``), so that a replaced or
    rewritten file is parsed again, while a worker that loads many tensors of one shard
    parses its (possibly megabyte-sized) header once.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    InputError
        ``path`` is not a regular file (a directory, a FIFO, a device).
    FileFormatError
        The header is truncated, not JSON, or inconsistent (see the module docstring).
    OSError
        The file cannot be read (permissions, I/O error).
    """
    with open_regular(path, "safetensors file") as fh:
        stamp = file_stamp(os.fstat(fh.fileno()))
        key = (path, stamp)
        with _cache_lock:
            cached = _cache.get(key)
            if cached is not None:
                _cache.move_to_end(key)
                return cached
        parsed = _read_header_uncached(fh, path, stamp[2])
    header = Header(entries=parsed.entries, metadata=parsed.metadata, stamp=stamp)
    with _cache_lock:
        _cache[key] = header
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return header
