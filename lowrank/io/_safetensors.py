"""Reading and writing ``.safetensors`` files.

Listing uses the header validated by :mod:`lowrank.io._safetensors_header`, so corrupt files
are reported before any data are read.

Tensor data are loaded one tensor at a time. First the file is opened and checked to be a
regular file, the very version the header was read from (device, inode, size, mtime,
ctime), and long enough for the tensor's byte range, so that a file replaced or truncated
since it was listed is a :class:`~lowrank.errors.FileFormatError`. Then the library reads
it through its NumPy interface (``safe_open(path, framework="np").get_tensor(name)``). With
safetensors 0.8 that path returns BF16 tensors as ``ml_dtypes.bfloat16`` arrays once
``ml_dtypes`` is imported (it registers the dtype name the library asks NumPy for), so
``ml_dtypes`` is imported first. The same path fails for the FP8 codes (it looks for
``numpy.float8_e4m3fn``, which does not exist), so those are read from the validated byte
range with ``readinto`` as ``ml_dtypes`` float8 arrays.

The library memory-maps the file: a file truncated in place *while* a tensor is copied out
of the map kills the process with ``SIGBUS``, as it does every reader of the format that
maps files (PyTorch's and Hugging Face's included). Only that window remains; truncation or
replacement before the read is caught by the checks above.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from lowrank._typing import Array
from lowrank._validation import check_path
from lowrank.errors import (
    DTypeError,
    FileFormatError,
    InputError,
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


@contextlib.contextmanager
def _checked_file(path: Path, offset: int, nbytes: int, stamp: tuple[int, ...]) -> Iterator[Any]:
    """``path`` opened, a regular file, the version ``stamp`` describes (an empty stamp
    skips that check), and holding ``nbytes`` bytes at ``offset``."""
    with open_regular(path, "safetensors file") as fh:
        st = os.fstat(fh.fileno())
        # The header gave the offsets; they hold only for the file version it was read from.
        if stamp and file_stamp(st) != stamp:
            raise FileFormatError(
                f"safetensors file '{path}' was replaced while tensors were being read from it"
            )
        if st.st_size < offset + nbytes:  # checked before anything is allocated or mapped
            _ended(path, max(0, st.st_size - offset), nbytes, offset)
        yield fh


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
    with _checked_file(path, offset, nbytes, stamp) as fh:
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

    Memory: the library memory-maps the file and copies out this tensor (float8 tensors
    are read straight into their array), so peak use is about the tensor's size (plus the
    page cache of its byte range), not the file's.

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
    import ml_dtypes  # registers bfloat16 and the float8 types with NumPy

    if entry.code.startswith("F8_"):
        # safetensors stores little-endian data; on a little-endian machine this is native.
        dtype = np.dtype(getattr(ml_dtypes, stored.dtype)).newbyteorder("<")
        try:
            return _read_raw(info.file, entry.begin, dtype, stored.shape, header.stamp)
        except ValueError as exc:  # e.g. more dimensions than NumPy allows
            raise FileFormatError(
                f"could not read tensor '{info.name}' from safetensors file '{info.file}': {exc}"
            ) from None
    from safetensors import SafetensorError, safe_open

    nbytes = math.prod(stored.shape) * SAFETENSORS_CODES[entry.code].bits // 8
    with _checked_file(info.file, entry.begin, nbytes, header.stamp):
        try:
            with safe_open(os.fspath(info.file), framework="np") as fh:
                array: Array = fh.get_tensor(info.name)
        except (SafetensorError, OSError, ValueError, TypeError, AttributeError) as exc:
            raise FileFormatError(
                f"could not read tensor '{info.name}' from safetensors file '{info.file}': {exc}"
            ) from None
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
