r"""LoRA factors: initialisers, extraction, PiSSA→LoRA conversion and the LoRA paper's analysis.

Layer 3 of :mod:`lowrank`: built on the core (:func:`lowrank.truncated_svd`,
:func:`lowrank.select_rank`), it knows nothing of files (:mod:`lowrank.io.peft` reads and
writes PEFT adapter folders) and nothing of training (:mod:`lowrank.adapter`).

Conventions (PEFT's)
--------------------
A linear layer's weight :math:`W` is ``(out, in)`` (``torch.nn.Linear.weight``), ``lora_A`` is
``(r, in)``, ``lora_B`` is ``(out, r)``, the scaling is :math:`s = \alpha/r` (rsLoRA:
:math:`\alpha/\sqrt r`), and for row inputs :math:`x`

.. math:: y = x W^\top + s\,\big(\mathrm{dropout}(x) A^\top\big) B^\top \;(+\, b),
   \qquad \Delta W = s\,BA .

With ``fan_in_fan_out`` (GPT-2's ``Conv1D``) the *stored* weight is ``(in, out)``; the
factors keep their shapes and the update is :math:`(sBA)^\top` in the stored layout.

dtypes
------
float32 stays float32 and float64 stays float64 end to end; float16 and bfloat16 weights are
computed in float32 and the factors and residuals returned in their own dtype (PEFT's rule for
its SVD inits); integers are computed and returned in float64. Complex and float8 weights are
refused with :class:`~lowrank.errors.DTypeError` (PEFT refuses everything but float32, float16
and bfloat16; float64 is kept here because it is NumPy's reference precision).

Letters in the papers
---------------------
================================  ======================  ======================  =========
paper                             left factor (out × r)   right factor (r × in)   scaling
================================  ======================  ======================  =========
LoRA (Hu et al. 2021)             :math:`B`               :math:`A`               α/r
PEFT, this package                ``lora_B``              ``lora_A``              α/r, α/√r
PiSSA (Meng et al. 2024)          :math:`A`               :math:`B`               —
MiLoRA (Wang et al. 2024)         :math:`B_m`             :math:`A_m`             α/r
OLoRA (Büyükakyüz 2024)           :math:`Q_r` (B)         :math:`R_r` (A)         α/r
rsLoRA (Kalajdzievski 2023)       :math:`B`               :math:`A`               α/√r
================================  ======================  ======================  =========

The PiSSA paper writes :math:`W = W^{res} + AB` with :math:`A \in \mathbb{R}^{m\times r}`: its
:math:`A` is ``lora_B`` and its :math:`B` is ``lora_A``. Match factors by shape, never by letter.
The LoRA paper writes column vectors, :math:`h = W_0x + BAx`, with :math:`W_0 \in
\mathbb{R}^{d\times k}`: :math:`d` = ``out``, :math:`k` = ``in``.

Contents
--------
:func:`init_factors`, :func:`lora_init`, :func:`pissa_init`, :func:`milora_init`, :func:`olora_init`
    Initial factors and, for PiSSA/MiLoRA/OLoRA, the residual base
    :math:`W_\mathrm{res} = W - sBA`.
:func:`extract`, :func:`extract_many`
    The EYM-optimal LoRA of a fine-tuning difference, with its exact error; per-layer ranks
    and a :class:`LoRAConfig` with ``rank_pattern``/``alpha_pattern``.
:func:`pissa_to_lora`, :func:`convert_pissa_adapter`, :func:`factored_svd`
    A residual-base adapter as a plain LoRA of rank :math:`2r` (exact), optionally
    recompressed without forming the dense product.
:func:`subspace_similarity`, :func:`subspace_similarity_grid`, :func:`amplification_factor`
    The LoRA paper's §7 measures.
:class:`LoRAConfig`, :func:`pattern_key`
    Model-wide ranks and alphas with PEFT's pattern rule.
:func:`lora_scaling`, :func:`alpha_for_scaling`, :func:`default_alpha`, :func:`split_triplets`
    PEFT's conventions, in one module (:mod:`lowrank.lora.conventions`): the scaling rule,
    the default alpha (scaling 1) and the square-root split of singular triplets.

A :class:`LoRAInit` or an :class:`Extraction` becomes a layer in one call, with its alpha,
scaling, rsLoRA flag, layout and base weight: :meth:`lowrank.adapter.LoRALinear.from_init`
and :meth:`lowrank.adapter.LoRALinear.from_extraction`.

References
----------
.. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
   arXiv:2106.09685.
.. [2] F. Meng, Z. Wang and M. Zhang, "PiSSA: Principal Singular Values and Singular Vectors
   Adaptation of Large Language Models", NeurIPS 2024, arXiv:2404.02948.
.. [3] H. Wang et al., "MiLoRA: Harnessing Minor Singular Components for Parameter-Efficient
   LLM Finetuning", NAACL 2025, arXiv:2406.09044.
.. [4] K. Büyükakyüz, "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models",
   arXiv:2406.01775, 2024.
.. [5] D. Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA",
   arXiv:2312.03732, 2023.

Examples
--------
>>> import numpy as np
>>> from lowrank.lora import init_factors
>>> W = np.random.default_rng(0).standard_normal((16, 12)).astype(np.float32)
>>> init = init_factors(W, 4, init="pissa", alpha=8.0)
>>> init.lora_A.shape, init.lora_B.shape, init.scaling, init.residual.dtype
((4, 12), (16, 4), 2.0, dtype('float32'))
>>> bool(np.allclose(init.residual + init.scaling * init.lora_B @ init.lora_A, W, atol=1e-5))
True
"""

from __future__ import annotations

from lowrank.lora.config import LoRAConfig, anchored_patterns, pattern_key
from lowrank.lora.conventions import (
    alpha_for_scaling,
    default_alpha,
    lora_scaling,
    split_triplets,
)
from lowrank.lora.convert import (
    ConvertedAdapter,
    LoRAConversion,
    convert_pissa_adapter,
    factored_svd,
    pissa_to_lora,
)
from lowrank.lora.extraction import ExtractedAdapter, Extraction, extract, extract_many
from lowrank.lora.init import (
    INIT_METHODS,
    LoRAInit,
    init_factors,
    lora_init,
    milora_init,
    olora_init,
    pissa_init,
)
from lowrank.lora.similarity import (
    Amplification,
    amplification_factor,
    subspace_similarity,
    subspace_similarity_grid,
)

__all__ = [
    "INIT_METHODS",
    "Amplification",
    "ConvertedAdapter",
    "ExtractedAdapter",
    "Extraction",
    "LoRAConfig",
    "LoRAConversion",
    "LoRAInit",
    "alpha_for_scaling",
    "amplification_factor",
    "anchored_patterns",
    "convert_pissa_adapter",
    "default_alpha",
    "extract",
    "extract_many",
    "factored_svd",
    "init_factors",
    "lora_init",
    "lora_scaling",
    "milora_init",
    "olora_init",
    "pattern_key",
    "pissa_init",
    "pissa_to_lora",
    "split_triplets",
    "subspace_similarity",
    "subspace_similarity_grid",
]
