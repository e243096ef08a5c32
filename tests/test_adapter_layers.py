"""Identities and behaviour of the adapter layers (LoRALinear, Linear, activations)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lowrank._numerics import tolerance
from lowrank.adapter import (
    AdapterConfig,
    LoRALinear,
    dropout_mask,
    lora_backward,
    lora_delta_weight,
    lora_forward,
)
from lowrank.adapter.nn import GELU, Linear, Network, ReLU, Tanh
from lowrank.errors import ShapeError
from lowrank.lora import lora_scaling

DTYPES = [np.float32, np.float64]


def _layer_arrays(rng, out=7, inp=5, rank=3, dtype=np.float64):
    W = rng.standard_normal((out, inp)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    A = rng.standard_normal((rank, inp)).astype(dtype)
    B = rng.standard_normal((out, rank)).astype(dtype)
    return W, b, A, B


def _output_scale(x, W, deltas):
    """A bound on |y| entries: max row norm of x times the spectral norms of the weights."""
    spectral = np.linalg.norm(W.astype(np.float64), 2) + sum(
        np.linalg.norm(d.astype(np.float64), 2) for d in deltas
    )
    return float(np.max(np.linalg.norm(x.astype(np.float64), axis=-1))) * spectral


# -- scaling and conventions --------------------------------------------------------------


def test_scaling_plain_and_rslora():
    assert lora_scaling(16, 8) == 2.0
    assert lora_scaling(16, 4, use_rslora=True) == 8.0
    assert lora_scaling(8.0, 8) == 1.0  # PEFT defaults r = alpha = 8


def test_parameter_names_and_shapes_follow_peft(rng):
    W, b, A, B = _layer_arrays(rng)
    layer = LoRALinear.from_factors(W, A, B, alpha=6.0, bias=b)
    params = layer.parameters()
    assert {k: v.shape for k, v in params.items()} == {
        "base_layer.weight": (7, 5),
        "base_layer.bias": (7,),
        "lora_A.default.weight": (3, 5),
        "lora_B.default.weight": (7, 3),
    }
    assert layer.adapter_config("default") == AdapterConfig(
        rank=3, alpha=6.0, use_rslora=False, dropout=0.0, scaling=2.0
    )
    assert set(layer.trainable_parameters()) == {"lora_A.default.weight", "lora_B.default.weight"}


def test_forward_matches_written_formula(rng):
    W, b, A, B = _layer_arrays(rng)
    x = rng.standard_normal((4, 5))
    layer = LoRALinear.from_factors(W, A, B, alpha=6.0, bias=b, use_rslora=True)
    s = 6.0 / np.sqrt(3)
    expected = x @ W.T + b + s * (x @ A.T) @ B.T
    tol = tolerance(np.float64, size=5, scale=_output_scale(x, W, [s * B @ A]))
    np.testing.assert_allclose(layer.forward(x), expected, rtol=0, atol=tol)
    np.testing.assert_allclose(
        lora_forward(x, W, A, B, scaling=s, bias=b), expected, rtol=0, atol=tol
    )


def test_caller_arrays_are_not_modified(rng):
    W, b, A, B = _layer_arrays(rng)
    copies = [a.copy() for a in (W, b, A, B)]
    layer = LoRALinear.from_factors(W, A, B, alpha=1.0, bias=b)
    layer.merge()
    for original, kept in zip((W, b, A, B), copies, strict=True):
        np.testing.assert_array_equal(original, kept)


# -- identities ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_zero_B_gives_exactly_the_base_layer(rng, dtype, with_bias):
    W, b, A, _ = _layer_arrays(rng, dtype=dtype)
    bias = b if with_bias else None
    x = rng.standard_normal((2, 3, 5)).astype(dtype)
    lora = LoRALinear.from_factors(W, A, np.zeros((7, 3), dtype), alpha=4.0, bias=bias)
    base = Linear(W, bias)
    y = lora.forward(x)
    assert y.dtype == dtype
    # Exact: the adapter adds (x A^T) 0^T = +0.0 to every entry.
    np.testing.assert_array_equal(y, base.forward(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_merged_forward_equals_unmerged_forward(rng, dtype):
    W, b, A, B = _layer_arrays(rng, out=20, inp=30, rank=4, dtype=dtype)
    x = rng.standard_normal((6, 30)).astype(dtype)
    layer = LoRALinear.from_factors(W, A, B, alpha=8.0, bias=b)
    unmerged = layer.forward(x)
    layer.merge()
    assert layer.merged
    assert layer.merged_adapters == ("default",)
    merged = layer.forward(x)
    assert merged.dtype == dtype
    # Two summation orders of the same product, each backward stable: rounding grows like
    # sqrt(in) * eps relative to the size of the output.
    scale = _output_scale(x, W, [layer.delta_weight("default")])
    np.testing.assert_allclose(
        merged, unmerged, rtol=0, atol=tolerance(dtype, size=30, scale=scale)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_unmerge_round_trip_restores_W(rng, dtype):
    W, b, A, B = _layer_arrays(rng, out=20, inp=30, rank=4, dtype=dtype)
    layer = LoRALinear.from_factors(W, A, B, alpha=8.0, bias=b)
    A2 = rng.standard_normal((2, 30)).astype(dtype)
    B2 = rng.standard_normal((20, 2)).astype(dtype)
    layer.add_adapter("second", A2, B2, alpha=1.0, activate=True)
    deltas = layer.delta_weight("default"), layer.delta_weight("second")
    layer.merge()
    assert layer.merged_adapters == ("default", "second")
    layer.unmerge()
    assert not layer.merged
    restored = layer.parameters()["base_layer.weight"]
    # Each addition and subtraction rounds once: |error| <= eps * (|W| + sum |delta|) per entry.
    bound = np.abs(W) + sum(np.abs(d) for d in deltas)
    assert np.all(np.abs(restored - W) <= 2 * np.finfo(dtype).eps * bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_active_adapters_equal_the_sum_of_each(rng, dtype):
    W, b, A, B = _layer_arrays(rng, out=9, inp=11, rank=3, dtype=dtype)
    A2 = rng.standard_normal((5, 11)).astype(dtype)
    B2 = rng.standard_normal((9, 5)).astype(dtype)
    x = rng.standard_normal((4, 11)).astype(dtype)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    layer.add_adapter("other", A2, B2, alpha=10.0, use_rslora=True)
    assert layer.active_adapters == ("default",)  # PEFT: only the first is active

    layer.set_active_adapters([])
    base = layer.forward(x)
    layer.set_active_adapters("default")
    only_1 = layer.forward(x)
    layer.set_active_adapters("other")
    only_2 = layer.forward(x)
    layer.set_active_adapters(["default", "other"])
    both = layer.forward(x)

    scale = _output_scale(x, W, [layer.delta_weight(n) for n in ("default", "other")])
    tol = tolerance(dtype, size=11, scale=scale)
    np.testing.assert_allclose(both - base, (only_1 - base) + (only_2 - base), rtol=0, atol=tol)
    np.testing.assert_allclose(base, x @ W.T + b, rtol=0, atol=tol)


def test_merging_one_of_two_adapters_keeps_the_output(rng):
    W, b, A, B = _layer_arrays(rng)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    layer.add_adapter("other", A[:1], B[:, :1], alpha=1.0, activate=True)
    x = rng.standard_normal((3, 5))
    before = layer.forward(x)
    layer.merge("other")
    assert layer.merged_adapters == ("other",)
    tol = tolerance(np.float64, size=5, scale=_output_scale(x, W, [layer.delta_weight("other")]))
    np.testing.assert_allclose(layer.forward(x), before, rtol=0, atol=tol)
    layer.merge("default")  # merging the rest is allowed
    np.testing.assert_allclose(layer.forward(x), before, rtol=0, atol=3 * tol)


def test_leading_batch_dimensions(rng):
    W, b, A, B = _layer_arrays(rng)
    layer = LoRALinear.from_factors(W, A, B, alpha=2.0, bias=b)
    x = rng.standard_normal((2, 3, 5))
    np.testing.assert_array_equal(layer.forward(x).reshape(6, 7), layer.forward(x.reshape(6, 5)))
    y = layer.forward(x)
    assert y.shape == (2, 3, 7)
    g = rng.standard_normal((2, 3, 7))
    dx = layer.backward(g)
    assert dx.shape == x.shape
    grads_3d = layer.gradients()
    layer.forward(x.reshape(6, 5))
    np.testing.assert_array_equal(dx.reshape(6, 5), layer.backward(g.reshape(6, 7)))
    for k, v in layer.gradients().items():
        np.testing.assert_array_equal(grads_3d[k], v)
    # A single sample without a batch axis, like torch.nn.Linear.
    assert layer.forward(x[0, 0]).shape == (7,)


# -- dtype --------------------------------------------------------------------------------


def test_float32_stays_float32_through_forward_backward_and_merge(rng):
    W, b, A, B = _layer_arrays(rng, dtype=np.float32)
    layer = LoRALinear.from_factors(W, A.astype(np.float64), B, alpha=2.0, bias=b, train_base=True)
    assert layer.dtype == np.float32
    assert all(v.dtype == np.float32 for v in layer.parameters().values())
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = layer.forward(x, training=True, rng=0)
    assert y.dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32
    assert all(v.dtype == np.float32 for v in layer.gradients().values())
    assert layer.delta_weight("default").dtype == np.float32


def test_float16_and_integer_inputs_are_promoted():
    layer = Linear(np.eye(2, dtype=np.float16))
    assert layer.dtype == np.float32
    assert layer.forward(np.array([[1, 2]])).dtype == np.float32
    assert Linear(np.eye(2, dtype=np.int64)).dtype == np.float64


# -- dropout ------------------------------------------------------------------------------


def test_dropout_mask_is_inverted_and_deterministic():
    m = dropout_mask((400, 50), 0.25, rng=3)
    np.testing.assert_array_equal(m, dropout_mask((400, 50), 0.25, rng=3))
    assert set(np.unique(m)) <= {0.0, 1.0 / 0.75}
    assert abs(np.mean(m == 0) - 0.25) < 0.01  # 20000 Bernoulli draws: sd 0.003
    assert dropout_mask(4, 0.0, rng=0).tolist() == [1.0] * 4
    assert dropout_mask((2, 2), 0.5, rng=0, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_dropout_equals_functional_with_the_same_mask(rng, dtype):
    W, b, A, B = _layer_arrays(rng, dtype=dtype)
    x = rng.standard_normal((6, 5)).astype(dtype)
    g = rng.standard_normal((6, 7)).astype(dtype)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b, dropout=0.4)
    y = layer.forward(x, training=True, rng=11)
    dx = layer.backward(g)
    mask = dropout_mask(x.shape, 0.4, rng=11, dtype=dtype)  # the layer's first draw from seed 11
    s = layer.adapter_config("default").scaling
    np.testing.assert_array_equal(y, lora_forward(x, W, A, B, scaling=s, bias=b, dropout_mask=mask))
    ref = lora_backward(g, x, W, A, B, scaling=s, dropout_mask=mask)
    np.testing.assert_array_equal(dx, ref.input)
    np.testing.assert_array_equal(layer.gradients()["lora_A.default.weight"], ref.lora_A)
    np.testing.assert_array_equal(layer.gradients()["lora_B.default.weight"], ref.lora_B)


def test_dropout_only_in_training_mode(rng):
    W, b, A, B = _layer_arrays(rng)
    x = rng.standard_normal((6, 5))
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b, dropout=0.5)
    plain = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    np.testing.assert_array_equal(layer.forward(x), plain.forward(x))
    np.testing.assert_array_equal(layer.forward(x, rng=1), plain.forward(x))
    train_1 = layer.forward(x, training=True, rng=1)
    np.testing.assert_array_equal(train_1, layer.forward(x, training=True, rng=1))
    assert not np.array_equal(train_1, layer.forward(x, training=True, rng=2))
    # Dropout acts on the adapter path only: with B = 0 training mode is the base layer.
    zero_b = LoRALinear.from_factors(W, A, np.zeros_like(B), alpha=3.0, bias=b, dropout=0.5)
    np.testing.assert_array_equal(zero_b.forward(x, training=True, rng=1), Linear(W, b).forward(x))


# -- freezing and gradients ---------------------------------------------------------------


def test_gradients_only_for_trainable_and_active(rng):
    W, b, A, B = _layer_arrays(rng)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    layer.add_adapter("idle", A, B, alpha=1.0)
    x = rng.standard_normal((2, 5))
    layer.forward(x)
    layer.backward(np.ones((2, 7)))
    assert set(layer.gradients()) == {"lora_A.default.weight", "lora_B.default.weight"}
    layer.freeze(["lora_A.default.weight"])
    layer.unfreeze(["base_layer.bias"])
    layer.forward(x)
    layer.backward(np.ones((2, 7)))
    assert set(layer.gradients()) == {"lora_B.default.weight", "base_layer.bias"}
    np.testing.assert_array_equal(layer.gradients()["base_layer.bias"], np.full(7, 2.0))
    assert layer.requires_grad("base_layer.bias")
    assert not layer.requires_grad("base_layer.weight")


def test_trainable_parameter_counts(rng):
    W, b, A, B = _layer_arrays(rng, out=7, inp=5, rank=3)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    assert layer.num_trainable_parameters() == 3 * (5 + 7)
    assert layer.num_parameters() == 7 * 5 + 7 + 3 * (5 + 7)
    layer.unfreeze(["base_layer.weight", "base_layer.bias"])
    assert layer.num_trainable_parameters() == layer.num_parameters()
    layer.freeze()
    assert layer.num_trainable_parameters() == 0
    assert not layer.has_trainable
    layer.unfreeze()  # the default set of a LoRA layer is its adapter factors
    assert layer.num_trainable_parameters() == 3 * (5 + 7)
    dense = Linear(W, b, trainable=False)
    assert dense.num_trainable_parameters() == 0
    dense.unfreeze()
    assert dense.num_trainable_parameters() == 7 * 5 + 7


def test_linear_backward_formulas(rng):
    W, b, _, _ = _layer_arrays(rng)
    x = rng.standard_normal((4, 5))
    g = rng.standard_normal((4, 7))
    layer = Linear(W, b)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(g), g @ W, rtol=1e-14)
    np.testing.assert_allclose(layer.gradients()["weight"], g.T @ x, rtol=1e-14)
    np.testing.assert_allclose(layer.gradients()["bias"], g.sum(axis=0), rtol=1e-14)


def test_functional_weight_gradient_on_request(rng):
    W, _, A, B = _layer_arrays(rng)
    x = rng.standard_normal((4, 5))
    g = rng.standard_normal((4, 7))
    plain = lora_backward(g, x, W, A, B, scaling=1.0)
    assert plain.weight is None
    full = lora_backward(g, x, W, A, B, scaling=1.0, weight_grad=True)
    np.testing.assert_allclose(full.weight, g.T @ x, rtol=1e-14)
    np.testing.assert_allclose(full.bias, g.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(lora_delta_weight(A, B, scaling=2.0), 2.0 * B @ A, rtol=1e-14)


# -- activations --------------------------------------------------------------------------


def test_relu_gradient_is_zero_at_the_kink():
    layer = ReLU()
    y = layer.forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(layer.backward(np.ones(3)), [0.0, 0.0, 1.0])


def test_gelu_exact_and_tanh_agree_and_survive_large_inputs():
    x = np.linspace(-6, 6, 101)
    exact = GELU().forward(x)
    approx = GELU(approximate="tanh").forward(x)
    assert np.max(np.abs(exact - approx)) < 1e-3  # the approximation's known accuracy
    big = np.array([-1e200, -50.0, 50.0, 1e200])
    for act in (GELU(), GELU(approximate="tanh"), Tanh()):
        y = act.forward(big)
        d = act.backward(np.ones(4))
        assert np.all(np.isfinite(y))
        assert np.all(np.isfinite(d))
        # Saturated: GELU' is 0 far left and 1 far right; tanh' is 0 at both ends.
        expected = [0.0, 0.0, 0.0, 0.0] if isinstance(act, Tanh) else [0.0, 0.0, 1.0, 1.0]
        np.testing.assert_array_equal(d, expected)


@pytest.mark.parametrize("act", [ReLU(), Tanh(), GELU(), GELU(approximate="tanh")], ids=repr)
def test_activations_keep_float32(act):
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    assert act.forward(x).dtype == np.float32
    assert act.backward(np.ones_like(x)).dtype == np.float32


def test_reprs_mention_the_essentials(rng):
    W, b, A, B = _layer_arrays(rng)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    assert "adapters=['default']" in repr(layer)
    assert "in_features=5" in repr(Linear(W))


def test_load_parameters_round_trips_a_peft_style_state_dict(rng):
    W, b, A, B = _layer_arrays(rng)
    layer = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b)
    new = {k: rng.standard_normal(v.shape) for k, v in layer.parameters().items()}
    layer.load_parameters(new)
    for k, v in layer.parameters().items():
        np.testing.assert_array_equal(v, new[k])
    reference = LoRALinear.from_factors(
        new["base_layer.weight"],
        new["lora_A.default.weight"],
        new["lora_B.default.weight"],
        alpha=3.0,
        bias=new["base_layer.bias"],
    )
    x = rng.standard_normal((2, 5))
    np.testing.assert_array_equal(layer.forward(x), reference.forward(x))


def test_load_parameters_is_all_or_nothing_and_casts_to_the_layer_dtype(rng):
    W, b, _, _ = _layer_arrays(rng, dtype=np.float32)
    lora = LoRALinear.from_factors(
        np.eye(7, dtype=np.float32),
        rng.standard_normal((3, 7)).astype(np.float32),
        rng.standard_normal((7, 3)).astype(np.float32),
        alpha=1.0,
    )
    net = Network([Linear(W, b), Tanh(), lora])
    before = {k: v.copy() for k, v in net.parameters().items()}
    bad = {"0.weight": np.zeros((7, 5)), "2.lora_A.default.weight": np.zeros((9, 9))}
    with pytest.raises(ShapeError, match=re.escape("lora_A.default.weight must have shape (3, 7)")):
        net.load_parameters(bad)
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    net.load_parameters({"0.weight": np.zeros((7, 5))})  # float64 in, float32 kept
    assert net.parameters()["0.weight"].dtype == np.float32
    assert not net.parameters()["0.weight"].any()
