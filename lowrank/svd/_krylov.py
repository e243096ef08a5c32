"""Randomized methods: adaptive block Golub-Kahan-Lanczos and subspace iteration."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import compute_eps
from lowrank._operator import MatrixInput
from lowrank._typing import Array
from lowrank.errors import InputError
from lowrank.svd._banded import banded_ritz_values
from lowrank.svd._convergence import (
    NOISE_EPS,
    Progress,
    hidden_multiplicity,
    residual_value_bounds,
)
from lowrank.svd._lapack import empty_result, exact_svd, lapack_svd
from lowrank.svd._numpy_lapack import Tridiagonal, tridiagonalize
from lowrank.svd._orthogonalize import Basis, gaussian, orthonormalize, wide_dtype
from lowrank.svd._result import RandomizedDiagnostics, TruncatedSVDResult, fix_signs

# Relative accuracy of the top singular values that the adaptive block Krylov method aims for
# by default (``value_tol``, see ``truncated_svd``, Notes).
DEFAULT_TOL_EPS = 32.0
# A good ``excess_tol``: the relative excess of the Frobenius residual over the
# Eckart-Young-Mirsky optimum at which a fast rank-r approximation stops.
FAST_TOL = 5e-4
# The adaptive method stops growing the Krylov space at this many columns per unit of rank
# (plus ``_MAX_DIM_EXTRA``): past that, ``method="exact"`` is the better tool.
_MAX_DIM_PER_RANK = 12
_MAX_DIM_EXTRA = 512
# The adaptive method checks convergence at least when the Krylov space has grown by this
# factor since the last check.
_CHECK_GROWTH = 1.5
# Before the error model has a rate, check when the work since the last check is this many
# times the cost of a check (so that checks take at most a quarter of the time).
_CHECK_AMORTIZE = 3.0
# Once the error model has a rate, never wait longer than this fraction of the space ahead
# (the overshoot grows the final Rayleigh-Ritz step).
_LATE_GROWTH = 0.15


def default_tol(dtype: Any) -> float:
    """The default ``value_tol`` of the randomized method: ``DEFAULT_TOL_EPS`` machine
    epsilons of the compute dtype (about 4e-6 for float32, 7e-15 for float64).

    The error estimate is pessimistic once Krylov convergence speeds up (measured errors at
    the stop were 3-300 times below it on the benchmark matrices), so 32 epsilons leave
    float32 results well inside 1e-5 (``benchmarks/RESULTS.md``)."""
    return DEFAULT_TOL_EPS * compute_eps(dtype)


def default_block_size(
    shape: tuple[int, int], rank: int, *, criterion: Literal["values", "excess"] = "values"
) -> int:
    """Block width of the adaptive block Krylov method (``block_size=None``).

    Products with a block of ``b`` columns cost about as much as a matrix–vector product
    while ``b`` is small (they are limited by reading ``A``), so blocks narrower than about
    16 waste passes; wider blocks converge in fewer passes but to a larger Krylov space,
    whose orthogonalisation and Rayleigh–Ritz cost grows with its square and cube. On the
    benchmark matrices (2048² and 4096² float32, ranks 8-256, ``benchmarks/RESULTS.md``)
    converging the values (``value_tol``), CPU time was least for 24 columns at rank 64 and
    32 at rank 256 on Marchenko–Pastur spectra (by 10-30 % against 40 and 64), and within
    5 % of the best on fast-decaying ones. Converging the residual (``excess_tol``) stops
    after few steps, where wider blocks pay:
    ``rank/2 + 8`` (at most 64) took 20-25 % less CPU than those narrow ones.
    """
    if criterion == "excess":
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


# What gives the eigenvectors of a Gram matrix after its eigenvalues: its tridiagonal
# reduction (real), or the matrix itself (complex, or where LAPACK failed).
_Reduced = Tridiagonal | Array


def _gram_eigenvalues(G: Array) -> tuple[Array, _Reduced]:
    """Eigenvalues (ascending) of the Hermitian float64 Gram matrix ``G`` (overwritten when
    real), and what gives its eigenvectors (:func:`_gram_top_eigenpairs`)."""
    reduced = tridiagonalize(G) if G.dtype == np.float64 else None
    lam = reduced.eigenvalues() if reduced is not None else None
    if reduced is None or lam is None:
        return np.linalg.eigvalsh(G), G
    return lam, reduced


def _gram_top_eigenpairs(reduced: _Reduced, B: Array, count: int) -> tuple[Array, Array]:
    """The ``count`` largest eigenvalues (ascending) and eigenvectors of :math:`BB^H`, from
    :func:`_gram_eigenvalues`'s ``reduced``; the Gram matrix again by ``syevd`` if LAPACK
    fails on the reduction."""
    if isinstance(reduced, Tridiagonal):
        found = reduced.top_eigenpairs(count)
        if found is not None:
            return found
    G = B @ B.conj().T if isinstance(reduced, Tridiagonal) else reduced
    lam, W = np.linalg.eigh(G)
    return lam[lam.size - count :], W[:, lam.size - count :]


def _ritz_values(B: Array, rank: int, accuracy: float) -> tuple[Array, _Reduced | None]:
    """All singular values of ``B``, and what gives the eigenvectors of the Gram matrix
    :math:`BB^H` when the values come from it: from the Gram matrix when that is accurate
    enough (several times faster than a bidiagonalisation), otherwise by LAPACK (and
    ``None``).

    NumPy's LAPACK, not SciPy's: the loop's products run in NumPy's OpenBLAS, and with
    SciPy's (a second OpenBLAS with its own threads) in between, each library's idle
    threads spin while the other works — 10-25 ms lost per switch on a 2-core machine.
    """
    lam, reduced = _gram_eigenvalues(B @ B.conj().T)
    values: Array = np.sqrt(np.clip(lam[::-1], 0.0, None))
    if _gram_resolves(values, rank, accuracy):
        return values, reduced
    try:
        return np.asarray(np.linalg.svd(B, compute_uv=False)), None
    except np.linalg.LinAlgError:
        svd_values = sla.svd(B, compute_uv=False, lapack_driver="gesvd", check_finite=False)
        return np.asarray(svd_values), None


def _ritz_triplets(
    B: Array, rank: int, accuracy: float, known: tuple[Array, _Reduced] | None = None
) -> tuple[Array, Array, Array, Array]:
    r"""``(U_B[:, :rank], S, V_B[:, :rank], spectrum)`` of the small projection ``B``.

    The eigenpairs of :math:`BB^H = U_B \Sigma^2 U_B^H` (float64) give
    :math:`V_B = B^H U_B \Sigma^{-1}`, when that is accurate to ``accuracy`` (see
    :func:`_gram_resolves`); otherwise LAPACK ``gesdd`` on ``B``. ``known`` =
    ``(values, reduced)`` from :func:`_ritz_values` on this same ``B`` saves computing them
    again. NumPy's LAPACK, for the reason given in :func:`_ritz_values`.
    """
    if accuracy >= 4.0 * compute_eps(np.float64):
        if known is None:
            lam, reduced = _gram_eigenvalues(B @ B.conj().T)
            values = np.sqrt(np.clip(lam[::-1], 0.0, None))
        else:
            values, reduced = known
        if _gram_resolves(values, rank, accuracy):
            lam, W = _gram_top_eigenpairs(reduced, B, rank)
            s = np.sqrt(np.clip(lam[::-1], 0.0, None))
            if s[-1] > 0.0:
                Ub = W[:, ::-1]
                Vb = (B.conj().T @ Ub) / s
                return Ub, s, Vb, values
    try:
        Ub, S, Vbh = np.linalg.svd(B, full_matrices=False)
    except np.linalg.LinAlgError:
        Ub, S, Vbh = lapack_svd(B)
    return Ub[:, :rank], S[:rank], Vbh[:rank].conj().T, S


# The machine model behind the check schedule (a 2-core x86 machine with OpenBLAS, fitted
# on the benchmark matrices): only the ratio of a check's cost to a step's matters.
_MEMORY_BYTES_PER_SECOND = 20e9  # streaming A from memory, for products with few vectors
_GEMM_FLOPS_PER_SECOND = 100e9  # products of A with a block, and with the bases
_SYRK_FLOPS_PER_SECOND = 50e9  # the Gram matrix of the projection
_EIGH_SECONDS_PER_CUBE = 7e-11  # LAPACK syevd on the Gram matrix, per dim**3
_CHECK_SECONDS_PER_SQUARE = 2e-8  # the rest of a check (assembly, copies), per dim**2
_BAND_EIGH_SECONDS = 1.1e-9  # LAPACK dsbev on the band, per dim**2 * block
_BAND_SECONDS_PER_BLOCK = 2e-4  # the QR factorisations and products of one block row
# Checks use the band of the projection from this dimension of the space on.
_BANDED_MIN_DIM = 384


def _pass_seconds(m: int, n: int, b: int, cost: float) -> float:
    """Modelled seconds of one product of an m x n matrix with b vectors: reading the matrix
    or the flops, whichever is slower (``cost`` flops per multiply-add: 2 real, 8 complex)."""
    return max(4.0 * m * n / _MEMORY_BYTES_PER_SECOND, cost * m * n * b / _GEMM_FLOPS_PER_SECOND)


def _check_seconds(dim: int, width: int, block: int, banded: bool) -> float:
    """Modelled seconds of a convergence check: the Gram matrix of the dim x width projection
    and its eigenvalues (LAPACK ``syevd`` runs far below GEMM speed at these sizes), or
    those of its band (:func:`_check_values`; ``dsbev``, per dim**2 * block, plus the
    small factorisations of each block)."""
    if banded:
        return (
            dim * dim * block * _BAND_EIGH_SECONDS
            + (dim / max(block, 1)) * _BAND_SECONDS_PER_BLOCK
            + dim * dim * _CHECK_SECONDS_PER_SQUARE
        )
    return (
        2.0 * dim * dim * width / _SYRK_FLOPS_PER_SECOND
        + dim**3 * _EIGH_SECONDS_PER_CUBE
        + dim * dim * _CHECK_SECONDS_PER_SQUARE
    )


def _check_values(
    rec: _Recurrence, rank: int, accuracy: float, *, exact: bool
) -> tuple[Array, Array | None, _Reduced | None]:
    """``(values, B, reduced)`` for a convergence check: all Ritz values, and the projection
    and its Gram matrix's reduction (:func:`_ritz_values`) when they were formed. Unless
    ``exact``, and when the space is large enough for it to pay, the values are those of
    the band of the projection (:mod:`lowrank.svd._banded`), which differ from the exact
    ones by rounding: by at most the norm of the dropped coefficients (Weyl), measured
    0.02-0.2 eps sigma_1 at the benchmark sizes. They are used while the band resolves the
    values to ``accuracy`` (:func:`_gram_resolves`) and the dropped part is below
    sqrt(eps) sigma_1 (which would mean lost orthogonality, not rounding)."""
    if not exact and _banded_checks(rec):
        found = banded_ritz_values(rec.rows)
        if found is not None:
            values, dropped = found
            sound = dropped <= math.sqrt(compute_eps(rec.mat.dtype)) * float(values[0])
            if sound and _gram_resolves(values, rank, accuracy):
                return values, None, None
    B = rec.projection()
    values, reduced = _ritz_values(B, rank, accuracy)
    return values, B, reduced


def _agree(banded: Array, exact: Array, rank: int, eps: float) -> bool:
    """Whether the top ``rank`` values of a banded check are the exact ones to the rounding
    level of the error model (:data:`NOISE_EPS` epsilons of the top value)."""
    top = min(rank, banded.size, exact.size)
    limit = NOISE_EPS * eps * float(exact[0])
    return bool(np.all(np.abs(banded[:top] - exact[:top]) <= limit))


def _banded_checks(rec: _Recurrence) -> bool:
    """Whether checks use the band of the projection: real input, and a space of at least
    ``_BANDED_MIN_DIM`` (below, the dense check is as fast: 0.2 against 1.0 ms at 64)."""
    return rec.mat.dtype.kind == "f" and rec.Q.size >= _BANDED_MIN_DIM


class _Recurrence:
    r"""The block Golub–Kahan–Lanczos recurrence: the bases :math:`P`, :math:`Q` and the
    recorded rows of :math:`B = Q^H A [P_1..P_{k+1}]` (see :func:`_block_krylov`)."""

    def __init__(
        self, mat: MatrixInput, block: int, max_steps: int, rng: np.random.Generator
    ) -> None:
        m, n = mat.shape
        self.mat = mat
        self.rng = rng
        self.P = Basis(n, mat.dtype, block * (min(max_steps, 8) + 1), n)
        self.Q = Basis(m, mat.dtype, block * min(max_steps, 8), m)
        first, _, _ = orthonormalize(gaussian(rng, (n, block), mat.dtype), self.P.view, n, rng)
        self.P.append(first)
        self.newest = first
        # Per Q block: (D^H over P so far, L^H for the next P block).
        self.rows: list[tuple[Array, Array]] = []
        self.L: Array | None = None  # A^H Q_{k-1} = ... + P_k L: A P_k has Q_{k-1} L^H
        self.capacity = first.shape[1]  # random start directions (see hidden_multiplicity)
        self.steps = self.passes = 0
        # (Q_{k+1}, R_{k+1}) of the next step's first half, computed ahead by peek().
        self.ahead: tuple[Array, Array] | None = None
        self.flop_cost = 8.0 if mat.dtype.kind == "c" else 2.0

    @property
    def exhausted(self) -> bool:
        """The space spans a whole side of ``A``: nothing more to add."""
        return self.Q.room == 0 or self.newest.shape[1] == 0

    def step(self) -> float:
        """One step (two passes over ``A``); returns its modelled seconds."""
        mat, P, Q = self.mat, self.P, self.Q
        m, n = mat.shape
        width = self.newest.shape[1]
        Qk, Rk = self.peek()
        self.ahead = None
        Q.append(Qk)
        Z = mat.rmatmat(Qk)
        lp = P.size
        # A P_k = ... + Q_k R_k, so A^H Q_k has P_k R_k^H.
        local = (lp - self.newest.shape[1], Rk.conj().T)
        self.newest, D, self.L = orthonormalize(Z, P.view, P.room, self.rng, local=local)
        P.append(self.newest)
        self.rows.append((D.conj().T, self.L.conj().T))
        self.steps += 1
        self.passes += 1
        cost = self.flop_cost
        basis_flops = m * Q.size * width + n * lp * Qk.shape[1]
        return float(
            _pass_seconds(m, n, width, cost)
            + _pass_seconds(m, n, Qk.shape[1], cost)
            + cost * 4.0 * basis_flops / _GEMM_FLOPS_PER_SECOND
        )

    def peek(self) -> tuple[Array, Array]:
        r"""The first half of the next step, done now and kept for it: :math:`AP_{k+1}`
        orthonormalised against :math:`Q`, :math:`(I - QQ^H)AP_{k+1} = Q_{k+1}R_{k+1}` (one
        pass over ``A``). :math:`R_{k+1}` gives the residuals of the Ritz triplets
        (:func:`_residuals`)."""
        if self.ahead is None:
            Q = self.Q
            Y = self.mat.matmat(self.newest)
            local = None if self.L is None else (Q.size - self.L.shape[1], self.L.conj().T)
            Qk, _, Rk = orthonormalize(Y, Q.view, Q.room, self.rng, local=local)
            self.ahead = (Qk, Rk)
            self.passes += 1
        return self.ahead

    def widen(self, width: int) -> None:
        """Add ``width`` fresh random directions to the newest block (see
        :func:`_fresh_directions`): a repeated value may have more copies than the space
        can hold."""
        fresh = _fresh_directions(self.P, min(width, self.P.room), self.rng)
        if not fresh.shape[1]:
            return
        self.ahead = None  # the newest block changes: its product is no longer the next one
        self.P.append(fresh)
        self.newest = np.concatenate([self.newest, fresh], axis=1)
        Dh, Lh = self.rows[-1]
        zeros = np.zeros((Lh.shape[0], fresh.shape[1]), Lh.dtype)
        self.rows[-1] = (Dh, np.concatenate([Lh, zeros], axis=1))
        self.L = self.rows[-1][1].conj().T
        self.capacity += fresh.shape[1]

    def projection(self) -> Array:
        """The projection :math:`B` in float64 (complex128)."""
        return _assemble(self.rows, self.Q.size, self.P.size, wide_dtype(self.mat.dtype))


class _CheckSchedule:
    """When to check convergence: a deterministic schedule from a model of the costs."""

    def __init__(self) -> None:
        self.work_since_check = 0.0
        self.last_check_dim = 0
        self.next_check: int | None = None
        self.interval: int | None = None  # steps between the last two planned checks

    def due(self, steps: int, dim: int, check_seconds: float, has_history: bool) -> bool:
        """Once an estimate with a rate exists, after the planned steps; before that, when
        the work since the last check exceeds ``_CHECK_AMORTIZE`` checks; and always when
        the space has grown by ``_CHECK_GROWTH``."""
        if has_history:
            if self.next_check is not None:
                wait = steps < self.next_check
            else:
                wait = self.work_since_check < _CHECK_AMORTIZE * check_seconds
            if wait and dim < _CHECK_GROWTH * self.last_check_dim:
                return False
        self.work_since_check = 0.0
        self.last_check_dim = dim
        return True

    def plan(self, steps: int, ahead: int, check_cost: float, space: int, block: int) -> None:
        """Plan the next check. The model predicts ``ahead`` more steps, pessimistically
        once Krylov convergence speeds up, so check after a third of them at most; and, if
        checks are cheap next to steps, sooner: checking every s steps with c the cost of a
        check relative to a step costs about ahead*c/s + s/2 (checks plus overshoot), least
        for s = sqrt(2*ahead*c); and never more than ``_LATE_GROWTH`` of the space ahead
        (the overshoot grows the final Rayleigh-Ritz step and the orthogonalisation)."""
        if ahead >= (1 << 30):
            # No rate now. Before any rate was known, checks wait for their cost to be
            # amortised; once one was, it was lost to a value whose growth did not shrink
            # over the last interval (a direction entering the top values, or one near the
            # rank of a flat spectrum), and the others may be close: check again after the
            # last interval rather than let the space grow by half (measured on a flat
            # 2048^2 spectrum at rank 64: 9 steps past the one that met the tolerance, the
            # true error 100 times below it).
            self.next_check = None if self.interval is None else steps + self.interval
            return
        interval = min(ahead // 3, math.ceil(math.sqrt(2.0 * ahead * check_cost)))
        interval = min(interval, math.ceil(_LATE_GROWTH * space / block))
        self.interval = max(1, interval)
        self.next_check = steps + self.interval


def _block_krylov(
    mat: MatrixInput,
    rank: int,
    *,
    block: int,
    max_steps: int,
    tol: float | None,
    rng: np.random.Generator,
    criterion: str = "values",
) -> TruncatedSVDResult:
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
    :class:`Progress`) is below ``tol``, unless the Ritz values may hide copies of a
    repeated value (:func:`hidden_multiplicity`): then the space is widened and converged
    again.
    """
    eps = compute_eps(mat.dtype)
    rec = _Recurrence(mat, block, max_steps, rng)
    norm_fro = mat.frobenius_norm()
    progress = Progress(rank, eps, norm_fro, criterion, size=max(mat.shape))
    schedule = _CheckSchedule()
    converged = False
    # Ritz values for the checks need only a fraction of the target's accuracy.
    check_accuracy = max(eps / 16.0, (tol or 0.0) / 100.0)
    # step, B, values, the Gram matrix's reduction
    checked: tuple[int, Array, Array, _Reduced | None] | None = None
    claimed: tuple[Array, Array, Array, Array] | None = None  # the triplets of the claim
    previous: Array | None = None  # all Ritz values at the check before
    while rec.steps < max_steps:
        step_seconds = rec.step()
        schedule.work_since_check += step_seconds
        if rec.exhausted:
            break
        if tol is None or rec.Q.size < rank:
            continue
        seconds = _check_seconds(rec.Q.size, rec.P.size, block, _banded_checks(rec))
        if not schedule.due(rec.steps, rec.Q.size, seconds, bool(progress.values)):
            continue
        values, B, reduced = _check_values(rec, rank, check_accuracy, exact=False)
        before = progress.copy()
        progress.update(rec.steps, values)
        if B is None and progress.reached(tol):
            # A convergence claim rests on the exact projection: this step again with it.
            # Where its top values agree with the band's to the rounding level that the
            # error model cannot see, the claim stands; otherwise the exact values replace
            # the band's (mixing the two in one history reads their difference as growth
            # that does not shrink: 5 more steps at 4096 x 11008, rank 256).
            banded = values
            values, B, reduced = _check_values(rec, rank, check_accuracy, exact=True)
            if not _agree(banded, values, rank, eps):
                progress = before
                progress.update(rec.steps, values)
        checked = None if B is None else (rec.steps, B, values, reduced)
        check_cost = seconds / max(step_seconds, 1e-12)
        schedule.plan(rec.steps, progress.steps_to(tol), check_cost, rec.Q.size, block)
        if progress.reached(tol):
            widened = rec.capacity > block
            if hidden_multiplicity(values, rank, rec.capacity, eps, tol, previous, widened):
                rec.widen(block)
                checked = None  # the widened space has more columns than the projection
                progress.restart()
                schedule.next_check = None
            else:
                if B is None:
                    B = rec.projection()
                    reduced = None
                known = None if reduced is None else (values, reduced)
                triplets = _ritz_triplets(B, rank, eps / 16.0, known)
                checked = None
                if criterion != "values" or _residuals_confirm(
                    rec, triplets, tol, eps, previous, progress
                ):
                    claimed = triplets
                    converged = True
                    break
                # Not converged: check again when the growth model's rate would bring the
                # residual bound down to the target (the bound is the value estimate now).
                schedule.next_check = rec.steps + progress.steps_to(tol)
                if progress.steps_to(tol) >= (1 << 30):
                    schedule.next_check = None
        previous = values
    return _krylov_result(
        mat, rank, rec, progress, checked, converged, tol, criterion, block, claimed
    )


