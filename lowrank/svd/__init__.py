r"""Truncated singular value decomposition: exact, randomized and iterative, one interface.

:func:`truncated_svd` returns the leading ``rank`` singular triplets of a matrix as a
a :class:`TruncatedSVDResult` with fields ``U`` (m, r), ``S`` (r,) and ``Vh`` (r, n), like NumPy 2's
``SVDResult``, such that :math:`A \approx U \operatorname{diag}(S) V^H`.

Conventions shared by every method
----------------------------------
* ``S`` is real, non-negative and descending.
* **Sign rule.** In each column of ``U`` the entry of largest magnitude (the first one on
  ties) is made real and positive (for complex data: real to rounding, its imaginary part
  about the dtype's epsilon times its modulus); the matching row of ``Vh`` is multiplied by
  the conjugate phase, so ``U diag(S) Vh`` is unchanged. For distinct singular values this
  makes the result unique, whatever the method.
* **dtypes.** float32 and complex64 stay in single precision end to end; float16, bfloat16
  and float8 are computed (and returned) in float32; integers in float64.
* **Randomness** comes only from ``rng`` (``None``, an int seed or a ``Generator``), so
  results are reproducible given an int seed or a ``Generator`` in a known state; with
  ``None`` (fresh entropy) two calls of a random method may differ, by up to its
  tolerance.

:func:`singular_values` returns all singular values (for rank–error curves), by LAPACK or by
the eigenvalues of the Gram matrix accumulated in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from lowrank._numerics import frobenius_norm, tolerance
from lowrank._operator import MatrixInput, as_matrix_input, safe_scale, scaled_input
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
from lowrank.errors import ConvergenceError, InputError, ShapeError
from lowrank.svd import _krylov, _result
from lowrank.svd._krylov import DEFAULT_TOL_EPS, FAST_TOL, randomized_svd
from lowrank.svd._lapack import exact_svd, zero_result
from lowrank.svd._result import RandomizedDiagnostics, TruncatedSVDResult
from lowrank.svd._svds import scipy_svds
from lowrank.svd._values import singular_values

__all__ = [
    "DEFAULT_TOL_EPS",
    "FAST_TOL",
    "SVD_METHODS",
    "RandomizedDiagnostics",
    "TruncatedSVDResult",
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

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)`` of the matrix.
    rank : int
        The number of triplets wanted, ``0 <= rank <= min(shape)``.
    kind : {"dense", "sparse", "operator"}, default "dense"
        What the matrix is.

    Returns
    -------
    str
        ``"exact"`` or ``"randomized"``.

    Raises
    ------
    ShapeError, RankError, InputError
        A bad ``shape``, ``rank`` or ``kind``.

    Examples
    --------
    >>> auto_method((4096, 4096), 64), auto_method((200, 4096), 64)
    ('randomized', 'exact')
    >>> auto_method((10, 10), 2, kind="sparse")
    'randomized'
    """
    m, n = check_matrix_shape(shape)
    rank = check_rank(rank, upper=min(m, n), upper_text="min(shape)")
    check_choice(kind, name="kind", choices=("dense", "sparse", "operator"))
    return _auto_method((m, n), rank, kind)


def _auto_method(shape: tuple[int, int], rank: int, kind: str) -> str:
    if kind != "dense":
        return "randomized"
    small = min(shape)
    if small <= AUTO_DENSE_MAX_SIDE or rank > AUTO_DENSE_RANK_FRACTION * small:
        return "exact"
    return "randomized"


def default_tol(dtype: Any) -> float:
    """The default ``value_tol`` of the randomized method: ``DEFAULT_TOL_EPS`` machine
    epsilons of the compute dtype of ``dtype`` (about 4e-6 for float32, 7e-15 for float64).

    Parameters
    ----------
    dtype : dtype or str
        The dtype of the matrix; float16 and bfloat16 are computed in float32, integers in
        float64.

    Returns
    -------
    float

    Raises
    ------
    DTypeError
        ``dtype`` is not numeric.

    Examples
    --------
    >>> default_tol("float32") == 32 * 2.0**-23
    True
    """
    return _krylov.default_tol(compute_dtype(as_dtype(dtype, name="dtype"), name="dtype"))


