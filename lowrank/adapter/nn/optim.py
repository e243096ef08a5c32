r"""Optimisers over named parameters: SGD with momentum, and AdamW.

An optimiser updates, in place, the parameters it is given gradients for, and keeps state
(momentum, moment estimates) only for those: frozen parameters receive no gradient, so they
are neither updated nor decayed and cost no memory. For a LoRA layer of rank ``r`` the AdamW
state is therefore ``2 r (in + out)`` scalars, not ``2 out·in``.

Notes
-----
SGD with momentum :math:`\mu` (PyTorch's form, no dampening):

.. math:: v_t = \mu v_{t-1} + g_t \;(v_1 = g_1), \qquad \theta_t = \theta_{t-1} - \eta v_t .

AdamW with decoupled weight decay :math:`\lambda`, per parameter step count :math:`t`:

.. math::

    \theta &\leftarrow \theta (1 - \eta\lambda), \\
    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
    \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon},

the bias-corrected update of ``torch.optim.AdamW``. The step count is kept per parameter, so a
parameter unfrozen late (gradual unfreezing) gets its own bias correction from its first step.

Per-parameter learning rates (``lr_multipliers``) replace :math:`\eta` by :math:`c_k\,\eta`
for parameter :math:`k` everywhere above (the AdamW decay included), as a PyTorch parameter
group of learning rate :math:`c_k\,\eta` would; ULMFiT's discriminative fine-tuning is the
choice :math:`c = 2.6^{-d}` for a layer :math:`d` parametric layers below the top
(:func:`~lowrank.adapter.nn.discriminative_lr_multipliers`).

References
----------
.. [1] D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
   arXiv:1412.6980.
.. [2] I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
   arXiv:1711.05101.
.. [3] J. Howard and S. Ruder, "Universal Language Model Fine-tuning for Text
   Classification", ACL 2018, arXiv:1801.06146 (discriminative fine-tuning).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lowrank._typing import Array
from lowrank._validation import check_fraction, check_mapping, check_positive_float, check_str
from lowrank.adapter._checks import check_finite, count_nonfinite
from lowrank.errors import DTypeError, InputError, NonFiniteError, ShapeError

__all__ = ["SGD", "AdamW", "Optimizer"]


class Optimizer(abc.ABC):
    """Base class: validates a step, then updates parameters in place.

    Subclasses (:class:`SGD`, :class:`AdamW`) implement ``_step``, the update on validated
    inputs; :func:`~lowrank.adapter.nn.train` calls it directly.

    Parameters
    ----------
    lr : float
        Learning rate :math:`\\eta`, finite and > 0; stored as the attribute ``lr`` (which
        may be changed between steps, e.g. by a learning-rate schedule).
    lr_multipliers : mapping of str to float, optional
        Per-parameter factors :math:`c_k > 0` by parameter key: parameter ``k`` is updated
        with the learning rate :math:`c_k\\eta`; keys not listed use :math:`c_k = 1`.
        Stored (as a new dict) in the attribute ``lr_multipliers``.

    Raises
    ------
    InputError
        ``lr`` not finite and > 0; ``lr_multipliers`` not a mapping of strings to finite
        numbers > 0.

    Examples
    --------
    >>> from lowrank.adapter.nn import SGD, Optimizer
    >>> opt = SGD(0.1)
    >>> isinstance(opt, Optimizer), opt.lr
    (True, 0.1)
    """

    def __init__(self, lr: float, *, lr_multipliers: Mapping[str, float] | None = None) -> None:
        self.lr = check_positive_float(lr, name="lr")
        self.lr_multipliers = _check_multipliers(lr_multipliers)
        self._state: dict[str, dict[str, Array]] = {}

    def _lr_for(self, key: str) -> float:
        """The learning rate of parameter ``key``: ``lr`` times its multiplier."""
        return self.lr * self.lr_multipliers.get(key, 1.0)

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """Update ``params[k]`` in place for every ``k`` in ``grads``.

        Parameters
        ----------
        params : mapping of str to ndarray
            Writable float arrays (for example ``network.trainable_parameters()``).
        grads : mapping of str to ndarray
            Gradients by the same keys, same shapes and dtypes (``network.gradients()``);
            array_like values are read with :func:`numpy.asarray`. Parameters without a
            gradient are left alone.

        Raises
        ------
        InputError
            A gradient key that is not in ``params``, or a read-only parameter.
        ShapeError
            A gradient or stored state whose shape differs from its parameter.
        DTypeError
            A gradient or stored state whose dtype differs from its parameter, or a
            non-float parameter.
        NonFiniteError
            A gradient with NaN or infinity (nothing is updated), or an update that
            overflowed the parameter's dtype or the optimiser's state (for example AdamW's
            :math:`v` at float32 gradients above about 5.8e20, as torch's, where the step
            would silently be zero); the parameters are left as updated.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import SGD, Linear
        >>> layer = Linear(np.array([[1.0, 2.0]]))
        >>> _ = layer.forward(np.array([[1.0, 0.0]]))
        >>> _ = layer.backward(np.array([[1.0]]))  # dL/dW = [[1, 0]]
        >>> SGD(0.5).step(layer.trainable_parameters(), layer.gradients())
        >>> layer.parameters()["weight"]
        array([[0.5, 2. ]])
        """
        check_mapping(params, name="params")
        check_mapping(grads, name="grads")
        checked: dict[str, Array] = {}
        for k, g in grads.items():
            if k not in params:
                raise InputError(f"grads has key {k!r}, which is not in params")
            p = params[k]
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise DTypeError(f"params[{k!r}] must be a float ndarray; got {type(p).__name__}")
            if not p.flags.writeable:
                raise InputError(f"params[{k!r}] must be writable; it is updated in place")
            g_arr = np.asarray(g)
            if g_arr.shape != p.shape:
                raise ShapeError(
                    f"grads[{k!r}] must have the parameter's shape {p.shape}; got {g_arr.shape}"
                )
            if g_arr.dtype != p.dtype:
                raise DTypeError(
                    f"grads[{k!r}] must have the parameter's dtype {p.dtype.name}; "
                    f"got {g_arr.dtype.name}"
                )
            check_finite(g_arr, name=f"grads[{k!r}]")
            self._check_state(k, p)
            checked[k] = g_arr
        # The update runs on the validated arrays, never on what the caller passed (a list
        # passes every check above as an array but does not support array arithmetic).
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, by key
            self._step(params, checked)
        reason = self._overflow(params, checked, label=lambda k: f"params[{k!r}]")
        if reason is not None:
            raise NonFiniteError(reason)

    def _check_state(self, key: str, param: Array) -> None:
        """Refuse state kept for another parameter of this name (another network's)."""
        for field, value in self._state.get(key, {}).items():
            if value.shape != param.shape:
                raise ShapeError(
                    f"optimizer state {field!r} for {key!r} has shape {value.shape} but the "
                    f"parameter has shape {param.shape}; use a new optimizer for a new network"
                )
            if value.dtype != param.dtype:
                raise DTypeError(
                    f"optimizer state {field!r} for {key!r} is {value.dtype.name} but the "
                    f"parameter is {param.dtype.name}; use a new optimizer for a new network"
                )

    def _check_for(self, params: Mapping[str, Array]) -> None:
        """Before training ``params`` (all of a network's): the state fits them, and every
        ``lr_multipliers`` key names one of them (a misspelt key would train at the full
        rate without a word)."""
        for key, param in params.items():
            self._check_state(key, param)
        unknown = sorted(set(self.lr_multipliers) - set(params))
        if unknown:
            raise InputError(
                f"lr_multipliers has keys that are not parameters of the network: {unknown}; "
                f"its parameters are {sorted(params)}"
            )

    def _overflow(
        self,
        params: Mapping[str, Array],
        grads: Mapping[str, Array],
        *,
        label: Callable[[str], str],
    ) -> str | None:
        """Why the last :meth:`_step` on ``grads`` failed (``None``: it did not)."""
        for k, g in grads.items():
            p = params[k]
            bad = count_nonfinite(p)
            if bad:
                return (
                    f"the update made {label(k)} non-finite ({bad} NaN or infinite "
                    f"entr{'y' if bad == 1 else 'ies'} out of {p.size}): it overflowed "
                    f"{p.dtype.name}; lower the learning rate"
                )
            # An overflowed moment gives no error downstream: AdamW's m / sqrt(inf) is a
            # silent zero step, so every later step of this parameter would do nothing.
            for field, value in self._state.get(k, {}).items():
                bad = count_nonfinite(value)
                if bad:
                    return (
                        f"optimizer state {field!r} for {label(k)} overflowed "
                        f"{value.dtype.name} ({bad} of {value.size} entries; gradients up to "
                        f"{float(np.max(np.abs(g))):.3g}); scale the loss down or train in "
                        "float64"
                    )
        return None

    @abc.abstractmethod
    def _step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        """Update on clean inputs."""

    def state_size(self) -> int:
        """Number of scalars held in the optimiser's state.

        Returns
        -------
        int
            Zero for plain SGD; one per updated parameter scalar for SGD with momentum, two
            for AdamW. Frozen parameters (never given a gradient) cost nothing.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import SGD
        >>> p = {"w": np.ones(3)}
        >>> opt = SGD(0.1, momentum=0.9); opt.step(p, {"w": np.ones(3)})
        >>> opt.state_size()  # one momentum buffer
        3
        """
        return sum(int(v.size) for s in self._state.values() for v in s.values())

    def state_nbytes(self) -> int:
        """Bytes held in the optimiser's state arrays.

        Returns
        -------
        int
            :meth:`state_size` times the item size of each state array (its parameter's
            dtype).

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import AdamW
        >>> p = {"w": np.ones(3, dtype=np.float32)}
        >>> opt = AdamW(); opt.step(p, {"w": np.ones(3, dtype=np.float32)})
        >>> opt.state_nbytes()  # two moments of 3 float32 scalars
        24
        """
        return sum(int(v.nbytes) for s in self._state.values() for v in s.values())


def _check_multipliers(value: object) -> dict[str, float]:
    if value is None:
        return {}
    mapping = check_mapping(value, name="lr_multipliers")
    out: dict[str, float] = {}
    for key, factor in mapping.items():
        check_str(key, name="lr_multipliers key")
        out[key] = check_positive_float(factor, name=f"lr_multipliers[{key!r}]")
    return out


class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum.

    Parameters
    ----------
    lr : float
        Learning rate :math:`\\eta > 0`.
    momentum : float, default 0.0
        :math:`\\mu \\in [0, 1)`; 0 keeps no state.
    lr_multipliers : mapping of str to float, optional
        Per-parameter learning-rate factors (see :class:`Optimizer`).

    Raises
    ------
    InputError
        ``lr`` not finite and > 0, ``momentum`` outside ``[0, 1)``, a bad
        ``lr_multipliers``.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"w": np.array([1.0])}
    >>> SGD(0.5).step(p, {"w": np.array([2.0])}); p["w"]
    array([0.])
    >>> p = {"low": np.array([1.0]), "top": np.array([1.0])}
    >>> SGD(0.5, lr_multipliers={"low": 0.5}).step(p, {"low": np.ones(1), "top": np.ones(1)})
    >>> p  # lr 0.25 for "low", 0.5 for "top"
    {'low': array([0.75]), 'top': array([0.5])}
    """

    def __init__(
        self,
        lr: float,
        *,
        momentum: float = 0.0,
        lr_multipliers: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(lr, lr_multipliers=lr_multipliers)
        self.momentum = check_fraction(
            momentum, name="momentum", low=0.0, high=1.0, low_inclusive=True, high_inclusive=False
        )

    def _step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        for k, g in grads.items():
            p = params[k]
            lr = p.dtype.type(self._lr_for(k))
            if self.momentum == 0.0:
                p -= lr * g
                continue
            state = self._state.get(k)
            if state is None:
                buf = np.array(g, copy=True)
                self._state[k] = {"momentum_buffer": buf}
            else:
                buf = state["momentum_buffer"]
                buf *= p.dtype.type(self.momentum)
                buf += g
            p -= lr * buf

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr!r}, momentum={self.momentum!r}"
            f"{_multipliers_repr(self.lr_multipliers)})"
        )


class AdamW(Optimizer):
    """Adam with decoupled weight decay (``torch.optim.AdamW``'s update).

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate :math:`\\eta > 0`.
    betas : (float, float), default (0.9, 0.999)
        :math:`\\beta_1, \\beta_2 \\in [0, 1)`.
    eps : float, default 1e-8
        :math:`\\epsilon > 0`, added to the bias-corrected :math:`\\sqrt{v}`.
    weight_decay : float, default 1e-2
        :math:`\\lambda \\ge 0`, applied as :math:`\\theta \\leftarrow \\theta(1-\\eta\\lambda)`
        to the parameters that receive gradients, that is, the trainable ones only.
    lr_multipliers : mapping of str to float, optional
        Per-parameter learning-rate factors (see :class:`Optimizer`); parameter ``k`` uses
        :math:`c_k\\eta` in both the decay and the Adam step.

    Raises
    ------
    InputError
        A hyper-parameter outside its range, or a bad ``lr_multipliers``.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"w": np.array([1.0, 1.0])}
    >>> opt = AdamW(0.1, weight_decay=0.0)
    >>> opt.step(p, {"w": np.array([3.0, -0.5])})
    >>> p["w"].round(6)  # the first step moves each entry by lr * sign(g)
    array([0.9, 1.1])
    >>> opt.state_size()  # first and second moments
    4
    """

    def __init__(
        self,
        lr: float = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        lr_multipliers: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(lr, lr_multipliers=lr_multipliers)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise InputError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        self.betas = (
            check_fraction(
                betas[0],
                name="betas[0]",
                low=0.0,
                high=1.0,
                low_inclusive=True,
                high_inclusive=False,
            ),
            check_fraction(
                betas[1],
                name="betas[1]",
                low=0.0,
                high=1.0,
                low_inclusive=True,
                high_inclusive=False,
            ),
        )
        self.eps = check_positive_float(eps, name="eps")
        self.weight_decay = check_positive_float(weight_decay, name="weight_decay", allow_zero=True)
        self._steps: dict[str, int] = {}

    def _step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> None:
        beta1, beta2 = self.betas
        for k, g in grads.items():
            p = params[k]
            t = p.dtype.type
            state = self._state.get(k)
            if state is None:
                state = {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
                self._state[k] = state
            step = self._steps.get(k, 0) + 1
            self._steps[k] = step
            lr = self._lr_for(k)
            if self.weight_decay:
                p *= t(1.0 - lr * self.weight_decay)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m *= t(beta1)
            m += t(1.0 - beta1) * g
            v *= t(beta2)
            v += (t(1.0 - beta2) * g) * g  # torch's order: g * g alone overflows 31.6x sooner
            denom = np.sqrt(v)
            denom /= t(math.sqrt(1.0 - beta2**step))
            denom += t(self.eps)
            p -= t(lr / (1.0 - beta1**step)) * (m / denom)

    def __repr__(self) -> str:
        return (
            f"AdamW(lr={self.lr!r}, betas={self.betas!r}, eps={self.eps!r}, "
            f"weight_decay={self.weight_decay!r}{_multipliers_repr(self.lr_multipliers)})"
        )


def _multipliers_repr(multipliers: Mapping[str, Any]) -> str:
    return f", lr_multipliers={dict(multipliers)!r}" if multipliers else ""
