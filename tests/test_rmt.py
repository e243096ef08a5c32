"""The random-matrix view (lowrank.rmt) against independent references.

* the Marchenko–Pastur median against numerical integration of the MP density (SciPy);
* the MP edge against the known noise level of Gaussian matrices, and planted spikes;
* the power-law MLE against Pareto samples with a known exponent and threshold;
* the KS distance against ``scipy.stats.kstest``, and the vectorised xmin scan against a
  naive loop over the candidates (in both KS conventions);
* a hand-computed tiny case, scale invariance (Hypothesis), and every error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from lowrank.errors import InputError, NonFiniteError, ShapeError
from lowrank.rmt import (
    _log_eigenvalues,
    _scan_xmin,
    marchenko_pastur_edge,
    marchenko_pastur_median,
    power_law_fit,
    random_matrix_summary,
)

# --------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------


def mp_median_by_quadrature(gamma: float) -> float:
    """The median of the MP law (ratio gamma, mean 1) from the density, by quad + brentq."""
    lo, hi = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2

    def density(x: float) -> float:
        return math.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * math.pi * gamma * x)

    def cdf_minus_half(x: float) -> float:
        return integrate.quad(density, lo, x, epsabs=1e-14, epsrel=1e-13, limit=200)[0] - 0.5

    return float(optimize.brentq(cdf_minus_half, lo, hi, xtol=1e-15))


def naive_candidates(
    lam: np.ndarray, ks: str, *, small: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate xmin (distinct positive eigenvalues but the largest), one at a time:
    (xmins, alphas, distances), straight from the definitions, on the eigenvalues themselves.
    ``small``: WeightWatcher's bias-corrected exponent 1 + (n - 1)/sum ln(lambda/xmin)."""
    lam = np.sort(lam[lam > 0])
    xmins = np.unique(lam)[:-1]
    alphas, distances = [], []
    for x in xmins:
        tail = lam[lam >= x]
        n = tail.size
        alpha = 1.0 + (n - 1 if small else n) / np.sum(np.log(tail / x))
        model = 1.0 - (tail / x) ** (1.0 - alpha)
        j = np.arange(n)
        if ks == "clauset":  # sup over x of |S(x) - P(x)|: both ends of each step
            d = max(np.max((j + 1) / n - model), np.max(model - j / n))
        else:  # WeightWatcher 0.7 / powerlaw: left ends only
            d = np.max(np.abs(model - j / n))
        alphas.append(alpha)
        distances.append(d)
    return xmins, np.array(alphas), np.array(distances)


def pareto(rng: np.random.Generator, alpha: float, xmin: float, size: int) -> np.ndarray:
    """Eigenvalues with density proportional to x^-alpha above xmin (inverse transform)."""
    return xmin * (1.0 - rng.random(size)) ** (-1.0 / (alpha - 1.0))


def grid_spectra(min_size: int = 3, max_size: int = 40) -> st.SearchStrategy[np.ndarray]:
    """Singular values 1.01**k: ties allowed, no near-ties (which make the naive reference,
    not the scan, inaccurate: ln(x(1 + d)/x) loses digits as d -> 0). At least two distinct."""
    return (
        st.lists(st.integers(-300, 300), min_size=min_size, max_size=max_size)
        .filter(lambda ks: len(set(ks)) >= 2)
        .map(lambda ks: 1.01 ** np.array(ks, dtype=np.float64))
    )


