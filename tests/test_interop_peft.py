"""Interoperability with the real PEFT and PyTorch (CPU), on tiny models built here.

Run with ``.venv-interop/bin/python -m pytest -m interop tests/test_interop_peft.py`` (needs
``pip install torch==2.13.0 peft``; no downloads, no network). Checked:

1. adapters saved by PEFT (default init, Gaussian, PiSSA, PiSSA-niter, OLoRA, rsLoRA,
   rank/alpha patterns, fan_in_fan_out on GPT-2's ``Conv1D``) load with
   :func:`lowrank.io.peft.load_peft_adapter`, and the NumPy forward of
   :mod:`lowrank.adapter` matches PEFT's;
2. adapters written by :func:`lowrank.io.peft.save_peft_adapter` (extracted, converted from
   PiSSA, rsLoRA, patterns, fan_in_fan_out) load in PEFT and give the same outputs;
3. gradients of ``lora_A`` and ``lora_B`` (and of the input) match PyTorch autograd;
4. merged weights match ``merge_and_unload``;

plus PEFT's own PiSSA→LoRA conversion against :func:`lowrank.lora.pissa_to_lora`, its
pattern rule against :func:`lowrank.lora.pattern_key`, and its PiSSA/OLoRA inits against
:mod:`lowrank.lora`'s.

Tolerances: everything runs in float32 on both sides, so results agree to float32 rounding
of the computation: :func:`lowrank._numerics.tolerance` (``16 eps32 sqrt(n) scale``) with
``n`` the longest accumulation and ``scale`` the magnitude of the terms summed. The measured
worst relative differences are printed (``-s``) and were at most a few ``eps32``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from torch import nn  # noqa: E402

from lowrank._numerics import tolerance  # noqa: E402
from lowrank.adapter import LoRALinear, lora_backward  # noqa: E402
from lowrank.adapter.nn import Linear  # noqa: E402
from lowrank.errors import InputError  # noqa: E402
from lowrank.io.peft import load_peft_adapter, save_peft_adapter  # noqa: E402
from lowrank.lora import (  # noqa: E402
    LoRAConfig,
    extract_many,
    olora_init,
    pattern_key,
    pissa_init,
    pissa_to_lora,
)

pytestmark = pytest.mark.interop

LINEAR_NAMES = [
    "embed",
    "layers.0.q_proj",
    "layers.0.v_proj",
    "layers.1.q_proj",
    "layers.1.v_proj",
    "head",
]
MEASURED: dict[str, float] = {}


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)


class Tiny(nn.Module):
    """Dotted module names like a transformer's: embed, layers.i.{q,v}_proj, head."""

    def __init__(self, n_in: int = 12, width: int = 16, n_out: int = 5) -> None:
        super().__init__()
        self.embed = nn.Linear(n_in, width)
        self.layers = nn.ModuleList([Block(width), Block(width)])
        self.head = nn.Linear(width, n_out)

    def forward(self, x):
        h = torch.tanh(self.embed(x))
        for block in self.layers:
            h = torch.tanh(block.q_proj(h) + block.v_proj(h))
        return self.head(h)


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().float()


