"""Regression tests for the second audit of lowrank.testing (half-precision tolerances).

Each test failed before its fix; the references are independent of the code under test:
float64 LAPACK (``np.linalg.svd``) and closed forms (``diag(3, 2, 1)``, one rounding of a
value to bfloat16 moving it by at most ``2**-8`` of itself).

1. bfloat16 (NumPy kind 'V') is a real dtype wherever floats are accepted.
2. A stored singular value is checked against the rounding of *its own* dtype, relative to
   itself: a value 1 % wrong fails with bf16 U, V and float32 S; correct results pass.
3. Loading one Hypothesis profile does not change the others.
4. ``matrices_with_spectrum`` refuses spectra that underflow the dtype; ``spectrum_tolerance``
   covers entries rounded in the subnormal range.
5. ``lora_factors(dtype="bfloat16")`` works without importing ml_dtypes first.
6. ``spectra(n)`` documents that it draws rank 0 (all zeros).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from lowrank import InputError, truncated_svd
from lowrank.testing import (
    assert_near_optimal,
    assert_singular_values_close,
    assert_valid_svd,
    load_profile,
    matrix_with_spectrum,
)
from lowrank.testing import strategies as lst

ml_dtypes = pytest.importorskip("ml_dtypes")

BF16, F16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)
HALF = [F16, BF16]
HALF_IDS = [d.name for d in HALF]
QUIET = settings(database=None)


def lapack(A: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float32 LAPACK SVD of the stored A (what the library computes half input in)."""
    U, S, Vh = np.linalg.svd(A.astype(np.float32), full_matrices=False)
    return U[:, :rank], S[:rank], Vh[:rank]


def values64(A: np.ndarray) -> np.ndarray:
    """Singular values of the stored A by float64 (complex128) LAPACK."""
    wide = np.complex128 if A.dtype.kind == "c" else np.float64
    return np.linalg.svd(A.astype(wide), compute_uv=False)


# --------------------------------------------------------------------------- 1. bf16 is real


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_exact_svd_of_a_diagonal_stored_in_half_passes(dtype):
    """diag(3, 2, 1): the exact rank-2 SVD is e_1, e_2 with values 3, 2, all exact in
    bfloat16 and float16. bfloat16 was refused as 'S must be real'."""
    A = np.diag([3.0, 2.0, 1.0]).astype(dtype)
    U, S, Vh = np.eye(3)[:, :2], np.array([3.0, 2.0]), np.eye(3)[:2]
    result = (U.astype(dtype), S.astype(dtype), Vh.astype(dtype))
    assert_valid_svd(result, A, rank=2, sign_convention=True)
    assert_near_optimal(A, result, rank=2)
    assert_near_optimal(A, (result[0] * S.astype(dtype), result[2]), rank=2)
    assert_near_optimal(A, A, rank=3, singular_values=np.array([3.0, 2.0, 1.0], dtype=dtype))


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_half_nan_is_found(dtype):
    """NaN in a bfloat16 array was not looked for (kind 'V' is neither 'f' nor 'c')."""
    A = np.diag([3.0, 2.0, 1.0]).astype(dtype)
    S = np.array([3.0, np.nan], dtype=dtype)
    with pytest.raises(AssertionError, match="S has 1 NaN or infinite"):
        assert_valid_svd((np.eye(3)[:, :2], S, np.eye(3)[:2]), A, rank=2)
    bad = A.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="A must be finite"):
        assert_valid_svd((np.eye(3)[:, :2], S, np.eye(3)[:2]), bad, rank=2)


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_half_sign_flip_still_fails(dtype):
    A = np.diag([3.0, 2.0, 1.0]).astype(dtype)
    U = np.eye(3)[:, :2].copy()
    U[:, 1] *= -1
    with pytest.raises(AssertionError, match="flipped sign"):
        assert_valid_svd(
            (U.astype(dtype), np.array([3.0, 2.0], dtype=dtype), np.eye(3)[:2].astype(dtype)),
            A,
            rank=2,
        )


# --------------------------------------------------------------------------- 2. values