# --------------------------------------------------------------------------------------
# Marchenko–Pastur
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1.0, 0.5, 0.25, 0.1, 0.01, 1e-4])
def test_mp_median_against_quadrature(gamma):
    # Both are accurate to ~1e-15; 1e-12 leaves room for quad's error estimate.
    n = 10_000
    m = max(1, round(gamma * n))
    expected = mp_median_by_quadrature(m / n)
    assert marchenko_pastur_median((m, n)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert marchenko_pastur_median((n, m)) == marchenko_pastur_median((m, n))


def test_mp_median_known_values():
    # Gavish & Donoho (2014): mu_1 = 0.6528 for square matrices; mu -> 1 as gamma -> 0
    # (like 1 - gamma/3).
    assert marchenko_pastur_median((7, 7)) == pytest.approx(0.6527759, abs=1e-7)
    assert marchenko_pastur_median((1, 10**12)) == pytest.approx(1.0, abs=1e-11)


@pytest.mark.parametrize(
    ("shape", "sigma"),
    [((500, 500), 1.0), ((1000, 500), 0.02), ((500, 2000), 30.0), ((800, 600), 3e-5)],
)
def test_mp_edge_of_gaussian_noise(shape, sigma):
    rng = np.random.default_rng(hash(shape) % 2**32)
    W = sigma * rng.standard_normal(shape)
    s = np.linalg.svd(W, compute_uv=False)
    m, n = shape
    edge = sigma * (math.sqrt(m) + math.sqrt(n))
    closed = marchenko_pastur_edge(s, shape=shape)
    fitted = marchenko_pastur_edge(s, shape=shape, method="fit")
    # closed form: sigma^2 = ||W||_F^2/(mn) has relative sd sqrt(2/(mn)) <= 3e-3: 1 %.
    assert closed.sigma == pytest.approx(sigma, rel=0.01)
    assert closed.edge == pytest.approx(edge, rel=0.01)
    # fit: the median eigenvalue fluctuates more (O(1/M)) than the mean: 3 %.
    assert fitted.sigma == pytest.approx(sigma, rel=0.03)
    assert fitted.edge == pytest.approx(edge, rel=0.03)
    # the largest singular value of noise sits at the edge up to O(N^-2/3): a few percent
    assert s[0] == pytest.approx(edge, rel=0.03)
    assert closed.bulk_min == pytest.approx(sigma * abs(math.sqrt(m) - math.sqrt(n)), rel=0.01)
    # pure noise: no spike beyond the Tracy-Widom fluctuation of the top value or two
    assert closed.num_spikes <= 2 and fitted.num_spikes <= 2
    assert closed.mp_softrank == pytest.approx((closed.edge / s[0]) ** 2, rel=1e-13)
    assert closed.mp_softrank == pytest.approx(1.0, rel=0.06)


def test_mp_planted_spikes_counted_exactly(rng):
    m, n, sigma, k = 1000, 500, 1.0, 5
    edge = sigma * (math.sqrt(m) + math.sqrt(n))
    strengths = edge * np.array([3.0, 3.5, 4.0, 5.0, 6.0])  # well above the BBP threshold
    U = np.linalg.qr(rng.standard_normal((m, k)))[0]
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    noise = sigma * rng.standard_normal((m, n))
    W = noise + (U * strengths) @ V.T
    s = np.linalg.svd(W, compute_uv=False)
    closed = marchenko_pastur_edge(s, shape=W.shape)
    fitted = marchenko_pastur_edge(s, shape=W.shape, method="fit")
    assert fitted.num_spikes == k and closed.num_spikes == k
    # the median barely moves (bias O(k/M)); the mean squared entry counts the signal too
    assert fitted.sigma == pytest.approx(sigma, rel=0.02)
    inflation = math.sqrt(1.0 + np.sum(strengths**2) / np.sum(noise**2))
    assert closed.sigma == pytest.approx(sigma * inflation, rel=0.01)
    assert inflation > 1.05
    share = np.sum(s[:k] ** 2) / np.sum(s**2)
    assert fitted.spike_share == pytest.approx(share, rel=1e-12)
    assert closed.spike_share == pytest.approx(share, rel=1e-12)
    assert fitted.mp_softrank == pytest.approx((fitted.edge / s[0]) ** 2, rel=1e-13)


def test_mp_zero_and_noiseless_low_rank(rng):
    zero = marchenko_pastur_edge(np.zeros(4), shape=(4, 6), method="fit")
    assert (zero.edge, zero.sigma, zero.num_spikes, zero.spike_share, zero.mp_softrank) == (
        0.0,
        0.0,
        0,
        0.0,
        0.0,
    )
    # rank 3 without noise: the median eigenvalue is 0, so sigma = 0 and all 3 are spikes
    L = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20))
    s = np.linalg.svd(L, compute_uv=False)
    s[3:] = 0.0
    fitted = marchenko_pastur_edge(s, shape=L.shape, method="fit")
    assert (fitted.sigma, fitted.num_spikes, fitted.spike_share) == (0.0, 3, 1.0)


