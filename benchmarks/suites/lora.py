"""Suite 4: the NumPy LoRA layer's training step against a dense layer of the same shape.

A training step of a LoRA layer (``lowrank.adapter.LoRALinear``, base weight frozen,
factors trainable) against the same step of a fully trained dense layer
(``lowrank.adapter.nn.Linear``), and against the two written out by hand in NumPy (what a
user would do without the package). Tokens x features in float32, as in fine-tuning.

Issue 6's target case comes first: forward + backward of a 4096 x 4096 layer, r = 16, a
batch of 512 tokens, in at most 0.75x the time of the dense layer trained in full, with
optimizer state proportional to r (in + out). For that case the suite also times the whole
training step with the AdamW update (``lowrank.adapter.nn.AdamW``, and AdamW written out in
NumPy with in-place updates), split into forward, backward and update. For every shape it
records the bytes of the optimizers' state after one step (AdamW: two slots per trained
scalar; SGD with momentum: one).

Each case times a dense step and its LoRA counterpart alternately in one process, and
takes their ratio per round (the machine is shared: both sides then see the same load).

Accuracy: the largest error of the output and of the input gradient against float64
written-out formulas, relative to the largest entry of the reference.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import numpy as np

from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available
from benchmarks.timing import TimingPolicy

__all__ = ["LoraSuite"]

# (tokens, in, out, rank); the first is issue 6's target case.
ISSUE_CASE = (512, 4096, 4096, 16)
FULL = [
    (512, 4096, 4096, 16),
    (4096, 4096, 4096, 8),
    (4096, 4096, 4096, 64),
    (4096, 4096, 11008, 16),
]
QUICK = [(64, 96, 80, 4)]
TARGET_RATIO = 0.75
METHODS = ("dense", "lora", "numpy_dense", "numpy_lora")
# The whole training step (forward, backward, AdamW update), for the target shape only.
TRAIN_METHODS = ("dense_adamw", "lora_adamw", "numpy_dense_adamw", "numpy_lora_adamw")
# Each case times a dense step and its LoRA counterpart in alternation, in one process, so
# that both see the same load (the machine is shared) and their ratio is taken per round.
PAIRS = (("dense", "lora"), ("numpy_dense", "numpy_lora"))
TRAIN_PAIRS = (("dense_adamw", "lora_adamw"), ("numpy_dense_adamw", "numpy_lora_adamw"))
# Rounds on the first (cheap: under a second per step) shape; the others use --repeat (3).
FIRST_SHAPE_ROUNDS = 7
DESCRIPTIONS = {
    "dense": "lowrank.adapter.nn.Linear (weight and bias trained): forward + backward",
    "lora": "lowrank.adapter.LoRALinear (base frozen, lora_A/lora_B trained): forward + backward",
    "numpy_dense": "the dense step written out in NumPy: y = x W^T + b; dW, db, dx",
    "numpy_lora": "the LoRA step written out in NumPy: y = x W^T + s (x A^T) B^T; dA, dB, dx",
    "dense_adamw": "`dense`, then lowrank.adapter.nn.AdamW.step(layer.trainable_parameters(), "
    "layer.gradients())",
    "lora_adamw": "`lora`, then the same AdamW step (on lora_A and lora_B only)",
    "numpy_dense_adamw": "`numpy_dense`, then AdamW written out in NumPy (in-place ufuncs "
    "with out=, one preallocated scratch array per parameter)",
    "numpy_lora_adamw": "`numpy_lora`, then the same written-out AdamW on A and B",
}
ALPHA = 16.0
LR = 1e-4
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 1e-2
SGD_MOMENTUM = 0.9
ITEMSIZE = 4  # float32


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


class _NumpyAdamW:
    """AdamW as ``torch.optim.AdamW`` (and ``lowrank.adapter.nn.AdamW``) computes it, written
    out with in-place ufuncs: state ``exp_avg``, ``exp_avg_sq`` per parameter, plus one
    scratch array per parameter (a work buffer, not state: it is not counted)."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.steps = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.steps += 1
        b1, b2 = BETAS
        for k, g in grads.items():
            p = params[k]
            t = p.dtype.type
            if k not in self.state:
                self.state[k] = (np.zeros_like(p), np.zeros_like(p), np.empty_like(p))
            m, v, tmp = self.state[k]
            np.multiply(p, t(1.0 - LR * WEIGHT_DECAY), out=p)
            np.multiply(m, t(b1), out=m)
            np.multiply(g, t(1.0 - b1), out=tmp)
            np.add(m, tmp, out=m)
            np.multiply(v, t(b2), out=v)
            np.multiply(g, g, out=tmp)
            np.multiply(tmp, t(1.0 - b2), out=tmp)
            np.add(v, tmp, out=v)
            np.sqrt(v, out=tmp)
            np.multiply(tmp, t(1.0 / math.sqrt(1.0 - b2**self.steps)), out=tmp)
            np.add(tmp, t(EPS), out=tmp)
            np.divide(m, tmp, out=tmp)
            np.multiply(tmp, t(LR / (1.0 - b1**self.steps)), out=tmp)
            np.subtract(p, tmp, out=p)

    def state_nbytes(self) -> int:
        return sum(m.nbytes + v.nbytes for m, v, _ in self.state.values())


