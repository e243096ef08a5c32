"""``lowrank analyze TUNED --base BASE`` (issue 13 §1): reports, stderr lines, exit codes.

The numbers themselves are checked against independent references in
``tests/test_analysis_update.py``; here: the command's outputs carry them unchanged, the
unpaired names and shape mismatches are listed (report and one stderr line), and every
error is one line with the right exit status.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from lowrank.analysis import AnalysisOptions, Report, UpdateResult, analyze_update_matrix
from lowrank.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from lowrank.io import save_safetensors


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread (2 cores shared with other tests)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """base and tuned checkpoints: two changed matrices (one bfloat16), a name in each only,
    a shape mismatch."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("cli-update")
    W = rng.standard_normal((20, 12))
    delta = np.outer(rng.standard_normal(20), rng.standard_normal(12))
    bf16 = ml_dtypes.bfloat16
    base = {
        "layer.0.q.weight": W.astype(np.float32),
        "layer.0.v.weight": W.astype(bf16),
        "layer.0.old.weight": W.astype(np.float32),
        "layer.0.o.weight": W.astype(np.float32),
    }
    tuned = {
        "layer.0.q.weight": (W + delta).astype(np.float32),
        "layer.0.v.weight": (W + 0.5 * delta).astype(bf16),
        "layer.0.new.weight": W.astype(np.float32),
        "layer.0.o.weight": W[:10].astype(np.float32),
    }
    save_safetensors(root / "base.safetensors", base)
    save_safetensors(root / "tuned.safetensors", tuned)
    return root, base, tuned


def _argv(root: Path, *extra: str) -> list[str]:
    return [
        "analyze",
        str(root / "tuned.safetensors"),
        "--base",
        str(root / "base.safetensors"),
        "--ranks",
        "1,2",
        "--no-progress",
        *extra,
    ]


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


