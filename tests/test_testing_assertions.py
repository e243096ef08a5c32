"""The assertions of lowrank.testing: correct implementations pass, planted bugs fail with a
message that says what is wrong.

Planted bugs: an off-by-one rank, a flipped sign in one singular vector, a transposed
factor, swapped LoRA factors, a wrong LoRA scaling (alpha/sqrt(r) for alpha/r), a
randomized SVD with too few iterations on a flat (Marchenko-Pastur) spectrum.

For a planted bug to be *detectable* its effect must exceed the rounding tolerance, so the
bug tests draw spectra with sigma_1 / sigma_r <= 10 (`WELL_CONDITIONED`): then an error of
the size of one singular value is >= 0.1 sigma_1, far above the float32 tolerance
16 eps_32 sqrt(8) sigma_1 ~ 5e-6 sigma_1.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank import InputError, TruncatedSVDResult, truncated_svd
from lowrank.adapter import LoRALinear
from lowrank.errors import DTypeError, NonFiniteError, ShapeError
from lowrank.testing import (
    assert_adapters_agree,
    assert_lora_reconstruction,
    assert_near_optimal,
    assert_orthonormal,
    assert_singular_values_close,
    assert_valid_svd,
    matrix_with_spectrum,
)
from lowrank.testing import strategies as lst
from lowrank.testing.cases import weight_like_matrix

ml_dtypes = pytest.importorskip("ml_dtypes")

# Full rank, sigma_1 / sigma_min <= 10, sigma_1 > sigma_2 (so the leading triplet is unique).
WELL_CONDITIONED = lst.matrices_with_spectrum(
    min_side=2,
    dtype=lst.svd_dtypes(),
    spectrum=lambda q: lst.spectra(q, rank=q, max_condition=10.0, gap=(1, 1.5)),
)


def lapack(A: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A correct truncated SVD by another route than lowrank's (NumPy's gesdd)."""
    U, S, Vh = np.linalg.svd(A, full_matrices=False)
    return U[:, :rank], S[:rank], Vh[:rank]


# --------------------------------------------------------------------------- assert_valid_svd


@given(case=lst.matrices_with_spectrum(dtype=lst.svd_dtypes()), data=st.data())
def test_correct_svds_pass(case, data):
    rank = data.draw(st.integers(0, min(case.shape)), label="rank")
    for method in ("exact", "randomized"):
        res = truncated_svd(case.A, rank, method=method, rng=0)
        assert_valid_svd(res, case.A, rank=rank, sign_convention=True)
    assert_valid_svd(lapack(case.A, rank), case.A, rank=rank)
    # The exact factors the strategy built agree up to sign (and rotation in clusters).
    exact = (case.U, case.S, case.Vh)
    assert_valid_svd(truncated_svd(case.A, rank), case.A, rank=rank, reference=exact)


@given(case=WELL_CONDITIONED, data=st.data())
def test_flipped_sign_in_one_singular_vector_is_caught(case, data):
    rank = data.draw(st.integers(1, min(case.shape)), label="rank")
    U, S, Vh = lapack(case.A, rank)
    i = data.draw(st.integers(0, rank - 1), label="flipped")
    U = U.copy()
    U[:, i] *= -1
    with pytest.raises(
        AssertionError, match=rf"U\^H A V differs from diag\(S\) .* at \({i}, {i}\)"
    ):
        assert_valid_svd((U, S, Vh), case.A, rank=rank)
    # Flipping u and v together is a valid SVD; only lowrank's sign rule can tell.
    Vh = Vh.copy()
    Vh[i] *= -1
    assert_valid_svd((U, S, Vh), case.A, rank=rank)


def test_flipped_pair_breaks_the_sign_rule():
    A = matrix_with_spectrum([3.0, 2.0, 1.0], (5, 4), rng=0).A
    res = truncated_svd(A, 2)
    U, Vh = res.U.copy(), res.Vh.copy()
    U[:, 1] *= -1
    Vh[1] *= -1
    assert_valid_svd((U, res.S, Vh), A, rank=2)
    with pytest.raises(AssertionError, match=r"U\[:, 1\] breaks the sign rule"):
        assert_valid_svd((U, res.S, Vh), A, rank=2, sign_convention=True)


@given(case=WELL_CONDITIONED, data=st.data())
def test_off_by_one_rank_is_caught(case, data):
    q = min(case.shape)
    rank = data.draw(st.integers(1, q - 1), label="rank")
    U, S, Vh = lapack(case.A, rank + 1)
    with pytest.raises(AssertionError, match=rf"shapes U .*; expected \(\d+, {rank}\)"):
        assert_valid_svd((U, S, Vh), case.A, rank=rank)
    # Skipping the leading triplet (indices 1..rank instead of 0..rank-1).
    with pytest.raises(AssertionError, match=r"singular value \d is .* expected"):
        assert_valid_svd((U[:, 1:], S[1:], Vh[1:]), case.A, rank=rank)