def default_block_size(
    shape: tuple[int, int], rank: int, *, criterion: Literal["values", "excess"] = "values"
) -> int:
    """Block width of the adaptive block Krylov method (``block_size=None``).

    Products with a block of ``b`` columns cost about as much as a matrix–vector product
    while ``b`` is small, so narrow blocks waste passes; wider blocks converge in fewer
    passes to a larger space, whose orthogonalisation grows with its square. The widths were
    chosen on the benchmark matrices (``benchmarks/RESULTS.md``): 16, 24 and 32 columns for
    ranks below 64, below 128 and above when converging the values; ``rank/2 + 8`` (16 to
    64) when converging the residual, which stops after few steps, where wide blocks pay.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)`` of the matrix.
    rank : int
        The target rank, ``0 <= rank <= min(shape)``.
    criterion : {"values", "excess"}, default "values"
        What the adaptive method converges: the singular values (``value_tol``) or the
        Frobenius residual (``excess_tol``).

    Returns
    -------
    int
        Columns per block, at most ``min(shape)``.

    Raises
    ------
    ShapeError, RankError, InputError
        A bad ``shape``, ``rank`` or ``criterion``.

    Examples
    --------
    >>> default_block_size((1000, 800), 10), default_block_size((1000, 800), 64, criterion="excess")
    (16, 40)
    """
    m, n = check_matrix_shape(shape)
    r = check_rank(rank, upper=min(m, n), upper_text="min(shape)")
    check_choice(criterion, name="criterion", choices=("values", "excess"))
    return _krylov.default_block_size((m, n), r, criterion=criterion)


