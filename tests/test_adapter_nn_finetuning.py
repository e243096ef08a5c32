"""Fine-tuning features of lowrank.adapter.nn (issue 14): per-layer learning rates
(discriminative fine-tuning), the slanted triangular schedule, a new head on a shared body,
and the L2-SP penalty.

Updates are checked against hand computations in float64, where the only differences are
the order of a few floating-point operations: a tolerance of a few hundred ulps of the
values involved (``rtol=1e-12``) is ample and still catches any wrong factor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowrank.adapter import LoRALinear
from lowrank.adapter.nn import (
    L2SP,
    SGD,
    AdamW,
    Linear,
    Network,
    SlantedTriangular,
    Tanh,
    discriminative_lr_multipliers,
    evaluate,
    softmax_cross_entropy,
    train,
)
from lowrank.errors import DTypeError, InputError, ShapeError

RTOL = 1e-12  # float64 hand computations: same operations up to reordering


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(14)


def _net(rng: np.random.Generator, *, dtype: type = np.float64) -> Network:
    """Three parametric layers (5 -> 4 -> 4 -> 3) with tanh between them."""
    return Network(
        [
            Linear(rng.standard_normal((4, 5)).astype(dtype), rng.standard_normal(4).astype(dtype)),
            Tanh(),
            Linear(rng.standard_normal((4, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)),
            Tanh(),
            Linear(rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(3).astype(dtype)),
        ]
    )


def _data(rng: np.random.Generator, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((n, 5)), rng.integers(0, 3, size=n)


def _gradients(net: Network, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Full-batch cross-entropy gradients at the current parameters (copies)."""
    loss = softmax_cross_entropy(net.forward(x), y)
    net.backward(loss.gradient)
    return {k: g.copy() for k, g in net.gradients().items()}


def _snapshot(net: Network) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in net.parameters().items()}


# --------------------------------------------------------------------------------------
# Discriminative learning rates
# --------------------------------------------------------------------------------------


