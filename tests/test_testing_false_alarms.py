"""lowrank.testing must not cry wolf: correct SVDs from independent implementations pass
assert_valid_svd and assert_near_optimal with the tolerances derived in
lowrank.testing.tolerances, on every example.

In the ``thorough`` profile (``HYPOTHESIS_PROFILE=thorough``) each test runs
``FALSE_ALARM_EXAMPLES`` = 20,000 examples; in ``dev`` and ``ci`` the profile's small number.
Record the counts with ``pytest --hypothesis-show-statistics``.

The tolerances, and why they hold (details in lowrank.testing.tolerances):

* LAPACK (np.linalg.svd, scipy.linalg.svd with gesdd and gesvd): backward error
  (16 eps sqrt(max(m, n)) + t_L) sigma_1, t_L LAPACK's deflation threshold (49 eps in float64,
  5 eps in float32), a hard bound of its bidiagonal QR iteration; the reference values carry
  their own.
* scikit-learn's randomized_svd on matrices no larger than its sketch (rank + 10 columns):
  the range finder captures all of A, and the result is as backward stable as an SVD.
* randomized_svd on larger matrices: values within F sigma_{r+1} and a spectral error within
  (1 + F) sigma_{r+1}, F = power_scheme_factor (Halko, Martinsson & Tropp 2011), failing with
  probability 6 p^-p = 6e-10 per example (p = 10).
* ARPACK through scipy.sparse.linalg.svds(tol=t): values within sqrt(eta) and errors within
  e* + sqrt(r eta), eta = (max(t^2, eps) + 16 eps sqrt(max(m, n))) sigma_1^2 (gram_atol).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrank.testing import assert_near_optimal, assert_valid_svd
from lowrank.testing import strategies as lst
from lowrank.testing.tolerances import gram_atol, power_scheme_factor

sklearn_extmath = pytest.importorskip("sklearn.utils.extmath")
sparse_linalg = pytest.importorskip("scipy.sparse.linalg")

FALSE_ALARM_EXAMPLES = 20_000
THOROUGH = settings.get_current_profile_name() == "thorough"


def many_examples(test):
    """20,000 examples in the thorough profile; the profile's own number otherwise."""
    return settings(max_examples=FALSE_ALARM_EXAMPLES)(test) if THOROUGH else test


SEEDS = st.integers(0, 2**31 - 1)
OVERSAMPLE = 10  # scikit-learn's default n_oversamples


def truncate(U, S, Vh, rank):
    return U[:, :rank], S[:rank], Vh[:rank]


def check_exact(A, triplets, rank):
    """A backward-stable truncated SVD: the default tolerances, no allowance."""
    assert_valid_svd(triplets, A, rank=rank)
    assert_near_optimal(A, triplets, rank=rank)
    assert_near_optimal(A, triplets, rank=rank, norm="spectral")


# --------------------------------------------------------------------------- LAPACK


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@many_examples
@given(data=st.data())
def test_numpy_svd_never_fails(dtype, data):
    case = data.draw(lst.matrices_with_spectrum(dtype=dtype), label="case")
    rank = data.draw(st.integers(0, min(case.shape)), label="rank")
    U, S, Vh = np.linalg.svd(case.A, full_matrices=False)
    check_exact(case.A, truncate(U, S, Vh, rank), rank)


@pytest.mark.parametrize("driver", ["gesdd", "gesvd"])
@many_examples
@given(case=lst.matrices_with_spectrum(), data=st.data())
def test_scipy_svd_never_fails(driver, case, data):
    rank = data.draw(st.integers(0, min(case.shape)), label="rank")
    U, S, Vh = scipy.linalg.svd(case.A, full_matrices=False, lapack_driver=driver)
    check_exact(case.A, truncate(U, S, Vh, rank), rank)


# --------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("n_iter", [7, 10])
@many_examples
@given(case=lst.matrices_with_spectrum(), data=st.data(), seed=SEEDS)
def test_randomized_svd_within_its_sketch_never_fails(n_iter, case, data, seed):
    """Sides <= 8 < rank + 10: the sketch spans the whole range, the result is exact."""
    rank = data.draw(st.integers(1, min(case.shape)), label="rank")
    triplets = sklearn_extmath.randomized_svd(case.A, rank, n_iter=n_iter, random_state=seed)
    check_exact(case.A, triplets, rank)


BEYOND_SKETCH = st.one_of(
    lst.matrices_with_spectrum(min_side=24, max_side=48),
    lst.weight_like_matrices(shape=st.tuples(st.integers(24, 48), st.integers(24, 48))),
    lst.low_rank_plus_noise(min_side=24, max_side=48),
)


