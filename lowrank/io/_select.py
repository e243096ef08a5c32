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

With ``require_match=True``, name patterns that leave no matrix are an error whose message
names the closest tensor names (:func:`difflib.get_close_matches`), so that a pattern
written for another architecture (``*proj.weight`` on a BERT) is not silently an empty run.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, cast

from lowrank._typing import Array
from lowrank._validation import check_choice, check_path
from lowrank.errors import DTypeError, InputError, ShapeError
from lowrank.io._dtypes import dtype_skip_reason
from lowrank.io._info import TensorInfo
from lowrank.io._sources import _list_tensors, check_info, load_tensor

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

    Returns
    -------
    tuple of int
        ``(rows, columns)``, read from ``info`` (no data is loaded).

    Raises
    ------
    ShapeError
        ``info`` has fewer than 2 dimensions, or more than 2 with ``nd_policy="skip"``.
    InputError
        ``info`` is not a TensorInfo, or ``nd_policy`` is not "skip" or "flatten".

    Examples
    --------
    >>> from pathlib import Path
    >>> from lowrank.io import TensorInfo
    >>> conv = TensorInfo(name="conv.weight", shape=(8, 3, 2, 2), dtype="float32",
    ...                   file=Path("m.safetensors"), nbytes=384, format="safetensors")
    >>> matrix_shape(conv, nd_policy="flatten")
    (8, 12)
    """
    check_info(info)
    check_choice(nd_policy, name="nd_policy", choices=_ND_POLICIES)
    return _matrix_shape_or_raise(info, nd_policy)


def _matrix_shape_or_raise(info: TensorInfo, nd_policy: NDPolicy) -> tuple[int, int]:
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
    require_match: bool = False,
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
    require_match : bool, default False
        Raise when ``include`` or ``exclude`` patterns are given and no matrix is left,
        instead of returning an empty selection.

    Returns
    -------
    Selection
        The matrices and the skipped tensors with reasons, both in storage order.

    Raises
    ------
    InputError
        ``source`` is neither a non-empty path nor an iterable of TensorInfo, a pattern is
        not a string or not a valid regular expression, or ``nd_policy`` is unknown. With
        ``require_match``, also: the patterns leave no matrix; the message says how many
        tensors there are and, when ``include`` matches no name, the closest names.
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
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_safetensors(Path(d) / "m.safetensors", tensors)
    ...     select(Path(d) / "m.safetensors", include="*.q_proj.*", require_match=True)
    Traceback (most recent call last):
    ...
    lowrank.errors.InputError: include pattern '*.q_proj.*' matches none of the 3 tensors in \
'...m.safetensors' (2 of them matrices); the closest names: 'layer.0.q.weight', \
'layer.0.k.weight'
    """
    path = _source_path(source)
    check_choice(nd_policy, name="nd_policy", choices=_ND_POLICIES)
    if not isinstance(regex, bool):
        raise InputError(f"regex must be a bool; got {regex!r}")
    if not isinstance(require_match, bool):
        raise InputError(f"require_match must be a bool; got {require_match!r}")
    includes = _patterns(include, name="include", regex=regex)
    excludes = _patterns(exclude, name="exclude", regex=regex)
    if path is not None:
        infos = _list_tensors(path, name="source")
    else:
        items = tuple(cast("Iterable[object]", source))
        bad = [type(i).__name__ for i in items if not isinstance(i, TensorInfo)]
        if bad:
            raise InputError(
                f"source must be a path or an iterable of TensorInfo; got items of type {bad[0]}"
            )
        infos = cast("tuple[TensorInfo, ...]", items)
    matrices: list[TensorInfo] = []
    skipped: list[Skipped] = []
    for info in infos:
        outcome = _classify(info, includes, excludes, nd_policy)
        if outcome is None:
            matrices.append(info)
        else:
            skipped.append(outcome)
    if require_match and not matrices and (includes or excludes):
        where = f"in '{os.fspath(source)}'" if isinstance(source, (str, os.PathLike)) else "given"
        raise InputError(
            _no_match_message(
                infos,
                skipped,
                include=_as_list(include),
                exclude=_as_list(exclude),
                regex=regex,
                nd_policy=nd_policy,
                where=where,
            )
        )
    return Selection(matrices=tuple(matrices), skipped=tuple(skipped), nd_policy=nd_policy)


def _source_path(source: object) -> Path | None:
    """``source`` as a checked path, or None when it is an iterable (of TensorInfo, checked
    by the caller); anything else raises :class:`InputError` naming ``source``."""
    if isinstance(source, (str, os.PathLike)):
        return check_path(source, name="source")
    if isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise InputError(
            "source must be a path (str or os.PathLike) or an iterable of TensorInfo; got "
            f"{source!r} of type {type(source).__name__}"
        )
    return None


def _as_list(value: Patterns) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _quoted(patterns: Sequence[str], what: str) -> str:
    listed = ", ".join(repr(p) for p in patterns)
    return f"{what} pattern {listed}" if len(patterns) == 1 else f"{what} patterns {listed}"


