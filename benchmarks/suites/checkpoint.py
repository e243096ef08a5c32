"""Suite 3: analysing a whole checkpoint with lowrank.analysis against a naive loop."""

from __future__ import annotations

from benchmarks.suites.pending import PendingSuite

__all__ = ["CheckpointSuite"]


class CheckpointSuite(PendingSuite):
    name = "checkpoint"
    title = "Whole-checkpoint analysis vs a naive loop"
    requires = ("lowrank.analysis",)
    plan = (
        "a synthetic sharded safetensors checkpoint; lowrank.analysis over all matrices on "
        "its executor vs a loop of load + singular_values per tensor"
    )
