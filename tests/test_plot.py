"""lowrank.plot: the figures are rendered for real and the saved images are checked.

Checks look at the saved PNG's pixels (how much is drawn, which colours appear, the colour
of each heatmap cell) and at the data of the drawn artists, not only at the absence of
exceptions.
"""

from __future__ import annotations

import numpy as np
import pytest
from _reports import synthetic_report

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from lowrank.analysis import AnalysisOptions, Report, analyze_matrix  # noqa: E402
from lowrank.curves import rank_error_curve  # noqa: E402
from lowrank.errors import InputError, MissingFileError  # noqa: E402
from lowrank.plot import (  # noqa: E402
    curve_colors,
    plot_curves,
    plot_heatmap,
    plot_report,
    plot_spectra,
    save_figure,
)


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared with other
    tests, and OpenBLAS threads waiting on a busy core make small products 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


OPTIONS = AnalysisOptions(ranks=[4], energies=[0.5, 0.9])


def make_report(spectra: dict[str, np.ndarray]) -> Report:
    rng = np.random.default_rng(3)
    results = []
    for name, s in spectra.items():
        m, n = len(s) + 6, len(s)
        U = np.linalg.qr(rng.standard_normal((m, n)))[0]
        V = np.linalg.qr(rng.standard_normal((n, n)))[0]
        results.append(analyze_matrix((U * s) @ V.T, name=name, options=OPTIONS))
    return synthetic_report(results, ranks=OPTIONS.ranks, energies=OPTIONS.energies)


@pytest.fixture(scope="module")
def three() -> Report:
    k = np.arange(1, 41, dtype=float)
    return make_report({"fast": 0.7**k, "medium": k**-1.0, "flat": 1.0 / (1 + 0.01 * k)})


@pytest.fixture(scope="module")
def layered() -> Report:
    rng = np.random.default_rng(5)
    spectra = {}
    for layer in range(3):
        for module in ("attention.self.query", "attention.self.value", "output.dense"):
            decay = 0.5 + 0.15 * layer + 0.1 * len(module) / 20
            spectra[f"encoder.layer.{layer}.{module}.weight"] = np.sort(
                rng.uniform(0.1, 1, 24) * decay ** np.arange(24)
            )[::-1]
    spectra["embeddings.word_embeddings.weight"] = np.ones(24)
    return make_report(spectra)


def saved_png(fig: Figure, path) -> np.ndarray:
    save_figure(fig, path, dpi=int(fig.dpi))
    image = imread(path)
    assert image.dtype == np.float32 and image.shape[2] == 4
    return image[..., :3]


def pixel_at(rgb: np.ndarray, ax, x: float, y: float) -> np.ndarray:
    """The PNG pixel under data point (x, y) of ``ax`` (PNG rows count from the top)."""
    px, py = ax.transData.transform((x, y))
    return rgb[int(np.rint(rgb.shape[0] - py)), int(np.rint(px))]


def drawn_fraction(rgb: np.ndarray) -> float:
    """Share of pixels that are not white background."""
    return float(np.mean(np.any(rgb < 0.98, axis=2)))


def pixels_near(rgb: np.ndarray, color, tol: float = 0.06) -> int:
    return int(np.sum(np.all(np.abs(rgb - np.asarray(color)[:3]) < tol, axis=2)))


class TestCurves:
    def test_one_coloured_curve_per_matrix_with_the_data(self, three, tmp_path):
        fig = plot_curves(three)
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["fast", "medium", "flat"]
        for line, m in zip(lines, three.matrices, strict=True):
            expected = rank_error_curve(m.singular_values).relative
            y = line.get_ydata()
            np.testing.assert_array_equal(line.get_xdata(), np.arange(expected.size))
            np.testing.assert_array_equal(y[:-1], expected[:-1])
            assert np.isnan(y[-1])  # the exact zero at full rank is not drawn on a log axis
        rgb = saved_png(fig, tmp_path / "curves.png")
        assert 0.01 < drawn_fraction(rgb) < 0.5
        colors = curve_colors(3)
        counts = [pixels_near(rgb, c) for c in colors]
        # Each curve's own colour covers a stretch of pixels (legend swatch + the line).
        assert min(counts) > 60, counts
        assert len({tuple(np.round(c, 3)) for c in colors}) == 3

    def test_fraction_and_max_rank(self, three):
        fig = plot_curves(three, max_rank=5, fraction=True, names=["flat"], legend=False)
        (line,) = fig.axes[0].get_lines()
        np.testing.assert_allclose(line.get_xdata(), np.arange(6) / 40)
        assert fig.axes[0].get_legend() is None
        assert fig.axes[0].get_title() == "Rank–error curves of 1 matrices"

    def test_draws_on_a_given_axes(self, three, tmp_path):
        fig = Figure(figsize=(8, 3))
        left, right = fig.subplots(1, 2)
        assert plot_curves(three, ax=right) is fig
        assert not left.get_lines() and len(right.get_lines()) == 3
        sub = Figure().subfigures(1, 2)[1]
        ax = sub.add_subplot()
        assert plot_spectra(three, ax=ax) is sub.figure

    def test_many_curves_get_distinct_colours_and_no_legend(self, tmp_path):
        k = np.arange(1, 31, dtype=float)
        many = make_report({f"m{i}": k ** -(0.2 + 0.1 * i) for i in range(25)})
        fig = plot_curves(many)
        assert fig.axes[0].get_legend() is None
        assert fig.axes[0].get_title() == "Rank–error curves of 25 matrices"
        colors = {
            line.get_color()
            if isinstance(line.get_color(), str)
            else tuple(np.round(line.get_color(), 4))
            for line in fig.axes[0].get_lines()
        }
        assert len(colors) == 25
        rgb = saved_png(fig, tmp_path / "many.png")
        distinct = {tuple(p) for p in np.round(rgb[np.any(rgb < 0.9, axis=2)] * 20).astype(int)}
        assert len(distinct) > 25