# --------------------------------------------------------------------------------------
# Power law
# --------------------------------------------------------------------------------------


def test_power_law_hand_computed():
    # lambda = 1, e, e^2; xmin = 1: alpha = 1 + 3/(0 + 1 + 2) = 2; P = 1 - 1/lambda
    # = 0, 1 - 1/e, 1 - 1/e^2 against S = 0..1/3, 1/3..2/3, 2/3..1: the sup is 1/3 (at the
    # first step), the left ends give max(0, 1 - 1/e - 1/3, 1 - 1/e^2 - 2/3) = 0.2988.
    s = np.exp([1.0, 0.5, 0.0])
    fit = power_law_fit(s, xmin=1.0)
    assert fit.alpha == 2.0 and fit.n_tail == 3
    assert fit.alpha_stderr == pytest.approx(1 / math.sqrt(3), rel=1e-15)
    assert fit.ks_distance == pytest.approx(1 / 3, rel=1e-15)
    ww = power_law_fit(s, xmin=1.0, ks="weightwatcher")
    assert ww.ks_distance == pytest.approx(1 - 1 / math.e - 1 / 3, rel=1e-14)
    assert fit.xmax == pytest.approx(math.e**2, rel=1e-15)
    # alpha_weighted = alpha * log10(lambda_max) = 2 * 2 / ln(10)
    assert fit.alpha_weighted == pytest.approx(4 / math.log(10), rel=1e-15)
    assert fit.over_trained is False and fit.under_trained is False
    # the scan: candidates 1 and e; xmin = e leaves {e, e^2}: alpha = 1 + 2/1 = 3
    assert power_law_fit(s, xmin=math.e).alpha == pytest.approx(3.0, rel=1e-15)


def test_power_law_pareto_fixed_xmin():
    # 20 samples of 1000 Pareto eigenvalues, alpha = 2.5: each estimate within 3 standard
    # errors, and their mean z-score within 3/sqrt(20) of 0 (no bias beyond (alpha-1)/n).
    alpha, n = 2.5, 1000
    z = []
    for seed in range(20):
        lam = pareto(np.random.default_rng(seed), alpha, 1.0, n)
        fit = power_law_fit(np.sqrt(lam), xmin=1.0)
        assert fit.n_tail == n
        assert abs(fit.alpha - alpha) < 3 * fit.alpha_stderr
        z.append((fit.alpha - alpha) / ((alpha - 1) / math.sqrt(n)))
    assert abs(np.mean(z)) < 3 / math.sqrt(len(z))


@pytest.mark.parametrize("alpha", [2.5, 3.5, 5.0])
def test_power_law_pareto_tail_above_a_uniform_body(alpha):
    # 1000 values uniform on [0.05, 1) below a Pareto tail of 2000 from xmin = 1, 20 seeds.
    # The KS distance is flat above the true xmin (a power law's tail is a power law), so
    # the scan sometimes settles higher (up to 2.2 here): Clauset et al. report the same
    # spread. It never reaches into the body, its median is the truth, and the exponent of
    # the tail it keeps is within 3 standard errors, without bias.
    xmins, z = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        lam = np.concatenate([rng.uniform(0.05, 1.0, 1000), pareto(rng, alpha, 1.0, 2000)])
        fit = power_law_fit(np.sqrt(lam))
        assert fit.xmin > 0.95 and fit.n_tail <= 2050
        assert abs(fit.alpha - alpha) < 3 * fit.alpha_stderr
        assert fit.xmax == pytest.approx(np.max(lam), rel=1e-14)
        xmins.append(fit.xmin)
        z.append((fit.alpha - alpha) / fit.alpha_stderr)
    assert 0.98 < np.median(xmins) < 1.05
    assert np.mean(np.array(xmins) < 1.25) >= 0.75
    assert abs(np.mean(z)) < 3 / math.sqrt(len(z))


