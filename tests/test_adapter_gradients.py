"""Gradients against central finite differences, and the memory of forward + backward.

Finite differences
------------------
Every check perturbs one entry ``θ`` by ``±h`` with ``h = 2**-17 ≈ 7.6e-6`` (a power of two,
so ``θ ± h`` is formed with at most one rounding) and compares ``(f(θ+h) - f(θ-h)) / 2h`` with
the analytic gradient, in float64. The error of a central difference is

    h²/6 · |f'''|  +  ε·|f|_acc / h

(truncation plus rounding; ``|f|_acc`` is the magnitude of the terms summed to get ``f``).

* Single layer: the test loss ``Σ G ⊙ y`` is *linear* in each single entry of ``W, b, A, B,
  x``, so the truncation term vanishes and only rounding, ``2.2e-16 / 7.6e-6 ≈ 3e-11`` per
  unit of ``|f|_acc ≈ Σ|G ⊙ y|``, remains. Tolerance ``1e-9 · (1 + Σ|G ⊙ y|)``; the worst
  error measured over 200 random layers was ``4e-11`` in those units.
* Network with tanh/GELU and a loss: the truncation term is ``≈ 1e-11 · |f'''|``, with
  ``|f'''|`` up to a few hundred for these small random networks (weights scaled by
  ``1/sqrt(fan-in)``). Tolerance ``1e-7 · max(1, |∇|_max)``; the worst error measured over
  500 random networks was ``4.5e-9`` in those units, while a real mistake (a missing term, a
  wrong transpose) is O(1).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrank.adapter import LoRALinear, dropout_mask, lora_backward, lora_forward
from lowrank.adapter.nn import (
    GELU,
    SGD,
    AdamW,
    Linear,
    Network,
    ReLU,
    Tanh,
    mse_loss,
    softmax_cross_entropy,
    train,
)

H = 2.0**-17
# Example counts come from the Hypothesis profile (tests/conftest.py: dev 30, ci 40
# derandomized, thorough 500); each example here costs a few milliseconds.
SETTINGS = settings(deadline=None)


def central_difference(f: Callable[[], float], arr: np.ndarray) -> np.ndarray:
    """Central differences of ``f`` with respect to every entry of ``arr`` (mutated and
    restored in place, so ``f`` must read ``arr`` live)."""
    grad = np.empty_like(arr)
    for idx in np.ndindex(arr.shape):
        original = arr[idx]
        arr[idx] = original + H
        up = f()
        arr[idx] = original - H
        down = f()
        arr[idx] = original
        grad[idx] = (up - down) / (2 * H)
    return grad


layer_cases = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 4),
        "inp": st.integers(1, 5),
        "out": st.integers(1, 5),
        "rank": st.integers(1, 4),
        "alpha": st.floats(0.25, 32.0),
        "rslora": st.booleans(),
        "bias": st.booleans(),
        "train_base": st.booleans(),
        "lead": st.sampled_from([(), (2,)]),
        "seed": st.integers(0, 2**32 - 1),
    }
)


@SETTINGS
@given(case=layer_cases)
def test_lora_layer_gradients_match_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    inp, out, rank = case["inp"], case["out"], case["rank"]
    W = rng.standard_normal((out, inp))
    b = rng.standard_normal(out) if case["bias"] else None
    A = rng.standard_normal((rank, inp))
    B = rng.standard_normal((out, rank))  # non-zero, so every path carries gradient
    layer = LoRALinear.from_factors(
        W,
        A,
        B,
        alpha=case["alpha"],
        bias=b,
        use_rslora=case["rslora"],
        train_base=case["train_base"],
    )
    shape = (*case["lead"], case["batch"])
    x = rng.standard_normal((*shape, inp))
    G = rng.standard_normal((*shape, out))

    def f() -> float:
        return float(np.sum(G * layer.forward(x)))

    y = layer.forward(x)
    dx = layer.backward(G)
    grads = layer.gradients()
    tol = 1e-9 * (1.0 + float(np.sum(np.abs(G * y))))

    np.testing.assert_allclose(dx, central_difference(f, x), rtol=0, atol=tol)
    expected_keys = {"lora_A.default.weight", "lora_B.default.weight"}
    if case["train_base"]:
        expected_keys |= {"base_layer.weight"} | ({"base_layer.bias"} if b is not None else set())
    assert set(grads) == expected_keys
    params = layer.parameters()
    for key, g in grads.items():
        np.testing.assert_allclose(g, central_difference(f, params[key]), rtol=0, atol=tol)


@SETTINGS
@given(
    batch=st.integers(1, 4),
    inp=st.integers(1, 5),
    out=st.integers(1, 5),
    rank=st.integers(1, 3),
    p=st.floats(0.05, 0.9),
    seed=st.integers(0, 2**32 - 1),
)
def test_functional_gradients_with_a_fixed_dropout_mask(batch, inp, out, rank, p, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((out, inp))
    A = rng.standard_normal((rank, inp))
    B = rng.standard_normal((out, rank))
    x = rng.standard_normal((batch, inp))
    G = rng.standard_normal((batch, out))
    mask = dropout_mask(x.shape, p, rng=rng)

    def f() -> float:
        return float(np.sum(G * lora_forward(x, W, A, B, scaling=1.5, dropout_mask=mask)))

    y = lora_forward(x, W, A, B, scaling=1.5, dropout_mask=mask)
    grads = lora_backward(G, x, W, A, B, scaling=1.5, dropout_mask=mask, weight_grad=True)
    tol = 1e-9 * (1.0 + float(np.sum(np.abs(G * y))))
    for analytic, arr in [
        (grads.input, x),
        (grads.lora_A, A),
        (grads.lora_B, B),
        (grads.weight, W),
    ]:
        np.testing.assert_allclose(analytic, central_difference(f, arr), rtol=0, atol=tol)


ACTIVATIONS = {
    "tanh": Tanh,
    "gelu": GELU,
    "gelu_tanh": lambda: GELU(approximate="tanh"),
}

network_cases = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 4),
        "inp": st.integers(1, 4),
        "hidden": st.integers(1, 5),
        "out": st.integers(2, 4),
        "rank": st.integers(1, 3),
        "alpha": st.floats(0.5, 8.0),
        "rslora": st.booleans(),
        "bias": st.booleans(),
        "act1": st.sampled_from(sorted(ACTIVATIONS)),
        "act2": st.sampled_from(sorted(ACTIVATIONS)),
        "loss": st.sampled_from(["mse", "cross_entropy"]),
        "freeze_first": st.booleans(),
        "train_base": st.booleans(),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def _build_network(case, rng):
    inp, hid, out, rank = case["inp"], case["hidden"], case["out"], case["rank"]

    def bias(n):
        return rng.standard_normal(n) if case["bias"] else None

    # Weights scaled by 1/sqrt(fan-in) as real initialisations are, so that pre-activations
    # are O(1): saturated tanh layers would make the third derivative (and the h^2 error
    # term) needlessly large.
    first = Linear(
        rng.standard_normal((hid, inp)) / np.sqrt(inp),
        bias(hid),
        trainable=not case["freeze_first"],
    )
    lora = LoRALinear.from_factors(
        rng.standard_normal((hid, hid)) / np.sqrt(hid),
        rng.standard_normal((rank, hid)) / np.sqrt(hid),
        rng.standard_normal((hid, rank)) / np.sqrt(rank),
        alpha=case["alpha"],
        bias=bias(hid),
        use_rslora=case["rslora"],
        train_base=case["train_base"],
    )
    head = Linear(rng.standard_normal((out, hid)) / np.sqrt(hid), bias(out))
    return Network([first, ACTIVATIONS[case["act1"]](), lora, ACTIVATIONS[case["act2"]](), head])


@SETTINGS
@given(case=network_cases)
def test_network_loss_gradients_match_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    net = _build_network(case, rng)
    x = rng.standard_normal((case["batch"], case["inp"]))
    if case["loss"] == "mse":
        target = rng.standard_normal((case["batch"], case["out"]))

        def loss(pred):
            return mse_loss(pred, target)
    else:
        labels = rng.integers(0, case["out"], size=case["batch"])

        def loss(pred):
            return softmax_cross_entropy(pred, labels)

    def f() -> float:
        return loss(net.forward(x)).value

    result = loss(net.forward(x))
    dx = net.backward(result.gradient)
    grads = net.gradients()
    assert set(grads) == set(net.trainable_parameters())
    scale = max(
        [1.0, float(np.max(np.abs(dx)))] + [float(np.max(np.abs(g))) for g in grads.values()]
    )
    tol = 1e-7 * scale

    np.testing.assert_allclose(dx, central_difference(f, x), rtol=0, atol=tol)
    params = net.parameters()
    for key, g in grads.items():
        np.testing.assert_allclose(g, central_difference(f, params[key]), rtol=0, atol=tol)

    # The training path stops at the lowest trainable layer but must give the same
    # parameter gradients.
    net.forward(x)
    net._backward(result.gradient)
    for key, g in net.gradients().items():
        np.testing.assert_array_equal(g, grads[key])


def test_relu_network_gradients_away_from_the_kink():
    rng = np.random.default_rng(7)
    W1 = rng.standard_normal((6, 3))
    x = rng.standard_normal((5, 3))
    pre = x @ W1.T
    # Keep every pre-activation at least 1e-2 from the kink, far beyond h.
    x = x[np.all(np.abs(pre) > 1e-2, axis=1)]
    net = Network([Linear(W1), ReLU(), Linear(rng.standard_normal((2, 6)))])
    target = rng.standard_normal((x.shape[0], 2))

    def f() -> float:
        return mse_loss(net.forward(x), target).value

    dx = net.backward(mse_loss(net.forward(x), target).gradient)
    grads = net.gradients()
    np.testing.assert_allclose(dx, central_difference(f, x), rtol=0, atol=1e-8)
    params = net.parameters()
    for key, g in grads.items():
        np.testing.assert_allclose(g, central_difference(f, params[key]), rtol=0, atol=1e-8)


def test_forward_backward_never_form_the_dense_product():
    """tracemalloc sees NumPy's data allocations: forward + backward of a 4096 × 4096 float32
    LoRA layer (r = 8, batch 16) must peak far below the 64 MiB a dense ``B @ A`` needs."""
    out = inp = 4096
    rank, batch = 8, 16
    rng = np.random.default_rng(0)
    layer = LoRALinear.from_factors(
        rng.standard_normal((out, inp), dtype=np.float32),
        rng.standard_normal((rank, inp), dtype=np.float32),
        rng.standard_normal((out, rank), dtype=np.float32),
        alpha=16.0,
    )
    x = rng.standard_normal((batch, inp), dtype=np.float32)
    g = rng.standard_normal((batch, out), dtype=np.float32)
    layer.forward(x, training=True, rng=0)  # warm up BLAS and caches outside the trace
    layer.backward(g)
    dense_bytes = out * inp * np.dtype(np.float32).itemsize

    tracemalloc.start()
    try:
        layer.forward(x, training=True, rng=0)
        layer.backward(g)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        # Positive control: the method does see a dense product when one is formed.
        params = layer.parameters()
        dense = params["lora_B.default.weight"] @ params["lora_A.default.weight"]
        _, control_peak = tracemalloc.get_traced_memory()
        del dense
    finally:
        tracemalloc.stop()

    print(
        f"\nforward+backward peak {peak / 2**20:.3f} MiB; dense B@A {dense_bytes / 2**20:.0f} MiB"
    )
    assert control_peak >= dense_bytes
    # Data-sized temporaries are (batch, in) or (batch, out): 256 KiB each here.
    assert peak < dense_bytes / 32

    # The stateless functions read the caller's arrays without copying W either.
    W, A, B = (
        params[k] for k in ("base_layer.weight", "lora_A.default.weight", "lora_B.default.weight")
    )
    tracemalloc.start()
    try:
        lora_forward(x, W, A, B, scaling=2.0)
        lora_backward(g, x, W, A, B, scaling=2.0)
        _, functional_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"functional forward+backward peak {functional_peak / 2**20:.3f} MiB")
    assert functional_peak < dense_bytes / 32


def test_optimizer_state_scales_with_trainable_parameters():
    out = inp = 512
    rank = 4
    rng = np.random.default_rng(1)
    layer = LoRALinear.from_factors(
        rng.standard_normal((out, inp), dtype=np.float32),
        rng.standard_normal((rank, inp), dtype=np.float32) * 0.01,
        np.zeros((out, rank), dtype=np.float32),
        alpha=4.0,
    )
    net = Network([layer])
    x = rng.standard_normal((8, inp), dtype=np.float32)
    y = rng.standard_normal((8, out), dtype=np.float32)
    for opt, per_param in [(AdamW(1e-3), 2), (SGD(1e-3, momentum=0.9), 1), (SGD(1e-3), 0)]:
        result = train(net, x, y, loss="mse", optimizer=opt, epochs=1, rng=0)
        assert net.num_trainable_parameters() == rank * (inp + out)
        assert result.optimizer_state_size == per_param * rank * (inp + out)
        assert opt.state_nbytes() == per_param * rank * (inp + out) * 4


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_public_and_training_backward_agree_when_lower_layers_are_frozen(loss_name):
    rng = np.random.default_rng(3)
    net = Network(
        [
            Linear(rng.standard_normal((5, 3)), trainable=False),
            Tanh(),
            Linear(rng.standard_normal((4, 5))),
        ]
    )
    x = rng.standard_normal((6, 3))
    pred = net.forward(x)
    res = (
        mse_loss(pred, np.zeros_like(pred))
        if loss_name == "mse"
        else softmax_cross_entropy(pred, rng.integers(0, 4, 6))
    )
    net.backward(res.gradient)
    public = net.gradients()
    net._backward(res.gradient)
    assert set(public) == set(net.gradients()) == {"2.weight"}
    np.testing.assert_array_equal(public["2.weight"], net.gradients()["2.weight"])