class TestSpectra:
    def test_log_log_lines_of_normalised_values(self, three, tmp_path):
        fig = plot_spectra(three)
        ax = fig.axes[0]
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        for line, m in zip(ax.get_lines(), three.matrices, strict=True):
            s = m.singular_values
            np.testing.assert_array_equal(line.get_xdata(), np.arange(1, s.size + 1))
            np.testing.assert_allclose(line.get_ydata(), s / s[0], rtol=1e-15)
        rgb = saved_png(fig, tmp_path / "spectra.png")
        assert 0.01 < drawn_fraction(rgb) < 0.5
        assert min(pixels_near(rgb, c) for c in curve_colors(3)) > 60

    def test_raw_values_and_zero_values(self, tmp_path):
        report = make_report({"a": np.array([4.0, 2.0, 1.0, 0.0])})
        fig = plot_spectra(report, normalize=False)
        y = fig.axes[0].get_lines()[0].get_ydata()
        np.testing.assert_allclose(y[:3], [4.0, 2.0, 1.0], rtol=1e-12)
        assert y[3] != y[3] or y[3] < 1e-12  # zero (or its rounding) is not drawn as a value
        assert fig.axes[0].get_ylabel() == "σ_i"


class TestHeatmap:
    def test_cells_show_the_rank_for_the_energy(self, layered, tmp_path):
        fig = plot_heatmap(layered, energy=0.9, annotate=False)
        ax = fig.axes[0]
        image = ax.images[0]
        expected = np.array(
            [
                [
                    layered.result(f"encoder.layer.{i}.{m}.weight").rank_for_energy(0.9)
                    for m in ("attention.self.query", "attention.self.value", "output.dense")
                ]
                for i in range(3)
            ],
            dtype=float,
        )
        shown = image.get_array()
        np.testing.assert_array_equal(shown[:, :3], expected)
        # The embedding matrix (no layer index) beside the grid: a blank column, then one
        # column with its rank in every row.
        assert shown[:, 3].mask.all()
        embedding = layered.result("embeddings.word_embeddings.weight").rank_for_energy(0.9)
        np.testing.assert_array_equal(shown[:, 4], embedding)
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "attention.self.query",
            "attention.self.value",
            "output.dense",
            "embeddings.word_embeddings",
        ]
        assert list(ax.get_xticks()) == [0, 1, 2, 4]
        rgb = saved_png(fig, tmp_path / "heatmap.png")
        cmap, norm = image.get_cmap(), image.norm
        for (i, j), value in np.ndenumerate(expected):
            pixel = pixel_at(rgb, ax, j, i)
            np.testing.assert_allclose(pixel, cmap(norm(value))[:3], atol=2.5 / 255)
        for i in range(3):
            np.testing.assert_allclose(pixel_at(rgb, ax, 3, i), 1.0)  # the blank column
            np.testing.assert_allclose(
                pixel_at(rgb, ax, 4, i), cmap(norm(embedding))[:3], atol=2.5 / 255
            )

    def test_annotations_relative_values_and_default_energy(self, layered, tmp_path):
        fig = plot_heatmap(layered, relative=True)
        ax = fig.axes[0]
        assert ax.get_title() == "rank / min(m, n) for 50% of ‖A‖_F²"
        texts = [t.get_text() for t in ax.texts]
        assert len(texts) == 9 + 1  # the grid, and the embedding matrix written once
        full = 24
        flat = layered.result("embeddings.word_embeddings.weight")  # 24 equal values
        assert texts[-1] == f"{flat.rank_for_energy(0.5) / full:.2f}" == "0.50"
        first = layered.result("encoder.layer.0.attention.self.query.weight")
        assert texts[0] == f"{first.rank_for_energy(0.5) / full:.2f}"
        rgb = saved_png(fig, tmp_path / "annotated.png")
        assert drawn_fraction(rgb) > 0.3

    def test_missing_cells_stay_blank(self, layered, tmp_path):
        results = [m for m in layered.matrices if m.name != "encoder.layer.1.output.dense.weight"]
        fig = plot_heatmap(results, energy=0.9, annotate=False)
        ax = fig.axes[0]
        assert np.ma.is_masked(ax.images[0].get_array()[1, 2])
        rgb = saved_png(fig, tmp_path / "gap.png")
        np.testing.assert_allclose(pixel_at(rgb, ax, 2, 1), 1.0)

    def test_columns_in_the_models_order(self, tmp_path):
        # Llama names, stored in a scrambled order, drawn as q, k, v, o, up, gate, down,
        # then a module of no known kind; the embedding and the head beside the grid.
        stored = ["mlp.down_proj", "self_attn.v_proj", "extra.adapter", "mlp.gate_proj"]
        stored += ["self_attn.o_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.q_proj"]
        spectra = {"model.embed_tokens.weight": 0.5 ** np.arange(8)}
        for i in range(2):
            for module in stored:
                spectra[f"model.layers.{i}.{module}.weight"] = (0.5 + 0.1 * i) ** np.arange(8)
        spectra["lm_head.weight"] = 0.9 ** np.arange(8)
        fig = plot_heatmap(make_report(spectra), energy=0.9)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.up_proj",
            "mlp.gate_proj",
            "mlp.down_proj",
            "extra.adapter",
            "model.embed_tokens",
            "lm_head",
        ]
        assert ax.images[0].get_array().shape == (2, 8 + 1 + 2)
        assert saved_png(fig, tmp_path / "llama.png").shape[1] > 700


