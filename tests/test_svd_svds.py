r"""The ``svds`` methods (``"arpack"``, ``"propack"``, ``"lobpcg"``) of :func:`truncated_svd`,
each result checked against float64 LAPACK on the upcast matrix.

What ``converged=True`` promises for these methods (``lowrank.svd._svds``): after a final
Rayleigh–Ritz step, ``U`` and ``V`` are orthonormal and :math:`U^HAV = \operatorname{diag}(S)`
to working precision; every triplet's residual is at most
:math:`\ell_i = \sqrt\varepsilon\,\sigma_1` (plus :math:`\varepsilon^{1/4}\sigma_i` for
LOBPCG); and a randomized Lanczos run on the deflated matrix found no singular value above
``S[-1]``. Tolerances, with :math:`\tau` = ``tolerance(dtype, size=max(m, n), scale=sigma_1)``
(16 eps sqrt(max(m, n)) sigma_1, the rounding of one product with ``A``):

* orthonormality: ``assert_orthonormal``'s :math:`16\varepsilon\sqrt m` — ``U`` comes from
  LAPACK's SVD of the block :math:`AV` and ``V`` from a Householder QR times a unitary
  matrix, both orthonormal to a few :math:`\varepsilon` before the cast to the result's dtype,
  which adds at most :math:`\varepsilon` per entry of :math:`U^HU`;
* :math:`|U^HAV - \operatorname{diag}(S)|_{\max} \le \tau`: zero in exact arithmetic after
  Rayleigh–Ritz, so only the rounding of the products and of the cast remains;
* values: :math:`|S_i - \sigma_i| \le 3\,(\sum_i \ell_i^2)^{1/2} + \tau`. The residual
  blocks :math:`E` satisfy :math:`\|E_L\|_2 + \|E_R\|_2 \le \sqrt2\,\|(\rho_i)\|_2`,
  so by Weyl the values are within that of the union of ``S`` and the deflated matrix's values,
  and the missed-value check allows twice that plus :math:`\tau` above ``S[-1]``
  (see ``_svds._check_deflated``); :math:`3\sqrt2 < 5`, hence ``5 *`` below, the bound
  the module documents. A missed copy of a value is off by the gap, orders of magnitude
  more.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from _spectra import with_spectrum
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrank import ConvergenceError, truncated_svd
from lowrank._numerics import compute_eps, tolerance
from lowrank._operator import dense_input
from lowrank.svd._svds import scipy_svds
from lowrank.testing import assert_orthonormal

SOLVERS = ("arpack", "propack", "lobpcg")
MISSED = r"svds\(solver='propack'\) missed a singular value: .* > S\[-1\] = "


def wide(A: np.ndarray) -> np.ndarray:
    return A.astype(np.complex128 if A.dtype.kind == "c" else np.float64)


def value_bound(solver: str, dtype, S_ref: np.ndarray, shape) -> np.ndarray:
    """``5 * ||(l_i)||_2 + tau`` of the module docstring, for each value."""
    eps = compute_eps(dtype)
    sigma1 = float(S_ref[0])
    limits = np.full(S_ref.shape, math.sqrt(eps) * sigma1)
    if solver == "lobpcg":
        limits = limits + eps**0.25 * S_ref
    tau = tolerance(dtype, size=max(shape), scale=sigma1)
    # ||limits||_2 scaled by sigma_1 first: at 1e-300 the squares would underflow.
    spread = sigma1 * float(np.linalg.norm(limits / sigma1))
    return np.full(S_ref.shape, 5.0 * spread + tau)


def check_result(res, A: np.ndarray, rank: int, solver: str) -> None:
    """Orthonormal factors, ``U^H A V = diag(S)`` and leading values, against LAPACK."""
    dtype = A.dtype
    assert res.U.dtype == dtype and res.Vh.dtype == dtype
    assert res.S.dtype == np.finfo(dtype).dtype
    assert res.converged is True and res.method == solver
    assert_orthonormal(res.U, name="U")
    assert_orthonormal(res.Vh.conj().T, name="V")
    a64 = wide(A)
    S_ref = sla.svdvals(a64)
    sigma1 = float(S_ref[0])
    core = wide(res.U).conj().T @ a64 @ wide(res.Vh).conj().T
    off = np.abs(core - np.diag(res.S.astype(np.float64))).max()
    tau = tolerance(dtype, size=max(A.shape), scale=sigma1)
    assert off <= tau, f"{solver}: max |U^H A V - diag(S)| = {off:.3g} > {tau:.3g}"
    err = np.abs(res.S.astype(np.float64) - S_ref[:rank])
    bound = value_bound(solver, dtype, S_ref[:rank], A.shape)
    assert np.all(err <= bound), f"{solver}: |S - sigma| = {err} > {bound} (S = {res.S})"


def leading_or_refused(A: np.ndarray, rank: int, solver: str, seed: int) -> str:
    """Either a ``ConvergenceError`` or the correct leading triplets; says which."""
    try:
        res = truncated_svd(A, rank, method=solver, rng=seed)
    except ConvergenceError as exc:
        message = str(exc)
    else:
        check_result(res, A, rank, solver)
        return "correct"
    assert f"solver={solver!r}" in message
    assert "method='randomized' or method='exact'" in message
    return "refused"


def repeated_top(seed: int = 0) -> np.ndarray:
    """The audit's matrix: singular values [1, 1, 1, 0.5 * 0.9**i], 300 x 280."""
    rng = np.random.default_rng(seed)
    s = np.r_[1.0, 1.0, 1.0, 0.5 * 0.9 ** np.arange(60)]
    return with_spectrum(rng, 300, 280, s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_propack_missed_repeated_top_value_is_refused(seed):
    """PROPACK returns S = [1, 1, 0.5] here (each a true singular triplet, but not the
    leading three); the deflated matrix still has singular value 1 > 0.5."""
    A = repeated_top()
    with pytest.raises(ConvergenceError, match=MISSED):
        truncated_svd(A, 3, method="propack", rng=seed)


@pytest.mark.parametrize("solver", SOLVERS)
def test_repeated_top_value_refused_or_correct(solver):
    assert leading_or_refused(repeated_top(), 3, solver, seed=0) in ("refused", "correct")


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", ["tiny_tail", "geometric"])
def test_factors_orthonormal_and_values_consistent(solver, case):
    """The audit's cases: five 1s and forty 1e-10s at rank 8 (PROPACK's U was off by 4e-4
    from orthonormal, ARPACK's values 6-8 were 3.9e-11 for 1e-10), and 0.7**i (PROPACK's
    U^T U - I was 5.6e-10)."""
    rng = np.random.default_rng(0)
    if case == "tiny_tail":
        A = with_spectrum(rng, 300, 260, np.r_[np.ones(5), 1e-10 * np.ones(40)])
    else:
        A = with_spectrum(rng, 300, 260, 0.7 ** np.arange(45))
    assert leading_or_refused(A, 8, solver, seed=0) in ("refused", "correct")
    if case == "geometric":  # well separated: every solver must succeed
        check_result(truncated_svd(A, 8, method=solver, rng=0), A, 8, solver)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.complex128])
