"""Every error the adapter package raises on purpose, with its message."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lowrank.adapter import (
    LoRALinear,
    dropout_mask,
    lora_backward,
    lora_delta_weight,
    lora_forward,
)
from lowrank.adapter.nn import (
    GELU,
    SGD,
    AdamW,
    GradualUnfreezing,
    Linear,
    Network,
    ReLU,
    Tanh,
    evaluate,
    mse_loss,
    softmax_cross_entropy,
    train,
)
from lowrank.errors import DTypeError, InputError, NonFiniteError, RankError, ShapeError, StateError
from lowrank.lora import lora_scaling

W = np.ones((4, 3))
A = np.ones((2, 3))
B = np.ones((4, 2))
X = np.ones((5, 3))


def lora():
    return LoRALinear.from_factors(W, A, B, alpha=2.0, bias=np.zeros(4))


def test_errors_are_value_and_type_errors_too():
    assert issubclass(ShapeError, ValueError)
    assert issubclass(DTypeError, TypeError)
    assert not issubclass(RankError, DTypeError)


# -- layer construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: LoRALinear(np.ones(3)), ShapeError, "weight must be a 2-D matrix; got ndim=1"),
        (lambda: LoRALinear(np.ones((0, 3))), ShapeError, "weight must not be empty"),
        (lambda: Linear(np.ones((2, 2), complex)), DTypeError, "weight must have a real dtype"),
        (lambda: Linear(np.ones((2, 2), bool)), DTypeError, "weight must have a numeric dtype"),
        (lambda: Linear([[1.0, np.nan]]), NonFiniteError, "weight must contain only finite values"),
        (lambda: Linear([[1.0], [2.0, 3.0]]), InputError, "weight could not be read as an array"),
        (
            lambda: Linear(W, np.ones(5)),
            ShapeError,
            re.escape("bias must have shape (4,) to match weight's out_features=4; got (5,)"),
        ),
        (lambda: Linear(W, np.ones((4, 1))), ShapeError, "bias must be 1-D"),
        (lambda: Linear(W, np.ones(4, complex)), DTypeError, "bias must have a real dtype"),
        (
            lambda: LoRALinear.from_factors(W, np.ones((2, 4)), B, alpha=1.0),
            ShapeError,
            re.escape(
                "lora_A must have shape (r, 3) with r >= 1 to match weight's in_features=3; "
                "got (2, 4)"
            ),
        ),
        (
            lambda: LoRALinear.from_factors(W, np.ones((0, 3)), np.ones((4, 0)), alpha=1.0),
            ShapeError,
            re.escape("lora_A must have shape (r, 3) with r >= 1"),
        ),
        (
            lambda: LoRALinear.from_factors(W, A, np.ones((4, 3)), alpha=1.0),
            ShapeError,
            re.escape(
                "lora_B must have shape (4, 2) to match weight's out_features=4 and lora_A's r=2; "
                "got (4, 3)"
            ),
        ),
        (
            lambda: LoRALinear.from_factors(W, A.astype(complex), B, alpha=1.0),
            DTypeError,
            "lora_A must have a real dtype",
        ),
        (
            lambda: LoRALinear.from_factors(W, A, B.astype(complex), alpha=1.0),
            DTypeError,
            "lora_B must have a real dtype",
        ),
        (
            lambda: LoRALinear.from_factors(W, A, B * np.inf, alpha=1.0),
            NonFiniteError,
            "lora_B must contain only finite values",
        ),
        (
            lambda: LoRALinear.from_factors(W, A, B, alpha=0.0),
            InputError,
            "alpha must be finite and > 0; got 0.0",
        ),
        (
            lambda: LoRALinear.from_factors(W, A, B, alpha=1.0, dropout=1.0),
            InputError,
            re.escape("dropout must lie in [0, 1); got 1.0"),
        ),
        (
            lambda: LoRALinear.from_factors(W, A, B, alpha=1.0, adapter_name="a.b"),
            InputError,
            re.escape("adapter_name (an adapter name) must be a non-empty string without '.'"),
        ),
        (
            lambda: LoRALinear.from_factors(W, A, B, alpha=1.0, adapter_name=""),
            InputError,
            re.escape("adapter_name (an adapter name) must be a non-empty string"),
        ),
        (lambda: GELU(approximate="fast"), InputError, "approximate must be one of 'none', 'tanh'"),
    ],
)
def test_construction_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_duplicate_adapter_name():
    layer = lora()
    with pytest.raises(InputError, match="adapter name must be new; 'default' already exists"):
        layer.add_adapter("default", A, B, alpha=1.0)


# -- forward and backward -----------------------------------------------------------------


def test_input_feature_mismatch_message():
    layer = LoRALinear(np.ones((8, 64)))
    with pytest.raises(
        ShapeError,
        match=re.escape(
            "x must have shape (..., 64) to match weight's in_features=64; got (3, 65)"
        ),
    ):
        layer.forward(np.ones((3, 65)))


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.float64(1.0), ShapeError, re.escape("x must have shape (..., 3)")),
        (X.astype(np.float32), DTypeError, "x has dtype float32 but the layer computes in float64"),
        (X.astype(complex), DTypeError, "x must have a real dtype; got complex128"),
        (np.full((5, 3), np.nan), NonFiniteError, "x must contain only finite values; got 15 NaN"),
        ([[1.0], [1.0, 2.0]], InputError, "x could not be read as an array"),
    ],
)
def test_forward_input_errors(x, error, match):
    with pytest.raises(error, match=match):
        lora().forward(x)


def test_backward_errors():
    layer = lora()
    with pytest.raises(StateError, match=re.escape("backward() needs a preceding forward()")):
        layer.backward(np.ones((5, 4)))
    layer.forward(X)
    with pytest.raises(
        ShapeError,
        match=re.escape(
            "grad_output must have the shape of the last forward output, (5, 4); got (5, 3)"
        ),
    ):
        layer.backward(np.ones((5, 3)))
    with pytest.raises(NonFiniteError, match="grad_output must contain only finite values"):
        layer.backward(np.full((5, 4), np.inf))
    with pytest.raises(StateError, match=re.escape("backward() needs a preceding forward()")):
        ReLU().backward(np.ones(3))


def test_parameter_name_errors():
    layer = lora()
    with pytest.raises(
        InputError, match=re.escape("parameter name must be one of 'base_layer.weight'")
    ):
        layer.freeze(["weight"])
    with pytest.raises(InputError, match="parameter name must be one of"):
        layer.requires_grad("lora_A.other.weight")
    with pytest.raises(InputError, match="parameter name must be one of none; got 'x'"):
        Tanh().unfreeze(["x"])


# -- adapters and merging -----------------------------------------------------------------


def test_adapter_selection_errors():
    layer = lora()
    with pytest.raises(InputError, match="adapter name must be one of 'default'; got 'other'"):
        layer.set_active_adapters("other")
    with pytest.raises(
        InputError, match=re.escape("adapter names must not repeat; got ['default', 'default']")
    ):
        layer.set_active_adapters(["default", "default"])
    with pytest.raises(InputError, match="adapter name must be one of 'default'; got 'x'"):
        layer.adapter_config("x")
    with pytest.raises(InputError, match="adapter name must be one of"):
        layer.delta_weight("x")
    with pytest.raises(InputError, match="adapter name must be one of none; got 'x'"):
        LoRALinear(W).merge("x")


def test_merge_errors():
    layer = lora()
    layer.merge()
    with pytest.raises(
        StateError, match=re.escape("adapter 'default' is already merged into base_layer.weight")
    ):
        layer.merge()
    with pytest.raises(StateError, match="adapter 'default' is already merged"):
        layer.merge(["default"])
    with pytest.raises(
        StateError, match=re.escape("cannot train adapters ['default'] while they are merged")
    ):
        layer.forward(X, training=True, rng=0)
    layer.freeze()
    layer.forward(X, training=True, rng=0)  # frozen merged adapters are fine
    layer.unmerge()
    with pytest.raises(StateError, match="unmerge needs a merged adapter; no adapter is merged"):
        layer.unmerge()
    layer.set_active_adapters([])
    with pytest.raises(InputError, match="merge needs at least one adapter; none is active"):
        layer.merge()


# -- functional API -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: lora_scaling(-1.0, 2), InputError, "alpha must be finite and > 0; got -1.0"),
        (lambda: lora_scaling(1.0, 0), InputError, "rank must be an integer >= 1; got 0"),
        (lambda: lora_scaling(1.0, 2.5), InputError, "rank must be an integer >= 1; got 2.5"),
        (lambda: dropout_mask(3, 1.5), InputError, re.escape("p must lie in [0, 1); got 1.5")),
        (lambda: dropout_mask((2, -1), 0.5), InputError, "shape entry must be >= 0; got -1"),
        (
            lambda: dropout_mask(3, 0.5, dtype=np.complex64),
            DTypeError,
            "dtype must have a real dtype",
        ),
        (lambda: dropout_mask(3, 0.5, rng="seed"), InputError, "rng must be None, an int seed"),
        (
            lambda: lora_forward(X, W, A, B, scaling=float("inf")),
            InputError,
            "scaling must be finite and > 0; got inf",
        ),
        (
            lambda: lora_forward(X, W, A, B, scaling=1.0, dropout_mask=np.ones((5, 4))),
            ShapeError,
            re.escape("dropout_mask must have the shape of x, (5, 3); got (5, 4)"),
        ),
        (
            lambda: lora_forward(X, W, A, B, scaling=1.0, dropout_mask=-np.ones((5, 3))),
            InputError,
            "dropout_mask must be non-negative",
        ),
        (
            lambda: lora_forward(X, W, A, B, scaling=1.0, bias=np.ones(3)),
            ShapeError,
            re.escape("bias must have shape (4,)"),
        ),
        (
            lambda: lora_forward(np.ones((5, 2)), W, A, B, scaling=1.0),
            ShapeError,
            re.escape("x must have shape (..., 3) to match weight's in_features=3; got (5, 2)"),
        ),
        (
            lambda: lora_backward(np.ones((5, 3)), X, W, A, B, scaling=1.0),
            ShapeError,
            re.escape(
                "grad_output must have shape (5, 4) (x's leading shape and weight's "
                "out_features=4); got (5, 3)"
            ),
        ),
        (
            lambda: lora_delta_weight(np.ones(3), B, scaling=1.0),
            ShapeError,
            re.escape("lora_A and lora_B must be 2-D; got shapes (3,) and (4, 2)"),
        ),
        (
            lambda: lora_delta_weight(A, np.ones((4, 3)), scaling=1.0),
            ShapeError,
            re.escape("lora_B must have shape (4, 2)"),
        ),
        (
            lambda: lora_delta_weight(A.astype(complex), B, scaling=1.0),
            DTypeError,
            "lora_A must have a real dtype",
        ),
    ],
)
def test_functional_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


_SHARED_ACT = Tanh()

# -- network ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        ([], InputError, "layers must contain at least one layer"),
        ([Linear(W), "relu"], InputError, r"layers\[1\] must be a lowrank.adapter.nn Layer; got"),
        ([ReLU(), Tanh()], InputError, "layers must include a Linear or LoRALinear layer"),
        (
            [Linear(W), _SHARED_ACT, Linear(np.ones((4, 4))), _SHARED_ACT],
            InputError,
            re.escape("layers[3] is the same object as layers[1]; use a separate layer instance"),
        ),
        (
            [Linear(W), ReLU(), Linear(np.ones((2, 5)))],
            ShapeError,
            re.escape("layers[2] has in_features=5 but layers[0] before it has out_features=4"),
        ),
        (
            [Linear(W), Linear(np.ones((2, 4), np.float32))],
            DTypeError,
            re.escape("layers must share one dtype; got layers[0]: float64, layers[1]: float32"),
        ),
    ],
)
def test_network_construction_errors(layers, error, match):
    with pytest.raises(error, match=match):
        Network(layers)


def test_network_forward_backward_errors():
    net = Network([Linear(W), Tanh()])
    with pytest.raises(
        ShapeError,
        match=re.escape(
            "x must have shape (..., 3) to match the network's in_features=3; got (5, 4)"
        ),
    ):
        net.forward(np.ones((5, 4)))
    with pytest.raises(StateError, match=re.escape("backward() needs a preceding forward()")):
        net.backward(np.ones((5, 4)))
    net.forward(X)
    with pytest.raises(
        ShapeError,
        match=re.escape("grad_output must have the shape of the last forward output, (5, 4)"),
    ):
        net.backward(np.ones((4, 4)))


# -- losses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: mse_loss(np.ones((0, 2)), np.ones((0, 2))),
            ShapeError,
            "prediction must not be empty",
        ),
        (
            lambda: mse_loss(np.ones((2, 2)), np.ones((2, 3))),
            ShapeError,
            re.escape("target must have the prediction's shape (2, 2); got (2, 3)"),
        ),
        (
            lambda: mse_loss([[np.nan]], [[0.0]]),
            NonFiniteError,
            "prediction must contain only finite",
        ),
        (
            lambda: softmax_cross_entropy(np.ones(3), [0]),
            ShapeError,
            re.escape("logits must be a non-empty 2-D array (n, classes); got shape (3,)"),
        ),
        (
            lambda: softmax_cross_entropy(np.ones((2, 3)), [0.0, 1.0]),
            DTypeError,
            "labels must be integers",
        ),
        (
            lambda: softmax_cross_entropy(np.ones((2, 3)), [0, 1, 2]),
            ShapeError,
            re.escape("labels must have shape (2,), one per row of logits; got (3,)"),
        ),
        (
            lambda: softmax_cross_entropy(np.ones((2, 3)), [0, 3]),
            InputError,
            re.escape("labels must lie in [0, 3) for 3 classes; got values in [0, 3]"),
        ),
    ],
)
def test_loss_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- optimisers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SGD(0.0), "lr must be finite and > 0; got 0.0"),
        (lambda: SGD(0.1, momentum=1.0), re.escape("momentum must lie in [0, 1); got 1.0")),
        (lambda: AdamW(betas=(0.9,)), re.escape("betas must be a pair (beta1, beta2); got (0.9,)")),
        (lambda: AdamW(betas=(1.0, 0.9)), re.escape("betas[0] must lie in [0, 1); got 1.0")),
        (lambda: AdamW(betas=(0.9, -0.1)), re.escape("betas[1] must lie in [0, 1); got -0.1")),
        (lambda: AdamW(eps=0.0), "eps must be finite and > 0; got 0.0"),
        (lambda: AdamW(weight_decay=-1.0), "weight_decay must be finite and >= 0; got -1.0"),
    ],
)
def test_optimizer_hyperparameter_errors(build, match):
    with pytest.raises(InputError, match=match):
        build()


def test_optimizer_step_errors():
    opt = AdamW()
    p = {"w": np.ones(3)}
    with pytest.raises(InputError, match="grads has key 'v', which is not in params"):
        opt.step(p, {"v": np.ones(3)})
    with pytest.raises(
        DTypeError, match=re.escape("params['w'] must be a float ndarray; got list")
    ):
        opt.step({"w": [1.0]}, {"w": np.ones(1)})  # type: ignore[dict-item]
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(InputError, match=re.escape("params['w'] must be writable")):
        opt.step({"w": frozen}, {"w": np.ones(3)})
    with pytest.raises(
        ShapeError, match=re.escape("grads['w'] must have the parameter's shape (3,); got (2,)")
    ):
        opt.step(p, {"w": np.ones(2)})
    with pytest.raises(
        DTypeError,
        match=re.escape("grads['w'] must have the parameter's dtype float64; got float32"),
    ):
        opt.step(p, {"w": np.ones(3, np.float32)})
    with pytest.raises(
        NonFiniteError, match=re.escape("grads['w'] must contain only finite values")
    ):
        opt.step(p, {"w": np.array([1.0, np.nan, 1.0])})
    opt.step(p, {"w": np.ones(3)})
    with pytest.raises(
        ShapeError, match=re.escape("optimizer state 'exp_avg' for 'w' has shape (3,)")
    ):
        opt.step({"w": np.ones(4)}, {"w": np.ones(4)})


# -- training -----------------------------------------------------------------------------


def _net():
    return Network([Linear(W), Tanh(), Linear(np.ones((2, 4)))])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "hinge"}, InputError, "loss must be one of 'mse', 'cross_entropy'; got 'hinge'"),
        (
            {"x": np.ones(3)},
            ShapeError,
            re.escape("x must have shape (n, 3) with n >= 1; got (3,)"),
        ),
        ({"x": np.ones((0, 3)), "y": np.ones((0, 2))}, ShapeError, "x must have shape"),
        (
            {"y": np.ones((5, 3))},
            ShapeError,
            re.escape("y must have shape (5, 2) (one target row per row of x) for the mse loss"),
        ),
        ({"y": np.full((5, 2), np.inf)}, NonFiniteError, "y must contain only finite values"),
        (
            {"loss": "cross_entropy", "y": np.array([0, 1, 2, 0, 1])},
            InputError,
            re.escape("labels must lie in [0, 2)"),
        ),
        ({"epochs": 0}, InputError, "epochs must be >= 1; got 0"),
        ({"batch_size": 6}, InputError, "batch_size must satisfy 1 <= batch_size <= 5; got 6"),
        ({"rng": -1}, InputError, "rng seed must be a non-negative integer; got -1"),
    ],
)
def test_train_argument_errors(kwargs, error, match):
    args = {"x": X, "y": np.ones((5, 2)), "loss": "mse", "epochs": 1}
    args.update(kwargs)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(error, match=match):
        train(_net(), x, y, optimizer=SGD(0.1), **args)


def test_evaluate_validates_like_train():
    with pytest.raises(ShapeError, match=re.escape("y must have shape (5, 2)")):
        evaluate(_net(), X, np.ones((5, 1)), loss="mse")


def test_train_with_nothing_trainable():
    net = _net()
    for layer in net.layers:
        layer.freeze()
    with pytest.raises(InputError, match="network has no trainable parameters at epoch 0"):
        train(net, X, np.ones((5, 2)), loss="mse", optimizer=SGD(0.1), epochs=1)


def test_divergence_is_reported_not_propagated():
    rng = np.random.default_rng(0)
    net = Network([Linear(rng.standard_normal((2, 3)))])
    x = rng.standard_normal((8, 3)) * 10
    with pytest.raises(NonFiniteError, match=r"training diverged at step \d+ \(epoch \d+\): "):
        train(net, x, rng.standard_normal((8, 2)), loss="mse", optimizer=SGD(10.0), epochs=100)


def test_gradual_unfreezing_argument():
    with pytest.raises(InputError, match="every must be >= 1; got 0"):
        GradualUnfreezing(every=0)


@pytest.mark.parametrize(
    "layer", [Linear(W), LoRALinear.from_factors(W, A, B, alpha=1.0), ReLU(), Tanh(), GELU()]
)
def test_private_backward_before_forward_is_a_programming_error(layer):
    # The public backward() checks this and raises InputError (tested above); the private
    # body, called by Network only after a forward pass, still refuses loudly.
    with pytest.raises(RuntimeError, match="backward before forward"):
        layer._backward(np.ones((5, 4)), need_input_grad=True)


def test_load_parameters_errors():
    layer = lora()
    with pytest.raises(InputError, match="parameter name must be one of"):
        layer.load_parameters({"weight": W})
    with pytest.raises(
        ShapeError, match=re.escape("base_layer.weight must have shape (4, 3); got (3, 4)")
    ):
        layer.load_parameters({"base_layer.weight": W.T})
    with pytest.raises(
        NonFiniteError, match=re.escape("lora_A.default.weight must contain only finite")
    ):
        layer.load_parameters({"lora_A.default.weight": A * np.nan})
    with pytest.raises(DTypeError, match=re.escape("lora_B.default.weight must have a real dtype")):
        layer.load_parameters({"lora_B.default.weight": B.astype(complex)})
    layer.merge()
    with pytest.raises(
        StateError, match=re.escape("cannot load parameters while adapters ['default'] are merged")
    ):
        layer.load_parameters({"lora_A.default.weight": A})
    with pytest.raises(InputError, match=re.escape("parameter key must be one of '0.weight'")):
        Network([Linear(W)]).load_parameters({"1.weight": W})