class TestDiscriminativeRates:
    def test_multipliers_decay_by_the_factor_from_the_top(self, rng):
        net = _net(rng)
        rates = discriminative_lr_multipliers(net)
        assert rates == {
            "0.weight": 2.6**-2,
            "0.bias": 2.6**-2,
            "2.weight": 2.6**-1,
            "2.bias": 2.6**-1,
            "4.weight": 1.0,
            "4.bias": 1.0,
        }
        # ULMFiT: each layer's rate is the one above's / 2.6.
        assert rates["0.weight"] * 2.6 == pytest.approx(rates["2.weight"], rel=RTOL)

    def test_lora_layers_count_as_one_layer_each(self, rng):
        W = rng.standard_normal((3, 4))
        lora = LoRALinear.from_factors(W, rng.standard_normal((1, 4)), np.zeros((3, 1)), alpha=1)
        net = Network([Linear(rng.standard_normal((4, 5))), Tanh(), lora])
        rates = discriminative_lr_multipliers(net, factor=2.0)
        assert rates["0.weight"] == 0.5
        assert {k for k, v in rates.items() if v == 1.0} == {f"2.{k}" for k in lora.parameters()}

    def test_sgd_update_of_each_layer_is_multiplier_times_rate_times_gradient(self, rng):
        net = _net(rng)
        x, y = _data(rng)
        before = _snapshot(net)
        grads = _gradients(net, x, y)
        rates = discriminative_lr_multipliers(net)
        train(
            net,
            x,
            y,
            loss="cross_entropy",
            optimizer=SGD(0.3, lr_multipliers=rates),
            epochs=1,
            shuffle=False,
        )
        for k, p in net.parameters().items():
            expected = before[k] - rates[k] * 0.3 * grads[k]
            np.testing.assert_allclose(p, expected, rtol=RTOL, atol=1e-15, err_msg=k)

    def test_sgd_momentum_with_multipliers_two_steps(self):
        p = {"a": np.array([1.0, -2.0]), "b": np.array([0.5])}
        g1 = {"a": np.array([0.1, 0.2]), "b": np.array([-1.0])}
        g2 = {"a": np.array([-0.3, 0.4]), "b": np.array([2.0])}
        opt = SGD(0.1, momentum=0.9, lr_multipliers={"a": 0.25})
        opt.step(p, g1)
        opt.step(p, g2)
        for k, c in (("a", 0.25), ("b", 1.0)):
            start = {"a": np.array([1.0, -2.0]), "b": np.array([0.5])}[k]
            v1 = g1[k]
            v2 = 0.9 * v1 + g2[k]
            np.testing.assert_allclose(p[k], start - c * 0.1 * v1 - c * 0.1 * v2, rtol=RTOL)

    def test_adamw_update_per_parameter_matches_the_formula(self):
        start = {"a": np.array([1.0, -2.0, 0.5]), "b": np.array([[0.3, -0.7]])}
        p = {k: v.copy() for k, v in start.items()}
        steps = [
            {"a": np.array([0.1, -0.2, 0.3]), "b": np.array([[1.0, -2.0]])},
            {"a": np.array([-0.4, 0.5, 0.0]), "b": np.array([[0.5, 0.25]])},
            {"a": np.array([0.2, 0.2, -0.1]), "b": np.array([[-1.5, 3.0]])},
        ]
        lr, wd, b1, b2, eps = 0.01, 0.1, 0.8, 0.95, 1e-6
        mult = {"a": 1 / 2.6}
        opt = AdamW(lr, betas=(b1, b2), eps=eps, weight_decay=wd, lr_multipliers=mult)
        for g in steps:
            opt.step(p, g)
        for k, theta0 in start.items():
            eta = lr * mult.get(k, 1.0)
            theta, m, v = theta0.copy(), np.zeros_like(theta0), np.zeros_like(theta0)
            for t, g in enumerate(steps, start=1):
                theta = theta * (1 - eta * wd)
                m = b1 * m + (1 - b1) * g[k]
                v = b2 * v + (1 - b2) * g[k] ** 2
                m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
                # torch's form: eps is added to sqrt(v)/sqrt(1 - b2^t), i.e. to sqrt(v_hat).
                theta = theta - eta * m_hat / (np.sqrt(v_hat) + eps)
            np.testing.assert_allclose(p[k], theta, rtol=1e-10, err_msg=k)

    def test_multipliers_of_one_change_nothing(self, rng):
        x, y = _data(rng)
        a, b = _net(np.random.default_rng(1)), _net(np.random.default_rng(1))
        train(a, x, y, loss="cross_entropy", optimizer=AdamW(0.01), epochs=3, rng=0)
        ones = dict.fromkeys(b.parameters(), 1.0)
        opt = AdamW(0.01, lr_multipliers=ones)
        train(b, x, y, loss="cross_entropy", optimizer=opt, epochs=3, rng=0)
        for k in a.parameters():
            np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])

    def test_repr_shows_multipliers(self):
        assert "lr_multipliers={'w': 0.5}" in repr(SGD(0.1, lr_multipliers={"w": 0.5}))
        assert "lr_multipliers" not in repr(AdamW())
        assert "lr_multipliers={'w': 2.0}" in repr(AdamW(lr_multipliers={"w": 2.0}))

    @pytest.mark.parametrize("cls", [SGD, AdamW])
    def test_bad_multipliers(self, cls):
        with pytest.raises(InputError, match=r"lr_multipliers must be a mapping; got 3"):
            cls(0.1, lr_multipliers=3)
        with pytest.raises(InputError, match=r"lr_multipliers key must be a string; got 1"):
            cls(0.1, lr_multipliers={1: 0.5})
        with pytest.raises(
            InputError, match=r"lr_multipliers\['w'\] must be finite and > 0; got 0.0"
        ):
            cls(0.1, lr_multipliers={"w": 0.0})
        with pytest.raises(InputError, match=r"lr_multipliers\['w'\] must be finite and > 0"):
            cls(0.1, lr_multipliers={"w": float("nan")})

    def test_bad_arguments(self, rng):
        with pytest.raises(InputError, match=r"network must be a lowrank.adapter.nn Network"):
            discriminative_lr_multipliers(None)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"factor must be finite and > 0; got -2.6"):
            discriminative_lr_multipliers(_net(rng), factor=-2.6)


# --------------------------------------------------------------------------------------
# Slanted triangular learning rates
# --------------------------------------------------------------------------------------


