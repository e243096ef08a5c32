"""PiSSA→LoRA conversion and SVDs of factored products: exactness, optimal recompression,
memory (no dense product), configs, and every error path."""

from __future__ import annotations

import math
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank._numerics import tolerance
from lowrank.errors import DTypeError, InputError, NonFiniteError, RankError, ShapeError
from lowrank.lora import (
    LoRAConfig,
    convert_pissa_adapter,
    factored_svd,
    pissa_init,
    pissa_to_lora,
)


def trained_pissa(rng, shape=(20, 14), rank=3, alpha=6.0, rslora=False, step=0.1):
    """A PiSSA init of a random W and a 'trained' adapter (the init plus a perturbation)."""
    W = rng.standard_normal(shape)
    init = pissa_init(W, rank, alpha=alpha, use_rslora=rslora)
    A = init.lora_A + step * rng.standard_normal(init.lora_A.shape)
    B = init.lora_B + step * rng.standard_normal(init.lora_B.shape)
    return W, init, A, B


def test_exact_conversion_reproduces_the_trained_model_on_the_original_base(rng):
    W, init, A, B = trained_pissa(rng)
    conv = pissa_to_lora(A, B, init.lora_A, init.lora_B, alpha=6.0)
    assert conv.rank == 6 and conv.alpha == 12.0 and conv.scaling == init.scaling == 2.0
    assert conv.lora_A.shape == (6, 14) and conv.lora_B.shape == (20, 6)
    assert not conv.recompressed and conv.error_fro == 0.0
    # W + s'B'A' (plain LoRA on the original base) == W_res + sBA (the trained PiSSA model).
    lora_model = W + conv.scaling * conv.lora_B @ conv.lora_A
    pissa_model = init.residual + init.scaling * B @ A
    tol = tolerance(np.float64, size=6, scale=np.abs(W).max() + np.abs(B).max() * np.abs(A).max())
    np.testing.assert_allclose(lora_model, pissa_model, atol=tol)
    # Concatenation and negation are exact: A' = [A; A0], B' = [B, -B0] bit for bit.
    assert np.array_equal(conv.lora_A, np.concatenate([A, init.lora_A]))
    assert np.array_equal(conv.lora_B, np.concatenate([B, -init.lora_B], axis=1))


def test_rslora_multiplies_alpha_by_sqrt2(rng):
    _, init, A, B = trained_pissa(rng, rslora=True)
    conv = pissa_to_lora(A, B, init.lora_A, init.lora_B, alpha=6.0, use_rslora=True)
    assert conv.alpha == pytest.approx(6.0 * math.sqrt(2))
    assert conv.scaling == pytest.approx(conv.alpha / math.sqrt(conv.rank))


def test_exact_conversion_keeps_bfloat16_bit_for_bit(rng):
    A, B = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    A0, B0 = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    bf = [x.astype(ml_dtypes.bfloat16) for x in (A, B, A0, B0)]
    conv = pissa_to_lora(*bf)
    assert conv.lora_A.dtype == np.dtype(ml_dtypes.bfloat16)
    assert np.array_equal(conv.lora_B[:, 2:].astype(np.float32), -bf[3].astype(np.float32))


