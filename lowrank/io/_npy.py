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
from lowrank.errors import DTypeError, FileFormatError
from lowrank.io._files import open_regular
from lowrank.io._info import TensorInfo

__all__ = ["list_npy", "list_npz", "load_npy_tensor", "load_npz_tensor"]

_NPY_SUFFIX = ".npy"
# Errors NumPy's format reader and zipfile raise for malformed or truncated input;
# zipfile raises NotImplementedError for a compression method it lacks and RuntimeError for
# an encrypted member.
_READ_ERRORS = (
    ValueError,
    SyntaxError,
    EOFError,
    OSError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)
# Deflate expands at most 1032-fold (258-byte matches coded in 2 bits); with room for the
# stream's own headers.
_MAX_DEFLATE_RATIO = 1032
_DEFLATE_SLACK = 1024
# Member data are read in chunks of this size (see _read_member_data).
_CHUNK = 1 << 24


def _read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype from the ``.npy`` header at the start of ``fp``."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        # 3.0 differs from 2.0 only in allowing UTF-8 field names of structured dtypes.
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return tuple(int(d) for d in shape), bool(fortran), dtype


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


def _check_member_size(where: str, zinfo: zipfile.ZipInfo, archive_size: int) -> None:
    # The central directory's sizes are what the archive claims; a member cannot hold more
    # compressed bytes than the archive, nor expand beyond what its method allows.
    claimed, packed = zinfo.file_size, zinfo.compress_size
    if zinfo.flag_bits & 0x1:  # encrypted: zipfile refuses to open it, with its own message
        return
    if packed > archive_size:
        raise FileFormatError(
            f"{where} claims {packed} compressed bytes, more than the {archive_size} bytes "
            "of the whole archive; the archive is corrupt"
        )
    if zinfo.compress_type == zipfile.ZIP_STORED and claimed != packed:
        raise FileFormatError(
            f"{where} is stored uncompressed, but claims {claimed} bytes in {packed} stored "
            "bytes; the archive is corrupt"
        )
    if (
        zinfo.compress_type == zipfile.ZIP_DEFLATED
        and claimed > packed * _MAX_DEFLATE_RATIO + _DEFLATE_SLACK
    ):
        raise FileFormatError(
            f"{where} claims {claimed} bytes, but its {packed} deflated bytes cannot expand "
            f"to more than {packed * _MAX_DEFLATE_RATIO + _DEFLATE_SLACK}; the archive is "
            "corrupt"
        )


def _read_member_data(
    fp: IO[bytes], info: TensorInfo, dtype: np.dtype[Any], fortran: bool
) -> Array:
    """The array ``info`` describes, read from ``fp`` (positioned after the ``.npy`` header).

    ``numpy.lib.format.read_array`` allocates the whole array before reading a stream, so a
    member whose header lies about its shape (and whose archive lies about its size) makes
    it allocate whatever the header says. Here the buffer grows with the data actually
    decompressed, and the array is a view of it (no second copy).
    """
    buffer = bytearray()
    while len(buffer) < info.nbytes:
        chunk = fp.read(min(_CHUNK, info.nbytes - len(buffer)))
        if not chunk:
            raise FileFormatError(
                f"member '{info.name}{_NPY_SUFFIX}' of .npz file '{info.file}' is truncated: "
                f"its header promises {info.nbytes} bytes of {info.dtype} data of shape "
                f"{info.shape}, but only {len(buffer)} bytes follow the header"
            )
        buffer += chunk
    flat = np.frombuffer(buffer, dtype=dtype, count=math.prod(info.shape))
    return flat.reshape(info.shape, order="F" if fortran else "C")


def list_npy(path: str | os.PathLike[str]) -> tuple[TensorInfo]:
    """Describe the array of a ``.npy`` file from its header; its name is the file's stem.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    InputError
        ``path`` is not a regular file (a directory, a named pipe, a device).
    FileFormatError
        The file is not a ``.npy`` file, or is shorter than its header says.
    """
    file = Path(os.path.abspath(os.fspath(path)))
    with open_regular(file, ".npy file") as fp:
        try:
            shape, _, dtype = _read_npy_header(fp)
        except _READ_ERRORS as exc:
            raise FileFormatError(f".npy file '{file}' has an unreadable header: {exc}") from None
        offset = fp.tell()
        size = os.fstat(fp.fileno()).st_size
    info = _info(file.name[: -len(_NPY_SUFFIX)], shape, dtype, file, "npy")
    _check_size(f".npy file '{file}'", info, dtype, size - offset)
    return (info,)


