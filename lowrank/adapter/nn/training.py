r"""Minibatch training of a :class:`~lowrank.adapter.nn.network.Network`, and schedules.

One step draws a minibatch, runs the network in training mode, evaluates the loss, back-
propagates and lets the optimiser update the trainable parameters. Shuffling and dropout draw
from one generator normalised once from ``rng``, so a seed fixes the whole run.

Fine-tuning regimes are set up with freeze flags before (or, through a schedule, during)
training:

* full fine-tuning: every layer trainable;
* head only: :meth:`~lowrank.adapter.nn.base.Layer.freeze` every layer but the last;
* frozen body + new head (task-incremental learning):
  :meth:`~lowrank.adapter.nn.Network.with_head` shares the body, freeze it;
* gradual unfreezing (Howard & Ruder 2018): :class:`GradualUnfreezing` as ``schedule``, with
  discriminative learning rates (:func:`discriminative_lr_multipliers` as the optimiser's
  ``lr_multipliers``) and the slanted triangular schedule (:class:`SlantedTriangular` as
  ``lr_schedule``);
* L2-SP: :class:`~lowrank.adapter.nn.L2SP` as ``penalty``;
* LoRA / PiSSA: :class:`~lowrank.adapter.lora_linear.LoRALinear` layers, whose base is frozen
  and whose factors train.

References
----------
.. [1] J. Howard and S. Ruder, "Universal Language Model Fine-tuning for Text Classification",
   ACL 2018, arXiv:1801.06146 (gradual unfreezing, discriminative fine-tuning, slanted
   triangular learning rates).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

import numpy as np

from lowrank._typing import Array, ArrayLike, RNGLike
from lowrank._validation import (
    check_bool,
    check_callable,
    check_choice,
    check_fraction,
    check_instance,
    check_int,
    check_positive_float,
    normalize_rng,
)
from lowrank.adapter._checks import as_float_array, check_finite
from lowrank.adapter.nn.losses import (
    LossName,
    LossResult,
    _check_labels,
    _cross_entropy,
    _mse,
)
from lowrank.adapter.nn.network import Network
from lowrank.adapter.nn.optim import Optimizer
from lowrank.adapter.nn.regularizers import L2SP
from lowrank.errors import InputError, NonFiniteError, ShapeError

__all__ = [
    "EpochCallback",
    "GradualUnfreezing",
    "LRSchedule",
    "Schedule",
    "SlantedTriangular",
    "TrainResult",
    "discriminative_lr_multipliers",
    "evaluate",
    "train",
]

Schedule = Callable[[int, Network], None]
"""Called as ``schedule(epoch, network)`` at the start of each epoch (0-based)."""

LRSchedule = Callable[[int], float]
"""Called as ``lr_schedule(step)`` before each step (0-based); returns the base learning rate."""

EpochCallback = Callable[[int, Network], None]
"""Called as ``on_epoch_end(epoch, network)`` after the last step of each epoch (0-based)."""


@dataclass(frozen=True)
class SlantedTriangular:
    r"""ULMFiT's slanted triangular learning rate: a short linear warm-up, a long linear decay.

    For step :math:`t = 0, 1, \ldots` of :math:`T` and
    :math:`c = \max(1, \lfloor T\,\mathrm{cut\_frac} \rfloor)`,

    .. math::

        p_t = \begin{cases} t / c & t < c \\
              1 - \dfrac{t - c}{d} & t \ge c \end{cases},
        \qquad
        \eta_t = \eta_{\max}\,\frac{1 + \max(p_t, 0)\,(\mathrm{ratio} - 1)}{\mathrm{ratio}},

    with :math:`d = c\,(1/\mathrm{cut\_frac} - 1)`: equation (3) of Howard & Ruder (2018)
    whenever :math:`\lfloor T\,\mathrm{cut\_frac} \rfloor \ge 1`, exactly up to step
    :math:`c + d`, with :math:`p_t` held at 0 after it (where eq. (3) goes on falling below
    the floor, to negative rates when :math:`T\,\mathrm{cut\_frac}` is not an integer,
    e.g. :math:`T = 25`, cut_frac 0.1). The rate climbs
    from :math:`\eta_{\max}/\mathrm{ratio}` to :math:`\eta_{\max}` at step :math:`c`, then
    falls back to :math:`\eta_{\max}/\mathrm{ratio}` at step :math:`c + d =
    c/\mathrm{cut\_frac} \le T` (:math:`= T` when :math:`T\,\mathrm{cut\_frac}` is an
    integer; as in the paper, the last step :math:`T - 1` is then one decay step above the
    floor) and stays there past the end.

    A run too short for eq. (3), :math:`T\,\mathrm{cut\_frac} < 1`, still peaks at
    :math:`c = 1`, where eq. (3)'s :math:`d` would stretch the decay past the end (with
    :math:`T = 5`, ``cut_frac = 0.1`` it would end at 2/3 of the peak). There the decay runs
    over the remaining steps instead, :math:`d = T - c`, so that the floor is reached at
    :math:`t = T` as for an integer :math:`T\,\mathrm{cut\_frac}` (and ``torch``'s chain of
    two ``LinearLR`` schedules of ``c`` and ``T - c`` steps); :math:`T = 1` stays at the
    floor.

    Parameters
    ----------
    lr_max : float
        :math:`\eta_{\max} > 0`.
    total_steps : int
        :math:`T \ge 1`, the number of optimiser steps of the run (``epochs`` times the
        batches per epoch).
    cut_frac : float, default 0.1
        Fraction of the steps spent increasing the rate, in ``(0, 1)``.
    ratio : float, default 32.0
        How much smaller the lowest rate is than the highest, >= 1.

    Raises
    ------
    InputError
        A parameter outside its range.

    References
    ----------
    .. [1] J. Howard and S. Ruder, "Universal Language Model Fine-tuning for Text
       Classification", ACL 2018, arXiv:1801.06146, section 3.2.

    Examples
    --------
    >>> schedule = SlantedTriangular(0.1, 20, cut_frac=0.1, ratio=10.0)
    >>> [round(schedule(t), 4) for t in (0, 1, 2, 11, 19, 20)]
    [0.01, 0.055, 0.1, 0.055, 0.015, 0.01]
    >>> short = SlantedTriangular(0.1, 5, cut_frac=0.1, ratio=10.0)  # 5 * 0.1 < 1
    >>> short.cut, short.decay_steps, [round(short(t), 4) for t in range(6)]
    (1, 4.0, [0.01, 0.1, 0.0775, 0.055, 0.0325, 0.01])
    """

    lr_max: float
    total_steps: int
    _: KW_ONLY
    cut_frac: float = 0.1
    ratio: float = 32.0

    def __post_init__(self) -> None:
        # Store the validated Python numbers (a numpy float32 would make every rate float32).
        ratio = check_positive_float(self.ratio, name="ratio")
        if ratio < 1.0:
            raise InputError(f"ratio must be >= 1; got {self.ratio!r}")
        checked = {
            "lr_max": check_positive_float(self.lr_max, name="lr_max"),
            "total_steps": check_int(self.total_steps, name="total_steps", minimum=1),
            "cut_frac": check_fraction(
                self.cut_frac, name="cut_frac", low=0.0, high=1.0, high_inclusive=False
            ),
            "ratio": ratio,
        }
        for field, value in checked.items():
            object.__setattr__(self, field, value)

    @property
    def cut(self) -> int:
        """int: :math:`c`, the step of the highest rate."""
        return max(1, math.floor(self.total_steps * self.cut_frac))

    @property
    def decay_steps(self) -> float:
        """float: :math:`d`, the steps over which the rate falls from its peak to its floor."""
        if math.floor(self.total_steps * self.cut_frac) < 1:
            return float(self.total_steps - self.cut)
        return self.cut * (1.0 / self.cut_frac - 1.0)

    def __call__(self, step: int) -> float:
        t = check_int(step, name="step", minimum=0)
        cut = self.cut
        if t < cut:
            p = t / cut
        else:
            decay = self.decay_steps
            p = max(0.0, 1.0 - (t - cut) / decay) if decay > 0 else 0.0
        return self.lr_max * (1.0 + p * (self.ratio - 1.0)) / self.ratio


def discriminative_lr_multipliers(network: Network, *, factor: float = 2.6) -> dict[str, float]:
    r"""ULMFiT's discriminative fine-tuning: each layer's rate is the one above's / ``factor``.

    The top layer with parameters gets multiplier 1, the one below :math:`1/\mathrm{factor}`,
    the next :math:`1/\mathrm{factor}^2`, and so on (activations have no parameters and do not
    count). Pass the result as the optimiser's ``lr_multipliers``.

    Parameters
    ----------
    network : Network
    factor : float, default 2.6
        The ratio between consecutive layers' rates, finite and > 0 (Howard & Ruder's 2.6;
        1 gives one rate for all).

    Returns
    -------
    dict of str to float
        By every parameter key of the network (frozen or not), ``factor ** -d`` for a
        parameter of the layer ``d`` parametric layers below the top.

    Raises
    ------
    InputError
        ``network`` is not a :class:`~lowrank.adapter.nn.Network`, or ``factor`` not finite
        and > 0.

    References
    ----------
    .. [1] J. Howard and S. Ruder, "Universal Language Model Fine-tuning for Text
       Classification", ACL 2018, arXiv:1801.06146, section 3.2.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import SGD, Linear, Network, Tanh
    >>> net = Network([Linear(np.ones((3, 2))), Tanh(), Linear(np.ones((1, 3)), np.zeros(1))])
    >>> rates = discriminative_lr_multipliers(net, factor=2.0)
    >>> rates
    {'0.weight': 0.5, '2.weight': 1.0, '2.bias': 1.0}
    >>> optimizer = SGD(0.1, lr_multipliers=rates)
    """
    check_instance(network, Network, name="network", what="a lowrank.adapter.nn Network")
    f = check_positive_float(factor, name="factor")
    out: dict[str, float] = {}
    indices = network.parametric_indices()
    for i in indices:
        depth = len(indices) - 1 - indices.index(i)
        for name in network.layers[i].parameters():
            out[f"{i}.{name}"] = f ** (-depth)
    return out


@dataclass(frozen=True)
class GradualUnfreezing:
    """Unfreeze layers from the top: in epoch ``e`` the top ``1 + e // every`` layers with
    parameters are trainable and the others frozen.

    Unfreezing uses each layer's default set (:meth:`~lowrank.adapter.nn.base.Layer.unfreeze`):
    all parameters of a :class:`~lowrank.adapter.nn.dense.Linear`, the adapter factors of a
    :class:`~lowrank.adapter.lora_linear.LoRALinear`.

    Parameters
    ----------
    every : int, default 1
        Epochs between unfreezing steps, >= 1.

    Raises
    ------
    InputError
        ``every`` is not an integer >= 1.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import Linear, Network, Tanh
    >>> net = Network([Linear(np.ones((3, 2))), Tanh(), Linear(np.ones((1, 3)))])
    >>> schedule = GradualUnfreezing(every=2)  # pass as train(..., schedule=schedule)
    >>> for epoch in range(3):
    ...     schedule(epoch, net)
    ...     print(epoch, net.num_trainable_parameters())
    0 3
    1 3
    2 9
    """

    every: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", check_int(self.every, name="every", minimum=1))

    def __call__(self, epoch: int, network: Network) -> None:
        indices = network.parametric_indices()
        count = 1 + epoch // self.every
        for rank_from_top, i in enumerate(reversed(indices)):
            layer = network.layers[i]
            if rank_from_top < count:
                layer.unfreeze()
            else:
                layer.freeze()


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced (the network itself is updated in place).

    Attributes
    ----------
    step_losses : tuple of float
        Training-mode loss of each minibatch, before its update.
    epoch_losses : tuple of float
        Per epoch, the mean of the step losses weighted by minibatch size.
    trainable_parameters : tuple of int
        Per epoch, the number of trainable scalars (changes under gradual unfreezing).
    optimizer_state_size : int
        Scalars held by the optimiser at the end.
    """

    step_losses: tuple[float, ...]
    epoch_losses: tuple[float, ...]
    trainable_parameters: tuple[int, ...]
    optimizer_state_size: int

    @property
    def final_loss(self) -> float:
        """float: The last epoch's loss, ``epoch_losses[-1]``."""
        return self.epoch_losses[-1]