def fix_signs(U: Array, S: Array, Vh: Array) -> tuple[Array, Array, Array]:
    """Sort triplets by descending ``S`` and apply the sign rule of the module docstring.

    Parameters
    ----------
    U : array_like, shape (m, r)
        Left singular vectors.
    S : array_like, shape (r,)
        Singular values, real.
    Vh : array_like, shape (r, n)
        Right singular vectors, conjugate-transposed.

    Returns
    -------
    U, S, Vh : ndarray
        New arrays (the inputs are not modified): sorted by descending ``S``, and in each
        column of ``U`` the largest-magnitude entry (the first on ties) real positive, with
        ``U diag(S) Vh`` unchanged.

    Raises
    ------
    ShapeError, InputError
        Shapes that do not fit together, or complex ``S``.

    Examples
    --------
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
    rng: RNGLike = None,
    norm_fro: float | None = None,
    value_tol: float | None = None,
    excess_tol: float | None = None,
    max_iter: int | None = None,
    n_iter: int | None = None,
    oversample: int | None = None,
    block_size: int | None = None,
    block_krylov: bool = True,
) -> TruncatedSVDResult:
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
        block), by default run until the top singular values have converged to
        ``value_tol`` (see Notes); with ``block_krylov=False``, the Halko–Martinsson–Tropp power
        iteration. ``"arpack"``, ``"propack"``, ``"lobpcg"``:
        :func:`scipy.sparse.linalg.svds` with that solver, sorted and signed like the others.
        ``"auto"``: see :func:`auto_method`; the choice is recorded in ``result.method``.
    rng : None, int or numpy.random.Generator
        Source of the random test matrices (randomized, and the start vectors of ``svds``).
    norm_fro : float, optional
        :math:`\|A\|_F` of a ``LinearOperator`` if known; otherwise it is computed exactly
        with ``n`` products (dense and sparse inputs compute it from their entries). A value
        below the norm of the singular values found is refused. For an operator it is first
        checked with one product by four Gaussian columns (from a fixed internal seed, so
        ``rng`` is not used): refused when below :math:`\|A\omega\|/\|\omega\|` (certain,
        as :math:`\|A\omega\|/\|\omega\| \le \sigma_1 \le \|A\|_F`; by more than 16
        times before the solve, otherwise after it) or above :math:`10^6` times the
        estimate :math:`(\|A\Omega\|_F^2/4)^{1/2}` (for the true norm this happens with
        probability below :math:`10^{-23}`, at worst for a rank-1 ``A``). A given 0 is
        confirmed by computing the norm.
    value_tol : float, optional
        Randomized, adaptive: the relative accuracy of the top ``rank`` singular values to
        converge, ``0 < value_tol < 1``. The default when neither ``value_tol`` nor
        ``excess_tol`` is given, as :func:`default_tol`: 32 machine epsilons of the compute
        dtype (about 4e-6 in single, 7e-15 in double precision: working precision).
    excess_tol : float, optional
        Randomized, adaptive: converge instead the relative excess of the Frobenius residual
        over its Eckart–Young–Mirsky optimum, ``0 < excess_tol < 1`` (``FAST_TOL`` = 5e-4 is
        a good value): a near-optimal rank-r approximation for a fraction of the passes,
        with top singular values that may be off by a percent on slowly decaying spectra.
    max_iter : int, optional
        Randomized, adaptive: at most this many Krylov blocks beyond the first (refused when
        they cannot hold ``rank`` directions). Default: until the space has
        ``min(min(m, n), 12 * rank + 512)`` columns.
    n_iter : int, optional
        Randomized, fixed cost: exactly this many Krylov blocks beyond the first (power
        iterations with ``block_krylov=False``, default 6 there), of ``rank + oversample``
        columns each: HMT's block Krylov method, ``2 (n_iter + 1)`` passes over ``A``, no
        convergence check (``converged`` is ``None``), unless fewer blocks already span a
        whole side of ``A``: then the result is exact (``converged`` True, the
        ``diagnostics`` count the blocks used). Refused when the blocks cannot hold
        ``rank`` directions. Excludes ``value_tol``, ``excess_tol`` and ``max_iter``.
    oversample : int, optional
        Randomized with ``n_iter`` or ``block_krylov=False``: columns per block beyond
        ``rank`` (default 10).
    block_size : int, optional
        Randomized block Krylov: columns per block (default :func:`default_block_size`
        for the adaptive method, ``rank + oversample`` with ``n_iter``).
    block_krylov : bool, default True
        Use the whole Krylov space for the Rayleigh–Ritz step; ``False`` runs subspace
        (power) iteration with ``n_iter`` and ``oversample`` and keeps the last block only.

    Returns
    -------
    TruncatedSVDResult
        ``U`` (m, rank), ``S`` (rank,), ``Vh`` (rank, n) in the compute dtype of ``A``; it
        unpacks as ``U, S, Vh``. Also the residual and optimality information, whether the
        target was met (``converged``), and for the randomized method its passes, space and
        error estimates (``diagnostics``).

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
        An option is out of range, options that exclude each other were combined (see the
        table in Notes), ``method="exact"`` got a ``LinearOperator``, a ``LinearOperator``
        has no ``rmatvec``, ``A`` is a masked array with masked entries, or ``norm_fro``
        is not the Frobenius norm of ``A`` (see ``norm_fro``).
    ConvergenceError
        LAPACK or ``svds`` failed to converge (in the randomized method's small dense
        steps too), an ``svds`` triplet's residual exceeds its limit, or the ``svds``
        result missed a singular value above ``S[-1]`` (see Notes).

    Notes
    -----
    **The randomized method's options**, one meaning each:

    ==================  ==============================  ===================================
    mode                options                         stops when
    ==================  ==============================  ===================================
    adaptive (default)  ``value_tol``, ``max_iter``,    the top values' estimated relative
                        ``block_size``                  error is below ``value_tol``
    adaptive, residual  ``excess_tol``, ``max_iter``,   the estimated Frobenius excess is
                        ``block_size``                  below ``excess_tol``
    fixed cost          ``n_iter``, ``oversample``,     after ``n_iter + 1`` blocks
                        ``block_size``
    power iteration     ``block_krylov=False``,         after ``n_iter`` power iterations
                        ``n_iter``, ``oversample``
    ==================  ==============================  ===================================

    Options from two rows are refused. ``method="auto"`` may choose ``"exact"``, which
    meets every target and ignores them; the other methods refuse them.

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
    :math:`(\|A\|_F^2 - \|S\|^2)^{1/2}` (see :attr:`TruncatedSVDResult.residual_fro`), and each Ritz
    value is a lower bound of the singular value of the same index.

    **Adaptive stopping.** The Ritz values increase monotonically with the Krylov space.
    They are computed (values only) on a schedule that keeps these checks below about half
    of the work — once the space has 384 columns, from the block bidiagonal part of
    :math:`B` (the coefficients against older blocks are rounding noise), which small QR
    factorisations turn into a band as wide as the block, so LAPACK ``dsbev`` takes
    :math:`O(k^2b^3)` instead of :math:`O(k^3b^3)`; a claim of convergence is checked again
    on the exact :math:`B`. With :math:`d_i` the relative increase of
    :math:`\tilde\sigma_i` since the previous check and :math:`\rho_i` its per-step
    contraction between the last two checks, the remaining error is estimated as
    :math:`\max_i d_i\,\rho_i^\Delta/(1-\rho_i^\Delta)` (:math:`\Delta` steps between
    checks), or as how far a Ritz value below :math:`\tilde\sigma_i` would pass it with
    one more interval of its growth when that is more (:math:`\sigma_i \ge \sigma_j` for
    :math:`j > i`; a value that converged quickly to the edge of a close pair across it
    looks converged by its own growth). The iteration stops when that is below
    ``value_tol`` — if the previous check's estimate was not exceeded by the growth since
    (a rate fitted across a change of convergence phase is too optimistic), if the
    residuals :math:`\|Av_i - \tilde\sigma_i u_i\|` of the top triplets (from the next
    step's first product, :math:`A^H u_i = \tilde\sigma_i v_i` holds exactly) bound the
    errors within ``value_tol`` by the linear and Kato–Temple quadratic residual bounds,
    the gaps taken to the neighbouring Ritz values (an unresolved cluster has large
    residuals and small gaps), and if no run
    of nearly equal Ritz values may hide further copies of a repeated singular value (a
    block Krylov space holds at most one direction per start vector of each singular
    subspace: a plateau longer than the block — counting values still climbing into it —
    is widened with fresh random directions and converged again, at least once even
    when its values agree within ``value_tol``, since a value just above it emerges
    slowly). With
    ``excess_tol`` the same is done for the captured energy :math:`\sum_{i\le r}
    \tilde\sigma_i^2`, value by value; a value whose growth does not shrink yet (near the
    rank of a flat spectrum) is capped by the extrapolated end of the values above it,
    since :math:`\sigma_i \le \sigma_j` for :math:`j < i`. Krylov convergence
    accelerates, so this geometric model tends to over-estimate the error once convergence
    has set in (on the benchmark's flat spectra with ``excess_tol=5e-4`` the excess
    estimate was 1.0-1.9 times the true excess at the stop, and 0.85 times it at one
    earlier check); the estimates are returned in ``diagnostics``. The space is capped at
    ``min(min(m, n), 12 * rank + 512)`` columns, or ``max_iter + 1`` blocks (``converged``
    is then False). When ``converged`` is True the true error was within a few times the
    target on every spectrum of the project's tests (plateaus and clusters around the
    block size, gaps at the rank, rank-deficient matrices, power laws, Marchenko–Pastur
    bulks with spikes; worst ratio 4.4 over 3,000 of them, and 2.7 over 4,500 more with
    the current error model, which also counts a lower value that would overtake).

    **What a claim of convergence covers.** Errors are counted beyond the rounding level of
    a backward-stable SVD in the compute dtype, which no method goes below (LAPACK on the
    same data included): about :math:`\varepsilon\sqrt{\max(m, n)}\,\sigma_1` absolute
    per value and :math:`\varepsilon\sqrt{\max(m, n)}\,\|A\|_F` on the Frobenius
    residual. ``value_tol`` is relative to each value, so a value below about
    :math:`\varepsilon\sigma_1/\text{value\_tol}` reaches that level before it
    reaches ``value_tol``: its Ritz value stops moving at the rounding level, which counts
    as converged, and ``value_estimate`` then reports that level (it may exceed
    ``value_tol``). For example, in float32 with values from 3 to 1 followed by values
    near 1e-4 inside the top 20, the 19th value came out 1.9 % off with ``converged=True``
    (float32 LAPACK: 0.6 % off; in float64 the same call is off by 3e-13). The same holds
    for ``excess_tol`` when the optimal residual is at the rounding level of the captured
    energy, about :math:`(\varepsilon\sigma_1\sum_{i\le r}\sigma_i)^{1/2}` (a matrix of
    rank below ``rank``); above that, energy that stops moving at its rounding level is
    not taken for convergence (``excess_estimate`` reports the residual's uncertainty it
    leaves, and the space grows on).
    Where such values matter, compute in float64.

    **The svds methods** (``"arpack"``, ``"propack"``, ``"lobpcg"``). SciPy's result is
    finished by a Rayleigh–Ritz step: the right vectors are orthonormalised,
    :math:`AV = \tilde U\Sigma W^H` (LAPACK), :math:`U = \tilde U`, :math:`S = \Sigma`,
    :math:`V \leftarrow VW`, so ``U`` and ``V`` are orthonormal to working precision and
    :math:`S = \operatorname{diag}(U^HAV)`. The result is returned only when two checks
    pass, else ``ConvergenceError``. (1) Every triplet's residual
    :math:`\rho_i = (\|Av_i - s_iu_i\|^2 + \|A^Hu_i - s_iv_i\|^2)^{1/2}` is at most
    :math:`\sqrt\varepsilon\,\sigma_1` (plus :math:`\varepsilon^{1/4}s_i` for
    ``"lobpcg"``), so each :math:`s_i` is within :math:`\rho_i/\sqrt2` of a singular
    value of ``A``. This accuracy is *absolute*: values far below
    :math:`\sqrt\varepsilon\,\sigma_1` (1.5e-8 :math:`\sigma_1` in double, 3.5e-4
    :math:`\sigma_1` in single precision) may have no correct digit (ARPACK returns 1e-10 as
    4e-11 next to values of 1); use ``"exact"`` or ``"randomized"`` for those. (2) Six
    steps of randomized block Lanczos on the deflated matrix
    :math:`(I - UU^H)A(I - VV^H)`, started from ``rng``, found no singular value above
    ``S[-1]`` beyond the residuals' and rounding's slack (``svds`` can miss copies of a
    repeated value and still return true triplets: PROPACK returned [1, 1, 0.5] for
    [1, 1, 1, 0.5, ...]). This check is probabilistic: a random start finds a missed
    value with probability 1 in exact arithmetic, but one barely above ``S[-1]`` can go
    unseen in six steps. The checks cost two products with ``rank`` columns and eleven
    with four.

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
    >>> bool(fit.converged), fit.diagnostics.value_estimate < 1e-6
    (True, True)
    """
    options = svd_options(
        method,
        value_tol=value_tol,
        excess_tol=excess_tol,
        max_iter=max_iter,
        n_iter=n_iter,
        oversample=oversample,
        block_size=block_size,
        block_krylov=block_krylov,
    )
    if norm_fro is not None:
        norm_fro = check_positive_float(norm_fro, name="norm_fro", allow_zero=True)
    mat = as_matrix_input(A, norm_fro=norm_fro)
    m, n = mat.shape
    r = check_rank(rank, upper=min(m, n))
    chosen = _auto_method(mat.shape, r, mat.kind) if method == "auto" else str(method)
    if chosen in ("arpack", "lobpcg") and r == min(m, n) and r > 0:
        raise InputError(
            f"method={chosen!r} needs rank < min(A.shape) = {min(m, n)}; got rank={r} "
            f"(use method='exact' for a full decomposition)"
        )
    if chosen == "arpack" and mat.dtype.kind == "c" and r >= min(m, n) - 1 and r > 0:
        raise InputError(
            f"method='arpack' on complex input needs rank < min(A.shape) - 1 = "
            f"{min(m, n) - 1}; got rank={r} (use method='exact' or 'propack')"
        )
    generator = normalize_rng(rng)
    probe_lower = 0.0
    if norm_fro is not None and mat.kind == "operator":
        probe_lower = _probe_norm_fro(mat, norm_fro)
        if norm_fro == 0.0:
            # The zero shortcut of svd_of is for a zero norm computed from A, never a
            # caller's: a zero probe is near-certain, not certain, evidence.
            mat = replace(mat, norm_fro=None)
    result = svd_of(mat, r, method=chosen, options=options, rng=generator)
    return _check_norm_fro(result, norm_fro, probe_lower)