def test_transposed_factor_is_caught():
    A = matrix_with_spectrum([4.0, 3.0, 2.0, 1.0], (6, 4), rng=1).A
    U, S, Vh = lapack(A, 2)
    with pytest.raises(AssertionError, match=r"shapes .* Vh \(4, 2\); expected .* \(2, 4\)"):
        assert_valid_svd((U, S, Vh.T), A, rank=2)
    U, S, Vh = lapack(A, 4)  # square Vh: the transpose has the right shape
    with pytest.raises(AssertionError, match=r"U\^H A V differs from diag\(S\)"):
        assert_valid_svd((U, S, Vh.T), A, rank=4)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda U, S, Vh: (U * 1.01, S, Vh), r"U \(\(5, 3\), float64\) is not orthonormal"),
        (lambda U, S, Vh: (U, S, Vh * 1.01), r"V \(\(4, 3\), float64\) is not orthonormal"),
        (lambda U, S, Vh: (U, S[::-1], Vh), r"S must be descending; S\[0\] = .* < S\[1\]"),
        (lambda U, S, Vh: (U, S - 2.5, Vh), r"S must be non-negative; S\[2\] = "),
        (lambda U, S, Vh: (U, S.astype(complex), Vh), "S must be real; got dtype complex128"),
        (lambda U, S, Vh: (U, S * np.nan, Vh), "S has 3 NaN or infinite entries out of 3"),
        (lambda U, S, Vh: (U, S * 1.001, Vh), r"singular value 0 is .* expected .* tolerance"),
        (lambda U, S, Vh: (U[:, ::-1], S, Vh[::-1]), r"U\^H A V differs from diag\(S\)"),
    ],
)
def test_invalid_svds_fail_with_a_message(mutate, message):
    A = matrix_with_spectrum([3.0, 2.0, 1.0], (5, 4), rng=2).A
    with pytest.raises(AssertionError, match=message):
        assert_valid_svd(mutate(*lapack(A, 3)), A, rank=3)


def test_wrong_vectors_with_right_values_are_caught():
    """Vectors of another matrix with the same spectrum: values, orthonormality pass."""
    case = matrix_with_spectrum([3.0, 2.0, 1.0], (5, 4), rng=3)
    other = matrix_with_spectrum([3.0, 2.0, 1.0], (5, 4), rng=4)
    with pytest.raises(AssertionError, match=r"U\^H A V differs"):
        assert_valid_svd(lapack(other.A, 2), case.A, rank=2)
    with pytest.raises(
        AssertionError, match=r"U\[:, 0\] \(singular value 3\) is not the reference"
    ):
        assert_valid_svd(truncated_svd(case.A, 2), case.A, rank=2, reference=lapack(other.A, 3))


def test_vectors_are_compared_up_to_rotation_within_clusters():
    case = matrix_with_spectrum([3.0, 2.0, 2.0, 1.0], (6, 5), rng=5)
    U, S, Vh = lapack(case.A, 4)
    c, s = math.cos(0.7), math.sin(0.7)
    G = np.array([[c, -s], [s, c]])
    U[:, 1:3] = U[:, 1:3] @ G  # rotate the cluster {2, 2} in both spaces
    Vh[1:3] = G.T @ Vh[1:3]
    assert_valid_svd((U, S, Vh), case.A, rank=4, reference=(case.U, case.S, case.Vh))
    # A cut through the cluster: any vector of the cluster is a valid second vector.
    assert_valid_svd((U[:, :2], S[:2], Vh[:2]), case.A, rank=2, reference=(case.U, case.S, case.Vh))
    # Rotating into a vector outside the cluster is not.
    U2, S2, Vh2 = lapack(case.A, 4)
    U2[:, 2:4] = U2[:, 2:4] @ G
    Vh2[2:4] = G.T @ Vh2[2:4]
    with pytest.raises(AssertionError, match="U\\^H A V differs"):
        assert_valid_svd((U2, S2, Vh2), case.A, rank=4)


def test_rank_deficient_and_empty_results():
    A = matrix_with_spectrum([2.0, 1.0], (6, 5), rng=6).A  # rank 2
    assert_valid_svd(truncated_svd(A, 4, method="randomized", rng=0), A, rank=4)
    assert_valid_svd(truncated_svd(A, 0), A, rank=0)
    zero = np.zeros((3, 2))
    assert_valid_svd(truncated_svd(zero, 2), zero, rank=2)


