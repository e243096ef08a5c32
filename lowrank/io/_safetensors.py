"""Reading and writing ``.safetensors`` files.

Listing uses the header validated by :mod:`lowrank.io._safetensors_header`, so corrupt files
are reported before any data are read.

Tensor data are read by lowrank itself, one tensor at a time, from the byte range the
validated header gives: the file is opened, checked to be the very version the header was
read from (device, inode, size, mtime, ctime) and to hold the whole range, and the bytes
are read with ``readinto`` straight into the new array, as the little-endian NumPy (or
``ml_dtypes`` for bfloat16 and the float8 codes) dtype of the code. The ``safetensors``
library is not used for reading: it memory-maps the file, and a file truncated in place
while a tensor is copied out of the map kills the process with ``SIGBUS``; ``read`` instead
returns fewer bytes, which is reported as a :class:`~lowrank.errors.FileFormatError`.
The library writes files (``save_file``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from lowrank._typing import Array
from lowrank._validation import check_path
from lowrank.errors import (
    DTypeError,
    FileFormatError,
    InputError,
    LowRankError,
    MissingFileError,
)
from lowrank.io._atomic import _replace, _target
from lowrank.io._dtypes import SAFETENSORS_CODES, SAFETENSORS_SAVABLE
from lowrank.io._files import open_regular
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
        ``path`` is not a non-empty ``str`` or ``os.PathLike``, or is not a regular file
        (a directory, a named pipe, a device).
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


# Bytes asked of one read() call: Linux returns at most about 2 GiB per call anyway.
_READ_CHUNK = 1 << 30


def _ended(path: Path, done: int, nbytes: int, offset: int) -> NoReturn:
    raise FileFormatError(
        f"safetensors file '{path}' ended after {done} of the {nbytes} bytes at offset "
        f"{offset} its header promises; the file was truncated or replaced"
    )


def _read_raw(
    path: Path, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...], stamp: tuple[int, ...]
) -> Array:
    """Read the array of ``dtype`` and ``shape`` stored at ``offset`` of ``path``.

    ``stamp`` is the ``file_stamp`` of the file version the header (and ``offset``) came
    from; an empty stamp skips that check. The bytes are read into the new array itself,
    with ``read`` calls, never through a memory map.
    """
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    with open_regular(path, "safetensors file") as fh:
        st = os.fstat(fh.fileno())
        # The header gave the offsets; they hold only for the file version it was read from.
        if stamp and file_stamp(st) != stamp:
            raise FileFormatError(
                f"safetensors file '{path}' was replaced while tensors were being read from it"
            )
        if st.st_size < offset + nbytes:  # checked before the array is allocated
            _ended(path, max(0, st.st_size - offset), nbytes, offset)
        fh.seek(offset)
        flat = np.empty(count, dtype=dtype)
        view = flat.reshape(-1).view(np.uint8).data
        done = 0
        while done < nbytes:
            # A file truncated meanwhile makes read() return short (then 0): no SIGBUS.
            got = fh.readinto(view[done : done + _READ_CHUNK])
            if not got:
                _ended(path, done, nbytes, offset)
            done += got
    return flat.reshape(shape)


def load_safetensors_tensor(info: TensorInfo) -> Array:
    """Load one tensor of a ``.safetensors`` file in its stored dtype.

    Memory: only this tensor's bytes are read, straight into the returned array, so peak
    use is the tensor's size, not the file's. No memory map is used, so a file truncated
    while it is read gives an error, not a crash.

    The header is cached by the file's device, inode, size, mtime and ctime (a file
    replaced by a same-size copy with the same mtime is read again), and the data are read
    only from the file version the header was read from, after checking that it holds the
    whole byte range.

    Raises
    ------
    MissingFileError
        The file no longer exists.
    InputError
        The path is no longer a regular file (a directory, a named pipe, a device).
    FileFormatError
        The file no longer holds the tensor as listed, or was truncated or replaced.
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
    if stored.dtype == "bfloat16" or stored.dtype.startswith("float8"):
        import ml_dtypes

        dtype = np.dtype(getattr(ml_dtypes, stored.dtype))
    else:
        dtype = np.dtype(stored.dtype)
    # safetensors stores little-endian data; on a little-endian machine this is native.
    dtype = dtype.newbyteorder("<")
    try:
        return _read_raw(info.file, entry.begin, dtype, stored.shape, header.stamp)
    except LowRankError:
        raise
    except ValueError as exc:  # e.g. more dimensions than NumPy allows
        raise FileFormatError(
            f"could not read tensor '{info.name}' from safetensors file '{info.file}': {exc}"
        ) from None


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
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    target = _target(file)
    with _replace(target) as temp:
        try:
            save_file(prepared, temp, metadata=dict(metadata) if metadata is not None else None)
        except SafetensorError as exc:
            raise _write_error(exc, target) from exc


def _write_error(exc: Exception, target: Path) -> Exception:
    """The documented error for the library's ``SafetensorError`` while writing ``target``.

    The library reports an I/O failure (a full disk, a file-size limit) as text ending in
    "(os error N)", not as an ``OSError``: that becomes ``OSError(N, ...)`` naming the
    file. Anything else is a tensor the library refused.
    """
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found:
        errno = int(found.group(1))
        return OSError(errno, os.strerror(errno), os.fspath(target))
    return InputError(f"could not write safetensors file '{target}': {exc}")
