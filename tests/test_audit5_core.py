"""Round 5 of the core audit (/tmp/audit/core5, rmt5 D5, update5 6c): inputs and options
on their way to the truncated SVD, ``residual_norm``, ``select_rank``, ``singular_values``
and the analysis.

References: float64 LAPACK (``numpy.linalg.svd`` / ``scipy.linalg.svd``) on the same data,
or closed forms; each test states its tolerance. Errors are judged by their lowrank type
and by a message that names the cause (``ShapeError`` and ``RankError`` derive from
``InputError``, so a plain ``InputError`` is checked with ``type(...) is``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from _spectra import with_spectrum
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import lowrank.svd as svd_module
from lowrank import (
    best_approximation,
    residual_norm,
    select_rank,
    singular_values,
    truncated_svd,
)
from lowrank.analysis import analyze_matrix, analyze_update_matrix
from lowrank.errors import ConvergenceError, InputError, NonFiniteError, ShapeError

EPS64 = np.finfo(np.float64).eps
METHODS = ("auto", "exact", "randomized", "arpack", "propack", "lobpcg")
OPERATOR_METHODS = ("randomized", "arpack", "propack", "lobpcg")


def _value_atol(method: str, sigma1: float, n: int) -> float:
    """The documented accuracy of each method's values on a well-separated float64
    spectrum: the svds methods certify sqrt(eps) sigma_1 absolute (plus eps**0.25 s_i for
    LOBPCG, bounded by sigma_1 here); exact and randomized (value_tol = 32 eps) are at the
    rounding level, taken as 64 eps sqrt(n) sigma_1."""
    if method in ("arpack", "propack"):
        return float(np.sqrt(EPS64)) * sigma1
    if method == "lobpcg":
        return (float(np.sqrt(EPS64)) + EPS64**0.25) * sigma1
    return 64 * EPS64 * np.sqrt(n) * sigma1


@pytest.fixture
def decaying():
    """60 x 40 with singular values 0.8**i: sigma_1 = 1, gaps of 20 %."""
    return with_spectrum(np.random.default_rng(51), 60, 40, 0.8 ** np.arange(40))


# --- 1. ndarray subclasses: np.matrix and np.ma.MaskedArray ---------------------------------


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("method", METHODS)
def test_np_matrix_gives_the_values_of_the_plain_array(decaying, method):
    """A SciPy ``.todense()`` result: ``ravel`` of a matrix is 1 x N and ``*`` a matrix
    product, so the chunked norm raised "shapes (1,2000) and (1,2000) not aligned"."""
    res = truncated_svd(np.asmatrix(decaying), 3, method=method, rng=0)
    reference = np.linalg.svd(decaying, compute_uv=False)[:3]
    np.testing.assert_allclose(res.S, reference, rtol=0, atol=_value_atol(method, 1.0, 60))
    assert type(res.U) is np.ndarray and type(res.Vh) is np.ndarray
    # ||A||_F from the entries: float64 summation, 16 eps sqrt(mn) relative.
    assert res.norm_fro == pytest.approx(np.linalg.norm(decaying), rel=16 * EPS64 * 50)


def test_todense_of_a_sparse_matrix_and_best_approximation():
    """The audit's one-liner; the exact method on the same data is bit-for-bit the same
    LAPACK call, so the result equals that of the ndarray exactly."""
    dense = sp.random(50, 40, density=0.3, random_state=np.random.default_rng(3)).todense()
    plain = np.asarray(dense)
    res = best_approximation(dense, 3)
    np.testing.assert_array_equal(res.S, best_approximation(plain, 3).S)
    reference = np.linalg.svd(plain, compute_uv=False)[:3]
    # exact: LAPACK against LAPACK, 16 eps sqrt(n) sigma_1.
    np.testing.assert_allclose(res.S, reference, rtol=0, atol=16 * EPS64 * np.sqrt(50) * res.S[0])


@pytest.mark.parametrize("method", ["exact", "randomized", "arpack"])
def test_masked_array_with_masked_entries_is_refused(decaying, method):
    """Exact used ``.data`` (S[0] = 1000 from the hidden entry) while ``norm_fro`` skipped
    the masked entry, so ||A||_F < S[0]; randomized and arpack raised a raw ValueError."""
    masked = np.ma.masked_array(decaying.copy(), mask=np.zeros(decaying.shape, bool))
    masked.mask[0, 0] = True
    masked.data[0, 0] = 1e3
    with pytest.raises(InputError, match=r"masked array with 1 masked entry out of 2400.*filled"):
        truncated_svd(masked, 3, method=method, rng=0)
    with pytest.raises(InputError, match=r"masked entry"):
        singular_values(masked)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_masked_array_without_masked_entries_is_its_data(decaying, method):
    """Same data, same computation with the same seed: equal bit for bit to the plain
    array's result, and the reported norm is that of all entries (>= S[0], as ||A||_F must
    be). Randomized raised a raw broadcast ValueError (masked products); exact is a
    regression guard (it passed before)."""
    unmasked = np.ma.masked_array(decaying, mask=np.zeros(decaying.shape, bool))
    res = truncated_svd(unmasked, 3, method=method, rng=0)
    plain = truncated_svd(decaying, 3, method=method, rng=0)
    np.testing.assert_array_equal(res.S, plain.S)
    assert res.norm_fro == plain.norm_fro >= res.S[0]


# --- 2 and 3. A caller's norm_fro for a LinearOperator ---------------------------------------


@pytest.mark.parametrize("method", OPERATOR_METHODS)
def test_norm_fro_zero_for_a_nonzero_operator_is_refused(decaying, method):
    """Before: S = [0, 0, 0] with converged=True and residual_fro = 0 for sigma_1 = 1."""
    with pytest.raises(InputError, match=r"norm_fro.*not the Frobenius norm of A"):
        truncated_svd(aslinearoperator(decaying), 3, method=method, rng=0, norm_fro=0.0)


@pytest.mark.parametrize("method", OPERATOR_METHODS)
def test_norm_fro_zero_for_the_zero_operator_still_gives_zeros(method):
    """Regression guard (passes on HEAD): a zero norm that the products confirm gives the
    zero matrix's exact SVD (closed form: S = 0, residual 0)."""
    res = truncated_svd(aslinearoperator(np.zeros((30, 20))), 2, method=method, rng=0, norm_fro=0.0)
    np.testing.assert_array_equal(res.S, 0.0)
    assert res.residual_fro == 0.0 and res.norm_fro == 0.0


