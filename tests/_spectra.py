"""Test matrices with a prescribed spectrum: Haar-random singular vectors times the values."""

from __future__ import annotations

import numpy as np


def haar(rng: np.random.Generator, n: int, k: int, complex_: bool = False) -> np.ndarray:
    """``k`` Haar-distributed orthonormal columns of length ``n`` (QR with the phases of
    R's diagonal divided out)."""
    z = rng.standard_normal((n, k))
    if complex_:
        z = z + 1j * rng.standard_normal((n, k))
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def with_spectrum(rng, m, n, s, *, dtype=np.float64) -> np.ndarray:
    """An ``m x n`` matrix of ``dtype`` with singular values ``s`` (before the cast)."""
    complex_ = np.dtype(dtype).kind == "c"
    k = len(s)
    A = (haar(rng, m, k, complex_) * np.asarray(s)) @ haar(rng, n, k, complex_).conj().T
    return A.astype(dtype)
