"""Suites that wait for library modules other engineers are writing.

Each checks for its module with :func:`~benchmarks.suites.base.module_available` and reports
itself unavailable (with the reason) until the module lands; nothing else in the harness
needs to change when it does — implement ``cases``/``run_case``/``report`` in its module.
"""

from __future__ import annotations

from typing import Any

from benchmarks.suites.base import Case, Options, Suite, WorkerContext, module_available

__all__ = ["PendingSuite"]


class PendingSuite(Suite):
    """A suite whose implementation waits for ``requires`` (module names)."""

    requires: tuple[str, ...] = ()
    plan: str = ""

    def available(self) -> tuple[bool, str]:
        missing = [m for m in self.requires if not module_available(m)]
        if missing:
            return False, f"needs {', '.join(missing)}, not in this checkout yet ({self.plan})"
        return False, f"not implemented yet ({self.plan})"

    def cases(self, options: Options) -> list[Case]:
        return []

    def run_case(self, case: Case, ctx: WorkerContext) -> dict[str, Any]:
        raise NotImplementedError(self.name)

    def report(self, results: list[dict[str, Any]], options: Options) -> tuple[str, dict[str, Any]]:
        return "", {}
