"""Suite 3: analysing a whole checkpoint with ``lowrank.analysis`` against a naive loop.

A synthetic float16 safetensors checkpoint shaped like a small transformer (per layer: q,
k, v, o of d x d, gate and up of f x d, down of d x f; weight-like spectra), written once
to the cache. Timed:

* ``lowrank_analyze``: :func:`lowrank.analysis.analyze` (default executor: worker processes
  on the available cores, one matrix per task, each loading its own tensor);
* ``naive_loop``: what one writes without the package — ``safetensors.numpy.load_file``,
  then for each matrix ``numpy.linalg.svd(W.astype(float32), compute_uv=False)`` and the
  tail norms of the rank–error curve;
* ``naive_loop_scipy``: the same with ``scipy.linalg.svdvals``.

Accuracy: the largest error of the singular values over sigma_1 and of the rank–error curve
over ``||W||_F``, against float64 LAPACK of each stored matrix, over the checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy import curve_errors
from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available
from benchmarks.timing import measure

__all__ = ["CheckpointSuite"]

FULL = {"layers": 4, "d": 1024, "f": 2816}
QUICK = {"layers": 2, "d": 48, "f": 80}
METHODS = ("lowrank_analyze", "naive_loop", "naive_loop_scipy")
DESCRIPTIONS = {
    "lowrank_analyze": "lowrank.analysis.analyze(path) with its default executor",
    "naive_loop": "safetensors load_file, then numpy.linalg.svd(W.astype(float32), "
    "compute_uv=False) and the tail norms, matrix by matrix",
    "naive_loop_scipy": "the same with scipy.linalg.svdvals",
}


def _shapes(cfg: dict[str, int]) -> dict[str, tuple[int, int]]:
    d, f = cfg["d"], cfg["f"]
    out = {}
    for layer in range(cfg["layers"]):
        p = f"model.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"{p}.self_attn.{name}.weight"] = (d, d)
        out[f"{p}.mlp.gate_proj.weight"] = (f, d)
        out[f"{p}.mlp.up_proj.weight"] = (f, d)
        out[f"{p}.mlp.down_proj.weight"] = (d, f)
    return out


def _paths(options: Options) -> tuple[Path, Path, dict[str, int]]:
    cfg = QUICK if options.quick else FULL
    stem = f"ckpt_L{cfg['layers']}_d{cfg['d']}_f{cfg['f']}"
    return options.cache / f"{stem}.safetensors", options.cache / f"{stem}_ref.npz", cfg


def _build(path: Path, ref_path: Path, cfg: dict[str, int]) -> None:
    from lowrank.io import save_safetensors

    rng = np.random.default_rng(0)
    tensors, refs = {}, {}
    for name, (m, n) in _shapes(cfg).items():
        w = rng.standard_normal((m, n)) / math.sqrt(max(m, n))
        k = min(m, n)
        spikes = rng.standard_normal((m, 8)) @ (rng.standard_normal((8, n)) / math.sqrt(m * n))
        w = w + spikes * 4.0 * (1 + math.sqrt(k / max(m, n)))
        stored = w.astype(np.float16)
        tensors[name] = stored
        refs[name] = np.linalg.svd(stored.astype(np.float64), compute_uv=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(path, tensors)
    np.savez(ref_path, **refs)


def _naive(path: Path, scipy: bool) -> dict[str, np.ndarray]:
    import scipy.linalg as sla
    from safetensors.numpy import load_file

    out = {}
    for name, w in load_file(str(path)).items():
        a = w.astype(np.float32)
        s = sla.svdvals(a) if scipy else np.linalg.svd(a, compute_uv=False)
        s = s.astype(np.float64)
        tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1])  # the rank-error curve
        del tails
        out[name] = s
    return out


def _analyze(path: Path) -> dict[str, np.ndarray]:
    from lowrank.analysis import analyze

    report = analyze(path)
    return {r.name: np.asarray(r.singular_values, dtype=np.float64) for r in report.matrices}


class CheckpointSuite(Suite):
    name = "checkpoint"
    title = "Whole-checkpoint analysis vs a naive loop"

    def available(self) -> tuple[bool, str]:
        missing = [m for m in ("lowrank.analysis", "safetensors") if not module_available(m)]
        if missing:
            return False, f"needs {', '.join(missing)}"
        return True, ""

    def prepare(self, options: Options) -> list[Case]:
        return [Case("checkpoint", "prepare/checkpoint", "prepare/checkpoint", {"op": "prepare"})]

    def cases(self, options: Options) -> list[Case]:
        return [
            Case("checkpoint", f"checkpoint/{m}", f"checkpoint/{m}", {"op": "run", "method": m})
            for m in METHODS
        ]

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        path, ref_path, cfg = _paths(ctx.options)
        if case.params["op"] == "prepare":
            if not (path.exists() and ref_path.exists()):
                _build(path, ref_path, cfg)
            return {"matrices": len(_shapes(cfg)), "bytes": path.stat().st_size}
        refs = dict(np.load(ref_path))
        method = case.params["method"]
        if method == "lowrank_analyze":
            fn = lambda: _analyze(path)  # noqa: E731
        else:
            fn = lambda: _naive(path, scipy=method.endswith("scipy"))  # noqa: E731
        acc: dict[str, float] = {}

        def check(out: dict[str, np.ndarray]) -> None:
            errs = [curve_errors(out[name], ref) for name, ref in refs.items()]
            acc["max_abs_over_s1"] = max(e["max_abs_over_s1"] for e in errs)
            acc["curve_over_fro"] = max(e["curve_over_fro"] for e in errs)
            acc["matrices"] = len(out)

        _, timing = measure(fn, ctx.options.policy, emit=ctx.emit, after_warmup=check)
        return {**timing.to_dict(), **acc}

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        _, _, cfg = _paths(options)
        by = {
            item["case"]["params"].get("method"): item["result"]
            for item in results
            if item["case"]["params"].get("op") == "run"
        }
        base = by.get("naive_loop", {})
        rows, summary = [], {}
        for m in METHODS:
            res = by.get(m, {})
            if res.get("status") != "ok":
                rows.append([m, res.get("status", "missing"), "", "", "", ""])
                continue
            ratio = res["seconds"] / base["seconds"] if base.get("status") == "ok" else None
            rows.append(
                [
                    m,
                    fmt_time(res["seconds"], res["n"], res["warmup_counted"]),
                    fmt_ratio(ratio),
                    str(res["matrices"]),
                    fmt_err(res["max_abs_over_s1"]),
                    fmt_err(res["curve_over_fro"]),
                ]
            )
            summary[m] = {"seconds": res["seconds"], "ratio_to_naive_loop": ratio}
        n = len(_shapes(cfg))
        text = "\n".join(
            [
                f"A float16 safetensors checkpoint of {cfg['layers']} layers ({n} matrices: "
                f"{cfg['d']}x{cfg['d']} attention, {cfg['f']}x{cfg['d']} and {cfg['d']}x{cfg['f']} "
                "MLP, weight-like spectra with 8 spikes). Errors against float64 LAPACK of each "
                "stored matrix (worst over the checkpoint).\n",
                "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in METHODS),
                "",
                md_table(
                    [
                        "method",
                        "time s",
                        "÷ naive loop",
                        "matrices",
                        "max abs(Δσ) / σ₁",
                        "curve err / ‖W‖_F",
                    ],
                    rows,
                ),
            ]
        )
        return text, {"checkpoint": summary}