@pytest.mark.parametrize("ks", ["clauset", "weightwatcher"])
def test_scan_against_naive_loop(rng, ks):
    lam = np.concatenate([pareto(rng, 3.0, 1.0, 150), rng.uniform(0.1, 1.0, 50)])
    lam = np.concatenate([lam, lam[:10]])  # ties
    s = np.sqrt(lam)
    xmins, alphas, distances = naive_candidates(lam, ks)
    logs, log_top = _log_eigenvalues(np.sort(s)[::-1])
    starts, scan_alphas, scan_distances = _scan_xmin(logs, ks)
    assert np.exp(logs[starts] + log_top) == pytest.approx(xmins, rel=1e-13)
    # alpha: the scan's suffix sums lose at most ~n eps (see _scan_xmin); 1e-10 is lax.
    assert scan_alphas == pytest.approx(alphas, rel=1e-10)
    assert scan_distances == pytest.approx(distances, rel=1e-9, abs=1e-12)
    fit = power_law_fit(s, ks=ks)
    best = int(np.argmin(distances))
    assert fit.xmin == pytest.approx(xmins[best], rel=1e-13)
    assert fit.alpha == pytest.approx(alphas[best], rel=1e-10)
    assert fit.ks_distance == pytest.approx(distances[best], rel=1e-9)


@given(s=grid_spectra(), ks=st.sampled_from(["clauset", "weightwatcher"]))
def test_scan_against_naive_loop_property(s, ks):
    _, alphas, distances = naive_candidates(s**2, ks)
    logs, _ = _log_eigenvalues(np.sort(s)[::-1])
    _, scan_alphas, scan_distances = _scan_xmin(logs, ks)
    assert scan_alphas == pytest.approx(alphas, rel=1e-10)
    assert scan_distances == pytest.approx(distances, rel=1e-9, abs=1e-12)
    fit = power_law_fit(s, ks=ks)
    lam = np.sort(s**2)
    if ks == "weightwatcher" and lam.size < 20:
        # WeightWatcher's small-sample rule (WW_powerlaw.fit_powerlaw_smallN): tails of at
        # least 8 values compete (the whole spectrum if none is that long), bias-corrected.
        xmins, alphas, distances = naive_candidates(s**2, ks, small=True)
        counts = np.array([np.sum(lam >= x) for x in xmins])
        allowed = counts >= 8 if np.any(counts >= 8) else np.arange(xmins.size) == 0
        distances = np.where(allowed, distances, np.inf)
        best = int(np.argmin(distances))
        assert fit.alpha == pytest.approx(alphas[best], rel=1e-10)
        assert fit.n_tail == counts[best]
    assert fit.ks_distance == pytest.approx(np.min(distances), rel=1e-9, abs=1e-12)


def weightwatcher_fit(lam: np.ndarray) -> tuple[float, float, float, int]:
    """WeightWatcher 0.7.7's WWFit (weightwatcher/WW_powerlaw.py), re-derived from its
    definition: eigenvalues above 1e-5, every sorted value but the last a candidate, the
    distance to the left ends of the steps, the first minimum. (alpha, xmin, D, n_tail)."""
    data = np.sort(lam[lam > 1e-5])
    logs = np.log(data)
    alphas, distances = [], []
    for i in range(data.size - 1):
        n = data.size - i
        alpha = 1 + n / (np.sum(logs[i:]) - n * logs[i])
        alphas.append(alpha)
        distances.append(np.max(np.abs(1 - (data[i:] / data[i]) ** (1 - alpha) - np.arange(n) / n)))
    best = int(np.argmin(distances))
    return alphas[best], data[best], distances[best], int(np.sum(lam >= data[best]))


def test_weightwatcher_convention_reproduces_its_fit(rng):
    W = rng.standard_normal((200, 120)) @ np.diag(rng.pareto(2.0, 120) + 0.5)
    s = np.linalg.svd(W, compute_uv=False)
    alpha, xmin, distance, n_tail = weightwatcher_fit(s**2)
    fit = power_law_fit(s[s**2 > 1e-5], ks="weightwatcher")
    assert fit.alpha == pytest.approx(alpha, rel=1e-10)
    assert fit.xmin == pytest.approx(xmin, rel=1e-14)
    assert fit.ks_distance == pytest.approx(distance, rel=1e-9)
    assert fit.n_tail == n_tail


