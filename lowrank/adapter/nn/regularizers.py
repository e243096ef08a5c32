r"""Penalties added to the training loss: L2-SP, an L2 pull toward the pre-trained weights.

.. math::

    \Omega(\theta) = \frac{\lambda}{2} \sum_{k \in \mathcal{A}}
        \lVert \theta_k - \theta^0_k \rVert_F^2, \qquad
    \frac{\partial \Omega}{\partial \theta_k} = \lambda\,(\theta_k - \theta^0_k),

over the anchored parameters :math:`\mathcal{A}` with their starting values :math:`\theta^0`
(Li, Grandvalet & Davoine 2018). With :math:`\theta^0 = 0` it is plain weight decay; anchored
to the pre-trained weights it is the cheap reference that freezing and low-rank adapters are
compared to: every weight may move, but each move costs. :func:`~lowrank.adapter.nn.train`
adds :math:`\Omega` to each minibatch loss and its gradient to the trainable parameters'.

References
----------
.. [1] X. Li, Y. Grandvalet and F. Davoine, "Explicit Inductive Bias for Transfer Learning
   with Convolutional Networks", ICML 2018, arXiv:1802.01483.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lowrank._typing import Array, ArrayLike
from lowrank._validation import check_mapping, check_positive_float, check_str
from lowrank.adapter._checks import as_float_array
from lowrank.errors import DTypeError, InputError, ShapeError

__all__ = ["L2SP"]


class L2SP:
    r"""The L2-SP penalty :math:`\frac{\lambda}{2}\sum_k \lVert\theta_k - \theta^0_k\rVert^2`.

    Parameters
    ----------
    anchor : mapping of str to array_like
        :math:`\theta^0` by parameter key (``network.parameters()`` keys, e.g. ``"0.weight"``),
        copied. Parameters not listed (a new head, say) are not penalised.
    strength : float
        :math:`\lambda \ge 0`.

    Raises
    ------
    InputError
        ``anchor`` not a mapping with string keys, or ``strength`` not finite and >= 0.
    ShapeError, DTypeError, NonFiniteError
        An anchor value that is not a finite real array.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import Linear, Network
    >>> net = Network([Linear(np.zeros((1, 2)))])
    >>> penalty = L2SP(net.parameters(), strength=0.5)   # anchored at the start
    >>> net.load_parameters({"0.weight": [[1.0, 2.0]]})
    >>> penalty.value(net.parameters())                 # 0.5 / 2 * (1 + 4)
    1.25
    >>> penalty.gradient(net.parameters())
    {'0.weight': array([[0.5, 1. ]])}
    """

    def __init__(self, anchor: Mapping[str, ArrayLike], strength: float) -> None:
        check_mapping(anchor, name="anchor")
        copied: dict[str, Array] = {}
        for key, value in anchor.items():
            check_str(key, name="anchor key")
            copied[key] = np.array(as_float_array(value, name=f"anchor[{key!r}]", dtype=None))
        self._anchor = copied
        self.strength = check_positive_float(strength, name="strength", allow_zero=True)

    @property
    def anchor(self) -> dict[str, Array]:
        """dict of str to ndarray: Copies of the anchor values, by key."""
        return {k: v.copy() for k, v in self._anchor.items()}

    def _check_params(self, params: Mapping[str, ArrayLike]) -> dict[str, Array]:
        check_mapping(params, name="params")
        checked: dict[str, Array] = {}
        for key, a in self._anchor.items():
            if key not in params:
                raise InputError(
                    f"params must hold every anchored key; {key!r} is missing "
                    f"(have {', '.join(repr(k) for k in params) or 'none'})"
                )
            p = as_float_array(params[key], name=f"params[{key!r}]", dtype=None)
            if p.shape != a.shape:
                raise ShapeError(
                    f"params[{key!r}] must have the anchor's shape {a.shape}; got {p.shape}"
                )
            checked[key] = p
        return checked

    def _value(self, params: Mapping[str, Array]) -> float:
        total = 0.0
        for key, a in self._anchor.items():
            diff = params[key].astype(np.float64) - a
            total += float(np.sum(diff * diff))
        return 0.5 * self.strength * total

    def _gradient(self, key: str, p: Array) -> Array:
        diff: Array = p - self._anchor[key].astype(p.dtype, copy=False)
        scaled: Array = diff * p.dtype.type(self.strength)
        return scaled

    def value(self, params: Mapping[str, ArrayLike]) -> float:
        """The penalty at ``params``.

        Parameters
        ----------
        params : mapping of str to array_like
            Current values; must hold every anchored key (others are ignored).

        Returns
        -------
        float
            :math:`\\frac{\\lambda}{2}\\sum_k\\lVert\\theta_k-\\theta^0_k\\rVert_F^2`, summed in
            float64.

        Raises
        ------
        InputError
            ``params`` not a mapping, or missing an anchored key.
        ShapeError, DTypeError, NonFiniteError
            A value of another shape than its anchor, or not a finite real array.

        Examples
        --------
        >>> import numpy as np
        >>> L2SP({"w": np.zeros(2)}, strength=2.0).value({"w": np.array([1.0, 1.0])})
        2.0
        """
        return self._value(self._check_params(params))

    def gradient(self, params: Mapping[str, ArrayLike]) -> dict[str, Array]:
        """The penalty's gradient at ``params``, for the anchored keys.

        Parameters
        ----------
        params : mapping of str to array_like
            As for :meth:`value`.

        Returns
        -------
        dict of str to ndarray
            :math:`\\lambda(\\theta_k - \\theta^0_k)` by anchored key, in each parameter's dtype.

        Raises
        ------
        InputError, ShapeError, DTypeError, NonFiniteError
            As for :meth:`value`.

        Examples
        --------
        >>> import numpy as np
        >>> L2SP({"w": np.zeros(2)}, strength=2.0).gradient({"w": np.array([1.0, -1.0])})
        {'w': array([ 2., -2.])}
        """
        checked = self._check_params(params)
        return {k: self._gradient(k, p) for k, p in checked.items()}

    def _bind(self, params: Mapping[str, Array], *, name: str) -> None:
        """Check that a network's ``params`` hold every anchored key with its shape."""
        for key, a in self._anchor.items():
            if key not in params:
                raise InputError(
                    f"{name}: anchored key {key!r} is not a parameter of the network "
                    f"(its keys: {', '.join(repr(k) for k in params)})"
                )
            if params[key].shape != a.shape:
                raise ShapeError(
                    f"{name}: anchor {key!r} has shape {a.shape} but the parameter has "
                    f"shape {params[key].shape}"
                )
            if params[key].dtype.kind != "f":  # pragma: no cover - layers hold floats
                raise DTypeError(f"{name}: parameter {key!r} is not a float array")

    def __repr__(self) -> str:
        return f"L2SP(keys={list(self._anchor)!r}, strength={self.strength!r})"
