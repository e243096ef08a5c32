"""Reports as text: CSV, Markdown and a fixed-width table for terminals."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import TYPE_CHECKING

from lowrank.analysis._layers import parse_layer_name
from lowrank.analysis._results import MatrixResult, UpdateResult
from lowrank.analysis._summary import RandomMatrixGroup, summarize

if TYPE_CHECKING:
    from lowrank.analysis._report import Report

__all__ = ["table", "to_csv", "to_markdown", "to_text"]


def _energy_label(e: float) -> str:
    return f"{100 * e:g}%"


LAYER_COLUMNS = ["stack", "layer", "module"]
"""The columns parsed from a tensor name by :func:`~lowrank.analysis.parse_layer_name`:
``encoder.layer.3.attention.self.query.weight`` is stack ``encoder.layer``, layer 3, module
``attention.self.query``; all three are empty for a name without a layer index (embeddings,
pooler, heads)."""


def _layer_cells(m: MatrixResult) -> list[object]:
    parsed = parse_layer_name(m.name)
    return [None, None, None] if parsed is None else [parsed.stack, parsed.layer, parsed.module]


def _columns(report: Report) -> list[str]:
    return (
        [
            "name",
            *LAYER_COLUMNS,
            "rows",
            "cols",
            "dtype",
            "norm_fro",
            "spectral_norm",
            "stable_rank",
            "entropy_effective_rank",
            "numerical_rank",
            "numerical_rank_storage",
        ]
        + [f"rank_energy_{e!r}" for e in report.run.energies]
        + [f"rel_error_rank_{r}" for r in report.run.ranks]
        + RMT_COLUMNS
        + _update_columns(report)
        + ["seconds", "file"]
        + (["base_file"] if _is_update(report) else [])
    )


RMT_COLUMNS = [
    "mp_edge",
    "mp_sigma",
    "mp_spikes",
    "mp_spike_share",
    "mp_softrank",
    "mp_fit_edge",
    "mp_fit_sigma",
    "mp_fit_spikes",
    "mp_fit_spike_share",
    "mp_fit_softrank",
    "alpha",
    "alpha_stderr",
    "alpha_xmin",
    "alpha_ks_distance",
    "alpha_n_tail",
    "alpha_weighted",
    "under_trained",
    "over_trained",
]
"""The CSV columns of the random-matrix view: the closed-form and fitted Marchenko–Pastur
edges (edge, entry scale, spikes, their energy share, MP soft rank), then the power-law fit."""


def _rmt_cells(m: MatrixResult) -> list[object]:
    """The :data:`RMT_COLUMNS` of ``m``: ``None`` (an empty cell) for what it does not have."""
    view = m.random_matrix
    if view is None:
        return [None] * len(RMT_COLUMNS)
    cells: list[object] = []
    for mp in (view.marchenko_pastur, view.marchenko_pastur_fit):
        cells += [
            float(mp.edge),
            float(mp.sigma),
            mp.num_spikes,
            float(mp.spike_share),
            float(mp.mp_softrank),
        ]
    fit = view.power_law
    if fit is None:
        return cells + [None] * (len(RMT_COLUMNS) - len(cells))
    return [
        *cells,
        float(fit.alpha),
        float(fit.alpha_stderr),
        float(fit.xmin),
        float(fit.ks_distance),
        fit.n_tail,
        float(fit.alpha_weighted),
        fit.under_trained,
        fit.over_trained,
    ]


def _alpha_cell(m: MatrixResult) -> str:
    view = m.random_matrix
    return "–" if view is None or view.power_law is None else f"{view.power_law.alpha:.2f}"


def _spikes_cell(m: MatrixResult) -> str:
    view = m.random_matrix
    return "–" if view is None else str(view.marchenko_pastur.num_spikes)


ALPHA_LEGEND = (
    "α: power-law exponent of the tail of the eigenvalues σ² (WeightWatcher's alpha; "
    "> 6 under-trained, < 2 over-trained, rules of thumb; – no tail to fit)"
)
SPIKES_LEGEND = (
    "spikes: singular values above the Marchenko–Pastur edge σ̂(√m + √n), σ̂² = ‖A‖_F²/(mn)"
)


def _is_update(report: Report) -> bool:
    return report.run.base is not None


def _update_columns(report: Report) -> list[str]:
    if not _is_update(report):
        return []
    ranks = report.run.ranks
    return (
        ["base_dtype", "base_norm_fro", "relative_size"]
        + [f"overlap_left_rank_{r}" for r in ranks]
        + [f"overlap_right_rank_{r}" for r in ranks]
        + [f"amplification_rank_{r}" for r in ranks]
    )


def _defined(value: float) -> float | None:
    """``value``, or ``None`` (an empty cell) for an undefined one (``nan``: an overlap
    with a base that has no top-r singular subspace, or an overlap or amplification
    factor of an update that has none)."""
    return None if math.isnan(value) else float(value)


def _update_cells(m: MatrixResult) -> list[object]:
    """The update columns of ``m`` (CSV), empty for a plain result."""
    if not isinstance(m, UpdateResult):
        return []
    return (
        [m.base_dtype, float(m.base_norm_fro), float(m.relative_size)]
        + [_defined(v) for _, v in m.overlap_left]
        + [_defined(v) for _, v in m.overlap_right]
        + [_defined(v) for _, v in m.amplification]
    )


def table(report: Report) -> tuple[list[str], list[list[object]]]:
    """The CSV columns and one row of typed cells per matrix (``None`` for an empty cell)."""
    rows: list[list[object]] = []
    for m in report.matrices:
        rows.append(
            [
                m.name,
                *_layer_cells(m),
                m.shape[0],
                m.shape[1],
                m.dtype,
                float(m.norm_fro),
                float(m.spectral_norm),
                float(m.stable_rank),
                float(m.entropy_effective_rank),
                m.numerical_rank,
                m.numerical_rank_storage,
            ]
            + [r for _, r in m.energy_ranks]
            + [float(err) for _, err in m.rank_errors]
            + _rmt_cells(m)
            + _update_cells(m)
            + [float(m.seconds), m.file]
            + ([m.base_file] if isinstance(m, UpdateResult) else [])
        )
    return _columns(report), rows


def to_csv(report: Report) -> str:
    """One row per analysed matrix; floats written as ``str``, which is ``repr`` (exact)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns, rows = table(report)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _one_line(text: object) -> str:
    """``text`` on one line: every line break (``\\r``, ``\\n``, ``\\u2028``...) a space, as
    a lone ``\\r`` ends a Markdown table row as surely as ``\\n`` does."""
    return " ".join(str(text).splitlines())


