"""Round 5 of the audit of ``lowrank.rmt`` and ``lowrank.metrics`` (/tmp/audit/rmt5, D1-D9
but D5), one group of tests per defect.

References: closed forms (diagonal matrices, multiples of orthogonal matrices, equally
spaced log-eigenvalues), NumPy's ``matrix_rank`` and float64 LAPACK on the same data,
WeightWatcher 0.7.7's small-sample rule re-derived from its definition (the comparison
with WeightWatcher itself is in ``tests/test_interop_weightwatcher.py``) and 60-digit
``decimal`` arithmetic. Each test states its tolerance.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal, localcontext

import ml_dtypes
import numpy as np
import pytest
from _spectra import haar, with_spectrum

from lowrank.errors import ShapeError
from lowrank.metrics import (
    entropy_effective_rank,
    nuclear_norm,
    numerical_rank,
    spectrum_summary,
    storage_noise_level,
)
from lowrank.rmt import (
    marchenko_pastur_edge,
    marchenko_pastur_median,
    power_law_fit,
    random_matrix_summary,
)

EPS64 = float(np.finfo(np.float64).eps)


def _no_warning(call):
    """``call()`` with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


# --- D1. numerical_rank: sigma_1 * max(m, n) overflowed, every value fell below it -----------


@pytest.mark.parametrize(
    ("values", "shape"),
    [([1e308, 1e308], (2, 2)), ([1e306] * 3, (3, 1000)), ([1.7e308, 1e308, 5e307], (3, 3))],
)
@pytest.mark.parametrize("storage_dtype", [None, "bfloat16", "float16", "float32"])
def test_d1_numerical_rank_of_huge_full_rank_spectra(values, shape, storage_dtype):
    # Closed form: diagonal matrices with these non-zero entries have full rank, and their
    # values lie above both thresholds (NumPy's sigma_1 max(m, n) eps <= 2.3e-13 sigma_1,
    # the storage one <= 0.1 sigma_1 here). Exact integer comparison.
    rank = _no_warning(lambda: numerical_rank(values, shape=shape, storage_dtype=storage_dtype))
    assert rank == len(values)


def test_d1_numerical_rank_agrees_with_numpy_matrix_rank_at_the_top_of_the_range():
    A = np.diag([1e308, 1e308])
    assert numerical_rank(np.linalg.svd(A, compute_uv=False), shape=A.shape) == 2
    assert np.linalg.matrix_rank(A) == 2  # the rule the docstring cites


def test_d1_numerical_rank_is_invariant_under_powers_of_two():
    # Multiplying by 2**k is exact, so the counts must be identical (exact comparison):
    # across float64's range with NumPy's rule, and within bfloat16's normal range (its
    # subnormal spacing, a fixed 2**-133, is not scaled) with the storage rule.
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = np.sort(10.0 ** rng.uniform(-20, 0, 12))[::-1]
        for storage, powers in ((None, (-1000, -300, 300, 1000)), ("bfloat16", (-60, 60))):
            ref = numerical_rank(s, shape=(12, 40), storage_dtype=storage)
            for k in powers:
                scaled = np.ldexp(s, k)
                assert scaled[-1] > 0.0 and np.isfinite(scaled[0])
                got = numerical_rank(scaled, shape=(12, 40), storage_dtype=storage)
                assert got == ref, (storage, k)


def test_d1_spectrum_summary_of_diag_1e308():
    summary = _no_warning(lambda: spectrum_summary(np.diag([1e308, 1e308]))).summary
    assert summary.numerical_rank == 2
    assert summary.numerical_rank_storage == 2
    assert summary.stable_rank == 2.0
    assert summary.nuclear_norm == math.inf  # 2e308: beyond float64 (D6)


# --- D2. a multiple of an orthogonal matrix got a "power law" (alpha ~ 1e15) -------------