def _stlr(t: int, *, lr_max: float, T: int, cut_frac: float, ratio: float) -> float:
    """Howard & Ruder (2018), equation (3), written out independently; for a run too short
    for it (T * cut_frac < 1) the documented extension: peak at 1, decay over T - 1 steps."""
    cut = max(1, math.floor(T * cut_frac))
    decay = cut * (1 / cut_frac - 1) if math.floor(T * cut_frac) >= 1 else T - cut
    if t < cut:
        p = t / cut
    else:
        p = 1 - (t - cut) / decay if decay else 0.0
    return lr_max * (1 + max(p, 0.0) * (ratio - 1)) / ratio


class TestSlantedTriangular:
    @pytest.mark.parametrize(
        ("T", "cut_frac", "ratio"),
        [(100, 0.1, 32.0), (37, 0.25, 8.0), (5, 0.1, 1.0), (1, 0.5, 4.0)],
    )
    def test_values_against_the_closed_form(self, T, cut_frac, ratio):
        schedule = SlantedTriangular(0.02, T, cut_frac=cut_frac, ratio=ratio)
        for t in range(T + 3):
            expected = _stlr(t, lr_max=0.02, T=T, cut_frac=cut_frac, ratio=ratio)
            assert schedule(t) == pytest.approx(expected, rel=RTOL), t

    def test_shape_of_the_triangle(self):
        schedule = SlantedTriangular(0.01, 1000)  # ULMFiT's defaults: cut_frac 0.1, ratio 32
        values = np.array([schedule(t) for t in range(1000)])
        assert schedule.cut == 100
        assert values.argmax() == 100 and values.max() == pytest.approx(0.01, rel=RTOL)
        assert values[0] == pytest.approx(0.01 / 32, rel=RTOL)
        assert np.all(np.diff(values[:101]) > 0) and np.all(np.diff(values[100:]) < 0)
        # The decay reaches lr_max / ratio at step T and stays there.
        assert schedule(1000) == pytest.approx(0.01 / 32, rel=RTOL)
        assert schedule(5000) == pytest.approx(0.01 / 32, rel=RTOL)

    def test_train_sets_the_optimizer_rate_every_step(self, rng):
        net = _net(rng)
        x, y = _data(rng, n=8)
        calls: list[int] = []
        schedule = SlantedTriangular(0.1, 12, cut_frac=0.25)

        def logged(step: int) -> float:
            calls.append(step)
            return schedule(step)

        opt = SGD(1.0)
        result = train(
            net,
            x,
            y,
            loss="cross_entropy",
            optimizer=opt,
            epochs=3,
            batch_size=2,
            lr_schedule=logged,
        )
        assert calls == list(range(12)) and len(result.step_losses) == 12
        assert opt.lr == schedule(11)

    def test_first_step_uses_the_scheduled_rate(self, rng):
        net = _net(rng)
        x, y = _data(rng)
        before, grads = _snapshot(net), _gradients(net, x, y)
        schedule = SlantedTriangular(0.5, 10, ratio=4.0)  # step 0: 0.5 / 4
        rates = discriminative_lr_multipliers(net)
        opt = SGD(1.0, lr_multipliers=rates)
        train(
            net, x, y, loss="cross_entropy", optimizer=opt, epochs=1, shuffle=False,
            lr_schedule=schedule,
        )  # fmt: skip
        for k, p in net.parameters().items():
            expected = before[k] - rates[k] * 0.125 * grads[k]
            np.testing.assert_allclose(p, expected, rtol=RTOL, atol=1e-15, err_msg=k)

    def test_bad_arguments(self):
        with pytest.raises(InputError, match=r"lr_max must be finite and > 0; got 0"):
            SlantedTriangular(0, 10)
        with pytest.raises(InputError, match=r"total_steps must be >= 1; got 0"):
            SlantedTriangular(0.1, 0)
        with pytest.raises(InputError, match=r"total_steps must be an integer; got 2.5"):
            SlantedTriangular(0.1, 2.5)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"cut_frac must lie in \(0, 1\); got 1.0"):
            SlantedTriangular(0.1, 10, cut_frac=1.0)
        with pytest.raises(InputError, match=r"ratio must be >= 1; got 0.5"):
            SlantedTriangular(0.1, 10, ratio=0.5)
        with pytest.raises(InputError, match=r"ratio must be finite and > 0; got inf"):
            SlantedTriangular(0.1, 10, ratio=float("inf"))
        with pytest.raises(InputError, match=r"step must be >= 0; got -1"):
            SlantedTriangular(0.1, 10)(-1)

    def test_train_rejects_bad_schedules(self, rng):
        net = _net(rng)
        x, y = _data(rng)
        with pytest.raises(InputError, match=r"lr_schedule must be callable; got 3"):
            train(net, x, y, loss="cross_entropy", optimizer=SGD(0.1), epochs=1, lr_schedule=3)
        with pytest.raises(InputError, match=r"lr_schedule\(0\) must be finite and > 0; got 0.0"):
            train(
                net, x, y, loss="cross_entropy", optimizer=SGD(0.1), epochs=1,
                lr_schedule=lambda step: 0.0,
            )  # fmt: skip


