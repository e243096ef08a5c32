"""LoRA initialisers: identities (W_res + s·B·A = W, PiSSA = EYM, MiLoRA = minor part,
OLoRA = QR), dtypes, layouts, options, and every error path."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank._numerics import storage_eps, tolerance
from lowrank.errors import DTypeError, InputError, NonFiniteError, RankError, ShapeError
from lowrank.lora import (
    INIT_METHODS,
    init_factors,
    lora_init,
    lora_scaling,
    milora_init,
    olora_init,
    pissa_init,
)
from lowrank.svd import FAST_TOL

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
SVD_INITS = ["pissa", "milora", "olora", "pissa_niter_2"]


def f64(x):
    return np.asarray(x).astype(np.float64)


def compute_dtype(dtype):
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def assert_reconstructs(W, init, *, fan_in_fan_out=False):
    """W_res + s·B·A == W to rounding.

    Why this tolerance: W_res is computed in the compute dtype from the *stored* factors and
    rounded once to the storage dtype, so the error is at most (a) that one rounding,
    storage_eps · max|W_res|, plus (b) the compute-dtype error of s·B·A (length-r sums) and of
    the subtraction, tolerance(compute, size=r, scale=max|W| + s·max(|B||A|)). A residual in
    the subnormal range of float16 is rounded to an absolute spacing, not a relative one:
    plus finfo(storage).smallest_subnormal.
    """
    B, A, R = f64(init.lora_B), f64(init.lora_A), f64(init.residual)
    delta = init.scaling * (B @ A)
    if fan_in_fan_out:
        delta = delta.T
    err = float(np.max(np.abs(R + delta - f64(W))))
    magnitude = float(np.max(np.abs(f64(W)))) + init.scaling * float(np.max(np.abs(B) @ np.abs(A)))
    storage = init.residual.dtype
    tol = (
        storage_eps(storage) * float(np.max(np.abs(R)))
        + float(ml_dtypes.finfo(storage).smallest_subnormal)
        + tolerance(compute_dtype(storage), size=init.rank, scale=magnitude)
    )
    assert err <= tol, f"max |W_res + sBA - W| = {err:.3g} > {tol:.3g}"


def random_weight(rng, shape, dtype=np.float64, decay=0.8):
    """A weight with a decaying spectrum (distinct singular values, gaps between them)."""
    m, n = shape
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    S = 3.0 * decay ** np.arange(k)
    return ((U * S) @ V.T).astype(dtype)


# -- reconstruction in every dtype --------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("init", SVD_INITS)
def test_residual_reconstructs_w_in_every_dtype(rng, dtype, init):
    W = random_weight(rng, (24, 17), dtype)
    out = init_factors(W, 5, init=init, alpha=3.0, rng=1)
    assert out.lora_A.dtype == out.lora_B.dtype == out.residual.dtype == np.dtype(dtype)
    assert out.lora_A.shape == (5, 17) and out.lora_B.shape == (24, 5)
    assert out.residual.shape == W.shape
    assert_reconstructs(W, out)


def test_integer_weights_are_computed_and_returned_in_float64(rng):
    W = rng.integers(-5, 5, size=(6, 4))
    out = pissa_init(W, 2)
    assert out.residual.dtype == out.lora_A.dtype == np.float64
    assert_reconstructs(W, out)


@pytest.mark.parametrize(
    ("W", "match"),
    [
        (np.ones((3, 3), dtype=np.complex128), "LoRA has no complex"),
        (np.ones((3, 3), dtype=ml_dtypes.float8_e4m3fn), "quantised dtype float8_e4m3fn"),
        (np.ones((3, 3), dtype=bool), "must have dtype float16, bfloat16"),
        (np.array([["a"]]), "must have dtype float16, bfloat16"),
    ],
)
def test_refused_dtypes(W, match):
    with pytest.raises(DTypeError, match=match):
        pissa_init(W, 1)


def test_unreadable_weight_is_refused():
    with pytest.raises(InputError, match="W could not be read as an array"):
        pissa_init([[1.0, 2.0], [3.0]], 1)


# -- PiSSA ---------------------------------------------------------------------------------


def test_pissa_is_the_eym_approximation_with_balanced_factors(rng):
    W = random_weight(rng, (20, 12))
    s_alpha, r = 6.0, 4
    out = pissa_init(W, r, alpha=s_alpha)
    s = s_alpha / r
    U, S, Vh = np.linalg.svd(W)
    best = (U[:, :r] * S[:r]) @ Vh[:r]
    tol = tolerance(np.float64, size=20, scale=S[0])
    np.testing.assert_allclose(s * out.lora_B @ out.lora_A, best, atol=tol)
    # Singular values divided by s and split as square roots: B^T B = A A^T = diag(S_r / s).
    np.testing.assert_allclose(out.lora_B.T @ out.lora_B, np.diag(S[:r] / s), atol=tol)
    np.testing.assert_allclose(out.lora_A @ out.lora_A.T, np.diag(S[:r] / s), atol=tol)
    # The residual holds the minor triplets only; the reported errors are the EYM tail.
    tail = math.sqrt(float(np.sum(S[r:] ** 2)))
    assert np.linalg.norm(out.residual) == pytest.approx(tail, rel=1e-12)
    assert out.svd.residual_fro == pytest.approx(tail, rel=1e-12)
    assert out.svd.optimal_fro_bounds == (out.svd.residual_fro, out.svd.residual_fro)
    assert out.init == "pissa" and out.scaling == s and out.alpha == s_alpha


def test_pissa_randomized_reports_distance_from_optimum(rng):
    # A flat spectrum makes a sketch without power iterations visibly suboptimal.
    W = rng.standard_normal((100, 80))
    out = pissa_init(W, 10, method="randomized", n_iter=0, oversample=2, rng=0)
    S = np.linalg.svd(W, compute_uv=False)
    optimal = math.sqrt(float(np.sum(S[10:] ** 2)))
    lower, upper = out.svd.optimal_fro_bounds
    assert lower <= optimal * (1 + 1e-12) and optimal <= upper * (1 + 1e-12)
    assert upper > optimal * 1.001  # measurably suboptimal, and it says so
    assert out.svd.excess_bound >= upper / optimal - 1 - 1e-12
    # The init is exact even though the SVD is not: W_res is computed from the factors.
    assert_reconstructs(W, out)
    assert np.linalg.norm(out.residual) == pytest.approx(out.svd.residual_fro, rel=1e-9)


@pytest.mark.parametrize("method", ["exact", "auto", "randomized", "arpack", "propack", "lobpcg"])
def test_pissa_forwards_every_svd_method(rng, method):
    W = random_weight(rng, (30, 20), decay=0.6)
    out = pissa_init(W, 3, method=method, rng=0)
    exact = pissa_init(W, 3)
    assert out.svd.method == (method if method != "auto" else "exact")
    # Gap sigma_3 / sigma_4 = 1/0.6: every method converges to the same subspace.
    delta, ref = out.scaling * out.lora_B @ out.lora_A, exact.scaling * exact.lora_B @ exact.lora_A
    np.testing.assert_allclose(delta, ref, atol=1e-6 * np.abs(W).max())
    assert_reconstructs(W, out)


def test_pissa_excess_tol_converges_the_residual(rng):
    # Marchenko-Pastur bulk, the hard case for a sketch: excess_tol stops when the estimated
    # excess of ||W - sBA||_F over the EYM optimum is below it; the excess is checked
    # against float64 LAPACK (1e-3 leaves the estimate its factor of 2 of slack).
    W = rng.standard_normal((600, 400)) / math.sqrt(600)
    S = np.linalg.svd(W, compute_uv=False)
    optimal = math.sqrt(float(np.sum(S[16:] ** 2)))
    fast = pissa_init(W, 16, method="randomized", excess_tol=FAST_TOL, rng=0)
    assert fast.svd.diagnostics.criterion == "excess" and fast.svd.converged
    assert np.linalg.norm(fast.residual) / optimal - 1 <= 1e-3
    assert_reconstructs(W, fast)
    loose = pissa_init(W, 16, method="randomized", excess_tol=3e-2, rng=0)
    assert loose.svd.diagnostics.tol == 3e-2
    assert loose.svd.diagnostics.n_passes < fast.svd.diagnostics.n_passes
    with pytest.raises(InputError, match=r"unknown SVD option.*preset"):
        pissa_init(W, 16, method="randomized", preset="fast")
    with pytest.raises(InputError, match="excess_tol apply to method='randomized'"):
        pissa_init(W, 16, excess_tol=0.1)


def test_pissa_randomized_is_reproducible(rng):
    W = rng.standard_normal((40, 30))
    a = pissa_init(W, 4, method="randomized", n_iter=1, rng=7)
    b = pissa_init(W, 4, method="randomized", n_iter=1, rng=np.random.default_rng(7))
    assert np.array_equal(a.lora_A, b.lora_A) and np.array_equal(a.residual, b.residual)


def test_rslora_and_default_alpha(rng):
    W = random_weight(rng, (10, 8))
    assert pissa_init(W, 4).scaling == 1.0
    assert pissa_init(W, 4, use_rslora=True).alpha == 2.0  # sqrt(4): scaling 1
    out = pissa_init(W, 4, alpha=8.0, use_rslora=True)
    assert out.scaling == 4.0 and out.use_rslora
    assert_reconstructs(W, out)


def test_fan_in_fan_out_decomposes_the_transpose(rng):
    W = random_weight(rng, (9, 14))  # stored (in=9, out=14)
    out = pissa_init(W, 3, fan_in_fan_out=True)
    assert out.lora_A.shape == (3, 9) and out.lora_B.shape == (14, 3)
    assert out.residual.shape == (9, 14) and out.fan_in_fan_out
    assert_reconstructs(W, out, fan_in_fan_out=True)
    ref = pissa_init(W.T, 3)
    np.testing.assert_allclose(out.residual, ref.residual.T, atol=1e-12)


def test_input_is_not_modified(rng):
    W = random_weight(rng, (8, 6), np.float32)
    copy = W.copy()
    for init in ("pissa", "milora", "olora", "lora"):
        init_factors(W, 2, init=init, rng=0)
    assert np.array_equal(W, copy)


# -- MiLoRA, OLoRA ------------------------------------------------------------------------


def test_milora_takes_the_minor_triplets(rng):
    W = random_weight(rng, (16, 11))
    out = milora_init(W, 3, alpha=6.0)
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    minor = (U[:, -3:] * S[-3:]) @ Vh[-3:]
    tol = tolerance(np.float64, size=16, scale=S[0])
    np.testing.assert_allclose(out.scaling * out.lora_B @ out.lora_A, minor, atol=tol)
    np.testing.assert_allclose(out.residual, W - minor, atol=tol)
    # Descending within the minor block, split by sqrt(S/s).
    np.testing.assert_allclose(np.sum(out.lora_A**2, axis=1), S[-3:] / 2.0, rtol=1e-10)
    assert out.svd.rank == 11 and out.svd.spectrum_complete


@pytest.mark.parametrize("method", ["randomized", "propack"])
def test_milora_with_full_width_iterative_methods(rng, method):
    W = random_weight(rng, (12, 9))
    out = milora_init(W, 2, method=method, rng=0)
    ref = milora_init(W, 2)
    np.testing.assert_allclose(
        out.lora_B @ out.lora_A, ref.lora_B @ ref.lora_A, atol=1e-8 * np.abs(W).max()
    )


@pytest.mark.parametrize("method", ["arpack", "lobpcg"])
def test_milora_refuses_methods_that_cannot_compute_every_triplet(rng, method):
    with pytest.raises(InputError, match=f"method='{method}' cannot compute"):
        milora_init(rng.standard_normal((5, 4)), 1, method=method)


def test_olora_is_the_qr_of_w(rng):
    W = rng.standard_normal((10, 7))
    out = olora_init(W, 3, alpha=6.0)
    Q, R = np.linalg.qr(W)
    # Same LAPACK Householder QR (geqrf) as torch.linalg.qr: same signs.
    np.testing.assert_allclose(out.lora_B, Q[:, :3], atol=1e-12)
    np.testing.assert_allclose(out.lora_A, R[:3], atol=1e-12)
    np.testing.assert_allclose(out.lora_B.T @ out.lora_B, np.eye(3), atol=1e-12)
    assert np.allclose(np.tril(out.lora_A[:, :3], -1), 0.0)
    assert out.scaling == 2.0 and out.svd is None
    assert_reconstructs(W, out)


# -- default LoRA ---------------------------------------------------------------------------


def test_lora_init_kaiming_uniform_bounds_and_zero_b(rng):
    W = np.zeros((30, 400), dtype=np.float32)
    out = lora_init(W, 8, rng=0)
    bound = 1.0 / math.sqrt(400)
    assert out.lora_A.dtype == np.float32 and out.residual is None
    assert np.all(np.abs(out.lora_A) <= bound)
    assert np.abs(out.lora_A).max() > 0.95 * bound  # fills the interval
    # U(-b, b) has variance b^2 / 3.
    assert np.var(out.lora_A.astype(np.float64)) == pytest.approx(bound**2 / 3, rel=0.05)
    assert not out.lora_B.any() and out.lora_B.shape == (30, 8)


def test_lora_init_gaussian_std_is_one_over_r():
    out = init_factors(np.zeros((4, 5000)), 4, init="gaussian", rng=0)
    assert out.init == "gaussian"
    assert np.std(out.lora_A) == pytest.approx(0.25, rel=0.02)


def test_lora_init_is_reproducible_and_may_exceed_min_shape():
    a = lora_init(np.zeros((3, 4)), 6, rng=5)
    b = lora_init(np.zeros((3, 4)), 6, rng=5)
    assert np.array_equal(a.lora_A, b.lora_A) and a.rank == 6


def test_lora_init_keeps_bfloat16():
    out = lora_init(np.zeros((3, 4), dtype=ml_dtypes.bfloat16), 2, rng=0)
    assert out.lora_A.dtype == out.lora_B.dtype == np.dtype(ml_dtypes.bfloat16)


def test_lora_init_fan_in_fan_out_uses_stored_rows_as_inputs():
    out = lora_init(np.zeros((7, 3)), 2, fan_in_fan_out=True, rng=0)
    assert out.lora_A.shape == (2, 7) and out.lora_B.shape == (3, 2)


# -- dispatcher and errors -----------------------------------------------------------------


def test_init_methods_listed():
    assert INIT_METHODS == ("lora", "gaussian", "pissa", "milora", "olora")


def test_pissa_niter_k_means_randomized_with_k_iterations(rng):
    W = random_weight(rng, (50, 40))
    out = init_factors(W, 4, init="pissa_niter_3", rng=0, oversample=5)
    d = out.svd.diagnostics
    assert out.svd.method == "randomized" and out.svd.converged is None
    assert (d.scheme, d.n_iter, d.oversample, d.block_size) == ("block_krylov", 3, 5, 9)
    same = pissa_init(W, 4, method="randomized", n_iter=3, oversample=5, rng=0)
    np.testing.assert_array_equal(out.lora_A, same.lora_A)
    assert_reconstructs(W, out)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"init": "dora"}, InputError, "init must be one of 'lora', 'gaussian'"),
        ({"init": True}, InputError, "init must be a string"),
        ({"init": "olora", "method": "exact"}, InputError, "apply to the SVD inits"),
        ({"init": "lora", "n_iter": 2}, InputError, "apply to the SVD inits"),
        ({"init": "pissa_niter_4", "method": "exact"}, InputError, "means method='randomized'"),
        ({"init": "pissa_niter_4", "n_iter": 2}, InputError, "with n_iter=4"),
        ({"init": "pissa", "method": "qr"}, InputError, "method must be one of"),
        ({"init": "pissa", "n_iter": -1}, InputError, "n_iter must be >= 0"),
        ({"init": "milora", "oversample": -2}, InputError, "oversample must be >= 0"),
        ({"init": "pissa", "alpha": 0.0}, InputError, "alpha must be finite and > 0"),
        ({"init": "lora", "alpha": float("nan")}, InputError, "alpha must be finite"),
        ({"init": "pissa", "use_rslora": 1}, InputError, "use_rslora must be True or False"),
        ({"init": "lora", "use_rslora": "yes"}, InputError, "use_rslora must be True or False"),
        ({"init": "olora", "fan_in_fan_out": None}, InputError, "fan_in_fan_out must be True"),
        ({"init": "lora", "rng": "seed"}, InputError, "rng must be None, an int seed"),
    ],
)
def test_option_errors(rng, kwargs, error, match):
    with pytest.raises(error, match=match):
        init_factors(rng.standard_normal((6, 5)), 2, **kwargs)


def test_distribution_error():
    with pytest.raises(InputError, match="distribution must be one of"):
        lora_init(np.zeros((3, 3)), 1, distribution="normal")


@pytest.mark.parametrize("init", ["pissa", "milora", "olora"])
@pytest.mark.parametrize(
    ("rank", "match"),
    [
        (0, r"rank must satisfy 1 <= rank <= min\(W.shape\) = 5; got 0"),
        (6, r"rank must satisfy 1 <= rank <= min\(W.shape\) = 5; got 6"),
        (2.0, "rank must be an integer"),
    ],
)
def test_rank_errors_of_the_svd_inits(init, rank, match):
    with pytest.raises(RankError, match=match):
        init_factors(np.ones((5, 7)), rank, init=init)


@pytest.mark.parametrize("rank", [0, -1, True, 1.5])
def test_rank_errors_of_the_random_init(rank):
    with pytest.raises(RankError, match="rank must be an integer >= 1"):
        lora_init(np.ones((5, 7)), rank)


@pytest.mark.parametrize(
    ("W", "error", "match"),
    [
        (np.ones(4), ShapeError, "W must be a 2-D matrix"),
        (np.ones((0, 3)), ShapeError, "W must not be empty"),
        (np.array([[1.0, np.nan]]), NonFiniteError, "W must contain only finite values"),
    ],
)
def test_weight_errors(W, error, match):
    with pytest.raises(error, match=match):
        pissa_init(W, 1)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0.0, 2), InputError, "alpha must be finite and > 0"),
        ((1.0, 0), RankError, "rank must be an integer >= 1"),
        ((1.0, 2, "x"), InputError, "use_rslora must be True or False"),
    ],
)
def test_lora_scaling_errors(args, error, match):
    alpha, rank, *rest = args
    with pytest.raises(error, match=match):
        lora_scaling(alpha, rank, use_rslora=rest[0] if rest else False)


def test_lora_scaling_values():
    assert lora_scaling(16, 8) == 2.0
    assert lora_scaling(16, 4, use_rslora=True) == 8.0


# -- property tests --------------------------------------------------------------------------


@given(
    m=st.integers(1, 12),
    n=st.integers(1, 12),
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    init=st.sampled_from(SVD_INITS),
    alpha=st.floats(0.05, 64.0),
    rslora=st.booleans(),
    fan=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_reconstruction_identity_property(m, n, data, dtype, init, alpha, rslora, fan, seed):
    rank = data.draw(st.integers(1, min(m, n)))
    scale = data.draw(st.sampled_from([1e-3, 1.0, 50.0]))
    W = (np.random.default_rng(seed).standard_normal((m, n)) * scale).astype(dtype)
    out = init_factors(
        W, rank, init=init, alpha=alpha, use_rslora=rslora, fan_in_fan_out=fan, rng=seed
    )
    assert out.residual.dtype == np.dtype(dtype)
    assert out.scaling == pytest.approx(alpha / (math.sqrt(rank) if rslora else rank))
    assert_reconstructs(W, out, fan_in_fan_out=fan)