@pytest.mark.parametrize("shape", [(8, 8), (32, 8), (8, 32), (200, 200)])
@pytest.mark.parametrize(
    "dtype",
    [np.float64, np.complex128, np.float32, np.complex64, np.float16, ml_dtypes.bfloat16],
    ids=["float64", "complex128", "float32", "complex64", "float16", "bfloat16"],
)
def test_d2_multiple_of_an_orthogonal_matrix_has_no_power_law(shape, dtype):
    # Exact spectrum: all values 3 (before the cast to dtype, whose rounding moves them by at
    # most about its epsilon). The docstring: power_law is None for such a matrix.
    rng = np.random.default_rng(5)
    complex_ = np.dtype(dtype).kind == "c"
    Q = haar(rng, max(shape), min(shape), complex_)
    A = (3.0 * (Q if shape[0] >= shape[1] else Q.conj().T)).astype(dtype)
    result = random_matrix_summary(A, ks="weightwatcher")
    assert result.power_law is None
    # The MP edge is unaffected: all values equal -> closed form sigma = 3/sqrt(N).
    N, M = max(shape), min(shape)
    rel = 2e-2 if dtype in (np.float16, ml_dtypes.bfloat16) else 1e-6
    assert result.marchenko_pastur.sigma == pytest.approx(3.0 / math.sqrt(N), rel=rel)
    assert result.marchenko_pastur.edge == pytest.approx(3.0 * (1.0 + math.sqrt(M / N)), rel=rel)


def test_d2_a_spread_beyond_rounding_is_still_fitted():
    # Exact spectrum [3 (1 + 1e-6), 3, ..., 3]: the spread 3e-6 is 1e8 times the SVD's
    # rounding (~1e-14), so there are two distinct values and a fit on them.
    rng = np.random.default_rng(6)
    s = np.full(8, 3.0)
    s[0] *= 1.0 + 1e-6
    fit = random_matrix_summary(with_spectrum(rng, 8, 8, s)).power_law
    assert fit is not None
    assert fit.xmax == pytest.approx(s[0] ** 2, rel=1e-13)


# --- D3. ks="weightwatcher" below 20 eigenvalues: WeightWatcher's small-sample rule --------


def ww_small_n_reference(lam: np.ndarray) -> tuple[float, float, float, int]:
    """WeightWatcher 0.7.7's fit of fewer than 20 distinct eigenvalues (its
    ``WW_powerlaw.WWFit``: ``fit_powerlaw_smallN``, then the constructor's minimum of D),
    from the definitions: tails of at least 8 values, alpha = 1 + (n - 1)/sum ln(x/xmin),
    D = max_j |j/n - (1 - (x_j/xmin)^(1 - alpha))|, the first minimum of D; with no tail
    of 8 values, the whole spectrum. Returns (alpha, xmin, D, n_tail)."""
    lam = np.sort(lam)
    best = None
    for i in range(lam.size - 1):
        tail = lam[i:]
        n = tail.size
        if n < 8 and not (lam.size < 8 and i == 0):
            continue
        spread = float(np.sum(np.log(tail / tail[0])))
        alpha = 1.0 + (n - 1) / spread
        D = float(np.max(np.abs(np.arange(n) / n - (1.0 - (tail / tail[0]) ** (1.0 - alpha)))))
        if best is None or best[2] > D:
            best = (alpha, float(tail[0]), D, n)
    assert best is not None
    return best


def test_d3_eight_equally_spaced_log_eigenvalues_closed_form():
    # lambda = e^0, ..., e^7: one tail of 8 qualifies, sum ln(lambda/xmin) = 28, so
    # alpha = 1 + 7/28 = 1.25 (the plain MLE would be 1 + 8/28); D = max_j |j/8 - (1 -
    # e^(-j/4))|. Tolerance: a few roundings, 1e-14 relative.
    s = np.exp(np.arange(8) / 2.0)
    fit = power_law_fit(s, ks="weightwatcher")
    assert fit.alpha == pytest.approx(1.25, rel=1e-14)
    assert fit.n_tail == 8 and fit.xmin == pytest.approx(1.0, rel=1e-14)
    D = max(abs(j / 8 - (1.0 - math.exp(-j / 4))) for j in range(8))
    assert fit.ks_distance == pytest.approx(D, rel=1e-13)
    assert fit.alpha_stderr == pytest.approx(0.25 / math.sqrt(8), rel=1e-14)
    assert fit.over_trained and not fit.under_trained
    # "clauset" keeps the plain MLE and its own scan.
    assert power_law_fit(s, ks="clauset").alpha != pytest.approx(1.25)