def test_valid_svd_argument_errors():
    A = np.eye(3)
    res = truncated_svd(A, 2)
    with pytest.raises(InputError, match=r"A must be a 2-D matrix; got shape \(3,\)"):
        assert_valid_svd(res, np.ones(3), rank=2)
    with pytest.raises(
        InputError, match=r"rank must satisfy 0 <= rank <= min\(A.shape\) = 3; got 4"
    ):
        assert_valid_svd(res, A, rank=4)
    with pytest.raises(InputError, match="result must have attributes U, S, Vh"):
        assert_valid_svd(res.U, A, rank=2)
    with pytest.raises(InputError, match=r"reference must have U of shape \(3, k\)"):
        assert_valid_svd(res, A, rank=2, reference=(np.eye(2), np.ones(2), np.eye(2)))
    with pytest.raises(InputError, match="factor must be finite and > 0; got 0"):
        assert_valid_svd(res, A, rank=2, factor=0)
    with pytest.raises(InputError, match="A must be numeric; got dtype str32"):
        assert_valid_svd(res, np.array([["a"]]), rank=0)
    with pytest.raises(InputError, match="A must be finite; it has 1 NaN or inf"):
        assert_valid_svd(res, np.diag([1.0, np.nan, 1.0]), rank=2)
    with pytest.raises(InputError, match="check_vectors must be True or False; got 'x'"):
        assert_valid_svd(res, A, rank=2, check_vectors="x")
    with pytest.raises(InputError, match="sign_convention must be True or False; got 2"):
        assert_valid_svd(res, A, rank=2, sign_convention=2)
    with pytest.raises(InputError, match=r"atol must be finite and >= 0; got -1"):
        assert_valid_svd(res, A, rank=2, atol=-1.0)


def test_orthonormal_and_values_helpers():
    assert_orthonormal(np.zeros((3, 0)))
    with pytest.raises(AssertionError, match=r"Q must be 2-D; got shape \(3,\)"):
        assert_orthonormal(np.ones(3))
    with pytest.raises(AssertionError, match="Q has 1 NaN or infinite entries out of 4"):
        assert_orthonormal(np.array([[1.0, 0.0], [0.0, np.nan]]))
    assert_singular_values_close([1.0, 0.5], [1.0, 0.5 + 1e-6], dtype=np.float64, size=2, rtol=1e-5)
    with pytest.raises(AssertionError, match=r"relative error 0.001 > rtol 1e-05"):
        assert_singular_values_close([1.0, 0.5005], [1.0, 0.5], dtype=np.float64, size=2, rtol=1e-5)
    with pytest.raises(AssertionError, match=r"actual has shape \(1,\); expected has shape \(2,\)"):
        assert_singular_values_close([1.0], [1.0, 0.5], dtype=np.float64, size=2)
    with pytest.raises(AssertionError, match="actual has 1 NaN or infinite entries out of 2"):
        assert_singular_values_close([1.0, np.nan], [1.0, 0.5], dtype=np.float64, size=2)


# --------------------------------------------------------------------------- assert_near_optimal

NORMS = [
    ("fro", {}),
    ("spectral", {}),
    ("nuclear", {}),
    ("schatten", {"p": 3}),
    ("ky_fan", {"k": 2}),
]


@given(case=lst.matrices_with_spectrum(dtype=lst.svd_dtypes()), data=st.data())
def test_truncated_svd_is_optimal_in_every_norm(case, data):
    rank = data.draw(st.integers(0, min(case.shape)), label="rank")
    res = truncated_svd(case.A, rank)
    U, S, Vh = res.U, res.S, res.Vh
    forms = [res, (U, S, Vh), (U * S, Vh), res.to_dense()]
    for norm, extra in NORMS:
        for candidate in forms:
            assert_near_optimal(case.A, candidate, rank=rank, norm=norm, **extra)
        # With the exact spectrum from the strategy (no SVD of A needed).
        assert_near_optimal(case.A, res, norm=norm, singular_values=case.S, **extra)


@given(case=WELL_CONDITIONED, data=st.data())
def test_off_by_one_rank_candidates_are_caught(case, data):
    q = min(case.shape)
    rank = data.draw(st.integers(1, q - 1), label="rank")
    low = truncated_svd(case.A, rank - 1)
    with pytest.raises(AssertionError, match=rf"the rank-{rank} candidate is not within a factor"):
        assert_near_optimal(case.A, low, rank=rank, rtol=1e-3)
    high = truncated_svd(case.A, rank + 1)
    with pytest.raises(
        AssertionError, match=rf"beats the Eckart-Young-Mirsky optimum.*rank > {rank}"
    ):
        assert_near_optimal(case.A, high, rank=rank, rtol=1e-3)


@given(case=WELL_CONDITIONED, data=st.data())
def test_flipped_sign_candidate_is_caught(case, data):
    rank = data.draw(st.integers(1, min(case.shape)), label="rank")
    res = truncated_svd(case.A, rank)
    U = res.U.copy()
    U[:, data.draw(st.integers(0, rank - 1), label="flipped")] *= -1
    with pytest.raises(AssertionError, match=r"is not within a factor 1 \+ 0.001"):
        assert_near_optimal(case.A, (U, res.S, res.Vh), rtol=1e-3)


def test_transposed_candidate_factor_is_caught():
    A = matrix_with_spectrum([3.0, 2.0, 1.0], (6, 4), rng=7).A
    res = truncated_svd(A, 2)
    L, R = res.U * res.S, res.Vh
    with pytest.raises(
        AssertionError, match=r"\(L, R\) has shapes .* \(the right factor looks transposed\)"
    ):
        assert_near_optimal(A, (L, R.T))
    with pytest.raises(AssertionError, match="both factors look transposed"):
        assert_near_optimal(A, (L.T, R.T))
    with pytest.raises(
        AssertionError, match=r"candidate has shape \(4, 6\); expected the shape of A"
    ):
        assert_near_optimal(A, res.to_dense().T, rank=2)
    square = matrix_with_spectrum([3.0, 2.0, 1.0, 0.5], (4, 4), rng=8).A
    res = truncated_svd(square, 2)
    with pytest.raises(AssertionError, match="is not within a factor"):
        assert_near_optimal(square, (res.U * res.S, res.Vh.T.T[:, ::-1]))


