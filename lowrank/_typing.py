"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "Array",
    "ArrayLike",
    "FloatArray",
    "NormName",
    "RNGLike",
    "SVDMethod",
]

Array: TypeAlias = npt.NDArray[Any]
"""Any NumPy array."""

FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
"""A real floating-point array."""

ArrayLike: TypeAlias = npt.ArrayLike
"""Anything :func:`numpy.asarray` accepts."""

RNGLike: TypeAlias = "int | np.random.Generator | np.random.SeedSequence | None"
"""Seed or generator; normalised once with :func:`numpy.random.default_rng`."""

SVDMethod: TypeAlias = Literal["auto", "exact", "randomized", "arpack", "propack", "lobpcg"]
"""The truncated-SVD methods of :func:`lowrank.truncated_svd`."""

NormName: TypeAlias = Literal["fro", "spectral", "nuclear", "schatten", "ky_fan"]
"""Unitarily invariant norms known to :mod:`lowrank.approx` and :mod:`lowrank.curves`."""
