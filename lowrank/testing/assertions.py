r"""Assertions for truncated SVDs, low-rank approximations and LoRA adapters.

Each raises :class:`AssertionError` with a message that says what failed, by how much, and
against which tolerance; none returns a value. Tolerances come from
:mod:`lowrank.testing.tolerances` (machine epsilon of the coarsest dtype involved × square
root of the accumulation length × the scale of the quantity × ``factor``; singular vectors
additionally divided by the spectral gap). Arguments that are not what the assertion needs
(a bad ``norm``, a negative ``rtol``) raise :class:`lowrank.InputError` instead: that is a
bug in the test, not in the code under test.

=====================================  =========================================================
assertion                              checks
=====================================  =========================================================
:func:`assert_valid_svd`               shapes; real, non-negative, descending ``S``; orthonormal
                                       ``U`` and ``V``; ``S`` equal to the float64 reference;
                                       every triplet a singular triplet of ``A``; the
                                       reconstruction error equal to the EYM optimum; vectors
                                       equal to a reference up to sign (up to rotation within
                                       clusters of equal values).
:func:`assert_near_optimal`            :math:`e^\star \le \|A - X\| \le (1+\epsilon)e^\star`,
                                       :math:`e^\star` the Eckart–Young–Mirsky optimum.
:func:`assert_lora_reconstruction`     :math:`W_{res} + s\,BA = W` with PEFT's shapes.
:func:`assert_adapters_agree`          two callables ``x -> y`` agree on random inputs.
:func:`assert_orthonormal`             :math:`Q^HQ = I`.
:func:`assert_singular_values_close`   two vectors of singular values agree.
=====================================  =========================================================
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from lowrank._numerics import frobenius_norm, power_of_two_scale, tolerance
from lowrank._typing import Array, ArrayLike, NormName, RNGLike
from lowrank._validation import (
    as_array,
    as_storage_dtype,
    as_vector,
    check_bool,
    check_callable,
    check_choice,
    check_finite_array,
    check_int,
    check_positive_float,
    check_real,
    check_str,
    compute_dtype,
    normalize_rng,
)
from lowrank.approx import NORMS, eym_error, residual_norm
from lowrank.errors import InputError, ShapeError
from lowrank.svd import singular_values as _singular_values
from lowrank.testing.cases import _float_dtype
from lowrank.testing.tolerances import (
    DEFAULT_FACTOR,
    _entry_rounding,
    _narrow,
    _real_number_dtype,
    backward_error_tolerance,
    coarsest_eps,
    norm_multiplier,
    product_storage_error,
    storage_error,
    storage_unit_roundoff,
    subspace_tolerance,
    tolerance_for,
)

__all__ = [
    "assert_adapters_agree",
    "assert_lora_reconstruction",
    "assert_near_optimal",
    "assert_orthonormal",
    "assert_singular_values_close",
    "assert_valid_svd",
]


def _wide(*arrays: Array) -> type[np.floating[Any]] | type[np.complexfloating[Any, Any]]:
    return np.complex128 if any(x.dtype.kind == "c" for x in arrays) else np.float64


def _name(dtype: Any) -> str:
    return str(np.dtype(dtype).name)


def _check_factor(factor: object) -> float:
    return check_positive_float(factor, name="factor")


def _check_rtol(rtol: object, name: str = "rtol") -> float:
    return check_positive_float(rtol, name=name, allow_zero=True)


def _finite(x: Array, what: str) -> None:
    # bfloat16 and float8 have kind 'V' but can hold NaN and inf too.
    if (x.dtype.kind in "fc" or _narrow(x.dtype)) and not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise AssertionError(f"{what} has {bad} NaN or infinite entries out of {x.size}")


def _as_float_array(x: ArrayLike, what: str) -> Array:
    """``x`` as an array; narrow float types (bfloat16, float8) are kept as they are."""
    arr = as_array(x, name=what)
    if arr.dtype.kind not in "fciu" and not _narrow(arr.dtype):
        raise InputError(f"{what} must be numeric; got dtype {arr.dtype.name}")
    return arr


# --------------------------------------------------------------------------- orthonormality


def assert_orthonormal(Q: ArrayLike, *, name: str = "Q", factor: float = DEFAULT_FACTOR) -> None:
    r"""Assert that the columns of ``Q`` are orthonormal: :math:`|(Q^H Q - I)_{ij}| \le
    \tau_{ij}` for every entry.

    .. math::

        \tau_{ij} = c\,\varepsilon_c\sqrt m + \rho_i\|q_j\| + \|q_i\|\rho_j +
        \rho_i\rho_j

    (:func:`~lowrank.testing.tolerances.orthonormality_tolerance` for unit columns). The
    first term is the rounding of an orthonormal basis *computed* in the compute dtype of
    ``Q`` (:math:`\varepsilon_c` of float32 for float16/bfloat16): every entry of
    :math:`Q^HQ` is an inner product of length :math:`m`. The others are the rounding of
    each column once to the dtype ``Q`` is *stored* in, :math:`\rho_j` =
    :func:`~lowrank.testing.tolerances.storage_error` of column :math:`j` (about
    :math:`u_s\|q_j\|`, no :math:`\sqrt m`; 0 for float32, float64 and complex). So the
    tolerance is about :math:`\varepsilon_s` = 0.0078 for bfloat16 and 0.00098 for
    float16 at any :math:`m`: columns at 60 degrees (0.5) or of norm 1.05 (0.1) fail.

    Parameters
    ----------
    Q : array_like, shape (m, k)
        The matrix whose columns are checked, in any numeric dtype (``bfloat16`` and the
        float8 types are kept as they are, so the tolerance is theirs). No columns pass.
    name : str, default "Q"
        What the message calls ``Q``.
    factor : float, default 16
        The constant :math:`c` of the tolerance; finite and ``> 0``.

    Raises
    ------
    AssertionError
        ``Q`` not 2-D, not finite, or not orthonormal to the tolerance.
    InputError
        ``Q`` not numeric, ``name`` not a string, or a bad ``factor``.

    Examples
    --------
    >>> import numpy as np
    >>> assert_orthonormal(np.eye(3)[:, :2])
    >>> assert_orthonormal(np.array([[1.0, 1.0], [0.0, 1.0]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: Q ((2, 2), float64) is not orthonormal: max |Q^H Q - I| = 1 at (0, 1) > ...
    """
    name = check_str(name, name="name")
    q = _as_float_array(Q, name)
    fac = _check_factor(factor)
    if q.ndim != 2:
        raise AssertionError(f"{name} must be 2-D; got shape {q.shape}")
    if q.shape[1] == 0:
        return
    _finite(q, name)
    qw = q.astype(_wide(q))
    gram = qw.conj().T @ qw
    dev = np.abs(gram - np.eye(q.shape[1]))
    m = q.shape[0]
    tols = np.full(dev.shape, tolerance(compute_dtype(q.dtype, name=name), size=m, factor=fac))
    if storage_unit_roundoff(q.dtype):
        # One storage rounding per column: q~_i^H q~_j moves by rho_i |q~_j| + |q~_i| rho_j
        # + rho_i rho_j, with rho_j the bound on the rounding of column j.
        norms = np.sqrt(np.real(np.diag(gram)))
        rho = np.array([storage_error(q[:, j]) for j in range(q.shape[1])])
        tols += np.outer(rho, norms) + np.outer(norms, rho) + np.outer(rho, rho)
    worst = np.unravel_index(int(np.argmax(dev - tols)), dev.shape)
    err = float(dev[worst])
    tol = float(tols[worst])
    if not err <= tol:
        where = (int(worst[0]), int(worst[1]))
        raise AssertionError(
            f"{name} ({q.shape}, {_name(q.dtype)}) is not orthonormal: max |{name}^H {name} - I| "
            f"= {err:.3g} at {where} > tolerance {tol:.3g}"
        )


def _column_storage(Q: Array) -> tuple[float, float]:
    """``(rho, nu)``: the largest :func:`storage_error` of a column of ``Q`` (0 unless ``Q``
    is stored in a narrow dtype) and the largest stored column norm."""
    if Q.shape[1] == 0:
        return 0.0, 0.0
    nu = float(np.max(np.linalg.norm(Q.astype(_wide(Q)), axis=0)))
    if not storage_unit_roundoff(Q.dtype):
        return 0.0, nu
    return max(storage_error(Q[:, j]) for j in range(Q.shape[1])), nu


# --------------------------------------------------------------------------- singular values


def assert_singular_values_close(
    actual: ArrayLike,
    expected: ArrayLike,
    *,
    dtype: Any,
    size: int,
    rtol: float | None = None,
    factor: float = DEFAULT_FACTOR,
) -> None:
    r"""Assert that two vectors of singular values agree.

    By default each value must satisfy :math:`|a_i - e_i| \le \tau_i`,

    .. math::

        \tau_i = c\,\varepsilon_c\sqrt{n}\,\sigma_1 + \frac{u_s|a_i| + \eta/2}{1 - u_s} ,

    :math:`\sigma_1 = \max_i e_i`. The first term is the computation: a backward-stable SVD
    in the compute dtype of ``dtype`` (:math:`\varepsilon_c` of float32 for float16 and
    bfloat16, which are computed in float32) of a matrix whose larger side is :math:`n` =
    ``size`` perturbs every value by at most that much (Weyl). The second is the storage of
    ``actual`` itself: a computed value :math:`\hat a_i` rounded once to the dtype of
    ``actual`` moves by :math:`|a_i - \hat a_i| \le u_s|\hat a_i| + \eta/2 \le
    (u_s|a_i| + \eta/2)/(1 - u_s)`, with :math:`u_s` its
    :func:`~lowrank.testing.tolerances.storage_unit_roundoff` (:math:`2^{-8}` for
    bfloat16, :math:`2^{-11}` for float16, 0 for float32 and float64) and :math:`\eta` its
    smallest subnormal (0 when :math:`u_s` is 0). It is relative to each value, not to
    :math:`\sigma_1`: rounding a value does not move it by more than its own size. So a
    value 1 % wrong fails whenever :math:`\tau_i < 0.01\,e_i`; in bfloat16 (0.39 %) and
    float16 for every value above the computation term. ``expected`` must be the values
    of the matrix as the SVD saw it (as stored): rounding the matrix itself to a narrow
    dtype moves its values by up to :math:`u_s\|A\|_F`, which is not part of this
    tolerance (pass ``rtol`` to compare with the values before that rounding). With
    ``rtol`` each value must instead be within ``rtol`` relative to the expected one.

    ``expected`` is the reference and must be a real, finite, non-negative 1-D array
    (else :class:`~lowrank.errors.InputError`); ``actual`` is what is tested, so a shape
    that differs from ``expected``'s, complex or non-finite entries raise
    :class:`AssertionError` (an ``actual`` that is not numbers at all is an ``InputError``).

    Parameters
    ----------
    actual : array_like, shape (q,)
        The singular values under test.
    expected : array_like, shape (q,)
        The reference values: real, finite and non-negative, in any order.
    dtype : dtype-like
        The dtype of the matrix (the coarsest involved): :math:`\varepsilon_c` is the epsilon
        of the dtype it is computed in (float32 for float16 and bfloat16, float64 for
        integers); the storage term comes from the dtype of ``actual``. Not used with
        ``rtol``.
    size : int
        :math:`n`, the larger side of the matrix, ``>= 0``. Not used with ``rtol``.
    rtol : float, optional
        A relative tolerance (finite, ``>= 0``) that replaces the absolute one: each value
        must satisfy :math:`|a_i - e_i| \le \text{rtol}\,e_i`.
    factor : float, default 16
        The constant :math:`c` of the absolute tolerance; finite and ``> 0``.

    Raises
    ------
    AssertionError
        ``actual`` of another shape, complex or not finite, or a value off by more than
        the tolerance.
    InputError
        A bad ``expected``, a non-numeric ``actual``, or a bad ``size``, ``rtol`` or
        ``factor``.
    DTypeError
        ``dtype`` not a numeric dtype.

    Examples
    --------
    >>> import numpy as np
    >>> assert_singular_values_close([3.0, 1.0], [3.0, 1.0 + 1e-15], dtype=np.float64, size=4)
    >>> assert_singular_values_close([3.0, 1.1], [3.0, 1.0], dtype=np.float64, size=4)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: singular value 1 is 1.1, expected 1.0: error 0.1 > tolerance 2.13e-14 ...
    >>> assert_singular_values_close([3.0, 1.1], [3.0, 1.0], dtype=np.float64, size=4, rtol=0.2)
    """
    e = as_vector(expected, name="expected")
    if e.dtype.kind == "c":
        raise InputError(f"expected must be real; got dtype {e.dtype.name}")
    if e.size and float(np.min(e)) < 0.0:
        raise InputError(f"expected must be non-negative; got {e}")
    e = e.astype(np.float64)
    got = _as_float_array(actual, "actual")
    fac = _check_factor(factor)
    if got.shape != e.shape:
        raise AssertionError(f"actual has shape {got.shape}; expected has shape {e.shape}")
    if got.dtype.kind == "c":
        raise AssertionError(f"actual must be real; got dtype {got.dtype.name}")
    _finite(got, "actual")
    a = got.astype(np.float64)
    if a.size == 0:
        return
    if rtol is not None:
        rt = _check_rtol(rtol)
        rel = np.abs(a - e) / np.where(e > 0, e, 1.0)
        worst = int(np.argmax(np.where(np.isnan(rel), np.inf, rel)))
        if not float(rel[worst]) <= rt:
            raise AssertionError(
                f"singular value {worst} is {a[worst]!r}, expected {e[worst]!r}: relative "
                f"error {float(rel[worst]):.3g} > rtol {rt:.3g}"
            )
        return
    top = float(np.max(e))
    # The computation, in the compute dtype (float32 for float16/bfloat16) ...
    computed = tolerance_for(
        compute_dtype(as_storage_dtype(dtype, name="dtype"), name="dtype"),
        compute_dtype(got.dtype, name="actual"),
        size=size,
        scale=top,
        factor=fac,
    )
    # ... plus the one rounding of each value to the dtype of actual, relative to itself.
    tols = computed + _entry_rounding(got)
    diff = np.abs(a - e)
    worst = int(np.argmax(np.where(np.isnan(diff), np.inf, diff / np.maximum(tols, 1e-300))))
    if not float(diff[worst]) <= float(tols[worst]):
        stored = (
            f" + rounding of the value to {_name(got.dtype)} {float(tols[worst]) - computed:.3g}"
            if storage_unit_roundoff(got.dtype)
            else ""
        )
        raise AssertionError(
            f"singular value {worst} is {float(a[worst])!r}, expected {float(e[worst])!r}: "
            f"error {float(diff[worst]):.3g} > tolerance {float(tols[worst]):.3g} (computation "
            f"{computed:.3g}{stored}; dtype {_name(dtype)}, size {size}, sigma_1 {top:.3g})"
        )


# --------------------------------------------------------------------------- SVD


def _triplets(result: Any, what: str) -> tuple[Array, Array, Array]:
    if all(hasattr(result, attr) for attr in ("U", "S", "Vh")):
        parts = (result.U, result.S, result.Vh)
    elif isinstance(result, (tuple, list)) and len(result) == 3:
        parts = tuple(result)
    else:
        raise InputError(
            f"{what} must have attributes U, S, Vh or be a tuple (U, S, Vh); "
            f"got {type(result).__name__}"
        )
    U, S, Vh = (as_array(x, name=f"{what} {nm}") for x, nm in zip(parts, "USV", strict=True))
    return U, S, Vh


def _clusters(sigma: Array, threshold: float) -> list[tuple[int, int]]:
    """Runs ``[a, b)`` of consecutive values whose successive differences are <= threshold."""
    if sigma.size == 0:
        return []
    breaks = np.flatnonzero(sigma[:-1] - sigma[1:] > threshold) + 1
    edges = [0, *breaks.tolist(), int(sigma.size)]
    return list(itertools.pairwise(edges))


def _check_reference(
    side: str,
    X: Array,
    ref: Array,
    sigma: Array,
    available: int,
    rank: int,
    tau: float,
    tau_vec: float,
    square: bool,
    rho: float = 0.0,
) -> None:
    r"""Compare the candidate's vectors of each well-separated cluster with the reference.

    ``rho`` bounds the storage rounding of each column: it moves :math:`\sin\Theta` of a
    cluster of ``c`` columns by at most :math:`\|\Delta X\|_2 \le \sqrt c\,\rho`, not
    divided by the gap."""
    k = sigma.size
    threshold = math.sqrt(tau * float(sigma[0])) if sigma.size else 0.0
    threshold = max(threshold, 2.0 * tau)
    for a, b in _clusters(sigma, threshold):
        if a >= rank or a >= available:
            break
        if float(sigma[a]) <= threshold:
            break  # numerically zero: the null space has no preferred basis
        if b > available:
            continue  # the reference does not hold the whole cluster
        left = float(sigma[a - 1] - sigma[a]) if a > 0 else math.inf
        if b < k:
            right = float(sigma[b - 1] - sigma[b])
        else:
            right = math.inf if square else float(sigma[b - 1])
        if math.isinf(left) and math.isinf(right):
            continue  # one cluster holds the whole space: any basis of it is right
        gap = min(left, right) - tau
        if not gap > 0.0:
            continue  # not separated from the rest beyond rounding: the vectors are not determined
        cols = slice(a, min(b, rank))
        size = min(b, rank) - a
        tol = subspace_tolerance(tau_vec, gap, cluster_size=size) + math.sqrt(size) * rho
        if not tol < 1.0:
            continue
        x = X[:, cols]
        basis = ref[:, a:b]
        sine = float(np.linalg.norm(x - basis @ (basis.conj().T @ x), 2))
        if not sine <= tol:
            if b - a == 1:
                what = (
                    f"{side}[:, {a}] (singular value {float(sigma[a]):.6g}) is not the "
                    "reference singular vector up to sign: sin(angle)"
                )
            else:
                what = (
                    f"{side}[:, {a}:{min(b, rank)}] (singular values {float(sigma[a]):.6g} .. "
                    f"{float(sigma[b - 1]):.6g}, a cluster of {b - a}) does not lie in the "
                    "reference singular subspace: sin(largest angle)"
                )
            raise AssertionError(
                f"{what} = {sine:.3g} > tolerance {tol:.3g} (= 2 sqrt(2c) tau / gap with tau "
                f"{tau_vec:.3g}, gap {gap:.3g})"
            )


def _check_sign_rule(U: Array, S: Array, tau_entry: float) -> None:
    for j in range(U.shape[1]):
        col = U[:, j]
        mags = np.abs(col)
        top = float(mags.max()) if mags.size else 0.0
        if top == 0.0:
            continue
        tied = np.flatnonzero(mags >= top - tau_entry)
        ok = [
            i
            for i in tied
            if float(np.real(col[i])) > 0 and abs(float(np.imag(col[i]))) <= tau_entry
        ]
        if not ok:
            i = int(np.argmax(mags))
            raise AssertionError(
                f"U[:, {j}] breaks the sign rule: its largest-magnitude entry U[{i}, {j}] = "
                f"{col[i]!r} is not real and positive (singular value {float(S[j]):.6g})"
            )


_ROUNDING_LEVEL = 100.0
"""A deviation within this many tolerances, with the structure intact, is reported as
rounding-level (an inaccurate method or too tight a tolerance), not as a structural bug."""


def _in_eps(x: float, eps: float, scale: float) -> str:
    """``x`` in units of ``eps * scale`` (the ε‖A‖₂ of the messages)."""
    unit = eps * scale
    return f"{x / unit:.3g}" if unit > 0 else "inf"


def _shape_diagnosis(U: Array, S: Array, Vh: Array, m: int, n: int, r: int) -> str:
    """Say which structural slip explains wrong shapes, if one does."""
    k = S.shape[0] if S.ndim == 1 else -1
    if U.shape == (m, k) and Vh.shape == (k, n) and k != r:
        off = "off by one" if abs(k - r) == 1 else f"off by {k - r:+d}"
        return f"wrong rank: {k} triplets for rank {r} ({off})"
    if U.shape == (m, r) and Vh.shape == (n, r):
        return "Vh looks transposed (it has the shape of V; pass V^H)"
    if U.shape == (r, m) and Vh.shape == (r, n):
        return "U looks transposed (it has the shape of U^H)"
    if U.shape == (n, r) and Vh.shape == (r, m):
        return "U and V look swapped (an SVD of A^T?)"
    return "the shapes do not fit A"


def _values_diagnosis(S: Array, sigma: Array, tols: Array) -> str:
    """A structural explanation of wrong values: triplets shifted by one. (Values out of
    order were refused before, as not descending.)"""
    r = S.size
    if r and sigma.size > r and np.all(np.abs(S - sigma[1 : r + 1]) <= tols):
        return (
            "S equals the reference values shifted by one (S[i] = sigma[i+1]): the leading "
            "triplet is missing (rank off by one)"
        )
    return ""


def _check_values(
    S: Array, sigma: Array, tols: Array, eps: float, sigma_1: float, dtype: Any, how: str
) -> None:
    Sw = S.astype(np.float64)
    r = Sw.size
    diff = np.abs(Sw - sigma[:r])
    bad = ~(diff <= tols)
    if not bad.any():
        return
    i = int(np.argmax(np.where(bad, np.where(np.isnan(diff), np.inf, diff / tols), -1.0)))
    head = (
        f"singular value {i} is {float(Sw[i])!r}, expected {float(sigma[i])!r}: error "
        f"{float(diff[i]):.3g} > tolerance {float(tols[i]):.3g} ({how}; dtype {_name(dtype)})"
    )
    why = _values_diagnosis(Sw, sigma, tols)
    if why:
        raise AssertionError(f"{head}: {why}")
    if float(diff[i]) <= _ROUNDING_LEVEL * float(tols[i]):
        raise AssertionError(
            f"{head}: a rounding-level deviation ({_in_eps(float(diff[i]), eps, sigma_1)} "
            f"eps ||A||_2 against an allowed {_in_eps(float(tols[i]), eps, sigma_1)}); the "
            "order and the count of the values are right, the value is inaccurate"
        )
    raise AssertionError(f"{head}: the value is wrong, not merely inaccurate")


def _core_diagnosis(a64: Array, Uw: Array, Vw: Array, Sw: Array, core: Array, tau: float) -> str:
    """Name the structural slip behind ``U^H A V != diag(S)``, or return ``""``."""
    r = Sw.size
    diag = np.diag(core)
    big = Sw > 2.0 * tau
    # A flipped sign (a phase for complex data) in one of u_i, v_i: |u^H A v| = S, wrong sign.
    flipped = [
        i
        for i in range(r)
        if big[i] and abs(abs(diag[i]) - Sw[i]) <= tau and abs(diag[i] - Sw[i]) > tau
    ]
    if flipped:
        i = flipped[0]
        value = complex(diag[i]) if np.iscomplexobj(diag) else float(diag[i])
        what = "sign" if abs(diag[i] + Sw[i]) <= tau else "phase"
        more = f" (also triplets {flipped[1:]})" if len(flipped) > 1 else ""
        return (
            f"u_{i}^H A v_{i} = {value:.6g} while S[{i}] = {float(Sw[i]):.6g}: a flipped "
            f"{what} in U[:, {i}] or in V[:, {i}] (in one of the pair, not both){more}"
        )
    # A wrong pairing: u_i lines up with v_j, j != i (|u_i^H A v_j| is S[i] or S[j]).
    mags = np.abs(core)
    close = max(tau, 1e-6 * float(Sw[0]))
    for i in range(r):
        if abs(diag[i]) >= 0.5 * Sw[i] or not big[i]:
            continue
        for j in range(r):
            if j != i and min(abs(mags[i, j] - Sw[j]), abs(mags[i, j] - Sw[i])) <= close:
                return (
                    f"U[:, {i}] pairs with V[:, {j}] (|u_{i}^H A v_{j}| = "
                    f"{float(mags[i, j]):.6g}, S[{i}] = {float(Sw[i]):.6g}, S[{j}] = "
                    f"{float(Sw[j]):.6g}): triplets {i} and {j} are swapped in U or in V (a "
                    "wrong pairing)"
                )
    # Transpositions (square shapes only): the factors of A^T, or V handed over as Vh.
    m, n = a64.shape
    alternatives: list[tuple[str, Array, Array]] = []
    if Vw.shape[0] == Vw.shape[1]:
        Vh_given = Vw.conj().T
        alternatives += [
            ("Vh looks transposed: it holds V, pass V^H", Uw, Vh_given),
            ("Vh looks transposed: it holds conj(V), pass V^H", Uw, Vh_given.conj()),
        ]
    if Uw.shape[0] == Uw.shape[1]:
        alternatives += [
            ("U looks transposed: it holds U^H", Uw.conj().T, Vw),
            ("U looks transposed: it holds U^T", Uw.T, Vw),
        ]
    if m == n:
        Vh_given = Vw.conj().T
        alternatives.append(
            ("U and V are swapped: the result is an SVD of A^T", Vh_given.T, Uw.conj())
        )
    for text, U_alt, V_alt in alternatives:
        alt = U_alt.conj().T @ a64 @ V_alt
        if np.all(np.abs(alt - np.diag(Sw)) <= max(tau, 1e-3 * float(Sw[0]))):
            return text
    return ""


_LARGE = 2.0**256
"""Above this ``max |A|``, :func:`assert_valid_svd` divides ``A`` and ``S`` by a power of two."""


def _large_scale(a: Array) -> float:
    """A power of two near ``max |A|`` when that exceeds :data:`_LARGE`, else 1.0."""
    if a.size == 0 or a.dtype.kind not in "fciu":
        return 1.0
    top = float(np.max(np.abs(a)))
    return power_of_two_scale(top) if top > _LARGE else 1.0


def assert_valid_svd(
    result: Any,
    A: ArrayLike,
    *,
    rank: int,
    reference: Any = None,
    rtol: float | None = None,
    atol: float = 0.0,
    factor: float = DEFAULT_FACTOR,
    check_vectors: bool = True,
    sign_convention: bool = False,
) -> None:
    r"""Assert that ``result`` is a rank-``rank`` truncated SVD of ``A``.

    Parameters
    ----------
    result : object with ``U``, ``S``, ``Vh`` (e.g. :class:`lowrank.TruncatedSVDResult`) or a tuple
        The candidate: ``U`` (m, r), ``S`` (r,), ``Vh`` (r, n).
    A : array_like, shape (m, n)
        The matrix.
    rank : int
        ``r``, the number of triplets expected.
    reference : object with ``U``, ``S``, ``Vh`` or a tuple, optional
        Singular vectors to agree with (up to sign); default the float64 LAPACK SVD of ``A``.
        Clusters of values the reference does not hold completely are not compared.
    rtol : float, optional
        Relative accuracy of an iterative method: each value may be off by ``rtol`` times
        itself, and :math:`U^HAV`, the residuals and the reconstruction by
        ``rtol`` :math:`\sigma_1` more.
    atol : float, default 0
        Absolute accuracy of an iterative method in units of :math:`\sigma_1 = \|A\|_2`,
        added to every tolerance. For SciPy's ``svds`` (ARPACK) with tolerance ``t`` use
        :func:`~lowrank.testing.tolerances.gram_atol` ``(A.dtype, A.shape, tol=t)``.
    factor : float, default 16
        The constant :math:`c` of the tolerance.
    check_vectors : bool, default True
        Check the triplets, the reconstruction and the reference vectors (else the values).
    sign_convention : bool, default False
        Also check :mod:`lowrank.svd`'s sign rule: the largest-magnitude entry of each
        column of ``U`` is real and positive.

    Raises
    ------
    AssertionError
        In this order: wrong shapes (saying whether the rank is off or a factor looks
        transposed); ``S`` not real, finite, non-negative and descending; ``U`` or ``V``
        not orthonormal; ``S`` different from the reference values; :math:`U^HAV \ne
        \operatorname{diag}(S)`; a triplet with a large residual :math:`\max(\|Av_i -
        \sigma_iu_i\|, \|A^Hu_i - \sigma_iv_i\|)`; a reconstruction error
        :math:`\|A - U\Sigma V^H\|_F` different from the optimum
        :math:`(\sum_{i>r}\sigma_i^2)^{1/2}`; vectors that differ from the reference by more
        than the Wedin bound; the sign rule. A failure of the values or of
        :math:`U^HAV` names the structural slip when there is one (a flipped sign in one
        vector of a pair, a swapped pair, a transposed factor, U and V swapped, a rank off
        by one); when there is none and the deviation is within 100 tolerances it is
        reported as a *rounding-level deviation*, in units of
        :math:`\varepsilon\|A\|_2`.
    InputError
        ``A`` not 2-D, ``rank`` out of range, a ``result`` or ``reference`` without
        ``U, S, Vh``, a negative ``atol`` or ``rtol``.

    Notes
    -----
    Each tolerance (see :mod:`lowrank.testing.tolerances`) is a *computation* part and a
    *storage* part. The computation runs in the compute dtype of the result
    (:math:`\varepsilon_c`: float32 for float16, bfloat16 and float8, which the library
    computes in float32; the coarsest of ``U``, ``S``, ``Vh``). Storing then rounds each
    array once to its own dtype, a relative error of at most :math:`u_s` per entry
    (:func:`~lowrank.testing.tolerances.storage_unit_roundoff`: :math:`2^{-8}` for
    bfloat16, :math:`2^{-11}` for float16, 0 for float32, float64 and complex), which
    enters only the quantities formed from that array. With :math:`\sigma_1 = \|A\|_2`:

    * the backward error of the computation,
      :math:`\tau = (c\,\varepsilon_c\sqrt{\max(m,n)} + t_L)\,\sigma_1 + (\text{atol} +
      \text{rtol})\,\sigma_1` (:func:`~lowrank.testing.tolerances.backward_error_tolerance`:
      the rounding of the orthogonal transformations and LAPACK's deflation threshold
      :math:`t_L`, 49ε in float64). A backward-stable SVD is exact for :math:`A + E`,
      :math:`\|E\|_2 \le \tau`;
    * values: :math:`|S_i - \sigma_i| \le \tau + \tau_{64} + \text{rtol}\,\sigma_i +
      \delta_i`. Weyl bounds the computed value :math:`\hat S_i` by :math:`\tau` from the
      exact one, and the float64 reference :math:`\sigma_i` by its own :math:`\tau_{64}`;
      storing rounds :math:`\hat S_i` once, :math:`|S_i - \hat S_i| \le u_S|\hat S_i| +
      \eta_S/2`, hence :math:`\delta_i = (u_S S_i + \eta_S/2)/(1 - u_S)` with :math:`u_S`
      and :math:`\eta_S` (smallest subnormal) of **S's dtype**, relative to :math:`S_i`
      (0 for float32/float64 ``S``). The rounding of ``U`` and ``Vh`` does not move
      ``S``. So a value 1 % wrong fails whenever :math:`\tau + \tau_{64} + \delta_i <
      0.01\,S_i`: for bfloat16 ``S`` (:math:`u_S` = 0.39 %) and float16 ``S`` it does for
      every value above the computation term;
    * orthonormality: :func:`assert_orthonormal` of ``U`` and of ``V``, each with its own
      storage rounding;
    * :math:`U^HAV - \operatorname{diag}(S)`, entry by entry: :math:`\tau +
      \sigma_1(\rho_U\nu_V + (\nu_U + \rho_U)\rho_V)`, plus :math:`\delta_i` on the
      diagonal. :math:`\rho_U` bounds the storage rounding of a column of ``U``
      (:func:`~lowrank.testing.tolerances.storage_error`, about :math:`u_U`) and
      :math:`\nu_U` its stored norm: :math:`\tilde u_i^HA\tilde v_j - u_i^HAv_j =
      e_i^HA\tilde v_j + u_i^HAf_j` with :math:`\|e_i\| \le \rho_U`,
      :math:`\|f_j\| \le \rho_V`;
    * triplet residuals: :math:`\tau_v + \sigma_1\rho + S_i\rho + \delta_i(\nu + \rho)`
      (:math:`\rho`, :math:`\nu` the larger of the two sides), :math:`\tau_v =
      \max(\tau, \sqrt{2r\tau\sigma_1})`. Rayleigh–Ritz methods (randomized, Lanczos)
      give values whose error is quadratic in that of the vectors, so values accurate to
      :math:`\tau` only imply residuals of :math:`\sqrt{2r\tau\sigma_1}` (from
      :math:`\|AV - US\|_F^2 = \|AV\|_F^2 - \|U^HAV\|_F^2 \le \sum_{i\le r}\sigma_i^2 -
      \sum_i S_i^2`); the storage moves :math:`\|Av_i - S_iu_i\|` by at most
      :math:`\|Af_i\| + S_i\|e_i\| + |S_i - \hat S_i|\,\|u_i\|`;
    * reconstruction: :math:`\sqrt{\min(m,n)}\,\tau +
      \rho_{U\Sigma V^H}`, the last the
      :func:`~lowrank.testing.tolerances.product_storage_error` of the stored ``U``, ``S``,
      ``Vh`` (each with its own dtype);
    * vectors: singular vectors are determined only up to sign (phase) and, for a cluster
      of (nearly) equal values, up to a rotation within the cluster, so they are compared
      as subspaces, cluster by cluster, with tolerance :math:`2\sqrt{2c}\,\tau_v/\delta +
      \sqrt c\,\rho` for a cluster of :math:`c` values at distance :math:`\delta` from the
      rest of the spectrum (Wedin 1972; the storage rounding of the :math:`c` columns moves
      the sine by at most :math:`\sqrt c\,\rho`). Values closer than
      :math:`\sqrt{\tau\sigma_1}` form a cluster; numerically zero values are not
      compared.

    Where a result computed in float32 was stored back to bfloat16 as a whole, ``U``,
    ``S`` and ``Vh`` are each checked against their own rounding; ``truncated_svd`` on
    float16/bfloat16 input returns float32 and has no storage term at all.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank import truncated_svd
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> assert_valid_svd(truncated_svd(A, 2), A, rank=2, sign_convention=True)
    >>> U, S, Vh = np.linalg.svd(A)
    >>> U[:, 1] *= -1  # a flipped sign in one left singular vector
    >>> assert_valid_svd((U[:, :2], S[:2], Vh[:2]), A, rank=2)
    ... # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    AssertionError: U^H A V differs from diag(S) by 4 at (1, 1) > tolerance ...: u_1^H A v_1
    = -2 while S[1] = 2: a flipped sign in U[:, 1] or in V[:, 1] (in one of the pair, not both)
    """
    a = _as_float_array(A, "A")
    if a.ndim != 2:
        raise InputError(f"A must be a 2-D matrix; got shape {a.shape}")
    m, n = a.shape
    if (a.dtype.kind in "fc" or _narrow(a.dtype)) and not np.isfinite(a).all():
        raise InputError(
            f"A must be finite; it has {int(a.size - np.isfinite(a).sum())} NaN or inf"
        )
    r = check_int(
        rank, name="rank", minimum=0, maximum=min(m, n), maximum_text=f"min(A.shape) = {min(m, n)}"
    )
    fac = _check_factor(factor)
    extra = check_positive_float(atol, name="atol", allow_zero=True)
    check_vectors = check_bool(check_vectors, name="check_vectors")
    sign_convention = check_bool(sign_convention, name="sign_convention")
    rel = None if rtol is None else _check_rtol(rtol)
    U, S, Vh = _triplets(result, "result")
    if U.shape != (m, r) or S.shape != (r,) or Vh.shape != (r, n):
        raise AssertionError(
            f"shapes U {U.shape}, S {S.shape}, Vh {Vh.shape}; expected ({m}, {r}), "
            f"({r},), ({r}, {n}): {_shape_diagnosis(U, S, Vh, m, n, r)}"
        )
    if not _real_number_dtype(S.dtype):  # bfloat16 and float8 (kind 'V') are real too
        raise AssertionError(f"S must be real; got dtype {S.dtype.name}")
    _finite(S, "S")
    if r and float(np.min(S)) < 0:
        raise AssertionError(f"S must be non-negative; S[{int(np.argmin(S))}] = {S.min()!r}")
    rises = np.flatnonzero(np.diff(S.astype(np.float64)) > 0)
    if rises.size:
        i = int(rises[0])
        raise AssertionError(f"S must be descending; S[{i}] = {S[i]!r} < S[{i + 1}] = {S[i + 1]!r}")
    _finite(U, "U")
    _finite(Vh, "Vh")
    # Every tolerance is homogeneous in sigma_1, but the checks form sigma_1 tau, squares of
    # column norms and products near sigma_1^2, which overflow from sigma_1 ~ 1e154 in
    # float64: A and S are divided by a power of two near max |A| (exact) when it is large.
    unit = _large_scale(a)
    if unit != 1.0:
        a = a / unit if a.dtype.kind in "fc" else a.astype(np.float64) / unit
        S = np.ldexp(S, -int(math.frexp(unit)[1] - 1)) if S.dtype.kind == "f" else S
    wide = _wide(a, U, Vh)
    a64 = a.astype(wide)
    if reference is None and check_vectors:
        U_ref, sigma, Vh_ref = np.linalg.svd(a64, full_matrices=False)
    else:
        sigma = np.linalg.svd(a64, compute_uv=False)
        U_ref = Vh_ref = np.zeros((0, 0))
        if reference is not None:
            U_ref, _, Vh_ref = _triplets(reference, "reference")
            if U_ref.ndim != 2 or U_ref.shape[0] != m or Vh_ref.ndim != 2 or Vh_ref.shape[1] != n:
                raise InputError(
                    f"reference must have U of shape ({m}, k) and Vh of shape (k, {n}); got "
                    f"{U_ref.shape} and {Vh_ref.shape}"
                )
    if r == 0:
        return
    dtype = max((U.dtype, S.dtype, Vh.dtype), key=lambda d: coarsest_eps(d))
    eps = coarsest_eps(dtype)
    # The computation runs in the compute dtype (float32 for float16/bfloat16): its backward
    # error has no storage term. Each stored array's rounding is added where it enters.
    compute = max(
        (compute_dtype(d, name="result") for d in (U.dtype, S.dtype, Vh.dtype)),
        key=lambda d: coarsest_eps(d),
    )
    sigma_1 = float(sigma[0])
    tau_bw = backward_error_tolerance(compute, (m, n), sigma_1, factor=fac)
    tau = tau_bw + (extra + (rel or 0.0)) * sigma_1
    how = f"backward error of an SVD in {_name(compute)}"
    if unit != 1.0:
        how += f"; A and S shown divided by 2**{math.frexp(unit)[1] - 1} against overflow"
    if extra:
        how += f" + atol {extra:g} sigma_1"
    if rel:
        how += f" + rtol {rel:g}"
    assert_orthonormal(U, name="U", factor=fac)
    assert_orthonormal(Vh.conj().T, name="V", factor=fac)
    # Storage: S_i rounded once moves by at most s_store[i] = (u_S S_i + eta/2) / (1 - u_S),
    # relative to itself (0 for float32/float64 S); U and V do not move S.
    s_store = _entry_rounding(S)
    tau_ref = backward_error_tolerance(wide, (m, n), sigma_1, factor=fac)
    tols = tau_bw + tau_ref + extra * sigma_1 + (rel or 0.0) * sigma[:r] + s_store
    how_values = how + ", for the candidate and the float64 reference"
    if storage_unit_roundoff(S.dtype):
        how_values += f", + one rounding of S_i to {_name(S.dtype)}"
    _check_values(S, sigma, tols, eps, sigma_1, dtype, how_values)
    if not check_vectors:
        return
    # Storage of the columns: ||u~_i - u_i|| <= rho_U, ||u~_i|| <= nu_U (and the same for V).
    rho_u, nu_u = _column_storage(U)
    rho_v, nu_v = _column_storage(Vh.conj().T)
    Uw, Vw, Sw = U.astype(wide), Vh.astype(wide).conj().T, S.astype(np.float64)
    AV = a64 @ Vw
    core = Uw.conj().T @ AV
    off = np.abs(core - np.diag(Sw))
    # u~_i^H A v~_j - u_i^H A v_j = e_i^H A v~_j + u_i^H A f_j: at most
    # sigma_1 (rho_U nu_V + (nu_U + rho_U) rho_V); the diagonal also holds S's rounding.
    uv_store = sigma_1 * (rho_u * nu_v + (nu_u + rho_u) * rho_v)
    tau_core = tau + uv_store + np.diag(s_store)
    i, j = (int(x) for x in np.unravel_index(int(np.argmax(off - tau_core)), off.shape))
    dev = float(off[i, j])
    tau_ij = float(tau_core[i, j])
    if not dev <= tau_ij:
        head = f"U^H A V differs from diag(S) by {dev:.3g} at ({i}, {j}) > tolerance {tau_ij:.3g}"
        why = _core_diagnosis(a64, Uw, Vw, Sw, core, tau_ij)
        if why:
            raise AssertionError(f"{head}: {why}")
        if dev <= _ROUNDING_LEVEL * tau_ij:
            raise AssertionError(
                f"{head} ({how}): a rounding-level deviation ({_in_eps(dev, eps, sigma_1)} "
                f"eps ||A||_2 against an allowed {_in_eps(tau_ij, eps, sigma_1)}); signs, "
                "pairing, rank and orientation are right, the factorisation is inaccurate (an "
                "iterative method needs atol or rtol)"
            )
        raise AssertionError(
            f"{head}: U[:, {i}] and V[:, {j}] are not a pair of singular vectors for S[{i}] = "
            f"{float(Sw[i]):.6g} (and no flipped sign, swapped pair or transposition explains "
            "it)"
        )
    # ||A v~ - S~ u~|| - ||A v - S u|| <= sigma_1 rho_V + S_i rho_U + s_store_i ||u||, and the
    # same with U and V exchanged.
    res_store = (
        sigma_1 * max(rho_u, rho_v)
        + Sw * max(rho_u, rho_v)
        + s_store * max(nu_u + rho_u, nu_v + rho_v)
    )
    tau_vec = max(tau, math.sqrt(2.0 * r * tau * sigma_1))
    left = np.linalg.norm(AV - Uw * Sw, axis=0)
    right = np.linalg.norm(a64.conj().T @ Uw - Vw * Sw, axis=0)
    worst = int(np.argmax(np.maximum(left, right) - res_store))
    res = max(float(left[worst]), float(right[worst]))
    tau_res = tau_vec + float(res_store[worst])
    if not res <= tau_res:
        level = (
            " (a rounding-level deviation: an inaccurate triplet, not a structural bug)"
            if res <= _ROUNDING_LEVEL * tau_res
            else ""
        )
        raise AssertionError(
            f"triplet {worst} (singular value {float(S[worst]):.6g}) is not a singular triplet "
            f"of A: ||A v - s u|| = {float(left[worst]):.3g}, ||A^H u - s v|| = "
            f"{float(right[worst]):.3g} > tolerance {tau_res:.3g}{level}"
        )
    error = residual_norm(a, (U, S, Vh))
    optimal = eym_error(sigma, r)
    # The computed factors reconstruct to within sqrt(q) tau of the optimum; rounding the
    # stored U, S, Vh moves U diag(S) Vh by at most product_storage_error in the Frobenius norm.
    slack = math.sqrt(min(m, n)) * tau + product_storage_error(U, S, Vh)
    if not abs(error - optimal) <= slack:
        raise AssertionError(
            f"||A - U diag(S) Vh||_F = {error:.6g} differs from the optimal rank-{r} error "
            f"{optimal:.6g} by {abs(error - optimal):.3g} > tolerance {slack:.3g}"
        )
    available = min(U_ref.shape[1], Vh_ref.shape[0])
    square = m == n
    _check_reference("U", Uw, U_ref.astype(wide), sigma, available, r, tau, tau_vec, square, rho_u)
    _check_reference(
        "V", Vw, Vh_ref.astype(wide).conj().T, sigma, available, r, tau, tau_vec, square, rho_v
    )
    if sign_convention:
        _check_sign_rule(U, S, tolerance_for(U.dtype, size=m, factor=fac))


# --------------------------------------------------------------------------- EYM optimality


def _factor_list(candidate: Any) -> bool:
    """A list of 2 or 3 arrays, one of them 2-D: factors ``[L, R]`` or ``[U, S, Vh]``, not the
    rows of a dense matrix (nested lists of numbers, or 1-D rows, stay a dense candidate)."""
    return (
        isinstance(candidate, list)
        and len(candidate) in (2, 3)
        and all(hasattr(x, "ndim") and hasattr(x, "shape") for x in candidate)
        and any(x.ndim == 2 for x in candidate)
    )


def _inferred_rank(X: Array) -> int:
    r"""The numerical rank of a dense candidate, computed in float64 (NumPy's
    ``matrix_rank`` refuses float16, and takes bfloat16 noise for rank).

    A singular value counts when it exceeds :math:`\max(m, n)\,\varepsilon_c\,\sigma_1(X)`
    (NumPy's threshold, with the epsilon of the dtype the candidate was computed in) plus
    twice :func:`~lowrank.testing.tolerances.storage_error` of ``X``: storing a rank-r
    matrix in a narrow dtype adds a full-rank rounding :math:`F` with :math:`\|F\|_2 \le
    \|F\|_F \le u_s\|X\|_F`, which must not count as rank."""
    m, n = X.shape
    if X.size == 0:
        return 0
    wide = X.astype(np.complex128 if X.dtype.kind == "c" else np.float64)
    scale = power_of_two_scale(float(np.max(np.abs(wide))))
    s = np.linalg.svd(wide / scale, compute_uv=False)
    if not s.size or s[0] == 0.0:
        return 0
    eps_c = coarsest_eps(compute_dtype(X.dtype, name="candidate"))
    threshold = max(m, n) * eps_c * float(s[0]) + 2.0 * storage_error(X) / scale
    return int(np.count_nonzero(s > threshold))


def _candidate_parts(candidate: Any, shape: tuple[int, int]) -> tuple[Any, list[Array], int | None]:
    """Normalise the candidate to what :func:`residual_norm` takes; AssertionError on shapes."""
    m, n = shape
    if all(hasattr(candidate, attr) for attr in ("U", "S", "Vh")):
        candidate = (candidate.U, candidate.S, candidate.Vh)
    if _factor_list(candidate):
        candidate = tuple(candidate)  # [U, S, Vh] or [L, R], as assert_valid_svd takes them
    if isinstance(candidate, tuple) and len(candidate) == 3:
        U, S, Vh = (as_array(x, name="candidate") for x in candidate)
        if U.ndim != 2 or S.ndim != 1 or Vh.ndim != 2:
            raise AssertionError(
                f"candidate (U, S, Vh) must be 2-D, 1-D, 2-D; got shapes {U.shape}, {S.shape}, "
                f"{Vh.shape}"
            )
        q = S.size
        if U.shape != (m, q) or Vh.shape != (q, n):
            raise AssertionError(
                f"candidate (U, S, Vh) has shapes {U.shape}, {S.shape}, {Vh.shape}; expected "
                f"({m}, {q}), ({q},), ({q}, {n})" + _transposed_hint(U, Vh, m, n)
            )
        return (U, S, Vh), [U, S, Vh], q
    if isinstance(candidate, tuple) and len(candidate) == 2:
        L, R = (as_array(x, name="candidate") for x in candidate)
        if (
            L.ndim != 2
            or R.ndim != 2
            or L.shape[0] != m
            or R.shape[1] != n
            or (L.shape[1] != R.shape[0])
        ):
            raise AssertionError(
                f"candidate (L, R) has shapes {L.shape} and {R.shape}; expected ({m}, q) and "
                f"(q, {n})" + _transposed_hint(L, R, m, n)
            )
        return (L, R), [L, R], int(L.shape[1])
    if isinstance(candidate, tuple):
        raise InputError(
            f"candidate must be an array, (L, R), (U, S, Vh) or have U, S, Vh; got a tuple of "
            f"{len(candidate)}"
        )
    X = as_array(candidate, name="candidate")
    if X.ndim == 0 or (X.dtype.kind not in "fciu" and not _narrow(X.dtype)):
        raise InputError(
            f"candidate must be an array of the shape of A, (L, R), (U, S, Vh) or have U, S, "
            f"Vh; got {candidate!r}"[:200]
        )
    if X.shape != (m, n):
        raise AssertionError(f"candidate has shape {X.shape}; expected the shape of A, {(m, n)}")
    return X, [X], None


def _frobenius_to(norm: str, q: int, p: float | None, k: int | None) -> float:
    """``M`` with ``||E|| <= M ||E||_F`` for every m x n matrix ``E`` (``q = min(m, n)``):
    a rounding error has full rank, so the nuclear norm can be ``sqrt(q)`` times larger."""
    q = max(q, 1)
    if norm in ("fro", "spectral"):
        return 1.0
    if norm == "nuclear":
        return math.sqrt(q)
    if norm == "ky_fan":
        return math.sqrt(min(k or 1, q))
    # Schatten-p: ||sigma||_p <= q^(1/p - 1/2) ||sigma||_2 for p < 2, <= ||sigma||_2 for p >= 2.
    order = math.inf if p is None else float(p)
    return float(q ** max(0.0, 1.0 / order - 0.5))


def _second_order_bound(
    a: Array,
    form: Any,
    arrays: list[Array],
    r: int,
    compute: Any,
    *,
    gamma: float,
    stored: float,
    factor: float,
) -> float:
    r"""An upper bound on :math:`\|A - X\|_F` for a rank-``r`` truncated SVD ``X`` computed by
    a backward-stable SVD in ``compute`` and stored as given: second order in the backward
    error where :math:`e^\star \pm 2\|E\|_F` is first order.

    Let :math:`\tilde A = A + E = \tilde U\hat\Sigma\tilde V^H` (exact factors,
    :math:`\|E\|_F \le \beta = \gamma\|A\|_F`), :math:`\tilde X` its exact truncation
    and :math:`Z` any rank-r matrix (here the float64 truncation). Since
    :math:`\|\tilde A - \tilde X\| \le \|\tilde A - Z\|`,

    .. math:: \|A - \tilde X\|_F^2 \le \|A - Z\|_F^2 + 2\langle\tilde X - Z, E\rangle
        \le \|A - Z\|_F^2 + 2\|\tilde X - Z\|_F\,\beta .

    The candidate is :math:`X = \tilde X + F`. For factors :math:`L = \tilde U_rM +
    \Delta L`, :math:`R = N\tilde V_r^H + \Delta R` (orthogonality defects of the computed
    vectors, at most :math:`\eta = \gamma`, and the storage of each factor, :math:`u\sqrt r`
    relative) the residual :math:`\tilde R = \tilde A - \tilde X` is orthogonal to
    every first-order part of :math:`F`, and :math:`|\langle\tilde R, F\rangle| \le
    \|\tilde R\|_F\|\Delta L\|_2\|\Delta R\|_2`; a dense candidate adds its own rounding
    :math:`F_s` (accumulation over ``r``, one storage rounding per entry), bounded by the
    triangle inequality. Everything else is measured in float64 with an allowance
    :math:`\omega` for that evaluation."""
    m, n = a.shape
    wide = _wide(a, *arrays)
    scale = power_of_two_scale(frobenius_norm(a))
    a_s = a.astype(wide) / scale
    U_ref, sigma, Vh_ref = np.linalg.svd(a_s, full_matrices=False)
    Z = (U_ref[:, :r] * sigma[:r]) @ Vh_ref[:r]
    if isinstance(form, tuple) and len(form) == 3:
        U, S, Vh = (x.astype(wide) for x in form)
        X = (U * (S / scale)) @ Vh
        u_left = storage_unit_roundoff(arrays[0].dtype) * math.sqrt(r)
        u_left += storage_unit_roundoff(arrays[1].dtype)
        u_right = storage_unit_roundoff(arrays[2].dtype) * math.sqrt(r)
        dense = False
    elif isinstance(form, tuple):
        L, R = (x.astype(wide) for x in form)
        X = (L / scale) @ R
        u_left = storage_unit_roundoff(arrays[0].dtype) * math.sqrt(r)
        u_right = storage_unit_roundoff(arrays[1].dtype) * math.sqrt(r)
        dense = False
    else:
        X = np.asarray(form).astype(wide) / scale
        u_left = u_right = 0.0
        dense = True
    fro_a = frobenius_norm(a_s)
    sigma_1 = float(sigma[0])
    s_r = float(np.sqrt(np.sum(np.square(sigma[:r]))))
    beta = gamma * fro_a  # ||E||_F
    eta = gamma  # ||U^ - U~||_2, ||V^ - V~||_2
    # Evaluation in float64 of ||A - Z||, ||X - Z|| and ||A - X||.
    omega = tolerance(np.float64, size=max(m, n), scale=fro_a + s_r, factor=factor)
    e_z = frobenius_norm(a_s - Z)
    d = frobenius_norm(X - Z)
    # ||F|| of the first-order (tangent) part: the orthogonality defects, and the storage
    # rounding of factors; a dense candidate's rounding is apart, phi_s.
    phi_t = eta * (2.0 + eta) * (s_r + beta)
    cross = (sigma_1 + beta) * (eta + u_left) * (eta + u_right)
    if dense:
        phi_s = tolerance(compute, size=r, scale=s_r + beta, factor=factor) + stored / scale
    else:
        phi_t += stored / scale
        phi_s = 0.0
    square = (e_z + omega) ** 2
    square += 2.0 * (d + omega + phi_t + phi_s) * beta
    square += 2.0 * ((e_z + omega + beta) * cross + beta * phi_t) + phi_t**2
    return (math.sqrt(square) + phi_s + omega) * scale


def _transposed_hint(left: Array, right: Array, m: int, n: int) -> str:
    if left.ndim == 2 and right.ndim == 2 and left.shape[1] == m and right.shape[0] == n:
        return " (both factors look transposed)"
    if left.ndim == 2 and left.shape[1] == m:
        return " (the left factor looks transposed)"
    if right.ndim == 2 and right.shape[0] == n:
        return " (the right factor looks transposed)"
    return ""


def assert_near_optimal(
    A: ArrayLike,
    candidate: Any,
    *,
    rank: int | None = None,
    rtol: float = 0.0,
    atol: float = 0.0,
    norm: NormName = "fro",
    p: float | None = None,
    k: int | None = None,
    singular_values: ArrayLike | None = None,
    factor: float = DEFAULT_FACTOR,
) -> None:
    r"""Assert that a rank-r approximation is within a factor :math:`1 + \epsilon` of the
    Eckart–Young–Mirsky optimum (plus an absolute :math:`a\,\sigma_1`), and not better than
    it.

    .. math::

        e^\star - \tau \;\le\; \|A - X\| \;\le\; (1 + \epsilon)\,e^\star + a\,\sigma_1
        + \tau, \qquad e^\star = \min_{\operatorname{rank}Y \le r}\|A - Y\| ,

    with :math:`e^\star` from the singular values of ``A`` (:func:`lowrank.eym_error`),
    :math:`\|A - X\|` computed in float64 (:func:`lowrank.residual_norm`),
    :math:`\sigma_1 = \|A\|_2`, and

    .. math::

        \tau = 2\,\gamma\,\min\bigl(\|\mathbf 1_q\|\,\sigma_1,\; M\|A\|_F\bigr) + M\,\rho_X,
        \qquad \gamma = c\,\varepsilon_c\sqrt{\max(m,n)} + t_L .

    The first term is twice the backward error :math:`E` of an SVD
    (:func:`~lowrank.testing.tolerances.backward_error_tolerance`), in the *compute* dtype
    of the coarsest of ``A`` and the candidate (float32 for float16/bfloat16, which the
    library computes in float32): both sides carry one (the candidate's SVD, and the
    singular values behind :math:`e^\star`). It is carried to the norm two ways, both
    rigorous: from :math:`\|E\|_2 \le \gamma\sigma_1`
    (:func:`~lowrank.testing.tolerances.norm_multiplier`, :math:`\sqrt q` for Frobenius) and
    from :math:`\|E\|_F \le \gamma\|A\|_F` (Householder transformations have a normwise
    Frobenius backward error) times :math:`M`, the largest ratio of the norm to the
    Frobenius norm (1 for Frobenius and spectral, :math:`\sqrt q` nuclear, :math:`\sqrt k`
    Ky Fan, :math:`q^{\max(0, 1/p - 1/2)}` Schatten-p). The second is the rounding of the
    candidate's factors, each once, to the dtype they are *stored* in:
    :math:`\rho_X` = :func:`~lowrank.testing.tolerances.product_storage_error` bounds
    :math:`\|\tilde X - X\|_F` (about :math:`u_s\sqrt r\,\sigma_1` per factor for an SVD,
    no :math:`\sqrt n`; 0 for float32 and float64 factors). ``A`` is taken as stored:
    :math:`e^\star` is that of the stored ``A``, which the candidate must approximate
    (compute it from the ``A`` you pass). An error below the optimum is a bug: the
    candidate has rank above ``r``, or the singular values are wrong.

    **Second order.** The excess of a truncated SVD over :math:`e^\star` is second order in
    the backward error, not linear, and with the Frobenius norm, ``rtol=0``, ``atol=0`` and
    a candidate computed in single precision (float32, complex64, or half precision
    computed in float32), the upper bound is the smaller of :math:`e^\star + \tau` and

    .. math::

        \sqrt{\|A - Z\|_F^2 + 2(\|X - Z\|_F + \phi)\,\beta + 2\bigl((e_Z + \beta)
        \,\sigma_1\theta_L\theta_R + \beta\phi\bigr) + \phi^2} + \phi_s ,

    :math:`Z` the float64 truncation, :math:`\beta = \gamma\|A\|_F`, :math:`\phi =
    \gamma(2 + \gamma)\|\sigma_{1..r}\| + \rho_X` a bound on the distance of the
    candidate from the exact truncation of :math:`A + E` (orthogonality defects of the
    computed vectors, the storage of the factors), :math:`\theta = \gamma + u_s\sqrt r` the
    relative perturbation of the left and right factors, and :math:`\phi_s` the rounding of a
    *dense* candidate (:math:`c\,\varepsilon_c\sqrt r\,\|\sigma_{1..r}\|` for the product,
    plus its storage), plus float64 evaluation terms. It follows from
    :math:`\|\tilde A - \tilde X\|_F \le \|\tilde A - Z\|_F` and from the residual of the
    truncation being orthogonal to every first-order change of its factors; a wrong
    candidate cannot loosen it, since :math:`\|X - Z\|` enters multiplied by
    :math:`\beta`. What it catches (smallest excess :math:`\|A - X\|_F/e^\star - 1` that
    fails, factors ``(U, S, Vh)`` or ``(U S, Vh)`` stored in the dtype; measured,
    ``tests/test_audit5_testing.py``):

    ==============================================  =============  ===============  ============
    matrix (:math:`e^\star/\sigma_1`)               float32        float16          bfloat16
    ==============================================  =============  ===============  ============
    256×256, rank 8 + noise (0.44)                  3e-5 %         0.003-0.005 %    0.13-0.27 %
    128×128, 4 unit values, 1e-3 floor (0.011)      0.02 %         2-5 %            65-100 %
    16-400, same; dense float32 X (0.0035-0.02)     0.06-0.27 %
    ==============================================  =============  ===============  ============

    (previously 1 %, 5 % and 14 % on the first, 2–8 %, 10 % and over 100 % on the second).
    Half precision cannot do better on a nearly low-rank matrix: storing the optimum's
    factors in bfloat16 already costs it 8.5 % there. Other norms, and ``rtol`` or ``atol``
    (an iterative method is not a truncated SVD), use :math:`e^\star + \tau` alone.

    A relative ``rtol`` alone cannot accept a correct iterative method on a nearly low-rank
    matrix: there :math:`e^\star` is tiny, while a method that works with :math:`A^HA`
    (ARPACK) resolves :math:`\sigma^2` only to :math:`\varepsilon\sigma_1^2`, so its error
    exceeds :math:`e^\star` by up to :math:`\sqrt{r\varepsilon}\,\sigma_1`. That is what
    ``atol`` is for; :func:`~lowrank.testing.tolerances.gram_atol` derives it.

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix approximated.
    candidate : array_like (m, n), ``(L, R)``, ``(U, S, Vh)`` or an object with ``U``, ``S``, ``Vh``
        The approximation, dense or factored (a list ``[L, R]`` or ``[U, S, Vh]`` of arrays
        is read as factors, as by :func:`assert_valid_svd`).
    rank : int, optional
        ``r``. Default: the inner dimension of a factored candidate, else the numerical rank
        of the dense one, computed in float64: the singular values of ``X`` above
        :math:`\max(m,n)\,\varepsilon_c\,\sigma_1(X)` plus twice the rounding of ``X`` to
        its storage dtype (:math:`2u_s\|X\|_F` for float16/bfloat16, which NumPy's
        ``matrix_rank`` would count as rank). A dense candidate of full numerical rank
        :math:`\min(m, n)` fails without ``rank``: it compresses nothing, the optimum at
        that rank is 0, and a method that returns its input would pass. Pass ``rank``
        whenever the rank is known; it is required in effect for dense candidates.
    rtol : float, default 0
        :math:`\epsilon \ge 0`; 0 asks for the optimum to rounding (an exact truncated SVD);
        ``math.inf`` checks only that the candidate does not beat the optimum.
    atol : float, default 0
        :math:`a \ge 0`, an absolute allowance in units of :math:`\sigma_1 = \|A\|_2`. For
        SciPy's ``svds`` with tolerance ``t``:
        ``gram_atol(A.dtype, A.shape, tol=t, rank=r)`` (derived for the Frobenius and
        spectral norms).
    norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
    p, k : optional
        Schatten exponent and Ky Fan order.
    singular_values : array_like, optional
        All singular values of ``A`` if known (e.g. :attr:`MatrixWithSpectrum.S
        <lowrank.testing.MatrixWithSpectrum.S>`); else computed in float64.
    factor : float, default 16
        The constant of the tolerance.

    Raises
    ------
    AssertionError
        The candidate's shapes do not fit ``A``, it is not finite, it beats the optimum,
        it exceeds :math:`(1+\epsilon)e^\star + \tau` (or the second-order bound), or it
        is dense, of full numerical rank, and ``rank`` is not given.
    InputError
        A bad ``rank``, ``rtol``, ``atol``, ``norm``, ``p``, ``k`` or ``singular_values``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> assert_near_optimal(A, (np.array([[3.0], [0], [0]]), np.array([[1.0, 0, 0]])))
    >>> bad = np.diag([0.0, 2.0, 0.0])  # keeps the wrong direction
    >>> assert_near_optimal(A, bad, rank=1)  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    AssertionError: the rank-1 candidate is not within a factor 1 + 0 of the ... optimum in the fro
    norm: error 3.16228 vs optimal 2.23607, ratio 1 + 0.414 (tolerance ..., dtype float64): an
    excess of 0.309 sigma_1: a wrong or unconverged approximation
    """
    a = _as_float_array(A, "A")
    if a.ndim != 2:
        raise InputError(f"A must be a 2-D matrix; got shape {a.shape}")
    m, n = a.shape
    check_choice(norm, name="norm", choices=NORMS)
    if isinstance(rtol, (int, float)) and rtol == math.inf:
        eps_rel = math.inf
    else:
        eps_rel = _check_rtol(rtol)
    eps_abs = check_positive_float(atol, name="atol", allow_zero=True)
    fac = _check_factor(factor)
    form, arrays, inner = _candidate_parts(candidate, (m, n))
    for x in arrays:
        _finite(x, "candidate")
    inferred = rank is None and inner is None
    if rank is None:
        rank = inner if inner is not None else _inferred_rank(arrays[0])
        if inner is None and rank >= min(m, n) > 0:
            raise AssertionError(
                f"the dense candidate has full numerical rank {rank} = min(A.shape): it does "
                "not compress A (a method that returns its input, or a rank that was never "
                "applied), and against a full-rank candidate the optimum is 0, so the check "
                "could not fail. Pass rank= with the rank the candidate must have"
            )
    r = check_int(rank, name="rank", minimum=0, maximum=min(m, n), maximum_text="min(A.shape)")
    if singular_values is None:
        sigma = _singular_values(a.astype(_wide(a)), method="lapack")
    else:
        given = as_array(singular_values, name="singular_values")
        if not _real_number_dtype(given.dtype):
            raise InputError(f"singular_values must be real numbers; got dtype {given.dtype.name}")
        sigma = np.sort(given.astype(np.float64).ravel())[::-1]
        if sigma.size != min(m, n):
            raise InputError(
                f"singular_values must hold all min(A.shape) = {min(m, n)} values; got {sigma.size}"
            )
    optimal = eym_error(sigma, r, norm=norm, p=p, k=k)
    error = residual_norm(a, form, norm=norm, p=p, k=k)
    dtype = max([a.dtype, *(x.dtype for x in arrays)], key=lambda d: coarsest_eps(d))
    compute = max(
        (compute_dtype(d, name="A") for d in (a.dtype, *(x.dtype for x in arrays))),
        key=lambda d: coarsest_eps(d),
    )
    top = float(sigma[0]) if sigma.size else 0.0
    # Rounding on both sides: the candidate's factorisation and the reference values, in
    # the dtype they are computed in (float32 for float16/bfloat16). A backward-stable SVD
    # is exact for A + E with ||E||_2 <= gamma sigma_1 and ||E||_F <= gamma ||A||_F (the
    # Householder bound is normwise in the Frobenius norm), so in the norm asked for
    # ||E|| <= gamma min(mult sigma_1, M ||A||_F) ...
    gamma = backward_error_tolerance(compute, (m, n), 1.0, factor=fac)
    mult = norm_multiplier((m, n), norm=norm, p=p, k=k)
    to_norm = _frobenius_to(norm, min(m, n), p, k)
    fro_a = frobenius_norm(a)
    tol = 2.0 * gamma * min(mult * top, to_norm * fro_a)
    # ... plus the one rounding of each stored factor to a narrow dtype (Frobenius bound,
    # carried over to the norm asked for).
    stored = product_storage_error(*arrays)
    if stored:
        tol += to_norm * stored
    tol_up = tol
    single = coarsest_eps(compute) > coarsest_eps(np.float64)
    if norm == "fro" and eps_rel == 0.0 and eps_abs == 0.0 and r > 0 and fro_a > 0.0 and single:
        bound = _second_order_bound(
            a, form, arrays, r, compute, gamma=gamma, stored=stored, factor=fac
        )
        tol_up = max(0.0, min(tol, bound - optimal))
    label = (
        f"{norm} norm"
        if norm not in ("schatten", "ky_fan")
        else (f"Schatten-{p} norm" if norm == "schatten" else f"Ky Fan {k}-norm")
    )
    if error < optimal - tol:
        extra = f" (its factors have inner dimension {inner})" if inner is not None else ""
        if inferred:
            extra = f" (rank {r} was inferred from the dense candidate; pass rank=)"
        raise AssertionError(
            f"the rank-{r} candidate beats the Eckart-Young-Mirsky optimum in the {label}: "
            f"error {error:.6g} < optimal {optimal:.6g} by {optimal - error:.3g} > tolerance "
            f"{tol:.3g}. No matrix of rank <= {r} can do that: the candidate has rank > {r}"
            f"{extra}, or the singular values are wrong"
        )
    upper = math.inf if eps_rel == math.inf else (1.0 + eps_rel) * optimal + eps_abs * top
    if not error <= upper + tol_up:
        tol = tol_up
        if optimal > tol:
            excess, shown = error / optimal - 1.0, f"{optimal:.6g}"
        else:
            excess, shown = math.inf, "0 (to rounding)"
        eps = coarsest_eps(dtype)
        over = error - optimal
        allowed = upper + tol - optimal
        if over <= _ROUNDING_LEVEL * tol:
            kind = (
                f"a rounding-level excess ({_in_eps(over, eps, top)} eps ||A||_2 against an "
                f"allowed {_in_eps(allowed, eps, top)}), not a wrong approximation; an "
                "iterative method (ARPACK, LOBPCG) needs atol "
                "(lowrank.testing.tolerances.gram_atol)"
            )
        elif over <= 10.0 * math.sqrt(max(r, 1) * eps) * top:
            kind = (
                f"an excess at the sqrt(eps) level ({over / top:.3g} sigma_1, sqrt(r eps) = "
                f"{math.sqrt(max(r, 1) * eps):.3g}): what a correct eigen-solver on A^H A "
                "(ARPACK) leaves on a nearly low-rank matrix; pass atol "
                "(lowrank.testing.tolerances.gram_atol) if that is the method"
            )
        else:
            kind = f"an excess of {over / top:.3g} sigma_1: a wrong or unconverged approximation"
        raise AssertionError(
            f"the rank-{r} candidate is not within a factor 1 + {eps_rel:g} of the "
            f"Eckart-Young-Mirsky optimum in the {label}: error {error:.6g} vs optimal "
            f"{shown}, ratio 1 + {excess:.3g} (tolerance {tol:.3g}"
            + (f" + atol {eps_abs:g} sigma_1" if eps_abs else "")
            + f", dtype {_name(dtype)}): {kind}"
        )


# --------------------------------------------------------------------------- LoRA


def _lora_shapes(W: Array, W_res: Array, A: Array, B: Array) -> None:
    if W.ndim != 2:
        raise AssertionError(f"W must be 2-D (out, in); got shape {W.shape}")
    out_f, in_f = W.shape
    if W_res.shape != W.shape:
        raise AssertionError(f"W_res has shape {W_res.shape}; W has shape {W.shape}")
    if A.ndim != 2 or B.ndim != 2:
        raise AssertionError(f"A and B must be 2-D; got shapes {A.shape} and {B.shape}")

    def peft(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
        return a[1] == in_f and b == (out_f, a[0])

    if peft(A.shape, B.shape):
        return
    rule = f"with W of shape (out, in) = {W.shape}, PEFT's lora_A is (r, in) and lora_B (out, r)"
    if peft(B.shape, A.shape):
        hint = "A and B look swapped"
    elif peft(A.shape[::-1], B.shape):
        hint = "A looks transposed"
    elif peft(A.shape, B.shape[::-1]):
        hint = "B looks transposed"
    elif peft(A.shape[::-1], B.shape[::-1]):
        hint = "A and B both look transposed"
    else:
        hint = "the shapes do not fit"
    raise AssertionError(f"A has shape {A.shape} and B {B.shape}: {hint}; {rule}")


def assert_lora_reconstruction(
    W: ArrayLike,
    W_res: ArrayLike,
    A: ArrayLike,
    B: ArrayLike,
    *,
    scaling: float,
    factor: float = DEFAULT_FACTOR,
    atol: float | None = None,
    extraction: bool = False,
) -> None:
    r"""Assert the LoRA identity :math:`W_{res} + s\,BA = W` (PEFT shapes and scaling).

    Covers merging (:math:`W_{res}` the base weight, :math:`W` the merged one) and
    initialisations whose residual is computed from the returned factors,
    :math:`W_{res} = W - s\,BA` (PiSSA, MiLoRA, OLoRA in :mod:`lowrank.lora`): both are a
    product accumulated over :math:`r` and one addition per entry. A residual taken from
    the SVD itself (the tail :math:`U_{>r}\Sigma_{>r}V_{>r}^H`, not :math:`W - s\,BA`) also
    carries the SVD's backward error: pass ``extraction=True`` for that.

    Parameters
    ----------
    W : array_like, shape (out, in)
        The full weight.
    W_res : array_like, shape (out, in)
        The base (residual) weight.
    A : array_like, shape (r, in)
        ``lora_A``.
    B : array_like, shape (out, r)
        ``lora_B``.
    scaling : float
        :math:`s = \alpha/r` (or :math:`\alpha/\sqrt r` with rsLoRA).
    factor : float, default 16
        The constant of the tolerance.
    atol : float, optional
        An absolute tolerance on the Frobenius norm instead of the default.
    extraction : bool, default False
        Add the backward error of an SVD-based extraction,
        :math:`c\,\varepsilon_c\sqrt{\max(\text{out},\text{in})}\,\|W\|_2`: for a
        residual that is the SVD's tail rather than :math:`W - s\,BA` computed from the
        factors. Leave it off for a merge: it makes the tolerance
        :math:`\sqrt{\max(\text{out},\text{in})/r}` times looser (500-700 times the
        rounding of a correct float32 merge at 1024-2048 features), so that a scaling 10 %
        off passes when :math:`\|s\,BA\|_F \approx 10^{-3}\|W\|_F`.

    Raises
    ------
    AssertionError
        Shapes that do not follow PEFT (with a hint when a factor looks transposed or the
        two are swapped), non-finite entries, or
        :math:`\|W_{res} + s\,BA - W\|_F > \tau`.
    InputError
        An array that is not numeric, ``scaling`` not a finite real number, or a bad
        ``factor``, ``atol`` or ``extraction``.

    Notes
    -----
    The check is computed in float64 from the factors, row block by row block. The
    tolerance has a compute part and a storage part,

    .. math::

        \tau = c\,\varepsilon_c\sqrt r\,|s|\,\|B\|_F\|A\|_F
        + \varepsilon_c\big(\|W\|_F + \|W_{res}\|_F\big)
        + \rho_W + \rho_{W_{res}} + |s|\,\rho_{BA}
        \;\big[+\,c\,\varepsilon_c\sqrt{\max(\text{out},\text{in})}\,\|W\|_2\big].

    :math:`\varepsilon_c` is the epsilon of the coarsest *compute* dtype of the four
    arrays (float32 for float16/bfloat16, which the library computes in float32). The merge
    :math:`\mathrm{fl}(W_{res} + \mathrm{fl}(s\,\mathrm{fl}(BA)))` (or
    :math:`W - s\,BA`) accumulates only over :math:`r`: each entry of :math:`BA` is off
    by at most :math:`\gamma_r(|B||A|)_{ij}`, which the first term bounds (random-walk
    :math:`\sqrt r`, constant :math:`c`, as every tolerance here); the scaling and the
    addition round each entry once or twice, :math:`u_c = \varepsilon_c/2` relative,
    which the second term bounds (the terms are at most :math:`|W| + |W_{res}|` entry by
    entry, up to the first). Neither grows with the size of :math:`W`. The bracket is the
    SVD's backward error, added only with ``extraction=True``. The
    :math:`\rho` are the rounding of each array, once, to a narrow dtype it is *stored* in
    (0 for float32/float64): :math:`\rho_W \le u_s\|W\|_F`
    (:func:`~lowrank.testing.tolerances.storage_error`) and :math:`\rho_{BA}` the bound
    of :func:`~lowrank.testing.tolerances.product_storage_error`, about
    :math:`u_s(\|B\|_F\|A\|_2 + \|B\|_2\|A\|_F)`; neither grows with the size. A wrong
    scaling, a transposed square factor or a wrong rank changes the sum by
    :math:`O(\|s\,BA\|_F)`, far above :math:`\tau` in every dtype: in bfloat16 at
    256×256, rank 8, :math:`\tau \approx 0.01\|W\|_F`, while a scaling wrong by 2× leaves
    :math:`0.34\|W\|_F`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((4, 3)); A = rng.standard_normal((2, 3))
    >>> B = rng.standard_normal((4, 2)); s = 8.0 / 2
    >>> assert_lora_reconstruction(W + s * B @ A, W, A, B, scaling=s)
    >>> assert_lora_reconstruction(W + s * B @ A, W, A, B, scaling=8.0 / np.sqrt(2))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: W_res + s*B@A differs from W: ||W_res + s*B@A - W||_F = 6.08 > tolerance ...
    """
    arrays = [
        _as_float_array(x, name) for x, name in ((W, "W"), (W_res, "W_res"), (A, "A"), (B, "B"))
    ]
    w, w_res, a, b = arrays
    s = check_real(scaling, name="scaling")
    fac = _check_factor(factor)
    extraction = check_bool(extraction, name="extraction")
    _lora_shapes(w, w_res, a, b)
    for x, name in zip(arrays, ("W", "W_res", "A", "B"), strict=True):
        _finite(x, name)
    out_f, in_f = w.shape
    r = a.shape[0]
    wide = _wide(*arrays)  # complex factors are checked in complex128, never cast to real
    a64, b64 = a.astype(wide), b.astype(wide)
    rows = max(1, (1 << 20) // max(in_f, 1))
    squares: list[float] = []
    worst, where = 0.0, (0, 0)
    for start in range(0, out_f, rows):
        stop = min(out_f, start + rows)
        block = w_res[start:stop].astype(wide) + s * (b64[start:stop] @ a64)
        block -= w[start:stop].astype(wide)
        squares.append(frobenius_norm(block))
        if block.size:
            i = int(np.argmax(np.abs(block)))
            if float(abs(block.flat[i])) > worst:
                worst = float(abs(block.flat[i]))
                where = (start + i // in_f, i % in_f)
    err = float(np.sqrt(np.sum(np.square(squares))))
    if atol is not None:
        tol = check_positive_float(atol, name="atol", allow_zero=True)
    else:
        # Computed in the compute dtypes (float32 for float16/bfloat16): the product BA
        # accumulates over r, the scaling and the sum round each entry once ...
        computes = [compute_dtype(x.dtype, name="W") for x in arrays]
        product = abs(s) * frobenius_norm(b) * frobenius_norm(a)
        tol = tolerance_for(*computes, size=r, scale=product, factor=fac)
        eps_c = max(coarsest_eps(d) for d in computes)
        tol += eps_c * (frobenius_norm(w) + frobenius_norm(w_res))
        if extraction:  # ... an SVD-based extraction adds its backward error ...
            tol += tolerance_for(*computes, size=max(out_f, in_f), scale=_spectral(w), factor=fac)
        # ... then each stored array rounded once to its (narrow) dtype.
        tol += storage_error(w) + storage_error(w_res) + abs(s) * product_storage_error(b, a)
    if not err <= tol:
        dtype = max((x.dtype for x in arrays), key=lambda d: coarsest_eps(d))
        raise AssertionError(
            f"W_res + s*B@A differs from W: ||W_res + s*B@A - W||_F = {err:.3g} > tolerance "
            f"{tol:.3g} (relative to ||W||_F: {err / max(frobenius_norm(w), 1e-300):.3g}); "
            f"largest entry error {worst:.3g} at {where}; out={out_f}, in={in_f}, r={r}, "
            f"s={s!r}, dtype {_name(dtype)}"
        )


def _layer_output(y: Any, what: str, batch: int) -> Array:
    """A layer's output as an array of shape ``(batch, ...)``; anything else is a failure of
    the layer under test (AssertionError), not of the test."""
    if y is None:
        raise AssertionError(f"{what} returned None; a layer must return an array (batch, ...)")
    try:
        out = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} is not an array: {exc}") from None
    if out.dtype.kind not in "fciu" and not _narrow(out.dtype):
        raise AssertionError(f"{what} must be numeric; got dtype {out.dtype.name}")
    if out.ndim == 0 or out.shape[0] != batch:
        raise AssertionError(
            f"{what} has shape {out.shape}; outputs must have shape (batch, ...) with batch "
            f"= {batch}, one row per input row"
        )
    return out


def _spectral(x: Array) -> float:
    """``||x||_2`` in float64 (complex128), scaled by a power of two against overflow."""
    if x.size == 0:
        return 0.0
    wide = x.astype(_wide(x))
    scale = power_of_two_scale(float(np.max(np.abs(wide))))
    return float(np.linalg.norm(wide / scale, 2)) * scale


def assert_adapters_agree(
    first: Callable[[Array], ArrayLike],
    second: Callable[[Array], ArrayLike],
    *,
    in_features: int,
    batch: int = 16,
    dtype: Any = np.float64,
    rng: RNGLike | None = 0,
    inputs: ArrayLike | None = None,
    factor: float = DEFAULT_FACTOR,
    rtol: float | None = None,
    scale: float | None = None,
) -> None:
    r"""Assert that two layers (callables ``x -> y``) give the same outputs on random inputs.

    For example an unmerged LoRA layer :math:`y = xW^\top + s\,(xA^\top)B^\top` against its
    merged weight :math:`y = x(W + s\,BA)^\top`, or a GPU kernel against the NumPy
    reference :mod:`lowrank.adapter`.

    Parameters
    ----------
    first, second : callable
        Each maps ``x`` of shape ``(batch, in_features)`` to ``y`` of shape
        ``(batch, ...)``.
    in_features : int
        The width of the inputs.
    batch : int, default 16
        The number of random inputs (rows of ``x``).
    dtype : dtype, default float64
        The dtype of the inputs (float16, bfloat16, float32, float64, complex).
    rng : None, int or numpy.random.Generator, default 0
        Source of the standard Gaussian inputs.
    inputs : array_like, shape (batch, in_features), optional
        Explicit (finite) inputs instead of random ones.
    factor : float, default 16
        The constant of the tolerance.
    rtol : float, optional
        Tolerance relative to ``scale`` instead of the default.
    scale : float, optional
        The magnitude of the terms summed into an output, e.g.
        :math:`\max_j \sum_k |x_k|\,(|W| + |s|\,|B||A|)_{jk}` for a LoRA layer. Default
        :math:`\max(|y_1|, |y_2|)`, right unless the outputs cancel (a black box does not
        say); pass it, or ``inputs``, when they may.

    Raises
    ------
    AssertionError
        Outputs of different shapes or with NaN/inf, or
        :math:`\max|y_1 - y_2| > \tau = c\,\varepsilon\sqrt{\text{in}}\,s` with :math:`s`
        = ``scale`` (:math:`\varepsilon` of the coarsest dtype among inputs and outputs:
        each output is an inner product of length ``in_features``).
    InputError
        ``first`` or ``second`` not callable, ``inputs`` not finite or not of width
        ``in_features``, ``dtype`` not a floating or complex dtype, or a bad ``in_features``,
        ``batch``, ``rng``, ``factor``, ``rtol`` or ``scale``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((3, 5)); A = rng.standard_normal((2, 5))
    >>> B = rng.standard_normal((3, 2)); s = 0.5
    >>> unmerged = lambda x: x @ W.T + s * (x @ A.T) @ B.T
    >>> merged = lambda x: x @ (W + s * B @ A).T
    >>> assert_adapters_agree(unmerged, merged, in_features=5)
    >>> assert_adapters_agree(unmerged, lambda x: x @ W.T, in_features=5)
    Traceback (most recent call last):
    ...
    AssertionError: the adapters disagree on 16 of 16 inputs: max |first(x) - second(x)| = ...
    """
    first = check_callable(first, name="first")
    second = check_callable(second, name="second")
    fac = _check_factor(factor)
    width = check_int(in_features, name="in_features", minimum=1)
    if inputs is None:
        count = check_int(batch, name="batch", minimum=1)
        gen = normalize_rng(rng)
        dt = _float_dtype(dtype, complex_ok=True)
        x64: Array = gen.standard_normal((count, width))
        if dt.kind == "c":
            x64 = x64 + 1j * gen.standard_normal((count, width))
        x = x64.astype(dt)
    else:
        x = _as_float_array(inputs, "inputs")
        if x.ndim < 2 or x.shape[-1] != width:
            raise ShapeError(
                f"inputs must have shape (batch, in_features) = (batch, {width}); got {x.shape}"
            )
        check_finite_array(x, name="inputs")
    y1 = _layer_output(first(x), "first(x)", x.shape[0])
    y2 = _layer_output(second(x), "second(x)", x.shape[0])
    if y1.shape != y2.shape:
        raise AssertionError(f"first(x) has shape {y1.shape} but second(x) has shape {y2.shape}")
    _finite(y1, "first(x)")
    _finite(y2, "second(x)")
    if y1.size == 0:
        return
    wide = _wide(y1, y2)
    d = np.abs(y1.astype(wide) - y2.astype(wide)).reshape(y1.shape[0], -1)
    if scale is None:
        size = max(float(np.max(np.abs(y1.astype(wide)))), float(np.max(np.abs(y2.astype(wide)))))
        what = "max|y|"
    else:
        size = check_positive_float(scale, name="scale", allow_zero=True)
        what = "scale"
    if rtol is not None:
        tol = _check_rtol(rtol) * size
        how = f"rtol {rtol:g} x {what} {size:.3g}"
    else:
        tol = tolerance_for(x.dtype, y1.dtype, y2.dtype, size=width, scale=size, factor=fac)
        how = (
            f"{fac:g} eps({_name(max((x.dtype, y1.dtype, y2.dtype), key=coarsest_eps))}) "
            f"sqrt(in_features={width}) {what} {size:.3g}"
        )
    worst = float(d.max())
    if not worst <= tol:
        bad = int(np.count_nonzero(d.max(axis=1) > tol))
        row, col = np.unravel_index(int(np.argmax(d)), d.shape)
        raise AssertionError(
            f"the adapters disagree on {bad} of {d.shape[0]} inputs: max |first(x) - second(x)| "
            f"= {worst:.3g} at input {int(row)}, output {int(col)} > tolerance {tol:.3g} "
            f"(= {how})"
        )
