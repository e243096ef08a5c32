"""Suite 5: PiSSA initialisation of a stack of weight matrices vs PEFT's recipe.

PEFT initialises PiSSA either by a full SVD (``init_lora_weights="pissa"``) or, faster,
by ``torch.svd_lowrank(W, q=r, niter=K)`` (``"pissa_niter_K"``): no oversampling and K
QR-normalised power iterations. Here the whole stack is initialised by

* ``lowrank.lora.pissa_init`` with the exact SVD (PEFT's ``"pissa"``), with lowrank's
  default randomized method (converged to single precision), and with ``n_iter=4``;
* PEFT's recipe with PyTorch when installed (``torch.svd_lowrank``), and the same algorithm
  written out in NumPy (Halko et al. Alg. 4.4 with q = r, as ``torch/_lowrank.py``) so the
  comparison exists without PyTorch.

Accuracy: the excess of ``||W_res||_F = ||W - s B A||_F`` over the Eckart–Young–Mirsky
optimum ``||σ_{r+1:}||`` (float64), the worst over the stack.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.matrices import MatrixSpec, load_matrix, load_reference
from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available
from benchmarks.timing import measure

__all__ = ["PissaSuite"]

FULL_STACK = [
    MatrixSpec("spike", 2048, 2048, seed=0),
    MatrixSpec("spike", 2048, 2048, seed=1),
    MatrixSpec("flat", 2048, 2048, seed=2),
    MatrixSpec("flat", 2048, 2048, seed=3),
    MatrixSpec("spike", 2048, 5632, seed=0),
    MatrixSpec("flat", 2048, 5632, seed=1),
]
QUICK_STACK = [MatrixSpec("spike", 120, 100, seed=0), MatrixSpec("flat", 100, 160, seed=1)]
FULL_RANKS = (16, 64)
QUICK_RANKS = (4,)
NITER = 4
METHODS = (
    "lowrank_exact",
    "lowrank_randomized",
    "lowrank_fast",
    "lowrank_niter_4",
    "peft_torch_niter_4",
    "peft_recipe_numpy_niter_4",
)
DESCRIPTIONS = {
    "lowrank_exact": 'lowrank.lora.pissa_init(W, r) (method="exact": PEFT\'s "pissa")',
    "lowrank_randomized": 'lowrank.lora.pissa_init(W, r, method="randomized", rng=0)',
    "lowrank_fast": 'lowrank.truncated_svd(W, r, preset="fast", rng=0), factors split as '
    "pissa_init does (pissa_init does not pass preset through yet)",
    "lowrank_niter_4": 'lowrank.lora.pissa_init(W, r, method="randomized", n_iter=4, rng=0)',
    "peft_torch_niter_4": "PEFT's pissa_niter_4: torch.svd_lowrank(W, q=r, niter=4), factors "
    "split as PEFT does",
    "peft_recipe_numpy_niter_4": "the same recipe in NumPy (Gaussian sketch of r columns, 4 "
    "QR-normalised power iterations, SVD of Q^T W)",
}


def _svd_lowrank_numpy(W: np.ndarray, q: int, niter: int, rng: np.random.Generator) -> Any:
    """``torch.svd_lowrank(W, q, niter)`` (M=None) in NumPy: returns U, S, Vh."""
    Q = np.linalg.qr(W @ rng.standard_normal((W.shape[1], q)).astype(W.dtype))[0]
    for _ in range(niter):
        Q = np.linalg.qr(W.T @ Q)[0]
        Q = np.linalg.qr(W @ Q)[0]
    Ub, S, Vh = np.linalg.svd(Q.T @ W, full_matrices=False)
    return Q @ Ub, S, Vh


def _peft_split(U: np.ndarray, S: np.ndarray, Vh: np.ndarray, r: int, W: np.ndarray) -> Any:
    """PEFT's pissa_init arithmetic (scaling 1): B = U sqrt(S), A = sqrt(S) Vh, W_res."""
    root = np.sqrt(S[:r]).astype(W.dtype)
    B = U[:, :r] * root
    A = root[:, None] * Vh[:r]
    return W - B @ A


def _init_fn(method: str, W: np.ndarray, r: int) -> Any:
    if method == "lowrank_fast":
        from lowrank import truncated_svd

        def run_fast() -> np.ndarray:
            res = truncated_svd(W, r, method="randomized", preset="fast", rng=0)
            return _peft_split(res.U, res.S, res.Vh, r, W)

        return run_fast
    if method.startswith("lowrank"):
        from lowrank.lora import pissa_init

        kwargs: dict[str, Any] = {}
        if method == "lowrank_randomized":
            kwargs = {"method": "randomized", "rng": 0}
        elif method == "lowrank_niter_4":
            kwargs = {"method": "randomized", "n_iter": NITER, "rng": 0}
        return lambda: pissa_init(W, r, **kwargs).residual
    if method == "peft_torch_niter_4":
        import os

        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        tW = torch.from_numpy(W)

        def run_torch() -> np.ndarray:
            torch.manual_seed(0)
            V, S, Uh = torch.svd_lowrank(tW, r, niter=NITER)
            return _peft_split(V.numpy(), S.numpy(), Uh.numpy().T, r, W)

        return run_torch

    def run_numpy() -> np.ndarray:
        U, S, Vh = _svd_lowrank_numpy(W, r, NITER, np.random.default_rng(0))
        return _peft_split(U, S, Vh, r, W)

    return run_numpy


