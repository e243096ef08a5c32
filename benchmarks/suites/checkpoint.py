"""Suite 3: analysing a whole checkpoint with ``lowrank.analysis`` against a naive loop.

Checkpoints (``CHECKPOINTS``):

* ``minilm``: the real all-MiniLM-L6-v2 ``model.safetensors`` (40 float32 matrices, 91 MB;
  :func:`lowrank.examples.fetch_minilm`, downloaded once into lowrank's cache). When it
  cannot be fetched its cases are reported ``absent`` with the reason; ``--quick`` leaves
  it out.
* ``bf16``: a synthetic bfloat16 checkpoint of more than 10⁹ bytes shaped like
  Qwen2.5-0.5B (hidden 896, MLP 4864, grouped-query k/v of 128 x 896, a 151936 x 896
  embedding), with 25 layers instead of 24 so that it passes 10⁹ bytes.
* ``f16``: a smaller synthetic float16 checkpoint (4 layers, 1024 / 2816).

Synthetic weights have weight-like spectra: Gaussian / sqrt(max(m, n)) (a Marchenko–Pastur
bulk) plus 8 spikes about 4x the bulk edge, generated in float32 blocks of rows and rounded
to the stored dtype, and written once to the cache with :func:`lowrank.io.save_safetensors`.

Timed, each in its own worker process:

* ``lowrank_analyze``: :func:`lowrank.analysis.analyze` (default executor: worker processes
  on the available cores, one matrix per task, each loading its own tensor);
* ``naive_loop``: what one writes without the package — ``safetensors.numpy.load_file``,
  then for each 2-D floating tensor ``numpy.linalg.svd(W.astype(float32),
  compute_uv=False)`` and the tail norms of the rank–error curve. For bfloat16 the loader
  needs ``import ml_dtypes`` first (without it safetensors 0.8 raises ``TypeError: data
  type 'bfloat16' not understood``), so the loop imports it;
* ``naive_loop_scipy``: the same with ``scipy.linalg.svdvals`` (not on ``bf16``, where it
  would add minutes and answer no target).

Both report a progress event per matrix, so the per-call timeout bounds one matrix, not the
whole checkpoint (with keep-alives for a single slow matrix, up to 10x the timeout:
``_Events``).

Accuracy: the largest error of the singular values over sigma_1 and of the rank–error curve
over ``||W||_F``, against ``scipy.linalg.svdvals`` of the float64 upcast of each stored
matrix (cached next to the checkpoint), worst over the matrices with a reference. On
``bf16`` the references cover a fixed sample (``_reference_names``).

Memory: the peak of the summed ``VmRSS`` of the measuring process and all its descendants
(the analysis's worker processes), sampled every 20 ms over the warm-up and timed calls
(:class:`benchmarks.memory.TreeRSS`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy import curve_errors
from benchmarks.memory import TreeRSS
from benchmarks.report import fmt_err, fmt_ratio, fmt_time, md_table
from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available
from benchmarks.timing import measure

__all__ = ["CheckpointSuite"]

RATIO_TARGET = 0.3
RSS_FACTOR = 3
RSS_EXTRA = 200_000_000  # bytes ("+ 200 MB")
SPIKES = 8
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
MIB = 2**20

ALL_METHODS = ("lowrank_analyze", "naive_loop", "naive_loop_scipy")
DESCRIPTIONS = {
    "lowrank_analyze": "lowrank.analysis.analyze(path) with its default executor",
    "naive_loop": "import ml_dtypes; safetensors.numpy.load_file, then "
    "numpy.linalg.svd(W.astype(float32), compute_uv=False) and the tail norms, matrix by "
    "matrix",
    "naive_loop_scipy": "the same with scipy.linalg.svdvals",
}


@dataclass(frozen=True)
class Synthetic:
    """A synthetic transformer-shaped checkpoint (``vocab=0``: no embedding)."""

    dtype: str
    layers: int
    d: int
    f: int
    kv: int
    vocab: int = 0
    sample_refs: bool = False

    @property
    def stem(self) -> str:
        return f"ckpt_v2_{self.dtype}_L{self.layers}_d{self.d}_f{self.f}_kv{self.kv}_V{self.vocab}"

    def shapes(self) -> dict[str, tuple[int, int]]:
        d, f, kv = self.d, self.f, self.kv
        out: dict[str, tuple[int, int]] = {}
        if self.vocab:
            out["model.embed_tokens.weight"] = (self.vocab, d)
        for layer in range(self.layers):
            p = f"model.layers.{layer}"
            out[f"{p}.self_attn.q_proj.weight"] = (d, d)
            out[f"{p}.self_attn.k_proj.weight"] = (kv, d)
            out[f"{p}.self_attn.v_proj.weight"] = (kv, d)
            out[f"{p}.self_attn.o_proj.weight"] = (d, d)
            out[f"{p}.mlp.gate_proj.weight"] = (f, d)
            out[f"{p}.mlp.up_proj.weight"] = (f, d)
            out[f"{p}.mlp.down_proj.weight"] = (d, f)
        return out

    def nbytes(self) -> int:
        item = 2 if self.dtype in ("float16", "bfloat16") else np.dtype(self.dtype).itemsize
        return sum(m * n for m, n in self.shapes().values()) * item

    def describe(self) -> str:
        emb = f", a {self.vocab}x{self.d} embedding" if self.vocab else ""
        return (
            f"{self.layers} layers of q/o {self.d}x{self.d}, k/v {self.kv}x{self.d}, gate/up "
            f"{self.f}x{self.d}, down {self.d}x{self.f}{emb}"
        )


FULL: dict[str, Synthetic] = {
    "bf16": Synthetic("bfloat16", 25, 896, 4864, 128, 151936, sample_refs=True),
    "f16": Synthetic("float16", 4, 1024, 2816, 1024),
}
QUICK: dict[str, Synthetic] = {
    "bf16": Synthetic("bfloat16", 3, 48, 80, 16, 400, sample_refs=True),
    "f16": Synthetic("float16", 2, 48, 80, 48),
}
CHECKPOINTS = ("minilm", "bf16", "f16")
TARGET_CHECKPOINTS = ("minilm", "bf16")  # the cases; f16 is for comparison only
LABELS = {
    "minilm": "MiniLM-L6 (real, float32)",
    "bf16": "Qwen2.5-0.5B-like (bfloat16)",
    "f16": "small (float16)",
}


def _methods(checkpoint: str, quick: bool) -> tuple[str, ...]:
    if checkpoint == "bf16" and not quick:
        return ALL_METHODS[:2]
    return ALL_METHODS


def _reference_names(spec: Synthetic) -> list[str]:
    """The matrices given a float64 reference: all, or for ``sample_refs`` the embedding,
    every matrix of layer 0, and one matrix of each later layer (cycling through the 7
    kinds, so that every kind is checked in several layers)."""
    names = list(spec.shapes())
    if not spec.sample_refs:
        return names
    per_layer = 7
    offset = 1 if spec.vocab else 0
    keep = names[:offset] + names[offset : offset + per_layer]
    for layer in range(1, spec.layers):
        keep.append(names[offset + layer * per_layer + (layer - 1) % per_layer])
    return keep


def _ref_path(options: Options, checkpoint: str) -> Path:
    if checkpoint == "minilm":
        return options.cache / "minilm_l6_v2_ref.npz"
    return options.cache / f"{_synthetic(options, checkpoint).stem}_ref.npz"


def _synthetic(options: Options, checkpoint: str) -> Synthetic:
    return (QUICK if options.quick else FULL)[checkpoint]


def _unavailable_marker(options: Options) -> Path:
    return options.cache / "minilm_l6_v2.unavailable"


def _checkpoint_path(options: Options, checkpoint: str) -> Path:
    if checkpoint == "minilm":
        from lowrank.examples import fetch_minilm

        return fetch_minilm()  # the cached file, once fetched; no network then
    return options.cache / f"{_synthetic(options, checkpoint).stem}.safetensors"


# --- building -----------------------------------------------------------------------------


def _weight(rng: np.random.Generator, m: int, n: int, dtype: Any, rows: int = 8192) -> Any:
    """Gaussian / sqrt(max(m, n)) plus a rank-8 spike term, in blocks of rows, rounded to
    ``dtype`` (so building needs the stored matrix plus one float32 block)."""
    k, big = min(m, n), max(m, n)
    scale = np.float32(1.0 / math.sqrt(big))
    strength = 4.0 * (1.0 + math.sqrt(k / big))  # about 4x the bulk edge
    u = rng.standard_normal((m, SPIKES), dtype=np.float32)
    v = (rng.standard_normal((SPIKES, n)) * (strength / math.sqrt(m * n))).astype(np.float32)
    out = np.empty((m, n), dtype=dtype)
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        block = rng.standard_normal((stop - start, n), dtype=np.float32)
        block *= scale
        block += u[start:stop] @ v
        out[start:stop] = block  # rounds to the stored dtype
    return out


def _np_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _build(spec: Synthetic, path: Path, progress: Callable[[str], None]) -> None:
    from lowrank.io import save_safetensors

    dtype = _np_dtype(spec.dtype)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, (m, n) in spec.shapes().items():
        tensors[name] = _weight(rng, m, n, dtype)
        progress(f"generated {name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(path, tensors, metadata={"generator": "benchmarks.suites.checkpoint"})


def _write_references(path: Path, ref_path: Path, names: list[str], progress: Any) -> None:
    """``scipy.linalg.svdvals`` of the float64 upcast of each stored matrix in ``names``."""
    import ml_dtypes  # noqa: F401  (safetensors reads bfloat16 through it)
    import scipy.linalg as sla
    from safetensors import safe_open

    refs = {}
    with safe_open(str(path), framework="np") as fh:
        for name in names:
            a = fh.get_tensor(name).astype(np.float64)
            refs[name] = sla.svdvals(a, overwrite_a=True, check_finite=False)
            del a
            progress(f"reference {name}")
    temp = ref_path.with_name(ref_path.name + ".tmp.npz")
    np.savez(temp, **refs)
    os.replace(temp, ref_path)


class _Events:
    """Events to the parent, serialised, plus a keep-alive every ``every`` seconds from a
    thread while the last real event is less than ``limit`` seconds old.

    The parent kills a case that reports nothing for ``--timeout`` seconds (60). Here one
    step can take longer without being hung: the float64 SVD of the 151936 x 896 embedding
    for the reference, or ``numpy.linalg.svd`` of it in the naive loop on a busy machine.
    The keep-alives cover such a step for up to ``limit`` seconds; a step that takes
    longer is still killed.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None], limit: float) -> None:
        self._emit = emit
        self._limit = limit
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = ("start", time.monotonic())
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._last = (str(event.get("what", event.get("event"))), time.monotonic())
            self._emit(event)

    def progress(self, what: str) -> None:
        self.emit({"event": "progress", "what": what})

    def _beat(self, every: float = 10.0) -> None:
        while not self._stop.wait(every):
            with self._lock:
                what, when = self._last
                if time.monotonic() - when < self._limit:
                    self._emit({"event": "progress", "what": f"still busy after {what}"})

    def __enter__(self) -> _Events:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _events(ctx: WorkerContext) -> _Events:
    return _Events(ctx.emit, limit=10 * ctx.options.call_timeout)


