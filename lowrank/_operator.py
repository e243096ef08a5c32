"""A uniform view of the inputs a truncated SVD accepts: dense arrays, SciPy sparse matrices
and SciPy ``LinearOperator`` objects, validated once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowrank._numerics import frobenius_norm, scaled_sum_of_squares
from lowrank._typing import Array
from lowrank._validation import as_matrix, check_finite_array, compute_dtype
from lowrank.errors import InputError, NonFiniteError, ShapeError

__all__ = [
    "MatrixInput",
    "as_matrix_input",
    "is_operator_like",
    "refuse_norm_overflow",
    "safe_scale",
    "scaled_input",
]

# Columns of the identity applied at once when the Frobenius norm of a LinearOperator is
# computed exactly.
_IDENTITY_BLOCK = 256


def _is_sparse(A: object) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a hard dependency
        return False
    return bool(sp.issparse(A))


def _is_linear_operator(A: object) -> bool:
    from scipy.sparse.linalg import LinearOperator

    return isinstance(A, LinearOperator)


def is_operator_like(A: object) -> bool:
    """True for SciPy sparse matrices and ``LinearOperator`` objects."""
    return _is_sparse(A) or _is_linear_operator(A)


@dataclass(frozen=True, eq=False)
class MatrixInput:
    """A validated matrix: ``dense`` is set for arrays, ``operator`` for the others."""

    kind: str  # "dense", "sparse" or "operator"
    shape: tuple[int, int]
    dtype: np.dtype[Any]
    dense: Array | None
    operator: Any
    norm_fro: float | None

    def matmat(self, X: Array) -> Array:
        """``A @ X``."""
        if self.dense is not None:
            return _dense_matmat(self.dense, X)
        if self.kind == "sparse":
            return np.asarray(self.operator @ X, dtype=self.dtype)
        return _finite_product(self.operator.matmat(X), self.dtype, "A @ X")

    def rmatmat(self, Y: Array) -> Array:
        """``A^H @ Y``.

        For a dense ``A`` computed as :math:`(Y^H A)^H`: conjugating the small operand avoids
        a copy of ``A``, and OpenBLAS runs this layout (a row-major ``A`` streamed once) up
        to twice as fast as ``A.T @ Y`` for blocks of a few dozen columns (measured at
        4096 x 4096 float32: 9 ms against 22 ms for 16 columns, 20 against 31 for 64).
        """
        if self.dense is not None:
            if self.dtype.kind == "c":
                out: Array = (Y.conj().T @ self.dense).conj().T
                return out
            product: Array = (Y.T @ self.dense).T
            return product
        if self.kind == "sparse":
            return np.asarray(self.operator.conj().T @ Y, dtype=self.dtype)
        return _finite_product(self.operator.rmatmat(Y), self.dtype, "A^H @ Y")

    def frobenius_norm(self) -> float:
        """``||A||_F``: stored, or computed exactly for a LinearOperator (``n`` products)."""
        if self.norm_fro is not None:
            return self.norm_fro
        n = self.shape[1]
        scale_ssq: list[tuple[float, float]] = []
        for start in range(0, n, _IDENTITY_BLOCK):
            stop = min(n, start + _IDENTITY_BLOCK)
            eye = np.zeros((n, stop - start), dtype=self.dtype)
            eye[np.arange(start, stop), np.arange(stop - start)] = 1
            scale_ssq.append(scaled_sum_of_squares(self.matmat(eye)))
        top = max(s for s, _ in scale_ssq)
        total = sum(q * (s / top) ** 2 for s, q in scale_ssq)
        return top * math.sqrt(total)


# Iterative methods square singular values in float64 (Gram matrices of blocks and of the
# projection) and multiply in the compute dtype: a matrix whose Frobenius norm lies outside
# these powers of two is scaled first (see safe_scale). Inside them, sigma_1**2 times a
# dimension stays far from overflow and underflow in float64 (2**+-600), and products in
# float32 stay far from its range (2**+-126) for every singular value down to eps32 sigma_1.
_SAFE_NORM_EXPONENT = {np.dtype(np.float64): 300, np.dtype(np.float32): 60}


def safe_scale(mat: MatrixInput, *, strict: bool = False) -> float:
    """A power of two ``c`` with ``c * ||A||_F`` near 1 when the norm is outside the range in
    which the iterative methods' squares and products neither overflow nor underflow;
    1.0 inside it (the common case: nothing is copied) and for the zero matrix.

    ``strict``: whenever the norm is not within a factor 16 of 1, for solvers whose
    tolerances are absolute (SciPy's LOBPCG refuses to converge on a well-conditioned
    matrix scaled by 1e-30).
    """
    norm = mat.frobenius_norm()
    limit = 4 if strict else _SAFE_NORM_EXPONENT.get(np.dtype(np.finfo(mat.dtype).dtype), 60)
    if norm == 0.0 or not math.isfinite(norm):
        return 1.0
    exponent = math.frexp(norm)[1]
    if -limit <= exponent <= limit:
        return 1.0
    # 2**1000 at most: the reciprocal of a subnormal norm's power of two would overflow.
    return math.ldexp(1.0, min(-exponent, 1000))


def scaled_input(mat: MatrixInput, factor: float) -> MatrixInput:
    """``factor * A`` for a power of two ``factor`` (exact, barring underflow of entries
    below ``eps * ||A||_F`` that change nothing at that precision): dense and sparse data
    are scaled in a copy, an operator's products after it returns them."""
    norm = None if mat.norm_fro is None else mat.norm_fro * factor
    if mat.dense is not None:
        dense = mat.dense * mat.dtype.type(factor)
        return MatrixInput("dense", mat.shape, mat.dtype, dense, None, norm)
    if mat.kind == "sparse":
        return MatrixInput("sparse", mat.shape, mat.dtype, None, mat.operator * factor, norm)
    from scipy.sparse.linalg import LinearOperator

    op = mat.operator
    dtype = mat.dtype
    scaled = LinearOperator(
        mat.shape,
        matvec=lambda x: np.asarray(op.matvec(x), dtype=dtype) * factor,
        rmatvec=lambda y: np.asarray(op.rmatvec(y), dtype=dtype) * factor,
        matmat=lambda X: np.asarray(op.matmat(X), dtype=dtype) * factor,
        rmatmat=lambda Y: np.asarray(op.rmatmat(Y), dtype=dtype) * factor,
        dtype=dtype,
    )
    return MatrixInput("operator", mat.shape, dtype, None, scaled, norm)