def test_singular_values_of_the_change_are_reported(rng):
    _, init, A, B = trained_pissa(rng)
    conv = pissa_to_lora(A, B, init.lora_A, init.lora_B, alpha=6.0)
    delta = init.scaling * (B @ A - init.lora_B @ init.lora_A)
    S = np.linalg.svd(delta, compute_uv=False)[:6]
    np.testing.assert_allclose(
        conv.singular_values, S, atol=tolerance(np.float64, size=20, scale=S[0])
    )
    assert conv.delta_fro == pytest.approx(np.linalg.norm(delta), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_recompression_is_the_eym_optimum_with_its_exact_error(rng, k):
    _W, init, A, B = trained_pissa(rng)
    conv = pissa_to_lora(A, B, init.lora_A, init.lora_B, alpha=6.0, rank=k)
    delta = init.scaling * (B @ A - init.lora_B @ init.lora_A)
    U, S, Vh = np.linalg.svd(delta)
    best = (U[:, :k] * S[:k]) @ Vh[:k]
    tol = tolerance(np.float64, size=20, scale=S[0])
    got = conv.scaling * conv.lora_B @ conv.lora_A
    np.testing.assert_allclose(got, best, atol=tol)
    assert conv.error_fro == pytest.approx(math.sqrt(float(np.sum(S[k:] ** 2))), abs=tol)
    assert conv.error_fro == pytest.approx(np.linalg.norm(delta - got), abs=tol)
    assert conv.relative_error == pytest.approx(conv.error_fro / np.linalg.norm(delta), abs=1e-12)
    # Same scaling as the trained adapter; alpha follows the new rank.
    assert conv.scaling == 2.0 and conv.alpha == 2.0 * k and conv.recompressed


def test_recompression_by_tolerance_and_energy(rng):
    A0, B0 = rng.standard_normal((4, 9)), rng.standard_normal((7, 4))
    A = A0.copy()
    A[0] += 1.0  # training changed one row: ΔW = B0[:, :1] ⊗ e has rank 1
    conv = pissa_to_lora(A, B0, A0, B0, rel_tol=1e-10)
    assert conv.rank == 1 and conv.relative_error < 1e-10
    assert pissa_to_lora(A, B0, A0, B0, energy=0.5).rank == 1
    untrained = pissa_to_lora(A0, B0, A0, B0, energy=0.9)
    assert untrained.rank == 1 and untrained.delta_fro == 0.0 and untrained.relative_error == 0.0


def test_recompression_never_forms_the_dense_product():
    # A 20000 x 20000 float32 product would take 1.6 GB; QR + a 4x4 core take ~1.3 MB.
    rng = np.random.default_rng(0)
    n, r = 20000, 2
    A, A0 = (rng.standard_normal((r, n)).astype(np.float32) for _ in range(2))
    B, B0 = (rng.standard_normal((n, r)).astype(np.float32) for _ in range(2))
    tracemalloc.start()
    conv = pissa_to_lora(A, B, A0, B0, rank=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert conv.lora_A.shape == (2, n) and conv.lora_A.dtype == np.float32
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_factored_svd_matches_the_dense_svd(rng):
    B, A = rng.standard_normal((12, 3)), rng.standard_normal((3, 8))
    res = factored_svd(A, B, scaling=0.5)
    S = np.linalg.svd(0.5 * B @ A, compute_uv=False)
    assert res.method == "factored" and res.rank == 3 and res.shape == (12, 8)
    np.testing.assert_allclose(res.S, S[:3], rtol=1e-12)
    np.testing.assert_allclose(res.to_dense(), 0.5 * B @ A, atol=1e-12)
    np.testing.assert_allclose(res.U.T @ res.U, np.eye(3), atol=1e-12)
    assert res.spectrum.shape == (8,) and res.spectrum_complete
    assert res.residual_fro == pytest.approx(0.0, abs=1e-12)
    assert res.norm_fro == pytest.approx(np.linalg.norm(0.5 * B @ A), rel=1e-12)
    # Inner dimension larger than the matrix: min(out, in, k) triplets.
    wide = factored_svd(rng.standard_normal((5, 4)), rng.standard_normal((3, 5)))
    assert wide.rank == 3


def test_factored_svd_float32_and_half_inputs(rng):
    B, A = rng.standard_normal((10, 2)), rng.standard_normal((2, 6))
    res = factored_svd(A.astype(ml_dtypes.bfloat16), B.astype(np.float16))
    assert res.U.dtype == np.float32 and res.S.dtype == np.float32


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((np.ones((3, 4)), np.ones((3, 2))), {}, ShapeError, "must share k"),
        ((np.ones((2, 4)), np.ones((3, 2))), {"scaling": 0.0}, InputError, "scaling must be"),
        ((np.ones((2, 4)), np.ones((3, 2), complex)), {}, DTypeError, "lora_B must be real"),
        ((np.ones((2, 4)), np.ones(3)), {}, ShapeError, "lora_B must be a 2-D matrix"),
        ((np.full((2, 4), np.nan), np.ones((3, 2))), {}, NonFiniteError, "lora_A must contain"),
        # The old order (lora_B, lora_A) is refused by the shapes, not decomposed wrongly.
        ((np.ones((3, 2)), np.ones((2, 4))), {}, ShapeError, "must share k"),
    ],
)
def test_factored_svd_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        factored_svd(*args, **kwargs)


@pytest.mark.parametrize(
    ("shapes", "kwargs", "error", "match"),
    [
        (
            ((2, 5), (4, 3), (2, 5), (4, 2)),
            {},
            ShapeError,
            r"lora_A \(r, in\) and lora_B \(out, r\) must share r",
        ),
        (((2, 5), (4, 2), (2, 5), (4, 3)), {}, ShapeError, "initial_A .* and initial_B"),
        (
            ((2, 5), (4, 2), (3, 5), (4, 3)),
            {},
            ShapeError,
            "trained and initial factors must have the same shapes",
        ),
        (((0, 5), (4, 0), (0, 5), (4, 0)), {}, ShapeError, "lora_A must not be empty"),
        (
            ((2, 5), (4, 2), (2, 5), (4, 2)),
            {"rank": 2, "energy": 0.5},
            InputError,
            "at most one of rank, rel_tol and energy",
        ),
        (
            ((2, 5), (4, 2), (2, 5), (4, 2)),
            {"rank": 5},
            RankError,
            r"rank must satisfy 1 <= rank <= min\(out, in, 2r\) = 4; got 5",
        ),
        (((2, 5), (4, 2), (2, 5), (4, 2)), {"rank": 0}, RankError, "got 0"),
        (((2, 5), (4, 2), (2, 5), (4, 2)), {"alpha": 0}, InputError, "alpha must be finite"),
        (((2, 5), (4, 2), (2, 5), (4, 2)), {"use_rslora": "x"}, InputError, "use_rslora must"),
        (((2, 5), (4, 2), (2, 5), (4, 2)), {"rel_tol": 2.0}, InputError, "rel_tol must lie"),
    ],
)
def test_pissa_to_lora_errors(shapes, kwargs, error, match):
    arrays = [np.ones(s) for s in shapes]
    with pytest.raises(error, match=match):
        pissa_to_lora(*arrays, **kwargs)


