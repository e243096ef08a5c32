"""Audit 5 of the figures and reports (plot.py, the report's JSON and Markdown, the CLI).

Grouped by finding of the audit; each test recomputes what the figure or file should hold
and reads back what was drawn (the Axes' artists) or written.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from lowrank.analysis import (
    AnalysisOptions,
    Report,
    RunInfo,
    analyze_matrix,
    analyze_update,
    analyze_update_matrix,
)
from lowrank.cli import main
from lowrank.errors import FileFormatError, InputError
from lowrank.io import save_safetensors
from lowrank.plot import (
    plot_alpha_summary,
    plot_curves,
    plot_eigenvalues,
    plot_heatmap,
    plot_report,
    plot_spectra,
    save_figure,
)

OPTIONS = AnalysisOptions(ranks=(1, 4), energies=(0.9, 0.99))


def _run(base: str | None = None) -> RunInfo:
    return RunInfo(
        source="/nonexistent/model.safetensors",
        include=(),
        exclude=(),
        regex=False,
        nd_policy="skip",
        ranks=OPTIONS.ranks,
        energies=OPTIONS.energies,
        executor="test",
        lowrank_version="test",
        created="2026-01-01T00:00:00+00:00",
        elapsed_seconds=0.5,
        base=base,
    )


def _matrix(name: str, seed: int = 0, shape: tuple[int, int] = (12, 8)):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 0.8 ** np.arange(shape[1])
    return analyze_matrix(a, name=name, options=OPTIONS)


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


# -- 1. the eigenvalue histogram keeps bars far below the noise bars ------------------------


class TestEigenvalueHistogram:
    def _bars(self, fig):
        ax = fig.axes[0]
        bars = [p for p in ax.patches if p.get_gid() is None]
        left = np.array([p.get_x() for p in bars])
        widths = np.array([p.get_width() for p in bars])
        heights = np.array([p.get_height() for p in bars])
        return left, widths, heights

    def test_rank4_update_top_eigenvalue_has_its_true_height(self):
        # An exactly rank-4 update: 4 real eigenvalues, 44 of rounding noise near 1e-32,
        # so the log-spaced bins span ~33 decades.
        rng = np.random.default_rng(7)
        w = rng.standard_normal((64, 48))
        delta = 0.05 * rng.standard_normal((64, 4)) @ rng.standard_normal((4, 48))
        result = analyze_update_matrix(w + delta, w, name="h.0.attn.q.weight", options=OPTIONS)
        lam = result.singular_values**2
        lam = lam[lam > 0]
        assert lam.max() / lam.min() > 1e16  # the case the audit found
        left, widths, heights = self._bars(plot_eigenvalues(result))
        edges = np.append(left, left[-1] + widths[-1])
        counts, _ = np.histogram(lam, bins=edges)
        expected = counts / (min(result.shape) * widths)
        # Every bar is its own count / (M * width), to rounding (rtol 1e-12): no bar that
        # holds an eigenvalue is drawn empty.
        np.testing.assert_allclose(heights, expected, rtol=1e-12, atol=0)
        top = int(np.searchsorted(edges, lam.max(), side="right")) - 1
        top = min(top, len(heights) - 1)
        assert counts[top] >= 1
        assert heights[top] > 0
        assert math.isclose(
            heights[top], counts[top] / (min(result.shape) * widths[top]), rel_tol=1e-12
        )
        assert set(np.nonzero(heights)[0]) == set(np.nonzero(counts)[0])

    def test_legend_still_first_and_counts_the_eigenvalues(self):
        result = analyze_matrix(np.diag([3.0, 2.0, 1.0, 0.5]), name="d", options=OPTIONS)
        ax = plot_eigenvalues(result).axes[0]
        assert _legend_texts(ax)[0] == "eigenvalues σ_i² (4)"

    def test_bins_bounded(self):
        with pytest.raises(InputError, match="bins"):
            plot_eigenvalues(_matrix("m"), bins=10**6)


# -- 2. a non-finite field does not abort the run or lose the other matrices ---------------


class TestNonFiniteResults:
    def test_inf_base_norm_round_trips_as_inf_string(self):
        w = np.full((4, 4), 1e308)
        t = w.copy()
        t[0, 0] = 1.5e308
        u = analyze_update_matrix(t, w, name="h.0.q.weight", options=OPTIONS)
        assert u.base_norm_fro == math.inf
        # Its base spectrum overflowed too: a clear lowrank error, not json's ValueError.
        with pytest.raises(InputError, match=r"'h\.0\.q\.weight'.*base_singular_values"):
            u.to_dict()

        kept = replace(u, base_singular_values=None)
        assert kept.to_dict()["base_norm_fro"] == "inf"
        report = Report(run=_run(base="/nonexistent/base"), matrices=(kept,))
        back = Report.from_json(report.to_json())
        assert back == report
        assert back.matrices[0].base_norm_fro == math.inf

    def test_update_run_keeps_the_healthy_matrix(self, tmp_path):
        w = np.full((4, 4), 1e308)
        t = w.copy()
        t[0, 0] = 1.5e308
        rng = np.random.default_rng(0)
        a = rng.standard_normal((6, 5))
        save_safetensors(tmp_path / "base.safetensors", {"h.0.q.weight": w, "h.0.v.weight": a})
        save_safetensors(
            tmp_path / "tuned.safetensors", {"h.0.q.weight": t, "h.0.v.weight": a + 0.1}
        )
        checkpoint = tmp_path / "run.json"
        report = analyze_update(
            tmp_path / "tuned.safetensors",
            tmp_path / "base.safetensors",
            ranks=OPTIONS.ranks,
            energies=OPTIONS.energies,
            workers=1,
            checkpoint=checkpoint,
        )
        assert [m.name for m in report.matrices] == ["h.0.v.weight"]
        errors = [s for s in report.skipped if s.code == "error"]
        assert [s.name for s in errors] == ["h.0.q.weight"]
        assert "Frobenius norm exceeds the float64 range" in errors[0].reason
        back = Report.read_json(checkpoint)
        assert not back.partial
        assert back == report
        # The healthy update is the same as analysing it alone.
        alone = analyze_update_matrix(a + 0.1, a, name="h.0.v.weight", options=OPTIONS)
        np.testing.assert_array_equal(back.matrices[0].singular_values, alone.singular_values)

    def test_cli_exits_with_one_error_line_and_writes_reports(self, tmp_path, capsys):
        w = np.full((4, 4), 1e308)
        t = w.copy()
        t[0, 0] = 1.5e308
        a = np.arange(30.0).reshape(6, 5)
        save_safetensors(tmp_path / "b.safetensors", {"h.0.q.weight": w, "h.0.v.weight": a})
        save_safetensors(tmp_path / "t.safetensors", {"h.0.q.weight": t, "h.0.v.weight": a + 1})
        rc = main(
            [
                "analyze",
                str(tmp_path / "t.safetensors"),
                "--base",
                str(tmp_path / "b.safetensors"),
                "--json",
                str(tmp_path / "r.json"),
                "--md",
                str(tmp_path / "r.md"),
            ]
        )
        err = capsys.readouterr().err
        assert rc == 1
        assert "Traceback" not in err
        assert [line for line in err.splitlines() if line.startswith("lowrank: error")] != []
        report = Report.read_json(tmp_path / "r.json")
        assert [m.name for m in report.matrices] == ["h.0.v.weight"]
        assert (tmp_path / "r.md").is_file()

    def test_non_finite_singular_value_cannot_be_written(self):

        m = _matrix("m")
        bad = replace(m, singular_values=np.array([np.nan, *m.singular_values[1:]]))
        report = Report(run=_run(), matrices=(bad,))
        with pytest.raises(InputError, match=r"'m'.*singular_values"):
            report.to_json()


# -- 3. NaN/Infinity in a report's JSON is refused on reading ------------------------------


class TestReadNonFinite:
    @pytest.fixture
    def text(self):
        return Report(run=_run(), matrices=(_matrix("a.weight"), _matrix("b.weight", 1))).to_json()

    def test_nan_token_refused(self, text):
        data = json.loads(text)
        data["matrices"][1]["singular_values"][2] = float("nan")
        with pytest.raises(FileFormatError, match="NaN is not a JSON number"):
            Report.from_json(json.dumps(data))

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("singular_values", ["nan", 1.0], "singular_values must be a list of numbers"),
            ("singular_values", [1.0, 2.0], "descending"),
            ("singular_values", [1.0, -0.5], "non-negative"),
            ("norm_fro", "inf", "norm_fro must be a number"),
            ("seconds", 1e400, "seconds must be a finite number"),
            ("numerical_rank", True, "numerical_rank must be an integer"),
        ],
    )
    def test_bad_field_names_field_and_matrix(self, text, field, value, message):
        data = json.loads(text)
        data["matrices"][1][field] = value
        raw = json.dumps(data).replace("Infinity", "1e400")
        with pytest.raises(FileFormatError, match=message) as info:
            Report.from_json(raw)
        assert "'b.weight'" in str(info.value)

    def test_nan_alpha_refused(self, text):
        data = json.loads(text)
        data["matrices"][0]["random_matrix"]["power_law"]["alpha"] = "nan"
        with pytest.raises(FileFormatError, match="alpha") as info:
            Report.from_json(json.dumps(data))
        assert "'a.weight'" in str(info.value)

    def test_update_infinities_round_trip(self):
        rng = np.random.default_rng(3)
        u = analyze_update_matrix(
            rng.standard_normal((6, 5)), np.zeros((6, 5)), name="h.0.v.weight", options=OPTIONS
        )
        assert u.relative_size == math.inf
        report = Report(run=_run(base="/nonexistent/base"), matrices=(u,))
        text = report.to_json()
        back = Report.from_json(text)
        assert back == report
        assert back.to_json() == text


# -- 4. names starting with "_" or holding "$", and --plot that was not written ------------


class TestNamesAsText:
    def test_underscore_names_keep_their_legend_entries(self):
        names = ["_orig_mod.lm_head.weight", "_orig_mod.transformer.wte.weight", "pooler.dense"]
        mats = [_matrix(n, seed) for seed, n in enumerate(names)]
        for fn in (plot_curves, plot_spectra):
            ax = fn(mats).axes[0]
            assert _legend_texts(ax) == names
        ax = plot_alpha_summary(mats).axes[0]
        texts = _legend_texts(ax)
        assert len(texts) == 3
        expected = [
            f"{n.removesuffix('.weight')}: {m.random_matrix.power_law.alpha:.3g}"
            for n, m in zip(names, mats, strict=True)
        ]
        assert texts == expected

    @pytest.mark.parametrize("name", ["price$x$y", "enc.$\\frac$.weight"])
    def test_dollar_names_are_drawn_verbatim(self, name, tmp_path):
        m = _matrix(name)
        fig = plot_curves([m])
        escaped = name.replace("$", r"\$")
        assert _legend_texts(fig.axes[0]) == [escaped]
        save_figure(fig, tmp_path / "c.png")  # was a mathtext ParseSyntaxException
        fig = plot_eigenvalues(m)
        assert fig.axes[0].get_title().startswith(f"Eigenvalues of {escaped} ")
        save_figure(fig, tmp_path / "e.png")
        # matplotlib draws an escaped "$" as "$" and not as math.
        text = fig.axes[0].title
        assert text._preprocess_math(text.get_text()) == (f"Eigenvalues of {name} (12×8)", False)

    def test_cli_plot_not_written_fails(self, tmp_path, capsys):
        save_safetensors(tmp_path / "m.safetensors", {"lm_head.weight": np.eye(5)})
        rc = main(
            [
                "analyze",
                str(tmp_path / "m.safetensors"),
                "--json",
                str(tmp_path / "r.json"),
                "--plot",
                str(tmp_path / "hm.png"),
                "--plot-kind",
                "heatmap",
            ]
        )
        err = capsys.readouterr().err
        assert rc != 0
        assert not (tmp_path / "hm.png").exists()
        assert (tmp_path / "r.json").is_file()  # the other outputs are still written
        lines = [line for line in err.splitlines() if "heatmap" in line]
        assert len(lines) == 1
        assert lines[0].startswith("lowrank: error: no heatmap figure")

    def test_cli_dollar_name_plots(self, tmp_path, capsys):
        save_safetensors(tmp_path / "d.safetensors", {"enc.$\\frac$.weight": np.diag([3.0, 1.0])})
        rc = main(
            [
                "analyze",
                str(tmp_path / "d.safetensors"),
                "--json",
                str(tmp_path / "d.json"),
                "--plot",
                str(tmp_path / "d.png"),
            ]
        )
        assert rc == 0, capsys.readouterr().err
        assert (tmp_path / "d.png").stat().st_size > 0


# -- 5. lower: one-point lines, Markdown escaping, wrong types, stacks, bad arguments ------


class TestLower:
    def test_one_point_curve_has_a_marker(self):
        m = analyze_matrix(np.ones((1, 9)), name="row", options=OPTIONS)
        for fn in (plot_curves, plot_spectra):
            (line,) = fn([m]).axes[0].get_lines()
            y = np.asarray(line.get_ydata(), dtype=float)
            assert np.count_nonzero(np.isfinite(y)) == 1
            assert line.get_marker() == "o"

    def test_markdown_globs_are_code_and_cr_does_not_break_rows(self):
        run = RunInfo(**{**_run().__dict__, "include": ("*attention*", "*mlp*")})
        report = Report(run=run, matrices=(_matrix("cr\r\nx"), _matrix("y", 1)))
        md = report.to_markdown()
        assert "include `*attention*`, `*mlp*`, exclude none" in md
        assert "\r" not in md
        lines = md.splitlines()
        header = next(line for line in lines if line.startswith("| name "))
        row = next(line for line in lines if line.startswith("| cr"))
        # One row of as many cells as the header (a lone \r ended the row before).
        assert row.startswith("| cr x |")
        assert row.count("|") == header.count("|")
        assert "\r" not in report.to_text()

    @pytest.mark.parametrize(
        ("where", "field", "value", "message"),
        [
            ("run", "regex", "false", "regex must be true or false"),
            ("run", "include", "abc", "include must be a list"),
            ("matrix", "shape", [8.7, 6], "shape must be an integer"),
            ("matrix", "numerical_rank", True, "numerical_rank must be an integer"),
        ],
    )
    def test_wrong_types_refused(self, where, field, value, message):
        data = json.loads(Report(run=_run(), matrices=(_matrix("m"),)).to_json())
        target = data["run"] if where == "run" else data["matrices"][0]
        target[field] = value
        with pytest.raises(FileFormatError, match=message):
            Report.from_dict(data)

    def test_encoder_and_decoder_stacks_get_their_own_colours(self):
        mats = [
            _matrix(f"{stack}.block.{i}.layer.0.SelfAttention.q.weight", 10 * k + i)
            for k, stack in enumerate(("encoder", "decoder"))
            for i in range(3)
        ]
        ax = plot_curves(mats).axes[0]
        texts = _legend_texts(ax)
        assert len(texts) == 2
        assert texts[0].startswith("encoder.block: layer.0.SelfAttention.q")
        assert texts[1].startswith("decoder.block: layer.0.SelfAttention.q")
        colours = [tuple(line.get_color()) for line in ax.get_lines()]
        assert colours[2] != colours[5]  # the deepest layer of each stack

    def test_bad_arguments_are_lowrank_errors(self, tmp_path):
        from matplotlib.figure import Figure

        m = _matrix("encoder.layer.0.attention.query.weight")
        with pytest.raises(InputError, match="ax must be a matplotlib Axes"):
            plot_curves([m], ax=Figure())
        with pytest.raises(InputError, match="cmap"):
            plot_heatmap([m], cmap=["viridis"])
        with pytest.raises(InputError, match="dpi"):
            save_figure(plot_curves([m]), tmp_path / "big.png", dpi=20000)
        assert not (tmp_path / "big.png").exists()
        with pytest.raises(InputError, match=r"\.png, \.svg or \.pdf"):
            plot_report([m], kind="curves", path=tmp_path / "x.txt")