@pytest.mark.parametrize("k", [2, 3, 5, 7, 8, 9, 12, 16, 19])
def test_d3_small_spectra_follow_weightwatchers_rule(k):
    # Against the re-derived rule; alpha and D to 1e-12 relative (sums of <= 19 logs).
    for seed in range(10):
        rng = np.random.default_rng(100 * k + seed)
        lam = 7.0 * (1.0 + rng.pareto(1.5, k))
        alpha, xmin, D, n_tail = ww_small_n_reference(lam)
        fit = power_law_fit(np.sqrt(lam), ks="weightwatcher")
        assert fit.n_tail == n_tail
        assert fit.xmin == pytest.approx(xmin, rel=1e-14)
        assert fit.alpha == pytest.approx(alpha, rel=1e-12)
        assert fit.ks_distance == pytest.approx(D, rel=1e-12)
        assert fit.alpha_stderr == pytest.approx((alpha - 1) / math.sqrt(n_tail), rel=1e-12)
        assert fit.under_trained == (alpha > 6.0) and fit.over_trained == (alpha < 2.0)


def test_d3_the_rule_applies_below_20_and_not_from_20():
    # 20 values: the standard scan (plain MLE over every candidate), unchanged.
    rng = np.random.default_rng(7)
    lam = 7.0 * (1.0 + rng.pareto(1.5, 20))
    fit = power_law_fit(np.sqrt(lam), ks="weightwatcher")
    data = np.sort(lam)
    best = None
    for i in range(data.size - 1):
        tail = data[i:]
        n = tail.size
        alpha = 1.0 + n / float(np.sum(np.log(tail / tail[0])))
        D = float(np.max(np.abs(np.arange(n) / n - (1.0 - (tail / tail[0]) ** (1.0 - alpha)))))
        if best is None or best[1] > D:
            best = (alpha, D, n)
    assert best is not None
    assert fit.alpha == pytest.approx(best[0], rel=1e-12) and fit.n_tail == best[2]
    # A given xmin is fitted with the plain MLE whatever ks (documented).
    fixed = power_law_fit(np.exp(np.arange(8) / 2.0), xmin=1.0, ks="weightwatcher")
    assert fixed.alpha == pytest.approx(1.0 + 8 / 28, rel=1e-14)


# --- D4. float32 input: the floor was float32's epsilon, the values are float64-accurate ---