def _residuals_confirm(
    rec: _Recurrence,
    triplets: tuple[Array, Array, Array, Array],
    tol: float,
    eps: float,
    previous: Array | None,
    progress: Progress,
) -> bool:
    r"""Whether the residuals of the top Ritz triplets confirm a claim that the top values
    are within ``tol`` (relative, plus the rounding level :math:`\varepsilon\sqrt{\max(m,
    n)}\,\sigma_1`): :func:`residual_value_bounds`, with :math:`\eta_i = \|(I - QQ^H)
    AP_{k+1}y_i\| = \|R_{k+1}y_i\|` for :math:`y_i` the rows of :math:`v_i` on the newest
    block (:math:`A^H u_i = \tilde\sigma_i v_i` exactly, and :math:`AP_1..AP_k` lie in the
    span of :math:`Q`). The product :math:`AP_{k+1}` is the next step's first half
    (:meth:`_Recurrence.peek`), so continuing loses nothing. Growth-based estimates can
    be fooled by growth that slows down when a cluster has separated from the rest before
    it is resolved inside; the residuals of its unresolved values stay large. When the
    check fails the bound becomes the value estimate."""
    _, S, Vb, all_values = triplets
    width = rec.newest.shape[1]
    Qk, Rk = rec.peek()
    if Qk.shape[1] < width or S.size == 0:
        return False  # the next step exhausts the space: finish it instead
    eta = np.linalg.norm(Rk @ Vb[Vb.shape[0] - width :, :], axis=0)
    bounds = residual_value_bounds(all_values, eta, previous)
    allowed = tol * S + eps * math.sqrt(max(rec.mat.shape)) * float(all_values[0])
    if bool(np.all(bounds <= allowed)):
        return True
    safe = np.where(S > 0.0, S, 1.0)
    progress.value_estimate = max(progress.value_estimate, float(np.max(bounds / safe)))
    progress.values_at_noise = False
    return False