def _check_data(network: Network, x: ArrayLike, y: ArrayLike, loss: str) -> tuple[Array, Array]:
    check_instance(network, Network, name="network", what="a lowrank.adapter.nn Network")
    check_choice(loss, name="loss", choices=("mse", "cross_entropy"))
    xa = network.check_input(x)
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise ShapeError(
            f"x must have shape (n, {network.in_features}) with n >= 1; got {xa.shape}"
        )
    n = xa.shape[0]
    if loss == "mse":
        ya = as_float_array(y, name="y", dtype=None)
        expected = (n, network.out_features)
        if ya.shape != expected:
            raise ShapeError(
                f"y must have shape {expected} (one target row per row of x) for the mse "
                f"loss; got {ya.shape}"
            )
        return xa, ya.astype(network.dtype, copy=False)
    return xa, _check_labels(y, n=n, classes=network.out_features)


def _diverged(step: int, epoch: int, reason: str) -> NonFiniteError:
    return NonFiniteError(
        f"training diverged at step {step} (epoch {epoch}): {reason}; lower the learning rate"
    )


def _loss(name: str, prediction: Array, target: Array) -> LossResult:
    return _mse(prediction, target) if name == "mse" else _cross_entropy(prediction, target)


def evaluate(network: Network, x: ArrayLike, y: ArrayLike, *, loss: LossName) -> float:
    """The loss of ``network`` (evaluation mode, no dropout) on the whole of ``(x, y)``.

    Parameters
    ----------
    network : Network
    x : array_like, shape ``(n, in_features)``
    y : array_like
        Targets of shape ``(n, out_features)`` for ``"mse"``; integer labels of shape
        ``(n,)`` for ``"cross_entropy"``.
    loss : {"mse", "cross_entropy"}

    Returns
    -------
    float

    Raises
    ------
    InputError, ShapeError, DTypeError
        As for :func:`train`.
    NonFiniteError
        Non-finite data, a parameter that holds NaN or infinity (e.g. left so by a diverged
        run), or an output that overflowed the network's dtype (a NaN or infinite loss).

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import Linear, Network
    >>> net = Network([Linear(np.array([[1.0, 2.0]]))])
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> evaluate(net, x, np.array([[1.0], [0.0]]), loss="mse")  # outputs 1 and 2
    2.0
    """
    xa, ya = _check_data(network, x, y, loss)
    network._check_parameters_finite()
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        value = _loss(loss, network._forward(xa, training=False, rng=None), ya).value
    if not math.isfinite(value):
        raise NonFiniteError(
            f"the loss is {value}: the network's output overflowed {network.dtype.name}"
        )
    return value