def test_ks_distance_against_scipy_kstest(rng):
    lam = np.concatenate([rng.uniform(0.1, 1.0, 300), pareto(rng, 3.0, 1.0, 700)])
    fit = power_law_fit(np.sqrt(lam))
    tail = lam[lam >= fit.xmin]  # xmin is one of the eigenvalues, exactly
    assert tail.size == fit.n_tail
    reference = stats.kstest(tail, lambda x: 1.0 - (x / fit.xmin) ** (1.0 - fit.alpha))
    assert fit.ks_distance == pytest.approx(reference.statistic, rel=1e-10)
    # the left-end convention is below, by less than one step
    ww = power_law_fit(np.sqrt(lam), xmin=fit.xmin, ks="weightwatcher")
    assert (ww.n_tail, ww.alpha) == (fit.n_tail, pytest.approx(fit.alpha, rel=1e-12))
    # (equal when the sup is at a left end: then up to rounding of the two formulas)
    assert fit.ks_distance - 1 / fit.n_tail < ww.ks_distance <= fit.ks_distance + 1e-15


def test_flags_follow_alpha():
    # xmin = 1 and eigenvalues e^t: alpha = 1 + n / sum(t)
    under = power_law_fit(np.exp(np.array([0.0, 0.05, 0.1]) / 2), xmin=1.0)
    assert under.alpha == pytest.approx(1 + 3 / 0.15) and under.under_trained
    assert not under.over_trained
    over = power_law_fit(np.exp(np.array([0.0, 2.0, 4.0]) / 2), xmin=1.0)
    assert over.alpha == pytest.approx(1.5) and over.over_trained and not over.under_trained


def test_zeros_are_left_out():
    s = np.exp([1.0, 0.5, 0.0])
    padded = np.concatenate([s, np.zeros(5)])
    assert power_law_fit(padded) == power_law_fit(s)


def test_the_scan_on_4096_values_matches_fits_at_its_candidates(rng):
    # The vectorised scan on a long spectrum (no wall-clock bound: speed is measured by the
    # benchmarks): its xmin is one of the eigenvalues, and refitting with that xmin given
    # reproduces alpha and D; no candidate among a spread of others has a smaller D.
    s = np.sqrt(pareto(rng, 3.0, 1.0, 4096))
    fit = power_law_fit(s)
    lam = np.sort(s**2)
    assert fit.xmin in lam
    again = power_law_fit(s, xmin=fit.xmin)
    assert again.alpha == pytest.approx(fit.alpha, rel=1e-12)
    assert again.ks_distance == pytest.approx(fit.ks_distance, rel=1e-12)
    for x in lam[::256][:-1]:
        assert power_law_fit(s, xmin=float(x)).ks_distance >= fit.ks_distance - 1e-12


def test_extreme_scales_do_not_overflow():
    s = np.exp(np.linspace(0.0, 3.0, 50))
    base = power_law_fit(s)
    huge = power_law_fit(s * 2.0**600)  # sigma ~ 1e180: sigma^2 overflows float64
    assert (huge.alpha, huge.ks_distance, huge.n_tail) == (base.alpha, base.ks_distance, 50)
    assert huge.xmax == math.inf and math.isfinite(huge.alpha_weighted)
    tiny = power_law_fit(s * 2.0**-1000)
    assert tiny.alpha == base.alpha and tiny.alpha_weighted < 0
    edge = marchenko_pastur_edge(s * 2.0**600, shape=(80, 50))
    assert edge.edge == marchenko_pastur_edge(s, shape=(80, 50)).edge * 2.0**600


# --------------------------------------------------------------------------------------
# Scale invariance
# --------------------------------------------------------------------------------------