# --------------------------------------------------------------------------------------
# A new head on a shared (frozen) body
# --------------------------------------------------------------------------------------


class TestNewHead:
    def test_frozen_body_and_old_head_unchanged_after_training_the_new_head(self, rng):
        task1 = _net(rng)
        head2 = Linear(rng.standard_normal((2, 4)), np.zeros(2))
        task2 = task1.with_head(head2)
        assert task2.layers[:-1] == task1.layers[:-1] and task2.layers[-1] is head2
        for layer in task2.layers[:-1]:
            layer.freeze()
        x, _ = _data(rng)
        y2 = rng.integers(0, 2, size=x.shape[0])
        before = _snapshot(task1)
        out1 = task1.forward(x)
        head_before = head2.parameters()["weight"].copy()
        loss_before = evaluate(task2, x, y2, loss="cross_entropy")
        train(task2, x, y2, loss="cross_entropy", optimizer=AdamW(0.05), epochs=20, rng=0)
        for k, v in task1.parameters().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)
        np.testing.assert_array_equal(task1.forward(x), out1)  # task 1 retained exactly
        assert not np.array_equal(head2.parameters()["weight"], head_before)
        assert evaluate(task2, x, y2, loss="cross_entropy") < loss_before

    def test_training_a_shared_unfrozen_body_moves_the_old_task(self, rng):
        task1 = _net(rng)
        task2 = task1.with_head(Linear(rng.standard_normal((2, 4))))
        x, _ = _data(rng)
        out1 = task1.forward(x)
        head1 = task1.layers[-1].parameters()["weight"].copy()
        y2 = rng.integers(0, 2, size=x.shape[0])
        train(task2, x, y2, loss="cross_entropy", optimizer=SGD(0.5), epochs=5, rng=0)
        assert not np.allclose(task1.forward(x), out1)  # the body drifted under task 1's head
        np.testing.assert_array_equal(task1.layers[-1].parameters()["weight"], head1)

    def test_gradients_of_the_new_network_against_finite_differences(self, rng):
        task1 = _net(rng)
        task2 = task1.with_head(Linear(rng.standard_normal((2, 4)), rng.standard_normal(2)))
        x = rng.standard_normal((6, 5))
        y = rng.integers(0, 2, size=6)
        grads = _gradients(task2, x, y)
        params = task2.parameters()
        h = 1e-6  # central differences: error O(h^2) ~ 1e-12 plus rounding ~ eps / h ~ 1e-10
        for key in ("0.weight", "2.bias", "4.weight", "4.bias"):
            p = params[key]
            for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
                old = p[idx]
                p[idx] = old + h
                up = softmax_cross_entropy(task2.forward(x), y).value
                p[idx] = old - h
                down = softmax_cross_entropy(task2.forward(x), y).value
                p[idx] = old
                assert grads[key][idx] == pytest.approx((up - down) / (2 * h), abs=1e-8), key

    def test_bad_heads(self, rng):
        net = _net(rng)
        with pytest.raises(InputError, match=r"head must be a lowrank.adapter.nn Layer; got 3"):
            net.with_head(3)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"head must be a new layer"):
            net.with_head(net.layers[0])
        with pytest.raises(ShapeError, match=r"has in_features=3 but layers\[2\]"):
            net.with_head(Linear(np.ones((2, 3))))
        with pytest.raises(DTypeError, match=r"layers must share one dtype"):
            net.with_head(Linear(np.ones((2, 4), dtype=np.float32)))


# --------------------------------------------------------------------------------------
# L2-SP
# --------------------------------------------------------------------------------------


