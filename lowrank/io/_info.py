"""What a weight file says about one tensor, read from its header without loading data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

__all__ = ["FileKind", "TensorInfo"]

FileKind: TypeAlias = Literal["safetensors", "npy", "npz"]
"""The container a tensor is stored in."""


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of one stored tensor, and where to find it.

    Everything needed to load the tensor again: a ``TensorInfo`` is picklable, so a worker
    process can call :func:`lowrank.io.load_tensor` or :func:`lowrank.io.load_matrix` with it
    and nothing else.

    Attributes
    ----------
    name : str
        Tensor name: the safetensors key, the ``.npz`` member without ``.npy``, or the stem
        of a ``.npy`` file.
    shape : tuple of int
        Shape as stored.
    dtype : str
        NumPy / ``ml_dtypes`` name of the stored element type, e.g. ``"bfloat16"``.
    file : pathlib.Path
        Absolute path of the file holding the data (a shard for sharded checkpoints).
    nbytes : int
        Size of the stored data in bytes.
    format : {"safetensors", "npy", "npz"}
        The container format of ``file``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: Path
    nbytes: int
    format: FileKind

    def __post_init__(self) -> None:
        # A hand-built TensorInfo may carry a str path or a list shape; normalise so that
        # equality, hashing and loading behave as for listed ones.
        # (Checked first: listing a header of thousands of tensors builds thousands of these.)
        file: object = self.file  # typed as Path, but callers may pass a str
        if not isinstance(file, Path):
            object.__setattr__(self, "file", Path(self.file))
        if type(self.shape) is not tuple or not all(type(d) is int for d in self.shape):
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)