@given(s=grid_spectra(), power=st.integers(-40, 40), extra=st.integers(0, 30))
def test_power_of_two_scaling_is_exact(s, power, extra):
    # Everything is computed on s / s[0], so scaling by 2**power is exact: counts, shares,
    # alpha and D equal bit for bit; edge and sigma scale by c, xmin and xmax by c^2.
    c = 2.0**power
    shape = (s.size + extra, s.size)
    for method in ("closed_form", "fit"):
        a = marchenko_pastur_edge(s, shape=shape, method=method)
        b = marchenko_pastur_edge(s * c, shape=shape, method=method)
        assert (b.num_spikes, b.spike_share, b.mp_softrank) == (
            a.num_spikes,
            a.spike_share,
            a.mp_softrank,
        )
        assert (b.edge, b.sigma, b.bulk_min) == (a.edge * c, a.sigma * c, a.bulk_min * c)
    a_fit, b_fit = power_law_fit(s), power_law_fit(s * c)
    assert (b_fit.alpha, b_fit.ks_distance, b_fit.n_tail) == (
        a_fit.alpha,
        a_fit.ks_distance,
        a_fit.n_tail,
    )
    assert b_fit.xmin == pytest.approx(a_fit.xmin * c * c, rel=1e-12)
    assert b_fit.xmax == pytest.approx(a_fit.xmax * c * c, rel=1e-12)


@given(s=grid_spectra(), c=st.floats(1e-3, 1e3))
def test_any_scaling_moves_the_edge_by_c(s, c):
    shape = (s.size + 3, s.size)
    for method in ("closed_form", "fit"):
        a = marchenko_pastur_edge(s, shape=shape, method=method)
        b = marchenko_pastur_edge(s * c, shape=shape, method=method)
        # a few roundings of s * c / (s[0] * c): 1e-13 relative
        assert b.edge == pytest.approx(a.edge * c, rel=1e-13)
        assert b.mp_softrank == pytest.approx(a.mp_softrank, rel=1e-13)


def test_matrix_scaling_keeps_alpha_and_spikes(rng):
    W = rng.standard_normal((300, 200)) + 0.5 * np.outer(
        rng.standard_normal(300), rng.standard_normal(200)
    )
    a = random_matrix_summary(W, method="fit")
    b = random_matrix_summary(3.7 * W, method="fit")
    assert a.power_law is not None and b.power_law is not None
    assert b.marchenko_pastur.num_spikes == a.marchenko_pastur.num_spikes == 1
    assert b.marchenko_pastur.edge == pytest.approx(3.7 * a.marchenko_pastur.edge, rel=1e-12)
    # SVD rounding differs between W and 3.7 W (relative eps * sqrt(n) * cond): 1e-9
    assert b.power_law.alpha == pytest.approx(a.power_law.alpha, rel=1e-9)
    assert b.power_law.n_tail == a.power_law.n_tail


# --------------------------------------------------------------------------------------
# The matrix convenience
# --------------------------------------------------------------------------------------


def test_random_matrix_summary_matches_the_parts(rng):
    W = rng.standard_normal((120, 80)).astype(np.float32)
    result = random_matrix_summary(W, method="fit", ks="weightwatcher")
    s = result.singular_values
    assert result.shape == (120, 80) and s.dtype == np.float64 and s.size == 80
    assert np.all(np.diff(s) <= 0)
    assert result.marchenko_pastur == marchenko_pastur_edge(s, shape=(120, 80), method="fit")
    assert result.power_law == power_law_fit(s, ks="weightwatcher")
    fixed = random_matrix_summary(W, xmin=float(s[40] ** 2))
    assert fixed.power_law is not None and fixed.power_law.n_tail == 41