def _prepare(checkpoint: str, ctx: WorkerContext) -> dict[str, Any]:
    options = ctx.options
    ref_path = _ref_path(options, checkpoint)
    with _events(ctx) as events:
        progress = events.progress
        if checkpoint == "minilm":
            from lowrank.errors import LowRankError
            from lowrank.examples import fetch_minilm

            marker = _unavailable_marker(options)
            try:
                path = fetch_minilm()
            except (LowRankError, OSError) as exc:
                reason = f"the MiniLM checkpoint could not be fetched: {exc}"
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(reason)
                return {"status": "absent", "error": reason}
            marker.unlink(missing_ok=True)
            if not ref_path.exists():
                from lowrank.io import select

                names = [info.name for info in select(path).matrices]
                _write_references(path, ref_path, names, progress)
        else:
            spec = _synthetic(options, checkpoint)
            path = _checkpoint_path(options, checkpoint)
            if not path.exists():
                _build(spec, path, progress)
            if not ref_path.exists():
                _write_references(path, ref_path, _reference_names(spec), progress)
    return {"file_bytes": path.stat().st_size}


# --- the timed calls ----------------------------------------------------------------------


def _naive(path: Path, scipy: bool, progress: Callable[[str], None]) -> dict[str, np.ndarray]:
    import ml_dtypes  # noqa: F401  (lets safetensors' NumPy loader read bfloat16)
    import scipy.linalg as sla
    from safetensors.numpy import load_file

    out = {}
    for name, w in load_file(str(path)).items():
        if w.ndim != 2 or w.dtype.name not in FLOAT_DTYPES:
            continue
        a = w.astype(np.float32)
        s = sla.svdvals(a) if scipy else np.linalg.svd(a, compute_uv=False)
        s = s.astype(np.float64)
        tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1])  # the rank-error curve
        del tails
        out[name] = s
        progress(name)
    return out


