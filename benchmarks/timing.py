"""Timing: one warm-up call, then the median of further calls within a budget.

The rule (as in ``baselines.md``): a warm-up call; if it took less than ``slow`` seconds, the
median of ``repeat`` further calls; otherwise the median of the calls that fit in
``budget`` seconds, the warm-up call counting as one (so a very slow method is timed once).
Every call is reported through ``emit`` as it finishes, so that a parent process can enforce
a per-call timeout.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Timing", "TimingPolicy", "measure"]

T = TypeVar("T")


@dataclass(frozen=True)
class TimingPolicy:
    """How many calls to time: ``repeat`` after a warm-up, or fewer for slow calls."""

    repeat: int = 3
    slow: float = 3.0
    budget: float = 20.0

    @classmethod
    def quick(cls) -> TimingPolicy:
        return cls(repeat=1, slow=0.5, budget=1.0)


@dataclass
class Timing:
    """Seconds of each timed call and of the warm-up; ``median`` is the reported time."""

    warmup: float
    times: list[float] = field(default_factory=list)
    warmup_counted: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def n(self) -> int:
        return len(self.times)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.median,
            "n": self.n,
            "warmup": self.warmup,
            "times": self.times,
            "warmup_counted": self.warmup_counted,
        }


def _call(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(
    fn: Callable[[], T],
    policy: TimingPolicy,
    *,
    emit: Callable[[dict[str, Any]], None] | None = None,
    after_warmup: Callable[[T], None] | None = None,
) -> tuple[T, Timing]:
    """Time ``fn`` by ``policy``; returns the output of the warm-up call and the timing.

    ``after_warmup`` (for example an accuracy check) runs on the warm-up output before the
    timed calls, untimed.
    """
    out, warm = _call(fn)
    if emit:
        emit({"event": "call", "seconds": warm, "warmup": True})
    if after_warmup is not None:
        after_warmup(out)
    timing = Timing(warmup=warm)
    if warm >= policy.slow:
        timing.times.append(warm)
        timing.warmup_counted = True
        spent = warm
        while timing.n < policy.repeat and spent + warm <= policy.budget:
            _, t = _call(fn)
            timing.times.append(t)
            spent += t
            if emit:
                emit({"event": "call", "seconds": t})
        return out, timing
    for _ in range(policy.repeat):
        _, t = _call(fn)
        timing.times.append(t)
        if emit:
            emit({"event": "call", "seconds": t})
    return out, timing