def _krylov_result(
    mat: MatrixInput,
    rank: int,
    rec: _Recurrence,
    progress: Progress,
    checked: tuple[int, Array, Array, _Reduced | None] | None,
    converged: bool,
    tol: float | None,
    criterion: str,
    block: int,
    claimed: tuple[Array, Array, Array, Array] | None = None,
) -> TruncatedSVDResult:
    """The final Rayleigh–Ritz step of :func:`_block_krylov` and its result (``claimed``:
    the triplets a claim of convergence at the last step rests on)."""
    adaptive = tol is not None
    complete = rec.exhausted
    diagnostics = RandomizedDiagnostics(
        scheme="block_krylov",
        criterion=criterion if adaptive else None,
        tol=tol,
        n_iter=rec.steps - 1,
        block_size=block,
        oversample=max(block - rank, 0),
        subspace_dim=rec.Q.size,
        n_passes=rec.passes,
    )
    if complete and mat.kind != "operator":
        # The space is exhausted: the matrix is small on one side, and LAPACK on it is
        # exact and cheap.
        return replace(
            exact_svd(mat, rank),
            method="randomized",
            diagnostics=replace(diagnostics, value_estimate=0.0, excess_estimate=0.0),
        )
    if complete:
        # The same for an operator: Q spans the range of A, so one more product gives
        # Q^H A itself, and its SVD is exact, free of the rounding of the recorded
        # coefficients and of the basis P.
        Ub, all_values, Vbh = lapack_svd(mat.rmatmat(rec.Q.view).conj().T)
        diagnostics = replace(
            diagnostics, n_passes=rec.passes + 1, value_estimate=0.0, excess_estimate=0.0
        )
        Ub, S, Vb = Ub[:, :rank], all_values[:rank], Vbh[:rank].conj().T
    else:
        # A check at this step has the projection, its Gram matrix and its values already.
        if claimed is not None:
            Ub, S, Vb, all_values = claimed
        else:
            if checked is not None and checked[0] == rec.steps and checked[3] is not None:
                B, known = checked[1], (checked[2], checked[3])
            else:
                B, known = rec.projection(), None
            triplets = _ritz_triplets(B, rank, compute_eps(mat.dtype) / 16.0, known)
            Ub, S, Vb, all_values = triplets
        unchecked = len(progress.values) >= 2 and progress.steps[-1] != rec.steps
        if adaptive and not converged and unchecked:
            progress.update(rec.steps, all_values)
        if adaptive:
            diagnostics = replace(
                diagnostics,
                value_estimate=progress.value_estimate,
                excess_estimate=progress.excess_estimate,
            )
    dtype = mat.dtype
    spectrum = all_values.astype(np.finfo(dtype).dtype)
    U = rec.Q.view @ Ub.astype(dtype)
    V = Vb.astype(dtype) if complete else rec.P.view @ Vb.astype(dtype)
    spectrum[:rank] = S
    U, S_r, Vh = fix_signs(U, spectrum[:rank], np.ascontiguousarray(V.conj().T))
    return TruncatedSVDResult(
        U=np.ascontiguousarray(U),
        S=S_r,
        Vh=np.ascontiguousarray(Vh),
        method="randomized",
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=spectrum,
        spectrum_complete=complete,
        converged=(complete or converged) if adaptive else (True if complete else None),
        diagnostics=diagnostics,
    )


