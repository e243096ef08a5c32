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

from typing import Any, Literal

from lowrank._numerics import tolerance
from lowrank._operator import as_matrix_input
from lowrank._typing import Array, RNGLike, SVDMethod
from lowrank._validation import (
    as_dtype,
    as_matrix,
    as_vector,
    check_bool,
    check_choice,
    check_int,
    check_matrix_shape,
    check_positive_float,
    check_rank,
    compute_dtype,
    normalize_rng,
)
from lowrank.errors import InputError, ShapeError
from lowrank.svd import _krylov, _result
from lowrank.svd._krylov import DEFAULT_TOL_EPS, FAST_TOL, randomized_svd
from lowrank.svd._lapack import exact_svd, zero_result
from lowrank.svd._result import TruncatedSVD
from lowrank.svd._svds import scipy_svds
from lowrank.svd._values import singular_values

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


def auto_method(shape: tuple[int, int], rank: int, *, kind: str = "dense") -> str:
    """The method ``method="auto"`` picks.

    * ``"randomized"`` for sparse matrices and ``LinearOperator`` objects;
    * ``"exact"`` for dense matrices whose smaller side is at most 256, or when ``rank``
      exceeds a quarter of the smaller side (a sketch would then cost as much as LAPACK);
    * ``"randomized"`` otherwise.
    """
    m, n = check_matrix_shape(shape)
    rank = check_rank(rank, upper=min(m, n), upper_text="min(shape)")
    check_choice(kind, name="kind", choices=("dense", "sparse", "operator"))
    if kind != "dense":
        return "randomized"
    small = min(m, n)
    if small <= AUTO_DENSE_MAX_SIDE or rank > AUTO_DENSE_RANK_FRACTION * small:
        return "exact"
    return "randomized"


def default_tol(dtype: Any) -> float:
    """The default ``tol`` of the accurate randomized method: ``DEFAULT_TOL_EPS`` machine
    epsilons of the compute dtype of ``dtype`` (about 4e-6 for float32, 7e-15 for float64).

    >>> default_tol("float32") == 32 * 2.0**-23
    True
    """
    return _krylov.default_tol(compute_dtype(as_dtype(dtype, name="dtype"), name="dtype"))


def default_block_size(
    shape: tuple[int, int], rank: int, *, preset: Literal["accurate", "fast"] = "accurate"
) -> int:
    """Block width of the adaptive block Krylov method (``block_size=None``) for a matrix of
    ``shape`` and a target ``rank``; see :func:`lowrank.svd._krylov.default_block_size`.

    >>> default_block_size((1000, 800), 10)
    16
    """
    m, n = check_matrix_shape(shape)
    r = check_rank(rank, upper=min(m, n), upper_text="min(shape)")
    check_choice(preset, name="preset", choices=("accurate", "fast"))
    return _krylov.default_block_size((m, n), r, preset=preset)


def fix_signs(U: Array, S: Array, Vh: Array) -> tuple[Array, Array, Array]:
    """Sort triplets by descending ``S`` and apply the sign rule of the module docstring.

    ``U`` is ``(m, r)``, ``S`` ``(r,)`` real and ``Vh`` ``(r, n)``; new arrays are returned
    (see :func:`lowrank.svd._result.fix_signs`), the inputs are not modified.

    >>> import numpy as np
    >>> U, S, Vh = fix_signs(-np.eye(2), np.array([1.0, 2.0]), np.eye(2))
    >>> U, S
    (array([[0., 1.],
           [1., 0.]]), array([2., 1.]))
    """
    u = as_matrix(U, name="U", allow_empty=True)
    s = as_vector(S, name="S")
    vh = as_matrix(Vh, name="Vh", allow_empty=True)
    if s.dtype.kind == "c":
        raise InputError(f"S must be real; got dtype {s.dtype.name}")
    if u.shape[1] != s.size or vh.shape[0] != s.size or (s.size and u.shape[0] == 0):
        raise ShapeError(
            f"U, S and Vh must have shapes (m, r) with m >= 1, (r,) and (r, n); got U {u.shape}, "
            f"S {s.shape}, Vh {vh.shape}"
        )
    return _result.fix_signs(u, s, vh)


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
    block_krylov = check_bool(block_krylov, name="block_krylov")
    if norm_fro is not None:
        norm_fro = check_positive_float(norm_fro, name="norm_fro", allow_zero=True)
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
    generator = normalize_rng(rng)
    if mat.norm_fro == 0.0:
        return _check_norm_fro(zero_result(mat, r, str(method)), norm_fro)
    if method == "exact":
        return _check_norm_fro(exact_svd(mat, r), norm_fro)
    if method == "randomized":
        result = randomized_svd(
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
        return _check_norm_fro(result, norm_fro)
    return _check_norm_fro(scipy_svds(mat, r, method, generator), norm_fro)


def _check_norm_fro(result: TruncatedSVD, norm_fro: float | None) -> TruncatedSVD:
    r"""Refuse a given ``norm_fro`` below the largest singular value (beyond rounding).

    :math:`\|A\|_F \ge \sigma_1` for every matrix, so such a value is not the Frobenius
    norm of ``A``; with a ``LinearOperator`` it would have made every residual and error
    estimate wrong.
    """
    if norm_fro is None or result.S.size == 0:
        return result
    top = float(result.S[0])
    slack = tolerance(result.S.dtype, size=max(result.shape), scale=top)
    if norm_fro < top - slack:
        raise InputError(
            f"norm_fro must be >= the largest singular value, since ||A||_F >= sigma_1; got "
            f"norm_fro={norm_fro!r} < S[0] = {top:.6g}: it is not the Frobenius norm of A"
        )
    return result