class TestFiles:
    @pytest.mark.parametrize(
        ("suffix", "magic"), [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".PNG", b"\x89PNG")]
    )
    def test_formats(self, three, tmp_path, suffix, magic):
        path = tmp_path / f"fig{suffix}"
        plot_report(three, kind="spectra", path=path)
        assert path.read_bytes().startswith(magic)
        assert [p.name for p in tmp_path.iterdir()] == [path.name]

    def test_plot_report_without_path(self, layered):
        assert isinstance(plot_report(layered, kind="heatmap", energy=0.5), Figure)


class TestErrors:
    @pytest.mark.parametrize(
        ("call", "error", "message"),
        [
            (lambda r: plot_curves([]), InputError, "there is nothing to plot"),
            (
                lambda r: plot_curves([1]),
                InputError,
                "data must be a Report or MatrixResult objects; got an item of type int",
            ),
            (
                lambda r: plot_curves(r, names=["nope"]),
                InputError,
                "names must be analysed matrices; got unknown name 'nope'",
            ),
            (lambda r: plot_curves(r, max_rank=0), InputError, "max_rank must be >= 1; got 0"),
            (lambda r: plot_heatmap(r), InputError, "none of the 3 names has one"),
            (
                lambda r: plot_heatmap(r, cmap="nope"),
                InputError,
                "cmap must be a matplotlib colormap name; got 'nope'",
            ),
            (lambda r: plot_report(r, kind="pie"), InputError, "kind must be one of"),
            (lambda r: curve_colors(-1), InputError, "count must be >= 0; got -1"),
            (
                lambda r: save_figure(Figure(), "x.gif"),
                InputError,
                r"path must end in \.png, \.svg or \.pdf",
            ),
            (lambda r: save_figure(Figure(), "x.png", dpi=0), InputError, "dpi must be >= 1"),
            (
                lambda r: save_figure(Figure(), "/no/such/dir/x.png"),
                MissingFileError,
                "the directory of path must exist",
            ),
        ],
    )
    def test_raises(self, three, call, error, message):
        with pytest.raises(error, match=message):
            call(three)

    def test_heatmap_energy_must_have_been_analysed(self, layered):
        with pytest.raises(
            InputError, match=r"energy must be one of the analysed energies \(0.5, 0.9\)"
        ):
            plot_heatmap(layered, energy=0.99)

    def test_heatmap_without_energies(self):
        report = make_report({"layer.0.q": np.ones(3)})
        bare = report.matrices[0].__class__(**{**report.matrices[0].__dict__, "energy_ranks": ()})
        with pytest.raises(InputError, match="the report has no energy level to plot"):
            plot_heatmap([bare])

    def test_axes_must_be_on_a_figure(self, three):
        from matplotlib.axes import Axes

        class Loose:
            figure = None

        with pytest.raises(InputError, match="ax must be a matplotlib Axes"):
            plot_curves(three, ax=Loose())  # type: ignore[arg-type]
        assert Axes  # the real class is what users pass


def transformer_report(layers: int = 4) -> Report:
    """Two module types over ``layers`` layers, plus an embedding matrix (not per layer)."""
    spectra = {"embeddings.word_embeddings.weight": 0.5 ** np.arange(6)}
    for i in range(layers):
        for module in ("attention.self.query", "intermediate.dense"):
            spectra[f"encoder.layer.{i}.{module}.weight"] = (0.6 + 0.05 * i) ** np.arange(6)
    return make_report(spectra)


@pytest.mark.parametrize("draw", [plot_curves, plot_spectra])
def test_lines_are_grouped_by_module_and_shaded_by_depth(draw):
    report = transformer_report(layers=4)
    fig = draw(report)
    ax = fig.axes[0]
    # One legend entry per module type (on its deepest layer) and one for the embeddings:
    # 3 entries for 9 lines.
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(ax.get_lines()) == 9
    assert labels == [
        "embeddings.word_embeddings.weight",
        "attention.self.query (layers 0–3, darker = deeper)",
        "intermediate.dense (layers 0–3, darker = deeper)",
    ]
    # Within a module one hue, lighter (closer to white) for shallower layers; the lines are
    # drawn in the report's order.
    names = [m.name for m in report.matrices]
    rgb = {
        name: np.asarray(matplotlib.colors.to_rgb(line.get_color()))
        for name, line in zip(names, ax.get_lines(), strict=True)
    }
    brightness = [rgb[f"encoder.layer.{i}.attention.self.query.weight"].sum() for i in range(4)]
    assert brightness == sorted(brightness, reverse=True) and brightness[0] > brightness[-1]
    # Same hue: the colour differences of a module's layers point towards white.
    shallow = rgb["encoder.layer.0.attention.self.query.weight"]
    deep = rgb["encoder.layer.3.attention.self.query.weight"]
    room = deep < 1.0 - 1e-9  # channels already at 1 cannot get lighter
    lighten = (shallow - deep)[room] / (1.0 - deep[room])
    np.testing.assert_allclose(lighten, 0.6, atol=1e-12)  # _SHALLOW_LIGHTEN
    assert not np.allclose(deep, rgb["encoder.layer.3.intermediate.dense.weight"])


def test_many_groups_get_a_title_instead_of_a_legend():
    # 13 separate (not per-layer) matrices: more groups than a legend can hold.
    report = make_report({f"head{i}.weight": 0.9 ** np.arange(5) for i in range(13)})
    ax = plot_curves(report).axes[0]
    assert ax.get_legend() is None
    assert ax.get_title() == "Rank–error curves of 13 matrices"


