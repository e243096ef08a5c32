"""The random-matrix view in analysis reports: per matrix (MatrixResult.random_matrix, the
same records lowrank.rmt gives for the same singular values), per model
(Report.random_matrix_summary), and in the JSON, CSV, Markdown and text formats."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _reports import synthetic_report

from lowrank.analysis import (
    AnalysisOptions,
    MatrixResult,
    RandomMatrixGroup,
    RandomMatrixView,
    Report,
    UpdateResult,
    analyze,
    analyze_matrix,
    analyze_update,
    analyze_update_matrix,
)
from lowrank.io import save_safetensors
from lowrank.rmt import marchenko_pastur_edge, power_law_fit


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def with_spectrum(rng: np.random.Generator, s: np.ndarray, m: int, n: int) -> np.ndarray:
    """An m x n matrix with singular values ``s`` (random orthonormal factors)."""
    k = s.size
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (U * s) @ V.T


def pareto_matrix(rng: np.random.Generator, alpha: float, m: int, n: int) -> np.ndarray:
    """Eigenvalues sigma^2 drawn from a Pareto law p(lambda) ~ lambda^-alpha, lambda >= 1."""
    lam = (1.0 - rng.random(min(m, n))) ** (-1.0 / (alpha - 1.0))
    return with_spectrum(rng, np.sqrt(np.sort(lam)[::-1]), m, n)


def spiked_matrix(rng: np.random.Generator, spikes: list[float], m: int, n: int) -> np.ndarray:
    """Unit-variance Gaussian noise plus a signal of the given singular values."""
    return rng.standard_normal((m, n)) + with_spectrum(rng, np.array(spikes), m, n)


def expected_view(m: MatrixResult) -> RandomMatrixView:
    """lowrank.rmt called directly on the result's singular values."""
    s = m.singular_values
    positive = np.unique(s[s > 0])
    return RandomMatrixView(
        marchenko_pastur=marchenko_pastur_edge(s, shape=m.shape),
        marchenko_pastur_fit=marchenko_pastur_edge(s, shape=m.shape, method="fit"),
        power_law=power_law_fit(s) if positive.size >= 2 else None,
    )


# -- per matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.standard_normal((40, 25)),
        lambda rng: rng.standard_normal((25, 40)).astype(np.float32),
        lambda rng: spiked_matrix(rng, [60.0, 45.0], 120, 60),
        lambda rng: pareto_matrix(rng, 3.0, 300, 200),
        lambda rng: rng.standard_normal((6, 4)) + 1j * rng.standard_normal((6, 4)),
    ],
    ids=["gaussian", "float32-wide", "spiked", "pareto", "complex"],
)
def test_per_matrix_fields_are_rmts_on_the_same_singular_values(make):
    res = analyze_matrix(make(np.random.default_rng(3)))
    assert res.random_matrix is not None
    assert res.random_matrix == expected_view(res)  # exact: the same records
    assert res.random_matrix.marchenko_pastur.method == "closed_form"
    assert res.random_matrix.marchenko_pastur_fit.method == "fit"


@pytest.mark.parametrize(
    ("A", "why"),
    [
        (np.zeros((5, 3)), "the zero matrix"),
        (3.0 * np.eye(4), "a multiple of an orthogonal matrix: one distinct value"),
        (np.diag([2.0, 0.0, 0.0]), "one positive value"),
    ],
)
def test_no_tail_gives_no_power_law_and_no_error(A, why):
    res = analyze_matrix(A)
    assert res.random_matrix is not None, why
    assert res.random_matrix.power_law is None, why
    assert res.random_matrix == expected_view(res)


def test_planted_spikes_are_counted_and_pareto_alpha_recovered():
    rng = np.random.default_rng(11)
    spiked = analyze_matrix(spiked_matrix(rng, [80.0, 60.0, 45.0], 200, 100))
    assert spiked.random_matrix is not None
    # Noise edge ~ sqrt(200) + sqrt(100) = 24.1; the spikes stand at ~80, 60, 45.
    assert spiked.random_matrix.marchenko_pastur.num_spikes == 3
    assert spiked.random_matrix.marchenko_pastur_fit.num_spikes == 3
    pareto = analyze_matrix(pareto_matrix(rng, 3.0, 1200, 800))
    assert pareto.random_matrix is not None and pareto.random_matrix.power_law is not None
    fit = pareto.random_matrix.power_law
    # The MLE's standard error is (alpha - 1)/sqrt(n_tail): three of them.
    assert abs(fit.alpha - 3.0) < 3 * fit.alpha_stderr
    assert not fit.under_trained and not fit.over_trained


