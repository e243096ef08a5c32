"""LAPACK routines of the OpenBLAS that NumPy links, called through its LAPACKE interface.

The adaptive Krylov method runs its products in NumPy's OpenBLAS. A LAPACK call through
SciPy (which links a second OpenBLAS, with its own thread pool) in between makes each pool's
idle threads spin while the other one works: with 2 threads, on a 4096 x 4096 float32
matrix at rank 64, the top 64 eigenpairs of the final 700 x 700 Gram matrix took 93 ms
through ``scipy.linalg.eigh`` against 41 ms with one thread (and 40 ms here). NumPy wraps
neither the two-stage eigenvalue driver nor the subset one, so they are looked up in the
library NumPy's own linear-algebra extension loads, by names whose integer width is
unambiguous (the PyPI wheels link an ILP64 ``scipy-openblas`` that exports
``scipy_LAPACKE_<name>64_``).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np
import scipy.linalg as sla

from lowrank._typing import Array

_COLUMN_MAJOR = 102


@functools.cache
def numpy_lapacke(name: str) -> tuple[Any, Any] | None:
    """``(function, integer type)`` of ``LAPACKE_<name>`` in NumPy's OpenBLAS, with its
    return type set, or ``None`` where that build does not export it."""
    try:
        import numpy.linalg._umath_linalg as umath_linalg

        lib = ctypes.CDLL(umath_linalg.__file__)
    except (ImportError, OSError, AttributeError):  # pragma: no cover - unusual builds
        return None
    for symbol, integer in (
        (f"scipy_LAPACKE_{name}64_", ctypes.c_int64),
        (f"scipy_LAPACKE_{name}", ctypes.c_int32),
    ):
        fn = getattr(lib, symbol, None)
        if fn is not None:
            fn.restype = integer
            return fn, integer
    return None  # pragma: no cover - other builds


@functools.lru_cache(maxsize=1)
def _dsyevr() -> tuple[Any, Any] | None:
    found = numpy_lapacke("dsyevr")
    if found is None:  # pragma: no cover - other builds
        return None
    fn, integer = found
    pointer, double = ctypes.c_void_p, ctypes.c_double
    fn.argtypes = [
        ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_char, integer, pointer, integer,
        double, double, integer, integer, double, pointer, pointer, pointer, integer, pointer,
    ]  # fmt: skip
    return fn, integer


def top_eigenpairs(gram: Array, count: int) -> tuple[Array, Array]:
    """The ``count`` largest eigenvalues (ascending) and their eigenvectors of a real
    symmetric float64 matrix, by LAPACK ``dsyevr`` (MRRR, the subset only) in NumPy's
    OpenBLAS. Complex input, builds without the routine, and a failed or non-finite result
    go to ``scipy.linalg.eigh`` (the same driver)."""
    n = gram.shape[0]
    lapacke = _dsyevr() if gram.dtype == np.float64 and 0 < count <= n else None
    if lapacke is not None:
        fn, integer = lapacke
        # dsyevr overwrites its input; symmetric, a C-ordered copy is the same matrix in
        # column-major order.
        a = np.array(gram, order="C")
        found = np.zeros(1, dtype=np.int64 if integer is ctypes.c_int64 else np.int32)
        w = np.empty(n)
        z = np.empty((n, count), order="F")
        support = np.empty(2 * count, dtype=found.dtype)
        info = fn(
            _COLUMN_MAJOR, b"V", b"I", b"L", n, a.ctypes.data, n, 0.0, 0.0, n - count + 1, n,
            0.0, found.ctypes.data, w.ctypes.data, z.ctypes.data, n, support.ctypes.data,
        )  # fmt: skip
        if info == 0 and found[0] == count and np.all(np.isfinite(w[:count])):
            return w[:count].copy(), z
    lam, vectors = sla.eigh(gram, subset_by_index=[n - count, n - 1], check_finite=False)
    return lam, vectors


@functools.lru_cache(maxsize=1)
def _dsbev() -> tuple[Any, Any] | None:
    found = numpy_lapacke("dsbev")
    if found is None:  # pragma: no cover - other builds
        return None
    fn, integer = found
    pointer = ctypes.c_void_p
    fn.argtypes = [
        ctypes.c_int, ctypes.c_char, ctypes.c_char, integer, integer, pointer, integer,
        pointer, pointer, integer,
    ]  # fmt: skip
    return fn, integer


def banded_eigenvalues(band: Array) -> Array | None:
    """Eigenvalues (ascending) of a real symmetric float64 band matrix given in LAPACK's
    lower band storage as a C-ordered ``(n, kd + 1)`` array (``[j, d]`` is entry
    ``(j + d, j)``; the same memory as the column-major ``(kd + 1, n)`` array LAPACK
    takes), by ``dsbev`` in NumPy's OpenBLAS (SciPy's ``eig_banded`` where that build does
    not export it); ``None`` when LAPACK fails or returns non-finite values."""
    n, width = band.shape
    lapacke = _dsbev()
    if lapacke is None:  # pragma: no cover - other builds
        try:
            values = sla.eig_banded(band.T, lower=True, eigvals_only=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return None
        return np.asarray(values) if np.all(np.isfinite(values)) else None
    fn, _ = lapacke
    ab = np.array(band, dtype=np.float64, order="C")  # dsbev overwrites it
    w = np.empty(n)
    unused = np.empty(1)
    info = fn(
        _COLUMN_MAJOR, b"N", b"L", n, width - 1, ab.ctypes.data, width, w.ctypes.data,
        unused.ctypes.data, 1,
    )  # fmt: skip
    if info != 0 or not np.all(np.isfinite(w)):
        return None
    return w
