"""Convergence checks from the band of the block Golub–Kahan projection.

The checks of the adaptive method take the Ritz values of the block bidiagonal part of the
projection (:mod:`lowrank.svd._banded`): exactly those of its band, reduced by small QR
factorisations and LAPACK ``dsbev``, and within the norm of the dropped coefficients of the
full projection's (Weyl). Both are checked against float64 LAPACK on real recurrences,
including a widened block and a last block cut short by the room left.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrank import truncated_svd
from lowrank._operator import as_matrix_input
from lowrank.svd import _krylov
from lowrank.svd._banded import banded_ritz_values
from lowrank.svd._krylov import _check_values, _Recurrence
from lowrank.svd._numpy_lapack import banded_eigenvalues

EPS64 = np.finfo(np.float64).eps


def recurrence(seed: int, dtype: type, steps: int, block: int, widen_at: int | None):
    g = np.random.default_rng(seed)
    m, n = (int(x) for x in g.integers(60, 200, 2))
    s = np.sort(g.random(min(m, n)) ** 3)[::-1]
    U, _ = np.linalg.qr(g.standard_normal((m, s.size)))
    V, _ = np.linalg.qr(g.standard_normal((n, s.size)))
    A = ((U * s) @ V.T).astype(dtype)
    rec = _Recurrence(as_matrix_input(A), block, steps + 1, g)
    for k in range(steps):
        rec.step()
        if rec.exhausted:
            break
        if k == widen_at:
            rec.widen(3)
    return rec


def block_bidiagonal_part(rec) -> np.ndarray:
    """The projection with the coefficients against older blocks of P set to zero."""
    B = rec.projection()
    r0 = 0
    for k, (Dh, _) in enumerate(rec.rows):
        width = rec.rows[k - 1][1].shape[1] if k else Dh.shape[1]
        B[r0 : r0 + Dh.shape[0], : Dh.shape[1] - width] = 0.0
        r0 += Dh.shape[0]
    return B


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    steps=st.integers(1, 12),
    block=st.integers(1, 24),
    widen_at=st.one_of(st.none(), st.integers(0, 5)),
)
def test_band_values_are_those_of_the_block_bidiagonal_part(seed, dtype, steps, block, widen_at):
    # Steps up to 12 with blocks up to 24 run out of room on the small side (60-200): the
    # last blocks are then narrower than the others.
    rec = recurrence(seed, dtype, steps, block, widen_at)
    part = block_bidiagonal_part(rec)
    values, dropped = banded_ritz_values(rec.rows)
    reference = np.linalg.svd(part, compute_uv=False)
    full = rec.projection()
    np.testing.assert_allclose(dropped, np.linalg.norm(full - part), rtol=1e-12, atol=0)
    assert values.shape == (part.shape[0],)
    assert np.all(np.diff(values) <= 0)
    # Eigenvalues of the Gram matrix by a backward-stable reduction, p(L) eps ||G|| with
    # p(L) = L, plus the rounding of the Gram matrix's entries (sums of up to 2 w + 1
    # products, w the widest block) and of the squared reference: 4 (L + w) eps ||G||
    # (measured at most 0.37 L eps ||G||). The squares are compared.
    size = part.shape[0]
    width = max(Lh.shape[1] for _, Lh in rec.rows)
    top = reference[0] ** 2
    atol = 4 * (size + width) * EPS64 * top
    np.testing.assert_allclose(values**2, reference**2, rtol=0, atol=atol)
    # Weyl: the full projection's values are within the dropped norm (plus that rounding).
    exact = np.linalg.svd(full, compute_uv=False)
    assert np.all(np.abs(values - exact) <= dropped + np.sqrt(atol))


def test_dsbev_matches_the_dense_eigenvalues():
    g = np.random.default_rng(0)
    n, kd = 200, 7
    dense = g.standard_normal((n, n))
    dense = np.triu(np.tril(dense + dense.T, kd), -kd)
    band = np.zeros((n, kd + 1))
    for d in range(kd + 1):
        band[: n - d, d] = np.diagonal(dense, -d)
    reference = np.linalg.eigvalsh(dense)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(banded_eigenvalues(band), reference, rtol=0, atol=n * EPS64 * scale)


def test_the_documented_band_threshold_is_the_one_used():
    """truncated_svd's Notes give the space dimension from which checks use the band."""
    from lowrank import truncated_svd

    notes = " ".join((truncated_svd.__doc__ or "").split())
    assert f"once the space has {_krylov._BANDED_MIN_DIM} columns" in notes