@given(
    case=lst.weight_like_matrices(
        shape=st.sampled_from([(60, 40), (40, 60), (64, 48)]),
        dtype=st.sampled_from([np.float64, np.float32]),
        spikes=0,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_randomized_svd_without_iterations_fails_on_a_flat_spectrum(case, seed):
    """Marchenko-Pastur: a single sketch of width r + 10 misses the tail (excess ~2-5%), a
    few block-Krylov iterations do not (excess ~1e-12)."""
    crude = truncated_svd(case.A, 5, method="randomized", n_iter=0, block_krylov=False, rng=seed)
    with pytest.raises(AssertionError, match=r"not within a factor 1 \+ 0.001 .* ratio 1 \+ 0.0"):
        assert_near_optimal(case.A, crude, rtol=1e-3)
    good = truncated_svd(case.A, 5, method="randomized", rng=seed)
    assert_near_optimal(case.A, good, rtol=1e-3)


def test_near_optimal_argument_errors():
    A = np.diag([3.0, 2.0, 1.0])
    res = truncated_svd(A, 1)
    with pytest.raises(InputError, match=r"norm must be one of 'fro'.*got 'max'"):
        assert_near_optimal(A, res, norm="max")
    with pytest.raises(InputError, match=r"rtol must be finite and >= 0; got -0\.1"):
        assert_near_optimal(A, res, rtol=-0.1)
    with pytest.raises(InputError, match=r"singular_values must hold all min\(A.shape\) = 3"):
        assert_near_optimal(A, res, singular_values=[3.0, 2.0])
    with pytest.raises(InputError, match=r"rank must satisfy 0 <= rank <= min\(A.shape\); got 4"):
        assert_near_optimal(A, res, rank=4)
    with pytest.raises(InputError, match="got a tuple of 4"):
        assert_near_optimal(A, (1, 2, 3, 4))
    with pytest.raises(InputError, match=r"candidate must be an array of the shape of A.*got 'x'"):
        assert_near_optimal(A, "x")
    with pytest.raises(InputError, match="singular_values must be real numbers; got dtype"):
        assert_near_optimal(A, res, singular_values=[3.0j, 2.0, 1.0])
    with pytest.raises(InputError, match=r"atol must be finite and >= 0; got -0\.1"):
        assert_near_optimal(A, res, atol=-0.1)
    with pytest.raises(InputError, match="norm='schatten' needs the exponent p"):
        assert_near_optimal(A, res, norm="schatten")
    with pytest.raises(AssertionError, match="candidate has 1 NaN or infinite entries"):
        assert_near_optimal(A, (res.U, np.array([np.nan]), res.Vh))
    with pytest.raises(AssertionError, match=r"candidate \(U, S, Vh\) must be 2-D, 1-D, 2-D"):
        assert_near_optimal(A, (res.U, res.S[:, None], res.Vh))
    with pytest.raises(AssertionError, match=r"candidate \(U, S, Vh\) has shapes"):
        assert_near_optimal(A, (res.U, np.ones(2), res.Vh))


def test_near_optimal_lower_bound_only_and_zero_optimum():
    A = matrix_with_spectrum([2.0, 1.0], (4, 3), rng=9).A  # rank 2: optimum 0 at rank 2
    assert_near_optimal(A, truncated_svd(A, 2), rtol=0.0)
    with pytest.raises(AssertionError, match=r"optimal 0 \(to rounding\), ratio 1 \+ inf"):
        assert_near_optimal(A, truncated_svd(A, 1), rank=2)
    # rtol=inf: only "never better than optimal" is checked.
    assert_near_optimal(A, np.zeros((4, 3)), rank=1, rtol=math.inf)
    with pytest.raises(AssertionError, match="beats"):
        assert_near_optimal(A, A, rank=1, rtol=math.inf)


# --------------------------------------------------------------------------- LoRA


def merge_in(dtype, W, A, B, s):
    """What a correct merge does: compute in float32 at least, round once to the dtype."""
    work = np.promote_types(np.float32, W.dtype) if W.dtype.kind == "f" else np.float32
    return (W.astype(work) + s * (B.astype(work) @ A.astype(work))).astype(dtype)


LORA_DTYPES = st.sampled_from([np.float64, np.float32, np.float16, ml_dtypes.bfloat16])


@given(f=lst.lora_factors(dtype=LORA_DTYPES))
def test_correct_merge_passes(f):
    W, A, B, s = f
    assert_lora_reconstruction(merge_in(f.dtype, W, A, B, s), W, A, B, scaling=s)


@given(f=lst.lora_factors(dtype=st.sampled_from([np.float64, np.float32])))
def test_correct_pissa_extraction_passes(f):
    W, _, _, s = f
    r = min(f.rank, *W.shape)
    res = truncated_svd(W, r)
    root = np.sqrt(res.S / s).astype(W.dtype)
    B = res.U * root  # (out, r)
    A = root[:, None] * res.Vh  # (r, in)
    W_res = W - s * (B @ A)
    assert_lora_reconstruction(W, W_res, A, B, scaling=s)


@given(
    f=lst.lora_factors(
        dtype=st.sampled_from([np.float64, np.float32]),
        rank=st.integers(2, 4),
        b_init="gaussian",
        use_rslora=False,
        alpha=st.floats(4.0, 64.0),
    )
)
def test_wrong_scaling_is_caught(f):
    W, A, B, s = f
    rslora = f.alpha / math.sqrt(f.rank)  # alpha / sqrt(r) where alpha / r was meant
    merged = merge_in(f.dtype, W, A, B, rslora)
    with pytest.raises(AssertionError, match=r"W_res \+ s\*B@A differs from W"):
        assert_lora_reconstruction(merged, W, A, B, scaling=s)


@given(f=lst.lora_factors(b_init="gaussian", shape=st.tuples(st.integers(2, 6), st.integers(2, 6))))
def test_transposed_or_swapped_factors_are_caught(f):
    """By the shapes when they cannot fit PEFT's, else by the numbers (r = in = out)."""
    W, A, B, s = f
    merged = merge_in(f.dtype, W, A, B, s)
    caught = r"A looks transposed|look swapped|differs from W"
    with pytest.raises(AssertionError, match=caught):
        assert_lora_reconstruction(merged, W, A.T, B, scaling=s)
    with pytest.raises(AssertionError, match=caught):
        assert_lora_reconstruction(merged, W, B, A, scaling=s)


def test_square_transposed_factor_is_caught_numerically():
    rng = np.random.default_rng(10)
    W, A, B = rng.standard_normal((5, 3)), rng.standard_normal((3, 3)), rng.standard_normal((5, 3))
    merged = W + 2.0 * B @ A
    assert_lora_reconstruction(merged, W, A, B, scaling=2.0)
    with pytest.raises(AssertionError, match=r"differs from W: .* out=5, in=3, r=3, s=2.0"):
        assert_lora_reconstruction(merged, W, A.T, B, scaling=2.0)


@given(f=lst.lora_factors(dtype=st.sampled_from([np.float64, np.float32]), rank=st.integers(2, 4)))
def test_off_by_one_rank_extraction_is_caught(f):
    W, _, _, s = f
    r = min(f.rank, *W.shape)
    res = truncated_svd(W, r)
    B, A = res.U * res.S / s, res.Vh
    W_res = W - s * (B @ A)  # residual of rank r ...
    if res.S[-1] > 1e-3 * res.S[0]:  # ... but the adapter keeps only r - 1 components
        with pytest.raises(AssertionError, match="differs from W"):
            assert_lora_reconstruction(W, W_res, A[:-1], B[:, :-1], scaling=s)


def test_lora_argument_errors():
    W, A, B = np.zeros((3, 2)), np.zeros((1, 2)), np.zeros((3, 1))
    with pytest.raises(InputError, match="scaling must be a real number; got '2'"):
        assert_lora_reconstruction(W, W, A, B, scaling="2")
    with pytest.raises(InputError, match="scaling must be finite; got nan"):
        assert_lora_reconstruction(W, W, A, B, scaling=math.nan)
    with pytest.raises(AssertionError, match=r"W_res has shape \(2, 3\); W has shape \(3, 2\)"):
        assert_lora_reconstruction(W, W.T, A, B, scaling=1.0)
    with pytest.raises(AssertionError, match=r"W must be 2-D"):
        assert_lora_reconstruction(W[0], W[0], A, B, scaling=1.0)
    with pytest.raises(AssertionError, match="B looks transposed"):
        assert_lora_reconstruction(W, W, A, B.T, scaling=1.0)
    with pytest.raises(AssertionError, match="the shapes do not fit"):
        assert_lora_reconstruction(W, W, np.zeros((2, 5)), B, scaling=1.0)
    bad = W.copy()
    bad[0, 0] = np.nan
    with pytest.raises(AssertionError, match="W_res has 1 NaN"):
        assert_lora_reconstruction(W, bad, A, B, scaling=1.0)
    assert_lora_reconstruction(W + 1e-3, W, A, B, scaling=1.0, atol=1e-2)


# --------------------------------------------------------------------------- adapters


@given(f=lst.lora_factors(dtype=st.sampled_from([np.float64, np.float32]), b_init="gaussian"))
def test_merged_and_unmerged_layers_agree(f):
    W, A, B, s = f
    unmerged = LoRALinear.from_factors(W, A, B, alpha=f.alpha, use_rslora=f.use_rslora)
    merged = LoRALinear.from_factors(W, A, B, alpha=f.alpha, use_rslora=f.use_rslora)
    merged.merge()
    # The two compute the same sums in different orders, and the LoRA term may cancel the
    # base term: the tolerance scales with the magnitude of the terms, not of the output.
    x = np.random.default_rng(0).standard_normal((16, f.in_features)).astype(f.dtype)
    terms = np.abs(W.astype(np.float64)) + abs(s) * np.abs(B.astype(np.float64)) @ np.abs(A)
    scale = float(np.max(np.abs(x) @ terms.T))
    width = f.in_features
    assert_adapters_agree(
        unmerged.forward, merged.forward, in_features=width, inputs=x, scale=scale
    )
    by_hand = functools.partial(lambda x, M: x @ M.T, M=f.merged())
    assert_adapters_agree(unmerged.forward, by_hand, in_features=width, inputs=x, scale=scale)


@given(
    f=lst.lora_factors(
        rank=st.integers(2, 4), b_init="gaussian", use_rslora=False, alpha=st.floats(4.0, 64.0)
    )
)
def test_adapter_bugs_are_caught(f):
    W, A, B, _ = f
    layer = LoRALinear.from_factors(W, A, B, alpha=f.alpha)
    wrong_scaling = lambda x: x @ W.T + f.alpha / math.sqrt(f.rank) * (x @ A.T) @ B.T  # noqa: E731
    with pytest.raises(AssertionError, match="the adapters disagree on"):
        assert_adapters_agree(layer.forward, wrong_scaling, in_features=f.in_features)
    base_only = lambda x: x @ W.T  # noqa: E731
    with pytest.raises(AssertionError, match="the adapters disagree on"):
        assert_adapters_agree(layer.forward, base_only, in_features=f.in_features)


def test_adapters_agree_messages_and_options():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((4, 4))

    def layer(x):
        return x @ W.T

    with pytest.raises(AssertionError, match=r"first\(x\) has shape \(16, 4\) but second\(x\)"):
        assert_adapters_agree(layer, lambda x: (x @ W.T)[:, :3], in_features=4)
    with pytest.raises(AssertionError, match=r"second\(x\) has 64 NaN or infinite entries"):
        assert_adapters_agree(layer, lambda x: x @ W.T * np.nan, in_features=4)
    with pytest.raises(AssertionError, match="disagree on"):
        assert_adapters_agree(layer, lambda x: x @ W, in_features=4)  # forgot the transpose
    assert_adapters_agree(layer, lambda x: x @ W.T + 1e-9, in_features=4, rtol=1e-6)
    assert_adapters_agree(layer, layer, in_features=4, inputs=np.eye(4))
    # Cancellation: outputs near 0 from terms near 1 need the scale of the terms.
    cancel = lambda x: (x @ W.T + 1e3) - 1e3  # noqa: E731
    with pytest.raises(AssertionError, match="disagree"):
        assert_adapters_agree(layer, cancel, in_features=4)
    assert_adapters_agree(layer, cancel, in_features=4, scale=1e3)
    with pytest.raises(InputError, match="scale must be finite and >= 0"):
        assert_adapters_agree(layer, layer, in_features=4, scale=-1.0)
    # bfloat16 inputs, outputs rounded to bfloat16: the tolerance is that of bfloat16.
    bf16 = ml_dtypes.bfloat16
    assert_adapters_agree(
        lambda x: (x.astype(np.float32) @ W.T.astype(np.float32)).astype(bf16),
        lambda x: x.astype(np.float64) @ W.T,
        in_features=4,
        dtype=bf16,
    )
    with pytest.raises(InputError, match="in_features must be >= 1; got 0"):
        assert_adapters_agree(layer, layer, in_features=0)
    with pytest.raises(InputError, match=r"inputs must have shape \(batch, in_features\)"):
        assert_adapters_agree(layer, layer, in_features=4, inputs=np.ones(4))


def _layer(x):
    return x @ np.eye(3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        # assert_orthonormal
        (
            lambda: assert_orthonormal(np.eye(2), name=3),
            InputError,
            r"name must be a string; got 3",
        ),
        # assert_singular_values_close: expected is the reference (InputError) ...
        (
            lambda: assert_singular_values_close([1.0], [[1.0]], dtype=np.float64, size=2),
            ShapeError,
            r"expected must be 1-D; got ndim=2",
        ),
        (
            lambda: assert_singular_values_close([1.0], [np.nan], dtype=np.float64, size=2),
            NonFiniteError,
            r"expected must contain only finite values",
        ),
        (
            lambda: assert_singular_values_close([1.0], [1j], dtype=np.float64, size=2),
            InputError,
            r"expected must be real; got dtype complex128",
        ),
        (
            lambda: assert_singular_values_close([1.0], [-1.0], dtype=np.float64, size=2),
            InputError,
            r"expected must be non-negative; got \[-1\.\]",
        ),
        # ... actual is what is tested: AssertionError, unless it is not numbers at all
        (
            lambda: assert_singular_values_close("x", [1.0], dtype=np.float64, size=2),
            InputError,
            r"actual must be numeric; got dtype (<U1|str)",
        ),
        (
            lambda: assert_singular_values_close(
                np.array([1.0], dtype=object), [1.0], dtype=np.float64, size=2
            ),
            InputError,
            r"actual must be numeric; got dtype object",
        ),
        (
            lambda: assert_singular_values_close([1j], [1.0], dtype=np.float64, size=2),
            AssertionError,
            r"actual must be real; got dtype complex128",
        ),
        # assert_adapters_agree
        (
            lambda: assert_adapters_agree("x", _layer, in_features=3),
            InputError,
            r"first must be callable; got 'x'",
        ),
        (
            lambda: assert_adapters_agree(_layer, None, in_features=3),
            InputError,
            r"second must be callable; got None",
        ),
        (
            lambda: assert_adapters_agree(_layer, _layer, in_features=3, dtype="bogus"),
            DTypeError,
            r"dtype must be a NumPy dtype or its name",
        ),
        (
            lambda: assert_adapters_agree(_layer, _layer, in_features=3, dtype=np.int64),
            DTypeError,
            r"dtype must be a floating or complex dtype .*; got <class 'numpy.int64'> \(int64\)",
        ),
        (
            lambda: assert_adapters_agree(_layer, _layer, in_features=3, inputs=np.ones((2, 5))),
            ShapeError,
            r"inputs must have shape \(batch, in_features\) = \(batch, 3\); got \(2, 5\)",
        ),
        (
            lambda: assert_adapters_agree(
                _layer, _layer, in_features=3, inputs=np.full((2, 3), np.nan)
            ),
            NonFiniteError,
            r"inputs must contain only finite values; got 6 NaN or infinite entries",
        ),
    ],
)
def test_assertion_argument_checks(call, error, match):
    """Issue 11 section 2: arguments checked at the boundary, with messages naming them."""
    with pytest.raises(error, match=match):
        call()


def test_adapters_agree_rng_none_draws_fresh_inputs():
    seen = []

    def recording(x):
        seen.append(np.array(x, copy=True))
        return _layer(x)

    for rng in (None, None, 0, 0):
        before = len(seen)
        assert_adapters_agree(recording, _layer, in_features=3, rng=rng)
        assert len(seen) == before + 1
    fresh_1, fresh_2, seeded_1, seeded_2 = seen
    assert not np.array_equal(fresh_1, fresh_2)  # rng=None: new inputs each call
    np.testing.assert_array_equal(seeded_1, seeded_2)  # a seed: the same inputs


def test_lora_scaling_is_keyword_only():
    """Issue 12 section 3: the scaling is passed by name, as everywhere else in the library."""
    W, A, B = np.ones((3, 2)), np.ones((1, 2)), np.ones((3, 1))
    with pytest.raises(TypeError, match="positional argument"):
        assert_lora_reconstruction(W + 2.0 * B @ A, W, A, B, 2.0)  # type: ignore[misc]
    assert_lora_reconstruction(W + 2.0 * B @ A, W, A, B, scaling=2.0)


def test_lora_reconstruction_of_complex_factors():
    """Complex factors are checked in complex128, not cast to real (with a ComplexWarning)."""
    rng = np.random.default_rng(12)
    W = rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))
    A = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    B = rng.standard_normal((4, 2)) + 1j * rng.standard_normal((4, 2))
    assert_lora_reconstruction(W + 0.5 * B @ A, W, A, B, scaling=0.5)
    with pytest.raises(AssertionError, match="differs from W"):
        assert_lora_reconstruction(W + 0.5 * B @ A.conj(), W, A, B, scaling=0.5)