def list_npz(path: str | os.PathLike[str]) -> tuple[TensorInfo, ...]:
    """Describe the arrays of a ``.npz`` archive from their headers, decompressing no data.

    Array names are the member names without ``.npy``, in archive order; members that are
    not ``.npy`` files are ignored, as :func:`numpy.load` ignores them for arrays.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    InputError
        ``path`` is not a regular file (a directory, a named pipe, a device).
    FileFormatError
        The archive is truncated or corrupt, encrypted or compressed by a method Python
        cannot read, holds a member name twice, or a member is shorter than its header
        says (or claims a size its compressed data cannot hold).
    """
    file = Path(os.path.abspath(os.fspath(path)))
    infos: list[TensorInfo] = []
    seen: set[str] = set()
    member = duplicate = ""
    with open_regular(file, ".npz file") as handle:
        archive_size = os.fstat(handle.fileno()).st_size
        try:
            with zipfile.ZipFile(handle) as archive:
                for zinfo in archive.infolist():
                    member = zinfo.filename
                    if not member.endswith(_NPY_SUFFIX):
                        continue
                    if member in seen:
                        duplicate = member
                        break
                    seen.add(member)
                    where = f"member '{member}' of .npz file '{file}'"
                    _check_member_size(where, zinfo, archive_size)
                    with archive.open(zinfo) as fp:
                        shape, _, dtype = _read_npy_header(fp)
                        offset = fp.tell()
                    info = _info(member[: -len(_NPY_SUFFIX)], shape, dtype, file, "npz")
                    _check_size(where, info, dtype, zinfo.file_size - offset)
                    infos.append(info)
        except FileFormatError:
            raise
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


def _check_header(info: TensorInfo, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    # Checked before any data are read, so that a replaced file's header cannot make the
    # reader allocate what it says.
    if (shape, dtype.name) != (info.shape, info.dtype):
        raise FileFormatError(
            f"'{info.file}' holds array '{info.name}' as {dtype.name} {shape}, not "
            f"{info.dtype} {info.shape} as listed; the file was replaced"
        )


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
    InputError
        The path is no longer a regular file.
    DTypeError
        The array holds Python objects.
    FileFormatError
        The file is corrupt or no longer matches ``info``.
    """
    with open_regular(info.file, ".npy file") as fp:
        _refuse_objects(info)
        try:
            shape, _, dtype = _read_npy_header(fp)
            _check_header(info, shape, dtype)
            available = os.fstat(fp.fileno()).st_size - fp.tell()
            _check_size(f".npy file '{info.file}'", info, dtype, available)
            fp.seek(0)
            array: Array = np.lib.format.read_array(fp, allow_pickle=False)
        except FileFormatError:
            raise
        except _READ_ERRORS as exc:
            raise FileFormatError(f".npy file '{info.file}' could not be read: {exc}") from None
    return _check_loaded(info, array)


def load_npz_tensor(info: TensorInfo) -> Array:
    """Load one array of a ``.npz`` archive, decompressing only its member.

    Memory: the array's buffer grows with the data decompressed, so a member that lies
    about its size cannot make the reader allocate what it claims.

    Raises
    ------
    MissingFileError
        The file no longer exists.
    InputError
        The path is no longer a regular file.
    DTypeError
        The array holds Python objects.
    FileFormatError
        The archive is corrupt (including a CRC mismatch), lacks the member, or the member
        no longer matches ``info``.
    """
    member = info.name + _NPY_SUFFIX
    with open_regular(info.file, ".npz file") as handle:
        _refuse_objects(info)
        archive_size = os.fstat(handle.fileno()).st_size
        try:
            with zipfile.ZipFile(handle) as archive:
                zinfo = archive.getinfo(member)
                where = f"member '{member}' of .npz file '{info.file}'"
                _check_member_size(where, zinfo, archive_size)
                with archive.open(zinfo) as fp:
                    shape, fortran, dtype = _read_npy_header(fp)
                    _check_header(info, shape, dtype)
                    _check_size(where, info, dtype, zinfo.file_size - fp.tell())
                    array = _read_member_data(fp, info, dtype, fortran)
        except KeyError:
            raise FileFormatError(
                f".npz file '{info.file}' has no member '{member}' (was it replaced after listing?)"
            ) from None
        except FileFormatError:
            raise
        except _READ_ERRORS as exc:
            raise FileFormatError(
                f"member '{member}' of .npz file '{info.file}' could not be read: {exc}"
            ) from None
    return _check_loaded(info, array)
