r"""A dense (full-rank) linear layer with trainable weight and bias.

.. math::

    y = x W^\top + b, \qquad
    \frac{\partial L}{\partial x} = G W, \quad
    \frac{\partial L}{\partial W} = G^\top x, \quad
    \frac{\partial L}{\partial b} = G^\top \mathbf{1},

with :math:`G = \partial L/\partial y` and the batch flattened to rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank._typing import Array, ArrayLike
from lowrank._validation import check_bool
from lowrank.adapter._checks import check_bias, check_weight
from lowrank.adapter.nn.base import Layer

__all__ = ["Linear"]


class Linear(Layer):
    """A dense linear layer, ``torch.nn.Linear``'s reference: parameters ``weight`` and ``bias``.

    Parameters
    ----------
    weight : array_like, shape ``(out_features, in_features)``
        Copied; its dtype (float32 or float64; float16 and integers are promoted) is the
        layer's dtype.
    bias : array_like, shape ``(out_features,)``, optional
    trainable : bool, default True
        Initial ``requires_grad`` of both parameters (see :meth:`freeze`, :meth:`unfreeze`).

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
        A weight that is not a finite real matrix, or a bias of the wrong length.

    Examples
    --------
    >>> import numpy as np
    >>> layer = Linear(np.eye(2), np.array([1.0, -1.0]))
    >>> layer.forward(np.array([[2.0, 3.0]]))
    array([[3., 2.]])
    >>> layer.num_trainable_parameters()
    6
    """

    def __init__(
        self, weight: ArrayLike, bias: ArrayLike | None = None, *, trainable: bool = True
    ) -> None:
        super().__init__()
        trainable = check_bool(trainable, name="trainable")
        W = check_weight(weight)
        self._add_parameter("weight", W, requires_grad=trainable)
        if bias is not None:
            b = check_bias(bias, out_features=W.shape[0], dtype=W.dtype)
            self._add_parameter("bias", b, requires_grad=trainable)
        self._x2: Array | None = None
        self._x_shape: tuple[int, ...] = ()

    @property
    def in_features(self) -> int:
        """int: Size of the input's last axis, ``weight.shape[1]``."""
        return int(self._params["weight"].shape[1])

    @property
    def out_features(self) -> int:
        """int: Size of the output's last axis, ``weight.shape[0]``."""
        return int(self._params["weight"].shape[0])

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy.dtype: The layer's float dtype (float32 or float64), that of its weight."""
        return self._params["weight"].dtype

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        W = self._params["weight"]
        x2 = x.reshape(-1, W.shape[1])
        y: Array = x2 @ W.T
        if "bias" in self._params:
            y += self._params["bias"]
        self._x2, self._x_shape = x2, x.shape
        return y.reshape((*x.shape[:-1], W.shape[0]))

    def _backward(self, g: Array, *, need_input_grad: bool) -> Array | None:
        if self._x2 is None:  # pragma: no cover - guarded by Layer.backward / Network
            raise RuntimeError("backward before forward")
        W = self._params["weight"]
        g2 = g.reshape(-1, W.shape[0])
        self._grads = {}
        if self._requires_grad["weight"]:
            self._grads["weight"] = g2.T @ self._x2
        if "bias" in self._params and self._requires_grad["bias"]:
            self._grads["bias"] = g2.sum(axis=0)
        if not need_input_grad:
            return None
        return (g2 @ W).reshape(self._x_shape)

    def __repr__(self) -> str:
        return (
            f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={'bias' in self._params}, dtype={self.dtype.name}, "
            f"trainable={self.num_trainable_parameters()})"
        )
