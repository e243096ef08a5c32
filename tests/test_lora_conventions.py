"""PEFT's conventions in one module: the scaling rule, the default alpha, the factor split.

The scaling formula exists once (``lowrank._scaling``); init, extraction, conversion, the
config and the adapter layer all report the scaling :func:`lora_scaling` gives.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowrank._numerics import tolerance
from lowrank.adapter import LoRALinear
from lowrank.errors import DTypeError, InputError, RankError, ShapeError
from lowrank.lora import (
    LoRAConfig,
    alpha_for_scaling,
    default_alpha,
    extract,
    lora_scaling,
    pissa_init,
    pissa_to_lora,
    split_triplets,
)


@pytest.mark.parametrize("rslora", [False, True])
@pytest.mark.parametrize("rank", [1, 2, 7, 16])
def test_scaling_alpha_round_trip(rank, rslora):
    alpha = 3.0
    s = lora_scaling(alpha, rank, use_rslora=rslora)
    assert s == alpha / (math.sqrt(rank) if rslora else rank)
    # One division then one multiplication: at most one rounding each.
    assert alpha_for_scaling(s, rank, use_rslora=rslora) == pytest.approx(alpha, rel=4e-16)
    assert lora_scaling(default_alpha(rank, use_rslora=rslora), rank, use_rslora=rslora) == 1.0


def test_every_part_reports_the_same_scaling(rng):
    W = rng.standard_normal((9, 7))
    for rslora in (False, True):
        expected = lora_scaling(5.0, 3, use_rslora=rslora)
        init = pissa_init(W, 3, alpha=5.0, use_rslora=rslora)
        ex = extract(W, W + rng.standard_normal((9, 7)), rank=3, alpha=5.0, use_rslora=rslora)
        cfg = LoRAConfig(r=3, lora_alpha=5.0, use_rslora=rslora)
        layer = LoRALinear.from_init(init)
        assert init.scaling == ex.scaling == cfg.scaling_for("q") == expected
        assert layer.adapter_config("default").scaling == expected
        # PiSSA -> LoRA doubles the rank and keeps the scaling.
        conv = pissa_to_lora(
            init.lora_A, init.lora_B, init.lora_A, init.lora_B, alpha=5.0, use_rslora=rslora
        )
        assert conv.scaling == expected
        assert lora_scaling(conv.alpha, conv.rank, use_rslora=rslora) == pytest.approx(expected)


def test_default_alpha_is_the_inits_default(rng):
    W = rng.standard_normal((6, 5))
    assert pissa_init(W, 4).alpha == default_alpha(4) == 4.0
    assert pissa_init(W, 4, use_rslora=True).alpha == default_alpha(4, use_rslora=True) == 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_triplets_reproduces_the_truncated_svd(rng, dtype):
    W = rng.standard_normal((8, 6)).astype(dtype)
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    s = 2.5
    A, B = split_triplets(U[:, :3], S[:3], Vh[:3], scaling=s)
    assert A.shape == (3, 6) and B.shape == (8, 3) and A.dtype == B.dtype == dtype
    expected = (U[:, :3] * S[:3]) @ Vh[:3]
    # A few roundings of entries of size S[0] per product term (sqrt, scale, 3-term sums).
    tol = tolerance(dtype, size=8, scale=float(S[0]))
    np.testing.assert_allclose(s * B @ A, expected, atol=tol, rtol=0)
    # The split is balanced: the i-th column of B and row of A have the same norm.
    np.testing.assert_allclose(
        np.linalg.norm(B, axis=0), np.linalg.norm(A, axis=1), rtol=10 * np.finfo(dtype).eps
    )


def test_split_triplets_promotes_integers_and_half():
    A, B = split_triplets(
        np.eye(2, 1, dtype=np.float16), [1.0], np.eye(1, 2, dtype=np.int64), scaling=1.0
    )
    assert A.dtype == B.dtype == np.float64


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: split_triplets(np.eye(3, 2), [1.0], np.eye(2, 4), scaling=1.0),
            ShapeError,
            r"U, S and Vh must have shapes \(out, r\), \(r,\) and \(r, in\) with one r; got "
            r"\(3, 2\), \(1,\) and \(2, 4\)",
        ),
        (
            lambda: split_triplets(np.eye(3, 2), [1.0, 0.5], np.eye(3, 4), scaling=1.0),
            ShapeError,
            r"got \(3, 2\), \(2,\) and \(3, 4\)",
        ),
        (
            lambda: split_triplets(np.eye(3, 2), [1.0, -0.5], np.eye(2, 4), scaling=1.0),
            InputError,
            r"S must be non-negative \(singular values\); got min -0.5",
        ),
        (
            lambda: split_triplets(np.eye(3, 2), [1.0, 0.5], np.eye(2, 4), scaling=0.0),
            InputError,
            r"scaling must be finite and > 0; got 0.0",
        ),
        (
            lambda: split_triplets(np.eye(3, 2) + 0j, [1.0, 0.5], np.eye(2, 4), scaling=1.0),
            DTypeError,
            r"U must have a real dtype",
        ),
        (
            lambda: split_triplets(
                np.eye(3, 2), np.array([1.0, 0.5]) + 0j, np.eye(2, 4), scaling=1.0
            ),
            DTypeError,
            r"S must have a real dtype",
        ),
        (lambda: alpha_for_scaling(-1.0, 2), InputError, r"scaling must be finite and > 0"),
        (lambda: alpha_for_scaling(1.0, 0), RankError, r"rank must be an integer >= 1; got 0"),
        (lambda: default_alpha(1.5), RankError, r"rank must be an integer >= 1; got 1.5"),
        (lambda: default_alpha(2, use_rslora="yes"), InputError, r"use_rslora must be"),
    ],
)
def test_convention_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