def _fresh_directions(P: Basis, width: int, rng: np.random.Generator) -> Array:
    """``width`` Gaussian directions orthonormalised against the basis ``P``.

    Appended to the newest block of the recurrence they keep its invariants: :math:`A^H Q_k`
    has no component on them (it lies in the span of ``P`` before), so the coefficients of
    :math:`Q_k^H A` on them are zero, and the next step multiplies them by ``A`` like the rest
    of the block.
    """
    if width <= 0:
        return np.zeros((P.view.shape[0], 0), dtype=P.data.dtype)
    fresh, _, _ = orthonormalize(
        gaussian(rng, (P.view.shape[0], width), P.data.dtype), P.view, P.room, rng
    )
    return fresh


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
) -> TruncatedSVDResult:
    """HMT Algorithm 4.4 (normalised power iteration), then Rayleigh–Ritz on the last block."""
    m, n = mat.shape
    width = min(rank + oversample, m, n)
    if width == min(m, n) and mat.kind != "operator":
        # The sketch would span the whole range: LAPACK on the (small) matrix is exact.
        return replace(
            exact_svd(mat, rank),
            method="randomized",
            diagnostics=_subspace_diagnostics(n_iter, width, rank, 0),
        )
    empty_m = np.zeros((m, 0), dtype=mat.dtype)
    empty_n = np.zeros((n, 0), dtype=mat.dtype)
    Q, _, _ = orthonormalize(mat.matmat(gaussian(rng, (n, width), mat.dtype)), empty_m, m, rng)
    for _ in range(n_iter):
        Z, _, _ = orthonormalize(mat.rmatmat(Q), empty_n, n, rng)
        Q, _, _ = orthonormalize(mat.matmat(Z), empty_m, m, rng)
    B = mat.rmatmat(Q).conj().T  # Q^H A, (width, n)
    Ub, S, Vh = lapack_svd(B)
    spectrum = S.copy()
    U, S, Vh = fix_signs(Q @ Ub[:, :rank], S[:rank], Vh[:rank])
    complete = Q.shape[1] == m
    return TruncatedSVDResult(
        U=U,
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method="randomized",
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=spectrum,
        spectrum_complete=complete,
        converged=True if complete else None,
        diagnostics=_subspace_diagnostics(n_iter, Q.shape[1], rank, 2 * n_iter + 2),
    )


