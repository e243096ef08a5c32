"""Wall time and peak memory of ``lowrank analyze TUNED --base BASE`` on a ≥ 1 GB bfloat16 pair.

Issue 13's "done when" measurement of the update analysis. Run it as::

    .venv/bin/python -m benchmarks.update_pair            # the full pair (2 x 1.02 GB)
    .venv/bin/python -m benchmarks.update_pair --quick    # a tiny pair: a smoke test

The pair, built once into the benchmark cache (``$LOWRANK_BENCH_CACHE`` or
``.cache/benchmarks``):

* BASE is the synthetic bfloat16 checkpoint of :mod:`benchmarks.suites.checkpoint` (its
  generator and its file, shaped like Qwen2.5-0.5B with 25 layers, 176 matrices, more than
  10⁹ bytes; reused if that suite already built it);
* TUNED = bf16(W + ΔW) per matrix, with a planted update ΔW = U diag(s) Vᵀ of rank
  ``--rank`` (default 8): Haar-random orthonormal U, V (seed 1, per matrix), s linearly
  from 1 to 0.5, scaled so that ‖ΔW‖_F = ``--relative`` · ‖W‖_F, formed in float64 and
  rounded once to bfloat16.

The analysis sees the stored difference bf16(W + ΔW) − W = ΔW + E, where E is the rounding
of TUNED: about 2⁻⁸/√7 ≈ 1.5·10⁻³ of ‖W‖_F (uniform rounding error over a binade), i.e.
(1.5·10⁻³ / relative)² of ‖ΔW‖²_F. The builder records the exact share ‖E‖²_F / ‖ΔW + E‖²_F
of every matrix. The rank at 99 % energy is the planted rank exactly when E takes less than
1 % of the energy and the smallest planted direction more than 1 % + E's share; with s from
1 to 0.5 the smallest takes 5.3 %, so the check is: E's share < 1 % for every matrix, and
rank@99 % == planted rank for every matrix. That is why the default ``--relative`` is
3·10⁻² (E ≈ 0.25 % of the energy) and not 10⁻², where bfloat16 rounding alone would be
about 2 % of ‖ΔW‖²_F and the 99 % rank would count noise directions.

Measured: the CLI in a subprocess (``python -m lowrank analyze TUNED --base BASE --json
...``, default executor: worker processes on the available cores); wall time from start to
exit; peak of the summed ``VmRSS`` (and ``RssAnon``) of that process and its descendants
(:class:`benchmarks.memory.TreeRSS`, every 20 ms); CPU time of the process tree (reaped
children); ``/proc/loadavg`` before and after. Checked: every matrix analysed, rank@99 %,
and, against numpy's float64 SVD of the stored matrices of layer 0 (an independent
reference), the singular values of ΔW and of W in the report (max |Δσ| / σ₁). Shown, not
checked: the number of singular values of ΔW above the Marchenko–Pastur edges of the
report's random-matrix view (the rounding noise E is not i.i.d., so the fitted edge, from
the median eigenvalue, can sit inside its spread).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.matrices import default_cache_dir
from benchmarks.memory import TreeRSS
from benchmarks.suites.checkpoint import FULL, QUICK, Synthetic, _build, _np_dtype

__all__ = ["build_pair", "main"]

MIB = 2**20
ENERGY = 0.99


def _paths(spec: Synthetic, cache: Path, rank: int, relative: float) -> tuple[Path, Path, Path]:
    base = cache / f"{spec.stem}.safetensors"  # the checkpoint suite's file
    tuned = cache / f"{spec.stem}_tuned_r{rank}_rel{relative:g}.safetensors"
    return base, tuned, tuned.with_suffix(".planted.json")


def _planted(rng: np.random.Generator, m: int, n: int, rank: int) -> tuple[Any, Any, Any]:
    """Haar-random orthonormal U (m, rank), V (n, rank) and s linearly from 1 to 0.5."""
    u, _ = np.linalg.qr(rng.standard_normal((m, rank)))
    v, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    return u, np.linspace(1.0, 0.5, rank), v


def build_pair(
    spec: Synthetic, cache: Path, *, rank: int, relative: float, say: Any = print
) -> tuple[Path, Path, dict[str, Any]]:
    """Build (once) BASE and TUNED; return their paths and the planted-update record."""
    import ml_dtypes  # noqa: F401  (safetensors reads bfloat16 through it)
    from safetensors import safe_open

    from lowrank.io import atomic_write_text, save_safetensors

    base, tuned, record_path = _paths(spec, cache, rank, relative)
    if not base.exists():
        say(f"building BASE {base} ({spec.nbytes() / 1e9:.2f} GB) ...")
        _build(spec, base, lambda _: None)
    if tuned.exists() and record_path.exists():
        return base, tuned, json.loads(record_path.read_text())
    say(f"building TUNED {tuned} ...")
    dtype = _np_dtype(spec.dtype)
    rng = np.random.default_rng(1)
    tensors: dict[str, Any] = {}
    noise: dict[str, float] = {}
    with safe_open(str(base), framework="np") as fh:
        for name, (m, n) in spec.shapes().items():
            w = fh.get_tensor(name).astype(np.float64)
            u, s, v = _planted(rng, m, n, rank)
            s = s * (relative * float(np.linalg.norm(w)) / float(np.linalg.norm(s)))
            exact = w + (u * s) @ v.T
            stored = exact.astype(np.float32).astype(dtype)
            tensors[name] = stored
            diff = stored.astype(np.float64) - w  # what the analysis sees: ΔW + E
            err = stored.astype(np.float64) - exact  # E, the rounding of TUNED
            noise[name] = float(np.sum(err * err) / np.sum(diff * diff))
            del w, exact, diff, err
    save_safetensors(tuned, tensors, metadata={"generator": "benchmarks.update_pair"})
    record = {"rank": rank, "relative": relative, "rounding_share": noise}
    atomic_write_text(record_path, json.dumps(record))
    return base, tuned, record


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else ""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _reference_errors(report: Any, base: Path, tuned: Path, names: list[str]) -> dict[str, float]:
    """max |Δσ| / σ₁ of the report's spectra of ΔW and of W against numpy float64 SVDs."""
    import ml_dtypes  # noqa: F401
    from safetensors import safe_open

    by_name = {r.name: r for r in report.matrices}
    worst_dw = worst_w = 0.0
    with safe_open(str(base), framework="np") as fb, safe_open(str(tuned), framework="np") as ft:
        for name in names:
            w = fb.get_tensor(name).astype(np.float64)
            dw = ft.get_tensor(name).astype(np.float64) - w
            s_dw = np.linalg.svd(dw, compute_uv=False)
            s_w = np.linalg.svd(w, compute_uv=False)
            res = by_name[name]
            got_dw = np.asarray(res.singular_values, dtype=np.float64)
            worst_dw = max(worst_dw, float(np.max(np.abs(got_dw - s_dw)) / s_dw[0]))
            if res.base_singular_values is None:
                raise RuntimeError(f"{name}: the report has no base_singular_values")
            got_w = np.asarray(res.base_singular_values, dtype=np.float64)
            worst_w = max(worst_w, float(np.max(np.abs(got_w - s_w)) / s_w[0]))
    return {"dw": worst_dw, "w": worst_w}


