"""Suite 2: the whole rank–error curve (every singular value) of a float32 matrix.

lowrank's :func:`~lowrank.singular_values` (``method="auto"``: the float64 Gram route for
single precision, see its docstring) against NumPy ``svd(compute_uv=False)`` and SciPy
``svdvals``. Errors against float64 LAPACK of the float64 upcast: the largest absolute
error over σ₁, the largest error of the rank–error curve ``||σ_{k+1:}||`` over ``||A||_F``,
and the relative error of the smallest singular value (where the Gram route is weakest).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.accuracy import curve_errors
from benchmarks.matrices import MatrixSpec, load_matrix, load_reference
from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext
from benchmarks.timing import measure

__all__ = ["CurveSuite"]

CURVE_TOL = 1e-6
RATIO_TARGET = 0.4
METHODS = ("lowrank", "lowrank_lapack", "scipy_svdvals", "numpy_svd")
DESCRIPTIONS = {
    "lowrank": "lowrank.singular_values(A) (auto: the float64 Gram route for float32)",
    "lowrank_lapack": 'lowrank.singular_values(A, method="lapack")',
    "scipy_svdvals": "scipy.linalg.svdvals(A)",
    "numpy_svd": "numpy.linalg.svd(A, compute_uv=False)",
}
FULL = [
    MatrixSpec("flat", 4096, 4096),
    MatrixSpec("fast", 4096, 4096),
    MatrixSpec("flat", 4096, 11008),
]
QUICK = [MatrixSpec("flat", 200, 160), MatrixSpec("fast", 160, 200)]


def _fn(method: str, A: np.ndarray) -> Any:
    if method == "lowrank":
        from lowrank import singular_values

        return lambda: singular_values(A)
    if method == "lowrank_lapack":
        from lowrank import singular_values

        return lambda: singular_values(A, method="lapack")
    if method == "scipy_svdvals":
        import scipy.linalg as sla

        return lambda: sla.svdvals(A, check_finite=False)
    if method == "numpy_svd":
        return lambda: np.linalg.svd(A, compute_uv=False)
    raise ValueError(f"unknown method {method!r}")


class CurveSuite(Suite):
    name = "curve"
    title = "All singular values: the rank–error curve"

    def _mats(self, options: Options) -> list[MatrixSpec]:
        return QUICK if options.quick else FULL

    def prepare(self, options: Options) -> list[Case]:
        return [
            Case(
                "curve",
                f"prepare/{s.name}",
                f"prepare/{s.name}",
                {"op": "prepare", "matrix": s.to_dict()},
            )
            for s in self._mats(options)
        ]

    def cases(self, options: Options) -> list[Case]:
        return [
            Case(
                "curve",
                f"{s.name}/{m}",
                f"{s.name}/{m}",
                {"op": "run", "matrix": s.to_dict(), "method": m},
            )
            for s in self._mats(options)
            for m in METHODS
        ]

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        spec = MatrixSpec.from_dict(case.params["matrix"])
        A = load_matrix(spec, ctx.options.cache)
        ref = load_reference(spec, ctx.options.cache)
        if case.params["op"] == "prepare":
            return {"shape": list(A.shape)}
        ctx.progress("loaded")
        errors: dict[str, Any] = {}

        def check(out: Any) -> None:
            errors.update(curve_errors(np.asarray(out), ref))

        _, timing = measure(
            _fn(case.params["method"], A), ctx.options.policy, emit=ctx.emit, after_warmup=check
        )
        return {**timing.to_dict(), **errors}

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        by = {}
        for item in results:
            p = item["case"]["params"]
            if p.get("op") == "run":
                by[(MatrixSpec.from_dict(p["matrix"]).label, p["method"])] = item["result"]
        rows, summary = [], []
        for spec in self._mats(options):
            base = by.get((spec.label, "scipy_svdvals"), {})
            for method in METHODS:
                res = by.get((spec.label, method), {})
                if res.get("status") != "ok":
                    rows.append(
                        [spec.label, method, res.get("status", "missing"), "", "", "", "", ""]
                    )
                    continue
                ratio = res["seconds"] / base["seconds"] if base.get("status") == "ok" else None
                rows.append(
                    [
                        spec.label,
                        method,
                        fmt_time(res["seconds"], res["n"], res["warmup_counted"]),
                        fmt_ratio(ratio),
                        fmt_err(res["curve_over_fro"]),
                        fmt_err(res["max_abs_over_s1"]),
                        fmt_err(res["rel_1e3"]),
                        fmt_err(res["min_rel"]),
                    ]
                )
                if method == "lowrank":
                    met = (
                        ratio is not None
                        and ratio <= RATIO_TARGET
                        and res["curve_over_fro"] <= CURVE_TOL
                    )
                    summary.append(
                        {
                            "matrix": spec.label,
                            "seconds": res["seconds"],
                            "ratio_to_scipy_svdvals": ratio,
                            "curve_over_fro": res["curve_over_fro"],
                            "met": met,
                        }
                    )
        head = [
            "matrix",
            "method",
            "time s",
            "÷ scipy svdvals",
            "curve err / ‖A‖_F",
            "max abs(Δσ) / σ₁",
            "max rel err (σ ≥ 1e-3σ₁)",
            "rel err of σ_min",
        ]
        targets = [
            [
                s["matrix"],
                fmt_time(s["seconds"]),
                fmt_ratio(s["ratio_to_scipy_svdvals"]),
                fmt_err(s["curve_over_fro"]),
                "✓" if s["met"] else "✗",
            ]
            for s in summary
        ]
        text = "\n".join(
            [
                "### Targets\n",
                f"lowrank ≤ {RATIO_TARGET}× the time of scipy svdvals with the curve's error ≤ "
                f"{CURVE_TOL:g}·‖A‖_F.\n",
                md_table(
                    ["matrix", "lowrank time", "÷ scipy svdvals", "curve err / ‖A‖_F", "met"],
                    targets,
                ),
                "",
                "### All methods\n",
                "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in METHODS),
                "",
                md_table(head, rows),
            ]
        )
        return text, {"targets": summary}