def base_weights(model: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(W, b) of every linear layer, the base layer for PEFT-wrapped ones (for PiSSA and
    OLoRA that is the residual)."""
    out = {}
    for name in LINEAR_NAMES:
        module = model.get_submodule(name)
        layer = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        out[name] = (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
    return out


def numpy_forward(weights, adapter, x):
    """The Tiny forward with lowrank.adapter layers (LoRA where the adapter has factors)."""
    layers = {}
    for name, (W, b) in weights.items():
        if adapter is not None and name in adapter.modules:
            m = adapter.modules[name]
            layers[name] = LoRALinear.from_factors(
                W,
                m.lora_A.astype(W.dtype),
                m.lora_B.astype(W.dtype),
                alpha=m.alpha,
                use_rslora=adapter.use_rslora,
                bias=b,
            )
        else:
            layers[name] = Linear(W, b)
    h = np.tanh(layers["embed"].forward(x))
    for i in range(2):
        h = np.tanh(
            layers[f"layers.{i}.q_proj"].forward(h) + layers[f"layers.{i}.v_proj"].forward(h)
        )
    return layers["head"].forward(h)


def train_a_little(peft_model, seed: int = 1) -> None:
    """Stand-in for training: move every factor (PEFT's default B = 0 would hide errors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


def assert_outputs_match(expected, got, weights, label):
    """float32 rounding of a 16-wide network of 4 linear stages: n = 16 terms per sum, scale
    the largest row sum of |W| (|h| <= 1 after tanh), times 4 for the four stages whose
    rounding errors add up (tanh and the head do not amplify them)."""
    scale = max(float(np.abs(W).sum(axis=1).max()) for W, _ in weights.values())
    tol = 4 * tolerance(np.float32, size=16, scale=scale)
    err = float(np.max(np.abs(np.asarray(expected) - np.asarray(got))))
    MEASURED[label] = err
    print(f"[interop] {label}: max |numpy - torch| = {err:.3g} (tolerance {tol:.3g})")
    assert err <= tol, f"{label}: {err:.3g} > {tol:.3g}"


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((7, 12)).astype(np.float32)


def torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# -- 1. PEFT -> here ---------------------------------------------------------------------


PEFT_CONFIGS = {
    "default": {"init_lora_weights": True},
    "gaussian": {"init_lora_weights": "gaussian"},
    "pissa": {"init_lora_weights": "pissa"},
    "pissa_niter_4": {"init_lora_weights": "pissa_niter_4"},
    "olora": {"init_lora_weights": "olora"},
    "rslora": {"use_rslora": True, "lora_alpha": 6},
    "patterns": {
        "rank_pattern": {"q_proj": 2, "^head": 1},
        "alpha_pattern": {"layers.1.v_proj": 3, "embed": 12},
    },
}


@pytest.mark.parametrize("kind", list(PEFT_CONFIGS))
def test_adapters_saved_by_peft_load_here_and_match(tmp_path, x, kind):
    model = tiny()
    original = base_weights(model)
    options = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["embed", "q_proj", "v_proj", "head"],
        **PEFT_CONFIGS[kind],
    }
    peft_model = get_peft_model(model, LoraConfig(**options))
    train_a_little(peft_model)
    peft_model.save_pretrained(tmp_path / "ad")
    adapter = load_peft_adapter(tmp_path / "ad")
    assert set(adapter.modules) == set(LINEAR_NAMES)
    for name, m in adapter.modules.items():
        torch_layer = peft_model.get_base_model().get_submodule(name)
        assert m.scaling == pytest.approx(torch_layer.scaling["default"], rel=1e-12)
        assert m.rank == torch_layer.r["default"]
    weights = base_weights(peft_model.get_base_model())  # the residual for PiSSA / OLoRA
    assert_outputs_match(
        torch_out(peft_model, x), numpy_forward(weights, adapter, x), weights, f"PEFT-saved {kind}"
    )
    assert adapter.needs_residual_base == (kind in ("pissa", "pissa_niter_4", "olora"))
    if kind in ("pissa", "olora"):
        # The residual PEFT made is the one lowrank.lora makes from the original weights.
        init = pissa_init if kind == "pissa" else olora_init
        for name, (W, _) in original.items():
            ours = init(W, 4, alpha=8.0).residual
            scale = float(np.abs(W).max())
            np.testing.assert_allclose(
                weights[name][0], ours, atol=tolerance(np.float32, size=16, scale=scale) * 4
            )


def test_peft_pissa_and_olora_factors_match_ours(tmp_path):
    """Factors agree up to the sign of each singular pair (PiSSA) and exactly (OLoRA: the same
    LAPACK QR)."""
    for kind, init in (("pissa", pissa_init), ("olora", olora_init)):
        model = tiny()
        original = base_weights(model)
        peft_model = get_peft_model(
            model, LoraConfig(r=3, lora_alpha=6, init_lora_weights=kind, target_modules=["q_proj"])
        )
        for name in ("layers.0.q_proj", "layers.1.q_proj"):
            layer = peft_model.get_base_model().get_submodule(name)
            A = layer.lora_A["default"].weight.detach().numpy()
            B = layer.lora_B["default"].weight.detach().numpy()
            ours = init(original[name][0], 3, alpha=6.0)
            signs = np.sign(np.sum(A * ours.lora_A, axis=1)) if kind == "pissa" else np.ones(3)
            scale = float(np.abs(original[name][0]).max())
            tol = 4 * tolerance(np.float32, size=16, scale=scale)
            np.testing.assert_allclose(A * signs[:, None], ours.lora_A, atol=tol)
            np.testing.assert_allclose(B * signs[None, :], ours.lora_B, atol=tol)


def test_pattern_rule_is_peft_rule():
    from peft.utils.other import get_pattern_key

    keys = ["q_proj", r"layers\.1\..*", "^head", "v_proj", "proj", "layers.0.q_proj"]
    names = [*LINEAR_NAMES, "model.layers.10.q_proj", "block.head", "xq_proj"]
    for start in range(len(keys)):
        order = keys[start:] + keys[:start]
        for name in names:
            theirs = get_pattern_key(order, name)
            assert pattern_key(order, name) == (theirs if theirs != name or name in order else None)


# -- 2. here -> PEFT -------------------------------------------------------------------------


def test_extracted_adapter_written_here_loads_in_peft(tmp_path, x):
    base = tiny(0)
    wb = base_weights(base)
    rng = np.random.default_rng(0)
    pairs = {}
    for i, name in enumerate(LINEAR_NAMES):
        W = wb[name][0]
        k = 1 + i % 3  # a different true rank per layer
        delta = rng.standard_normal((W.shape[0], k)) @ rng.standard_normal((k, W.shape[1]))
        pairs[name] = (W, (W + 0.1 * delta).astype(np.float32))
    ex = extract_many(pairs, rel_tol=1e-5)
    assert len(set(ex.ranks.values())) == 3 and ex.config.rank_pattern
    save_peft_adapter(tmp_path / "ad", ex.modules, ex.config)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "ad")
    adapter = load_peft_adapter(tmp_path / "ad")
    for name in LINEAR_NAMES:
        layer = peft_model.get_base_model().get_submodule(name)
        assert layer.r["default"] == ex.ranks[name] and layer.scaling["default"] == 1.0
    assert_outputs_match(
        torch_out(peft_model, x),
        numpy_forward(wb, adapter, x),
        wb,
        "written here (extracted, rank_pattern)",
    )
    # The adapter reproduces the fine-tuned weights it was extracted from.
    merged = {n: (pairs[n][1], wb[n][1]) for n in LINEAR_NAMES}
    assert_outputs_match(
        torch_out(peft_model, x),
        numpy_forward(merged, None, x),
        wb,
        "written here vs the tuned model",
    )


