"""Rank–error curves and rank selection against direct residual norms (float64 LAPACK)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank import InputError, RankError, rank_error_curve, select_rank, truncated_svd


def direct_errors(A, norm):
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    out = []
    for r in range(s.size + 1):
        R = A - (U[:, :r] * s[:r]) @ Vh[:r]
        out.append(
            {
                "fro": np.linalg.norm(R),
                "spectral": np.linalg.norm(R, 2),
                "nuclear": np.linalg.norm(R, "nuc"),
            }[norm]
            if r < s.size
            else 0.0
        )
    return np.array(out), s


@pytest.mark.parametrize("norm", ["fro", "spectral", "nuclear"])
def test_curve_matches_direct_residuals(norm, rng):
    A = rng.standard_normal((25, 18))
    expected, s = direct_errors(A, norm)
    curve = rank_error_curve(s, norm=norm)
    np.testing.assert_array_equal(curve.ranks, np.arange(19))
    np.testing.assert_allclose(curve.absolute, expected, rtol=1e-12, atol=1e-12 * s[0])
    np.testing.assert_allclose(curve.relative, expected / expected[0], rtol=1e-12, atol=1e-13)
    assert curve.complete and curve.absolute[-1] == 0.0


def test_fro_energy(rng):
    s = np.sort(rng.random(30))[::-1]
    curve = rank_error_curve(s)
    assert curve.energy is not None
    np.testing.assert_allclose(
        curve.energy, np.concatenate([[0], np.cumsum(s**2)]) / np.sum(s**2), rtol=1e-13, atol=1e-15
    )
    np.testing.assert_allclose(curve.relative**2 + curve.energy, 1.0, atol=1e-14)


def test_schatten_and_ky_fan_curves(rng):
    s = np.sort(rng.random(12))[::-1]
    sch = rank_error_curve(s, norm="schatten", p=3.0)
    np.testing.assert_allclose(
        sch.absolute[:-1], [np.sum(s[r:] ** 3) ** (1 / 3) for r in range(12)], rtol=1e-13
    )
    kf = rank_error_curve(s, norm="ky_fan", k=2)
    np.testing.assert_allclose(
        kf.absolute, [np.sum(s[r : r + 2]) for r in range(13)], rtol=1e-13, atol=1e-15
    )


def test_zero_matrix_curve():
    curve = rank_error_curve(np.zeros(4))
    np.testing.assert_array_equal(curve.absolute, 0.0)
    np.testing.assert_array_equal(curve.relative, 0.0)
    assert select_rank(np.zeros(4), energy=0.9) == 0
    assert select_rank(np.zeros(4), rel_tol=0.0) == 0


def test_partial_spectrum_fro_curve_is_exact(rng):
    """Top-k values plus ||A||_F give the exact Frobenius curve up to rank k."""
    A = rng.standard_normal((200, 150)) / 15
    full = rank_error_curve(np.linalg.svd(A, compute_uv=False))
    res = truncated_svd(A, 20, method="exact")
    part = rank_error_curve(res.S, norm_fro=res.norm_fro)
    assert not part.complete and part.ranks[-1] == 20
    np.testing.assert_allclose(part.absolute, full.absolute[:21], rtol=1e-12)
    assert part.energy is not None and full.energy is not None
    np.testing.assert_allclose(part.energy, full.energy[:21], rtol=1e-12, atol=1e-15)
    assert np.max(np.abs(part.absolute - full.absolute[:21])) <= part.max_abs_error
    spec = rank_error_curve(res.S, norm="spectral", norm_fro=res.norm_fro)
    np.testing.assert_allclose(spec.absolute, full_spectral(A)[:20])


def full_spectral(A):
    return np.linalg.svd(A, compute_uv=False)


def test_energy_against_truncated_spectrum_is_wrong_and_we_do_not_do_it(rng):
    """kohya/PEFT-style energy over only the computed values over-states what is captured."""
    A = rng.standard_normal((300, 300)) / np.sqrt(300)  # flat spectrum
    res = truncated_svd(A, 32, method="exact")
    naive = np.cumsum(res.S**2) / np.sum(res.S**2)  # normalised by the top 32 only
    ours = rank_error_curve(res.S, norm_fro=res.norm_fro)
    assert ours.energy is not None
    assert naive[-1] == pytest.approx(1.0) and ours.energy[-1] < 0.4
    with pytest.raises(RankError, match=r"not reached with the 32 known singular values"):
        select_rank(res.S, energy=0.9, norm_fro=res.norm_fro)


def test_select_rank_matches_brute_force(rng):
    s = np.sort(rng.random(40) ** 3)[::-1]
    rel = np.sqrt(np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]]) / np.sum(s**2))
    for tol in (1.0, 0.9, 0.5, 0.1, 0.01, 0.0):
        assert select_rank(s, rel_tol=tol) == int(np.flatnonzero(rel <= tol)[0])
    for energy in (0.0, 0.5, 0.9, 0.99, 1.0):
        brute = int(np.flatnonzero(1 - rel**2 >= energy - 1e-15)[0])
        assert select_rank(s, energy=energy) == brute
    spectral = np.concatenate([s, [0.0]]) / s[0]
    assert select_rank(s, rel_tol=0.3, norm="spectral") == int(np.flatnonzero(spectral <= 0.3)[0])


def test_energy_one_is_the_rank(rng):
    s = np.array([3.0, 2.0, 1.0, 0.0, 0.0])
    assert select_rank(s, energy=1.0) == 3


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_curve_extreme_scale(scale):
    s = np.array([3.0, 2.0, 1.0]) * scale
    curve = rank_error_curve(s)
    assert np.all(np.isfinite(curve.absolute))
    np.testing.assert_allclose(
        curve.absolute / scale, [math.sqrt(14), math.sqrt(5), 1.0, 0.0], rtol=1e-14
    )
    part = rank_error_curve(s[:1], norm_fro=math.sqrt(14) * scale)
    np.testing.assert_allclose(part.absolute / scale, [math.sqrt(14), math.sqrt(5)], rtol=1e-14)


def test_curve_and_select_errors():
    with pytest.raises(InputError, match=r"norm_fro = 1.0 is smaller than the norm of the given"):
        rank_error_curve([3.0, 2.0], norm_fro=1.0)
    with pytest.raises(InputError, match=r"norm='nuclear' needs the whole spectrum"):
        rank_error_curve([3.0], norm="nuclear", norm_fro=5.0)
    with pytest.raises(InputError, match=r"norm_fro must be finite and >= 0; got -1"):
        rank_error_curve([3.0], norm_fro=-1)
    with pytest.raises(InputError, match=r"norm='ky_fan' needs k"):
        rank_error_curve([3.0], norm="ky_fan")
    with pytest.raises(InputError, match=r"norm='schatten' needs the exponent p"):
        rank_error_curve([3.0], norm="schatten")
    with pytest.raises(InputError, match=r"norm must be one of"):
        rank_error_curve([3.0], norm="inf")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"give exactly one of rel_tol and energy"):
        select_rank([1.0])
    with pytest.raises(InputError, match=r"give exactly one of rel_tol and energy"):
        select_rank([1.0], rel_tol=0.1, energy=0.9)
    with pytest.raises(InputError, match=r"energy must lie in \[0, 1\]; got 1.5"):
        select_rank([1.0], energy=1.5)
    with pytest.raises(InputError, match=r"rel_tol must lie in \[0, 1\]; got -0.1"):
        select_rank([1.0], rel_tol=-0.1)
    with pytest.raises(InputError, match=r"energy must be a real number; got 'a'"):
        select_rank([1.0], energy="a")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"singular_values must contain only finite values"):
        rank_error_curve([np.nan])


@given(
    s=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=30),
    norm=st.sampled_from(["fro", "spectral", "nuclear"]),
)
def test_property_curves_non_increasing_and_end_at_zero(s, norm):
    curve = rank_error_curve(s, norm=norm)
    assert np.all(np.diff(curve.absolute) <= 1e-12 * max(curve.absolute[0], 1e-300))
    assert curve.absolute[-1] == 0.0
    assert np.all(curve.relative <= 1.0 + 1e-12) and np.all(curve.relative >= 0.0)
    if norm == "fro":
        assert curve.energy is not None
        assert np.all(np.diff(curve.energy) >= -1e-12)


@given(s=st.lists(st.floats(1e-6, 1e6), min_size=1, max_size=30), energy=st.floats(0, 1))
def test_property_selected_rank_is_smallest(s, energy):
    r = select_rank(s, energy=energy)
    curve = rank_error_curve(s)
    assert curve.energy is not None
    slack = 1e-12
    assert curve.energy[r] >= energy - slack
    if r > 0:
        assert curve.energy[r - 1] < energy + slack


def test_select_rank_in_the_ky_fan_norm():
    # The Ky Fan 2-norm error of the best rank-r approximation of diag(4, 3, 0.1) is the sum
    # of the two largest remaining values: 3.1 at r = 1, 0.1 at r = 2 (relative to 7).
    s = [4.0, 3.0, 0.1]
    assert select_rank(s, rel_tol=0.5, norm="ky_fan", k=2) == 1
    assert select_rank(s, rel_tol=0.1, norm="ky_fan", k=2) == 2
    with pytest.raises(InputError, match=r"norm='ky_fan' needs k"):
        select_rank(s, rel_tol=0.5, norm="ky_fan")


# Reference for the tail sums: decimal arithmetic with 60 digits and an exponent range far
# beyond float64's, so that no term underflows or overflows and rounding is negligible.
def _decimal_tails(values, p):
    from decimal import Context, Decimal

    ctx = Context(prec=60, Emax=10**6, Emin=-(10**6))
    exponent = Decimal(repr(float(p)))
    terms = [ctx.power(Decimal(repr(float(v))), exponent) for v in values]
    out = []
    for k in range(len(values) + 1):
        total = sum(terms[k:], Decimal(0))
        out.append(float(ctx.power(total, 1 / exponent)) if total else 0.0)
    return np.array(out)


spread_values = st.lists(
    st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=12,
)


@given(values=spread_values, p=st.sampled_from([1.0, 1.5, 2.0, 3.0, 7.0, 20.0, 200.0, 1000.0]))
def test_schatten_tails_are_accurate_at_any_spread_and_p(values, p):
    """Each tail to a few epsilons of itself, however far below sigma_1 it is: the terms and
    their sum round once each per term (n + 2 roundings of eps), and NumPy's vectorised
    power rounds x**p and y**(1/p) to a few ulps each (17 ulps together measured for
    [1.46e29, 1], p = 1.5: 64 eps allowed for them).
    Before, every term was scaled by sigma_1: [1, 1e-3] with p = 200 gave a tail of 0 at
    rank 1 (and select_rank(rel_tol=1e-4) returned 1 instead of 2)."""
    s = np.sort(np.array(values))[::-1]
    expected = _decimal_tails(s, p)
    curve = rank_error_curve(s, norm="schatten", p=p)
    eps = np.finfo(np.float64).eps
    rtol = (4 * (s.size + 2) + 64) * eps
    np.testing.assert_allclose(curve.absolute, expected, rtol=rtol, atol=0)


@given(values=spread_values)
def test_frobenius_curve_keeps_tails_far_below_sigma_1(values):
    s = np.sort(np.array(values))[::-1]
    expected = _decimal_tails(s, 2.0)
    curve = rank_error_curve(s)
    eps = np.finfo(np.float64).eps
    rtol = (4 * (s.size + 2) + 64) * eps  # as in the Schatten test
    np.testing.assert_allclose(curve.absolute, expected, rtol=rtol, atol=0)


def test_select_rank_sees_a_tail_far_below_sigma_1_for_large_p():
    assert select_rank([1.0, 1e-3], rel_tol=1e-4, norm="schatten", p=200.0) == 2
    assert select_rank([1.0, 1e-3], rel_tol=1e-2, norm="schatten", p=200.0) == 1


@given(
    values=st.lists(
        st.floats(min_value=0.0, max_value=1e30, allow_nan=False), min_size=1, max_size=30
    ),
    k=st.integers(1, 8),
)
def test_ky_fan_tails_are_sums_without_cancellation(values, k):
    """Each window sum to k + 1 roundings of itself (additions of non-negative terms only).
    Before, differences of cumulative sums cancelled: [1e20, 1, 1] with k = 1 gave 0 at
    rank 1."""
    import math as _math

    s = np.sort(np.array(values))[::-1]
    expected = np.array([_math.fsum(s[r : r + k]) for r in range(s.size + 1)])
    curve = rank_error_curve(s, norm="ky_fan", k=k)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(curve.absolute, expected, rtol=(k + 1) * eps, atol=0)
    assert rank_error_curve([1e20, 1.0, 1.0], norm="ky_fan", k=1).absolute[1] == 1.0


def test_a_partial_spectral_curve_needs_sigma_1():
    """No values and a positive norm_fro: ||A||_2 > 0 is unknown. Before, the curve was
    [0] and select_rank(rel_tol=0.5) returned rank 0."""
    with pytest.raises(InputError, match="needs at least the largest singular value"):
        rank_error_curve([], norm="spectral", norm_fro=1.0)
    with pytest.raises(InputError, match="needs at least the largest singular value"):
        select_rank([], rel_tol=0.5, norm="spectral", norm_fro=1.0)
    assert rank_error_curve([], norm="spectral", norm_fro=0.0).absolute.tolist() == [0.0]
    assert rank_error_curve([], norm_fro=1.0).absolute.tolist() == [1.0]
