"""Effective ranks and norms against closed forms and NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank import (
    InputError,
    ShapeError,
    condition_number,
    entropy_effective_rank,
    nuclear_norm,
    numerical_rank,
    spectral_norm,
    spectrum_summary,
    stable_rank,
)
from lowrank.errors import DTypeError
from lowrank.metrics import storage_noise_level

ml_dtypes = pytest.importorskip("ml_dtypes")


def test_closed_forms():
    assert stable_rank([3.0, 4.0]) == pytest.approx(25 / 16)
    assert stable_rank([0.0, 0.0]) == 0.0
    assert entropy_effective_rank([2.0, 2.0, 2.0]) == pytest.approx(3.0, rel=1e-14)
    assert entropy_effective_rank([5.0, 0.0]) == 1.0
    assert entropy_effective_rank([0.0]) == 0.0
    # p = (3/4, 1/4): exp(-(3/4 ln 3/4 + 1/4 ln 1/4))
    assert entropy_effective_rank([3.0, 1.0]) == pytest.approx(
        math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), rel=1e-14
    )
    assert condition_number([4.0, 0.5]) == 8.0
    assert condition_number([4.0, 0.0]) == math.inf


def test_condition_number_beyond_the_input_dtype_range():
    # The ratio is a float64 whatever the input: a float32 spectrum's 1e60 is kept (exactly
    # the ratio of the two float32 values), and a ratio beyond float64 is inf, with no
    # NumPy overflow warning (the suite turns warnings into errors).
    s32 = np.array([1e30, 1e-30], np.float32)
    assert condition_number(s32) == float(s32[0]) / float(s32[1])
    assert condition_number([1e300, 1e-300]) == math.inf
    assert spectral_norm([]) == 0.0 and nuclear_norm([1.0, 2.0]) == 3.0


def test_against_numpy(rng):
    A = rng.standard_normal((40, 25))
    s = np.linalg.svd(A, compute_uv=False)
    assert spectral_norm(s) == pytest.approx(np.linalg.norm(A, 2), rel=1e-14)
    assert nuclear_norm(s) == pytest.approx(np.linalg.norm(A, "nuc"), rel=1e-14)
    assert stable_rank(s) == pytest.approx(
        np.linalg.norm(A) ** 2 / np.linalg.norm(A, 2) ** 2, rel=1e-13
    )
    assert condition_number(s) == pytest.approx(np.linalg.cond(A), rel=1e-12)
    L = rng.standard_normal((40, 7)) @ rng.standard_normal((7, 25))
    sl = np.linalg.svd(L, compute_uv=False)
    assert numerical_rank(sl, shape=L.shape) == np.linalg.matrix_rank(L) == 7


def test_numerical_rank_float32_uses_float32_eps(rng):
    L = (rng.standard_normal((50, 5)) @ rng.standard_normal((5, 40))).astype(np.float32)
    s = np.linalg.svd(L.astype(np.float64), compute_uv=False)
    assert numerical_rank(s, shape=L.shape, dtype=np.float32) == np.linalg.matrix_rank(L) == 5


def test_dtype_aware_rank_for_bfloat16(rng):
    """A rank-8 matrix stored in bfloat16 looks full-rank to NumPy's rule; the storage rule
    sees the rank-8 signal above bfloat16's rounding noise and nothing below it."""
    A = rng.standard_normal((200, 8)) @ rng.standard_normal((8, 150))
    stored = A.astype(ml_dtypes.bfloat16)
    s = np.linalg.svd(stored.astype(np.float64), compute_uv=False)
    assert numerical_rank(s, shape=A.shape, dtype=np.float32) == 150
    assert numerical_rank(s, shape=A.shape, dtype=np.float32, storage_dtype=stored.dtype) == 8
    assert numerical_rank(s, shape=A.shape, storage_dtype="bfloat16") == 8
    # The noise level predicts the actual rounding noise's spectral norm within a factor 2.
    noise = np.linalg.norm(stored.astype(np.float64) - A, 2)
    level = storage_noise_level(
        shape=A.shape, norm_fro=float(np.linalg.norm(A)), storage_dtype="bfloat16"
    )
    assert 0.5 * level <= noise <= 2.0 * level


def test_explicit_tol():
    assert numerical_rank([3.0, 2.0, 1.0], shape=(3, 3), tol=1.5) == 2
    assert numerical_rank([], shape=(0, 3)) == 0


def test_spectrum_summary(rng):
    A = (rng.standard_normal((60, 8)) @ rng.standard_normal((8, 40))).astype(ml_dtypes.bfloat16)
    summary, s = spectrum_summary(A)
    ref = np.linalg.svd(A.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, ref, rtol=1e-6, atol=1e-12 * ref[0])
    assert summary.dtype == "bfloat16" and summary.shape == (60, 40)
    assert summary.norm_fro == pytest.approx(np.linalg.norm(A.astype(np.float64)), rel=1e-12)
    assert summary.numerical_rank == 40 and summary.numerical_rank_storage == 8
    assert summary.stable_rank == pytest.approx(stable_rank(ref), rel=1e-6)


def test_metric_errors():
    with pytest.raises(InputError, match=r"singular_values must hold at least one value"):
        condition_number([])
    with pytest.raises(InputError, match=r"singular_values must be non-negative"):
        stable_rank([1.0, -2.0])
    with pytest.raises(ShapeError, match=r"shape must be a tuple of 2 integers >= 0"):
        numerical_rank([1.0], shape=(3,))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"tol must be finite and >= 0; got -1"):
        numerical_rank([1.0], shape=(1, 1), tol=-1.0)
    with pytest.raises(DTypeError, match=r"dtype must have a numeric dtype"):
        numerical_rank([1.0], shape=(1, 1), dtype=bool)


@given(s=st.lists(st.floats(0, 1e3), min_size=1, max_size=40))
def test_property_effective_ranks_bounded_by_rank(s):
    rank = sum(1 for x in s if x > 0)
    er = entropy_effective_rank(s)
    sr = stable_rank(s)
    if rank == 0:
        assert er == 0.0 and sr == 0.0
    else:
        assert 1.0 - 1e-12 <= er <= rank * (1 + 1e-12)
        assert 1.0 - 1e-12 <= sr <= rank * (1 + 1e-12)


@given(
    values=st.lists(st.floats(min_value=1e-3, max_value=1.0), min_size=1, max_size=20),
    exponent=st.integers(-1000, 1020),
)
def test_entropy_effective_rank_does_not_depend_on_the_scale(values, exponent):
    """The effective rank of c * s is that of s for any c that keeps the values finite;
    the sum of [1e308, 1e308] overflowed and gave 1 instead of 2. Reference: the same
    spectrum at scale 1 (scaling by a power of two is exact unless values go subnormal,
    whose relative rounding is below 1e-3 * 2**-1000 / 2**-1074 here)."""
    s = np.sort(np.array(values))[::-1]
    scaled = np.ldexp(s, exponent)
    expected = entropy_effective_rank(s)
    assert entropy_effective_rank(scaled) == pytest.approx(expected, rel=1e-9)
    assert entropy_effective_rank([1e308, 1e308]) == pytest.approx(2.0, rel=1e-15)
