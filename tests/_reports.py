"""A report around matrix results computed in a test: the run record filled with fixed
values, so that JSON written from it is the same on every run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lowrank.analysis import Report, RunInfo


def synthetic_report(
    results: Iterable[Any],
    *,
    ranks: Sequence[int],
    energies: Sequence[float],
    source: str = "/synthetic",
    base: str | None = None,
) -> Report:
    run = RunInfo(
        source=source,
        include=(),
        exclude=(),
        regex=False,
        nd_policy="skip",
        ranks=tuple(ranks),
        energies=tuple(energies),
        executor="test",
        lowrank_version="0",
        created="2026-01-01T00:00:00+00:00",
        elapsed_seconds=0.0,
        base=base,
    )
    return Report(run=run, matrices=tuple(results))
