"""Worker process: ``python -m benchmarks.worker`` reads a task as JSON on stdin.

The task is ``{"options": {...}, "cases": [case, ...]}`` (see :class:`benchmarks.suites.Case`);
each case's result is written as an ``@@``-prefixed JSON line (see :mod:`benchmarks.runner`).
The same :func:`run_cases` runs cases in-process for ``--isolation none``.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.runner import EVENT_PREFIX
from benchmarks.suites import Case, Options, WorkerContext, get_suite

__all__ = ["main", "options_from_dict", "options_to_dict", "run_cases", "warm_up"]


def options_to_dict(options: Options) -> dict[str, Any]:
    return {
        "quick": options.quick,
        "cache": str(options.cache),
        "repeat": options.repeat,
        "call_timeout": options.call_timeout,
        "search_budget": options.search_budget,
        "only": list(options.only),
    }


def options_from_dict(d: dict[str, Any]) -> Options:
    return Options(
        quick=bool(d["quick"]),
        cache=Path(d["cache"]),
        repeat=d.get("repeat"),
        call_timeout=float(d["call_timeout"]),
        search_budget=float(d["search_budget"]),
        only=tuple(d.get("only", ())),
    )


def warm_up() -> None:
    """A small BLAS and LAPACK call, so the first timed call does not pay for thread start-up."""
    import numpy as np
    import scipy.linalg as sla

    a = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    for _ in range(3):
        a @ a
        sla.svd(a, check_finite=False)
        np.linalg.qr(a)


def run_cases(cases: list[Case], options: Options, emit: Callable[[dict[str, Any]], None]) -> None:
    """Run ``cases`` one after the other, reporting each result through ``emit``."""
    memo: dict[str, Any] = {}
    for case in cases:
        ctx = WorkerContext(options=options, emit=emit, memo=memo)
        start = time.perf_counter()
        result: dict[str, Any]
        try:
            if case.params.get("op") == "sleep":  # used by the smoke test of the timeouts
                time.sleep(float(case.params["seconds"]))
                result = {"status": "ok"}
            else:
                result = get_suite(case.suite).run_case(case, ctx)
        except Exception as exc:  # any failure is a reported result
            result = {
                "status": "error",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=6),
            }
        result.setdefault("status", "ok")
        result["wall"] = time.perf_counter() - start
        emit({"event": "result", "case": case.to_dict(), "result": result})


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps(event, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def main() -> int:
    task = json.load(sys.stdin)
    options = options_from_dict(task["options"])
    warm_up()
    run_cases([Case.from_dict(c) for c in task["cases"]], options, _emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
