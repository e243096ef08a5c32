"""Input checks shared by the adapter modules, with the package's message style.

Layer-0 helpers (:mod:`lowrank._validation`) do the generic work; this module adds the checks
that know about layers: feature counts and factor shapes. The layer's dtype is the *layer*
column of the one dtype table, :func:`lowrank._dtypes.layer_dtype`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank._dtypes import layer_dtype
from lowrank._typing import Array, ArrayLike
from lowrank._validation import (
    as_array,
    as_matrix,
    as_vector,
    check_finite_array,
    compute_dtype,
)
from lowrank.errors import DTypeError, InputError, ShapeError

__all__ = [
    "as_float_array",
    "check_adapter_name",
    "check_bias",
    "check_factors",
    "check_features",
    "check_finite",
    "check_weight",
    "count_nonfinite",
]


def check_finite(arr: Array, *, name: str) -> None:
    """Raise :class:`~lowrank.errors.NonFiniteError` if ``arr`` holds NaN or infinity (the
    shared check, :func:`lowrank._validation.check_finite_array`: no full-size temporary)."""
    check_finite_array(arr, name=name)


def count_nonfinite(arr: Array) -> int:
    """The number of NaN or infinite entries of a float ``arr``: two reductions (``min``,
    ``max``) when there are none, as :func:`check_finite`, and a count only when there are."""
    if arr.size == 0 or (np.isfinite(np.min(arr)) and np.isfinite(np.max(arr))):
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def check_weight(weight: ArrayLike, *, name: str = "weight", copy: bool = True) -> Array:
    """A weight matrix ``(out_features, in_features)`` in its float compute dtype.

    Layers ask for a private copy (``copy=True``): merging and optimiser steps update
    parameters in place, and the caller's arrays must not change behind their back. The
    stateless functions read the caller's array as it is (no ``out × in`` copy per call).
    """
    arr = as_matrix(weight, name=name, check_finite=False)
    dt = layer_dtype(arr.dtype, name=name)
    check_finite(arr, name=name)
    if copy:
        return np.array(arr, dtype=dt, copy=True, order="C")
    return arr.astype(dt, copy=False)


def check_bias(bias: ArrayLike, *, out_features: int, dtype: np.dtype[Any]) -> Array:
    """A private copy of a bias vector of length ``out_features`` in ``dtype``."""
    arr = as_vector(bias, name="bias")
    if arr.shape != (out_features,):
        raise ShapeError(
            f"bias must have shape ({out_features},) to match weight's "
            f"out_features={out_features}; got {arr.shape}"
        )
    layer_dtype(arr.dtype, name="bias")
    return np.array(arr, dtype=dtype, copy=True)


def check_factors(
    lora_A: ArrayLike,
    lora_B: ArrayLike,
    *,
    in_features: int,
    out_features: int,
    dtype: np.dtype[Any],
    copy: bool = True,
) -> tuple[Array, Array]:
    """``lora_A`` ``(r, in)`` and ``lora_B`` ``(out, r)`` with ``r >= 1`` in ``dtype``
    (private copies unless ``copy`` is false, as for :func:`check_weight`)."""
    A = as_matrix(lora_A, name="lora_A", allow_empty=True, check_finite=False)
    B = as_matrix(lora_B, name="lora_B", allow_empty=True, check_finite=False)
    layer_dtype(A.dtype, name="lora_A")
    layer_dtype(B.dtype, name="lora_B")
    check_finite(A, name="lora_A")
    check_finite(B, name="lora_B")
    if A.shape[0] < 1 or A.shape[1] != in_features:
        raise ShapeError(
            f"lora_A must have shape (r, {in_features}) with r >= 1 to match weight's "
            f"in_features={in_features}; got {A.shape}"
        )
    rank = A.shape[0]
    if B.shape != (out_features, rank):
        raise ShapeError(
            f"lora_B must have shape ({out_features}, {rank}) to match weight's "
            f"out_features={out_features} and lora_A's r={rank}; got {B.shape}"
        )
    if not copy:
        return A.astype(dtype, copy=False), B.astype(dtype, copy=False)
    return (
        np.array(A, dtype=dtype, copy=True, order="C"),
        np.array(B, dtype=dtype, copy=True, order="C"),
    )


def as_float_array(x: ArrayLike, *, name: str, dtype: np.dtype[Any] | None) -> Array:
    """``x`` as a finite floating array in ``dtype`` (or its compute dtype if ``dtype`` is None).

    The input rule of every layer: float32 and float64 data must already be in ``dtype``, as
    a float array of the other precision raises rather than being silently rounded (a
    float64 reference run fed to a float32 layer is usually a bug). Everything else the
    dtype table (:mod:`lowrank._dtypes`) computes in float32 or float64 is converted:
    integers, and the narrow floats (float16, bfloat16, float8), whose values float32 and
    float64 both hold exactly, so that converting them loses nothing.
    """
    arr = as_array(x, name=name)
    target = compute_dtype(arr.dtype, name=name)
    if target.kind != "f":
        raise DTypeError(f"{name} must have a real dtype; got {arr.dtype.name}")
    if dtype is not None and target != dtype and arr.dtype.kind == "f" and arr.dtype != np.float16:
        raise DTypeError(
            f"{name} has dtype {arr.dtype.name} but the layer computes in {dtype.name}; "
            f"convert it with .astype(numpy.{dtype.name}) or build the layer in {arr.dtype.name}"
        )
    out_dtype = dtype if dtype is not None else target
    if arr.dtype != out_dtype:
        arr = arr.astype(out_dtype)
    check_finite(arr, name=name)
    return arr


def check_features(x: Array, *, name: str, features: int, owner: str) -> None:
    """Raise unless ``x`` has shape ``(..., features)``."""
    if x.ndim < 1 or x.shape[-1] != features:
        raise ShapeError(
            f"{name} must have shape (..., {features}) to match {owner}={features}; got {x.shape}"
        )


def check_adapter_name(name: object, *, param: str = "name") -> str:
    """An adapter name: a non-empty string without dots (dots separate parameter keys)."""
    if not isinstance(name, str) or not name or "." in name:
        raise InputError(
            f"{param} (an adapter name) must be a non-empty string without '.'; got {name!r}"
        )
    return name