def test_single_precision_and_complex_keep_their_dtype(solver, dtype):
    """float32 in, float32 out (and complex stays complex), with the Rayleigh–Ritz step
    computed in double precision: orthonormal to the dtype's own tolerance; on the
    repeated-top matrix too, where PROPACK misses a copy."""
    rng = np.random.default_rng(3)
    A = with_spectrum(rng, 200, 150, 0.7 ** np.arange(60), dtype=dtype)
    check_result(truncated_svd(A, 5, method=solver, rng=0), A, 5, solver)
    B = repeated_top().astype(dtype)
    assert leading_or_refused(B, 3, solver, seed=0) in ("refused", "correct")


def _outcome(A, rank, solver, rng):
    try:
        res = truncated_svd(A, rank, method=solver, rng=rng)
    except ConvergenceError as exc:
        return str(exc)
    return res


@pytest.mark.parametrize("solver", SOLVERS)
def test_deterministic_given_rng(solver):
    """The same seed (int or Generator) gives bit-identical results, and the randomized
    missed-value check the same verdict, message included."""
    for A, rank in (
        (repeated_top(), 3),
        (with_spectrum(np.random.default_rng(5), 120, 90, 0.8 ** np.arange(50)), 4),
    ):
        first = _outcome(A, rank, solver, 7)
        second = _outcome(A, rank, solver, np.random.default_rng(7))
        if isinstance(first, str):
            assert first == second
            continue
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)
        check_result(first, A, rank, solver)