SVD_OPTION_NAMES: tuple[str, ...] = (
    "value_tol",
    "excess_tol",
    "max_iter",
    "n_iter",
    "oversample",
    "block_size",
    "block_krylov",
)
"""The keywords of the randomized method's options (see :func:`truncated_svd`, Notes)."""


def svd_options(method: object, **options: Any) -> RandomizedOptions:
    """Check ``method`` and the randomized method's ``options`` (keywords of
    :func:`truncated_svd`) once, for :func:`svd_of`: the options apply to
    ``"randomized"`` and ``"auto"`` only."""
    check_choice(method, name="method", choices=SVD_METHODS)
    checked = randomized_options(**options)
    if method not in ("auto", "randomized") and checked.given:
        raise InputError(
            f"{', '.join(checked.given)} apply to method='randomized'; got method={method!r}"
        )
    return checked


@dataclass(frozen=True)
class RandomizedOptions:
    """The randomized method's options, checked (see :func:`truncated_svd`, Notes)."""

    value_tol: float | None = None
    excess_tol: float | None = None
    max_iter: int | None = None
    n_iter: int | None = None
    oversample: int | None = None
    block_size: int | None = None
    block_krylov: bool = True
    given: tuple[str, ...] = ()


def randomized_options(
    *,
    value_tol: object = None,
    excess_tol: object = None,
    max_iter: object = None,
    n_iter: object = None,
    oversample: object = None,
    block_size: object = None,
    block_krylov: object = True,
) -> RandomizedOptions:
    """Check the randomized method's options once (the rules of :func:`truncated_svd`,
    Notes); for internal callers that then call :func:`svd_of`."""

    def tol_of(value: object, name: str) -> float | None:
        if value is None:
            return None
        tol = check_positive_float(value, name=name)
        if tol >= 1.0:
            raise InputError(f"{name} must satisfy 0 < {name} < 1; got {tol!r}")
        return tol

    def int_of(value: object, name: str, minimum: int) -> int | None:
        return None if value is None else check_int(value, name=name, minimum=minimum)

    options = RandomizedOptions(
        value_tol=tol_of(value_tol, "value_tol"),
        excess_tol=tol_of(excess_tol, "excess_tol"),
        max_iter=int_of(max_iter, "max_iter", 0),
        n_iter=int_of(n_iter, "n_iter", 0),
        oversample=int_of(oversample, "oversample", 0),
        block_size=int_of(block_size, "block_size", 1),
        block_krylov=check_bool(block_krylov, name="block_krylov"),
    )
    raw = {
        "value_tol": value_tol,
        "excess_tol": excess_tol,
        "max_iter": max_iter,
        "n_iter": n_iter,
        "oversample": oversample,
        "block_size": block_size,
    }
    given = tuple(name for name, value in raw.items() if value is not None)
    if not block_krylov:
        given = (*given, "block_krylov=False")
    adaptive = [name for name in ("value_tol", "excess_tol", "max_iter") if raw[name] is not None]
    if value_tol is not None and excess_tol is not None:
        raise InputError(
            "value_tol and excess_tol are two targets of the adaptive method; give one"
        )
    if adaptive and (n_iter is not None or not block_krylov):
        fixed = "n_iter" if n_iter is not None else "block_krylov=False"
        raise InputError(
            f"{' and '.join(adaptive)} belong to the adaptive method, {fixed} to a fixed "
            f"number of iterations; give one or the other"
        )
    if oversample is not None and n_iter is None and block_krylov:
        raise InputError(
            "oversample applies with n_iter or block_krylov=False; the adaptive method sizes "
            "its blocks by block_size"
        )
    if block_size is not None and not block_krylov:
        raise InputError(
            "block_size applies to the block Krylov method; power iteration "
            "(block_krylov=False) uses blocks of rank + oversample"
        )
    return replace(options, given=given)