def test_truncated_svd_result_type_is_accepted_everywhere():
    A = weight_like_matrix((12, 9), spikes=[4.0], rng=12).A
    res = truncated_svd(A, 3)
    assert isinstance(res, TruncatedSVDResult)
    assert_valid_svd(res, A, rank=3, sign_convention=True)
    assert_near_optimal(A, res)


# --------------------------------------------------------------------------- planted bugs
# Issue 11: every planted bug is caught, and the message names it. The spectra are distinct
# (geometric, ratio >= 10^(1/7) ~ 1.39), so no swap or sign change is a valid SVD.

DISTINCT = lst.matrices_with_spectrum(
    min_side=2,
    dtype=lst.svd_dtypes(),
    factors="haar",
    spectrum=lambda q: lst.spectra(q, rank=q, kinds="exponential", condition_number=10.0),
)


@given(case=DISTINCT, data=st.data())
def test_planted_sign_flip_in_u_only_is_named(case, data):
    rank = data.draw(st.integers(1, min(case.shape)), label="rank")
    U, S, Vh = lapack(case.A, rank)
    i = data.draw(st.integers(0, rank - 1), label="flipped")
    U = U.copy()
    U[:, i] *= -1
    with pytest.raises(AssertionError, match=rf"a flipped sign in U\[:, {i}\] or in V\[:, {i}\]"):
        assert_valid_svd((U, S, Vh), case.A, rank=rank)