def _audit_matrix(dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
    return matrix_with_spectrum(np.geomspace(1, 1e-2, min(shape)), shape, dtype=dtype, rng=1).A


@pytest.mark.parametrize("shape", [(50, 40), (40, 40), (12, 12)])
@pytest.mark.parametrize("s_dtype", [np.dtype(np.float32), BF16, F16], ids=["S32", "Sbf16", "Sf16"])
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("j", [0, 2, 4])
def test_a_value_one_percent_wrong_fails(dtype, s_dtype, shape, j):
    """U and Vh stored in a half type, S in float32, bfloat16 or float16: S[j] 1 % high must
    fail. The allowed error is the float32 computation (about 1e-5 sigma_1) plus one rounding
    of S_j to its own dtype, at most 2**-8 S_j (bf16) or 2**-11 S_j (f16); the wrong value,
    itself rounded, is still at least 1 % - 2**-8 (1.01) ~ 0.6 % off. It passed at 1 %,
    1.1 % (S[0]) and 1.5 % (S[4]) with bf16 U, V: the tolerance was 3 u_bf16 sigma_1."""
    A = _audit_matrix(dtype, shape)
    U, S, Vh = lapack(A, 5)
    wrong = S.astype(np.float64)
    wrong[j] *= 1.01
    result = (U.astype(dtype), wrong.astype(s_dtype), Vh.astype(dtype))
    with pytest.raises(AssertionError, match=f"singular value {j} is"):
        assert_valid_svd(result, A, rank=5)
    with pytest.raises(AssertionError, match=f"singular value {j} is"):
        assert_valid_svd(result, A, rank=5, check_vectors=False)
    reference = values64(A)[:5]  # float64 LAPACK on the stored matrix
    with pytest.raises(AssertionError, match=f"singular value {j} is"):
        assert_singular_values_close(result[1], reference, dtype=dtype, size=max(shape))
    # The correct result, stored the same way, passes.
    good = (U.astype(dtype), S.astype(s_dtype), Vh.astype(dtype))
    assert_valid_svd(good, A, rank=5)
    assert_singular_values_close(good[1], reference, dtype=dtype, size=max(shape))


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_value_tolerance_is_the_rounding_of_s_relative_to_each_value(dtype):
    """A float32 value off by 3 u_s S_j fails (no rounding explains it: S is float32, and
    even a half-precision S_j would move by at most u_s S_j); it passed before, below the
    old 3 u_s sigma_1 = 4.8 u_s S_4. The exact values rounded once to the half type pass:
    that is the rounding the tolerance allows, relative to each value."""
    u = 2.0**-8 if dtype == BF16 else 2.0**-11
    A = _audit_matrix(dtype, (50, 40))
    reference = values64(A)[:5]
    j = 4  # S_4 = 0.62 sigma_1: the old tolerance was 3 u sigma_1 = 4.8 u S_4
    off = reference.copy()
    off[j] *= 1.0 + 3.0 * u  # 3 u S_j: above one rounding of S_j, below 3 u sigma_1
    with pytest.raises(AssertionError, match=f"singular value {j} is"):
        assert_singular_values_close(off.astype(np.float32), reference, dtype=dtype, size=50)
    # Rounding the exact values to the half type is within the tolerance.
    assert_singular_values_close(reference.astype(dtype), reference, dtype=dtype, size=50)


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 120),
    n=st.integers(1, 120),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_library_results_on_half_input_pass(dtype, m, n, data, seed):
    """truncated_svd on float16/bfloat16 input returns float32; as returned and stored back
    to the input dtype (all three arrays, or S kept in float32) it passes."""
    q = min(m, n)
    sigma = data.draw(lst.spectra(q, max_condition=1e6), label="sigma")
    A = matrix_with_spectrum(sigma, (m, n), rng=seed).A.astype(dtype)
    rank = data.draw(st.integers(1, q), label="rank")
    for method in ("exact", "randomized"):
        res = truncated_svd(A, rank, method=method, rng=0)
        assert res.S.dtype == np.float32
        assert_valid_svd(res, A, rank=rank)
        for s_dtype in (dtype, np.float32):
            stored = (res.U.astype(dtype), res.S.astype(s_dtype), res.Vh.astype(dtype))
            assert_valid_svd(stored, A, rank=rank)
            assert_singular_values_close(stored[1], values64(A)[:rank], dtype=dtype, size=max(m, n))


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("shape", [(300, 200), (200, 200), (1, 9)])
def test_library_results_on_larger_half_input_pass(dtype, shape):
    for kappa in (1.0, 1e3, 1e8):
        s = np.geomspace(1, 1 / kappa, min(shape))
        A = matrix_with_spectrum(s, shape, dtype=dtype, rng=5).A
        r = min(4, min(shape))
        res = truncated_svd(A, r)
        assert_valid_svd(res, A, rank=r)
        assert_valid_svd(
            (res.U.astype(dtype), res.S.astype(dtype), res.Vh.astype(dtype)), A, rank=r
        )


# --------------------------------------------------------------------------- 3. profiles


