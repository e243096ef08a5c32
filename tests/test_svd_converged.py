"""``converged=True`` is true: the adaptive randomized method on spectra built to break it.

Block Krylov methods have two blind spots that no growth-based error estimate sees: a
repeated singular value with more copies than random start vectors (the Krylov space holds
at most one direction per start vector of each singular subspace), and a tight cluster
across the block's leading values, resolved only as fast as the Krylov polynomials separate
its members. Around them, rates fitted across a change of convergence phase (a cluster
separated from the rest fast, then resolved inside slowly) are too optimistic. The families
below put plateaus and clusters of every width around the block size and straddling the
rank, next to the usual ones (gap at the rank, rank-deficient, power laws, Marchenko–Pastur
bulks with spikes), and measure the true error against float64 LAPACK.

**What is claimed.** When ``converged`` is True the quantity converged is within ``FACTOR``
times its target: for ``value_tol`` (``"accurate"`` here) the largest relative error of the
top ``rank`` values, for ``excess_tol`` (``"fast"``) the relative excess of the Frobenius
residual over the optimum. Both are measured beyond the rounding level of the compute dtype
(``ROUNDING``: a backward-stable SVD, the LAPACK reference as well as the result, carries about
:math:`\\varepsilon\\sqrt{\\max(m, n)}\\,\\sigma_1` of absolute error per value: the zero
values of a rank-deficient matrix come out as 1e-14 from LAPACK, 1e-15 from the method; and
about :math:`\\varepsilon\\sqrt{\\max(m, n)}\\,\\|A\\|_F` on the Frobenius residual).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrank import truncated_svd
from lowrank.svd import FAST_TOL, _krylov, default_block_size, default_tol
from lowrank.testing.tolerances import svd_tolerance

# Within this factor of tol. The worst ratios seen over 3,000 examples of these families
# (value_tol and excess_tol targets from 1e-2 to 32 eps) were 4.4 for value_tol and 4.2
# for excess_tol, both on clusters; the factor leaves room for the estimate's pessimism to
# vary, not for a blind spot (those were 10^2 to 10^13 times tol).
FACTOR = 10.0
# Absolute rounding allowance per value, in units of eps sqrt(max(m, n)) sigma_1 of the
# compute dtype.
ROUNDING = 4.0

FAMILIES = ("plateau", "cluster", "gap", "rank_deficient", "power", "mp_spikes", "mp_plateau")


def spectrum(
    family: str, n: int, rank: int, block: int, blind: bool, draw: st.DrawFn
) -> np.ndarray:
    """``n`` singular values of ``family``, with plateaus and clusters sized around
    ``block`` and placed across ``rank`` — or, with ``blind``, where a block method is blind:
    for a plateau, more than a block of copies inside the top ``rank``; for a cluster,
    across the block's leading values."""
    if family in ("plateau", "cluster"):
        length = min(n - 1, block + draw(st.integers(-3, block + 5)))
        lowest = max(0, rank - length)
        if not blind:
            start = draw(st.integers(lowest, max(lowest, rank - 1)))
        elif family == "plateau":
            length = max(length, block + 1)
            start = draw(st.integers(max(0, rank - length), max(0, rank - block - 1)))
        else:
            first = max(0, block - length + 1)
            start = draw(st.integers(first, max(first, min(block, rank) - 1)))
        start = min(start, n - length)
        spread = 0.0
        if family == "cluster":
            spread = draw(st.sampled_from([1e-13, 1e-11, 1e-9, 1e-6, 1e-4, 1e-3, 1e-2]))
        offsets = np.linspace(0.0, 1.0, length) if length > 1 else np.zeros(1)
        head = np.full(start, 10.0)
        middle = 5.0 * (1.0 - spread * offsets)
        tail = np.linspace(draw(st.sampled_from([1.0, 4.9])), 0.01, n - start - length)
        return np.concatenate([head, middle, tail])
    i = np.arange(1, n + 1, dtype=np.float64)
    if family == "gap":
        ratio = draw(st.sampled_from([0.5, 1.0 - 1e-4]))
        return np.concatenate([np.linspace(10, 5, rank), 5 * ratio * np.linspace(1, 0.5, n - rank)])
    if family == "rank_deficient":
        k = draw(st.integers(1, rank))
        return np.concatenate([np.linspace(10.0, 1.0, k), np.zeros(n - k)])
    if family == "power":
        return i ** -draw(st.sampled_from([0.5, 1.0, 2.0]))
    # Marchenko–Pastur bulk for aspect ratio 1/2, by its quantiles.
    bulk = 1.0 + np.sqrt(0.5) * np.cos(np.pi * (i - 0.5) / n)
    if family == "mp_spikes":
        spikes = np.linspace(8.0, 3.0, draw(st.integers(1, 2 * block)))
    else:
        spikes = np.full(draw(st.integers(block - 2, 2 * block + 2)), 4.0)
    return np.concatenate([spikes, bulk])[:n]


