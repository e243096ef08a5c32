"""The core on a real matrix: the rank–error table of a photograph.

Run by ``python3 tasks.py demo``. Uses the Grace Hopper portrait that matplotlib ships as
sample data (600×512 grey levels), so it needs the ``plot`` extra and no network.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from lowrank import rank_error_curve, singular_values, stable_rank, truncated_svd
from lowrank._typing import SVDMethod
from lowrank.metrics import entropy_effective_rank

__all__ = ["main"]


def _image() -> np.ndarray:
    import matplotlib.image as mpimg
    from matplotlib import cbook

    rgb = mpimg.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    grey: np.ndarray = np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    return grey


def main(argv: list[str] | None = None) -> int:
    A = _image()
    s = singular_values(A)
    fro = rank_error_curve(s)
    spectral = rank_error_curve(s, norm="spectral")
    print(
        f"Grace Hopper, {A.shape[0]}x{A.shape[1]} grey levels: "
        f"stable rank {stable_rank(s):.2f}, effective rank {entropy_effective_rank(s):.1f}"
    )
    print(f"{'rank':>5} {'rel. Frobenius error':>21} {'rel. spectral error':>20} {'energy':>8}")
    for r in (1, 2, 5, 10, 20, 50, 100, 200):
        assert fro.energy is not None
        print(
            f"{r:>5} {fro.relative[r]:>21.4f} {spectral.relative[r]:>20.4f} {fro.energy[r]:>8.4f}"
        )
    methods: tuple[SVDMethod, ...] = ("exact", "randomized", "arpack")
    for method in methods:
        start = time.perf_counter()
        res = truncated_svd(A, 20, method=method, rng=0)
        elapsed = time.perf_counter() - start
        excess = res.residual_fro / fro.absolute[20] - 1.0
        print(
            f"rank 20 by {method:<10}: {elapsed * 1e3:7.1f} ms, residual "
            f"{res.residual_fro:.6g} (optimal {fro.absolute[20]:.6g}, excess {excess:.1e})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
