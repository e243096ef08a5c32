r"""Figures of an analysis: rank–error curves, spectra, a rank heatmap, eigenvalue histograms.

The heatmap shows the rank for an energy level per layer × module; the eigenvalue histogram
of one matrix shows its Marchenko–Pastur bulk and power-law tail (:func:`plot_eigenvalues`),
and the α summary the power-law exponent of every matrix by layer and module type
(:func:`plot_alpha_summary`).
An update analysis adds the subspace overlap grid (:func:`plot_overlap`) and the spectra of
each :math:`\Delta W` against its base :math:`W`'s (:func:`plot_update_spectra`).

Each function draws from a :class:`~lowrank.analysis.Report` (a fresh one, or one read
back with :meth:`Report.read_json <lowrank.analysis.Report.read_json>`: nothing is
recomputed) or from a sequence of :class:`~lowrank.analysis.MatrixResult`, on a new figure
or on the ``ax`` given, and returns the :class:`matplotlib.figure.Figure`.

matplotlib is imported inside the functions (``import lowrank`` never loads it), and
figures are made with :class:`matplotlib.figure.Figure` directly, not ``pyplot``: no GUI
backend is touched and no global figure list grows; PNG files are rendered by Agg.

Typical use::

    from lowrank.analysis import Report
    from lowrank.plot import plot_curves, save_figure
    fig = plot_curves(Report.read_json("report.json"))
    save_figure(fig, "curves.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from lowrank._numerics import power_of_two_scale, tolerance
from lowrank._typing import Array
from lowrank._validation import (
    check_bool,
    check_choice,
    check_int,
    check_path,
    check_positive_float,
    check_str,
    check_str_sequence,
)
from lowrank.analysis import MatrixResult, Report, UpdateResult, layer_grid, parse_layer_name

# The column order of layer_grid (a transformer block's), for grids of other values.
from lowrank.analysis._layers import module_order
from lowrank.errors import InputError
from lowrank.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_FORMATS",
    "PLOT_KINDS",
    "PlotKind",
    "ResultsLike",
    "curve_colors",
    "plot_alpha_summary",
    "plot_curves",
    "plot_eigenvalues",
    "plot_heatmap",
    "plot_overlap",
    "plot_report",
    "plot_spectra",
    "plot_update_spectra",
    "save_figure",
]

PlotKind: TypeAlias = Literal["curves", "spectra", "heatmap", "alpha", "update-spectra"]
"""The names of the figures: ``"curves"``, ``"spectra"``, ``"heatmap"``, ``"alpha"`` or
``"update-spectra"`` (the last of an update report only)."""
PLOT_KINDS: tuple[PlotKind, ...] = ("curves", "spectra", "heatmap", "alpha", "update-spectra")
"""The figures :func:`plot_report` draws (from a report alone, without further choices)."""

FIGURE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
"""File formats :func:`save_figure` writes, chosen by the file's suffix."""

# The largest PNG save_figure renders (pixels; 2e8 is 800 MB of RGBA).
_MAX_PIXELS = 2e8

ResultsLike: TypeAlias = "Report | Iterable[MatrixResult]"
"""A report, or the results to draw."""

# Legends with more entries than this would hide the curves; the title counts them instead.
_LEGEND_MAX = 12

# The top of the alpha summary's y axis at most (the under-trained band starts at 6).
_ALPHA_AXIS_MAX = 20.0


def _results(data: ResultsLike, names: Sequence[str] | None = None) -> list[MatrixResult]:
    given: object = data
    if not isinstance(given, Report) and (
        isinstance(given, (str, bytes)) or not hasattr(given, "__iter__")
    ):
        raise InputError(
            f"data must be a Report or an iterable of MatrixResult objects; got {data!r:.80}"
        )
    items = list(data.matrices) if isinstance(data, Report) else list(data)
    bad = [type(m).__name__ for m in items if not isinstance(m, MatrixResult)]
    if bad:
        raise InputError(
            f"data must be a Report or MatrixResult objects; got an item of type {bad[0]}"
        )
    if names is not None:
        wanted = list(check_str_sequence(names, name="names"))
        by_name = {m.name: m for m in items}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise InputError(f"names must be analysed matrices; got unknown name {missing[0]!r}")
        items = [by_name[n] for n in wanted]
    if not items:
        raise InputError("there is nothing to plot: the report has no analysed matrix")
    return items


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure, SubFigure

    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    from matplotlib.axes import Axes as AxesType

    # A Figure has a .figure too, and would fail later with a raw AttributeError.
    if not isinstance(ax, AxesType):
        raise InputError(
            f"ax must be a matplotlib Axes; got {ax!r:.80} of type {type(ax).__name__}"
        )
    parent = ax.figure
    while isinstance(parent, SubFigure):
        parent = parent.figure
    if not isinstance(parent, Figure):
        raise InputError("ax must be a matplotlib Axes placed on a figure")
    return parent, ax


def curve_colors(count: int) -> Array:
    """``count`` distinct RGBA colours: ``tab10``/``tab20`` when they suffice, else ``turbo``.

    Parameters
    ----------
    count : int
        How many colours, ``>= 0``.

    Returns
    -------
    ndarray, shape (count, 4)
        RGBA rows in [0, 1].

    Raises
    ------
    InputError
        ``count`` is not a non-negative integer.

    Examples
    --------
    >>> curve_colors(3).shape
    (3, 4)
    """
    from matplotlib import colormaps

    n = check_int(count, name="count", minimum=0)
    if n <= 10:
        return np.asarray(colormaps["tab10"](np.arange(n)))
    if n <= 20:
        return np.asarray(colormaps["tab20"](np.arange(n)))
    return np.asarray(colormaps["turbo"](np.linspace(0.03, 0.97, n)))


def _check_legend(legend: object) -> bool | None:
    return None if legend is None else check_bool(legend, name="legend")


def _has_positive(values: Array | None) -> bool:
    """Whether a spectrum has a value a log axis can show (> 0)."""
    return values is not None and bool(np.any(np.asarray(values, dtype=np.float64) > 0.0))


def _listed(names: Sequence[str], *, shown: int = 2) -> str:
    """``names`` for a note: the first few, then how many more."""
    more = f", … ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(_short_name(n) for n in names[:shown]) + more


def _drawable(items: Sequence[MatrixResult]) -> tuple[list[MatrixResult], str]:
    """The matrices with a positive singular value (the others, all-zero, have nothing a
    log axis can show), and a note naming those left out ("" if none).

    Raises
    ------
    InputError
        None of ``items`` has a positive singular value.
    """
    kept = [m for m in items if _has_positive(m.singular_values)]
    out = [m.name for m in items if not _has_positive(m.singular_values)]
    if not kept:
        if len(items) == 1:
            raise InputError(
                f"matrix {items[0].name!r} has no positive singular value to plot "
                "(an all-zero matrix)"
            )
        raise InputError(
            f"none of the {len(items)} matrices has a positive singular value to plot "
            "(all-zero matrices); nothing to plot"
        )
    if not out:
        return kept, ""
    what = "all-zero matrix" if len(out) == 1 else "all-zero matrices"
    return kept, f"{len(out)} {what} not drawn: {_listed(out)}"


# How much lighter the shallowest layer of a module is drawn than its deepest (mixed with
# white), so that depth reads as shade within one hue.
_SHALLOW_LIGHTEN = 0.6