def test_lapack_failure_is_a_convergence_error(monkeypatch):
    import scipy.linalg

    from lowrank.errors import ConvergenceError

    calls = []

    def failing_svd(*args, **kwargs):
        calls.append(kwargs.get("lapack_driver"))
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(scipy.linalg, "svd", failing_svd)
    with pytest.raises(
        ConvergenceError,
        match=r"LAPACK gesdd and gesvd both failed to converge on a \(2, 2\) matrix",
    ):
        factored_svd(np.eye(2), np.eye(3)[:, :2])
    assert calls == ["gesdd", "gesvd"]


def test_pissa_to_lora_dtype_error():
    with pytest.raises(DTypeError, match="initial_B must be real"):
        pissa_to_lora(np.ones((1, 2)), np.ones((2, 1)), np.ones((1, 2)), np.ones((2, 1), complex))


# -- whole adapters ------------------------------------------------------------------------


def adapter(rng, config):
    trained, initial = {}, {}
    for name in ("layers.0.q", "layers.0.v"):
        r = config.rank_for(name)
        A0, B0 = rng.standard_normal((r, 6)), rng.standard_normal((5, r))
        initial[name] = (A0, B0)
        trained[name] = (A0 + 0.1 * rng.standard_normal((r, 6)), B0 + 0.1)
    return trained, initial


@pytest.mark.parametrize("rslora", [False, True])
def test_convert_adapter_exact_keeps_every_scaling(rng, rslora):
    cfg = LoRAConfig(
        r=3,
        lora_alpha=6,
        use_rslora=rslora,
        rank_pattern={"v": 2},
        alpha_pattern={"v": 8},
        init_lora_weights="pissa",
    )
    trained, initial = adapter(rng, cfg)
    out = convert_pissa_adapter(trained, initial, cfg)
    new = out.config
    assert new.init_lora_weights is True and new.r == 6 and dict(new.rank_pattern) == {"v": 4}
    for name, conv in out.modules.items():
        assert new.rank_for(name) == conv.rank == 2 * cfg.rank_for(name)
        assert new.scaling_for(name) == pytest.approx(cfg.scaling_for(name))
        assert conv.scaling == pytest.approx(cfg.scaling_for(name))
        A, B = trained[name]
        A0, B0 = initial[name]
        np.testing.assert_allclose(
            conv.scaling * conv.lora_B @ conv.lora_A,
            cfg.scaling_for(name) * (B @ A - B0 @ A0),
            atol=1e-12,
        )


def test_convert_adapter_recompressed_keeps_the_config(rng):
    cfg = LoRAConfig(r=3, lora_alpha=6, rank_pattern={"v": 2}, init_lora_weights="pissa")
    trained, initial = adapter(rng, cfg)
    out = convert_pissa_adapter(trained, initial, cfg, recompress=True)
    assert out.config.r == 3 and out.config.init_lora_weights is True
    for name, conv in out.modules.items():
        assert conv.rank == cfg.rank_for(name) and conv.recompressed
        assert conv.alpha == pytest.approx(cfg.alpha_for(name))


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda t, i, c: (t, {}, c), InputError, "must name the same modules"),
        (lambda t, i, c: (t, i, {"r": 3}), InputError, "config must be a LoRAConfig"),
        (
            lambda t, i, c: (t, i, LoRAConfig(r=4, lora_alpha=4)),
            ShapeError,
            "lora_A has 3 rows but the config gives rank 4",
        ),
    ],
)
def test_convert_adapter_errors(rng, mutate, error, match):
    cfg = LoRAConfig(r=3, lora_alpha=3)
    trained, initial = adapter(rng, LoRAConfig(r=3, lora_alpha=3))
    args = mutate(trained, initial, cfg)
    with pytest.raises(error, match=match):
        convert_pissa_adapter(*args)