@given(case=DISTINCT, data=st.data())
def test_planted_swapped_pair_is_named(case, data):
    rank = data.draw(st.integers(2, min(case.shape)), label="rank")
    i = data.draw(st.integers(0, rank - 2), label="i")
    j = data.draw(st.integers(i + 1, rank - 1), label="j")
    U, S, Vh = lapack(case.A, rank)
    side = data.draw(st.sampled_from(["U", "V"]), label="swapped in")
    if side == "U":
        U = U.copy()
        U[:, [i, j]] = U[:, [j, i]]
    else:
        Vh = Vh.copy()
        Vh[[i, j]] = Vh[[j, i]]
    with pytest.raises(AssertionError, match=rf"triplets {i} and {j} are swapped in U or in V"):
        assert_valid_svd((U, S, Vh), case.A, rank=rank)


@given(case=DISTINCT, data=st.data())
def test_planted_rank_off_by_one_is_named(case, data):
    q = min(case.shape)
    rank = data.draw(st.integers(1, q - 1), label="rank")
    U, S, Vh = lapack(case.A, rank + 1)
    with pytest.raises(AssertionError, match=rf"wrong rank: {rank + 1} triplets for rank {rank}"):
        assert_valid_svd((U, S, Vh), case.A, rank=rank)
    with pytest.raises(AssertionError, match=r"shifted by one .* leading triplet is missing"):
        assert_valid_svd((U[:, 1:], S[1:], Vh[1:]), case.A, rank=rank)