class PissaSuite(Suite):
    name = "pissa"
    title = "PiSSA initialisation of a stack vs PEFT's recipe"

    def available(self) -> tuple[bool, str]:
        if not module_available("lowrank.lora"):
            return False, "needs lowrank.lora, not in this checkout yet"
        return True, ""

    def _setup(self, options: Options) -> tuple[list[MatrixSpec], tuple[int, ...]]:
        return (QUICK_STACK, QUICK_RANKS) if options.quick else (FULL_STACK, FULL_RANKS)

    def prepare(self, options: Options) -> list[Case]:
        stack, _ = self._setup(options)
        return [
            Case(
                "pissa",
                f"prepare/{s.name}_s{s.seed}",
                f"prepare/{s.name}_s{s.seed}",
                {"op": "prepare", "matrix": s.to_dict()},
            )
            for s in stack
        ]

    def cases(self, options: Options) -> list[Case]:
        stack, ranks = self._setup(options)
        return [
            Case(
                "pissa",
                f"stack{len(stack)}_r{r}/{m}",
                f"stack_r{r}/{m}",
                {"op": "run", "rank": r, "method": m},
            )
            for r in ranks
            for m in METHODS
        ]

    @staticmethod
    def requirement(case: Case) -> str | None:
        if case.params.get("method") == "peft_torch_niter_4" and not module_available("torch"):
            return "torch is not installed"
        return None

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        cache = ctx.options.cache
        if case.params["op"] == "prepare":
            spec = MatrixSpec.from_dict(case.params["matrix"])
            load_matrix(spec, cache)
            load_reference(spec, cache)
            return {}
        stack, _ = self._setup(ctx.options)
        r = int(case.params["rank"])
        mats = [load_matrix(s, cache) for s in stack]
        refs = [load_reference(s, cache) for s in stack]
        ctx.progress("loaded")
        fns = [_init_fn(case.params["method"], W, r) for W in mats]
        excess: list[float] = []

        def check(residuals: list[np.ndarray]) -> None:
            for W_res, ref in zip(residuals, refs, strict=True):
                tail = ref[r:][::-1]
                opt = math.sqrt(float(np.dot(tail, tail)))
                res = float(np.linalg.norm(W_res.astype(np.float64)))
                excess.append(res / opt - 1.0)

        _, timing = measure(
            lambda: [f() for f in fns], ctx.options.policy, emit=ctx.emit, after_warmup=check
        )
        return {**timing.to_dict(), "excess_max": max(excess), "excess_min": min(excess)}

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        stack, ranks = self._setup(options)
        by = {}
        for item in results:
            p = item["case"]["params"]
            if p.get("op") == "run":
                by[(p["rank"], p["method"])] = item["result"]
        rows, summary = [], []
        for r in ranks:
            base = by.get((r, "peft_torch_niter_4"), {})
            if base.get("status") != "ok":
                base = by.get((r, "peft_recipe_numpy_niter_4"), {})
            for m in METHODS:
                res = by.get((r, m), {})
                if res.get("status") != "ok":
                    rows.append([str(r), m, res.get("status", "missing"), "", "", ""])
                    continue
                ratio = res["seconds"] / base["seconds"] if base.get("status") == "ok" else None
                rows.append(
                    [
                        str(r),
                        m,
                        fmt_time(res["seconds"], res["n"], res["warmup_counted"]),
                        fmt_ratio(ratio),
                        fmt_err(res["excess_max"]),
                        fmt_err(res["excess_min"]),
                    ]
                )
                summary.append(
                    {
                        "rank": r,
                        "method": m,
                        "seconds": res["seconds"],
                        "ratio_to_peft_recipe": ratio,
                        "excess_max": res["excess_max"],
                    }
                )
        shapes = ", ".join(f"{s.m}x{s.n}" for s in stack)
        text = "\n".join(
            [
                f"A stack of {len(stack)} float32 weight-like matrices (Marchenko–Pastur, "
                f"half with a rank-16 spike; {shapes}), initialised one after the other. "
                "`÷ PEFT recipe` is the time over that of PEFT's pissa_niter_4 (PyTorch when "
                "installed, else its NumPy port). "
                "Excess = ||W_res||_F / ||σ_{r+1:}|| − 1 (0 is the exact PiSSA).\n",
                "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in METHODS),
                "",
                md_table(
                    [
                        "r",
                        "method",
                        "time s (stack)",
                        "÷ PEFT recipe",
                        "worst excess",
                        "best excess",
                    ],
                    rows,
                ),
            ]
        )
        return text, {"pissa": summary}