def test_update_fields_describe_delta():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((30, 20))
    delta = with_spectrum(rng, np.array([5.0, 3.0, 2.0, 1.0]), 30, 20)
    res = analyze_update_matrix(base + delta, base, options=AnalysisOptions(ranks=[2]))
    assert res.random_matrix == expected_view(res)
    s_delta = np.linalg.svd((base + delta) - base, compute_uv=False)
    np.testing.assert_allclose(res.singular_values, s_delta, rtol=1e-10, atol=1e-12)
    # Closed form by hand: sigma^2 = (25 + 9 + 4 + 1)/(30*20), edge = sigma(sqrt 30 + sqrt 20)
    # = 2.54: the values 5 and 3 stand above it.
    assert res.random_matrix is not None
    mp = res.random_matrix.marchenko_pastur
    assert mp.edge == pytest.approx(math.sqrt(39 / 600) * (math.sqrt(30) + math.sqrt(20)))
    assert mp.num_spikes == 2 and mp.spike_share == pytest.approx(34 / 39)
    # Rank 4: most values are rounding noise (~1e-15), the fitted bulk is that noise, and
    # the 4 directions (and possibly a rounding value or so) stand above it.
    assert res.random_matrix.marchenko_pastur_fit.num_spikes >= 4
    assert res.random_matrix.marchenko_pastur_fit.edge < 1e-12


# -- formats ---------------------------------------------------------------------------


def _report(matrices: list[MatrixResult], *, base: str | None = None) -> Report:
    return synthetic_report(
        matrices,
        ranks=(8, 16, 64),
        energies=(0.9, 0.99),
        source="/x/model.safetensors",
        base=base,
    )


@pytest.fixture(scope="module")
def synthetic() -> Report:
    """Layered matrices of two module types with known alpha and planted spikes, and two
    matrices without a layer index (one of them the zero matrix, with no tail)."""
    rng = np.random.default_rng(2024)
    specs = [
        ("model.layers.0.q.weight", pareto_matrix(rng, 2.5, 150, 100)),
        ("model.layers.1.q.weight", pareto_matrix(rng, 4.0, 150, 100)),
        ("model.layers.2.q.weight", pareto_matrix(rng, 1.6, 150, 100)),
        ("model.layers.0.mlp.weight", spiked_matrix(rng, [70.0, 50.0], 160, 80)),
        ("model.layers.1.mlp.weight", spiked_matrix(rng, [90.0], 160, 80)),
        ("embed.weight", rng.standard_normal((50, 20))),
        ("head.weight", np.zeros((10, 20))),
    ]
    return _report([analyze_matrix(A, name=name) for name, A in specs])


def test_json_round_trip_is_exact(synthetic, tmp_path):
    path = tmp_path / "r.json"
    synthetic.write_json(path)
    back = Report.read_json(path)
    assert back == synthetic
    for a, b in zip(back.matrices, synthetic.matrices, strict=True):
        assert a.random_matrix == b.random_matrix
    assert back.result("head.weight").random_matrix.power_law is None  # type: ignore[union-attr]
    line = json.loads(synthetic.to_json())["matrices"][0]["random_matrix"]
    assert set(line) == {"marchenko_pastur", "marchenko_pastur_fit", "power_law"}
    assert line["power_law"]["alpha"] == synthetic.matrices[0].random_matrix.power_law.alpha  # type: ignore[union-attr]


def test_json_round_trip_of_infinite_xmax(tmp_path):
    # sigma_1 = 1e200: sigma_1^2 overflows float64, the fit keeps it as inf.
    res = analyze_matrix(np.diag([1e200, 3e199, 1e199, 2e198]))
    assert res.random_matrix is not None and res.random_matrix.power_law is not None
    assert res.random_matrix.power_law.xmax == math.inf
    report = _report([res])
    assert '"inf"' in report.to_json()
    assert Report.from_json(report.to_json()) == report


def test_a_report_without_the_view_still_reads(synthetic):
    data = synthetic.to_dict()
    for m in data["matrices"]:
        del m["random_matrix"]  # as written before the view existed
    old = Report.from_dict(data)
    assert all(m.random_matrix is None for m in old.matrices)
    assert Report.from_json(old.to_json()) == old
    summary = old.random_matrix_summary()
    assert summary.overall.count == 7 and summary.overall.fitted == 0
    assert summary.overall.alpha_mean is None and summary.overall.spikes == 0
    rows = list(csv.DictReader(io.StringIO(old.to_csv())))
    assert rows[0]["alpha"] == "" and rows[0]["mp_spikes"] == ""
    assert "–" in old.to_text()