def svd_of(
    mat: MatrixInput,
    rank: int,
    *,
    method: str,
    options: RandomizedOptions = RandomizedOptions(),
    rng: np.random.Generator | None = None,
) -> TruncatedSVDResult:
    """The body of :func:`truncated_svd` for checked input: ``mat`` from
    :func:`lowrank._operator.as_matrix_input` (or :func:`~lowrank._operator.dense_input`),
    ``0 <= rank <= min(mat.shape)``, a method and options from :func:`randomized_options`.
    Internal callers that have validated their input call this, not the public function.
    ``rng`` may be omitted for ``"exact"`` only (the others draw random vectors).
    """
    if rng is None:
        if method != "exact":
            raise InputError(f"method={method!r} needs an rng")
        rng = np.random.default_rng(0)
    if method == "auto":
        method = _auto_method(mat.shape, rank, mat.kind)
    if mat.norm_fro == 0.0:
        return zero_result(mat, rank, method)
    if method == "exact":
        return exact_svd(mat, rank)
    if mat.norm_fro is None:
        # An operator's norm costs n products: computed once here, not by each user.
        norm = mat.frobenius_norm()
        mat = replace(mat, norm_fro=norm)
        if not math.isfinite(norm):
            raise InputError(
                "the Frobenius norm of the LinearOperator A exceeds the float64 range; "
                "scale it down"
            )
        if mat.norm_fro == 0.0:
            return zero_result(mat, rank, method)
    factor = safe_scale(mat, strict=method != "randomized")
    if factor != 1.0:
        # LAPACK scales internally; the iterative methods square values in float64 and
        # multiply in the compute dtype, and SciPy's solvers have absolute tolerances, so
        # they run on 2**k A with ||2**k A||_F near 1.
        found = _iterative_svd(scaled_input(mat, factor), rank, method, options, rng)
        unit = found.S.dtype.type(factor)
        return replace(
            found,
            S=found.S / unit,
            spectrum=found.spectrum / unit,
            norm_fro=found.norm_fro / factor,
        )
    return _iterative_svd(mat, rank, method, options, rng)


