"""All singular values: LAPACK, or the eigenvalues of a float64 Gram matrix."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import power_of_two_scale
from lowrank._typing import Array
from lowrank._validation import (
    as_matrix,
    check_choice,
)
from lowrank.errors import ConvergenceError, InputError
from lowrank.svd._numpy_lapack import routine

_GRAM_BLOCK_ELEMENTS = 1 << 25
# The two-stage eigensolver is used from this order on (see _symmetric_eigenvalues).
_TWO_STAGE_MIN = 2048


def _two_stage_eigvalsh() -> Any:
    """LAPACK's two-stage symmetric eigenvalue driver ``dsyev_2stage`` (values only), from
    the OpenBLAS that NumPy links (:func:`~lowrank.svd._numpy_lapack.routine`; neither
    NumPy nor SciPy wraps it), or ``None`` where it is not exported."""
    found = routine("dsyev_2stage")
    return None if found is None else found[0]


def _symmetric_eigenvalues(gram: Array) -> Array:
    r"""Eigenvalues of a real symmetric float64 matrix, ascending; ``gram`` is overwritten.

    LAPACK's two-stage reduction (dense to band by blocked Householder, then band to
    tridiagonal, Haidar, Ltaief & Dongarra 2011) where available: about 1.5x faster than
    NumPy's ``syevd`` for the values of a 4096 x 4096 matrix on 2 cores (4.0 s against 6.1 s).
    Below 2048 it is the slower one (one thread: 0.17 s against 0.12 s at 1024, 0.44 against
    0.37 at 1536; 1.04 against 1.10 at 2048, 3.0 against 4.9 at 3072), so it is used from there.
    Its result is checked (``info``, finiteness, the trace); otherwise
    :func:`numpy.linalg.eigvalsh`.
    """
    n = gram.shape[0]
    fn = _two_stage_eigvalsh() if gram.dtype == np.float64 and n >= _TWO_STAGE_MIN else None
    if fn is not None:
        trace = float(np.trace(gram))
        # A symmetric matrix is its own transpose: a C-ordered buffer is the same matrix in
        # column-major order, so only a non-contiguous one needs a copy (0.4 s at 4096).
        a = gram if gram.flags.c_contiguous else np.asfortranarray(gram)
        w = np.empty(n)
        info = fn(102, b"N", b"L", n, a.ctypes.data, n, w.ctypes.data)
        total = float(np.sum(w))
        scale = float(np.sum(np.abs(w))) + abs(trace)
        if (
            info == 0
            and np.all(np.isfinite(w))
            and abs(total - trace) <= 1e-10 * max(scale, 1e-300)
        ):
            return np.sort(w)
    values: Array = np.linalg.eigvalsh(gram)
    return values


def _peak(a: Array) -> float:
    """``max |a_ij|`` (the modulus for complex data), without an ``|a|`` copy when real."""
    if a.dtype.kind == "c":
        return float(np.max(np.abs(a)))
    return max(float(np.max(a)), -float(np.min(a)))


def _lapack_unit(a: Array) -> float:
    """A power of two to divide ``a`` by before LAPACK, 1.0 when none is needed.

    ``gesdd``/``gesvd`` scale a matrix whose largest magnitude lies outside
    ``[smlnum, 1/smlnum]``, ``smlnum = sqrt(safe minimum) / eps`` (6.7e-139 to 1.5e138 in
    double, 9.1e-13 to 1.1e12 in single precision), by a ratio that is not a power of two,
    so the values of ``2**k A`` were not exactly ``2**k`` times those of ``A`` (which
    :mod:`lowrank.rmt` promises bit for bit). Within that range LAPACK does not scale, and
    floating-point arithmetic commutes with powers of two.
    """
    info = np.finfo(a.dtype)
    smallest = math.sqrt(float(info.tiny)) / float(info.eps)
    peak = _peak(a)
    if peak == 0.0 or smallest <= peak <= 1.0 / smallest:
        return 1.0
    return power_of_two_scale(peak)


def _lapack_singular_values(a: Array) -> Array:
    """All singular values by LAPACK ``gesdd``, ``gesvd`` when it does not converge,
    after an exact scaling into the range where LAPACK does not scale itself."""
    unit = _lapack_unit(a)
    if unit != 1.0:
        a = a / a.dtype.type(unit)  # not times 1/unit, which overflows for subnormal data
    try:
        found = sla.svd(a, compute_uv=False, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:
        try:
            found = sla.svd(a, compute_uv=False, lapack_driver="gesvd", check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise ConvergenceError(
                f"LAPACK failed to converge on a {a.shape} matrix: {exc}"
            ) from None
    with np.errstate(over="ignore"):  # sigma_1 beyond float64 is refused by the caller
        values: Array = np.asarray(found, dtype=np.float64) * unit
    return values


def _gram_singular_values(a: Array) -> Array:
    """All singular values from the eigenvalues of the Gram matrix accumulated in float64."""
    if a.shape[0] < a.shape[1]:
        a = a.T
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    n = a.shape[1]
    rows = max(1, _GRAM_BLOCK_ELEMENTS // n)
    # Single-precision squares cannot overflow or underflow in double precision; double
    # precision data is divided by a power of two near its largest magnitude (exact), so
    # that 1e160 does not overflow the Gram matrix nor 1e-170 vanish in it.
    unit = power_of_two_scale(_peak(a)) if a.dtype == wide and a.size else 1.0

    def rows_from(start: int) -> Array:
        block = a[start : start + rows].astype(wide)
        if unit != 1.0:
            block /= unit  # not times 1/unit, which overflows for subnormal data
        return block

    block = rows_from(0)
    gram: Array = block.conj().T @ block  # BLAS syrk: NumPy spots a product with a transpose
    for start in range(rows, a.shape[0], rows):
        block = rows_from(start)
        gram += block.conj().T @ block
    evals = _symmetric_eigenvalues(gram) if wide == np.float64 else np.linalg.eigvalsh(gram)
    values: Array = np.sqrt(np.clip(evals[::-1], 0.0, None)) * unit
    return values


def singular_values(A: Any, *, method: Literal["auto", "lapack", "gram"] = "auto") -> Array:
    r"""All singular values of ``A``, descending, in float64.

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix (dense; sparse input is densified).
    method : {"auto", "lapack", "gram"}, default "auto"
        ``"lapack"``: LAPACK values-only SVD in the compute dtype of ``A``. ``"gram"``: the
        square roots of the eigenvalues of :math:`G = A^H A` (the smaller side), with
        :math:`G` accumulated in float64 block by block. ``"auto"`` uses ``"gram"`` for
        single- and lower-precision input and ``"lapack"`` for double precision.

    Returns
    -------
    ndarray, shape (min(m, n),)
        float64 singular values, descending.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
        ``A`` is not a non-empty 2-D matrix of finite numbers.
    InputError
        A bad ``method``, a ``LinearOperator`` (which has no entries: use
        :func:`lowrank.truncated_svd`), or a masked array with masked entries.
    ConvergenceError
        LAPACK did not converge.

    Notes
    -----
    The Gram route forms :math:`G = A^H A` (the smaller side) in float64 — a BLAS ``syrk`` on
    the matrix converted 256 MiB at a time — and takes its eigenvalues with LAPACK's
    two-stage driver ``dsyev_2stage`` when the OpenBLAS NumPy links exposes it (the PyPI
    wheels do; otherwise ``numpy.linalg.eigvalsh``). For a 4096 x 4096 float32 matrix on 2
    cores that is about 3.0 s against 6.0-6.4 s for ``scipy.linalg.svdvals``: the syrk
    (0.74 s) and the two-stage eigenvalues, within 2 % of those two calls alone
    (``benchmarks/RESULTS.md``).

    It is also the more accurate route for single-precision data: float64 eigenvalues
    carry an absolute error of about :math:`\varepsilon_{64}\sqrt{n}\,\sigma_1^2`, so
    :math:`\sigma_i` is off by about :math:`\varepsilon_{64}\sqrt{n}\,\sigma_1^2/\sigma_i` — below a
    float32 LAPACK's :math:`\varepsilon_{32}\sigma_1` for every
    :math:`\sigma_i \gtrsim 10^{-6}\sigma_1` — and the tail sums of a rank–error curve are
    accurate to :math:`\varepsilon_{64}\sqrt{n}\,\|A\|_F^2`. Values below
    :math:`\sqrt{\varepsilon_{64}}\,\sigma_1 \approx 10^{-8}\sigma_1` are lost (they come out
    as rounding noise, clipped at zero). That is why ``"auto"`` keeps LAPACK for float64
    input, whose small singular values the Gram route would not resolve, and uses the Gram
    route for float32, float16, bfloat16 and complex64.

    References
    ----------
    .. [1] A. Haidar, H. Ltaief and J. Dongarra, "Parallel reduction to condensed forms for
       symmetric eigenvalue problems using aggregated fine-grained and memory-aware
       kernels", SC 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank import singular_values
    >>> singular_values(np.diag([1.0, 3.0]))
    array([3., 1.])
    """
    check_choice(method, name="method", choices=("auto", "lapack", "gram"))
    from lowrank._operator import is_operator_like

    if is_operator_like(A):
        if not hasattr(A, "toarray"):
            raise InputError(
                f"singular_values needs the entries of A; got a {type(A).__name__}, which "
                "gives only products: use truncated_svd(A, rank) for its leading values, or "
                "densify it first (A @ numpy.eye(n))"
            )
        A = A.toarray()
    a = as_matrix(A)
    if method == "auto":
        method = "lapack" if a.dtype in (np.float64, np.complex128) else "gram"
    found = _gram_singular_values(a) if method == "gram" else _lapack_singular_values(a)
    values = np.asarray(found, dtype=np.float64)
    if values.size and not np.isfinite(values[0]):
        # Finite entries, but sigma_1 beyond the float64 range (a 3 x 3 matrix of 1e308).
        raise InputError(
            "A has finite entries, but its largest singular value exceeds the float64 range "
            "(about 1.8e308); divide it by a power of two first"
        )
    return values