class TestL2SP:
    def test_gradient_against_finite_differences(self, rng):
        anchor = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)}
        params = {k: v + rng.standard_normal(v.shape) for k, v in anchor.items()}
        params["free"] = rng.standard_normal(2)  # not anchored: ignored
        penalty = L2SP(anchor, strength=0.7)
        grad = penalty.gradient(params)
        assert set(grad) == {"a", "b"}
        h = 1e-5  # the penalty is quadratic: central differences are exact up to rounding
        for key in ("a", "b"):
            for idx in np.ndindex(params[key].shape):
                shifted = {k: v.copy() for k, v in params.items()}
                shifted[key][idx] += h
                up = penalty.value(shifted)
                shifted[key][idx] -= 2 * h
                down = penalty.value(shifted)
                assert grad[key][idx] == pytest.approx((up - down) / (2 * h), abs=1e-8)

    def test_value_closed_form_and_zero_at_the_anchor(self, rng):
        anchor = {"w": rng.standard_normal((2, 3))}
        penalty = L2SP(anchor, strength=2.0)
        assert penalty.value(anchor) == 0.0
        moved = {"w": anchor["w"] + 0.5}
        assert penalty.value(moved) == pytest.approx(0.5 * 2.0 * 6 * 0.25, rel=RTOL)
        anchor["w"][0, 0] = 100.0  # the anchor was copied
        assert penalty.value(moved) == pytest.approx(1.5, rel=RTOL)
        assert penalty.anchor["w"][0, 0] != 100.0

    def test_train_step_adds_the_penalty_gradient_and_leaves_frozen_parameters(self, rng):
        net = _net(rng)
        x, y = _data(rng)
        anchor = _snapshot(net)
        net.load_parameters({k: v + 0.1 for k, v in anchor.items()})  # away from the anchor
        net.layers[0].freeze()
        before, grads = _snapshot(net), _gradients(net, x, y)
        penalty = L2SP(anchor, strength=0.3)
        result = train(
            net, x, y, loss="cross_entropy", optimizer=SGD(0.2), epochs=1, shuffle=False,
            penalty=penalty,
        )  # fmt: skip
        for k, p in net.parameters().items():
            if k.startswith("0."):
                np.testing.assert_array_equal(p, before[k], err_msg=k)  # frozen
            else:
                expected = before[k] - 0.2 * (grads[k] + 0.3 * (before[k] - anchor[k]))
                np.testing.assert_allclose(p, expected, rtol=RTOL, atol=1e-15, err_msg=k)
        net2 = _net(np.random.default_rng(0))
        net2.load_parameters(before)
        plain = evaluate(net2, x, y, loss="cross_entropy")
        assert result.step_losses[0] == pytest.approx(plain + penalty.value(before), rel=RTOL)

    def test_strong_penalty_keeps_weights_near_the_anchor(self, rng):
        x, y = _data(rng, n=20)
        free, held = _net(np.random.default_rng(3)), _net(np.random.default_rng(3))
        anchor = _snapshot(held)
        train(free, x, y, loss="cross_entropy", optimizer=SGD(0.2), epochs=50, rng=0)
        penalty = L2SP(anchor, strength=5.0)
        train(held, x, y, loss="cross_entropy", optimizer=SGD(0.2), epochs=50, rng=0,
              penalty=penalty)  # fmt: skip
        drift = {
            name: sum(float(np.sum((n.parameters()[k] - anchor[k]) ** 2)) for k in anchor)
            for name, n in (("free", free), ("held", held))
        }
        assert drift["held"] < 0.2 * drift["free"]

    def test_bad_arguments(self, rng):
        with pytest.raises(InputError, match=r"anchor must be a mapping; got 3"):
            L2SP(3, strength=1.0)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"anchor key must be a string; got 0"):
            L2SP({0: np.ones(2)}, strength=1.0)  # type: ignore[dict-item]
        with pytest.raises(InputError, match=r"strength must be finite and >= 0; got -1.0"):
            L2SP({"w": np.ones(2)}, strength=-1.0)
        penalty = L2SP({"w": np.ones(2)}, strength=1.0)
        with pytest.raises(InputError, match=r"params must be a mapping"):
            penalty.value(None)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"params must hold every anchored key; 'w'"):
            penalty.value({"v": np.ones(2)})
        with pytest.raises(ShapeError, match=r"params\['w'\] must have the anchor's shape"):
            penalty.gradient({"w": np.ones(3)})
        net = _net(rng)
        x, y = _data(rng)
        kw = {"loss": "cross_entropy", "optimizer": SGD(0.1), "epochs": 1}
        with pytest.raises(InputError, match=r"penalty must be a lowrank.adapter.nn L2SP"):
            train(net, x, y, penalty=3, **kw)
        with pytest.raises(InputError, match=r"penalty: anchored key 'w' is not a parameter"):
            train(net, x, y, penalty=penalty, **kw)
        wrong = L2SP({"0.weight": np.ones((2, 2))}, strength=1.0)
        with pytest.raises(ShapeError, match=r"penalty: anchor '0.weight' has shape \(2, 2\)"):
            train(net, x, y, penalty=wrong, **kw)

    def test_repr(self):
        assert repr(L2SP({"w": np.ones(1)}, strength=0.5)) == "L2SP(keys=['w'], strength=0.5)"