class TestAnalyzeBase:
    def test_reports_and_stderr(self, pair, tmp_path, capsys):
        root, base, tuned = pair
        outputs = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "md")}
        argv = _argv(root, "--workers", "1", "--threads-per-worker", "1")
        for kind, path in outputs.items():
            argv += [f"--{kind}", str(path)]
        assert main(argv) == EXIT_OK
        stdout, stderr = capsys.readouterr()
        assert stdout.startswith(f"# {root / 'tuned.safetensors'} - {root / 'base.safetensors'}")
        assert "ovlU@2" in stdout and "amp@1" in stdout
        notes = [line for line in stderr.splitlines() if "not compared" in line]
        assert notes == [
            "lowrank: note: not compared: 2 unpaired: layer.0.new.weight, layer.0.old.weight; "
            "1 shape mismatch: layer.0.o.weight (shape (10, 12) in tuned but (20, 12) in base) "
            "(listed in the report as skipped)"
        ]
        report = Report.read_json(outputs["json"])
        assert report.run.base == str(root / "base.safetensors")
        assert "processes" in report.run.executor
        assert {s.name: s.code for s in report.skipped} == {
            "layer.0.o.weight": "shape",
            "layer.0.new.weight": "unpaired",
            "layer.0.old.weight": "unpaired",
        }
        # The CLI's numbers (worker processes) are those of the API on the stored arrays.
        for m in report.matrices:
            assert isinstance(m, UpdateResult)
            ref = analyze_update_matrix(
                tuned[m.name], base[m.name], options=AnalysisOptions(ranks=[1, 2])
            )
            for field in ("norm_fro", "relative_size", "rank_errors", "amplification"):
                assert getattr(m, field) == getattr(ref, field), field
            assert m.overlap_left == ref.overlap_left and m.overlap_right == ref.overlap_right
            np.testing.assert_array_equal(m.singular_values, ref.singular_values)
        rows = list(csv.DictReader(io.StringIO(outputs["csv"].read_text())))
        assert sorted(r["name"] for r in rows) == ["layer.0.q.weight", "layer.0.v.weight"]
        v = next(r for r in rows if r["name"] == "layer.0.v.weight")
        assert (v["dtype"], v["base_dtype"]) == ("bfloat16", "bfloat16")
        assert float(v["relative_size"]) == report.result("layer.0.v.weight").relative_size
        md = outputs["md"].read_text()
        assert "update ΔW" in md and "layer.0.new.weight" in md and "amp@2" in md

    def test_no_note_when_everything_pairs(self, tmp_path, capsys):
        W = np.eye(4, dtype=np.float32)
        save_safetensors(tmp_path / "b.safetensors", {"w": W})
        save_safetensors(tmp_path / "t.safetensors", {"w": 2 * W})
        argv = [
            "analyze",
            str(tmp_path / "t.safetensors"),
            "--base",
            str(tmp_path / "b.safetensors"),
        ]
        assert main([*argv, "--ranks", "1", "--no-progress"]) == EXIT_OK
        assert capsys.readouterr().err == ""

    def test_missing_base_file(self, pair, capsys):
        root, *_ = pair
        argv = [
            "analyze",
            str(root / "tuned.safetensors"),
            "--base",
            str(root / "nope.safetensors"),
        ]
        assert main(argv) == EXIT_USAGE
        assert _one_error_line(capsys) == (
            f"lowrank: error: base must be an existing file or directory; got "
            f"'{root / 'nope.safetensors'}'"
        )

    def test_missing_tuned_file(self, pair, capsys):
        root, *_ = pair
        argv = ["analyze", str(root / "nope.safetensors"), "--base", str(root / "base.safetensors")]
        assert main(argv) == EXIT_USAGE
        assert _one_error_line(capsys).startswith("lowrank: error: ")

    def test_base_with_example_is_a_usage_error(self, pair, capsys):
        root, *_ = pair
        assert main(["analyze", "--example", "minilm", "--base", str(root)]) == EXIT_USAGE
        assert _one_error_line(capsys) == (
            "lowrank analyze: error: --base applies to PATH, not --example"
        )

    def test_patterns_selecting_nothing_in_base(self, pair, tmp_path, capsys):
        root, *_ = pair
        assert main(_argv(root, "--include", "*new*")) == EXIT_USAGE
        line = _one_error_line(capsys)
        assert line.startswith("lowrank: error: ") and "include" in line

    def test_a_corrupt_base_is_a_usage_error(self, pair, tmp_path, capsys):
        root, *_ = pair
        (tmp_path / "bad.safetensors").write_bytes(b"\x01\x02")
        argv = [
            "analyze",
            str(root / "tuned.safetensors"),
            "--base",
            str(tmp_path / "bad.safetensors"),
        ]
        assert main(argv) == EXIT_USAGE
        assert _one_error_line(capsys).startswith("lowrank: error: ")

    def test_a_failing_pair_exits_1(self, tmp_path, capsys):
        W = np.eye(3, dtype=np.float32)
        save_safetensors(tmp_path / "b.safetensors", {"w": W})
        save_safetensors(tmp_path / "t.safetensors", {"w": W * np.nan})
        argv = [
            "analyze",
            str(tmp_path / "t.safetensors"),
            "--base",
            str(tmp_path / "b.safetensors"),
        ]
        assert main([*argv, "--ranks", "1", "--no-progress"]) == EXIT_FAILURE
        _, err = capsys.readouterr()
        assert "1 of 1 matrix could not be analysed: 'w' (NonFiniteError" in err


@pytest.fixture(scope="module")
def update_json(pair, tmp_path_factory):
    """The JSON report of ``analyze TUNED --base BASE`` on ``pair``."""
    root, *_ = pair
    out = tmp_path_factory.mktemp("update-plot") / "u.json"
    argv = _argv(root, "--workers", "1", "--threads-per-worker", "1", "--json", str(out))
    assert main(argv) == EXIT_OK
    return out


