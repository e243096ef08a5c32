r"""Losses with their gradients: mean squared error and softmax cross-entropy.

.. math::

    L_\mathrm{MSE} = \frac{1}{n\,c} \sum_{i,j} (y_{ij} - t_{ij})^2, \qquad
    \frac{\partial L_\mathrm{MSE}}{\partial y} = \frac{2}{n\,c} (y - t);

    L_\mathrm{CE} = \frac1n \sum_i \Big(\log \sum_j e^{z_{ij}} - z_{i t_i}\Big), \qquad
    \frac{\partial L_\mathrm{CE}}{\partial z}
        = \frac1n \big(\mathrm{softmax}(z) - \mathrm{onehot}(t)\big),

for ``n`` rows and ``c`` outputs (the mean over all entries, as ``torch.nn.MSELoss()`` and
``torch.nn.CrossEntropyLoss()`` with their default ``reduction="mean"``). The log-sum-exp is
evaluated as :math:`m_i + \log\sum_j e^{z_{ij} - m_i}` with :math:`m_i = \max_j z_{ij}`, so
no exponential overflows.

dtypes follow the package's table (``lowrank._dtypes``): the prediction is computed in
its compute dtype, float32 for float32, float16 and bfloat16 predictions, float64 for
float64 and integer ones, and the gradient is returned in that dtype (so a float16 or
bfloat16 prediction gets a float32 gradient, like a layer of that dtype would). Values are
accumulated in float64 and returned as a Python float, even when they exceed the compute
dtype's range. For cross-entropy the shift :math:`z_{ij} - m_i` is formed in float64 too,
so float32 logits never overflow (the value of logits ``[3e38, -3e38]`` and label 1 is
6e38); float64 logits need :math:`m_i - z_{ij}` within the float64 range. For the MSE the
difference :math:`y - t` is formed in the compute dtype and must fit in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from lowrank._numerics import scaled_sum_of_squares
from lowrank._typing import Array, ArrayLike
from lowrank._validation import as_array
from lowrank.adapter._checks import as_float_array
from lowrank.errors import DTypeError, InputError, ShapeError

__all__ = ["LossName", "LossResult", "mse_loss", "softmax_cross_entropy"]

LossName: TypeAlias = Literal["mse", "cross_entropy"]
"""The losses :func:`~lowrank.adapter.nn.training.train` knows."""


@dataclass(frozen=True, eq=False)
class LossResult:
    """A loss value and its gradient with respect to the prediction.

    Attributes
    ----------
    value : float
        Accumulated in float64; a perfect fit gives ``+0.0``.
    gradient : ndarray
        Shape of the prediction; dtype its compute dtype: float32 for float32, float16
        and bfloat16 predictions, float64 for float64 and integer ones.
    """

    value: float
    gradient: Array


def _mse(prediction: Array, target: Array) -> LossResult:
    diff = prediction - target
    scale, ssq = scaled_sum_of_squares(diff)
    # Divide before multiplying back the scale: the sum may exceed the float range when
    # the mean does not.
    value = scale * (scale * (ssq / diff.size))
    gradient = diff * diff.dtype.type(2.0 / diff.size)
    return LossResult(value=float(value), gradient=gradient)


def _cross_entropy(logits: Array, labels: Array) -> LossResult:
    n = logits.shape[0]
    # The shift in float64: the gap between two float32 logits may exceed float32's range
    # (3e38 - (-3e38)). The gradient is the float64 softmax rounded once to the logits' dtype.
    z = logits.astype(np.float64, copy=False)
    shifted = z - z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    # -log p_{i,t_i} = log sum_j exp(shifted_ij) - shifted_{i,t_i} >= 0 (each sum is >= 1 and
    # each shift <= 0): formed this way round, a sure prediction gives +0.0, not -0.0.
    nll = np.log(sums[:, 0]) - shifted[rows, labels]
    value = float(np.sum(nll)) / n
    gradient = (exp / sums).astype(logits.dtype, copy=False)
    gradient[rows, labels] -= 1
    gradient *= gradient.dtype.type(1.0 / n)
    return LossResult(value=value, gradient=gradient)


def mse_loss(prediction: ArrayLike, target: ArrayLike) -> LossResult:
    """Mean squared error over all entries, and its gradient.

    Parameters
    ----------
    prediction : array_like, shape ``(n, ...)``, non-empty
    target : array_like, same shape
        Converted to the prediction's dtype.

    Returns
    -------
    LossResult

    Raises
    ------
    ShapeError
        Empty prediction or shapes differ.
    DTypeError, NonFiniteError
        Non-real dtypes or non-finite entries.

    Examples
    --------
    >>> r = mse_loss([[1.0, 2.0]], [[0.0, 0.0]])
    >>> r.value, r.gradient
    (2.5, array([[1., 2.]]))
    """
    p = as_float_array(prediction, name="prediction", dtype=None)
    t = as_float_array(target, name="target", dtype=None)
    if p.size == 0:
        raise ShapeError(f"prediction must not be empty; got shape {p.shape}")
    if t.shape != p.shape:
        raise ShapeError(f"target must have the prediction's shape {p.shape}; got {t.shape}")
    return _mse(p, t.astype(p.dtype, copy=False))


def _check_labels(labels: ArrayLike, *, n: int, classes: int) -> Array:
    """Integer class labels of shape ``(n,)`` with values in ``[0, classes)``."""
    arr = as_array(labels, name="labels")
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"labels must be integers (class indices); got dtype {arr.dtype.name}")
    if arr.shape != (n,):
        raise ShapeError(f"labels must have shape ({n},), one per row of logits; got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= classes):
        raise InputError(
            f"labels must lie in [0, {classes}) for {classes} classes; got values in "
            f"[{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.intp, copy=False)


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> LossResult:
    """Mean softmax cross-entropy of integer ``labels`` under ``logits``, and its gradient.

    Parameters
    ----------
    logits : array_like, shape ``(n, classes)``, ``n >= 1``, ``classes >= 1``
    labels : array_like of int, shape ``(n,)``, values in ``[0, classes)``

    Returns
    -------
    LossResult
        The gradient is with respect to ``logits``.

    Raises
    ------
    ShapeError
        ``logits`` not 2-D and non-empty, or ``labels`` of the wrong shape.
    DTypeError
        Non-integer labels or non-real logits.
    InputError
        A label outside ``[0, classes)``.
    NonFiniteError
        Non-finite logits.

    Examples
    --------
    >>> r = softmax_cross_entropy([[0.0, 0.0]], [1])
    >>> round(r.value, 6), r.gradient
    (0.693147, array([[ 0.5, -0.5]]))
    """
    z = as_float_array(logits, name="logits", dtype=None)
    if z.ndim != 2 or z.size == 0:
        raise ShapeError(f"logits must be a non-empty 2-D array (n, classes); got shape {z.shape}")
    y = _check_labels(labels, n=z.shape[0], classes=z.shape[1])
    return _cross_entropy(z, y)
