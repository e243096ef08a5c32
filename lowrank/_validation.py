"""Input checks and their messages.

Each public function validates its arguments once, here, and hands a private body clean
arrays. Messages name the parameter, state the rule and echo the value.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from lowrank._dtypes import compute_dtype  # the one dtype table; re-exported here
from lowrank._numerics import STORAGE_EPS
from lowrank._typing import Array, ArrayLike, RNGLike
from lowrank.errors import DTypeError, InputError, NonFiniteError, RankError, ShapeError

__all__ = [
    "as_array",
    "as_dtype",
    "as_matrix",
    "as_storage_dtype",
    "as_vector",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_finite_array",
    "check_fraction",
    "check_instance",
    "check_int",
    "check_mapping",
    "check_matrix_shape",
    "check_path",
    "check_positive_float",
    "check_rank",
    "check_real",
    "check_shape",
    "check_str",
    "check_str_sequence",
    "compute_dtype",
    "normalize_rng",
]

T = TypeVar("T")


def as_array(value: ArrayLike, *, name: str) -> Array:
    """``value`` as a plain ndarray (no copy for one), or an
    :class:`~lowrank.errors.InputError` naming ``name`` when NumPy cannot read it (ragged
    nested lists and the like) or it is a masked array with masked entries.

    Subclasses are converted, as ``numpy.linalg`` does: ``np.matrix`` products and
    reductions keep two dimensions (``ravel`` gives a 1 x N matrix, ``*`` a matrix
    product), and masked reductions skip entries that LAPACK would read.
    """
    if type(value) is np.ndarray:
        return value
    if isinstance(value, np.ma.MaskedArray):
        _refuse_masked_entries(value, name=name)
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise InputError(f"{name} could not be read as an array: {exc}") from None


def _refuse_masked_entries(value: np.ma.MaskedArray[Any, Any], *, name: str) -> None:
    """A mask has no meaning in a matrix factorisation: a masked entry is neither zero nor
    its hidden data, so none is guessed (an unmasked masked array is its data)."""
    masked = int(np.count_nonzero(np.ma.getmaskarray(value)))
    if masked:
        raise InputError(
            f"{name} is a masked array with {masked} masked entr{'y' if masked == 1 else 'ies'} "
            f"out of {value.size}; lowrank does not interpret masks: fill them first "
            f"({name}.filled(value)) or pass the underlying data ({name}.data)"
        )


def check_finite_array(a: Array, *, name: str = "A") -> None:
    """Raise :class:`~lowrank.errors.NonFiniteError` if ``a`` holds NaN or infinity."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return
    # min and max propagate NaN and expose infinities without a full-size boolean temporary;
    # the real and imaginary parts of a complex array are views, not copies.
    parts = (a.real, a.imag) if a.dtype.kind == "c" else (a,)
    if all(np.isfinite(np.min(p)) and np.isfinite(np.max(p)) for p in parts):
        return
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    raise NonFiniteError(
        f"{name} must contain only finite values; got {bad} NaN or infinite "
        f"entr{'y' if bad == 1 else 'ies'} out of {a.size}"
    )


def as_matrix(
    A: ArrayLike,
    *,
    name: str = "A",
    allow_empty: bool = False,
    check_finite: bool = True,
) -> Array:
    """Return ``A`` as a 2-D array in its compute dtype, copying only when the dtype changes.

    Raises
    ------
    ShapeError
        ``A`` is not 2-D, or has a zero dimension and ``allow_empty`` is false.
    DTypeError
        ``A`` is not numeric.
    NonFiniteError
        ``A`` holds NaN or infinity (when ``check_finite``).
    InputError
        NumPy cannot read ``A``, or it is a masked array with masked entries.
    """
    arr = as_array(A, name=name)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D matrix; got ndim={arr.ndim} with shape {arr.shape}")
    return _finish(arr, name=name, allow_empty=allow_empty, check_finite=check_finite)


def _finish(arr: Array, *, name: str, allow_empty: bool, check_finite: bool) -> Array:
    """Emptiness, compute dtype (copying only when it changes) and finiteness."""
    if not allow_empty and arr.size == 0:
        raise ShapeError(f"{name} must not be empty; got shape {arr.shape}")
    target = compute_dtype(arr.dtype, name=name)
    if arr.dtype != target:
        arr = arr.astype(target)
    if check_finite:
        check_finite_array(arr, name=name)
    return arr