def _iterative_svd(
    mat: MatrixInput,
    rank: int,
    method: str,
    options: RandomizedOptions,
    rng: np.random.Generator,
) -> TruncatedSVDResult:
    """The randomized method or SciPy's ``svds`` on a matrix of moderate scale."""
    if method == "randomized":
        try:
            return randomized_svd(
                mat,
                rank,
                n_iter=options.n_iter,
                max_iter=options.max_iter,
                value_tol=options.value_tol,
                excess_tol=options.excess_tol,
                oversample=10 if options.oversample is None else options.oversample,
                block_size=options.block_size,
                block_krylov=options.block_krylov,
                rng=rng,
            )
        except np.linalg.LinAlgError as exc:
            # The small dense steps (eigendecompositions of Gram matrices, the SVD of B)
            # run in LAPACK, which reports non-convergence as LinAlgError.
            raise ConvergenceError(
                f"the randomized method failed: LAPACK did not converge on one of its small "
                f"dense steps for a {mat.shape} matrix ({exc})"
            ) from None
    return scipy_svds(mat, rank, method, rng)


# The probe of a caller's norm_fro (see _probe_norm_fro): Gaussian columns, and the
# factor above the probe's estimate of ||A||_F beyond which the value is refused.
_PROBE_COLUMNS = 4
_PROBE_MAX_RATIO = 1e6
# A value this many times below the probe's certain lower bound is refused before the
# solve, where it would set the prescaling (safe_scale); one closer to the bound moves that
# scaling by at most 2**4 (the svds methods' scaled norm stays within 2**+-8 of 1) and is
# refused after the solve by _check_norm_fro, against the singular values found as well.
_PROBE_MIN_RATIO = 16.0
# A fixed seed: the probe neither draws from nor advances the caller's rng, so results stay
# a function of (A, rng), and the probe is the same on every call.
_PROBE_SEED = 0x5EED_F0B