class TestCommand:
    """``lowrank plot REPORT --include/--exclude/--regex/--relative``: the figure drawn is
    captured (wrapping :func:`lowrank.plot.plot_report`) and its saved PNG checked."""

    @pytest.fixture
    def run(self, layered, tmp_path, monkeypatch):
        import lowrank.plot
        from lowrank.cli import main

        report_path = tmp_path / "r.json"
        layered.write_json(report_path)
        drawn: list[Figure] = []
        original = lowrank.plot.plot_report

        def capture(*args, **kwargs):
            drawn.append(original(*args, **kwargs))
            return drawn[-1]

        monkeypatch.setattr(lowrank.plot, "plot_report", capture)

        def run(kind: str, *options: str) -> tuple[int, Figure | None, np.ndarray | None]:
            target = tmp_path / f"{kind}.png"
            status = main(["plot", str(report_path), "--kind", kind, "-o", str(target), *options])
            if status != 0:
                return status, None, None
            return status, drawn[-1], imread(target)[..., :3]

        return run

    def test_include_and_relative_curves(self, run, layered):
        status, fig, rgb = run("curves", "--include", "*.query.*", "--include", "*value*")
        assert status == 0
        ax = fig.axes[0]
        assert len(ax.get_lines()) == 6  # 3 layers x (query, value)
        assert ax.get_xlabel() == "rank r"
        assert drawn_fraction(rgb) > 0.02
        status, fig, _ = run("curves", "--include", "*query*", "--relative")
        ax = fig.axes[0]
        assert ax.get_xlabel() == "rank / min(m, n)"
        assert len(ax.get_lines()) == 3
        for line in ax.get_lines():  # rank 0 .. min(m, n) drawn as 0 .. 1
            x = line.get_xdata()
            assert x[0] == 0.0 and x[-1] == 1.0

    def test_exclude_and_regex(self, run):
        status, fig, _ = run("spectra", "--exclude", "embeddings.*")
        assert status == 0 and len(fig.axes[0].get_lines()) == 9
        status, fig, _ = run("spectra", "--regex", "--include", r"encoder\.layer\.[01]\..*")
        assert status == 0 and len(fig.axes[0].get_lines()) == 6

    def test_relative_heatmap(self, run, layered):
        status, fig, rgb = run(
            "heatmap", "--relative", "--exclude", "*output*", "--exclude", "embeddings.*"
        )
        assert status == 0
        ax = fig.axes[0]
        assert ax.get_title() == "rank / min(m, n) for 50% of ‖A‖_F²"
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "attention.self.query",
            "attention.self.value",
        ]
        first = layered.result("encoder.layer.0.attention.self.query.weight")
        assert ax.texts[0].get_text() == f"{first.rank_for_energy(0.5) / 24:.2f}"
        assert drawn_fraction(rgb) > 0.1

    def test_usage_errors(self, run, capsys):
        status, _, _ = run("spectra", "--relative")
        assert status == 2
        err = capsys.readouterr().err
        assert "lowrank plot: error: --relative applies to --kind curves or heatmap" in err
        status, _, _ = run("curves", "--include", "*qery*")
        assert status != 0
        err = capsys.readouterr().err
        assert "include" in err and "*qery*" in err