def _line_styles(items: Sequence[MatrixResult]) -> tuple[list[tuple[Array, str | None]], int]:
    """A colour and a legend label per line (None: no entry), and the number of legend
    groups.

    Matrices of one module type across layers (``encoder.layer.3.attention.self.query``:
    module ``attention.self.query``, layer 3; :func:`lowrank.analysis.parse_layer_name`)
    share a hue, shaded from light (shallow) to full (deep), with one legend entry per
    module (on its deepest line); the other matrices (embeddings, heads) get a hue each.
    """
    parsed = [parse_layer_name(m.name) for m in items]
    # Layers of several stacks (T5's encoder and decoder blocks) are not one module type
    # across depth: one group per stack and module, named with its stack.
    stacks = len({p.stack for p in parsed if p is not None}) > 1
    groups: dict[str, list[tuple[int, int]]] = {}  # key -> [(item index, layer)]
    for i, (m, p) in enumerate(zip(items, parsed, strict=True)):
        if p is None:
            key, layer = f"\0{m.name}", 0  # "\0": never the key of a module
        else:
            key, layer = (f"{p.stack}: {p.module}" if stacks else p.module), p.layer
        groups.setdefault(key, []).append((i, layer))
    base = curve_colors(len(groups))
    styles: list[tuple[Array, str | None]] = [(base[0], None)] * len(items)
    for color, (key, members) in zip(base, groups.items(), strict=True):
        layers = [layer for _, layer in members]
        low, high = min(layers), max(layers)
        deepest = max(members, key=lambda member: member[1])[0]
        for i, layer in members:
            depth = (layer - low) / (high - low) if high > low else 1.0
            mix = _SHALLOW_LIGHTEN * (1.0 - depth)
            shade = color.copy()
            shade[:3] = color[:3] * (1.0 - mix) + mix
            label: str | None = None
            if len(members) == 1:
                label = _text(items[i].name)
            elif i == deepest:
                label = f"{_text(key)} (layers {low}–{high}, darker = deeper)"
            styles[i] = (shade, label)
    return styles, len(groups)


def _legend(ax: Axes, entries: Sequence[Any], **options: Any) -> None:
    """A legend of exactly ``entries`` (artists, with their labels).

    Given explicitly, because matplotlib's own collection of labelled artists silently
    skips labels starting with "_", and tensor names do (torch.compile's ``_orig_mod.``).
    """
    ax.legend(handles=list(entries), labels=[a.get_label() for a in entries], **options)


def _marker(y: Array) -> str:
    """ "o" for a line of fewer than two drawable points (a line through one point is
    invisible: a 1 x n matrix's single singular value), else none."""
    return "o" if np.count_nonzero(np.isfinite(y)) < 2 else "None"


def _finish_lines(
    ax: Axes,
    entries: Sequence[Any],
    count: int,
    groups: int,
    legend: bool | None,
    what: str,
    note: str = "",
) -> None:
    """The legend of ``entries`` (or a title counting the lines), and ``note`` (what was
    left out) in the title."""
    show = groups <= _LEGEND_MAX if legend is None else legend
    if show:
        _legend(ax, entries, fontsize="x-small", loc="best")
        if note:
            ax.set_title(note, fontsize="small")
    else:
        title = f"{what} of {count} matrices"
        ax.set_title(f"{title}\n{note}" if note else title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)


def plot_curves(
    data: ResultsLike,
    *,
    ax: Axes | None = None,
    names: Sequence[str] | None = None,
    max_rank: int | None = None,
    fraction: bool = False,
    legend: bool | None = None,
) -> Figure:
    r"""Relative Frobenius error of the best rank-r approximation against r, one curve per matrix.

    Parameters
    ----------
    data : Report or iterable of MatrixResult
        What to draw.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    names : sequence of str, optional
        Only these matrices, in this order.
    max_rank : int, optional
        Draw ranks ``0..max_rank`` only.
    fraction : bool, default False
        x is ``r / min(m, n)`` instead of ``r``, to compare matrices of different sizes.
    legend : bool, optional
        Show a legend (default: when there are at most 12 groups). Matrices of one module
        type across layers share a colour, lighter for shallower layers, and one legend
        entry; other matrices get a colour and an entry each.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot (no matrix, or only all-zero ones), an unknown name, or a bad
        ``max_rank``.

    Notes
    -----
    The curve is :math:`e_r = (\sum_{i>r}\sigma_i^2)^{1/2}/\|A\|_F` (Eckart–Young–Mirsky) on a
    log y axis; the exact zero at full rank cannot be drawn on it and is left out. An
    all-zero matrix has no curve (:math:`0/0`): it is left out, and the title names it.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_matrix
    >>> from lowrank.plot import plot_curves
    >>> rng = np.random.default_rng(0)
    >>> results = [
    ...     analyze_matrix(rng.standard_normal((48, 48)) * decay ** np.arange(48), name=name)
    ...     for name, decay in [("fast", 0.8), ("slow", 0.97), ("flat", 1.0)]
    ... ]
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_curves(results, ax=ax) is fig
    True
    """
    from lowrank.curves import rank_error_curve

    items = _results(data, names)
    limit = None if max_rank is None else check_int(max_rank, name="max_rank", minimum=1)
    fraction = check_bool(fraction, name="fraction")
    legend = _check_legend(legend)
    items, note = _drawable(items)
    fig, ax = _new_axes(ax, (7.0, 4.5))
    styles, groups = _line_styles(items)
    entries = []
    for m, (color, label) in zip(items, styles, strict=True):
        curve = rank_error_curve(m.singular_values)
        ranks, errors = curve.ranks.astype(float), curve.relative.copy()
        if limit is not None:
            ranks, errors = ranks[: limit + 1], errors[: limit + 1]
        errors[errors <= 0.0] = np.nan
        x = ranks / max(min(m.shape), 1) if fraction else ranks
        (line,) = ax.plot(
            x,
            errors,
            color=color,
            linewidth=1.2,
            marker=_marker(errors),
            label=label or "_nolegend_",
        )
        if label is not None:
            entries.append(line)
    ax.set_yscale("log")
    ax.set_xlabel("rank / min(m, n)" if fraction else "rank r")
    ax.set_ylabel("relative error ‖A − A_r‖_F / ‖A‖_F")
    _finish_lines(ax, entries, len(items), groups, legend, "Rank–error curves", note)
    return fig


