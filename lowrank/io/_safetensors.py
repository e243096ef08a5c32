"""Reading and writing ``.safetensors`` files.

The header is parsed and validated here, in Python, before the ``safetensors`` library sees
the file: listing needs no data and no library, and the library's own errors about a corrupt
header ("invalid offset for tensor", "file not fully covered") name neither the file nor the
rule broken.

The format: an 8-byte little-endian unsigned header length ``N``, ``N`` bytes of UTF-8 JSON
mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an
optional ``"__metadata__"`` string-to-string map), then the data region. Offsets are
relative to the data region, and the tensors must tile it exactly: no gaps, no overlaps, no
trailing bytes.

Tensor data are loaded through the library's NumPy interface
(``safe_open(path, framework="np").get_tensor(name)``), one tensor at a time. With
safetensors 0.8 that path returns BF16 tensors as ``ml_dtypes.bfloat16`` arrays once
``ml_dtypes`` is imported (it registers the dtype name the library asks NumPy for; without
it the library raises ``TypeError: data type 'bfloat16' not understood``), so ``ml_dtypes``
is imported first. The same path fails for the FP8 codes (it looks for
``numpy.float8_e4m3fn``, which does not exist), so those are read directly from the
validated byte range with :func:`numpy.fromfile` as ``ml_dtypes`` float8 arrays.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowrank._typing import Array
from lowrank.errors import DTypeError, FileFormatError, InputError, MissingFileError
from lowrank.io._atomic import atomic_path
from lowrank.io._dtypes import SAFETENSORS_CODES, SAFETENSORS_SAVABLE
from lowrank.io._info import TensorInfo

__all__ = [
    "list_safetensors",
    "load_safetensors_tensor",
    "read_safetensors_metadata",
    "save_safetensors",
]

# The library's own limit; a larger "header" is a corrupt length field.
_MAX_HEADER_BYTES = 100_000_000
_METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class _Entry:
    info: TensorInfo
    code: str
    begin: int  # absolute byte offset of the data in the file


@dataclass(frozen=True)
class _Header:
    entries: dict[str, _Entry]  # in header order
    metadata: dict[str, str]


class _DuplicateKeyError(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of repeated keys silently; in a header that hides a tensor.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
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
    bits = math.prod(shape) * SAFETENSORS_CODES[code].bits
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


def _read_header_uncached(path: Path, file_size: int) -> _Header:
    with open(path, "rb") as fh:
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
    if not isinstance(parsed, dict):
        raise FileFormatError(
            f"safetensors file '{path}' must have a JSON object as header; "
            f"got {type(parsed).__name__}"
        )
    metadata = parsed.pop(_METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FileFormatError(
            f"safetensors file '{path}': {_METADATA_KEY} must map strings to strings; "
            f"got {metadata!r}"
        )
    data_start = 8 + length
    data_size = file_size - data_start
    entries: dict[str, _Entry] = {}
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
        entries[name] = _Entry(info=info, code=code, begin=data_start + begin)
        spans.append((begin, end, name))
    _check_tiling(path, spans, data_size)
    return _Header(entries=entries, metadata=metadata)


@functools.lru_cache(maxsize=32)
def _read_header_cached(path: Path, file_size: int, mtime_ns: int) -> _Header:
    # Keyed by size and mtime so that a rewritten file is parsed again; a worker that loads
    # many tensors of one shard parses its (possibly megabyte-sized) header once.
    del mtime_ns
    return _read_header_uncached(path, file_size)


def _read_header(path: Path) -> _Header:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingFileError(f"safetensors file '{path}' does not exist") from None
    return _read_header_cached(path, st.st_size, st.st_mtime_ns)


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


def list_safetensors(path: str | os.PathLike[str]) -> tuple[TensorInfo, ...]:
    """List the tensors of one ``.safetensors`` file from its header, loading no data.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file.

    Returns
    -------
    tuple of TensorInfo
        In the order the header lists them.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    FileFormatError
        The file is truncated, its header is not JSON, names an unknown dtype, or has
        offsets past the end of the data, overlapping, or inconsistent with the shape.
    """
    header = _read_header(_absolute(path))
    return tuple(entry.info for entry in header.entries.values())


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` map of a ``.safetensors`` header (empty if it has none).

    Raises
    ------
    MissingFileError, FileFormatError
        As :func:`list_safetensors`.
    """
    return dict(_read_header(_absolute(path)).metadata)