def test_csv_columns_hold_exact_values(synthetic):
    rows = list(csv.DictReader(io.StringIO(synthetic.to_csv())))
    for row, m in zip(rows, synthetic.matrices, strict=True):
        view = m.random_matrix
        assert view is not None
        mp, mpf, fit = view.marchenko_pastur, view.marchenko_pastur_fit, view.power_law
        assert float(row["mp_edge"]) == mp.edge and float(row["mp_sigma"]) == mp.sigma
        assert int(row["mp_spikes"]) == mp.num_spikes
        assert float(row["mp_spike_share"]) == mp.spike_share
        assert float(row["mp_softrank"]) == mp.mp_softrank
        assert float(row["mp_fit_edge"]) == mpf.edge
        assert int(row["mp_fit_spikes"]) == mpf.num_spikes
        assert float(row["mp_fit_spike_share"]) == mpf.spike_share
        if fit is None:
            assert row["alpha"] == row["alpha_n_tail"] == row["under_trained"] == ""
            continue
        assert float(row["alpha"]) == fit.alpha
        assert float(row["alpha_stderr"]) == fit.alpha_stderr
        assert float(row["alpha_xmin"]) == fit.xmin
        assert float(row["alpha_ks_distance"]) == fit.ks_distance
        assert int(row["alpha_n_tail"]) == fit.n_tail
        assert float(row["alpha_weighted"]) == fit.alpha_weighted
        assert row["under_trained"] == str(fit.under_trained)
        assert row["over_trained"] == str(fit.over_trained)
    assert rows[-1]["name"] == "head.weight" and rows[-1]["alpha"] == ""


def test_markdown_and_text_show_alpha_spikes_and_the_summary(synthetic):
    md = synthetic.to_markdown()
    header = next(line for line in md.splitlines() if line.startswith("| name"))
    assert header.endswith("| α | spikes |")
    q0 = synthetic.result("model.layers.0.q.weight")
    assert q0.random_matrix is not None and q0.random_matrix.power_law is not None
    row = next(line for line in md.splitlines() if line.startswith("| model.layers.0.q.weight"))
    spikes = q0.random_matrix.marchenko_pastur.num_spikes
    assert row.endswith(f"| {q0.random_matrix.power_law.alpha:.2f} | {spikes} |")
    assert next(ln for ln in md.splitlines() if ln.startswith("| head.weight")).endswith(
        "| – | 0 |"
    )
    assert "α: power-law exponent" in md and "spikes: singular values above" in md
    assert "## Random-matrix view by module type" in md
    section = md.split("## Random-matrix view by module type", 1)[1]
    table = [ln for ln in section.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in table] == [
        "| module",
        "| q",
        "| mlp",
        "| embed.weight",
        "| head.weight",
        "| all",
    ]
    assert table[-1].startswith("| all | 7 | 6 |")
    text = synthetic.to_text()
    assert text.splitlines()[0].split()[-2:] == ["α", "spikes"]
    assert "α: power-law exponent" in text and "Marchenko–Pastur edge" in text


# -- per model -------------------------------------------------------------------------


def _by_hand(name: str, ms: list[MatrixResult]) -> RandomMatrixGroup:
    fits = [m.random_matrix.power_law for m in ms]  # type: ignore[union-attr]
    fits = [f for f in fits if f is not None]
    alphas = [f.alpha for f in fits]
    return RandomMatrixGroup(
        name=name,
        count=len(ms),
        fitted=len(fits),
        alpha_mean=sum(alphas) / len(alphas) if alphas else None,
        alpha_median=statistics.median(alphas) if alphas else None,
        alpha_weighted_mean=sum(f.alpha_weighted for f in fits) / len(fits) if fits else None,
        spikes=sum(m.random_matrix.marchenko_pastur.num_spikes for m in ms),  # type: ignore[union-attr]
        under_trained_share=sum(f.alpha > 6 for f in fits) / len(fits) if fits else None,
        over_trained_share=sum(f.alpha < 2 for f in fits) / len(fits) if fits else None,
    )