@st.composite
def problems(draw: st.DrawFn) -> tuple[str, np.ndarray, int, str, np.dtype, float, int]:
    # Half the examples where block methods are blind, the rest across all families.
    blind = draw(st.booleans())
    family = draw(st.sampled_from(FAMILIES[:2] if blind else FAMILIES))
    m = draw(st.integers(160, 320))
    n = draw(st.integers(160, 320))
    preset = draw(st.sampled_from(["accurate", "fast"]))
    # A plateau can hide copies inside the top rank only when the rank exceeds the block
    # (16 columns at least), so blind plateaus get ranks from 20 up.
    low = 20 if blind and family == "plateau" else 4
    rank = draw(st.integers(low, min(m, n) // 6))
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    # The default tol of "accurate" is at the rounding level (32 eps), where the rounding
    # allowance would hide a convergence error: coarser targets give the test its teeth.
    if preset == "fast":
        tol = draw(st.sampled_from([FAST_TOL, 1e-2, 1e-5]))
    elif dtype == np.float32:
        tol = draw(st.sampled_from([default_tol(dtype), 1e-4, 1e-5]))
    else:
        tol = draw(st.sampled_from([default_tol(dtype), 1e-5, 1e-8, 1e-11]))
    block = default_block_size((m, n), rank, criterion="excess" if preset == "fast" else "values")
    values = np.sort(np.abs(spectrum(family, min(m, n), rank, block, blind, draw)))[::-1]
    seed = draw(st.integers(0, 2**32 - 1))
    g = np.random.default_rng(seed)
    U, _ = np.linalg.qr(g.standard_normal((m, values.size)))
    V, _ = np.linalg.qr(g.standard_normal((n, values.size)))
    return family, (U * values) @ V.T, rank, preset, dtype, tol, seed


@contextlib.contextmanager
def banded_checks(always: bool) -> Iterator[None]:
    """Convergence checks from the band of the projection at any size (``always``), or
    from the default size on."""
    with mock.patch.object(_krylov, "_BANDED_MIN_DIM", 0 if always else _krylov._BANDED_MIN_DIM):
        yield


def target_of(preset: str) -> str:
    """The option that sets the target: ``value_tol`` or ``excess_tol``."""
    return "excess_tol" if preset == "fast" else "value_tol"


def true_error_over_tol(
    A: np.ndarray, rank: int, preset: str, dtype: np.dtype, seed: int, tol: float | None = None
):
    """``(converged, true error / tol)`` of the adaptive method on ``A`` (float64)."""
    if tol is None:
        tol = FAST_TOL if preset == "fast" else default_tol(dtype)
    result = truncated_svd(
        A.astype(dtype), rank, method="randomized", rng=seed, **{target_of(preset): tol}
    )
    reference = np.linalg.svd(A, compute_uv=False)
    if preset == "fast":
        optimum = math.sqrt(float(np.sum(reference[rank:] ** 2)))
        residual = A - (result.U.astype(np.float64) * result.S) @ result.Vh.astype(np.float64)
        # The Frobenius residual's rounding level is a Frobenius backward error, normwise in
        # ||A||_F (Householder-based SVDs: ||E||_F <= c eps ||A||_F): in sigma_1 units LAPACK's
        # own rank-r residuals on rank-deficient matrices of these sizes reached 4.7, in
        # these 1.2 (300 draws), and the method's 1.8.
        floor = svd_tolerance(dtype, A.shape, float(np.linalg.norm(reference)), factor=ROUNDING)
        error = max(float(np.linalg.norm(residual)) - optimum - floor, 0.0) / max(optimum, floor)
    else:
        top = reference[:rank]
        floor = svd_tolerance(dtype, A.shape, float(reference[0]), factor=ROUNDING)
        error = float(
            np.max(np.maximum(np.abs(result.S - top) - floor, 0.0) / np.maximum(top, floor))
        )
    return bool(result.converged), error / tol


# Three times the profile's examples: each costs about 30 ms, and a blind spot is a corner.
@settings(max_examples=3 * settings.default.max_examples)
@given(problems(), st.booleans())
def test_converged_means_within_a_small_factor_of_tol(problem, banded):
    # banded: the checks use the band of the projection from the first one on (at these
    # sizes the space rarely reaches _BANDED_MIN_DIM), the final claim the exact projection.
    family, A, rank, preset, dtype, tol, seed = problem
    with banded_checks(banded):
        converged, ratio = true_error_over_tol(A, rank, preset, dtype, seed, tol)
    if converged:
        assert ratio <= FACTOR, (
            f"{family}, {A.shape}, rank {rank}, preset {preset!r}, {dtype}, tol {tol:g}: "
            f"converged=True "
            f"but the true error is {ratio:.3g} x tol"
        )


def _issue_matrix() -> np.ndarray:
    g = np.random.default_rng(1)
    U, _ = np.linalg.qr(g.standard_normal((600, 400)))
    V, _ = np.linalg.qr(g.standard_normal((400, 400)))
    s = np.r_[np.full(10, 10.0), np.full(50, 5.0), np.linspace(1, 0.01, 340)]
    return (U * s) @ V.T


@pytest.mark.parametrize("banded", [False, True])
@pytest.mark.parametrize("rank", [40, 50, 60, 70])
def test_a_plateau_longer_than_the_block_is_found(rank, banded):
    # Issue 11's example: 50 equal values straddling the rank, blocks of 28-43 columns.
    # The old stopping rule said converged with 4-87 % excess and an estimate below 5e-7.
    A = _issue_matrix()
    with banded_checks(banded):
        converged, ratio = true_error_over_tol(A, rank, "fast", np.dtype(np.float64), 0)
    assert converged
    assert ratio <= FACTOR


@pytest.mark.parametrize("banded", [False, True])
@pytest.mark.parametrize(("spread", "dtype"), [(1e-11, np.float64), (3e-3, np.float32)])
def test_a_cluster_is_resolved_before_converged(spread, dtype, banded):
    # The two cluster failures of the old rule: a float64 cluster of width 1e-11 across the
    # 16th value (block 16) stopped 170x tol off; a float32 one of width 3e-3 at the top
    # stopped after three checks, 227x tol off (a rate fitted across a change of phase).
    g = np.random.default_rng(2)
    head = 3 if dtype == np.float64 else 0
    s = np.r_[
        np.full(head, 10.0), 5 * (1 - spread * g.random(33)), np.linspace(1, 0.01, 417 - head)
    ]
    s = np.sort(s)[::-1]
    U, _ = np.linalg.qr(g.standard_normal((600, 450)))
    V, _ = np.linalg.qr(g.standard_normal((450, 450)))
    with banded_checks(banded):
        converged, ratio = true_error_over_tol((U * s) @ V.T, 10, "accurate", np.dtype(dtype), 2)
    assert converged
    assert ratio <= FACTOR


@pytest.mark.parametrize("banded", [False, True])
def test_a_close_pair_across_the_rank_is_resolved(banded):
    """sigma_4 = 5 and sigma_5 = 4.9995 above a dense spectrum (the thorough profile's
    example, rebuilt from its seed): the 4th Ritz value converged quickly to 4.9995, and its
    growth shrank 7-fold in one interval, so its own extrapolation said 8.5e-6 to go where
    1.0e-4 did (10 x tol). The 5th, climbing by 1.2e-3 at 4.2e-4 below it, shows it."""
    s = np.concatenate([np.linspace(10, 5, 4), 5 * (1 - 1e-4) * np.linspace(1, 0.5, 196)])
    g = np.random.default_rng(409)
    U, _ = np.linalg.qr(g.standard_normal((200, 200)))
    V, _ = np.linalg.qr(g.standard_normal((200, 200)))
    with banded_checks(banded):
        converged, ratio = true_error_over_tol(
            (U * s) @ V.T, 4, "accurate", np.dtype(np.float64), 409, 1e-5
        )
    assert converged
    assert ratio <= FACTOR


def test_a_cluster_wider_than_the_block_is_not_claimed_early():
    """27 values within 1e-3 below the top one, block 16: the thorough profile's example
    (rebuilt from its seed). With the rule that counted only the Ritz values already inside
    a cluster it stopped at 21 x tol: 15 Ritz values had reached the cluster and the 16th,
    still climbing by 3.6e-3 per step, sat 2e-3 below it."""
    seed = 13881769
    g = np.random.default_rng(seed)
    s = np.r_[10.0, np.linspace(5.0, 4.995, 27), np.linspace(4.9, 0.01, 132)]
    U, _ = np.linalg.qr(g.standard_normal((160, 160)))
    V, _ = np.linalg.qr(g.standard_normal((160, 160)))
    converged, ratio = true_error_over_tol(
        (U * s) @ V.T, 4, "accurate", np.dtype(np.float64), seed, 1e-5
    )
    assert not converged or ratio <= FACTOR


@pytest.mark.parametrize("rank", [40, 50, 60])
def test_widening_on_the_last_step_gives_a_valid_result(rank):
    """A hidden multiplicity found at the check of the last allowed step widens the space,
    and the loop ends there: the result must come from the widened space (it once reused the
    projection of the check, narrower than the widened basis, and crashed). Not converged;
    the Ritz values are lower bounds of the singular values (float64 LAPACK, to 16 eps
    sqrt(max(m, n)) sigma_1) and the factors orthonormal to 16 eps sqrt(max(m, n))."""
    A = _issue_matrix()
    result = truncated_svd(A, rank, method="randomized", excess_tol=FAST_TOL, max_iter=5, rng=0)
    assert result.converged is False
    reference = np.linalg.svd(A, compute_uv=False)
    atol = 16 * np.finfo(np.float64).eps * math.sqrt(max(A.shape))
    assert np.all(reference[:rank] + atol * reference[0] >= result.S)
    np.testing.assert_allclose(result.U.T @ result.U, np.eye(rank), atol=atol)
    np.testing.assert_allclose(result.Vh @ result.Vh.T, np.eye(rank), atol=atol)


def test_a_ritz_value_climbing_into_a_cluster_counts_in_it():
    """hidden_multiplicity on the values of that example's last check: 15 Ritz values within
    1e-3 of the top of the cluster are one short of the block's 16 start vectors; the 16th,
    2e-3 below and climbing 3.6e-3 since the check before, makes the count."""
    from lowrank.svd._convergence import hidden_multiplicity

    inside = 5.0 * (1.0 - np.linspace(1.3e-4, 8.5e-4, 15))
    values = np.r_[10.0, inside, 5.0 * (1 - 2.02e-3), 5.0 * (1 - 2.4e-2), np.linspace(4.7, 0.5, 40)]
    previous = values.copy()
    previous[16] = 5.0 * (1 - 5.66e-3)  # 3.6e-3 lower at the check before
    eps = float(np.finfo(np.float64).eps)
    assert not hidden_multiplicity(values, 4, 16, eps, 1e-5)
    assert hidden_multiplicity(values, 4, 16, eps, 1e-5, previous)
    # A value that did not move does not join the cluster, nor one more than CLIMB_SPREADS
    # widths below it, however fast it climbs (the tail of a decaying spectrum).
    assert not hidden_multiplicity(values, 4, 16, eps, 1e-5, values)
    far = values.copy()
    far[16] = 5.0 * (1 - 4.5e-3)
    far_before = far.copy()
    far_before[16] = 5.0 * (1 - 5e-2)
    assert not hidden_multiplicity(far, 4, 16, eps, 1e-5, far_before)


def test_a_dense_spectrum_is_not_a_cluster_of_climbing_values():
    """Below the rank of a Marchenko–Pastur spectrum (values 2e-4 apart, 5 within 1e-3,
    capacity 64) every Ritz value beyond the rank is still climbing: the climbing ones count
    only in a cluster that already holds half the capacity. (Closer than (16 eps)^(2/3),
    1.5e-4 in float32, neighbours across the capacity-th value are a tight cluster.)"""
    from lowrank.svd._convergence import hidden_multiplicity

    values = 2.0 * (1.0 - 2e-4 * np.arange(400))
    previous = values.copy()
    previous[256:] *= 1.0 - 5e-3  # the tail climbed 5e-3 since the check before
    eps = float(np.finfo(np.float32).eps)
    assert not hidden_multiplicity(values, 256, 64, eps, 5e-4, previous)
    # The same climbing tail beside a cluster that holds half the capacity (32 values within
    # 6e-4, capacity 40) does count: 12 values within 4e-3 below it make 44.
    packed = np.r_[
        2.0 * (1.0 - 2e-4 * np.arange(200)),
        1.9 * (1.0 - 2e-5 * np.arange(32)),
        1.9 * (1.0 - 1.5e-3 - 2e-4 * np.arange(168)),
    ]
    climbed = packed.copy()
    climbed[232:] *= 1.0 - 5e-3
    assert not hidden_multiplicity(packed, 256, 40, eps, 5e-4)
    assert hidden_multiplicity(packed, 256, 40, eps, 5e-4, climbed)


def test_a_chance_pair_across_the_capacity_is_not_a_cluster():
    """A tight run across the capacity-th Ritz value counts only when it holds half the
    capacity: two values 1.1e-4 apart (below float32's unresolved width (16 eps)^(2/3),
    1.5e-4) at indices 63 and 64 of a dense spectrum, capacity 64, are a chance pair (the
    benchmark's Marchenko–Pastur 4096 x 11008 at rank 256); 32 values as tight across it,
    wherever they start, are a cluster the block may not hold; 16 are not."""
    from lowrank.svd._convergence import hidden_multiplicity

    eps = float(np.finfo(np.float32).eps)
    values = 2.0 * (1.0 - 3e-4 * np.arange(400))
    values[64] = values[63] * (1.0 - 1.1e-4)
    assert not hidden_multiplicity(values, 256, 64, eps, 5e-4)
    for start in (33, 48, 63):
        packed = values.copy()
        packed[start : start + 32] = values[start] * (1.0 - 2e-6 * np.arange(32))
        assert start <= 63 < start + 31
        assert hidden_multiplicity(packed, 256, 64, eps, 5e-4)
    short = values.copy()
    short[56:72] = values[56] * (1.0 - 2e-6 * np.arange(16))
    assert not hidden_multiplicity(short, 256, 64, eps, 5e-4)
