"""Suite 5: PiSSA initialisation of a stack of weights vs PEFT's torch.svd_lowrank recipe."""

from __future__ import annotations

from benchmarks.suites.pending import PendingSuite

__all__ = ["PissaSuite"]


class PissaSuite(PendingSuite):
    name = "pissa"
    title = "PiSSA initialisation of a stack vs PEFT's recipe"
    requires = ("lowrank.lora",)
    plan = (
        "lowrank.lora's PiSSA initialiser on a stack of 4096x4096/4096x11008 float32 "
        "weights vs PEFT's pissa_niter_K recipe (torch.svd_lowrank(W, q=r, niter=K)), "
        "time and EYM excess of W_res + B A"
    )