class _Parts:
    """Seconds of the forward, backward and update phases of each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []
        self._t = 0.0
        self._now: dict[str, float] = {}

    def start(self) -> None:
        self._now = {}
        self._t = time.perf_counter()

    def mark(self, phase: str) -> None:
        t = time.perf_counter()
        self._now[phase] = t - self._t
        self._t = t

    def end(self) -> None:
        self.calls.append(self._now)

    def medians(self, skip_warmup: bool) -> dict[str, float]:
        calls = self.calls[1:] if skip_warmup and len(self.calls) > 1 else self.calls
        if not calls:
            return {}
        return {k: statistics.median(c[k] for c in calls) for k in calls[0]}


def _step_fn(method: str, d: dict[str, np.ndarray], r: int, parts: _Parts) -> tuple[Any, Any, Any]:
    """The step to time, the lowrank layer (or None) and the optimizer (or None)."""
    x, g, b = d["x"], d["g"], d["b"]
    # Private copies: a training step updates its parameters in place.
    W, A, B = d["W"], d["A"].copy(), d["B"].copy()
    s = np.float32(ALPHA / r)
    train = method.endswith("_adamw")
    base = method.removesuffix("_adamw")
    if base in ("dense", "lora"):
        from lowrank.adapter import LoRALinear
        from lowrank.adapter.nn import AdamW, Linear

        layer: Any = (
            Linear(W, b)
            if base == "dense"
            else LoRALinear.from_factors(W, A, B, alpha=ALPHA, bias=b)
        )
        opt = AdamW(LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY) if train else None

        def run() -> tuple[np.ndarray, np.ndarray]:
            parts.start()
            y = layer.forward(x, training=True)
            parts.mark("forward")
            dx = layer.backward(g)
            parts.mark("backward")
            if opt is not None:
                opt.step(layer.trainable_parameters(), layer.gradients())
                parts.mark("update")
            parts.end()
            return y, dx

        return run, layer, opt

    nopt = _NumpyAdamW() if train else None
    if base == "numpy_dense":
        Wt, bt = W.copy(), b.copy()

        def run_np_dense() -> tuple[np.ndarray, np.ndarray]:
            parts.start()
            y = x @ Wt.T + bt
            parts.mark("forward")
            dW = g.T @ x
            db = g.sum(axis=0)
            dx = g @ Wt
            parts.mark("backward")
            if nopt is not None:
                nopt.step({"W": Wt, "b": bt}, {"W": dW, "b": db})
                parts.mark("update")
            parts.end()
            return y, dx

        return run_np_dense, None, nopt

    def run_np_lora() -> tuple[np.ndarray, np.ndarray]:
        parts.start()
        xa = x @ A.T
        y = x @ W.T + b + s * (xa @ B.T)
        parts.mark("forward")
        gb = g @ B
        dB = s * (g.T @ xa)
        dA = s * (gb.T @ x)
        dx = g @ W + s * (gb @ A)
        parts.mark("backward")
        if nopt is not None:
            nopt.step({"A": A, "B": B}, {"A": dA, "B": dB})
            parts.mark("update")
        parts.end()
        return y, dx

    return run_np_lora, None, nopt


def _optimizer_bytes(layer: Any) -> dict[str, int]:
    """State bytes of AdamW and of SGD with momentum after one step on ``layer``'s last
    gradients (untimed; the layer's trainable parameters are updated)."""
    from lowrank.adapter.nn import SGD, AdamW

    out = {}
    for name, opt in (
        ("adamw", AdamW(LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)),
        ("sgd_momentum", SGD(LR, momentum=SGD_MOMENTUM)),
    ):
        opt.step(layer.trainable_parameters(), layer.gradients())
        out[name] = opt.state_nbytes()
    out["trainable_scalars"] = layer.num_trainable_parameters()
    return out


def _expected_bytes(shape: tuple[int, ...], method: str, slots: int) -> int:
    """Optimizer state of ``slots`` float32 arrays per trained scalar: ``in·out + out``
    (weight and bias) for the dense layer, ``r·(in + out)`` for LoRA."""
    _, i, o, r = shape
    scalars = i * o + o if "dense" in method else r * (i + o)
    return slots * ITEMSIZE * scalars


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}→{shape[2]}"


