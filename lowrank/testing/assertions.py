"""Assertions for truncated SVDs and low-rank approximations.

Each raises :class:`AssertionError` with a message that says what failed, by how much, and
against which tolerance; none returns a boolean. Tolerances come from
:func:`lowrank._numerics.tolerance` (machine epsilon of the dtype × sqrt(size) × scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank._numerics import tolerance
from lowrank._typing import Array, ArrayLike

__all__ = ["assert_orthonormal", "assert_singular_values_close", "assert_valid_svd"]


def assert_orthonormal(Q: ArrayLike, *, name: str = "Q", factor: float = 16.0) -> None:
    r"""Assert that the columns of ``Q`` are orthonormal: :math:`\|Q^H Q - I\|_{\max} \le \tau`.

    :math:`\tau` = ``tolerance(Q.dtype, size=Q.shape[0], factor=factor)``.
    """
    q = np.asarray(Q)
    if q.ndim != 2:
        raise AssertionError(f"{name} must be 2-D; got shape {q.shape}")
    if q.shape[1] == 0:
        return
    wide = np.complex128 if q.dtype.kind == "c" else np.float64
    qw = q.astype(wide)
    gram = qw.conj().T @ qw
    err = float(np.max(np.abs(gram - np.eye(q.shape[1]))))
    tol = tolerance(q.dtype, size=q.shape[0], factor=factor)
    if not err <= tol:
        raise AssertionError(
            f"{name} ({q.shape}, {q.dtype}) is not orthonormal: max |{name}^H {name} - I| = "
            f"{err:.3g} > tolerance {tol:.3g}"
        )


def assert_singular_values_close(
    actual: ArrayLike,
    expected: ArrayLike,
    *,
    dtype: Any,
    size: int,
    rtol: float | None = None,
    factor: float = 16.0,
) -> None:
    r"""Assert that two vectors of singular values agree.

    By default the tolerance is absolute, :math:`\tau = c\,\varepsilon\sqrt{n}\,\sigma_1` (a
    backward-stable SVD perturbs every value by that much); with ``rtol`` each value must
    be within ``rtol`` relative to the expected one.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"singular values have shape {a.shape}; expected {e.shape}")
    if a.size == 0:
        return
    if rtol is not None:
        rel = np.abs(a - e) / np.where(e > 0, e, 1.0)
        worst = int(np.argmax(rel))
        if not float(rel[worst]) <= rtol:
            raise AssertionError(
                f"singular value {worst} is {a[worst]!r}, expected {e[worst]!r}: relative "
                f"error {float(rel[worst]):.3g} > rtol {rtol:.3g}"
            )
        return
    tol = tolerance(dtype, size=size, scale=max(float(e.max()), 1e-300), factor=factor)
    diff = np.abs(a - e)
    worst = int(np.argmax(diff))
    if not float(diff[worst]) <= tol:
        raise AssertionError(
            f"singular value {worst} is {a[worst]!r}, expected {e[worst]!r}: error "
            f"{float(diff[worst]):.3g} > tolerance {tol:.3g} (dtype {np.dtype(dtype).name}, "
            f"size {size}, sigma_1 {float(e.max()):.3g})"
        )


def _reference_svd(A: Array) -> tuple[Array, Array, Array]:
    wide = np.complex128 if A.dtype.kind == "c" else np.float64
    U, S, Vh = np.linalg.svd(np.asarray(A, dtype=wide), full_matrices=False)
    return U, S, Vh


def assert_valid_svd(
    result: Any,
    A: ArrayLike,
    *,
    rank: int,
    rtol: float | None = None,
    factor: float = 16.0,
    check_vectors: bool = True,
) -> None:
    r"""Assert that ``result`` (with ``U``, ``S``, ``Vh``) is a rank-``rank`` truncated SVD of ``A``.

    Checks shapes; that ``S`` is real, non-negative and descending; that ``U`` and ``V``
    are orthonormal; that ``S`` matches the float64 LAPACK reference (absolute tolerance
    :math:`c\varepsilon\sqrt{\max(m,n)}\sigma_1`, or ``rtol``); and that
    :math:`U^H A V = \operatorname{diag}(S)` to the same tolerance, which with orthonormal
    factors means the triplets agree with the reference up to sign (and up to rotation
    within clusters of equal singular values).
    """
    a = np.asarray(A)
    m, n = a.shape
    U, S, Vh = np.asarray(result.U), np.asarray(result.S), np.asarray(result.Vh)
    if U.shape != (m, rank) or S.shape != (rank,) or Vh.shape != (rank, n):
        raise AssertionError(
            f"shapes U {U.shape}, S {S.shape}, Vh {Vh.shape}; expected ({m}, {rank}), "
            f"({rank},), ({rank}, {n})"
        )
    if S.dtype.kind != "f":
        raise AssertionError(f"S must be real; got dtype {S.dtype}")
    if rank and (np.any(S < 0) or np.any(np.diff(S) > 0)):
        raise AssertionError(f"S must be non-negative and descending; got {S}")
    if rank == 0:
        return
    dtype = U.dtype
    assert_orthonormal(U, name="U", factor=factor)
    assert_orthonormal(Vh.conj().T, name="V", factor=factor)
    _, S_ref, _ = _reference_svd(a)
    assert_singular_values_close(S, S_ref[:rank], dtype=dtype, size=max(m, n), rtol=rtol,
                                 factor=factor)
    if not check_vectors:
        return
    wide = np.complex128 if a.dtype.kind == "c" or dtype.kind == "c" else np.float64
    core = U.astype(wide).conj().T @ a.astype(wide) @ Vh.astype(wide).conj().T
    off = np.abs(core - np.diag(S.astype(np.float64)))
    scale = float(S_ref[0])
    tol = (rtol * scale) if rtol is not None else tolerance(dtype, size=max(m, n), scale=scale,
                                                             factor=factor)
    worst = float(off.max())
    if not worst <= tol:
        raise AssertionError(
            f"U^H A V differs from diag(S) by {worst:.3g} > tolerance {tol:.3g}: the vectors "
            "are not singular vectors of A for these values"
        )
