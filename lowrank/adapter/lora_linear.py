r"""A LoRA linear layer: frozen base weight and bias, named low-rank adapters, merging.

Parameters are named as in PEFT's ``lora.Linear`` state dict, so that arrays move between
the two without renaming:

========================  ====================================================  ====================
key                       shape                                                 trainable by default
========================  ====================================================  ====================
``base_layer.weight``     ``(out, in)``; ``(in, out)`` with ``fan_in_fan_out``  no
``base_layer.bias``       ``(out,)``                                            no
``lora_A.<name>.weight``  ``(r, in)``                                           yes
``lora_B.<name>.weight``  ``(out, r)``                                          yes
========================  ====================================================  ====================

With ``fan_in_fan_out`` (GPT-2's ``Conv1D``, PEFT's ``fan_in_fan_out=True``) the base weight is
*stored* ``(in, out)`` and the layer computes :math:`y = xW + b + \ldots`; the factors keep
their shapes and merging adds :math:`(sBA)^\top` to the stored weight, as in PEFT.

Notes
-----
With active (unmerged) adapters :math:`a`, each with factors :math:`A_a, B_a`, scaling
:math:`s_a` and dropout mask :math:`M_a`,

.. math::

    y = x W^\top + b + \sum_a s_a \big((x \odot M_a) A_a^\top\big) B_a^\top ,

and the backward pass is that of :func:`lowrank.adapter.functional.lora_backward`, summed over
adapters for :math:`\partial L/\partial x`. The dense :math:`B_a A_a` is formed only by
:meth:`LoRALinear.merge`, :meth:`LoRALinear.unmerge` and :meth:`LoRALinear.delta_weight`.

Merging adds :math:`s_a B_a A_a` to :math:`W` and unmerging subtracts it again (in reverse
order), so a round trip restores :math:`W` up to one rounding per addition. While an adapter
is merged its contribution lives in :math:`W` (whether or not it is active) and it is skipped
in the forward pass; training its factors is refused, because their gradients would no longer
reach the output through them and a later unmerge would subtract a different product.

References
----------
.. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
   arXiv:2106.09685.
.. [2] F. Meng, Z. Wang and M. Zhang, "PiSSA: Principal Singular Values and Singular Vectors
   Adaptation of Large Language Models", NeurIPS 2024, arXiv:2404.02948.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowrank._typing import Array, ArrayLike
from lowrank._validation import (
    check_bool,
    check_fraction,
    check_instance,
    check_str,
    check_str_sequence,
    normalize_rng,
)
from lowrank.adapter._checks import (
    check_adapter_name,
    check_bias,
    check_factors,
    check_weight,
    count_nonfinite,
)
from lowrank.adapter.functional import (
    _adapter_backward,
    _adapter_forward,
    _delta_weight,
    _dropout_mask,
)
from lowrank.adapter.nn.base import Layer
from lowrank.errors import InputError, NonFiniteError, ShapeError, StateError
from lowrank.lora import Extraction, LoRAInit
from lowrank.lora.conventions import lora_scaling

__all__ = ["AdapterConfig", "LoRALinear"]

_WEIGHT = "base_layer.weight"
_BIAS = "base_layer.bias"


def _a_key(name: str) -> str:
    return f"lora_A.{name}.weight"


def _b_key(name: str) -> str:
    return f"lora_B.{name}.weight"


@dataclass(frozen=True)
class AdapterConfig:
    """Hyper-parameters of one adapter, as PEFT's ``LoraConfig`` names them.

    Attributes
    ----------
    rank : int
        ``r``, the number of rows of ``lora_A``.
    alpha : float
        ``lora_alpha``.
    use_rslora : bool
    dropout : float
        ``lora_dropout``, the drop probability on the adapter's input.
    scaling : float
        ``alpha / r`` or ``alpha / sqrt(r)``.
    """

    rank: int
    alpha: float
    use_rslora: bool
    dropout: float
    scaling: float


@dataclass
class _Cache:
    x2: Array
    x_shape: tuple[int, ...]
    # (adapter name, dropped input, z = dropped input @ A.T, mask or None)
    adapters: list[tuple[str, Array, Array, Array | None]]


class LoRALinear(Layer):
    r"""A linear layer with a frozen base and any number of named LoRA adapters.

    Parameters
    ----------
    weight : array_like, shape ``(out_features, in_features)``
        The base weight :math:`W` (for PiSSA, the residual :math:`W_\mathrm{res}`). Copied;
        its dtype is the layer's (float32 or float64; float16 and integers are promoted).
    bias : array_like, shape ``(out_features,)``, optional
    train_base : bool, default False
        Make ``base_layer.weight`` and ``base_layer.bias`` trainable (full fine-tuning of
        the base alongside the adapters). LoRA proper keeps them frozen.
    fan_in_fan_out : bool, default False
        ``weight`` is stored ``(in_features, out_features)`` (GPT-2's ``Conv1D``): the layer
        computes :math:`xW`, its weight gradient is ``(in, out)``, and merging adds the
        transposed update. The factors keep their shapes.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
        A weight that is not a finite real matrix, or a bias of the wrong length.

    See Also
    --------
    LoRALinear.from_factors : a layer with one adapter in one call.
    LoRALinear.from_init : a layer from a :class:`lowrank.lora.LoRAInit`.
    LoRALinear.from_extraction : a layer from a :class:`lowrank.lora.Extraction`.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.eye(3)
    >>> layer = LoRALinear.from_factors(W, np.ones((1, 3)), np.ones((3, 1)), alpha=2.0)
    >>> layer.forward(np.array([[1.0, 0.0, 0.0]]))
    array([[3., 2., 2.]])
    >>> layer.num_trainable_parameters()  # r * (in + out)
    6
    >>> layer.merge(); layer.forward(np.array([[1.0, 0.0, 0.0]]))
    array([[3., 2., 2.]])
    >>> layer.unmerge(); bool(np.array_equal(layer.parameters()["base_layer.weight"], W))
    True
    """

    def __init__(
        self,
        weight: ArrayLike,
        bias: ArrayLike | None = None,
        *,
        train_base: bool = False,
        fan_in_fan_out: bool = False,
    ) -> None:
        super().__init__()
        train_base = check_bool(train_base, name="train_base")
        self._fan_in_fan_out = check_bool(fan_in_fan_out, name="fan_in_fan_out")
        W = check_weight(weight)
        self._add_parameter(_WEIGHT, W, requires_grad=train_base)
        if bias is not None:
            b = check_bias(bias, out_features=self.out_features, dtype=W.dtype)
            self._add_parameter(_BIAS, b, requires_grad=train_base)
        self._configs: dict[str, AdapterConfig] = {}
        self._active: tuple[str, ...] = ()
        self._merged: list[str] = []
        self._cache: _Cache | None = None

    @classmethod
    def from_factors(
        cls,
        weight: ArrayLike,
        lora_A: ArrayLike,
        lora_B: ArrayLike,
        *,
        alpha: float,
        bias: ArrayLike | None = None,
        use_rslora: bool = False,
        dropout: float = 0.0,
        adapter_name: str = "default",
        train_base: bool = False,
        fan_in_fan_out: bool = False,
    ) -> LoRALinear:
        """A layer with one active adapter ``adapter_name`` (PEFT's ``"default"``).

        For factors from :mod:`lowrank.lora`, :meth:`from_init` and :meth:`from_extraction`
        take the result whole (alpha, rsLoRA flag, layout and, for PiSSA, the residual base
        weight).

        Parameters
        ----------
        weight : array_like, shape ``(out_features, in_features)``
            The frozen base weight :math:`W` (``(in_features, out_features)`` with
            ``fan_in_fan_out``). Copied.
        lora_A : array_like, shape ``(r, in_features)``
            The adapter's down-projection :math:`A`, ``r >= 1``. Copied.
        lora_B : array_like, shape ``(out_features, r)``
            The adapter's up-projection :math:`B` (zeros for a freshly initialised LoRA).
            Copied.
        alpha : float
            ``lora_alpha`` > 0; the scaling is ``alpha / r`` (``alpha / sqrt(r)`` with
            ``use_rslora``).
        bias : array_like, shape ``(out_features,)``, optional
            The frozen base bias; default none.
        use_rslora : bool, default False
            rsLoRA scaling, ``alpha / sqrt(r)``.
        dropout : float, default 0.0
            Drop probability in ``[0, 1)`` on the adapter's input in training mode.
        adapter_name : str, default "default"
            Non-empty, without ``.``.
        train_base : bool, default False
            As the constructor's: make the base weight and bias trainable too.
        fan_in_fan_out : bool, default False
            As the constructor's: ``weight`` is stored ``(in_features, out_features)``.

        Returns
        -------
        LoRALinear
            The layer, with ``adapter_name`` its only (and active) adapter.

        Raises
        ------
        InputError
            A bad ``adapter_name``, ``alpha`` not finite and > 0, ``dropout`` outside
            ``[0, 1)``, or a flag that is not a bool.
        ShapeError, DTypeError, NonFiniteError
            A weight that is not a finite real matrix, factors whose shapes do not fit it
            (``lora_A`` ``(r, in_features)``, ``lora_B`` ``(out_features, r)``), or a bias
            of the wrong length.

        Examples
        --------
        >>> import numpy as np
        >>> layer = LoRALinear.from_factors(
        ...     np.eye(3), np.ones((1, 3)), np.zeros((3, 1)), alpha=16.0, adapter_name="task"
        ... )
        >>> layer.adapter_names, layer.active_adapters, layer.num_trainable_parameters()
        (('task',), ('task',), 6)
        >>> layer.adapter_config("task").scaling  # alpha / r
        16.0
        """
        check_adapter_name(adapter_name, param="adapter_name")
        layer = cls(weight, bias, train_base=train_base, fan_in_fan_out=fan_in_fan_out)
        layer.add_adapter(
            adapter_name, lora_A, lora_B, alpha=alpha, use_rslora=use_rslora, dropout=dropout
        )
        return layer

    @classmethod
    def from_init(
        cls,
        init: LoRAInit,
        *,
        weight: ArrayLike | None = None,
        bias: ArrayLike | None = None,
        dropout: float = 0.0,
        adapter_name: str = "default",
        train_base: bool = False,
    ) -> LoRALinear:
        r"""A layer with the factors of a LoRA initialisation, ready to train.

        Everything the init decided travels with it: ``lora_A``, ``lora_B``, ``alpha``,
        ``use_rslora`` (hence the scaling), ``fan_in_fan_out`` and, for the inits that move
        part of :math:`W` into the adapter (PiSSA, MiLoRA, OLoRA), the residual
        :math:`W_\mathrm{res}` as the frozen base weight. The layer's forward pass is then
        :math:`x W^\top` to rounding at the start, whatever the init.

        Parameters
        ----------
        init : LoRAInit
            From :func:`lowrank.lora.init_factors`, :func:`~lowrank.lora.pissa_init`,
            :func:`~lowrank.lora.milora_init`, :func:`~lowrank.lora.olora_init` or
            :func:`~lowrank.lora.lora_init`.
        weight : array_like, optional
            The base weight :math:`W` in the init's layout, for the inits without a residual
            (``"lora"``, ``"gaussian"``: :math:`BA = 0` leaves :math:`W` unchanged). Must be
            omitted when the init has a residual (the residual *is* the base).
        bias : array_like, shape ``(out_features,)``, optional
        dropout, adapter_name, train_base
            As :meth:`from_factors`.

        Returns
        -------
        LoRALinear
            One active adapter ``adapter_name``; the layer's dtype is the compute dtype of
            the init's (float16 and bfloat16 factors give a float32 layer).

        Raises
        ------
        InputError
            ``init`` is not a :class:`~lowrank.lora.LoRAInit`; ``weight`` missing for an init
            without residual, or given for one with a residual; bad ``dropout`` or names.
        ShapeError, DTypeError, NonFiniteError
            ``weight`` does not fit the factors, or is not a finite real matrix.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.lora import pissa_init
        >>> W = np.random.default_rng(0).standard_normal((5, 4))
        >>> layer = LoRALinear.from_init(pissa_init(W, 2, alpha=8.0))
        >>> layer.adapter_config("default").scaling
        4.0
        >>> x = np.ones((1, 4))
        >>> bool(np.allclose(layer.forward(x), x @ W.T))   # W_res + s B A = W
        True
        """
        init = check_instance(init, LoRAInit, name="init", what="a lowrank.lora.LoRAInit")
        if init.residual is not None and weight is not None:
            raise InputError(
                f"weight must be omitted for init={init.init!r}: its residual W - sBA is the "
                f"base weight (pass the original W to the initialiser instead)"
            )
        base = init.residual if init.residual is not None else weight
        if base is None:
            raise InputError(
                f"weight (the base W) is required for init={init.init!r}, which has no "
                f"residual: B = 0 leaves W unchanged"
            )
        W = cls._checked_base(
            base,
            init.lora_A,
            init.lora_B,
            fan_in_fan_out=init.fan_in_fan_out,
            what="init",
            name="weight" if init.residual is None else "init.residual",
        )
        return cls.from_factors(
            W,
            init.lora_A,
            init.lora_B,
            alpha=init.alpha,
            bias=bias,
            use_rslora=init.use_rslora,
            dropout=dropout,
            adapter_name=adapter_name,
            train_base=train_base,
            fan_in_fan_out=init.fan_in_fan_out,
        )

    @classmethod
    def from_extraction(
        cls,
        extraction: Extraction,
        W_base: ArrayLike,
        *,
        bias: ArrayLike | None = None,
        dropout: float = 0.0,
        adapter_name: str = "default",
        train_base: bool = False,
    ) -> LoRALinear:
        r"""A layer that is the base layer plus an extracted LoRA: :math:`W_0 + sBA`.

        ``lora_A``, ``lora_B``, ``alpha``, ``use_rslora`` and ``fan_in_fan_out`` come from
        the extraction; the base weight is ``W_base``, the :math:`W_0` it was extracted
        against. The merged weight approximates the fine-tuned :math:`W_1` with the
        extraction's error, :math:`\|W_1 - (W_0 + sBA)\|_F` = ``extraction.error_fro``.

        Parameters
        ----------
        extraction : Extraction
            From :func:`lowrank.lora.extract` (or one module of
            :func:`lowrank.lora.extract_many`).
        W_base : array_like
            :math:`W_0`, in the extraction's layout (``(in, out)`` if it was extracted with
            ``fan_in_fan_out``).
        bias : array_like, shape ``(out_features,)``, optional
        dropout, adapter_name, train_base
            As :meth:`from_factors`.

        Returns
        -------
        LoRALinear

        Raises
        ------
        InputError
            ``extraction`` is not an :class:`~lowrank.lora.Extraction`; bad ``dropout`` or
            names.
        ShapeError, DTypeError, NonFiniteError
            ``W_base`` does not fit the factors, or is not a finite real matrix.

        Examples
        --------
        >>> import numpy as np
        >>> from lowrank.lora import extract
        >>> rng = np.random.default_rng(0)
        >>> W0 = rng.standard_normal((6, 5))
        >>> W1 = W0 + np.outer(rng.standard_normal(6), rng.standard_normal(5))  # rank-1 update
        >>> layer = LoRALinear.from_extraction(extract(W0, W1, rank=1), W0)
        >>> x = rng.standard_normal((2, 5))
        >>> bool(np.allclose(layer.forward(x), x @ W1.T))
        True
        """
        extraction = check_instance(
            extraction, Extraction, name="extraction", what="a lowrank.lora.Extraction"
        )
        W = cls._checked_base(
            W_base,
            extraction.lora_A,
            extraction.lora_B,
            fan_in_fan_out=extraction.fan_in_fan_out,
            what="extraction",
            name="W_base",
        )
        return cls.from_factors(
            W,
            extraction.lora_A,
            extraction.lora_B,
            alpha=extraction.alpha,
            bias=bias,
            use_rslora=extraction.use_rslora,
            dropout=dropout,
            adapter_name=adapter_name,
            train_base=train_base,
            fan_in_fan_out=extraction.fan_in_fan_out,
        )

    @staticmethod
    def _checked_base(
        weight: ArrayLike,
        lora_A: Array,
        lora_B: Array,
        *,
        fan_in_fan_out: bool,
        what: str,
        name: str,
    ) -> Array:
        """``weight`` checked as a layer weight of the shape the factors of ``what`` need."""
        W = check_weight(weight, name=name, copy=False)
        out, n_in = lora_B.shape[0], lora_A.shape[1]
        expected = (n_in, out) if fan_in_fan_out else (out, n_in)
        if W.shape != expected:
            layout = "(in, out), fan_in_fan_out" if fan_in_fan_out else "(out, in)"
            raise ShapeError(
                f"{name} must have shape {expected} ({layout}) to match the {what}'s lora_A "
                f"{lora_A.shape} and lora_B {lora_B.shape}; got {W.shape}"
            )
        return W

    # -- adapters -----------------------------------------------------------------------

    def add_adapter(
        self,
        name: str,
        lora_A: ArrayLike,
        lora_B: ArrayLike,
        *,
        alpha: float,
        use_rslora: bool = False,
        dropout: float = 0.0,
        trainable: bool = True,
        activate: bool | None = None,
    ) -> None:
        """Add adapter ``name`` with factors ``lora_A`` ``(r, in)`` and ``lora_B`` ``(out, r)``.

        Parameters
        ----------
        name : str
            Non-empty, without ``.``, not already used.
        lora_A, lora_B : array_like
            Copied and converted to the layer's dtype.
        alpha : float
            ``lora_alpha`` > 0; the scaling is ``alpha / r`` (``alpha / sqrt(r)`` with
            ``use_rslora``).
        use_rslora : bool, default False
        dropout : float, default 0.0
            Drop probability in ``[0, 1)`` on this adapter's input in training mode.
        trainable : bool, default True
            ``requires_grad`` of both factors.
        activate : bool or None, default None
            Add the adapter to the active set. None follows PEFT: the first adapter becomes
            active, later ones do not until :meth:`set_active_adapters`.

        Raises
        ------
        InputError
            A bad or duplicate name, ``alpha`` not finite and > 0, ``dropout`` outside
            ``[0, 1)``.
        ShapeError, DTypeError, NonFiniteError
            Factors of the wrong shape (``r >= 1`` rows in ``lora_A``, ``lora_B`` of shape
            ``(out, r)``), dtype or with non-finite entries.

        Examples
        --------
        >>> import numpy as np
        >>> layer = LoRALinear(np.eye(3))
        >>> layer.add_adapter("a", np.ones((1, 3)), np.ones((3, 1)), alpha=1.0)
        >>> layer.add_adapter("b", np.ones((2, 3)), np.zeros((3, 2)), alpha=4.0)
        >>> layer.adapter_names, layer.active_adapters  # only the first becomes active
        (('a', 'b'), ('a',))
        >>> sorted(layer.trainable_parameters())
        ['lora_A.a.weight', 'lora_A.b.weight', 'lora_B.a.weight', 'lora_B.b.weight']
        """
        key = check_adapter_name(name)
        use_rslora = check_bool(use_rslora, name="use_rslora")
        trainable = check_bool(trainable, name="trainable")
        if activate is not None:
            activate = check_bool(activate, name="activate")
        if key in self._configs:
            raise InputError(f"adapter name must be new; {key!r} already exists on this layer")
        p = check_fraction(
            dropout, name="dropout", low=0.0, high=1.0, low_inclusive=True, high_inclusive=False
        )
        W = self._params[_WEIGHT]
        A, B = check_factors(
            lora_A,
            lora_B,
            in_features=self.in_features,
            out_features=self.out_features,
            dtype=W.dtype,
        )
        scaling = lora_scaling(alpha, A.shape[0], use_rslora=use_rslora)
        self._configs[key] = AdapterConfig(
            rank=A.shape[0],
            alpha=float(alpha),
            use_rslora=bool(use_rslora),
            dropout=p,
            scaling=scaling,
        )
        self._add_parameter(_a_key(key), A, requires_grad=trainable)
        self._add_parameter(_b_key(key), B, requires_grad=trainable)
        if activate if activate is not None else len(self._configs) == 1:
            self._active = (*self._active, key)

    def _check_adapter_names(
        self, names: str | Sequence[str], *, param: str = "names"
    ) -> tuple[str, ...]:
        listed = (names,) if isinstance(names, str) else check_str_sequence(names, name=param)
        for n in listed:
            if n not in self._configs:
                known = ", ".join(repr(k) for k in self._configs) or "none"
                raise InputError(f"{param}: adapter name must be one of {known}; got {n!r}")
        if len(set(listed)) != len(listed):
            raise InputError(f"adapter names must not repeat; got {list(listed)}")
        return listed

    def set_active_adapters(self, names: str | Sequence[str]) -> None:
        """Make exactly ``names`` active (an empty sequence leaves only the base layer).

        The forward pass sums the contributions of the active adapters that are not merged.
        ``requires_grad`` flags are not changed.

        Parameters
        ----------
        names : str or sequence of str
            One adapter name, or the names to activate in order; each must be an adapter of
            this layer, none repeated. ``[]`` deactivates every adapter.

        Raises
        ------
        InputError
            An unknown or repeated name, or ``names`` not a string or sequence of strings.

        Examples
        --------
        >>> import numpy as np
        >>> layer = LoRALinear.from_factors(np.eye(2), np.ones((1, 2)), np.ones((2, 1)), alpha=1.0)
        >>> x = np.array([[1.0, 0.0]])
        >>> layer.forward(x)
        array([[2., 1.]])
        >>> layer.set_active_adapters([]); layer.forward(x)  # the base layer alone
        array([[1., 0.]])
        >>> layer.set_active_adapters("default"); layer.active_adapters
        ('default',)
        """
        self._active = self._check_adapter_names(names)

    @property
    def active_adapters(self) -> tuple[str, ...]:
        """tuple of str: Names of the active adapters, in activation order."""
        return self._active

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """tuple of str: Names of all adapters, in the order they were added."""
        return tuple(self._configs)

    @property
    def merged_adapters(self) -> tuple[str, ...]:
        """tuple of str: Names of the adapters merged into the base weight, in merge order."""
        return tuple(self._merged)

    @property
    def merged(self) -> bool:
        """bool: Whether any adapter is merged into the base weight."""
        return bool(self._merged)

    def adapter_config(self, name: str) -> AdapterConfig:
        """Rank, alpha, rsLoRA flag, dropout and scaling of adapter ``name``.

        Parameters
        ----------
        name : str
            An adapter of this layer.

        Returns
        -------
        AdapterConfig
            Its hyper-parameters (frozen; fixed when the adapter was added).

        Raises
        ------
        InputError
            ``name`` is not a string, or names no adapter of this layer.

        Examples
        --------
        >>> import numpy as np
        >>> layer = LoRALinear.from_factors(
        ...     np.eye(4), np.ones((4, 4)), np.zeros((4, 4)), alpha=8.0, use_rslora=True
        ... )
        >>> layer.adapter_config("default")
        AdapterConfig(rank=4, alpha=8.0, use_rslora=True, dropout=0.0, scaling=4.0)
        """
        (key,) = self._check_adapter_names(check_str(name, name="name"), param="name")
        return self._configs[key]

    def delta_weight(self, name: str) -> Array:
        r"""The dense update :math:`\Delta W = s\,BA` of adapter ``name``, in the stored layout.

        As PEFT's ``get_delta_weight``: ``scaling * lora_B @ lora_A``, transposed when the
        base weight is stored ``(in, out)`` (``fan_in_fan_out``), so that merging is
        ``base_layer.weight += delta_weight(name)``. This forms an ``out × in`` array; the
        forward and backward passes never do.

        Parameters
        ----------
        name : str
            An adapter of this layer (active or not, merged or not).

        Returns
        -------
        ndarray, shape ``(out_features, in_features)``
            In the layer's dtype; shape ``(in_features, out_features)`` with
            ``fan_in_fan_out``. A new array.

        Raises
        ------
        InputError
            ``name`` is not a string, or names no adapter of this layer.

        Examples
        --------
        >>> import numpy as np
        >>> layer = LoRALinear.from_factors(
        ...     np.zeros((3, 2)), np.ones((1, 2)), np.arange(3.0).reshape(3, 1), alpha=2.0
        ... )
        >>> layer.delta_weight("default")  # 2 * B @ A
        array([[0., 0.],
               [2., 2.],
               [4., 4.]])
        """
        (key,) = self._check_adapter_names(check_str(name, name="name"), param="name")
        delta = _delta_weight(
            self._params[_a_key(key)], self._params[_b_key(key)], self._configs[key].scaling
        )
        return delta.T if self._fan_in_fan_out else delta

    def merge(self, adapter_names: str | Sequence[str] | None = None) -> None:
        r"""Add :math:`s_a B_a A_a` to the base weight for each adapter, in order.

        A merged adapter is skipped by the forward pass (its update is in the weight) until
        :meth:`unmerge`; its factors cannot be trained meanwhile.

        Parameters
        ----------
        adapter_names : str, sequence of str or None, default None
            The adapters to merge; None merges the active ones. Each must be an adapter of
            this layer that is not merged yet; inactive adapters may be merged too.

        Raises
        ------
        InputError
            An unknown or repeated name, or nothing to merge (no name given and no adapter
            active, or an empty sequence).
        StateError
            An adapter that is already merged (merging twice would add its update twice).
        NonFiniteError
            The merged weight would overflow its dtype (as PEFT's ``safe_merge``); the weight
            is left unchanged and nothing is merged.

        Examples
        --------
        >>> import numpy as np
        >>> layer = LoRALinear.from_factors(np.eye(2), np.ones((1, 2)), np.ones((2, 1)), alpha=1.0)
        >>> x = np.array([[1.0, 2.0]])
        >>> before = layer.forward(x)
        >>> layer.merge()
        >>> layer.merged_adapters
        ('default',)
        >>> layer.parameters()["base_layer.weight"]  # W + s B A
        array([[2., 1.],
               [1., 2.]])
        >>> bool(np.array_equal(layer.forward(x), before))
        True
        """
        names = (
            self._active
            if adapter_names is None
            else self._check_adapter_names(adapter_names, param="adapter_names")
        )
        if not names:
            raise InputError("merge needs at least one adapter; none is active and none was named")
        for n in names:
            if n in self._merged:
                raise StateError(
                    f"adapter {n!r} is already merged into base_layer.weight; merging it again "
                    f"would add its update twice (call unmerge() first)"
                )
        W = self._params[_WEIGHT]
        # Into a copy first, committed only if finite: an update that overflows the weight's
        # dtype would leave W = inf for good (unmerge gives NaN), as PEFT's safe_merge refuses.
        merged = W.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            for n in names:
                merged += self.delta_weight(n)
        bad = count_nonfinite(merged)
        if bad:
            raise NonFiniteError(
                f"merging {', '.join(map(repr, names))} would make base_layer.weight non-finite "
                f"({bad} of {merged.size} entries overflow {W.dtype.name}); nothing was merged"
            )
        W[...] = merged
        self._merged.extend(names)

    def unmerge(self) -> None:
        """Subtract the merged adapters' updates from the base weight, last merged first.

        The base weight is restored up to one rounding per merge and unmerge; the adapters
        contribute through the forward pass again (those that are active).

        Raises
        ------
        StateError
            No adapter is merged.

        Examples
        --------
        >>> import numpy as np
        >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
        >>> layer = LoRALinear.from_factors(W, np.ones((1, 2)), np.ones((2, 1)), alpha=0.5)
        >>> layer.merge(); layer.unmerge()
        >>> layer.merged, bool(np.array_equal(layer.parameters()["base_layer.weight"], W))
        (False, True)
        """
        if not self._merged:
            raise StateError("unmerge needs a merged adapter; no adapter is merged")
        W = self._params[_WEIGHT]
        while self._merged:
            W -= self.delta_weight(self._merged.pop())

    def _prepare_load(self, values: Mapping[str, ArrayLike]) -> dict[str, Array]:
        if self._merged:
            raise StateError(
                f"cannot load parameters while adapters {self._merged} are merged into "
                f"base_layer.weight (unmerge would then subtract a different update); "
                f"call unmerge() first"
            )
        return super()._prepare_load(values)

    def _default_trainable(self) -> list[str]:
        return [k for n in self._configs for k in (_a_key(n), _b_key(n))]

    # -- shape and dtype ----------------------------------------------------------------

    @property
    def in_features(self) -> int:
        """int: Size of the input's last axis (the columns of :math:`W`)."""
        return int(self._params[_WEIGHT].shape[0 if self._fan_in_fan_out else 1])

    @property
    def out_features(self) -> int:
        """int: Size of the output's last axis (the rows of :math:`W`)."""
        return int(self._params[_WEIGHT].shape[1 if self._fan_in_fan_out else 0])

    @property
    def fan_in_fan_out(self) -> bool:
        """bool: Whether ``base_layer.weight`` is stored ``(in, out)`` (GPT-2's ``Conv1D``)."""
        return self._fan_in_fan_out

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy.dtype: The layer's float dtype (float32 or float64), that of its weight."""
        return self._params[_WEIGHT].dtype

    # -- forward and backward -----------------------------------------------------------

    def _forward(self, x: Array, *, training: bool, rng: np.random.Generator | None) -> Array:
        if training:
            stuck = [
                n
                for n in self._merged
                if self._requires_grad[_a_key(n)] or self._requires_grad[_b_key(n)]
            ]
            if stuck:
                raise StateError(
                    f"cannot train adapters {stuck} while they are merged into "
                    f"base_layer.weight; call unmerge() first or freeze them"
                )
        W = self._params[_WEIGHT]
        x2 = x.reshape(-1, self.in_features)
        y: Array = x2 @ (W if self._fan_in_fan_out else W.T)
        if _BIAS in self._params:
            y += self._params[_BIAS]
        caches: list[tuple[str, Array, Array, Array | None]] = []
        for name in self._active:
            if name in self._merged:
                continue
            cfg = self._configs[name]
            mask = None
            if training and cfg.dropout > 0.0:
                gen = rng if rng is not None else normalize_rng(None)
                mask = _dropout_mask(x2.shape, cfg.dropout, gen, W.dtype)
            contribution, xd, z = _adapter_forward(
                x2, self._params[_a_key(name)], self._params[_b_key(name)], cfg.scaling, mask
            )
            y += contribution
            caches.append((name, xd, z, mask))
        self._cache = _Cache(x2=x2, x_shape=x.shape, adapters=caches)
        return y.reshape((*x.shape[:-1], self.out_features))

    def _backward(self, g: Array, *, need_input_grad: bool) -> Array | None:
        cache = self._cache
        if cache is None:  # pragma: no cover - guarded by Layer.backward / Network
            raise RuntimeError("backward before forward")
        W = self._params[_WEIGHT]
        g2 = g.reshape(-1, self.out_features)
        grads: dict[str, Array] = {}
        if self._requires_grad[_WEIGHT]:
            # The gradient in the stored layout: (out, in), or (in, out) with fan_in_fan_out.
            grads[_WEIGHT] = cache.x2.T @ g2 if self._fan_in_fan_out else g2.T @ cache.x2
        if _BIAS in self._params and self._requires_grad[_BIAS]:
            grads[_BIAS] = g2.sum(axis=0)
        dx = (g2 @ (W.T if self._fan_in_fan_out else W)) if need_input_grad else None
        for name, xd, z, mask in cache.adapters:
            ka, kb = _a_key(name), _b_key(name)
            need_a, need_b = self._requires_grad[ka], self._requires_grad[kb]
            if not (need_a or need_b or need_input_grad):
                continue
            dA, dB, dx_lora = _adapter_backward(
                g2, xd, z, self._params[ka], self._params[kb], self._configs[name].scaling, mask
            )
            if need_a:
                grads[ka] = dA
            if need_b:
                grads[kb] = dB
            if dx is not None:
                dx += dx_lora
        self._grads = grads
        return None if dx is None else dx.reshape(cache.x_shape)

    def __repr__(self) -> str:
        return (
            f"LoRALinear(in_features={self.in_features}, out_features={self.out_features}, "
            f"adapters={list(self._configs)}, active={list(self._active)}, "
            f"merged={self._merged}, dtype={self.dtype.name}, "
            f"fan_in_fan_out={self._fan_in_fan_out}, "
            f"trainable={self.num_trainable_parameters()})"
        )