def test_dsbev_failure_is_reported_as_none():
    band = np.zeros((4, 2))
    band[1, 0] = np.nan
    assert banded_eigenvalues(band) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_check_uses_the_band_when_the_space_is_large(dtype, monkeypatch):
    rec = recurrence(3, dtype, 8, 16, None)
    exact = np.linalg.svd(rec.projection(), compute_uv=False)
    monkeypatch.setattr(_krylov, "_BANDED_MIN_DIM", 0)
    values, B, G = _check_values(rec, 8, 1e-3, exact=False)
    assert B is None and G is None
    _, dropped = banded_ritz_values(rec.rows)
    assert np.max(np.abs(values - exact)) <= dropped + np.sqrt(rec.Q.size * EPS64) * exact[0]
    values, B, G = _check_values(rec, 8, 1e-3, exact=True)
    assert B is not None
    # From the Gram matrix of the projection: squares to p(L) eps ||G|| (as above).
    atol = 4 * (rec.Q.size + rec.P.size) * EPS64 * exact[0] ** 2
    np.testing.assert_allclose(values**2, exact**2, rtol=0, atol=atol)


def test_complex_input_keeps_the_dense_check(monkeypatch):
    g = np.random.default_rng(4)
    A = g.standard_normal((120, 90)) + 1j * g.standard_normal((120, 90))
    rec = _Recurrence(as_matrix_input(A), 8, 5, g)
    for _ in range(4):
        rec.step()
    monkeypatch.setattr(_krylov, "_BANDED_MIN_DIM", 0)
    _, B, _ = _check_values(rec, 4, 1e-3, exact=False)
    assert B is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_banded_checks_converge_to_the_lapack_values(dtype):
    # A space past _BANDED_MIN_DIM: rank 64 of a 900 x 700 Marchenko-Pastur matrix. The
    # default target is 32 eps relative; measured against float64 LAPACK with the rounding
    # of a backward-stable SVD, eps sqrt(max(m, n)) sigma_1 (times 4, as the converged
    # property test).
    g = np.random.default_rng(5)
    A = (g.standard_normal((900, 700)) / 30.0).astype(dtype)
    result = truncated_svd(A, 64, method="randomized", rng=0)
    assert result.converged
    assert result.diagnostics.subspace_dim >= _krylov._BANDED_MIN_DIM
    reference = np.linalg.svd(A.astype(np.float64), compute_uv=False)[:64]
    eps = np.finfo(dtype).eps
    floor = 4 * eps * np.sqrt(900) * reference[0]
    error = np.max(np.maximum(np.abs(result.S - reference) - floor, 0.0) / reference)
    assert error <= 10 * 32 * eps


def test_band_values_stand_only_within_the_rounding_level():
    """A claim from banded values stands when the exact values agree with them to
    NOISE_EPS epsilons of the top value, the growth the error model reads as rounding."""
    from lowrank.svd._convergence import NOISE_EPS
    from lowrank.svd._krylov import _agree

    eps = float(np.finfo(np.float32).eps)
    exact = np.array([4.0, 2.0, 1.0, 0.5])
    step = NOISE_EPS * eps * 4.0
    assert _agree(exact + 0.9 * step, exact, 3, eps)
    assert not _agree(exact - np.r_[0.0, 0.0, 1.1 * step, 0.0], exact, 3, eps)
    # Beyond the rank nothing is compared.
    assert _agree(exact + np.r_[0.0, 0.0, 0.0, 10 * step], exact, 3, eps)