class Ambiguous(nn.Module):
    """Names that plain pattern keys would confuse: "q" is a suffix of "block.q", and the
    regex "a.b" also matches "aXb"."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.q = nn.Linear(6, 6)
        self.block = nn.Module()
        self.block.q = nn.Linear(6, 6)
        self.a = nn.Module()
        self.a.b = nn.Linear(6, 6)
        self.aXb = nn.Linear(6, 6)


def test_anchored_pattern_keys_resolve_in_peft(tmp_path):
    model = Ambiguous()
    rng = np.random.default_rng(0)
    ranks = {"q": 1, "block.q": 3, "a.b": 2, "aXb": 3}
    pairs = {}
    for name, k in ranks.items():
        W = model.get_submodule(name).weight.detach().numpy().copy()
        delta = rng.standard_normal((6, k)) @ rng.standard_normal((k, 6))
        pairs[name] = (W, (W + delta).astype(np.float32))
    ex = extract_many(pairs, rel_tol=1e-5)
    assert ex.ranks == ranks
    assert dict(ex.config.rank_pattern) == {"^q": 1, r"^a\.b": 2}
    save_peft_adapter(tmp_path / "ad", ex.modules, ex.config)
    peft_model = PeftModel.from_pretrained(model, tmp_path / "ad")
    for name, k in ranks.items():
        layer = peft_model.get_base_model().get_submodule(name)
        assert layer.r["default"] == k and layer.scaling["default"] == 1.0, name
    merged = peft_model.merge_and_unload()
    for name, (_, tuned) in pairs.items():
        got = merged.get_submodule(name).weight.detach().numpy()
        np.testing.assert_allclose(got, tuned, atol=tolerance(np.float32, size=6, scale=10.0))


@pytest.mark.parametrize("rslora", [False, True])
def test_random_adapter_written_here_loads_in_peft(tmp_path, x, rslora):
    model = tiny()
    weights = base_weights(model)
    rng = np.random.default_rng(3)
    modules = {
        n: (
            rng.standard_normal((3, weights[n][0].shape[1])).astype(np.float32),
            rng.standard_normal((weights[n][0].shape[0], 3)).astype(np.float32),
        )
        for n in ("layers.0.v_proj", "head")
    }
    cfg = LoRAConfig(r=3, lora_alpha=5, use_rslora=rslora, alpha_pattern={"head": 2})
    save_peft_adapter(tmp_path / "ad", modules, cfg)
    peft_model = PeftModel.from_pretrained(model, tmp_path / "ad")
    head = peft_model.get_base_model().get_submodule("head")
    assert head.scaling["default"] == pytest.approx(2 / (math.sqrt(3) if rslora else 3))
    adapter = load_peft_adapter(tmp_path / "ad")
    assert_outputs_match(
        torch_out(peft_model, x),
        numpy_forward(weights, adapter, x),
        weights,
        f"written here (rslora={rslora})",
    )


def test_pissa_conversion_matches_peft_and_runs_on_the_original_base(tmp_path, x):
    model = tiny()
    original = base_weights(model)
    cfg = LoraConfig(
        r=3, lora_alpha=6, init_lora_weights="pissa", target_modules=["q_proj", "v_proj"]
    )
    peft_model = get_peft_model(model, cfg)
    init = {n: (m.lora_A.copy(), m.lora_B.copy()) for n, m in _factors(peft_model).items()}
    peft_model.peft_config["default"].init_lora_weights = True
    peft_model.save_pretrained(tmp_path / "pissa_init")
    peft_model.peft_config["default"].init_lora_weights = "pissa"
    train_a_little(peft_model)
    trained_out = torch_out(peft_model, x)
    peft_model.save_pretrained(
        tmp_path / "converted_by_peft",
        path_initial_model_for_weight_conversion=str(tmp_path / "pissa_init"),
    )
    theirs = load_peft_adapter(tmp_path / "converted_by_peft")
    assert theirs.r == 6 and theirs.lora_alpha == 12 and not theirs.needs_residual_base
    trained = _factors(peft_model)
    modules = {}
    for name, m in trained.items():
        conv = pissa_to_lora(m.lora_A, m.lora_B, *init[name], alpha=6.0)
        # Concatenation is exact: bit-for-bit PEFT's tensors.
        assert np.array_equal(conv.lora_A, theirs.modules[name].lora_A)
        assert np.array_equal(conv.lora_B, theirs.modules[name].lora_B)
        assert conv.alpha == theirs.modules[name].alpha and conv.scaling == 2.0
        modules[name] = conv
    # PEFT's converted adapter, run here on the ORIGINAL base, gives the trained PiSSA model.
    assert_outputs_match(
        trained_out,
        numpy_forward(original, theirs, x),
        original,
        "PEFT-converted PiSSA on the original base",
    )
    # Ours, written here and loaded by PEFT on a fresh original model, does too.
    save_peft_adapter(
        tmp_path / "converted_here",
        modules,
        LoRAConfig(r=3, lora_alpha=6, init_lora_weights="pissa").doubled(),
    )
    fresh = PeftModel.from_pretrained(tiny(), tmp_path / "converted_here")
    assert_outputs_match(
        trained_out,
        torch_out(fresh, x),
        original,
        "converted here, loaded by PEFT on the original base",
    )


def _factors(peft_model):
    from lowrank.io.peft import PeftModule

    out = {}
    for name in LINEAR_NAMES:
        layer = peft_model.get_base_model().get_submodule(name)
        if hasattr(layer, "lora_A") and "default" in layer.lora_A:
            A = layer.lora_A["default"].weight.detach().numpy().copy()
            B = layer.lora_B["default"].weight.detach().numpy().copy()
            out[name] = PeftModule(name, A, B, A.shape[0], 0.0, 0.0)
    return out


# -- fan_in_fan_out (GPT-2 Conv1D) ------------------------------------------------------------


class GPT2ish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        torch.manual_seed(0)
        self.c_attn = Conv1D(10, 12)  # nf = out = 10, nx = in = 12; weight (12, 10)

    def forward(self, x):
        return self.c_attn(x)


def test_fan_in_fan_out_both_ways_and_merge(tmp_path, x):
    model = GPT2ish()
    W_stored = model.c_attn.weight.detach().numpy().copy()  # (in, out)
    b = model.c_attn.bias.detach().numpy().copy()
    peft_model = get_peft_model(
        model, LoraConfig(r=2, lora_alpha=4, fan_in_fan_out=True, target_modules=["c_attn"])
    )
    train_a_little(peft_model)
    peft_model.save_pretrained(tmp_path / "ad")
    adapter = load_peft_adapter(tmp_path / "ad")
    assert adapter.fan_in_fan_out
    m = adapter.modules["c_attn"]
    assert m.lora_A.shape == (2, 12) and m.lora_B.shape == (10, 2)
    # The weight as Conv1D stores it, (in, out): no transposing by hand.
    layer = LoRALinear.from_factors(
        W_stored, m.lora_A, m.lora_B, alpha=m.alpha, bias=b, fan_in_fan_out=True
    )
    weights = {"c_attn": (W_stored.T, b)}
    assert_outputs_match(torch_out(peft_model, x), layer.forward(x), weights, "fan_in_fan_out load")
    # Written here, loaded by PEFT.
    save_peft_adapter(
        tmp_path / "here", {"c_attn": m}, LoRAConfig(r=2, lora_alpha=4, fan_in_fan_out=True)
    )
    again = PeftModel.from_pretrained(GPT2ish(), tmp_path / "here")
    assert_outputs_match(torch_out(again, x), layer.forward(x), weights, "fan_in_fan_out write")
    # Merge: the stored (in, out) weight gains (s B A)^T.
    merged = again.merge_and_unload().c_attn.weight.detach().numpy()
    layer.merge()
    ours = layer.parameters()["base_layer.weight"]  # (in, out), like Conv1D's
    tol = tolerance(np.float32, size=2, scale=float(np.abs(W_stored).max()) + 4.0)
    err = float(np.max(np.abs(merged - ours)))
    MEASURED["merge fan_in_fan_out"] = err
    assert err <= tol


# -- 3. gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("rslora", [False, True])
def test_gradients_match_autograd(rslora):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 20))
    peft_model = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, use_rslora=rslora, target_modules=["0"], lora_dropout=0.0),
    )
    train_a_little(peft_model)
    layer = peft_model.get_base_model()[0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 24)).astype(np.float32)
    G = rng.standard_normal((9, 20)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    (peft_model(xt) * torch.from_numpy(G)).sum().backward()
    W = layer.base_layer.weight.detach().numpy()
    A = layer.lora_A["default"].weight
    B = layer.lora_B["default"].weight
    s = layer.scaling["default"]
    An, Bn = A.detach().numpy(), B.detach().numpy()
    ours = lora_backward(G, x, W, An, Bn, scaling=s)
    aG, ax, aA, aB, aW = (np.abs(v).astype(np.float64) for v in (G, x, An, Bn, W))
    # Entrywise magnitudes of the sums each gradient is made of (no cancellation credit):
    # dA = s (G B)^T x, dB = s G^T (x A^T), dx = G W + s (G B) A; n = batch * out terms.
    scales = {
        "dA": s * float(((aG @ aB).T @ ax).max()),
        "dB": s * float((aG.T @ (ax @ aA.T)).max()),
        "dx": float((aG @ aW + s * (aG @ aB) @ aA).max()),
    }
    for label, theirs, mine in (
        ("dA", A.grad, ours.lora_A),
        ("dB", B.grad, ours.lora_B),
        ("dx", xt.grad, ours.input),
    ):
        tol = tolerance(np.float32, size=9 * 20, scale=scales[label])
        err = float(np.max(np.abs(theirs.numpy() - mine)))
        MEASURED[f"grad {label} (rslora={rslora})"] = err
        print(f"[interop] gradient {label} rslora={rslora}: max diff {err:.3g} (tol {tol:.3g})")
        assert err <= tol


def test_network_gradients_match_autograd(x):
    """Through the whole Tiny network (tanh, sums of two LoRA layers), MSE loss."""
    model = tiny()
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=3, lora_alpha=6, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "head"]
        ),
    )
    train_a_little(peft_model)
    target = np.random.default_rng(2).standard_normal((7, 5)).astype(np.float32)
    loss = torch.nn.functional.mse_loss(peft_model(torch.from_numpy(x)), torch.from_numpy(target))
    loss.backward()
    weights = base_weights(peft_model.get_base_model())
    factors = _factors(peft_model)
    layers = {}
    for name, (W, b) in weights.items():
        if name in factors:
            f = factors[name]
            layers[name] = LoRALinear.from_factors(W, f.lora_A, f.lora_B, alpha=6.0, bias=b)
        else:
            layers[name] = Linear(W, b, trainable=False)
    # Forward with caches, then backward by hand through tanh and the sums.
    h0 = np.tanh(layers["embed"].forward(x, training=True))
    hs = [h0]
    for i in range(2):
        z = layers[f"layers.{i}.q_proj"].forward(hs[-1], training=True) + layers[
            f"layers.{i}.v_proj"
        ].forward(hs[-1], training=True)
        hs.append(np.tanh(z))
    y = layers["head"].forward(hs[-1], training=True)
    g = 2.0 * (y - target) / y.size
    g = layers["head"].backward(g)
    for i in (1, 0):
        g = g * (1.0 - hs[i + 1] ** 2)
        g = layers[f"layers.{i}.q_proj"].backward(g) + layers[f"layers.{i}.v_proj"].backward(g)
    worst = 0.0
    for name in factors:
        torch_layer = peft_model.get_base_model().get_submodule(name)
        for factor in ("lora_A", "lora_B"):
            theirs = getattr(torch_layer, factor)["default"].weight.grad.numpy()
            mine = layers[name].gradients()[f"{factor}.default.weight"]
            scale = float(np.abs(theirs).max())
            err = float(np.max(np.abs(theirs - mine)))
            worst = max(worst, err / scale)
            assert err <= tolerance(np.float32, size=7 * 16 * 3, scale=scale) * 4, (name, factor)
    MEASURED["network gradients (relative)"] = worst
    print(f"[interop] network gradients: worst relative diff {worst:.3g}")


# -- 4. merge --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["default", "rslora", "patterns"])
def test_merge_matches_merge_and_unload(tmp_path, kind):
    model = tiny()
    options = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["embed", "q_proj", "v_proj", "head"],
        **PEFT_CONFIGS[kind],
    }
    peft_model = get_peft_model(model, LoraConfig(**options))
    train_a_little(peft_model)
    peft_model.save_pretrained(tmp_path / "ad")
    weights = base_weights(peft_model.get_base_model())
    adapter = load_peft_adapter(tmp_path / "ad")
    merged = base_weights(peft_model.merge_and_unload())
    worst = 0.0
    for name, (W, b) in weights.items():
        m = adapter.modules[name]
        layer = LoRALinear.from_factors(
            W, m.lora_A, m.lora_B, alpha=m.alpha, bias=b, use_rslora=adapter.use_rslora
        )
        layer.merge()
        ours = layer.parameters()["base_layer.weight"]
        # One length-r product per entry, then one addition: n = r, scale |W| + s |B||A|.
        scale = float(np.abs(W).max() + m.scaling * (np.abs(m.lora_B) @ np.abs(m.lora_A)).max())
        err = float(np.max(np.abs(merged[name][0] - ours)))
        worst = max(worst, err / scale)
        assert err <= tolerance(np.float32, size=m.rank, scale=scale), name
    MEASURED[f"merge {kind} (relative)"] = worst
    print(f"[interop] merge {kind}: worst relative diff {worst:.3g}")


# -- audit io3: pattern order and PEFT's target rules -------------------------------------------


def test_pattern_order_is_kept_so_peft_resolves_as_checked(tmp_path):
    # PEFT tries pattern keys in file order (first match wins). {"q_proj": ..., then
    # "layers.1.q_proj": ...} gives both q_proj the first value; sorted keys (PEFT's own
    # sort_keys=True layout) would give layers.1.q_proj the second.
    rng = np.random.default_rng(0)
    names = ["layers.0.q_proj", "layers.1.q_proj"]
    config = {
        "r": 2,
        "lora_alpha": 2,
        "target_modules": ["q_proj"],
        "rank_pattern": {"q_proj": 3, "layers.1.q_proj": 5},
        "alpha_pattern": {"q_proj": 12, "layers.1.q_proj": 2},
    }
    modules = {n: (rng.standard_normal((3, 16)), rng.standard_normal((16, 3))) for n in names}
    save_peft_adapter(tmp_path / "ad", modules, config, dtype=np.float32)
    peft_model = PeftModel.from_pretrained(tiny(), tmp_path / "ad")
    ours = load_peft_adapter(tmp_path / "ad")
    for name in names:
        layer = peft_model.get_base_model().get_submodule(name)
        assert layer.r["default"] == 3 and layer.scaling["default"] == 4.0, name
        assert (ours.modules[name].rank, ours.modules[name].scaling) == (3, 4.0)
        got = layer.lora_A["default"].weight.detach().numpy()
        np.testing.assert_array_equal(got, modules[name][0].astype(np.float32))


def _llama():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def _peft_targets(config) -> set[str]:
    """The modules PEFT's get_peft_model adapts under ``config``."""
    try:
        model = get_peft_model(_llama(), LoraConfig(r=2, lora_alpha=2, **config))
    except ValueError as exc:  # PEFT refuses a config that targets no module
        if "not found in the base model" not in str(exc):
            raise
        return set()
    return {n for n, m in model.get_base_model().named_modules() if hasattr(m, "lora_A")}


