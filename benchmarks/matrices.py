"""Test matrices of the benchmarks, generated once and cached as ``.npy`` files.

Three spectra, as in ``baselines.md`` (seed 0, generated in float64 and then cast):

* ``fast``: :math:`A = U \\operatorname{diag}(1/i) V^T` with Haar-random orthonormal ``U``, ``V``;
* ``flat``: a Gaussian matrix divided by :math:`\\sqrt{\\max(m, n)}` (a Marchenko–Pastur bulk,
  what trained weight matrices look like away from their top singular values);
* ``spike``: ``flat`` plus a rank-16 spike whose singular values run from 20 down to 10 times
  the bulk edge :math:`1 + \\sqrt{\\min(m,n)/\\max(m,n)}`.

The reference singular values are those of the float64 upcast of the matrix actually used,
by LAPACK ``gesdd`` in float64 (``scipy.linalg.svdvals``); they are cached next to it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FAMILIES", "MatrixSpec", "default_cache_dir", "load_matrix", "load_reference"]

FAMILIES: dict[str, str] = {
    "fast": "sigma_i = 1/i, Haar factors",
    "flat": "Gaussian / sqrt(max(m, n)) (Marchenko-Pastur)",
    "spike": "flat + rank-16 spike (20x..10x the bulk edge)",
}


@dataclass(frozen=True)
class MatrixSpec:
    """A benchmark matrix: spectrum family, shape, dtype and seed."""

    family: str
    m: int
    n: int
    dtype: str = "float32"
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.family}_{self.m}x{self.n}_{self.dtype}"

    @property
    def label(self) -> str:
        return f"{self.family} {self.m}x{self.n} {self.dtype}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "m": self.m,
            "n": self.n,
            "dtype": self.dtype,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MatrixSpec:
        return cls(str(d["family"]), int(d["m"]), int(d["n"]), str(d["dtype"]), int(d["seed"]))


def default_cache_dir() -> Path:
    """``$LOWRANK_BENCH_CACHE`` or ``<repo>/.cache/benchmarks`` (git-ignored)."""
    env = os.environ.get("LOWRANK_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".cache" / "benchmarks"


def _haar(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.standard_normal((n, k))
    q, r = np.linalg.qr(z)
    return q * np.sign(np.diag(r))


def generate(spec: MatrixSpec) -> np.ndarray:
    """The matrix of ``spec`` (float64 generation, then cast)."""
    if spec.family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}; got {spec.family!r}")
    rng = np.random.default_rng(spec.seed)
    m, n = spec.m, spec.n
    k = min(m, n)
    if spec.family == "fast":
        s = 1.0 / np.arange(1, k + 1)
        a = (_haar(rng, m, k) * s) @ _haar(rng, n, k).T
    else:
        a = rng.standard_normal((m, n)) / np.sqrt(max(m, n))
        if spec.family == "spike":
            edge = 1.0 + np.sqrt(k / max(m, n))
            s = np.linspace(20.0, 10.0, 16) * edge
            a += (_haar(rng, m, 16) * s) @ _haar(rng, n, 16).T
    return np.ascontiguousarray(a.astype(spec.dtype))


def _path(spec: MatrixSpec, cache: Path, what: str) -> Path:
    return cache / f"{spec.name}_s{spec.seed}_{what}.npy"


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def load_matrix(spec: MatrixSpec, cache: Path | None = None) -> np.ndarray:
    """The matrix of ``spec``, from the cache or generated (and cached)."""
    cache = cache or default_cache_dir()
    path = _path(spec, cache, "A")
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    a = generate(spec)
    _save(path, a)
    return a


def load_reference(spec: MatrixSpec, cache: Path | None = None) -> np.ndarray:
    """All singular values of the float64 upcast of the matrix (float64 LAPACK), descending."""
    import scipy.linalg as sla

    cache = cache or default_cache_dir()
    path = _path(spec, cache, "sv64")
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    a = load_matrix(spec, cache).astype(np.float64)
    s: np.ndarray = sla.svdvals(a, check_finite=False)
    _save(path, s)
    return s


def fingerprint(a: np.ndarray) -> str:
    """A short hash of the matrix bytes (recorded in the results)."""
    return hashlib.sha1(np.ascontiguousarray(a).data.cast("B")).hexdigest()[:12]
