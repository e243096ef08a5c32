r"""A small neural-network framework in NumPy: layers, activations, losses, optimisers, training.

The framework around the LoRA reference of :mod:`lowrank.adapter`: enough to compose a
:class:`~lowrank.adapter.LoRALinear` with dense layers and nonlinearities into a network and
train it deterministically, so that full fine-tuning, head-only tuning, gradual unfreezing,
LoRA, PiSSA and L2-SP can be compared on one problem (``notebooks/03_finetuning_forgetting.ipynb``)
and measured over many seeds like a continual-learning paper
(``notebooks/05_forgetting_split_digits.ipynb``).

==========================  =============================================================
module                      contents
==========================  =============================================================
``base``                    :class:`Layer`: named parameters, freeze flags, gradients
``dense``                   :class:`Linear`, ``torch.nn.Linear``'s reference
``activations``             :class:`ReLU`, :class:`Tanh`, :class:`GELU`
``losses``                  :func:`mse_loss`, :func:`softmax_cross_entropy`
``regularizers``            :class:`L2SP`, an L2 pull toward the pre-trained weights
``optim``                   :class:`SGD`, :class:`AdamW` (PyTorch's update rules, with
                            per-parameter learning-rate multipliers)
``network``                 :class:`Network`, a sequence of layers (:meth:`Network.with_head`)
``training``                :func:`train` (``on_epoch_end`` to evaluate along training),
                            :func:`evaluate`, :class:`GradualUnfreezing`,
                            :func:`discriminative_lr_multipliers`, :class:`SlantedTriangular`
==========================  =============================================================

Parameters are named as in PyTorch's state dicts (``"0.weight"``,
``"2.lora_A.default.weight"``), so arrays move between the two unchanged.

References
----------
.. [1] D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
.. [2] I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
.. [3] J. Howard and S. Ruder, "Universal Language Model Fine-tuning for Text
   Classification", ACL 2018, arXiv:1801.06146.

Examples
--------
>>> import numpy as np
>>> from lowrank.adapter import LoRALinear
>>> from lowrank.adapter.nn import SGD, Linear, Network, Tanh, train
>>> rng = np.random.default_rng(0)
>>> W = rng.standard_normal((3, 4))
>>> net = Network([Linear(rng.standard_normal((4, 4))), Tanh(),
...                LoRALinear.from_factors(W, rng.standard_normal((1, 4)), np.zeros((3, 1)),
...                                        alpha=1.0)])
>>> net.layers[0].freeze()
>>> x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
>>> result = train(net, x, y, loss="mse", optimizer=SGD(0.1), epochs=3, rng=0)
>>> len(result.epoch_losses)
3
"""

from __future__ import annotations

from lowrank.adapter.nn.activations import GELU, ReLU, Tanh
from lowrank.adapter.nn.base import Layer
from lowrank.adapter.nn.dense import Linear
from lowrank.adapter.nn.losses import LossName, LossResult, mse_loss, softmax_cross_entropy
from lowrank.adapter.nn.network import Network
from lowrank.adapter.nn.optim import SGD, AdamW, Optimizer
from lowrank.adapter.nn.regularizers import L2SP
from lowrank.adapter.nn.training import (
    EpochCallback,
    GradualUnfreezing,
    LRSchedule,
    Schedule,
    SlantedTriangular,
    TrainResult,
    discriminative_lr_multipliers,
    evaluate,
    train,
)

__all__ = [
    "GELU",
    "L2SP",
    "SGD",
    "AdamW",
    "EpochCallback",
    "GradualUnfreezing",
    "LRSchedule",
    "Layer",
    "Linear",
    "LossName",
    "LossResult",
    "Network",
    "Optimizer",
    "ReLU",
    "Schedule",
    "SlantedTriangular",
    "Tanh",
    "TrainResult",
    "discriminative_lr_multipliers",
    "evaluate",
    "mse_loss",
    "softmax_cross_entropy",
    "train",
]