def plot_spectra(
    data: ResultsLike,
    *,
    ax: Axes | None = None,
    names: Sequence[str] | None = None,
    normalize: bool = True,
    legend: bool | None = None,
) -> Figure:
    r"""Singular values against their index on log–log axes, one line per matrix.

    Parameters
    ----------
    data : Report or iterable of MatrixResult
        What to draw.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    names : sequence of str, optional
        Only these matrices, in this order.
    normalize : bool, default True
        Draw :math:`\sigma_i/\sigma_1` (else :math:`\sigma_i`).
    legend : bool, optional
        Show a legend (default: when there are at most 12 groups). Matrices of one module
        type across layers share a colour, lighter for shallower layers, and one legend
        entry; other matrices get a colour and an entry each.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot (no matrix, or only all-zero ones), or an unknown name.

    Notes
    -----
    Zero singular values cannot be drawn on a log axis and are left out; so is an
    all-zero matrix (no line, no legend entry; the title names it). A power-law
    tail :math:`\sigma_i \propto i^{-a}` shows as a straight line of slope :math:`-a`.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_matrix
    >>> from lowrank.plot import plot_spectra
    >>> rng = np.random.default_rng(0)
    >>> results = [
    ...     analyze_matrix(rng.standard_normal((48, 48)) * decay ** np.arange(48), name=name)
    ...     for name, decay in [("fast", 0.8), ("slow", 0.97), ("flat", 1.0)]
    ... ]
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_spectra(results, ax=ax) is fig
    True
    """
    items = _results(data, names)
    normalize = check_bool(normalize, name="normalize")
    legend = _check_legend(legend)
    items, note = _drawable(items)
    fig, ax = _new_axes(ax, (7.0, 4.5))
    styles, groups = _line_styles(items)
    entries = []
    for m, (color, label) in zip(items, styles, strict=True):
        s = np.asarray(m.singular_values, dtype=np.float64)
        y = s / s[0] if normalize else s.copy()  # s[0] > 0: _drawable
        y[y <= 0.0] = np.nan
        (line,) = ax.plot(
            np.arange(1, s.size + 1),
            y,
            color=color,
            linewidth=1.2,
            marker=_marker(y),
            label=label or "_nolegend_",
        )
        if label is not None:
            entries.append(line)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("σ_i / σ_1" if normalize else "σ_i")
    _finish_lines(ax, entries, len(items), groups, legend, "Singular values", note)
    return fig


def plot_heatmap(
    data: ResultsLike,
    *,
    energy: float | None = None,
    ax: Axes | None = None,
    relative: bool = False,
    annotate: bool = True,
    cmap: str = "viridis",
) -> Figure:
    r"""Rank needed for an energy level, per layer (rows) and module (columns).

    Layer index and module come from the tensor names
    (:func:`lowrank.analysis.parse_layer_name`): ``encoder.layer.3.attention.self.query.weight``
    is layer 3, module ``attention.self.query``. The columns follow the order of a
    transformer block, not the file's: attention query, key, value, output, then the
    feed-forward up, gate and down projections (by the common module names of BERT, Llama,
    GPT-2, T5 and DistilBERT), unknown modules after them in order of first appearance.
    Matrices without a layer index (embeddings, pooler, heads) are shown beside the grid,
    after a blank column, each as one column spanning all rows with its value written once.
    Missing cells stay blank.

    Parameters
    ----------
    data : Report or iterable of MatrixResult
        What to draw.
    energy : float, optional
        One of the analysed energies (default: the first one).
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    relative : bool, default False
        Show ``rank / min(m, n)`` instead of the rank.
    annotate : bool, default True
        Write the value in each cell.
    cmap : str, default "viridis"
        A matplotlib colormap name.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot, no name with a layer index, an energy that was not analysed, or an
        unknown colormap.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_matrix
    >>> from lowrank.plot import plot_heatmap
    >>> rng = np.random.default_rng(0)
    >>> results = [
    ...     analyze_matrix(
    ...         rng.standard_normal((32, 32)) * (0.6 + 0.1 * layer) ** np.arange(32),
    ...         name=f"encoder.layer.{layer}.attention.{module}.weight",
    ...     )
    ...     for layer in range(4)
    ...     for module in ("query", "key", "value")
    ... ]
    >>> fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    >>> plot_heatmap(results, energy=0.9, ax=ax) is fig
    True
    """
    from matplotlib import colormaps

    items = _results(data)
    relative = check_bool(relative, name="relative")
    annotate = check_bool(annotate, name="annotate")
    if energy is None:
        if not items[0].energy_ranks:
            raise InputError("the report has no energy level to plot (analysed energies: none)")
        energy = items[0].energy_ranks[0][0]
    if not isinstance(cmap, str) or cmap not in colormaps:
        raise InputError(f"cmap must be a matplotlib colormap name; got {cmap!r:.80}")
    grid = layer_grid(items, energy=energy)
    values = grid.ranks / grid.full_ranks if relative else grid.ranks
    # Matrices without a layer index: one full-height column each, after a blank column.
    by_name = {m.name: m for m in items}
    others = [by_name[name] for name in dict.fromkeys(grid.left_out)]
    side = np.array(
        [m.rank_for_energy(grid.energy) / (min(m.shape) if relative else 1) for m in others]
    )
    label = "rank / min(m, n)" if relative else "rank"
    return _draw_grid(
        ax,
        rows=grid.rows,
        modules=grid.modules,
        values=values,
        others=[m.name for m in others],
        side=side,
        title=f"{label} for {100 * grid.energy:g}% of ‖A‖_F²",
        label=label,
        fmt="{:.2f}" if relative else "{:.0f}",
        cmap=cmap,
        annotate=annotate,
    )


def _draw_grid(
    ax: Axes | None,
    *,
    rows: Sequence[str],
    modules: Sequence[str],
    values: Array,
    others: Sequence[str],
    side: Array,
    title: str,
    label: str,
    fmt: str,
    cmap: str,
    annotate: bool,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """A layer × module grid of ``values``, and beside it, after a blank column, one
    full-height column per matrix without a layer index (``others``, values ``side``)."""
    from matplotlib import colormaps

    shown = values
    ticks, labels = list(range(len(modules))), [_text(module) for module in modules]
    if len(others):
        gap = np.full((len(rows), 1), np.nan)
        shown = np.hstack([values, gap, np.broadcast_to(side, (len(rows), side.size))])
        ticks += [len(modules) + 1 + k for k in range(len(others))]
        labels += [_short_name(name) for name in others]
    width = 1.2 + 1.1 * len(modules) + (1.1 * len(others) + 0.4 if len(others) else 0.0)
    fig, ax = _new_axes(ax, (width, 1.4 + 0.45 * len(rows)))
    vmin, vmax = (None, None) if limits is None else limits
    image = ax.imshow(
        np.ma.masked_invalid(shown),
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
        vmin=vmin,
        vmax=vmax,
    )
    ax.set_xticks(ticks, labels, rotation=35, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)), [_text(row) for row in rows], fontsize="small")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize="medium")
    fig.colorbar(image, ax=ax, label=label)
    if annotate:
        norm, colormap = image.norm, colormaps[cmap]

        def write(x: float, y: float, v: Any) -> None:
            r, g, b, _ = colormap(norm(v))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(x, y, fmt.format(v), ha="center", va="center", color=ink, fontsize="x-small")

        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                write(j, i, v)
        for k, v in enumerate(side):
            if np.isfinite(v):
                write(len(modules) + 1 + k, (len(rows) - 1) / 2, v)
    return fig


