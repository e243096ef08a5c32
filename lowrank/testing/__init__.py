"""Property-testing tools for low-rank approximations: Hypothesis strategies, assertions
that raise with a useful message, and Hypothesis settings profiles.

Needs the ``testing`` extra (Hypothesis) for the strategies; the library itself never imports
this package.
"""

from __future__ import annotations

from lowrank.testing.assertions import (
    assert_orthonormal,
    assert_singular_values_close,
    assert_valid_svd,
)
from lowrank.testing.profiles import load_profile, register_profiles

__all__ = [
    "assert_orthonormal",
    "assert_singular_values_close",
    "assert_valid_svd",
    "load_profile",
    "register_profiles",
]
