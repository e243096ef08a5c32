r"""Minibatch training of a :class:`~lowrank.adapter.nn.network.Network`, and schedules.

One step draws a minibatch, runs the network in training mode, evaluates the loss, back-
propagates and lets the optimiser update the trainable parameters. Shuffling and dropout draw
from one generator normalised once from ``rng``, so a seed fixes the whole run.

Fine-tuning regimes are set up with freeze flags before (or, through a schedule, during)
training:

* full fine-tuning: every layer trainable;
* head only: :meth:`~lowrank.adapter.nn.base.Layer.freeze` every layer but the last;
* gradual unfreezing (Howard & Ruder 2018): :class:`GradualUnfreezing` as ``schedule``;
* LoRA / PiSSA: :class:`~lowrank.adapter.lora_linear.LoRALinear` layers, whose base is frozen
  and whose factors train.

References
----------
.. [1] J. Howard and S. Ruder, "Universal Language Model Fine-tuning for Text Classification",
   ACL 2018, arXiv:1801.06146 (gradual unfreezing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lowrank._typing import Array, ArrayLike, RNGLike
from lowrank._validation import (
    check_bool,
    check_callable,
    check_choice,
    check_instance,
    check_int,
    normalize_rng,
)
from lowrank.adapter._checks import as_float_array
from lowrank.adapter.nn.losses import (
    LossName,
    LossResult,
    _check_labels,
    _cross_entropy,
    _mse,
)
from lowrank.adapter.nn.network import Network
from lowrank.adapter.nn.optim import Optimizer
from lowrank.errors import InputError, NonFiniteError, ShapeError

__all__ = ["GradualUnfreezing", "Schedule", "TrainResult", "evaluate", "train"]

Schedule = Callable[[int, Network], None]
"""Called as ``schedule(epoch, network)`` at the start of each epoch (0-based)."""


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
        check_int(self.every, name="every", minimum=1)

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
    InputError, ShapeError, DTypeError, NonFiniteError
        As for :func:`train`.

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
    return _loss(loss, network._forward(xa, training=False, rng=None), ya).value


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
) -> TrainResult:
    """Train ``network`` in place by minibatch gradient steps.

    Parameters
    ----------
    network : Network
        Its trainable parameters are updated in place.
    x : array_like, shape ``(n, in_features)``, ``n >= 1``
        In the network's dtype.
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

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Unknown ``loss``, bad ``epochs`` or ``batch_size``, an epoch with no trainable
        parameter, or labels out of range.
    ShapeError, DTypeError
        ``x`` or ``y`` of the wrong shape or dtype.
    NonFiniteError
        Non-finite data, or a loss that became NaN or infinite (diverged: lower ``lr``).

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
    if not isinstance(optimizer, Optimizer):
        raise InputError(
            f"optimizer must be a lowrank.adapter.nn Optimizer; got {optimizer!r} of type "
            f"{type(optimizer).__name__}"
        )
    shuffle = check_bool(shuffle, name="shuffle")
    if schedule is not None:
        check_callable(schedule, name="schedule")
    n_epochs = check_int(epochs, name="epochs", minimum=1)
    n = xa.shape[0]
    size = (
        n if batch_size is None else check_int(batch_size, name="batch_size", minimum=1, maximum=n)
    )
    gen = normalize_rng(rng)
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
        # A diverging run overflows somewhere (forward, backward or the update); the loss
        # check reports it with the epoch and step, which a bare RuntimeWarning would not.
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, n, size):
                rows = order[start : start + size]
                prediction = network._forward(xa[rows], training=True, rng=gen)
                result = _loss(loss, prediction, ya[rows])
                if not math.isfinite(result.value):
                    raise NonFiniteError(
                        f"loss must stay finite; it became {result.value} at epoch {epoch}, "
                        f"step {len(step_losses)} (training diverged: lower the learning rate)"
                    )
                network._backward(result.gradient)
                optimizer._step(network.trainable_parameters(), network.gradients())
                step_losses.append(result.value)
                total += result.value * rows.size
        epoch_losses.append(total / n)
    return TrainResult(
        step_losses=tuple(step_losses),
        epoch_losses=tuple(epoch_losses),
        trainable_parameters=tuple(trainable_counts),
        optimizer_state_size=optimizer.state_size(),
    )
