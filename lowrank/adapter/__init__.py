r"""The pure-NumPy LoRA reference: the layer and the functions other implementations are
checked against.

Layer 4 of :mod:`lowrank`. :class:`LoRALinear` is a linear layer with a frozen base and named
LoRA adapters (forward, backward, dropout, merging, PEFT's state-dict keys and
``fan_in_fan_out`` layout), built from factors, from an initialisation
(:meth:`LoRALinear.from_init`) or from an extraction (:meth:`LoRALinear.from_extraction`);
:func:`lora_forward`, :func:`lora_backward` and :func:`lora_delta_weight` are the same algebra
as stateless functions. The small neural-network framework the layer trains in (dense layers,
activations, losses, SGD and AdamW, networks, the training loop) is the sub-package
:mod:`lowrank.adapter.nn`.

Conventions
-----------
Shapes and names follow PEFT, so factors move between PEFT and this module unchanged. A
linear layer has weight ``W`` of shape ``(out, in)`` (``torch.nn.Linear.weight``), ``lora_A``
``(r, in)``, ``lora_B`` ``(out, r)``, scaling ``s = alpha / r`` (``alpha / sqrt(r)`` with
``use_rslora``), and for ``x`` of shape ``(..., in)``

.. math:: y = x W^\top + s\,\big(\mathrm{dropout}(x) A^\top\big) B^\top + b,
   \qquad \Delta W = s\, B A .

**LoRA paper** (Hu et al. 2021): :math:`h = W_0 x + \Delta W x = W_0 x + BAx` with
:math:`W_0 \in \mathbb{R}^{d\times k}`, :math:`B \in \mathbb{R}^{d\times r}`,
:math:`A \in \mathbb{R}^{r\times k}`, and :math:`\Delta W x` scaled by :math:`\alpha/r`. Column
vectors: :math:`d` = ``out``, :math:`k` = ``in``, the paper's :math:`B` is ``lora_B`` and its
:math:`A` is ``lora_A``, letter for letter; our rows ``x`` are the paper's :math:`x^\top`.

**PiSSA paper** (Meng et al. 2024) writes the adapter as :math:`W = W^{res} + AB` with
:math:`A \in \mathbb{R}^{m\times r}` built from :math:`U_{[:, :r]} S_{[:r,:r]}^{1/2}` and
:math:`B \in \mathbb{R}^{r\times n}` from :math:`S_{[:r,:r]}^{1/2} V_{[:, :r]}^\top`: the left
factor of the product is called :math:`A`, the reverse of Hu et al. With :math:`W` laid out
``(out, in)`` as here, the paper's :math:`A` (``out × r``) is ``lora_B`` and its :math:`B`
(``r × in``) is ``lora_A`` — which is what PEFT's ``pissa_init`` does, after dividing the
singular values by ``s`` so that ``s·lora_B @ lora_A`` is the rank-``r`` truncated SVD. (If a
text lays the weight out ``(in, out)`` with :math:`Y = XW`, its matrices are the transposes
of ours instead.) Match factors by shape against ``W``, never by letter. The residual
:math:`W^{res}` is this module's base ``weight``.

Gradients never form the dense :math:`BA`; only merging does.

References
----------
.. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
   arXiv:2106.09685.
.. [2] F. Meng, Z. Wang and M. Zhang, "PiSSA: Principal Singular Values and Singular Vectors
   Adaptation of Large Language Models", NeurIPS 2024, arXiv:2404.02948.

Examples
--------
>>> import numpy as np
>>> from lowrank.adapter import LoRALinear
>>> rng = np.random.default_rng(0)
>>> W = rng.standard_normal((4, 6)); A = rng.standard_normal((2, 6)); B = np.zeros((4, 2))
>>> layer = LoRALinear.from_factors(W, A, B, alpha=4.0)
>>> x = rng.standard_normal((3, 6))
>>> bool(np.array_equal(layer.forward(x), x @ W.T))  # B = 0: exactly the base layer
True
"""

from __future__ import annotations

from lowrank.adapter.functional import (
    LoRAGradients,
    dropout_mask,
    lora_backward,
    lora_delta_weight,
    lora_forward,
)
from lowrank.adapter.lora_linear import AdapterConfig, LoRALinear

__all__ = [
    "AdapterConfig",
    "LoRAGradients",
    "LoRALinear",
    "dropout_mask",
    "lora_backward",
    "lora_delta_weight",
    "lora_forward",
]
