"""The :class:`Layer` base class: named parameters, freeze flags, gradients, forward/backward.

A layer owns its parameters (private copies, updated in place by optimisers and by merging),
a ``requires_grad`` flag per parameter, the cache of its last forward pass, and the
gradients of its last backward pass (for trainable parameters only). Public ``forward`` and
``backward`` validate; :class:`~lowrank.adapter.nn.network.Network` calls the private bodies.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np

from lowrank._typing import Array, ArrayLike, RNGLike
from lowrank._validation import (
    check_bool,
    check_mapping,
    check_str,
    check_str_sequence,
    normalize_rng,
)
from lowrank.adapter._checks import as_float_array, check_features, check_finite
from lowrank.errors import InputError, ShapeError, StateError

__all__ = ["Layer"]


class Layer(abc.ABC):
    """Base class of the adapter layers.

    Subclasses register parameters with ``_add_parameter`` and implement ``_forward`` and
    ``_backward`` (the bodies on validated arrays); the public methods here validate and
    call them.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import Layer, Linear
    >>> layer = Linear(np.array([[1.0, 2.0]]), np.array([0.5]))
    >>> isinstance(layer, Layer), sorted(layer.parameters())
    (True, ['bias', 'weight'])
    """

    def __init__(self) -> None:
        self._params: dict[str, Array] = {}
        self._requires_grad: dict[str, bool] = {}
        self._grads: dict[str, Array] = {}
        self._output_shape: tuple[int, ...] | None = None

    # -- parameters ---------------------------------------------------------------------

    def _add_parameter(self, name: str, value: Array, *, requires_grad: bool) -> None:
        self._params[name] = value
        self._requires_grad[name] = requires_grad

    def parameters(self) -> dict[str, Array]:
        """All parameters by name.

        Returns
        -------
        dict of str to ndarray
            A new dict, in registration order, of the layer's own arrays: writing to them
            changes the layer (this is how optimisers update it).

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.array([[1.0, 2.0]]), np.array([0.5]))
        >>> layer.parameters()
        {'weight': array([[1., 2.]]), 'bias': array([0.5])}
        >>> layer.parameters()["bias"][0] = 3.0  # in place: the layer changes
        >>> layer.parameters()["bias"]
        array([3.])
        """
        return dict(self._params)

    def trainable_parameters(self) -> dict[str, Array]:
        """The parameters whose ``requires_grad`` flag is set.

        Returns
        -------
        dict of str to ndarray
            The layer's own arrays (as :meth:`parameters`), trainable ones only.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.array([[1.0, 2.0]]), np.array([0.5]))
        >>> layer.freeze(["bias"])
        >>> list(layer.trainable_parameters())
        ['weight']
        """
        return {k: v for k, v in self._params.items() if self._requires_grad[k]}

    def gradients(self) -> dict[str, Array]:
        """Gradients from the last backward pass, for the trainable parameters it reached.

        Each backward pass replaces them (gradients are not accumulated).

        Returns
        -------
        dict of str to ndarray
            By parameter name, each of its parameter's shape and dtype; empty before the
            first backward pass. Frozen parameters have no entry.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.array([[1.0, 2.0]]), np.array([0.5]))
        >>> _ = layer.forward(np.array([[1.0, 1.0], [2.0, 0.0]]))
        >>> _ = layer.backward(np.ones((2, 1)))
        >>> layer.gradients()  # weight: G^T x, bias: G^T 1
        {'weight': array([[3., 1.]]), 'bias': array([2.])}
        """
        return dict(self._grads)

    def requires_grad(self, name: str) -> bool:
        """Whether parameter ``name`` is trainable.

        Parameters
        ----------
        name : str
            A parameter of this layer (a key of :meth:`parameters`).

        Returns
        -------
        bool
            Its ``requires_grad`` flag.

        Raises
        ------
        InputError
            ``name`` is not a string, or names no parameter of this layer.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter import LoRALinear
        >>> layer = LoRALinear.from_factors(np.eye(2), np.ones((1, 2)), np.zeros((2, 1)), alpha=1.0)
        >>> layer.requires_grad("base_layer.weight"), layer.requires_grad("lora_A.default.weight")
        (False, True)
        """
        self._check_names([check_str(name, name="name")], param="name")
        return self._requires_grad[name]

    def _check_names(self, names: Iterable[str], *, param: str = "names") -> list[str]:
        checked = list(check_str_sequence(names, name=param))
        for n in checked:
            if n not in self._params:
                known = ", ".join(repr(k) for k in self._params) or "none"
                raise InputError(f"{param}: parameter name must be one of {known}; got {n!r}")
        return checked

    def _default_trainable(self) -> list[str]:
        """What :meth:`unfreeze` without names unfreezes (all parameters by default)."""
        return list(self._params)

    def freeze(self, names: Iterable[str] | None = None) -> None:
        """Mark ``names`` (default: every parameter) as not trainable.

        Their stored gradients are dropped; optimisers then leave them unchanged.

        Parameters
        ----------
        names : iterable of str or None, default None
            Parameters of this layer; None freezes all of them.

        Raises
        ------
        InputError
            A name that is not a string or names no parameter of this layer (then no flag
            changes).

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.ones((2, 3)), np.zeros(2))
        >>> layer.freeze(["weight"]); layer.num_trainable_parameters()
        2
        >>> layer.freeze(); layer.has_trainable
        False
        """
        for n in self._check_names(self._params if names is None else names):
            self._requires_grad[n] = False
            self._grads.pop(n, None)

    def unfreeze(self, names: Iterable[str] | None = None) -> None:
        """Mark ``names`` as trainable (default: the layer's natural trainable set).

        Parameters
        ----------
        names : iterable of str or None, default None
            Parameters of this layer. None unfreezes the natural set: every parameter of a
            :class:`~lowrank.adapter.nn.Linear`; the adapter factors, not the base weight
            and bias, of a :class:`~lowrank.adapter.LoRALinear`.

        Raises
        ------
        InputError
            A name that is not a string or names no parameter of this layer (then no flag
            changes).

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter import LoRALinear
        >>> layer = LoRALinear.from_factors(np.eye(2), np.ones((1, 2)), np.zeros((2, 1)), alpha=1.0)
        >>> layer.freeze(); layer.unfreeze()
        >>> sorted(layer.trainable_parameters())
        ['lora_A.default.weight', 'lora_B.default.weight']
        >>> layer.unfreeze(["base_layer.weight"]); layer.requires_grad("base_layer.weight")
        True
        """
        for n in self._check_names(self._default_trainable() if names is None else names):
            self._requires_grad[n] = True

    def load_parameters(self, values: Mapping[str, ArrayLike]) -> None:
        """Copy ``values`` into the parameters of the same names, in place.

        For a LoRA layer the names are PEFT's state-dict keys (``"base_layer.weight"``,
        ``"lora_A.default.weight"``, ...), so a PEFT module's tensors (as NumPy arrays) load
        unchanged. Values are converted to the layer's dtype. Either every value is loaded
        or, if one is invalid, none is.

        Parameters
        ----------
        values : mapping of str to array_like
            New values by parameter name, each of its parameter's shape; parameters not
            named keep their values. The ``requires_grad`` flags do not change.

        Raises
        ------
        InputError
            An unknown name.
        StateError
            For a LoRA layer, any load while adapters are merged.
        ShapeError, DTypeError, NonFiniteError
            A value of the wrong shape, a non-real dtype, or NaN or infinity.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.zeros((1, 2)), np.zeros(1))
        >>> layer.load_parameters({"weight": [[1, 2]]})  # converted to float64
        >>> layer.parameters()
        {'weight': array([[1., 2.]]), 'bias': array([0.])}
        """
        self._write_parameters(self._prepare_load(values))

    def _prepare_load(self, values: Mapping[str, ArrayLike]) -> dict[str, Array]:
        check_mapping(values, name="values")
        checked: dict[str, Array] = {}
        for n in self._check_names(values, param="values"):
            current = self._params[n]
            arr = as_float_array(values[n], name=n, dtype=None)
            if arr.shape != current.shape:
                raise ShapeError(f"{n} must have shape {current.shape}; got {arr.shape}")
            if arr.dtype != current.dtype:
                # Checked in the layer's dtype: 1e39 in float64 is inf in a float32 layer.
                with np.errstate(over="ignore"):
                    arr = arr.astype(current.dtype)
                check_finite(arr, name=f"{n} (in {current.dtype.name})")
            checked[n] = arr
        return checked

    def _write_parameters(self, checked: Mapping[str, Array]) -> None:
        for n, arr in checked.items():
            self._params[n][...] = arr

    def num_parameters(self) -> int:
        """Number of scalars in all parameters, trainable or not.

        Returns
        -------
        int

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter import LoRALinear
        >>> layer = LoRALinear.from_factors(np.eye(4), np.ones((1, 4)), np.zeros((4, 1)), alpha=1.0)
        >>> layer.num_parameters()  # 4 * 4 base + 1 * (4 + 4) adapter
        24
        """
        return sum(int(v.size) for v in self._params.values())

    def num_trainable_parameters(self) -> int:
        r"""Number of scalars in the trainable parameters.

        Returns
        -------
        int
            For a LoRA layer with its base frozen, :math:`r\,(\mathrm{in} + \mathrm{out})`
            per adapter.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter import LoRALinear
        >>> layer = LoRALinear.from_factors(np.eye(4), np.ones((1, 4)), np.zeros((4, 1)), alpha=1.0)
        >>> layer.num_trainable_parameters()  # r * (in + out)
        8
        """
        return sum(int(v.size) for v in self.trainable_parameters().values())

    @property
    def has_trainable(self) -> bool:
        """bool: Whether any parameter of the layer is trainable."""
        return any(self._requires_grad.values())

    # -- shape and dtype ----------------------------------------------------------------

    @property
    def in_features(self) -> int | None:
        """int or None: Size of the last input axis, or None for shape-agnostic layers."""
        return None

    @property
    def out_features(self) -> int | None:
        """int or None: Size of the last output axis, or None for shape-agnostic layers."""
        return None

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """numpy.dtype or None: The dtype the layer computes in, or None if it follows its input."""
        return None

    # -- forward and backward -----------------------------------------------------------

    def _check_input(self, x: ArrayLike) -> Array:
        arr = as_float_array(x, name="x", dtype=self.dtype)
        if self.in_features is not None:
            check_features(arr, name="x", features=self.in_features, owner=self._in_owner())
        return arr

    def _in_owner(self) -> str:
        return "weight's in_features"

    def forward(self, x: ArrayLike, *, training: bool = False, rng: RNGLike = None) -> Array:
        """Output of the layer for ``x`` of shape ``(..., in_features)``.

        Parameters
        ----------
        x : array_like
            float32 and float64 data in the layer's dtype; integers and the narrow floats
            (float16, bfloat16, float8), which both layer dtypes hold exactly, are converted.
        training : bool, default False
            Training mode: dropout is active.
        rng : None, int or numpy.random.Generator
            Randomness for dropout in training mode.

        Returns
        -------
        ndarray of shape ``(..., out_features)``

        Raises
        ------
        ShapeError
            The last axis of ``x`` is not ``in_features``.
        DTypeError
            ``x`` is not real, or is float32 for a float64 layer or float64 for a float32
            one.
        NonFiniteError
            ``x`` or a parameter holds NaN or infinity (one ``min`` and one ``max`` per
            parameter, small beside the forward pass).
        InputError
            ``x`` cannot be read as an array, ``training`` is not a bool, or a bad ``rng``.
        StateError
            Training merged LoRA adapters.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.array([[1.0, 2.0]]), np.array([0.5]))
        >>> layer.forward(np.array([[1.0, 1.0], [2.0, 0.0]]))
        array([[3.5],
               [2.5]])
        >>> layer.forward(np.ones((4, 3, 2))).shape  # leading axes are kept
        (4, 3, 1)
        """
        training = check_bool(training, name="training")
        arr = self._check_input(x)
        gen = normalize_rng(rng)  # checked in evaluation mode too, where it is not used
        self._check_parameters_finite()
        y = self._forward(arr, training=training, rng=gen if training else None)
        self._output_shape = y.shape
        return y

    def _check_parameters_finite(self, *, prefix: str = "") -> None:
        """Raise :class:`~lowrank.errors.NonFiniteError` if a parameter holds NaN or infinity
        (named ``prefix + name``, the network's key when called for a network)."""
        for name, value in self._params.items():
            check_finite(value, name=f"parameter {prefix + name!r}")

    def backward(self, grad_output: ArrayLike) -> Array:
        """Input gradient for ``grad_output`` :math:`= \\partial L/\\partial y` of the last
        forward pass; parameter gradients are stored (see :meth:`gradients`).

        Parameters
        ----------
        grad_output : array_like, shape of the last output
            :math:`G`, the gradient of a scalar loss with respect to the output of the last
            :meth:`forward`, in the layer's dtype (converted as ``x`` is by :meth:`forward`).

        Returns
        -------
        ndarray, shape of the last input
            :math:`\\partial L/\\partial x` (for a dense layer :math:`G W`). The gradients of
            the trainable parameters replace those of :meth:`gradients`.

        Raises
        ------
        StateError
            No forward pass was run.
        ShapeError, DTypeError, NonFiniteError
            ``grad_output`` does not have the last output's shape or dtype, or is not finite.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear
        >>> layer = Linear(np.array([[1.0, 2.0]]), np.array([0.5]))
        >>> _ = layer.forward(np.array([[1.0, 1.0], [2.0, 0.0]]))
        >>> layer.backward(np.ones((2, 1)))  # G W
        array([[1., 2.],
               [1., 2.]])
        """
        if self._output_shape is None:
            raise StateError("backward() needs a preceding forward(); none was run")
        g = as_float_array(grad_output, name="grad_output", dtype=self.dtype)
        if g.shape != self._output_shape:
            raise ShapeError(
                f"grad_output must have the shape of the last forward output, "
                f"{self._output_shape}; got {g.shape}"
            )
        return cast(Array, self._backward(g, need_input_grad=True))

    def _forward_body(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        """Forward on a clean input, recording the output shape for :meth:`backward`."""
        y = self._forward(x, training=training, rng=rng)
        self._output_shape = y.shape
        return y

    @abc.abstractmethod
    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        """Forward on a clean input; caches what backward needs."""

    @abc.abstractmethod
    def _backward(self, g: Array, *, need_input_grad: bool) -> Array | None:
        """Backward on a clean gradient; stores parameter gradients in ``self._grads``."""
