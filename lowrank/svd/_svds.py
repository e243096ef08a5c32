r"""SciPy's ``svds`` solvers (ARPACK, PROPACK, LOBPCG), finished by a Rayleigh–Ritz step
and checked.

What ``converged=True`` means for ``method="arpack" | "propack" | "lobpcg"``
------------------------------------------------------------------------------
``svds`` can return triplets that are not the leading ones, or not triplets at all, without
raising (PROPACK on repeated or clustered values and with partial reorthogonalisation that
leaves :math:`U` orthonormal to about :math:`\sqrt\varepsilon` only, LOBPCG at its iteration
limit), so :func:`scipy_svds` post-processes every result:

1. **Rayleigh–Ritz.** The right vectors are orthonormalised (Householder QR in float64 or
   complex128), :math:`Y = AV` is formed and its SVD :math:`Y = \tilde U\Sigma W^H`
   (LAPACK) gives :math:`U = \tilde U`, :math:`S = \Sigma`, :math:`V \leftarrow VW`. ``U``
   and ``V`` are then orthonormal to working precision, :math:`AV = US` up to rounding and
   :math:`S = \operatorname{diag}(U^HAV)`, whatever the solver's vectors were.
2. **Residuals.** With :math:`E_L = AV - US` and :math:`E_R = A^HU - VS`, each triplet's
   residual :math:`\rho_i = (\|E_Le_i\|^2 + \|E_Re_i\|^2)^{1/2}` must satisfy
   :math:`\rho_i \le \ell_i = \sqrt\varepsilon\,\sigma_1` (plus
   :math:`\varepsilon^{1/4}\sigma_i` for LOBPCG, whose own stopping rule is looser), with
   :math:`\varepsilon` the machine epsilon of the compute dtype and
   :math:`\sigma_1 = S_1`. Then each :math:`S_i` is within :math:`\rho_i/\sqrt2` of *a*
   singular value of ``A``. The bound is **absolute**: a value far below
   :math:`\sqrt\varepsilon\,\sigma_1` (about :math:`1.5\cdot10^{-8}\sigma_1` in double,
   :math:`3.5\cdot10^{-4}\sigma_1` in single precision) is only known to that absolute
   accuracy and may have no correct digit (ARPACK returns values of :math:`10^{-10}` as
   :math:`4\cdot10^{-11}` next to values 1), and its vectors are then arbitrary within the
   singular subspaces of nearby values.
3. **No missed value.** The residuals do not show that the triplets are the *leading*
   ones. A few steps of randomized block Golub–Kahan–Lanczos on the deflated matrix
   :math:`D = (I - UU^H)\,A\,(I - VV^H)` give a Ritz value :math:`\lambda \le \sigma_1(D)`;
   if :math:`\lambda > S_r + 2\delta + \tau`, with
   :math:`\delta = \|E_L\|_2 + \|E_R\|_2` and :math:`\tau` the rounding tolerance
   :math:`16\varepsilon\sqrt{\max(m,n)}\,\sigma_1`, a singular value was missed. The
   start block is drawn from the call's ``rng``, so the verdict is deterministic given it,
   but the check is probabilistic: a Gaussian start has a nonzero component along a missed
   singular vector with probability 1, so in exact arithmetic the Krylov space finds a
   missed value (of any multiplicity: one copy suffices); how many steps that takes
   depends, as for any Lanczos method, on how far the value stands above the rest of the
   deflated spectrum and on the size of that component. With the fixed few steps here a
   missed value barely above :math:`S_r`, or an unlucky start, can go unseen. (In a
   sweep of 80 matrices with a top value of multiplicity 2-4 followed by a relative gap
   of 10% down to 0.1%, every copy ARPACK or PROPACK missed was refused.)

When all three pass, ``converged=True``. By Weyl's theorem applied to
:math:`A - (USV^H + D) = E_LV^H + UE_R^H(I - VV^H)` (norm at most :math:`\delta`), the
singular values of ``A`` are within :math:`\delta` of those of :math:`S \cup \sigma(D)`, so
:math:`|S_i - \sigma_i(A)| \le \delta + \max(0, \sigma_1(D) - S_r)` for every :math:`i \le r`,
and :math:`\delta \le \sqrt2\,\|(\rho_i)\|_2 \le \sqrt{2r}\max_i\ell_i`. When
:math:`\sigma_1(D)` was found, this is at most :math:`3\delta + \tau`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import compute_eps, power_of_two_scale, tolerance
from lowrank._operator import MatrixInput
from lowrank._typing import Array
from lowrank.errors import ConvergenceError, NonFiniteError
from lowrank.svd._lapack import empty_result, lapack_svd
from lowrank.svd._orthogonalize import gaussian, wide_dtype
from lowrank.svd._result import TruncatedSVDResult, fix_signs

__all__ = ["DEFLATION_BLOCK", "DEFLATION_STEPS", "scipy_svds"]

DEFLATION_BLOCK = 4
"""Columns of the random start block of the missed-value check. One column finds a
missed value with probability 1; more make a start nearly orthogonal to it unlikely
(the chance that all of them are falls like a power of the block size), and a product
with 4 columns costs little more than one with 1 for a dense ``A``."""
DEFLATION_STEPS = 6
"""Blocks of the Krylov space of the missed-value check: ``DEFLATION_STEPS`` products with
``A`` and one fewer with :math:`A^H`."""

# The missed-value check keeps a new Krylov direction only if Gram–Schmidt left more than
# this fraction of its norm: below it the direction is rounding noise (the space is
# invariant under D^H D, and then already holds the top of D reachable from the start).
_KEEP = 1e-8


def _svds_kwargs(rng: np.random.Generator) -> dict[str, Any]:
    import inspect

    from scipy.sparse.linalg import svds

    params = inspect.signature(svds).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


def scipy_svds(
    mat: MatrixInput, rank: int, solver: str, rng: np.random.Generator
) -> TruncatedSVDResult:
    r"""The leading ``rank`` triplets of ``mat`` by :func:`scipy.sparse.linalg.svds`, finished
    by a Rayleigh–Ritz step and checked (see the module docstring).

    Parameters
    ----------
    mat : MatrixInput
        The validated matrix, shape (m, n), not zero.
    rank : int
        ``0 <= rank <= min(m, n)`` (``< min(m, n)`` for ARPACK and LOBPCG).
    solver : {"arpack", "propack", "lobpcg"}
        The ``svds`` solver.
    rng : numpy.random.Generator
        Source of ``svds``' start vectors and then of the missed-value check's start block:
        the result (or the error) is a deterministic function of the generator's state.

    Returns
    -------
    TruncatedSVDResult
        ``U`` (m, r) and ``Vh`` (r, n) in the compute dtype of ``mat`` (float32 stays
        float32, complex stays complex; the small dense steps run in double precision),
        orthonormal to working precision; ``S`` (r,) the Ritz values
        :math:`\operatorname{diag}(U^HAV)`, descending; ``converged=True``, meaning that
        the residual check and the missed-value check passed: every :math:`S_i` is within
        :math:`\rho_i/\sqrt2 \le \sqrt{\varepsilon}\,\sigma_1/\sqrt2` (plus
        :math:`\varepsilon^{1/4}\sigma_i/\sqrt2` for LOBPCG) of a singular value of ``A``,
        an absolute accuracy that says nothing about the relative accuracy of values far
        below :math:`\sqrt\varepsilon\,\sigma_1`, and a randomized search found no
        singular value of the deflated matrix above ``S[-1]`` (with probability, not
        certainty; see the module docstring).

    Raises
    ------
    ConvergenceError
        ``svds`` failed; LAPACK failed on the small SVD; a triplet's residual exceeds its
        limit; or a singular value above ``S[-1]`` was found in the deflated matrix.

    Notes
    -----
    **Cost** beyond ``svds`` itself, in products of ``A`` or :math:`A^H` with a block of
    vectors: the Rayleigh–Ritz step and the residuals take two with ``r`` columns
    (:math:`AV`, then :math:`A^HU`; :math:`AV - US` comes from the small SVD), as the old
    residual check alone did; the missed-value check takes ``DEFLATION_STEPS`` (6) with
    ``A`` and ``DEFLATION_STEPS - 1`` (5) with :math:`A^H`, of ``DEFLATION_BLOCK`` (4)
    columns (fewer when ``min(m, n) - r`` is smaller; none when ``r = min(m, n)``). In
    all, 2 products with ``r`` columns and 11 with 4: 2r + 44 matrix–vector products.
    The dense work is :math:`O((m + n) r^2)` and :math:`O((m + n) \cdot 24^2)`.
    """
    if rank == 0:
        return empty_result(mat, solver)
    Vh = _run_svds(mat, rank, solver, rng)
    ritz = _rayleigh_ritz(mat, Vh)
    delta = _check_triplets(mat, ritz, solver)
    _check_deflated(mat, ritz, delta, solver, rng)
    real = np.finfo(mat.dtype).dtype
    U, S, Vh = fix_signs(
        ritz.U.astype(mat.dtype),
        (ritz.S * ritz.scale).astype(real),
        ritz.V.conj().T.astype(mat.dtype),
    )
    return TruncatedSVDResult(
        U=np.ascontiguousarray(U),
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method=solver,
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=S.copy(),
        spectrum_complete=False,
    )


def _run_svds(mat: MatrixInput, rank: int, solver: str, rng: np.random.Generator) -> Array:
    """``Vh`` (rank, n) of ``svds``; its ``U`` and ``S`` are recomputed by Rayleigh–Ritz."""
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, svds

    refused: list[NonFiniteError] = []  # the first non-finite product of an operator
    if mat.dense is not None:
        target: Any = mat.dense
    elif mat.kind == "sparse":
        target = mat.operator
    else:
        # An operator's entries are not checked up front, and svds fails on NaN or
        # infinity with an unrelated message (or, from PROPACK's Fortran callbacks, a
        # SystemError): its products are screened here, a non-finite one replaced by zeros
        # so that the solver returns, and the NonFiniteError raised after it.
        op = mat.operator

        def screened(product: Any) -> Any:
            def call(x: Array) -> Array:
                out = np.asarray(product(x), dtype=mat.dtype)
                if refused or not np.all(np.isfinite(out)):
                    if not refused:
                        refused.append(
                            NonFiniteError(
                                "the LinearOperator A returned NaN or infinity in a product; "
                                "A must be finite"
                            )
                        )
                    return np.zeros_like(out)
                return out

            return call

        target = LinearOperator(
            mat.shape,
            matvec=screened(op.matvec),
            rmatvec=screened(op.rmatvec),
            matmat=screened(op.matmat),
            rmatmat=screened(op.rmatmat),
            dtype=mat.dtype,
        )
    try:
        _, _, Vh = svds(target, k=rank, solver=solver, **_svds_kwargs(rng))
    except (ArpackNoConvergence, ArpackError, np.linalg.LinAlgError) as exc:
        if refused:
            raise refused[0] from None
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) did not converge for rank={rank} on a "
            f"{mat.shape} matrix ({exc}); try method='randomized' or method='exact'"
        ) from None
    if refused:
        raise refused[0]
    return np.asarray(Vh)


@dataclass(frozen=True)
class _Ritz:
    r"""Rayleigh–Ritz triplets in double precision, values in units of ``scale``.

    ``U`` (m, r) and ``V`` (n, r) orthonormal, ``S`` (r,) descending, ``left`` the block
    :math:`AV/\text{scale} - US` (rounding only), ``scale`` a power of two near
    :math:`\max|AV|`, so that the residuals can be squared without underflow or overflow
    whatever the magnitude of ``A``.
    """

    U: Array
    S: Array
    V: Array
    left: Array
    scale: float


def _rayleigh_ritz(mat: MatrixInput, Vh: Array) -> _Ritz:
    r"""Orthonormalise :math:`V = Vh^H` (Householder QR in double precision), form
    :math:`Y = AV` (one product, in the compute dtype) and take the SVD of the m × r block
    :math:`Y/s = \tilde U\Sigma W^H` (LAPACK, double precision), :math:`s` a power of two.

    :math:`U = \tilde U`, :math:`V \leftarrow VW`, :math:`S = \Sigma` are the Ritz triplets
    of ``A`` on the solver's right subspace: the best the subspace allows, with
    :math:`AV = US` up to rounding. In single precision ``V`` is rounded to the compute
    dtype before the product, and the rounded copy is the one rotated, so that the
    returned ``V`` is the one ``A`` multiplied (orthonormal to single precision).
    """
    wide = wide_dtype(mat.dtype)
    Q, _ = np.linalg.qr(Vh.conj().T.astype(wide))
    Qc = Q.astype(mat.dtype)
    Y = mat.matmat(Qc).astype(wide)
    scale = power_of_two_scale(float(np.max(np.abs(Y))))
    Y = Y / scale  # exact: a power of two
    Uy, s, Wh = lapack_svd(Y)
    W = Wh.conj().T
    left = Y @ W - Uy * s
    return _Ritz(U=Uy, S=s.astype(np.float64), V=Qc.astype(wide) @ W, left=left, scale=scale)


def _check_triplets(mat: MatrixInput, ritz: _Ritz, solver: str) -> float:
    r"""Refuse triplets that are not singular triplets to :math:`\sqrt\varepsilon\,\sigma_1`
    (plus :math:`\varepsilon^{1/4}\sigma_i` for LOBPCG, whose own stopping rule is looser);
    return :math:`\delta = \|E_L\|_2 + \|E_R\|_2` in units of ``ritz.scale``.

    For unit :math:`u, v` the residual
    :math:`\rho = (\|Av - \sigma u\|^2 + \|A^H u - \sigma v\|^2)^{1/2}` bounds the distance
    from :math:`\sigma` to a true singular value by :math:`\rho/\sqrt2` (the eigenvalue
    residual bound for :math:`[[0, A], [A^H, 0]]`). :math:`E_L = AV - US` is known from the
    Rayleigh–Ritz step; :math:`E_R = A^HU - VS` costs one product with ``r`` columns. Both
    are divided by ``ritz.scale`` (near :math:`\sigma_1`) *before* they are squared: a
    residual of :math:`10^{-300}` squared underflows to 0 and would pass any test.
    """
    wide = wide_dtype(mat.dtype)
    right = mat.rmatmat(ritz.U.astype(mat.dtype)).astype(wide) / ritz.scale - ritz.V * ritz.S
    rho = np.sqrt(np.sum(np.abs(ritz.left) ** 2, axis=0) + np.sum(np.abs(right) ** 2, axis=0))
    s = ritz.S
    sigma1 = float(s[0])
    eps = compute_eps(mat.dtype)
    # ARPACK and PROPACK converge to machine precision relative to sigma_1; LOBPCG stops
    # at a looser tolerance of its own, and is held to eps**(1/4) of each value on top.
    limit = np.full(s.shape, math.sqrt(eps) * sigma1)
    if solver == "lobpcg":
        limit += eps**0.25 * s
    worst = int(np.argmax(rho / np.maximum(limit, np.finfo(np.float64).tiny)))
    if float(rho[worst]) > float(limit[worst]):
        unit = ritz.scale
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) returned an unconverged triplet: singular value "
            f"{float(s[worst]) * unit:.6g} has residual {float(rho[worst]) * unit:.3g} > "
            f"{float(limit[worst]) * unit:.3g} (sqrt(eps) * sigma_1, plus eps**0.25 * sigma "
            "for lobpcg); try method='randomized' or method='exact'"
        )
    return float(np.linalg.norm(ritz.left, 2) + np.linalg.norm(right, 2))


def _check_deflated(
    mat: MatrixInput, ritz: _Ritz, delta: float, solver: str, rng: np.random.Generator
) -> None:
    r"""Refuse a result that missed a singular value above ``S[-1]``.

    Runs ``DEFLATION_STEPS`` steps of block Golub–Kahan–Lanczos with full
    reorthogonalisation on :math:`D = (I - UU^H) A (I - VV^H)` from a Gaussian block of
    ``DEFLATION_BLOCK`` columns drawn from ``rng``: an orthonormal basis :math:`P` of the
    Krylov space :math:`\operatorname{span}\{\Omega, D^HD\Omega, \dots\}` in the
    complement of ``V``, and :math:`DP`. The largest singular value of :math:`DP` (with
    :math:`P` orthonormalised exactly through its Gram matrix, as the single-precision
    copies that multiply ``A`` are orthonormal only to single precision) is a Ritz value,
    a lower bound of :math:`\sigma_1(D)` up to rounding. If it exceeds
    :math:`S_r + 2\delta + \tau` (:math:`\tau` the rounding of a product with ``A``),
    some :math:`\sigma_i(A)` differs from :math:`S_i` by more than :math:`\delta`, the
    error the residuals allow (module docstring): a value was missed.
    """
    m, n = mat.shape
    r = ritz.S.size
    room = min(m, n) - r
    if room <= 0:
        return  # U or V spans the whole space: D = 0
    block = min(DEFLATION_BLOCK, room)
    steps = min(DEFLATION_STEPS, room // block)
    wide = wide_dtype(mat.dtype)
    U, V, unit = ritz.U, ritz.V, ritz.scale
    P = _orthonormal_against(gaussian(rng, (n, block), wide), [V])
    basis: list[Array] = []
    images: list[Array] = []
    for step in range(steps):
        Pc = P.astype(mat.dtype)
        Y = mat.matmat(Pc).astype(wide) / unit
        Y = Y - U @ (U.conj().T @ Y)
        Y = Y - U @ (U.conj().T @ Y)
        basis.append(Pc.astype(wide))
        images.append(Y)
        if step == steps - 1:
            break
        Z = mat.rmatmat(Y.astype(mat.dtype)).astype(wide) / unit
        P = _orthonormal_against(Z, [V, *basis])
        if P.shape[1] == 0:
            break  # an invariant subspace: the Ritz values are exact
    found = _top_ritz_value(np.concatenate(basis, axis=1), np.concatenate(images, axis=1))
    sigma1 = float(ritz.S[0])
    floor = float(ritz.S[-1])
    slack = 2.0 * delta + tolerance(mat.dtype, size=max(m, n), scale=sigma1)
    if found > floor + slack:
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) missed a singular value: the deflated matrix "
            f"(I - UU^H) A (I - VV^H) has one >= {found * unit:.6g} > S[-1] = "
            f"{floor * unit:.6g} (+ {slack * unit:.3g} for residuals and rounding); try "
            "method='randomized' or method='exact'"
        )


def _orthonormal_against(Z: Array, bases: list[Array]) -> Array:
    """An orthonormal basis of the part of ``span(Z)`` orthogonal to the columns of
    ``bases`` (each with orthonormal columns): two passes of classical Gram–Schmidt ("twice
    is enough"), then the left singular vectors of the remainder that kept more than
    ``_KEEP`` of the block's norm, a third pass against their rounding, and a QR."""
    size = float(np.linalg.norm(Z, 2)) if Z.size else 0.0
    for _ in range(2):
        for K in bases:
            Z = Z - K @ (K.conj().T @ Z)
    W, s, _ = np.linalg.svd(Z, full_matrices=False)
    W = W[:, s > _KEEP * size]
    for K in bases:
        W = W - K @ (K.conj().T @ W)
    Q, _ = np.linalg.qr(W)
    out: Array = Q
    return out


def _top_ritz_value(P: Array, DP: Array) -> float:
    r"""The largest singular value of :math:`D` on :math:`\operatorname{span}(P)`:
    :math:`\sigma_1(DP L^{-H})` with :math:`P^HP = LL^H`, so that a basis orthonormal only
    to the compute dtype's precision does not inflate it."""
    try:
        L = sla.cholesky(P.conj().T @ P, lower=True)
    except np.linalg.LinAlgError:  # pragma: no cover - P is orthonormal to working precision
        return float(sla.svdvals(DP)[0])
    X = sla.solve_triangular(L, DP.conj().T, lower=True)
    return float(sla.svdvals(X)[0])