def train(
    network: Network,
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: LossName,
    optimizer: Optimizer,
    epochs: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    rng: RNGLike = None,
    schedule: Schedule | None = None,
    lr_schedule: LRSchedule | None = None,
    penalty: L2SP | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train ``network`` in place by minibatch gradient steps.

    Parameters
    ----------
    network : Network
        Its trainable parameters are updated in place.
    x : array_like, shape ``(n, in_features)``, ``n >= 1``
        float32 and float64 data in the network's dtype; integers and the narrow floats
        (float16, bfloat16, float8) are converted (see
        :meth:`~lowrank.adapter.nn.Network.check_input`).
    y : array_like
        ``(n, out_features)`` targets for ``"mse"`` (converted to the network's dtype);
        integer labels ``(n,)`` in ``[0, out_features)`` for ``"cross_entropy"``.
    loss : {"mse", "cross_entropy"}
        See :mod:`lowrank.adapter.nn.losses`.
    optimizer : Optimizer
        :class:`~lowrank.adapter.nn.optim.SGD` or :class:`~lowrank.adapter.nn.optim.AdamW`.
    epochs : int
        Passes over the data, >= 1.
    batch_size : int, optional
        Rows per step, in ``[1, n]``; default ``n`` (full batch). The last batch of an
        epoch may be smaller.
    shuffle : bool, default True
        Draw a new permutation of the rows every epoch.
    rng : None, int or numpy.random.Generator
        Randomness for shuffling and dropout.
    schedule : callable, optional
        ``schedule(epoch, network)`` at the start of every epoch, e.g.
        :class:`GradualUnfreezing`.
    lr_schedule : callable, optional
        ``lr_schedule(step)`` before every step (0-based over the run), e.g.
        :class:`SlantedTriangular`; its value becomes ``optimizer.lr`` (and stays there
        after the run). Per-parameter ``lr_multipliers`` apply on top.
    penalty : L2SP, optional
        Added to every minibatch loss (and to ``step_losses``), its gradient to the
        trainable anchored parameters' gradients; frozen parameters stay unchanged.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, network)`` after the last step of every epoch, with the
        network as that epoch left it: the place to evaluate along training (e.g. test
        accuracy per epoch). Whatever it returns is ignored; it must not change the
        network's parameters or freeze flags if the run is to stay the one described.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Unknown ``loss``, bad ``epochs`` or ``batch_size``, an epoch with no trainable
        parameter, labels out of range, a ``penalty`` that is not an
        :class:`~lowrank.adapter.nn.L2SP` or anchors a key the network does not have, an
        optimiser whose ``lr_multipliers`` name a key the network does not have, or an
        ``lr_schedule`` that returns a rate that is not finite and > 0.
    ShapeError, DTypeError
        ``x`` or ``y`` of the wrong shape or dtype, or an optimiser holding state for
        parameters of another shape or dtype (another network's).
    NonFiniteError
        Non-finite data or parameters, or the run diverged ("training diverged at step
        k (epoch e): ..."): a step's loss is NaN, infinite or beyond the largest number of
        the network's dtype (it is summed in float64, so a float32 run can overflow before
        the loss does), a gradient holds NaN or infinity (checked before the update: the
        parameters are as the previous step left them), or the update made a parameter
        non-finite (the parameters are left as updated;
        :meth:`~lowrank.adapter.nn.Network.forward` and :func:`evaluate` then refuse
        them). Lower ``lr``.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import SGD, Linear, Network
    >>> net = Network([Linear(np.zeros((1, 2)))])
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([[1.0], [2.0]])
    >>> result = train(net, x, y, loss="mse", optimizer=SGD(0.5), epochs=50, rng=0)
    >>> round(result.final_loss, 6)
    0.0
    """
    xa, ya = _check_data(network, x, y, loss)
    network._check_parameters_finite()
    if not isinstance(optimizer, Optimizer):
        raise InputError(
            f"optimizer must be a lowrank.adapter.nn Optimizer; got {optimizer!r} of type "
            f"{type(optimizer).__name__}"
        )
    shuffle = check_bool(shuffle, name="shuffle")
    if schedule is not None:
        check_callable(schedule, name="schedule")
    if lr_schedule is not None:
        check_callable(lr_schedule, name="lr_schedule")
    if on_epoch_end is not None:
        check_callable(on_epoch_end, name="on_epoch_end")
    if penalty is not None:
        check_instance(penalty, L2SP, name="penalty", what="a lowrank.adapter.nn L2SP")
        penalty._bind(network.parameters(), name="penalty")
    optimizer._check_for(network.parameters())
    n_epochs = check_int(epochs, name="epochs", minimum=1)
    n = xa.shape[0]
    size = (
        n if batch_size is None else check_int(batch_size, name="batch_size", minimum=1, maximum=n)
    )
    gen = normalize_rng(rng)
    limit = float(np.finfo(network.dtype).max)
    step_losses: list[float] = []
    epoch_losses: list[float] = []
    trainable_counts: list[int] = []
    for epoch in range(n_epochs):
        if schedule is not None:
            schedule(epoch, network)
        count = network.num_trainable_parameters()
        if count == 0:
            raise InputError(
                f"network has no trainable parameters at epoch {epoch}; unfreeze a layer "
                f"or pass a schedule"
            )
        trainable_counts.append(count)
        order = gen.permutation(n) if shuffle else np.arange(n)
        total = 0.0
        # A diverging run overflows somewhere (forward, backward or the update), and in
        # float32 the float64 loss can stay finite while gradients or parameters do not. Every
        # step therefore checks, in the network's dtype, the loss, each gradient (before the
        # update, so the parameters are untouched) and each updated parameter: one min and
        # one max per array, and the step and epoch in the message, which a bare
        # RuntimeWarning would not give.
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, n, size):
                step = len(step_losses)
                rows = order[start : start + size]
                if lr_schedule is not None:
                    optimizer.lr = check_positive_float(
                        lr_schedule(step),
                        name=f"lr_schedule({step})",
                    )
                prediction = network._forward(xa[rows], training=True, rng=gen)
                result = _loss(loss, prediction, ya[rows])
                value = result.value
                if penalty is not None:
                    value += penalty._value(network.parameters())
                if not abs(value) <= limit:  # NaN, infinite, or beyond the network's dtype
                    reason = (
                        f"the loss became {value:.6g}"
                        if not math.isfinite(value)
                        else f"the loss became {value:.6g}, beyond the {network.dtype.name} "
                        f"range (largest {limit:.6g})"
                    )
                    raise _diverged(step, epoch, reason)
                network._backward(result.gradient)
                params = network.trainable_parameters()
                grads = network.gradients()
                if penalty is not None:
                    for k in penalty._anchor.keys() & grads.keys():
                        grads[k] = grads[k] + penalty._gradient(k, params[k])
                for k, g in grads.items():
                    try:
                        check_finite(g, name=f"the gradient of {k!r}")
                    except NonFiniteError as err:
                        raise _diverged(step, epoch, str(err)) from None
                optimizer._step(params, grads)
                overflow = optimizer._overflow(params, grads, label=repr)
                if overflow is not None:
                    raise _diverged(step, epoch, overflow)
                step_losses.append(value)
                total += value * rows.size
        epoch_losses.append(total / n)
        if on_epoch_end is not None:
            on_epoch_end(epoch, network)
    return TrainResult(
        step_losses=tuple(step_losses),
        epoch_losses=tuple(epoch_losses),
        trainable_parameters=tuple(trainable_counts),
        optimizer_state_size=optimizer.state_size(),
    )