@given(case=DISTINCT, data=st.data())
def test_planted_rounding_level_value_error_is_caught_and_called_so(case, data):
    """A value off by 1e3 eps ||A||_2 (5x the float64 tolerance at 8x8, 20x in float32)."""
    rank = data.draw(st.integers(1, min(case.shape)), label="rank")
    i = data.draw(st.integers(0, rank - 1), label="perturbed")
    U, S, Vh = lapack(case.A, rank)
    S = S.copy()
    S[i] += 1e3 * np.finfo(S.dtype).eps * S[0]
    with pytest.raises(
        AssertionError,
        match=rf"singular value {i} is .* rounding-level deviation \(\d.* eps \|\|A\|\|_2 against",
    ):
        assert_valid_svd((U, S, Vh), case.A, rank=rank)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64])
@pytest.mark.parametrize("seed", range(5))
def test_planted_transpositions_are_named(dtype, seed):
    S0 = 2.0 ** -np.arange(4)
    square = matrix_with_spectrum(S0, (4, 4), dtype=dtype, rng=seed).A
    U, S, Vh = np.linalg.svd(square)
    expected = (
        "Vh looks transposed: it holds V"
        if dtype in (np.float64, np.float32)
        else ("Vh looks transposed: it holds conj")
    )
    with pytest.raises(AssertionError, match=expected):
        assert_valid_svd((U, S, Vh.T), square, rank=4)
    with pytest.raises(AssertionError, match=r"U looks transposed: it holds U\^[HT]"):
        assert_valid_svd((U.T, S, Vh), square, rank=4)
    Ut, St, Vht = np.linalg.svd(square.T)  # an SVD of A^T handed over for A
    with pytest.raises(AssertionError, match=r"U and V are swapped: the result is an SVD of A\^T"):
        assert_valid_svd((Ut, St, Vht), square, rank=4)
    tall = matrix_with_spectrum(S0, (6, 4), dtype=dtype, rng=seed).A
    U, S, Vh = lapack(tall, 2)
    with pytest.raises(AssertionError, match=r"Vh looks transposed \(it has the shape of V"):
        assert_valid_svd((U, S, Vh.T), tall, rank=2)
    with pytest.raises(AssertionError, match=r"U looks transposed \(it has the shape of U\^H"):
        assert_valid_svd((U.T, S, Vh), tall, rank=2)


