from __future__ import annotations

import json

import numpy as np
import pytest

from lowrank.testing import load_profile

load_profile()

# Notebooks that fetch from the package index (nbmake items carry no markers of their own):
# marked `network` like tests/test_minilm.py, so the default `python3 tasks.py test` needs
# no index and CI runs them in its slow-and-network step.
NETWORK_NOTEBOOKS = {"02_model_weights.ipynb"}  # fetch_minilm(): 91 MB on a cold cache


def _committed_with_outputs(path) -> bool:
    # Such a notebook is executed by tests/test_notebooks_outputs.py, which also checks its
    # committed outputs against the fresh ones; nbmake running it too would double the time.
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return any(cell.get("outputs") for cell in cells if cell["cell_type"] == "code")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    kept, twice = [], []
    for item in items:
        if item.path.suffix == ".ipynb" and item.path.name in NETWORK_NOTEBOOKS:
            item.add_marker(pytest.mark.network)
        if item.path.suffix == ".ipynb" and _committed_with_outputs(item.path):
            twice.append(item)
        else:
            kept.append(item)
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """Tests share two cores with worker processes they start; BLAS threads that spin on a
    busy core turn millisecond products into seconds. Speed is the benchmarks' business."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test opened through pyplot are closed after it: matplotlib warns past 20
    open figures, and the warning is an error in this suite (a test that inspects a returned
    figure should not have to remember to close it)."""
    yield
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261129)
