"""The randomized block Krylov method of lowrank.svd: adaptive accuracy, options, internals.

Reference values come from float64 LAPACK (numpy.linalg.svd) of the matrix actually used
(float32 inputs are upcast first), as in tests/test_svd.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from _spectra import with_spectrum
from scipy.sparse.linalg import aslinearoperator

from lowrank import InputError, truncated_svd
from lowrank._numerics import tolerance
from lowrank.approx import residual_norm
from lowrank.svd import FAST_TOL, default_block_size, default_tol
from lowrank.svd._convergence import (
    Progress,
    _bisected_contractions,
    _contractions,
    contraction,
)
from lowrank.svd._orthogonalize import orthonormalize
from lowrank.testing import assert_orthonormal, assert_valid_svd


def flat(rng, m, n, dtype=np.float64):
    """Marchenko–Pastur: the slowly decaying spectrum of weight-like matrices."""
    return (rng.standard_normal((m, n)) / np.sqrt(max(m, n))).astype(dtype)


def reference(A):
    wide = np.complex128 if A.dtype.kind == "c" else np.float64
    return np.linalg.svd(A.astype(wide), compute_uv=False)


def top_rel_err(S, ref):
    r = len(S)
    return float(np.max(np.abs(S.astype(np.float64) - ref[:r]) / ref[:r]))


def excess(A, res, ref):
    opt = math.sqrt(float(np.sum(ref[res.rank :] ** 2)))
    return residual_norm(A, res) / opt - 1.0


# --- the default: adaptive to a relative accuracy ------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spectrum", ["decaying", "flat", "spiked"])
def test_default_reaches_its_accuracy(spectrum, dtype, rng):
    """Default randomized: top-r values within 1e-5 relative (the benchmark target; the
    default tol is 32 eps, 4e-6 in float32) and the residual within 1e-6 of the EYM optimum."""
    m, n, rank = 700, 500, 20
    if spectrum == "decaying":
        A = with_spectrum(rng, m, n, 1.0 / np.arange(1, n + 1), dtype=dtype)
    else:
        A = flat(rng, m, n, dtype)
        if spectrum == "spiked":
            A = A + with_spectrum(rng, m, n, np.linspace(20, 10, 16) * 1.85, dtype=dtype)
    ref = reference(A)
    res = truncated_svd(A, rank, method="randomized", rng=0)
    d = res.diagnostics
    assert res.converged and d.tol == default_tol(dtype) and d.criterion == "values"
    assert res.S.dtype == np.finfo(dtype).dtype
    assert top_rel_err(res.S, ref) <= 1e-5
    assert excess(A, res, ref) <= 1e-6
    # The a-posteriori estimate is of the right size: the error is within 10 times it (the
    # converged property test's factor; measured here at most 1.2) or at the rounding level
    # of the dtype, and the estimate is below the target it stopped at or at that level
    # (a stop on growth below rounding).
    assert d.value_estimate is not None
    floor = 16 * np.finfo(dtype).eps * ref[0] / ref[rank - 1]
    assert top_rel_err(res.S, ref) <= max(10 * d.value_estimate, floor)
    assert d.value_estimate <= max(d.tol, floor)
    assert_orthonormal(res.U, name="U")
    assert_orthonormal(res.Vh.conj().T, name="V")


def test_tol_trades_accuracy_for_passes(rng):
    A = flat(rng, 600, 500)
    ref = reference(A)
    loose = truncated_svd(A, 10, method="randomized", rng=0, value_tol=1e-2)
    tight = truncated_svd(A, 10, method="randomized", rng=0, value_tol=1e-8)
    assert loose.diagnostics.n_passes < tight.diagnostics.n_passes
    assert top_rel_err(tight.S, ref) <= 1e-7 < top_rel_err(loose.S, ref) <= 1e-1


def test_adaptive_is_deterministic_given_rng(rng):
    A = flat(rng, 300, 280, np.float32)
    a = truncated_svd(A, 12, method="randomized", rng=5)
    b = truncated_svd(A, 12, method="randomized", rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.U, b.U)
    np.testing.assert_array_equal(a.S, b.S)
    np.testing.assert_array_equal(a.Vh, b.Vh)
    assert a.diagnostics == b.diagnostics


def test_float32_end_to_end(rng):
    A = flat(rng, 400, 300, np.float32)
    res = truncated_svd(A, 8, method="randomized", rng=0)
    for arr in (res.U, res.S, res.Vh, res.spectrum):
        assert arr.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_rank_deficient_input(dtype, rng):
    """Blocks that lose rank are refilled with random directions: the result stays a valid
    SVD whose extra singular values are zero to working precision."""
    A = with_spectrum(rng, 300, 260, [5.0, 3.0, 2.0, 1.0], dtype=dtype)
    res = truncated_svd(A, 10, method="randomized", rng=0)
    assert_valid_svd(res, A, rank=10)
    tol = tolerance(dtype, size=300, scale=5.0)
    np.testing.assert_allclose(res.S[4:], 0, atol=tol)
    zero = truncated_svd(np.zeros((300, 260), dtype=dtype), 5, method="randomized", rng=0)
    assert_valid_svd(zero, np.zeros((300, 260), dtype=dtype), rank=5)


def test_complex_adaptive(rng):
    A = with_spectrum(rng, 300, 270, 1.0 / np.arange(1, 271), dtype=np.complex128)
    res = truncated_svd(A, 10, method="randomized", rng=0)
    assert_valid_svd(res, A, rank=10, rtol=1e-5)


@pytest.mark.parametrize("form", ["sparse", "operator"])
def test_sparse_and_operator_adaptive(form, rng):
    dense = with_spectrum(rng, 400, 300, 0.8 ** np.arange(300))
    A = sp.csr_matrix(dense) if form == "sparse" else aslinearoperator(dense)
    res = truncated_svd(A, 6, method="randomized", rng=0)
    assert_valid_svd(res, dense, rank=6, rtol=1e-5)


def test_pythagorean_residual_is_the_true_residual(rng):
    for dtype in (np.float32, np.float64):
        A = flat(rng, 500, 400, dtype)
        for kwargs in ({}, {"excess_tol": FAST_TOL}, {"n_iter": 1}):
            res = truncated_svd(A, 20, method="randomized", rng=0, **kwargs)
            true = residual_norm(A, res)
            assert abs(res.residual_fro - true) <= res.residual_fro_error, (dtype, kwargs)


def test_whole_space_is_exact(rng):
    A = rng.standard_normal((60, 40))
    res = truncated_svd(A, 30, method="randomized", rng=0)
    assert res.spectrum_complete and res.diagnostics.value_estimate == 0.0
    np.testing.assert_allclose(res.spectrum, np.linalg.svd(A, compute_uv=False), rtol=1e-12)


# --- fixed iterations and options --------------------------------------------------------


def hmt_block_krylov_values(A, rank, n_iter, oversample, seed):
    """HMT's block Krylov method written out: Q = orth([A W, (A A^H) A W, ...]), SVD of Q^H A,
    with the first Gaussian draw of the same generator as lowrank."""
    gen = np.random.default_rng(seed)
    W = gen.standard_normal((A.shape[1], rank + oversample))
    blocks, Y = [], A @ W
    for _ in range(n_iter + 1):
        Y = np.linalg.qr(Y)[0]
        blocks.append(Y)
        Y = A @ (A.T @ Y)
    Q = np.linalg.qr(np.concatenate(blocks, axis=1))[0]
    return np.linalg.svd(Q.T @ A, compute_uv=False)


@pytest.mark.parametrize("n_iter", [0, 1, 3])
def test_fixed_n_iter_is_hmt_block_krylov(n_iter, rng):
    """With n_iter, the Ritz values are those of HMT's block Krylov method with n_iter
    iterations (same start block), at 2 (n_iter + 1) passes; nothing was checked."""
    A = flat(rng, 500, 400)
    res = truncated_svd(A, 8, method="randomized", n_iter=n_iter, oversample=6, rng=3)
    expected = hmt_block_krylov_values(A, 8, n_iter, 6, 3)
    np.testing.assert_allclose(res.S, expected[:8], rtol=1e-10)
    d = res.diagnostics
    assert d.n_passes == 2 * (n_iter + 1) and d.n_iter == n_iter
    assert d.block_size == 14 and d.oversample == 6 and d.subspace_dim == 14 * (n_iter + 1)
    assert d.value_estimate is None and d.tol is None and d.criterion is None
    assert res.converged is None


def test_max_iter_is_a_cap(rng):
    A = flat(rng, 500, 400)
    res = truncated_svd(A, 10, method="randomized", rng=0, max_iter=1, value_tol=1e-12)
    d = res.diagnostics
    assert d.n_iter == 1 and res.converged is False and d.value_estimate is not None


def test_excess_tol_on_a_flat_spectrum(rng):
    """excess_tol=FAST_TOL: residual within 0.1 % of optimal on a weight-like matrix (the
    benchmark target, FAST_TOL = 5e-4 as margin), with fewer passes than the default."""
    A = flat(rng, 1000, 800, np.float32)
    ref = reference(A)
    res = truncated_svd(A, 32, method="randomized", rng=0, excess_tol=FAST_TOL)
    d = res.diagnostics
    assert d.criterion == "excess" and d.tol == FAST_TOL and res.converged
    assert excess(A, res, ref) <= 1e-3
    assert d.excess_estimate is not None and d.excess_estimate <= FAST_TOL
    accurate = truncated_svd(A, 32, method="randomized", rng=0)
    assert d.n_passes < accurate.diagnostics.n_passes
    # The default (value_tol) estimates the excess too, and reaches it.
    assert accurate.diagnostics.excess_estimate is not None
    assert excess(A, accurate, ref) <= 1e-6


def test_subspace_iteration_still_available(rng):
    A = with_spectrum(rng, 300, 200, 1.0 / np.arange(1, 201))
    res = truncated_svd(A, 10, method="randomized", block_krylov=False, rng=0)
    d = res.diagnostics
    assert d.scheme == "subspace" and d.n_iter == 6 and d.n_passes == 14
    assert res.converged is None
    assert_valid_svd(res, A, rank=10, rtol=1e-3)


def test_default_block_size():
    assert default_block_size((4096, 4096), 8) == 16
    assert default_block_size((4096, 4096), 64) == 24
    assert default_block_size((4096, 4096), 256) == 32
    assert default_block_size((4096, 4096), 64, criterion="excess") == 40
    assert default_block_size((4096, 4096), 256, criterion="excess") == 64
    assert default_block_size((30, 12), 12) == 12


def test_bad_new_options():
    A = np.eye(4)
    with pytest.raises(InputError, match=r"value_tol must be finite and > 0; got 0"):
        truncated_svd(A, 1, method="randomized", value_tol=0)
    with pytest.raises(InputError, match=r"excess_tol must satisfy 0 < excess_tol < 1; got 1.0"):
        truncated_svd(A, 1, method="randomized", excess_tol=1.0)
    with pytest.raises(InputError, match=r"value_tol must be a real number; got 'x'"):
        truncated_svd(A, 1, value_tol="x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"block_size must be >= 1; got 0"):
        truncated_svd(A, 1, block_size=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"value_tol": 1e-3, "excess_tol": 1e-3}, "value_tol and excess_tol are two targets"),
        ({"n_iter": 2, "value_tol": 1e-3}, "value_tol belong to the adaptive method, n_iter"),
        ({"n_iter": 2, "max_iter": 3}, "max_iter belong to the adaptive method, n_iter"),
        ({"block_krylov": False, "excess_tol": 0.1}, "block_krylov=False to a fixed"),
        ({"oversample": 5}, "oversample applies with n_iter or block_krylov=False"),
        ({"block_krylov": False, "block_size": 8}, "block_size applies to the block Krylov"),
    ],
)
def test_options_of_two_modes_are_refused(kwargs, match):
    # One meaning per option: each belongs to one mode of the table in truncated_svd.
    with pytest.raises(InputError, match=match):
        truncated_svd(np.eye(4), 1, method="randomized", **kwargs)


@pytest.mark.parametrize("method", ["exact", "arpack", "propack", "lobpcg"])
def test_randomized_options_with_another_method_are_refused(method):
    with pytest.raises(
        InputError, match=rf"n_iter apply to method='randomized'; got method='{method}'"
    ):
        truncated_svd(np.eye(4), 1, method=method, n_iter=2)


def test_auto_may_choose_exact_and_ignore_the_targets():
    res = truncated_svd(np.diag([3.0, 2.0, 1.0]), 1, excess_tol=0.1)
    assert res.method == "exact" and res.converged and res.diagnostics is None


def test_the_result_unpacks_like_numpys():
    A = np.diag([3.0, 2.0, 1.0])
    U, S, Vh = truncated_svd(A, 2)
    res = truncated_svd(A, 2)
    assert U is not None and len(res) == 3
    for got, want in zip((U, S, Vh), (res.U, res.S, res.Vh), strict=True):
        np.testing.assert_array_equal(got, want)


# --- internals ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("scale", [1.0, 1e-150, 1e150])
def test_orthonormalize_block(dtype, scale, rng):
    if np.dtype(dtype) == np.float32 and scale != 1.0:
        scale = 1e-30 if scale < 1 else 1e30
    N = 200
    K = np.linalg.qr(rng.standard_normal((N, 30)))[0].astype(dtype)
    Y = (rng.standard_normal((N, 12)) * scale).astype(dtype)
    Y[:, 5] = Y[:, 4] * 2  # rank-deficient block
    Y[:, 6] = (K[:, :3] @ rng.standard_normal(3) * scale).astype(dtype)  # inside span(K)
    Q, C, R = orthonormalize(Y, K, room=N - 30, rng=np.random.default_rng(0))
    assert Q.shape == (N, 12) and Q.dtype == np.dtype(dtype)
    assert_orthonormal(np.concatenate([K, Q], axis=1), name="[K Q]", factor=64.0)
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    recon = K.astype(wide) @ C + Q.astype(wide) @ R
    err = np.max(np.abs(recon - Y)) / np.max(np.abs(Y))
    assert err <= 1e3 * np.finfo(dtype).eps
    assert np.count_nonzero(np.linalg.norm(R, axis=1) == 0) == 2  # two random directions


def test_orthonormalize_respects_room(rng):
    K = np.linalg.qr(rng.standard_normal((20, 15)))[0]
    Q, C, R = orthonormalize(rng.standard_normal((20, 8)), K, room=5, rng=rng)
    assert Q.shape == (20, 5) and R.shape == (5, 8) and C.shape == (15, 8)
    assert_orthonormal(np.concatenate([K, Q], axis=1), name="[K Q]")


# Equal intervals and one twice the other have closed forms; the rest are bisected.
@pytest.mark.parametrize(
    ("before", "now"), [(1, 1), (3, 3), (1, 2), (2, 4), (2, 1), (2, 3), (4, 1)]
)
@pytest.mark.parametrize("rho", [0.0, 1e-6, 0.1, 0.5, 0.9, 0.999])
def test_contraction_inverts_the_geometric_model(rho, before, now):
    ratio = rho**before * (1 - rho**now) / (1 - rho**before)
    # 1e-9: the bisection stops at 2**-40 (1e-12 absolute); the closed forms are exact to
    # a few rounding errors of the square root and the power.
    assert contraction(ratio, before, now) == pytest.approx(rho, rel=1e-9, abs=1e-11)
    assert contraction(now / before, before, now) == 1.0
    assert contraction(2 * now / before, before, now) == 1.0
    assert contraction(math.inf, before, now) == 1.0
    assert contraction(math.nan, before, now) == 1.0  # no rate, never a fast one


def test_excess_estimate_caps_a_value_by_the_values_above_it():
    """A value whose growth does not shrink has no rate; it cannot end above the value
    ranked above it, so that value's extrapolated end caps what it adds (before, only
    sigma_1's ceiling did, and the estimate was infinite here).

    Values (||A||_F = 1): the top one still, the second converging (growth of its square
    halving), the third growing linearly. Equal intervals, so rho is the ratio of the
    growths and the remaining growth of a square is now * rho / (1 - rho)."""
    progress = Progress(3, 1e-16, 1.0, "excess")
    checks = [(0.6, 0.35, 0.30), (0.6, 0.375, 0.33), (0.6, 0.3875, 0.36)]
    for step, values in enumerate(checks, start=1):
        progress.update(step, np.array(values))
    (_, a0, _), (_, a1, _), (top, a2, b2) = checks
    now, before = a2**2 - a1**2, a1**2 - a0**2
    rho = now / before
    second_end = a2**2 + now * rho / (1 - rho)
    remaining = (second_end - a2**2) + (second_end - b2**2)
    residual_sq = 1.0 - (top**2 + a2**2 + b2**2)
    expected = math.sqrt(residual_sq / (residual_sq - remaining)) - 1.0
    assert progress.excess_estimate == pytest.approx(expected, rel=1e-12)


def test_value_estimate_counts_a_lower_value_that_would_overtake():
    """sigma_1 >= sigma_2 >= every Ritz value of the second: a second Ritz value whose growth
    would carry it past the first shows the first is not converged, though the first has
    stopped moving (its own growth, zero, said converged before). Rank 1, ||A||_F = 1, equal
    intervals."""
    progress = Progress(1, 1e-16, 1.0, "values")
    progress.update(1, np.array([1.0, 0.9]))
    progress.update(2, np.array([1.0, 0.99]))
    # No rate after two checks: one more interval of the same growth, 0.99 + 0.09.
    assert progress.value_estimate == pytest.approx(0.08, rel=1e-12)
    assert not progress.values_at_noise
    # The growth shrank to 0.005 (rho = 0.005 / 0.09): the second is extrapolated to end at
    # 0.995 + 0.005 rho / (1 - rho), below the first, which has then converged.
    progress.update(3, np.array([1.0, 0.995]))
    assert progress.value_estimate == 0.0
    assert progress.values_at_noise
    # A growth barely shrinking (0.005, then 0.004: rho = 0.8) is extrapolated by no more
    # than one more interval (a young Ritz value's rate is no evidence of where it ends):
    # 0.999 + 0.004, not the model's 0.004 rho / (1 - rho) = 0.016.
    progress.update(4, np.array([1.0, 0.999, 0.99]))
    assert progress.value_estimate == pytest.approx(0.003, rel=1e-9)
    # Passing by less than the rounding level (NOISE_EPS eps sigma_1 = 8e-6 here) is what an
    # exactly repeated value does: 1 - 6e-6 + 9e-6 passes 1 by 3e-6, and is no evidence.
    repeated = Progress(1, 1e-6, 1.0, "values")
    repeated.update(1, np.array([1.0, 1.0 - 15e-6]))
    repeated.update(2, np.array([1.0, 1.0 - 6e-6]))
    assert repeated.values_at_noise
    assert repeated.value_estimate == 0.0


@pytest.mark.parametrize(("before", "now"), [(1, 1), (2, 2), (1, 2), (3, 6), (2, 1), (4, 2)])
def test_contraction_closed_forms_agree_with_bisection(rng, before, now):
    ratios = np.concatenate([rng.uniform(0.0, 1.2 * now / before, 2000), [0.0, now / before]])
    closed = _contractions(ratios, before, now)
    bisected = _bisected_contractions(ratios, before, now)
    np.testing.assert_allclose(closed, bisected, rtol=0, atol=4e-12)