def test_float32_network_keeps_float32_under_every_new_feature(rng):
    """Multipliers, the schedule and the penalty keep a float32 network in float32."""
    net = _net(rng, dtype=np.float32)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    penalty = L2SP(net.parameters(), strength=0.1)  # float32 anchor, float64 value sums
    opt = AdamW(0.01, lr_multipliers=discriminative_lr_multipliers(net))
    result = train(
        net, x, y, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=4, rng=0,
        lr_schedule=SlantedTriangular(0.01, 6), penalty=penalty,
    )  # fmt: skip
    assert all(v.dtype == np.float32 for v in net.parameters().values())
    assert all(np.isfinite(v) for v in result.step_losses)
    assert penalty.value(net.parameters()) > 0.0


# --- on_epoch_end: evaluation along training ----------------------------------------------


def _small_classifier(rng):
    return Network(
        [
            Linear(rng.standard_normal((6, 4)) / 2, np.zeros(6)),
            Tanh(),
            Linear(rng.standard_normal((3, 6)) / 2, np.zeros(3)),
        ]
    )


def test_on_epoch_end_sees_the_network_each_epoch_left(rng):
    # The hook runs after an epoch's last step: the parameters it sees are those of the same
    # run stopped after epoch + 1 epochs (same seed, so the same minibatch order).
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    start = _small_classifier(rng).parameters()
    seen = []

    def record(epoch, network):
        params = {k: v.copy() for k, v in network.parameters().items()}  # live arrays
        seen.append((epoch, params, evaluate(network, x, y, loss="cross_entropy")))

    net = _small_classifier(rng)
    net.load_parameters(start)
    result = train(
        net,
        x,
        y,
        loss="cross_entropy",
        optimizer=SGD(0.3),
        epochs=4,
        batch_size=6,
        rng=5,
        on_epoch_end=record,
    )
    assert [e for e, _, _ in seen] == [0, 1, 2, 3]
    for epochs in (1, 3):
        again = _small_classifier(rng)
        again.load_parameters(start)
        train(
            again,
            x,
            y,
            loss="cross_entropy",
            optimizer=SGD(0.3),
            epochs=epochs,
            batch_size=6,
            rng=5,
        )
        for k, v in again.parameters().items():
            np.testing.assert_array_equal(seen[epochs - 1][1][k], v)
    for k, v in net.parameters().items():  # the last call saw the final network
        np.testing.assert_array_equal(seen[-1][1][k], v)
    assert len(result.epoch_losses) == 4 and seen[0][2] != seen[-1][2]


def test_on_epoch_end_does_not_change_the_run(rng):
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    start = _small_classifier(rng).parameters()
    runs = []
    for hook in (None, lambda epoch, network: network.forward(x)):
        net = _small_classifier(rng)
        net.load_parameters(start)
        result = train(
            net,
            x,
            y,
            loss="cross_entropy",
            optimizer=AdamW(1e-2),
            epochs=3,
            batch_size=7,
            rng=2,
            on_epoch_end=hook,
        )
        runs.append((result.step_losses, net.parameters()))
    assert runs[0][0] == runs[1][0]
    for k in start:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def test_on_epoch_end_must_be_callable(rng):
    net = _small_classifier(rng)
    with pytest.raises(InputError, match="on_epoch_end"):
        train(
            net,
            rng.standard_normal((5, 4)),
            np.zeros(5, dtype=int),
            loss="cross_entropy",
            optimizer=SGD(0.1),
            epochs=1,
            on_epoch_end=3,
        )