def _subspace_diagnostics(n_iter: int, width: int, rank: int, passes: int) -> RandomizedDiagnostics:
    return RandomizedDiagnostics(
        scheme="subspace",
        criterion=None,
        tol=None,
        n_iter=n_iter,
        block_size=width,
        oversample=width - rank,
        subspace_dim=width,
        n_passes=passes,
    )


def _check_room(rank: int, block: int, steps: int, small: int, option: str) -> None:
    """Refuse a Krylov space too small for ``rank`` triplets: ``steps`` blocks of ``block``
    columns hold ``block * steps`` directions (unless that spans the smaller side, when the
    method is exact), and fewer triplets would be returned than asked for."""
    if block * steps < min(rank, small):
        raise InputError(
            f"block_size={block} with {option} gives a Krylov space of {block} x {steps} = "
            f"{block * steps} columns, too few for rank={rank}; raise block_size or {option}"
        )


def randomized_svd(
    mat: MatrixInput,
    rank: int,
    *,
    n_iter: int | None,
    max_iter: int | None,
    value_tol: float | None,
    excess_tol: float | None,
    oversample: int,
    block_size: int | None,
    block_krylov: bool,
    rng: np.random.Generator,
) -> TruncatedSVDResult:
    """The randomized method on checked options (see :func:`lowrank.truncated_svd`)."""
    if rank == 0:
        return empty_result(mat, "randomized")
    m, n = mat.shape
    small = min(m, n)
    if not block_krylov:
        return _subspace_iteration(mat, rank, 6 if n_iter is None else n_iter, oversample, rng)
    if n_iter is not None:
        # Fixed cost: n_iter + 1 blocks of rank + oversample columns, the Krylov space of
        # HMT's block Krylov variant with n_iter iterations.
        block = min(block_size or min(rank + oversample, small), small)
        _check_room(rank, block, n_iter + 1, small, "n_iter")
        return _block_krylov(mat, rank, block=block, max_steps=n_iter + 1, tol=None, rng=rng)
    criterion: Literal["values", "excess"] = "excess" if excess_tol is not None else "values"
    block = min(block_size or default_block_size(mat.shape, rank, criterion=criterion), small)
    max_dim = min(small, _MAX_DIM_PER_RANK * rank + _MAX_DIM_EXTRA)
    steps = max_iter + 1 if max_iter is not None else max(2, -(-max_dim // block) + 1)
    _check_room(rank, block, steps, small, "max_iter")
    tol = excess_tol if excess_tol is not None else value_tol
    return _block_krylov(
        mat,
        rank,
        block=block,
        max_steps=steps,
        tol=default_tol(mat.dtype) if tol is None else tol,
        rng=rng,
        criterion=criterion,
    )
