"""Property-testing tools for low-rank approximations: Hypothesis strategies, assertions
that raise with a useful message, tolerances, and Hypothesis settings profiles.

* :mod:`lowrank.testing.assertions` -- :func:`assert_valid_svd`, :func:`assert_near_optimal`,
  :func:`assert_lora_reconstruction`, :func:`assert_adapters_agree`, ... (NumPy only).
* :mod:`lowrank.testing.strategies` -- Hypothesis strategies: :func:`spectra`,
  :func:`matrices_with_spectrum`, :func:`low_rank_plus_noise`, :func:`weight_like_matrices`,
  :func:`lora_factors`, ... (needs the ``testing`` extra: ``pip install -e '.[testing]'`` in a
  clone).
* :mod:`lowrank.testing.cases` -- the frozen objects the strategies return, and plain
  NumPy constructors for them.
* :mod:`lowrank.testing.tolerances` -- every tolerance, derived from error analysis and
  written next to it: the backward error of an SVD (with LAPACK's deflation threshold),
  :func:`~lowrank.testing.tolerances.gram_atol` for eigen-solvers on :math:`A^HA` (ARPACK),
  :func:`~lowrank.testing.tolerances.power_scheme_factor` for randomized range finders.
* :mod:`lowrank.testing.profiles` -- the ``dev``, ``ci`` and ``thorough`` profiles, chosen by
  ``HYPOTHESIS_PROFILE``.

Importing this package does not import Hypothesis; the strategies are loaded on first use
(``from lowrank.testing import matrices_with_spectrum`` works when Hypothesis is installed).
The library itself never imports :mod:`lowrank.testing`.

Examples
--------
>>> import numpy as np
>>> from lowrank import truncated_svd
>>> from lowrank.testing import assert_near_optimal, assert_valid_svd
>>> A = np.diag([3.0, 2.0, 1.0])
>>> assert_valid_svd(truncated_svd(A, 2), A, rank=2)
>>> assert_near_optimal(A, truncated_svd(A, 2))
"""

from __future__ import annotations

from typing import Any

from lowrank.testing.assertions import (
    assert_adapters_agree,
    assert_lora_reconstruction,
    assert_near_optimal,
    assert_orthonormal,
    assert_singular_values_close,
    assert_valid_svd,
)
from lowrank.testing.cases import (
    LoRAFactors,
    MatrixWithSpectrum,
    NoisyLowRank,
    WeightLike,
    matrix_with_spectrum,
)
from lowrank.testing.profiles import PROFILE_ENV, load_profile, register_profiles

_STRATEGIES = frozenset(
    {
        "lora_factors",
        "low_rank_plus_noise",
        "matrices_with_spectrum",
        "matrix_shapes",
        "orthonormal_matrices",
        "spectra",
        "svd_dtypes",
        "weight_like_matrices",
    }
)

__all__ = [
    "PROFILE_ENV",
    "LoRAFactors",
    "MatrixWithSpectrum",
    "NoisyLowRank",
    "WeightLike",
    "assert_adapters_agree",
    "assert_lora_reconstruction",
    "assert_near_optimal",
    "assert_orthonormal",
    "assert_singular_values_close",
    "assert_valid_svd",
    "load_profile",
    "lora_factors",
    "low_rank_plus_noise",
    "matrices_with_spectrum",
    "matrix_shapes",
    "matrix_with_spectrum",
    "orthonormal_matrices",
    "register_profiles",
    "spectra",
    "svd_dtypes",
    "weight_like_matrices",
]


def __getattr__(name: str) -> Any:
    """Load the Hypothesis strategies on first use, so that importing this package (and
    using the assertions) does not need Hypothesis."""
    if name in _STRATEGIES:
        from lowrank.testing import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'lowrank.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _STRATEGIES)