def _finite_product(product: Any, dtype: np.dtype[Any], what: str) -> Array:
    """A ``LinearOperator``'s product in ``dtype``, refused when it holds NaN or infinity
    (an operator is not validated up front like an array: its entries are not known)."""
    out = np.asarray(product, dtype=dtype)
    if not np.all(np.isfinite(out)):
        raise NonFiniteError(
            f"the LinearOperator A returned NaN or infinity in {what}; A must be finite"
        )
    return out


def _dense_matmat(A: Array, X: Array) -> Array:
    """``A @ X`` for a dense ``A``; a row-major ``A`` times a thin block in panels of rows.

    OpenBLAS multiplies a row-major ``A`` by a block of a few dozen columns 15-30 % faster
    in panels of 256 rows than in one call (measured with one thread, float32, 8-64
    columns: 4096 x 11008, 45 against 64 ms for 16 columns; 2048 x 2048, 9.9 against
    12.3 ms for 64), and the panels write straight into the result.
    """
    rows = A.shape[0]
    if not (
        A.flags.c_contiguous
        and X.ndim == 2
        and X.shape[1] <= _PANEL_MAX_COLUMNS
        and rows >= 2 * _PANEL_ROWS
    ):
        return A @ X
    out = np.empty((rows, X.shape[1]), dtype=np.result_type(A.dtype, X.dtype))
    for start in range(0, rows, _PANEL_ROWS):
        np.matmul(A[start : start + _PANEL_ROWS], X, out=out[start : start + _PANEL_ROWS])
    return out


# Row panels of _dense_matmat, and the widest block it splits into them.
_PANEL_ROWS = 256
_PANEL_MAX_COLUMNS = 64


# float64 entries within these magnitudes can be squared and summed (up to 2**60 of them)
# in float64 without overflow, and without underflow that matters at float64 precision.
_SAFE_MAX = 2.0**400
_SAFE_MIN = 2.0**-400
# Elements summed at a time by the fast Frobenius norm: float32 chunks are converted into
# one reused float64 buffer of this many elements (8 MiB).
_NORM_CHUNK = 1 << 20


def _dense_frobenius_norm(a: Array) -> float:
    """``||a||_F`` accumulated in float64, in one pass where that is safe; it is not finite
    exactly when an entry is NaN or infinite, or the norm exceeds the float64 range (so
    it doubles as the finiteness check of :func:`as_matrix_input`).

    Single-precision squares neither overflow nor underflow in float64, so they are summed
    directly, chunk by chunk; double-precision data is summed directly when its largest
    magnitude is moderate. Otherwise (and for non-contiguous arrays) the scaled two-pass
    :func:`lowrank._numerics.frobenius_norm`. About ten times faster than the latter on a
    contiguous float32 matrix.
    """
    if not a.flags.c_contiguous and not a.flags.f_contiguous:
        return frobenius_norm(a)
    x = a.ravel(order="K")  # a view: the array is contiguous
    if x.dtype.kind == "c":
        x = x.view(np.finfo(x.dtype).dtype)
    if x.dtype not in (np.float32, np.float64) or x.size == 0:
        return frobenius_norm(a)
    total = 0.0
    if x.dtype == np.float64:
        # max and min: no full-size |x| temporary, and NaN or infinity shows in them.
        peak = max(float(np.max(x)), -float(np.min(x)))
        if not math.isfinite(peak):
            return math.inf if peak > 0 else math.nan
        if not (peak == 0.0 or _SAFE_MIN <= peak <= _SAFE_MAX):
            return frobenius_norm(a)
        for start in range(0, x.size, _NORM_CHUNK):
            chunk = x[start : start + _NORM_CHUNK]
            total += float(np.sum(chunk * chunk))  # pairwise summation: error ~ eps log(n)
        return math.sqrt(total)
    # Single precision: chunks converted into one reused buffer, each summed by BLAS ddot,
    # in a quarter of the time of new arrays and their squares, and half that of chunks of
    # 2**18 (1.35 against 2.44 ms at 2048 x 2048, 5.3 against 10.1 ms at 4096 x 4096, 2
    # threads, where each ddot call wakes the threads). A chunk's ddot is off by at most
    # 2**20 eps64 (1e-10) relative, far below the float32 rounding of the data. (BLAS dsdot,
    # float32 data summed in float64, would be faster, but OpenBLAS rounds its products to
    # float32: errors up to 3e-8 relative, measured.)
    buffer = np.empty(min(_NORM_CHUNK, x.size))
    for start in range(0, x.size, _NORM_CHUNK):
        chunk = x[start : start + _NORM_CHUNK]
        converted = buffer[: chunk.size]
        converted[...] = chunk
        total += float(np.dot(converted, converted))
    return math.sqrt(total)