@pytest.mark.parametrize("n_iter", [7, 10])
@many_examples
@given(case=BEYOND_SKETCH, rank=st.integers(1, 6), seed=SEEDS)
def test_randomized_svd_beyond_its_sketch_never_fails(n_iter, case, rank, seed):
    """Sides >= 24 > rank + 10: an approximation, checked against its proven bound."""
    A = case.A
    U, S, Vh = sklearn_extmath.randomized_svd(A, rank, n_iter=n_iter, random_state=seed)
    sigma = np.linalg.svd(A, compute_uv=False)
    F = power_scheme_factor(A.shape, rank, n_iter=n_iter, oversample=OVERSAMPLE)
    atol = F * float(sigma[rank] / sigma[0]) if sigma[0] > 0 else 0.0
    assert_valid_svd((U, S, Vh), A, rank=rank, atol=atol)
    assert_near_optimal(A, (U, S, Vh), rank=rank, norm="spectral", rtol=F, singular_values=sigma)
    assert_near_optimal(A, (U, S, Vh), rank=rank, rtol=np.inf, singular_values=sigma)


# --------------------------------------------------------------------------- ARPACK


def _nonzero_spectra(q):
    return lst.spectra(q, rank=st.integers(1, q))


NEARLY_LOW_RANK = st.one_of(
    lst.matrices_with_spectrum(min_side=2, spectrum=_nonzero_spectra).map(lambda c: c.A),
    lst.low_rank_plus_noise(
        min_side=2,
        max_side=30,
        noise_level=st.sampled_from([0.0, 1e-12, 1e-9, 1e-8, 1e-7, 1e-4]),
    ).map(lambda c: c.A),
)


@many_examples
@given(A=NEARLY_LOW_RANK, tol=st.sampled_from([0.0, 1e-10, 1e-6]), data=st.data())
def test_arpack_svds_with_its_tolerance_never_fails(A, tol, data):
    """svds(tol=t) hands t^2 to ARPACK on A^H A: accurate in sigma^2, so near sqrt(eps) in
    sigma; the derived atol lets it pass even when the optimum itself is that small."""
    q = min(A.shape)
    rank = data.draw(st.integers(1, q - 1), label="rank")
    seed = data.draw(SEEDS, label="seed")
    U, S, Vh = sparse_linalg.svds(A, rank, tol=tol, solver="arpack", random_state=seed)
    order = np.argsort(S)[::-1]
    triplets = (U[:, order], S[order], Vh[order])
    assert_valid_svd(triplets, A, rank=rank, atol=gram_atol(A.dtype, A.shape, tol=tol))
    atol = gram_atol(A.dtype, A.shape, tol=tol, rank=rank)
    for norm in ("fro", "spectral"):
        assert_near_optimal(A, triplets, rank=rank, norm=norm, atol=atol)


def test_arpack_needs_the_absolute_tolerance():
    """The issue: on nearly low-rank matrices (trailing values 1e-6.5 .. 1e-9.5) a relative
    tolerance alone rejects a correct svds (its excess, a few 1e-13 sigma_1, is above the
    rounding of an SVD); the derived atol accepts it, and the message says why."""
    from lowrank.testing.cases import matrix_with_spectrum

    messages = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sigma = np.concatenate([np.ones(3), np.sort(10.0 ** -rng.uniform(6.5, 9.5, 27))[::-1]])
        A = matrix_with_spectrum(sigma, (40, 30), rng=seed).A
        U, S, Vh = sparse_linalg.svds(A, 5, random_state=seed)
        assert_near_optimal(A, (U, S, Vh), rank=5, atol=gram_atol(A.dtype, A.shape, rank=5))
        try:
            assert_near_optimal(A, (U, S, Vh), rank=5)
        except AssertionError as error:
            messages.append(str(error))
    assert messages, "svds passed without atol on all 10 matrices"
    assert all("rounding-level excess" in m and "gram_atol" in m for m in messages)


def test_thorough_profile_runs_twenty_thousand_examples_each():
    tests = [
        test_numpy_svd_never_fails,
        test_scipy_svd_never_fails,
        test_randomized_svd_within_its_sketch_never_fails,
        test_randomized_svd_beyond_its_sketch_never_fails,
        test_arpack_svds_with_its_tolerance_never_fails,
    ]
    for test in tests:
        chosen = getattr(test, "_hypothesis_internal_use_settings", settings())
        expected = FALSE_ALARM_EXAMPLES if THOROUGH else settings().max_examples
        assert chosen.max_examples == expected, test.__name__
    assert FALSE_ALARM_EXAMPLES >= 20_000
