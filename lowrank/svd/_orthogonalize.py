"""Block orthonormalisation for the Krylov methods: classical Gram-Schmidt against a basis,
SVQB in float64, Householder QR for ill-conditioned blocks, random refills."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import compute_eps, power_of_two_scale
from lowrank._typing import Array

# A direction whose norm after orthogonalisation is below this many epsilons (times the norm
# of the block before it) is treated as rounding noise and replaced by a random direction.
_DROP_EPS = 64.0
# Gram-Schmidt against the basis gets a second pass when a column keeps less than this
# fraction of its norm after the first.
_REORTH_KEEP = 0.5
# A block whose condition number kappa makes the loss of orthogonality of one pass of
# Gram-based orthonormalisation in float64, about eps64 * kappa**2, exceed this fraction of
# the compute dtype's epsilon gets a second pass (always, in double precision).
_SECOND_PASS_FRACTION = 1.0 / 16.0
# Beyond this condition number a block is orthonormalised by Householder QR instead.
_HOUSEHOLDER_COND = 1e4
# Singular values below this fraction of the largest are not resolved by a float64 Gram.
_GRAM_RESOLUTION = 1e-6


def wide_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype(np.complex128 if dtype.kind == "c" else np.float64)


def gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype[Any]) -> Array:
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
    C = np.zeros((K.shape[1], Y.shape[1]), dtype=wide_dtype(Y.dtype))
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
    wide = wide_dtype(Y.dtype)
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


def orthonormalize(
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
    C = np.zeros((K.shape[1], Y.shape[1]), dtype=wide_dtype(dtype))
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
        Z = gaussian(rng, (Y.shape[0], missing), dtype)
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
    wide = wide_dtype(Y.dtype)
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


class Basis:
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