_GLOB_SYNTAX = re.compile(r"[*?\[\]]")
_REGEX_SYNTAX = re.compile(r"[\\^$*+?()\[\]{}|]")
_NUMBER = re.compile(r"\d+")


def _literal(pattern: str, *, regex: bool) -> tuple[str, bool, bool]:
    """A pattern's literal text, lowercased, and whether it is free at its start and end."""
    if regex:
        free_start = pattern.startswith((".*", ".+"))
        free_end = pattern.endswith((".*", ".+")) and not pattern.endswith(("\\.*", "\\.+"))
        text = _REGEX_SYNTAX.sub("", re.sub(r"\.[*+]", "", pattern))
    else:
        free_start, free_end = pattern.startswith("*"), pattern.endswith("*")
        text = _GLOB_SYNTAX.sub("", pattern)
    return text.lower(), free_start, free_end


def _closest_names(
    patterns: Sequence[str], names: Sequence[str], *, regex: bool = False, n: int = 3
) -> list[str]:
    """Up to ``n`` of ``names`` closest to ``patterns``, closest first (ties in storage
    order), at most one per family of names that differ only in their numbers
    (``layer.0.q`` and ``layer.5.q``).

    Closeness is :mod:`difflib`'s similarity ratio (that of
    :func:`difflib.get_close_matches`), ignoring case, between a pattern's literal text and
    the name, or the part of the name a leading or trailing wildcard leaves to compare
    (``*proj.weight`` against the name's last 11 characters); with several patterns, the
    best of them.
    """
    literals = [_literal(p, regex=regex) for p in patterns]
    matcher = difflib.SequenceMatcher()

    def similarity(name: str) -> float:
        best = 0.0
        for text, free_start, free_end in literals:
            lowered, width = name.lower(), len(text)
            parts = [lowered]
            if free_start and free_end:
                parts += [lowered[i : i + width] for i in range(max(1, len(lowered) - width))]
            elif free_start:
                parts.append(lowered[-width:] if width else "")
            elif free_end:
                parts.append(lowered[:width])
            matcher.set_seq2(text)
            for part in parts:
                matcher.set_seq1(part)
                best = max(best, matcher.ratio())
        return best

    scores = [similarity(name) for name in names]
    found: list[str] = []
    families: set[str] = set()
    for i in sorted(range(len(names)), key=lambda i: -scores[i]):
        family = _NUMBER.sub("#", names[i])
        if family not in families:
            families.add(family)
            found.append(names[i])
            if len(found) == n:
                break
    return found


def _no_match_message(
    infos: Sequence[TensorInfo],
    skipped: Sequence[Skipped],
    *,
    include: list[str],
    exclude: list[str],
    regex: bool,
    nd_policy: NDPolicy,
    where: str,
) -> str:
    """Why ``include``/``exclude`` left no matrix, for :func:`select(require_match=True)`."""
    total = f"{len(infos)} tensor{'s' if len(infos) != 1 else ''} {where}"
    matrix_names = [info.name for info in infos if _classify(info, [], [], nd_policy) is None]
    n = len(matrix_names)
    of_them = f"{n} of them matri{'x' if n == 1 else 'ces'}"
    unmatched = sum(s.reason == "name matches no include pattern" for s in skipped)
    if include and unmatched == len(infos):
        close = _closest_names(include, matrix_names or [info.name for info in infos], regex=regex)
        hint = f"; the closest names: {', '.join(repr(c) for c in close)}" if close else ""
        verb = "matches" if len(include) == 1 else "match"
        return f"{_quoted(include, 'include')} {verb} none of the {total} ({of_them}){hint}"
    left = [s for s in skipped if s.code != "name"]
    if not left:
        if include:
            return (
                f"{_quoted(exclude, 'exclude')} excludes all {len(infos) - unmatched} of the "
                f"{total} that {_quoted(include, 'include')} matches"
            )
        return f"{_quoted(exclude, 'exclude')} excludes all of the {total} ({of_them})"
    by = " and ".join(_quoted(p, w) for p, w in ((include, "include"), (exclude, "exclude")) if p)
    first = left[0]
    return (
        f"no matrix of the {total} is left by {by}: "
        + (
            "the 1 tensor left is not a matrix"
            if len(left) == 1
            else f"the {len(left)} tensors left are not matrices"
        )
        + f" ('{first.info.name}': {first.reason})"
    )


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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from lowrank.io import list_tensors, load_matrix
    >>> with tempfile.TemporaryDirectory() as d:
    ...     np.save(Path(d) / "conv.npy", np.ones((4, 3, 2), np.float32))
    ...     (info,) = list_tensors(Path(d) / "conv.npy")
    ...     load_matrix(info, nd_policy="flatten").shape
    (4, 6)
    """
    check_info(info)
    check_choice(nd_policy, name="nd_policy", choices=_ND_POLICIES)
    shape = _matrix_shape_or_raise(info, nd_policy)
    why = dtype_skip_reason(info.dtype)
    if why is not None:
        raise DTypeError(f"tensor '{info.name}' in '{info.file}' is not a matrix: {why}")
    return load_tensor(info).reshape(shape)