TARGET_CONFIGS = [
    {"target_modules": ["q_proj", "v_proj"], "layers_to_transform": [0]},
    {"target_modules": ["q_proj"], "layers_to_transform": 1},
    {
        "target_modules": ["q_proj", "down_proj"],
        "layers_to_transform": [1],
        "layers_pattern": "layers",
    },
    {"target_modules": ["q_proj"], "layers_to_transform": [0], "layers_pattern": "blocks"},
    {"target_modules": ["model.layers.1.self_attn.q_proj", "k_proj"], "layers_to_transform": [0]},
    {"target_modules": "all-linear"},
    {"target_modules": "all-linear", "exclude_modules": ["o_proj", "layers.1.mlp.up_proj"]},
    {"target_modules": r".*\.(q|v)_proj", "exclude_modules": r"model\.layers\.1\..*"},
    {"target_modules": ["q_proj", "lm_head"]},
]


@pytest.mark.parametrize("config", TARGET_CONFIGS, ids=lambda c: json.dumps(c)[:60])
def test_modules_lowrank_accepts_are_the_modules_peft_adapts(tmp_path, config):
    model = _llama()
    linear = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert "lm_head" in linear
    rng = np.random.default_rng(0)
    full = {"r": 2, "lora_alpha": 2, **config}
    pairs = {}
    for name, module in linear.items():
        out_f, in_f = module.weight.shape
        pairs[name] = (
            rng.standard_normal((2, in_f)).astype(np.float32),
            rng.standard_normal((out_f, 2)).astype(np.float32),
        )
    accepted = set()
    for i, name in enumerate(linear):
        try:
            save_peft_adapter(tmp_path / f"one{i}", {name: pairs[name]}, full)
        except InputError as exc:
            refused = str(exc)
        else:
            accepted.add(name)
            continue
        assert f"does not target module {name!r}" in refused, refused
    expected = _peft_targets(config)
    assert accepted == expected
    if not accepted:
        return
    save_peft_adapter(tmp_path / "all", {n: pairs[n] for n in sorted(accepted)}, full)
    assert set(load_peft_adapter(tmp_path / "all").modules) == accepted
    loaded = PeftModel.from_pretrained(_llama(), tmp_path / "all")
    adapted = {n for n, m in loaded.get_base_model().named_modules() if hasattr(m, "lora_A")}
    assert adapted == accepted
    for name in accepted:
        got = loaded.get_base_model().get_submodule(name).lora_B["default"].weight
        np.testing.assert_array_equal(got.detach().numpy(), pairs[name][1])


