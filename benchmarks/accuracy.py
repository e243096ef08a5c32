"""Accuracy measures, all in float64 against float64 LAPACK references."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["curve_errors", "excess_residual", "top_r_relative_error"]

_ROWS = 512


def top_r_relative_error(S: np.ndarray, ref: np.ndarray, rank: int | None = None) -> float:
    r"""``max_i |S_i - s_i| / s_i`` over the top ``r`` reference values, ``r = rank`` (default
    ``len(S)``); ``inf`` when fewer than ``rank`` values were returned (a result with fewer
    triplets than asked for is not accurate at that rank)."""
    r = len(S) if rank is None else rank
    if len(S) < r:
        return math.inf
    if r == 0:
        return 0.0
    s = np.sort(np.asarray(S, dtype=np.float64))[::-1]
    ref = np.asarray(ref[:r], dtype=np.float64)
    return float(np.max(np.abs(s - ref) / np.where(ref > 0, ref, 1.0)))


def tail_norm(ref: np.ndarray, r: int) -> float:
    """``||sigma_{r+1:}||``, summed from the smallest value up."""
    tail = np.asarray(ref[r:], dtype=np.float64)[::-1]
    return math.sqrt(float(np.dot(tail, tail)))


def excess_residual(
    A: np.ndarray,
    U: np.ndarray,
    S: np.ndarray,
    Vh: np.ndarray,
    ref: np.ndarray,
    rank: int | None = None,
) -> float:
    r"""``||A - U diag(S) Vh||_F / ||sigma_{r+1:}|| - 1``, in float64 from the factors given,
    against the optimum at ``r = rank`` (default ``len(S)``): fewer triplets than ``rank``
    leave more residual, counted against the rank-``rank`` optimum."""
    r = len(S) if rank is None else rank
    opt = tail_norm(ref, r)
    us = np.asarray(U, dtype=np.float64) * np.asarray(S, dtype=np.float64)
    vh = np.asarray(Vh, dtype=np.float64)
    ssq = 0.0
    for start in range(0, A.shape[0], _ROWS):
        block = A[start : start + _ROWS].astype(np.float64) - us[start : start + _ROWS] @ vh
        ssq += float(np.einsum("ij,ij->", block, block))
    res = math.sqrt(ssq)
    if opt == 0.0:
        return 0.0 if res == 0.0 else math.inf
    return res / opt - 1.0


def curve_errors(s: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Errors of a whole spectrum ``s`` against ``ref`` (both descending, same length).

    ``max_abs_over_s1``: max |s_i - ref_i| / ref_1; ``curve_over_fro``: the largest error of
    the rank-error curve (tail norms ``||s_{k+1:}||`` for every k) divided by ``||A||_F``;
    ``min_rel``: relative error of the smallest singular value; ``rel_1e3``: the largest
    relative error among values above 1e-3 ref_1.
    """
    s = np.sort(np.asarray(s, dtype=np.float64))[::-1]
    ref = np.asarray(ref, dtype=np.float64)
    fro = math.sqrt(float(np.dot(ref[::-1], ref[::-1])))
    tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1])
    tails_ref = np.sqrt(np.cumsum((ref**2)[::-1])[::-1])
    big = ref >= 1e-3 * ref[0]
    return {
        "max_abs_over_s1": float(np.max(np.abs(s - ref)) / ref[0]),
        "curve_over_fro": float(np.max(np.abs(tails - tails_ref)) / fro),
        "min_rel": float(abs(s[-1] - ref[-1]) / ref[-1]) if ref[-1] > 0 else math.nan,
        "rel_1e3": float(np.max(np.abs(s[big] - ref[big]) / ref[big])),
    }
