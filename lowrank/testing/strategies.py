r"""Hypothesis strategies for property-testing low-rank approximations.

Designed like :mod:`hypothesis.extra.numpy`: keyword-only bounds with small defaults,
arguments validated when the strategy is *created* (a bad argument raises
:class:`hypothesis.errors.InvalidArgument` at once, with the rule and the value), and every
example built constructively: the spectrum is chosen first and the matrix is made to have
it, so nothing is filtered or rejected. The strategies:

:func:`spectra`
    Singular values: flat, power law, exponential, clustered or repeated, log-uniform; with
    exact zeros, a given condition number, or a gap at a given rank.
:func:`matrices_with_spectrum`
    :class:`~lowrank.testing.cases.MatrixWithSpectrum`: a matrix with a prescribed spectrum
    and its exact SVD, in float32/float64/complex64/complex128.
:func:`low_rank_plus_noise`, :func:`weight_like_matrices`
    A rank-r signal plus Gaussian noise; a Marchenko–Pastur bulk with a few spikes.
:func:`lora_factors`
    LoRA adapters ``(W, A, B, s)`` with PEFT's shapes and scaling.
:func:`matrix_shapes`, :func:`svd_dtypes`, :func:`orthonormal_matrices`
    The building blocks.

Notes
-----
*Shrinking.* Every choice shrinks toward the simplest example: the smallest shapes,
``float64``, a flat spectrum of ones with no zeros, ``S[0] = 1``, and identity singular
vectors (Householder factors with no reflections), so a failing test is reported on a small
diagonal matrix when one fails too. Random singular vectors come from NumPy generators
seeded by Hypothesis (``factors="haar"``) or from reflections whose integer vectors
Hypothesis draws (``factors="householder"``: signed permutations, exact zeros and ties).

Sizes are bounded (``max_side=8`` by default), so a property test runs in seconds. Those
defaults are *smaller than the sketch of any randomized method* (rank + oversampling, 10 or
more columns): on them a randomized SVD spans the whole range and is exact, so a test of one
cannot fail. Anything whose behaviour depends on the size (a sketch, a block, a tile) needs
``shape=`` or ``min_side=`` above that size; and the dtypes your code supports
(``svd_dtypes(complex=False)``, or ``dtype=np.float32``). The defaults stay small on purpose:
small matrices shrink to readable counterexamples.

Examples
--------
>>> from hypothesis import given
>>> import numpy as np
>>> from lowrank.testing import strategies as lst
>>> @given(lst.matrices_with_spectrum(max_side=5))
... def test_values(case):
...     s = np.linalg.svd(case.A.astype(np.complex128), compute_uv=False)
...     assert np.allclose(s, case.S, atol=case.spectrum_tolerance)
>>> test_values()
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from lowrank._numerics import STORAGE_EPS
from lowrank._typing import Array, ArrayLike
from lowrank._validation import as_dtype
from lowrank.errors import DTypeError
from lowrank.testing.cases import (
    LoRAFactors,
    MatrixWithSpectrum,
    NoisyLowRank,
    WeightLike,
    _build_matrix,
    haar_orthonormal,
    householder_orthonormal,
    random_lora_factors,
    weight_like_matrix,
)

__all__ = [
    "FACTOR_KINDS",
    "LORA_B_INITS",
    "SPECTRUM_KINDS",
    "SVD_DTYPES",
    "lora_factors",
    "low_rank_plus_noise",
    "matrices_with_spectrum",
    "matrix_shapes",
    "orthonormal_matrices",
    "spectra",
    "svd_dtypes",
    "weight_like_matrices",
]

T = TypeVar("T")

SPECTRUM_KINDS: tuple[str, ...] = ("flat", "power_law", "exponential", "clustered", "log_uniform")
"""Families of spectra, simplest first (Hypothesis shrinks toward the first one given).

``"flat"``: all equal. ``"power_law"``: :math:`\\sigma_i = \\sigma_1 i^{-a}` (slow decay for
:math:`a < 1`). ``"exponential"``: :math:`\\sigma_i = \\sigma_1 \\rho^{i-1}` (fast decay).
``"clustered"``: groups of exactly repeated or nearly equal values. ``"log_uniform"``:
values spread at random over the allowed decades."""

FACTOR_KINDS: tuple[str, ...] = ("householder", "haar")
"""How singular vectors are made: Householder reflections with Hypothesis-drawn integer
vectors (shrinks to the identity), or Haar-random from a Hypothesis-drawn seed."""

SVD_DTYPES: tuple[str, ...] = ("float64", "float32", "complex128", "complex64")
"""The dtypes LAPACK computes in, double precision first."""

LORA_B_INITS: tuple[str, ...] = ("zeros", "gaussian")
"""``lora_B`` at PEFT's initialisation (zeros) or after training (Gaussian)."""

_SEEDS = st.integers(0, 2**32 - 1)
_MAX_REFLECTIONS = 6
_CLUSTER_SPREADS = (0.0, 1e-12, 1e-8, 1e-4)
_DEFAULT_NOISE_LEVELS = (0.0, 1e-8, 1e-4, 1e-2, 0.3)

IntOrStrategy = int | SearchStrategy[int]
FloatOrStrategy = float | SearchStrategy[float]
ShapeArg = tuple[int, int] | SearchStrategy[tuple[int, int]] | None
DTypeArg = npt.DTypeLike | SearchStrategy[Any]


# --------------------------------------------------------------------------- validation


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(message)


def _int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(f"{name} must be an integer; got {value!r} of type {type(value).__name__}")
    result = int(value)
    if minimum is not None and result < minimum:
        raise _fail(f"{name} must be >= {minimum}; got {result}")
    if maximum is not None and result > maximum:
        raise _fail(f"{name} must be <= {maximum}; got {result}")
    return result


