from __future__ import annotations

import numpy as np
import pytest

from lowrank.testing import load_profile

load_profile()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261129)