def test_loading_a_profile_does_not_change_the_others():
    """After ci (derandomized, no database), thorough and dev are random and keep their
    database: each profile has Hypothesis' default settings as parent."""
    code = (
        "from hypothesis import settings\n"
        "from lowrank.testing import load_profile\n"
        "load_profile(name='ci')\n"
        "for name in ('thorough', 'dev'):\n"
        "    load_profile(name=name)\n"
        "    s = settings()\n"
        "    assert not s.derandomize and s.database is not None and not s.print_blob, name\n"
        "load_profile(name='ci')\n"
        "assert settings().derandomize and settings().database is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_profile_in_process_is_order_independent():
    before = settings.get_current_profile_name()
    try:
        load_profile(name="ci")
        load_profile(name="dev")
        assert not settings().derandomize and settings().database is not None
    finally:
        settings.load_profile(before)


# --------------------------------------------------------------------------- 4. underflow


@pytest.mark.parametrize(
    ("dtype", "spectrum"),
    [(np.float32, [1e-50]), (np.float32, [1e-40, 1e-41]), (np.float64, [1e-320])],
)
def test_spectrum_below_the_normal_range_is_refused(dtype, spectrum):
    """float32 [1e-50] gave A = 0 with S = [1e-50, 0] and rank 1."""
    strategy = lst.matrices_with_spectrum(shape=(3, 2), dtype=dtype, spectrum=spectrum)
    with pytest.raises(InvalidArgument, match="underflow"):
        find(strategy, lambda c: True, settings=QUIET)


def test_smallest_normal_spectrum_is_accepted():
    tiny = float(np.finfo(np.float32).tiny)
    case = find(
        lst.matrices_with_spectrum(shape=(8, 8), dtype=np.float32, spectrum=[tiny] * 8),
        lambda c: True,
        settings=QUIET,
    )
    err = np.max(np.abs(values64(case.A) - case.S))
    assert err <= case.spectrum_tolerance


@pytest.mark.parametrize(
    ("dtype", "value", "shape"),
    [
        (np.float32, 1e-42, (8, 8)),
        (np.float32, 1e-50, (3, 2)),
        (np.complex64, 1e-42, (5, 4)),
        (np.float64, 1e-320, (6, 6)),
        ("float16", 1e-7, (5, 4)),
        ("bfloat16", 1e-39, (5, 4)),
    ],
)
def test_spectrum_tolerance_covers_subnormal_entries(dtype, value, shape):
    """8x8 float32 with every value 1e-42: values 5.3e-46 off, spectrum_tolerance was
    5.4e-48. It now adds sqrt(mn) eta / 2 for the entries rounded below the normal range."""
    for seed in range(5):
        case = matrix_with_spectrum([value] * min(shape), shape, dtype=dtype, rng=seed)
        err = np.max(np.abs(values64(case.A) - case.S))
        assert err <= case.spectrum_tolerance


# --------------------------------------------------------------------------- 5. dtype names


def test_lora_factors_resolves_bfloat16_by_name_without_importing_ml_dtypes():
    code = (
        "import sys\n"
        "from hypothesis import find, settings\n"
        "from lowrank.testing import strategies as lst\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        "f = find(lst.lora_factors(dtype='bfloat16'), lambda f: True,\n"
        "         settings=settings(database=None))\n"
        "assert f.W.dtype.name == 'bfloat16', f.W.dtype\n"
        "f = find(lst.lora_factors(dtype=lst.st.just('bfloat16')), lambda f: True,\n"
        "         settings=settings(database=None))\n"
        "assert f.A.dtype.name == 'bfloat16'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_dtype_names_are_still_refused():
    with pytest.raises(InvalidArgument, match="dtype must be a NumPy dtype; got 'nope'"):
        lst.lora_factors(dtype="nope")
    with pytest.raises(InvalidArgument, match="dtype must be a NumPy dtype; got 'nope'"):
        lst.matrices_with_spectrum(dtype="nope")


# --------------------------------------------------------------------------- 6. rank 0


def test_spectra_draws_rank_zero_and_says_so():
    """The strategy is kept (the zero matrix is an edge case worth drawing); the docstring
    now says so instead of promising sigma_1 = scale > 0."""
    zeros = find(lst.spectra(3), lambda s: s[0] == 0, settings=QUIET)
    np.testing.assert_array_equal(zeros, np.zeros(3))
    doc = lst.spectra.__doc__ or ""
    assert "rank 0" in doc and "all zeros" in doc
    assert "rank=st.integers(1, size)" in doc
    nonzero = find(lst.spectra(3, rank=st.integers(1, 3)), lambda s: True, settings=QUIET)
    assert nonzero[0] == 1.0