@pytest.mark.parametrize("method", OPERATOR_METHODS)
@pytest.mark.parametrize(
    ("given", "message"),
    [
        (1e-300, r"norm_fro must be >= \|\|A w\|\| / \|\|w\|\|.*not the Frobenius norm"),
        (1e300, r"more than 1e\+06 times the estimate .* of \|\|A\|\|_F"),
    ],
)
def test_a_far_off_norm_fro_is_refused_before_it_sets_the_scaling(decaying, method, given, message):
    """||A||_F = 1.667. Before: raw LinAlgError (randomized), NonFiniteError blaming the
    operator after lowrank's own 2**1000 prescaling overflowed (arpack, lobpcg), or
    residual_fro = 1e300 accepted (propack)."""
    with pytest.raises(InputError, match=message):
        truncated_svd(aslinearoperator(decaying), 3, method=method, rng=0, norm_fro=given)


def test_a_true_norm_fro_is_accepted_and_the_rng_stream_is_unchanged(decaying):
    """Regression guard (passes on HEAD): the probe draws from its own fixed seed, so the
    caller's Generator ends in the same state with or without ``norm_fro``, and the values
    agree with LAPACK (64 eps sqrt(n) sigma_1, the randomized method's rounding level)."""
    true_norm = float(np.linalg.norm(decaying))
    with_norm, without = np.random.default_rng(8), np.random.default_rng(8)
    op = aslinearoperator(decaying)
    given = truncated_svd(op, 3, method="randomized", rng=with_norm, norm_fro=true_norm)
    computed = truncated_svd(op, 3, method="randomized", rng=without)
    assert with_norm.bit_generator.state == without.bit_generator.state
    reference = np.linalg.svd(decaying, compute_uv=False)[:3]
    for res in (given, computed):
        np.testing.assert_allclose(res.S, reference, rtol=0, atol=_value_atol("exact", 1.0, 60))
    assert given.norm_fro == true_norm


