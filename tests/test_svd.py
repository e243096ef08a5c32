"""Truncated SVD against float64 LAPACK (numpy.linalg.svd), for every method.

Tolerances: a backward-stable SVD perturbs each singular value by about
eps * sqrt(max(m, n)) * sigma_1; `tolerance()` uses factor 16 for LAPACK's constants. The
iterative methods converge to their own tolerance (ARPACK/PROPACK: machine precision;
LOBPCG: looser, see the per-method rtol below).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from _spectra import haar, with_spectrum
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

from lowrank import (
    ConvergenceError,
    DTypeError,
    InputError,
    NonFiniteError,
    RankError,
    ShapeError,
    singular_values,
    truncated_svd,
)
from lowrank._numerics import tolerance
from lowrank.approx import residual_norm
from lowrank.svd import auto_method
from lowrank.testing import assert_orthonormal, assert_valid_svd

ml_dtypes = pytest.importorskip("ml_dtypes")


# Per-method accuracy on a well-separated spectrum: (rtol of the values, None for the
# backward-stable `tolerance`; factor of `tolerance` for orthonormality). Lanczos methods
# (ARPACK, PROPACK) keep orthogonality by selective/partial reorthogonalisation, which
# bounds the loss by sqrt(eps) in theory (PROPACK's partial reorthogonalisation reaches
# 6e-12 in float64 here, so its factor is 1/sqrt(eps): tolerance sqrt(eps * n)) and by a few
# hundred eps in practice for ARPACK; LOBPCG stops
# at its own residual tolerance, ~1e-5 relative with SciPy's defaults.
METHOD_TOL = {
    "exact": (None, 16.0),
    "randomized": (None, 16.0),
    "arpack": (None, 256.0),
    "propack": (None, "sqrt"),
    "lobpcg": (1e-5, 256.0),
}


def method_tol(method, dtype):
    rtol, factor = METHOD_TOL[method]
    if factor == "sqrt":
        factor = 1.0 / np.sqrt(np.finfo(dtype).eps)
    return rtol, factor


METHOD_SHAPES = [
    (method, shape)
    for method in ("exact", "randomized", "arpack", "propack", "lobpcg")
    for shape in ((40, 25), (25, 40), (30, 30), (1, 12), (12, 1))
    # svds' arpack and lobpcg need rank < min(m, n), impossible with a side of 1.
    if not (method in ("arpack", "lobpcg") and min(shape) == 1)
]


@pytest.mark.parametrize(("method", "shape"), METHOD_SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64])
def test_methods_match_lapack(method, shape, dtype, rng):
    m, n = shape
    k = min(m, n)
    s = 2.0 ** -np.arange(k, dtype=np.float64)  # fast decay: every method converges
    A = with_spectrum(rng, m, n, s, dtype=dtype)
    rank = 1 if k == 1 or method in ("arpack", "lobpcg") else min(3, k)
    if method in ("arpack", "lobpcg"):
        rank = min(3, k - 1)
    res = truncated_svd(A, rank, method=method, rng=1)
    assert res.method == method
    assert res.U.dtype == np.dtype(dtype)
    assert res.Vh.dtype == np.dtype(dtype)
    assert res.S.dtype == np.finfo(dtype).dtype
    rtol, factor = method_tol(method, dtype)
    assert_valid_svd(res, A, rank=rank, rtol=rtol, factor=factor)


@pytest.mark.parametrize("method", ["exact", "randomized"])
@pytest.mark.parametrize("shape", [(17, 9), (9, 17), (1, 5), (5, 1)])
def test_full_rank_and_zero_rank(method, shape, rng):
    A = rng.standard_normal(shape)
    k = min(shape)
    full = truncated_svd(A, k, method=method, rng=0)
    assert_valid_svd(full, A, rank=k)
    np.testing.assert_allclose(
        full.to_dense(), A, atol=tolerance(A.dtype, size=max(shape), scale=full.S[0])
    )
    assert full.residual_fro <= full.residual_fro_error + tolerance(
        A.dtype, size=max(shape), scale=full.norm_fro
    )
    zero = truncated_svd(A, 0, method=method)
    assert zero.U.shape == (shape[0], 0) and zero.S.shape == (0,) and zero.Vh.shape == (0, shape[1])
    assert zero.residual_fro == pytest.approx(np.linalg.norm(A), rel=1e-14)


def test_sign_rule_and_determinism(rng):
    A = rng.standard_normal((60, 45))
    for method in ("exact", "randomized", "arpack", "propack"):
        res = truncated_svd(A, 5, method=method, rng=3)
        idx = np.argmax(np.abs(res.U), axis=0)
        pivots = res.U[idx, np.arange(5)]
        assert np.all(pivots > 0), method
        again = truncated_svd(A, 5, method=method, rng=3)
        np.testing.assert_array_equal(res.U, again.U)
        np.testing.assert_array_equal(res.S, again.S)
    # The same rule makes different methods agree on the vectors themselves.
    exact = truncated_svd(A, 5, method="exact")
    for method in ("randomized", "arpack", "propack"):
        other = truncated_svd(
            A, 5, method=method, n_iter=20 if method == "randomized" else None, rng=0
        )
        np.testing.assert_allclose(other.U, exact.U, atol=1e-6)
        np.testing.assert_allclose(other.Vh, exact.Vh, atol=1e-6)


def test_complex_sign_rule(rng):
    A = with_spectrum(rng, 20, 15, np.linspace(3, 1, 15), dtype=np.complex128)
    res = truncated_svd(A, 4, method="exact")
    idx = np.argmax(np.abs(res.U), axis=0)
    pivots = res.U[idx, np.arange(4)]
    np.testing.assert_allclose(pivots.imag, 0, atol=1e-15)
    assert np.all(pivots.real > 0)
    assert_valid_svd(res, A, rank=4)


def test_randomized_different_seeds_differ_but_agree(rng):
    A = with_spectrum(rng, 300, 200, 1.0 / np.arange(1, 201))
    a = truncated_svd(A, 10, method="randomized", rng=1, n_iter=0, block_krylov=False)
    b = truncated_svd(A, 10, method="randomized", rng=2, n_iter=0, block_krylov=False)
    assert not np.array_equal(a.S, b.S)


@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_memory_layouts_agree(order, rng):
    base = rng.standard_normal((80, 60))
    if order == "C":
        A = np.ascontiguousarray(base)
    elif order == "F":
        A = np.asfortranarray(base)
    else:
        big = np.zeros((160, 120))
        big[::2, ::2] = base
        A = big[::2, ::2]
        assert not A.flags.c_contiguous
    for method in ("exact", "randomized"):
        res = truncated_svd(A, 6, method=method, rng=0)
        ref = truncated_svd(np.ascontiguousarray(base), 6, method=method, rng=0)
        np.testing.assert_allclose(res.S, ref.S, rtol=1e-12)
        np.testing.assert_allclose(res.U, ref.U, atol=1e-10)


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_extreme_scaling(scale, method, rng):
    A0 = with_spectrum(rng, 50, 40, np.linspace(2, 1, 40))
    A = A0 * scale
    res = truncated_svd(A, 5, method=method, rng=0)
    ref = truncated_svd(A0, 5, method=method, rng=0)
    np.testing.assert_allclose(res.S / scale, ref.S, rtol=1e-12)
    assert np.isfinite(res.norm_fro) and res.norm_fro > 0
    np.testing.assert_allclose(res.norm_fro / scale, np.linalg.norm(A0), rtol=1e-14)
    np.testing.assert_allclose(res.residual_fro / scale, ref.residual_fro, rtol=1e-10)


@pytest.mark.parametrize(
    ("dtype", "out"),
    [
        (np.float16, np.float32),
        ("bfloat16", np.float32),
        (np.int64, np.float64),
        (np.int8, np.float64),
        (np.uint16, np.float64),
    ],
)
def test_dtype_promotion(dtype, out, rng):
    dt = np.dtype(getattr(ml_dtypes, dtype) if isinstance(dtype, str) else dtype)
    A = (rng.standard_normal((30, 20)) * 10).astype(dt)
    res = truncated_svd(A, 4, method="exact")
    assert res.U.dtype == np.dtype(out) and res.S.dtype == np.dtype(out)
    # Singular values of the stored matrix, computed exactly in float64.
    expected = np.linalg.svd(A.astype(np.float64), compute_uv=False)[:4]
    np.testing.assert_allclose(res.S, expected, rtol=tolerance(out, size=30, factor=16))


def test_float32_stays_float32_end_to_end(rng):
    A = decaying(rng, 400, 300).astype(np.float32)
    for method in ("exact", "randomized", "arpack", "propack", "lobpcg"):
        res = truncated_svd(A, 5, method=method, rng=0)
        assert res.U.dtype == res.S.dtype == res.Vh.dtype == np.float32, method


def test_sparse_and_operator_inputs(rng):
    dense = sp.random(300, 200, density=0.05, random_state=4, format="csr")
    # A sparse part (sigma_1 ~ 6) plus a well-separated low-rank part on top of it.
    dense = dense + sp.csr_matrix(with_spectrum(rng, 300, 200, 100.0 * 0.5 ** np.arange(6)))
    A = dense.toarray()
    for method in ("randomized", "arpack", "propack", "lobpcg"):
        for form in (dense, sp.csr_array(dense), aslinearoperator(dense)):
            res = truncated_svd(form, 4, method=method, rng=0)
            assert_valid_svd(
                res,
                A,
                rank=4,
                rtol=method_tol(method, np.float64)[0],
                factor=method_tol(method, np.float64)[1],
            )
            assert res.norm_fro == pytest.approx(np.linalg.norm(A), rel=1e-12)
    exact = truncated_svd(dense, 4, method="exact")
    assert_valid_svd(exact, A, rank=4)
    assert truncated_svd(dense, 4).method == "randomized"


def test_operator_norm_given_or_computed(rng):
    A = rng.standard_normal((50, 30))
    op = aslinearoperator(A)
    computed = truncated_svd(op, 3, method="randomized", rng=0)
    assert computed.norm_fro == pytest.approx(np.linalg.norm(A), rel=1e-12)
    given_ = truncated_svd(op, 3, method="randomized", rng=0, norm_fro=123.0)
    assert given_.norm_fro == 123.0


def test_auto_method_choice():
    assert auto_method((100, 5000), 10) == "exact"
    assert auto_method((2000, 3000), 10) == "randomized"
    assert auto_method((2000, 3000), 600) == "exact"
    assert auto_method((2000, 3000), 10, kind="sparse") == "randomized"
    A = np.eye(300)
    assert truncated_svd(A, 3).method == "randomized"
    assert truncated_svd(A, 100).method == "exact"


def decaying(rng, m=400, n=300, rate=1.0):
    return with_spectrum(rng, m, n, 1.0 / np.arange(1, min(m, n) + 1) ** rate)


def test_randomized_default_accuracy_on_decaying_spectrum(rng):
    """Issue requirement: top-r values within 1e-4 relative of LAPACK in float64, defaults."""
    A = decaying(rng, 800, 600)
    ref = np.linalg.svd(A, compute_uv=False)
    for rank in (5, 20, 60):
        res = truncated_svd(A, rank, method="randomized", rng=0)
        rel = np.max(np.abs(res.S - ref[:rank]) / ref[:rank])
        assert rel <= 1e-4, (rank, rel)


def test_randomized_reported_residual_is_true_residual_on_flat_spectrum(rng):
    """On a Marchenko-Pastur (flat) matrix the sketch is far from optimal, but the residual
    it reports is the true one, to within its own rounding bound."""
    A = rng.standard_normal((500, 400)) / np.sqrt(500)
    for dtype in (np.float64, np.float32):
        Ad = A.astype(dtype)
        res = truncated_svd(Ad, 20, method="randomized", rng=0)
        true = residual_norm(Ad, res)
        assert abs(res.residual_fro - true) <= res.residual_fro_error, dtype
        # The bound is meaningful: far below the residual itself.
        assert res.residual_fro_error <= 1e-3 * true
        lower, upper = res.optimal_fro_bounds
        optimal = np.sqrt(np.sum(np.linalg.svd(Ad.astype(np.float64), compute_uv=False)[20:] ** 2))
        assert lower <= optimal * (1 + 1e-6) and optimal <= upper * (1 + 1e-6)
        assert res.excess_bound >= upper / optimal - 1 - 1e-6


def test_randomized_rank_deficient_and_oversampled_past_min_side(rng):
    A = with_spectrum(rng, 120, 90, [3.0, 2.0, 1.0])  # rank 3
    res = truncated_svd(A, 5, method="randomized", rng=0)
    assert_valid_svd(res, A, rank=5)
    np.testing.assert_allclose(res.S[3:], 0, atol=1e-13)
    small = rng.standard_normal((12, 8))
    res = truncated_svd(small, 6, method="randomized", n_iter=2, oversample=10, rng=0)
    assert_valid_svd(res, small, rank=6)
    assert res.diagnostics.oversample == 2


def test_exact_spectrum_and_optimality_bounds(rng):
    A = rng.standard_normal((30, 20))
    res = truncated_svd(A, 5, method="exact")
    s = np.linalg.svd(A, compute_uv=False)
    assert res.spectrum_complete
    np.testing.assert_allclose(res.spectrum, s, rtol=1e-13)
    opt = np.sqrt(np.sum(s[5:] ** 2))
    assert res.residual_fro == pytest.approx(opt, rel=1e-13)
    assert res.optimal_fro_bounds == (res.residual_fro, res.residual_fro)
    assert res.excess_bound == 0.0


def test_exact_falls_back_to_gesvd(monkeypatch, rng):
    A = rng.standard_normal((10, 8))
    calls = []
    real_svd = sla.svd

    def flaky(a, *args, **kwargs):
        calls.append(kwargs.get("lapack_driver"))
        if kwargs.get("lapack_driver") == "gesdd":
            raise np.linalg.LinAlgError("SVD did not converge")
        return real_svd(a, *args, **kwargs)

    monkeypatch.setattr("lowrank.svd._lapack.sla.svd", flaky)
    res = truncated_svd(A, 3, method="exact")
    assert calls == ["gesdd", "gesvd"]
    assert_valid_svd(res, A, rank=3)


def test_exact_raises_when_lapack_fails_twice(monkeypatch, rng):
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr("lowrank.svd._lapack.sla.svd", broken)
    with pytest.raises(ConvergenceError, match="gesdd and gesvd both failed"):
        truncated_svd(rng.standard_normal((5, 4)), 2, method="exact")
    with pytest.raises(ConvergenceError, match="LAPACK failed to converge"):
        singular_values(rng.standard_normal((5, 4)), method="lapack")


def test_svds_unconverged_triplets_are_refused(rng):
    # LOBPCG stops after SciPy's default 20 iterations; at r = 64 on a 1/i spectrum its
    # trailing values are off by ~3% (their residual 4e-4 against sigma_64 = 0.016), far
    # beyond sqrt(eps) * sigma_1 + eps**(1/4) * sigma (baselines.md: 2e-2 at 2048^2).
    A = decaying(rng, 600, 500)
    with pytest.raises(ConvergenceError, match=r"svds\(solver='lobpcg'\) returned an unconverged"):
        truncated_svd(A, 64, method="lobpcg", rng=0)


def test_zero_matrix_and_arpack_limits(rng):
    """The zero matrix has a trivial SVD (ARPACK would fail on its zero start vector);
    complex ARPACK needs rank < min - 1 (SciPy's eigs)."""
    for method in ("exact", "randomized", "arpack", "propack", "lobpcg"):
        res = truncated_svd(np.zeros((6, 5)), 2, method=method)
        assert res.method == method
        np.testing.assert_array_equal(res.S, 0.0)
        assert_orthonormal(res.U, name="U")
        assert res.residual_fro == 0.0 and res.excess_bound == 0.0
    Z = rng.standard_normal((6, 5)) + 1j * rng.standard_normal((6, 5))
    with pytest.raises(InputError, match=r"method='arpack' on complex input needs rank < "):
        truncated_svd(Z, 4, method="arpack")
    assert_valid_svd(truncated_svd(Z, 3, method="arpack", rng=0), Z, rank=3, factor=256.0)


def test_svds_convergence_error_is_wrapped(rng):
    # PROPACK's default kmax = 10k is too small for a small k on a flat spectrum
    # (measured in ../shared/research/baselines.md); the error must be ours.
    A = rng.standard_normal((1024, 1024)) / 32.0
    with pytest.raises(ConvergenceError, match=r"svds\(solver='propack'\) did not converge"):
        truncated_svd(A, 8, method="propack", rng=0)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("A", "error", "match"),
    [
        (np.ones(5), ShapeError, r"A must be a 2-D matrix; got ndim=1"),
        (np.ones((2, 3, 4)), ShapeError, r"got ndim=3"),
        (np.ones((0, 3)), ShapeError, r"A must not be empty; got shape \(0, 3\)"),
        (np.array([[1.0, np.nan]]), NonFiniteError, r"finite values; got 1 NaN or infinite entry"),
        (np.array([[np.inf, np.nan]]), NonFiniteError, r"got 2 NaN or infinite entries"),
        (np.ones((2, 2), dtype=bool), DTypeError, r"numeric dtype .*; got bool"),
        (np.array([["a", "b"]]), DTypeError, r"numeric dtype .*; got str"),
        (np.array([[object()]]), DTypeError, r"numeric dtype .*; got object"),
        (np.ones((2, 2), dtype=np.longdouble), DTypeError, r"LAPACK does not support"),
        ([[1.0, 2.0], [3.0]], InputError, r"A could not be read as an array"),
    ],
)
def test_bad_matrices(A, error, match):
    with pytest.raises(error, match=match):
        truncated_svd(A, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_non_finite_entry_found_by_the_norm(dtype, bad, layout):
    """For contiguous input the Frobenius norm is the finiteness check: one NaN or infinite
    entry anywhere, in either part of a complex entry, still gets the counted error."""
    A = np.ones((40, 30), dtype=dtype)
    A[17, 11] = bad if np.dtype(dtype).kind == "f" else complex(1.0, bad)
    A = {"C": A, "F": np.asfortranarray(A), "strided": A[:, ::2]}[layout]
    if layout == "strided":
        A[3, 4] = bad  # the strided view misses column 11
    with pytest.raises(NonFiniteError, match=r"got 1 NaN or infinite entry out of"):
        truncated_svd(A, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_dense_norm_across_chunks(rng, dtype):
    """The chunked float64 accumulation of ||A||_F (chunks of 2**20 elements, so this
    matrix spans two) against NumPy's norm in float64/complex128: a sum of 1.2e6 squares in
    float64 is accurate to well below 1e-12 relative, whatever the input precision."""
    A = rng.standard_normal((1100, 1100)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        A = A + 1j * A[::-1]
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    res = truncated_svd(A, 1, method="randomized", rng=0)
    assert res.norm_fro == pytest.approx(np.linalg.norm(A.astype(wide)), rel=1e-12)


def test_bad_sparse_and_operator_inputs():
    bad = sp.csr_matrix(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(NonFiniteError, match="finite values"):
        truncated_svd(bad, 1)
    with pytest.raises(ShapeError, match="must not be empty"):
        truncated_svd(sp.csr_matrix((0, 4)), 0)
    with pytest.raises(InputError, match="method='exact' needs an array"):
        truncated_svd(aslinearoperator(np.eye(4)), 1, method="exact")
    with pytest.raises(InputError, match="norm_fro must be finite and >= 0"):
        truncated_svd(aslinearoperator(np.eye(4)), 1, norm_fro=-1.0)


@pytest.mark.parametrize(
    ("rank", "error", "match"),
    [
        (-1, RankError, r"rank must satisfy 0 <= rank <= min\(A.shape\) = 3; got -1"),
        (4, RankError, r"rank must satisfy 0 <= rank <= min\(A.shape\) = 3; got 4"),
        (1.0, RankError, r"rank must be an integer; got 1.0 of type float"),
        (True, RankError, r"rank must be an integer; got True"),
        ("2", RankError, r"rank must be an integer; got '2'"),
    ],
)
def test_bad_ranks(rank, error, match):
    with pytest.raises(error, match=match):
        truncated_svd(np.ones((3, 5)), rank)


def test_bad_options():
    A = np.eye(4)
    with pytest.raises(InputError, match=r"method must be one of .*; got 'qr'"):
        truncated_svd(A, 1, method="qr")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"method='arpack' needs rank < min\(A.shape\) = 4"):
        truncated_svd(A, 4, method="arpack")
    with pytest.raises(InputError, match=r"oversample must be >= 0; got -1"):
        truncated_svd(A, 1, oversample=-1)
    with pytest.raises(InputError, match=r"n_iter must be an integer"):
        truncated_svd(A, 1, n_iter=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"rng must be None, an int seed"):
        truncated_svd(A, 1, rng="seed")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"rng seed must be a non-negative integer; got -3"):
        truncated_svd(A, 1, rng=-3)
    with pytest.raises(InputError, match=r"method must be one of"):
        singular_values(A, method="qr")  # type: ignore[arg-type]


# --- singular values only --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_singular_values_gram_and_lapack(dtype, rng):
    A = with_spectrum(rng, 70, 50, np.geomspace(1e3, 1e-2, 50), dtype=dtype)
    ref = np.linalg.svd(
        A.astype(np.complex128 if A.dtype.kind == "c" else np.float64), compute_uv=False
    )
    for method in ("auto", "lapack", "gram"):
        s = singular_values(A, method=method)
        assert s.dtype == np.float64 and s.shape == (50,)
        # Gram route: absolute error ~ eps64 * sqrt(n) * sigma_1^2 / sigma_i, tiny here;
        # LAPACK in the input's precision: eps(dtype) * sqrt(n) * sigma_1.
        single = np.finfo(dtype).bits <= 32
        used = "gram" if method == "gram" or (method == "auto" and single) else "lapack"
        eps_dtype = np.float64 if used == "gram" else dtype
        tol = tolerance(eps_dtype, size=70, scale=ref[0])
        np.testing.assert_allclose(s, ref, atol=tol * (ref[0] / ref[-1] if used == "gram" else 1))
    np.testing.assert_allclose(singular_values(A.T), singular_values(A), rtol=1e-6)
    np.testing.assert_allclose(singular_values(sp.csr_matrix(A)), singular_values(A), rtol=1e-12)


# --- properties -------------------------------------------------------------------------


@given(
    m=st.integers(1, 12),
    n=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_property_orthonormal_and_invariant(m, n, seed, data):
    """U, V orthonormal; singular values invariant under transposition and orthogonal maps."""
    gen = np.random.default_rng(seed)
    A = gen.standard_normal((m, n))
    rank = data.draw(st.integers(0, min(m, n)))
    res = truncated_svd(A, rank, method="exact")
    assert_orthonormal(res.U, name="U")
    assert_orthonormal(res.Vh.T, name="V")
    Q1, Q2 = haar(gen, m, m), haar(gen, n, n)
    tol = tolerance(np.float64, size=max(m, n), scale=max(res.spectrum[0], 1e-300))
    np.testing.assert_allclose(singular_values(Q1 @ A @ Q2), res.spectrum, atol=tol)
    np.testing.assert_allclose(singular_values(A.T), res.spectrum, atol=tol)


def test_two_stage_eigensolver_agrees_with_lapack(monkeypatch, rng):
    """The two-stage path of the Gram route (used from order 2048 on), forced on a small
    matrix, must be taken (no fallback to eigvalsh) and match float64 LAPACK. Tolerance: the
    Gram eigenvalues' absolute error is about eps64 * sigma_1^2, so sigma_i is off by about
    eps64 * sigma_1 * (sigma_1 / sigma_i) <= eps64 * sigma_1 * 1e3 with these column scales."""
    from lowrank.svd import _values

    if _values._two_stage_eigvalsh() is None:
        pytest.skip("this NumPy build does not export LAPACKE dsyev_2stage")
    monkeypatch.setattr(_values, "_TWO_STAGE_MIN", 2)
    calls = []
    real = _values._two_stage_eigvalsh()

    def counting(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(_values, "_two_stage_eigvalsh", lambda: counting)

    def no_fallback(*args, **kwargs):
        raise AssertionError("the two-stage result was rejected")

    monkeypatch.setattr(np.linalg, "eigvalsh", no_fallback)
    A = rng.standard_normal((300, 120)) * np.logspace(0, -3, 120)
    s = singular_values(A.astype(np.float32), method="gram")
    ref = np.linalg.svd(A.astype(np.float32).astype(np.float64), compute_uv=False)
    assert calls == [120]
    np.testing.assert_allclose(s, ref, rtol=0, atol=1e3 * np.finfo(np.float64).eps * ref[0])


@pytest.mark.parametrize(
    ("size", "count"), [(1, 1), (2, 1), (7, 3), (130, 8), (300, 60), (300, 300)]
)
def test_tridiagonal_eigenpairs_agree_with_lapack_drivers(rng, size, count):
    """Eigenvalues and top eigenpairs from one dsytrd reduction in NumPy's OpenBLAS
    (dsterf; dstedc and dormtr) against SciPy's syevr and numpy's syevd: values to
    16 eps ||G|| (all backward stable), vectors by their residual
    ||G w - lambda w|| <= 16 eps sqrt(n) ||G|| and orthonormality to 16 eps sqrt(n)."""
    import scipy.linalg as sla

    from lowrank.svd._numpy_lapack import tridiagonalize

    B = rng.standard_normal((size, size + 5)) * np.logspace(0, -6, size + 5)
    G = B @ B.T
    before = G.copy()
    reduced = tridiagonalize(G)
    assert reduced is not None
    norm = float(np.linalg.norm(before, 2))
    eps = float(np.finfo(np.float64).eps)
    values = reduced.eigenvalues()
    np.testing.assert_allclose(values, np.linalg.eigvalsh(before), rtol=0, atol=16 * eps * norm)
    lam, W = reduced.top_eigenpairs(count)
    expected = sla.eigh(before, subset_by_index=[size - count, size - 1], eigvals_only=True)
    np.testing.assert_allclose(lam, expected, rtol=0, atol=16 * eps * norm)
    assert W.shape == (size, count)
    assert np.linalg.norm(before @ W - W * lam) <= 16 * eps * np.sqrt(size) * norm
    assert np.linalg.norm(W.T @ W - np.eye(count)) <= 16 * eps * np.sqrt(size)
    # Both can be asked again: the reduction is not consumed.
    np.testing.assert_array_equal(reduced.eigenvalues(), values)
    np.testing.assert_array_equal(reduced.top_eigenpairs(count)[1], W)


def test_tridiagonalize_takes_only_real_square_float64():
    from lowrank.svd._numpy_lapack import tridiagonalize

    assert tridiagonalize(np.eye(3, dtype=np.complex128)) is None
    assert tridiagonalize(np.eye(3, dtype=np.float32)) is None
    assert tridiagonalize(np.ones((3, 4))) is None
    assert tridiagonalize(np.full((3, 3), np.nan)) is None


def test_failed_tridiagonal_eigenvectors_fall_back_to_the_gram_matrix(rng):
    """A reduction whose eigenvectors LAPACK cannot give (here a NaN on its diagonal) is
    replaced by syevd on the Gram matrix of B, recomputed (the reduction overwrote it)."""
    from lowrank.svd._krylov import _gram_top_eigenpairs
    from lowrank.svd._numpy_lapack import Tridiagonal

    B = rng.standard_normal((20, 24))
    broken = Tridiagonal(np.zeros((20, 20)), np.zeros(19), np.full(20, np.nan), np.zeros(19))
    assert broken.top_eigenpairs(4) is None
    lam, W = _gram_top_eigenpairs(broken, B, 4)
    G = B @ B.T
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(G)[-4:], rtol=1e-13)
    assert np.linalg.norm(G @ W - W * lam) <= 1e-12 * np.linalg.norm(G, 2)


def test_complex_gram_eigenpairs_come_from_syevd(rng):
    from lowrank.svd._krylov import _gram_eigenvalues, _gram_top_eigenpairs

    B = rng.standard_normal((20, 24)) + 1j * rng.standard_normal((20, 24))
    G = B @ B.conj().T
    lam_all, reduced = _gram_eigenvalues(G.copy())
    np.testing.assert_allclose(lam_all, np.linalg.eigvalsh(G), rtol=1e-13)
    lam, W = _gram_top_eigenpairs(reduced, B, 4)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(G)[-4:], rtol=1e-13)
    assert np.linalg.norm(G @ W - W * lam) <= 1e-12 * np.linalg.norm(G, 2)


@pytest.mark.parametrize("method", ["auto", "randomized", "arpack", "propack", "lobpcg"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_an_operator_that_returns_nan_gets_a_clear_error(method, bad):
    """A LinearOperator is not validated up front; its first non-finite product is refused
    (before: NumPy's "Eigenvalues did not converge" from inside the method)."""
    A = np.ones((30, 20))
    A[0, 0] = bad
    with pytest.raises(NonFiniteError, match="LinearOperator A returned NaN or infinity"):
        truncated_svd(aslinearoperator(A), 2, method=method, rng=0)
    # With its norm given, the method's own products meet it.
    with pytest.raises(NonFiniteError, match="LinearOperator A returned NaN or infinity"):
        truncated_svd(aslinearoperator(A), 2, method=method, rng=0, norm_fro=30.0)


@pytest.mark.parametrize("method", ["randomized", "arpack", "propack", "lobpcg"])
def test_excess_bound_is_never_below_the_true_excess(method):
    """A residual far below rounding (0.5**i, rank 30 of 40: optimum 1e-9 sigma_1): the
    Pythagorean residual cancels, to 0 at times, so the bound must carry its rounding. Before,
    the svds methods reported excess_bound = 0 where the true excess was 0.14 (rank 30) and
    1.6 (LOBPCG at rank 33). Reference: the float64 residual of the factors against the
    LAPACK optimum, less the residual's own rounding (16 eps sqrt(n) sigma_1)."""
    rng = np.random.default_rng(4)
    A = with_spectrum(rng, 40, 200, 0.5 ** np.arange(40))
    res = truncated_svd(A, 30, method=method, rng=0)
    optimum = float(np.sqrt(np.sum(np.linalg.svd(A, compute_uv=False)[30:] ** 2)))
    slack = 16 * np.finfo(np.float64).eps * np.sqrt(200) * 1.0
    true_excess = max(residual_norm(A, res) - slack, 0.0) / optimum - 1.0
    assert res.excess_bound >= true_excess
    lower, upper = res.optimal_fro_bounds
    assert lower <= optimum <= upper + slack


@pytest.mark.parametrize(
    "options",
    [
        {"n_iter": 2, "block_size": 1},
        {"n_iter": 2, "block_size": 3},
        {"max_iter": 0, "block_size": 1},
        {"max_iter": 3, "block_size": 1},
        {"max_iter": 1, "block_size": 4},
    ],
)
def test_a_krylov_space_too_small_for_the_rank_is_refused(options):
    """block_size * (steps) < rank used to return fewer triplets than asked (3 for rank 10)
    without an error; a space that spans the smaller side is exact and allowed."""
    A = np.random.default_rng(0).standard_normal((200, 100))
    with pytest.raises(InputError, match=r"too few for rank=10; raise block_size or"):
        truncated_svd(A, 10, method="randomized", rng=0, **options)
    small = np.random.default_rng(0).standard_normal((200, 6))
    res = truncated_svd(small, 6, method="randomized", rng=0, n_iter=1, block_size=3)
    assert res.S.shape == (6,) and res.U.shape == (200, 6)
