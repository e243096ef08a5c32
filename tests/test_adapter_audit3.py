"""Regression tests for the third adapter audit: silent float32 divergence, list gradients,
loss dtypes and edge values, the slanted triangular schedule when ``T * cut_frac < 1``, and
the input-dtype rule of the network.

Every expected number comes from a hand computation in float64 NumPy (or plain Python),
written out in the test; none is read back from the code under test.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from lowrank.adapter.nn import (
    SGD,
    AdamW,
    GradualUnfreezing,
    Linear,
    LossResult,
    Network,
    ReLU,
    SlantedTriangular,
    evaluate,
    mse_loss,
    softmax_cross_entropy,
    train,
)
from lowrank.errors import DTypeError, NonFiniteError

F32_MAX = float(np.finfo(np.float32).max)

# -- finding 1: a float32 run must not end with non-finite parameters ----------------------


def _f32_net(weight):
    return Network([Linear(np.array(weight, dtype=np.float32))])


def test_train_loss_beyond_the_network_dtype_is_divergence():
    # The audit's reproducer: full-batch SGD(1.0), no bias. Reference: the same gradient
    # descent in float64, W <- W - (2 / (n c)) (X W^T - Y)^T X with n = c = 2, whose MSE
    # first exceeds the float32 range at step 3 (0-based) while step 2's still fits.
    W0 = np.array([[1.0, 0.5], [0.3, -0.2]])
    x = np.array([[1e3, -2e3], [3e3, 1e3]])
    W = W0.copy()
    losses = []
    for _ in range(5):
        diff = x @ W.T
        losses.append(float(np.mean(diff**2)))
        W = W - (2.0 / diff.size) * diff.T @ x
    assert losses[2] < F32_MAX < losses[3]
    net = _f32_net(W0)
    with pytest.raises(
        NonFiniteError,
        match=r"training diverged at step 3 \(epoch 3\): the loss became 5\.4\d*e\+46, beyond "
        r"the float32 range",
    ):
        train(
            net, x.astype(np.float32), np.zeros((2, 2)), loss="mse", optimizer=SGD(1.0),
            epochs=6, shuffle=False,
        )  # fmt: skip
    # The failing step made no update: the parameters are those after step 2.
    assert all(np.isfinite(v).all() for v in net.parameters().values())


def test_train_overflowing_gradient_is_divergence_and_leaves_parameters():
    # Hand computation: W = 0.1, x = 1e20, y = 0: the prediction 1e19 and the loss 1e38 fit
    # in float32, but dL/dW = 2 * 1e19 * 1e20 = 2e39 does not. Before the fix the run
    # returned normally with W = -inf.
    pred, grad = 0.1 * 1e20, 2.0 * (0.1 * 1e20) * 1e20
    assert pred**2 < F32_MAX < grad
    net = _f32_net([[0.1]])
    with pytest.raises(
        NonFiniteError,
        match=r"training diverged at step 0 \(epoch 0\): the gradient of '0\.weight' must "
        r"contain only finite values; got 1 NaN or infinite entry out of 1",
    ):
        train(
            net, np.array([[1e20]], np.float32), np.zeros((1, 1)), loss="mse",
            optimizer=SGD(1e-3), epochs=1,
        )  # fmt: skip
    # Checked before the update: the parameter is untouched.
    np.testing.assert_array_equal(net.parameters()["0.weight"], np.float32(0.1))


def test_train_overflowing_update_is_divergence():
    # Hand computation: W = 1, x = 1e19, y = 0: loss 1e38 and gradient 2e38 fit in float32,
    # the update lr * g = 10 * 2e38 = 2e39 does not.
    assert F32_MAX > 1e38 and 2e38 < F32_MAX < 10 * 2e38
    net = _f32_net([[1.0]])
    with pytest.raises(
        NonFiniteError,
        match=r"training diverged at step 0 \(epoch 0\): the update made '0\.weight' non-finite",
    ):
        train(
            net, np.array([[1e19]], np.float32), np.zeros((1, 1)), loss="mse",
            optimizer=SGD(10.0), epochs=1,
        )  # fmt: skip


def test_train_checks_the_penalty_gradient_too():
    # The L2-SP gradient lam * (W - W0) is added to the loss gradient before the check:
    # W - W0 = 3e38 - (-3e38) = 6e38 overflows float32, while the penalty, summed in float64,
    # 0.5 * 1e-40 * 3.6e77 = 1.8e37, fits (x = 0: the MSE part is 0).
    from lowrank.adapter.nn import L2SP

    assert 0.5 * 1e-40 * (6e38) ** 2 < F32_MAX < 6e38
    net = _f32_net([[3e38]])
    penalty = L2SP({"0.weight": np.array([[-3e38]], np.float32)}, strength=1e-40)
    with pytest.raises(NonFiniteError, match=r"training diverged at step 0 .*'0\.weight'"):
        train(
            net, np.array([[0.0]], np.float32), np.zeros((1, 1)), loss="mse",
            optimizer=SGD(1e-3), epochs=1, penalty=penalty,
        )  # fmt: skip


def _net_with_inf():
    net = Network([Linear(np.array([[1.0, 2.0], [3.0, 4.0]])), ReLU(), Linear(np.ones((1, 2)))])
    net.parameters()["0.weight"][0, 1] = -np.inf  # ReLU would turn the -inf row into 0
    return net


def test_evaluate_and_forward_refuse_non_finite_parameters():
    x = np.array([[1.0, 1.0]])
    msg = r"parameter '0\.weight' must contain only finite values; got 1 NaN or infinite entry"
    with pytest.raises(NonFiniteError, match=msg):
        evaluate(_net_with_inf(), x, np.zeros((1, 1)), loss="mse")
    with pytest.raises(NonFiniteError, match=msg):
        _net_with_inf().forward(x)
    layer = Linear(np.ones((1, 2)))
    layer.parameters()["weight"][0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"parameter 'weight' must contain only finite"):
        layer.forward(x)


def test_train_refuses_non_finite_parameters_before_the_first_step():
    with pytest.raises(NonFiniteError, match=r"parameter '0\.weight' must contain only finite"):
        train(
            _net_with_inf(), np.ones((1, 2)), np.zeros((1, 1)), loss="mse",
            optimizer=SGD(0.1), epochs=1,
        )  # fmt: skip


def test_evaluate_refuses_an_overflowing_output():
    # Finite float32 parameters whose output overflows: 3e38 + 3e38 = inf in float32.
    net = _f32_net([[3e38, 3e38]])
    with pytest.raises(NonFiniteError, match="the loss is inf"):
        evaluate(net, np.ones((1, 2), np.float32), np.zeros((1, 1)), loss="mse")


@pytest.mark.parametrize("optimizer", [SGD(10.0), SGD(10.0, momentum=0.5), AdamW(1e39)])
def test_optimizer_step_reports_an_overflowing_update(optimizer):
    # SGD: 1 - 10 * 1e38 and AdamW: 1 - 1e39 * sign(g) are beyond float32 (AdamW's lr is a
    # Python float; its first step moves by lr).
    p = {"w": np.ones(2, np.float32)}
    with pytest.raises(NonFiniteError, match=r"the update made params\['w'\] non-finite"):
        optimizer.step(p, {"w": np.full(2, 1e38, np.float32)})


def test_adamw_second_moment_overflow_is_reported():
    # v += ((1 - beta2) g) g, torch's order: g = 1e21 fits float32 but 1e-3 g^2 = 1e39 does
    # not: v = inf, and m / sqrt(inf) = 0 would be a silent zero step on every later call
    # (PyTorch's float32 AdamW does exactly that). g = 1e20 (1e37) steps, as in torch; with
    # g * g formed first (1e40) it overflowed 31.6x sooner than torch.
    assert 1e20 < F32_MAX < 1e39
    p = {"w": np.ones(2, np.float32)}
    with pytest.raises(
        NonFiniteError, match=r"optimizer state 'exp_avg_sq' for params\['w'\] overflowed float32"
    ):
        AdamW(1e-3).step(p, {"w": np.full(2, 1e21, np.float32)})
    p = {"w": np.ones(2, np.float32)}
    AdamW(1e-3, weight_decay=0.0).step(p, {"w": np.full(2, 1e20, np.float32)})
    np.testing.assert_allclose(p["w"], 1 - 1e-3, rtol=1e-6)
    # In train() too: W = 1, x = 1e19, y = 0 gives g = 2e38 (fits), g * g does not.
    with pytest.raises(
        NonFiniteError,
        match=r"diverged at step 0 .*optimizer state 'exp_avg_sq' for '0\.weight' overflowed",
    ):
        train(
            _f32_net([[1.0]]), np.array([[1e19]], np.float32), np.zeros((1, 1)), loss="mse",
            optimizer=AdamW(1e-3), epochs=1,
        )  # fmt: skip
    # Just below, the step is the usual first AdamW step: lr * sign(g) (eps negligible).
    p = {"w": np.ones(2, np.float32)}
    AdamW(1e-3, weight_decay=0.0).step(p, {"w": np.full(2, 1e18, np.float32)})
    np.testing.assert_allclose(p["w"], 1 - 1e-3, rtol=1e-6)


def test_float32_training_that_converges_is_unchanged():
    # The checks must not change a healthy run: float32 SGD on y = x w, hand-computed steps.
    x = np.array([[1.0], [2.0]], np.float32)
    y = np.array([[2.0], [4.0]])
    net = _f32_net([[0.0]])
    r = train(net, x, y, loss="mse", optimizer=SGD(0.1), epochs=2, shuffle=False)
    w, losses = 0.0, []
    for _ in range(2):
        diff = np.array([1.0, 2.0]) * w - np.array([2.0, 4.0])
        losses.append(float(np.mean(diff**2)))
        w -= 0.1 * float(2 * np.mean(diff * np.array([1.0, 2.0])))
    np.testing.assert_allclose(r.step_losses, losses, rtol=1e-6)
    np.testing.assert_allclose(net.parameters()["0.weight"], [[w]], rtol=1e-6)


# -- finding 2: validated copies are the ones used ----------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        (SGD(0.1), 1 - 0.1),  # lr * g
        (SGD(0.1, momentum=0.9), 1 - 0.1),  # the first buffer is g
        (AdamW(0.1, weight_decay=0.0), 1 - 0.1 / (1 + 1e-8)),  # lr * m / (sqrt(v) + eps)
    ],
)
def test_optimizer_step_accepts_a_list_gradient(optimizer, expected):
    p = {"w": np.ones(2)}
    optimizer.step(p, {"w": [1.0, 1.0]})
    np.testing.assert_allclose(p["w"], [expected, expected], rtol=1e-15)


def test_slanted_triangular_stores_validated_python_numbers():
    # numpy scalars passed in are stored as Python numbers, so the rate is a float computed
    # in float64: by hand, T = 10, cut = 1, t = 0 gives lr_max / ratio = 0.1 / 4.
    s = SlantedTriangular(np.float32(0.1), np.int64(10), cut_frac=np.float32(0.1), ratio=4)
    assert type(s.lr_max) is float and type(s.total_steps) is int
    assert type(s.cut_frac) is float and type(s.ratio) is float
    assert type(s(0)) is float
    assert s(0) == float(np.float32(0.1)) / 4.0
    assert type(GradualUnfreezing(every=np.int64(2)).every) is int


# -- finding 3: loss dtypes and edge values ------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float16, np.float32),
        (ml_dtypes.bfloat16, np.float32),
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int64, np.float64),
    ],
)
def test_loss_gradients_are_in_the_compute_dtype(dtype, expected):
    z = np.zeros((2, 3), dtype=dtype)
    assert softmax_cross_entropy(z, [0, 1]).gradient.dtype == expected
    assert mse_loss(z, np.ones((2, 3), dtype=dtype)).gradient.dtype == expected


def test_loss_docs_state_the_gradient_dtype_rule():
    import lowrank.adapter.nn.losses as losses

    assert "keep the input dtype" not in (losses.__doc__ or "")
    assert "dtype of the prediction" not in (LossResult.__doc__ or "")
    for doc in (losses.__doc__ or "", LossResult.__doc__ or ""):
        assert "float16" in doc and "bfloat16" in doc and "float32" in doc


def test_cross_entropy_of_a_sure_prediction_is_positive_zero():
    # log-sum-exp of [1e4, 0] is 1e4 + log1p(e^-1e4) = 1e4 exactly in float64: the loss is 0.
    value = softmax_cross_entropy([[1e4, 0.0]], [0]).value
    assert value == 0.0 and math.copysign(1.0, value) == 1.0


def test_float32_cross_entropy_shifts_in_float64():
    z = np.array([[3e38, -3e38]], dtype=np.float32)
    # Reference in float64: log(e^a + e^b) - b = (a - b) + log1p(e^(b - a)) = a - b.
    a, b = (float(v) for v in z[0])
    expected = (a - b) + math.log1p(math.exp(b - a))
    r = softmax_cross_entropy(z, [1])
    assert expected > F32_MAX
    assert r.value == pytest.approx(expected, rel=1e-15)
    assert r.gradient.dtype == np.float32
    # softmax = [1, 0] to float32 precision; gradient = softmax - onehot(1).
    np.testing.assert_array_equal(r.gradient, np.array([[1.0, -1.0]], np.float32))


def test_float32_cross_entropy_matches_float64_reference():
    rng = np.random.default_rng(7)
    z = (rng.standard_normal((6, 4)) * 30).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    z64 = z.astype(np.float64)
    m = z64.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z64 - m).sum(axis=1))
    expected = float(np.mean(lse - z64[np.arange(6), labels]))
    soft = np.exp(z64 - lse[:, None])
    soft[np.arange(6), labels] -= 1
    r = softmax_cross_entropy(z, labels)
    # Value in float64 throughout: float64 rounding only. Gradient rounded once to float32.
    assert r.value == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(r.gradient, soft / 6, rtol=0, atol=4 * np.finfo(np.float32).eps)


# -- finding 4: the slanted triangular schedule -------------------------------------------


def _rate(p, lr_max, ratio):
    return lr_max * (1 + p * (ratio - 1)) / ratio


def test_slanted_triangular_short_run_decays_over_the_remaining_steps():
    # T = 5, cut_frac = 0.1: floor(0.5) = 0, so c = 1 and the decay runs over T - c = 4
    # steps: p = 0, 1, 3/4, 1/2, 1/4 for t = 0..4, then 0 from t = T = 5 on.
    s = SlantedTriangular(0.1, 5, cut_frac=0.1, ratio=32.0)
    expected = [_rate(p, 0.1, 32.0) for p in (0.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0)]
    assert [s(t) for t in range(7)] == pytest.approx(expected, rel=1e-15)
    assert s(5) == pytest.approx(0.1 / 32, rel=1e-15)


def test_slanted_triangular_single_step():
    # T = 1: the only step is the start of the warm-up; past the end the rate stays low.
    s = SlantedTriangular(0.2, 1, cut_frac=0.5, ratio=4.0)
    assert [s(t) for t in range(3)] == pytest.approx([0.05, 0.05, 0.05], rel=1e-15)


@pytest.mark.parametrize(
    ("T", "cut_frac", "ratio"), [(20, 0.1, 10.0), (25, 0.1, 32.0), (40, 0.2, 8.0), (7, 0.3, 5.0)]
)
def test_slanted_triangular_is_equation_3_when_cut_is_at_least_one(T, cut_frac, ratio):
    # Eq. (3) of Howard & Ruder written out, with the documented clamp p >= 0.
    cut = math.floor(T * cut_frac)
    assert cut >= 1
    expected = []
    for t in range(T + 3):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        expected.append(_rate(max(p, 0.0), 0.3, ratio))
    s = SlantedTriangular(0.3, T, cut_frac=cut_frac, ratio=ratio)
    assert [s(t) for t in range(T + 3)] == pytest.approx(expected, rel=1e-14)


# -- finding 5: the input dtype rule --------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_input_is_converted_exactly(dtype):
    net = Network([Linear(np.eye(2))])
    x = np.array([[1.5, -0.25]], dtype=dtype)
    out = net.check_input(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1.5, -0.25]])


def test_other_float_precision_is_refused():
    with pytest.raises(DTypeError, match="x has dtype float32 but the layer computes in float64"):
        Network([Linear(np.eye(2))]).check_input(np.ones((1, 2), np.float32))
    with pytest.raises(DTypeError, match="x has dtype float64 but the layer computes in float32"):
        Network([Linear(np.eye(2, dtype=np.float32))]).check_input(np.ones((1, 2)))


def test_input_docs_state_the_half_precision_rule():
    from lowrank.adapter.nn import Layer

    for doc in (Network.check_input.__doc__, Layer.forward.__doc__, train.__doc__):
        text = " ".join((doc or "").split())
        assert "must already be in it" not in text
        assert "bfloat16" in text


def test_merge_that_overflows_leaves_the_weight_unchanged():
    # float32, A = B = 1e20: s B A = 1e40 > F32_MAX. Before, W became inf and unmerge gave
    # NaN; now nothing is merged (PEFT's safe_merge refuses likewise).
    from lowrank.adapter import LoRALinear
    from lowrank.errors import NonFiniteError as NFE

    W = np.ones((1, 3), np.float32)
    layer = LoRALinear.from_factors(
        W, np.full((1, 3), 1e20, np.float32), np.full((1, 1), 1e20, np.float32), alpha=1.0
    )
    with pytest.raises(NFE, match=r"merging 'default' would make base_layer.weight non-finite"):
        layer.merge()
    np.testing.assert_array_equal(layer.parameters()["base_layer.weight"], W)
    assert layer.merged_adapters == ()


def test_load_parameters_checks_values_in_the_layers_dtype():
    # 1e39 is finite in float64 but inf in a float32 layer: refused, and nothing loaded.
    net = _f32_net([[1.0, 2.0]])
    with pytest.raises(NonFiniteError, match=r"weight \(in float32\) must contain only finite"):
        net.load_parameters({"0.weight": np.array([[1e39, 0.0]])})
    np.testing.assert_array_equal(net.parameters()["0.weight"], [[1.0, 2.0]])


def test_train_refuses_misspelt_lr_multipliers_and_another_networks_state():
    from lowrank.errors import InputError, ShapeError

    x, y = np.ones((2, 2), np.float32), np.zeros((2, 1))
    net = _f32_net([[1.0, 2.0]])
    with pytest.raises(InputError, match=r"lr_multipliers has keys .*\['0\.wieght'\]"):
        train(
            net, x, y, loss="mse", optimizer=SGD(0.1, lr_multipliers={"0.wieght": 1e-9}), epochs=1
        )
    # An AdamW used on a 1 x 2 layer, then on a 1 x 3 one of the same name: a clear error
    # (was a raw NumPy broadcasting error inside the step).
    opt = AdamW(1e-3)
    train(net, x, y, loss="mse", optimizer=opt, epochs=1)
    other = _f32_net([[1.0, 2.0, 3.0]])
    with pytest.raises(ShapeError, match="use a new optimizer for a new network"):
        train(other, np.ones((2, 3), np.float32), y, loss="mse", optimizer=opt, epochs=1)