def _analyze(path: Path, progress: Callable[[str], None]) -> dict[str, np.ndarray]:
    from lowrank.analysis import analyze

    report = analyze(path, on_result=lambda outcome, run: progress(outcome.name))
    if report.skipped and any(s.code == "error" for s in report.skipped):
        failed = [f"{s.name}: {s.reason}" for s in report.skipped if s.code == "error"]
        raise RuntimeError(f"analyze failed on {len(failed)} matrices: {failed[:3]}")
    return {r.name: np.asarray(r.singular_values, dtype=np.float64) for r in report.matrices}


def _run(case: Case, ctx: WorkerContext) -> dict[str, Any]:
    options, checkpoint = ctx.options, case.params["checkpoint"]
    if checkpoint == "minilm":
        if options.quick:
            return {"status": "absent", "error": "not in --quick (synthetic checkpoints only)"}
        marker = _unavailable_marker(options)
        if marker.exists():
            return {"status": "absent", "error": marker.read_text()}
    path = _checkpoint_path(options, checkpoint)
    ref_path = _ref_path(options, checkpoint)
    if not (path.exists() and ref_path.exists()):
        return {"status": "error", "error": f"not prepared: {path} or {ref_path} is missing"}
    from lowrank.io import select

    matrices = select(path).matrices
    largest = max(matrices, key=lambda info: info.shape[0] * info.shape[1])
    refs = dict(np.load(ref_path))
    method = case.params["method"]

    events = _events(ctx)
    progress = events.progress
    if method == "lowrank_analyze":
        fn = lambda: _analyze(path, progress)  # noqa: E731
    else:
        fn = lambda: _naive(path, method.endswith("scipy"), progress)  # noqa: E731
    acc: dict[str, Any] = {}

    def check(out: dict[str, np.ndarray]) -> None:
        missing = sorted(set(refs) - set(out))
        if missing:
            raise RuntimeError(f"no singular values for {len(missing)} matrices: {missing[:3]}")
        errs = [curve_errors(out[name], ref) for name, ref in refs.items()]
        acc["max_abs_over_s1"] = max(e["max_abs_over_s1"] for e in errs)
        acc["curve_over_fro"] = max(e["curve_over_fro"] for e in errs)
        acc["matrices"] = len(out)
        acc["checked"] = len(refs)

    load_before = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    with events, TreeRSS() as mem:
        _, timing = measure(fn, options.policy, emit=events.emit, after_warmup=check)
    calls = timing.n + (0 if timing.warmup_counted else 1)
    return {
        **timing.to_dict(),
        **acc,
        **mem.to_dict(),
        "file_bytes": path.stat().st_size,
        "largest_name": largest.name,
        "largest_shape": list(largest.shape),
        "largest_f64_bytes": 8 * largest.shape[0] * largest.shape[1],
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "cpu_seconds_per_call": (_cpu_seconds() - cpu_before) / calls,
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the analysis's
    workers are joined when its pool shuts down), so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --- the suite ----------------------------------------------------------------------------