def _probe_norm_fro(mat: MatrixInput, norm_fro: float) -> float:
    r"""Check a caller's ``norm_fro`` for a LinearOperator with one product by four
    Gaussian columns, before it sets the prescaling; return the probe's lower bound.

    *Too small.* :math:`\|A\omega\|/\|\omega\| \le \sigma_1 \le \|A\|_F` for every
    :math:`\omega`, so the largest ratio of the four is a certain lower bound (``0.0`` for
    the zero matrix). Before the fix ``norm_fro=0`` returned the zero matrix's SVD with
    ``converged=True``, and ``1e-300`` made the prescaling (by ``2**1000``) overflow.

    *Too large.* For a Gaussian :math:`\Omega` with :math:`k` columns,
    :math:`\|A\Omega\|_F^2 = \sum_i \sigma_i^2 X_i` with :math:`X_i` distributed as
    :math:`\chi^2_k` (for a complex ``A`` and real :math:`\Omega`, mixtures with the same
    mean and a thinner lower tail), mean :math:`k\|A\|_F^2`. The
    estimate :math:`(\|A\Omega\|_F^2/k)^{1/2}` is smallest relative to :math:`\|A\|_F`
    for a rank-1 ``A``, where it falls below :math:`10^{-6}\|A\|_F` with probability
    :math:`P(\chi^2_4 < 4\cdot10^{-12}) = 1 - e^{-y}(1 + y) \approx y^2/2 = 2\cdot10^{-24}`
    (:math:`y = 2\cdot10^{-12}`): the chance of refusing a true norm. (``1e300`` for a
    norm of 1.7 was accepted with ``residual_fro = 1e300``, or failed in LAPACK.)
    """
    k = _PROBE_COLUMNS
    gaussian = np.random.default_rng(_PROBE_SEED).standard_normal((mat.shape[1], k))
    omega = gaussian.astype(mat.dtype)
    product = mat.matmat(omega)
    lower = max(frobenius_norm(product[:, j]) / frobenius_norm(omega[:, j]) for j in range(k))
    estimate = frobenius_norm(product) / math.sqrt(k)
    if norm_fro * _PROBE_MIN_RATIO < lower:
        raise InputError(
            f"norm_fro must be >= ||A w|| / ||w|| for every vector w, since ||A||_F >= "
            f"sigma_1 >= ||A w|| / ||w||; got norm_fro={norm_fro!r}, more than "
            f"{_PROBE_MIN_RATIO:g} times below {lower:.6g} for a random w: it is not the "
            "Frobenius norm of A"
        )
    if norm_fro > _PROBE_MAX_RATIO * estimate:
        raise InputError(
            f"norm_fro={norm_fro!r} is more than {_PROBE_MAX_RATIO:g} times the estimate "
            f"{estimate:.6g} of ||A||_F from {k} random Gaussian products (that happens to "
            "the true norm with probability below 1e-23): it is not the Frobenius norm of A"
        )
    return lower