def test_model_summary_against_a_hand_computation(synthetic):
    summary = synthetic.random_matrix_summary()
    by_name = {m.name: m for m in synthetic.matrices}
    q = [by_name[f"model.layers.{i}.q.weight"] for i in range(3)]
    mlp = [by_name[f"model.layers.{i}.mlp.weight"] for i in range(2)]
    groups = {g.name: g for g in summary.modules}
    assert list(groups) == ["q", "mlp", "embed.weight", "head.weight"]
    for name, ms in [
        ("q", q),
        ("mlp", mlp),
        ("embed.weight", [by_name["embed.weight"]]),
        ("head.weight", [by_name["head.weight"]]),
    ]:
        got, want = groups[name], _by_hand(name, ms)
        assert (got.count, got.fitted, got.spikes) == (want.count, want.fitted, want.spikes)
        for field in ("alpha_mean", "alpha_median", "alpha_weighted_mean"):
            a, b = getattr(got, field), getattr(want, field)
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-14), (name, field)
        assert got.under_trained_share == want.under_trained_share
        assert got.over_trained_share == want.over_trained_share
    overall = summary.overall
    want = _by_hand("all", list(synthetic.matrices))
    assert overall.name == "all" and overall.count == 7 and overall.fitted == 6
    assert overall.alpha_mean == pytest.approx(want.alpha_mean, rel=1e-14)
    assert overall.alpha_median == pytest.approx(want.alpha_median, rel=1e-14)
    assert overall.spikes == want.spikes
    # What the planted structure makes of it: the head (zero) has no fit and no spikes;
    # the mlp matrices carry their 2 + 1 planted spikes; the q alphas follow the Pareto laws
    # (2.5, 4, 1.6), so the alpha=1.6 one is over-trained.
    assert groups["head.weight"].fitted == 0 and groups["head.weight"].alpha_mean is None
    assert groups["head.weight"].spikes == 0
    assert groups["mlp"].spikes == 3
    alphas = [m.random_matrix.power_law.alpha for m in q]  # type: ignore[union-attr]
    assert alphas[2] < 2 < alphas[0] < alphas[1] < 6
    assert groups["q"].over_trained_share == pytest.approx(1 / 3)
    assert groups["q"].alpha_median == alphas[0]


def test_empty_report_summary():
    summary = _report([]).random_matrix_summary()
    assert summary.modules == ()
    assert summary.overall == RandomMatrixGroup("all", 0, 0, None, None, None, 0, None, None)


# -- end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    rng = np.random.default_rng(9)
    root = tmp_path_factory.mktemp("rmt")
    base = {
        "encoder.layer.0.attention.query.weight": pareto_matrix(rng, 3.0, 48, 32),
        "encoder.layer.1.attention.query.weight": pareto_matrix(rng, 3.0, 48, 32),
        "encoder.layer.0.output.weight": spiked_matrix(rng, [40.0], 64, 32),
        "encoder.layer.1.output.weight": spiked_matrix(rng, [40.0], 64, 32),
        "encoder.layer.0.output.bias": np.zeros(64),
        "pooler.weight": np.eye(16),
    }
    base = {k: v.astype(np.float32) for k, v in base.items()}
    tuned = dict(base)
    tuned["encoder.layer.0.attention.query.weight"] = base[
        "encoder.layer.0.attention.query.weight"
    ] + with_spectrum(rng, np.array([1.0, 0.5, 0.25]), 48, 32).astype(np.float32)
    save_safetensors(root / "base.safetensors", base)
    save_safetensors(root / "tuned.safetensors", tuned)
    return root


def test_analyze_end_to_end(checkpoints, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        report = analyze(checkpoints / "base.safetensors", executor=pool)
    assert len(report.matrices) == 5
    for m in report.matrices:
        assert m.random_matrix == expected_view(m), m.name
    assert report.result("pooler.weight").random_matrix.power_law is None  # type: ignore[union-attr]
    summary = report.random_matrix_summary()
    assert [(g.name, g.count, g.fitted) for g in summary.modules] == [
        ("attention.query", 2, 2),
        ("output", 2, 2),
        ("pooler.weight", 1, 0),
    ]
    assert summary.overall.count == 5 and summary.overall.fitted == 4
    report.write_json(tmp_path / "r.json")
    assert Report.read_json(tmp_path / "r.json") == report
    md = report.to_markdown()
    assert "| attention.query | 2 | 2 |" in md and "| pooler.weight | 1 | 0 |" in md


def test_analyze_update_end_to_end(checkpoints):
    with ThreadPoolExecutor(2) as pool:
        report = analyze_update(
            checkpoints / "tuned.safetensors",
            checkpoints / "base.safetensors",
            ranks=[2],
            executor=pool,
        )
    (m,) = report.matrices
    assert isinstance(m, UpdateResult)
    assert m.random_matrix == expected_view(m)
    assert m.random_matrix is not None and m.random_matrix.power_law is not None
    assert Report.from_json(report.to_json()) == report
    assert "## Random-matrix view of ΔW by module type" in report.to_markdown()
    assert report.random_matrix_summary().overall.fitted == 1