def plot_overlap(
    data: ResultsLike,
    *,
    rank: int | None = None,
    side: Literal["left", "right"] = "left",
    ax: Axes | None = None,
    annotate: bool = True,
    cmap: str = "viridis",
) -> Figure:
    r"""Subspace overlap of each update :math:`\Delta W` with its base :math:`W`, layer × module.

    The cells are :attr:`lowrank.analysis.UpdateResult.overlap_left` (or ``overlap_right``)
    at ``rank``: :math:`\|U_r(\Delta W)^\top U_r(W)\|_F^2/r`, the share of
    :math:`\Delta W`'s top-r subspace inside :math:`W`'s (Hu et al. 2021, §7.3), on a fixed
    0–1 colour scale. Rows, columns and the matrices without a layer index beside the grid
    are laid out as in :func:`plot_heatmap`. An undefined overlap (``nan``: the base
    :math:`W` has no top-r subspace, e.g. :math:`W = 0`;
    :func:`lowrank.analysis.analyze_update_matrix`) leaves its cell blank, and the title
    counts such cells.

    Parameters
    ----------
    data : Report or iterable of UpdateResult
        The results of an update analysis (``lowrank analyze TUNED --base BASE``).
    rank : int, optional
        One of the analysed ranks (default: the first).
    side : {"left", "right"}, default "left"
        Left (output space, ``U``) or right (input space, ``V``) singular vectors.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    annotate : bool, default True
        Write the value in each cell.
    cmap : str, default "viridis"
        A matplotlib colormap name.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot, a result that is not an update, no name with a layer index, a
        rank that was not analysed, no defined overlap at ``rank``, an unknown ``side`` or
        colormap.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_update_matrix
    >>> from lowrank.plot import plot_overlap
    >>> rng = np.random.default_rng(0)
    >>> results = []
    >>> for layer in range(3):
    ...     for module in ("query", "value"):
    ...         W = rng.standard_normal((24, 24))
    ...         delta = 0.1 * rng.standard_normal((24, 8)) @ rng.standard_normal((8, 24))
    ...         name = f"encoder.layer.{layer}.attention.self.{module}.weight"
    ...         results.append(analyze_update_matrix(W + delta, W, name=name))
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_overlap(results, rank=results[0].overlap_left[0][0], ax=ax) is fig
    True
    """
    from matplotlib import colormaps

    items = _results(data)
    plain = [m.name for m in items if not isinstance(m, UpdateResult)]
    if plain:
        raise InputError(
            "data must be the results of an update analysis (lowrank analyze TUNED --base "
            f"BASE); got a plain result for {plain[0]!r}"
        )
    updates = [m for m in items if isinstance(m, UpdateResult)]
    check_choice(side, name="side", choices=("left", "right"))
    annotate = check_bool(annotate, name="annotate")
    if not isinstance(cmap, str) or cmap not in colormaps:
        raise InputError(f"cmap must be a matplotlib colormap name; got {cmap!r:.80}")
    analysed = [r for r, _ in updates[0].overlap_left]
    if rank is None:
        if not analysed:
            raise InputError("the report has no rank to plot (analysed ranks: none)")
        rank = analysed[0]
    rank = check_int(rank, name="rank", minimum=1)
    if rank not in analysed:
        raise InputError(f"rank must be one of the analysed ranks {tuple(analysed)}; got {rank}")

    def overlap(m: UpdateResult) -> float:
        return dict(m.overlap_left if side == "left" else m.overlap_right).get(rank, np.nan)

    placed: dict[tuple[str, int, str], UpdateResult] = {}
    others: list[UpdateResult] = []
    for m in updates:
        parsed = parse_layer_name(m.name)
        if parsed is None:
            others.append(m)
        else:
            placed.setdefault((parsed.stack, parsed.layer, parsed.module), m)
    if not placed:
        raise InputError(
            "a layer x module grid needs tensor names with a layer index, like "
            f"'encoder.layer.3.attention.self.query.weight'; none of the {len(updates)} "
            "names has one"
        )
    stacks = list(dict.fromkeys(k[0] for k in placed))
    row_keys = sorted({(k[0], k[1]) for k in placed}, key=lambda r: (stacks.index(r[0]), r[1]))
    modules = module_order(k[2] for k in placed)
    values = np.full((len(row_keys), len(modules)), np.nan)
    for (stack, layer, module), m in placed.items():
        values[row_keys.index((stack, layer)), modules.index(module)] = overlap(m)
    rows = [str(layer) if len(stacks) == 1 else f"{stack}.{layer}" for stack, layer in row_keys]
    vectors = "U" if side == "left" else "V"
    undefined = [m.name for m in updates if math.isnan(overlap(m))]
    if len(undefined) == len(updates):
        raise InputError(
            f"none of the {len(updates)} updates has a defined {side} overlap at rank {rank} "
            "(W or the update has no top-r singular subspace: its sigma_r = 0 up to rounding); "
            "nothing to plot"
        )
    note = (
        f"\n{len(undefined)} undefined (σ_r of W or ΔW = 0 up to rounding) left blank: "
        f"{_listed(undefined)}"
        if undefined
        else ""
    )
    return _draw_grid(
        ax,
        rows=rows,
        modules=modules,
        values=values,
        others=[m.name for m in others],
        side=np.array([overlap(m) for m in others]),
        title=f"overlap ‖{vectors}_r(ΔW)ᵀ{vectors}_r(W)‖_F² / r at r = {rank}{note}",
        label=f"{side} subspace overlap",
        fmt="{:.2f}",
        cmap=cmap,
        annotate=annotate,
        limits=(0.0, 1.0),
    )