def _check_norm_fro(
    result: TruncatedSVDResult, norm_fro: float | None, probe_lower: float = 0.0
) -> TruncatedSVDResult:
    r"""Refuse a given ``norm_fro`` below the norm of the singular values found, or below
    the lower bound ``probe_lower`` of :func:`_probe_norm_fro` (beyond rounding).

    :math:`\|A\|_F^2 = \sum_i\sigma_i^2 \ge \sum_{i\le r}\tilde\sigma_i^2` (Ritz values
    are lower bounds), so such a value is not the Frobenius norm of ``A``; with a
    ``LinearOperator`` it would have made every residual and error estimate wrong (half
    the true norm gave ``residual_fro = 0`` and an infinite excess estimate).
    """
    if norm_fro is None:
        return result
    top = float(result.S[0]) if result.S.size else 0.0
    captured = float(np.linalg.norm(result.S.astype(np.float64)))
    floor = max(captured, probe_lower)
    slack = tolerance(result.S.dtype, size=max(result.shape), scale=floor)
    if norm_fro < floor - slack:
        probe = f", ||A w|| / ||w|| = {probe_lower:.6g} for a random w" if probe_lower else ""
        raise InputError(
            f"norm_fro must be >= the norm of the singular values found, since ||A||_F >= "
            f"||S|| and ||A||_F >= sigma_1 >= ||A w|| / ||w|| for every w; got "
            f"norm_fro={norm_fro!r} < {floor:.6g} (S[0] = {top:.6g}, ||S|| = "
            f"{captured:.6g}{probe}): it is not the Frobenius norm of A"
        )
    return result
