"""Hypothesis settings profiles, chosen by the ``HYPOTHESIS_PROFILE`` environment variable.

=============  ============  ===========================================================
profile        max_examples  purpose
=============  ============  ===========================================================
``dev``        30            the default: quick, random, remembers failures locally
``ci``         40            derandomized (the same examples on every run, no example
                             database), prints the reproduction blob of a failure
``thorough``   500           a long random search before a release or after a change
                             to the numerics
=============  ============  ===========================================================

None has a deadline (the first call of a LAPACK routine can be slow) and the ``too_slow``
health check is off (building a matrix with a prescribed spectrum is not a trivial draw).
Hypothesis itself is imported only when a profile is registered or loaded.

Use in ``conftest.py``::

    from lowrank.testing import load_profile

    load_profile()  # $HYPOTHESIS_PROFILE, default "dev"
"""

from __future__ import annotations

import os
from typing import Any

from lowrank.errors import InputError

__all__ = ["PROFILES", "PROFILE_ENV", "load_profile", "register_profiles"]

PROFILE_ENV = "HYPOTHESIS_PROFILE"
"""The environment variable that names the profile."""

PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"max_examples": 30},
    "ci": {"max_examples": 40, "derandomize": True, "database": None, "print_blob": True},
    "thorough": {"max_examples": 500},
}
"""The settings of each profile, beyond the common ones (no deadline, ``too_slow`` off)."""


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``thorough`` profiles with Hypothesis.

    Each profile is Hypothesis' ``default`` settings plus the common options and its own
    :data:`PROFILES` entry, whatever profile is loaded at the time: without an explicit
    parent Hypothesis would derive it from the *loaded* profile, so registering after
    ``load_profile(name="ci")`` gave ``thorough`` and ``dev`` the derandomization and the
    missing database of ``ci``.

    Examples
    --------
    >>> from hypothesis import settings
    >>> register_profiles()
    >>> settings.get_profile("ci").derandomize
    True
    >>> settings.get_profile("thorough").derandomize  # not inherited from whatever is loaded
    False
    """
    from hypothesis import HealthCheck, settings

    base = settings.get_profile("default")
    for name, options in PROFILES.items():
        settings.register_profile(
            name,
            parent=base,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            **options,
        )


def load_profile(*, name: str | None = None) -> str:
    """Register the profiles and load ``name`` (default: ``$HYPOTHESIS_PROFILE``, else
    ``dev``); return the name loaded.

    Parameters
    ----------
    name : str, optional
        The profile: ``"dev"``, ``"ci"``, ``"thorough"`` (see :data:`PROFILES`) or one
        registered elsewhere with ``hypothesis.settings.register_profile``. Default: the
        environment variable :data:`PROFILE_ENV` (``HYPOTHESIS_PROFILE``), else ``"dev"``.

    Returns
    -------
    str
        The name of the profile now loaded.

    Raises
    ------
    InputError
        The name is neither one of ours nor a profile registered elsewhere.

    Examples
    --------
    >>> from hypothesis import settings
    >>> load_profile(name="thorough")
    'thorough'
    >>> settings().max_examples
    500
    >>> load_profile(name="nightly")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lowrank.errors.InputError: name must name a registered Hypothesis profile ('dev', ...
    >>> load_profile(name="dev")
    'dev'
    """
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    register_profiles()
    chosen = name or os.environ.get(PROFILE_ENV) or "dev"
    try:
        # Look the name up first: Hypothesis's load_profile records an unknown name as the
        # current profile before failing, which breaks later registrations.
        settings.get_profile(chosen)
    except (InvalidArgument, KeyError):
        source = "name" if name else PROFILE_ENV
        raise InputError(
            f"{source} must name a registered Hypothesis profile ({', '.join(map(repr, PROFILES))}"
            f" or one registered elsewhere); got {chosen!r}"
        ) from None
    settings.load_profile(chosen)
    return chosen
