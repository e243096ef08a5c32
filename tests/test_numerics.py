"""Layer 0: the tolerance helper, overflow-free sums of squares, input normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowrank import InputError
from lowrank._numerics import (
    frobenius_norm,
    power_of_two_scale,
    scaled_sum_of_squares,
    storage_eps,
    tolerance,
)
from lowrank._validation import (
    as_vector,
    check_fraction,
    check_int,
    check_positive_float,
    compute_dtype,
    normalize_rng,
)
from lowrank.errors import ShapeError

ml_dtypes = pytest.importorskip("ml_dtypes")


def test_tolerance_scales_with_eps_size_and_scale():
    base = tolerance(np.float64, size=100)
    assert base == pytest.approx(16 * np.finfo(np.float64).eps * 10)
    assert tolerance(np.float32, size=100) / base == pytest.approx(2.0**29)
    assert tolerance(np.float64, size=400, scale=3.0) == pytest.approx(base * 2 * 3)
    assert tolerance(np.complex64, size=1) == pytest.approx(16 * np.finfo(np.float32).eps)


def test_storage_eps():
    assert storage_eps("bfloat16") == 2.0**-7
    assert storage_eps(np.float16) == 2.0**-10
    assert storage_eps(ml_dtypes.bfloat16) == 2.0**-7
    assert storage_eps(np.int32) == 0.0


@pytest.mark.parametrize("value", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_frobenius_norm_without_overflow(value):
    x = np.full((1000, 3), value)
    assert frobenius_norm(x) == pytest.approx(value * math.sqrt(3000), rel=1e-14)
    scale, ssq = scaled_sum_of_squares(x)
    assert scale == power_of_two_scale(value) and ssq == pytest.approx(3000 / (value / scale) ** -2)


def test_frobenius_norm_float32_accumulates_in_float64(rng):
    x = rng.standard_normal(3_000_000).astype(np.float32)  # spans several chunks
    # 3e6 squares summed chunk-wise vs NumPy's pairwise sum: each is off by ~1e-14.
    assert frobenius_norm(x) == pytest.approx(np.linalg.norm(x.astype(np.float64)), rel=1e-13)
    z = (rng.standard_normal(10) + 1j * rng.standard_normal(10)).astype(np.complex64)
    assert frobenius_norm(z) == pytest.approx(np.linalg.norm(z.astype(np.complex128)), rel=1e-14)
    assert frobenius_norm(np.zeros((0, 3))) == 0.0


def test_power_of_two_scale():
    assert power_of_two_scale(0.0) == 1.0 and power_of_two_scale(math.inf) == 1.0
    assert power_of_two_scale(5.0) == 4.0 and power_of_two_scale(0.3) == 0.25


def test_compute_dtype_rules():
    assert compute_dtype(np.float16) == np.float32
    assert compute_dtype(ml_dtypes.bfloat16) == np.float32
    assert compute_dtype(ml_dtypes.float8_e4m3fn) == np.float32
    assert compute_dtype(np.int16) == np.float64
    assert compute_dtype(np.complex64) == np.complex64


def test_small_validators():
    assert check_int(np.int64(3), name="x", minimum=0) == 3
    with pytest.raises(InputError, match=r"x must satisfy 0 <= x <= 5; got 7"):
        check_int(7, name="x", minimum=0, maximum=5)
    with pytest.raises(InputError, match=r"x must be <= 5; got 7"):
        check_int(7, name="x", maximum=5)
    with pytest.raises(InputError, match=r"x must lie in \(0, 1\); got 1"):
        check_fraction(1, name="x", high_inclusive=False)
    with pytest.raises(InputError, match=r"x must be finite and > 0; got nan"):
        check_positive_float(float("nan"), name="x")
    with pytest.raises(InputError, match=r"x must be a real number; got 'a'"):
        check_positive_float("a", name="x")
    with pytest.raises(ShapeError, match=r"v must be 1-D; got ndim=2"):
        as_vector(np.ones((2, 2)), name="v")
    with pytest.raises(ShapeError, match=r"v must not be empty"):
        as_vector([], name="v", allow_empty=False)


def test_normalize_rng_is_deterministic():
    a = normalize_rng(7).standard_normal(3)
    b = normalize_rng(np.random.default_rng(7)).standard_normal(3)
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(1)
    assert normalize_rng(g) is g