@pytest.mark.parametrize("n", [1, 2, 40])
def test_the_true_norm_of_a_rank_one_operator_is_never_refused(n):
    """Regression guard (passes on HEAD), the probe's worst cases: rank 1, where
    ||A||_F = sigma_1 and ||A w|| / ||w|| reaches it exactly for n = 1 (the lower bound is
    then the norm itself, up to rounding), and where the estimate is a chi-square with 4
    degrees of freedom (a false refusal has probability 2e-24). Closed form: S = [3]."""
    rng = np.random.default_rng(6)
    u, v = rng.standard_normal(30), rng.standard_normal(n)
    A = 3.0 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    res = truncated_svd(aslinearoperator(A), 1, method="randomized", rng=0, norm_fro=3.0)
    # Rank 1: exact to the rounding of the products, 16 eps sqrt(30) sigma_1.
    assert res.S[0] == pytest.approx(3.0, abs=16 * EPS64 * np.sqrt(30) * 3.0)


def test_lapack_failure_inside_the_randomized_method_is_a_convergence_error(decaying, monkeypatch):
    """A LinAlgError of a small dense step escaped raw (with norm_fro=1e-300 before the
    probe existed). Simulated: LAPACK's report from inside the method."""

    def fails(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(svd_module, "randomized_svd", fails)
    with pytest.raises(ConvergenceError, match="Eigenvalues did not converge"):
        truncated_svd(decaying, 3, method="randomized", rng=0)


# --- 4. residual_norm with a (U, S, Vh) candidate --------------------------------------------


@pytest.fixture
def exact_factors(decaying):
    U, S, Vh = np.linalg.svd(decaying, full_matrices=False)
    return decaying, U[:, :3], S[:3].copy(), Vh[:3]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("norm", ["fro", "spectral"])
def test_non_finite_s_is_refused_naming_the_candidate(exact_factors, bad, norm):
    """Before: nan or inf returned silently (fro), or "A must contain only finite values"
    although A is finite (spectral)."""
    A, U, S, Vh = exact_factors
    S[1] = bad
    with pytest.raises(NonFiniteError, match=r"candidate S must contain only finite values"):
        residual_norm(A, (U, S, Vh), norm=norm)


def test_complex_s_is_not_cast_to_real(exact_factors):
    """Reference: ||A - U diag(S + 1j) Vh||_F formed directly in complex128 (1.931; the
    real part alone gave 0.853). Tolerance: 16 eps sqrt(60) of the residual's size,
    float64 rounding of the same sums."""
    A, U, S, Vh = exact_factors
    reference = float(np.linalg.norm(A - (U * (S + 1j)) @ Vh))
    got = residual_norm(A, (U, S + 1j, Vh))
    assert got == pytest.approx(reference, rel=16 * EPS64 * np.sqrt(60))
    assert reference > 1.9


def test_s_of_two_dimensions_is_a_shape_error(exact_factors):
    A, U, S, Vh = exact_factors
    with pytest.raises(ShapeError, match=r"candidate S must be 1-D"):
        residual_norm(A, (U, S[None, :], Vh))


@pytest.mark.parametrize("norm", ["fro", "spectral"])
def test_a_candidate_whose_product_overflows_is_refused(norm):
    """Finite factors whose product is 1e400: the Frobenius residual was inf, silently."""
    A = np.eye(2)
    candidate = (np.full((2, 1), 1e200), np.full((1, 2), 1e200))
    with pytest.raises(NonFiniteError, match=r"A - candidate .*overflows"):
        residual_norm(A, candidate, norm=norm)


# --- 5. LinearOperator without rmatvec -------------------------------------------------------


@pytest.mark.parametrize("method", OPERATOR_METHODS)
@pytest.mark.parametrize("norm_fro", [None, 1.0])
def test_operator_without_rmatvec_is_refused_at_validation(decaying, method, norm_fro):
    """Before: TypeError (randomized, lobpcg), NotImplementedError (arpack), SystemError
    (propack), all raw."""
    op = LinearOperator(decaying.shape, matvec=lambda x: decaying @ x, dtype=np.float64)
    with pytest.raises(InputError, match=r"LinearOperator without products by its conjugate"):
        truncated_svd(op, 3, method=method, rng=0, norm_fro=norm_fro)


# --- 6. singular_values of a LinearOperator --------------------------------------------------


def test_singular_values_of_an_operator_points_to_truncated_svd(decaying):
    """Before: ShapeError "A must be a 2-D matrix; got ndim=0"."""
    with pytest.raises(InputError, match=r"truncated_svd") as caught:
        singular_values(aslinearoperator(decaying))
    assert type(caught.value) is InputError


# --- 7. select_rank: energy is a Frobenius quantity ------------------------------------------


@pytest.mark.parametrize(
    ("norm", "extra"),
    [("nuclear", {}), ("spectral", {}), ("schatten", {"p": 3.0}), ("ky_fan", {"k": 1})],
)
def test_energy_with_another_norm_is_refused(norm, extra):
    """Before: the norm was ignored silently (energy 0.9 of [4, 3, 0.1] gave 2 whatever
    the norm)."""
    with pytest.raises(InputError, match=r"energy .* Frobenius norm only"):
        select_rank([4.0, 3.0, 0.1], energy=0.9, norm=norm, **extra)


def test_energy_with_the_frobenius_norm_is_unchanged():
    """Regression guard (passes on HEAD). Closed form: 16/26.01 = 0.615 < 0.9 <= 25/26.01."""
    assert select_rank([4.0, 3.0, 0.1], energy=0.9, norm="fro") == 2


# --- 8. singular_values under powers of two --------------------------------------------------


@pytest.mark.parametrize("k", [460, -470, 900, -1000])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lapack_values_scale_exactly_by_powers_of_two(k, dtype):
    """Entries beyond gesdd's unscaled range (max |a| outside 6.7e-139..1.5e138) were
    rescaled by LAPACK by a ratio that is not a power of two: values differed from
    2**k times those of W in the last bits. Reference: scipy.linalg.svd of W (inside the
    range), times 2**k; exact (no tolerance), as lowrank.rmt promises."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((30, 20))
    if dtype == np.complex128:
        W = W + 1j * rng.standard_normal((30, 20))
    reference = sla.svd(W, compute_uv=False, lapack_driver="gesdd")
    scaled = singular_values(W * 2.0**k)
    np.testing.assert_array_equal(np.ldexp(scaled, -k), reference)


@pytest.mark.parametrize("k", [50, -50])
def test_float32_lapack_values_scale_exactly_by_powers_of_two(k):
    """Single precision leaves LAPACK's unscaled range at 1.1e12 and 9.1e-13. Reference:
    float32 LAPACK on W, times 2**k; exact."""
    W = np.random.default_rng(7).standard_normal((30, 20)).astype(np.float32)
    reference = sla.svd(W, compute_uv=False, lapack_driver="gesdd").astype(np.float64)
    scaled = singular_values(W * np.float32(2.0**k), method="lapack")
    np.testing.assert_array_equal(scaled / 2.0**k, reference)


def test_sigma_one_beyond_float64_is_still_refused_without_a_warning():
    """Regression guard (passes on HEAD): finite entries whose sigma_1 (3e308, closed form
    for a 3 x 3 matrix of 1e308) exceeds float64. The suite turns lowrank's
    RuntimeWarnings into errors, so none may be emitted."""
    with pytest.raises(InputError, match=r"largest singular value exceeds the float64 range"):
        singular_values(np.full((3, 3), 1e308))


# --- 9. analysis of a matrix whose Frobenius norm overflows ----------------------------------


def test_analyze_matrix_refuses_a_frobenius_norm_beyond_float64():
    """diag(1.7e308, 1e308, 1): finite, numpy's values are exact, but ||A||_F = 1.97e308.
    Before: RankError "the target is not reached ... compute more of the spectrum"."""
    A = np.diag([1.7e308, 1e308, 1.0])
    message = r"Frobenius norm exceeds the float64 range"
    # np.errstate: metrics' nuclear norm warns of its overflow (a separate item).
    with np.errstate(over="ignore"), pytest.raises(InputError, match=message) as caught:
        analyze_matrix(A)
    assert type(caught.value) is InputError


def test_analyze_update_matrix_refuses_it_naming_the_matrix():
    A = np.diag([1.7e308, 1e308, 1.0])
    message = r"q_proj\.weight .*Frobenius norm exceeds"
    with np.errstate(over="ignore"), pytest.raises(InputError, match=message) as caught:
        analyze_update_matrix(A, np.zeros((3, 3)), name="q_proj.weight")
    assert type(caught.value) is InputError
