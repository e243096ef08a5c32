"""lowrank: numerical low-rank approximation on NumPy and SciPy.

The core answers three questions about a matrix ``A``: what is its best rank-r
approximation (:func:`truncated_svd`, :func:`best_approximation`), what is the exact error
of that approximation in any unitarily invariant norm (:func:`eym_error`,
:func:`rank_error_curve`, :func:`select_rank`), and how low-rank is it
(:mod:`lowrank.metrics`). Importing :mod:`lowrank` loads NumPy and SciPy only.
"""

from __future__ import annotations

from lowrank._version import __version__
from lowrank.approx import (
    OptimalityComparison,
    best_approximation,
    compare_to_optimal,
    eym_error,
    residual_norm,
)
from lowrank.curves import RankErrorCurve, rank_error_curve, select_rank
from lowrank.errors import (
    ConvergenceError,
    DTypeError,
    FileFormatError,
    InputError,
    LowRankError,
    MissingFileError,
    NonFiniteError,
    RankError,
    ShapeError,
    StateError,
)
from lowrank.metrics import (
    SpectrumSummary,
    condition_number,
    entropy_effective_rank,
    nuclear_norm,
    numerical_rank,
    spectral_norm,
    spectrum_summary,
    stable_rank,
)
from lowrank.svd import RandomizedDiagnostics, TruncatedSVDResult, singular_values, truncated_svd

__all__ = [
    "ConvergenceError",
    "DTypeError",
    "FileFormatError",
    "InputError",
    "LowRankError",
    "MissingFileError",
    "NonFiniteError",
    "OptimalityComparison",
    "RandomizedDiagnostics",
    "RankError",
    "RankErrorCurve",
    "ShapeError",
    "SpectrumSummary",
    "StateError",
    "TruncatedSVDResult",
    "__version__",
    "best_approximation",
    "compare_to_optimal",
    "condition_number",
    "entropy_effective_rank",
    "eym_error",
    "nuclear_norm",
    "numerical_rank",
    "rank_error_curve",
    "residual_norm",
    "select_rank",
    "singular_values",
    "spectral_norm",
    "spectrum_summary",
    "stable_rank",
    "truncated_svd",
]
