"""Deprecated home of the lora helpers, kept only for :mod:`lowrank.lora.extract`.

The helpers now live by job: the PEFT conventions (scaling rule, default alpha, factor
split, rank rule) in :mod:`lowrank.lora.conventions`; the weight view and the dtype policy in
:mod:`lowrank.lora._weights` (table: :mod:`lowrank._dtypes`); the bool check in
:mod:`lowrank._validation`. Delete this module once the extraction module imports from those.
"""

from __future__ import annotations

from lowrank._validation import check_bool
from lowrank.lora._weights import weight_view
from lowrank.lora.conventions import _check_lora_rank as check_lora_rank
from lowrank.lora.conventions import _check_positive_rank as check_positive_rank
from lowrank.lora.conventions import _resolve_alpha as check_alpha
from lowrank.lora.conventions import _split_triplets as split_triplets
from lowrank.lora.conventions import lora_scaling

__all__ = [
    "check_alpha",
    "check_bool",
    "check_lora_rank",
    "check_positive_rank",
    "lora_scaling",
    "split_triplets",
    "weight_view",
]
