"""Losses, optimisers, the training loop, and experiments run as tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lowrank.adapter import LoRALinear
from lowrank.adapter.nn import (
    SGD,
    AdamW,
    GradualUnfreezing,
    Linear,
    Network,
    Tanh,
    TrainResult,
    evaluate,
    mse_loss,
    softmax_cross_entropy,
    train,
)

# -- losses -------------------------------------------------------------------------------


def test_mse_value_and_gradient():
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([[0.0, 2.0], [3.0, 2.0]])
    r = mse_loss(p, t)
    assert r.value == pytest.approx((1 + 4) / 4, rel=1e-15)
    np.testing.assert_allclose(r.gradient, 2 * (p - t) / 4, rtol=1e-15)


def test_mse_sum_of_squares_does_not_overflow():
    # Each square is 1e308; their sum, 4e308, overflows float64 but the mean does not.
    assert mse_loss(np.full((1, 4), 1e154), np.zeros((1, 4))).value == pytest.approx(
        1e308, rel=1e-14
    )


def test_cross_entropy_is_stable_for_huge_logits():
    r = softmax_cross_entropy([[1000.0, 0.0], [0.0, 1000.0]], [0, 0])
    assert r.value == pytest.approx(500.0, rel=1e-15)  # (0 + 1000) / 2
    np.testing.assert_allclose(r.gradient, [[0.0, 0.0], [-0.5, 0.5]], atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_the_naive_formula(rng, dtype):
    z = rng.standard_normal((5, 4)).astype(dtype)
    labels = rng.integers(0, 4, 5)
    r = softmax_cross_entropy(z, labels)
    z64 = z.astype(np.float64)
    p = np.exp(z64) / np.exp(z64).sum(axis=1, keepdims=True)
    naive = -np.mean(np.log(p[np.arange(5), labels]))
    eps = float(np.finfo(dtype).eps)
    assert r.value == pytest.approx(naive, rel=50 * eps)
    onehot = np.eye(4)[labels]
    assert r.gradient.dtype == dtype
    np.testing.assert_allclose(r.gradient, (p - onehot) / 5, atol=10 * eps)


# -- optimisers ---------------------------------------------------------------------------


def test_sgd_momentum_matches_the_reference_recursion(rng):
    grads = [rng.standard_normal(3) for _ in range(5)]
    p0 = rng.standard_normal(3)
    params = {"w": p0.copy()}
    opt = SGD(0.1, momentum=0.9)
    for g in grads:
        opt.step(params, {"w": g})
    p, v = p0.copy(), np.zeros(3)
    for t, g in enumerate(grads):
        v = g if t == 0 else 0.9 * v + g
        p = p - 0.1 * v
    np.testing.assert_allclose(params["w"], p, rtol=1e-14)
    assert opt.state_size() == 3


def test_adamw_matches_the_reference_algorithm(rng):
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.95, 1e-6, 0.1
    grads = [rng.standard_normal((2, 3)) for _ in range(7)]
    p0 = rng.standard_normal((2, 3))
    params = {"w": p0.copy()}
    opt = AdamW(lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for g in grads:
        opt.step(params, {"w": g})
    # Loshchilov & Hutter, Algorithm 2 with Adam's bias corrections (Kingma & Ba, Alg. 1).
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(params["w"], p, rtol=1e-13)
    assert opt.state_size() == 2 * p0.size


def test_adamw_decays_only_parameters_it_is_given_gradients_for(rng):
    W = rng.standard_normal((6, 4))
    b = rng.standard_normal(6)
    layer = LoRALinear.from_factors(
        W, rng.standard_normal((2, 4)), np.zeros((6, 2)), alpha=2.0, bias=b
    )
    net = Network([layer])
    x = rng.standard_normal((10, 4))
    y = rng.standard_normal((10, 6))
    opt = AdamW(0.05, weight_decay=0.5)
    train(net, x, y, loss="mse", optimizer=opt, epochs=5, rng=0)
    params = net.parameters()
    np.testing.assert_array_equal(params["0.base_layer.weight"], W)  # frozen: untouched
    np.testing.assert_array_equal(params["0.base_layer.bias"], b)
    assert set(opt._state) == {"0.lora_A.default.weight", "0.lora_B.default.weight"}


def test_adamw_first_step_and_pure_decay():
    params = {"w": np.array([1.0, -2.0])}
    AdamW(0.1, weight_decay=0.0).step(params, {"w": np.array([1e-3, 50.0])})
    # Bias correction makes the first step lr * g / (|g| + eps), nearly lr * sign(g).
    g = np.array([1e-3, 50.0])
    np.testing.assert_allclose(params["w"], [1.0, -2.0] - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-14)
    params = {"w": np.array([1.0, -2.0])}
    opt = AdamW(0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step(params, {"w": np.zeros(2)})
    np.testing.assert_allclose(params["w"], np.array([1.0, -2.0]) * 0.95**3, rtol=1e-15)


# -- training loop ------------------------------------------------------------------------


def _toy_network(rng, dropout=0.0):
    W1 = rng.standard_normal((6, 3)) / np.sqrt(3)
    lora = LoRALinear.from_factors(
        rng.standard_normal((5, 6)) / np.sqrt(6),
        rng.standard_normal((2, 6)) * 0.1,
        np.zeros((5, 2)),
        alpha=2.0,
        dropout=dropout,
    )
    return Network([Linear(W1), Tanh(), lora, Tanh(), Linear(rng.standard_normal((2, 5)))])


def test_training_is_deterministic_given_the_seed():
    data = np.random.default_rng(0)
    x = data.standard_normal((40, 3))
    y = data.standard_normal((40, 2))

    def run(seed):
        net = _toy_network(np.random.default_rng(1), dropout=0.3)
        return train(net, x, y, loss="mse", optimizer=AdamW(1e-2), epochs=3, batch_size=7, rng=seed)

    first, again = run(5), run(5)
    assert first.step_losses == again.step_losses
    assert run(np.random.default_rng(5)).step_losses == first.step_losses
    assert run(6).step_losses != first.step_losses
    assert len(first.step_losses) == 3 * 6  # ceil(40 / 7) = 6 steps per epoch


def test_result_is_frozen_and_epoch_losses_are_weighted_means():
    data = np.random.default_rng(0)
    x = data.standard_normal((7, 3))
    y = data.standard_normal((7, 2))
    net = _toy_network(np.random.default_rng(1))
    result = train(net, x, y, loss="mse", optimizer=SGD(1e-2), epochs=2, batch_size=3, rng=0)
    assert isinstance(result, TrainResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.epoch_losses = ()  # type: ignore[misc]
    steps = np.array(result.step_losses).reshape(2, 3)
    sizes = np.array([3, 3, 1])
    np.testing.assert_allclose(result.epoch_losses, steps @ sizes / 7, rtol=1e-15)
    assert result.final_loss == result.epoch_losses[-1]


def test_gradual_unfreezing_opens_layers_from_the_top():
    data = np.random.default_rng(0)
    x = data.standard_normal((12, 3))
    y = data.standard_normal((12, 2))
    net = _toy_network(np.random.default_rng(1))
    layers = net.layers
    head, lora, first = layers[4], layers[2], layers[0]
    result = train(
        net,
        x,
        y,
        loss="mse",
        optimizer=AdamW(1e-2),
        epochs=6,
        rng=0,
        schedule=GradualUnfreezing(every=2),
    )
    n_head = head.num_parameters()
    n_lora = lora.num_trainable_parameters()  # its factors only: r (in + out) = 2 * 11
    n_first = first.num_parameters()
    assert n_lora == 2 * (6 + 5)
    assert result.trainable_parameters == (
        n_head,
        n_head,
        n_head + n_lora,
        n_head + n_lora,
        n_head + n_lora + n_first,
        n_head + n_lora + n_first,
    )


def test_head_only_training_leaves_the_rest_unchanged():
    data = np.random.default_rng(0)
    x = data.standard_normal((12, 3))
    y = data.standard_normal((12, 2))
    net = _toy_network(np.random.default_rng(1))
    for layer in net.layers[:-1]:
        layer.freeze()
    before = {k: v.copy() for k, v in net.parameters().items()}
    train(net, x, y, loss="mse", optimizer=SGD(0.1, momentum=0.5), epochs=3, rng=0)
    after = net.parameters()
    for key, value in before.items():
        if key.startswith("4."):
            assert not np.array_equal(after[key], value)
        else:
            np.testing.assert_array_equal(after[key], value)


def test_cross_entropy_training_separates_two_blobs():
    data = np.random.default_rng(2)
    x = np.concatenate([data.normal(-2, 1, (50, 2)), data.normal(2, 1, (50, 2))])
    labels = np.repeat([0, 1], 50)
    net = Network([Linear(data.standard_normal((8, 2))), Tanh(), Linear(np.zeros((2, 8)))])
    result = train(
        net,
        x,
        labels,
        loss="cross_entropy",
        optimizer=AdamW(0.05),
        epochs=30,
        batch_size=20,
        rng=0,
    )
    assert result.final_loss < 0.1 < result.epoch_losses[0]
    accuracy = np.mean(net.forward(x).argmax(axis=1) == labels)
    assert accuracy > 0.95
    assert evaluate(net, x, labels, loss="cross_entropy") < 0.1


def test_float32_training_stays_float32():
    data = np.random.default_rng(0)
    net = Network(
        [
            LoRALinear.from_factors(
                data.standard_normal((3, 4), dtype=np.float32),
                data.standard_normal((2, 4), dtype=np.float32),
                np.zeros((3, 2), np.float32),
                alpha=2.0,
            )
        ]
    )
    x = data.standard_normal((8, 4), dtype=np.float32)
    y = data.standard_normal((8, 3))  # float64 targets are converted
    opt = AdamW(1e-2)
    result = train(net, x, y, loss="mse", optimizer=opt, epochs=20, rng=0)
    assert result.final_loss < result.epoch_losses[0]
    assert all(v.dtype == np.float32 for v in net.parameters().values())
    assert all(v.dtype == np.float32 for s in opt._state.values() for v in s.values())


# -- experiment (1): LoRA rank versus the Eckart–Young–Mirsky bound ----------------------


def _rank_k_regression(dtype=np.float64):
    """A whitened regression whose target differs from the base weight by a rank-4 update.

    With ``X`` of shape ``(n, in)`` and ``XᵀX = n·I`` (an orthogonal design), predictions
    ``X (W + sBA)ᵀ`` and targets ``X (W + Δ)ᵀ``, the mean-squared error over all ``n·out``
    entries is

        L = ‖X (sBA − Δ)ᵀ‖²_F / (n·out) = tr((sBA − Δ) XᵀX (sBA − Δ)ᵀ) / (n·out)
          = ‖sBA − Δ‖²_F / out,

    and since ``sBA`` has rank ≤ r, Eckart–Young–Mirsky gives ``L ≥ Σ_{i>r} σ_i(Δ)² / out``,
    attained by the truncated SVD of Δ.
    """
    rng = np.random.default_rng(0)
    n, d_in, d_out = 128, 24, 16
    Q, _ = np.linalg.qr(rng.standard_normal((n, d_in)))
    X = np.sqrt(n) * Q
    W = rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)
    U, _ = np.linalg.qr(rng.standard_normal((d_out, 4)))
    V, _ = np.linalg.qr(rng.standard_normal((d_in, 4)))
    sigma = np.array([4.0, 3.0, 2.0, 1.0])
    delta = U @ np.diag(sigma) @ V.T
    T = X @ (W + delta).T
    return rng, X.astype(dtype), W.astype(dtype), delta, T.astype(dtype)


@pytest.mark.parametrize("rank", [1, 2, 3, 4, 6])
def test_lora_reaches_the_eckart_young_mirsky_bound(rank):
    rng, X, W, delta, T = _rank_k_regression()
    d_out, d_in = W.shape
    sigma = np.linalg.svd(delta, compute_uv=False)
    bound = float(np.sum(sigma[rank:] ** 2)) / d_out
    A0 = rng.uniform(-1, 1, (rank, d_in)) / np.sqrt(d_in)  # PEFT-like: A random, B = 0
    layer = LoRALinear.from_factors(W, A0, np.zeros((d_out, rank)), alpha=rank)
    net = Network([layer])
    initial = evaluate(net, X, T, loss="mse")
    assert initial == pytest.approx(np.sum(sigma**2) / d_out, rel=1e-12)  # 30 / 16
    result = train(net, X, T, loss="mse", optimizer=SGD(0.5, momentum=0.9), epochs=800, rng=0)
    final = evaluate(net, X, T, loss="mse")
    print(f"\nrank {rank}: initial {initial:.6g}, final {final:.6g}, EYM bound {bound:.6g}")
    assert result.epoch_losses[-1] == pytest.approx(final, rel=1e-6, abs=1e-25)
    if rank >= 4:
        assert final < 1e-20 * initial  # realisable: driven to zero (measured ~2e-31)
    else:
        # Plateau exactly at the bound (measured relative gap below 1e-15).
        assert final == pytest.approx(bound, rel=1e-10)
        # ... because the learned update is the truncated SVD of Δ.
        learned = np.linalg.svd(layer.delta_weight("default"), compute_uv=False)
        np.testing.assert_allclose(learned[:rank], sigma[:rank], rtol=1e-8)


def test_lora_minibatch_and_float32_approach_the_bound():
    rng, X, W, delta, T = _rank_k_regression(np.float32)
    bound = float(np.sum(np.linalg.svd(delta, compute_uv=False)[2:] ** 2)) / W.shape[0]
    A0 = (rng.uniform(-1, 1, (2, 24)) / np.sqrt(24)).astype(np.float32)
    net = Network([LoRALinear.from_factors(W, A0, np.zeros((16, 2), np.float32), alpha=2)])
    train(
        net,
        X,
        T,
        loss="mse",
        optimizer=SGD(0.1, momentum=0.9),
        epochs=200,
        batch_size=32,
        rng=0,
    )
    final = evaluate(net, X, T, loss="mse")
    print(f"\nfloat32, minibatch 32, rank 2: final {final:.6g}, EYM bound {bound:.6g}")
    # Minibatch noise keeps SGD a little above the bound; float32 rounding is ~1e-7.
    assert bound <= final * (1 + 1e-5)
    assert final < 1.02 * bound


# -- one problem, five fine-tuning regimes ------------------------------------------------


def _pissa_factors(W, rank):
    """PiSSA with scaling 1, written out here because the initialisers belong to
    lowrank.lora: ``B = U_r √S_r``, ``A = √S_r V_rᵀ``, ``W_res = W − B A``."""
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    B = U[:, :rank] * np.sqrt(S[:rank])
    A = np.sqrt(S[:rank])[:, None] * Vh[:rank]
    return W - B @ A, A, B


def test_compare_fine_tuning_regimes_on_one_problem():
    rng = np.random.default_rng(0)
    n, d_in, h, out, k = 256, 8, 32, 4, 2
    W1, W2, W3 = (
        rng.standard_normal((h, d_in)) / np.sqrt(d_in),
        rng.standard_normal((h, h)) / np.sqrt(h),
        rng.standard_normal((out, h)) / np.sqrt(h),
    )
    b1, b2, b3 = (0.1 * rng.standard_normal(m) for m in (h, h, out))

    def update(m, nn):
        return rng.standard_normal((m, k)) @ rng.standard_normal((k, nn)) * 1.5 / np.sqrt(k * nn)

    # The "downstream task": the pretrained network with rank-2 changes in both hidden layers.
    teacher = Network(
        [
            Linear(W1 + update(h, d_in), b1),
            Tanh(),
            Linear(W2 + update(h, h), b2),
            Tanh(),
            Linear(W3, b3),
        ]
    )
    X = rng.standard_normal((n, d_in))
    Y = teacher.forward(X)

    def dense():
        return [Linear(W1, b1), Tanh(), Linear(W2, b2), Tanh(), Linear(W3, b3)]

    def adapted(kind):
        def wrap(W, b):
            if kind == "pissa":
                W_res, A, B = _pissa_factors(W, k)
                return LoRALinear.from_factors(W_res, A, B, alpha=k, bias=b)
            A = rng.uniform(-1, 1, (k, W.shape[1])) / np.sqrt(W.shape[1])
            return LoRALinear.from_factors(W, A, np.zeros((W.shape[0], k)), alpha=k, bias=b)

        return [wrap(W1, b1), Tanh(), wrap(W2, b2), Tanh(), Linear(W3, b3, trainable=False)]

    nets = {
        "full": Network(dense()),
        "head only": Network(dense()),
        "gradual": Network(dense()),
        "LoRA": Network(adapted("lora")),
        "PiSSA": Network(adapted("pissa")),
    }
    for layer in nets["head only"].layers[:-1]:
        layer.freeze()
    epochs = 60
    results, finals = {}, {}
    pretrained_loss = evaluate(nets["full"], X, Y, loss="mse")
    for name, net in nets.items():
        # PiSSA and LoRA start exactly at the pretrained function (W_res + BA = W; B = 0).
        assert evaluate(net, X, Y, loss="mse") == pytest.approx(pretrained_loss, rel=1e-12)
        results[name] = train(
            net,
            X,
            Y,
            loss="mse",
            optimizer=AdamW(1e-2, weight_decay=0.0),
            epochs=epochs,
            batch_size=32,
            rng=0,
            schedule=GradualUnfreezing(every=epochs // 3) if name == "gradual" else None,
        )
        finals[name] = evaluate(net, X, Y, loss="mse")

    print(f"\ninitial loss {pretrained_loss:.4f}")
    for name, res in results.items():
        print(
            f"{name:10s} trainable {res.trainable_parameters[0]:5d} -> "
            f"{res.trainable_parameters[-1]:5d}   epoch 10 {res.epoch_losses[9]:.5f}   "
            f"final {finals[name]:.5f}"
        )

    total = nets["full"].num_parameters()
    assert results["full"].trainable_parameters[0] == total
    assert results["head only"].trainable_parameters[0] == out * h + out
    lora_count = k * (d_in + h) + k * (h + h)  # r (in + out) per adapted layer
    assert results["LoRA"].trainable_parameters[0] == lora_count
    assert results["PiSSA"].trainable_parameters[0] == lora_count
    assert results["gradual"].trainable_parameters[0] == out * h + out
    assert results["gradual"].trainable_parameters[-1] == total
    for name, final in finals.items():
        assert final < 0.2 * pretrained_loss, name
    # The head cannot undo a change inside the hidden layers; the low-rank adapters can.
    assert finals["head only"] > finals["LoRA"]
    assert finals["full"] < finals["head only"]