def _rotated(case, angle):
    """The exact SVD with u_0, u_1 rotated by `angle`: off-diagonal entries of U^H A V of
    up to angle * S[0], values and orthonormality intact."""
    U = case.U.copy()
    c, s = math.cos(angle), math.sin(angle)
    U[:, :2] = U[:, :2] @ np.array([[c, -s], [s, c]])
    return U, case.S.copy(), case.Vh


def test_lapack_deflation_level_off_diagonal_is_accepted():
    """Issue 11: LAPACK leaves off-diagonal entries up to t_L sigma_1 = 49 eps sigma_1 (its
    deflation threshold), above the old 16 eps sqrt(n) sigma_1 = 28 eps on a 3x3 matrix."""
    case = matrix_with_spectrum([1.0, 0.5, 0.25], (3, 3), rng=13)
    eps = np.finfo(np.float64).eps
    assert_valid_svd(_rotated(case, 40 * eps), case.A, rank=3)


def test_rounding_level_off_diagonal_is_not_called_a_structural_bug():
    case = matrix_with_spectrum([1.0, 0.5, 0.25], (3, 3), rng=13)
    eps = np.finfo(np.float64).eps
    with pytest.raises(AssertionError, match=r"U\^H A V differs") as info:
        assert_valid_svd(_rotated(case, 400 * eps), case.A, rank=3)
    message = str(info.value)
    assert "a rounding-level deviation (" in message and "eps ||A||_2 against an allowed" in message
    assert "flipped" not in message and "swapped" not in message
    # Far beyond rounding, and no sign, pairing or transposition explains it.
    with pytest.raises(AssertionError, match=r"not a pair of singular vectors .* no flipped sign"):
        assert_valid_svd(_rotated(case, 0.3), case.A, rank=3)
