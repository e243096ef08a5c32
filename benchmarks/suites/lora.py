"""Suite 4: the NumPy LoRA layer, forward + backward, against a dense layer."""

from __future__ import annotations

from benchmarks.suites.pending import PendingSuite

__all__ = ["LoraSuite"]


class LoraSuite(PendingSuite):
    name = "lora"
    title = "LoRA layer forward + backward vs a dense layer"
    requires = ("lowrank.adapter",)
    plan = "lowrank.adapter.LoRALinear vs lowrank.adapter.Linear on a batch of tokens"
