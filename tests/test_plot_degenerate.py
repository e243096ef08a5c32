"""lowrank.plot on degenerate spectra: all-zero matrices, zero singular values, and
eigenvalues whose squares leave float64's range.

Each figure is saved for real (PNG or SVG, checked by their signature and by decoding the
PNG) and what was drawn is read back from the returned Figure; the command line is run as
``main(argv)``, whose errors are one stderr line and exit status 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _reports import synthetic_report

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from lowrank.analysis import (  # noqa: E402
    AnalysisOptions,
    Report,
    analyze_matrix,
    analyze_update_matrix,
)
from lowrank.errors import InputError  # noqa: E402
from lowrank.plot import (  # noqa: E402
    plot_curves,
    plot_eigenvalues,
    plot_heatmap,
    plot_overlap,
    plot_report,
    plot_spectra,
    plot_update_spectra,
    save_figure,
)

OPTIONS = AnalysisOptions(ranks=[1, 2], energies=[0.9])


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """One BLAS thread: the 2 cores are shared with other tests."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _report(results, *, base: str | None = None) -> Report:
    return synthetic_report(results, ranks=OPTIONS.ranks, energies=OPTIONS.energies, base=base)


def _saved(fig: Figure, path) -> np.ndarray:
    """Save ``fig`` (this is where matplotlib failed on an all-NaN log axis) and check the
    file is an image: the PNG signature and a decodable RGBA raster, or SVG text."""
    save_figure(fig, path, dpi=int(fig.dpi))
    data = path.read_bytes()
    if path.suffix == ".svg":
        assert data.startswith(b"<?xml") and b"<svg" in data
        return np.zeros((1, 1, 3))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] == 4
    return image[..., :3]


def _finite_lines(ax) -> dict[str, int]:
    """Label -> number of finite y values of every line drawn."""
    return {
        line.get_label(): int(np.isfinite(np.asarray(line.get_ydata(), float)).sum())
        for line in ax.get_lines()
    }


@pytest.fixture(scope="module")
def zeros() -> list:
    return [
        analyze_matrix(np.zeros((8, 6)), name=f"layers.{k}.q.weight", options=OPTIONS)
        for k in range(2)
    ]


@pytest.fixture(scope="module")
def mixed(zeros) -> list:
    rng = np.random.default_rng(0)
    # The zero matrix is the deepest layer: its group's legend entry must move to a line
    # that is drawn.
    live = analyze_matrix(rng.standard_normal((8, 6)), name="layers.0.k.weight", options=OPTIONS)
    zero = analyze_matrix(np.zeros((8, 6)), name="layers.1.k.weight", options=OPTIONS)
    return [live, zero, zeros[0]]


