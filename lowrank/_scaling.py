r"""The LoRA scaling rule, unchecked: :math:`s = \alpha / r`, or :math:`\alpha/\sqrt r` (rsLoRA).

Layer 0, so that every layer can use the one formula (``lowrank.io.peft`` reads scalings
from adapter configs and may import nothing above layer 0). The checked public functions are
in :mod:`lowrank.lora.conventions`; callers here pass validated values.
"""

from __future__ import annotations

import math

__all__ = ["alpha_of", "scaling_denominator", "scaling_of"]


def scaling_denominator(rank: int, use_rslora: bool) -> float:
    r"""The denominator of the scaling: :math:`r`, or :math:`\sqrt r` with rsLoRA."""
    return math.sqrt(rank) if use_rslora else float(rank)


def scaling_of(alpha: float, rank: int, use_rslora: bool) -> float:
    r"""The scaling :math:`s` of ``lora_alpha`` ``alpha`` at rank ``rank``."""
    return float(alpha) / scaling_denominator(rank, use_rslora)


def alpha_of(scaling: float, rank: int, use_rslora: bool) -> float:
    r"""The ``lora_alpha`` that gives scaling ``scaling`` at rank ``rank`` (the inverse)."""
    return float(scaling) * scaling_denominator(rank, use_rslora)