def as_vector(
    x: ArrayLike, *, name: str, allow_empty: bool = True, check_finite: bool = True
) -> Array:
    """Return ``x`` as a 1-D array in its compute dtype (see :func:`as_matrix`)."""
    arr = as_array(x, name=name)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D; got ndim={arr.ndim} with shape {arr.shape}")
    return _finish(arr, name=name, allow_empty=allow_empty, check_finite=check_finite)


def check_int(
    value: object,
    *,
    name: str,
    minimum: int | None = None,
    maximum: int | None = None,
    maximum_text: str | None = None,
) -> int:
    """Return ``value`` as an ``int`` if it is an integer within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}")
    result = int(value)
    bound = maximum_text or (str(maximum) if maximum is not None else None)
    if minimum is not None and maximum is not None and not minimum <= result <= maximum:
        raise InputError(f"{name} must satisfy {minimum} <= {name} <= {bound}; got {result}")
    if minimum is not None and result < minimum:
        raise InputError(f"{name} must be >= {minimum}; got {result}")
    if maximum is not None and result > maximum:
        raise InputError(f"{name} must be <= {bound}; got {result}")
    return result


def check_rank(
    rank: object,
    *,
    upper: int,
    name: str = "rank",
    upper_text: str = "min(A.shape)",
    lower: int = 0,
) -> int:
    """Return ``rank`` as an ``int`` if ``lower <= rank <= upper``, else raise ``RankError``."""
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise RankError(f"{name} must be an integer; got {rank!r} of type {type(rank).__name__}")
    result = int(rank)
    if not lower <= result <= upper:
        raise RankError(
            f"{name} must satisfy {lower} <= {name} <= {upper_text} = {upper}; got {result}"
        )
    return result


def check_fraction(
    value: object,
    *,
    name: str,
    low: float = 0.0,
    high: float = 1.0,
    low_inclusive: bool = False,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float in the interval given (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a real number; got {value!r}")
    result = float(value)
    lo_ok = result >= low if low_inclusive else result > low
    hi_ok = result <= high if high_inclusive else result < high
    if not (math.isfinite(result) and lo_ok and hi_ok):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise InputError(f"{name} must lie in {left}{low:g}, {high:g}{right}; got {value!r}")
    return result


def check_positive_float(value: object, *, name: str, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float that is positive (or non-negative)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a real number; got {value!r}")
    result = float(value)
    ok = result >= 0.0 if allow_zero else result > 0.0
    if not (math.isfinite(result) and ok):
        rule = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be finite and {rule}; got {value!r}")
    return result


def check_choice(value: T, *, name: str, choices: Collection[T]) -> T:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise InputError(f"{name} must be one of {listed}; got {value!r}")
    return value


def normalize_rng(rng: RNGLike) -> np.random.Generator:
    """Normalise ``rng`` once with :func:`numpy.random.default_rng`."""
    if rng is None or isinstance(rng, (np.random.Generator, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    seed: object = rng  # callers may pass anything; check it as such
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"rng must be None, an int seed or a numpy.random.Generator; got {rng!r}")
    if int(rng) < 0:
        raise InputError(f"rng seed must be a non-negative integer; got {rng}")
    return np.random.default_rng(int(rng))


def check_bool(value: object, *, name: str) -> bool:
    """Return ``value`` as a ``bool`` if it is one (``numpy.bool_`` included).

    Integers and strings are refused: ``"no"`` is truthy, and ``2`` is a typo as often as not.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"{name} must be True or False; got {value!r} of type {type(value).__name__}")


