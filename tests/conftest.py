from __future__ import annotations

import numpy as np
import pytest

from lowrank.testing import load_profile

load_profile()


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """Tests share two cores with worker processes they start; BLAS threads that spin on a
    busy core turn millisecond products into seconds. Speed is the benchmarks' business."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261129)
