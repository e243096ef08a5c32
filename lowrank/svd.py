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

import math
from dataclasses import dataclass
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
    check_rank,
    normalize_rng,
)
from lowrank.errors import ConvergenceError, InputError

__all__ = [
    "SVD_METHODS",
    "TruncatedSVD",
    "auto_method",
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
        Power or Krylov iterations (randomized), or 0.
    oversample : int
        Extra sketch columns beyond ``rank`` (randomized), or 0.
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
        :math:`|\Delta(\|A\|_F^2 - \|S\|^2)| \le 2 c \varepsilon \sigma_1 \sum_i \sigma_i +
        2\varepsilon_{64}\|A\|_F^2 =: \delta`, and the residual :math:`\rho` is off by at most
        :math:`\max(\sqrt{\rho^2+\delta}-\rho,\ \rho-\sqrt{\max(\rho^2-\delta, 0)})`: about
        :math:`\delta/(2\rho)` when :math:`\rho^2 \gg \delta`, at most :math:`\sqrt\delta`. With the whole
        spectrum known the tail sum is accurate to :math:`c\,\varepsilon\,\sigma_1`.
        """
        if self.rank == 0 and not self.spectrum_complete:
            return 4.0 * compute_eps(np.float64) * self.norm_fro
        eps = compute_eps(self.S.dtype)
        c = math.sqrt(max(self.shape))
        sigma1 = float(self.spectrum[0]) if self.spectrum.size else 0.0
        if self.spectrum_complete:
            return 4.0 * c * eps * sigma1
        delta = 2.0 * c * eps * sigma1 * float(np.sum(self.S, dtype=np.float64))
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
        return (self.U * self.S.astype(self.U.dtype)) @ self.Vh


def _pythagorean_residual(norm_fro: float, S: Array) -> float:
    scale = power_of_two_scale(max(norm_fro, float(S[0]) if S.size else 0.0))
    total = (norm_fro / scale) ** 2
    s = np.asarray(S, dtype=np.float64) / scale
    captured = float(np.dot(s[::-1], s[::-1]))
    return scale * math.sqrt(max(total - captured, 0.0))


def _fix_signs(U: Array, S: Array, Vh: Array) -> tuple[Array, Array, Array]:
    """Sort descending and apply the sign rule of the module docstring (new arrays)."""
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
        does not converge; only the leading triplets are kept. ``"randomized"``: the
        Halko–Martinsson–Tropp range finder with ``oversample`` extra columns and ``n_iter``
        passes, re-orthonormalised after every product, with a block Krylov basis when
        ``block_krylov``; then Rayleigh–Ritz. ``"arpack"``, ``"propack"``, ``"lobpcg"``:
        :func:`scipy.sparse.linalg.svds` with that solver, sorted and signed like the others.
        ``"auto"``: see :func:`auto_method`; the choice is recorded in ``result.method``.
    n_iter : int, optional
        Power (or Krylov) iterations of the randomized method. Default: 4 with
        ``block_krylov``, 6 without.
    oversample : int, default 10
        Extra sketch columns of the randomized method.
    block_krylov : bool, default True
        Use the whole Krylov space :math:`[Q_0, Q_1, \dots, Q_q]` for the Rayleigh–Ritz step
        instead of the last block only (subspace iteration).
    rng : None, int or numpy.random.Generator
        Source of the random test matrices (randomized, and the start vectors of ``svds``).
    norm_fro : float, optional
        :math:`\|A\|_F` of a ``LinearOperator`` if known; otherwise it is computed exactly
        with ``n`` products (dense and sparse inputs compute it from their entries).

    Returns
    -------
    TruncatedSVD
        ``U`` (m, rank), ``S`` (rank,), ``Vh`` (rank, n) in the compute dtype of ``A``, plus
        the residual and optimality information described there.

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
    The randomized method draws a Gaussian :math:`\Omega \in \mathbb{R}^{n\times\ell}`,
    :math:`\ell = r + p`, forms :math:`Q_0 = \operatorname{orth}(A\Omega)` and
    :math:`Q_{j} = \operatorname{orth}(A\,\operatorname{orth}(A^H Q_{j-1}))`, and computes the
    SVD of :math:`B = K^H A` with :math:`K` an orthonormal basis of the Krylov blocks (or
    :math:`Q_q` alone). Orthonormalising every product keeps single precision from losing
    the tail directions (unnormalised powers of :math:`A` underflow them). With :math:`q`
    iterations the expected spectral error is within a factor
    :math:`[1 + \sqrt{r/(p-1)} + e\sqrt{r+p}/p\,\sqrt{\min(m,n)-r}]^{1/(2q+1)}` of
    :math:`\sigma_{r+1}` (HMT Cor. 10.10); block Krylov converges like :math:`1/\sqrt\epsilon`
    iterations instead of :math:`1/\epsilon` (Musco & Musco 2015).

    References
    ----------
    .. [1] C. Eckart and G. Young, "The approximation of one matrix by another of lower
       rank", Psychometrika 1(3), 1936.
    .. [2] N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with randomness",
       SIAM Review 53(2), 2011, arXiv:0909.4061.
    .. [3] C. Musco and C. Musco, "Randomized block Krylov methods for stronger and faster
       approximate singular value decomposition", NeurIPS 2015.

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
    """
    check_choice(method, name="method", choices=SVD_METHODS)
    mat = as_matrix_input(A, norm_fro=norm_fro)
    m, n = mat.shape
    r = check_rank(rank, upper=min(m, n))
    oversample = check_int(oversample, name="oversample", minimum=0)
    if n_iter is not None:
        n_iter = check_int(n_iter, name="n_iter", minimum=0)
    if method == "auto":
        method = auto_method(mat.shape, r, kind=mat.kind)  # type: ignore[assignment]
    if method in ("arpack", "lobpcg") and r == min(m, n) and r > 0:
        raise InputError(
            f"method={method!r} needs rank < min(A.shape) = {min(m, n)}; got rank={r} "
            f"(use method='exact' for a full decomposition)"
        )
    generator = normalize_rng(rng)
    if method == "exact":
        return _exact(mat, r)
    if method == "randomized":
        iterations = n_iter if n_iter is not None else (4 if block_krylov else 6)
        return _randomized(mat, r, iterations, oversample, block_krylov, generator)
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
    U, S, Vh = _fix_signs(U[:, :rank], S[:rank], Vh[:rank])
    return TruncatedSVD(
        U=np.ascontiguousarray(U),
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method="exact",
        shape=mat.shape,
        norm_fro=mat.norm_fro if mat.norm_fro is not None else frobenius_norm(dense),
        spectrum=spectrum,
        spectrum_complete=True,
    )


def _orth(Y: Array) -> Array:
    """Orthonormal basis of the columns of ``Y`` (Householder QR, economic)."""
    q: Array = sla.qr(Y, mode="economic", overwrite_a=True, check_finite=False)[0]
    return q


def _gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype[Any]) -> Array:
    real = np.finfo(dtype).dtype
    if dtype.kind == "c":
        re = rng.standard_normal(shape, dtype=np.float64)
        im = rng.standard_normal(shape, dtype=np.float64)
        return (re + 1j * im).astype(dtype)
    return rng.standard_normal(shape, dtype=np.float64).astype(real)


