"""The strategies of lowrank.testing: they generate what they promise, shrink to simple
examples, stay within their bounds, and reject bad arguments at once.

Tolerances: a matrix built as U diag(S) Vh in float64 and rounded once to its dtype has
singular values within `case.spectrum_tolerance` = 16 eps(dtype) sqrt(max(m, n)) S[0] of S
(Weyl: the rounding moves each value by at most u ||A||_F <= u sqrt(k) S[0]); spectra are
built in log space, so ratios such as a condition number are exact to a few float64 ulps
(rel 1e-12).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from lowrank import singular_values
from lowrank.errors import DTypeError, InputError, NonFiniteError, ShapeError
from lowrank.testing import (
    LoRAFactors,
    MatrixWithSpectrum,
    NoisyLowRank,
    assert_orthonormal,
    assert_singular_values_close,
)
from lowrank.testing import strategies as lst
from lowrank.testing.cases import (
    haar_orthonormal,
    householder_orthonormal,
    matrix_with_spectrum,
    random_lora_factors,
    weight_like_matrix,
)

ml_dtypes = pytest.importorskip("ml_dtypes")

# `find` without the example database, so that shrinking results do not depend on past runs.
QUIET = settings(database=None, max_examples=200)


def minimal(strategy, condition=lambda x: True):
    return find(strategy, condition, settings=QUIET)


def svd_values(A: np.ndarray) -> np.ndarray:
    wide = np.complex128 if A.dtype.kind == "c" else np.float64
    return np.linalg.svd(A.astype(wide), compute_uv=False)


# --------------------------------------------------------------------------- spectra


@given(data=st.data(), size=st.integers(0, 12))
def test_spectra_are_descending_nonnegative_and_bounded(data, size):
    max_condition = data.draw(st.sampled_from([10.0, 1e3, 1e6]), label="max_condition")
    s = data.draw(lst.spectra(size, max_condition=max_condition))
    assert s.shape == (size,) and s.dtype == np.float64
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    nonzero = s[s > 0]
    if nonzero.size:
        assert nonzero[0] == 1.0  # scale defaults to sigma_1 = 1
        assert nonzero[0] / nonzero[-1] <= max_condition * (1 + 1e-12)
    # Zeros are exact zeros, and only at the end.
    assert np.all(s[nonzero.size :] == 0.0)


@given(data=st.data(), size=st.integers(2, 10), kappa=st.floats(1.0, 1e8))
def test_spectra_condition_number_is_exact(data, size, kappa):
    s = data.draw(lst.spectra(size, condition_number=kappa))
    assert np.all(s > 0), "condition_number implies full rank unless rank is given"
    assert s[0] / s[-1] == pytest.approx(kappa, rel=1e-12)


@given(data=st.data(), size=st.integers(2, 10), ratio=st.floats(1.0, 1e4))
def test_spectra_gap_is_exact(data, size, ratio):
    g = data.draw(st.integers(1, size - 1), label="g")
    s = data.draw(lst.spectra(size, gap=(g, ratio)))
    assert s[g] > 0
    assert s[g - 1] / s[g] == pytest.approx(ratio, rel=1e-12)


@given(data=st.data(), size=st.integers(3, 10))
def test_spectra_gap_and_condition_number_together(data, size):
    g = data.draw(st.integers(1, size - 1), label="g")
    s = data.draw(lst.spectra(size, gap=(g, 10.0), condition_number=1e4))
    assert s[g - 1] / s[g] == pytest.approx(10.0, rel=1e-12)
    assert s[0] / s[-1] == pytest.approx(1e4, rel=1e-12)


@given(data=st.data(), size=st.integers(1, 10))
def test_spectra_rank_and_scale(data, size):
    rank = data.draw(st.integers(0, size), label="rank")
    s = data.draw(lst.spectra(size, rank=rank, scale=st.floats(1e-100, 1e100)))
    assert np.count_nonzero(s) == rank
    assert np.all(s[rank:] == 0)
    if rank:
        assert 1e-100 <= s[0] <= 1e100


@given(data=st.data(), size=st.integers(2, 10))
def test_spectra_kinds_have_their_shape(data, size):
    s = data.draw(lst.spectra(size, kinds="flat", rank=size))
    assert np.all(s == 1.0)
    s = data.draw(lst.spectra(size, kinds="exponential", rank=size))
    ratios = s[1:] / s[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    s = data.draw(lst.spectra(size, kinds="power_law", rank=size))
    exponents = -np.log(s[1:]) / np.log(np.arange(2, size + 1))
    np.testing.assert_allclose(exponents, exponents[0], rtol=1e-9)
    assert exponents[0] > 0
    s = data.draw(lst.spectra(size, kinds="clustered", rank=size))
    assert np.all(s > 0) and np.all(np.diff(s) <= 0)


def test_spectra_clustered_gives_exact_repeats_and_separate_clusters():
    s = minimal(
        lst.spectra(6, kinds="clustered", rank=6),
        lambda s: len(set(s.tolist())) == 2 and s[0] == s[2],
    )
    assert s[0] == s[1] == s[2] and s[0] > s[-1]
    # Nearly equal (not exactly repeated) values are generated too.
    s = minimal(lst.spectra(4, kinds="clustered", rank=4), lambda s: 0 < s[0] - s[1] < 1e-6)
    assert 0 < s[0] - s[1] < 1e-6


def test_spectra_shrink_to_ones_and_few_zeros():
    np.testing.assert_array_equal(minimal(lst.spectra(4)), np.ones(4))
    np.testing.assert_array_equal(minimal(lst.spectra(4), lambda s: s[-1] == 0), [1, 1, 1, 0])
    # A decaying spectrum shrinks to the power law 1/i^2.
    s = minimal(lst.spectra(5), lambda s: s[-1] > 0 and s[0] / s[-1] > 10)
    np.testing.assert_allclose(s, 1.0 / np.arange(1, 6) ** 2, rtol=1e-12)


# --------------------------------------------------------------------------- matrices


@given(case=lst.matrices_with_spectrum(dtype=lst.svd_dtypes()))
def test_matrices_have_the_spectrum_they_report(case: MatrixWithSpectrum):
    m, n = case.shape
    assert 1 <= m <= 8 and 1 <= n <= 8  # default bounds
    assert case.A.dtype == case.dtype and case.dtype.name in lst.SVD_DTYPES
    assert case.S.shape == (min(m, n),) and np.all(np.diff(case.S) <= 0)
    assert_singular_values_close(svd_values(case.A), case.S, dtype=case.dtype, size=max(m, n))
    # The exact factors are orthonormal in float64 and reproduce A to its rounding.
    assert_orthonormal(case.U, name="U")
    assert_orthonormal(case.Vh.conj().T, name="V")
    err = np.max(np.abs(case.truncation(min(m, n)) - case.A))
    assert err <= case.spectrum_tolerance
    assert case.rank == np.count_nonzero(case.S)


@given(case=lst.matrices_with_spectrum(dtype=lst.svd_dtypes(), factors="haar"))
def test_complex_matrices_get_unitary_factors(case):
    if case.dtype.kind == "c":
        assert case.U.dtype == case.Vh.dtype == np.complex128
        assert np.any(case.U.imag != 0) or case.shape[0] == 1
        # (A itself may be real: equal seeds give V = U, and A = U S U^H is Hermitian.)


@given(
    case=lst.matrices_with_spectrum(
        shape=st.tuples(st.integers(3, 6), st.integers(3, 6)),
        spectrum=functools.partial(lst.spectra, condition_number=1e3),
        dtype=np.float32,
    )
)
def test_matrices_with_a_spectrum_strategy(case):
    assert case.S[0] / case.S[-1] == pytest.approx(1e3, rel=1e-12)
    assert case.A.dtype == np.float32
    assert min(case.shape) >= 3 and max(case.shape) <= 6


@given(case=lst.matrices_with_spectrum(spectrum=[3.0, 2.0], max_side=5, dtype=np.complex64))
def test_matrices_with_a_fixed_spectrum_are_padded_with_zeros(case):
    assert min(case.shape) >= 2
    np.testing.assert_array_equal(case.S[:2], [3.0, 2.0])
    assert np.all(case.S[2:] == 0)
    assert_singular_values_close(svd_values(case.A), case.S, dtype=case.dtype, size=max(case.shape))


def test_matrices_shrink_to_identity_like_examples():
    """A failing example is reported on a small diagonal matrix with a flat spectrum."""
    case = minimal(lst.matrices_with_spectrum(), lambda c: c.shape[0] >= 3 and c.shape[1] >= 2)
    assert case.factors == "householder" and case.dtype == np.float64
    np.testing.assert_array_equal(case.A, np.eye(3, 2))
    case = minimal(
        lst.matrices_with_spectrum(dtype=lst.svd_dtypes()), lambda c: c.dtype.kind == "c"
    )
    assert case.dtype == np.complex128 and case.shape == (1, 1)


@given(case=lst.low_rank_plus_noise(dtype=lst.svd_dtypes()))
def test_low_rank_plus_noise(case):
    m, n = case.shape
    r = case.rank
    assert 1 <= r <= max(1, min(m, n) // 2)
    assert np.count_nonzero(case.signal.S) == r
    L = case.signal.truncation(min(m, n))
    assert np.linalg.norm(case.noise) == pytest.approx(
        case.noise_level * np.linalg.norm(L), rel=1e-12, abs=1e-300
    )
    wide = np.complex128 if case.dtype.kind == "c" else np.float64
    np.testing.assert_allclose(
        case.A.astype(wide), L + case.noise, atol=case.signal.spectrum_tolerance
    )
    # Weyl: each singular value moves by at most ||E||_2 (plus the rounding to dtype).
    moved = np.abs(svd_values(case.A) - case.signal.S)
    assert np.all(moved <= case.noise_norm(norm="spectral") + case.signal.spectrum_tolerance)
    nuclear, fro, spectral = (case.noise_norm(norm=n) for n in ("nuclear", "fro", "spectral"))
    assert nuclear >= fro >= spectral


@given(case=lst.weight_like_matrices(dtype=lst.svd_dtypes(), spikes=st.integers(0, 1)))
def test_weight_like_matrices(case):
    m, n = case.shape
    assert case.spikes.size <= 1 and np.all(case.spikes >= 2.0) and np.all(case.spikes <= 10)
    assert case.bulk_edge == pytest.approx(1 + math.sqrt(min(m, n) / max(m, n)))
    assert np.all(np.isfinite(case.A))


def test_weight_like_spikes_stand_out_of_the_marchenko_pastur_bulk():
    case = weight_like_matrix((300, 200), spikes=[6.0, 3.0], scale=2.0, rng=0)
    s = singular_values(case.A)
    assert s[0] > 5.5 * 2 and s[1] > 2.5 * 2  # spike values (BBP: sqrt((1+t^2)(g+t^2))/t)
    assert s[2] == pytest.approx(case.bulk_edge, rel=0.05)  # the bulk edge 2(1 + sqrt(2/3))
    # The lower edge 2(1 - sqrt(2/3)) fluctuates more at this size.
    assert s[-1] == pytest.approx(2.0 * (1 - math.sqrt(200 / 300)), rel=0.3)


@given(
    f=lst.lora_factors(
        dtype=st.sampled_from([np.float64, np.float32, np.float16, ml_dtypes.bfloat16])
    )
)
def test_lora_factors_follow_peft(f: LoRAFactors):
    W, A, B, s = f
    out_f, in_f = W.shape
    r = f.rank
    assert A.shape == (r, in_f) and B.shape == (out_f, r) and 1 <= r <= 4
    assert W.dtype == A.dtype == B.dtype == f.dtype
    expected = f.alpha / math.sqrt(r) if f.use_rslora else f.alpha / r
    assert s == pytest.approx(expected, rel=1e-15)
    assert np.all(np.abs(A.astype(np.float64)) <= 1 / math.sqrt(in_f) * (1 + 1e-2))
    np.testing.assert_allclose(f.merged(), W.astype(np.float64) + f.delta_weight())


def test_lora_factors_shrink_to_peft_initialisation():
    f = minimal(lst.lora_factors(), lambda f: f.out_features >= 2)
    assert (f.out_features, f.in_features, f.rank, f.alpha, f.use_rslora) == (2, 1, 1, 1.0, False)
    assert not f.B.any()  # PEFT initialises lora_B to zeros


@given(Q=lst.orthonormal_matrices(5, k=3, dtype=lst.svd_dtypes()))
def test_orthonormal_matrices(Q):
    assert Q.shape == (5, 3)
    assert_orthonormal(Q)


@given(shape=lst.matrix_shapes(min_side=2, max_side=4))
def test_matrix_shapes_bounds(shape):
    assert all(2 <= side <= 4 for side in shape)


def test_svd_dtypes_selection():
    drawn = {minimal(lst.svd_dtypes(complex=False, single=False))}
    assert drawn == {np.dtype(np.float64)}
    assert minimal(lst.svd_dtypes(real=False), lambda d: d.itemsize == 8) == np.complex64


# --------------------------------------------------------------------------- NumPy constructors


def test_plain_constructors():
    case = matrix_with_spectrum([2.0, 1.0], (5, 3), dtype=np.complex64, rng=0)
    np.testing.assert_array_equal(case.S, [2.0, 1.0, 0.0])
    assert case.factors == "haar" and "MatrixWithSpectrum(shape=(5, 3)" in repr(case)
    assert case.optimal_error(1) == 1.0 and case.optimal_error(0, norm="nuclear") == 3.0
    Q = haar_orthonormal(4, 4, complex_=True, rng=1)
    assert_orthonormal(Q)
    P = householder_orthonormal(3, 3, [[1, -1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(P, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    f = random_lora_factors(4, 3, 2, alpha=2.0, use_rslora=True, b_init="zeros", rng=0)
    assert f.scaling == pytest.approx(math.sqrt(2)) and not f.B.any() and "r=2" in repr(f)


def test_plain_constructors_reject_bad_input():
    from lowrank import InputError, ShapeError

    with pytest.raises(ShapeError, match=r"S must have at most min\(shape\) = 2 values; got 3"):
        matrix_with_spectrum([3.0, 2.0, 1.0], (2, 5))
    with pytest.raises(InputError, match=r"S must be non-negative; got \[ 1\. -1\.\]"):
        matrix_with_spectrum([1.0, -1.0], (2, 2))
    with pytest.raises(InputError, match=r"k must satisfy 0 <= k <= n = 2; got 3"):
        haar_orthonormal(2, 3)
    with pytest.raises(
        ShapeError, match=r"vectors\[0\] must have shape \(n,\) = \(3,\); got \(2,\)"
    ):
        householder_orthonormal(3, 3, [[1, 0]])
    with pytest.raises(
        ShapeError, match=r"spikes must hold at most min\(shape\) = 2 values; got 3"
    ):
        weight_like_matrix((2, 4), spikes=[2.0, 3.0, 4.0])
    with pytest.raises(InputError, match="b_init must be one of 'zeros', 'gaussian'; got 'ones'"):
        random_lora_factors(2, 2, 1, b_init="ones")
    with pytest.raises(InputError, match=r"rank must satisfy 0 <= rank <= min\(A.shape\) = 1"):
        matrix_with_spectrum([1.0], (1, 3)).truncation(2)
    signal = matrix_with_spectrum([1.0], (2, 2), rng=0)
    noisy = NoisyLowRank(A=signal.A, signal=signal, noise=np.zeros((2, 2)), noise_level=0.0)
    with pytest.raises(InputError, match="norm must be one of 'fro', 'spectral', 'nuclear'"):
        noisy.noise_norm(norm="schatten")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        # dtypes: a name NumPy does not know, then a dtype that is not floating (or complex)
        (lambda: weight_like_matrix((3, 2), dtype="bogus"), DTypeError, r"dtype must be a NumPy"),
        (
            lambda: matrix_with_spectrum([1.0], (2, 2), dtype=object),
            DTypeError,
            r"dtype must be a floating or complex dtype \(float16, .*complex128\); got ",
        ),
        (
            lambda: random_lora_factors(2, 2, 1, dtype=np.complex128),
            DTypeError,
            r"dtype must be a real floating dtype \(float16, bfloat16, float32, float64\)",
        ),
        # spectra and spikes: 1-D, real, finite, non-negative
        (lambda: matrix_with_spectrum([[1.0]], (2, 2)), ShapeError, r"S must be 1-D; got ndim=2"),
        (lambda: matrix_with_spectrum([1j], (2, 2)), InputError, r"S must be real; got dtype"),
        (
            lambda: weight_like_matrix((3, 2), spikes=[np.nan]),
            NonFiniteError,
            r"spikes must contain only finite values",
        ),
        (
            lambda: weight_like_matrix((3, 2), spikes=[-1.0]),
            InputError,
            r"spikes must be non-negative; got \[-1\.\]",
        ),
        # shapes
        (
            lambda: matrix_with_spectrum([1.0], (3,)),
            ShapeError,
            r"shape must be a tuple of 2 integers >= 0; got \(3,\)",
        ),
        (
            lambda: weight_like_matrix((0, 3)),
            ShapeError,
            r"shape must be a tuple of 2 integers >= 1; got \(0, 3\)",
        ),
        (
            lambda: weight_like_matrix((3, 2), scale=np.nan),
            InputError,
            r"scale must be finite and > 0",
        ),
        # orthonormal factors
        (lambda: haar_orthonormal(-1, 0), InputError, r"n must be >= 0; got -1"),
        (lambda: haar_orthonormal(3, 2.5), InputError, r"k must be an integer; got 2\.5"),
        (
            lambda: haar_orthonormal(3, 2, complex_="x"),
            InputError,
            r"complex_ must be True or False; got 'x'",
        ),
        (
            lambda: householder_orthonormal(3, None, []),
            InputError,
            r"k must be an integer; got None",
        ),
        (
            lambda: householder_orthonormal(2, 3, []),
            InputError,
            r"k must satisfy 0 <= k <= n = 2; got 3",
        ),
        (
            lambda: householder_orthonormal(3, 1, "x"),
            InputError,
            r"vectors must be a sequence of vectors of shape \(n,\) = \(3,\); got 'x'",
        ),
        (
            lambda: householder_orthonormal(3, 1, 3),
            InputError,
            r"vectors must be a sequence of vectors of shape \(n,\) = \(3,\); got 3",
        ),
        (
            lambda: householder_orthonormal(3, 1, [["a", "b", "c"]]),
            DTypeError,
            r"vectors\[0\] must have a numeric dtype",
        ),
        # LoRA factors
        (lambda: random_lora_factors(0, 2, 1), InputError, r"out_features must be >= 1; got 0"),
        (lambda: random_lora_factors(2, "x", 1), InputError, r"in_features must be an integer"),
        (lambda: random_lora_factors(2, 2, 0), InputError, r"rank must be >= 1; got 0"),
        (
            lambda: random_lora_factors(2, 2, 1, alpha=np.nan),
            InputError,
            r"alpha must be finite and > 0; got nan",
        ),
        (
            lambda: random_lora_factors(2, 2, 1, use_rslora="x"),
            InputError,
            r"use_rslora must be True or False; got 'x'",
        ),
    ],
)
def test_plain_constructors_check_their_arguments(call, error, match):
    """Issue 11 section 2: each constructor checks its arguments at its boundary."""
    with pytest.raises(error, match=match):
        call()


def test_random_lora_factors_scaling_is_the_librarys():
    from lowrank.lora import lora_scaling

    for rs in (False, True):
        f = random_lora_factors(4, 3, 3, alpha=6.0, use_rslora=rs, rng=0)
        assert f.scaling == lora_scaling(6.0, 3, use_rslora=rs)


def test_optional_arguments_are_keyword_only():
    """Issue 12 section 3: what is optional is passed by name."""
    signal = matrix_with_spectrum([1.0], (2, 2), rng=0)
    noisy = NoisyLowRank(A=signal.A, signal=signal, noise=np.zeros((2, 2)), noise_level=0.0)
    with pytest.raises(TypeError, match="positional argument"):
        noisy.noise_norm("fro")  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional argument"):
        lst.orthonormal_matrices(3, 2)  # type: ignore[misc]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: lst.spectra(-1), "size must be >= 0; got -1"),
        (lambda: lst.spectra(2.5), "size must be an integer; got 2.5"),
        (lambda: lst.spectra(3, kinds="cubic"), "kinds must contain only 'flat'.*got 'cubic'"),
        (lambda: lst.spectra(3, kinds=[]), "kinds must not be empty"),
        (lambda: lst.spectra(3, scale=0.0), "scale must be > 0; got 0.0"),
        (lambda: lst.spectra(3, scale=math.inf), "scale must be finite; got inf"),
        (lambda: lst.spectra(3, rank=4), "rank must be <= 3; got 4"),
        (lambda: lst.spectra(3, condition_number=0.5), "condition_number must be >= 1; got 0.5"),
        (lambda: lst.spectra(1, condition_number=10.0), "condition_number > 1 needs size >= 2"),
        (lambda: lst.spectra(3, max_condition=0.5), "max_condition must be >= 1; got 0.5"),
        (lambda: lst.spectra(3, gap=2), r"gap must be a tuple \(g, ratio\); got 2"),
        (lambda: lst.spectra(3, gap=(3, 2.0)), r"gap\[0\] \(the rank of the gap\) must be <= 2"),
        (lambda: lst.spectra(3, gap=(0, 2.0)), r"gap\[0\] \(the rank of the gap\) must be >= 1"),
        (lambda: lst.spectra(3, gap=(1, 0.5)), r"gap\[1\] \(the ratio\) must be >= 1; got 0.5"),
        (
            lambda: lst.spectra(3, gap=(1, 100.0), condition_number=10.0),
            r"gap\[1\] must be <= condition_number = 10; got 100.0",
        ),
        (
            lambda: lst.spectra(3, gap=(1, 1e7)),
            r"gap\[1\] must be <= max_condition = 1e\+06; got 10000000.0",
        ),
        (lambda: lst.spectra(4, gap=(2, 5.0), rank=2), "rank must be >= 3; got 2"),
        (lambda: lst.matrix_shapes(min_side=0), "min_side must be >= 1; got 0"),
        (lambda: lst.matrix_shapes(min_side=4, max_side=3), "max_side must be >= min_side = 4"),
        (lambda: lst.matrices_with_spectrum(dtype=np.int32), "dtype must be one of float64.*int32"),
        (lambda: lst.matrices_with_spectrum(dtype="float16"), "dtype must be one of.*float16"),
        (lambda: lst.matrices_with_spectrum(dtype=object()), "dtype must be a NumPy dtype"),
        (lambda: lst.matrices_with_spectrum(shape=(0, 3)), r"shape\[0\] must be >= 1; got 0"),
        (lambda: lst.matrices_with_spectrum(shape=[2, 3]), r"shape must be a tuple \(m, n\)"),
        (
            lambda: lst.matrices_with_spectrum(shape=(2, 5), spectrum=[3, 2, 1]),
            r"min\(shape\) must be >= 3 \(the length of the spectrum\); got \(2, 5\)",
        ),
        (
            lambda: lst.matrices_with_spectrum(spectrum=[1.0] * 9),
            r"max_side must be >= 9 \(the length of the spectrum\); got 8",
        ),
        (
            lambda: lst.matrices_with_spectrum(spectrum=[1.0, -2.0]),
            "spectrum must be finite and non-negative",
        ),
        (lambda: lst.matrices_with_spectrum(factors="qr"), "factors must contain only"),
        (lambda: lst.low_rank_plus_noise(rank=0), "rank must be >= 1; got 0"),
        (lambda: lst.low_rank_plus_noise(noise_level=-0.1), "noise_level must be >= 0"),
        (lambda: lst.weight_like_matrices(spikes=-1), "spikes must be >= 0; got -1"),
        (lambda: lst.weight_like_matrices(shape=(2, 3), spikes=3), r"spikes must be <= min"),
        (
            lambda: lst.weight_like_matrices(spike_range=(3.0, 2.0)),
            r"spike_range\[1\] must be >= 3",
        ),
        (lambda: lst.weight_like_matrices(spike_range=3.0), "spike_range must be a tuple"),
        (lambda: lst.lora_factors(rank=0), "rank must be >= 1; got 0"),
        (lambda: lst.lora_factors(max_rank=0), "max_rank must be >= 1; got 0"),
        (lambda: lst.lora_factors(alpha=-1.0), "alpha must be > 0; got -1.0"),
        (lambda: lst.lora_factors(use_rslora=1), "use_rslora must be a bool or None; got 1"),
        (lambda: lst.lora_factors(b_init="ones"), "b_init must contain only 'zeros', 'gaussian'"),
        (lambda: lst.lora_factors(dtype=np.complex64), "dtype must be a real floating dtype"),
        (lambda: lst.orthonormal_matrices(3, k=4), "k must be <= 3; got 4"),
        (lambda: lst.svd_dtypes(real=False, complex=False), "needs at least one of real/complex"),
    ],
)
def test_arguments_are_validated_eagerly(make, message):
    """Raised when the strategy is created, before anything is drawn."""
    with pytest.raises(InvalidArgument, match=message):
        make()


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (lst.spectra(3, rank=st.just(5)), "drawn rank must be <= 3; got 5"),
        (lst.spectra(3, scale=st.just(-1.0)), "drawn scale must be > 0; got -1.0"),
        (lst.matrices_with_spectrum(shape=st.just((0, 2))), r"drawn shape\[0\] must be >= 1"),
        (lst.matrices_with_spectrum(dtype=st.just(np.int8)), "drawn dtype must be one of"),
        (
            lst.matrices_with_spectrum(spectrum=lambda q: [1.0] * q),
            r"spectrum\(\d\) must return a Hypothesis strategy",
        ),
        (
            lst.matrices_with_spectrum(spectrum=lambda q: st.just(np.ones(q + 1))),
            r"spectrum\(\d\) draw must be 1-D with at most min\(shape\)",
        ),
        (
            lst.matrices_with_spectrum(
                spectrum=functools.partial(lst.spectra, scale=1e39), dtype=np.float32
            ),
            "singular values up to 1e\\+39 overflow float32",
        ),
        (lst.low_rank_plus_noise(shape=(2, 2), rank=3), "drawn rank must be <= 2; got 3"),
        (lst.weight_like_matrices(shape=(2, 2), spikes=st.just(3)), "drawn spikes must be <= 2"),
        (
            lst.spectra(2, gap=(1, 10.0), condition_number=100.0),
            "with 2 non-zero values and gap at rank 1 the condition number is the gap ratio",
        ),
    ],
)
def test_drawn_values_are_validated(strategy, message):
    """Values that only exist once drawn (from strategies given as arguments) are checked
    when drawn, with the same kind of message."""

    @settings(database=None, max_examples=5)
    @given(strategy)
    def draw(_):
        pass

    with pytest.raises(InvalidArgument, match=message):
        draw()
