"""A weight in PEFT's ``(out, in)`` layout, in its compute dtype, with the dtype to return.

The dtype policy itself (which dtypes are computed in which, which LoRA refuses) is the one
table of :mod:`lowrank._dtypes`; this module applies its *LoRA* column to weights and factors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank._dtypes import cast_finite, lora_storage_dtype
from lowrank._typing import Array, ArrayLike
from lowrank._validation import as_array, as_matrix, check_bool
from lowrank.errors import NonFiniteError

__all__ = ["WeightView", "storage_dtype", "weight_view"]


def storage_dtype(dtype: Any, *, name: str) -> np.dtype[Any]:
    """The dtype LoRA results are returned in for input of ``dtype`` (:mod:`lowrank._dtypes`).

    Raises
    ------
    DTypeError
        Complex, quantised (float8) or non-numeric dtypes.
    """
    return lora_storage_dtype(dtype, name=name)


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

    def to_storage(self, x: Array, *, what: str) -> Array:
        """``x`` in the storage dtype, C-contiguous; ``what`` names it if it overflows.

        Raises
        ------
        NonFiniteError
            ``x`` does not fit in the storage dtype (float16 ends at 65504). A plain
            ``astype`` would return ``inf`` with only NumPy's RuntimeWarning.
        """
        try:
            out: Array = cast_finite(x, self.storage, what=what)
        except NonFiniteError as exc:
            # The results take W's dtype (there is no dtype argument), so say how to widen it.
            raise NonFiniteError(
                f"{exc}; the results take W's dtype, so convert W to it (e.g. "
                "W.astype(numpy.float32))"
            ) from None
        return out

    def to_storage_layout(self, x: Array, *, what: str) -> Array:
        """``x`` (``(out, in)``) in the caller's layout and storage dtype (see
        :meth:`to_storage`)."""
        return self.to_storage(x.T if self.fan_in_fan_out else x, what=what)


def weight_view(W: ArrayLike, *, name: str = "W", fan_in_fan_out: bool = False) -> WeightView:
    """Validate ``W`` (2-D, non-empty, finite, a supported dtype) and lay it out ``(out, in)``.

    Raises
    ------
    ShapeError, NonFiniteError, DTypeError
        From :func:`lowrank._validation.as_matrix` and :func:`storage_dtype`.
    """
    check_bool(fan_in_fan_out, name="fan_in_fan_out")
    raw = as_array(W, name=name)
    storage = storage_dtype(raw.dtype, name=name)
    matrix = as_matrix(raw, name=name)
    return WeightView(matrix.T if fan_in_fan_out else matrix, storage, fan_in_fan_out)