@pytest.mark.parametrize(
    ("solver", "exponent"),
    [("lobpcg", e) for e in (-200, -250, -300)] + [("propack", e) for e in (-300, -305)],
)
def test_tiny_scale_refused_or_correct(solver, exponent):
    """The audit's matrices at 1e-200 .. 1e-305: the squared residuals underflowed to 0,
    and LOBPCG (relative error 0.96) and PROPACK at 1e-305 (0.31) passed."""
    rng = np.random.default_rng(0)
    A = with_spectrum(rng, 300, 280, 0.8 ** np.arange(40)) * 10.0**exponent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's own underflow and convergence warnings
        assert leading_or_refused(A, 5, solver, seed=0) in ("refused", "correct")


@pytest.mark.parametrize(
    ("solver", "exponent"),
    [("lobpcg", e) for e in (-30, -200, -300)] + [("propack", e) for e in (-300, -305)],
)
def test_residual_check_is_scale_free(solver, exponent):
    """The check on its own, without the prescaling ``truncated_svd`` applies: ``svds`` on
    the unscaled matrix, whose squared residuals (1e-600) underflowed to 0 in the old check."""
    rng = np.random.default_rng(0)
    A = with_spectrum(rng, 300, 280, 0.8 ** np.arange(40)) * 10.0**exponent
    ref = sla.svdvals(A)[:5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = scipy_svds(dense_input(A), 5, solver, np.random.default_rng(0))
        except ConvergenceError as exc:
            message = str(exc)
        else:
            message = ""
    if message:
        assert f"solver={solver!r}" in message
        return
    err = np.abs(res.S - ref)
    bound = value_bound(solver, A.dtype, ref, A.shape)
    assert np.all(err <= bound), f"{solver} at 1e{exponent}: |S - sigma| = {err} > {bound}"


@st.composite
def repeated_top_matrices(draw):
    """A top value of multiplicity 2-4 ending at or beyond the rank, then a gap (factor
    0.2-0.9) and a geometric tail; Haar singular vectors."""
    multiplicity = draw(st.integers(2, 4))
    rank = draw(st.integers(max(1, multiplicity - 2), multiplicity))
    top = draw(st.sampled_from([1.0, 3.0, 1e-3]))
    gap = draw(st.floats(0.2, 0.9))
    ratio = draw(st.floats(0.5, 0.95))
    tail = draw(st.integers(20, 50))
    m = draw(st.integers(80, 160))
    n = draw(st.integers(70, 140))
    seed = draw(st.integers(0, 2**32 - 1))
    s = top * np.r_[np.ones(multiplicity), gap * ratio ** np.arange(tail)]
    A = with_spectrum(np.random.default_rng(seed), m, n, s)
    return A, rank, draw(st.integers(0, 2**16))


@pytest.mark.parametrize("solver", SOLVERS)
@settings(max_examples=25)
@given(case=repeated_top_matrices())
def test_repeated_top_value_law(solver, case):
    """For a repeated top value at or across the rank: a ConvergenceError or the correct
    leading values, never a missed copy reported as converged."""
    A, rank, seed = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        leading_or_refused(A, rank, solver, seed)
