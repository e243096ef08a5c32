"""The summary of a run against issue 15's goals ("Speed"), at the top of ``results.md``.

1. The default ``truncated_svd(A, r, rng=0)`` at matched accuracy (top-r values to 1e-5
   relative, excess ≤ 1e-6): ≤ 0.5× the fastest accurate peer on every case of the ``svd``
   suite, never a convergence failure.
2. ≥ 1.7× faster with 2 BLAS threads than with 1 on the 4096² cases, the peers beside.
3. All singular values of the 4096² float32 matrices, curve error ≤ 1e-6‖A‖_F: ≤ 0.4×
   ``scipy.linalg.svdvals``, reported against the float64 Gram route's floor.
4. ``excess_tol=FAST_TOL``: excess ≤ 1e-3 at ≤ 10× the GEMM floor on every flat case.

Everything here is read from the suites' JSON summaries (``svd`` and ``curve``), so a merged
run is summarised the same way.
"""

from __future__ import annotations

from typing import Any

from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table

__all__ = ["issue15_markdown"]


def _t(seconds: float | None) -> str:
    """A time with its unit (``fmt_time`` leaves seconds bare)."""
    text = fmt_time(seconds)
    return text if not text or text.endswith("ms") else f"{text} s"


def _mark(met: bool) -> str:
    return "✓" if met else "✗"


def _summary(data: dict[str, Any], suite: str) -> dict[str, Any] | None:
    outcome = data.get("suites", {}).get(suite)
    if not outcome or not outcome.get("available"):
        return None
    summary: dict[str, Any] | None = outcome.get("summary")
    return summary


def _goal1(svd: dict[str, Any]) -> tuple[list[list[str]], str]:
    from benchmarks.suites.svd import RATIO_TARGET

    rows, met, failures = [], 0, []
    targets = svd.get("targets", [])
    for s in targets:
        case = f"{s['matrix']}, r = {s['rank']}"
        if s["lowrank_converged"] is False:
            failures.append(case)
        if s["lowrank_seconds"] is None:
            measured = f"lowrank {s['lowrank_status']}"
        elif s["best_peer"] is None:
            measured = f"lowrank {_t(s['lowrank_seconds'])}; no peer reached the accuracy"
        else:
            measured = (
                f"{fmt_ratio(s['ratio_to_best_peer'])}× {s['best_peer']} "
                f"({_t(s['lowrank_seconds'])} vs {_t(s['best_peer_seconds'])})"
            )
        if s["lowrank_seconds"] is not None and not s["lowrank_accurate"]:
            measured += (
                f"; lowrank not accurate (top-r {fmt_err(s['lowrank_top_r_rel_err'])}, "
                f"excess {fmt_err(s['lowrank_excess'])})"
            )
        if s["lowrank_converged"] is False:
            measured += "; **convergence failure**"
        met += bool(s["met"])
        rows.append(["1", case, measured, f"≤ {RATIO_TARGET}×, converged", _mark(s["met"])])
    tally = (
        f"Goal 1: met on {met} of {len(targets)} cases; convergence failures: "
        + (", ".join(failures) if failures else "none")
        + "."
    )
    return rows, tally


def _goal2(svd: dict[str, Any]) -> tuple[list[list[str]], str, str]:
    from benchmarks.suites.svd import SCALING_TARGET

    scaling = svd.get("scaling", [])
    rows, met, total = [], 0, 0
    for s in scaling:
        if not s["goal"]:
            continue
        total += 1
        met += bool(s["met"])
        peers = [
            f"{p['method']} {fmt_ratio(p['speedup'])}×"
            for p in scaling
            if not p["goal"]
            and p["matrix"] == s["matrix"]
            and p["rank"] == s["rank"]
            and p["speedup"]
        ]
        t = s["seconds"]
        measured = (
            f"lowrank {fmt_ratio(s['speedup'])}× ({_t(t.get('1'))} → {_t(t.get('2'))})"
            if s["speedup"]
            else f"lowrank: 1 thread {s['status'].get('1')}, 2 threads {s['status'].get('2')}"
        )
        if peers:
            measured += "; beside it: " + ", ".join(peers)
        rows.append(
            [
                "2",
                f"{s['matrix']}, r = {s['rank']}",
                measured,
                f"≥ {SCALING_TARGET}×",
                _mark(s["met"]),
            ]
        )
    # The separate table: the speed-up of every method on every matrix.
    mats = list(dict.fromkeys(s["matrix"] for s in scaling))
    keys = list(dict.fromkeys((s["method"], s["rank"]) for s in scaling))
    cell = {(s["matrix"], s["method"], s["rank"]): s for s in scaling}
    table_rows = []
    for method, r in keys:
        row = [method, str(r)]
        for m in mats:
            s = cell.get((m, method, r))
            row.append(fmt_ratio(s["speedup"]) if s and s["speedup"] else "")
        table_rows.append(row)
    table = (
        md_table(["method", "r", *mats], table_rows)
        if table_rows
        else "(no thread-scaling cases in this run)"
    )
    tally = f"Goal 2: met on {met} of {total} cases."
    return rows, table, tally