def test_random_matrix_summary_without_a_tail():
    result = random_matrix_summary(np.zeros((5, 3)))
    assert result.power_law is None and result.marchenko_pastur.num_spikes == 0
    assert random_matrix_summary(2.0 * np.eye(4)).power_law is None


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: marchenko_pastur_edge([], shape=(3, 0)), ShapeError, r"both sides >= 1"),
        (lambda: marchenko_pastur_median((0, 4)), ShapeError, r"both sides >= 1; got \(0, 4\)"),
        (lambda: marchenko_pastur_median((3,)), ShapeError, r"shape must be a tuple of 2"),
        (
            lambda: marchenko_pastur_edge([3.0, 1.0], shape=(5, 3)),
            ShapeError,
            r"singular_values must hold all min\(shape\) = 3 singular values .*; got 2",
        ),
        (
            lambda: marchenko_pastur_edge([], shape=(5, 3)),
            ShapeError,
            r"min\(shape\) = 3 .*got 0",
        ),
        (
            lambda: marchenko_pastur_edge([1.0, np.nan], shape=(2, 2)),
            NonFiniteError,
            r"singular_values must contain only finite values",
        ),
        (
            lambda: marchenko_pastur_edge([1.0, -1.0], shape=(2, 2)),
            InputError,
            r"singular_values must be non-negative",
        ),
        (
            lambda: marchenko_pastur_edge(np.ones((2, 2)), shape=(2, 2)),
            ShapeError,
            r"singular_values must be 1-D",
        ),
        (
            lambda: marchenko_pastur_edge([1.0, 2.0], shape=(2, 2), method="kde"),
            InputError,
            r"method must be one of 'closed_form', 'fit'; got 'kde'",
        ),
        (lambda: power_law_fit([]), InputError, r"at least two distinct positive values"),
        (lambda: power_law_fit([2.0, 2.0, 2.0]), InputError, r"3 positive value\(s\) of 3, 1"),
        (lambda: power_law_fit([3.0, 0.0, 0.0]), InputError, r"1 positive value\(s\) of 3"),
        (lambda: power_law_fit([1.0, np.inf]), NonFiniteError, r"singular_values must"),
        (lambda: power_law_fit([1.0, -2.0]), InputError, r"singular_values must be non-neg"),
        (lambda: power_law_fit([1.0, 2.0j]), InputError, r"singular_values must be real"),
        (lambda: power_law_fit([1.0, 2.0], xmin=0.0), InputError, r"xmin must be finite and > 0"),
        (lambda: power_law_fit([1.0, 2.0], xmin=-1), InputError, r"xmin must be finite and > 0"),
        (lambda: power_law_fit([1.0, 2.0], xmin=np.nan), InputError, r"xmin must be finite"),
        (lambda: power_law_fit([1.0, 2.0], xmin=math.inf), InputError, r"xmin must be finite"),
        (
            lambda: power_law_fit([1.0, 2.0], xmin=4.0),
            InputError,
            r"xmin must lie below the largest eigenvalue sigma_1\^2 = 4.0.*; got 4.0",
        ),
        (lambda: power_law_fit([1.0, 2.0], ks="ad"), InputError, r"ks must be one of"),
        (lambda: random_matrix_summary(np.ones(3)), ShapeError, r"A must be a 2-D matrix"),
        (
            lambda: random_matrix_summary(np.full((2, 2), np.nan)),
            NonFiniteError,
            r"A must contain only finite values",
        ),
        (lambda: random_matrix_summary(np.eye(2), method="x"), InputError, r"method must be"),
        (lambda: random_matrix_summary(np.eye(2), ks="x"), InputError, r"ks must be one of"),
        (lambda: random_matrix_summary(np.eye(2), xmin=-1.0), InputError, r"xmin must be"),
        (
            lambda: random_matrix_summary(np.diag([2.0, 1.0]), xmin=9.0),
            InputError,
            r"xmin must lie below the largest eigenvalue",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_values_at_the_rounding_level_are_not_a_power_law():
    """A rank-1 matrix of ones has singular values [6, ~1e-32]: the second is rounding, and
    there is no power law to fit (it gave alpha 1.03 and over_trained=True). Reference: the
    exact spectrum, [sqrt(m n), 0, ...]; a matrix with two real values still gets a fit."""
    from lowrank.rmt import random_matrix_summary

    for shape in [(2, 3), (5, 4), (40, 30)]:
        summary = random_matrix_summary(np.ones(shape))
        assert summary.power_law is None, shape
        assert summary.singular_values[0] == pytest.approx(np.sqrt(shape[0] * shape[1]))
    rng = np.random.default_rng(0)
    two = rng.standard_normal((40, 2)) @ rng.standard_normal((2, 30))
    assert random_matrix_summary(two + 0.0).power_law is not None
