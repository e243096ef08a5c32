"""The tolerances of lowrank.testing: the values their derivations give, and their argument
checks. (That they raise no false alarm is tests/test_testing_false_alarms.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowrank import InputError
from lowrank.errors import DTypeError, ShapeError
from lowrank.testing.tolerances import (
    backward_error_tolerance,
    gram_atol,
    lapack_deflation_tolerance,
    norm_multiplier,
    norm_tolerance,
    power_scheme_factor,
    subspace_tolerance,
    svd_tolerance,
    tolerance_for,
)

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)


def test_lapack_deflation_threshold_is_tolmul_times_unit_roundoff():
    """LAPACK ?bdsqr: TOL = max(10, min(100, EPS**(-1/8))) * EPS, EPS = u = eps / 2."""
    u64, u32 = EPS64 / 2, EPS32 / 2
    assert lapack_deflation_tolerance(np.float64) == pytest.approx(u64 ** (7 / 8))  # 98.8 u
    assert lapack_deflation_tolerance(np.complex128) == lapack_deflation_tolerance(np.float64)
    assert lapack_deflation_tolerance(np.float32) == pytest.approx(10 * u32)  # u^-1/8 = 8 < 10
    assert lapack_deflation_tolerance(np.complex64) == lapack_deflation_tolerance(np.float32)


def test_backward_error_adds_the_deflation_threshold_to_the_rounding():
    for dtype in (np.float64, np.float32):
        for shape in [(3, 3), (8, 5), (40, 60)]:
            expected = svd_tolerance(dtype, shape, 2.0) + 2.0 * lapack_deflation_tolerance(dtype)
            assert backward_error_tolerance(dtype, shape, 2.0) == pytest.approx(expected)
    # The size-independent term dominates small float64 matrices: 49 eps vs 16 sqrt(3) eps.
    assert backward_error_tolerance(np.float64, (3, 3), 1.0) > 2.7 * svd_tolerance(
        np.float64, (3, 3), 1.0
    )


def test_gram_atol_follows_its_derivation():
    # sqrt(r (max(t^2, eps) + 16 eps sqrt(max(m, n)))), in units of sigma_1.
    expected = math.sqrt(5 * (EPS64 + 16 * EPS64 * math.sqrt(50)))
    assert gram_atol(np.float64, (50, 40), rank=5) == pytest.approx(expected)
    assert gram_atol(np.float64, (50, 40), tol=1e-6) == pytest.approx(
        math.sqrt(1e-12 + 16 * EPS64 * math.sqrt(50))
    )
    # Near sqrt(eps): far above the rounding of a dense SVD, far below a structural error.
    assert 1e-8 < gram_atol(np.float64, (10, 10)) < 1e-6


def test_power_scheme_factor_follows_halko_martinsson_tropp():
    c = 1 + 11 * math.sqrt(15) * math.sqrt(80)
    assert power_scheme_factor((100, 80), 5, n_iter=7) == pytest.approx(c ** (1 / 15))
    assert power_scheme_factor((100, 80), 5, n_iter=0) == pytest.approx(c)
    # More power iterations, a factor closer to 1.
    assert power_scheme_factor((100, 80), 5, n_iter=10) < power_scheme_factor(
        (100, 80), 5, n_iter=7
    )


def test_norm_multiplier():
    assert norm_multiplier((9, 4)) == 2.0
    assert norm_multiplier((9, 4), norm="spectral") == 1.0
    assert norm_multiplier((9, 4), norm="nuclear") == 4.0
    assert norm_multiplier((9, 4), norm="schatten", p=2) == 2.0
    assert norm_multiplier((9, 4), norm="ky_fan", k=3) == 3.0
    assert norm_tolerance(np.float64, (9, 4), 1.0) == 2.0 * svd_tolerance(np.float64, (9, 4), 1.0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: lapack_deflation_tolerance("bogus"), DTypeError, "dtype must be a NumPy dtype"),
        (lambda: backward_error_tolerance(np.float64, (3,), 1.0), ShapeError, "shape must be"),
        (
            lambda: backward_error_tolerance(np.float64, (3, 3), -1.0),
            InputError,
            r"sigma_1 must be finite and >= 0; got -1\.0",
        ),
        (
            lambda: backward_error_tolerance(np.float64, (3, 3), 1.0, factor=math.nan),
            InputError,
            "factor must be finite and > 0",
        ),
        (lambda: gram_atol(np.float64, (3, 3), tol=-1.0), InputError, "tol must be finite"),
        (lambda: gram_atol(np.float64, (3, 3), rank=0), InputError, "rank must be >= 1"),
        (
            lambda: power_scheme_factor((9, 9), 1, n_iter=2, oversample=4),
            InputError,
            "oversample must be >= 5",
        ),
        (lambda: power_scheme_factor((9, 9), 3, n_iter=-1), InputError, "n_iter must be >= 0"),
        (lambda: norm_multiplier((3, 3), norm="max"), InputError, "norm must be one of"),
        (lambda: norm_multiplier((3, 3), p=0.5), InputError, r"p must be a real number >= 1"),
        (lambda: norm_multiplier((3, 3), k=0), InputError, "k must be >= 1"),
        (lambda: tolerance_for(np.float64, size=-1), InputError, "size must be >= 0"),
        (lambda: subspace_tolerance(-1.0, 0.5), InputError, "residual_tolerance must be"),
        (lambda: subspace_tolerance(1e-14, math.nan), InputError, "gap must be a real number"),
    ],
)
def test_tolerance_argument_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("gap", [0.0, -1.0, -math.inf])
def test_subspace_tolerance_without_a_gap_raises(gap):
    """No gap, no determined vectors: a bound of inf would let any vectors pass silently."""
    with pytest.raises(InputError, match=r"gap must be > 0 \(with no gap the singular vectors"):
        subspace_tolerance(1e-14, gap)


def test_subspace_tolerance_of_an_isolated_cluster_is_zero():
    assert subspace_tolerance(1e-14, math.inf) == 0.0
