"""The result of a truncated SVD and the sign rule."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lowrank._numerics import compute_eps, frobenius_norm, power_of_two_scale
from lowrank._typing import Array


@dataclass(frozen=True)
class RandomizedDiagnostics:
    r"""How the randomized method reached its result (``TruncatedSVDResult.diagnostics``).

    Attributes
    ----------
    scheme : {"block_krylov", "subspace"}
        Block Golub–Kahan–Lanczos (the whole Krylov space) or power (subspace) iteration.
    criterion : {"values", "excess"} or None
        What the adaptive method converged: the top singular values (``value_tol``) or the
        Frobenius residual (``excess_tol``); ``None`` for a fixed ``n_iter``.
    tol : float or None
        The target of ``criterion``, or ``None``.
    n_iter : int
        Krylov blocks beyond the first (power iterations for ``"subspace"``).
    block_size : int
        Columns per block.
    oversample : int
        Columns per block beyond ``rank`` (``max(block_size - rank, 0)``).
    subspace_dim : int
        Columns of the space of the Rayleigh–Ritz step.
    n_passes : int
        Products of ``A`` or :math:`A^H` with a block of vectors.
    value_estimate : float or None
        A-posteriori estimate of :math:`\max_{i\le r} |\tilde\sigma_i - \sigma_i| / \sigma_i`
        (0.0 when the space spanned the whole range); ``None`` for a fixed ``n_iter``.
    excess_estimate : float or None
        A-posteriori estimate of the relative excess of the Frobenius residual over the
        Eckart–Young–Mirsky optimum (the quantity
        :attr:`TruncatedSVDResult.excess_bound` bounds rigorously but loosely); ``None`` for
        a fixed ``n_iter``.
    """

    scheme: str
    criterion: str | None
    tol: float | None
    n_iter: int
    block_size: int
    oversample: int
    subspace_dim: int
    n_passes: int
    value_estimate: float | None = None
    excess_estimate: float | None = None


@dataclass(frozen=True, eq=False)
class TruncatedSVDResult:
    r"""The leading singular triplets of a matrix, with what is known about their error.

    Unpacks like the results of :func:`numpy.linalg.svd` and
    :func:`scipy.sparse.linalg.svds`: ``U, S, Vh = truncated_svd(A, r)``.

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
    converged : bool or None
        Whether the result meets its accuracy target: True for ``"exact"``; True for the
        ``svds`` solvers, which raise otherwise, meaning their checks passed (an absolute
        accuracy of :math:`\sqrt\varepsilon\,\sigma_1`, looser for LOBPCG); for the
        adaptive randomized method its verdict, errors counted beyond the rounding level of
        the compute dtype (False when it stopped at ``max_iter`` or its space limit first;
        see :func:`lowrank.truncated_svd`, Notes); ``None`` when nothing was checked (a
        fixed ``n_iter``).
    diagnostics : RandomizedDiagnostics or None
        The randomized method's passes, space and error estimates; ``None`` for the other
        methods.
    """

    U: Array
    S: Array
    Vh: Array
    method: str
    shape: tuple[int, int]
    norm_fro: float
    spectrum: Array
    spectrum_complete: bool
    converged: bool | None = True
    diagnostics: RandomizedDiagnostics | None = None

    def __iter__(self) -> Iterator[Array]:
        """``U, S, Vh``, so that the result unpacks like NumPy's and SciPy's."""
        return iter((self.U, self.S, self.Vh))

    def __len__(self) -> int:
        return 3

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
        result achieves :attr:`residual_fro`, so that plus its rounding error
        (:attr:`residual_fro_error`: the Pythagorean formula cancels when the residual is
        small, down to 0) is an upper bound. With the whole spectrum known both bounds equal
        :math:`e_r`. For a randomized sketch of width :math:`\ell` the Ritz values satisfy
        :math:`\tilde\sigma_i \le \sigma_i` (Cauchy interlacing), hence
        :math:`e_r^2 \ge \sum_{r<i\le\ell}\tilde\sigma_i^2`: a rigorous but loose lower
        bound, tight when the spectrum beyond :math:`\ell` is negligible, and 0 when only
        the top ``rank`` values are known (the ``svds`` methods).
        """
        residual = self.residual_fro
        if self.spectrum_complete:
            return residual, residual
        upper = residual + self.residual_fro_error
        extra = self.spectrum[self.rank :]
        lower = frobenius_norm(extra[::-1]) if extra.size else 0.0
        return min(lower, upper), upper

    @property
    def excess_bound(self) -> float:
        r"""Upper bound on the relative excess :math:`\|A - U\Sigma V^H\|_F / e_r - 1`,
        from :attr:`optimal_fro_bounds` (the residual's rounding included).

        0 for a result with the whole spectrum (exact), ``inf`` when the lower bound on
        :math:`e_r` is 0 (nothing is known: the ``svds`` methods, whose residual after
        cancellation could be 0 while the true excess was 1.6).
        """
        lower, upper = self.optimal_fro_bounds
        if self.spectrum_complete:
            return 0.0
        if lower == 0.0:
            return math.inf
        return max(upper / lower - 1.0, 0.0)

    def to_dense(self) -> Array:
        r"""The rank-r matrix :math:`U \operatorname{diag}(S) V^H` (forms an m×n array).

        Returns
        -------
        ndarray, shape (m, n)
            In the dtype of ``U``.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank import truncated_svd
        >>> truncated_svd(np.diag([3.0, 2.0, 1.0]), 1).to_dense()
        array([[3., 0., 0.],
               [0., 0., 0.],
               [0., 0., 0.]])
        """
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