class TestPlotUpdateSpectra:
    """``lowrank plot REPORT --kind update-spectra`` on the report of ``analyze TUNED --base
    BASE``, and ``analyze --plot-kind update-spectra``: the figure is drawn from the
    report's spectra (its lines are checked against them), bad uses are one usage line."""

    @pytest.fixture
    def drawn(self, monkeypatch):
        """The figures lowrank.plot.plot_report draws, captured."""
        import lowrank.plot

        figures: list = []
        original = lowrank.plot.plot_report

        def capture(*args, **kwargs):
            figures.append(original(*args, **kwargs))
            return figures[-1]

        monkeypatch.setattr(lowrank.plot, "plot_report", capture)
        return figures

    def test_lines_are_the_reports_spectra(self, update_json, drawn, tmp_path, capsys):
        from matplotlib.image import imread

        target = tmp_path / "us.png"
        argv = ["plot", str(update_json), "--kind", "update-spectra", "-o", str(target)]
        assert main(argv) == EXIT_OK
        assert capsys.readouterr().err.strip() == f"wrote {target}"
        rgb = imread(target)[..., :3]
        assert np.mean(np.any(rgb < 0.98, axis=2)) > 0.01  # something is drawn
        ax = drawn[-1].axes[0]
        report = Report.read_json(update_json)
        lines = ax.get_lines()
        assert len(lines) == 2 * len(report.matrices)  # ΔW solid and W dashed per matrix
        for m, solid, dashed in zip(report.matrices, lines[::2], lines[1::2], strict=True):
            assert isinstance(m, UpdateResult)
            b = m.base_singular_values
            np.testing.assert_allclose(dashed.get_ydata(), b / b[0], rtol=1e-15)
            s = m.singular_values
            np.testing.assert_allclose(solid.get_ydata()[s > 0], s[s > 0] / b[0], rtol=1e-15)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[:2] == ["ΔW (solid)", "W = W_base (dashed)"]

    def test_name_include_and_exclude(self, update_json, drawn, tmp_path, capsys):
        target = tmp_path / "us.png"
        argv = ["plot", str(update_json), "--kind", "update-spectra", "-o", str(target)]
        assert main([*argv, "--name", "layer.0.v.weight"]) == EXIT_OK
        assert len(drawn[-1].axes[0].get_lines()) == 2
        assert main([*argv, "--include", "*.q.*"]) == EXIT_OK
        assert len(drawn[-1].axes[0].get_lines()) == 2
        assert main([*argv, "--exclude", "*.q.*", "--exclude", "*.v.*"]) == EXIT_USAGE
        capsys.readouterr()

    def test_plain_report_is_a_usage_error(self, pair, tmp_path, capsys):
        root, *_ = pair
        plain = tmp_path / "plain.json"
        argv = ["analyze", str(root / "base.safetensors"), "--ranks", "1", "--no-progress"]
        assert main([*argv, "--json", str(plain)]) == EXIT_OK
        capsys.readouterr()
        target = tmp_path / "x.png"
        argv = ["plot", str(plain), "--kind", "update-spectra", "-o", str(target)]
        assert main(argv) == EXIT_USAGE
        assert _one_error_line(capsys) == (
            "lowrank plot: error: --kind update-spectra needs an update report (of 'lowrank "
            "analyze TUNED --base BASE', or of an adapter folder with --base) with at least "
            f"one analysed update; '{plain}' holds plain matrices"
        )
        assert not target.exists()

    def test_unknown_name_is_one_line(self, update_json, tmp_path, capsys):
        argv = ["plot", str(update_json), "--kind", "update-spectra", "-o", str(tmp_path / "x.png")]
        assert main([*argv, "--name", "nope"]) == EXIT_USAGE
        assert "unknown name 'nope'" in _one_error_line(capsys)

    def test_analyze_writes_the_figure(self, pair, tmp_path, capsys):
        root, *_ = pair
        figure = tmp_path / "us.png"
        argv = _argv(root, "--workers", "1", "--threads-per-worker", "1")
        argv += ["--plot", str(figure), "--plot-kind", "update-spectra"]
        assert main(argv) == EXIT_OK
        assert f"wrote {figure}" in capsys.readouterr().err
        assert figure.read_bytes().startswith(b"\x89PNG")

    def test_analyze_plot_kind_needs_a_base(self, pair, tmp_path, capsys):
        root, *_ = pair
        figure = tmp_path / "us.png"
        argv = ["analyze", str(root / "base.safetensors"), "--plot", str(figure)]
        assert main([*argv, "--plot-kind", "update-spectra"]) == EXIT_USAGE
        assert _one_error_line(capsys) == (
            "lowrank analyze: error: --plot-kind update-spectra draws updates: it needs "
            "--base BASE (and not --merged)"
        )
        assert not figure.exists()
