r"""A feed-forward chain of layers with named parameters, freeze flags and backpropagation.

Parameter keys are ``"<index>.<layer key>"``, as in ``torch.nn.Sequential``'s state dict
(``"0.weight"``, ``"2.lora_A.default.weight"``).

Notes
-----
For :math:`y = f_L(\cdots f_1(x))` and :math:`G_L = \partial L/\partial y`, backpropagation
computes :math:`G_{\ell-1} = J_{f_\ell}^\top G_\ell` from the top down. The training path
(:meth:`Network._backward`, used by :func:`~lowrank.adapter.nn.training.train`) stops at the lowest
layer that has a trainable parameter: below it nothing needs a gradient, so freezing the lower
layers (head-only fine-tuning, gradual unfreezing) also saves their backward cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np

from lowrank._typing import Array, ArrayLike, RNGLike
from lowrank._validation import check_bool, check_mapping, normalize_rng
from lowrank.adapter._checks import as_float_array
from lowrank.adapter.nn.base import Layer
from lowrank.errors import DTypeError, InputError, ShapeError, StateError

__all__ = ["Network"]


class Network:
    """Layers applied in sequence.

    Parameters
    ----------
    layers : sequence of Layer
        At least one layer with features (:class:`~lowrank.adapter.nn.dense.Linear` or
        :class:`~lowrank.adapter.lora_linear.LoRALinear`); the ``out_features`` of each such
        layer must equal the ``in_features`` of the next, and all share one dtype. The
        layers are used, not copied.

    Raises
    ------
    InputError
        An empty sequence, an element that is not a :class:`~lowrank.adapter.nn.base.Layer`, the
        same layer object twice, or no layer with features.
    ShapeError
        Consecutive feature counts do not match.
    DTypeError
        Layers of different dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.adapter.nn import Linear, ReLU
    >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
    >>> net.forward(np.ones((5, 3))).shape
    (5, 2)
    >>> net.num_trainable_parameters()
    20
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        given: object = layers
        if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
            raise InputError(
                f"layers must be a sequence of lowrank.adapter.nn Layer objects; got {layers!r}"
            )
        checked = tuple(layers)
        if not checked:
            raise InputError("layers must contain at least one layer; got an empty sequence")
        for i, layer in enumerate(checked):
            if not isinstance(layer, Layer):
                raise InputError(
                    f"layers[{i}] must be a lowrank.adapter.nn Layer; got {type(layer).__name__}"
                )
        seen: dict[int, int] = {}
        for i, layer in enumerate(checked):
            if id(layer) in seen:
                # One object twice would share its forward cache between the two positions,
                # and backward would then use the wrong inputs.
                raise InputError(
                    f"layers[{i}] is the same object as layers[{seen[id(layer)]}]; "
                    f"use a separate layer instance for each position"
                )
            seen[id(layer)] = i
        featured = [(i, layer) for i, layer in enumerate(checked) if layer.in_features is not None]
        if not featured:
            raise InputError(
                "layers must include a Linear or LoRALinear layer to fix the feature counts"
            )
        for (i, prev), (j, nxt) in itertools.pairwise(featured):
            if prev.out_features != nxt.in_features:
                raise ShapeError(
                    f"layers[{j}] has in_features={nxt.in_features} but layers[{i}] before it "
                    f"has out_features={prev.out_features}"
                )
        dtypes = {layer.dtype for _, layer in featured}
        if len(dtypes) > 1:
            listed = ", ".join(f"layers[{i}]: {layer.dtype}" for i, layer in featured)
            raise DTypeError(f"layers must share one dtype; got {listed}")
        self._layers = checked
        self._first = featured[0][1]
        self._last = featured[-1][1]
        self._output_shape: tuple[int, ...] | None = None

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, bottom to top."""
        return self._layers

    @property
    def in_features(self) -> int:
        return int(self._first.in_features or 0)

    @property
    def out_features(self) -> int:
        return int(self._last.out_features or 0)

    @property
    def dtype(self) -> np.dtype[Any]:
        return cast("np.dtype[Any]", self._first.dtype)

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers)

    # -- parameters ---------------------------------------------------------------------

    def _collect(self, per_layer: str) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for i, layer in enumerate(self._layers):
            for k, v in getattr(layer, per_layer)().items():
                out[f"{i}.{k}"] = v
        return out

    def parameters(self) -> dict[str, Array]:
        """All parameters by key (the layers' own arrays)."""
        return self._collect("parameters")

    def trainable_parameters(self) -> dict[str, Array]:
        """The trainable parameters by key."""
        return self._collect("trainable_parameters")

    def gradients(self) -> dict[str, Array]:
        """Gradients of the last backward pass by key (trainable parameters only)."""
        return self._collect("gradients")

    def load_parameters(self, values: Mapping[str, ArrayLike]) -> None:
        """Copy ``values`` (keys ``"<index>.<layer key>"``, as :meth:`parameters` gives them)
        into the layers' parameters, in place; all or nothing.

        Raises
        ------
        InputError
            A key that names no parameter.
        StateError
            A LoRA layer with merged adapters.
        ShapeError, DTypeError, NonFiniteError
            As for :meth:`~lowrank.adapter.nn.base.Layer.load_parameters`.
        """
        check_mapping(values, name="values")
        per_layer: dict[int, dict[str, ArrayLike]] = {}
        known = self.parameters()
        for key, value in values.items():
            if key not in known:
                listed = ", ".join(repr(k) for k in known)
                raise InputError(f"values: parameter key must be one of {listed}; got {key!r}")
            index, name = key.split(".", 1)
            per_layer.setdefault(int(index), {})[name] = value
        prepared = {i: self._layers[i]._prepare_load(v) for i, v in per_layer.items()}
        for i, checked in prepared.items():
            self._layers[i]._write_parameters(checked)

    def num_parameters(self) -> int:
        """Number of scalars in all parameters."""
        return sum(layer.num_parameters() for layer in self._layers)

    def num_trainable_parameters(self) -> int:
        """Number of scalars in the trainable parameters."""
        return sum(layer.num_trainable_parameters() for layer in self._layers)

    def parametric_indices(self) -> tuple[int, ...]:
        """Indices of the layers that have parameters, bottom to top."""
        return tuple(i for i, layer in enumerate(self._layers) if layer.parameters())

    # -- forward and backward -----------------------------------------------------------

    def check_input(self, x: ArrayLike) -> Array:
        """``x`` validated for this network: a finite float array of shape
        ``(..., in_features)`` in the network's dtype (see :meth:`forward` for the errors)."""
        arr = as_float_array(x, name="x", dtype=self.dtype)
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise ShapeError(
                f"x must have shape (..., {self.in_features}) to match the network's "
                f"in_features={self.in_features}; got {arr.shape}"
            )
        return arr

    def forward(self, x: ArrayLike, *, training: bool = False, rng: RNGLike = None) -> Array:
        """Output for ``x`` of shape ``(..., in_features)``.

        Parameters
        ----------
        x : array_like
        training : bool, default False
            Training mode (dropout active).
        rng : None, int or numpy.random.Generator
            Randomness for dropout, normalised once and shared by all layers.

        Returns
        -------
        ndarray of shape ``(..., out_features)``

        Raises
        ------
        ShapeError, DTypeError, NonFiniteError
            ``x`` of the wrong feature count or dtype, or with NaN or infinity.
        """
        arr = self.check_input(x)
        training = check_bool(training, name="training")
        gen = normalize_rng(rng)  # checked in evaluation mode too, where it is not used
        return self._forward(arr, training=training, rng=gen if training else None)

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        for layer in self._layers:
            x = layer._forward_body(x, training=training, rng=rng)
        self._output_shape = x.shape
        return x

    def backward(self, grad_output: ArrayLike) -> Array:
        """Input gradient for ``grad_output`` of the last forward pass, propagated through every
        layer; parameter gradients are stored (see :meth:`gradients`).

        Raises
        ------
        StateError
            No forward pass was run.
        ShapeError, DTypeError, NonFiniteError
            ``grad_output`` does not match the last output, or is not finite.
        """
        if self._output_shape is None:
            raise StateError("backward() needs a preceding forward(); none was run")
        g = as_float_array(grad_output, name="grad_output", dtype=self.dtype)
        if g.shape != self._output_shape:
            raise ShapeError(
                f"grad_output must have the shape of the last forward output, "
                f"{self._output_shape}; got {g.shape}"
            )
        for layer in reversed(self._layers):
            g = cast(Array, layer._backward(g, need_input_grad=True))
        return g

    def _backward(self, g: Array) -> None:
        """Parameter gradients only, stopping at the lowest layer with a trainable parameter."""
        lowest = next((i for i, layer in enumerate(self._layers) if layer.has_trainable), None)
        for layer in self._layers:
            layer._grads = {}
        if lowest is None:
            return
        for i in range(len(self._layers) - 1, lowest - 1, -1):
            result = self._layers[i]._backward(g, need_input_grad=i > lowest)
            if result is not None:
                g = result

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self._layers)
        return f"Network([\n  {inner}\n])"
