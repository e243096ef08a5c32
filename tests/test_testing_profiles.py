"""Hypothesis profiles of lowrank.testing, and what importing the package costs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import settings

from lowrank import InputError
from lowrank.testing import PROFILE_ENV, load_profile, register_profiles
from lowrank.testing.profiles import PROFILES


@pytest.fixture
def restore_profile():
    before = settings.get_current_profile_name()
    yield
    settings.load_profile(before)


def test_profiles_are_registered():
    register_profiles()
    assert set(PROFILES) == {"dev", "ci", "thorough"}
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.deadline is None
    assert settings.get_profile("dev").max_examples < ci.max_examples
    assert settings.get_profile("thorough").max_examples >= 500


@pytest.mark.usefixtures("restore_profile")
def test_load_profile_reads_the_environment(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "thorough")
    assert load_profile() == "thorough"
    assert settings().max_examples == PROFILES["thorough"]["max_examples"]
    monkeypatch.setenv(PROFILE_ENV, "")
    assert load_profile() == "dev"
    assert load_profile(name="ci") == "ci"  # an explicit name wins
    assert settings().derandomize


@pytest.mark.usefixtures("restore_profile")
def test_unknown_profile_is_an_input_error(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "fast")
    with pytest.raises(InputError, match=r"HYPOTHESIS_PROFILE must name a registered .*got 'fast'"):
        load_profile()
    with pytest.raises(InputError, match=r"name must name a registered .*got 'nope'"):
        load_profile(name="nope")


def test_load_profile_name_is_keyword_only():
    """Issue 12 section 3: optional arguments are passed by name."""
    with pytest.raises(TypeError, match="positional argument"):
        load_profile("ci")  # type: ignore[misc]


def test_assertions_do_not_need_hypothesis():
    """lowrank.testing and its assertions import without Hypothesis; the strategies load it
    on first use; and the library itself never loads lowrank.testing."""
    code = (
        "import sys\n"
        "import lowrank, lowrank.svd, lowrank.approx\n"
        "assert 'lowrank.testing' not in sys.modules\n"
        "import lowrank.testing, lowrank.testing.assertions, lowrank.testing.cases\n"
        "assert 'hypothesis' not in sys.modules, 'eager import'\n"
        "from lowrank.testing import matrices_with_spectrum\n"
        "assert 'hypothesis' in sys.modules\n"
        "assert 'matrices_with_spectrum' in dir(lowrank.testing)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute():
    import lowrank.testing

    with pytest.raises(AttributeError, match="has no attribute 'strategies_of_doom'"):
        lowrank.testing.strategies_of_doom  # noqa: B018
