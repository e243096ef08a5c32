"""Choosing the matrices of a checkpoint, and loading each as a 2-D array.

Rules, applied in this order to every tensor; the first that fails gives the skip reason:

1. **Names.** Kept if it matches any ``include`` pattern (all names if ``include`` is
   ``None`` or empty) and no ``exclude`` pattern. Patterns are globs (:func:`fnmatch.fnmatchcase`:
   case-sensitive, ``*`` also matches dots) or, with ``regex=True``, regular expressions that
   must match the *whole* name (:func:`re.fullmatch`, as PEFT's ``target_modules``).
2. **Dimensions.** 0-D and 1-D tensors (biases, norm scales) are skipped. Tensors with 3 or
   more dimensions are skipped with ``nd_policy="skip"``, or read as the matrix
   ``(d0, d1 * d2 * ...)`` with ``nd_policy="flatten"``: the first axis stays the rows, all
   others become the columns, so a PyTorch convolution kernel ``(out, in, kh, kw)`` becomes
   ``(out, in * kh * kw)``, the matrix of the convolution acting on flattened patches.
3. **Dtype.** Only real floating tensors (float16, bfloat16, float32, float64) are
   matrices; integer, bool, quantised (int8/uint8, float8, float4/6) and complex tensors
   are skipped.
4. **Size.** Matrices with a zero dimension are skipped.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from lowrank._typing import Array
from lowrank._validation import check_choice
from lowrank.errors import DTypeError, InputError, ShapeError
from lowrank.io._dtypes import dtype_skip_reason
from lowrank.io._info import TensorInfo
from lowrank.io._sources import list_tensors, load_tensor

__all__ = [
    "NDPolicy",
    "Patterns",
    "Selection",
    "SkipCode",
    "Skipped",
    "load_matrix",
    "matrix_shape",
    "select",
]

NDPolicy: TypeAlias = Literal["skip", "flatten"]
"""What to do with tensors of 3 or more dimensions."""

SkipCode: TypeAlias = Literal["name", "ndim", "dtype", "empty"]
"""Which rule excluded a tensor: its name, its number of dimensions, its dtype, its size."""

Patterns: TypeAlias = "str | Sequence[str] | None"
"""One pattern, several patterns (any may match), or none."""

_ND_POLICIES: tuple[NDPolicy, ...] = ("skip", "flatten")


@dataclass(frozen=True)
class Skipped:
    """A tensor that is not a matrix, and why.

    Attributes
    ----------
    info : TensorInfo
        The tensor.
    code : {"name", "ndim", "dtype", "empty"}
        The rule that excluded it (for grouping in reports).
    reason : str
        A sentence saying why, for people.
    """

    info: TensorInfo
    code: SkipCode
    reason: str


@dataclass(frozen=True)
class Selection:
    """The matrices of a checkpoint and the tensors passed over.

    Attributes
    ----------
    matrices : tuple of TensorInfo
        Tensors to analyse, in storage order; load each with
        ``load_matrix(info, nd_policy=selection.nd_policy)``.
    skipped : tuple of Skipped
        Every other tensor, with its reason.
    nd_policy : {"skip", "flatten"}
        The policy the selection was made with.
    """

    matrices: tuple[TensorInfo, ...]
    skipped: tuple[Skipped, ...]
    nd_policy: NDPolicy


def _patterns(value: Patterns, *, name: str, regex: bool) -> list[re.Pattern[str]]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(p, str) for p in items):
        raise InputError(f"{name} must be None, a string or a sequence of strings; got {value!r}")
    compiled: list[re.Pattern[str]] = []
    for pattern in items:
        # A glob becomes the regex fnmatch.fnmatchcase itself uses, so both kinds are
        # matched the same way (fullmatch) below.
        source = pattern if regex else fnmatch.translate(pattern)
        try:
            compiled.append(re.compile(source))
        except re.error as exc:
            raise InputError(
                f"{name} pattern {pattern!r} must be a valid regular expression; {exc}"
            ) from None
    return compiled


def _matrix_shape(info: TensorInfo, nd_policy: NDPolicy) -> tuple[int, int] | str:
    """The 2-D shape of ``info`` under ``nd_policy``, or why it has none."""
    if info.ndim == 2:
        return info.shape[0], info.shape[1]
    if info.ndim < 2:
        return f"{info.ndim}-D tensor of shape {info.shape} is not a matrix"
    if nd_policy == "flatten":
        return info.shape[0], math.prod(info.shape[1:])
    return (
        f"{info.ndim}-D tensor of shape {info.shape} is not a matrix; "
        'nd_policy="flatten" reads it as (d0, d1*d2*...)'
    )


def matrix_shape(info: TensorInfo, *, nd_policy: NDPolicy = "skip") -> tuple[int, int]:
    """The shape ``(rows, columns)`` that :func:`load_matrix` returns for ``info``.

    Parameters
    ----------
    info : TensorInfo
        A listed tensor.
    nd_policy : {"skip", "flatten"}, default "skip"
        With "flatten", a tensor of shape ``(d0, d1, ..., dk)`` gives ``(d0, d1 * ... * dk)``.

    Raises
    ------
    ShapeError
        ``info`` has fewer than 2 dimensions, or more than 2 with ``nd_policy="skip"``.
    InputError
        ``nd_policy`` is not "skip" or "flatten".
    """
    check_choice(nd_policy, name="nd_policy", choices=_ND_POLICIES)
    shape = _matrix_shape(info, nd_policy)
    if isinstance(shape, str):
        raise ShapeError(f"tensor '{info.name}' in '{info.file}': {shape}")
    return shape


def _classify(
    info: TensorInfo,
    include: list[re.Pattern[str]],
    exclude: list[re.Pattern[str]],
    nd_policy: NDPolicy,
) -> Skipped | None:
    if include and not any(p.fullmatch(info.name) for p in include):
        return Skipped(info, "name", "name matches no include pattern")
    if any(p.fullmatch(info.name) for p in exclude):
        return Skipped(info, "name", "name matches an exclude pattern")
    shape = _matrix_shape(info, nd_policy)
    if isinstance(shape, str):
        return Skipped(info, "ndim", shape)
    why = dtype_skip_reason(info.dtype)
    if why is not None:
        return Skipped(info, "dtype", why)
    if 0 in shape:
        return Skipped(info, "empty", f"matrix of shape {shape} has no entries")
    return None


def select(
    source: str | os.PathLike[str] | Iterable[TensorInfo],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    regex: bool = False,
    nd_policy: NDPolicy = "skip",
) -> Selection:
    """Choose the weight matrices of a checkpoint by name, shape and dtype, loading no data.

    Parameters
    ----------
    source : str, os.PathLike or iterable of TensorInfo
        A path as accepted by :func:`list_tensors`, or tensors it listed before.
    include : str or sequence of str, optional
        Keep only tensors whose name matches one of these patterns (``None`` or an empty
        sequence: all names).
    exclude : str or sequence of str, optional
        Drop tensors whose name matches one of these patterns (applied after ``include``).
    regex : bool, default False
        Patterns are regular expressions matched against the whole name
        (:func:`re.fullmatch`) instead of globs (:func:`fnmatch.fnmatchcase`).
    nd_policy : {"skip", "flatten"}, default "skip"
        Skip tensors with 3 or more dimensions, or read ``(d0, d1, ..., dk)`` as the matrix
        ``(d0, d1 * ... * dk)``.

    Returns
    -------
    Selection
        The matrices and the skipped tensors with reasons, both in storage order.

    Raises
    ------
    InputError
        A pattern is not a string or not a valid regular expression, ``nd_policy`` is
        unknown, or ``source`` holds something other than TensorInfo.
    MissingFileError, FileFormatError
        As :func:`list_tensors`.

    Notes
    -----
    The rules, in the order applied, are listed in the module docstring of
    ``lowrank.io._select``: names, then dimensions, then dtype (real floating of 16 bits or
    more), then size (no zero dimension).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors, load_matrix
    >>> tensors = {"layer.0.q.weight": np.ones((4, 3), np.float32),
    ...            "layer.0.q.bias": np.ones(4, np.float32),
    ...            "layer.0.k.weight": np.ones((4, 3), np.float32)}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_safetensors(Path(d) / "m.safetensors", tensors)
    ...     sel = select(Path(d) / "m.safetensors", include="*.weight", exclude="*.k.*")
    ...     print([m.name for m in sel.matrices])
    ...     print([(s.info.name, s.code) for s in sel.skipped])
    ...     print(load_matrix(sel.matrices[0], nd_policy=sel.nd_policy).shape)
    ['layer.0.q.weight']
    [('layer.0.k.weight', 'name'), ('layer.0.q.bias', 'name')]
    (4, 3)
    """
    check_choice(nd_policy, name="nd_policy", choices=_ND_POLICIES)
    if not isinstance(regex, bool):
        raise InputError(f"regex must be a bool; got {regex!r}")
    includes = _patterns(include, name="include", regex=regex)
    excludes = _patterns(exclude, name="exclude", regex=regex)
    if isinstance(source, (str, os.PathLike)):
        infos = list_tensors(source)
    else:
        infos = tuple(source)
        bad = [type(i).__name__ for i in infos if not isinstance(i, TensorInfo)]
        if bad:
            raise InputError(
                f"source must be a path or an iterable of TensorInfo; got items of type {bad[0]}"
            )
    matrices: list[TensorInfo] = []
    skipped: list[Skipped] = []
    for info in infos:
        outcome = _classify(info, includes, excludes, nd_policy)
        if outcome is None:
            matrices.append(info)
        else:
            skipped.append(outcome)
    return Selection(matrices=tuple(matrices), skipped=tuple(skipped), nd_policy=nd_policy)


def load_matrix(info: TensorInfo, *, nd_policy: NDPolicy = "skip") -> Array:
    """Load one matrix in its stored dtype, reshaped to 2-D by ``nd_policy``.

    Parameters
    ----------
    info : TensorInfo
        Usually one of :attr:`Selection.matrices`.
    nd_policy : {"skip", "flatten"}, default "skip"
        Use the policy of the selection (:attr:`Selection.nd_policy`).

    Returns
    -------
    numpy.ndarray
        Shape :func:`matrix_shape(info, nd_policy=nd_policy) <matrix_shape>`, dtype
        ``info.dtype`` (bfloat16 stays an ``ml_dtypes.bfloat16`` array: the analysis
        layer converts). Peak memory is about the tensor's size.

    Raises
    ------
    ShapeError
        The tensor is not a matrix under ``nd_policy``.
    DTypeError
        The dtype is not a real floating type (see the selection rules).
    InputError
        ``info`` is not a TensorInfo or ``nd_policy`` is unknown.
    MissingFileError, FileFormatError
        As :func:`load_tensor`.
    """
    if not isinstance(info, TensorInfo):
        raise InputError(f"info must be a TensorInfo; got {type(info).__name__}")
    shape = matrix_shape(info, nd_policy=nd_policy)
    why = dtype_skip_reason(info.dtype)
    if why is not None:
        raise DTypeError(f"tensor '{info.name}' in '{info.file}' is not a matrix: {why}")
    return load_tensor(info).reshape(shape)
