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
from lowrank.adapter._checks import as_float_array, check_features
from lowrank.errors import InputError, ShapeError, StateError

__all__ = ["Layer"]


class Layer(abc.ABC):
    """Base class of the adapter layers.

    Subclasses register parameters with :meth:`_add_parameter` and implement
    :meth:`_forward` and :meth:`_backward`.
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
        """All parameters by name. The arrays are the layer's own: writing to them changes
        the layer (this is how optimisers update it)."""
        return dict(self._params)

    def trainable_parameters(self) -> dict[str, Array]:
        """The parameters whose ``requires_grad`` flag is set."""
        return {k: v for k, v in self._params.items() if self._requires_grad[k]}

    def gradients(self) -> dict[str, Array]:
        """Gradients from the last backward pass, for the trainable parameters it reached.

        Each backward pass replaces them (gradients are not accumulated).
        """
        return dict(self._grads)

    def requires_grad(self, name: str) -> bool:
        """Whether parameter ``name`` is trainable."""
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
        """Mark ``names`` (default: every parameter) as not trainable."""
        for n in self._check_names(self._params if names is None else names):
            self._requires_grad[n] = False
            self._grads.pop(n, None)

    def unfreeze(self, names: Iterable[str] | None = None) -> None:
        """Mark ``names`` as trainable (default: the layer's natural trainable set; for a
        LoRA layer that is the adapter factors, not the base weight)."""
        for n in self._check_names(self._default_trainable() if names is None else names):
            self._requires_grad[n] = True

    def load_parameters(self, values: Mapping[str, ArrayLike]) -> None:
        """Copy ``values`` into the parameters of the same names, in place.

        For a LoRA layer the names are PEFT's state-dict keys (``"base_layer.weight"``,
        ``"lora_A.default.weight"``, ...), so a PEFT module's tensors (as NumPy arrays) load
        unchanged. Values are converted to the layer's dtype. Either every value is loaded
        or, if one is invalid, none is.

        Raises
        ------
        InputError
            An unknown name.
        StateError
            For a LoRA layer, any load while adapters are merged.
        ShapeError, DTypeError, NonFiniteError
            A value of the wrong shape, a non-real dtype, or NaN or infinity.
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
            checked[n] = arr
        return checked

    def _write_parameters(self, checked: Mapping[str, Array]) -> None:
        for n, arr in checked.items():
            self._params[n][...] = arr

    def num_parameters(self) -> int:
        """Number of scalars in all parameters."""
        return sum(int(v.size) for v in self._params.values())

    def num_trainable_parameters(self) -> int:
        """Number of scalars in the trainable parameters."""
        return sum(int(v.size) for v in self.trainable_parameters().values())

    @property
    def has_trainable(self) -> bool:
        """Whether any parameter of the layer is trainable."""
        return any(self._requires_grad.values())

    # -- shape and dtype ----------------------------------------------------------------

    @property
    def in_features(self) -> int | None:
        """Size of the last input axis, or None for shape-agnostic layers."""
        return None

    @property
    def out_features(self) -> int | None:
        """Size of the last output axis, or None for shape-agnostic layers."""
        return None

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """The dtype the layer computes in, or None if it follows its input."""
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
            In the layer's dtype (integers are converted).
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
            ``x`` is not real, or is a float of another precision than the layer's.
        NonFiniteError
            ``x`` holds NaN or infinity.
        InputError
            ``x`` cannot be read as an array.
        StateError
            Training merged LoRA adapters.
        """
        training = check_bool(training, name="training")
        arr = self._check_input(x)
        gen = normalize_rng(rng)  # checked in evaluation mode too, where it is not used
        y = self._forward(arr, training=training, rng=gen if training else None)
        self._output_shape = y.shape
        return y

    def backward(self, grad_output: ArrayLike) -> Array:
        """Input gradient for ``grad_output`` :math:`= \\partial L/\\partial y` of the last
        forward pass; parameter gradients are stored (see :meth:`gradients`).

        Raises
        ------
        StateError
            No forward pass was run.
        ShapeError, DTypeError, NonFiniteError
            ``grad_output`` does not have the last output's shape or dtype, or is not finite.
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