def _mib(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 2**10:.3g} KiB"


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
        for n, (t, i, o, r) in enumerate(self._shapes(options)):
            key = f"{t}x{i}->{o}_r{r}"
            for a, b in PAIRS + (TRAIN_PAIRS if n == 0 else ()):
                cid = f"{key}/{a}_vs_{b}"
                params = {"shape": [t, i, o, r], "pair": [a, b], "first": n == 0}
                out.append(Case("lora", cid, cid, params))
        return out

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        t, i, o, r = case.params["shape"]
        names = list(case.params["pair"])
        d = _data(t, i, o, r)
        ctx.progress("data")
        policy: TimingPolicy = ctx.options.policy
        rounds = policy.repeat
        if case.params.get("first") and not ctx.options.quick:
            rounds = max(rounds, FIRST_SHAPE_ROUNDS)
        members: dict[str, dict[str, Any]] = {}
        fns, layers, opts, parts = {}, {}, {}, {}
        for m in names:
            parts[m] = _Parts()
            fns[m], layers[m], opts[m] = _step_fn(m, d, r, parts[m])
        # Warm-up calls, checked against float64 formulas and not timed.
        for m in names:
            ref_y, ref_dx = _reference(d, m, r)
            start = time.perf_counter()
            y, dx = fns[m]()
            warm = time.perf_counter() - start
            ctx.emit({"event": "call", "seconds": warm, "warmup": True})
            members[m] = {
                "status": "ok",
                "warmup": warm,
                "times": [],
                "warmup_counted": False,
                "y_err": float(np.max(np.abs(y - ref_y)) / np.max(np.abs(ref_y))),
                "dx_err": float(np.max(np.abs(dx - ref_dx)) / np.max(np.abs(ref_dx))),
            }
            del y, dx, ref_y, ref_dx
        # Timed rounds, alternating which of the two goes first.
        for k in range(rounds):
            for m in names if k % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                fns[m]()
                elapsed = time.perf_counter() - start
                members[m]["times"].append(elapsed)
                ctx.emit({"event": "call", "seconds": elapsed})
        a, b = names
        ratios = [tb / ta for ta, tb in zip(members[a]["times"], members[b]["times"], strict=True)]
        for m in names:
            res = members[m]
            res["seconds"] = statistics.median(res["times"])
            res["n"] = len(res["times"])
            flops = 2.0 * t * i * o * (3 if "dense" in m else 2)
            if "lora" in m:
                flops += 2.0 * t * r * (i + o) * 3
            res["gflops"] = flops / 1e9
            res["parts"] = parts[m].medians(skip_warmup=True)
            if opts[m] is not None:
                res["state_nbytes"] = opts[m].state_nbytes()
            if m in ("dense", "lora"):
                res["optimizer_bytes"] = _optimizer_bytes(layers[m])
        return {
            "pair": names,
            "rounds": rounds,
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "members": members,
        }

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        shapes = self._shapes(options)
        by: dict[tuple[tuple[int, ...], str], dict[str, Any]] = {}
        paired: dict[tuple[tuple[int, ...], str, str], float] = {}
        for item in results:
            p, res = item["case"]["params"], item["result"]
            shape, (a, b) = tuple(p["shape"]), p["pair"]
            if res.get("status") == "ok" and "members" in res:
                for m, member in res["members"].items():
                    by[(shape, m)] = member
                paired[(shape, b, a)] = res["ratio"]
            else:
                for m in (a, b):
                    by[(shape, m)] = {"status": res.get("status", "missing")}

        def ok(shape: tuple[int, ...], m: str) -> dict[str, Any] | None:
            res = by.get((shape, m))
            return res if res and res.get("status") == "ok" else None

        def ratio(shape: tuple[int, ...], m: str, base: str) -> float | None:
            """The median of the per-round ratios for a pair, else the ratio of medians."""
            if (shape, m, base) in paired:
                return paired[(shape, m, base)]
            a, b = ok(shape, m), ok(shape, base)
            return a["seconds"] / b["seconds"] if a and b else None

        def verdict(x: float | None) -> str:
            return "n/a" if x is None else f"{fmt_ratio(x)} {'✓' if x <= TARGET_RATIO else '✗'}"

        # Targets: time ratio per shape; whole training step and state for the first shape.
        target_rows, targets = [], []
        for n, shape in enumerate(shapes):
            dense, lora = ok(shape, "dense"), ok(shape, "lora")
            rt = ratio(shape, "lora", "dense")
            rt_np = ratio(shape, "numpy_lora", "numpy_dense")
            rt_train = ratio(shape, "lora_adamw", "dense_adamw") if n == 0 else None
            rt_train_np = ratio(shape, "numpy_lora_adamw", "numpy_dense_adamw") if n == 0 else None
            lb = (lora or {}).get("optimizer_bytes", {}).get("adamw")
            lexp = _expected_bytes(shape, "lora", 2)
            db = (dense or {}).get("optimizer_bytes", {}).get("adamw")
            mem_ok = lb is not None and lb == lexp
            target_rows.append(
                [
                    _shape_text(shape) + (" (issue 6)" if tuple(shape) == ISSUE_CASE else ""),
                    str(shape[3]),
                    fmt_time(dense["seconds"]) if dense else "",
                    fmt_time(lora["seconds"]) if lora else "",
                    verdict(rt),
                    fmt_ratio(rt_np),
                    verdict(rt_train) if n == 0 else "",
                    fmt_ratio(rt_train_np),
                    f"{_mib(lb)} ({'✓' if mem_ok else '✗'})" if lb is not None else "n/a",
                    _mib(db),
                ]
            )
            targets.append(
                {
                    "shape": list(shape),
                    "issue_target_case": tuple(shape) == ISSUE_CASE,
                    "dense_seconds": dense["seconds"] if dense else None,
                    "lora_seconds": lora["seconds"] if lora else None,
                    "ratio_to_dense": rt,
                    "met": rt is not None and rt <= TARGET_RATIO,
                    "numpy_ratio": rt_np,
                    "train_step_ratio": rt_train,
                    "numpy_train_step_ratio": rt_train_np,
                    "lora_adamw_state_bytes": lb,
                    "lora_adamw_state_expected": lexp,
                    "dense_adamw_state_bytes": db,
                    "state_proportional": mem_ok,
                }
            )
        target_head = [
            "tokens×in→out",
            "r",
            "dense s",
            "lora s",
            f"lora ÷ dense (≤{TARGET_RATIO})",
            "NumPy: lora ÷ dense",
            f"with AdamW: lora ÷ dense (≤{TARGET_RATIO})",
            "NumPy with AdamW",
            "LoRA AdamW state (= 8·r·(in+out) B)",
            "dense AdamW state",
        ]

        # Optimizer state after one step, every shape.
        mem_rows, mem_summary = [], []
        for shape in shapes:
            for m in ("dense", "lora"):
                res = ok(shape, m)
                ob = (res or {}).get("optimizer_bytes")
                if not ob:
                    continue
                row = [_shape_text(shape), str(shape[3]), m, f"{ob['trainable_scalars']:,}"]
                entry: dict[str, Any] = {"shape": list(shape), "method": m, **ob}
                for opt, slots in (("adamw", 2), ("sgd_momentum", 1)):
                    exp = _expected_bytes(shape, m, slots)
                    row += [f"{ob[opt]:,}", f"{exp:,}", "✓" if ob[opt] == exp else "✗"]
                    entry[f"{opt}_expected"] = exp
                mem_rows.append(row)
                mem_summary.append(entry)
        mem_head = [
            "tokens×in→out",
            "r",
            "layer",
            "trained scalars",
            "AdamW state B",
            "expected",
            "=",
            "SGD momentum state B",
            "expected",
            "=",
        ]

        # Whole training step of the first shape, by phase.
        train_rows, train_summary = [], []
        shape0 = tuple(shapes[0])
        for m in TRAIN_METHODS:
            res = by.get((shape0, m), {})
            if res.get("status") != "ok":
                train_rows.append([m, res.get("status", "missing"), "", "", "", "", "", ""])
                continue
            p = res.get("parts", {})
            rt = ratio(shape0, m, "dense_adamw")
            train_rows.append(
                [
                    m,
                    fmt_time(res["seconds"], res["n"], res["warmup_counted"]),
                    fmt_ratio(rt),
                    fmt_time(p.get("forward")),
                    fmt_time(p.get("backward")),
                    fmt_time(p.get("update")),
                    _mib(res.get("state_nbytes")),
                    f"{fmt_err(res['y_err'])} / {fmt_err(res['dx_err'])}",
                ]
            )
            train_summary.append(
                {"method": m, "seconds": res["seconds"], "ratio_to_dense": rt, "parts": p}
            )
        train_head = [
            "method",
            "step s",
            "÷ dense_adamw",
            "forward",
            "backward",
            "update",
            "optimizer state",
            "output / input-grad err",
        ]

        # Forward + backward, every shape.
        rows, summary = [], []
        for shape in shapes:
            for m in METHODS:
                res = by.get((tuple(shape), m), {})
                if res.get("status") != "ok":
                    rows.append(
                        [_shape_text(shape), str(shape[3]), m, res.get("status", "missing")]
                        + [""] * 5
                    )
                    continue
                rt = ratio(tuple(shape), m, "dense")
                p = res.get("parts", {})
                rows.append(
                    [
                        _shape_text(shape),
                        str(shape[3]),
                        m,
                        fmt_time(res["seconds"], res["n"], res["warmup_counted"]),
                        fmt_ratio(rt),
                        f"{fmt_time(p.get('forward'))} / {fmt_time(p.get('backward'))}",
                        f"{res['gflops'] / res['seconds']:.0f}",
                        fmt_err(res["y_err"]),
                        fmt_err(res["dx_err"]),
                    ]
                )
                if m == "lora":
                    summary.append(
                        {"shape": list(shape), "seconds": res["seconds"], "ratio_to_dense": rt}
                    )
        head = [
            "tokens×in→out",
            "r",
            "method",
            "time s",
            "÷ dense",
            "forward / backward",
            "GFLOP/s",
            "output err",
            "input-grad err",
        ]
        text = "\n".join(
            [
                "### Targets\n",
                "Issue 6: forward + backward of a 4096×4096 LoRA layer, r = 16, 512 tokens, "
                f"float32 (the first row; {_shape_text(shape0)}, r = {shape0[3]} in this run) "
                f"in at most {TARGET_RATIO}× the time of the same dense layer trained in "
                "full, with optimizer state proportional to r·(in + out). The other shapes "
                "are held to the same ratio. `NumPy: lora ÷ dense` is that ratio for the "
                "steps written out in NumPy (what the BLAS allows); `with AdamW` times the "
                "whole training step, optimizer update included (first shape only). State: "
                "`AdamW.state_nbytes()` after one step, ✓ when it is exactly 2 float32 slots "
                "× r·(in + out).\n\n"
                "Timing: each case runs a dense step and its LoRA counterpart (`dense` and "
                "`lora`, `numpy_dense` and `numpy_lora`, and the same with AdamW) in one "
                "process: one checked warm-up call each, then timed rounds of one call each, "
                "alternating which goes first "
                f"({FIRST_SHAPE_ROUNDS} rounds on the first shape, `--repeat` (3) on the "
                "others; one with `--quick`). Times are medians over the rounds; a LoRA ÷ "
                "dense ratio within a pair is the median of the per-round ratios, so both "
                "sides see the same load on a shared machine.\n",
                md_table(target_head, target_rows),
                "",
                "Methods (`÷ dense` divides by the time of the lowrank dense layer on the same "
                "shape, per round within a pair; errors are max |Δ| / max |reference| against "
                "float64 written-out formulas):\n",
                "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in METHODS + TRAIN_METHODS),
                "",
                f"### Training step with AdamW ({_shape_text(shape0)}, r = {shape0[3]})\n",
                "Forward + backward + optimizer update (lr "
                f"{LR:g}, betas {BETAS}, eps {EPS:g}, weight decay {WEIGHT_DECAY:g}); the "
                "phases are medians over the timed calls. The update is a dozen element-wise "
                "passes over arrays of the trained parameters' size, which NumPy runs on one "
                "thread.\n",
                md_table(train_head, train_rows),
                "",
                "### Optimizer state after one step\n",
                "Bytes of the state arrays of `lowrank.adapter.nn.AdamW` (`exp_avg`, "
                f"`exp_avg_sq`) and `SGD(momentum={SGD_MOMENTUM})` (`momentum_buffer`) after "
                "one step on the layer's gradients; expected = slots × 4 B × trained scalars "
                "(dense: in·out + out, weight and bias; LoRA: r·(in + out), the base frozen).\n",
                md_table(mem_head, mem_rows),
                "",
                "### Forward + backward\n",
                "Forward + backward of a float32 layer, no update; the phases are medians "
                "over the timed calls.\n",
                md_table(head, rows),
            ]
        )
        return text, {
            "targets": targets,
            "train_step": train_summary,
            "optimizer_state": mem_summary,
            "lora": summary,
        }
