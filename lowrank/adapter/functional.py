r"""Stateless LoRA linear algebra: scaling, dropout masks, forward and backward.

Everything here takes plain arrays and returns plain arrays, so that another implementation
(PEFT on PyTorch, a JAX port) can be checked against it entry by entry. The layer classes in
:mod:`lowrank.adapter.lora_linear` call the private bodies of these functions.

Notes
-----
With :math:`x` of shape ``(batch, in)``, :math:`W` ``(out, in)``, :math:`A` ``(r, in)``,
:math:`B` ``(out, r)``, scaling :math:`s` and an inverted-dropout mask :math:`M` (entries
:math:`0` or :math:`1/(1-p)`; all ones in evaluation mode), the layer computes

.. math::

    z = (x \odot M) A^\top, \qquad y = x W^\top + \mathbf{1} b^\top + s\, z B^\top .

For an upstream gradient :math:`G = \partial L / \partial y` the gradients are

.. math::

    \frac{\partial L}{\partial B} = s\, G^\top z, \qquad
    \frac{\partial L}{\partial A} = s\, (G B)^\top (x \odot M), \qquad
    \frac{\partial L}{\partial x} = G W + s\, \big((G B) A\big) \odot M,

    \frac{\partial L}{\partial W} = G^\top x, \qquad
    \frac{\partial L}{\partial b} = G^\top \mathbf{1} .

Every product is of a thin matrix (``r`` columns or rows) with a data-sized one: the dense
:math:`BA` (``out × in``) is formed only by :func:`lora_delta_weight`, which merging uses.

References
----------
.. [1] E. J. Hu, Y. Shen, P. Wallis, Z. Allen-Zhu, Y. Li, S. Wang, L. Wang and W. Chen,
   "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685.
.. [2] D. Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA",
   arXiv:2312.03732, 2023 (rsLoRA).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowrank._dtypes import layer_dtype
from lowrank._typing import Array, ArrayLike, RNGLike
from lowrank._validation import (
    as_array,
    as_dtype,
    check_bool,
    check_fraction,
    check_int,
    check_positive_float,
    normalize_rng,
)
from lowrank.adapter._checks import (
    as_float_array,
    check_bias,
    check_factors,
    check_features,
    check_weight,
)
from lowrank.errors import InputError, ShapeError

__all__ = [
    "LoRAGradients",
    "dropout_mask",
    "lora_backward",
    "lora_delta_weight",
    "lora_forward",
]


@dataclass(frozen=True, eq=False)
class LoRAGradients:
    """Gradients of a scalar loss through one LoRA linear layer.

    Attributes
    ----------
    input : ndarray, shape like ``x``
        :math:`\\partial L / \\partial x`.
    lora_A : ndarray, shape ``(r, in)``
    lora_B : ndarray, shape ``(out, r)``
    bias : ndarray, shape ``(out,)``
        :math:`G^\\top \\mathbf{1}`, whether or not the layer has a bias (it is the gradient
        a bias would receive).
    weight : ndarray of shape ``(out, in)``, or None
        :math:`G^\\top x`; None unless asked for with ``weight_grad=True``, because it is the
        one ``out × in`` array of the backward pass.
    """

    input: Array
    lora_A: Array
    lora_B: Array
    bias: Array
    weight: Array | None


def _dropout_mask(
    shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype: np.dtype[Any]
) -> Array:
    keep = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64) >= p
    # Inverted dropout: kept entries are scaled by 1/(1 - p) so E[mask] = 1 and evaluation
    # mode needs no rescaling.
    mask: Array = keep.astype(dtype)
    mask *= 1.0 / (1.0 - p)
    return mask


def dropout_mask(
    shape: int | Sequence[int],
    p: float,
    *,
    rng: RNGLike = None,
    dtype: Any = np.float64,
) -> Array:
    r"""An inverted-dropout mask: each entry is 0 with probability ``p``, else :math:`1/(1-p)`.

    Parameters
    ----------
    shape : int or sequence of int
    p : float
        Drop probability in ``[0, 1)``.
    rng : None, int or numpy.random.Generator
        Source of randomness; the same seed gives the same mask.
    dtype : float32 or float64, default float64

    Returns
    -------
    ndarray of ``shape`` and ``dtype``

    Raises
    ------
    InputError
        ``p`` outside ``[0, 1)``, a negative dimension, or a bad ``rng``.
    DTypeError
        ``dtype`` is not a real floating type.

    Examples
    --------
    >>> m = dropout_mask((2, 3), 0.5, rng=0)
    >>> sorted(set(m.ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    """
    prob = check_fraction(p, name="p", low=0.0, high=1.0, low_inclusive=True, high_inclusive=False)
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        dims: tuple[Any, ...] = (shape,)
    elif isinstance(shape, (tuple, list)):
        dims = tuple(shape)
    else:
        raise InputError(f"shape must be an int or a sequence of ints; got {shape!r}")
    checked = tuple(check_int(d, name="shape entry", minimum=0) for d in dims)
    dt = layer_dtype(as_dtype(dtype, name="dtype"), name="dtype")
    return _dropout_mask(checked, prob, normalize_rng(rng), dt)


def _check_scaling(scaling: object) -> float:
    return check_positive_float(scaling, name="scaling")


def _check_layer_arrays(
    weight: ArrayLike, lora_A: ArrayLike, lora_B: ArrayLike
) -> tuple[Array, Array, Array]:
    W = check_weight(weight, copy=False)
    A, B = check_factors(
        lora_A, lora_B, in_features=W.shape[1], out_features=W.shape[0], dtype=W.dtype, copy=False
    )
    return W, A, B


def _check_mask(
    mask: ArrayLike | None, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> Array | None:
    if mask is None:
        return None
    m = as_float_array(mask, name="dropout_mask", dtype=dtype)
    if m.shape != shape:
        raise ShapeError(f"dropout_mask must have the shape of x, {shape}; got {m.shape}")
    if np.any(m < 0):
        raise InputError("dropout_mask must be non-negative (0 or 1/(1-p) for inverted dropout)")
    return m


def _adapter_forward(
    x2: Array, A: Array, B: Array, scaling: float, mask: Array | None
) -> tuple[Array, Array, Array]:
    """Returns ``(contribution, dropped_x, z)``; the last two are what backward needs."""
    xd = x2 if mask is None else x2 * mask
    z = xd @ A.T
    # PEFT's order, lora_B(lora_A(x)) * scaling, so that rounding matches it as closely as
    # the BLAS allows.
    contribution = z @ B.T
    contribution *= x2.dtype.type(scaling)
    return contribution, xd, z


def _adapter_backward(
    g2: Array,
    xd: Array,
    z: Array,
    A: Array,
    B: Array,
    scaling: float,
    mask: Array | None,
) -> tuple[Array, Array, Array]:
    """Returns ``(dA, dB, dx)`` for one adapter; ``g2`` is ``(batch, out)``."""
    s = g2.dtype.type(scaling)
    gB = g2 @ B  # (batch, r): the only place G meets B, shared by dA and dx
    gB *= s
    dA = gB.T @ xd
    dB = g2.T @ z
    dB *= s
    dx = gB @ A
    if mask is not None:
        dx *= mask
    return dA, dB, dx


def lora_forward(
    x: ArrayLike,
    weight: ArrayLike,
    lora_A: ArrayLike,
    lora_B: ArrayLike,
    *,
    scaling: float,
    bias: ArrayLike | None = None,
    dropout_mask: ArrayLike | None = None,
) -> Array:
    r"""Output of a LoRA linear layer, :math:`x W^\top + b + s\,((x \odot M) A^\top) B^\top`.

    Parameters
    ----------
    x : array_like, shape ``(..., in)``
        Must be in the dtype of ``weight`` (integers are converted).
    weight : array_like, shape ``(out, in)``
        Base weight ``W`` (or the PiSSA residual ``W_res``).
    lora_A : array_like, shape ``(r, in)``
    lora_B : array_like, shape ``(out, r)``
    scaling : float
        :math:`s`, e.g. from :func:`lowrank.lora.lora_scaling`.
    bias : array_like, shape ``(out,)``, optional
    dropout_mask : array_like, shape like ``x``, optional
        Multiplies ``x`` on the LoRA path only (see :func:`dropout_mask`); None means no dropout.

    Returns
    -------
    ndarray, shape ``(..., out)``, in the dtype of ``weight``

    Raises
    ------
    ShapeError
        Shapes do not match (the message names the offending array and the expected shape).
    DTypeError
        Non-real dtypes, or ``x`` in a float dtype other than the layer's.
    NonFiniteError
        NaN or infinity in any input.
    InputError
        ``scaling`` not finite and > 0, or a negative mask entry.

    Notes
    -----
    The dense :math:`BA` is never formed; see the module notes for the formulas.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.eye(3); A = np.ones((1, 3)); B = np.zeros((3, 1))
    >>> lora_forward(np.array([[1.0, 2.0, 3.0]]), W, A, B, scaling=2.0)
    array([[1., 2., 3.]])
    """
    W, A, B = _check_layer_arrays(weight, lora_A, lora_B)
    s = _check_scaling(scaling)
    xa = as_float_array(x, name="x", dtype=W.dtype)
    check_features(xa, name="x", features=W.shape[1], owner="weight's in_features")
    b = None if bias is None else check_bias(bias, out_features=W.shape[0], dtype=W.dtype)
    mask = _check_mask(dropout_mask, xa.shape, W.dtype)
    x2 = xa.reshape(-1, W.shape[1])
    y: Array = x2 @ W.T
    if b is not None:
        y += b
    contribution, _, _ = _adapter_forward(
        x2, A, B, s, None if mask is None else mask.reshape(x2.shape)
    )
    y += contribution
    return y.reshape((*xa.shape[:-1], W.shape[0]))


def lora_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    lora_A: ArrayLike,
    lora_B: ArrayLike,
    *,
    scaling: float,
    dropout_mask: ArrayLike | None = None,
    weight_grad: bool = False,
) -> LoRAGradients:
    r"""Gradients of a scalar loss through :func:`lora_forward`.

    Parameters
    ----------
    grad_output : array_like, shape ``(..., out)``
        :math:`G = \partial L / \partial y`, with the leading shape of ``x``.
    x, weight, lora_A, lora_B, scaling, dropout_mask
        As given to :func:`lora_forward` (the bias does not enter the gradients).
    weight_grad : bool, default False
        Also return :math:`\partial L/\partial W = G^\top x` (``out × in``).

    Returns
    -------
    LoRAGradients

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, InputError
        As for :func:`lora_forward`; also when ``grad_output`` does not have shape
        ``x.shape[:-1] + (out,)``.

    Notes
    -----
    .. math::

        \frac{\partial L}{\partial A} = s\,(G B)^\top (x \odot M), \quad
        \frac{\partial L}{\partial B} = s\,G^\top \big((x \odot M) A^\top\big), \quad
        \frac{\partial L}{\partial x} = G W + s\,\big((G B) A\big) \odot M .

    Examples
    --------
    >>> import numpy as np
    >>> W = np.zeros((2, 2)); A = np.eye(2); B = np.eye(2)
    >>> g = lora_backward(np.ones((1, 2)), np.array([[1.0, 2.0]]), W, A, B, scaling=1.0)
    >>> g.lora_B
    array([[1., 2.],
           [1., 2.]])
    """
    weight_grad = check_bool(weight_grad, name="weight_grad")
    W, A, B = _check_layer_arrays(weight, lora_A, lora_B)
    s = _check_scaling(scaling)
    xa = as_float_array(x, name="x", dtype=W.dtype)
    check_features(xa, name="x", features=W.shape[1], owner="weight's in_features")
    g = as_float_array(grad_output, name="grad_output", dtype=W.dtype)
    expected = (*xa.shape[:-1], W.shape[0])
    if g.shape != expected:
        raise ShapeError(
            f"grad_output must have shape {expected} (x's leading shape and weight's "
            f"out_features={W.shape[0]}); got {g.shape}"
        )
    mask = _check_mask(dropout_mask, xa.shape, W.dtype)
    x2 = xa.reshape(-1, W.shape[1])
    g2 = g.reshape(-1, W.shape[0])
    m2 = None if mask is None else mask.reshape(x2.shape)
    _, xd, z = _adapter_forward(x2, A, B, s, m2)
    dA, dB, dx_lora = _adapter_backward(g2, xd, z, A, B, s, m2)
    dx = g2 @ W
    dx += dx_lora
    return LoRAGradients(
        input=dx.reshape(xa.shape),
        lora_A=dA,
        lora_B=dB,
        bias=g2.sum(axis=0),
        weight=(g2.T @ x2) if weight_grad else None,
    )


def lora_delta_weight(lora_A: ArrayLike, lora_B: ArrayLike, *, scaling: float) -> Array:
    r"""The dense update :math:`\Delta W = s\, B A`, shape ``(out, in)``.

    Used for merging (``W ← W + ΔW``) and for inspection; never in forward or backward.

    Parameters
    ----------
    lora_A : array_like, shape ``(r, in)``
    lora_B : array_like, shape ``(out, r)``
    scaling : float

    Returns
    -------
    ndarray, shape ``(out, in)``

    Raises
    ------
    ShapeError
        ``lora_B.shape[1] != lora_A.shape[0]`` or ``r = 0``.
    DTypeError, NonFiniteError, InputError
        Bad dtypes, non-finite entries, or ``scaling`` not finite and > 0.

    Examples
    --------
    >>> import numpy as np
    >>> lora_delta_weight(np.ones((1, 2)), np.ones((3, 1)), scaling=0.5)
    array([[0.5, 0.5],
           [0.5, 0.5],
           [0.5, 0.5]])
    """
    s = _check_scaling(scaling)
    A_in = as_array(lora_A, name="lora_A")
    B_in = as_array(lora_B, name="lora_B")
    if A_in.ndim != 2 or B_in.ndim != 2:
        raise ShapeError(f"lora_A and lora_B must be 2-D; got shapes {A_in.shape} and {B_in.shape}")
    dt = np.result_type(
        layer_dtype(A_in.dtype, name="lora_A"), layer_dtype(B_in.dtype, name="lora_B")
    )
    A, B = check_factors(
        A_in, B_in, in_features=A_in.shape[1], out_features=B_in.shape[0], dtype=dt, copy=False
    )
    return _delta_weight(A, B, s)


def _delta_weight(A: Array, B: Array, scaling: float) -> Array:
    delta = B @ A
    delta *= delta.dtype.type(scaling)
    return delta
