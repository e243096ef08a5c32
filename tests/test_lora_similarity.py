"""The LoRA paper's §7 measures: normalised subspace similarity and amplification factor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lowrank.errors import DTypeError, InputError, RankError, ShapeError
from lowrank.lora import (
    amplification_factor,
    subspace_similarity,
    subspace_similarity_grid,
)


def reference_phi(X1, X2, i, j, side):
    """Eq. 4 of Hu et al. computed directly from NumPy's SVD."""
    if side == "right":
        U1 = np.linalg.svd(X1, full_matrices=False)[2].T
        U2 = np.linalg.svd(X2, full_matrices=False)[2].T
    else:
        U1 = np.linalg.svd(X1, full_matrices=False)[0]
        U2 = np.linalg.svd(X2, full_matrices=False)[0]
    return np.linalg.norm(U1[:, :i].T @ U2[:, :j]) ** 2 / min(i, j)


@pytest.mark.parametrize("side", ["right", "left"])
def test_grid_matches_the_definition(rng, side):
    shape1, shape2 = ((8, 40), (5, 40)) if side == "right" else ((40, 8), (40, 5))
    base = rng.standard_normal(shape1)
    X1 = base
    # X2 shares part of X1's dominant subspace.
    X2 = (base[:5] if side == "right" else base[:, :5]) + 0.5 * rng.standard_normal(shape2)
    grid = subspace_similarity_grid(X1, X2, side=side)
    assert grid.shape == (8, 5)
    for i in range(1, 9):
        for j in range(1, 6):
            assert grid[i - 1, j - 1] == pytest.approx(reference_phi(X1, X2, i, j, side), abs=1e-12)
            assert subspace_similarity(X1, X2, i, j, side=side) == grid[i - 1, j - 1]


def test_similarity_identities(rng):
    A = rng.standard_normal((6, 30))
    assert subspace_similarity(A, -2.5 * A, 6, 6) == pytest.approx(1.0, abs=1e-12)
    assert subspace_similarity(A, A, 3, 3) == pytest.approx(1.0, abs=1e-12)
    # The top-3 span is contained in the top-6 span: phi(i, j) = 1 for i <= j.
    assert subspace_similarity(A, A, 3, 6) == pytest.approx(1.0, abs=1e-12)
    # Orthogonal row spaces.
    Q = np.linalg.qr(rng.standard_normal((30, 8)))[0].T
    assert subspace_similarity(Q[:4], Q[4:], 4, 4) == pytest.approx(0.0, abs=1e-12)
    # Symmetry.
    B = rng.standard_normal((4, 30))
    assert subspace_similarity(A, B, 5, 2) == pytest.approx(subspace_similarity(B, A, 2, 5))


def test_random_gaussian_factors_share_no_directions(rng):
    """§7.2: two random Gaussian matrices share no directions (phi near 0)."""
    A1, A2 = rng.standard_normal((8, 500)), rng.standard_normal((16, 500))
    phi = subspace_similarity(A1, A2, 1, 1)
    assert phi < 0.05  # E[cos^2] = 1/500 for one pair of random directions


@given(
    r1=st.integers(1, 6),
    r2=st.integers(1, 6),
    n=st.integers(6, 20),
    seed=st.integers(0, 2**16),
)
def test_similarity_lies_in_unit_interval(r1, r2, n, seed):
    rng = np.random.default_rng(seed)
    grid = subspace_similarity_grid(rng.standard_normal((r1, n)), rng.standard_normal((r2, n)))
    assert np.all(grid >= 0.0) and np.all(grid <= 1.0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (
            (np.ones((2, 5)), np.ones((2, 6)), 1, 1),
            {},
            ShapeError,
            "same number of columns for side='right'",
        ),
        (
            (np.ones((5, 2)), np.ones((6, 2)), 1, 1),
            {"side": "left"},
            ShapeError,
            "same number of rows for side='left'",
        ),
        ((np.eye(2), np.eye(2), 1, 1), {"side": "up"}, InputError, "side must be one of"),
        ((np.eye(2), np.eye(2), 0, 1), {}, RankError, r"i must satisfy 1 <= i <= min\(X1.shape\)"),
        ((np.eye(2), np.eye(2), 1, 3), {}, RankError, r"j must satisfy 1 <= j <= min\(X2.shape\)"),
        ((np.eye(2, dtype=complex), np.eye(2), 1, 1), {}, DTypeError, "X1 must be real"),
        ((np.ones(3), np.eye(2), 1, 1), {}, ShapeError, "X1 must be a 2-D matrix"),
    ],
)
def test_similarity_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        subspace_similarity(*args, **kwargs)


# -- amplification -------------------------------------------------------------------------