@pytest.fixture(scope="module")
def spiked():
    """Noise of entry scale 0.1 plus three strong directions: 3 spikes above the bulk."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((300, 120)) / 10
    spikes = 3 * rng.standard_normal((300, 3)) @ rng.standard_normal((3, 120)) / 10
    return analyze_matrix(noise + spikes, name="W")


class TestEigenvalues:
    """plot_eigenvalues: the histogram is a density of the eigenvalues, the MP curve is the
    Marchenko-Pastur density (it integrates to 1), the lines sit where the analysis put the
    edges and the tail, and the rendered PNG shows them in their colours."""

    def test_structure(self, spiked, tmp_path):
        from lowrank.plot import plot_eigenvalues

        fig = plot_eigenvalues(spiked)
        ax = fig.axes[0]
        assert ax.get_xscale() == ax.get_yscale() == "log"
        view = spiked.random_matrix
        # The bars: a density of all min(m, n) eigenvalues (all positive here), so their
        # areas sum to 1 (up to float rounding).
        area = sum(p.get_width() * p.get_height() for p in ax.patches)
        assert area == pytest.approx(1.0, rel=1e-12)
        lines = {line.get_label(): line for line in ax.get_lines()}
        edge_fit = next(v for k, v in lines.items() if k.startswith("MP edge, fitted"))
        edge_closed = next(v for k, v in lines.items() if k.startswith("MP edge, σ̂²"))
        assert edge_fit.get_xdata()[0] == pytest.approx(view.marchenko_pastur_fit.edge**2)
        assert edge_closed.get_xdata()[0] == pytest.approx(view.marchenko_pastur.edge**2)
        assert "3 spikes above" in edge_fit.get_label()
        # The power law: slope -alpha on log-log axes, from xmin on.
        law = view.power_law
        pl = next(v for k, v in lines.items() if k.startswith("power law"))
        x, y = np.asarray(pl.get_xdata()), np.asarray(pl.get_ydata())
        assert x[0] == pytest.approx(law.xmin)
        slope = np.diff(np.log(y)) / np.diff(np.log(x))
        np.testing.assert_allclose(slope, -law.alpha, rtol=1e-9)
        rgb = saved_png(fig, tmp_path / "eig.png")
        for color in ("tab:blue", "tab:red", "tab:purple"):
            assert pixels_near(rgb, matplotlib.colors.to_rgb(color)) > 50, color
        assert pixels_near(rgb, (0.75, 0.75, 0.75)) > 2000  # the grey bars

    def test_mp_density_integrates_to_one(self):
        from lowrank.plot import _mp_density

        for shape in [(4, 4), (300, 120), (50, 400)]:
            big, small = max(shape), min(shape)
            hi = 0.25 * (np.sqrt(big) + np.sqrt(small)) ** 2
            lam = np.linspace(0.0, hi, 2_000_001)
            # the square-root edges (and the 1/λ pole of a square matrix) converge slowly
            total = np.trapezoid(_mp_density(lam, sigma=0.5, shape=shape), lam)
            assert total == pytest.approx(1.0, abs=2e-3), shape

    def test_picks_by_name_and_errors(self, layered, spiked):
        from lowrank.plot import _mp_density, plot_eigenvalues

        name = "encoder.layer.1.output.dense.weight"
        ax = plot_eigenvalues(layered, name=name).axes[0]
        assert ax.get_title().startswith(f"Eigenvalues of {name} (")
        with pytest.raises(InputError, match=r"name must name one of the 10 matrices"):
            plot_eigenvalues(layered)
        with pytest.raises(InputError, match="names must be analysed matrices; got unknown"):
            plot_eigenvalues(layered, name="nope")
        with pytest.raises(InputError, match="bins must"):
            plot_eigenvalues(spiked, bins=0)
        from dataclasses import replace

        with pytest.raises(InputError, match="has no random-matrix view"):
            plot_eigenvalues(replace(spiked, random_matrix=None))
        zero = analyze_matrix(np.zeros((3, 3)), name="Z")
        with pytest.raises(InputError, match="'Z' has no positive singular value"):
            plot_eigenvalues(zero)
        with pytest.raises(InputError, match="shape must be a tuple of two positive ints"):
            _mp_density(np.ones(2), sigma=1.0, shape=(0, 3))
        with pytest.raises(InputError, match="sigma"):
            _mp_density(np.ones(2), sigma=-1.0, shape=(3, 3))


@pytest.fixture(scope="module")
def updates():
    """Updates of 2 layers x (query, value) and an embedding: the query updates lie in the
    span of W's top singular vectors (overlap 1 at rank 2), the value updates are random."""
    from lowrank.analysis import analyze_update_matrix

    rng = np.random.default_rng(11)
    options = AnalysisOptions(ranks=[2, 4], energies=[0.9])
    results = []
    for i in range(2):
        for module in ("value", "query"):  # stored value first: drawn query first
            W = rng.standard_normal((20, 16))
            if module == "query":
                U, _, Vh = np.linalg.svd(W, full_matrices=False)
                delta = 0.3 * U[:, :2] @ np.diag([2.0, 1.0]) @ Vh[:2]
            else:
                delta = 0.3 * rng.standard_normal((20, 2)) @ rng.standard_normal((2, 16))
            name = f"encoder.layer.{i}.attention.self.{module}.weight"
            results.append(analyze_update_matrix(W + delta, W, name=name, options=options))
    W = rng.standard_normal((30, 16))
    delta = 0.3 * rng.standard_normal((30, 2)) @ rng.standard_normal((2, 16))
    results.append(
        analyze_update_matrix(
            W + delta, W, name="embeddings.word_embeddings.weight", options=options
        )
    )
    return results


class TestOverlap:
    def test_cells_and_pixels(self, updates, tmp_path):
        from lowrank.plot import plot_overlap

        fig = plot_overlap(updates, rank=2, annotate=False)
        ax = fig.axes[0]
        shown = ax.images[0].get_array()
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "attention.self.query",
            "attention.self.value",
            "embeddings.word_embeddings",
        ]
        by_name = {m.name: dict(m.overlap_left)[2] for m in updates}
        for i in range(2):
            for j, module in enumerate(("query", "value")):
                expected = by_name[f"encoder.layer.{i}.attention.self.{module}.weight"]
                assert shown[i, j] == expected
        np.testing.assert_allclose(shown[:, 0], 1.0, atol=1e-9)  # in W's top-2 subspace
        assert (shown[:, 1] < 0.9).all()  # random updates: mostly outside
        assert shown[:, 2].mask.all()
        np.testing.assert_array_equal(shown[:, 3], by_name["embeddings.word_embeddings.weight"])
        assert ax.images[0].norm.vmin == 0.0 and ax.images[0].norm.vmax == 1.0
        rgb = saved_png(fig, tmp_path / "overlap.png")
        cmap = ax.images[0].get_cmap()
        top = cmap(1.0)[:3]
        for i in range(2):
            np.testing.assert_allclose(pixel_at(rgb, ax, 0, i), top, atol=2.5 / 255)

    def test_right_side_default_rank_and_text(self, updates):
        from lowrank.plot import plot_overlap

        ax = plot_overlap(updates, side="right").axes[0]
        assert ax.get_title() == "overlap ‖V_r(ΔW)ᵀV_r(W)‖_F² / r at r = 2"
        right = dict(updates[1].overlap_right)[2]  # layer 0 query
        assert ax.texts[0].get_text() == f"{right:.2f}"
        assert len(ax.texts) == 4 + 1

    def test_errors(self, updates, three):
        from lowrank.plot import plot_overlap

        with pytest.raises(InputError, match="got a plain result for 'fast'"):
            plot_overlap(three)
        with pytest.raises(
            InputError, match=r"rank must be one of the analysed ranks \(2, 4\); got 3"
        ):
            plot_overlap(updates, rank=3)
        with pytest.raises(InputError, match="side must be"):
            plot_overlap(updates, side="up")
        with pytest.raises(InputError, match="cmap must be a matplotlib colormap name"):
            plot_overlap(updates, cmap="nope")
        with pytest.raises(InputError, match="none of the 1 names has one"):
            plot_overlap(updates[-1:])