def _md_cell(text: object) -> str:
    return _one_line(text).replace("|", "\\|")


def _md_code(text: object) -> str:
    """``text`` as a Markdown code span, shown verbatim: glob patterns like ``*attention*``
    would otherwise render as emphasis, and a backtick in a name would end a plain span.
    The fence is one backtick longer than the longest run inside (CommonMark)."""
    body = _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _md_patterns(patterns: tuple[str, ...], empty: str) -> str:
    return ", ".join(_md_code(p) for p in patterns) if patterns else empty


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _summary_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    header = (
        [
            "name",
            "shape",
            "dtype",
            "‖A‖_F",
            "‖A‖_2",
            "stable rank",
            "eff. rank",
            "num. rank",
            "num. rank (storage)",
        ]
        + [f"r@{_energy_label(e)}" for e in report.run.energies]
        + [f"err@{r}" for r in report.run.ranks]
        + (
            ["‖ΔW‖/‖W‖"]
            + [f"ovlU@{r}" for r in report.run.ranks]
            + [f"ovlV@{r}" for r in report.run.ranks]
            + [f"amp@{r}" for r in report.run.ranks]
            if _is_update(report)
            else []
        )
        + ["α", "spikes"]
    )
    rows = [
        [
            m.name,
            f"{m.shape[0]}x{m.shape[1]}",
            m.dtype,
            f"{m.norm_fro:.4g}",
            f"{m.spectral_norm:.4g}",
            f"{m.stable_rank:.2f}",
            f"{m.entropy_effective_rank:.1f}",
            str(m.numerical_rank),
            str(m.numerical_rank_storage),
        ]
        + [str(r) for _, r in m.energy_ranks]
        + [f"{err:.4f}" for _, err in m.rank_errors]
        + (
            [f"{m.relative_size:.4g}"]
            + [_optional(_defined(v), ".3f") for _, v in m.overlap_left]
            + [_optional(_defined(v), ".3f") for _, v in m.overlap_right]
            + [_optional(_defined(v), ".3g") for _, v in m.amplification]
            if isinstance(m, UpdateResult)
            else []
        )
        + [_alpha_cell(m), _spikes_cell(m)]
        for m in report.matrices
    ]
    return header, rows