def _decaying_float32(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    sig = 1e3 * np.arange(1, n + 1) ** -2.0 * np.exp(0.05 * rng.standard_normal(n))
    return with_spectrum(rng, n, n, np.sort(sig)[::-1], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_d4_float32_fit_uses_every_resolved_value(dtype):
    # Reference: the fit on float64 LAPACK values of the upcast matrix (what WeightWatcher
    # does). lowrank's Gram route agrees with those to ~1e-7 relative on this spectrum
    # (sigma_n/sigma_1 ~ 6e-6), so the same xmin and n_tail, alpha and D to 1e-5 relative.
    # Before: 241 of the 400 values were dropped (n_tail 148 against 352).
    W = _decaying_float32(np.random.default_rng(0), 400, dtype)
    s64 = np.linalg.svd(
        W.astype(np.complex128 if dtype == np.complex64 else np.float64), compute_uv=False
    )
    ref = power_law_fit(s64, ks="weightwatcher")
    fit = random_matrix_summary(W, ks="weightwatcher").power_law
    assert fit is not None
    assert fit.n_tail == ref.n_tail
    assert fit.xmin == pytest.approx(ref.xmin, rel=1e-5)
    assert fit.alpha == pytest.approx(ref.alpha, rel=1e-5)
    assert fit.ks_distance == pytest.approx(ref.ks_distance, rel=1e-5)


def test_d4_float16_values_above_the_gram_floor_are_kept():
    # float16 goes through the same float64 Gram route. 512 x 512, sigma_i = 10 i^-2 before
    # the cast: the stored matrix has values down to ~1e-8 sigma_1, and those above the
    # float64 Gram floor (~1e-7 sigma_1) are kept - before, those below 16 eps32 sqrt(N)
    # sigma_1 = 4.3e-5 sigma_1 were dropped (n_tail 150 against 171). Reference as above.
    rng = np.random.default_rng(3)
    sig = 10.0 * np.arange(1, 513) ** -2.0
    W = with_spectrum(rng, 512, 512, sig, dtype=np.float16)
    s64 = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    fit = random_matrix_summary(W, ks="weightwatcher").power_law
    ref = power_law_fit(s64, ks="weightwatcher")
    assert fit is not None and fit.n_tail == ref.n_tail
    assert fit.alpha == pytest.approx(ref.alpha, rel=1e-5)


def test_d4_zeros_in_disguise_are_still_dropped():
    # Rank one, exactly: float32 ones and an integer outer product. The Gram route's
    # rounding values (~1e-8 sigma_1) stay below its floor sqrt(16 eps64 sqrt N) sigma_1.
    for A in (np.ones((40, 30), np.float32), np.outer(np.arange(1, 6), np.arange(1, 5))):
        assert random_matrix_summary(A.astype(np.float32)).power_law is None


# --- D6. nuclear_norm: NumPy's overflow RuntimeWarning escaped -----------------------------


def test_d6_nuclear_norm_overflow_is_inf_without_warning():
    # 2e308 exceeds float64: inf is the documented answer, with no warning.
    assert _no_warning(lambda: nuclear_norm([1e308, 1e308])) == math.inf
    assert _no_warning(lambda: nuclear_norm(np.array([6e37, 6e37, 6e37], np.float32))) == (
        pytest.approx(1.8e38, rel=1e-6)
    )
    # Below the limit: the exact sum (representable here).
    assert _no_warning(lambda: nuclear_norm([8e307, 8e307])) == 1.6e308


# --- D7. marchenko_pastur_edge(method="fit"): r*r underflowed ------------------------------


@pytest.mark.parametrize("tiny", [1e-100, 1e-200, 1e-300, 5e-310])
def test_d7_fit_with_a_bulk_far_below_sigma_1(tiny):
    # Closed form: s = [1, t, t] at 3 x 3: median eigenvalue t^2, sigma = t/sqrt(3 mu),
    # edge = 2 sqrt(3) sigma (< 1: one spike). Tolerance 1e-14 relative (t normal), 1e-9
    # for the subnormal t = 5e-310 (its 20 significant bits).
    mu = marchenko_pastur_median((3, 3))
    mp = marchenko_pastur_edge([1.0, tiny, tiny], shape=(3, 3), method="fit")
    rel = 1e-14 if tiny >= 2.3e-308 else 1e-9
    assert mp.sigma == pytest.approx(tiny / math.sqrt(3 * mu), rel=rel)
    assert mp.edge == pytest.approx(2 * math.sqrt(3) * tiny / math.sqrt(3 * mu), rel=rel)
    assert mp.num_spikes == 1


def test_d7_even_count_uses_the_root_mean_square_of_the_two_middle_values():
    # s = [1, a, b, c] at 4 x 4: the median eigenvalue is (a^2 + b^2)/2 -> sigma =
    # sqrt((a^2 + b^2)/2)/sqrt(4 mu), computed here exactly scaled by 2^700.
    a, b, c = 3e-200, 1e-200, 1e-201
    mu = marchenko_pastur_median((4, 4))
    k = 2.0**700
    expected = math.sqrt(((a * k) ** 2 + (b * k) ** 2) / 2) / k / math.sqrt(4 * mu)
    mp = marchenko_pastur_edge([1.0, a, b, c], shape=(4, 4), method="fit")
    assert mp.sigma == pytest.approx(expected, rel=1e-14)
    assert mp.num_spikes == 1
    # and it is the same estimator as before on a spectrum whose squares do not underflow
    mild = marchenko_pastur_edge([1.0, 0.3, 0.1, 0.01], shape=(4, 4), method="fit")
    assert mild.sigma == pytest.approx(math.sqrt((0.09 + 0.01) / 2 / (4 * mu)), rel=1e-14)


def test_d7_scaling_the_bulk_by_a_power_of_two_scales_sigma_exactly():
    s = np.array([1.0, 0.5, 0.4, 0.3, 0.2])
    base = marchenko_pastur_edge(s, shape=(5, 9), method="fit")
    low = s.copy()
    low[1:] = np.ldexp(low[1:], -900)
    deep = marchenko_pastur_edge(low, shape=(5, 9), method="fit")
    assert deep.sigma == math.ldexp(base.sigma, -900)  # exact: r and its median scale exactly
    assert deep.num_spikes == 1


# --- D8. entropy_effective_rank of r equal values --------------------------------------------


@pytest.mark.parametrize("value", [1.0, 0.1, 3.0, 1e300, 1e-300, 5e-324])
def test_d8_equal_values_give_exactly_r(value):
    for r in [1, 2, 3, 5, 7, 10, 99, 100, 333, 1000]:
        assert entropy_effective_rank([value] * r) == float(r)
        assert entropy_effective_rank([value] * r + [0.0] * 3) == float(r)


def _erank_decimal(s: np.ndarray) -> float:
    with localcontext() as ctx:
        ctx.prec = 60
        values = [Decimal(float(x)) for x in s if x > 0]
        total = sum(values)
        h = -sum((v / total) * (v / total).ln() for v in values)
        return float(h.exp())


def test_d8_bounds_and_accuracy_against_decimal():
    # 60-digit decimal reference; 1e-13 relative. Always within [1, number of non-zero
    # values] (exact comparison), also for values equal up to one ulp.
    rng = np.random.default_rng(8)
    for _ in range(50):
        k = int(rng.integers(2, 200))
        s = np.exp(rng.uniform(-30, 0, k))
        got = entropy_effective_rank(s)
        assert got == pytest.approx(_erank_decimal(s), rel=1e-13)
        assert 1.0 <= got <= k
    for r in (3, 5, 1000):
        near = np.nextafter(np.ones(r), 2.0)
        near[0] = 1.0
        assert 1.0 <= entropy_effective_rank(near) <= r
        assert entropy_effective_rank(near) == pytest.approx(r, rel=1e-12)


# --- D9. absurd shapes raised a bare OverflowError -------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: marchenko_pastur_edge([1.0], shape=(10**400, 1)),
        lambda: marchenko_pastur_edge([1.0], shape=(1, 2**63)),
        lambda: marchenko_pastur_median((10**400, 3)),
        lambda: numerical_rank([1.0], shape=(10**400, 1)),
        lambda: numerical_rank([1.0], shape=(10**400, 1), storage_dtype="float16"),
        lambda: storage_noise_level(shape=(10**400, 1), norm_fro=1.0, storage_dtype="float16"),
    ],
)
def test_d9_absurd_shapes_are_a_shape_error(call):
    with pytest.raises(ShapeError, match="largest array dimension"):
        call()


def test_d9_the_largest_array_dimension_itself_is_accepted():
    side = int(np.iinfo(np.intp).max)
    mp = marchenko_pastur_edge([1.0], shape=(side, 1))
    # closed form: sigma^2 = 1/(m n), edge = sigma (sqrt N + 1)
    assert mp.edge == pytest.approx((math.sqrt(side) + 1) / math.sqrt(side), rel=1e-14)
    # NumPy's threshold sigma_1 N eps = 2048 sigma_1 exceeds sigma_1: rank 0, no error
    assert numerical_rank([1.0], shape=(side, 1)) == 0