class TestUpdateSpectra:
    """plot_update_spectra: ΔW solid against W dashed, one colour per matrix."""

    def test_lines_are_the_reports_values(self, updates, tmp_path):
        from lowrank.plot import plot_update_spectra

        fig = plot_update_spectra(updates)
        ax = fig.axes[0]
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        lines = ax.get_lines()
        assert len(lines) == 2 * len(updates)
        pairs = zip(lines[::2], lines[1::2], strict=True)
        for m, (solid, dashed) in zip(updates, pairs, strict=True):
            s, b = m.singular_values, m.base_singular_values
            assert (solid.get_linestyle(), dashed.get_linestyle()) == ("-", "--")
            assert solid.get_color() is dashed.get_color() or np.array_equal(
                solid.get_color(), dashed.get_color()
            )
            np.testing.assert_array_equal(solid.get_xdata(), np.arange(1, s.size + 1))
            # Both divided by sigma_1(W): one division each, so 1 ulp.
            np.testing.assert_allclose(dashed.get_ydata(), b / b[0], rtol=1e-15)
            y = solid.get_ydata()
            # Values at the float64 SVD's rounding level (16 eps sqrt(max(m, n)) of the
            # spectrum's top) are zeros and not drawn on a log axis.
            drawn = s > 16 * np.finfo(np.float64).eps * np.sqrt(max(m.shape)) * s[0]
            assert drawn.any()
            np.testing.assert_allclose(y[drawn], s[drawn] / b[0], rtol=1e-15)
            assert np.isnan(y[~drawn]).all()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [
            "ΔW (solid)",
            "W = W_base (dashed)",
            "attention.self.value (layers 0–1, darker = deeper)",
            "attention.self.query (layers 0–1, darker = deeper)",
            "embeddings.word_embeddings.weight",
        ]
        rgb = saved_png(fig, tmp_path / "update-spectra.png")
        assert 0.01 < drawn_fraction(rgb) < 0.5
        assert min(pixels_near(rgb, c) for c in curve_colors(3)) > 30

    def test_raw_values_selected_names_and_no_legend(self, updates):
        from lowrank.plot import plot_update_spectra

        name = "embeddings.word_embeddings.weight"
        ax = plot_update_spectra(updates, names=[name], normalize=False, legend=False).axes[0]
        solid, dashed = ax.get_lines()
        np.testing.assert_array_equal(dashed.get_ydata(), updates[-1].base_singular_values)
        s = updates[-1].singular_values
        above = s > 16 * np.finfo(np.float64).eps * np.sqrt(max(updates[-1].shape)) * s[0]
        assert above.sum() == 2  # the fixture's updates have rank 2; the rest is rounding
        np.testing.assert_array_equal(solid.get_ydata()[above], s[above])
        assert np.isnan(solid.get_ydata()[~above]).all()
        assert ax.get_ylabel() == "σ_i"
        assert ax.get_legend() is None
        assert ax.get_title() == "Spectra of 1 updates: ΔW solid, W = W_base dashed"

    def test_rounding_noise_is_not_drawn(self, updates):
        # An update with exact zeros (inputs it never touched): its float64 SVD returns
        # them as ~1e-19 relative, which must not stretch the log axis.
        from dataclasses import replace

        from lowrank.plot import plot_update_spectra

        m = updates[0]
        noisy = np.concatenate([m.singular_values[:2], [1e-19 * m.singular_values[0]]])
        tail = np.zeros(m.singular_values.size - noisy.size)
        fake = replace(m, singular_values=np.concatenate([noisy, tail]))
        solid = plot_update_spectra([fake], legend=False).axes[0].get_lines()[0]
        y = solid.get_ydata()
        assert np.isfinite(y[:2]).all() and np.isnan(y[2:]).all()

    def test_errors(self, updates, three):
        from dataclasses import replace

        from lowrank.plot import plot_update_spectra

        with pytest.raises(InputError, match="got a plain result for 'fast'"):
            plot_update_spectra(three)
        with pytest.raises(InputError, match="unknown name 'nope'"):
            plot_update_spectra(updates, names=["nope"])
        old = replace(updates[0], base_singular_values=None)
        with pytest.raises(InputError, match="has no base_singular_values"):
            plot_update_spectra([old])
        with pytest.raises(InputError, match="normalize"):
            plot_update_spectra(updates, normalize="yes")