def test_convert_adapter_recompress_flag_error(rng):
    cfg = LoRAConfig(r=3, lora_alpha=3)
    trained, initial = adapter(rng, cfg)
    with pytest.raises(InputError, match="recompress must be True or False"):
        convert_pissa_adapter(trained, initial, cfg, recompress="yes")


@given(
    out=st.integers(1, 9),
    n_in=st.integers(1, 9),
    r=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    alpha=st.floats(0.1, 16.0),
    rslora=st.booleans(),
    data=st.data(),
)
def test_conversion_identity_property(out, n_in, r, seed, alpha, rslora, data):
    """s'B'A' == s(BA - B0A0) exactly converted, and the recompression error is the tail."""
    rng = np.random.default_rng(seed)
    A, A0 = rng.standard_normal((r, n_in)), rng.standard_normal((r, n_in))
    B, B0 = rng.standard_normal((out, r)), rng.standard_normal((out, r))
    conv = pissa_to_lora(A, B, A0, B0, alpha=alpha, use_rslora=rslora)
    s = alpha / (math.sqrt(r) if rslora else r)
    delta = s * (B @ A - B0 @ A0)
    scale = s * (np.abs(B) @ np.abs(A) + np.abs(B0) @ np.abs(A0)).max()
    tol = tolerance(np.float64, size=2 * r, scale=scale)
    np.testing.assert_allclose(conv.scaling * conv.lora_B @ conv.lora_A, delta, atol=tol)
    k = data.draw(st.integers(1, min(out, n_in, 2 * r)))
    small = pissa_to_lora(A, B, A0, B0, alpha=alpha, use_rslora=rslora, rank=k)
    direct = np.linalg.norm(delta - small.scaling * small.lora_B @ small.lora_A)
    S = np.linalg.svd(delta, compute_uv=False)
    tail = math.sqrt(float(np.sum(S[k:] ** 2)))
    tol_fro = tolerance(np.float64, size=max(out, n_in), scale=scale * math.sqrt(2 * r))
    assert abs(small.error_fro - tail) <= tol_fro
    assert abs(small.error_fro - direct) <= tol_fro


@given(
    step=st.sampled_from([1e-2, 1e-3, 3e-4, 1e-4, 1e-5]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, ml_dtypes.bfloat16]),
)
def test_a_small_update_of_low_precision_factors_is_kept(step, seed, dtype):
    """Trained PiSSA factors in float32 or bfloat16 that moved by a relative ``step``: the
    update is real (the factors are exact numbers), and the conversion keeps it.

    Reference: the float64 SVD of the update formed from the stored factors. The
    factored SVD runs in float64, so its values are off by about
    eps64 sqrt(k) ||[B, -B0]||_F ||[A; A0]||_F (1e-12 here); they are returned in float32:
    rtol 4 eps32 on values above 1e-6 sigma_1. Before, a float32 threshold of
    16 eps32 sqrt(n) ||B||_F ||A||_F (0.7 here) zeroed every value of a 0.1 % update.
    """
    rng = np.random.default_rng(seed)
    n, r = 96, 6
    B0 = rng.standard_normal((n, r)).astype(dtype)
    A0 = rng.standard_normal((r, n)).astype(dtype)
    B = (B0.astype(np.float64) * (1 + step * rng.standard_normal(B0.shape))).astype(dtype)
    # (B - B0) is exact in float64: both are single- or half-precision numbers.
    D = (B.astype(np.float64) - B0.astype(np.float64)) @ A0.astype(np.float64)
    ref = np.linalg.svd(D, compute_uv=False)
    conv = pissa_to_lora(A0, B, A0, B0)
    assert conv.delta_fro == pytest.approx(np.linalg.norm(D), rel=1e-9)
    got = conv.singular_values.astype(np.float64)[: ref.size]
    big = ref[: got.size] > 1e-6 * ref[0]
    np.testing.assert_allclose(got[big], ref[: got.size][big], rtol=4 * np.finfo(np.float32).eps)
    # The values of [B, -B0][A0; A0] beyond the update's rank (r, or fewer rows of B moved
    # when bfloat16 rounds a small step away) are rounding, cleared.
    assert np.count_nonzero(conv.singular_values) == np.count_nonzero(ref > 1e-9 * ref[0])


@pytest.mark.parametrize("bad", [3.0, np.ones(5)], ids=["scalar", "1-D"])
def test_convert_pissa_adapter_names_a_factor_that_is_not_a_matrix(bad):
    # Before: IndexError for the scalar, "lora_A has 5 rows" for the vector.
    cfg = LoRAConfig(r=2, lora_alpha=2, init_lora_weights="pissa")
    initial = {"v": (np.ones((2, 3)), np.ones((4, 2)))}
    with pytest.raises(ShapeError, match=r"trained\['v'\] lora_A must be a 2-D matrix"):
        convert_pissa_adapter({"v": (bad, np.ones((4, 2)))}, initial, cfg)
