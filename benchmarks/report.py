"""Markdown and JSON output of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["fmt_err", "fmt_ratio", "fmt_time", "machine_markdown", "md_table", "write_outputs"]


def fmt_time(seconds: float | None, n: int | None = None, counted: bool | None = None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    text = f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds:.3g}"
    if counted and n is not None:
        text += f" (n={n})"
    return text


def fmt_ratio(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:.2f}" if x < 10 else f"{x:.3g}"


def fmt_err(x: float | None) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.1e}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_markdown(meta: dict[str, Any]) -> str:
    """A short description of the machine, the libraries and the BLAS."""
    v = meta.get("versions", {})
    blas = []
    for b in meta.get("blas", []):
        where = Path(str(b.get("filepath", ""))).parent.name
        blas.append(
            f"{b.get('internal_api')} {b.get('version') or ''} "
            f"({b.get('architecture') or b.get('threading_layer') or ''}, "
            f"{b.get('num_threads')} threads, from {where})"
        )
    removed = meta.get("openblas_env_removed") or {}
    lines = [
        f"- CPU: {meta.get('cpu')} — {meta.get('physical_cores')} cores, "
        f"{meta.get('logical_cores')} logical; flags {', '.join(meta.get('cpu_flags', []))}; "
        f"{meta.get('memory_gib')} GiB RAM",
        f"- {meta.get('platform')}, Python {meta.get('python')}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        "- BLAS (threadpoolctl): " + "; ".join(blas),
        "- OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: "
        + (f"removed ({removed})" if removed else "not set"),
        f"- Load average (1, 5, 15 min): start {meta.get('load_average_start')}, "
        f"end {meta.get('load_average_end')}",
        f"- git {meta.get('git', {}).get('commit')}"
        + (" (with uncommitted changes)" if meta.get("git", {}).get("dirty") else ""),
        f"- Date {meta.get('date')}; wall time {meta.get('wall_seconds', 0):.0f} s; "
        f"{'quick' if meta.get('quick') else 'full'} run",
    ]
    return "\n".join(lines)


def write_outputs(out: Path, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "results.md", out / "results.json"
    md_path.write_text(markdown)
    json_path.write_text(json.dumps(data, indent=1, default=str, allow_nan=True) + "\n")
    return md_path, json_path