class TestCommandNewKinds:
    """``lowrank plot --kind eigenvalues --name NAME`` and ``--kind overlap``."""

    def test_eigenvalues_and_overlap(self, layered, updates, tmp_path, capsys):
        from dataclasses import replace

        from lowrank.cli import main

        plain = tmp_path / "r.json"
        layered.write_json(plain)
        target = tmp_path / "eig.png"
        name = "encoder.layer.2.output.dense.weight"
        args = ["plot", str(plain), "--kind", "eigenvalues", "--name", name, "-o", str(target)]
        assert main(args) == 0
        assert drawn_fraction(imread(target)[..., :3]) > 0.05
        # --include selecting one matrix does instead of --name
        args = ["plot", str(plain), "--kind", "eigenvalues", "--include", name, "-o", str(target)]
        assert main(args) == 0
        update = Report(run=replace(layered.run, base="/base"), matrices=tuple(updates))
        update_file = tmp_path / "u.json"
        update.write_json(update_file)
        target = tmp_path / "overlap.png"
        # Rank 2: the updates have rank 2, so their top-4 subspaces (and overlaps) are undefined.
        args = ["plot", str(update_file), "--kind", "overlap", "--rank", "2", "-o", str(target)]
        assert main([*args, "--side", "right"]) == 0
        assert drawn_fraction(imread(target)[..., :3]) > 0.1
        capsys.readouterr()

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["--kind", "eigenvalues"], "--kind eigenvalues needs --name NAME (the report has 10"),
            (
                ["--kind", "curves", "--name", "x"],
                "--name applies to --kind eigenvalues or update-spectra only",
            ),
            (["--kind", "heatmap", "--rank", "2"], "--rank applies to --kind overlap only"),
            (["--kind", "spectra", "--side", "left"], "--side applies to --kind overlap only"),
            (["--kind", "overlap", "--relative"], "--relative applies to --kind curves or heatmap"),
            (["--kind", "overlap"], "got a plain result for"),
        ],
    )
    def test_usage_errors(self, layered, tmp_path, capsys, options, message):
        from lowrank.cli import main

        plain = tmp_path / "r.json"
        layered.write_json(plain)
        assert main(["plot", str(plain), *options, "-o", str(tmp_path / "x.png")]) != 0
        assert message in capsys.readouterr().err


def _alphas(results) -> dict[str, float]:
    """The power-law alpha of each result that has one."""
    return {
        m.name: m.random_matrix.power_law.alpha
        for m in results
        if m.random_matrix is not None and m.random_matrix.power_law is not None
    }


def _points(ax) -> np.ndarray:
    """The (x, y) of every scatter point of ``ax``."""
    from matplotlib.collections import PathCollection

    found = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate([np.asarray(f, dtype=float).reshape(-1, 2) for f in found])


@pytest.fixture(scope="module")
def alpha_report() -> Report:
    """3 layers x (query, value, output.dense) with power-law tails, a position embedding
    (not per layer, with a fit), and a head with one positive eigenvalue (no fit)."""
    rng = np.random.default_rng(21)
    results = []
    for layer in range(3):
        for module in ("output.dense", "attention.self.value", "attention.self.query"):
            A = rng.standard_t(2.5 + layer, (60, 40))  # heavy tails: a power-law spectrum
            name = f"encoder.layer.{layer}.{module}.weight"
            results.append(analyze_matrix(A, name=name, options=OPTIONS))
    results.append(
        analyze_matrix(
            rng.standard_t(3, (50, 40)),
            name="embeddings.position_embeddings.weight",
            options=OPTIONS,
        )
    )
    head = np.zeros((10, 8))
    head[0, 0] = 3.0  # singular values exactly (3, 0, ..., 0): no tail to fit
    results.append(analyze_matrix(head, name="classifier.weight", options=OPTIONS))
    report = make_report({})
    return Report(run=report.run, matrices=tuple(results))