def _join(values: list[int]) -> str:
    return ", ".join(map(str, values))


def _table(rows: list[tuple[str, str]]) -> str:
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.update_pair",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cache", type=Path, default=None, help="cache of the pair")
    parser.add_argument("--quick", action="store_true", help="a tiny pair (smoke test)")
    parser.add_argument("--rank", type=int, default=8, help="planted rank (default 8)")
    parser.add_argument(
        "--relative", type=float, default=3e-2, help="planted ||dW||_F / ||W||_F (default 3e-2)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where the report goes (default: the cache)"
    )
    args = parser.parse_args(argv)
    spec = (QUICK if args.quick else FULL)["bf16"]
    cache = args.cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    base, tuned, record = build_pair(spec, cache, rank=args.rank, relative=args.relative)
    out = args.out or cache
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / f"update_pair_{spec.stem}.json"
    command = [sys.executable, "-m", "lowrank", "analyze", str(tuned), "--base", str(base)]
    command += ["--json", str(report_path), "--no-progress"]

    load_before = _loadavg()
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeRSS(proc.pid) as mem:
        _, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    load_after = _loadavg()
    if proc.returncode != 0:
        print(stderr, file=sys.stderr)
        raise SystemExit(f"the analysis exited with {proc.returncode}")

    from lowrank.analysis import Report

    report = Report.read_json(report_path)
    shapes = spec.shapes()
    found = {r.name: dict(r.energy_ranks)[ENERGY] for r in report.matrices}
    missing = sorted(set(shapes) - set(found))
    wrong = {k: v for k, v in found.items() if v != args.rank}
    shares = record["rounding_share"]
    layer0 = [k for k in shapes if ".layers.0." in k]
    ref = _reference_errors(report, base, tuned, layer0)
    views = [r.random_matrix for r in report.matrices if r.random_matrix is not None]
    closed = sorted({v.marchenko_pastur.num_spikes for v in views})
    fitted = sorted({v.marchenko_pastur_fit.num_spikes for v in views})

    def gb(path: Path) -> str:
        return f"{path.stat().st_size / 1e9:.3f} GB"

    sizes = [r.relative_size for r in report.matrices]  # type: ignore[attr-defined]
    rows = [
        ("command", f"`{' '.join(['lowrank', *command[3:]])}`"),
        ("BASE, TUNED", f"{gb(base)}, {gb(tuned)} bfloat16, {len(shapes)} matrices each"),
        ("shapes", spec.describe()),
        ("wall time", f"{seconds:.1f} s"),
        ("peak RSS (VmRSS summed over the process tree)", f"{mem.peak_bytes / MIB:,.0f} MiB"),
        ("peak RssAnon (private memory) of the tree", f"{mem.peak_anon_bytes / MIB:,.0f} MiB"),
        ("processes at once (max)", str(mem.max_processes)),
        ("CPU time of the tree (user + sys)", f"{cpu:.1f} s"),
        ("/proc/loadavg before → after", f"{load_before} → {load_after}"),
        ("matrices analysed", f"{len(found)} of {len(shapes)}"),
        ("planted rank, ‖ΔW‖_F/‖W‖_F", f"{args.rank}, {args.relative:g}"),
        ("relative_size in the report (min–max)", f"{min(sizes):.4g}–{max(sizes):.4g}"),
        ("bf16 rounding share of ‖stored ΔW‖²_F (max)", f"{max(shares.values()):.3%}"),
        (f"rank@{ENERGY:.0%} energy == planted rank", f"{len(found) - len(wrong)} of {len(found)}"),
        ("spikes of ΔW above the closed-form MP edge (distinct values)", _join(closed)),
        ("spikes of ΔW above the fitted MP edge (distinct values)", _join(fitted)),
        ("max |Δσ|/σ₁ vs numpy float64 SVD, layer 0: ΔW, W", f"{ref['dw']:.1e}, {ref['w']:.1e}"),
    ]
    print(_table(rows))
    ok = not missing and not wrong and max(shares.values()) < 1 - ENERGY
    ok = ok and ref["dw"] < 1e-12 and ref["w"] < 1e-12
    if not ok:
        print(f"CHECK FAILED: missing {missing[:5]}, wrong {list(wrong.items())[:5]}, refs {ref}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