def _read_raw(path: Path, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Array:
    with open(path, "rb") as fh:
        fh.seek(offset)
        flat = np.fromfile(fh, dtype=dtype, count=math.prod(shape))
    # A short read (the file shrank after validation) makes reshape raise ValueError.
    return flat.reshape(shape)


def load_safetensors_tensor(info: TensorInfo) -> Array:
    """Load one tensor of a ``.safetensors`` file in its stored dtype.

    Memory: the library memory-maps the file and copies out this tensor, so peak use is
    about the tensor's size (plus the page cache of its byte range), not the file's.

    Raises
    ------
    MissingFileError
        The file no longer exists.
    FileFormatError
        The file no longer holds the tensor as listed, or the library cannot read it.
    DTypeError
        The tensor has a packed sub-byte dtype (F4, F6_*), which NumPy cannot hold.
    """
    header = _read_header(info.file)
    entry = header.entries.get(info.name)
    if entry is None:
        raise FileFormatError(
            f"safetensors file '{info.file}' does not hold tensor '{info.name}' "
            "(was the file replaced after it was listed?)"
        )
    stored = entry.info
    if (stored.shape, stored.dtype) != (info.shape, info.dtype):
        raise FileFormatError(
            f"safetensors file '{info.file}' holds tensor '{info.name}' as {stored.dtype} "
            f"{stored.shape}, not {info.dtype} {info.shape} as listed; the file was replaced"
        )
    if SAFETENSORS_CODES[entry.code].bits < 8:
        raise DTypeError(
            f"tensor '{info.name}' in '{info.file}' has the packed sub-byte dtype {entry.code}, "
            "which cannot be loaded as a NumPy array"
        )
    import ml_dtypes  # registers bfloat16 and the float8 types with NumPy
    from safetensors import SafetensorError, safe_open

    try:
        if entry.code.startswith("F8_"):
            array = _read_raw(
                info.file, entry.begin, np.dtype(getattr(ml_dtypes, stored.dtype)), stored.shape
            )
        else:
            with safe_open(os.fspath(info.file), framework="np") as fh:
                array = fh.get_tensor(info.name)
    except (SafetensorError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise FileFormatError(
            f"could not read tensor '{info.name}' from safetensors file '{info.file}': {exc}"
        ) from exc
    return array


def _prepare(tensors: Mapping[str, Array]) -> dict[str, Array]:
    if not isinstance(tensors, Mapping):
        raise InputError(
            f"tensors must be a mapping from names to arrays; got {type(tensors).__name__}"
        )
    prepared: dict[str, Array] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == _METADATA_KEY:
            raise InputError(
                f"tensor names must be strings other than {_METADATA_KEY!r}; got {name!r}"
            )
        if not isinstance(value, np.ndarray):
            raise InputError(
                f"tensors[{name!r}] must be a numpy.ndarray; got {type(value).__name__}"
            )
        if value.dtype.name not in SAFETENSORS_SAVABLE:
            raise DTypeError(
                f"tensors[{name!r}] has dtype {value.dtype.name}, which safetensors cannot "
                f"store; supported: {', '.join(sorted(SAFETENSORS_SAVABLE))}"
            )
        # The library reads raw memory from data_ptr and nbytes, so a strided view would be
        # written as garbage. (Not np.ascontiguousarray: it turns 0-D arrays into 1-D.)
        prepared[name] = value if value.flags.c_contiguous else value.copy(order="C")
    return prepared


def save_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Array],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` to a ``.safetensors`` file atomically.

    The file is written by ``safetensors.numpy.save_file`` to a temporary file next to
    ``path``, which then replaces ``path`` (:func:`lowrank.io.atomic_path`): readers never
    see a partial file, and a failed write leaves an existing ``path`` untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its directory must exist.
    tensors : Mapping[str, numpy.ndarray]
        Arrays of any shape in a dtype safetensors stores: bool, (u)int8-64, float16,
        bfloat16 (``ml_dtypes``), float32, float64, complex64 or an ``ml_dtypes`` float8.
        Non-contiguous arrays are copied; the dtype is kept as is.
    metadata : Mapping[str, str], optional
        Free text stored as the header's ``__metadata__``.

    Raises
    ------
    InputError
        ``tensors`` is not a mapping of string names to ndarrays, or ``metadata`` is not a
        string-to-string mapping.
    DTypeError
        An array's dtype cannot be stored (e.g. complex128, object).
    MissingFileError
        The directory of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile, ml_dtypes, numpy as np
    >>> from pathlib import Path
    >>> from lowrank.io import list_tensors, load_tensor
    >>> W = np.arange(6, dtype=np.float32).reshape(2, 3).astype(ml_dtypes.bfloat16)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_safetensors(Path(d) / "w.safetensors", {"W": W}, metadata={"format": "np"})
    ...     (info,) = list_tensors(Path(d) / "w.safetensors")
    ...     print(info.name, info.shape, info.dtype, info.nbytes)
    ...     print(np.array_equal(load_tensor(info), W))
    W (2, 3) bfloat16 12
    True
    """
    prepared = _prepare(tensors)
    if metadata is not None and (
        not isinstance(metadata, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InputError(f"metadata must map strings to strings; got {metadata!r}")
    from safetensors.numpy import save_file

    with atomic_path(path) as temp:
        save_file(prepared, temp, metadata=dict(metadata) if metadata is not None else None)