class TestAlphaSummary:
    """plot_alpha_summary: one point per matrix with an alpha at its layer, the bands, the
    per-module mean and median (against numpy), the matrices without a layer index beside."""

    def test_points_bands_lines_and_legend(self, alpha_report, tmp_path):
        from matplotlib.collections import LineCollection

        from lowrank.analysis import parse_layer_name
        from lowrank.plot import plot_alpha_summary

        alphas = _alphas(alpha_report.matrices)
        assert "classifier.weight" not in alphas and len(alphas) == 10  # the premise
        fig = plot_alpha_summary(alpha_report)
        ax = fig.axes[0]
        points = _points(ax)
        assert len(points) == len(alphas)  # one point per matrix with an alpha, none other
        np.testing.assert_array_equal(np.sort(points[:, 1]), np.sort(list(alphas.values())))
        # x: the layer index (the modules of a layer side by side within +-0.35), the
        # matrix without a layer index after a gap (3 layers, a blank, then position 4)
        for name, alpha in alphas.items():
            (x,) = points[points[:, 1] == alpha][:, 0]
            parsed = parse_layer_name(name)
            if parsed is None:
                assert x == 4.0
            else:
                assert abs(x - parsed.layer) <= 0.35
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == ["0", "1", "2", "embeddings.position_embeddings"]
        # The bands: alpha < 2 and alpha > 6, shaded and labelled.
        bands = {p.get_gid(): p for p in ax.patches if p.get_gid()}
        assert set(bands) == {"over-trained", "under-trained"}
        low, high = ax.get_ylim()
        over, under = bands["over-trained"], bands["under-trained"]
        assert (over.get_y(), over.get_y() + over.get_height()) == (low, 2.0)
        assert (under.get_y(), under.get_y() + under.get_height()) == (6.0, high)
        texts = [t.get_text() for t in ax.texts]
        assert "over-trained (α < 2)" in texts and "under-trained (α > 6)" in texts
        # Per module type a solid mean line and a dotted median line, at numpy's values.
        modules = ["attention.self.query", "attention.self.value", "output.dense"]
        lines = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(lines) == 2 * len(modules)
        for k, module in enumerate(modules):
            group = [a for n, a in alphas.items() if f".{module}." in n]
            mean_y = lines[2 * k].get_segments()[0][:, 1]
            median_y = lines[2 * k + 1].get_segments()[0][:, 1]
            np.testing.assert_allclose(mean_y, np.mean(group), rtol=1e-14)
            np.testing.assert_allclose(median_y, np.median(group), rtol=1e-14)
            assert lines[2 * k].get_linestyle()[0][1] is None  # solid
            assert lines[2 * k + 1].get_linestyle()[0][1] is not None  # dotted
        # One legend entry per group, in a block's order, then the side matrix.
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(labels) == 4
        for label, module in zip(labels, modules, strict=False):
            group = [a for n, a in alphas.items() if f".{module}." in n]
            assert label == (
                f"{module}: mean {np.mean(group):.3g}, median {np.median(group):.3g} (n = 3)"
            )
        side = alphas["embeddings.position_embeddings.weight"]
        assert labels[3] == f"embeddings.position_embeddings: {side:.3g}"
        # The matrix without an alpha fit is stated in the title.
        assert ax.get_title().startswith("Power-law α of 10 matrices; 1 without an α fit not shown")
        rgb = saved_png(fig, tmp_path / "alpha.png")
        for color in curve_colors(4):
            assert pixels_near(rgb, color) > 20
        assert drawn_fraction(rgb) > 0.05

    def test_off_scale_values_update_reports_and_names(self, layered, updates, tmp_path):
        from lowrank.plot import plot_alpha_summary

        # The all-ones spectrum of layered's embedding fits a huge alpha (rounding spread):
        # drawn as a triangle on the top edge, counted in the title.
        alphas = _alphas(layered.matrices)
        huge = alphas["embeddings.word_embeddings.weight"]
        assert huge > 20
        ax = plot_alpha_summary(layered).axes[0]
        points = _points(ax)
        assert len(points) == len(alphas)
        high = ax.get_ylim()[1]
        assert high <= 20 and np.count_nonzero(points[:, 1] == high) == 1
        assert "1 above" in ax.get_title() and "drawn as ▲ at the top" in ax.get_title()
        # An update report: the alphas of the updates, selected by name.
        names = [m.name for m in updates[:2]]
        ax = plot_alpha_summary(updates, names=names, legend=False).axes[0]
        assert ax.get_ylabel() == "power-law α of ΔW"
        assert len(_points(ax)) == len(_alphas(updates[:2]))
        assert ax.get_legend() is None
        # Names without a layer index only: all beside, the matrices' names as ticks.
        ax = plot_alpha_summary(updates[-1:]).axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["embeddings.word_embeddings"]
        assert ax.get_xlabel() == "matrix" and len(_points(ax)) == 1

    def test_plot_report_dispatches(self, alpha_report, updates, tmp_path):
        path = tmp_path / "alpha.png"
        fig = plot_report(alpha_report, kind="alpha", path=path)
        assert len(_points(fig.axes[0])) == 10 and path.read_bytes().startswith(b"\x89PNG")
        path = tmp_path / "update.png"
        fig = plot_report(updates, kind="update-spectra", path=path, normalize=False)
        assert len(fig.axes[0].get_lines()) == 2 * len(updates)
        assert fig.axes[0].get_ylabel() == "σ_i" and path.exists()

    def test_errors(self, alpha_report):
        from dataclasses import replace

        from lowrank.plot import plot_alpha_summary

        head = alpha_report.result("classifier.weight")
        with pytest.raises(InputError, match="none of the 1 matrices has a power-law alpha fit"):
            plot_alpha_summary([head])
        old = [replace(m, random_matrix=None) for m in alpha_report.matrices]
        with pytest.raises(InputError, match="none of the 11 matrices has a power-law alpha"):
            plot_alpha_summary(old)
        with pytest.raises(InputError, match="unknown name 'nope'"):
            plot_alpha_summary(alpha_report, names=["nope"])
        with pytest.raises(InputError, match="legend"):
            plot_alpha_summary(alpha_report, legend="yes")
        with pytest.raises(InputError, match="there is nothing to plot"):
            plot_alpha_summary([])


class TestCommandAlphaAndUpdateSpectra:
    """``lowrank plot --kind alpha`` and ``--kind update-spectra [--name NAME]``."""

    def test_kinds_render(self, alpha_report, layered, updates, tmp_path, capsys):
        from dataclasses import replace

        from lowrank.cli import main

        plain = tmp_path / "r.json"
        alpha_report.write_json(plain)
        target = tmp_path / "alpha.png"
        args = ["plot", str(plain), "--kind", "alpha", "-o", str(target)]
        assert main([*args, "--exclude", "*value*"]) == 0
        assert drawn_fraction(imread(target)[..., :3]) > 0.05
        update = Report(run=replace(layered.run, base="/base"), matrices=tuple(updates))
        update_file = tmp_path / "u.json"
        update.write_json(update_file)
        target = tmp_path / "us.png"
        args = ["plot", str(update_file), "--kind", "update-spectra", "-o", str(target)]
        assert main(args) == 0
        assert main([*args, "--name", updates[0].name]) == 0
        assert main([*args, "--include", "*query*"]) == 0
        assert drawn_fraction(imread(target)[..., :3]) > 0.01
        capsys.readouterr()

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["--kind", "update-spectra"], "--kind update-spectra needs an update report"),
            (
                ["--kind", "alpha", "--name", "x"],
                "--name applies to --kind eigenvalues or update-spectra only",
            ),
            (["--kind", "alpha", "--relative"], "--relative applies to --kind curves or heatmap"),
            (["--kind", "alpha", "--energy", "0.5"], "--energy applies to --kind heatmap only"),
        ],
    )
    def test_usage_errors(self, layered, tmp_path, capsys, options, message):
        from lowrank.cli import main

        plain = tmp_path / "r.json"
        layered.write_json(plain)
        assert main(["plot", str(plain), *options, "-o", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and message in err[0]
        assert not (tmp_path / "x.png").exists()
