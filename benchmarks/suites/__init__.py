"""The benchmark suites, by name.

A suite lists its cases (:meth:`Suite.cases`), runs one case in a worker process
(:meth:`Suite.run_case`) and turns the results into Markdown tables and a summary of its
targets (:meth:`Suite.report`). Suites whose library modules have not landed yet report
themselves unavailable instead of failing (:meth:`Suite.available`).
"""

from __future__ import annotations

from benchmarks.suites.base import Case, Options, Suite, WorkerContext

__all__ = ["SUITES", "Case", "Options", "Suite", "WorkerContext", "get_suite"]


def _load() -> dict[str, Suite]:
    from benchmarks.suites.checkpoint import CheckpointSuite
    from benchmarks.suites.curve import CurveSuite
    from benchmarks.suites.lora import LoraSuite
    from benchmarks.suites.pissa import PissaSuite
    from benchmarks.suites.svd import SvdSuite

    suites: list[Suite] = [SvdSuite(), CurveSuite(), CheckpointSuite(), LoraSuite(), PissaSuite()]
    return {s.name: s for s in suites}


SUITES: tuple[str, ...] = ("svd", "curve", "checkpoint", "lora", "pissa")


def get_suite(name: str) -> Suite:
    """The suite called ``name`` (one of :data:`SUITES`)."""
    suites = _load()
    if name not in suites:
        raise KeyError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
    return suites[name]
