r"""A feed-forward chain of layers with named parameters, freeze flags and backpropagation.

Parameter keys are ``"<index>.<layer key>"``, as in ``torch.nn.Sequential``'s state dict
(``"0.weight"``, ``"2.lora_A.default.weight"``).

Notes
-----
For :math:`y = f_L(\cdots f_1(x))` and :math:`G_L = \partial L/\partial y`, backpropagation
computes :math:`G_{\ell-1} = J_{f_\ell}^\top G_\ell` from the top down. The training path
(``Network._backward``, used by :func:`~lowrank.adapter.nn.training.train`) stops at the lowest
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
        """tuple of Layer: The layers, bottom to top (the network's own, not copies)."""
        return self._layers

    @property
    def in_features(self) -> int:
        """int: Size of the input's last axis, the first featured layer's ``in_features``."""
        return int(self._first.in_features or 0)

    @property
    def out_features(self) -> int:
        """int: Size of the output's last axis, the last featured layer's ``out_features``."""
        return int(self._last.out_features or 0)

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy.dtype: The float dtype all featured layers share (float32 or float64)."""
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
        """All parameters by key ``"<index>.<layer key>"``.

        Returns
        -------
        dict of str to ndarray
            The layers' own arrays (writing to them changes the network), bottom to top.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> list(net.parameters())  # the ReLU at index 1 has none
        ['0.weight', '2.weight']
        """
        return self._collect("parameters")

    def trainable_parameters(self) -> dict[str, Array]:
        """The trainable parameters by key ``"<index>.<layer key>"``.

        Returns
        -------
        dict of str to ndarray
            The layers' own arrays whose ``requires_grad`` flag is set; what an optimiser
            updates.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.layers[0].freeze()
        >>> list(net.trainable_parameters())
        ['2.weight']
        """
        return self._collect("trainable_parameters")

    def gradients(self) -> dict[str, Array]:
        """Gradients of the last backward pass by key ``"<index>.<layer key>"``.

        Returns
        -------
        dict of str to ndarray
            One entry per trainable parameter the last backward pass reached, of its
            parameter's shape; empty before the first backward pass.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.layers[0].freeze()
        >>> _ = net.forward(np.ones((5, 3)))
        >>> _ = net.backward(np.ones((5, 2)))
        >>> {k: g.shape for k, g in net.gradients().items()}
        {'2.weight': (2, 4)}
        """
        return self._collect("gradients")

    def load_parameters(self, values: Mapping[str, ArrayLike]) -> None:
        """Copy ``values`` into the layers' parameters, in place; all or nothing.

        Parameters
        ----------
        values : mapping of str to array_like
            New values by key ``"<index>.<layer key>"`` (as :meth:`parameters` gives them),
            each of its parameter's shape; parameters not named keep their values. Values
            are converted to the layer's dtype; freeze flags do not change.

        Raises
        ------
        InputError
            A key that names no parameter.
        StateError
            A LoRA layer with merged adapters.
        ShapeError, DTypeError, NonFiniteError
            As for :meth:`~lowrank.adapter.nn.base.Layer.load_parameters`.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.load_parameters({"0.weight": np.zeros((4, 3))})
        >>> net.forward(np.ones((1, 3)))
        array([[0., 0.]])
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
        """Number of scalars in all parameters, trainable or not.

        Returns
        -------
        int

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.num_parameters()  # 4 * 3 + 2 * 4
        20
        """
        return sum(layer.num_parameters() for layer in self._layers)

    def num_trainable_parameters(self) -> int:
        """Number of scalars in the trainable parameters.

        Returns
        -------
        int

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.layers[0].freeze(); net.num_trainable_parameters()
        8
        """
        return sum(layer.num_trainable_parameters() for layer in self._layers)

    def with_head(self, head: Layer) -> Network:
        """A network with this one's layers, the last one replaced by ``head``.

        The layers below are shared, not copied: training either network changes the body
        of both. With the body frozen this is the "frozen body + new head" method of
        task-incremental learning (a head per task): the old network still answers the
        old task with its old head, the new one the new task.

        Parameters
        ----------
        head : Layer
            The new top layer; its ``in_features`` must be the old top layer's (its
            ``out_features``, the number of classes of the new task, may differ). It must
            not already be a layer of this network.

        Returns
        -------
        Network
            ``Network([*self.layers[:-1], head])``.

        Raises
        ------
        InputError
            ``head`` is not a :class:`~lowrank.adapter.nn.base.Layer`, is a layer of this
            network already, or the network would have no layer with features.
        ShapeError
            ``head.in_features`` differs from the layer below's ``out_features``.
        DTypeError
            ``head`` has another dtype than the body.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> task1 = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> task2 = task1.with_head(Linear(np.zeros((5, 4))))
        >>> task2.out_features, task2.layers[0] is task1.layers[0]
        (5, True)
        >>> for layer in task2.layers[:-1]:
        ...     layer.freeze()
        >>> task2.num_trainable_parameters()  # the new head only
        20
        """
        if not isinstance(head, Layer):
            raise InputError(
                f"head must be a lowrank.adapter.nn Layer; got {head!r} of type "
                f"{type(head).__name__}"
            )
        if any(head is layer for layer in self._layers):
            raise InputError("head must be a new layer; it is a layer of this network already")
        return Network([*self._layers[:-1], head])

    def parametric_indices(self) -> tuple[int, ...]:
        """Indices of the layers that have parameters, bottom to top.

        Returns
        -------
        tuple of int
            Positions in :attr:`layers` (activations have no parameters); what
            :class:`~lowrank.adapter.nn.GradualUnfreezing` counts from the top.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.parametric_indices()
        (0, 2)
        """
        return tuple(i for i, layer in enumerate(self._layers) if layer.parameters())

    # -- forward and backward -----------------------------------------------------------

    def check_input(self, x: ArrayLike) -> Array:
        """``x`` validated for this network, as :meth:`forward` checks it.

        Parameters
        ----------
        x : array_like, shape ``(..., in_features)``
            Real and finite. float32 and float64 data must be in the network's dtype;
            integers and the narrow floats (float16, bfloat16, float8), which both layer
            dtypes hold exactly, are converted to it.

        Returns
        -------
        ndarray, shape ``(..., in_features)``
            ``x`` as an array of the network's dtype (not copied when it already is one).

        Raises
        ------
        ShapeError
            ``x`` is 0-d or its last axis is not ``in_features``.
        DTypeError
            ``x`` is not real, or is float32 in a float64 network or float64 in a float32
            one.
        NonFiniteError
            ``x`` holds NaN or infinity.
        InputError
            ``x`` cannot be read as an array.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.check_input([[1, 2, 3]])
        array([[1., 2., 3.]])
        >>> net.check_input(np.array([[0.5, 1, 2]], dtype=np.float16)).dtype
        dtype('float64')
        """
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
        ShapeError, DTypeError, NonFiniteError, InputError
            ``x`` as for :meth:`check_input`; ``training`` not a bool or a bad ``rng``.
        NonFiniteError
            Also: a parameter holds NaN or infinity (e.g. left so by a diverged run), which
            would make the output meaningless. Checking costs one ``min`` and one ``max``
            per parameter, small beside the products of the forward pass.
        StateError
            Training merged LoRA adapters of a :class:`~lowrank.adapter.LoRALinear` layer.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> net.forward(np.ones((5, 3)))[0]  # relu(1 * 3) summed over 4 units
        array([12., 12.])
        """
        arr = self.check_input(x)
        training = check_bool(training, name="training")
        gen = normalize_rng(rng)  # checked in evaluation mode too, where it is not used
        self._check_parameters_finite()
        return self._forward(arr, training=training, rng=gen if training else None)

    def _check_parameters_finite(self) -> None:
        """Raise :class:`~lowrank.errors.NonFiniteError` naming the first parameter that holds
        NaN or infinity."""
        for i, layer in enumerate(self._layers):
            layer._check_parameters_finite(prefix=f"{i}.")

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        for layer in self._layers:
            x = layer._forward_body(x, training=training, rng=rng)
        self._output_shape = x.shape
        return x

    def backward(self, grad_output: ArrayLike) -> Array:
        """Input gradient for ``grad_output`` of the last forward pass, propagated through every
        layer; parameter gradients are stored (see :meth:`gradients`).

        Parameters
        ----------
        grad_output : array_like, shape of the last output
            :math:`\\partial L/\\partial y` for the output of the last :meth:`forward`, in the
            network's dtype (converted as ``x`` is by :meth:`check_input`).

        Returns
        -------
        ndarray, shape of the last input
            :math:`\\partial L/\\partial x`. (Training uses a path that stops at the lowest
            trainable layer instead; this one always reaches the input.)

        Raises
        ------
        StateError
            No forward pass was run.
        ShapeError, DTypeError, NonFiniteError
            ``grad_output`` does not match the last output, or is not finite.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.adapter.nn import Linear, ReLU
        >>> net = Network([Linear(np.ones((4, 3))), ReLU(), Linear(np.ones((2, 4)))])
        >>> _ = net.forward(np.ones((5, 3)))
        >>> net.backward(np.ones((5, 2)))[0]  # two outputs, four units, weights of one
        array([8., 8., 8.])
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