def _real(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    maximum: float | None = None,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise _fail(f"{name} must be finite; got {value!r}")
    if minimum is not None and (result <= minimum if exclusive else result < minimum):
        raise _fail(f"{name} must be {'>' if exclusive else '>='} {minimum:g}; got {value!r}")
    if maximum is not None and result > maximum:
        raise _fail(f"{name} must be <= {maximum:g}; got {value!r}")
    return result


def _int_or_strategy(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> IntOrStrategy:
    if isinstance(value, SearchStrategy):
        return value
    return _int(value, name, minimum=minimum, maximum=maximum)


def _real_or_strategy(
    value: object, name: str, *, minimum: float | None = None, exclusive: bool = False
) -> FloatOrStrategy:
    if isinstance(value, SearchStrategy):
        return value
    return _real(value, name, minimum=minimum, exclusive=exclusive)


def _choices(value: str | Sequence[str], name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    chosen = (value,) if isinstance(value, str) else tuple(value)
    if not chosen:
        raise _fail(f"{name} must not be empty; choose from {', '.join(map(repr, allowed))}")
    for item in chosen:
        if item not in allowed:
            raise _fail(f"{name} must contain only {', '.join(map(repr, allowed))}; got {item!r}")
    return chosen


def _numpy_dtype(value: object, name: str) -> np.dtype[Any]:
    """``value`` as a dtype, resolving the names of the ``ml_dtypes`` types (``"bfloat16"``)
    the way :mod:`lowrank.testing.cases` does, without a prior ``import ml_dtypes``."""
    try:
        return as_dtype(value, name=name)
    except DTypeError:
        raise _fail(f"{name} must be a NumPy dtype; got {value!r}") from None


def _svd_dtype(value: object, name: str = "dtype") -> np.dtype[Any]:
    dt = _numpy_dtype(value, name)
    if dt.name not in SVD_DTYPES:
        raise _fail(f"{name} must be one of {', '.join(SVD_DTYPES)}; got {dt.name}")
    return dt


def _float_dtype(value: object, name: str = "dtype") -> np.dtype[Any]:
    dt = _numpy_dtype(value, name)
    if not (dt.kind == "f" or dt.name in STORAGE_EPS) or dt.itemsize > 8:
        raise _fail(
            f"{name} must be a real floating dtype (float16, bfloat16, float32, float64); "
            f"got {dt.name}"
        )
    return dt


def _dtype_strategy(
    value: object, check: Callable[[object, str], np.dtype[Any]]
) -> SearchStrategy[np.dtype[Any]]:
    if isinstance(value, SearchStrategy):
        return value.map(lambda d: check(d, "drawn dtype"))
    return st.just(check(value, "dtype"))


def _sides(min_side: object, max_side: object, *, at_least: int = 1) -> tuple[int, int]:
    lo = _int(min_side, "min_side", minimum=1)
    hi = _int(max_side, "max_side", minimum=1)
    if hi < lo:
        raise _fail(f"max_side must be >= min_side = {lo}; got {hi}")
    if hi < at_least:
        raise _fail(f"max_side must be >= {at_least} (the length of the spectrum); got {hi}")
    return max(lo, at_least), hi


def _check_shape(value: object, name: str = "shape", *, at_least: int = 1) -> tuple[int, int]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise _fail(f"{name} must be a tuple (m, n) of two positive integers; got {value!r}")
    m = _int(value[0], f"{name}[0]", minimum=1)
    n = _int(value[1], f"{name}[1]", minimum=1)
    if min(m, n) < at_least:
        raise _fail(f"min({name}) must be >= {at_least} (the length of the spectrum); got {value}")
    return m, n


def _shape_strategy(
    shape: object, min_side: object, max_side: object, *, at_least: int = 1
) -> SearchStrategy[tuple[int, int]]:
    if shape is None:
        lo, hi = _sides(min_side, max_side, at_least=at_least)
        return matrix_shapes(min_side=lo, max_side=hi)
    if isinstance(shape, SearchStrategy):
        return shape.map(lambda s: _check_shape(s, "drawn shape", at_least=at_least))
    return st.just(_check_shape(shape, at_least=at_least))


def _draw_value(draw: st.DrawFn, value: T | SearchStrategy[T]) -> T:
    if isinstance(value, SearchStrategy):
        drawn: T = draw(value)
        return drawn
    return value


# --------------------------------------------------------------------------- building blocks


def svd_dtypes(
    *, real: bool = True, complex: bool = True, single: bool = True, double: bool = True
) -> SearchStrategy[np.dtype[Any]]:
    """The LAPACK dtypes, ``float64`` first (the shrink target).

    Parameters
    ----------
    real, complex : bool
        Include real (float32, float64) and complex (complex64, complex128) dtypes.
    single, double : bool
        Include single (float32, complex64) and double precision.

    Returns
    -------
    SearchStrategy[numpy.dtype]
        Draws one of the selected dtypes, in the order of :data:`SVD_DTYPES` (``float64``,
        ``float32``, ``complex128``, ``complex64``); shrinks toward the first selected.

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, when the flags select no dtype (neither ``real`` nor ``complex``, or
        neither ``single`` nor ``double``).

    Examples
    --------
    >>> svd_dtypes(complex=False)
    sampled_from([dtype('float64'), dtype('float32')])
    >>> from hypothesis import find, settings
    >>> find(svd_dtypes(), lambda dt: dt.kind == "c", settings=settings(database=None))
    dtype('complex128')
    """
    names = [
        name
        for name in SVD_DTYPES
        if (real if not name.startswith("complex") else complex)
        and (single if name in ("float32", "complex64") else double)
    ]
    if not names:
        raise _fail("svd_dtypes needs at least one of real/complex and one of single/double")
    return st.sampled_from([np.dtype(name) for name in names])


def matrix_shapes(*, min_side: int = 1, max_side: int = 8) -> SearchStrategy[tuple[int, int]]:
    """Shapes ``(m, n)`` with ``min_side <= m, n <= max_side``; shrinks toward ``(min_side,
    min_side)``.

    The default ``max_side=8`` is below the sketch width of a randomized SVD (rank + 10 in
    scikit-learn): pass ``min_side`` above it to test one.

    Parameters
    ----------
    min_side : int, default 1
        The smallest side, ``>= 1``.
    max_side : int, default 8
        The largest side, ``>= min_side``.

    Returns
    -------
    SearchStrategy[tuple[int, int]]
        Draws ``(m, n)``, each side independently in ``[min_side, max_side]``.

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, when a bound is not an integer ``>= 1`` or ``max_side < min_side``.

    Examples
    --------
    >>> matrix_shapes(max_side=3)
    tuples(integers(min_value=1, max_value=3), integers(min_value=1, max_value=3))
    >>> from hypothesis import find, settings
    >>> quiet = settings(database=None)
    >>> find(matrix_shapes(min_side=2), lambda shape: True, settings=quiet)
    (2, 2)
    >>> find(matrix_shapes(), lambda shape: shape[0] > shape[1], settings=quiet)  # tall
    (2, 1)
    """
    lo, hi = _sides(min_side, max_side)
    side = st.integers(lo, hi)
    return st.tuples(side, side)


def _householder_vectors(draw: st.DrawFn, n: int, k: int, complex_: bool) -> list[Array]:
    count = draw(st.integers(0, min(k, _MAX_REFLECTIONS)), label="reflections")
    entry = st.integers(-2, 2)
    vectors = []
    for _ in range(count):
        re = np.array(draw(st.lists(entry, min_size=n, max_size=n)), dtype=np.float64)
        if complex_:
            im = np.array(draw(st.lists(entry, min_size=n, max_size=n)), dtype=np.float64)
            vectors.append(re + 1j * im)
        else:
            vectors.append(re)
    return vectors


def _draw_orthonormal(draw: st.DrawFn, kind: str, n: int, k: int, complex_: bool) -> Array:
    if kind == "haar":
        return haar_orthonormal(n, k, complex_=complex_, rng=draw(_SEEDS, label="seed"))
    q = householder_orthonormal(n, k, _householder_vectors(draw, n, k, complex_))
    return q.astype(np.complex128) if complex_ else q


def orthonormal_matrices(
    n: int,
    *,
    k: int | None = None,
    dtype: DTypeArg = np.float64,
    factors: str | Sequence[str] = FACTOR_KINDS,
) -> SearchStrategy[Array]:
    r"""n×k matrices with orthonormal columns (orthogonal or unitary when ``k = n``).

    Parameters
    ----------
    n : int
        Rows, ``>= 0``.
    k : int, optional
        Columns, ``0 <= k <= n``; default ``n``.
    dtype : one of :data:`SVD_DTYPES` or a strategy of them
        Complex dtypes give unitary columns. The matrix is built in double precision and
        rounded once.
    factors : {"householder", "haar"} or a sequence of them
        See :data:`FACTOR_KINDS`.

    Returns
    -------
    SearchStrategy[ndarray]
        Draws arrays of shape ``(n, k)`` in the drawn dtype with :math:`Q^HQ = I_k` to the
        rounding of that dtype; with Householder factors allowed, shrinks toward the first
        ``k`` columns of the identity.

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, when ``n`` or ``k`` is not an integer with ``0 <= k <= n``, ``factors``
        is empty or names an unknown kind, or ``dtype`` is not one of :data:`SVD_DTYPES`;
        when drawn, for a drawn dtype that is not one of them.

    Examples
    --------
    >>> from hypothesis import find, settings
    >>> find(orthonormal_matrices(3, k=2), lambda Q: True, settings=settings(database=None))
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    >>> import numpy as np
    >>> from hypothesis import given
    >>> @given(orthonormal_matrices(4, k=2, dtype=svd_dtypes()))
    ... def test_orthonormal(Q):
    ...     assert np.allclose(Q.conj().T @ Q, np.eye(2), atol=1e-6)
    >>> test_orthonormal()
    """
    rows = _int(n, "n", minimum=0)
    cols = rows if k is None else _int(k, "k", minimum=0, maximum=rows)
    kinds = _choices(factors, "factors", FACTOR_KINDS)
    dtypes = _dtype_strategy(dtype, _svd_dtype)

    return _orthonormal(rows, cols, dtypes, kinds)


@st.composite
def _orthonormal(
    draw: st.DrawFn,
    rows: int,
    cols: int,
    dtypes: SearchStrategy[np.dtype[Any]],
    kinds: tuple[str, ...],
) -> Array:
    dt = draw(dtypes)
    kind = draw(st.sampled_from(kinds))
    return _draw_orthonormal(draw, kind, rows, cols, dt.kind == "c").astype(dt)


# --------------------------------------------------------------------------- spectra


def _log_profile(draw: st.DrawFn, kind: str, r: int, log_max: float) -> Array:
    """``L`` with ``L[0] = 0``, non-decreasing, length ``r``: ``sigma_i = sigma_1 exp(-L_i)``."""
    if r <= 1 or kind == "flat":
        return np.zeros(r)
    i = np.arange(1, r + 1, dtype=np.float64)
    if kind == "power_law":
        top = max(min(3.0, log_max / math.log(r)), 0.1)
        a = draw(st.floats(0.1, top), label="power-law exponent")
        return a * np.log(i)
    if kind == "exponential":
        decades = draw(st.floats(0.1, max(log_max / math.log(10.0), 0.1)), label="decades")
        return np.linspace(0.0, decades * math.log(10.0), r)
    if kind == "clustered":
        spread = draw(st.sampled_from(_CLUSTER_SPREADS), label="spread within clusters")
        steps = np.empty(r - 1)
        for j in range(r - 1):
            if draw(st.booleans(), label="new cluster"):
                steps[j] = math.log(draw(st.floats(1.1, 10.0), label="ratio between clusters"))
            else:
                steps[j] = spread
        return np.concatenate([[0.0], np.cumsum(steps)])
    # log_uniform
    xs = draw(st.lists(st.floats(0.0, 1.0), min_size=r - 1, max_size=r - 1), label="positions")
    return np.concatenate([[0.0], np.sort(np.asarray(xs, dtype=np.float64))]) * log_max


def _adjust_steps(
    steps: Array,
    *,
    gap: tuple[int, float] | None,
    condition_number: float | None,
    log_max: float,
) -> Array:
    """Impose the gap and the condition number on the log-decrements ``steps``."""
    d: Array = steps.copy()
    others = np.ones(d.size, dtype=bool)
    fixed = 0.0
    if gap is not None:
        index, ratio = gap
        d[index - 1] = fixed = math.log(ratio)
        others[index - 1] = False
    free = float(d[others].sum())
    if condition_number is not None:
        target = math.log(condition_number) - fixed
        # A profile flat to rounding (even subnormal steps) cannot be stretched exactly:
        # spread the decrements evenly instead (geometric values).
        if free > 1e-9 * target:
            d[others] *= target / free
        elif target > 0.0:
            if not others.any():
                raise _fail(
                    f"with 2 non-zero values and gap at rank 1 the condition number is the "
                    f"gap ratio {gap[1] if gap else 1.0!r}; got condition_number="
                    f"{condition_number!r}"
                )
            d[others] = target / int(others.sum())
    elif free + fixed > log_max and free > 0.0:
        d[others] *= max(log_max - fixed, 0.0) / free
    return d


def spectra(
    size: int,
    *,
    kinds: str | Sequence[str] = SPECTRUM_KINDS,
    scale: FloatOrStrategy = 1.0,
    rank: IntOrStrategy | None = None,
    condition_number: float | None = None,
    gap: tuple[int, float] | None = None,
    max_condition: float = 1e6,
) -> SearchStrategy[Array]:
    r"""Vectors of singular values: float64, non-negative, descending, length ``size``.

    Parameters
    ----------
    size : int
        The number of values, ``min(m, n)`` of the matrix they are for (``>= 0``).
    kinds : str or sequence of str, default all of :data:`SPECTRUM_KINDS`
        The families drawn from; shrinks toward the first.
    scale : float or strategy, default 1.0
        :math:`\sigma_1` when ``rank >= 1``, finite and > 0. (With ``rank`` 0 every value
        is 0, whatever ``scale``.)
    rank : int or strategy, optional
        The number of non-zero values; the remaining ``size - rank`` are exact zeros.
        Default: drawn in ``[lowest, size]`` (``lowest`` as under Raises: 0 unless a
        ``gap`` or a ``condition_number`` above 1 needs more), shrinking toward ``size``
        (no zeros); ``size`` when ``condition_number`` is given. So by default the
        all-zero vector (rank 0, the zero matrix: an edge case worth testing) is drawn
        too; pass ``rank=st.integers(1, size)`` to leave it out.
    condition_number : float, optional
        Make :math:`\sigma_1/\sigma_{\text{rank}} = \kappa` (the condition number of the
        non-zero part; of the matrix when ``rank = size``), ``>= 1``. The drawn profile is
        stretched in log scale to fit; a flat one becomes geometric.
    gap : (int, float), optional
        ``(g, ratio)``: make :math:`\sigma_g/\sigma_{g+1} = \text{ratio}` exactly, with
        ``1 <= g < size``, ``ratio >= 1``, and ``sigma_{g+1} > 0`` (so ``rank > g``).
    max_condition : float, default 1e6
        Bound on :math:`\sigma_1/\sigma_{\text{rank}}` when ``condition_number`` is not given;
        keeps the smallest non-zero value resolvable in single precision
        (:math:`\varepsilon_{32}\approx 1.2\times10^{-7}`).

    Returns
    -------
    SearchStrategy[ndarray]
        Draws float64 arrays of shape ``(size,)``: ``rank`` positive values, descending,
        then ``size - rank`` exact zeros (all zeros when the drawn ``rank`` is 0).

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, when ``size`` is not an integer ``>= 0``, ``kinds`` is empty or names an
        unknown family, ``scale`` is not finite and ``> 0``, ``condition_number`` or
        ``max_condition`` is not in ``[1, 1e300]``, ``gap`` is not a tuple ``(g, ratio)``
        with ``1 <= g < size`` and ``1 <= ratio <=`` the condition bound,
        ``condition_number > 1`` with ``size < 2``, or ``rank`` is not an integer in
        ``[lowest, size]`` (``lowest`` is ``g + 1`` with a gap, 2 with a condition number
        above 1, else 0); when drawn, for a drawn ``rank`` or ``scale`` out of range, or a
        ``condition_number`` that two values with a gap at rank 1 cannot meet.

    Notes
    -----
    Each family gives log-decrements :math:`d_i = \ln(\sigma_i/\sigma_{i+1}) \ge 0`;
    ``gap`` sets one of them and ``condition_number`` (or ``max_condition``) rescales the
    others, so that :math:`\sigma_i = \sigma_1\exp(-\sum_{j<i} d_j)` meets both exactly
    (to float64 rounding). Zero decrements give exactly repeated values.

    Examples
    --------
    >>> from hypothesis import find, settings
    >>> quiet = settings(database=None)
    >>> find(spectra(6, gap=(2, 10.0), kinds="flat"), lambda s: True, settings=quiet)
    array([1. , 1. , 0.1, 0.1, 0.1, 0.1])
    >>> find(spectra(4), lambda s: s[-1] == 0, settings=quiet)  # shrinks to one zero
    array([1., 1., 1., 0.])
    >>> find(spectra(3), lambda s: s[0] == 0, settings=quiet)  # rank 0: sigma_1 is 0, not scale
    array([0., 0., 0.])
    >>> s = find(spectra(5, condition_number=100.0, kinds="power_law"), lambda s: True,
    ...          settings=quiet)
    >>> round(float(s[0] / s[-1]), 9)
    100.0
    >>> spectra(3, rank=4)
    Traceback (most recent call last):
    ...
    hypothesis.errors.InvalidArgument: rank must be <= 3; got 4
    """
    n = _int(size, "size", minimum=0)
    chosen = _choices(kinds, "kinds", SPECTRUM_KINDS)
    scale_ = _real_or_strategy(scale, "scale", minimum=0.0, exclusive=True)
    max_cond = _real(max_condition, "max_condition", minimum=1.0, maximum=1e300)
    kappa = None
    if condition_number is not None:
        kappa = _real(condition_number, "condition_number", minimum=1.0, maximum=1e300)
    gap_: tuple[int, float] | None = None
    lowest = 0
    if gap is not None:
        if not (isinstance(gap, tuple) and len(gap) == 2):
            raise _fail(f"gap must be a tuple (g, ratio); got {gap!r}")
        g = _int(gap[0], "gap[0] (the rank of the gap)", minimum=1, maximum=max(n - 1, 1))
        if g >= n:
            raise _fail(f"gap[0] must satisfy 1 <= g < size = {n}; got {g}")
        ratio = _real(gap[1], "gap[1] (the ratio)", minimum=1.0)
        bound, bound_name = (kappa, "condition_number") if kappa else (max_cond, "max_condition")
        if ratio > bound:
            raise _fail(f"gap[1] must be <= {bound_name} = {bound:g}; got {ratio!r}")
        gap_ = (g, ratio)
        lowest = g + 1
    if kappa is not None and kappa > 1.0:
        lowest = max(lowest, 2)
        if n < 2:
            raise _fail(f"condition_number > 1 needs size >= 2; got size={n}")
    if isinstance(rank, SearchStrategy):
        rank_: IntOrStrategy | None = rank
    elif rank is None:
        rank_ = n if kappa is not None else None
    else:
        rank_ = _int(rank, "rank", minimum=lowest, maximum=n)

    return _spectra(n, chosen, scale_, rank_, lowest, kappa, gap_, max_cond)


@st.composite
def _spectra(
    draw: st.DrawFn,
    n: int,
    chosen: tuple[str, ...],
    scale_: FloatOrStrategy,
    rank_: IntOrStrategy | None,
    lowest: int,
    kappa: float | None,
    gap_: tuple[int, float] | None,
    max_cond: float,
) -> Array:
    if rank_ is None:
        r = n - draw(st.integers(0, n - lowest), label="zeros")
    else:
        r = _int(_draw_value(draw, rank_), "drawn rank", minimum=lowest, maximum=n)
    top = _real(_draw_value(draw, scale_), "drawn scale", minimum=0.0, exclusive=True)
    kind = draw(st.sampled_from(chosen), label="kind")
    log_max = math.log(kappa if kappa is not None else max_cond)
    profile = _log_profile(draw, kind, r, log_max)
    steps = _adjust_steps(
        np.diff(profile), gap=gap_, condition_number=kappa, log_max=math.log(max_cond)
    )
    values = top * np.exp(-np.concatenate([[0.0], np.cumsum(steps)]))
    return np.concatenate([values[:r], np.zeros(n - r)])


# --------------------------------------------------------------------------- matrices

SpectrumArg = ArrayLike | Callable[[int], SearchStrategy[Any]] | None


def _check_values(values: object, q: int | None, name: str) -> Array:
    """Sorted descending and padded with zeros to ``q`` (if given)."""
    try:
        s = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(f"{name} must be an array of real numbers; got {values!r}") from None
    if s.ndim != 1 or (q is not None and s.size > q):
        raise _fail(f"{name} must be 1-D with at most min(shape) = {q} values; got shape {s.shape}")
    if s.size and not (np.all(np.isfinite(s)) and float(s.min()) >= 0.0):
        raise _fail(f"{name} must be finite and non-negative; got {s}")
    s = np.sort(s)[::-1]
    return s if q is None else np.concatenate([s, np.zeros(q - s.size)])


def matrices_with_spectrum(
    *,
    shape: ShapeArg = None,
    min_side: int = 1,
    max_side: int = 8,
    dtype: DTypeArg = np.float64,
    spectrum: SpectrumArg = None,
    factors: str | Sequence[str] = FACTOR_KINDS,
) -> SearchStrategy[MatrixWithSpectrum]:
    r"""Matrices :math:`A = U\operatorname{diag}(S)V^H` with a prescribed spectrum, and their
    exact SVD (:class:`~lowrank.testing.cases.MatrixWithSpectrum`).

    Parameters
    ----------
    shape : (int, int) or strategy, optional
        Default: drawn with ``min_side <= m, n <= max_side``.
    min_side, max_side : int, default 1, 8
        Bounds on the sides when ``shape`` is not given. Matrices of at most 8×8 are
        smaller than any randomized sketch (on them a randomized SVD is exact): to test one,
        make ``min_side`` exceed its rank + oversampling.
    dtype : one of :data:`SVD_DTYPES` or a strategy of them, default float64
    spectrum : array_like, callable or None
        The singular values: an array (padded with zeros to ``min(m, n)``; drawn shapes then
        have ``min(m, n) >= len(spectrum)``), a callable ``q -> strategy`` of arrays of
        length ``q = min(m, n)`` (for example ``functools.partial(spectra,
        kinds="flat")``), or ``None`` for ``spectra(q)``.
    factors : {"householder", "haar"} or a sequence of them, default both
        See :data:`FACTOR_KINDS`.

    Returns
    -------
    SearchStrategy[MatrixWithSpectrum]

    Raises
    ------
    hypothesis.errors.InvalidArgument
        An argument is out of range (at once), or a drawn value is (when drawn), or the
        values overflow ``dtype``, or a non-zero value underflows it: values below the
        smallest normal number ``numpy.finfo(dtype).tiny`` (1.2e-38 in float32, 2.2e-308
        in float64) are refused, not rounded (they would lose their relative precision,
        or vanish: ``spectrum=[1e-50]`` in float32 gave ``A = 0`` with ``rank`` 1). Entries
        of ``A`` may still be subnormal; :attr:`MatrixWithSpectrum.spectrum_tolerance
        <lowrank.testing.cases.MatrixWithSpectrum.spectrum_tolerance>` accounts for their
        rounding.

    Examples
    --------
    >>> from hypothesis import find, settings
    >>> quiet = settings(database=None)
    >>> find(matrices_with_spectrum(), lambda c: min(c.shape) >= 2 and c.shape[0] >= 3,
    ...      settings=quiet).A
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    """
    fixed: Array | None = None
    maker: Callable[[int], SearchStrategy[Any]] | None = None
    if spectrum is None:
        maker = spectra
    elif callable(spectrum):
        maker = spectrum
    else:
        fixed = _check_values(spectrum, None, "spectrum")
    at_least = max(1, fixed.size if fixed is not None else 1)
    shapes = _shape_strategy(shape, min_side, max_side, at_least=at_least)
    dtypes = _dtype_strategy(dtype, _svd_dtype)
    kinds = _choices(factors, "factors", FACTOR_KINDS)

    return _matrices_with_spectrum(shapes, dtypes, fixed, maker, kinds)


@st.composite
def _matrices_with_spectrum(
    draw: st.DrawFn,
    shapes: SearchStrategy[tuple[int, int]],
    dtypes: SearchStrategy[np.dtype[Any]],
    fixed: Array | None,
    maker: Callable[[int], SearchStrategy[Any]] | None,
    kinds: tuple[str, ...],
) -> MatrixWithSpectrum:
    m, n = draw(shapes)
    dt = draw(dtypes)
    q = min(m, n)
    if maker is not None:
        strategy = maker(q)
        if not isinstance(strategy, SearchStrategy):
            raise _fail(f"spectrum({q}) must return a Hypothesis strategy; got {strategy!r}")
        s = _check_values(draw(strategy), q, f"spectrum({q}) draw")
        if s.size != q:
            raise _fail(f"spectrum({q}) must draw {q} values")
    else:
        assert fixed is not None
        s = _check_values(fixed, q, "spectrum")
    return _matrix(draw, s, m, n, dt, kinds)


def _matrix(
    draw: st.DrawFn, s: Array, m: int, n: int, dt: np.dtype[Any], kinds: tuple[str, ...]
) -> MatrixWithSpectrum:
    q = min(m, n)
    positive = s[s > 0.0]
    tiny = float(np.finfo(dt).tiny)
    if positive.size and float(positive.min()) < tiny:
        # Below the normal range a value keeps neither its relative precision nor, at the
        # bottom, itself (float32 [1e-50] gives A = 0 with rank 1): refuse, as for overflow.
        raise _fail(
            f"singular values down to {float(positive.min()):g} underflow {dt.name}: non-zero "
            f"values must be normal numbers, >= {tiny:g} (numpy.finfo({dt.name}).tiny)"
        )
    kind = draw(st.sampled_from(kinds), label="factors")
    U = _draw_orthonormal(draw, kind, m, q, dt.kind == "c")
    V = _draw_orthonormal(draw, kind, n, q, dt.kind == "c")
    case = _build_matrix(s, U, V.conj().T, dtype=dt, factors=kind)
    if not np.all(np.isfinite(case.A)):
        raise _fail(f"singular values up to {float(s[0]):g} overflow {dt.name}")
    return case


def low_rank_plus_noise(
    *,
    shape: ShapeArg = None,
    min_side: int = 1,
    max_side: int = 8,
    dtype: DTypeArg = np.float64,
    rank: IntOrStrategy | None = None,
    noise_level: FloatOrStrategy | None = None,
    kinds: str | Sequence[str] = SPECTRUM_KINDS,
    factors: str | Sequence[str] = FACTOR_KINDS,
) -> SearchStrategy[NoisyLowRank]:
    r"""A rank-r signal plus dense Gaussian noise, :math:`A = L + E` with
    :math:`\|E\|_F = \nu\|L\|_F` (:class:`~lowrank.testing.cases.NoisyLowRank`).

    Parameters
    ----------
    shape, min_side, max_side, dtype, factors
        As in :func:`matrices_with_spectrum`.
    rank : int or strategy, optional
        :math:`r \ge 1`; default drawn in ``[1, max(1, min(m, n) // 2)]``, shrinking to 1.
    noise_level : float or strategy, optional
        :math:`\nu \ge 0`; default drawn from 0, 1e-8, 1e-4, 1e-2, 0.3 (shrinks to 0, an
        exactly low-rank matrix).
    kinds : str or sequence of str
        Families of the signal's spectrum (see :func:`spectra`).

    Returns
    -------
    SearchStrategy[NoisyLowRank]
        Draws :class:`~lowrank.testing.cases.NoisyLowRank` cases: the signal with its exact
        SVD (singular values from :func:`spectra` with ``rank`` non-zero ones, largest 1),
        the float64 (complex128) noise, and ``A`` rounded to the drawn dtype.

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, for the arguments shared with :func:`matrices_with_spectrum`, a ``rank``
        that is not an integer ``>= 1``, a ``noise_level`` that is not finite and ``>= 0``,
        or ``kinds`` empty or naming an unknown family; when drawn, for a drawn ``rank``
        above ``min(m, n)`` (a fixed ``rank`` too), or a drawn ``noise_level`` out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import given
    >>> @given(low_rank_plus_noise(shape=(6, 5), rank=2, noise_level=0.01))
    ... def test_weyl(case):
    ...     assert case.signal.S[2:].tolist() == [0.0, 0.0, 0.0]
    ...     s = np.linalg.svd(case.A, compute_uv=False)
    ...     assert np.all(np.abs(s - case.signal.S) <= case.spectrum_tolerance)  # Weyl
    >>> test_weyl()
    """
    shapes = _shape_strategy(shape, min_side, max_side)
    dtypes = _dtype_strategy(dtype, _svd_dtype)
    rank_ = None if rank is None else _int_or_strategy(rank, "rank", minimum=1)
    if noise_level is None:
        level: FloatOrStrategy = st.sampled_from(_DEFAULT_NOISE_LEVELS)
    else:
        level = _real_or_strategy(noise_level, "noise_level", minimum=0.0)
    chosen = _choices(kinds, "kinds", SPECTRUM_KINDS)
    factor_kinds = _choices(factors, "factors", FACTOR_KINDS)

    return _low_rank_plus_noise(shapes, dtypes, rank_, level, chosen, factor_kinds)


@st.composite
def _low_rank_plus_noise(
    draw: st.DrawFn,
    shapes: SearchStrategy[tuple[int, int]],
    dtypes: SearchStrategy[np.dtype[Any]],
    rank_: IntOrStrategy | None,
    level: FloatOrStrategy,
    chosen: tuple[str, ...],
    factor_kinds: tuple[str, ...],
) -> NoisyLowRank:
    m, n = draw(shapes)
    dt = draw(dtypes)
    q = min(m, n)
    if rank_ is None:
        r = draw(st.integers(1, max(1, q // 2)), label="rank")
    else:
        r = _int(_draw_value(draw, rank_), "drawn rank", minimum=1, maximum=q)
    nu = _real(_draw_value(draw, level), "drawn noise_level", minimum=0.0)
    s = draw(_spectra(q, chosen, 1.0, r, 1, None, None, 1e6))
    signal = _matrix(draw, s, m, n, dt, factor_kinds)
    L = signal.truncation(q)
    gen = np.random.default_rng(draw(_SEEDS, label="noise seed"))
    G = gen.standard_normal((m, n))
    if dt.kind == "c":
        G = G + 1j * gen.standard_normal((m, n))
    E = G * (nu * np.linalg.norm(L) / np.linalg.norm(G))
    return NoisyLowRank(A=(L + E).astype(dt), signal=signal, noise=E, noise_level=nu)


def weight_like_matrices(
    *,
    shape: ShapeArg = None,
    min_side: int = 1,
    max_side: int = 8,
    dtype: DTypeArg = np.float64,
    spikes: IntOrStrategy | None = None,
    spike_range: tuple[float, float] = (2.0, 10.0),
    scale: FloatOrStrategy = 1.0,
) -> SearchStrategy[WeightLike]:
    r"""Marchenko–Pastur bulk plus a few spikes, like a trained weight matrix
    (:class:`~lowrank.testing.cases.WeightLike`).

    Parameters
    ----------
    shape, min_side, max_side, dtype
        As in :func:`matrices_with_spectrum`.
    spikes : int or strategy, optional
        The number of spikes, ``0 <= spikes <= min(m, n)``; default drawn in
        ``[0, min(3, min(m, n))]``, shrinking to 0 (a pure bulk: the flat, hard case).
    spike_range : (float, float), default (2.0, 10.0)
        Bounds on the spike strengths :math:`\theta_j` relative to the bulk (above the
        detection threshold :math:`\gamma^{1/4} \le 1`).
    scale : float or strategy, default 1.0
        :math:`\sigma`, the scale of the bulk.

    Returns
    -------
    SearchStrategy[WeightLike]
        Draws :class:`~lowrank.testing.cases.WeightLike` matrices, built by
        :func:`~lowrank.testing.cases.weight_like_matrix` from drawn spikes and a drawn
        seed; shrinks toward no spikes and spike strengths ``spike_range[0]``.

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, for the arguments shared with :func:`matrices_with_spectrum`, ``spikes``
        not an integer ``>= 0`` (or above ``min(shape)`` for a fixed ``shape``),
        ``spike_range`` not a tuple of finite ``0 <= low <= high``, or ``scale`` not finite
        and ``> 0``; when drawn, for drawn ``spikes`` above ``min(m, n)`` or a drawn
        ``scale`` out of range.

    Examples
    --------
    >>> from hypothesis import find, settings
    >>> case = find(weight_like_matrices(shape=(40, 30), spikes=2), lambda case: True,
    ...             settings=settings(database=None))
    >>> case.spikes, round(case.bulk_edge, 4)
    (array([2., 2.]), 1.866)
    """
    shapes = _shape_strategy(shape, min_side, max_side)
    dtypes = _dtype_strategy(dtype, _svd_dtype)
    count = None if spikes is None else _int_or_strategy(spikes, "spikes", minimum=0)
    if not (isinstance(spike_range, tuple) and len(spike_range) == 2):
        raise _fail(f"spike_range must be a tuple (low, high); got {spike_range!r}")
    lo = _real(spike_range[0], "spike_range[0]", minimum=0.0)
    hi = _real(spike_range[1], "spike_range[1]", minimum=lo)
    scale_ = _real_or_strategy(scale, "scale", minimum=0.0, exclusive=True)
    if isinstance(shape, tuple) and isinstance(count, int) and count > min(shape):
        raise _fail(f"spikes must be <= min(shape) = {min(shape)}; got {count}")

    return _weight_like(shapes, dtypes, count, lo, hi, scale_)


@st.composite
def _weight_like(
    draw: st.DrawFn,
    shapes: SearchStrategy[tuple[int, int]],
    dtypes: SearchStrategy[np.dtype[Any]],
    count: IntOrStrategy | None,
    lo: float,
    hi: float,
    scale_: FloatOrStrategy,
) -> WeightLike:
    m, n = draw(shapes)
    dt = draw(dtypes)
    q = min(m, n)
    if count is None:
        j = draw(st.integers(0, min(3, q)), label="spikes")
    else:
        j = _int(_draw_value(draw, count), "drawn spikes", minimum=0, maximum=q)
    theta = [draw(st.floats(lo, hi), label="spike strength") for _ in range(j)]
    sigma = _real(_draw_value(draw, scale_), "drawn scale", minimum=0.0, exclusive=True)
    seed = draw(_SEEDS, label="seed")
    return weight_like_matrix((m, n), spikes=theta, scale=sigma, dtype=dt, rng=seed)


def lora_factors(
    *,
    shape: ShapeArg = None,
    min_side: int = 1,
    max_side: int = 8,
    dtype: DTypeArg = np.float64,
    rank: IntOrStrategy | None = None,
    max_rank: int = 4,
    alpha: FloatOrStrategy | None = None,
    use_rslora: bool | None = None,
    b_init: str | Sequence[str] = LORA_B_INITS,
) -> SearchStrategy[LoRAFactors]:
    r"""LoRA adapters :math:`(W, A, B, s)` with PEFT's conventions
    (:class:`~lowrank.testing.cases.LoRAFactors`).

    ``W`` is ``(out, in)``, ``A`` (``lora_A``) is ``(r, in)``, ``B`` (``lora_B``) is
    ``(out, r)`` and :math:`s = \alpha/r`, or :math:`\alpha/\sqrt r` with rsLoRA, so that the
    merged weight is :math:`W + s\,BA`.

    Parameters
    ----------
    shape : (int, int) or strategy, optional
        ``(out, in)``; default drawn with sides in ``[min_side, max_side]``.
    min_side, max_side : int, default 1, 8
        Bounds on the sides when ``shape`` is not given.
    dtype : real float dtype or strategy, default float64
        float16, bfloat16 (``ml_dtypes``), float32 or float64. The arrays are drawn in float64
        and rounded.
    rank : int or strategy, optional
        ``r >= 1``; default drawn in ``[1, max_rank]`` (may exceed ``min(out, in)``, as PEFT
        allows).
    max_rank : int, default 4
        The largest drawn rank when ``rank`` is not given, ``>= 1``.
    alpha : float or strategy, optional
        ``lora_alpha > 0``; default an integer in ``[1, 64]``.
    use_rslora : bool, optional
        Default drawn.
    b_init : {"zeros", "gaussian"} or a sequence of them, default both
        ``lora_B`` as PEFT initialises it (zeros, so the adapter starts as the identity
        update) or as after training (Gaussian).

    Returns
    -------
    SearchStrategy[LoRAFactors]
        Draws :class:`~lowrank.testing.cases.LoRAFactors` made by
        :func:`~lowrank.testing.cases.random_lora_factors` with the drawn choices and a
        drawn seed.

    Raises
    ------
    hypothesis.errors.InvalidArgument
        At once, for a bad ``shape``, ``min_side`` or ``max_side`` (as in
        :func:`matrices_with_spectrum`), a ``dtype`` that is not a real floating dtype,
        ``max_rank`` or ``rank`` not an integer ``>= 1``, ``alpha`` not finite and ``> 0``,
        ``use_rslora`` neither a bool nor ``None``, or ``b_init`` empty or naming an unknown
        initialisation; when drawn, for a drawn value out of range.

    Examples
    --------
    >>> from hypothesis import find, settings
    >>> f = find(lora_factors(shape=(5, 3), rank=2, alpha=4.0, use_rslora=False),
    ...          lambda f: f.B.any(), settings=settings(database=None))
    >>> W, A, B, s = f
    >>> W.shape, A.shape, B.shape, s
    ((5, 3), (2, 3), (5, 2), 2.0)
    """
    shapes = _shape_strategy(shape, min_side, max_side)
    dtypes = _dtype_strategy(dtype, _float_dtype)
    top = _int(max_rank, "max_rank", minimum=1)
    rank_ = None if rank is None else _int_or_strategy(rank, "rank", minimum=1)
    if alpha is None:
        alpha_: FloatOrStrategy = st.integers(1, 64).map(float)
    else:
        alpha_ = _real_or_strategy(alpha, "alpha", minimum=0.0, exclusive=True)
    if use_rslora is not None and not isinstance(use_rslora, bool):
        raise _fail(f"use_rslora must be a bool or None; got {use_rslora!r}")
    inits = _choices(b_init, "b_init", LORA_B_INITS)

    return _lora_factors(shapes, dtypes, top, rank_, alpha_, use_rslora, inits)


@st.composite
def _lora_factors(
    draw: st.DrawFn,
    shapes: SearchStrategy[tuple[int, int]],
    dtypes: SearchStrategy[np.dtype[Any]],
    top: int,
    rank_: IntOrStrategy | None,
    alpha_: FloatOrStrategy,
    use_rslora: bool | None,
    inits: tuple[str, ...],
) -> LoRAFactors:
    out_features, in_features = draw(shapes)
    dt = draw(dtypes)
    if rank_ is None:
        r = draw(st.integers(1, top), label="rank")
    else:
        r = _int(_draw_value(draw, rank_), "drawn rank", minimum=1)
    a = _real(_draw_value(draw, alpha_), "drawn alpha", minimum=0.0, exclusive=True)
    rs = draw(st.booleans(), label="use_rslora") if use_rslora is None else use_rslora
    init = draw(st.sampled_from(inits), label="b_init")
    seed = draw(_SEEDS, label="seed")
    return random_lora_factors(
        out_features, in_features, r, alpha=a, use_rslora=rs, b_init=init, dtype=dt, rng=seed
    )