def _goal3(curve: dict[str, Any]) -> tuple[list[list[str]], str]:
    from benchmarks.suites.curve import CURVE_TOL, RATIO_TARGET

    rows, met, total = [], 0, 0
    for s in curve.get("targets", []):
        if not s["goal"]:
            continue
        total += 1
        met += bool(s["met"])
        if s["seconds"] is None:
            measured = f"lowrank {s['status']}"
        else:
            measured = (
                f"{fmt_ratio(s['ratio_to_scipy_svdvals'])}× svdvals ({_t(s['seconds'])} "
                f"vs {_t(s['scipy_svdvals_seconds'])}), curve err "
                f"{fmt_err(s['curve_over_fro'])}‖A‖_F; floor (float64 syrk + two-stage "
                f"eigenvalues) {_t(s['floor_gram_seconds'])}: lowrank "
                f"{fmt_ratio(s['ratio_to_floor_gram'])}× it; syrk alone "
                f"{_t(s['floor_syrk_seconds'])}"
            )
        rows.append(
            [
                "3",
                s["matrix"],
                measured,
                f"≤ {RATIO_TARGET}×, err ≤ {CURVE_TOL:g}",
                _mark(s["met"]),
            ]
        )
    return rows, f"Goal 3: met on {met} of {total} matrices."


def _goal4(svd: dict[str, Any]) -> tuple[list[list[str]], str]:
    from benchmarks.suites.svd import FAST_EXCESS_TOL, FAST_FLOOR_TARGET

    rows, met, total = [], 0, 0
    for s in svd.get("targets", []):
        if not s.get("fast_goal"):
            continue
        total += 1
        met += bool(s["fast_met"])
        measured = (
            f"excess {fmt_err(s['fast_excess'])} at {fmt_ratio(s['fast_ratio_to_floor'])}× the "
            f"floor ({_t(s['fast_seconds'])})"
            if s["fast_seconds"]
            else str(s["fast_status"])
        )
        rows.append(
            [
                "4",
                f"{s['matrix']}, r = {s['rank']}",
                measured,
                f"≤ {FAST_EXCESS_TOL:g} at ≤ {FAST_FLOOR_TARGET:g}×",
                _mark(s["fast_met"]),
            ]
        )
    return rows, f"Goal 4: met on {met} of {total} flat cases."


def issue15_markdown(data: dict[str, Any]) -> str:
    """The "Summary against issue 15's goals" section of a run's ``results.md``."""
    svd, curve = _summary(data, "svd"), _summary(data, "curve")
    rows: list[list[str]] = []
    tallies: list[str] = []
    scaling_table = "(the `svd` suite is not in this run)"
    if svd is not None:
        r1, t1 = _goal1(svd)
        r2, scaling_table, t2 = _goal2(svd)
        r4, t4 = _goal4(svd)
    else:
        r1, r2, r4 = [["1, 2, 4", "", "the `svd` suite is not in this run", "", ""]], [], []
        t1 = t2 = t4 = ""
    if curve is not None:
        r3, t3 = _goal3(curve)
    else:
        r3, t3 = [["3", "", "the `curve` suite is not in this run", "", ""]], ""
    rows = r1 + r2 + r3 + r4
    tallies = [t for t in (t1, t2, t3, t4) if t]
    quick = " (a `--quick` run: tiny matrices, the times mean nothing)" if _quick(data) else ""
    return "\n".join(
        [
            f"## Summary against issue 15's goals{quick}\n",
            "All ratios from this run, on this machine. Goal 1: time of "
            "`truncated_svd(A, r, rng=0)` ÷ time of the fastest peer with top-r error ≤ 1e-5 "
            "and excess ≤ 1e-6; goal 2: time with 1 BLAS thread ÷ time with 2; goal 3: time of "
            "`singular_values(A)` ÷ time of `scipy.linalg.svdvals(A)`, and against the floor "
            "of the float64 Gram route, measured as the time of the float64 syrk "
            "`a64.T @ a64` plus LAPACK's two-stage `dsyev_2stage` on it (the upcast not "
            "included); goal 4: time of `truncated_svd(A, r, rng=0, excess_tol=FAST_TOL)` ÷ "
            "time of `A.T @ (A @ Omega)`.\n",
            "\n".join(f"- {t}" for t in tallies),
            "",
            md_table(["goal", "case", "measured", "target", "met"], rows),
            "",
            "**Goal 2, 2 threads ÷ 1 thread** (speed-up: time with 1 BLAS thread ÷ time with "
            "2, per method):\n",
            scaling_table,
        ]
    )


def _quick(data: dict[str, Any]) -> bool:
    return bool(data.get("meta", {}).get("quick"))
