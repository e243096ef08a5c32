"""LoRA extraction: EYM optimality and exact errors, rank selection against the exact norm,
per-layer ranks with a PEFT config, and every error path."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank._numerics import tolerance
from lowrank.errors import DTypeError, InputError, NonFiniteError, RankError, ShapeError
from lowrank.lora import extract, extract_many


def task(rng, shape=(30, 20), spectrum=None):
    """(W_base, W_tuned, singular values of ΔW) with ΔW of the given spectrum."""
    m, n = shape
    k = min(m, n)
    s = np.asarray(spectrum if spectrum is not None else 2.0 * 0.7 ** np.arange(k), float)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    W0 = rng.standard_normal(shape)
    return W0, W0 + (U[:, : s.size] * s) @ V[:, : s.size].T, np.sort(s)[::-1]


def test_rank_extraction_is_eym_optimal_with_exact_error(rng):
    W0, W1, _s = task(rng)
    ex = extract(W0, W1, rank=4)
    delta = W1 - W0
    U, S, Vh = np.linalg.svd(delta)
    tol = tolerance(np.float64, size=30, scale=S[0])
    np.testing.assert_allclose(
        ex.scaling * ex.lora_B @ ex.lora_A, (U[:, :4] * S[:4]) @ Vh[:4], atol=tol
    )
    tail = math.sqrt(float(np.sum(S[4:] ** 2)))
    assert ex.error_fro == pytest.approx(tail, rel=1e-10)
    assert ex.error_fro == pytest.approx(np.linalg.norm(delta - ex.lora_B @ ex.lora_A), rel=1e-10)
    assert ex.delta_fro == pytest.approx(np.linalg.norm(delta), rel=1e-14)
    assert ex.relative_error == pytest.approx(tail / np.linalg.norm(delta), rel=1e-10)
    assert ex.energy == pytest.approx(float(np.sum(S[:4] ** 2) / np.sum(S**2)), rel=1e-10)
    # s = 1 by default (alpha = r) and sqrt(S) in each factor.
    assert (ex.alpha, ex.scaling) == (4.0, 1.0)
    np.testing.assert_allclose(np.linalg.norm(ex.lora_A, axis=1) ** 2, S[:4], rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(ex.lora_B, axis=0) ** 2, S[:4], rtol=1e-10)


def test_alpha_and_rslora_keep_the_product(rng):
    W0, W1, _ = task(rng)
    ref = extract(W0, W1, rank=3)
    for kwargs, scaling in (
        ({"alpha": 12.0}, 4.0),
        ({"use_rslora": True}, 1.0),
        ({"alpha": 6.0, "use_rslora": True}, 6.0 / math.sqrt(3)),
    ):
        ex = extract(W0, W1, rank=3, **kwargs)
        assert ex.scaling == pytest.approx(scaling)
        np.testing.assert_allclose(
            ex.scaling * ex.lora_B @ ex.lora_A, ref.lora_B @ ref.lora_A, atol=1e-12
        )


@pytest.mark.parametrize(("target", "expected"), [("rel_tol", 0.3), ("energy", 0.95)])
def test_selection_is_the_smallest_rank_meeting_the_target(rng, target, expected):
    W0, W1, s = task(rng)
    ex = extract(W0, W1, **{target: expected})
    rel = np.sqrt(np.cumsum((s**2)[::-1])[::-1] / np.sum(s**2))  # rel[r] = error at rank r
    rel = np.append(rel, 0.0)
    goal = expected if target == "rel_tol" else math.sqrt(1 - expected)
    assert ex.rank == int(np.flatnonzero(rel <= goal)[0])
    assert ex.relative_error <= goal + 1e-12
    assert ex.relative_error == pytest.approx(rel[ex.rank], rel=1e-9)


def test_selection_with_a_partial_spectrum_uses_the_exact_norm(rng):
    # ΔW with a heavy flat tail: 5 large values and 15 of 0.5. Energy of the top 5 against
    # their own sum would be 100%; against the exact ||ΔW||_F it is 25 / (25 + 3.75) = 87%.
    W0, W1, _s = task(rng, spectrum=[1.0] * 5 + [0.5] * 15)
    ex = extract(W0, W1, energy=0.9, max_rank=5, method="randomized", n_iter=6, rng=0)
    assert ex.rank == 5  # capped at max_rank: the target was not reachable
    assert ex.energy == pytest.approx(5 / (5 + 15 * 0.25), rel=1e-6)
    assert ex.relative_error > math.sqrt(0.1)  # says honestly that the target was missed
    assert ex.svd.method == "randomized"
    # With enough triplets the randomized selection equals the exact one.
    full = extract(W0, W1, energy=0.9, method="randomized", rng=0)
    exact = extract(W0, W1, energy=0.9)
    assert full.rank == exact.rank
    assert full.error_fro == pytest.approx(exact.error_fro, rel=1e-6)


def test_randomized_partial_selection_reaches_target_within_max_rank(rng):
    W0, W1, _s = task(rng, shape=(90, 60), spectrum=2.0 * 0.5 ** np.arange(60))
    ex = extract(W0, W1, rel_tol=1e-3, max_rank=20, method="randomized", rng=0)
    exact = extract(W0, W1, rel_tol=1e-3)
    assert ex.rank == exact.rank < 20
    assert ex.relative_error <= 1e-3
    lower, upper = ex.svd.optimal_fro_bounds
    assert lower <= exact.error_fro * (1 + 1e-9) <= upper * (1 + 1e-6)


@pytest.mark.filterwarnings("ignore:The problem size")  # LOBPCG on a tiny problem
@pytest.mark.parametrize("method", ["arpack", "lobpcg", "propack"])
def test_selection_with_svds_methods(rng, method):
    # Full rank with distinct values: PROPACK does not converge on clusters of zeros.
    W0, W1, _ = task(rng, shape=(12, 9), spectrum=[3.0, 2.0, 1.0, *(1e-3 * 0.7 ** np.arange(6))])
    ex = extract(W0, W1, rel_tol=1e-2, method=method, rng=0)
    assert ex.rank == 3 and ex.svd.method == method
    assert ex.relative_error == pytest.approx(extract(W0, W1, rank=3).relative_error, rel=1e-4)


def test_zero_difference_gives_a_zero_rank_one_adapter(rng):
    W = rng.standard_normal((5, 4))
    ex = extract(W, W.copy(), rel_tol=0.1)
    assert ex.rank == 1 and not ex.lora_A.any() and not ex.lora_B.any()
    assert (ex.delta_fro, ex.error_fro, ex.relative_error, ex.energy) == (0.0, 0.0, 0.0, 1.0)


def test_dtypes_kept_or_overridden(rng):
    W0, W1, _ = task(rng, shape=(12, 10))
    b0, b1 = W0.astype(ml_dtypes.bfloat16), W1.astype(ml_dtypes.bfloat16)
    ex = extract(b0, b1, rank=3)
    assert ex.lora_A.dtype == np.dtype(ml_dtypes.bfloat16) and ex.svd.U.dtype == np.float32
    wide = extract(b0, b1, rank=3, dtype=np.float32)
    assert wide.lora_A.dtype == np.float32
    # The bf16 factors approximate the float32 ones to bf16 rounding.
    np.testing.assert_allclose(ex.lora_A.astype(np.float32), wide.lora_A, atol=2**-7 * 2)
    assert extract(W0.astype(np.float32), W1.astype(np.float32), rank=2).lora_B.dtype == np.float32
    assert extract(W0.astype(np.float16), W1, rank=2).lora_B.dtype == np.float64


def test_fan_in_fan_out(rng):
    W0, W1, _ = task(rng, shape=(8, 6))
    ex = extract(W0.T, W1.T, rank=2, fan_in_fan_out=True)
    ref = extract(W0, W1, rank=2)
    assert ex.lora_A.shape == (2, 6) and ex.lora_B.shape == (8, 2) and ex.fan_in_fan_out
    np.testing.assert_allclose(ex.lora_B @ ex.lora_A, ref.lora_B @ ref.lora_A, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, InputError, "give exactly one of rank, rel_tol and energy; got none"),
        ({"rank": 2, "energy": 0.9}, InputError, "got rank, energy"),
        ({"rank": 0}, RankError, r"rank must satisfy 1 <= rank <= min\(W.shape\) = 4"),
        ({"rank": 5}, RankError, "got 5"),
        ({"rel_tol": 0.1, "max_rank": 9}, RankError, "rank must satisfy 1 <= rank"),
        ({"rel_tol": 1.5}, InputError, r"rel_tol must lie in \[0, 1\]"),
        ({"energy": -0.1}, InputError, r"energy must lie in \[0, 1\]"),
        ({"rank": 1, "method": "svd"}, InputError, "method must be one of"),
        ({"rank": 1, "n_iter": -1}, InputError, "n_iter must be >= 0"),
        ({"rank": 1, "oversample": -1}, InputError, "oversample must be >= 0"),
        ({"rank": 1, "use_rslora": None}, InputError, "use_rslora must be True or False"),
        ({"rank": 1, "fan_in_fan_out": 0}, InputError, "fan_in_fan_out must be True or False"),
        ({"rank": 1, "alpha": -1.0}, InputError, "alpha must be finite and > 0"),
        (
            {"rank": 1, "dtype": np.int8},
            DTypeError,
            "dtype must be float16, bfloat16, float32 or float64; got int8",
        ),
        ({"rank": 1, "dtype": "nonsense"}, InputError, "dtype must be a NumPy dtype"),
    ],
)
def test_extract_errors(rng, kwargs, error, match):
    W = rng.standard_normal((6, 4))
    with pytest.raises(error, match=match):
        extract(W, W + 1.0, **kwargs)


@pytest.mark.parametrize(
    ("base", "tuned", "error", "match"),
    [
        (
            np.ones((3, 2)),
            np.ones((2, 3)),
            ShapeError,
            "W_base and W_tuned must have the same shape",
        ),
        (np.ones(3), np.ones(3), ShapeError, "W_base must be a 2-D matrix"),
        (
            np.ones((2, 2)),
            np.full((2, 2), np.inf),
            NonFiniteError,
            "W_tuned must contain only finite",
        ),
        (np.ones((2, 2), complex), np.ones((2, 2)), DTypeError, "W_base must be real"),
    ],
)
def test_extract_weight_errors(base, tuned, error, match):
    with pytest.raises(error, match=match):
        extract(base, tuned, rank=1)


# -- many layers -----------------------------------------------------------------------------


def layers(rng):
    out = {}
    for name, k in (
        ("model.layers.0.q_proj", 2),
        ("model.layers.0.v_proj", 5),
        ("model.layers.1.q_proj", 3),
    ):
        W0, W1, _ = task(rng, shape=(12, 10), spectrum=[1.0] * k)
        out[name] = (W0, W1)
    return out


def test_extract_many_per_layer_ranks_and_config(rng):
    pairs = layers(rng)
    pairs["model.layers.1.v_proj"] = (np.ones((12, 10)), np.ones((12, 10)))  # unchanged
    out = extract_many(pairs, rel_tol=1e-8)
    assert out.ranks == {
        "model.layers.0.q_proj": 2,
        "model.layers.0.v_proj": 5,
        "model.layers.1.q_proj": 3,
    }
    assert out.skipped == ("model.layers.1.v_proj",)
    cfg = out.config
    assert (cfg.r, cfg.lora_alpha) == (5, 5.0)
    assert dict(cfg.rank_pattern) == {"model.layers.0.q_proj": 2, "model.layers.1.q_proj": 3}
    assert dict(cfg.alpha_pattern) == {"model.layers.0.q_proj": 2.0, "model.layers.1.q_proj": 3.0}
    assert cfg.target_modules == tuple(sorted(out.modules))
    for name, ex in out.modules.items():
        assert cfg.rank_for(name) == ex.rank and cfg.scaling_for(name) == 1.0
        assert ex.relative_error < 1e-8


def test_extract_many_rslora_alphas_are_square_roots(rng):
    out = extract_many(layers(rng), energy=1.0, use_rslora=True)
    assert out.config.lora_alpha == pytest.approx(math.sqrt(5))
    for name, ex in out.modules.items():
        assert out.config.scaling_for(name) == pytest.approx(1.0)
        assert ex.alpha == pytest.approx(math.sqrt(ex.rank))


def test_extract_many_anchors_ambiguous_pattern_keys(rng):
    W0, W1, _ = task(rng, shape=(6, 5), spectrum=[1.0, 1.0])
    V0, V1, _ = task(rng, shape=(6, 5), spectrum=[1.0] * 4)
    # "q" as a pattern would also match "block.q" (a dot-separated suffix).
    out = extract_many({"q": (W0, W1), "block.q": (V0, V1)}, rel_tol=1e-9)
    assert dict(out.config.rank_pattern) == {"^q": 2}
    assert out.config.rank_for("q") == 2 and out.config.rank_for("block.q") == 4


def test_extract_many_with_a_rank_per_layer_and_shared_rng(rng):
    pairs = layers(rng)
    ranks = {"model.layers.0.q_proj": 1, "model.layers.0.v_proj": 2, "model.layers.1.q_proj": 3}
    a = extract_many(pairs, rank=ranks, method="randomized", rng=3)
    b = extract_many(pairs, rank=ranks, method="randomized", rng=3)
    assert a.ranks == ranks
    for name in pairs:
        assert np.array_equal(a.modules[name].lora_A, b.modules[name].lora_A)
    assert extract_many(pairs, rank=2).ranks == dict.fromkeys(pairs, 2)


@pytest.mark.parametrize(
    ("arg", "kwargs", "error", "match"),
    [
        ({}, {"rank": 1}, InputError, "layers must be a non-empty mapping"),
        ([("a", (1, 2))], {"rank": 1}, InputError, "layers must be a non-empty mapping"),
        ({"a": "pair"}, {"rank": 1}, InputError, r"layers\['a'\] must be a pair"),
        ({"": (np.ones((2, 2)), np.zeros((2, 2)))}, {"rank": 1}, InputError, "non-empty strings"),
        (
            {"a": (np.ones((2, 2)), np.zeros((2, 2)))},
            {"rank": {"b": 1}},
            InputError,
            r"rank must give a rank for every layer; missing \['a'\]",
        ),
        (
            {"a": (np.ones((2, 2)), np.zeros((2, 2)))},
            {"rank": {"a": 1.0}},
            RankError,
            "rank for layer 'a' must be an integer",
        ),
        (
            {"a": (np.ones((2, 2)), np.ones((2, 2)))},
            {"rank": 1},
            InputError,
            "every layer is unchanged",
        ),
        ({"a": (np.ones((2, 2)), np.zeros((2, 2)))}, {"rank": 3}, RankError, "got 3"),
        (
            {"a": (np.ones((2, 2)), np.zeros((3, 2)))},
            {"rank": 1},
            ShapeError,
            "layer 'a': W_base and W_tuned must have the same shape",
        ),
        (
            {"a": (np.ones((2, 2)), np.zeros((2, 2)))},
            {"rank": 1, "skip_unchanged": "no"},
            InputError,
            "skip_unchanged must be True or False",
        ),
        ({"a": (np.ones((2, 2)), np.zeros((2, 2)))}, {}, InputError, "give exactly one of"),
    ],
)
def test_extract_many_errors(arg, kwargs, error, match):
    with pytest.raises(error, match=match):
        extract_many(arg, **kwargs)


@given(
    m=st.integers(1, 10),
    n=st.integers(1, 10),
    seed=st.integers(0, 2**16),
    data=st.data(),
    alpha=st.floats(0.1, 32.0),
    rslora=st.booleans(),
)
def test_extraction_error_identity_property(m, n, seed, data, alpha, rslora):
    """error_fro is the directly computed ||ΔW - sBA||_F and the EYM tail."""
    rng = np.random.default_rng(seed)
    W0, W1 = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    rank = data.draw(st.integers(1, min(m, n)))
    ex = extract(W0, W1, rank=rank, alpha=alpha, use_rslora=rslora)
    direct = np.linalg.norm((W1 - W0) - ex.scaling * ex.lora_B @ ex.lora_A)
    S = np.linalg.svd(W1 - W0, compute_uv=False)
    tol = tolerance(np.float64, size=max(m, n), scale=S[0] * math.sqrt(min(m, n)))
    assert abs(ex.error_fro - direct) <= tol
    assert abs(ex.error_fro - math.sqrt(float(np.sum(S[rank:] ** 2)))) <= tol


def test_extract_many_caps_max_rank_per_layer():
    """A cap above a small layer's size is that layer's full rank, not an error."""
    gen = np.random.default_rng(5)
    layers = {
        "big": (np.zeros((30, 20)), gen.standard_normal((30, 20))),
        "small": (np.zeros((4, 3)), gen.standard_normal((4, 3))),
    }
    out = extract_many(layers, energy=0.999999, max_rank=10)
    ranks = {name: m.rank for name, m in out.modules.items()}
    assert ranks["small"] == 3 and ranks["big"] == 10


@pytest.mark.parametrize("dtype", [np.float16, "float16"])
def test_factors_beyond_the_output_dtype_are_an_error(dtype):
    # ΔW = 1e10 everywhere: the rank-1 factors hold about 1e5 per entry, beyond float16's
    # 65504; the cast used to give inf factors with only a RuntimeWarning.
    W0 = np.zeros((8, 6), np.float32)
    W1 = W0 + np.float32(1e10)
    with pytest.raises(
        NonFiniteError,
        match=r"^lora_A does not fit in float16: its largest magnitude 1\.075e\+05 exceeds "
        r"float16's largest finite value 6\.55e\+04; use dtype float32 or bfloat16$",
    ):
        extract(W0, W1, rank=1, dtype=dtype)
    ex = extract(W0, W1, rank=1, dtype=ml_dtypes.bfloat16)  # the suggested way out
    assert np.isfinite(ex.lora_A.astype(np.float32)).all()


def test_float16_weights_keep_float16_factors_unless_they_overflow():
    # The default output dtype is the weights' own. Each factor holds sqrt(sigma / s) times
    # a unit vector's entries (0.5 here): sigma = 4 * 60000 with a scaling s = alpha = 1e-6
    # gives 0.5 * sqrt(2.4e11) = 2.4e5 > 65504.
    W0 = np.zeros((4, 4), np.float16)
    W1 = np.full((4, 4), 60000, np.float16)
    with pytest.raises(NonFiniteError, match=r"^lora_A does not fit in float16"):
        extract(W0, W1, rank=1, alpha=1e-6)
    assert extract(W0, W1, rank=1).lora_A.dtype == np.float16
