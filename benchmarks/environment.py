"""The machine and the process environment of a benchmark run.

OpenBLAS picks its kernels from the CPU unless ``OPENBLAS_CORETYPE`` forces one, and sizes its
blocking from the cache unless ``OPENBLAS_L2_SIZE`` overrides it. Either changes the speed of
every product, so a run removes both: the command re-executes itself without them (and
every child process gets the cleaned environment), and the values it removed are recorded.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "OPENBLAS_VARS",
    "REMOVED_ENV_KEY",
    "blas_info",
    "clean_env",
    "load_average",
    "machine_info",
    "reexec_without_openblas_overrides",
]

OPENBLAS_VARS: tuple[str, ...] = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REMOVED_ENV_KEY = "LOWRANK_BENCH_REMOVED_ENV"


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) without the OpenBLAS overrides."""
    out = dict(os.environ if env is None else env)
    for key in OPENBLAS_VARS:
        out.pop(key, None)
    return out


def reexec_without_openblas_overrides(argv: list[str]) -> None:
    """Re-execute ``python -m benchmarks argv`` without the OpenBLAS overrides, if any is set.

    Returns only when none is set. The removed values are passed on in
    ``LOWRANK_BENCH_REMOVED_ENV`` (JSON) so that the results record them.
    """
    removed = {key: os.environ[key] for key in OPENBLAS_VARS if key in os.environ}
    if not removed:
        return
    env = clean_env()
    previous = json.loads(os.environ.get(REMOVED_ENV_KEY, "{}"))
    env[REMOVED_ENV_KEY] = json.dumps({**previous, **removed})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *argv], env)


def removed_env() -> dict[str, str]:
    """The OpenBLAS overrides this run removed from its environment."""
    value: dict[str, str] = json.loads(os.environ.get(REMOVED_ENV_KEY, "{}"))
    return value


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (empty where unknown)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    pairs = set()
    phys = core = None
    for line in text.splitlines():
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
        elif not line.strip() and core is not None:
            pairs.add((phys, core))
            phys = core = None
    if core is not None:
        pairs.add((phys, core))
    return len(pairs) or None


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the BLAS/OpenMP libraries loaded by numpy, scipy, sklearn."""
    try:
        import threadpoolctl
    except ImportError:
        return [{"error": "threadpoolctl is not installed"}]
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401

    with contextlib.suppress(ImportError):
        import sklearn.utils.extmath  # noqa: F401
    keep = (
        "user_api",
        "internal_api",
        "prefix",
        "version",
        "num_threads",
        "threading_layer",
        "architecture",
        "filepath",
    )
    return [{k: info.get(k) for k in keep if k in info} for info in threadpoolctl.threadpool_info()]


def _git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lowrank", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions, BLAS and threads, load, removed variables."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("numpy", "scipy", "scikit-learn", "torch", "threadpoolctl", "lowrank")
        },
        "blas": blas_info(),
        "openblas_env_removed": removed_env(),
        "openblas_env_now": {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ},
        "load_average_start": load_average(),
        "git": _git_state(),
    }
