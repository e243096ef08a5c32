"""Eckart–Young–Mirsky errors against independent computations.

References: the optimal error in each norm is computed here directly from the dense
residual A - U_r S_r V_r^T (numpy.linalg.svd / norm in float64), never from the formula
under test. Tolerances: float64 sums of O(n) terms, 1e-12 relative unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank import (
    InputError,
    RankError,
    ShapeError,
    best_approximation,
    compare_to_optimal,
    eym_error,
    residual_norm,
    truncated_svd,
)
from lowrank._numerics import tolerance


def truncated_residual(A, r):
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    return A - (U[:, :r] * s[:r]) @ Vh[:r]


def direct_norm(M, norm, p=None, k=None):
    s = np.linalg.svd(M, compute_uv=False)
    if norm == "fro":
        return float(np.linalg.norm(M))
    if norm == "spectral":
        return float(np.linalg.norm(M, 2))
    if norm == "nuclear":
        return float(np.linalg.norm(M, "nuc"))
    if norm == "schatten":
        return float(np.sum(s**p) ** (1 / p))
    return float(np.sum(np.sort(s)[::-1][:k]))


@pytest.mark.parametrize(
    ("norm", "p", "k"),
    [
        ("fro", None, None),
        ("spectral", None, None),
        ("nuclear", None, None),
        ("schatten", 3.0, None),
        ("schatten", 1.5, None),
        ("ky_fan", None, 2),
        ("ky_fan", None, 50),
    ],
)
@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (1, 7), (9, 1)])
def test_eym_error_matches_direct_residual(norm, p, k, shape, rng):
    A = rng.standard_normal(shape)
    s = np.linalg.svd(A, compute_uv=False)
    for r in range(min(shape) + 1):
        expected = direct_norm(truncated_residual(A, r), norm, p, k)
        got = eym_error(s, r, norm=norm, p=p, k=k)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-13 * s[0])


def test_eym_error_schatten_limits(rng):
    s = np.sort(rng.random(10))[::-1]
    assert eym_error(s, 3, norm="schatten", p=2.0) == pytest.approx(eym_error(s, 3), rel=1e-14)
    assert eym_error(s, 3, norm="schatten", p=1.0) == pytest.approx(
        eym_error(s, 3, norm="nuclear"), rel=1e-14
    )
    assert eym_error(s, 3, norm="schatten", p=math.inf) == s[3]


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_eym_error_no_overflow(scale, rng):
    s = rng.random(200) + 0.5
    for norm in ("fro", "nuclear", "spectral"):
        got = eym_error(s * scale, 10, norm=norm)
        assert math.isfinite(got) and got > 0
        assert got / scale == pytest.approx(eym_error(s, 10, norm=norm), rel=1e-13)
    got = eym_error(s * scale, 10, norm="schatten", p=4.0)
    assert got / scale == pytest.approx(eym_error(s, 10, norm="schatten", p=4.0), rel=1e-13)


def test_eym_error_bad_input():
    with pytest.raises(InputError, match=r"singular_values must be non-negative; got minimum -1.0"):
        eym_error([1.0, -1.0], 1)
    with pytest.raises(
        RankError, match=r"rank must satisfy 0 <= rank <= len\(singular_values\) = 2"
    ):
        eym_error([1.0, 0.5], 3)
    with pytest.raises(InputError, match=r"norm must be one of .*; got 'max'"):
        eym_error([1.0], 0, norm="max")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"norm='schatten' needs the exponent p"):
        eym_error([1.0], 0, norm="schatten")
    with pytest.raises(InputError, match=r"p must be >= 1 for a Schatten norm; got 0.5"):
        eym_error([1.0], 0, norm="schatten", p=0.5)
    with pytest.raises(InputError, match=r"norm='ky_fan' needs k"):
        eym_error([1.0], 0, norm="ky_fan")
    with pytest.raises(InputError, match=r"k must be >= 1; got 0"):
        eym_error([1.0], 0, norm="ky_fan", k=0)
    with pytest.raises(InputError, match=r"singular_values must be real"):
        eym_error(np.array([1.0 + 1j]), 0)
    with pytest.raises(ShapeError, match=r"singular_values must be 1-D"):
        eym_error(np.ones((2, 2)), 0)


def test_best_approximation_is_optimal_and_factored(rng):
    A = rng.standard_normal((40, 25))
    best = best_approximation(A, 5)
    assert best.method == "exact"
    dense = best.to_dense()
    np.testing.assert_allclose(dense, A - truncated_residual(A, 5), atol=1e-12)
    assert residual_norm(A, best) == pytest.approx(
        eym_error(np.linalg.svd(A, compute_uv=False), 5), rel=1e-12
    )


@pytest.mark.parametrize("form", ["dense", "LR", "USVh", "result"])
def test_residual_norm_forms(form, rng, monkeypatch):
    monkeypatch.setattr("lowrank.approx._RESIDUAL_BLOCK_ELEMENTS", 64)  # force several blocks
    A = rng.standard_normal((37, 23))
    L, R = rng.standard_normal((37, 4)), rng.standard_normal((4, 23))
    U, s, Vh = np.linalg.svd(L @ R, full_matrices=False)
    candidate = {
        "dense": L @ R,
        "LR": (L, R),
        "USVh": (U[:, :4], s[:4], Vh[:4]),
        "result": truncated_svd(L @ R, 4, method="exact"),
    }[form]
    for norm, p, k in [
        ("fro", None, None),
        ("spectral", None, None),
        ("nuclear", None, None),
        ("schatten", 3.0, None),
        ("ky_fan", None, 3),
    ]:
        expected = direct_norm(A - L @ R, norm, p, k)
        assert residual_norm(A, candidate, norm=norm, p=p, k=k) == pytest.approx(
            expected, rel=1e-11
        )


def test_residual_norm_float32_accumulates_in_float64(rng):
    A = rng.standard_normal((300, 200)).astype(np.float32)
    best = truncated_svd(A, 10, method="exact")
    got = residual_norm(A, best)
    # The float32 factors, multiplied exactly enough in float64.
    U, S, Vh = (x.astype(np.float64) for x in (best.U, best.S, best.Vh))
    expected = np.linalg.norm(A.astype(np.float64) - (U * S) @ Vh)
    assert got == pytest.approx(expected, rel=1e-12)


def test_residual_norm_complex(rng):
    A = rng.standard_normal((12, 9)) + 1j * rng.standard_normal((12, 9))
    L = rng.standard_normal((12, 2)) + 1j * rng.standard_normal((12, 2))
    R = rng.standard_normal((2, 9))
    assert residual_norm(A, (L, R)) == pytest.approx(np.linalg.norm(A - L @ R), rel=1e-12)


def test_compare_to_optimal(rng):
    A = rng.standard_normal((30, 20))
    best = truncated_svd(A, 4, method="exact")
    for norm in ("fro", "spectral", "nuclear"):
        cmp = compare_to_optimal(A, best, norm=norm)
        assert cmp.rank == 4 and cmp.norm == norm
        assert cmp.ratio == pytest.approx(1.0, abs=1e-12)
    # A wrong candidate (the 2nd..5th triplets instead of the 1st..4th) is worse.
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    wrong = (U[:, 1:5], s[1:5], Vh[1:5])
    cmp = compare_to_optimal(A, wrong)
    expected = np.linalg.norm(A - (U[:, 1:5] * s[1:5]) @ Vh[1:5]) / np.sqrt(np.sum(s[4:] ** 2))
    assert cmp.ratio == pytest.approx(expected, rel=1e-12) and cmp.ratio > 1
    dense = compare_to_optimal(A, best.to_dense())
    assert dense.rank == 4 and dense.ratio == pytest.approx(1.0, abs=1e-12)
    explicit = compare_to_optimal(A, best, rank=6)
    assert explicit.rank == 6 and explicit.ratio > 1  # rank 4 is worse than the rank-6 optimum


def test_compare_to_optimal_zero_optimum(rng):
    L, R = rng.standard_normal((10, 2)), rng.standard_normal((2, 8))
    A = L @ R
    assert compare_to_optimal(A, (L, R)).ratio == 1.0
    assert compare_to_optimal(A, (L, R * 1.1)).ratio == math.inf


def test_compare_bad_candidates(rng):
    A = rng.standard_normal((6, 5))
    with pytest.raises(
        ShapeError, match=r"candidate must have the shape of A, \(6, 5\); got \(5, 6\)"
    ):
        compare_to_optimal(A, A.T)
    with pytest.raises(
        ShapeError, match=r"candidate \(L, R\) must have shapes \(m, r\) and \(r, n\)"
    ):
        compare_to_optimal(A, (np.ones((6, 2)), np.ones((3, 5))))
    with pytest.raises(ShapeError, match=r"multiply to the shape of A, \(6, 5\); got \(6, 4\)"):
        compare_to_optimal(A, (np.ones((6, 2)), np.ones((2, 4))))
    with pytest.raises(ShapeError, match=r"candidate \(U, S, Vh\) must have shapes"):
        compare_to_optimal(A, (np.ones((6, 2)), np.ones(3), np.ones((2, 5))))
    with pytest.raises(
        RankError, match=r"rank must satisfy 0 <= rank <= min\(A.shape\) = 5; got 9"
    ):
        compare_to_optimal(A, A, rank=9)


@given(m=st.integers(1, 10), n=st.integers(1, 10), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_property_no_rank_r_matrix_beats_truncated_svd(m, n, seed, data):
    """EYM: random rank-r matrices and perturbed truncated SVDs are never better (F and 2)."""
    gen = np.random.default_rng(seed)
    A = gen.standard_normal((m, n)) * 10 ** gen.uniform(-3, 3)
    r = data.draw(st.integers(0, min(m, n)))
    s = np.linalg.svd(A, compute_uv=False)
    tol = tolerance(np.float64, size=max(m, n), scale=s[0])
    best = truncated_svd(A, r, method="exact")
    eps_perturb = data.draw(st.sampled_from([0.0, 1e-6, 1e-2, 1.0]))
    L = best.U * best.S + eps_perturb * gen.standard_normal((m, r)) * s[0]
    R = best.Vh + eps_perturb * gen.standard_normal((r, n))
    random_L, random_R = gen.standard_normal((m, r)) * s[0], gen.standard_normal((r, n))
    for norm in ("fro", "spectral"):
        optimal = eym_error(s, r, norm=norm)
        assert residual_norm(A, best, norm=norm) == pytest.approx(optimal, abs=tol)
        assert residual_norm(A, (L, R), norm=norm) >= optimal - tol
        assert residual_norm(A, (random_L, random_R), norm=norm) >= optimal - tol
    # Frobenius error squared equals the tail sum of squared singular values.
    assert eym_error(s, r) ** 2 == pytest.approx(float(np.sum(s[r:] ** 2)), abs=tol * s[0])