def check_real(value: object, *, name: str) -> float:
    """Return ``value`` as a finite float (any sign)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a real number; got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise InputError(f"{name} must be finite; got {value!r}")
    return result


def check_str(value: object, *, name: str, allow_empty: bool = True) -> str:
    """Return ``value`` if it is a string (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string; got {value!r} of type {type(value).__name__}")
    if not allow_empty and not value:
        raise InputError(f"{name} must be a non-empty string; got {value!r}")
    return value


def check_str_sequence(value: object, *, name: str) -> tuple[str, ...]:
    """Return ``value`` as a tuple of strings; a bare string is refused (it would be iterated)."""
    if isinstance(value, (str, bytes)) or not _iterable(value):
        raise InputError(
            f"{name} must be a sequence of strings; got {value!r} of type {type(value).__name__}"
        )
    items: tuple[object, ...] = tuple(cast("Iterable[object]", value))
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise InputError(f"{name} must hold only strings; got {bad[0]!r} in {value!r}")
    return cast("tuple[str, ...]", items)


def _iterable(value: object) -> bool:
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


def check_mapping(value: object, *, name: str) -> Mapping[Any, Any]:
    """Return ``value`` if it is a mapping (a ``dict`` or the like)."""
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be a mapping; got {value!r} of type {type(value).__name__}")
    return value


def check_callable(value: object, *, name: str) -> Any:
    """Return ``value`` if it is callable."""
    if not callable(value):
        raise InputError(f"{name} must be callable; got {value!r} of type {type(value).__name__}")
    return value


def check_instance(value: object, cls: type[T], *, name: str, what: str | None = None) -> T:
    """Return ``value`` if it is an instance of ``cls``."""
    if not isinstance(value, cls):
        raise InputError(
            f"{name} must be {what or 'a ' + cls.__name__}; got {value!r} of type "
            f"{type(value).__name__}"
        )
    return value


def check_path(value: object, *, name: str) -> Path:
    """Return ``value`` as a :class:`pathlib.Path` if it is a string or ``os.PathLike``."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and text:
            return Path(text)
    raise InputError(
        f"{name} must be a non-empty path (str or os.PathLike); got {value!r} of type "
        f"{type(value).__name__}"
    )


def check_shape(
    shape: object, *, name: str = "shape", ndim: int = 2, allow_zero: bool = True
) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ``ndim`` non-negative (or positive) ``int``.

    Lists and tuples of integers are accepted; floats, booleans and wrong lengths are not.
    """
    lowest = 0 if allow_zero else 1
    rule = f"a tuple of {ndim} integers >= {lowest}"
    if not isinstance(shape, (tuple, list)) or len(shape) != ndim:
        raise ShapeError(f"{name} must be {rule}; got {shape!r}")
    dims = []
    for d in shape:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) or d < lowest:
            raise ShapeError(f"{name} must be {rule}; got {shape!r}")
        dims.append(int(d))
    return tuple(dims)


def check_matrix_shape(shape: object, *, name: str = "shape") -> tuple[int, int]:
    """:func:`check_shape` for the ``(m, n)`` of a matrix."""
    m, n = check_shape(shape, name=name, ndim=2)
    return m, n


def as_dtype(value: object, *, name: str = "dtype") -> np.dtype[Any]:
    """Return ``numpy.dtype(value)``, with a message that names the parameter on failure.

    Names of the ``ml_dtypes`` types (``"bfloat16"``, ``"float8_e4m3fn"``, ...) import
    ``ml_dtypes`` first, so they work without the caller importing it.
    """
    if isinstance(value, str) and value in STORAGE_EPS:
        try:
            import ml_dtypes
        except ImportError:
            raise DTypeError(
                f"{name}={value!r} needs the ml_dtypes package (pip install ml_dtypes, or the "
                f"'io' extra of lowrank-toolkit)"
            ) from None
        named: np.dtype[Any] = np.dtype(getattr(ml_dtypes, value))
        return named
    try:
        dt: np.dtype[Any] = np.dtype(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise DTypeError(
            f"{name} must be a NumPy dtype or its name (e.g. 'float32', 'bfloat16'); got {value!r}"
        ) from None
    return dt


def as_storage_dtype(value: object, *, name: str = "storage_dtype") -> np.dtype[Any]:
    """The dtype data was stored in: a numeric NumPy dtype or an ``ml_dtypes`` float type.

    Accepts dtypes, scalar types and names (``"bfloat16"``, ``"float16"``, ``np.float32``,
    ``ml_dtypes.bfloat16``); ``ml_dtypes`` is imported only for its own names. Objects,
    strings, booleans and ``None`` raise :class:`~lowrank.errors.DTypeError`.
    """
    if value is None:
        raise DTypeError(f"{name} must be a numeric dtype (e.g. 'bfloat16', 'float16'); got None")
    dt = as_dtype(value, name=name)
    if dt.name not in STORAGE_EPS and dt.kind not in "iufc":
        raise DTypeError(
            f"{name} must be a numeric dtype (e.g. 'bfloat16', 'float16', 'float32'); "
            f"got {value!r} ({dt.name})"
        )
    return dt
