r"""Every tolerance used by :mod:`lowrank.testing`, in one place, each derived from an error
analysis written next to it.

The rounding part of all of them is ``lowrank._numerics.tolerance``,

.. math:: \tau(\text{dtype}, n, s) = c\,\varepsilon\,\sqrt{n}\,s ,

with :math:`\varepsilon` the machine epsilon of the *coarsest* dtype involved, :math:`n` the
dimension over which rounding errors accumulate, :math:`s` the magnitude of the quantity
and :math:`c` = ``factor`` (16 by default, LAPACK's constants). What changes from check to
check is :math:`n`, :math:`s`, how conditioning enters, and the terms that are not
rounding (LAPACK's deflation threshold; the stated accuracy of an iterative method):

=============================  ===============================================================
quantity                       tolerance (and why)
=============================  ===============================================================
singular values                :func:`svd_tolerance`: :math:`\tau(\max(m,n), \sigma_1)`. A
                               backward-stable SVD is exact for :math:`A + E` with
                               :math:`\|E\|_2 \lesssim \varepsilon\sqrt{\max(m,n)}\,\|A\|_2`,
                               and by Weyl each :math:`\sigma_i` moves by at most
                               :math:`\|E\|_2`: an *absolute* error, whatever
                               :math:`\sigma_i` is.
backward error of an SVD       :func:`backward_error_tolerance` (values and
                               :math:`U^HAV`): :math:`\tau` plus LAPACK's deflation
                               threshold :math:`t_L\sigma_1`
                               (:func:`lapack_deflation_tolerance`): the bidiagonal QR
                               iteration sets an off-diagonal entry :math:`e` to zero once
                               :math:`|e| \le t_L |d|`, a perturbation of
                               :math:`t_L\sigma_1` that :math:`U^HAV` shows directly and
                               that does not shrink with the size.
eigen-solvers on A^H A         :func:`gram_atol` (ARPACK through ``svds``):
                               :math:`\sqrt{r(\max(t^2,\varepsilon) +
                               c\varepsilon\sqrt{\max(m,n)})}` relative to
                               :math:`\sigma_1`; errors in :math:`\sigma^2` of
                               :math:`\eta` become errors of :math:`\sqrt\eta` in
                               :math:`\sigma` and in the residual.
randomized range finders       :func:`power_scheme_factor`: Halko, Martinsson & Tropp's
                               high-probability bound :math:`F\sigma_{r+1}` on the error.
singular-triplet residuals     the same :math:`\tau`: :math:`\|Av - \sigma u\|` and
                               :math:`\|A^H u - \sigma v\|` are at most :math:`\|E\|_2`.
singular vectors / subspaces   :func:`subspace_tolerance`: :math:`2\sqrt{2c}\,\tau/\delta`
                               (Wedin's :math:`\sin\Theta` theorem, for the candidate and the
                               reference), with :math:`\delta` the gap between a cluster of
                               :math:`c` values and the rest of the spectrum. Ill-conditioned
                               (nearly repeated) values have *no* well-defined vectors, only a
                               well-defined subspace; vectors are compared cluster by cluster.
norms of an error              :func:`norm_tolerance`: :math:`\tau` times the norm of a
                               vector of :math:`\min(m,n)` ones, :math:`\|E\|\le \|E\|_2
                               \cdot \|(1,\dots,1)\|` (1 spectral, :math:`\sqrt{k}`
                               Frobenius, :math:`k` nuclear, :math:`k^{1/p}` Schatten-p).
orthonormality                 :func:`orthonormality_tolerance`: :math:`\tau(m, 1)` plus
                               :math:`2\rho + \rho^2`, :math:`\rho \approx u_s` the
                               storage rounding of a unit column: each entry of the Gram
                               matrix is a length-:math:`m` inner product of unit vectors.
sums and products (LoRA)       :func:`tolerance_for` with :math:`n` the longest accumulation
                               and :math:`s` the sum of the magnitudes of the terms, so
                               that cancellation is accounted for; plus the storage
                               rounding of each array (:func:`storage_error`,
                               :func:`product_storage_error`).
=============================  ===============================================================

Half precision: *computed* in float32, *stored* in float16/bfloat16. :math:`\tau` always
uses the epsilon of the dtype the computation runs in (:math:`\varepsilon_c`: float32 for
``float16``, ``bfloat16`` and float8; float64 for integers; ``complex64`` is ``float32``);
the rounding of a result *stored* in a narrow type is a separate term: once per entry, a
relative error :math:`u_s = \varepsilon_s/2` (``bfloat16`` :math:`2^{-8}`, ``float16``
:math:`2^{-11}`), hence at most :math:`u_s\|X\|_F` in the Frobenius norm, with *no*
:math:`\sqrt n` (:func:`storage_unit_roundoff`, :func:`storage_error`,
:func:`product_storage_error`). Putting :math:`\varepsilon_s` into :math:`c\,\varepsilon
\sqrt n` instead gives tolerances of order 1 at :math:`n` of a few hundred
(:math:`16\cdot2^{-7}\sqrt{256} = 2`), which let every half-precision assertion pass on
wrong answers. :func:`coarsest_eps` still reports the storage epsilon: the precision a
stored result can be trusted to.

Each stored array's rounding enters only the quantities formed from it, in its own dtype:
a stored singular value :math:`S_i` moves by at most :math:`u_s(S)\,S_i` (relative to
itself, 0 when ``S`` is float32 or float64), while the rounding of ``U`` and ``Vh`` moves
their orthonormality, :math:`U^HAV`, the residuals and the reconstruction, never ``S``
(:func:`~lowrank.testing.assertions.assert_valid_svd`,
:func:`~lowrank.testing.assertions.assert_singular_values_close`). A single term
:math:`((1+u_s)^3 - 1)\,\sigma_1` with the coarsest :math:`u_s` of the three let a value
1 % wrong pass with bfloat16 ``U`` and ``Vh`` and a float32 ``S``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from lowrank._dtypes import finfo_of
from lowrank._numerics import STORAGE_EPS, compute_eps, frobenius_norm, storage_eps, tolerance
from lowrank._typing import Array
from lowrank._validation import (
    as_array,
    as_storage_dtype,
    check_choice,
    check_int,
    check_matrix_shape,
    check_positive_float,
    compute_dtype,
)
from lowrank.errors import DTypeError, InputError, NonFiniteError

__all__ = [
    "DEFAULT_FACTOR",
    "backward_error_tolerance",
    "coarsest_eps",
    "gram_atol",
    "lapack_deflation_tolerance",
    "norm_multiplier",
    "norm_tolerance",
    "orthonormality_tolerance",
    "power_scheme_factor",
    "product_storage_error",
    "storage_error",
    "storage_unit_roundoff",
    "subspace_tolerance",
    "svd_tolerance",
    "tolerance_for",
]

DEFAULT_FACTOR = 16.0
"""The constant :math:`c` of every tolerance unless a caller passes ``factor``."""

_LAPACK = (np.float32, np.float64, np.complex64, np.complex128)


_NORMS = ("fro", "spectral", "nuclear", "schatten", "ky_fan")


def _dtype(value: Any, name: str = "dtype") -> np.dtype[Any]:
    return as_storage_dtype(value, name=name)


def _factor(value: object) -> float:
    return check_positive_float(value, name="factor")


def _scale(value: object, name: str) -> float:
    return check_positive_float(value, name=name, allow_zero=True)


def _eps_of(dtype: Any) -> float:
    dt = _dtype(dtype)
    return max(storage_eps(dt), compute_eps(compute_dtype(dt, name="array")))


def _compute_eps(*dtypes: Any) -> float:
    """The largest epsilon of the dtypes the arrays are *computed* in (float32 for
    float16/bfloat16/float8, float64 for integers)."""
    return max(compute_eps(compute_dtype(_dtype(d), name="dtype")) for d in dtypes)


def storage_unit_roundoff(dtype: Any) -> float:
    r"""The relative error of rounding a value once to ``dtype`` *beyond* the rounding of the
    dtype it is computed in: :math:`u_s = \varepsilon_s/2` for the narrow storage types
    (``float16`` :math:`2^{-11}`, ``bfloat16`` :math:`2^{-8}`, float8), 0 otherwise.

    The library computes narrow types in float32 and rounds what it stores once to the
    narrow type; each stored entry then carries a relative error of at most :math:`u_s`
    (round to nearest). For ``float32``, ``float64``, complex and integer data the storage
    dtype *is* the compute dtype (or exact), and its rounding is already one of the
    operations a backward error analysis counts: 0.

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the stored array (NumPy dtypes, scalar types or names; ``bfloat16``
        and the float8 types of ``ml_dtypes``).

    Returns
    -------
    float
        :math:`u_s`.

    Raises
    ------
    DTypeError
        ``dtype`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> storage_unit_roundoff("bfloat16"), storage_unit_roundoff(np.float16)
    (0.00390625, 0.00048828125)
    >>> storage_unit_roundoff(np.float32)
    0.0
    """
    dt = _dtype(dtype)
    eps_s = storage_eps(dt)
    if eps_s <= compute_eps(compute_dtype(dt, name="dtype")):
        return 0.0
    return eps_s / 2.0


def _narrow(dt: np.dtype[Any]) -> bool:
    """An ``ml_dtypes`` float (``bfloat16``, the float8 types). NumPy gives them kind ``'V'``
    (void), so a test of ``dtype.kind`` alone takes them for non-numbers."""
    return dt.name in STORAGE_EPS


def _real_number_dtype(dt: np.dtype[Any]) -> bool:
    """Real numbers: NumPy's floats and integers, and the narrow floats of ``ml_dtypes``."""
    return dt.kind in "fiu" or _narrow(dt)


def _subnormal_half_spacing(dt: np.dtype[Any]) -> float:
    """Half the smallest subnormal of a float type: the absolute rounding error of a value
    in the subnormal range (where the relative bound ``u`` does not hold)."""
    return float(finfo_of(dt).smallest_subnormal) / 2.0


def _entry_rounding(x: Array) -> Array:
    r"""Per entry, a bound on :math:`|\tilde x - x|` when the stored :math:`\tilde x` is
    :math:`x` rounded once to the narrow dtype of ``x``:
    :math:`(u_s|\tilde x| + \eta/2)/(1 - u_s)` (see :func:`storage_error`); zeros when
    the dtype is not narrow (:func:`storage_unit_roundoff` is 0)."""
    u = storage_unit_roundoff(x.dtype)
    mags = np.abs(x.astype(np.float64))
    if u == 0.0:
        return np.zeros_like(mags)
    bound: Array = (u * mags + _subnormal_half_spacing(x.dtype)) / (1.0 - u)
    return bound


def storage_error(x: Any) -> float:
    r"""A bound on :math:`\|\tilde X - X\|_F` when the stored array :math:`\tilde X` is
    :math:`X` rounded once to its narrow dtype (0 for a dtype that is not narrow; see
    :func:`storage_unit_roundoff`).

    Rounding to nearest moves each entry by :math:`|\tilde x - x| \le u|x| + \eta/2`
    (:math:`\eta` the smallest subnormal: the relative bound fails only below the normal
    range), and :math:`|x| \le (|\tilde x| + \eta/2)/(1-u)`, so over the :math:`N`
    entries

    .. math:: \|\tilde X - X\|_F \le \frac{u\,\|\tilde X\|_F + (\eta/2)\sqrt N}{1 - u} .

    The bound is on the Frobenius norm and does not grow with the size: each entry is
    rounded once, relative to itself. (A sum of :math:`n` products computed in the narrow
    type would grow like :math:`\sqrt n`; the library never computes in one.)

    Parameters
    ----------
    x : array_like
        The stored array, any shape (``bfloat16`` and float8 kept as they are).

    Returns
    -------
    float
        The bound, in the units of ``x``.

    Raises
    ------
    DTypeError
        ``x`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> f"{storage_error(np.ones(4, dtype=np.float16)):.4g}"  # (2**-11 * 2 + 6e-8) / (1 - 2**-11)
    '0.0009771'
    >>> storage_error(np.ones(4))
    0.0
    """
    arr = _stored_array(x, name="x")
    u = storage_unit_roundoff(arr.dtype)
    if u == 0.0 or arr.size == 0:
        return 0.0
    tiny = _subnormal_half_spacing(arr.dtype) * math.sqrt(arr.size)
    return (u * frobenius_norm(arr.astype(np.float64)) + tiny) / (1.0 - u)


def _stored_array(x: Any, *, name: str) -> Array:
    """``x`` as an array of a numeric dtype (narrow float types kept), with finite values."""
    arr = as_array(x, name=name)
    if arr.dtype.kind not in "fciu" and not _narrow(arr.dtype):
        raise DTypeError(f"{name} must be numeric; got dtype {arr.dtype.name}")
    wide = np.complex128 if arr.dtype.kind == "c" else np.float64
    if arr.size and not np.all(np.isfinite(arr.astype(wide))):
        raise NonFiniteError(f"{name} must contain only finite values")
    return arr


def _spectral_norm(x: Any) -> float:
    arr = as_array(x, name="factor")
    wide = arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64)
    if wide.ndim == 1:  # the diagonal of diag(S)
        return float(np.max(np.abs(wide))) if wide.size else 0.0
    if wide.size == 0:
        return 0.0
    return float(np.linalg.norm(wide, 2))


def product_storage_error(*factors: Any) -> float:
    r"""A bound on :math:`\|\tilde F_1\cdots\tilde F_k - F_1\cdots F_k\|_F` when each
    stored factor :math:`\tilde F_j` is :math:`F_j` rounded once to its dtype (a 1-D factor
    stands for a diagonal matrix, like the ``S`` of ``U, S, Vh``).

    Telescoping, :math:`\prod_j\tilde F_j - \prod_j F_j = \sum_j \tilde F_1\cdots
    \tilde F_{j-1}(\tilde F_j - F_j)F_{j+1}\cdots F_k`, and :math:`\|XYZ\|_F \le
    \|X\|_2\|Y\|_F\|Z\|_2`, so with :math:`\rho_j` = :func:`storage_error` of
    :math:`\tilde F_j` and :math:`\|F_j\|_2 \le \|\tilde F_j\|_2 + \rho_j`,

    .. math::

        \Bigl\|\prod_j\tilde F_j - \prod_j F_j\Bigr\|_F \le \sum_j
        \prod_{i<j}\|\tilde F_i\|_2\;\rho_j\prod_{i>j}(\|\tilde F_i\|_2 + \rho_i) .

    For PiSSA's :math:`B = U\sqrt S`, :math:`A = \sqrt S\,V^H` in bfloat16 this is about
    :math:`2u\sqrt{\sigma_1\sum_{i\le r}\sigma_i}`, at most :math:`2u\sqrt r\,\sigma_1`:
    the spectral norm of the other factors, not their Frobenius norm, multiplies each
    rounding. 0 when no factor has a narrow dtype.

    Parameters
    ----------
    *factors : array_like
        The stored factors, 2-D (or 1-D for a diagonal), in the order of the product.

    Returns
    -------
    float
        The bound, in the units of the product.

    Raises
    ------
    DTypeError
        A factor that is not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> B = np.ones((4, 1), dtype=np.float16); A = np.ones((1, 4), dtype=np.float16)
    >>> round(product_storage_error(B, A) / 2**-11, 1)  # 2 u ||B||_2 ||A||_2 = 2 u * 4
    8.0
    >>> product_storage_error(np.ones((4, 1)), np.ones((1, 4)))
    0.0
    """
    rho = [storage_error(f) for f in factors]
    if not any(rho):
        return 0.0
    norms = [_spectral_norm(f) for f in factors]
    total = 0.0
    for j, rho_j in enumerate(rho):
        if rho_j == 0.0:
            continue
        term = rho_j
        for i in range(j):
            term *= norms[i]
        for i in range(j + 1, len(factors)):
            term *= norms[i] + rho[i]
        total += term
    return total


def orthonormality_tolerance(dtype: Any, m: int, *, factor: float = DEFAULT_FACTOR) -> float:
    r"""The largest :math:`|(Q^HQ - I)_{ij}|` of an m×k matrix with orthonormal columns that
    was computed in the compute dtype of ``dtype`` and then stored in ``dtype``.

    .. math::

        \tau = c\,\varepsilon_c\sqrt m + 2\rho + \rho^2, \qquad
        \rho = \frac{u_s + (\eta/2)\sqrt m}{1 - u_s} .

    The first term is the orthogonality of the computed columns :math:`q_j` (each entry of
    :math:`Q^HQ` an inner product of length :math:`m`, :math:`\varepsilon_c` the epsilon
    of the compute dtype: float32 for float16/bfloat16). Storing rounds each unit column
    once, :math:`\|\tilde q_j - q_j\| \le \rho` (:func:`storage_error`), and
    :math:`\tilde q_i^H\tilde q_j - q_i^Hq_j = \delta_i^H\tilde q_j + \tilde q_i^H\delta_j
    - \delta_i^H\delta_j` is at most :math:`2\rho + \rho^2` for unit columns: about
    :math:`\varepsilon_s`, *without* a factor :math:`\sqrt m`. bfloat16 at
    :math:`m = 1000`: :math:`0.0079`; float16: :math:`0.00099`; float32, float64: the
    first term alone (:math:`u_s = 0`), as before.

    :func:`~lowrank.testing.assertions.assert_orthonormal` applies the same bound entry by
    entry with the stored column norms, :math:`\tau_{ij} = c\,\varepsilon_c\sqrt m +
    \rho_i\|\tilde q_j\| + \|\tilde q_i\|\rho_j + \rho_i\rho_j`, which is this for
    unit columns.

    Parameters
    ----------
    dtype : dtype-like
        The dtype ``Q`` is stored in.
    m : int
        The length of the columns, ``>= 0``.
    factor : float, default 16.0
        :math:`c`; finite and ``> 0``.

    Returns
    -------
    float
        :math:`\tau`, absolute (the entries of :math:`Q^HQ` are near 0 and 1).

    Raises
    ------
    DTypeError
        ``dtype`` not numeric.
    InputError
        ``m`` not an integer ``>= 0`` or a bad ``factor``.

    Examples
    --------
    >>> import numpy as np
    >>> round(orthonormality_tolerance("bfloat16", 256) / 2**-7, 2)  # was 2.0 (256 x)
    1.01
    >>> orthonormality_tolerance(np.float64, 256) == tolerance_for(np.float64, size=256)
    True
    """
    m = check_int(m, name="m", minimum=0)
    dt = _dtype(dtype)
    compute = tolerance(compute_dtype(dt, name="dtype"), size=m, factor=_factor(factor), scale=1.0)
    rho = _column_rounding(dt, m, 1.0)
    return compute + 2.0 * rho + rho * rho


def _column_rounding(dt: np.dtype[Any], m: int, norm: float) -> float:
    """:func:`storage_error` of a stored column of length ``m`` and norm ``norm``."""
    u = storage_unit_roundoff(dt)
    if u == 0.0:
        return 0.0
    return (u * norm + _subnormal_half_spacing(dt) * math.sqrt(max(m, 1))) / (1.0 - u)


def coarsest_eps(*dtypes: Any) -> float:
    r"""The largest machine epsilon among ``dtypes``: the precision a result can be trusted to.

    Narrow storage types count with their storage epsilon (``bfloat16`` :math:`2^{-7}`,
    ``float16`` :math:`2^{-10}`); integers with that of ``float64``, the dtype they are
    computed in.

    Parameters
    ----------
    *dtypes : dtype-like
        One or more dtypes (NumPy dtypes, scalar types or their names): any numeric dtype,
        and the narrow types of ``ml_dtypes`` (``bfloat16``, the float8 types).

    Returns
    -------
    float
        :math:`\varepsilon_{\max}`, the largest of their epsilons.

    Raises
    ------
    ValueError
        No dtype given.
    DTypeError
        A dtype that is not numeric (a string dtype, ``bool``, ``None``).

    Examples
    --------
    >>> import numpy as np
    >>> coarsest_eps(np.float64, np.float32) == float(np.finfo(np.float32).eps)
    True
    >>> coarsest_eps(np.int64)
    2.220446049250313e-16
    >>> coarsest_eps("float32", "float16")
    0.0009765625
    """
    if not dtypes:
        raise ValueError("coarsest_eps needs at least one dtype")
    return max(_eps_of(d) for d in dtypes)


def tolerance_for(
    *dtypes: Any, size: int, scale: float = 1.0, factor: float = DEFAULT_FACTOR
) -> float:
    r"""The rounding tolerance of the library (``lowrank._numerics.tolerance``) for the
    coarsest of several dtypes, plus the rounding of narrow storage types.

    .. math:: \tau = c\,\varepsilon_c\,\sqrt{n}\,s + \bigl((1 + u_s)^3 - 1\bigr)\,s

    with :math:`\varepsilon_c` the epsilon of the coarsest *compute* dtype of ``dtypes``
    (float32 for float16, bfloat16 and float8, which are computed in float32; float64 for
    integers) and :math:`u_s` the largest :func:`storage_unit_roundoff` (0 unless a dtype is
    narrow). For LAPACK dtypes this *is* ``tolerance(dtype, size=size, scale=scale,
    factor=factor)``. The first term is the computation: :math:`n` terms accumulated in the
    compute dtype. The second is the storage: each operand rounded *once* to its narrow
    dtype, a relative error :math:`u_s` per entry that does not accumulate with :math:`n`;
    a quantity formed from up to three stored operands (an inner product of two stored
    vectors, :math:`u^HAv` and :math:`\|Av - \sigma u\|` of a stored triplet) moves by at
    most :math:`(1+u_s)^3 - 1 \approx 1.5\,\varepsilon_s` times its magnitude: a bound for
    when only the dtypes are known. With the arrays at hand the assertions use each one's
    own rounding instead (:func:`storage_error`; a stored singular value moves by
    :math:`u_s S_i`, not :math:`u_s\sigma_1`). (The storage
    epsilon in place of :math:`\varepsilon_c` in the first term, as before, gave
    :math:`16\,\varepsilon_{bf16}\sqrt{256} = 2` for a quantity of size 1.)

    Parameters
    ----------
    *dtypes : dtype-like
        The dtypes of the arrays involved (at least one); the coarsest counts (see
        :func:`coarsest_eps`).
    size : int
        :math:`n`, the length over which rounding errors accumulate, ``>= 0``.
    scale : float, default 1.0
        :math:`s`, the magnitude of the quantity; finite and ``>= 0``.
    factor : float, default 16.0
        :math:`c` (:data:`DEFAULT_FACTOR`); finite and ``> 0``.

    Returns
    -------
    float
        :math:`\tau`, an absolute tolerance in the units of ``scale``.

    Raises
    ------
    ValueError
        No dtype given.
    DTypeError
        A dtype that is not numeric.
    InputError
        ``size`` not an integer ``>= 0``, ``scale`` negative or not finite, or ``factor``
        not finite and ``> 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank._numerics import tolerance
    >>> tolerance_for(np.float64, np.float32, size=100) == tolerance(np.float32, size=100)
    True
    >>> f"{tolerance_for('bfloat16', size=4, scale=2.0):.6f}"  # 16 eps_32 sqrt(4) 2 + 3 u_s 2
    '0.023537'
    >>> f"{tolerance_for('bfloat16', size=256):.4f}"  # was 16 * 2**-7 * sqrt(256) = 2.0
    '0.0118'
    """
    if not dtypes:
        raise ValueError("tolerance_for needs at least one dtype")
    size = check_int(size, name="size", minimum=0)
    scale = _scale(scale, "scale")
    factor = _factor(factor)
    compute = max(
        (compute_dtype(_dtype(d), name="dtype") for d in dtypes), key=lambda d: compute_eps(d)
    )
    u = max(storage_unit_roundoff(d) for d in dtypes)
    return (
        tolerance(compute, size=size, scale=scale, factor=factor) + ((1.0 + u) ** 3 - 1.0) * scale
    )


def svd_tolerance(
    dtype: Any, shape: tuple[int, int], sigma_1: float, *, factor: float = DEFAULT_FACTOR
) -> float:
    r"""Absolute error of singular values and triplet residuals of a backward-stable SVD.

    .. math:: \tau = c\,\varepsilon\,\sqrt{\max(m, n)}\,\sigma_1

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the computation (:math:`\varepsilon` is its :func:`coarsest_eps`).
    shape : (int, int)
        ``(m, n)``, the shape of the matrix; sides ``>= 0``.
    sigma_1 : float
        :math:`\sigma_1 = \|A\|_2`, finite and ``>= 0``.
    factor : float, default 16.0
        :math:`c`; finite and ``> 0``.

    Returns
    -------
    float
        :math:`\tau`, absolute (in the units of ``sigma_1``).

    Raises
    ------
    ShapeError
        ``shape`` not a tuple of two integers ``>= 0``.
    InputError
        ``sigma_1`` negative or not finite, or ``factor`` not finite and ``> 0``.
    DTypeError
        ``dtype`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> float(svd_tolerance(np.float64, (100, 4), 2.0) / np.finfo(np.float64).eps)
    320.0
    """
    m, n = check_matrix_shape(shape)
    return tolerance_for(dtype, size=max(m, n), scale=_scale(sigma_1, "sigma_1"), factor=factor)


def norm_tolerance(
    dtype: Any,
    shape: tuple[int, int],
    sigma_1: float,
    *,
    norm: str = "fro",
    p: float | None = None,
    k: int | None = None,
    factor: float = DEFAULT_FACTOR,
) -> float:
    r"""Absolute rounding error of a unitarily invariant norm of an approximation error.

    A perturbation with :math:`\|E\|_2 \le \tau` (= :func:`svd_tolerance`) changes an
    m×n matrix's norm by at most :math:`\|E\| \le \tau\,\|\mathbf{1}_q\|`, the norm of a
    vector of :math:`q = \min(m, n)` ones: 1 (spectral), :math:`\sqrt q` (Frobenius),
    :math:`q` (nuclear), :math:`q^{1/p}` (Schatten-p), :math:`\min(k, q)` (Ky Fan k).

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the computation (:math:`\varepsilon` is its :func:`coarsest_eps`).
    shape : (int, int)
        ``(m, n)``, the shape of the matrix; sides ``>= 0``.
    sigma_1 : float
        :math:`\sigma_1 = \|A\|_2`, finite and ``>= 0``.
    norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
        The unitarily invariant norm.
    p : float, optional
        The order of the Schatten norm, a real number ``>= 1`` (``inf`` allowed); default
        (``None``) counts as ``inf``, the spectral norm. Ignored by the other norms.
    k : int, optional
        The number of values in the Ky Fan norm, ``>= 1``; default 1. Ignored by the other
        norms.
    factor : float, default 16.0
        :math:`c`; finite and ``> 0``.

    Returns
    -------
    float
        :func:`norm_multiplier` times :func:`svd_tolerance`: an absolute tolerance on the
        norm, in the units of ``sigma_1``.

    Raises
    ------
    ShapeError
        ``shape`` not a tuple of two integers ``>= 0``.
    InputError
        ``norm`` not one of the five names, ``p`` not a real number ``>= 1``, ``k`` not an
        integer ``>= 1``, ``sigma_1`` negative or not finite, or ``factor`` not finite and
        ``> 0``.
    DTypeError
        ``dtype`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> t = svd_tolerance(np.float64, (9, 4), 1.0)
    >>> norm_tolerance(np.float64, (9, 4), 1.0, norm="fro") == 2 * t  # sqrt(min(9, 4))
    True
    >>> norm_tolerance(np.float64, (9, 4), 1.0, norm="ky_fan", k=3) == 3 * t
    True
    """
    mult = norm_multiplier(shape, norm=norm, p=p, k=k)
    return mult * svd_tolerance(dtype, shape, sigma_1, factor=factor)


def norm_multiplier(
    shape: tuple[int, int], *, norm: str = "fro", p: float | None = None, k: int | None = None
) -> float:
    r"""The norm of a vector of :math:`q = \min(m, n)` ones in the given unitarily invariant
    norm: :math:`\|E\| \le \|E\|_2 \cdot` this, for an m×n matrix :math:`E`.

    Parameters
    ----------
    shape : (int, int)
        ``(m, n)``, the shape of :math:`E`; sides ``>= 0`` (an empty shape counts as
        :math:`q = 1`).
    norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
        The unitarily invariant norm.
    p : float, optional
        The order of the Schatten norm, a real number ``>= 1`` (``inf`` allowed); default
        (``None``) counts as ``inf``, the spectral norm. Ignored by the other norms.
    k : int, optional
        The number of values in the Ky Fan norm, ``>= 1``; default 1. Ignored by the other
        norms.

    Returns
    -------
    float
        :math:`\|(1, \dots, 1)\|`: 1 (spectral), :math:`\sqrt q` (Frobenius), :math:`q`
        (nuclear), :math:`q^{1/p}` (Schatten-p), :math:`\min(k, q)` (Ky Fan k).

    Raises
    ------
    ShapeError
        ``shape`` not a tuple of two integers ``>= 0``.
    InputError
        ``norm`` not one of the five names, ``p`` not a real number ``>= 1``, or ``k`` not
        an integer ``>= 1``.

    Examples
    --------
    >>> norm_multiplier((9, 4), norm="fro"), norm_multiplier((9, 4), norm="nuclear")
    (2.0, 4.0)
    >>> norm_multiplier((9, 4), norm="schatten", p=2), norm_multiplier((9, 4), norm="spectral")
    (2.0, 1.0)
    """
    q = max(min(check_matrix_shape(shape)), 1)
    check_choice(norm, name="norm", choices=_NORMS)
    if p is not None:
        given: object = p
        if isinstance(given, bool) or not isinstance(given, numbers.Real) or not float(given) >= 1:
            raise InputError(f"p must be a real number >= 1 (or inf); got {p!r}")
    if k is not None:
        check_int(k, name="k", minimum=1)
    if norm == "spectral":
        return 1.0
    if norm == "fro":
        return math.sqrt(q)
    if norm == "nuclear":
        return float(q)
    if norm == "schatten":
        return 1.0 if p is None or math.isinf(p) else q ** (1.0 / p)
    if norm == "ky_fan":
        return float(min(k or 1, q))
    raise AssertionError(norm)  # unreachable: check_choice


def subspace_tolerance(residual_tolerance: float, gap: float, *, cluster_size: int = 1) -> float:
    r"""Largest :math:`\sin` of the angle between computed and reference singular subspaces.

    Wedin's theorem: if the :math:`c` computed triplets have residuals
    :math:`\|AV - U\Sigma\|_2, \|A^HU - V\Sigma\|_2 \le \sqrt{c}\,\tau` and their values are
    separated from the rest of the spectrum by :math:`\delta`, the sine of the largest
    principal angle to the exact subspace is at most :math:`\sqrt{2c}\,\tau/\delta`. The
    reference carries the same error, hence

    .. math:: \sin\Theta \le 2\sqrt{2c}\,\tau/\delta .

    ``gap`` must be positive (``inf`` for a cluster isolated from the rest): with no gap
    the vectors are not determined, and there is nothing to bound; compare the subspace of
    the whole cluster of (nearly) equal values instead.

    Parameters
    ----------
    residual_tolerance : float
        :math:`\tau`, the bound on the residuals of each computed triplet (for a
        backward-stable SVD, :func:`backward_error_tolerance`); finite and ``>= 0``.
    gap : float
        :math:`\delta > 0`, the distance from the cluster's values to the rest of the
        spectrum (``inf`` when there is no rest), in the units of ``residual_tolerance``.
    cluster_size : int, default 1
        :math:`c`, the number of (nearly) equal values compared as one subspace.

    Returns
    -------
    float
        The bound on :math:`\sin\Theta`; a value ``>= 1`` bounds nothing (the gap is too
        small for the residuals).

    Raises
    ------
    InputError
        ``residual_tolerance`` negative or not finite, ``gap`` not a real number > 0, or
        ``cluster_size`` not an integer >= 1.

    Examples
    --------
    >>> subspace_tolerance(1e-14, 0.5)
    5.6568542494923806e-14
    >>> subspace_tolerance(1e-14, 0.5, cluster_size=2)  # sqrt(2) times larger
    8e-14
    >>> subspace_tolerance(1e-14, 0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lowrank.errors.InputError: gap must be > 0 (with no gap the singular vectors are not ...
    """
    tau = _scale(residual_tolerance, "residual_tolerance")
    given: object = gap
    if isinstance(given, bool) or not isinstance(given, numbers.Real) or math.isnan(given):
        raise InputError(f"gap must be a real number; got {gap!r}")
    if not float(given) > 0.0:
        raise InputError(
            f"gap must be > 0 (with no gap the singular vectors are not determined: compare the "
            f"subspace of the whole cluster); got {gap!r}"
        )
    c = check_int(cluster_size, name="cluster_size", minimum=1)
    return 2.0 * math.sqrt(2.0 * c) * tau / float(gap)


def lapack_deflation_tolerance(dtype: Any) -> float:
    r"""LAPACK's relative threshold for neglecting an off-diagonal entry of a bidiagonal
    matrix in its SVD (``?bdsqr``, ``?lasdq`` under ``?gesdd`` and ``?gesvd``).

    .. math:: t_L = \max(10, \min(100, u^{-1/8}))\,u, \qquad u = \varepsilon/2,

    LAPACK's ``TOLMUL * EPS`` (``EPS`` is the unit roundoff :math:`u`). The QR iteration
    declares :math:`d_i` converged once :math:`|e_i| \le t_L\,|d_i|`, so the computed SVD is
    exact for a matrix that differs from :math:`A` by up to :math:`t_L\sigma_1` *on top of*
    the rounding of the orthogonal transformations. The term does not grow with the size:
    it is about :math:`49\varepsilon` in float64 (:math:`u^{-1/8}\approx 98.8`) and
    :math:`5\varepsilon` in float32 (:math:`\max(10, 8.0)`). Off-diagonal entries of
    :math:`U^HAV` reach it (measured: :math:`49.7\varepsilon\sigma_1` on 3×3 float64
    matrices, whatever the size), which is why a tolerance of the form
    :math:`c\,\varepsilon\sqrt{n}\,\sigma_1` alone raises false alarms on small matrices.

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the SVD's input; :math:`\varepsilon` is that of the dtype it is
        computed in (float32 for float16/bfloat16, float64 for integers): the threshold
        belongs to the computation, not to the storage.

    Returns
    -------
    float
        :math:`t_L`, relative: the perturbation is :math:`t_L\sigma_1`.

    Raises
    ------
    DTypeError
        ``dtype`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(lapack_deflation_tolerance(np.float64) / np.finfo(np.float64).eps), 1)
    49.4
    >>> round(float(lapack_deflation_tolerance(np.float32) / np.finfo(np.float32).eps), 1)
    5.0
    """
    u = _compute_eps(dtype) / 2.0  # the SVD runs in the compute dtype (float32 for bf16)
    return float(max(10.0, min(100.0, u**-0.125)) * u)


def backward_error_tolerance(
    dtype: Any, shape: tuple[int, int], sigma_1: float, *, factor: float = DEFAULT_FACTOR
) -> float:
    r"""Backward error :math:`\|E\|_2` of a LAPACK-style SVD in ``dtype``: the computed
    factors are (near-orthonormal) exact factors of :math:`A + E`, with

    .. math:: \|E\|_2 \le \bigl(c\,\varepsilon\sqrt{\max(m, n)} + t_L\bigr)\,\sigma_1 .

    The first term is the rounding of the Householder bidiagonalisation and of the plane
    rotations, each acting on vectors of length at most :math:`\max(m, n)`: their errors
    add like a random walk, :math:`\varepsilon\sqrt{\max(m,n)}` per vector, with the
    constant :math:`c` (default 16) covering LAPACK's per-transformation constants (a
    computed reflection is within a few :math:`u` of an exact one) and the sum over both
    sides. Measured on 46,000 float64 matrices up to 40×40: the value errors reach
    :math:`3.8\,\varepsilon\sqrt{\max(m,n)}\,\sigma_1`, a quarter of :math:`c = 16`. The
    second term :math:`t_L` = :func:`lapack_deflation_tolerance` is a hard bound set by
    LAPACK's convergence test, not an estimate.

    Weyl's theorem turns it into a bound on every singular value, and it bounds every
    entry of :math:`U^HAV - \operatorname{diag}(S)` (to first order,
    :math:`U^HAV - \Sigma = -U^HEV` plus the orthogonality defects of :math:`U`, :math:`V`,
    which :func:`assert_orthonormal <lowrank.testing.assertions.assert_orthonormal>` checks
    separately and which are below :math:`c\,\varepsilon\sqrt{m}`).

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the SVD (:math:`\varepsilon` is its :func:`coarsest_eps`).
    shape : (int, int)
        ``(m, n)``, the shape of :math:`A`; sides ``>= 0``.
    sigma_1 : float
        :math:`\sigma_1 = \|A\|_2`, finite and ``>= 0``.
    factor : float, default 16.0
        :math:`c`; finite and ``> 0``.

    Returns
    -------
    float
        The bound on :math:`\|E\|_2`, absolute (in the units of ``sigma_1``):
        :func:`svd_tolerance` plus :func:`lapack_deflation_tolerance` times ``sigma_1``.

    Raises
    ------
    ShapeError
        ``shape`` not a tuple of two integers ``>= 0``.
    InputError
        ``sigma_1`` negative or not finite, or ``factor`` not finite and ``> 0``.
    DTypeError
        ``dtype`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> eps = float(np.finfo(np.float64).eps)
    >>> round(backward_error_tolerance(np.float64, (8, 8), 1.0) / eps, 1)  # 16 sqrt(8) + 49.4
    94.6
    """
    rounding = svd_tolerance(dtype, shape, sigma_1, factor=factor)
    return rounding + lapack_deflation_tolerance(dtype) * float(sigma_1)


def gram_atol(
    dtype: Any,
    shape: tuple[int, int],
    *,
    tol: float = 0.0,
    rank: int = 1,
    factor: float = DEFAULT_FACTOR,
) -> float:
    r"""Absolute accuracy, in units of :math:`\sigma_1 = \|A\|_2`, of a truncated SVD computed
    from the eigenpairs of :math:`A^HA` (SciPy's ``svds`` with ARPACK, PROPACK or LOBPCG).

    .. math::

        \text{atol} = \sqrt{r\,\bigl(\max(t^2, \varepsilon) + c\,\varepsilon\sqrt{\max(m,n)}\bigr)}

    with :math:`t` = ``tol`` the tolerance passed to ``svds`` (which hands :math:`t^2` to the
    eigensolver; 0 means machine precision), :math:`r` = ``rank``.

    Derivation. ARPACK stops when the Ritz estimate of each wanted eigenpair of
    :math:`A^HA` is below :math:`\max(t^2, u)\,\theta_i`; each application of
    :math:`A^HA` rounds by :math:`c\,\varepsilon\sqrt{\max(m,n)}\,\sigma_1^2`. So each Ritz
    value :math:`\theta_i = s_i^2` is within :math:`\eta = (\max(t^2,\varepsilon) +
    c\varepsilon\sqrt{\max(m,n)})\sigma_1^2` of :math:`\sigma_i^2`, and

    * a singular value is within :math:`|\sigma_i - s_i| \le \eta/(\sigma_i + s_i) \le
      \sqrt\eta`: near :math:`\sqrt\varepsilon\,\sigma_1` the values are not resolved at
      all (``rank=1`` gives this per-value bound, for :func:`assert_valid_svd`);
    * ``svds`` returns :math:`X = AVV^H` (the SVD of :math:`AV`), whose error is
      :math:`\|A - X\|_F^2 = \|A\|_F^2 - \sum_i\theta_i \le e_\star^2 + r\eta`, and in the
      spectral norm :math:`\|A(I - VV^H)\|_2^2 \le \sigma_{r+1}^2 + \sum_i(\sigma_i^2 -
      \theta_i)` (Ky Fan), so :math:`\|A - X\| \le e_\star + \sqrt{r\eta}`: pass
      ``rank=r`` for :func:`assert_near_optimal`. An error of :math:`\delta` in
      :math:`\sigma^2` is an error of :math:`\delta` in the *squared* residual, so a
      method correct to rounding in :math:`A^HA` leaves an excess near
      :math:`\sqrt{\varepsilon}\,\sigma_1`, which no relative tolerance absorbs when
      :math:`e_\star` is itself that small.

    Parameters
    ----------
    dtype : dtype-like
        The dtype of the computation (:math:`\varepsilon` is its :func:`coarsest_eps`).
    shape : (int, int)
        ``(m, n)``, the shape of :math:`A`; sides ``>= 0``.
    tol : float, default 0.0
        :math:`t`, the ``tol`` passed to ``svds``; finite and ``>= 0`` (0: machine
        precision).
    rank : int, default 1
        :math:`r \ge 1`: 1 for the error of each value (``atol`` of
        :func:`assert_valid_svd <lowrank.testing.assertions.assert_valid_svd>`), the rank
        of the approximation for its error (``atol`` of
        :func:`assert_near_optimal <lowrank.testing.assertions.assert_near_optimal>`).
    factor : float, default 16.0
        :math:`c`; finite and ``> 0``.

    Returns
    -------
    float
        The accuracy, relative to :math:`\sigma_1` (multiply by :math:`\|A\|_2` for an
        absolute one).

    Raises
    ------
    ShapeError
        ``shape`` not a tuple of two integers ``>= 0``.
    InputError
        ``tol`` negative or not finite, ``rank`` not an integer ``>= 1``, or ``factor``
        not finite and ``> 0``.
    DTypeError
        ``dtype`` not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> f"{gram_atol(np.float64, (50, 40), rank=5):.2g}"
    '3.6e-07'
    >>> f"{gram_atol(np.float64, (50, 40), tol=1e-6):.2g}"  # t**2 dominates: about t
    '1e-06'
    """
    t = _scale(tol, "tol")
    m, n = check_matrix_shape(shape)
    r = check_int(rank, name="rank", minimum=1)
    c = _factor(factor)
    eps = coarsest_eps(dtype)
    per_value = max(t * t, eps) + c * eps * math.sqrt(max(m, n, 1))
    return math.sqrt(r * per_value)


def power_scheme_factor(
    shape: tuple[int, int], rank: int, *, n_iter: int, oversample: int = 10
) -> float:
    r"""A high-probability bound on the spectral error of a randomized range finder with
    ``n_iter`` power iterations (Gaussian test matrix), relative to :math:`\sigma_{r+1}`:

    .. math::

        \|(I - QQ^H)A\|_2 \le F\,\sigma_{r+1}, \qquad
        F = \bigl(1 + 11\sqrt{r + p}\,\sqrt{\min(m, n)}\bigr)^{1/(2q+1)},

    with :math:`p` = ``oversample`` :math:`\ge 4` and :math:`q` = ``n_iter``, failing with
    probability at most :math:`6p^{-p}` (:math:`6\times10^{-10}` for :math:`p = 10`):
    Halko, Martinsson & Tropp (2011), eq. (1.9) for :math:`(AA^H)^qA`, whose singular values
    are :math:`\sigma_j^{2q+1}`, and their Proposition 8.6 to come back to :math:`A`
    (eq. (1.11)). Truncating :math:`QQ^HA` to rank :math:`r` adds at most
    :math:`\sigma_{r+1}` (their Theorem 9.3), so the rank-:math:`r` result is within
    :math:`(1 + F)\,\sigma_{r+1}` of :math:`A` in the spectral norm (``rtol=F`` in
    :func:`assert_near_optimal <lowrank.testing.assertions.assert_near_optimal>` with
    ``norm="spectral"``), and by Weyl each of its values is within :math:`F\sigma_{r+1}` of
    :math:`\sigma_i` (``atol=F * sigma[r] / sigma[0]`` in
    :func:`assert_valid_svd <lowrank.testing.assertions.assert_valid_svd>`). These are
    bounds that hold, not estimates of the typical error, which is much smaller.

    Halko, Martinsson & Tropp state the bound for a target rank :math:`k \ge 2`; for
    :math:`r = 1` apply it with :math:`k = 2` and :math:`p - 1` (the same :math:`k + p`,
    hence the same :math:`F`), which bounds the error by :math:`F\sigma_3 \le F\sigma_2`
    (so ``oversample >= 5`` when ``rank == 1``). Rounding adds the backward error of an SVD,
    which the assertions add anyway.

    Parameters
    ----------
    shape : (int, int)
        ``(m, n)``, the shape of :math:`A`; sides ``>= 0``.
    rank : int
        :math:`r \ge 0`, the target rank.
    n_iter : int
        :math:`q \ge 0`, the number of power iterations.
    oversample : int, default 10
        :math:`p`, the extra columns of the sketch: ``>= 4``, and ``>= 5`` when
        ``rank < 2``.

    Returns
    -------
    float
        :math:`F \ge 1`, relative to :math:`\sigma_{r+1}`.

    Raises
    ------
    ShapeError
        ``shape`` not a tuple of two integers ``>= 0``.
    InputError
        ``rank`` or ``n_iter`` not an integer ``>= 0``, or ``oversample`` too small.

    Examples
    --------
    >>> round(power_scheme_factor((100, 80), 5, n_iter=7), 3)  # scikit-learn's defaults
    1.486
    >>> round(power_scheme_factor((100, 80), 5, n_iter=0), 1)  # no power iteration
    382.1
    """
    m, n = check_matrix_shape(shape)
    r = check_int(rank, name="rank", minimum=0)
    q = check_int(n_iter, name="n_iter", minimum=0)
    p = check_int(oversample, name="oversample", minimum=5 if r < 2 else 4)
    c = 1.0 + 11.0 * math.sqrt(r + p) * math.sqrt(max(min(m, n), 1))
    return float(c ** (1.0 / (2 * q + 1)))
