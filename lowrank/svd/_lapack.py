"""Dense LAPACK SVD (``method="exact"``) and the trivial cases."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import frobenius_norm
from lowrank._operator import MatrixInput
from lowrank._typing import Array
from lowrank.errors import ConvergenceError, InputError
from lowrank.svd._result import TruncatedSVDResult, fix_signs


def empty_result(mat: MatrixInput, method: str) -> TruncatedSVDResult:
    m, n = mat.shape
    real = np.finfo(mat.dtype).dtype
    return TruncatedSVDResult(
        U=np.zeros((m, 0), dtype=mat.dtype),
        S=np.zeros(0, dtype=real),
        Vh=np.zeros((0, n), dtype=mat.dtype),
        method=method,
        shape=mat.shape,
        norm_fro=mat.frobenius_norm(),
        spectrum=np.zeros(0, dtype=real),
        spectrum_complete=False,
    )


def zero_result(mat: MatrixInput, rank: int, method: str) -> TruncatedSVDResult:
    """The zero matrix: every singular value is 0 and any orthonormal vectors are singular
    vectors; the leading unit vectors are returned (iterative solvers fail on it)."""
    m, n = mat.shape
    real = np.finfo(mat.dtype).dtype
    return TruncatedSVDResult(
        U=np.eye(m, rank, dtype=mat.dtype),
        S=np.zeros(rank, dtype=real),
        Vh=np.eye(rank, n, dtype=mat.dtype),
        method=method,
        shape=mat.shape,
        norm_fro=0.0,
        spectrum=np.zeros(min(m, n), dtype=real),
        spectrum_complete=True,
    )


def lapack_svd(a: Array) -> tuple[Array, Array, Array]:
    try:
        return sla.svd(a, full_matrices=False, lapack_driver="gesdd", check_finite=False)  # type: ignore[no-any-return]
    except np.linalg.LinAlgError:
        try:
            return sla.svd(a, full_matrices=False, lapack_driver="gesvd", check_finite=False)  # type: ignore[no-any-return]
        except np.linalg.LinAlgError as exc:
            raise ConvergenceError(
                f"LAPACK gesdd and gesvd both failed to converge on a {a.shape} matrix: {exc}"
            ) from None


def exact_svd(mat: MatrixInput, rank: int) -> TruncatedSVDResult:
    if mat.kind == "operator":
        raise InputError(
            "method='exact' needs an array or a sparse matrix; got a LinearOperator "
            "(use method='randomized' or one of the svds methods)"
        )
    dense = mat.dense if mat.dense is not None else np.asarray(mat.operator.toarray())
    U, S, Vh = lapack_svd(dense)
    spectrum = S.copy()
    U, S, Vh = fix_signs(U[:, :rank], S[:rank], Vh[:rank])
    return TruncatedSVDResult(
        U=np.ascontiguousarray(U),
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method="exact",
        shape=mat.shape,
        norm_fro=mat.norm_fro if mat.norm_fro is not None else frobenius_norm(dense),
        spectrum=spectrum,
        spectrum_complete=True,
    )
