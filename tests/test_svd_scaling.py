"""Matrices of extreme scale: every method, and the Gram route of ``singular_values``, give
the singular values of ``c * A`` as ``c`` times those of ``A``.

The iterative methods square singular values in float64 (Gram matrices of blocks and of the
projection) and multiply in the compute dtype; SciPy's solvers have absolute tolerances.
Before the power-of-two prescaling, the randomized method returned values 77 % off with
``converged=True`` at sigma_1 = 1e154 and raised a raw ``LinAlgError`` above, LOBPCG and
PROPACK passed their residual check at 1e-200..1e-305 with values 31-96 % off, and the Gram
route overflowed at 1e160 and returned zeros at 1e-170.

Reference: float64 LAPACK (``scipy.linalg.svdvals``) on the unscaled matrix, scaled by
``c`` (a power of ten: the reference scaling is then off by one rounding). Tolerances:
each method's own accuracy on the unscaled matrix (well-separated spectrum, decay 0.8):
LAPACK-level ``64 eps`` relative for exact, randomized, ARPACK and PROPACK, ``1e-8`` for
LOBPCG, whose stopping rule is looser (see ``tests/test_svd.py``), and for float32 input
``64 eps32`` (products in float32 perturb values by about ``eps32 sqrt(n) sigma_1``;
the top five are within a factor 3 of sigma_1).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

from lowrank import singular_values, truncated_svd

RANK = 5
METHODS = ("randomized", "arpack", "propack", "lobpcg")


def _matrix(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = 0.8 ** np.arange(30)
    U, _ = np.linalg.qr(rng.standard_normal((80, 30)))
    V, _ = np.linalg.qr(rng.standard_normal((60, 30)))
    return (U * s) @ V.T


def _rtol(method: str, dtype: type) -> float:
    if dtype == np.float32:
        return 64 * float(np.finfo(np.float32).eps)
    return 1e-8 if method == "lobpcg" else 64 * float(np.finfo(np.float64).eps)


@settings(max_examples=40, deadline=None)
@given(
    exponent=st.sampled_from([-300, -250, -200, -160, -100, 100, 154, 160, 200, 250, 300]),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**16),
)
def test_float64_extreme_scales(exponent: int, method: str, seed: int) -> None:
    A = _matrix(seed)
    scale = 10.0**exponent
    ref = sla.svdvals(A)[:RANK]
    res = truncated_svd(A * scale, RANK, method=method, rng=seed)
    assert res.S.dtype == np.float64
    assert res.converged
    rel = np.abs(res.S / scale - ref) / ref
    assert np.max(rel) <= _rtol(method, np.float64), (exponent, method, rel)
    assert res.norm_fro / scale == pytest.approx(np.linalg.norm(A), rel=1e-12)
    # The factors are the unscaled method's: orthonormal, and U S Vh reproduces A's top part.
    assert np.abs(res.U.T @ res.U - np.eye(RANK)).max() <= 1e-6


@settings(max_examples=20, deadline=None)
@given(
    exponent=st.sampled_from([-35, -30, -25, 25, 30, 35]),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**16),
)
def test_float32_extreme_scales(exponent: int, method: str, seed: int) -> None:
    X = (_matrix(seed) * 10.0**exponent).astype(np.float32)
    ref = sla.svdvals(X.astype(np.float64))[:RANK]
    res = truncated_svd(X, RANK, method=method, rng=seed)
    assert res.S.dtype == np.float32
    assert np.all(np.isfinite(res.S))
    rel = np.abs(res.S.astype(np.float64) - ref) / ref
    assert np.max(rel) <= _rtol(method, np.float32), (exponent, method, rel)


@pytest.mark.parametrize("kind", ["sparse", "operator"])
@pytest.mark.parametrize("exponent", [-200, 200])
def test_sparse_and_operator_inputs_are_scaled_too(kind: str, exponent: int) -> None:
    unscaled = _matrix(7)
    scale = 10.0**exponent
    A = unscaled * scale
    given_input = sp.csr_matrix(A) if kind == "sparse" else aslinearoperator(A)
    ref = sla.svdvals(unscaled)[:RANK]
    res = truncated_svd(given_input, RANK, method="randomized", rng=0)
    assert res.converged
    np.testing.assert_allclose(res.S / scale, ref, rtol=64 * np.finfo(np.float64).eps)
    assert res.norm_fro / scale == pytest.approx(np.linalg.norm(unscaled), rel=1e-12)


@pytest.mark.parametrize("exponent", [-170, -100, 0, 100, 160, 250])
@pytest.mark.parametrize("complex_", [False, True])
def test_gram_route_of_singular_values_at_extreme_scales(exponent: int, complex_: bool) -> None:
    rng = np.random.default_rng(3)
    A = rng.standard_normal((50, 40))
    if complex_:
        A = A + 1j * rng.standard_normal((50, 40))
    ref = sla.svdvals(A)
    got = singular_values(A * 10.0**exponent, method="gram") / 10.0**exponent
    # The Gram route resolves values to about eps * sigma_1 absolute (it squares them).
    assert np.max(np.abs(got - ref)) <= 64 * np.finfo(np.float64).eps * ref[0]


def test_finite_entries_whose_norms_overflow_are_refused_clearly():
    """Singular values 1.5e308, 1.2e308, 1e308: ||A||_F = 2.2e308 overflows. Before,
    PROPACK returned residual_fro = NaN with converged=True, ARPACK a ConvergenceError with
    LAPACK noise, LOBPCG a raw ValueError; a 3 x 3 matrix of 1e308 (sigma_1 = 3e308) gave a
    raw LinAlgError (randomized) and S = [inf] (exact). Now one InputError each."""
    from lowrank import InputError

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((6, 3)))
    V, _ = np.linalg.qr(rng.standard_normal((5, 3)))
    A = (U * np.array([1.5, 1.2, 1.0])) @ V.T * 1e308
    assert np.all(np.isfinite(A))
    for method in ("exact", "randomized", *METHODS):
        with pytest.raises(InputError, match="Frobenius norm exceeds the float64 range"):
            truncated_svd(A, 2, method=method, rng=0)
        with pytest.raises(InputError, match="Frobenius norm exceeds the float64 range"):
            truncated_svd(sp.csr_matrix(A), 2, method=method if method != "exact" else "auto")
    with pytest.raises(InputError, match="exceeds the float64 range"):
        truncated_svd(aslinearoperator(A), 2, method="randomized", rng=0)
    with pytest.raises(InputError, match="largest singular value exceeds the float64 range"):
        singular_values(np.full((3, 3), 1e308))