def _check_shape(shape: tuple[int, ...], name: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise ShapeError(f"{name} must be a 2-D matrix; got shape {shape}")
    m, n = int(shape[0]), int(shape[1])
    if m == 0 or n == 0:
        raise ShapeError(f"{name} must not be empty; got shape {shape}")
    return m, n


def dense_input(a: Array) -> MatrixInput:
    """A dense matrix that its caller has validated already (2-D, finite, compute dtype)."""
    m, n = a.shape
    return MatrixInput("dense", (m, n), a.dtype, a, None, _dense_frobenius_norm(a))


def as_matrix_input(A: Any, *, name: str = "A", norm_fro: float | None = None) -> MatrixInput:
    """Validate ``A`` (array-like, sparse matrix or ``LinearOperator``) once.

    Dense inputs are converted to their compute dtype (see
    :func:`lowrank._validation.compute_dtype`), sparse ones too; a ``LinearOperator`` is
    trusted to produce finite values, must have an ``rmatvec`` (asked once, with a zero
    vector), and its Frobenius norm is computed lazily.
    """
    if _is_sparse(A):
        shape = _check_shape(tuple(A.shape), name)
        dtype = compute_dtype(A.dtype, name=name)
        csr = A.tocsr().astype(dtype)
        csr.sum_duplicates()
        check_finite_array(csr.data, name=name)
        norm = frobenius_norm(csr.data)
        refuse_norm_overflow(norm, name)
        return MatrixInput("sparse", shape, dtype, None, csr, norm)
    if _is_linear_operator(A):
        shape = _check_shape(tuple(A.shape), name)
        dtype = compute_dtype(A.dtype, name=name)
        if norm_fro is not None and not (math.isfinite(norm_fro) and norm_fro >= 0):
            raise InputError(f"norm_fro must be finite and >= 0; got {norm_fro!r}")
        _refuse_without_adjoint(A, shape, dtype, name)
        return MatrixInput("operator", shape, dtype, None, A, norm_fro)
    dense = as_matrix(A, name=name, check_finite=False)
    if not (dense.flags.c_contiguous or dense.flags.f_contiguous):
        check_finite_array(dense, name=name)
    # For contiguous data the norm is the finiteness check: it is not finite exactly when
    # an entry is NaN or infinite (the error then names how many), or the entries are
    # finite but their norm exceeds the float64 range.
    norm = _dense_frobenius_norm(dense)
    if not math.isfinite(norm):
        check_finite_array(dense, name=name)
        refuse_norm_overflow(norm, name)
    m, n = dense.shape
    return MatrixInput("dense", (m, n), dense.dtype, dense, None, norm)


def _refuse_without_adjoint(
    A: Any, shape: tuple[int, int], dtype: np.dtype[Any], name: str
) -> None:
    """Every method multiplies by A^H: an operator built from ``matvec`` alone failed deep
    inside each of them with a raw TypeError, NotImplementedError or SystemError. SciPy
    raises those two from ``rmatvec`` of an operator without one; a product with a zero
    vector is the cheapest way to ask."""
    try:
        A.rmatvec(np.zeros(shape[0], dtype=dtype))
    except (NotImplementedError, TypeError) as exc:
        raise InputError(
            f"{name} is a LinearOperator without products by its conjugate transpose "
            f"({type(exc).__name__}: {exc}); every method needs A^H y as well as A x: give "
            f"LinearOperator an rmatvec (and rmatmat for speed)"
        ) from None


def refuse_norm_overflow(norm: float, name: str) -> None:
    """Finite entries whose Frobenius norm exceeds the float64 range: sigma_1 may too, and
    no result could state its norms and residuals (they were NaN or inf, or LAPACK failed
    with a raw error)."""
    if not math.isfinite(norm):
        raise InputError(
            f"{name} has finite entries, but its Frobenius norm exceeds the float64 range "
            f"(about 1.8e308); divide it by a power of two first"
        )
