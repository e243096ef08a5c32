r"""The one dtype-policy table: what each input dtype is computed in and returned in.

Three questions are asked of an input dtype across the package, and all three are answered
by the one table below (:data:`POLICY`):

* **compute** — the dtype a computation runs in (:func:`compute_dtype`, used by every
  checker of :mod:`lowrank._validation`);
* **LoRA** — the dtype LoRA factors and residuals are returned in
  (:func:`lora_storage_dtype`, :mod:`lowrank.lora`);
* **layer** — the real dtype a NumPy layer computes in (:func:`layer_dtype`,
  :mod:`lowrank.adapter`): the compute dtype, refused when it is not real.

=====================  ===========  =======================  ==========================
input dtype            compute      LoRA returned in         layer
=====================  ===========  =======================  ==========================
float32                float32      float32                  float32
float64                float64      float64                  float64
float16, bfloat16      float32      the input dtype          float32
float8 (all kinds)     float32      refused (dequantise)     float32
integer                float64      float64                  float64
complex64, complex128  kept         refused (no complex      refused (not real)
                                    LoRA)
anything else          refused      refused                  refused
=====================  ===========  =======================  ==========================

PEFT's SVD inits accept float32, float16 and bfloat16 only; float64 is kept here because it
is the reference precision of a NumPy toolkit. Names of the ``ml_dtypes`` types are matched
by string (:data:`lowrank._numerics.STORAGE_EPS`), so the core never imports ``ml_dtypes``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from lowrank._numerics import STORAGE_EPS
from lowrank.errors import DTypeError, NonFiniteError

__all__ = ["POLICY", "DTypeRow", "compute_dtype", "layer_dtype", "lora_storage_dtype", "row_of"]

_KEEP = "keep"
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


class DTypeRow(NamedTuple):
    """One row of :data:`POLICY`."""

    label: str
    """The input dtypes of the row, as the table in the module docstring names them."""
    compute: str
    """``"keep"`` or the name of the dtype computations run in."""
    lora: str
    """``"keep"``, ``"float64"``, or ``"quantised"`` / ``"complex"`` (refused, and why)."""


#: The table of the module docstring, row by row (the last row matches everything else).
POLICY: tuple[DTypeRow, ...] = (
    DTypeRow("float32, float64", _KEEP, _KEEP),
    DTypeRow("float16, bfloat16", "float32", _KEEP),
    DTypeRow("float8", "float32", "quantised"),
    DTypeRow("integer", "float64", "float64"),
    DTypeRow("complex", _KEEP, "complex"),
    DTypeRow("other", "refused", "refused"),
)


def _native(dtype: Any) -> np.dtype[Any]:
    """``dtype`` in the machine's byte order: a big-endian ``>f8`` array (as a ``.npy`` file
    written elsewhere may hold) is float64 data like any other, and compares unequal to
    ``float64`` until converted."""
    dt: np.dtype[Any] = np.dtype(dtype)
    return dt if dt.isnative else dt.newbyteorder("=")


def row_of(dtype: Any) -> DTypeRow:
    """The row of :data:`POLICY` that ``dtype`` falls in (``dtype`` must be a NumPy dtype)."""
    dt = _native(dtype)
    if dt in (_F32, _F64):
        return POLICY[0]
    if dt.name in ("float16", "bfloat16"):
        return POLICY[1]
    if dt.name in STORAGE_EPS:
        return POLICY[2]
    if dt.kind in "iu":
        return POLICY[3]
    if dt in (np.complex64, np.complex128):
        return POLICY[4]
    return POLICY[5]


def compute_dtype(dtype: Any, *, name: str = "A") -> np.dtype[Any]:
    """The dtype a computation on data of ``dtype`` runs in (the table's *compute* column).

    ``float32``, ``float64``, ``complex64`` and ``complex128`` are kept; ``float16``,
    ``bfloat16`` and the float8 types are computed in ``float32``; integers in ``float64``.
    Booleans, objects, strings and extended precision raise :class:`~lowrank.errors.DTypeError`.
    """
    dt = _native(dtype)
    row = row_of(dt)
    if row.compute == _KEEP:
        return dt
    if row.compute != "refused":
        return np.dtype(row.compute)
    if dt.kind in "fc":
        raise DTypeError(
            f"{name} has dtype {dt.name}, which LAPACK does not support; "
            f"convert it to float64 or complex128 first"
        )
    raise DTypeError(f"{name} must have a numeric dtype (float, complex or integer); got {dt.name}")


def lora_storage_dtype(dtype: Any, *, name: str) -> np.dtype[Any]:
    """The dtype LoRA factors and residuals are returned in (the table's *LoRA* column)."""
    dt = _native(dtype)
    lora = row_of(dt).lora
    if lora == _KEEP:
        return dt
    if lora == "float64":
        return _F64
    if lora == "complex":
        raise DTypeError(f"{name} must be real; LoRA has no complex factors; got dtype {dt.name}")
    if lora == "quantised":
        raise DTypeError(
            f"{name} has the quantised dtype {dt.name}; dequantise it to float16, bfloat16 or "
            "float32 first (PEFT refuses it too)"
        )
    raise DTypeError(
        f"{name} must have dtype float16, bfloat16, float32, float64 or an integer type; "
        f"got {dt.name}"
    )


def layer_dtype(dtype: Any, *, name: str) -> np.dtype[Any]:
    """The real dtype a layer with parameters of ``dtype`` computes in (the *layer* column)."""
    dt = compute_dtype(dtype, name=name)
    if dt.kind != "f":
        raise DTypeError(
            f"{name} must have a real dtype (float32, float64, float16 or an integer type); "
            f"got {np.dtype(dtype).name}"
        )
    return dt


def finfo_of(dtype: Any) -> Any:
    """``finfo`` of a floating or complex dtype: NumPy's, or ``ml_dtypes``' own for the
    narrow types (bfloat16, float8) that ``numpy.finfo`` refuses; imported only then."""
    try:
        return np.finfo(dtype)
    except (TypeError, ValueError):
        import ml_dtypes

        return ml_dtypes.finfo(dtype)  # type: ignore[no-untyped-call]


def cast_finite(x: Any, dtype: Any, *, what: str) -> Any:
    """``x`` (finite) as a C-contiguous array of ``dtype``; an overflow to infinity is an
    error naming ``what``, not NumPy's RuntimeWarning.

    LoRA factors carry square roots of an update's singular values, so an update of norm
    1e10 has entries far beyond float16's 65504, and an adapter written with them as
    ``inf`` would be useless.
    """
    dt = np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        out = np.ascontiguousarray(np.asarray(x).astype(dt, copy=False))
    if out.size and not np.all(np.isfinite(out)):
        wider = "float32 or bfloat16" if dt.name == "float16" else "float64"
        peak = float(np.max(np.abs(np.asarray(x).astype(np.float64))))
        raise NonFiniteError(
            f"{what} does not fit in {dt.name}: its largest magnitude {peak:.4g} exceeds "
            f"{dt.name}'s largest finite value {float(finfo_of(dt).max):.4g}; use dtype {wider}"
        )
    return out
