r"""Truncated singular value decomposition: exact, randomized and iterative, one interface.

:func:`truncated_svd` returns the leading ``rank`` singular triplets of a matrix as a
:class:`TruncatedSVD` with fields ``U`` (m, r), ``S`` (r,) and ``Vh`` (r, n), like NumPy 2's
``SVDResult``, such that :math:`A \approx U \operatorname{diag}(S) V^H`.

Conventions shared by every method
----------------------------------
* ``S`` is real, non-negative and descending.
* **Sign rule.** In each column of ``U`` the entry of largest magnitude (the first one on
  ties) is made real and positive; the matching row of ``Vh`` is multiplied by the conjugate
  phase, so ``U diag(S) Vh`` is unchanged. For distinct singular values this makes the
  result unique, whatever the method.
* **dtypes.** float32 and complex64 stay in single precision end to end; float16, bfloat16
  and float8 are computed (and returned) in float32; integers in float64.
* **Randomness** comes only from ``rng`` (``None``, an int seed or a ``Generator``), so
  results are reproducible.

:func:`singular_values` returns all singular values (for rank–error curves), by LAPACK or by
the eigenvalues of the Gram matrix accumulated in float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import compute_eps, frobenius_norm, power_of_two_scale
from lowrank._operator import MatrixInput, as_matrix_input
from lowrank._typing import Array, RNGLike, SVDMethod
from lowrank._validation import (
    as_matrix,
    check_choice,
    check_int,
    check_positive_float,
    check_rank,
    normalize_rng,
)
from lowrank.errors import ConvergenceError, InputError

__all__ = [
    "DEFAULT_TOL_EPS",
    "FAST_TOL",
    "SVD_METHODS",
    "TruncatedSVD",
    "auto_method",
    "default_block_size",
    "default_tol",
    "fix_signs",
    "singular_values",
    "truncated_svd",
]

SVD_METHODS: tuple[str, ...] = ("auto", "exact", "randomized", "arpack", "propack", "lobpcg")

# Matrices whose smaller side is at most this are decomposed densely by method="auto".
AUTO_DENSE_MAX_SIDE = 256
# method="auto" also goes dense when rank exceeds this fraction of the smaller side.
AUTO_DENSE_RANK_FRACTION = 0.25


@dataclass(frozen=True, eq=False)
class TruncatedSVD:
    r"""The leading singular triplets of a matrix, with what is known about their error.

    Attributes
    ----------
    U : ndarray, shape (m, r)
        Left singular vectors, orthonormal columns.
    S : ndarray, shape (r,)
        Singular values, real, descending.
    Vh : ndarray, shape (r, n)
        Right singular vectors (conjugate-transposed), orthonormal rows.
    method : str
        The method that computed the result (``"auto"`` is resolved to the one it chose).
    shape : tuple of int
        ``(m, n)`` of the decomposed matrix.
    norm_fro : float
        :math:`\|A\|_F` of the decomposed matrix, accumulated in float64 without overflow.
    spectrum : ndarray
        All singular values the method computed, descending; at least ``S``. For
        ``"exact"`` this is the whole spectrum; for ``"randomized"`` the Ritz values of the
        whole sketch, each a lower bound on the true singular value of the same index.
    spectrum_complete : bool
        True when ``spectrum`` holds every singular value of ``A`` (``"exact"``).
    n_iter : int
        Power or Krylov iterations (randomized: Krylov blocks beyond the first), or 0.
    oversample : int
        Extra sketch columns beyond ``rank`` in a block (randomized:
        ``max(block_size - rank, 0)``), or 0.
    subspace_dim : int
        Columns of the space the randomized method's Rayleigh–Ritz step used (the Krylov
        space, or the last sketch), or 0.
    n_passes : int
        Products of ``A`` or :math:`A^H` with a block of vectors (randomized), or 0.
    block_size : int
        Columns per block of the randomized method, or 0.
    error_estimate : float or None
        A-posteriori estimate of :math:`\max_i |\tilde\sigma_i - \sigma_i| / \sigma_i` over the
        returned values: 0.0 for ``"exact"`` (and randomized results that spanned the whole
        space), the convergence estimate of the adaptive randomized method (see
        :func:`truncated_svd`, Notes), ``None`` where nothing is estimated (fixed
        ``n_iter``, ``svds``).
    excess_estimate : float or None
        A-posteriori estimate of the relative excess of :attr:`residual_fro` over the
        Eckart–Young–Mirsky optimum (the quantity :attr:`excess_bound` bounds rigorously but
        loosely): 0.0 for exact results, the convergence estimate of the adaptive randomized
        method, ``None`` where nothing is estimated.
    converged : bool
        False when the adaptive randomized method stopped at its limit before its estimate
        reached ``tol``; True otherwise.
    tol : float or None
        The accuracy target of the adaptive randomized method, or ``None``.
    preset : str or None
        The randomized setting used: ``"accurate"``, ``"fast"``, ``"subspace"`` (power
        iteration, ``block_krylov=False``), or ``None`` for the other methods.
    """

    U: Array
    S: Array
    Vh: Array
    method: str
    shape: tuple[int, int]
    norm_fro: float
    spectrum: Array
    spectrum_complete: bool
    n_iter: int = 0
    oversample: int = 0
    subspace_dim: int = 0
    n_passes: int = 0
    block_size: int = 0
    error_estimate: float | None = None
    excess_estimate: float | None = None
    converged: bool = True
    tol: float | None = None
    preset: str | None = None

    @property
    def rank(self) -> int:
        """The number of triplets, ``r``."""
        return int(self.S.shape[0])

    @property
    def residual_fro(self) -> float:
        r"""Frobenius norm of the residual, :math:`\|A - U \operatorname{diag}(S) V^H\|_F`.

        Computed without forming the product. When the whole spectrum is known it is the
        tail :math:`(\sum_{i>r}\sigma_i^2)^{1/2}` summed from the smallest value up. Otherwise
        the factors have orthonormal columns and :math:`S = \operatorname{diag}(U^H A V)`
        (Rayleigh–Ritz), so by Pythagoras

        .. math:: \|A - U \Sigma V^H\|_F^2 = \|A\|_F^2 - \|S\|_2^2 ,

        evaluated in float64 after scaling by a power of two. The subtraction cancels when
        the residual is small; :attr:`residual_fro_error` bounds the resulting error.
        """
        if self.spectrum_complete:
            tail = self.spectrum[self.rank :]
            return frobenius_norm(tail[::-1])
        return _pythagorean_residual(self.norm_fro, self.S)

    @property
    def residual_fro_error(self) -> float:
        r"""A bound on the rounding error of :attr:`residual_fro` (absolute).

        For the Pythagorean formula, a backward-stable computation in precision
        :math:`\varepsilon` perturbs each :math:`\sigma_i` by at most about
        :math:`c\,\varepsilon\,\sigma_1` with :math:`c = \sqrt{\max(m, n)}`, so
        :math:`|\Delta(\|A\|_F^2 - \|S\|^2)| \le 8 c \varepsilon \sigma_1 \sum_i \sigma_i +
        2\varepsilon_{64}\|A\|_F^2 =: \delta`, and the residual :math:`\rho` is off by at most
        :math:`\max(\sqrt{\rho^2+\delta}-\rho,\ \rho-\sqrt{\max(\rho^2-\delta, 0)})`: about
        :math:`\delta/(2\rho)` when :math:`\rho^2 \gg \delta`, at most :math:`\sqrt\delta`. With the
        whole spectrum known the reported tail is that of the computed values, and the
        factors reproduce :math:`A` to LAPACK's backward error, bounded here by
        :math:`32\,c\,\varepsilon\,\sigma_1` (measured up to about :math:`15\,c\,\varepsilon
        \sigma_1` for nearly rank-deficient 5 × 5 matrices, where :math:`4c` was too tight).
        """
        if self.rank == 0 and not self.spectrum_complete:
            return 4.0 * compute_eps(np.float64) * self.norm_fro
        eps = compute_eps(self.S.dtype)
        c = math.sqrt(max(self.shape))
        sigma1 = float(self.spectrum[0]) if self.spectrum.size else 0.0
        if self.spectrum_complete:
            return 32.0 * c * eps * sigma1
        # 8c rather than the first-order 2c: measured underestimates of up to 2x on nearly
        # rank-1 single-precision matrices whose residual is near float32 resolution.
        delta = 8.0 * c * eps * sigma1 * float(np.sum(self.S, dtype=np.float64))
        delta += 2.0 * compute_eps(np.float64) * self.norm_fro**2
        x = self.residual_fro**2
        return max(math.sqrt(x + delta) - math.sqrt(x), math.sqrt(x) - math.sqrt(max(x - delta, 0)))

    @property
    def optimal_fro_bounds(self) -> tuple[float, float]:
        r"""Bounds ``(lower, upper)`` on the optimal rank-r Frobenius error.

        The Eckart–Young–Mirsky optimum is :math:`e_r = (\sum_{i>r}\sigma_i^2)^{1/2}`; this
        result achieves :attr:`residual_fro`, so that is an upper bound. With the whole
        spectrum known both bounds equal :math:`e_r`. For a randomized sketch of width
        :math:`\ell` the Ritz values satisfy :math:`\tilde\sigma_i \le \sigma_i` (Cauchy
        interlacing), hence :math:`e_r^2 \ge \sum_{r<i\le\ell}\tilde\sigma_i^2`: a rigorous but
        loose lower bound, tight when the spectrum beyond :math:`\ell` is negligible.
        """
        residual = self.residual_fro
        if self.spectrum_complete:
            return residual, residual
        extra = self.spectrum[self.rank :]
        lower = frobenius_norm(extra[::-1]) if extra.size else 0.0
        return min(lower, residual), residual

    @property
    def excess_bound(self) -> float:
        r"""Upper bound on the relative excess :math:`\|A - U\Sigma V^H\|_F / e_r - 1`.

        0 for an exact result, ``inf`` when the lower bound on :math:`e_r` is 0 but the
        residual is not (nothing is known).
        """
        lower, upper = self.optimal_fro_bounds
        if upper == lower:
            return 0.0
        if lower == 0.0:
            return math.inf
        return upper / lower - 1.0

    def to_dense(self) -> Array:
        r"""The rank-r matrix :math:`U \operatorname{diag}(S) V^H` (forms an m×n array)."""
        dense: Array = (self.U * self.S.astype(self.U.dtype)) @ self.Vh
        return dense


def _pythagorean_residual(norm_fro: float, S: Array) -> float:
    scale = power_of_two_scale(max(norm_fro, float(S[0]) if S.size else 0.0))
    total = (norm_fro / scale) ** 2
    s = np.asarray(S, dtype=np.float64) / scale
    captured = float(np.dot(s[::-1], s[::-1]))
    return scale * math.sqrt(max(total - captured, 0.0))


def fix_signs(U: Array, S: Array, Vh: Array) -> tuple[Array, Array, Array]:
    """Sort triplets by descending ``S`` and apply the sign rule of the module docstring.

    Parameters
    ----------
    U : ndarray, shape (m, r)
    S : ndarray, shape (r,)
    Vh : ndarray, shape (r, n)

    Returns
    -------
    tuple of ndarray
        New ``U, S, Vh``: in each column of ``U`` the largest-magnitude entry (the first on
        ties) is real positive, and ``U diag(S) Vh`` is unchanged. The inputs are not modified.
    """
    order = np.argsort(-S, kind="stable")
    if not np.array_equal(order, np.arange(S.size)):
        U, S, Vh = U[:, order], S[order], Vh[order]
    if S.size == 0:
        return U, S, Vh
    rows = np.argmax(np.abs(U), axis=0)
    pivots = U[rows, np.arange(U.shape[1])]
    magnitude = np.abs(pivots)
    safe = np.where(magnitude > 0, magnitude, 1).astype(magnitude.dtype)
    phase = np.where(magnitude > 0, pivots / safe, 1).astype(U.dtype)
    return U * phase.conj(), S, Vh * phase[:, None]


def auto_method(shape: tuple[int, int], rank: int, *, kind: str = "dense") -> str:
    """The method ``method="auto"`` picks.

    * ``"randomized"`` for sparse matrices and ``LinearOperator`` objects;
    * ``"exact"`` for dense matrices whose smaller side is at most 256, or when ``rank``
      exceeds a quarter of the smaller side (a sketch would then cost as much as LAPACK);
    * ``"randomized"`` otherwise.
    """
    if kind != "dense":
        return "randomized"
    small = min(shape)
    if small <= AUTO_DENSE_MAX_SIDE or rank > AUTO_DENSE_RANK_FRACTION * small:
        return "exact"
    return "randomized"


def truncated_svd(
    A: Any,
    rank: int,
    *,
    method: SVDMethod = "auto",
    n_iter: int | None = None,
    oversample: int = 10,
    block_krylov: bool = True,
    rng: RNGLike = None,
    norm_fro: float | None = None,
    tol: float | None = None,
    preset: Literal["accurate", "fast"] = "accurate",
    block_size: int | None = None,
) -> TruncatedSVD:
    r"""The leading ``rank`` singular triplets of ``A``.

    Parameters
    ----------
    A : array_like, scipy.sparse matrix or scipy.sparse.linalg.LinearOperator, shape (m, n)
        The matrix. Sparse matrices and operators are accepted by every method but
        ``"exact"``, which densifies sparse input and refuses operators.
    rank : int
        Number of triplets, ``0 <= rank <= min(m, n)`` (``< min(m, n)`` for ``"arpack"`` and
        ``"lobpcg"``, a limit of SciPy's ``svds``).
    method : {"auto", "exact", "randomized", "arpack", "propack", "lobpcg"}, default "auto"
        ``"exact"``: LAPACK ``gesdd`` on the dense matrix, falling back to ``gesvd`` when it
        does not converge; only the leading triplets are kept. ``"randomized"``: a
        randomized block Krylov method (block Golub–Kahan–Lanczos from a Gaussian start
        block), by default run until the top singular values have converged to ``tol``
        (see Notes); with ``block_krylov=False``, the Halko–Martinsson–Tropp power
        iteration. ``"arpack"``, ``"propack"``, ``"lobpcg"``:
        :func:`scipy.sparse.linalg.svds` with that solver, sorted and signed like the others.
        ``"auto"``: see :func:`auto_method`; the choice is recorded in ``result.method``.
    n_iter : int, optional
        Krylov iterations of the randomized method (blocks beyond the first). Given without
        ``tol``, exactly this many are run with blocks of ``rank + oversample`` columns: the
        Krylov space of HMT's block Krylov method with ``n_iter`` power iterations, at a fixed
        cost of ``2 (n_iter + 1)`` passes over ``A``. Given with ``tol``, the most that are run.
        Default: adaptive (``tol``); 6 power iterations with ``block_krylov=False``.
    oversample : int, default 10
        Extra sketch columns of the randomized method when the block width is
        ``rank + oversample`` (fixed ``n_iter``, ``block_krylov=False``).
    block_krylov : bool, default True
        Use the whole Krylov space for the Rayleigh–Ritz step; ``False`` runs subspace
        (power) iteration and keeps the last block only.
    rng : None, int or numpy.random.Generator
        Source of the random test matrices (randomized, and the start vectors of ``svds``).
    norm_fro : float, optional
        :math:`\|A\|_F` of a ``LinearOperator`` if known; otherwise it is computed exactly
        with ``n`` products (dense and sparse inputs compute it from their entries).
    tol : float, optional
        Target of the adaptive randomized method, ``0 < tol < 1``: with
        ``preset="accurate"`` the relative accuracy of the top ``rank`` singular values
        (default :func:`default_tol`: 32 machine epsilons of the compute dtype, about 4e-6
        in single and 7e-15 in double precision: converged to working precision), with
        ``preset="fast"`` the relative excess of the Frobenius residual over its
        Eckart–Young–Mirsky optimum (default ``FAST_TOL``). The
        iteration stops when the estimate (:attr:`TruncatedSVD.error_estimate`,
        :attr:`TruncatedSVD.excess_estimate`) is below it.
    preset : {"accurate", "fast"}, default "accurate"
        What the adaptive method converges: ``"accurate"``, the singular values (and with
        them the residual); ``"fast"``, only the Frobenius residual — a near-optimal rank-r
        approximation for a fraction of the passes, with top singular values that may be
        off by a percent on slowly decaying spectra (``benchmarks/RESULTS.md``). Ignored
        with a fixed ``n_iter``.
    block_size : int, optional
        Block width of the randomized block Krylov method. Default: ``rank + oversample``
        for a fixed ``n_iter``, :func:`default_block_size` for the adaptive method.

    Returns
    -------
    TruncatedSVD
        ``U`` (m, rank), ``S`` (rank,), ``Vh`` (rank, n) in the compute dtype of ``A``, plus
        the residual and optimality information described there, and for the randomized
        method the passes over ``A`` and an a-posteriori error estimate.

    Raises
    ------
    ShapeError
        ``A`` is not 2-D or is empty.
    DTypeError
        ``A`` is not numeric.
    NonFiniteError
        ``A`` holds NaN or infinity.
    RankError
        ``rank`` is not an integer in range.
    InputError
        An option is out of range, or ``method="exact"`` got a ``LinearOperator``.
    ConvergenceError
        LAPACK or ``svds`` failed to converge.

    Notes
    -----
    **Block Krylov.** With a Gaussian :math:`\Omega \in \mathbb{R}^{n\times b}`, block
    Golub–Kahan–Lanczos builds orthonormal bases :math:`P = [P_1, \dots, P_{k+1}]` and
    :math:`Q = [Q_1, \dots, Q_k]` of the Krylov spaces
    :math:`\operatorname{span}\{\Omega, A^HA\Omega, \dots\}` and
    :math:`\operatorname{span}\{A\Omega, (AA^H)A\Omega, \dots, (AA^H)^{k-1}A\Omega\}`: step
    :math:`j` orthogonalises :math:`A P_j` against :math:`Q_1..Q_{j-1}` and
    :math:`A^H Q_j` against :math:`P_1..P_j` (two passes of classical Gram–Schmidt, then an
    orthonormalisation through the eigendecomposition of the block's Gram matrix in float64,
    SVQB [5]_, repeated once when the block is ill-conditioned; directions that are only
    rounding noise — a rank-deficient ``A``, an invariant subspace — are replaced by random
    ones). The coefficients of the second orthogonalisation are exactly
    :math:`B = Q^H A\,[P_1..P_{k+1}]`, a small :math:`kb \times (k+1)b` matrix, so the
    Rayleigh–Ritz step — the SVD of :math:`Q^H A` — costs no further pass over ``A``:
    :math:`B = U_B \Sigma V_B^H`, :math:`U = Q U_B`, :math:`V = P V_B`. This is the space of
    HMT's block Krylov method [2]_ (with :math:`q = k - 1` iterations), reached with
    :math:`2k` passes instead of :math:`3k`, and it converges in :math:`\tilde O(1/\sqrt\epsilon)`
    iterations instead of subspace iteration's :math:`\tilde O(1/\epsilon)` [3]_.
    As :math:`U\Sigma V^H = UU^HA`, the Frobenius residual is
    :math:`(\|A\|_F^2 - \|S\|^2)^{1/2}` (see :attr:`TruncatedSVD.residual_fro`), and each Ritz
    value is a lower bound of the singular value of the same index.

    **Adaptive stopping.** The Ritz values increase monotonically with the Krylov space.
    They are computed (values only) on a schedule that keeps these checks below about half
    of the work; with :math:`d_i` the relative increase of :math:`\tilde\sigma_i` since the
    previous check and :math:`\rho` the per-step contraction of :math:`\max_i d_i` between the
    last two checks, the remaining error is estimated as
    :math:`\max_i d_i\,\rho^\Delta/(1-\rho^\Delta)` (:math:`\Delta` steps between checks), and
    the iteration stops when that is below ``tol``. Krylov convergence accelerates, so this
    geometric model over-estimates the error once convergence has set in; the estimate is
    returned as ``error_estimate``. The space is capped at
    ``min(min(m, n), 12 * rank + 512)`` columns (``converged`` is then False).

    **Precision.** Products with ``A`` and the bases stay in the compute dtype (float32
    stays float32); Gram matrices, coefficients and the small SVD are in float64.

    **Subspace iteration** (``block_krylov=False``): :math:`Q_0 = \operatorname{orth}(A\Omega)`,
    :math:`Q_j = \operatorname{orth}(A\,\operatorname{orth}(A^H Q_{j-1}))`, then the SVD of
    :math:`Q_q^H A`; with :math:`q` iterations the expected spectral error is within a factor
    :math:`[1 + \sqrt{r/(p-1)} + e\sqrt{r+p}/p\,\sqrt{\min(m,n)-r}]^{1/(2q+1)}` of
    :math:`\sigma_{r+1}` (HMT Cor. 10.10).

    References
    ----------
    .. [1] C. Eckart and G. Young, "The approximation of one matrix by another of lower
       rank", Psychometrika 1(3), 1936.
    .. [2] N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with randomness",
       SIAM Review 53(2), 2011, arXiv:0909.4061.
    .. [3] C. Musco and C. Musco, "Randomized block Krylov methods for stronger and faster
       approximate singular value decomposition", NeurIPS 2015.
    .. [4] G. H. Golub, F. T. Luk and M. L. Overton, "A block Lanczos method for computing
       the singular values and corresponding singular vectors of a matrix", ACM TOMS 7(2),
       1981.
    .. [5] A. Stathopoulos and K. Wu, "A block orthogonalization procedure with constant
       synchronization requirements", SIAM J. Sci. Comput. 23(6), 2002.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank import truncated_svd
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> res = truncated_svd(A, 2)
    >>> res.S
    array([3., 2.])
    >>> res.method, res.residual_fro
    ('exact', 1.0)
    >>> B = np.random.default_rng(0).standard_normal((400, 300)) @ np.diag(0.9 ** np.arange(300))
    >>> fit = truncated_svd(B, 5, method="randomized", rng=0)
    >>> bool(fit.converged), fit.error_estimate < 1e-6
    (True, True)
    """
    check_choice(method, name="method", choices=SVD_METHODS)
    check_choice(preset, name="preset", choices=("accurate", "fast"))
    mat = as_matrix_input(A, norm_fro=norm_fro)
    m, n = mat.shape
    r = check_rank(rank, upper=min(m, n))
    oversample = check_int(oversample, name="oversample", minimum=0)
    if n_iter is not None:
        n_iter = check_int(n_iter, name="n_iter", minimum=0)
    if block_size is not None:
        block_size = check_int(block_size, name="block_size", minimum=1)
    if tol is not None:
        tol = check_positive_float(tol, name="tol")
        if tol >= 1.0:
            raise InputError(f"tol must satisfy 0 < tol < 1; got {tol!r}")
    if method == "auto":
        method = auto_method(mat.shape, r, kind=mat.kind)  # type: ignore[assignment]
    if method in ("arpack", "lobpcg") and r == min(m, n) and r > 0:
        raise InputError(
            f"method={method!r} needs rank < min(A.shape) = {min(m, n)}; got rank={r} "
            f"(use method='exact' for a full decomposition)"
        )
    if method == "arpack" and mat.dtype.kind == "c" and r >= min(m, n) - 1 and r > 0:
        raise InputError(
            f"method='arpack' on complex input needs rank < min(A.shape) - 1 = "
            f"{min(m, n) - 1}; got rank={r} (use method='exact' or 'propack')"
        )
    if mat.norm_fro == 0.0:
        return _zero(mat, r, str(method))
    generator = normalize_rng(rng)
    if method == "exact":
        return _exact(mat, r)
    if method == "randomized":
        return _randomized(
            mat,
            r,
            n_iter=n_iter,
            oversample=oversample,
            block_krylov=block_krylov,
            tol=tol,
            block_size=block_size,
            preset=preset,
            rng=generator,
        )
    return _svds(mat, r, method, generator)


def _empty(mat: MatrixInput, method: str) -> TruncatedSVD:
    m, n = mat.shape
    real = np.finfo(mat.dtype).dtype
    return TruncatedSVD(
        U=np.zeros((m, 0), dtype=mat.dtype),
        S=np.zeros(0, dtype=real),
        Vh=np.zeros((0, n), dtype=mat.dtype),
        method=method,
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=np.zeros(0, dtype=real),
        spectrum_complete=False,
    )


def _zero(mat: MatrixInput, rank: int, method: str) -> TruncatedSVD:
    """The zero matrix: every singular value is 0 and any orthonormal vectors are singular
    vectors; the leading unit vectors are returned (iterative solvers fail on it)."""
    m, n = mat.shape
    real = np.finfo(mat.dtype).dtype
    return TruncatedSVD(
        U=np.eye(m, rank, dtype=mat.dtype),
        S=np.zeros(rank, dtype=real),
        Vh=np.eye(rank, n, dtype=mat.dtype),
        method=method,
        shape=mat.shape,
        norm_fro=0.0,
        spectrum=np.zeros(min(m, n), dtype=real),
        spectrum_complete=True,
    )


def _lapack_svd(a: Array) -> tuple[Array, Array, Array]:
    try:
        return sla.svd(a, full_matrices=False, lapack_driver="gesdd", check_finite=False)  # type: ignore[no-any-return]
    except np.linalg.LinAlgError:
        try:
            return sla.svd(a, full_matrices=False, lapack_driver="gesvd", check_finite=False)  # type: ignore[no-any-return]
        except np.linalg.LinAlgError as exc:
            raise ConvergenceError(
                f"LAPACK gesdd and gesvd both failed to converge on a {a.shape} matrix: {exc}"
            ) from None


def _exact(mat: MatrixInput, rank: int) -> TruncatedSVD:
    if mat.kind == "operator":
        raise InputError(
            "method='exact' needs an array or a sparse matrix; got a LinearOperator "
            "(use method='randomized' or one of the svds methods)"
        )
    dense = mat.dense if mat.dense is not None else np.asarray(mat.operator.toarray())
    U, S, Vh = _lapack_svd(dense)
    spectrum = S.copy()
    U, S, Vh = fix_signs(U[:, :rank], S[:rank], Vh[:rank])
    return TruncatedSVD(
        U=np.ascontiguousarray(U),
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method="exact",
        shape=mat.shape,
        norm_fro=mat.norm_fro if mat.norm_fro is not None else frobenius_norm(dense),
        spectrum=spectrum,
        spectrum_complete=True,
        error_estimate=0.0,
        excess_estimate=0.0,
    )


# --- randomized methods ----------------------------------------------------------------

# Relative accuracy of the top singular values that the adaptive block Krylov method aims for
# when ``n_iter`` is not given (see ``truncated_svd``, Notes).
DEFAULT_TOL_EPS = 32.0
# Relative excess of the Frobenius residual over the Eckart-Young-Mirsky optimum that the
# ``preset="fast"`` setting aims for.
FAST_TOL = 5e-4
# The adaptive method stops growing the Krylov space at this many columns per unit of rank
# (plus ``_MAX_DIM_EXTRA``): past that, ``method="exact"`` is the better tool.
_MAX_DIM_PER_RANK = 12
_MAX_DIM_EXTRA = 512
# A direction whose norm after orthogonalisation is below this many epsilons (times the norm
# of the block before it) is treated as rounding noise and replaced by a random direction.
_DROP_EPS = 64.0
# Gram-Schmidt against the basis gets a second pass when a column keeps less than this
# fraction of its norm after the first.
_REORTH_KEEP = 0.5
# The adaptive method checks convergence at least when the Krylov space has grown by this
# factor since the last check.
_CHECK_GROWTH = 1.5
# Before the error model has a rate, check when the work since the last check is this many
# times the cost of a check (so that checks take at most a quarter of the time).
_CHECK_AMORTIZE = 3.0
_LATE_GROWTH = 0.15
# A block whose condition number kappa makes the loss of orthogonality of one pass of
# Gram-based orthonormalisation in float64, about eps64 * kappa**2, exceed this fraction of
# the compute dtype's epsilon gets a second pass (always, in double precision).
_SECOND_PASS_FRACTION = 1.0 / 16.0
# Beyond this condition number a block is orthonormalised by Householder QR instead.
_HOUSEHOLDER_COND = 1e4
# Singular values below this fraction of the largest are not resolved by a float64 Gram.
_GRAM_RESOLUTION = 1e-6


def _wide(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype(np.complex128 if dtype.kind == "c" else np.float64)


def _gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype[Any]) -> Array:
    real = np.finfo(dtype).dtype
    if dtype.kind == "c":
        re = rng.standard_normal(shape, dtype=np.float64)
        im = rng.standard_normal(shape, dtype=np.float64)
        return (re + 1j * im).astype(dtype)
    return rng.standard_normal(shape, dtype=np.float64).astype(real)


def _column_norms(Y: Array) -> Array:
    """Euclidean norms of the columns of ``Y`` (float64), without overflow or underflow."""
    if Y.size == 0:
        return np.zeros(Y.shape[1])
    scale = power_of_two_scale(float(np.max(np.abs(Y))))
    norms: Array = np.linalg.norm(Y * Y.dtype.type(1.0 / scale), axis=0).astype(np.float64)
    return norms * scale


def _project_out(Y: Array, K: Array, passes: int) -> tuple[Array, Array]:
    """``passes`` passes of classical Gram–Schmidt of the columns of ``Y`` against
    orthonormal ``K``: returns ``(Y - K C, C)`` with ``C`` accumulated in float64."""
    C = np.zeros((K.shape[1], Y.shape[1]), dtype=_wide(Y.dtype))
    if K.shape[1] == 0:
        return Y, C
    for _ in range(passes):
        c = K.conj().T @ Y
        # K @ c as (c^T K^T)^T: OpenBLAS is up to twice as fast with this layout for a
        # tall F-ordered K and a thin c (see MatrixInput.rmatmat).
        Y = Y - (c.T @ K.T).T
        C += c
    return Y, C


def _gram(Y: Array) -> tuple[Array, Array, float]:
    """``(Y64, G, scale)``: ``Y`` in float64 (complex128) divided by ``scale``, a power of two,
    and its Gram matrix. Single-precision squares cannot overflow or underflow in double
    precision, so only double-precision blocks are scaled (by their largest magnitude)."""
    wide = _wide(Y.dtype)
    scale = 1.0
    if Y.dtype == wide and Y.size:
        scale = power_of_two_scale(float(np.max(np.abs(Y))))
    Y64 = Y.astype(wide) if scale == 1.0 else Y * (1.0 / scale)
    return Y64, Y64.conj().T @ Y64, scale


def _svqb(
    Y64: Array, G: Array, scale: float, drop: float, dtype: np.dtype[Any]
) -> tuple[Array, Array, float]:
    r"""Orthonormalise the columns of ``Y = scale * Y64`` from its Gram matrix ``G`` (SVQB).

    :math:`G = W \Lambda W^H` in float64 (complex128), :math:`Q = Y W \Lambda^{-1/2}`,
    :math:`R = \Lambda^{1/2} W^H`, so :math:`Y = Q R` (Stathopoulos & Wu 2002). Directions
    with :math:`\sqrt{\lambda_i} \le` ``drop`` are left out (their rows of ``R`` dropped).
    Returns ``Q`` (``dtype``), ``R`` (kept × b) and the condition number of the kept part.
    """
    lam, W = np.linalg.eigh(G)
    s = np.sqrt(np.clip(lam[::-1], 0.0, None))
    W = W[:, ::-1]
    k = int(np.count_nonzero(s > drop / scale))
    if k == 0:
        empty = np.zeros((Y64.shape[0], 0), dtype=dtype)
        return empty, np.zeros((0, Y64.shape[1]), dtype=Y64.dtype), 1.0
    Q = (Y64 @ (W[:, :k] / s[:k])).astype(dtype)
    R = (scale * s[:k])[:, None] * W[:, :k].conj().T
    return Q, R, float(s[0] / s[k - 1])


def _orthonormalize(
    Y: Array,
    K: Array,
    room: int,
    rng: np.random.Generator,
    *,
    local: tuple[int, Array] | None = None,
) -> tuple[Array, Array, Array]:
    r"""A block ``Q`` with orthonormal columns, orthogonal to ``K``, with :math:`Y = K C + Q R`.

    ``local`` = ``(j, L)`` first subtracts ``K[:, j:j+h] @ L``, the part of ``Y`` a Lanczos
    recurrence already knows. Then one pass of classical Gram–Schmidt against ``K``, and a
    second when a column kept less than half of its norm (the Daniel–Gragg–Kaufman–Stewart
    criterion: two passes make it orthogonal to ``K`` to working precision, "twice is
    enough"); the norms come from the Gram matrix of SVQB and, by Pythagoras, from the
    coefficients. Then SVQB in float64, repeated once when the block was too
    ill-conditioned for one pass. Directions that are rounding noise (``Y`` was nearly in
    the span of ``K`` or rank-deficient: an invariant subspace was found, or ``A`` has low
    rank) are replaced by random directions orthogonal to everything so far, with zero rows
    in ``R``, so the block keeps its width (at most ``room`` columns). Returns ``(Q, C, R)``
    with ``C`` (``K.shape[1]`` × b) and ``R`` (``Q.shape[1]`` × b) in float64.
    """
    dtype = Y.dtype
    width = min(Y.shape[1], room)
    eps = compute_eps(dtype)
    C = np.zeros((K.shape[1], Y.shape[1]), dtype=_wide(dtype))
    if local is not None:
        j, L = local
        Y = Y - K[:, j : j + L.shape[0]] @ L.astype(dtype)
        C[j : j + L.shape[0]] = L
    Y, c = _project_out(Y, K, 1)
    C += c
    Y64, G, sc = _gram(Y)
    after = np.real(np.diagonal(G)) * sc * sc
    before = np.sum(np.abs(C) ** 2, axis=0) + after
    if K.shape[1] and np.any(after < _REORTH_KEEP**2 * before):
        Y, c = _project_out(Y, K, 1)
        C += c
        Y64, G, sc = _gram(Y)
    scale = max(math.sqrt(float(np.sum(before))), np.finfo(np.float64).tiny)
    drop = _DROP_EPS * eps * scale
    Q, R, cond = _svqb(Y64, G, sc, drop, dtype)
    top = float(np.abs(R).max()) if R.size else 0.0
    unresolved = Q.shape[1] < Y.shape[1] and drop < _GRAM_RESOLUTION * top
    if cond > _HOUSEHOLDER_COND or unresolved:
        # The Gram matrix resolves singular values only down to about sqrt(eps64) times
        # the largest (it squares them): an ill-conditioned block, or one with directions
        # below that resolution but above the noise level, goes through Householder QR
        # with column pivoting instead, and a second round below.
        Q, R = _pivoted_qr(Y, drop)
        cond = math.inf
    if Q.shape[1] > width:
        Q, R = Q[:, :width], R[:width]
    Q, C, R = _second_round(Q, C, R, cond, K, eps)
    missing = width - Q.shape[1]
    if missing > 0:
        Z = _gaussian(rng, (Y.shape[0], missing), dtype)
        size = float(np.linalg.norm(_column_norms(Z)))
        KQ = np.concatenate([K, Q], axis=1)
        Z, _ = _project_out(Z, KQ, 2)
        Zq, Rz, cond = _svqb(*_gram(Z), _DROP_EPS * eps * size, dtype)
        Zq, _, _ = _second_round(Zq, np.zeros((KQ.shape[1], missing)), Rz, cond, KQ, eps)
        Q = np.concatenate([Q, Zq], axis=1)
        R = np.concatenate([R, np.zeros((Zq.shape[1], R.shape[1]), dtype=R.dtype)], axis=0)
    return Q, C, R


def _pivoted_qr(Y: Array, drop: float) -> tuple[Array, Array]:
    """``Y = Q R`` by Householder QR with column pivoting in float64 (complex128), keeping
    the columns whose pivot exceeds ``drop`` (the numerical rank)."""
    wide = _wide(Y.dtype)
    Qh, Rh, piv = sla.qr(Y.astype(wide), mode="economic", pivoting=True, check_finite=False)
    k = int(np.count_nonzero(np.abs(np.diagonal(Rh)) > drop))
    R = np.empty((k, Y.shape[1]), dtype=wide)
    R[:, piv] = Rh[:k]
    return Qh[:, :k].astype(Y.dtype), R


def _second_round(
    Q: Array, C: Array, R: Array, cond: float, K: Array, eps: float
) -> tuple[Array, Array, Array]:
    """Repeat the orthogonalisation of a block ``Q`` (from ``Y = K C + Q R``) when it was too
    ill-conditioned for one pass of SVQB in float64 to reach the compute precision ``eps``:
    with ``Q = K C2 + Q2 R2``, ``Y = K (C + C2 R) + Q2 (R2 R)``."""
    if not Q.shape[1] or compute_eps(np.float64) * cond**2 <= _SECOND_PASS_FRACTION * eps:
        return Q, C, R
    if math.isinf(cond) and K.shape[1] == 0:
        return Q, C, R  # Householder: orthonormal already, and nothing to be orthogonal to
    Q, C2 = _project_out(Q, K, 1)
    Q2, R2, _ = _svqb(*_gram(Q), 0.5, Q.dtype)
    return Q2, C + C2 @ R, R2 @ R


class _Basis:
    """Orthonormal columns stored in a growing Fortran-ordered buffer."""

    def __init__(self, rows: int, dtype: np.dtype[Any], capacity: int, limit: int) -> None:
        self.limit = limit
        self.data = np.empty((rows, max(min(capacity, limit), 1)), dtype=dtype, order="F")
        self.size = 0

    @property
    def view(self) -> Array:
        return self.data[:, : self.size]

    @property
    def room(self) -> int:
        return self.limit - self.size

    def append(self, block: Array) -> None:
        need = self.size + block.shape[1]
        if need > self.data.shape[1]:
            grown = np.empty(
                (self.data.shape[0], min(max(need, 2 * self.data.shape[1]), self.limit)),
                dtype=self.data.dtype,
                order="F",
            )
            grown[:, : self.size] = self.view
            self.data = grown
        self.data[:, self.size : need] = block
        self.size = need


def _contraction(ratio: float, before: int, now: int) -> float:
    r"""The per-step factor :math:`\rho` of a geometric error :math:`E_k = C\rho^k` whose
    decreases over two consecutive intervals of ``before`` and ``now`` steps have the ratio
    ``ratio`` = :math:`\rho^{b}(1-\rho^{n})/(1-\rho^{b})` (increasing in :math:`\rho`,
    from 0 to :math:`n/b`); 1.0 when no :math:`\rho < 1` fits."""
    if ratio >= now / before:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mid**before * (1.0 - mid**now) / (1.0 - mid**before) < ratio:
            lo = mid
        else:
            hi = mid
    return hi


def _extrapolate(
    now: float, before: float, steps_now: int, steps_before: int
) -> tuple[float, float]:
    """Remaining decrease and per-step factor of a geometric sequence whose decreases over
    the last two intervals (``steps_before`` then ``steps_now`` steps) were ``before`` and
    ``now``: ``(inf, 1.0)`` when they do not shrink like one."""
    if before <= 0.0:
        return math.inf, 1.0
    rho = _contraction(now / before, steps_before, steps_now)
    if rho >= 1.0:
        return math.inf, 1.0
    shrink = rho**steps_now
    return now * shrink / (1.0 - shrink), rho


@dataclass
class _Progress:
    r"""Ritz values at the convergence checks of the adaptive method, and two estimates.

    Krylov Ritz values increase monotonically to the singular values, so what is still
    missing can be extrapolated from how much they grew between checks. A geometric
    decrease :math:`E_k = C\rho^k` is fitted to the growth over the last two intervals
    between checks (:func:`_contraction`); the remaining error is then
    :math:`d\,\rho^\Delta/(1-\rho^\Delta)` for a growth :math:`d` over the last :math:`\Delta`
    steps. Krylov convergence accelerates, so the model over-estimates once it has set in.

    * ``value_estimate``: of :math:`\max_{i\le r}(\sigma_i-\tilde\sigma_i)/\tilde\sigma_i`, from
      the largest relative growth of the top ``rank`` Ritz values;
    * ``excess_estimate``: of the relative excess of the Frobenius residual over the optimum,
      from the growth of the captured energy :math:`E = \sum_{i\le r}\tilde\sigma_i^2`: with
      :math:`\delta` the extrapolated remaining growth and
      :math:`\rho_F^2 = \|A\|_F^2 - E` the residual, the optimum is at least
      :math:`(\rho_F^2-\delta)^{1/2}` and the excess about
      :math:`(\rho_F^2/(\rho_F^2-\delta))^{1/2} - 1`.

    Growth below the rounding level (:math:`8\varepsilon\tilde\sigma_1/\tilde\sigma_i` for
    a value) counts as converged; growth that does not shrink means "not converged"
    (infinity).
    """

    rank: int
    eps: float
    norm_fro: float
    criterion: str  # "values" or "excess"
    steps: list[int] = field(default_factory=list)
    values: list[Array] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    value_estimate: float = math.inf
    excess_estimate: float = math.inf
    rho: float = 1.0
    values_at_noise: bool = False
    excess_at_noise: bool = False

    @property
    def estimate(self) -> float:
        return self.value_estimate if self.criterion == "values" else self.excess_estimate

    def reached(self, tol: float) -> bool:
        """The criterion's estimate is below ``tol``, or its growth is rounding noise."""
        noise = self.values_at_noise if self.criterion == "values" else self.excess_at_noise
        return noise or self.estimate <= tol

    def update(self, step: int, ritz: Array) -> float:
        """Record the Ritz values after ``step`` steps; returns the criterion's estimate."""
        scale = self.norm_fro if self.norm_fro > 0 else 1.0
        top = np.asarray(ritz[: self.rank], dtype=np.float64) / scale
        self.steps.append(step)
        self.values.append(top)
        self.energies.append(float(np.dot(top[::-1], top[::-1])))
        if len(self.values) >= 2:
            self._update_values()
            self._update_excess()
        return self.estimate

    def _intervals(self) -> tuple[int, int]:
        now = self.steps[-1] - self.steps[-2]
        before = self.steps[-2] - self.steps[-3] if len(self.steps) >= 3 else 0
        return now, before

    def _update_values(self) -> None:
        cur, prev = self.values[-1], self.values[-2]
        safe = np.where(cur > 0, cur, 1.0)
        noise = 8.0 * self.eps * float(cur[0]) / safe
        d_now = np.abs(cur - prev) / safe
        self.values_at_noise = bool(np.all(d_now <= noise))
        if self.values_at_noise:
            self.value_estimate = float(np.max(d_now))
            if self.criterion == "values":
                self.rho = 0.0
            return
        if len(self.values) < 3:
            return
        now, before = self._intervals()
        d_before = np.abs(prev - self.values[-3]) / safe
        worst_now = float(np.max(np.where(d_now > noise, d_now, 0.0)))
        remaining, rho = _extrapolate(worst_now, float(np.max(d_before)), now, before)
        self.value_estimate = remaining
        if self.criterion == "values":
            self.rho = rho

    def _update_excess(self) -> None:
        e = self.energies
        residual_sq = max(1.0 - e[-1], 0.0)
        top = self.values[-1]
        noise = 8.0 * self.eps * float(top[0]) * float(np.sum(top))
        self.excess_at_noise = abs(e[-1] - e[-2]) <= noise
        if self.excess_at_noise:
            remaining, rho = 0.0, 0.0
        elif len(e) < 3:
            return
        else:
            now, before = self._intervals()
            remaining, rho = _extrapolate(e[-1] - e[-2], e[-2] - e[-3], now, before)
        if remaining >= residual_sq:
            self.excess_estimate = math.inf
        else:
            self.excess_estimate = math.sqrt(residual_sq / (residual_sq - remaining)) - 1.0
        if self.criterion == "excess":
            self.rho = rho

    def steps_to(self, tol: float) -> int:
        """Steps until the geometric model reaches ``tol`` (at least 1; a large number when
        no rate is known)."""
        est = self.estimate
        if not (math.isfinite(est) and 0.0 < self.rho < 1.0):
            return 1 if est <= tol else 1 << 30
        if est <= tol:
            return 1
        return max(1, math.ceil(math.log(tol / est) / math.log(self.rho)))


def default_tol(dtype: Any) -> float:
    """The default ``tol`` of the accurate randomized method: ``DEFAULT_TOL_EPS`` machine
    epsilons of the compute dtype (about 4e-6 for float32, 7e-15 for float64).

    The error estimate is pessimistic once Krylov convergence speeds up (measured errors at
    the stop were 3-300 times below it on the benchmark matrices), so 32 epsilons leave
    float32 results well inside 1e-5 (``benchmarks/RESULTS.md``)."""
    return DEFAULT_TOL_EPS * compute_eps(dtype)


def default_block_size(
    shape: tuple[int, int], rank: int, *, preset: Literal["accurate", "fast"] = "accurate"
) -> int:
    """Block width of the adaptive block Krylov method (``block_size=None``).

    Products with a block of ``b`` columns cost about as much as a matrix–vector product
    while ``b`` is small (they are limited by reading ``A``), so blocks narrower than about
    16 waste passes; wider blocks converge in fewer passes but to a larger Krylov space,
    whose orthogonalisation and Rayleigh–Ritz cost grows with its square and cube. On the
    benchmark matrices (2048² and 4096² float32, ranks 8-256, ``benchmarks/RESULTS.md``)
    the accurate preset's CPU time was least for 24 columns at rank 64 and 32 at rank 256
    on Marchenko–Pastur spectra (by 10-30 % against 40 and 64), and within 5 % of the best
    on fast-decaying ones. The fast preset stops after few steps, where wider blocks pay:
    ``rank/2 + 8`` (at most 64) took 20-25 % less CPU than those narrow ones.
    """
    if preset == "fast":
        return int(min(min(shape), max(16, min(64, (rank + 1) // 2 + 8))))
    return int(min(min(shape), 16 + 8 * min(2, rank // 64)))


def _gram_resolves(values: Array, rank: int, accuracy: float) -> bool:
    r"""Whether eigenvalues of :math:`BB^H` in float64 give the top ``rank`` singular values
    of ``B`` to relative ``accuracy``: their absolute error is about
    :math:`\varepsilon_{64}\sigma_1^2`, a relative error of
    :math:`\varepsilon_{64}(\sigma_1/\sigma_r)^2` on :math:`\sigma_r`. (Single precision
    would not be faster: at these sizes LAPACK's tridiagonalisation is bound by memory.)"""
    top, low = float(values[0]), float(values[min(rank, values.size) - 1])
    if top == 0.0:
        return True
    return low > 0.0 and compute_eps(np.float64) * (top / low) ** 2 <= accuracy


def _ritz_values(B: Array, rank: int, accuracy: float) -> tuple[Array, Array | None]:
    """All singular values of ``B``, and the Gram matrix :math:`BB^H` when the values come from
    it: from the Gram matrix when that is accurate enough (several times faster than a
    bidiagonalisation), otherwise by LAPACK (and ``None``).

    NumPy's LAPACK, not SciPy's: the loop's products run in NumPy's OpenBLAS, and with
    SciPy's (a second OpenBLAS with its own threads) in between, each library's idle
    threads spin while the other works — 10-25 ms lost per switch on a 2-core machine.
    """
    G = B @ B.conj().T
    values: Array = np.sqrt(np.clip(np.linalg.eigvalsh(G)[::-1], 0.0, None))
    if _gram_resolves(values, rank, accuracy):
        return values, G
    try:
        return np.asarray(np.linalg.svd(B, compute_uv=False)), None
    except np.linalg.LinAlgError:
        svd_values = sla.svd(B, compute_uv=False, lapack_driver="gesvd", check_finite=False)
        return np.asarray(svd_values), None


def _ritz_triplets(
    B: Array, rank: int, accuracy: float, known: tuple[Array, Array] | None = None
) -> tuple[Array, Array, Array, Array]:
    r"""``(U_B[:, :rank], S, V_B[:, :rank], spectrum)`` of the small projection ``B``.

    The eigenpairs of :math:`BB^H = U_B \Sigma^2 U_B^H` (float64) give
    :math:`V_B = B^H U_B \Sigma^{-1}`, when that is accurate to ``accuracy`` (see
    :func:`_gram_resolves`); otherwise LAPACK ``gesdd`` on ``B``. ``known`` =
    ``(values, G)`` from :func:`_ritz_values` on this same ``B`` saves computing them again.
    NumPy's LAPACK, for the reason given in :func:`_ritz_values`, except for the top
    eigenvectors of a large projection.
    """
    if accuracy >= 4.0 * compute_eps(np.float64):
        values, G = known if known is not None else (None, B @ B.conj().T)
        L = G.shape[0]
        if L > _SUBSET_EIGH_MIN:
            # Only the top rank eigenvectors (SciPy's syevr): all of them cost 2-3 times
            # as much at these sizes, more than the switch to SciPy's OpenBLAS.
            if values is None:
                values = np.sqrt(np.clip(np.linalg.eigvalsh(G)[::-1], 0.0, None))
            lam, W = sla.eigh(G, subset_by_index=[L - rank, L - 1], check_finite=False)
        else:
            lam, W = np.linalg.eigh(G)
            values = np.sqrt(np.clip(lam[::-1], 0.0, None))
            W = W[:, L - rank :]
            lam = lam[L - rank :]
        s = np.sqrt(np.clip(lam[::-1], 0.0, None))
        if s[-1] > 0.0 and _gram_resolves(values, rank, accuracy):
            Ub = W[:, ::-1]
            Vb = (B.conj().T @ Ub) / s
            return Ub, s, Vb, values
    try:
        Ub, S, Vbh = np.linalg.svd(B, full_matrices=False)
    except np.linalg.LinAlgError:
        Ub, S, Vbh = _lapack_svd(B)
    return Ub[:, :rank], S[:rank], Vbh[:rank].conj().T, S


# Projections larger than this get only their top eigenvectors computed (see _ritz_triplets).
_SUBSET_EIGH_MIN = 400


def _pass_seconds(m: int, n: int, b: int, cost: float) -> float:
    """Modelled seconds of one product of an m x n matrix with b vectors: reading the matrix
    (about 20 GB/s) or the flops (about 100 GFLOP/s), whichever is slower."""
    return max(4.0 * m * n / 20e9, cost * m * n * b / 100e9)


def _check_seconds(dim: int, width: int) -> float:
    """Modelled seconds of a convergence check: the Gram matrix of the dim x width projection
    and its eigenvalues (LAPACK ``syevd`` runs far below GEMM speed at these sizes)."""
    return 2.0 * dim * dim * width / 50e9 + dim**3 * 7e-11 + dim * dim * 2e-8


def _block_krylov(
    mat: MatrixInput,
    rank: int,
    *,
    block: int,
    max_steps: int,
    tol: float | None,
    rng: np.random.Generator,
    preset: str,
    criterion: str = "values",
) -> TruncatedSVD:
    r"""Block Golub–Kahan–Lanczos bidiagonalisation with full reorthogonalisation.

    :math:`P_1 = \operatorname{orth}(\Omega)`; step :math:`k` orthonormalises
    :math:`A P_k` against :math:`Q_1..Q_{k-1}` into :math:`Q_k` and :math:`A^H Q_k`
    against :math:`P_1..P_k` into :math:`P_{k+1}`, recording the coefficients. Since
    :math:`A^H Q_k \in \operatorname{span}(P_1..P_{k+1})`, the recorded rows are exactly
    :math:`B = Q^H A [P_1..P_{k+1}]`, and the SVD of this small matrix is the Rayleigh–Ritz
    step of :math:`Q^H A` — the one-sided projection on the block Krylov space
    :math:`\operatorname{span}\{A\Omega, (AA^H)A\Omega, \dots\}` — without another pass over
    ``A``. With ``tol`` the top Ritz values are checked as the space grows (on a flop-based
    schedule) and the iteration stops when the estimate of ``criterion`` (see
    :class:`_Progress`) is below ``tol``.
    """
    m, n = mat.shape
    dtype = mat.dtype
    wide = _wide(dtype)
    eps = compute_eps(dtype)
    P = _Basis(n, dtype, block * (min(max_steps, 8) + 1), n)
    Q = _Basis(m, dtype, block * min(max_steps, 8), m)
    first, _, _ = _orthonormalize(_gaussian(rng, (n, block), dtype), P.view, n, rng)
    P.append(first)
    rows: list[tuple[Array, Array]] = []  # per Q block: (D^H over P so far, L^H for next P)
    norm_fro = mat.frobenius_norm()
    progress = _Progress(rank, eps, norm_fro, criterion)
    newest = first
    steps = passes = 0
    complete = converged = False
    work_since_check = 0.0
    last_check_dim = 0
    cost = 8.0 if dtype.kind == "c" else 2.0
    L: Array | None = None  # A^H Q_{k-1} = ... + P_k L: A P_k has Q_{k-1} L^H
    # Ritz values for the checks need only a fraction of the target's accuracy.
    check_accuracy = max(eps / 16.0, (tol or 0.0) / 100.0)
    next_check: int | None = None
    checked_at = -1
    checked_B = checked_values = np.zeros(0)
    checked_G: Array | None = None
    while steps < max_steps:
        Y = mat.matmat(newest)
        local = None if L is None else (Q.size - L.shape[1], L.conj().T)
        Qk, _, Rk = _orthonormalize(Y, Q.view, Q.room, rng, local=local)
        Q.append(Qk)
        Z = mat.rmatmat(Qk)
        lp = P.size
        # A P_k = ... + Q_k R_k, so A^H Q_k has P_k R_k^H.
        local = (lp - newest.shape[1], Rk.conj().T)
        newest, D, L = _orthonormalize(Z, P.view, P.room, rng, local=local)
        P.append(newest)
        rows.append((D.conj().T, L.conj().T))
        steps += 1
        passes += 2
        step_seconds = (
            _pass_seconds(m, n, Y.shape[1], cost)
            + _pass_seconds(m, n, Qk.shape[1], cost)
            + cost * 4.0 * (m * Q.size * Y.shape[1] + n * lp * Qk.shape[1]) / 100e9
        )
        work_since_check += step_seconds
        if Q.room == 0 or newest.shape[1] == 0:
            complete = True
            break
        if tol is None or Q.size < rank:
            continue
        dim = Q.size
        # When to check (a deterministic schedule, from a model of the costs): once an
        # estimate with a rate exists, after half the steps the geometric model predicts
        # (Krylov convergence accelerates, so the prediction is pessimistic); before that,
        # when the work since the last check exceeds _CHECK_AMORTIZE checks; and always
        # when the space has grown by _CHECK_GROWTH.
        if progress.values:
            if next_check is not None:
                wait = steps < next_check
            else:
                wait = work_since_check < _CHECK_AMORTIZE * _check_seconds(dim, P.size)
            if wait and dim < _CHECK_GROWTH * last_check_dim:
                continue
        work_since_check = 0.0
        last_check_dim = dim
        checked_B = _assemble(rows, Q.size, P.size, wide)
        checked_values, checked_G = _ritz_values(checked_B, rank, check_accuracy)
        checked_at = steps
        progress.update(steps, checked_values)
        # Next check: the model predicts `ahead` more steps, pessimistically once Krylov
        # convergence speeds up, so check after a third of them at most; and, if checks
        # are cheap next to steps, sooner: checking every s steps with c the cost of a
        # check relative to a step costs about ahead*c/s + s/2 (checks plus overshoot),
        # least for s = sqrt(2*ahead*c).
        ahead = progress.steps_to(tol)
        if ahead < (1 << 30):
            c = _check_seconds(Q.size, P.size) / max(step_seconds, 1e-12)
            interval = min(ahead // 3, math.ceil(math.sqrt(2.0 * ahead * c)))
            # ... and never more than _LATE_GROWTH of the space ahead: the overshoot grows
            # the final Rayleigh-Ritz step and the orthogonalisation with it.
            interval = min(interval, math.ceil(_LATE_GROWTH * Q.size / block))
            next_check = steps + max(1, interval)
        else:
            next_check = None
        if progress.reached(tol):
            converged = True
            break
    if complete and mat.kind != "operator":
        # The space is exhausted: the matrix is small on one side, and LAPACK on it is
        # exact and cheap.
        exact = _exact(mat, rank)
        return replace(
            exact,
            method="randomized",
            n_iter=steps - 1,
            oversample=max(block - rank, 0),
            subspace_dim=Q.size,
            n_passes=passes,
            block_size=block,
            tol=tol,
            preset=preset,
        )
    if complete:
        # The same for an operator: Q spans the range of A, so one more product gives
        # Q^H A itself, and its SVD is exact, free of the rounding of the recorded
        # coefficients and of the basis P.
        Ub, S_all, Vbh = _lapack_svd(mat.rmatmat(Q.view).conj().T)
        passes += 1
        Ub, S, all_values = Ub[:, :rank], S_all[:rank], S_all
        Vb = Vbh[:rank].conj().T
        P_basis = P.view
    else:
        # A check at this step has the projection, its Gram matrix and its values already.
        known = None
        if checked_at == steps and checked_G is not None:
            B, known = checked_B, (checked_values, checked_G)
        else:
            B = _assemble(rows, Q.size, P.size, wide)
        Ub, S, Vb, all_values = _ritz_triplets(B, rank, eps / 16.0, known)
        P_basis = P.view
    spectrum = all_values.astype(np.finfo(dtype).dtype)
    if (
        tol is not None
        and not converged
        and not complete
        and len(progress.values) >= 2
        and progress.steps[-1] != steps
    ):
        progress.update(steps, all_values)
    U = Q.view @ Ub.astype(dtype)
    V = Vb.astype(dtype) if complete else P_basis @ Vb.astype(dtype)
    spectrum[:rank] = S
    U, S_r, Vh = fix_signs(U, spectrum[:rank], np.ascontiguousarray(V.conj().T))
    return TruncatedSVD(
        U=np.ascontiguousarray(U),
        S=S_r,
        Vh=np.ascontiguousarray(Vh),
        method="randomized",
        shape=mat.shape,
        norm_fro=norm_fro,
        spectrum=spectrum,
        spectrum_complete=complete,
        n_iter=steps - 1,
        oversample=max(block - rank, 0),
        subspace_dim=Q.size,
        n_passes=passes,
        block_size=block,
        error_estimate=0.0 if complete else (progress.value_estimate if tol else None),
        excess_estimate=0.0 if complete else (progress.excess_estimate if tol else None),
        converged=complete or converged or tol is None,
        tol=tol,
        preset=preset,
    )


def _assemble(rows: list[tuple[Array, Array]], nq: int, np_: int, wide: np.dtype[Any]) -> Array:
    """The projection :math:`B = Q^H A [P_1..P_{k+1}]` from the recorded row blocks."""
    B = np.zeros((nq, np_), dtype=wide)
    r0 = 0
    for Dh, Lh in rows:
        h = Dh.shape[0]
        B[r0 : r0 + h, : Dh.shape[1]] = Dh
        B[r0 : r0 + h, Dh.shape[1] : Dh.shape[1] + Lh.shape[1]] = Lh
        r0 += h
    return B


def _subspace_iteration(
    mat: MatrixInput,
    rank: int,
    n_iter: int,
    oversample: int,
    rng: np.random.Generator,
) -> TruncatedSVD:
    """HMT Algorithm 4.4 (normalised power iteration), then Rayleigh–Ritz on the last block."""
    m, n = mat.shape
    width = min(rank + oversample, m, n)
    if width == min(m, n) and mat.kind != "operator":
        # The sketch would span the whole range: LAPACK on the (small) matrix is exact.
        return replace(
            _exact(mat, rank),
            method="randomized",
            n_iter=n_iter,
            oversample=width - rank,
            subspace_dim=width,
            block_size=width,
            preset="subspace",
        )
    empty_m = np.zeros((m, 0), dtype=mat.dtype)
    empty_n = np.zeros((n, 0), dtype=mat.dtype)
    Q, _, _ = _orthonormalize(mat.matmat(_gaussian(rng, (n, width), mat.dtype)), empty_m, m, rng)
    for _ in range(n_iter):
        Z, _, _ = _orthonormalize(mat.rmatmat(Q), empty_n, n, rng)
        Q, _, _ = _orthonormalize(mat.matmat(Z), empty_m, m, rng)
    B = mat.rmatmat(Q).conj().T  # Q^H A, (width, n)
    Ub, S, Vh = _lapack_svd(B)
    spectrum = S.copy()
    U, S, Vh = fix_signs(Q @ Ub[:, :rank], S[:rank], Vh[:rank])
    return TruncatedSVD(
        U=U,
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method="randomized",
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=spectrum,
        spectrum_complete=Q.shape[1] == m,
        n_iter=n_iter,
        oversample=width - rank,
        subspace_dim=Q.shape[1],
        n_passes=2 * n_iter + 2,
        block_size=width,
        error_estimate=None,
        converged=True,
        tol=None,
        preset="subspace",
    )


def _randomized(
    mat: MatrixInput,
    rank: int,
    *,
    n_iter: int | None,
    oversample: int,
    block_krylov: bool,
    tol: float | None,
    block_size: int | None,
    preset: str,
    rng: np.random.Generator,
) -> TruncatedSVD:
    if rank == 0:
        return _empty(mat, "randomized")
    m, n = mat.shape
    small = min(m, n)
    if not block_krylov:
        return _subspace_iteration(mat, rank, 6 if n_iter is None else n_iter, oversample, rng)
    if n_iter is not None and tol is None:
        # Fixed cost: n_iter + 1 blocks of rank + oversample columns, the Krylov space of
        # HMT's block Krylov variant with n_iter iterations.
        block = block_size or min(rank + oversample, small)
        return _block_krylov(
            mat,
            rank,
            block=min(block, small),
            max_steps=n_iter + 1,
            tol=None,
            rng=rng,
            preset=preset,
        )
    fast = preset == "fast"
    block = min(
        block_size or default_block_size(mat.shape, rank, preset="fast" if fast else "accurate"),
        small,
    )
    max_dim = min(small, _MAX_DIM_PER_RANK * rank + _MAX_DIM_EXTRA)
    steps = n_iter + 1 if n_iter is not None else max(2, -(-max_dim // block) + 1)
    if tol is None:
        tol = FAST_TOL if fast else default_tol(mat.dtype)
    return _block_krylov(
        mat,
        rank,
        block=block,
        max_steps=steps,
        tol=tol,
        rng=rng,
        preset=preset,
        criterion="excess" if fast else "values",
    )


def _svds_kwargs(rng: np.random.Generator) -> dict[str, Any]:
    import inspect

    from scipy.sparse.linalg import svds

    params = inspect.signature(svds).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


def _svds(mat: MatrixInput, rank: int, solver: str, rng: np.random.Generator) -> TruncatedSVD:
    if rank == 0:
        return _empty(mat, solver)
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, svds

    if mat.dense is not None:
        target: Any = mat.dense
    elif mat.kind == "sparse":
        target = mat.operator
    else:
        op = mat.operator
        target = LinearOperator(
            mat.shape,
            matvec=op.matvec,
            rmatvec=op.rmatvec,
            matmat=op.matmat,
            rmatmat=op.rmatmat,
            dtype=mat.dtype,
        )
    try:
        U, S, Vh = svds(target, k=rank, solver=solver, **_svds_kwargs(rng))
    except (ArpackNoConvergence, ArpackError, np.linalg.LinAlgError) as exc:
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) did not converge for rank={rank} on a "
            f"{mat.shape} matrix ({exc}); try method='randomized' or method='exact'"
        ) from None
    real = np.finfo(mat.dtype).dtype
    U = np.asarray(U, dtype=mat.dtype)
    Vh = np.asarray(Vh, dtype=mat.dtype)
    S = np.asarray(S, dtype=real)
    _check_triplets(mat, U, S, Vh, solver)
    U, S, Vh = fix_signs(U, S, Vh)
    return TruncatedSVD(
        U=np.ascontiguousarray(U),
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method=solver,
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=S.copy(),
        spectrum_complete=False,
    )


def _check_triplets(mat: MatrixInput, U: Array, S: Array, Vh: Array, solver: str) -> None:
    r"""Refuse triplets that are not singular triplets to :math:`\sqrt\varepsilon\,\sigma_1`
    (plus :math:`\varepsilon^{1/4}\sigma_i` for LOBPCG, whose own stopping rule is looser).

    ``svds`` can return unconverged values without raising (PROPACK on clustered spectra,
    LOBPCG at its iteration limit). For unit :math:`u, v` the residual
    :math:`\rho = (\|Av - \sigma u\|^2 + \|A^H u - \sigma v\|^2)^{1/2}` bounds the distance
    from :math:`\sigma` to a true singular value by :math:`\rho/\sqrt2` (the eigenvalue
    residual bound for :math:`[[0, A], [A^H, 0]]`); it costs two products with ``r`` columns.
    """
    wide = np.complex128 if mat.dtype.kind == "c" else np.float64
    AV = mat.matmat(Vh.conj().T).astype(wide)
    AhU = mat.rmatmat(U).astype(wide)
    s = S.astype(np.float64)
    rho = np.sqrt(
        np.sum(np.abs(AV - U * s) ** 2, axis=0) + np.sum(np.abs(AhU - Vh.conj().T * s) ** 2, axis=0)
    )
    sigma1 = float(np.max(s)) if s.size else 0.0
    eps = compute_eps(mat.dtype)
    # ARPACK and PROPACK converge to machine precision relative to sigma_1; LOBPCG stops
    # at a looser tolerance of its own, and is held to eps**(1/4) of each value on top.
    limit = np.full(s.shape, math.sqrt(eps) * sigma1)
    if solver == "lobpcg":
        limit += eps**0.25 * s
    worst = int(np.argmax(rho / np.maximum(limit, np.finfo(np.float64).tiny)))
    if float(rho[worst]) > float(limit[worst]):
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) returned an unconverged triplet: singular value "
            f"{float(s[worst]):.6g} has residual {float(rho[worst]):.3g} > "
            f"{float(limit[worst]):.3g} (sqrt(eps) * sigma_1, plus eps**0.25 * sigma for "
            "lobpcg); try "
            "method='randomized' or method='exact'"
        )


# Elements of A converted to double precision at a time while the Gram matrix accumulates
# (256 MiB): a 4096 x 4096 matrix in one product, which is a third faster than in blocks.
_GRAM_BLOCK_ELEMENTS = 1 << 25


@functools.lru_cache(maxsize=1)
def _two_stage_eigvalsh() -> Any:
    """LAPACK's two-stage symmetric eigenvalue driver ``dsyev_2stage`` (values only), from
    the OpenBLAS that NumPy links, or ``None`` where it is not exposed.

    NumPy does not wrap it, and neither does SciPy; the PyPI wheels of NumPy link an ILP64
    ``scipy-openblas`` that exports its LAPACKE interface as ``scipy_LAPACKE_dsyev_2stage64_``.
    It is looked up through NumPy's own linear-algebra extension (so it is the library
    already in use) and only by names whose integer width is unambiguous.
    """
    import ctypes

    try:
        import numpy.linalg._umath_linalg as umath_linalg

        lib = ctypes.CDLL(umath_linalg.__file__)
    except (ImportError, OSError, AttributeError):  # pragma: no cover - unusual builds
        return None
    for name, integer in (
        ("scipy_LAPACKE_dsyev_2stage64_", ctypes.c_int64),
        ("scipy_LAPACKE_dsyev_2stage", ctypes.c_int32),
    ):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = integer
            fn.argtypes = [
                ctypes.c_int, ctypes.c_char, ctypes.c_char, integer, ctypes.c_void_p,
                integer, ctypes.c_void_p,
            ]  # fmt: skip
            return fn
    return None  # pragma: no cover - other builds


def _symmetric_eigenvalues(gram: Array) -> Array:
    r"""Eigenvalues of a real symmetric float64 matrix, ascending; ``gram`` is overwritten.

    LAPACK's two-stage reduction (dense to band by blocked Householder, then band to
    tridiagonal, Haidar, Ltaief & Dongarra 2011) where available: about 1.5x faster than
    NumPy's ``syevd`` for the values of a 4096 x 4096 matrix on 2 cores (4.0 s against 6.1 s).
    Its result is checked (``info``, finiteness, the trace); otherwise
    :func:`numpy.linalg.eigvalsh`.
    """
    n = gram.shape[0]
    fn = _two_stage_eigvalsh() if gram.dtype == np.float64 and n > 1 else None
    if fn is not None:
        trace = float(np.trace(gram))
        a = np.asfortranarray(gram)
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


def _gram_singular_values(a: Array) -> Array:
    """All singular values from the eigenvalues of the Gram matrix accumulated in float64."""
    if a.shape[0] < a.shape[1]:
        a = a.T
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    n = a.shape[1]
    rows = max(1, _GRAM_BLOCK_ELEMENTS // n)
    block = a[:rows].astype(wide)
    gram: Array = block.conj().T @ block  # BLAS syrk: NumPy spots a product with a transpose
    for start in range(rows, a.shape[0], rows):
        block = a[start : start + rows].astype(wide)
        gram += block.conj().T @ block
    evals = _symmetric_eigenvalues(gram) if wide == np.float64 else np.linalg.eigvalsh(gram)
    values: Array = np.sqrt(np.clip(evals[::-1], 0.0, None))
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

    Notes
    -----
    The Gram route forms :math:`G = A^H A` (the smaller side) in float64 — a BLAS ``syrk`` on
    the matrix converted 256 MiB at a time — and takes its eigenvalues with LAPACK's
    two-stage driver ``dsyev_2stage`` when the OpenBLAS NumPy links exposes it (the PyPI
    wheels do; otherwise ``numpy.linalg.eigvalsh``). For a 4096 x 4096 float32 matrix on 2
    cores that is about 6 s against 12 s for ``scipy.linalg.svdvals`` and 14 s for NumPy
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

    if is_operator_like(A) and hasattr(A, "toarray"):
        A = A.toarray()
    a = as_matrix(A)
    if method == "auto":
        method = "lapack" if a.dtype in (np.float64, np.complex128) else "gram"
    if method == "gram":
        return _gram_singular_values(a)
    try:
        values = sla.svd(a, compute_uv=False, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:
        try:
            values = sla.svd(a, compute_uv=False, lapack_driver="gesvd", check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise ConvergenceError(
                f"LAPACK failed to converge on a {a.shape} matrix: {exc}"
            ) from None
    return np.asarray(values, dtype=np.float64)
