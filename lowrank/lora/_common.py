r"""Shared checks of :mod:`lowrank.lora`: weight dtypes, ranks, ``alpha`` and the scaling.

dtype policy
------------
A weight is *stored* in one dtype and *computed* in another:

==============================  ===========  ==========================================
input dtype                     computed in  factors and residual returned in
==============================  ===========  ==========================================
float32                         float32      float32
float64                         float64      float64 (PEFT would refuse it; NumPy need not)
float16, bfloat16               float32      the input dtype (as PEFT writes them back)
integer                         float64      float64
complex, float8, others         refused      :class:`~lowrank.errors.DTypeError`
==============================  ===========  ==========================================

PEFT's SVD inits accept float32, float16 and bfloat16 only ("Please initialize PiSSA under
float32, float16, or bfloat16"). Here float64 is kept end to end, because it is the
reference precision of a NumPy toolkit; float8 weights are quantised and must be dequantised
first; complex weights have no LoRA.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from lowrank._numerics import STORAGE_EPS
from lowrank._typing import Array, ArrayLike
from lowrank._validation import as_matrix, check_bool, check_positive_float, check_rank
from lowrank.errors import DTypeError, InputError, RankError

__all__ = [
    "WeightView",
    "check_alpha",
    "check_bool",
    "check_lora_rank",
    "check_positive_rank",
    "lora_scaling",
    "split_triplets",
    "storage_dtype",
    "weight_view",
]

_HALF = ("float16", "bfloat16")


def storage_dtype(dtype: Any, *, name: str) -> np.dtype[Any]:
    """The dtype results are returned in for input of ``dtype`` (see the module docstring)."""
    dt: np.dtype[Any] = np.dtype(dtype)
    if dt.name in _HALF or dt in (np.float32, np.float64):
        return dt
    if dt.kind in "iu":
        return np.dtype(np.float64)
    if dt.kind == "c":
        raise DTypeError(f"{name} must be real; LoRA has no complex factors; got dtype {dt.name}")
    if dt.name in STORAGE_EPS:
        raise DTypeError(
            f"{name} has the quantised dtype {dt.name}; dequantise it to float16, bfloat16 or "
            "float32 first (PEFT refuses it too)"
        )
    raise DTypeError(
        f"{name} must have dtype float16, bfloat16, float32, float64 or an integer type; "
        f"got {dt.name}"
    )


class WeightView:
    """A weight in PEFT's ``(out, in)`` layout, in its compute dtype, with its storage dtype.

    ``matrix`` is ``W`` (or ``W.T`` for ``fan_in_fan_out``): a view when no conversion was
    needed, never modified.
    """

    __slots__ = ("fan_in_fan_out", "matrix", "storage")

    def __init__(self, matrix: Array, storage: np.dtype[Any], fan_in_fan_out: bool) -> None:
        self.matrix = matrix
        self.storage = storage
        self.fan_in_fan_out = fan_in_fan_out

    @property
    def out_features(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.matrix.shape[1])

    def to_storage_layout(self, x: Array) -> Array:
        """``x`` (``(out, in)``) in the caller's layout and storage dtype."""
        y = x.T if self.fan_in_fan_out else x
        return np.ascontiguousarray(y.astype(self.storage, copy=False))


def _raw(W: ArrayLike, name: str) -> Array:
    if isinstance(W, np.ndarray):
        return W
    try:
        return np.asarray(W)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} could not be read as an array: {exc}") from None


def weight_view(W: ArrayLike, *, name: str = "W", fan_in_fan_out: bool = False) -> WeightView:
    """Validate ``W`` (2-D, non-empty, finite, a supported dtype) and lay it out ``(out, in)``.

    Raises
    ------
    ShapeError, NonFiniteError, DTypeError
        From :func:`lowrank._validation.as_matrix` and :func:`storage_dtype`.
    """
    check_bool(fan_in_fan_out, name="fan_in_fan_out")
    raw = _raw(W, name)
    storage = storage_dtype(raw.dtype, name=name)
    matrix = as_matrix(raw, name=name)
    return WeightView(matrix.T if fan_in_fan_out else matrix, storage, fan_in_fan_out)


def check_lora_rank(rank: object, *, upper: int, upper_text: str = "min(W.shape)") -> int:
    """A LoRA rank: an integer with ``1 <= rank <= upper`` (PEFT has no rank-0 adapters)."""
    return check_rank(rank, upper=upper, lower=1, upper_text=upper_text)


def check_positive_rank(rank: object, *, name: str = "rank") -> int:
    """An integer ``>= 1`` with no upper bound (a random LoRA init may exceed min(W.shape))."""
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or int(rank) < 1:
        raise RankError(f"{name} must be an integer >= 1; got {rank!r}")
    return int(rank)


def check_alpha(alpha: object, rank: int, *, use_rslora: bool) -> float:
    """``alpha`` as a finite positive float; ``None`` gives the alpha with scaling 1."""
    if alpha is None:
        return math.sqrt(rank) if use_rslora else float(rank)
    return check_positive_float(alpha, name="alpha")


def lora_scaling(alpha: float, rank: int, *, use_rslora: bool = False) -> float:
    r"""The LoRA scaling :math:`s = \alpha / r`, or :math:`\alpha / \sqrt{r}` with rsLoRA.

    Parameters
    ----------
    alpha : float
        ``lora_alpha``, finite and > 0.
    rank : int
        ``r >= 1``.
    use_rslora : bool, default False
        Rank-stabilised scaling (Kalajdzievski 2023, arXiv:2312.03732).

    Returns
    -------
    float

    Raises
    ------
    InputError
        ``alpha`` not finite and > 0, or ``use_rslora`` not a bool.
    RankError
        ``rank`` not an integer >= 1.

    Examples
    --------
    >>> lora_scaling(16, 8)
    2.0
    >>> lora_scaling(16, 4, use_rslora=True)
    8.0
    """
    a = check_positive_float(alpha, name="alpha")
    r = check_positive_rank(rank)
    check_bool(use_rslora, name="use_rslora")
    return a / math.sqrt(r) if use_rslora else a / r


def split_triplets(U: Array, S: Array, Vh: Array, scaling: float) -> tuple[Array, Array]:
    r"""``(A, B)`` with :math:`s\,BA = U \operatorname{diag}(S) V^\top`: the singular values
    divided by :math:`s` and split as square roots, :math:`B = U\sqrt{S/s}`,
    :math:`A = \sqrt{S/s}\,V^\top` (PEFT's ``pissa_init``, mergekit's ``--distribute-scale``).
    """
    root = np.sqrt(S.astype(np.float64) / scaling).astype(U.dtype, copy=False)
    return root[:, None] * Vh, U * root