def plot_update_spectra(
    data: ResultsLike,
    *,
    names: Sequence[str] | None = None,
    ax: Axes | None = None,
    normalize: bool = True,
    legend: bool | None = None,
) -> Figure:
    r"""The spectrum of each update :math:`\Delta W` against its base :math:`W`'s, log–log.

    For each matrix, :attr:`~lowrank.analysis.MatrixResult.singular_values` (of
    :math:`\Delta W`, solid) and :attr:`~lowrank.analysis.UpdateResult.base_singular_values`
    (of :math:`W = W_\text{base}`, dashed) against their index, in one colour per matrix
    (matrices of one module type across layers share a hue, lighter for shallower layers, as
    in :func:`plot_spectra`). A low-rank update shows as a solid line that drops far below
    the dashed one after a few indices.

    Parameters
    ----------
    data : Report or iterable of UpdateResult
        The results of an update analysis (``lowrank analyze TUNED --base BASE``).
    names : sequence of str, optional
        Only these matrices, in this order.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    normalize : bool, default True
        Divide both spectra of a matrix by :math:`\sigma_1(W)` (so the solid line's height
        is the update's size relative to :math:`W`'s; not done where :math:`\sigma_1(W) = 0`),
        else draw :math:`\sigma_i`.
    legend : bool, optional
        Show a legend (default: when there are at most 12 groups): its first two entries
        say which line style is :math:`\Delta W` and which :math:`W`, then one per colour.
        Without it the title says so.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot (no update, or only ones with :math:`\Delta W = W = 0`), an unknown
        name, a result that is not an update, or one without the base's singular values (a
        report written before they were recorded).

    Notes
    -----
    An all-zero :math:`W` has no dashed line and an all-zero :math:`\Delta W` no solid one
    (the title says which, and that such a :math:`\Delta W` is drawn unscaled); a matrix
    with both all-zero is left out and named in the title.
    Zero singular values cannot be drawn on a log axis and are left out, and so are those
    at the rounding level of the float64 SVD that computed them, at most
    :math:`16\,\varepsilon_{64}\sqrt{\max(m, n)}\,\sigma_1` of their own spectrum: an
    update that leaves some inputs untouched (pixels that are always 0, unused tokens) has
    exact zeros, which come out of the SVD as values near 1e-19 and would stretch the axis
    over fifteen empty decades.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_update_matrix
    >>> from lowrank.plot import plot_update_spectra
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((32, 32))
    >>> delta = 0.1 * rng.standard_normal((32, 2)) @ rng.standard_normal((2, 32))
    >>> result = analyze_update_matrix(W + delta, W, name="query.weight")
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_update_spectra([result], ax=ax) is fig
    True
    """
    from matplotlib.lines import Line2D

    items = _results(data, names)
    plain = [m.name for m in items if not isinstance(m, UpdateResult)]
    if plain:
        raise InputError(
            "data must be the results of an update analysis (lowrank analyze TUNED --base "
            f"BASE); got a plain result for {plain[0]!r}"
        )
    updates = [m for m in items if isinstance(m, UpdateResult)]
    missing = [m.name for m in updates if m.base_singular_values is None]
    if missing:
        raise InputError(
            f"the result for {missing[0]!r} has no base_singular_values (a report written "
            "before they were recorded); run the update analysis again"
        )
    normalize = check_bool(normalize, name="normalize")
    legend = _check_legend(legend)
    empty = [m.name for m in updates if not _has_positive(m.singular_values)]
    zero_base = [m.name for m in updates if not _has_positive(m.base_singular_values)]
    both = [n for n in empty if n in zero_base]
    if len(both) == len(updates):
        raise InputError(
            f"none of the {len(updates)} updates has a positive singular value to plot "
            "(ΔW = 0 and W = 0); nothing to plot"
            if len(updates) > 1
            else f"the update {updates[0].name!r} has no positive singular value to plot "
            "(ΔW = 0 and W = 0)"
        )
    notes = [f"{len(both)} with ΔW = W = 0 not drawn: {_listed(both)}"] if both else []
    updates = [m for m in updates if m.name not in both]
    zero_base = [n for n in zero_base if n not in both]
    empty = [n for n in empty if n not in both]
    if zero_base:
        unscaled = ", ΔW drawn unscaled" if normalize else ""
        notes.append(f"W = 0 (no dashed line{unscaled}): {_listed(zero_base)}")
    if empty:
        notes.append(f"ΔW = 0 (no solid line): {_listed(empty)}")
    note = "; ".join(notes)
    fig, ax = _new_axes(ax, (7.0, 4.5))
    styles, groups = _line_styles(updates)
    entries = []
    for m, (color, label) in zip(updates, styles, strict=True):
        base = np.asarray(m.base_singular_values, dtype=np.float64)
        scale = base[0] if normalize and base.size and base[0] > 0 else 1.0
        for s, style in ((m.singular_values, "-"), (base, "--")):
            if not _has_positive(s):  # W = 0 or ΔW = 0: no line (the title says so)
                continue
            y = np.asarray(s, dtype=np.float64) / scale
            y[y <= _rounding_level(y, m.shape)] = np.nan
            (line,) = ax.plot(
                np.arange(1, y.size + 1),
                y,
                color=color,
                linestyle=style,
                label=label or "_nolegend_",
            )
            if label is not None:
                entries.append(line)
            label = None  # one legend entry per colour, on its first line
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    scaled = normalize and len(zero_base) < len(updates)
    ax.set_ylabel("σ_i / σ_1(W)" if scaled else "σ_i")
    show = groups <= _LEGEND_MAX if legend is None else legend
    if show:
        keys = [
            Line2D([], [], color="0.3", linestyle="-", label="ΔW (solid)"),
            Line2D([], [], color="0.3", linestyle="--", label="W = W_base (dashed)"),
        ]
        _legend(ax, [*keys, *entries], fontsize="x-small", loc="best")
        if note:
            ax.set_title(note, fontsize="small")
    else:
        title = f"Spectra of {len(updates)} updates: ΔW solid, W = W_base dashed"
        ax.set_title(f"{title}\n{note}" if note else title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    return fig


def plot_alpha_summary(
    data: ResultsLike,
    *,
    ax: Axes | None = None,
    names: Sequence[str] | None = None,
    legend: bool | None = None,
) -> Figure:
    r"""The power-law :math:`\alpha` of every matrix, by layer and module type: the model view.

    One point per matrix with a power-law fit
    (:attr:`RandomMatrixView.power_law.alpha <lowrank.analysis.RandomMatrixView>`, the
    exponent of the tail of its eigenvalues :math:`\sigma_i^2`, :func:`lowrank.rmt.power_law_fit`)
    at its layer index (x), coloured by module type, the module types of one layer side by
    side in a transformer block's order (as the heatmap's columns). Matrices without a
    layer index (embeddings, pooler, heads) are drawn beside the layers, one position each.
    Per module type, a solid line marks the mean and a dotted line the median of its
    :math:`\alpha` over the layers (the numbers of
    :meth:`Report.random_matrix_summary <lowrank.analysis.Report.random_matrix_summary>`,
    also in the legend, one entry per module type). The bands :math:`\alpha < 2`
    ("over-trained") and :math:`\alpha > 6` ("under-trained") of WeightWatcher's rules of
    thumb are shaded and labelled. For an update report the points are the :math:`\alpha`
    of the updates :math:`\Delta W`.

    Parameters
    ----------
    data : Report or iterable of MatrixResult
        What to draw; results of an analysis with the random-matrix view.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    names : sequence of str, optional
        Only these matrices, in this order.
    legend : bool, optional
        Show the legend beside the axes (default: when there are at most 12 groups).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot, an unknown name, or no matrix with a power-law fit (spectra
        without a tail, or a report written before the random-matrix view).

    Notes
    -----
    Matrices without a power-law fit are not drawn; the title says how many. The y axis
    ends at 20 at most (a flat spectrum can fit an :math:`\alpha` of :math:`10^{15}`);
    larger values are drawn as triangles on its top edge, their number in the title and
    their values in the legend. The fit is
    :math:`\hat\alpha = 1 + n\,[\sum_{\lambda_i \ge \lambda_{\min}}
    \ln(\lambda_i/\lambda_{\min})]^{-1}` over the :math:`n` eigenvalues of the tail; its
    standard error :math:`(\hat\alpha - 1)/\sqrt n` is large for short tails, so read a
    point outside the bands with its ``n_tail`` in mind. The bands are rules of thumb
    (Martin & Mahoney 2021), not tests.

    References
    ----------
    .. [1] C. H. Martin and M. W. Mahoney, "Implicit Self-Regularization in Deep Neural
       Networks", JMLR 22 (2021), arXiv:1810.01075.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_matrix
    >>> from lowrank.plot import plot_alpha_summary
    >>> rng = np.random.default_rng(0)
    >>> results = [
    ...     analyze_matrix(rng.standard_t(3, (64, 48)), name=f"h.{layer}.attn.{module}.weight")
    ...     for layer in range(3)
    ...     for module in ("q_proj", "v_proj")
    ... ]
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_alpha_summary(results, ax=ax) is fig
    True
    """
    from lowrank.analysis._summary import group_name, summarize
    from lowrank.rmt import OVER_TRAINED_ALPHA, UNDER_TRAINED_ALPHA

    items = _results(data, names)
    legend = _check_legend(legend)
    alphas: dict[int, float] = {}  # item index -> alpha
    for i, m in enumerate(items):
        law = None if m.random_matrix is None else m.random_matrix.power_law
        # A NaN alpha (a result built by hand; reports refuse it) is no fit, not a point.
        if law is not None and not math.isnan(law.alpha):
            alphas[i] = law.alpha
    if not alphas:
        raise InputError(
            f"none of the {len(items)} matrices has a power-law alpha fit (spectra without "
            "a tail, or a report written before the random-matrix view); nothing to plot"
        )
    # Rows: the layers of all matrices (as the heatmap's); groups: module types in a
    # block's order, then each matrix without a layer index that has an alpha.
    parsed = {i: parse_layer_name(m.name) for i, m in enumerate(items)}
    layered = {i: p for i, p in parsed.items() if p is not None}
    stacks = list(dict.fromkeys(p.stack for p in layered.values()))
    row_keys = sorted(
        {(p.stack, p.layer) for p in layered.values()},
        key=lambda r: (stacks.index(r[0]), r[1]),
    )
    rows = [
        str(layer) if len(stacks) == 1 else _text(f"{stack}.{layer}") for stack, layer in row_keys
    ]
    modules = module_order(dict.fromkeys(layered[i].module for i in alphas if i in layered))
    others = [i for i in alphas if i not in layered]
    summary = {g.name: g for g in summarize(items).modules}
    groups = [*modules, *(items[i].name for i in others)]
    colors = curve_colors(len(groups))
    fig, ax = _new_axes(ax, (9.0, 4.8))
    entries = []

    values = np.array(list(alphas.values()))
    low = min(1.0, float(values.min()) - 0.3)
    # Up to _ALPHA_AXIS_MAX: a flat spectrum can fit an alpha of 1e15, which would squash
    # the bands; larger values are drawn as triangles on the top edge.
    high = max(UNDER_TRAINED_ALPHA + 1.0, min(float(values.max()) + 0.5, _ALPHA_AXIS_MAX))
    above = int(np.count_nonzero(values > high))
    bands = (
        ("over-trained", low, OVER_TRAINED_ALPHA, "tab:red", f"α < {OVER_TRAINED_ALPHA:g}"),
        ("under-trained", UNDER_TRAINED_ALPHA, high, "tab:blue", f"α > {UNDER_TRAINED_ALPHA:g}"),
    )
    for gid, y0, y1, color, rule in bands:
        ax.axhspan(y0, y1, color=color, alpha=0.12, linewidth=0, zorder=0, gid=gid)
        where = ax.get_yaxis_transform()  # x in axes units, y in data units
        ax.text(
            0.005,
            (y0 + y1) / 2,
            f"{gid} ({rule})",
            transform=where,
            ha="left",
            va="center",
            fontsize="x-small",
            color=color,
            zorder=1,
        )

    width = 0.7 / max(len(modules), 1)  # the module types of one layer, side by side
    start = len(rows) + 1 if rows else 0  # the matrices without a layer index, after a gap
    for k, (group, color) in enumerate(zip(groups, colors, strict=True)):
        if k < len(modules):
            members = [i for i in alphas if i in layered and layered[i].module == group]
            offset = (k - (len(modules) - 1) / 2) * width
            xs = [row_keys.index((layered[i].stack, layered[i].layer)) + offset for i in members]
        else:
            members = [others[k - len(modules)]]
            xs = [float(start + k - len(modules))]
        ys = [alphas[i] for i in members]
        stats = summary[group_name(items[members[0]].name)]
        if k < len(modules):
            mean, median = stats.alpha_mean, stats.alpha_median
            if mean is None or median is None:  # not reached: the group has an alpha
                continue
            span = (-0.5, len(rows) - 0.5)
            ax.hlines(mean, *span, colors=[color], linestyles="-", linewidth=1.0, zorder=2)
            ax.hlines(median, *span, colors=[color], linestyles=":", linewidth=1.2, zorder=2)
            label = f"{_text(group)}: mean {mean:.3g}, median {median:.3g} (n = {len(ys)})"
        else:
            label = f"{_short_name(group)}: {ys[0]:.3g}"
        x, y = np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)
        inside = y <= high
        if inside.any():
            entries.append(ax.scatter(x[inside], y[inside], color=[color], s=22, zorder=3))
        if not inside.all():  # off the scale: triangles on the top edge, not clipped
            top = np.full(np.count_nonzero(~inside), high)
            points = ax.scatter(x[~inside], top, color=[color], marker="^", s=40, zorder=4)
            points.set_clip_on(False)
            if not inside.any():
                entries.append(points)
        entries[-1].set_label(label)

    ticks = list(range(len(rows))) + [start + k for k in range(len(others))]
    labels = rows + [_short_name(items[i].name) for i in others]
    ax.set_xticks(ticks, labels, fontsize="small")
    for tick in ax.get_xticklabels()[len(rows) :]:
        tick.set_rotation(35)
        tick.set_horizontalalignment("right")
    if rows and others:
        ax.axvline(len(rows), color="0.6", linewidth=0.8, linestyle="--", zorder=1)
    ax.set_xlim(-0.7, (start + len(others) - 0.3) if others else len(rows) - 0.3)
    ax.set_ylim(low, high)
    if rows:
        ax.set_xlabel("layer" + (" (right: matrices without a layer index)" if others else ""))
    else:
        ax.set_xlabel("matrix")
    update = all(isinstance(m, UpdateResult) for m in items)
    ax.set_ylabel("power-law α of ΔW" if update else "power-law α")
    missing = len(items) - len(alphas)
    note = f"; {missing} without an α fit not shown" if missing else ""
    note += f"; {above} above {high:g} drawn as ▲ at the top" if above else ""
    lines = "\nper module type: mean (solid line), median (dotted)" if modules else ""
    ax.set_title(
        f"Power-law α of {len(alphas)} {'updates' if update else 'matrices'}{note}{lines}",
        fontsize="medium",
    )
    show = len(groups) <= _LEGEND_MAX if legend is None else legend
    if show:
        _legend(ax, entries, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def _rounding_level(values: Array, shape: tuple[int, ...]) -> float:
    r"""Singular values at or below this are rounding noise of a float64 SVD:
    :math:`16\,\varepsilon_{64}\sqrt{\max(m, n)}\,\sigma_1` (``values`` descending, of
    an ``m x n`` matrix; :func:`lowrank._numerics.tolerance`, the tolerance of backward-stable
    results that :func:`lowrank.testing.tolerances.svd_tolerance` gives too)."""
    top = float(np.nanmax(values)) if np.size(values) else 0.0
    return tolerance(np.float64, size=max(shape, default=1), scale=max(top, 0.0))


def _text(name: str) -> str:
    """A tensor name (or part of one) as matplotlib text, drawn as it is spelled.

    "$" is escaped: an unescaped pair would be parsed as mathtext (``price$x$y`` drawn as
    "pricexy" with an italic x, ``$\\frac$`` a ParseSyntaxException at save time); line
    breaks become spaces, so that one name stays one line of a legend or a tick label.
    """
    return " ".join(name.replace("$", r"\$").splitlines()) if name else name


def _short_name(name: str) -> str:
    """A tensor name without its final ``.weight``, as text for a tick label or note."""
    short = name[: -len(".weight")] if name.endswith(".weight") and name != ".weight" else name
    return _text(short)


def _mp_density(eigenvalues: Array, *, sigma: float, shape: tuple[int, int]) -> Array:
    r"""The Marchenko–Pastur density of the eigenvalues :math:`\lambda = \sigma_i^2` of an
    ``m × n`` matrix of i.i.d. entries of standard deviation ``sigma``.

    Parameters
    ----------
    eigenvalues : ndarray of float
        Where to evaluate it.
    sigma : float
        The entry scale :math:`\hat\sigma` (``MarchenkoPasturEdge.sigma``); > 0.
    shape : tuple of int
        ``(m, n)``, both positive.

    Returns
    -------
    ndarray of float
        The density, zero outside the bulk :math:`[\lambda_-, \lambda_+]`.

    Raises
    ------
    InputError
        ``sigma`` is not positive or ``shape`` has a non-positive side.

    Notes
    -----
    With :math:`N \ge M` the sides, :math:`\lambda_\pm = \hat\sigma^2(\sqrt N \pm \sqrt M)^2`
    and

    .. math:: p(\lambda) = \frac{\sqrt{(\lambda_+ - \lambda)(\lambda - \lambda_-)}}
              {2\pi\hat\sigma^2 M\lambda},

    the density of the :math:`M` eigenvalues of :math:`W^\top W` (or :math:`WW^\top`), which
    integrates to 1 (Marchenko & Pastur 1967).
    """
    sigma = check_positive_float(sigma, name="sigma")
    if (
        not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise InputError(f"shape must be a tuple of two positive ints; got {shape!r}")
    big, small = max(shape), min(shape)
    lo = sigma**2 * (math.sqrt(big) - math.sqrt(small)) ** 2
    hi = sigma**2 * (math.sqrt(big) + math.sqrt(small)) ** 2
    lam = np.asarray(eigenvalues, dtype=np.float64)
    inside = (lam > lo) & (lam < hi) & (lam > 0)
    out = np.zeros_like(lam)
    x = lam[inside]
    out[inside] = np.sqrt((hi - x) * (x - lo)) / (2 * math.pi * sigma**2 * small * x)
    return out


# plot_eigenvalues draws lambda = sigma^2 unscaled while sigma_1 lies in [2^-256, 2^256]
# (lambda_1 within 2^-512..2^512, far inside float64's normal range, and room for the
# bin widths, densities ~ 1/lambda and the power law's x_min below it); beyond, in a unit.
_EIG_UNIT_LOW, _EIG_UNIT_HIGH = 2.0**-256, 2.0**256
_TINY = float(np.finfo(np.float64).tiny)
_MAX_BINS = 10_000


def _scaled_xmin(xmin: float, n_tail: int, values: Array, unit: float) -> float | None:
    """The power law's ``xmin`` in the unit ``unit**2``: ``xmin / unit**2`` when the
    stored one is a normal float, else (it over- or underflowed in the fit's float64) the
    ``n_tail``-th largest eigenvalue, which it is (``values``: the positive singular
    values, descending); ``None`` where that underflows too."""
    if math.isfinite(xmin) and xmin >= _TINY:
        scaled = xmin / unit / unit
    elif 1 <= n_tail <= values.size:
        scaled = (float(values[n_tail - 1]) / unit) ** 2
    else:
        return None
    return scaled if _TINY <= scaled < math.inf else None


def _unit_label(unit: float) -> str:
    """The x label's unit for eigenvalues divided by ``unit**2`` ("" for 1)."""
    if unit == 1.0:
        return ""
    power = 2 * (math.frexp(unit)[1] - 1)  # unit**2 = 2**power
    decimal = power * math.log10(2.0)
    exponent = math.floor(decimal)
    return f" in units of 2^{power} ≈ {10 ** (decimal - exponent):.3f}e{exponent:+d}"


def plot_eigenvalues(
    data: ResultsLike | MatrixResult,
    *,
    name: str | None = None,
    ax: Axes | None = None,
    bins: int = 60,
) -> Figure:
    r"""The eigenvalue distribution of one matrix, with its Marchenko–Pastur bulk and power-law fit.

    A histogram of the eigenvalues :math:`\lambda_i = \sigma_i^2` (log-spaced bins, drawn as a
    density on log–log axes), with what the analysis computed for it
    (:attr:`lowrank.analysis.MatrixResult.random_matrix`): the Marchenko–Pastur density for
    the bulk's entry scale (the ``fit`` edge, which the spikes hardly move) and both upper
    edges :math:`\text{edge}^2` (closed form dashed, fit dotted), and the power law
    :math:`p(\lambda)\propto\lambda^{-\alpha}` from ``xmin`` on (its share of the eigenvalues,
    ``n_tail / min(m, n)``), with ``xmin`` marked.

    Parameters
    ----------
    data : Report, iterable of MatrixResult or MatrixResult
        Where the matrix is.
    name : str, optional
        Which matrix (required unless ``data`` holds one).
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    bins : int, default 60
        Number of log-spaced bins between the smallest and largest positive eigenvalue
        (at most 10000).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        Nothing to plot, an unknown name, no name for several matrices, a matrix without
        positive singular values or without a random-matrix view (a report from before it),
        or ``bins`` outside 1..10000.

    Notes
    -----
    Zero eigenvalues cannot be drawn on a log axis and are left out of the histogram, whose
    bars sum to the share of the eigenvalues drawn; the histogram's legend entry counts the
    ones left out. Any finite spectrum is drawn: where :math:`\sigma_1` lies outside
    :math:`[2^{-256}, 2^{256}]`, so that :math:`\sigma_1^2` would come near float64's range
    (:math:`10^{\pm 308}`; :math:`\sigma_1 = 10^{170}` overflows), eigenvalues are drawn in
    the unit :math:`c^2`, with :math:`c` the power of two near :math:`\sigma_1`
    (:math:`\lambda_i/c^2 = (\sigma_i/c)^2 \in (0, 4)`, the division exact), which the
    x label states; the Marchenko–Pastur curve, edges and power law are drawn in the same
    unit. An eigenvalue that still underflows (:math:`(\sigma_i/c)^2` below float64's
    smallest normal number, e.g. :math:`\sigma = 10^{-200}` beside :math:`\sigma_1 = 1`)
    is left out like a zero; so is a power-law line whose :math:`x_\min` does (its legend
    entry says so). The power-law line is
    :math:`\frac{n_\text{tail}}{M}\frac{\alpha-1}{x_\min}(\lambda/x_\min)^{-\alpha}`, the
    fitted density scaled to the tail's share, so that it lies on the histogram's tail.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_matrix
    >>> from lowrank.plot import plot_eigenvalues
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.standard_normal((200, 100)) / 10
    >>> spikes = 3 * rng.standard_normal((200, 3)) @ rng.standard_normal((3, 100)) / 10
    >>> result = analyze_matrix(noise + spikes, name="W")
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_eigenvalues(result, ax=ax) is fig
    True
    """
    if isinstance(data, MatrixResult):
        data = [data]
    items = _results(data)
    # A bar per bin: a million would take minutes to draw and be unreadable.
    bins = check_int(bins, name="bins", minimum=1, maximum=_MAX_BINS)
    if name is None:
        if len(items) > 1:
            raise InputError(
                f"name must name one of the {len(items)} matrices (e.g. {items[0].name!r}); "
                "got None"
            )
        m = items[0]
    else:
        m = _results(items, [check_str(name, name="name")])[0]
    view = m.random_matrix
    if view is None:
        raise InputError(
            f"matrix {m.name!r} has no random-matrix view (a report written before it); "
            "analyse it again"
        )
    s = np.asarray(m.singular_values, dtype=np.float64)
    positive = np.sort(s[s > 0])[::-1]
    if positive.size == 0:
        raise InputError(f"matrix {m.name!r} has no positive singular value to plot")
    top = float(positive[0])
    unit = 1.0 if _EIG_UNIT_LOW <= top <= _EIG_UNIT_HIGH else power_of_two_scale(top)
    scaled = positive / unit  # exact: unit is a power of two
    lam = scaled * scaled
    lam = lam[lam >= _TINY]  # drop what underflows (to 0 or a subnormal)
    left_out = [
        f"{k} {what}"
        for k, what in (
            (s.size - positive.size, "zero"),
            (positive.size - lam.size, "underflowing"),
        )
        if k
    ]
    note = f"; {' and '.join(left_out)} not drawn" if left_out else ""
    count = min(m.shape)
    fig, ax = _new_axes(ax, (9.0, 4.5))
    lo, hi = float(lam.min()), float(lam.max())
    if hi <= lo:
        lo, hi = lo / 1.5, hi * 1.5
    edges = np.geomspace(lo, hi, bins + 1)
    counts, _ = np.histogram(lam, bins=edges)
    widths = np.diff(edges)
    # The heights are drawn as computed, bin by bin. ax.hist(weights=...) would sum them
    # with a cumsum over unequal bins and take differences, which cancels every bar below
    # ~1e-16 of the ones before it: with log-spaced bins over 16+ decades (an exactly
    # low-rank matrix, whose rounding-noise eigenvalues sit near 1e-32) it drew the real
    # eigenvalues' bars at height 0.
    bars = ax.bar(
        edges[:-1],
        counts / (count * widths),
        width=widths,
        align="edge",
        color="0.75",
        edgecolor="0.55",
        linewidth=0.5,
    )
    # On the first bar, not the container: the histogram stays the legend's first entry.
    bars.patches[0].set_label(f"eigenvalues σ_i² ({lam.size}{note})")
    fit, closed = view.marchenko_pastur_fit, view.marchenko_pastur
    fit_sigma, fit_edge2 = fit.sigma / unit, (fit.edge / unit) ** 2
    if fit_sigma > 0 and _TINY <= fit_edge2 < math.inf:
        bulk_lo = fit_sigma**2 * (math.sqrt(max(m.shape)) - math.sqrt(count)) ** 2
        grid = np.geomspace(max(bulk_lo, lo / 10, fit_edge2 * 1e-6), fit_edge2, 400)
        density = _mp_density(grid, sigma=fit_sigma, shape=m.shape)
        density[density <= 0] = np.nan
        ax.plot(grid, density, color="tab:blue", linewidth=1.5, label="Marchenko–Pastur bulk")
        ax.axvline(
            fit_edge2,
            color="tab:blue",
            linestyle=":",
            label=f"MP edge, fitted σ̂ ({fit.num_spikes} spikes above)",
        )
    closed_edge2 = (closed.edge / unit) ** 2
    if closed.sigma > 0 and _TINY <= closed_edge2 < math.inf:
        ax.axvline(
            closed_edge2,
            color="tab:purple",
            linestyle="--",
            label=f"MP edge, σ̂² = ‖W‖_F²/(mn) ({closed.num_spikes} spikes above)",
        )
    law = view.power_law
    if law is not None:
        label = f"power law α = {law.alpha:.2f} (D = {law.ks_distance:.3f})"
        xmin = _scaled_xmin(law.xmin, law.n_tail, positive, unit)
        if xmin is None:
            # Its x_min underflows, as the eigenvalues left out: a legend entry, no line.
            ax.plot([], [], color="tab:red", label=f"{label}; x_min underflows, not drawn")
        else:
            x = np.geomspace(xmin, max(xmin, hi), 100)
            share = law.n_tail / count
            y = share * (law.alpha - 1) / xmin * (x / xmin) ** (-law.alpha)
            ax.plot(x, y, color="tab:red", linewidth=1.5, label=label)
            ax.axvline(xmin, color="tab:red", linestyle="-.", linewidth=0.8, label="x_min")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue λ = σ²" + _unit_label(unit))
    ax.set_ylabel("density")
    ax.set_title(f"Eigenvalues of {_text(m.name)} ({m.shape[0]}×{m.shape[1]})", fontsize="medium")
    # Beside the axes: inside, it would hide the tail and the edges it explains.
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> None:
    """Save ``fig`` atomically as PNG, SVG or PDF, chosen by the suffix of ``path``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or os.PathLike
        The file to write, ending in ``.png``, ``.svg`` or ``.pdf``; replaced atomically if
        it exists.
    dpi : int, default 150
        Resolution of a PNG.

    Raises
    ------
    InputError
        ``fig`` is not a Figure, the suffix is not ``.png``, ``.svg`` or ``.pdf``, or ``dpi``
        is not positive or would make a PNG of more than 2e8 pixels.
    MissingFileError
        The directory of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from matplotlib.figure import Figure
    >>> fig = Figure()
    >>> _ = fig.add_subplot().plot([0, 1], [1, 0])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_figure(fig, Path(d) / "line.svg")
    ...     (Path(d) / "line.svg").read_text()[:5]
    '<?xml'
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise InputError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    fmt = check_path(path, name="path").suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise InputError(f"path must end in .png, .svg or .pdf (the figure's format); got '{path}'")
    resolution = check_int(dpi, name="dpi", minimum=1)
    width, height = fig.get_size_inches()
    if fmt == "png" and width * height * resolution**2 > _MAX_PIXELS:
        # Agg allocates the whole canvas: beyond this, a MemoryError from C++.
        raise InputError(
            f"dpi must keep the PNG under {_MAX_PIXELS:.0e} pixels; got dpi={resolution} for "
            f"a {width:g} x {height:g} in figure"
        )
    with atomic_path(path) as temp:
        fig.savefig(temp, format=fmt, dpi=resolution)


def plot_report(
    data: ResultsLike,
    *,
    kind: PlotKind,
    path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Figure:
    """Draw one of the :data:`PLOT_KINDS` and, with ``path``, save it (see :func:`save_figure`).

    Parameters
    ----------
    data : Report or iterable of MatrixResult
        What to draw.
    kind : {"curves", "spectra", "heatmap", "alpha", "update-spectra"}
        The figure: :func:`plot_curves`, :func:`plot_spectra`, :func:`plot_heatmap`,
        :func:`plot_alpha_summary` or (of an update report) :func:`plot_update_spectra`.
    path : str or os.PathLike, optional
        Also save the figure there (:func:`save_figure`).
    **options
        Keyword arguments of the drawing function.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn.

    Raises
    ------
    InputError
        ``kind`` is unknown, or as the drawing function and :func:`save_figure`.
    MissingFileError
        The directory of ``path`` does not exist.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from lowrank.analysis import analyze_matrix
    >>> from lowrank.plot import plot_report
    >>> rng = np.random.default_rng(1)
    >>> result = analyze_matrix(rng.standard_normal((40, 30)), name="noise")
    >>> fig, ax = plt.subplots(layout="constrained")
    >>> plot_report([result], kind="spectra", ax=ax, normalize=False) is fig
    True
    """
    check_choice(kind, name="kind", choices=PLOT_KINDS)
    if path is not None:
        # The format before the drawing, which can take long.
        fmt = check_path(path, name="path").suffix.lower().lstrip(".")
        if fmt not in FIGURE_FORMATS:
            raise InputError(
                f"path must end in .png, .svg or .pdf (the figure's format); got '{path}'"
            )
    if kind == "curves":
        fig = plot_curves(data, **options)
    elif kind == "spectra":
        fig = plot_spectra(data, **options)
    elif kind == "alpha":
        fig = plot_alpha_summary(data, **options)
    elif kind == "update-spectra":
        fig = plot_update_spectra(data, **options)
    else:
        fig = plot_heatmap(data, **options)
    if path is not None:
        save_figure(fig, path)
    return fig