_FIELDS = ("seconds", "n", "matrices", "checked", "max_abs_over_s1", "curve_over_fro",
           "largest_f64_bytes", "largest_shape")  # fmt: skip


def _mib(x: float | None) -> str:
    return "" if x is None else f"{x / MIB:,.0f}"


def _fmt_cpu(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def _fmt_load(x: list[float] | None) -> str:
    return "" if not x else " → ".join(f"{v:.1f}" for v in x)


class CheckpointSuite(Suite):
    name = "checkpoint"
    title = "Whole-checkpoint analysis vs a naive loop"

    def available(self) -> tuple[bool, str]:
        needed = ("lowrank.analysis", "lowrank.examples", "safetensors", "ml_dtypes")
        missing = [m for m in needed if not module_available(m)]
        if missing:
            return False, f"needs {', '.join(missing)}"
        return True, ""

    def prepare(self, options: Options) -> list[Case]:
        names = [c for c in CHECKPOINTS if not (options.quick and c == "minilm")]
        return [
            Case("checkpoint", f"prepare/{c}", f"prepare/{c}", {"op": "prepare", "checkpoint": c})
            for c in names
        ]

    def cases(self, options: Options) -> list[Case]:
        out = []
        for c in CHECKPOINTS:
            for m in _methods(c, options.quick):
                cid = f"checkpoint/{c}/{m}"
                params = {"op": "run", "checkpoint": c, "method": m}
                out.append(Case("checkpoint", cid, cid, params))
        return out

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        if case.params["op"] == "prepare":
            return _prepare(case.params["checkpoint"], ctx)
        return _run(case, ctx)

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        by: dict[tuple[str, str], dict[str, Any]] = {}
        for item in results:
            p = item["case"]["params"]
            if p.get("op") == "run":
                by[(p.get("checkpoint", "f16"), p.get("method", ""))] = item["result"]
        targets, rows, summary = [], [], []
        for c in CHECKPOINTS:
            base = by.get((c, "naive_loop"), {})
            base_ok = base.get("status") == "ok" and "seconds" in base
            for m in _methods(c, options.quick):
                res = by.get((c, m), {})
                if res.get("status") == "ok" and not all(k in res for k in _FIELDS):
                    res = {**res, "status": "error", "error": "result lacks fields: stale?"}
                if res.get("status") != "ok":
                    why = res.get("status", "missing")
                    if res.get("error"):
                        why += ": " + str(res["error"]).splitlines()[0][:160]
                    rows.append([LABELS[c], m, why, *[""] * 8])
                    if m == "lowrank_analyze" and c in TARGET_CHECKPOINTS:
                        targets.append([LABELS[c], why, *[""] * 7])
                    continue
                ratio = res["seconds"] / base["seconds"] if base_ok else None
                peak = res.get("rss_peak_bytes") if res.get("rss_available") else None
                rows.append(
                    [
                        LABELS[c],
                        m,
                        fmt_time(res["seconds"], res["n"], res.get("warmup_counted")),
                        fmt_ratio(ratio),
                        _fmt_cpu(res.get("cpu_seconds_per_call")),
                        _fmt_load(res.get("load_average_1min")),
                        f"{res['matrices']} ({res['checked']})",
                        fmt_err(res["max_abs_over_s1"]),
                        fmt_err(res["curve_over_fro"]),
                        _mib(peak),
                        _mib(res.get("rss_anon_peak_bytes") if peak is not None else None),
                    ]
                )
                if m != "lowrank_analyze" or c not in TARGET_CHECKPOINTS:
                    continue
                limit = RSS_FACTOR * res["largest_f64_bytes"] + RSS_EXTRA
                ratio_met = ratio is not None and ratio <= RATIO_TARGET
                rss_met = peak is not None and peak <= limit
                summary.append(
                    {
                        "checkpoint": c,
                        "seconds": res["seconds"],
                        "naive_loop_seconds": base.get("seconds") if base_ok else None,
                        "ratio_to_naive_loop": ratio,
                        "ratio_met": ratio_met,
                        "rss_peak_bytes": peak,
                        "rss_limit_bytes": limit,
                        "rss_met": rss_met,
                        "naive_loop_rss_peak_bytes": base.get("rss_peak_bytes"),
                        "curve_over_fro": res["curve_over_fro"],
                        "met": ratio_met and rss_met,
                    }
                )
                targets.append(
                    [
                        LABELS[c],
                        fmt_time(res["seconds"]),
                        fmt_time(base.get("seconds")) if base_ok else base.get("status", ""),
                        fmt_ratio(ratio),
                        "✓" if ratio_met else "✗",
                        _mib(peak),
                        f"{_mib(limit)} ({res['largest_shape'][0]}x{res['largest_shape'][1]})",
                        "✓" if rss_met else "✗",
                        fmt_err(res["curve_over_fro"]),
                    ]
                )
        text = "\n".join(
            [
                "### Targets\n",
                f"`lowrank.analysis.analyze` at most {RATIO_TARGET}× the time of the naive loop "
                f"(`numpy.linalg.svd` per matrix) on the machine's cores, with the peak RSS of "
                f"its process tree at most {RSS_FACTOR} × (largest matrix in float64) + "
                f"{RSS_EXTRA // 10**6} MB, on MiniLM and on the 1 GB bfloat16 checkpoint (the "
                "small float16 one is in the second table only).\n",
                md_table(
                    [
                        "checkpoint",
                        "lowrank s",
                        "naive loop s",
                        "ratio",
                        "≤ 0.3",
                        "peak RSS MiB",
                        "limit MiB (largest matrix)",
                        "≤ limit",
                        "curve err / ‖W‖_F",
                    ],
                    targets,
                ),
                "",
                "### All methods\n",
                self._describe(results, options),
                "",
                "\n".join(f"- `{m}`: {DESCRIPTIONS[m]}" for m in ALL_METHODS),
                "",
                md_table(
                    [
                        "checkpoint",
                        "method",
                        "time s",
                        "÷ naive loop",
                        "CPU s per call",
                        "load (1 min)",
                        "matrices (with reference)",
                        "max abs(Δσ) / σ₁",
                        "curve err / ‖W‖_F",
                        "peak RSS MiB",
                        "peak RssAnon MiB",
                    ],
                    rows,
                ),
            ]
        )
        return text, {"targets": summary}

    @staticmethod
    def _describe(results: list[dict[str, Any]], options: Options) -> str:
        sizes: dict[str, int] = {}
        for item in results:
            c = item["case"]["params"].get("checkpoint")
            if c and "file_bytes" in item["result"]:
                sizes[c] = item["result"]["file_bytes"]

        def size(c: str) -> str:
            if c not in sizes:
                return "size unknown"
            return f"{sizes[c] / 1e9:.2f} GB" if sizes[c] >= 1e9 else f"{sizes[c] / 1e6:.3g} MB"

        bf16, f16 = _synthetic(options, "bf16"), _synthetic(options, "f16")
        lines = [
            "Checkpoints:\n",
            "- MiniLM-L6: the real all-MiniLM-L6-v2 `model.safetensors` "
            f"(`lowrank.examples.fetch_minilm()`; {size('minilm')}, 40 float32 matrices, the "
            "largest the 30522x384 word embedding). References: every matrix."
            + (" Not run with `--quick`." if options.quick else ""),
            f"- Qwen2.5-0.5B-like: synthetic bfloat16, {bf16.describe()} "
            f"({len(bf16.shapes())} matrices, {size('bf16')}). References: "
            f"{len(_reference_names(bf16))} of the matrices — the embedding, all of layer 0 "
            "and one matrix of each later layer, cycling through the 7 kinds.",
            f"- small: synthetic float16, {f16.describe()} ({len(f16.shapes())} matrices, "
            f"{size('f16')}). References: every matrix.",
            "",
            "Synthetic weights: Gaussian / √max(m, n) plus 8 spikes about 4× the bulk edge. "
            "References: `scipy.linalg.svdvals` of the float64 upcast of each stored matrix; "
            "errors are the worst over the matrices with a reference. Peak RSS: the largest "
            "sum of `VmRSS` over the measuring process and its descendants (the analysis's "
            "worker processes), sampled every 20 ms over the warm-up and timed calls; the sum "
            "counts shared libraries once per process, `RssAnon` (private memory) does not. "
            "CPU s per call: user + system time of the measuring process and its reaped "
            "children (the analysis's workers), per call. Load: the 1-minute load average "
            "before → after the case; the machine may be shared, and two OpenBLAS threads on "
            "a busy 2-core machine can be several times slower than one.",
        ]
        return "\n".join(lines)
