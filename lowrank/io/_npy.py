"""Reading ``.npy`` files and ``.npz`` archives one array at a time.

Listing reads only each array's ``.npy`` header (for an ``.npz``, the first bytes of each
member), so no data are loaded or decompressed. Arrays holding Python objects are listed but
never loaded: that would unpickle, i.e. run code from, the file (``allow_pickle=False``).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from lowrank._typing import Array
from lowrank.errors import DTypeError, FileFormatError, MissingFileError
from lowrank.io._info import TensorInfo

__all__ = ["list_npy", "list_npz", "load_npy_tensor", "load_npz_tensor"]

_NPY_SUFFIX = ".npy"
# Errors NumPy's format reader and zipfile raise for malformed or truncated input.
_READ_ERRORS = (ValueError, SyntaxError, EOFError, OSError, zipfile.BadZipFile, zlib.error)


def _read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        # 3.0 differs from 2.0 only in allowing UTF-8 field names of structured dtypes.
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return tuple(int(d) for d in shape), dtype


def _info(
    name: str, shape: tuple[int, ...], dtype: np.dtype[Any], path: Path, kind: Any
) -> TensorInfo:
    return TensorInfo(
        name=name,
        shape=shape,
        dtype=dtype.name,
        file=path,
        nbytes=math.prod(shape) * dtype.itemsize,
        format=kind,
    )


def _check_size(where: str, info: TensorInfo, dtype: np.dtype[Any], available: int) -> None:
    if not dtype.hasobject and available < info.nbytes:
        raise FileFormatError(
            f"{where} is truncated: its header promises {info.nbytes} bytes of {info.dtype} "
            f"data of shape {info.shape}, but only {available} bytes follow the header"
        )


def _exists(path: Path, kind: str) -> None:
    if not path.is_file():
        raise MissingFileError(f"{kind} file '{path}' does not exist")


def list_npy(path: str | os.PathLike[str]) -> tuple[TensorInfo]:
    """Describe the array of a ``.npy`` file from its header; its name is the file's stem.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    FileFormatError
        The file is not a ``.npy`` file, or is shorter than its header says.
    """
    file = Path(os.path.abspath(os.fspath(path)))
    _exists(file, ".npy")
    try:
        with open(file, "rb") as fp:
            shape, dtype = _read_npy_header(fp)
            offset = fp.tell()
    except _READ_ERRORS as exc:
        raise FileFormatError(f".npy file '{file}' has an unreadable header: {exc}") from None
    info = _info(file.name[: -len(_NPY_SUFFIX)], shape, dtype, file, "npy")
    _check_size(f".npy file '{file}'", info, dtype, file.stat().st_size - offset)
    return (info,)


def list_npz(path: str | os.PathLike[str]) -> tuple[TensorInfo, ...]:
    """Describe the arrays of a ``.npz`` archive from their headers, decompressing no data.

    Array names are the member names without ``.npy``, in archive order; members that are
    not ``.npy`` files are ignored, as :func:`numpy.load` ignores them for arrays.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    FileFormatError
        The archive is truncated or corrupt, holds a member name twice, or a member is
        shorter than its header says.
    """
    file = Path(os.path.abspath(os.fspath(path)))
    _exists(file, ".npz")
    infos: list[TensorInfo] = []
    seen: set[str] = set()
    member = duplicate = ""
    try:
        with zipfile.ZipFile(file) as archive:
            for zinfo in archive.infolist():
                member = zinfo.filename
                if not member.endswith(_NPY_SUFFIX):
                    continue
                if member in seen:
                    duplicate = member
                    break
                seen.add(member)
                with archive.open(zinfo) as fp:
                    shape, dtype = _read_npy_header(fp)
                    offset = fp.tell()
                info = _info(member[: -len(_NPY_SUFFIX)], shape, dtype, file, "npz")
                where = f"member '{member}' of .npz file '{file}'"
                _check_size(where, info, dtype, zinfo.file_size - offset)
                infos.append(info)
    except _READ_ERRORS as exc:
        where = f"member '{member}' of " if member else ""
        raise FileFormatError(f"{where}.npz file '{file}' is unreadable: {exc}") from None
    if duplicate:
        # numpy.load silently uses the last one, and loading by name cannot tell them apart.
        raise FileFormatError(
            f".npz file '{file}' holds member '{duplicate}' twice; an archive must name each "
            "array once"
        )
    return tuple(infos)


def _check_loaded(info: TensorInfo, array: Array) -> Array:
    if (array.shape, array.dtype.name) != (info.shape, info.dtype):
        raise FileFormatError(
            f"'{info.file}' holds array '{info.name}' as {array.dtype.name} {array.shape}, not "
            f"{info.dtype} {info.shape} as listed; the file was replaced"
        )
    return array


def _refuse_objects(info: TensorInfo) -> None:
    if info.dtype == "object":
        raise DTypeError(
            f"array '{info.name}' in '{info.file}' holds Python objects; lowrank does not "
            "load pickled data"
        )


def load_npy_tensor(info: TensorInfo) -> Array:
    """Load the array of a ``.npy`` file into memory (one read, no memory map kept open).

    Raises
    ------
    MissingFileError
        The file no longer exists.
    DTypeError
        The array holds Python objects.
    FileFormatError
        The file is corrupt or no longer matches ``info``.
    """
    _exists(info.file, ".npy")
    _refuse_objects(info)
    try:
        with open(info.file, "rb") as fp:
            array: Array = np.lib.format.read_array(fp, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise FileFormatError(f".npy file '{info.file}' could not be read: {exc}") from None
    return _check_loaded(info, array)


def load_npz_tensor(info: TensorInfo) -> Array:
    """Load one array of a ``.npz`` archive, decompressing only its member.

    Raises
    ------
    MissingFileError
        The file no longer exists.
    DTypeError
        The array holds Python objects.
    FileFormatError
        The archive is corrupt (including a CRC mismatch), lacks the member, or the member
        no longer matches ``info``.
    """
    _exists(info.file, ".npz")
    _refuse_objects(info)
    member = info.name + _NPY_SUFFIX
    try:
        with zipfile.ZipFile(info.file) as archive, archive.open(member) as fp:
            array: Array = np.lib.format.read_array(fp, allow_pickle=False)
    except KeyError:
        raise FileFormatError(
            f".npz file '{info.file}' has no member '{member}' (was it replaced after listing?)"
        ) from None
    except _READ_ERRORS as exc:
        raise FileFormatError(
            f"member '{member}' of .npz file '{info.file}' could not be read: {exc}"
        ) from None
    return _check_loaded(info, array)
