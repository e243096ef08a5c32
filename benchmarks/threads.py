"""BLAS threads of a case: the default, or a limit set for the thread-scaling measurements.

A case whose parameters hold ``"threads": k`` runs its calls under
``threadpoolctl.threadpool_limits(k)`` (every BLAS and OpenMP library loaded in the worker:
NumPy's and SciPy's OpenBLAS, scikit-learn's OpenMP) and, when PyTorch is loaded, with
``torch.set_num_threads(k)``. The limit is entered after the method's modules are imported,
so that libraries loaded by those imports are limited too. Every result records the threads
the libraries actually had while it was timed (:func:`thread_counts`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["default_threads", "limited_threads", "thread_counts"]


def default_threads() -> int:
    """The BLAS threads a case gets without a limit: ``OPENBLAS_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` when set, else the cores this process may run on."""
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(key, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def thread_counts() -> dict[str, int]:
    """Threads of each loaded BLAS/OpenMP library (``api (directory)`` → threads), and
    PyTorch's intra-op threads when it is loaded."""
    out: dict[str, int] = {}
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            where = Path(str(info.get("filepath", ""))).parent.name
            out[f"{info.get('internal_api')} ({where})"] = int(info.get("num_threads") or 0)
    except Exception:  # threadpoolctl absent or failing: nothing to record
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = int(torch.get_num_threads())
    return out


@contextlib.contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Run the body with at most ``threads`` BLAS/OpenMP (and PyTorch) threads; ``None``:
    as configured."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch: Any = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=int(threads)):
        if torch is not None:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            if torch is not None and before is not None:
                torch.set_num_threads(before)
