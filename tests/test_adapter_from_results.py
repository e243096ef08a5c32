"""LoRALinear.from_init / from_extraction (state travels whole) and fan_in_fan_out.

A layer built from an init carries the init's alpha, rsLoRA flag, layout and residual: its
forward pass *is* ``x (W_res + s B A)^T``, the functional reference on the same arrays, and
merging changes it only by rounding. A ``fan_in_fan_out`` layer (weight stored ``(in, out)``)
is the transposed equivalent of the plain one in forward, backward and merge, and its
gradients equal finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest

from lowrank._numerics import tolerance
from lowrank.adapter import LoRALinear, lora_forward
from lowrank.errors import DTypeError, InputError, ShapeError
from lowrank.lora import extract, init_factors, pissa_init

OUT, IN, RANK = 7, 5, 2
INITS = ["lora", "gaussian", "pissa", "pissa_niter_4", "milora", "olora"]


def _init(name, W, *, rslora=False, fan_in_fan_out=False):
    return init_factors(
        W, RANK, init=name, alpha=3.0, use_rslora=rslora, rng=0, fan_in_fan_out=fan_in_fan_out
    )


def _layer(init, W):
    return LoRALinear.from_init(init, weight=W if init.residual is None else None)


def _scale(W, x):
    """Magnitude of a forward output entry: ||x|| ||W||, for the float64 tolerances."""
    return float(np.linalg.norm(x, axis=-1).max() * np.linalg.norm(W, 2))


@pytest.mark.parametrize("rslora", [False, True])
@pytest.mark.parametrize("name", INITS)
def test_from_init_carries_everything(rng, name, rslora):
    W = rng.standard_normal((OUT, IN))
    init = _init(name, W, rslora=rslora)
    layer = _layer(init, W)
    cfg = layer.adapter_config("default")
    assert (cfg.rank, cfg.alpha, cfg.use_rslora, cfg.scaling) == (
        init.rank,
        init.alpha,
        init.use_rslora,
        init.scaling,
    )
    base = init.residual if init.residual is not None else W
    params = layer.parameters()
    assert np.array_equal(params["base_layer.weight"], base)
    assert np.array_equal(params["lora_A.default.weight"], init.lora_A)
    assert np.array_equal(params["lora_B.default.weight"], init.lora_B)
    x = rng.standard_normal((4, IN))
    # The layer's forward is the functional reference on W_res, A, B and s, bit for bit.
    expected = lora_forward(x, base, init.lora_A, init.lora_B, scaling=init.scaling)
    y = layer.forward(x)
    assert np.array_equal(y, expected)
    # W_res + sBA = W: the layer starts as the base layer, to the rounding of W_res + sBA
    # (a few roundings of entries of size ||W||, summed over `in` terms).
    tol = tolerance(np.float64, size=IN, scale=_scale(W, x))
    np.testing.assert_allclose(y, x @ W.T, atol=tol, rtol=0)
    # Merged vs unmerged: merging adds sBA to the base (one rounding per entry of W), then
    # the forward runs through the merged weight: the same float64 tolerance.
    layer.merge()
    np.testing.assert_allclose(layer.forward(x), y, atol=tol, rtol=0)


@pytest.mark.parametrize("name", ["lora", "pissa", "olora"])
def test_from_init_fan_in_fan_out(rng, name):
    W = rng.standard_normal((OUT, IN))
    init = _init(name, W.T.copy(), fan_in_fan_out=True)  # stored (in, out), as Conv1D
    layer = _layer(init, W.T.copy())
    assert layer.fan_in_fan_out
    assert layer.parameters()["base_layer.weight"].shape == (IN, OUT)
    assert (layer.in_features, layer.out_features) == (IN, OUT)
    x = rng.standard_normal((3, IN))
    tol = tolerance(np.float64, size=IN, scale=_scale(W, x))
    np.testing.assert_allclose(layer.forward(x), x @ W.T, atol=tol, rtol=0)


def test_from_init_keeps_the_compute_dtype(rng):
    W = rng.standard_normal((OUT, IN)).astype(np.float16)
    layer = LoRALinear.from_init(pissa_init(W, RANK))
    assert layer.dtype == np.float32


@pytest.mark.parametrize("fan_in_fan_out", [False, True])
def test_from_extraction_is_base_plus_update(rng, fan_in_fan_out):
    W0 = rng.standard_normal((OUT, IN))
    W1 = W0 + rng.standard_normal((OUT, RANK)) @ rng.standard_normal((RANK, IN))
    W1 += 1e-3 * rng.standard_normal((OUT, IN))
    ex = extract(
        W0.T if fan_in_fan_out else W0,
        W1.T if fan_in_fan_out else W1,
        rank=RANK,
        alpha=4.0,
        use_rslora=True,
        fan_in_fan_out=fan_in_fan_out,
    )
    layer = LoRALinear.from_extraction(ex, W0.T if fan_in_fan_out else W0)
    cfg = layer.adapter_config("default")
    assert (cfg.alpha, cfg.use_rslora, cfg.scaling) == (ex.alpha, ex.use_rslora, ex.scaling)
    assert layer.fan_in_fan_out is fan_in_fan_out
    layer.merge()
    merged = layer.parameters()["base_layer.weight"]
    merged = merged.T if fan_in_fan_out else merged
    # ||W1 - (W0 + sBA)||_F is the extraction's exact error, to float64 rounding of W1.
    tol = tolerance(np.float64, size=OUT * IN, scale=float(np.linalg.norm(W1)))
    assert abs(float(np.linalg.norm(W1 - merged)) - ex.error_fro) <= tol


# -- fan_in_fan_out: the transposed equivalent --------------------------------------------


def _pair(rng, **kw):
    W = rng.standard_normal((OUT, IN))
    A = rng.standard_normal((RANK, IN))
    B = rng.standard_normal((OUT, RANK))
    b = rng.standard_normal(OUT)
    plain = LoRALinear.from_factors(W, A, B, alpha=3.0, bias=b, **kw)
    conv1d = LoRALinear.from_factors(W.T.copy(), A, B, alpha=3.0, bias=b, fan_in_fan_out=True, **kw)
    return plain, conv1d


def test_fan_in_fan_out_matches_the_transposed_layer(rng):
    plain, conv1d = _pair(rng, train_base=True)
    x = rng.standard_normal((2, 3, IN))
    g = rng.standard_normal((2, 3, OUT))
    y0, y1 = plain.forward(x), conv1d.forward(x)
    # Each quantity's float64 tolerance from its own size: outputs ~ ||x|| ||W_eff|| (plus
    # the bias), input gradients ~ ||g|| ||W_eff||, parameter gradients ~ ||g|| ||x|| times
    # the factors they pass through (||A||, ||B||, the scaling).
    params = plain.parameters()
    W_eff = params["base_layer.weight"] + plain.delta_weight("default")
    A, B = params["lora_A.default.weight"], params["lora_B.default.weight"]
    gx = float(np.linalg.norm(g.reshape(-1, OUT), 2) * np.linalg.norm(x.reshape(-1, IN), 2))
    factors = 1.0 + 3.0 * max(float(np.linalg.norm(A, 2)), float(np.linalg.norm(B, 2)))
    tol_y = tolerance(
        np.float64, size=IN, scale=_scale(W_eff, x) + float(np.abs(params["base_layer.bias"]).max())
    )
    tol_dx = tolerance(np.float64, size=OUT, scale=_scale(W_eff.T, g))
    tol_grad = tolerance(np.float64, size=x.size // IN, scale=gx * factors)
    np.testing.assert_allclose(y1, y0, atol=tol_y, rtol=0)
    dx0, dx1 = plain.backward(g), conv1d.backward(g)
    np.testing.assert_allclose(dx1, dx0, atol=tol_dx, rtol=0)
    g0, g1 = plain.gradients(), conv1d.gradients()
    assert g1["base_layer.weight"].shape == (IN, OUT)
    np.testing.assert_allclose(
        g1["base_layer.weight"], g0["base_layer.weight"].T, atol=tol_grad, rtol=0
    )
    for key in ("base_layer.bias", "lora_A.default.weight", "lora_B.default.weight"):
        np.testing.assert_allclose(g1[key], g0[key], atol=tol_grad, rtol=0)
    # Merging adds the transposed update to the (in, out) weight (PEFT's get_delta_weight).
    assert np.array_equal(conv1d.delta_weight("default"), plain.delta_weight("default").T)
    stored = conv1d.parameters()["base_layer.weight"].copy()
    conv1d.merge()
    np.testing.assert_allclose(conv1d.forward(x), y1, atol=tol_y, rtol=0)
    conv1d.unmerge()
    # merge adds s BA and unmerge subtracts it: the stored weight back to the rounding of
    # entries of size |W| + |s BA|.
    tol_w = tolerance(np.float64, size=1, scale=float(np.abs(stored).max() + np.abs(W_eff).max()))
    np.testing.assert_allclose(conv1d.parameters()["base_layer.weight"], stored, atol=tol_w, rtol=0)


def test_fan_in_fan_out_gradients_equal_finite_differences(rng):
    _, layer = _pair(rng, train_base=True)
    x = rng.standard_normal((4, IN))
    G = rng.standard_normal((4, OUT))

    def loss() -> float:
        return float(np.sum(layer.forward(x) * G))

    h = 1e-6
    loss()
    dx = layer.backward(G)
    # The loss is linear in each single entry, so central differences have no truncation
    # error, only the rounding of two loss values over 2h: a few eps times the sum of the
    # loss's terms, over h (measured: at most 0.3 eps * terms / h; 8 leaves a margin).
    terms = float(np.sum(np.abs(layer.forward(x) * G)))
    atol = 8 * np.finfo(np.float64).eps * terms / h
    grads = layer.gradients()
    params = layer.parameters()
    for key in ("base_layer.weight", "lora_A.default.weight", "lora_B.default.weight"):
        p = params[key]
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = loss()
            p[idx] = old - h
            down = loss()
            p[idx] = old
            numeric[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[key], numeric, atol=atol, rtol=0)
    numeric_x = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric_x[idx] = (np.sum(layer.forward(xp) * G) - np.sum(layer.forward(xm) * G)) / (2 * h)
    np.testing.assert_allclose(dx, numeric_x, atol=atol, rtol=0)


# -- errors ------------------------------------------------------------------------------


def test_from_init_errors(rng):
    W = rng.standard_normal((OUT, IN))
    with pytest.raises(InputError, match=r"init must be a lowrank.lora.LoRAInit; got 'x'"):
        LoRALinear.from_init("x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"weight must be omitted for init='pissa': its residual"):
        LoRALinear.from_init(pissa_init(W, RANK), weight=W)
    with pytest.raises(InputError, match=r"weight \(the base W\) is required for init='lora'"):
        LoRALinear.from_init(_init("lora", W))
    with pytest.raises(
        ShapeError,
        match=r"weight must have shape \(7, 5\) \(\(out, in\)\) to match the init's lora_A "
        r"\(2, 5\) and lora_B \(7, 2\); got \(5, 7\)",
    ):
        LoRALinear.from_init(_init("lora", W), weight=W.T)
    with pytest.raises(DTypeError, match=r"weight must have a real dtype"):
        LoRALinear.from_init(_init("lora", W), weight=W + 0j)


def test_from_extraction_errors(rng):
    W0 = rng.standard_normal((OUT, IN))
    ex = extract(W0, W0 + 1.0, rank=1)
    with pytest.raises(InputError, match=r"extraction must be a lowrank.lora.Extraction; got 3"):
        LoRALinear.from_extraction(3, W0)  # type: ignore[arg-type]
    with pytest.raises(
        ShapeError,
        match=r"W_base must have shape \(7, 5\) \(\(out, in\)\) to match the extraction's",
    ):
        LoRALinear.from_extraction(ex, W0[:, :4])
    ex_t = extract(W0.T, W0.T + 1.0, rank=1, fan_in_fan_out=True)
    with pytest.raises(ShapeError, match=r"W_base must have shape \(5, 7\) \(\(in, out\), fan_in"):
        LoRALinear.from_extraction(ex_t, W0)
    with pytest.raises(ShapeError, match=r"W_base must be a 2-D matrix"):
        LoRALinear.from_extraction(ex, W0[0])


def test_fan_in_fan_out_must_be_bool(rng):
    with pytest.raises(InputError, match=r"fan_in_fan_out must be"):
        LoRALinear(np.eye(2), fan_in_fan_out="yes")  # type: ignore[arg-type]