def test_amplification_dense_and_factored_agree(rng):
    W = rng.standard_normal((30, 20))
    B, A = rng.standard_normal((30, 4)), rng.standard_normal((4, 20))
    dense = amplification_factor(W, 0.5 * B @ A, rank=4)
    factored = amplification_factor(W, (A, B), scaling=0.5)
    U, _, Vh = np.linalg.svd(0.5 * B @ A)
    projection = np.linalg.norm(U[:, :4].T @ W @ Vh[:4].T)
    assert dense.projection_fro == pytest.approx(projection, rel=1e-10)
    assert dense.delta_fro == pytest.approx(np.linalg.norm(0.5 * B @ A), rel=1e-12)
    assert dense.factor == pytest.approx(dense.delta_fro / projection, rel=1e-10)
    for field in ("rank", "delta_fro", "projection_fro", "weight_fro", "factor"):
        assert getattr(factored, field) == pytest.approx(getattr(dense, field), rel=1e-10)


def test_amplification_of_updates_inside_and_outside_w_top_directions(rng):
    """An update along W's top directions is barely amplified; one along its weakest
    directions is amplified by about sigma_1 / sigma_min (the paper's 21.5 at r = 4)."""
    U, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    S = np.geomspace(10.0, 0.1, 40)
    W = (U * S) @ V.T
    top = amplification_factor(W, (V[:, :2].T, U[:, :2]), scaling=1.0)
    weak = amplification_factor(W, (V[:, -2:].T, U[:, -2:]))
    assert top.factor == pytest.approx(math.sqrt(2) / math.hypot(S[0], S[1]), rel=1e-9)
    assert weak.factor == pytest.approx(math.sqrt(2) / math.hypot(S[-1], S[-2]), rel=1e-9)
    assert weak.factor > 50 * top.factor
    assert top.weight_fro == pytest.approx(np.linalg.norm(S), rel=1e-12)


def test_amplification_degenerate_cases():
    W = np.diag([10.0, 1.0, 0.0])
    assert amplification_factor(W, np.diag([0.0, 0.0, 2.0]), rank=1).factor == math.inf
    # A zero update has no singular subspace: 0/0, refused (the analysis reports nan).
    with pytest.raises(RankError, match="delta_W is zero"):
        amplification_factor(W, (np.zeros((1, 3)), np.zeros((3, 1))))


@pytest.mark.parametrize(
    ("delta", "kwargs", "error", "match"),
    [
        (np.eye(3), {}, InputError, "rank is required for a dense delta_W"),
        (np.eye(3), {"rank": 1, "scaling": 2.0}, InputError, "scaling applies to a factored"),
        (np.eye(3), {"rank": 4}, RankError, "got 4"),
        (np.eye(2), {"rank": 1}, ShapeError, r"delta_W must have the shape of W, \(3, 3\)"),
        ((np.ones((2, 3)), np.ones((3, 1))), {}, ShapeError, "must share r"),
        ((np.ones((1, 2)), np.ones((3, 1))), {}, ShapeError, "delta_W must have the shape of W"),
        ((np.ones((3, 1)),), {}, InputError, "a tuple of length 1"),
        ((np.ones((1, 3)), np.ones((3, 1))), {"rank": 2}, RankError, "got 2"),
        ((np.ones((1, 3)), np.ones((3, 1))), {"scaling": -1.0}, InputError, "scaling must be"),
        ((np.ones((1, 3)), np.ones((3, 1), complex)), {}, DTypeError, "lora_B must be real"),
        (np.eye(3, dtype=complex), {"rank": 1}, DTypeError, "delta_W must be real"),
    ],
)
def test_amplification_errors(delta, kwargs, error, match):
    with pytest.raises(error, match=match):
        amplification_factor(np.eye(3), delta, **kwargs)


def test_amplification_weight_dtype_error():
    with pytest.raises(DTypeError, match="W must be real"):
        amplification_factor(np.eye(3, dtype=complex), np.eye(3), rank=1)


def test_amplification_factor_takes_factors_in_the_one_order_and_objects():
    """(lora_A, lora_B) as everywhere else, and a LoRA object with its own scaling: on a
    square full-rank layer the swapped pair would pass the shape checks, so the reference is
    the dense update's factor (exact SVD)."""
    from lowrank.lora import extract

    rng = np.random.default_rng(3)
    W, W1 = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    ex = extract(W, W1, rank=6, alpha=3.0)  # scaling 0.5: the factors carry 1 / s
    dense = amplification_factor(W, ex.scaling * ex.lora_B @ ex.lora_A, rank=6)
    pair = amplification_factor(W, (ex.lora_A, ex.lora_B), scaling=ex.scaling)
    obj = amplification_factor(W, ex)
    for got in (pair, obj):
        assert got.factor == pytest.approx(dense.factor, rel=1e-10)
        assert got.delta_fro == pytest.approx(np.linalg.norm(W1 - W), rel=1e-10)
    # A dense update takes scaling 1.0 only (the old default, still accepted).
    assert amplification_factor(W, W1 - W, rank=6, scaling=1.0).factor == pytest.approx(
        dense.factor, rel=1e-10
    )
    with pytest.raises(InputError, match="scaling applies to a factored delta_W only"):
        amplification_factor(W, W1 - W, rank=1, scaling=2.0)
