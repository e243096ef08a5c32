"""What every suite provides, and what a worker hands to it."""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.timing import TimingPolicy

__all__ = ["Case", "Options", "Suite", "WorkerContext", "module_available"]


@dataclass(frozen=True)
class Options:
    """Command-line options a suite sees."""

    quick: bool = False
    cache: Path = Path(".cache/benchmarks")
    repeat: int | None = None
    call_timeout: float = 60.0
    search_budget: float = 60.0
    only: tuple[str, ...] = ()

    @property
    def policy(self) -> TimingPolicy:
        base = TimingPolicy.quick() if self.quick else TimingPolicy()
        if self.repeat is not None:
            return TimingPolicy(repeat=self.repeat, slow=base.slow, budget=base.budget)
        return base


@dataclass(frozen=True)
class Case:
    """One timed measurement: a suite, an id unique within it, and JSON-able parameters.

    Cases with the same ``group`` run one after the other in the same worker process.
    """

    suite: str
    id: str
    group: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "id": self.id, "group": self.group, "params": self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        return cls(d["suite"], d["id"], d["group"], dict(d["params"]))


@dataclass
class WorkerContext:
    """What a case sees while it runs: options and a way to report progress."""

    options: Options
    emit: Callable[[dict[str, Any]], None]
    memo: dict[str, Any] = field(default_factory=dict)

    def progress(self, what: str) -> None:
        self.emit({"event": "progress", "what": what})


def module_available(name: str) -> bool:
    """True when ``import name`` would find the module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class Suite(abc.ABC):
    """A benchmark suite."""

    name: str = ""
    title: str = ""

    def available(self) -> tuple[bool, str]:
        """Whether the suite can run here, and why not."""
        return True, ""

    @abc.abstractmethod
    def cases(self, options: Options) -> list[Case]:
        """The cases of a run, in the order they run."""

    def prepare(self, options: Options) -> list[Case]:
        """Cases to run first (for example, generating and caching matrices)."""
        return []

    @abc.abstractmethod
    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        """Run one case (in a worker process); returns its result fields."""

    @abc.abstractmethod
    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        """Markdown for the results, and a JSON-able summary (targets met or missed)."""
