"""SciPy's ``svds`` solvers (ARPACK, PROPACK, LOBPCG) with their results checked."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowrank._numerics import compute_eps
from lowrank._operator import MatrixInput
from lowrank._typing import Array
from lowrank.errors import ConvergenceError
from lowrank.svd._lapack import empty_result
from lowrank.svd._result import TruncatedSVDResult, fix_signs


def _svds_kwargs(rng: np.random.Generator) -> dict[str, Any]:
    import inspect

    from scipy.sparse.linalg import svds

    params = inspect.signature(svds).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


def scipy_svds(
    mat: MatrixInput, rank: int, solver: str, rng: np.random.Generator
) -> TruncatedSVDResult:
    if rank == 0:
        return empty_result(mat, solver)
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, svds

    if mat.dense is not None:
        target: Any = mat.dense
    elif mat.kind == "sparse":
        target = mat.operator
    else:
        op = mat.operator
        target = LinearOperator(
            mat.shape,
            matvec=op.matvec,
            rmatvec=op.rmatvec,
            matmat=op.matmat,
            rmatmat=op.rmatmat,
            dtype=mat.dtype,
        )
    try:
        U, S, Vh = svds(target, k=rank, solver=solver, **_svds_kwargs(rng))
    except (ArpackNoConvergence, ArpackError, np.linalg.LinAlgError) as exc:
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) did not converge for rank={rank} on a "
            f"{mat.shape} matrix ({exc}); try method='randomized' or method='exact'"
        ) from None
    real = np.finfo(mat.dtype).dtype
    U = np.asarray(U, dtype=mat.dtype)
    Vh = np.asarray(Vh, dtype=mat.dtype)
    S = np.asarray(S, dtype=real)
    _check_triplets(mat, U, S, Vh, solver)
    U, S, Vh = fix_signs(U, S, Vh)
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


def _check_triplets(mat: MatrixInput, U: Array, S: Array, Vh: Array, solver: str) -> None:
    r"""Refuse triplets that are not singular triplets to :math:`\sqrt\varepsilon\,\sigma_1`
    (plus :math:`\varepsilon^{1/4}\sigma_i` for LOBPCG, whose own stopping rule is looser).

    ``svds`` can return unconverged values without raising (PROPACK on clustered spectra,
    LOBPCG at its iteration limit). For unit :math:`u, v` the residual
    :math:`\rho = (\|Av - \sigma u\|^2 + \|A^H u - \sigma v\|^2)^{1/2}` bounds the distance
    from :math:`\sigma` to a true singular value by :math:`\rho/\sqrt2` (the eigenvalue
    residual bound for :math:`[[0, A], [A^H, 0]]`); it costs two products with ``r`` columns.
    """
    wide = np.complex128 if mat.dtype.kind == "c" else np.float64
    AV = mat.matmat(Vh.conj().T).astype(wide)
    AhU = mat.rmatmat(U).astype(wide)
    s = S.astype(np.float64)
    rho = np.sqrt(
        np.sum(np.abs(AV - U * s) ** 2, axis=0) + np.sum(np.abs(AhU - Vh.conj().T * s) ** 2, axis=0)
    )
    sigma1 = float(np.max(s)) if s.size else 0.0
    eps = compute_eps(mat.dtype)
    # ARPACK and PROPACK converge to machine precision relative to sigma_1; LOBPCG stops
    # at a looser tolerance of its own, and is held to eps**(1/4) of each value on top.
    limit = np.full(s.shape, math.sqrt(eps) * sigma1)
    if solver == "lobpcg":
        limit += eps**0.25 * s
    worst = int(np.argmax(rho / np.maximum(limit, np.finfo(np.float64).tiny)))
    if float(rho[worst]) > float(limit[worst]):
        raise ConvergenceError(
            f"scipy svds(solver={solver!r}) returned an unconverged triplet: singular value "
            f"{float(s[worst]):.6g} has residual {float(rho[worst]):.3g} > "
            f"{float(limit[worst]):.3g} (sqrt(eps) * sigma_1, plus eps**0.25 * sigma for "
            "lobpcg); try "
            "method='randomized' or method='exact'"
        )


# Elements of A converted to double precision at a time while the Gram matrix accumulates
# (256 MiB): a 4096 x 4096 matrix in one product, which is a third faster than in blocks.
