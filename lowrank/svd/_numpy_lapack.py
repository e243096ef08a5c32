"""LAPACK routines of the OpenBLAS that NumPy links, called through its LAPACKE interface.

The adaptive Krylov method runs its products in NumPy's OpenBLAS. A LAPACK call through
SciPy (which links a second OpenBLAS, with its own thread pool) in between makes each pool's
idle threads spin while the other one works: with 2 threads, on a 4096 x 4096 float32
matrix at rank 64, the top 64 eigenpairs of the final 700 x 700 Gram matrix took 93 ms
through ``scipy.linalg.eigh`` against 41 ms with one thread (and 40 ms here). NumPy wraps
neither the tridiagonal reduction and its parts nor the band eigensolver, so they are looked
up in the library NumPy's own linear-algebra extension loads, by names whose integer width
is unambiguous (the PyPI wheels link an ILP64 ``scipy-openblas`` that exports
``scipy_LAPACKE_<name>64_``).
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
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


def _bind(name: str, *args: Any) -> tuple[Any, Any] | None:
    """``LAPACKE_<name>`` with its argument types: ``args`` entries are ctypes types, or
    ``int`` for the build's integer type."""
    found = numpy_lapacke(name)
    if found is None:  # pragma: no cover - other builds
        return None
    fn, integer = found
    fn.argtypes = [integer if a is int else a for a in args]
    return fn, integer


_P, _C = ctypes.c_void_p, ctypes.c_char


@functools.cache
def routine(name: str) -> tuple[Any, Any] | None:
    """``(function, integer type)`` of ``LAPACKE_<name>`` in NumPy's OpenBLAS with its argument
    types set (for the routines this module and :mod:`lowrank.svd._values` call), or
    ``None`` where that build does not export it."""
    signatures: dict[str, tuple[Any, ...]] = {
        "dsytrd": (ctypes.c_int, _C, int, _P, int, _P, _P, _P),
        "dsterf": (int, _P, _P),
        "dstedc": (ctypes.c_int, _C, int, _P, _P, _P, int),
        "dormtr": (ctypes.c_int, _C, _C, _C, int, int, _P, int, _P, _P, int),
        "dsbev": (ctypes.c_int, _C, _C, int, int, _P, int, _P, _P, int),
        "dsyev_2stage": (ctypes.c_int, _C, _C, int, _P, int, _P),
    }
    return _bind(name, *signatures[name])


@dataclass(frozen=True, eq=False)
class Tridiagonal:
    r"""A real symmetric matrix reduced by LAPACK ``dsytrd`` (lower): :math:`G = HTH^T`.

    ``reflectors`` holds the Householder vectors of :math:`H` below the subdiagonal (the
    reduced matrix, C-ordered: LAPACK reads it as the column-major transpose, the same
    symmetric matrix), ``tau`` their scalars, and ``diagonal`` and ``offdiagonal`` the
    tridiagonal :math:`T`. The reduction is done once for both the eigenvalues and the top
    eigenvectors, which LAPACK's drivers would each redo: at 1184 x 1184, the values and
    the top 256 pairs took 161 ms (``dsytrd`` 68, ``dstedc`` 68, ``dormtr`` 22) against 275
    ms by ``syevd`` (values) then ``syevr`` (pairs; for a subset it runs bisection and
    inverse iteration), one thread.
    """

    reflectors: Array
    tau: Array
    diagonal: Array
    offdiagonal: Array

    def eigenvalues(self) -> Array | None:
        """All eigenvalues, ascending (``dsterf``); ``None`` when LAPACK fails."""
        found = routine("dsterf")
        if found is None:  # pragma: no cover - other builds
            return None
        fn, _ = found
        d, e = self.diagonal.copy(), self.offdiagonal.copy()
        info = fn(d.size, d.ctypes.data, e.ctypes.data)
        return d if info == 0 and np.all(np.isfinite(d)) else None

    def top_eigenpairs(self, count: int) -> tuple[Array, Array] | None:
        """The ``count`` largest eigenvalues (ascending) and their eigenvectors (columns):
        all eigenpairs of :math:`T` by divide and conquer (``dstedc``; as fast as MRRR
        ``dstemr`` for a quarter of them, and orthogonal to 3e-15 against its 3e-13 at
        1184), the top ones mapped back by :math:`H` (``dormtr``). ``None`` when LAPACK
        fails."""
        stedc, ormtr = routine("dstedc"), routine("dormtr")
        n = self.diagonal.size
        if stedc is None or ormtr is None or not 0 < count <= n:  # pragma: no cover
            return None
        d, e = self.diagonal.copy(), self.offdiagonal.copy()
        z = np.empty((n, n))  # C-ordered: row j is eigenvector j (column-major columns)
        info = stedc[0](_COLUMN_MAJOR, b"I", n, d.ctypes.data, e.ctypes.data, z.ctypes.data, n)
        if info != 0:
            return None
        top = np.array(z[n - count :])  # (count, n) C-ordered: column-major n x count
        info = ormtr[0](
            _COLUMN_MAJOR, b"L", b"L", b"N", n, count, self.reflectors.ctypes.data, n,
            self.tau.ctypes.data, top.ctypes.data, n,
        )  # fmt: skip
        if info != 0 or not np.all(np.isfinite(top)):
            return None
        return d[n - count :].copy(), top.T


def tridiagonalize(gram: Array) -> Tridiagonal | None:
    """:class:`Tridiagonal` of a real symmetric float64 matrix, reduced in place when it is
    C-contiguous (else a copy); ``None`` for other inputs, builds without the routine, and
    failures."""
    found = routine("dsytrd") if gram.dtype == np.float64 and gram.ndim == 2 else None
    if found is None or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        return None
    fn, _ = found
    n = gram.shape[0]
    a = gram if gram.flags.c_contiguous else np.array(gram, order="C")
    d = np.empty(n)
    e = np.zeros(max(n - 1, 1))
    tau = np.zeros(max(n - 1, 1))
    info = fn(
        _COLUMN_MAJOR, b"L", n, a.ctypes.data, n, d.ctypes.data, e.ctypes.data, tau.ctypes.data
    )
    if info != 0 or not (np.all(np.isfinite(d)) and np.all(np.isfinite(e))):
        return None
    return Tridiagonal(a, tau, d, e[: n - 1] if n > 1 else e[:0])


def banded_eigenvalues(band: Array) -> Array | None:
    """Eigenvalues (ascending) of a real symmetric float64 band matrix given in LAPACK's
    lower band storage as a C-ordered ``(n, kd + 1)`` array (``[j, d]`` is entry
    ``(j + d, j)``; the same memory as the column-major ``(kd + 1, n)`` array LAPACK
    takes), by ``dsbev`` in NumPy's OpenBLAS (SciPy's ``eig_banded`` where that build does
    not export it); ``None`` when LAPACK fails or returns non-finite values."""
    n, width = band.shape
    lapacke = routine("dsbev")
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