# -- audit 5: scaling carried by factor objects, init_lora_weights, PEFT's defaults -----------


class _One(nn.Module):
    """One bias-free nn.Linear(8, 6) named "fc"."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 6, bias=False)

    def forward(self, x):
        return self.fc(x)


def _one(seed: int = 0) -> _One:
    torch.manual_seed(seed)
    return _One().float()


def _peft_delta(peft_model) -> np.ndarray:
    return peft_model.get_base_model().fc.get_delta_weight("default").detach().numpy()


# The values save_peft_adapter writes (lowrank.io._peft_targets._PEFT_INITS plus bools and
# pissa_niter_K), and values it refuses because PEFT's from_pretrained fails on them.
WRITTEN_INITS = [
    True,
    False,
    "gaussian",
    "eva",
    "olora",
    "pissa",
    "pissa_niter_2",
    "orthogonal",
    "mica",
    "lora_ga",
]
REFUSED_INITS = ["milora", "bogus", "PiSSA", "corda", "loftq"]


@pytest.mark.parametrize("value", WRITTEN_INITS, ids=str)
def test_every_init_value_written_here_loads_in_peft(tmp_path, value):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((2, 8)).astype(np.float32)
    B = rng.standard_normal((6, 2)).astype(np.float32)
    cfg = LoRAConfig(r=2, lora_alpha=3, init_lora_weights=value)
    save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, cfg)
    peft_model = PeftModel.from_pretrained(_one(), tmp_path / "ad")
    # PEFT runs the named init, then loads the saved factors over it: Delta W = s B A.
    expected = 1.5 * B @ A
    tol = tolerance(np.float32, size=2, scale=float(np.abs(expected).max()))
    assert np.max(np.abs(_peft_delta(peft_model) - expected)) <= tol


@pytest.mark.parametrize("value", REFUSED_INITS)
def test_init_values_refused_here_fail_in_peft(tmp_path, value):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((2, 8)).astype(np.float32)
    B = rng.standard_normal((6, 2)).astype(np.float32)
    save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, {"r": 2, "lora_alpha": 2})
    config_file = tmp_path / "ad" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    with pytest.raises(InputError, match="init_lora_weights"):
        save_peft_adapter(tmp_path / "x", {"fc": (A, B)}, {**config, "init_lora_weights": value})
    config_file.write_text(json.dumps({**config, "init_lora_weights": value}))  # by hand
    # PEFT's own refusals: unknown init, CorDA's missing preprocessing, LoftQ's missing config.
    with pytest.raises(ValueError, match=r"init_lora_weights|eigens"):
        PeftModel.from_pretrained(_one(), tmp_path / "ad")


@pytest.mark.parametrize("rslora", [False, True])
def test_pissa_init_with_its_alpha_runs_exactly_on_the_residual_in_peft(tmp_path, rslora):
    model = _one()
    W = model.fc.weight.detach().numpy().astype(np.float64)
    init = pissa_init(W, 4, alpha=16.0, use_rslora=rslora)
    wrong = {"r": 4, "lora_alpha": 8, "use_rslora": rslora}
    with pytest.raises(InputError, match="carries scaling"):
        save_peft_adapter(tmp_path / "bad", {"fc": init}, wrong)
    save_peft_adapter(tmp_path / "ad", {"fc": init}, {**wrong, "lora_alpha": 16})
    base = _One().double()
    base.fc.weight.data = torch.from_numpy(init.residual)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "ad").double()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 8)))
    with torch.no_grad():
        y = peft_model(x).numpy()
    expected = x.numpy() @ W.T
    # float64 throughout: PiSSA's W_res + s B A = W to float64 rounding of an 8-term sum.
    tol = tolerance(
        np.float64, size=8, scale=float(np.abs(x.numpy()).sum(1).max() * np.abs(W).max())
    )
    print(f"[interop] pissa alpha=16 rslora={rslora} on W_res: {np.max(np.abs(y - expected)):.3g}")
    assert np.max(np.abs(y - expected)) <= tol


def test_peft_defaults_r_and_alpha_are_applied_as_peft_does(tmp_path):
    rng = np.random.default_rng(6)
    A = rng.standard_normal((8, 8)).astype(np.float32)
    B = rng.standard_normal((6, 8)).astype(np.float32)
    save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, {"r": 8, "lora_alpha": 8})
    config_file = tmp_path / "ad" / "adapter_config.json"
    config_file.write_text(json.dumps({"peft_type": "LORA", "target_modules": ["fc"]}))
    peft_model = PeftModel.from_pretrained(_one(), tmp_path / "ad")
    layer = peft_model.get_base_model().fc
    assert (layer.r["default"], layer.lora_alpha["default"], layer.scaling["default"]) == (
        8,
        8,
        1.0,
    )
    module = load_peft_adapter(tmp_path / "ad").modules["fc"]
    assert (module.rank, module.alpha, module.scaling) == (8, 8.0, 1.0)
    ours = module.scaling * module.lora_B @ module.lora_A
    tol = tolerance(np.float32, size=8, scale=float(np.abs(ours).max()))
    assert np.max(np.abs(_peft_delta(peft_model) - ours)) <= tol
