r"""Element-wise nonlinearities: ReLU, tanh and GELU, with their derivatives.

.. math::

    \mathrm{ReLU}(x) = \max(x, 0), \qquad \mathrm{ReLU}'(x) = [x > 0];

    \tanh'(x) = 1 - \tanh^2 x;

    \mathrm{GELU}(x) = x\,\Phi(x), \qquad \mathrm{GELU}'(x) = \Phi(x) + x\,\varphi(x),

with :math:`\Phi, \varphi` the standard normal CDF and density. The ``"tanh"`` GELU
approximation is :math:`\tfrac12 x (1 + \tanh u)`, :math:`u = \sqrt{2/\pi}\,(x + 0.044715 x^3)`.
The derivative of ReLU at 0 is taken as 0, as in PyTorch.

References
----------
.. [1] D. Hendrycks and K. Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import special

from lowrank._typing import Array
from lowrank._validation import check_choice
from lowrank.adapter.nn.base import Layer

__all__ = ["GELU", "ReLU", "Tanh"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_CUBIC = 0.044715
# Beyond |x| = 40 the tanh approximation's tanh(u) is exactly ±1 and the exact GELU's density
# exp(-x²/2) underflows to 0, in float32 and float64 alike; clipping x inside those terms
# changes no result but keeps x**3 and x*x from overflowing (inf * 0 = NaN in the derivative).
_CLIP = 40.0


class _Elementwise(Layer):
    """A parameter-free layer whose backward needs only its cached input or output."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: Array | None = None

    def _saved_array(self) -> Array:
        if self._saved is None:  # pragma: no cover - guarded by Layer.backward / Network
            raise RuntimeError("backward before forward")
        return self._saved


class ReLU(_Elementwise):
    """Rectified linear unit, :math:`\\max(x, 0)`.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU().forward(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        self._saved = x > 0
        return np.where(self._saved, x, x.dtype.type(0))

    def _backward(self, g: Array, *, need_input_grad: bool) -> Array | None:
        return np.where(self._saved_array(), g, g.dtype.type(0)) if need_input_grad else None

    def __repr__(self) -> str:
        return "ReLU()"


class Tanh(_Elementwise):
    """Hyperbolic tangent.

    Examples
    --------
    >>> import numpy as np
    >>> Tanh().forward(np.array([0.0]))
    array([0.])
    """

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        y = np.tanh(x)
        self._saved = y
        return y

    def _backward(self, g: Array, *, need_input_grad: bool) -> Array | None:
        if not need_input_grad:
            return None
        y = self._saved_array()
        out: Array = g * (1 - y * y)
        return out

    def __repr__(self) -> str:
        return "Tanh()"


class GELU(_Elementwise):
    """Gaussian error linear unit, exact (``"none"``, PyTorch's default) or ``"tanh"``.

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
        As ``torch.nn.GELU(approximate=...)``.

    Raises
    ------
    InputError
        ``approximate`` is not ``"none"`` or ``"tanh"``.

    Examples
    --------
    >>> import numpy as np
    >>> GELU().forward(np.array([0.0, 1.0])).round(4)
    array([0.    , 0.8413])
    """

    def __init__(self, *, approximate: Literal["none", "tanh"] = "none") -> None:
        super().__init__()
        self.approximate = check_choice(approximate, name="approximate", choices=("none", "tanh"))

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        self._saved = x
        t = x.dtype.type
        if self.approximate == "tanh":
            xc = np.clip(x, -_CLIP, _CLIP)
            u = t(_SQRT_2_OVER_PI) * (xc + t(_GELU_CUBIC) * xc**3)
            y: Array = t(0.5) * x * (1 + np.tanh(u))
            return y
        exact: Array = t(0.5) * x * (1 + special.erf(x * t(_INV_SQRT_2)))
        return exact

    def _backward(self, g: Array, *, need_input_grad: bool) -> Array | None:
        if not need_input_grad:
            return None
        x = self._saved_array()
        t = x.dtype.type
        xc = np.clip(x, -_CLIP, _CLIP)
        if self.approximate == "tanh":
            u = t(_SQRT_2_OVER_PI) * (xc + t(_GELU_CUBIC) * xc**3)
            th = np.tanh(u)
            du = t(_SQRT_2_OVER_PI) * (1 + t(3 * _GELU_CUBIC) * xc * xc)
            approx: Array = g * (t(0.5) * (1 + th) + t(0.5) * xc * (1 - th * th) * du)
            return approx
        cdf = t(0.5) * (1 + special.erf(x * t(_INV_SQRT_2)))
        pdf = t(_INV_SQRT_2PI) * np.exp(t(-0.5) * xc * xc)
        grad: Array = g * (cdf + xc * pdf)
        return grad

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"
