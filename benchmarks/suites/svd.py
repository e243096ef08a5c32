"""Suite 1: truncated SVD at matched accuracy.

For each matrix (three spectra, float32) and rank, every method runs in a worker process:
lowrank's default (``truncated_svd(A, r)``) and its fast setting
(``excess_tol=FAST_TOL``); the peers SciPy ``svds`` (ARPACK, PROPACK, LOBPCG),
scikit-learn ``randomized_svd`` (default, and with ``n_oversamples``/``n_iter`` raised
until it reaches the accuracy target), PyTorch ``svd_lowrank`` when installed, and LAPACK
``gesdd`` (SciPy, rank-independent: one decomposition, judged at every rank); and the
GEMM floor ``A.T @ (A @ Omega)`` with ``r + 10`` columns.

Accuracy, against float64 LAPACK of the float64 upcast: the largest relative error of the
top-r singular values, and the excess of the residual over the Eckart–Young–Mirsky optimum,
``||A - U S Vh||_F / ||sigma_{r+1:}|| - 1``, in float64 from the method's own factors.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import numpy as np

from benchmarks.accuracy import excess_residual, top_r_relative_error
from benchmarks.matrices import MatrixSpec, load_matrix, load_reference
from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available
from benchmarks.timing import measure

__all__ = ["EXCESS_TOL", "FAST_EXCESS_TOL", "METHODS", "TOP_R_TOL", "SvdSuite"]

TOP_R_TOL = 1e-5
EXCESS_TOL = 1e-6
FAST_EXCESS_TOL = 1e-3
RATIO_TARGET = 0.5
FLOOR_TARGET = 3.0
FAST_FLOOR_TARGET = 10.0

LOWRANK = ("lowrank", "lowrank_fast")
PEERS = ("gesdd", "arpack", "propack", "lobpcg", "sklearn", "sklearn_tuned", "torch_lowrank")
METHODS: tuple[str, ...] = ("floor", *LOWRANK, *PEERS)

DESCRIPTIONS = {
    "floor": "A.T @ (A @ Omega), Omega n x (r+10) float32: the GEMM floor",
    "lowrank": "lowrank.truncated_svd(A, r, rng=0): the default",
    "lowrank_fast": "lowrank.truncated_svd(A, r, rng=0, excess_tol=FAST_TOL)",
    "gesdd": "scipy.linalg.svd(A, full_matrices=False, lapack_driver='gesdd'), truncated",
    "arpack": "scipy.sparse.linalg.svds(A, r, solver='arpack', rng=0)",
    "propack": "scipy.sparse.linalg.svds(A, r, solver='propack', rng=0)",
    "lobpcg": "scipy.sparse.linalg.svds(A, r, solver='lobpcg', rng=0)",
    "sklearn": "sklearn.utils.extmath.randomized_svd(A, r, random_state=0)",
    "sklearn_tuned": "randomized_svd with n_oversamples, n_iter raised until the target is met",
    "torch_lowrank": "torch.svd_lowrank(A, q=r+10, niter=2)",
}

FULL_MATRICES = [
    *(MatrixSpec(f, 2048, 2048) for f in ("fast", "flat", "spike")),
    *(MatrixSpec(f, 4096, 4096) for f in ("fast", "flat", "spike")),
    MatrixSpec("flat", 4096, 11008),
]
FULL_RANKS = (8, 64, 256)
QUICK_MATRICES = [MatrixSpec(f, 300, 260) for f in ("fast", "flat", "spike")]
QUICK_RANKS = (4, 16)


def _needs(method: str) -> str | None:
    if method.startswith("sklearn"):
        return "sklearn"
    if method.startswith("torch"):
        return "torch"
    return None


def _meets(rel: float, excess: float) -> bool:
    return rel <= TOP_R_TOL and excess <= EXCESS_TOL


# --- methods (run in the worker) ------------------------------------------------------


def _sorted_triplets(U: Any, S: Any, Vh: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    U, S, Vh = np.asarray(U), np.asarray(S), np.asarray(Vh)
    order = np.argsort(-S, kind="stable")
    return U[:, order], S[order], Vh[order]


def _lowrank_call(A: np.ndarray, r: int, **options: Any) -> Any:
    from lowrank import truncated_svd

    params = inspect.signature(truncated_svd).parameters
    if any(k not in params for k in options):
        raise NotImplementedError(f"this lowrank has no option {sorted(options)}")
    return lambda: truncated_svd(A, r, rng=0, **options)


def _method_fn(method: str, A: np.ndarray, r: int, extra: dict[str, Any]) -> Any:
    """A zero-argument callable returning (U, S, Vh), or an object with those fields."""
    if method == "floor":
        omega = np.random.default_rng(0).standard_normal((A.shape[1], r + 10)).astype(A.dtype)
        return lambda: A.T @ (A @ omega)
    if method == "lowrank":
        return _lowrank_call(A, r)
    if method == "lowrank_fast":
        from lowrank.svd import FAST_TOL

        return _lowrank_call(A, r, excess_tol=FAST_TOL)
    if method == "gesdd":
        import scipy.linalg as sla

        return lambda: sla.svd(A, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    if method in ("arpack", "propack", "lobpcg"):
        from scipy.sparse.linalg import svds

        key = "rng" if "rng" in inspect.signature(svds).parameters else "random_state"
        return lambda: _sorted_triplets(*svds(A, k=r, solver=method, **{key: 0}))
    if method.startswith("sklearn"):
        from sklearn.utils.extmath import randomized_svd

        return lambda: randomized_svd(A, r, random_state=0, **extra)
    if method == "torch_lowrank":
        import os

        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        tA = torch.from_numpy(A)
        q = min(r + 10, *A.shape)

        def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            torch.manual_seed(0)
            U, S, V = torch.svd_lowrank(tA, q=q, niter=2)
            return _sorted_triplets(U[:, :r].numpy(), S[:r].numpy(), V[:, :r].numpy().T)

        return run
    raise ValueError(f"unknown method {method!r}")


def _triplets(out: Any, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if hasattr(out, "U"):
        return out.U, out.S, out.Vh
    U, S, Vh = out
    return U[:, :r], S[:r], Vh[:r]


def _lowrank_info(out: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key in ("method", "converged"):
        if hasattr(out, key):
            info[key] = getattr(out, key)
    diagnostics = getattr(out, "diagnostics", None)
    if diagnostics is not None:
        for key in (
            "n_iter",
            "oversample",
            "n_passes",
            "block_size",
            "value_estimate",
            "excess_estimate",
            "criterion",
            "tol",
        ):
            value = getattr(diagnostics, key)
            info[key] = value if not isinstance(value, np.generic) else value.item()
    if hasattr(out, "excess_bound"):
        info["excess_bound"] = out.excess_bound
    return info


def _sklearn_ladder(r: int, small: int) -> list[dict[str, int]]:
    """(n_oversamples, n_iter) configurations in order of cost, beyond the default."""
    configs = []
    for p in sorted({10, r, 2 * r, 4 * r}):
        if r + p > small:
            continue
        for q in (7, 10, 15, 20, 30, 45, 60, 90):
            configs.append({"n_oversamples": p, "n_iter": q})
    return sorted(
        configs, key=lambda c: ((2 * c["n_iter"] + 2) * (r + c["n_oversamples"]), c["n_iter"])
    )


class SvdSuite(Suite):
    name = "svd"
    title = "Truncated SVD at matched accuracy"

    def _matrices(self, options: Options) -> tuple[list[MatrixSpec], tuple[int, ...]]:
        if options.quick:
            return QUICK_MATRICES, QUICK_RANKS
        return FULL_MATRICES, FULL_RANKS

    def prepare(self, options: Options) -> list[Case]:
        mats, _ = self._matrices(options)
        return [
            Case(
                "svd",
                f"prepare/{s.name}",
                f"prepare/{s.name}",
                {"op": "prepare", "matrix": s.to_dict()},
            )
            for s in mats
        ]

    def cases(self, options: Options) -> list[Case]:
        mats, ranks = self._matrices(options)
        out = []
        for spec in mats:
            for method in METHODS:
                group = f"{spec.name}/{method}"
                if method == "gesdd":
                    out.append(
                        Case(
                            "svd",
                            group,
                            group,
                            {
                                "op": "run",
                                "matrix": spec.to_dict(),
                                "method": method,
                                "ranks": list(ranks),
                            },
                        )
                    )
                    continue
                for r in ranks:
                    out.append(
                        Case(
                            "svd",
                            f"{group}/r{r}",
                            group,
                            {"op": "run", "matrix": spec.to_dict(), "method": method, "rank": r},
                        )
                    )
        return out

    @staticmethod
    def requirement(case: Case) -> str | None:
        method = case.params.get("method", "")
        need = _needs(method)
        if need and not module_available(need):
            return f"{need} is not installed"
        return None

    # --- worker side -------------------------------------------------------------------

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        p = case.params
        spec = MatrixSpec.from_dict(p["matrix"])
        if p["op"] == "prepare":
            t = time.perf_counter()
            A = load_matrix(spec, ctx.options.cache)
            ref = load_reference(spec, ctx.options.cache)
            return {
                "seconds_to_prepare": time.perf_counter() - t,
                "shape": list(A.shape),
                "sigma_1": float(ref[0]),
                "fro": float(np.sqrt(np.sum(ref**2))),
            }
        key = f"matrix/{spec.name}"
        if key not in ctx.memo:
            ctx.memo.clear()
            ctx.memo[key] = (
                load_matrix(spec, ctx.options.cache),
                load_reference(spec, ctx.options.cache),
            )
        A, ref = ctx.memo[key]
        ctx.progress("loaded")
        method = p["method"]
        if method == "gesdd":
            return self._run_gesdd(A, ref, p["ranks"], ctx)
        r = int(p["rank"])
        if method == "sklearn_tuned":
            return self._run_tuned(A, ref, r, ctx)
        return self._run_one(method, A, ref, r, ctx, {})

    def _run_one(
        self,
        method: str,
        A: np.ndarray,
        ref: np.ndarray,
        r: int,
        ctx: WorkerContext,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        fn = _method_fn(method, A, r, extra)
        acc: dict[str, Any] = {}

        def check(out: Any) -> None:
            if method == "floor":
                return
            U, S, Vh = _triplets(out, r)
            acc["top_r_rel_err"] = top_r_relative_error(S, ref)
            acc["excess"] = excess_residual(A, U, S, Vh, ref)
            acc["dtype"] = str(np.asarray(U).dtype)
            if method.startswith("lowrank"):
                acc["info"] = _lowrank_info(out)
            ctx.progress("accuracy")

        _, timing = measure(fn, ctx.options.policy, emit=ctx.emit, after_warmup=check)
        return {**timing.to_dict(), **acc, "params": extra}

    def _run_gesdd(
        self, A: np.ndarray, ref: np.ndarray, ranks: list[int], ctx: WorkerContext
    ) -> dict[str, Any]:
        fn = _method_fn("gesdd", A, 0, {})
        per_rank: dict[str, Any] = {}

        def check(out: Any) -> None:
            U, S, Vh = out
            for r in ranks:
                per_rank[str(r)] = {
                    "top_r_rel_err": top_r_relative_error(S[:r], ref),
                    "excess": excess_residual(A, U[:, :r], S[:r], Vh[:r], ref),
                }
                ctx.progress(f"accuracy r={r}")

        _, timing = measure(fn, ctx.options.policy, emit=ctx.emit, after_warmup=check)
        return {**timing.to_dict(), "per_rank": per_rank, "dtype": str(A.dtype)}

    def _run_tuned(
        self, A: np.ndarray, ref: np.ndarray, r: int, ctx: WorkerContext
    ) -> dict[str, Any]:
        budget = ctx.options.search_budget
        start = time.perf_counter()
        tried = []
        for config in _sklearn_ladder(r, min(A.shape)):
            if time.perf_counter() - start > budget:
                break
            fn = _method_fn("sklearn_tuned", A, r, config)
            t0 = time.perf_counter()
            U, S, Vh = fn()
            seconds = time.perf_counter() - t0
            rel = top_r_relative_error(S, ref)
            exc = excess_residual(A, U, S, Vh, ref)
            tried.append({**config, "seconds": seconds, "top_r_rel_err": rel, "excess": exc})
            ctx.progress(f"tried {config}")
            if _meets(rel, exc):
                result = self._run_one("sklearn_tuned", A, ref, r, ctx, config)
                result["search"] = tried
                return result
        best = min(tried, key=lambda t: (t["top_r_rel_err"], t["seconds"])) if tried else {}
        return {
            "status": "not reached",
            "search": tried,
            "best": best,
            "note": f"no configuration reached the target within {budget:.0f} s of search",
        }

    # --- report ------------------------------------------------------------------------

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        mats, ranks = self._matrices(options)
        by: dict[tuple[str, str, int], dict[str, Any]] = {}
        for item in results:
            p = item["case"]["params"]
            if p.get("op") != "run":
                continue
            res = item["result"]
            name = MatrixSpec.from_dict(p["matrix"]).name
            if p["method"] == "gesdd":
                for r in ranks:
                    entry = dict(res)
                    entry.update(res.get("per_rank", {}).get(str(r), {}))
                    by[(name, "gesdd", r)] = entry
            else:
                by[(name, p["method"], int(p["rank"]))] = res

        def ok(res: dict[str, Any] | None) -> bool:
            return bool(res) and res.get("status") == "ok" and "seconds" in res  # type: ignore[union-attr]

        lines: list[str] = []
        summary_rows: list[list[str]] = []
        summary: list[dict[str, Any]] = []
        for spec in mats:
            lines.append(f"#### {spec.label}: {FAMILIES_TEXT.get(spec.family, spec.family)}\n")
            header = ["method"]
            for r in ranks:
                header += [f"r={r} time", "×floor", "top-r err", "excess", "lowrank ÷"]
            rows = []
            for method in METHODS:
                row = [method]
                for r in ranks:
                    res = by.get((spec.name, method, r))
                    floor = by.get((spec.name, "floor", r))
                    mine = by.get((spec.name, "lowrank", r))
                    if not ok(res):
                        status = (res or {}).get("status", "missing")
                        why = (res or {}).get("error") or (res or {}).get("note") or ""
                        cell = status if not why else f"{status}"
                        row += [cell, "", _best_err(res), "", ""]
                        continue
                    assert res is not None
                    t = res["seconds"]
                    row.append(fmt_time(t, res.get("n"), res.get("warmup_counted")))
                    row.append(fmt_ratio(t / floor["seconds"]) if ok(floor) else "")  # type: ignore[index]
                    row.append(fmt_err(res.get("top_r_rel_err")) if method != "floor" else "-")
                    row.append(fmt_err(res.get("excess")) if method != "floor" else "-")
                    row.append(
                        fmt_ratio(mine["seconds"] / t) if ok(mine) and method != "lowrank" else ""
                    )  # type: ignore[index]
                rows.append(row)
            lines.append(md_table(header, rows))
            lines.append("")
            for r in ranks:
                summary.append(self._summarize(spec, r, by, ok))
        for s in summary:
            summary_rows.append(
                [
                    s["matrix"],
                    str(s["rank"]),
                    fmt_time(s["lowrank_seconds"]) if s["lowrank_seconds"] else s["lowrank_status"],
                    fmt_err(s["lowrank_top_r_rel_err"]),
                    fmt_err(s["lowrank_excess"]),
                    s["best_peer"] or "none",
                    fmt_time(s["best_peer_seconds"]) if s["best_peer_seconds"] else "",
                    _verdict(s["ratio_to_best_peer"], RATIO_TARGET, s["lowrank_accurate"]),
                    _verdict(s["ratio_to_floor"], FLOOR_TARGET, s["lowrank_accurate"]),
                    fmt_err(s["fast_excess"]),
                    _verdict(
                        s["fast_ratio_to_floor"],
                        FAST_FLOOR_TARGET,
                        s["fast_excess"] is not None and s["fast_excess"] <= FAST_EXCESS_TOL,
                    ),
                ]
            )
        head = [
            "matrix",
            "r",
            "lowrank",
            "top-r err",
            "excess",
            "fastest accurate peer",
            "its time",
            "lowrank ÷ peer (≤0.5)",
            "lowrank ÷ floor (≤3)",
            "fast: excess",
            "fast ÷ floor (≤10)",
        ]
        out = [
            "### Targets\n",
            f"Accurate = top-r relative error ≤ {TOP_R_TOL:g} and excess residual ≤ "
            f"{EXCESS_TOL:g}. A ratio is marked ✓ when the target is met, ✗ when not.\n",
            md_table(head, summary_rows),
            "",
            "### All methods\n",
            "Time in seconds (median; `(n=k)` when fewer than the usual runs fitted the budget); "
            "×floor = time / time of `A.T @ (A @ Omega)`; lowrank ÷ = time of lowrank's "
            "default / time of that method.\n",
            "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in METHODS),
            "",
            *lines,
        ]
        return "\n".join(out), {"targets": summary}

    @staticmethod
    def _summarize(
        spec: MatrixSpec, r: int, by: dict[tuple[str, str, int], dict[str, Any]], ok: Any
    ) -> dict[str, Any]:
        mine = by.get((spec.name, "lowrank", r))
        fast = by.get((spec.name, "lowrank_fast", r))
        floor = by.get((spec.name, "floor", r))
        best_name, best_t = None, math.inf
        for method in PEERS:
            res = by.get((spec.name, method, r))
            if ok(res) and _meets(res["top_r_rel_err"], res["excess"]) and res["seconds"] < best_t:
                best_name, best_t = method, res["seconds"]
        mt = mine["seconds"] if ok(mine) else None  # type: ignore[index]
        ft = floor["seconds"] if ok(floor) else None  # type: ignore[index]
        accurate = bool(ok(mine) and _meets(mine["top_r_rel_err"], mine["excess"]))  # type: ignore[index]
        return {
            "matrix": spec.label,
            "rank": r,
            "lowrank_seconds": mt,
            "lowrank_status": (mine or {}).get("status", "missing"),
            "lowrank_top_r_rel_err": mine.get("top_r_rel_err") if mine else None,
            "lowrank_excess": mine.get("excess") if mine else None,
            "lowrank_accurate": accurate,
            "lowrank_info": (mine or {}).get("info"),
            "best_peer": best_name,
            "best_peer_seconds": best_t if best_name else None,
            "ratio_to_best_peer": mt / best_t if mt and best_name else None,
            "ratio_to_floor": mt / ft if mt and ft else None,
            "floor_seconds": ft,
            "fast_seconds": fast["seconds"] if ok(fast) else None,  # type: ignore[index]
            "fast_excess": fast.get("excess") if ok(fast) else None,  # type: ignore[union-attr]
            "fast_top_r_rel_err": fast.get("top_r_rel_err") if ok(fast) else None,  # type: ignore[union-attr]
            "fast_ratio_to_floor": fast["seconds"] / ft if ok(fast) and ft else None,  # type: ignore[index]
        }


FAMILIES_TEXT = {
    "fast": "σᵢ = 1/i, Haar factors",
    "flat": "Marchenko–Pastur, Gaussian/√max(m,n)",
    "spike": "Marchenko–Pastur + rank-16 spike",
}


def _best_err(res: dict[str, Any] | None) -> str:
    if res and res.get("best"):
        return fmt_err(res["best"].get("top_r_rel_err"))
    return ""


def _verdict(ratio: float | None, target: float, accurate: bool) -> str:
    if ratio is None:
        return "n/a"
    mark = "✓" if accurate and ratio <= target else "✗"
    return f"{fmt_ratio(ratio)} {mark}"