def _status_line(report: Report) -> str:
    done = len(report.matrices) + sum(s.code == "error" for s in report.skipped)
    total = done + len(report.pending)
    if report.partial:
        return f"PARTIAL: {done} of {total} matrices done, {len(report.pending)} pending"
    return f"complete: {total} matrices"


def to_markdown(report: Report) -> str:
    """A Markdown document: run information, the results table, the skipped tensors."""
    run = report.run
    title = (
        f"# Low-rank analysis of {_md_code(run.source)}"
        if run.base is None
        else f"# Low-rank analysis of the update ΔW = {_md_code(run.source)} − {_md_code(run.base)}"
    )
    lines = [
        title,
        "",
        f"- status: {_status_line(report)}",
        f"- selection: include {_md_patterns(run.include, 'all')}, exclude "
        f"{_md_patterns(run.exclude, 'none')}"
        f"{' (regex)' if run.regex else ''}, nd_policy {run.nd_policy}",
        f"- ranks {list(run.ranks)}, energies {list(run.energies)}",
        f"- lowrank {run.lowrank_version}, started {run.created}, "
        f"{run.elapsed_seconds:.2f} s on {run.executor}",
        "",
        "`r@e`: smallest rank capturing the fraction e of ‖A‖_F²; `err@r`: relative Frobenius "
        "error of the best rank-r approximation; numerical rank by NumPy's rule, and above the "
        "rounding noise of the stored dtype. " + ALPHA_LEGEND + "; " + SPIKES_LEGEND + ".",
        "",
    ]
    if run.base is not None:
        lines += [
            "Every column describes ΔW = tuned − base (formed in float64), whose `err@r` is "
            "exactly the error `lowrank extract` reaches at rank r; `‖ΔW‖/‖W‖`: size relative "
            "to the base weight W; `ovlU@r`, `ovlV@r`: share of ΔW's top-r left/right singular "
            "subspace lying in W's (LoRA paper §7.2 similarity, 1 = contained, 0 = orthogonal;"
            " – undefined: W has no top-r subspace, σ_r(W) = 0 up to rounding);"
            " `amp@r`: amplification factor ‖ΔW‖_F / ‖U_rᵀ W V_r‖_F (LoRA paper §7.3);"
            " both – where ΔW has no top-r subspace (r above its rank, σ_r(ΔW) = 0 up to"
            " rounding).",
            "",
        ]
    header, rows = _summary_rows(report)
    lines += _md_table(header, rows)
    if report.matrices:
        lines += _random_matrix_section(report)
    if report.skipped:
        lines += ["", "## Skipped tensors", ""]
        lines += _md_table(
            ["name", "shape", "dtype", "reason"],
            [
                [s.name, "x".join(map(str, s.shape)) or "scalar", s.dtype, s.reason]
                for s in report.skipped
            ],
        )
    if report.pending:
        lines += ["", "## Pending (run interrupted)", ""]
        lines += [f"- {_md_code(name)}" for name in report.pending]
    return "\n".join(lines) + "\n"


