"""Hypothesis settings profiles: ``dev`` (fast, random), ``ci`` (derandomized, bounded),
``thorough`` (many examples). Chosen by the ``HYPOTHESIS_PROFILE`` environment variable.
"""

from __future__ import annotations

import os

__all__ = ["PROFILE_ENV", "load_profile", "register_profiles"]

PROFILE_ENV = "HYPOTHESIS_PROFILE"


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``thorough`` profiles with Hypothesis."""
    from hypothesis import HealthCheck, settings

    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    settings.register_profile("dev", max_examples=30, **common)
    settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, **common)
    settings.register_profile("thorough", max_examples=500, **common)


def load_profile(name: str | None = None) -> str:
    """Register the profiles and load ``name`` (default: ``$HYPOTHESIS_PROFILE`` or ``dev``)."""
    from hypothesis import settings

    register_profiles()
    chosen = name or os.environ.get(PROFILE_ENV, "dev")
    settings.load_profile(chosen)
    return chosen