def _randomized(
    mat: MatrixInput,
    rank: int,
    n_iter: int,
    oversample: int,
    block_krylov: bool,
    rng: np.random.Generator,
) -> TruncatedSVD:
    if rank == 0:
        return _empty(mat, "randomized")
    m, n = mat.shape
    width = min(rank + oversample, m, n)
    Q = _orth(mat.matmat(_gaussian(rng, (n, width), mat.dtype)))
    blocks = [Q]
    for _ in range(n_iter):
        Z = _orth(mat.rmatmat(Q))
        Q = _orth(mat.matmat(Z))
        if block_krylov:
            blocks.append(Q)
    if block_krylov and len(blocks) > 1:
        # One Householder QR of the whole Krylov space; with more columns than rows it
        # returns a square unitary Q, and the Ritz values below are then exact.
        Q = _orth(np.concatenate(blocks, axis=1))
    B = mat.rmatmat(Q).conj().T  # Q^H A, (width', n)
    Ub, S, Vh = _lapack_svd(B)
    spectrum = S.copy()
    U = Q @ Ub[:, :rank]
    U, S, Vh = _fix_signs(U, S[:rank], Vh[:rank])
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
    )


def _svds_kwargs(rng: np.random.Generator) -> dict[str, Any]:
    import inspect

    from scipy.sparse.linalg import svds

    params = inspect.signature(svds).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


