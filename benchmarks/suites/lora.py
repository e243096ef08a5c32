"""Suite 4: the NumPy LoRA layer, forward + backward, against a dense layer of the same shape.

A training step of a LoRA layer (``lowrank.adapter.LoRALinear``, base weight frozen,
factors trainable) against the same step of a fully trained dense layer
(``lowrank.adapter.Linear``), and against the two written out by hand in NumPy (what a
user would do without the package). Tokens x features in float32, as in fine-tuning.

Accuracy: the largest error of the output and of the input gradient against float64
written-out formulas, relative to the largest entry of the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available
from benchmarks.timing import measure

__all__ = ["LoraSuite"]

# (tokens, in, out, rank)
FULL = [(4096, 4096, 4096, 8), (4096, 4096, 4096, 64), (4096, 4096, 11008, 16)]
QUICK = [(64, 96, 80, 4)]
METHODS = ("dense", "lora", "numpy_dense", "numpy_lora")
DESCRIPTIONS = {
    "dense": "lowrank.adapter.Linear (weight and bias trained): forward + backward",
    "lora": "lowrank.adapter.LoRALinear (base frozen, lora_A/lora_B trained): forward + backward",
    "numpy_dense": "the dense step written out in NumPy: y = x W^T + b; dW, db, dx",
    "numpy_lora": "the LoRA step written out in NumPy: y = x W^T + s (x A^T) B^T; dA, dB, dx",
}
ALPHA = 16.0


def _data(tokens: int, d_in: int, d_out: int, r: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    f32 = np.float32
    return {
        "x": rng.standard_normal((tokens, d_in)).astype(f32),
        "g": rng.standard_normal((tokens, d_out)).astype(f32),
        "W": (rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)).astype(f32),
        "b": np.zeros(d_out, f32),
        "A": (rng.standard_normal((r, d_in)) / np.sqrt(d_in)).astype(f32),
        "B": (rng.standard_normal((d_out, r)) / np.sqrt(r)).astype(f32),
    }


def _reference(d: dict[str, np.ndarray], method: str, r: int) -> tuple[np.ndarray, np.ndarray]:
    x, g, W, A, B = (d[k].astype(np.float64) for k in ("x", "g", "W", "A", "B"))
    if "dense" in method:
        return x @ W.T, g @ W
    s = ALPHA / r
    return x @ W.T + s * (x @ A.T) @ B.T, g @ W + s * (g @ B) @ A


def _step_fn(method: str, d: dict[str, np.ndarray], r: int) -> Any:
    x, g, W, b, A, B = (d[k] for k in ("x", "g", "W", "b", "A", "B"))
    s = np.float32(ALPHA / r)
    if method == "dense":
        from lowrank.adapter import Linear

        layer = Linear(W, b)

        def run() -> tuple[np.ndarray, np.ndarray]:
            y = layer.forward(x, training=True)
            return y, layer.backward(g)

        return run
    if method == "lora":
        from lowrank.adapter import LoRALinear

        lora = LoRALinear.from_factors(W, A, B, alpha=ALPHA, bias=b)

        def run_lora() -> tuple[np.ndarray, np.ndarray]:
            y = lora.forward(x, training=True)
            return y, lora.backward(g)

        return run_lora
    if method == "numpy_dense":

        def run_np_dense() -> tuple[np.ndarray, np.ndarray]:
            y = x @ W.T + b
            dW = g.T @ x
            db = g.sum(axis=0)
            dx = g @ W
            del dW, db
            return y, dx

        return run_np_dense

    def run_np_lora() -> tuple[np.ndarray, np.ndarray]:
        xa = x @ A.T
        y = x @ W.T + b + s * (xa @ B.T)
        gb = g @ B
        dB = s * (g.T @ xa)
        dA = s * (gb.T @ x)
        dx = g @ W + s * (gb @ A)
        del dA, dB
        return y, dx

    return run_np_lora


class LoraSuite(Suite):
    name = "lora"
    title = "LoRA layer forward + backward vs a dense layer"

    def available(self) -> tuple[bool, str]:
        if not module_available("lowrank.adapter"):
            return False, "needs lowrank.adapter, not in this checkout yet"
        return True, ""

    def _shapes(self, options: Options) -> list[tuple[int, int, int, int]]:
        return QUICK if options.quick else FULL

    def cases(self, options: Options) -> list[Case]:
        out = []
        for t, i, o, r in self._shapes(options):
            key = f"{t}x{i}->{o}_r{r}"
            for m in METHODS:
                out.append(
                    Case("lora", f"{key}/{m}", f"{key}/{m}", {"shape": [t, i, o, r], "method": m})
                )
        return out

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        t, i, o, r = case.params["shape"]
        method = case.params["method"]
        d = _data(t, i, o, r)
        ref_y, ref_dx = _reference(d, method, r)
        ctx.progress("data")
        acc: dict[str, float] = {}

        def check(out: Any) -> None:
            y, dx = out
            acc["y_err"] = float(np.max(np.abs(y - ref_y)) / np.max(np.abs(ref_y)))
            acc["dx_err"] = float(np.max(np.abs(dx - ref_dx)) / np.max(np.abs(ref_dx)))

        _, timing = measure(
            _step_fn(method, d, r), ctx.options.policy, emit=ctx.emit, after_warmup=check
        )
        flops = 2.0 * t * i * o * (3 if "dense" in method else 2)
        if "lora" in method:
            flops += 2.0 * t * r * (i + o) * 3
        return {**timing.to_dict(), **acc, "gflops": flops / 1e9}

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        by = {}
        for item in results:
            p = item["case"]["params"]
            by[(tuple(p["shape"]), p["method"])] = item["result"]
        rows, summary = [], []
        for shape in self._shapes(options):
            dense = by.get((tuple(shape), "dense"), {})
            for m in METHODS:
                res = by.get((tuple(shape), m), {})
                if res.get("status") != "ok":
                    rows.append(
                        [
                            f"{shape[0]}x{shape[1]}→{shape[2]}",
                            str(shape[3]),
                            m,
                            res.get("status", "missing"),
                            "",
                            "",
                            "",
                            "",
                        ]
                    )
                    continue
                ratio = res["seconds"] / dense["seconds"] if dense.get("status") == "ok" else None
                rows.append(
                    [
                        f"{shape[0]}x{shape[1]}→{shape[2]}",
                        str(shape[3]),
                        m,
                        fmt_time(res["seconds"], res["n"], res["warmup_counted"]),
                        fmt_ratio(ratio),
                        f"{res['gflops'] / res['seconds']:.0f}",
                        fmt_err(res["y_err"]),
                        fmt_err(res["dx_err"]),
                    ]
                )
                if m == "lora":
                    summary.append(
                        {"shape": shape, "seconds": res["seconds"], "ratio_to_dense": ratio}
                    )
        head = [
            "tokens×in→out",
            "r",
            "method",
            "time s",
            "÷ dense",
            "GFLOP/s",
            "output err",
            "input-grad err",
        ]
        text = "\n".join(
            [
                "One training step (forward + backward) of a float32 layer; `÷ dense` is the time "
                "over that of `lowrank.adapter.Linear` on the same shape. Errors are max "
                "|Δ| / max |reference| against float64 written-out formulas.\n",
                "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in METHODS),
                "",
                md_table(head, rows),
            ]
        )
        return text, {"lora": summary}