def _optional(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _group_row(g: RandomMatrixGroup) -> list[str]:
    return [
        g.name,
        str(g.count),
        str(g.fitted),
        _optional(g.alpha_mean, ".2f"),
        _optional(g.alpha_median, ".2f"),
        _optional(g.alpha_weighted_mean, ".2f"),
        str(g.spikes),
        _optional(g.under_trained_share, ".0%"),
        _optional(g.over_trained_share, ".0%"),
    ]


def _random_matrix_section(report: Report) -> list[str]:
    """Markdown: :meth:`Report.random_matrix_summary` as a table, overall last."""
    overview = summarize(report.matrices)
    of = " of ΔW" if _is_update(report) else ""
    lines = [
        "",
        f"## Random-matrix view{of} by module type",
        "",
        "Matrices grouped by module type (a matrix without a layer index on its own); "
        "α statistics and the shares flagged under-trained (α > 6) or over-trained (α < 2) "
        "over the matrices with a power-law fit; spikes: the total above the "
        "Marchenko–Pastur edge.",
        "",
    ]
    lines += _md_table(
        [
            "module",
            "matrices",
            "fitted",
            "mean α",
            "median α",
            "mean α weighted",
            "spikes",
            "under-trained",
            "over-trained",
        ],
        [_group_row(g) for g in (*overview.modules, overview.overall)],
    )
    return lines


def to_text(report: Report, *, max_name: int = 48) -> str:
    """A fixed-width table for a terminal, with a line per skip reason at the end."""
    header, rows = _summary_rows(report)
    short = ["name", "shape", "dtype", "‖A‖_F", "‖A‖_2", "stable", "erank", "rank", "rank*"]
    short_header = [*short, *header[len(short) :]]
    names = [_one_line(r[0]) for r in rows]  # a line break in a name would break the table
    cut = [
        [name if len(name) <= max_name else "…" + name[-(max_name - 1) :], *r[1:]]
        for name, r in zip(names, rows, strict=True)
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cut]) for i, h in enumerate(short_header)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [line(short_header), line(["-" * w for w in widths])]
    out += [line(r) for r in cut]
    out.append("")
    out.append(
        "rank: NumPy rule; rank*: above the rounding noise of the stored dtype; "
        "r@e: rank for energy e; err@r: relative Frobenius error at rank r"
    )
    out += [ALPHA_LEGEND, SPIKES_LEGEND]
    if _is_update(report):
        out.append(
            "every column is of ΔW = tuned - base; ‖ΔW‖/‖W‖: size relative to the base W; "
            "ovlU@r, ovlV@r: share of ΔW's top-r left/right singular subspace in W's "
            "(– undefined: σ_r(W) = 0 up to rounding); "
            "amp@r: amplification ‖ΔW‖_F / ‖U_rᵀ W V_r‖_F (LoRA paper §7); both – where "
            "σ_r(ΔW) = 0 up to rounding (r above the rank of ΔW)"
        )
    if report.skipped:
        out.append(f"skipped {len(report.skipped)} tensors:")
        out += _skip_lines(report)
    out.append(_status_line(report) + f" in {report.run.elapsed_seconds:.2f} s")
    return "\n".join(out) + "\n"


def _skip_lines(report: Report, *, listed: int = 3) -> list[str]:
    """Skipped tensors grouped by code; names and reasons listed for rare codes."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for s in report.skipped:
        groups.setdefault(s.code, []).append((s.name, s.reason))
    lines: list[str] = []
    for code, items in groups.items():
        if code == "ndim" or len(items) > listed:
            names = ", ".join(_one_line(name) for name, _ in items[:listed])
            more = f", … ({len(items) - listed} more)" if len(items) > listed else ""
            lines.append(f"  {code} ({len(items)}): {names}{more}; e.g. {items[0][1]}")
        else:
            lines += [f"  {code}: {_one_line(name)}: {_one_line(reason)}" for name, reason in items]
    return lines
