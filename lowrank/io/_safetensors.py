"""Reading and writing ``.safetensors`` files.

Listing uses the header validated by :mod:`lowrank.io._safetensors_header`, so corrupt files
are reported before the ``safetensors`` library sees them.

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

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lowrank._typing import Array
from lowrank._validation import check_path
from lowrank.errors import DTypeError, FileFormatError, InputError, MissingFileError
from lowrank.io._atomic import _replace, _target
from lowrank.io._dtypes import SAFETENSORS_CODES, SAFETENSORS_SAVABLE
from lowrank.io._info import TensorInfo
from lowrank.io._safetensors_header import METADATA_KEY, file_stamp, read_header

__all__ = [
    "list_safetensors",
    "load_safetensors_tensor",
    "read_safetensors_metadata",
    "save_safetensors",
]


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
    header = read_header(_absolute(path))
    return tuple(entry.info for entry in header.entries.values())


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` map of a ``.safetensors`` header (empty if it has none).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file; only its header is read.

    Returns
    -------
    dict of str to str
        The metadata, as written (e.g. ``{"format": "pt"}`` by PyTorch).

    Raises
    ------
    InputError
        ``path`` is not a non-empty ``str`` or ``os.PathLike``, or is a directory.
    MissingFileError
        ``path`` does not exist.
    FileFormatError
        The file is truncated or its header is not valid safetensors JSON.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from lowrank.io import read_safetensors_metadata, save_safetensors
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "m.safetensors"
    ...     save_safetensors(path, {"w": np.ones((2, 2), np.float32)}, metadata={"format": "pt"})
    ...     read_safetensors_metadata(path)
    {'format': 'pt'}
    """
    file = _absolute(check_path(path, name="path"))
    if file.is_dir():
        raise InputError(f"path must be a .safetensors file, not a directory; got '{file}'")
    if not file.exists():
        raise MissingFileError(
            f"path must be an existing file; safetensors file '{file}' does not exist"
        )
    return dict(read_header(file).metadata)


def _read_raw(
    path: Path, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...], stamp: tuple[int, ...]
) -> Array:
    count = math.prod(shape)
    with open(path, "rb") as fh:
        # The header gave the offsets; they hold only for the file version it was read from.
        if stamp and file_stamp(os.fstat(fh.fileno())) != stamp:
            raise FileFormatError(
                f"safetensors file '{path}' was replaced while tensors were being read from it"
            )
        fh.seek(offset)
        flat = np.fromfile(fh, dtype=dtype, count=count)
    if flat.size != count:
        raise FileFormatError(
            f"safetensors file '{path}' ended after {flat.size * dtype.itemsize} of the "
            f"{count * dtype.itemsize} bytes at offset {offset} its header promises; the "
            "file was truncated or replaced"
        )
    return flat.reshape(shape)


def load_safetensors_tensor(info: TensorInfo) -> Array:
    """Load one tensor of a ``.safetensors`` file in its stored dtype.

    Memory: the library memory-maps the file and copies out this tensor, so peak use is
    about the tensor's size (plus the page cache of its byte range), not the file's.

    The header is cached by the file's device, inode, size, mtime and ctime (a file
    replaced by a same-size copy with the same mtime is read again), and the loaded array
    is checked against the header: its shape and dtype, and for the float8 codes read by
    offset, that the file is the one the header came from and holds all the bytes.

    Raises
    ------
    MissingFileError
        The file no longer exists.
    FileFormatError
        The file no longer holds the tensor as listed, or the library cannot read it.
    DTypeError
        The tensor has a packed sub-byte dtype (F4, F6_*), which NumPy cannot hold.
    OSError
        The file cannot be read (permissions, I/O error).
    """
    header = read_header(info.file)
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
                info.file,
                entry.begin,
                np.dtype(getattr(ml_dtypes, stored.dtype)),
                stored.shape,
                header.stamp,
            )
        else:
            with safe_open(os.fspath(info.file), framework="np") as fh:
                array = fh.get_tensor(info.name)
    except (SafetensorError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise FileFormatError(
            f"could not read tensor '{info.name}' from safetensors file '{info.file}': {exc}"
        ) from exc
    # The library reads its own header: a file replaced since ours was read shows here.
    if (array.shape, array.dtype.name) != (stored.shape, stored.dtype):
        raise FileFormatError(
            f"safetensors file '{info.file}' gave tensor '{info.name}' as {array.dtype.name} "
            f"{array.shape}, not {stored.dtype} {stored.shape} as its header was read; the "
            "file was replaced while it was being read"
        )
    return array


def _prepare(tensors: Mapping[str, Array]) -> dict[str, Array]:
    if not isinstance(tensors, Mapping):
        raise InputError(
            f"tensors must be a mapping from names to arrays; got {type(tensors).__name__}"
        )
    prepared: dict[str, Array] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise InputError(
                f"tensor names must be strings other than {METADATA_KEY!r}; got {name!r}"
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
        ``path`` is not a non-empty ``str`` or ``os.PathLike`` or is a directory,
        ``tensors`` is not a mapping of string names to ndarrays, or ``metadata`` is not a
        string-to-string mapping.
    DTypeError
        An array's dtype cannot be stored (e.g. complex128, object).
    MissingFileError
        The directory of ``path`` does not exist.
    OSError
        The file cannot be written (permissions, disk full); ``path`` is left as it was.

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
    file = check_path(path, name="path")
    prepared = _prepare(tensors)
    if metadata is not None and (
        not isinstance(metadata, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InputError(f"metadata must map strings to strings; got {metadata!r}")
    from safetensors.numpy import save_file

    with _replace(_target(file)) as temp:
        save_file(prepared, temp, metadata=dict(metadata) if metadata is not None else None)
