"""From a path to tensors: single files, Hugging Face sharded checkpoints, directories.

``list_tensors`` accepts

* a ``.safetensors``, ``.npz`` or ``.npy`` file;
* a sharded checkpoint's index (a ``*.index.json`` whose ``weight_map`` maps tensor names
  to ``.safetensors`` shard files in the index's directory);
* a directory: if it holds exactly one ``*.safetensors.index.json``, that index; otherwise
  every ``.safetensors``, ``.npz`` and ``.npy`` file directly in it, in sorted file-name
  order (not recursive).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from lowrank._typing import Array
from lowrank._validation import check_path
from lowrank.errors import FileFormatError, InputError, MissingFileError
from lowrank.io._files import describe_mode, open_regular
from lowrank.io._info import TensorInfo
from lowrank.io._npy import list_npy, list_npz, load_npy_tensor, load_npz_tensor
from lowrank.io._safetensors import list_safetensors, load_safetensors_tensor
from lowrank.io._safetensors_header import _DuplicateKeyError, _no_duplicates

__all__ = ["list_tensors", "load_tensor", "load_tensors"]

_INDEX_SUFFIX = ".index.json"
_DIRECTORY_INDEX_GLOB = "*.safetensors.index.json"
_LOADERS: dict[str, Callable[[TensorInfo], Array]] = {
    "safetensors": load_safetensors_tensor,
    "npz": load_npz_tensor,
    "npy": load_npy_tensor,
}
_FILE_LISTERS = {".safetensors": list_safetensors, ".npz": list_npz, ".npy": list_npy}


def _leaves_directory(shard: str) -> bool:
    # Shards are files of the index's directory (or below it): an absolute name, a drive,
    # or a ".." component would let a downloaded index read any file of the machine.
    parts = shard.replace("\\", "/").split("/")
    return os.path.isabs(shard) or bool(os.path.splitdrive(shard)[0]) or ".." in parts


def _list_index(index: Path) -> tuple[TensorInfo, ...]:
    with open_regular(index, "index file") as fh:
        raw = fh.read()
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        # json keeps the last of repeated keys; a weight_map naming a tensor twice is
        # ambiguous about its shard.
        raise FileFormatError(
            f"index file '{index}' names '{exc.args[0]}' twice; each key (each tensor of "
            "the weight_map) must appear once"
        ) from None
    except RecursionError:  # json's decoder recurses once per nested array or object
        raise FileFormatError(
            f"index file '{index}' nests JSON arrays or objects too deeply to be read; it is "
            "not a sharded checkpoint's index"
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits
        raise FileFormatError(f"index file '{index}' is not valid JSON: {exc}") from None
    weight_map = parsed.get("weight_map") if isinstance(parsed, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise FileFormatError(
            f"index file '{index}' must hold a JSON object with a \"weight_map\" object "
            "mapping tensor names to shard file names"
        )
    shards: dict[str, dict[str, TensorInfo]] = {}
    infos: list[TensorInfo] = []
    for name, shard in weight_map.items():
        if shard not in shards:
            shard_path = index.parent / shard
            if not shard.endswith(".safetensors") or _leaves_directory(shard):
                raise FileFormatError(
                    f"index file '{index}' maps tensor '{name}' to '{shard}'; shards must be "
                    ".safetensors files named relative to the index's directory, inside it"
                )
            if not shard_path.exists():
                raise MissingFileError(
                    f"index file '{index}' maps tensor '{name}' to shard '{shard}', "
                    f"but '{shard_path}' does not exist"
                )
            shards[shard] = {info.name: info for info in list_safetensors(shard_path)}
        info = shards[shard].get(name)
        if info is None:
            raise FileFormatError(
                f"index file '{index}' maps tensor '{name}' to shard '{shard}', "
                "which does not hold it"
            )
        infos.append(info)
    return tuple(infos)


def _list_directory(directory: Path) -> tuple[TensorInfo, ...]:
    indexes = sorted(directory.glob(_DIRECTORY_INDEX_GLOB))
    if len(indexes) > 1:
        names = ", ".join(p.name for p in indexes)
        raise InputError(
            f"directory '{directory}' holds several index files ({names}); "
            "pass the one to read as path"
        )
    if indexes:
        return _list_index(indexes[0])
    files = sorted(p for p in directory.iterdir() if p.suffix in _FILE_LISTERS and p.is_file())
    if not files:
        raise MissingFileError(
            f"directory '{directory}' holds no .safetensors, .npz or .npy file and no index"
        )
    seen: dict[str, Path] = {}
    infos: list[TensorInfo] = []
    for file in files:
        for info in _FILE_LISTERS[file.suffix](file):
            if info.name in seen:
                raise FileFormatError(
                    f"tensor name '{info.name}' appears in both '{seen[info.name]}' and "
                    f"'{file}' of directory '{directory}'"
                )
            seen[info.name] = file
            infos.append(info)
    return tuple(infos)


def list_tensors(path: str | os.PathLike[str]) -> tuple[TensorInfo, ...]:
    """List the tensors stored at ``path`` from file headers, loading no tensor data.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors``, ``.npz`` or ``.npy`` file, a sharded checkpoint's
        ``*.index.json``, or a directory (see Notes).

    Returns
    -------
    tuple of TensorInfo
        In storage order: a file's header order, an index's ``weight_map`` order, a
        directory's files sorted by name.

    Raises
    ------
    MissingFileError
        ``path``, or a shard its index names, does not exist; or a directory holds no
        supported file.
    InputError
        ``path`` is not a non-empty ``str`` or ``os.PathLike``, has an unsupported suffix,
        is neither a regular file nor a directory (a named pipe, a device), or is a
        directory that holds several index files.
    FileFormatError
        A file is truncated or corrupt, an index is malformed, names a tensor twice,
        names a tensor its shard lacks or a shard outside its directory, an ``.npz``
        holds a member twice, or two files of a directory hold the same tensor name.
    OSError
        A file cannot be read (permissions, I/O error).

    Notes
    -----
    A directory is read through its index if it holds exactly one
    ``*.safetensors.index.json``; otherwise every ``.safetensors``, ``.npz`` and ``.npy`` file
    directly in it is read, in sorted file-name order. For an index, tensors a shard holds
    but the index does not name are ignored, as Hugging Face loaders ignore them.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from lowrank.io import list_tensors, save_safetensors
    >>> tensors = {"w": np.ones((2, 3), np.float32), "b": np.zeros(2, np.float32)}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_safetensors(Path(d) / "model.safetensors", tensors)
    ...     infos = list_tensors(Path(d) / "model.safetensors")
    >>> [(info.name, info.shape, info.dtype) for info in infos]
    [('b', (2,), 'float32'), ('w', (2, 3), 'float32')]
    """
    return _list_tensors(check_path(path, name="path"))


def _list_tensors(path: Path, *, name: str = "path") -> tuple[TensorInfo, ...]:
    """The body of :func:`list_tensors`; a missing ``path`` is reported as ``name``'s.

    The message starts "path must be an existing file or directory" whatever ``name`` is:
    that is the sentence the command line shows for a missing checkpoint.
    """
    file = Path(os.path.abspath(path))
    given = "" if name == "path" else f" as {name}"
    try:
        mode = file.stat().st_mode
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        loop = " (a symbolic link loop)" if exc.errno == errno.ELOOP else ""
        raise MissingFileError(
            f"path must be an existing file or directory; got '{file}'{given}{loop}"
        ) from None
    if stat.S_ISDIR(mode):
        return _list_directory(file)
    if not stat.S_ISREG(mode):
        # open() on a named pipe would wait for a writer forever.
        raise InputError(
            f"path must be a regular file or a directory; got '{file}'{given}, which is "
            f"{describe_mode(mode)}"
        )
    if file.name.endswith(_INDEX_SUFFIX):
        return _list_index(file)
    lister = _FILE_LISTERS.get(file.suffix)
    if lister is None:
        raise InputError(
            "path must be a .safetensors, .npz or .npy file, an *.index.json or a directory; "
            f"got '{file}'"
        )
    return lister(file)


def load_tensor(info: TensorInfo) -> Array:
    """Load one tensor, in its stored dtype and shape, from the file ``info`` names.

    Only this tensor is read, so peak memory follows the tensor, not the file. ``bfloat16``
    and float8 data come back as ``ml_dtypes`` arrays; conversion is the caller's job. Works
    in a fresh process given only ``info``.

    Parameters
    ----------
    info : TensorInfo
        From :func:`list_tensors` or :func:`select`.

    Returns
    -------
    numpy.ndarray
        A new array of shape ``info.shape`` and dtype ``info.dtype`` (a writable copy, no
        memory map of the file is kept).

    Raises
    ------
    InputError
        ``info`` is not a :class:`TensorInfo` (or its ``format`` is unknown).
    MissingFileError
        The file no longer exists.
    FileFormatError
        The file is corrupt or no longer holds the tensor as listed.
    DTypeError
        The dtype cannot be loaded into NumPy (packed 4/6-bit floats, Python objects).
    OSError
        The file cannot be read (permissions, I/O error).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from lowrank.io import list_tensors, load_tensor
    >>> with tempfile.TemporaryDirectory() as d:
    ...     np.save(Path(d) / "w.npy", np.eye(2, dtype=np.float32))
    ...     (info,) = list_tensors(Path(d) / "w.npy")
    ...     load_tensor(info)
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    check_info(info)
    loader = _LOADERS.get(info.format)
    if loader is None:
        raise InputError(
            f"info.format must be one of {', '.join(map(repr, _LOADERS))}; got {info.format!r}"
        )
    return loader(info)


def check_info(info: object, *, name: str = "info") -> TensorInfo:
    """Return ``info`` if it is a :class:`TensorInfo`, else raise :class:`InputError`."""
    if not isinstance(info, TensorInfo):
        raise InputError(f"{name} must be a TensorInfo; got {type(info).__name__}")
    return info


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Load every tensor stored at ``path`` into a dict (name → array, stored dtypes).

    Holds all tensors in memory at once; for large checkpoints iterate over
    :func:`list_tensors` and :func:`load_tensor` instead.

    Parameters
    ----------
    path : str or os.PathLike
        What :func:`list_tensors` accepts: a file, a sharded checkpoint's index or a
        directory.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor, in storage order, in its stored dtype and shape.

    Raises
    ------
    MissingFileError, InputError, FileFormatError, DTypeError
        As :func:`list_tensors` and :func:`load_tensor`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from lowrank.io import load_tensors, save_safetensors
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_safetensors(Path(d) / "m.safetensors", {"w": np.ones((2, 2), np.float32)})
    ...     load_tensors(Path(d) / "m.safetensors")
    {'w': array([[1., 1.],
           [1., 1.]], dtype=float32)}
    """
    return {info.name: load_tensor(info) for info in list_tensors(path)}