class TestAllZeroMatrices:
    """F1: a spectra plot of all-zero matrices crashed at save time (matplotlib's "Data
    cannot be log-scaled"); curves drew an empty axes with a legend entry."""

    @pytest.mark.parametrize("draw", [plot_spectra, plot_curves])
    def test_only_zero_matrices_is_an_input_error(self, zeros, draw):
        with pytest.raises(InputError, match=r"none of the 2 matrices has a positive singular"):
            draw(zeros)
        with pytest.raises(InputError, match=r"'layers.0.q.weight' has no positive singular"):
            draw(zeros[:1])

    @pytest.mark.parametrize("draw", [plot_spectra, plot_curves])
    @pytest.mark.parametrize("suffix", [".png", ".svg"])
    def test_mixed_draws_the_others_and_names_the_zero_ones(self, mixed, draw, suffix, tmp_path):
        fig = draw(mixed)
        _saved(fig, tmp_path / f"mixed{suffix}")
        ax = fig.axes[0]
        lines = _finite_lines(ax)
        # One line, for the only non-zero matrix, with every value finite; no empty line.
        assert list(lines) == ["layers.0.k.weight"]
        assert all(count > 0 for count in lines.values())
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["layers.0.k.weight"]
        assert ax.get_title() == "2 all-zero matrices not drawn: layers.1.k, layers.0.q"

    def test_no_legend_title_carries_the_note(self, mixed):
        ax = plot_spectra(mixed, legend=False).axes[0]
        assert ax.get_title() == (
            "Singular values of 1 matrices\n2 all-zero matrices not drawn: layers.1.k, layers.0.q"
        )

    def test_heatmap_shows_rank_zero(self, zeros, tmp_path):
        # A zero matrix has a defined rank for any energy: 0 (nothing to capture).
        fig = plot_heatmap(zeros)
        _saved(fig, tmp_path / "heat.png")
        assert [t.get_text() for t in fig.axes[0].texts] == ["0", "0"]

    def test_matrix_with_zero_singular_values(self, tmp_path):
        # Rank 2 of 6 by construction: the exact zeros are left out, the rest drawn.
        s = np.array([3.0, 1.0, 0.0, 0.0, 0.0, 0.0])
        result = analyze_matrix(np.vstack([np.diag(s), np.zeros((2, 6))]), name="r2")
        fig = plot_spectra([result])
        _saved(fig, tmp_path / "r2.png")
        (line,) = fig.axes[0].get_lines()
        np.testing.assert_array_equal(line.get_ydata()[:2], [1.0, 1.0 / 3.0])
        assert np.isnan(line.get_ydata()[2:]).all()

    def test_command_one_line_exit_2(self, zeros, tmp_path, capsys):
        from lowrank.cli import main

        path = tmp_path / "z.json"
        _report(zeros).write_json(path)
        for kind in ("spectra", "curves"):
            target = tmp_path / f"{kind}.png"
            assert main(["plot", str(path), "--kind", kind, "-o", str(target)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert "none of the 2 matrices has a positive singular value to plot" in err
            assert not target.exists()

    def test_plot_report_for_every_kind_never_fails_at_save(self, zeros, tmp_path):
        # Each kind either draws something savable or raises InputError before saving.
        for kind in ("curves", "spectra", "heatmap", "alpha"):
            target = tmp_path / f"{kind}.png"
            try:
                plot_report(zeros, kind=kind, path=target)
            except InputError:
                assert not target.exists()
            else:
                assert target.read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def zero_base_updates() -> list:
    rng = np.random.default_rng(1)
    W = rng.standard_normal((8, 6))
    delta = rng.standard_normal((8, 2)) @ rng.standard_normal((2, 6))
    return [
        analyze_update_matrix(delta, np.zeros((8, 6)), name="layers.0.q.weight", options=OPTIONS),
        analyze_update_matrix(W + delta, W, name="layers.0.k.weight", options=OPTIONS),
        analyze_update_matrix(W, W, name="layers.1.q.weight", options=OPTIONS),  # ΔW = 0
        analyze_update_matrix(
            np.zeros((8, 6)), np.zeros((8, 6)), name="layers.1.k.weight", options=OPTIONS
        ),
    ]


class TestUpdatesWithZeros:
    def test_update_spectra(self, zero_base_updates, tmp_path):
        fig = plot_update_spectra(zero_base_updates)
        _saved(fig, tmp_path / "u.png")
        ax = fig.axes[0]
        styles = sorted((line.get_linestyle(), line.get_label()) for line in ax.get_lines())
        # zero base: ΔW only; normal: both; ΔW = 0: W only; both zero: nothing.
        assert [s for s, _ in styles] == ["-", "-", "--", "--"]
        assert all(count > 0 for count in _finite_lines(ax).values())
        assert ax.get_title() == (
            "1 with ΔW = W = 0 not drawn: layers.1.k; W = 0 (no dashed line, ΔW drawn "
            "unscaled): layers.0.q; ΔW = 0 (no solid line): layers.1.q"
        )
        with pytest.raises(InputError, match=r"'layers.1.k.weight' has no positive singular"):
            plot_update_spectra(zero_base_updates[3:])

    def test_overlap_grid_leaves_undefined_cells_blank(self, zero_base_updates, tmp_path):
        # The overlap with a zero base is undefined (F3): no number in its cell.
        fig = plot_overlap(zero_base_updates[:2], rank=1)
        _saved(fig, tmp_path / "o.png")
        ax = fig.axes[0]
        defined = zero_base_updates[1].overlap_left[0][1]
        assert [t.get_text() for t in ax.texts] == [f"{defined:.2f}"]
        assert ax.get_title().endswith(
            "\n1 undefined (σ_r of W or ΔW = 0 up to rounding) left blank: layers.0.q"
        )
        with pytest.raises(InputError, match="none of the 1 updates has a defined left overlap"):
            plot_overlap(zero_base_updates[:1], rank=1)


def _eig(diagonal, name="W"):
    return analyze_matrix(np.diag(np.asarray(diagonal, dtype=np.float64)), name=name)


class TestEigenvalueScales:
    """F2: sigma^2 under- or overflowed float64 (ValueError 'Geometric sequence cannot
    include zero', OverflowError), though lowrank.rmt fits these spectra."""

    @pytest.mark.parametrize(("scale", "power"), [(1e-170, -1128), (1e170, 1132)])
    def test_far_scales_are_drawn_in_a_unit(self, scale, power, tmp_path):
        import warnings

        result = _eig(scale * np.array([1.0, 2.0, 3.0]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow warning either
            fig = plot_eigenvalues(result)
            _saved(fig, tmp_path / "e.png")
        ax = fig.axes[0]
        unit = 2.0 ** (power // 2)  # the unit is (2^(power/2))^2, near sigma_1^2
        assert ax.get_xlabel().startswith(f"eigenvalue λ = σ² in units of 2^{power} ≈ ")
        # The bars sit at the eigenvalues in that unit, (sigma_i / 2^(power/2))^2 in [1, 4).
        lam = np.sort((result.singular_values / unit) ** 2)
        bars = [p for p in ax.patches if p.get_height() > 0]
        assert len(bars) == 3
        assert bars[0].get_x() == pytest.approx(lam[0], rel=1e-12)
        assert bars[-1].get_x() + bars[-1].get_width() == pytest.approx(lam[-1], rel=1e-12)
        # Same picture as at scale 1: the power law and MP edge, in the unit.
        reference = plot_eigenvalues(_eig([1.0, 2.0, 3.0])).axes[0]
        ratio = lam[-1] / 9.0
        for got, ref in zip(ax.get_lines(), reference.get_lines(), strict=True):
            assert got.get_label() == ref.get_label()
            np.testing.assert_allclose(
                np.asarray(got.get_xdata(), float),
                np.asarray(ref.get_xdata(), float) * ratio,
                rtol=1e-9,
            )

    def test_underflowing_eigenvalue_is_left_out_with_a_note(self, tmp_path):
        fig = plot_eigenvalues(_eig([1.0, 0.5, 1e-200]))
        _saved(fig, tmp_path / "m.png")
        ax = fig.axes[0]
        assert ax.get_xlabel() == "eigenvalue λ = σ²"
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts[0] == "eigenvalues σ_i² (2; 1 underflowing not drawn)"
        assert any(t.endswith("; x_min underflows, not drawn") for t in texts)
        bars = [p for p in ax.patches if p.get_height() > 0]
        # 0.25 and 1 drawn; 1e-400 left out (it is 0.0 in float64)
        assert len(bars) == 2 and bars[0].get_x() == pytest.approx(0.25, rel=1e-12)
        assert bars[-1].get_x() + bars[-1].get_width() == pytest.approx(1.0, rel=1e-12)

    def test_zero_eigenvalues_are_counted(self, tmp_path):
        fig = plot_eigenvalues(_eig([3.0, 2.0, 1.0, 0.0]))
        _saved(fig, tmp_path / "z.png")
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert texts[0] == "eigenvalues σ_i² (3; 1 zero not drawn)"

    def test_ordinary_scale_keeps_plain_units(self):
        ax = plot_eigenvalues(_eig([1.0, 2.0, 3.0])).axes[0]
        assert ax.get_xlabel() == "eigenvalue λ = σ²"
        assert math.isclose(max(p.get_x() + p.get_width() for p in ax.patches), 9.0)

    def test_command(self, tmp_path, capsys):
        from lowrank.cli import main

        path = tmp_path / "big.json"
        _report([_eig(1e170 * np.array([1.0, 2.0, 3.0]), name="big")]).write_json(path)
        target = tmp_path / "big.png"
        assert main(["plot", str(path), "--kind", "eigenvalues", "-o", str(target)]) == 0
        assert target.read_bytes().startswith(b"\x89PNG")
        capsys.readouterr()