def _svds(mat: MatrixInput, rank: int, solver: str, rng: np.random.Generator) -> TruncatedSVD:
    if rank == 0:
        return _empty(mat, solver)
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, svds

    if mat.dense is not None:
        target: Any = mat.dense
    elif mat.kind == "sparse":
        target = mat.operator
    else:
        op = mat.operator
        target = LinearOperator(
            mat.shape, matvec=op.matvec, rmatvec=op.rmatvec, matmat=op.matmat,
            rmatmat=op.rmatmat, dtype=mat.dtype,
        )
    try:
        U, S, Vh = svds(target, k=rank, solver=solver, **_svds_kwargs(rng))
    except (ArpackNoConvergence, np.linalg.LinAlgError) as exc:
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) did not converge for rank={rank} on a "
            f"{mat.shape} matrix ({exc}); try method='randomized' or method='exact'"
        ) from None
    real = np.finfo(mat.dtype).dtype
    U = np.asarray(U, dtype=mat.dtype)
    Vh = np.asarray(Vh, dtype=mat.dtype)
    S = np.asarray(S, dtype=real)
    _check_triplets(mat, U, S, Vh, solver)
    U, S, Vh = _fix_signs(U, S, Vh)
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
    (:math:`\sqrt\varepsilon \max(m, n)\,\sigma_1` for LOBPCG, its own default tolerance).

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
    limit = math.sqrt(compute_eps(mat.dtype)) * max(sigma1, np.finfo(np.float64).tiny)
    if solver == "lobpcg":
        # LOBPCG's own default stopping tolerance is sqrt(eps) * size, not machine precision.
        limit *= max(mat.shape)
    worst = int(np.argmax(rho))
    if float(rho[worst]) > limit:
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) returned an unconverged triplet: singular value "
            f"{float(s[worst]):.6g} has residual {float(rho[worst]):.3g} > {limit:.3g} "
            "(sqrt(eps) * sigma_1, times max(A.shape) for lobpcg); try method='randomized' "
            "or method='exact'"
        )


_GRAM_BLOCK_ROWS = 1024


def _gram_singular_values(a: Array) -> Array:
    """All singular values from the eigenvalues of the Gram matrix accumulated in float64."""
    if a.shape[0] < a.shape[1]:
        a = a.T
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    gram = np.zeros((a.shape[1], a.shape[1]), dtype=wide)
    for start in range(0, a.shape[0], _GRAM_BLOCK_ROWS):
        block = a[start : start + _GRAM_BLOCK_ROWS].astype(wide)
        gram += block.conj().T @ block
    evals = sla.eigvalsh(gram, overwrite_a=True, check_finite=False)
    return np.sqrt(np.clip(evals[::-1], 0.0, None))


def singular_values(
    A: Any, *, method: Literal["auto", "lapack", "gram"] = "auto"
) -> Array:
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
    The Gram route is faster than a values-only SVD and, for single-precision data, more
    accurate: float64 eigenvalues carry an absolute error of about
    :math:`\varepsilon_{64}\sqrt{n}\,\sigma_1^2`, so :math:`\sigma_i` is off by about
    :math:`\varepsilon_{64}\sqrt{n}\,\sigma_1^2/\sigma_i` — below a float32 LAPACK's
    :math:`\varepsilon_{32}\sigma_1` for every :math:`\sigma_i \gtrsim 10^{-6}\sigma_1`, and
    values below :math:`\sqrt{\varepsilon_{64}}\sigma_1 \approx 10^{-8}\sigma_1` are lost.
    That is why ``"auto"`` keeps LAPACK for float64 input, whose small singular values the
    Gram route would not resolve. The tail sums of a rank–error curve are accurate to
    :math:`\varepsilon_{64}\sqrt{n}\,\|A\|_F^2` either way.

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
            raise ConvergenceError(f"LAPACK failed to converge on a {a.shape} matrix: {exc}") from None
    return np.asarray(values, dtype=np.float64)
