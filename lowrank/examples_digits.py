r"""A real fine-tune made by the toolkit itself: a small network on scikit-learn's digits.

No pair of real base and fine-tuned checkpoints can be fetched offline, so
:func:`make_digits_finetune` makes one on real data: the 8x8 images of scikit-learn's
bundled digits data set (``load_digits``, shipped with scikit-learn, no download). A
64 -> 64 -> 64 -> 10 ``tanh`` network (:mod:`lowrank.adapter.nn`) is pre-trained on task 1
(the digits 0-4), then trained on task 2 (the digits 5-9, same 10-way head) twice from
the same start: fully (every weight and bias) and with LoRA (:func:`lowrank.lora.lora_init`
factors on the three layers, base frozen). Everything is seeded, so the files are the same
on every run of the same NumPy.

It sits above :mod:`lowrank.adapter` (it trains with it) and writes with :mod:`lowrank.io`.
scikit-learn is imported only when the function runs (the ``cli`` extra installs it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowrank._validation import check_int, check_path
from lowrank.adapter import LoRALinear
from lowrank.adapter.nn import AdamW, Linear, Network, Tanh, train
from lowrank.errors import InputError
from lowrank.io import save_safetensors
from lowrank.io.peft import save_peft_adapter
from lowrank.lora import lora_init

__all__ = ["DigitsFinetune", "make_digits_finetune"]

_HIDDEN = 64
_LAYERS = ("0", "2", "4")  # the Linear layers' indices in the Network (tanh between)
_EPOCHS_1, _EPOCHS_2, _BATCH = 20, 10, 32
_LORA_LR = 1e-2


@dataclass(frozen=True)
class DigitsFinetune:
    """The files written by :func:`make_digits_finetune` and the accuracies reached.

    Attributes
    ----------
    base, tuned_full : pathlib.Path
        ``base.safetensors`` (after pre-training on digits 0-4) and ``tuned_full.safetensors``
        (after full fine-tuning on digits 5-9); keys ``"0.weight"``, ``"0.bias"``, ...,
        ``"4.bias"``, float32.
    adapter : pathlib.Path
        The PEFT adapter folder of the LoRA run (modules ``"0"``, ``"2"``, ``"4"``).
    rank : int
        The LoRA rank.
    accuracy : dict of str to float
        Test accuracy (the last quarter of each task's images) of ``"base"`` on task 1 and
        ``"full"`` and ``"lora"`` on task 2.
    """

    base: Path
    tuned_full: Path
    adapter: Path
    rank: int
    accuracy: dict[str, float]


def _load_digits() -> tuple[Any, Any]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "make_digits_finetune needs scikit-learn for its bundled digits data set: "
            "the cli extra (pip install -e '.[cli]' in a clone of lowrank) or scikit-learn>=1.3"
        ) from exc
    digits = load_digits()
    return digits.data / 16.0, digits.target


def _dense(rng: np.random.Generator, out_features: int, in_features: int) -> Linear:
    # torch.nn.Linear's default initialisation, U(-1/sqrt(in), 1/sqrt(in)), in float32.
    bound = 1 / math.sqrt(in_features)
    return Linear(
        rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32),
        rng.uniform(-bound, bound, out_features).astype(np.float32),
    )


def _accuracy(net: Network, x: Any, y: Any) -> float:
    return float(np.mean(net.forward(x).argmax(axis=1) == y))


def make_digits_finetune(
    directory: str | os.PathLike[str], *, rank: int = 4, rng: int = 0
) -> DigitsFinetune:
    """Pre-train, fully fine-tune and LoRA-tune a small network on scikit-learn's digits.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder for ``base.safetensors``, ``tuned_full.safetensors`` and the adapter folder
        ``adapter_lora`` (created if needed; existing files are replaced).
    rank : int, default 4
        The LoRA rank (``lora_alpha = 2 * rank``), at most 64 (the widest layer's smaller
        side; a larger rank adds nothing a full update could not).
    rng : int, default 0
        Seed of the initialisation, the split and the minibatch order.

    Returns
    -------
    DigitsFinetune
        The paths written and the test accuracies.

    Raises
    ------
    InputError
        ``directory`` is not a path or is an existing file, ``rank`` is not an integer
        in [1, 64] or ``rng`` not an integer >= 0.
    ImportError
        scikit-learn is not installed.

    Notes
    -----
    Task 1 is the digits 0-4, task 2 the digits 5-9; per task the images are shuffled with
    the seed and the first three quarters train, the last quarter tests. Pre-training runs
    20 epochs of AdamW (learning rate 1e-2), each fine-tune 10 epochs (learning rate 3e-3
    for full fine-tuning, 1e-2 for LoRA), minibatches of 32, all in float32: about a second
    of CPU.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     made = make_digits_finetune(d)
    ...     sorted(p.name for p in made.base.parent.iterdir())
    ...     made.accuracy["base"] > 0.9
    ['adapter_lora', 'base.safetensors', 'tuned_full.safetensors']
    True
    """
    rank = check_int(rank, name="rank", minimum=1, maximum=_HIDDEN)
    seed = check_int(rng, name="rng", minimum=0)
    out = check_path(directory, name="directory")
    if out.exists() and not out.is_dir():
        raise InputError(f"directory must be a folder; '{out}' is a file")
    x_all, labels = _load_digits()
    x_all = x_all.astype(np.float32)
    order = np.random.default_rng(seed).permutation(labels.size)
    tasks = {}
    for task, classes in ((1, range(5)), (2, range(5, 10))):
        idx = order[np.isin(labels[order], list(classes))]
        cut = 3 * idx.size // 4
        tasks[task] = (
            (x_all[idx[:cut]], labels[idx[:cut]]),
            (x_all[idx[cut:]], labels[idx[cut:]]),
        )
    init = np.random.default_rng(seed + 1)
    net = Network(
        [
            _dense(init, _HIDDEN, 64),
            Tanh(),
            _dense(init, _HIDDEN, _HIDDEN),
            Tanh(),
            _dense(init, 10, _HIDDEN),
        ]
    )

    def fit(network: Network, task: int, lr: float, epochs: int) -> None:
        x, y = tasks[task][0]
        optimizer = AdamW(lr, weight_decay=0.0)
        train(
            network,
            x,
            y,
            loss="cross_entropy",
            optimizer=optimizer,
            epochs=epochs,
            batch_size=_BATCH,
            rng=seed,
        )

    fit(net, 1, 1e-2, _EPOCHS_1)
    base = net.parameters()
    accuracy = {"base": _accuracy(net, *tasks[1][1])}

    full = Network([layer if i % 2 else _copy(base, i) for i, layer in enumerate(net.layers)])
    fit(full, 2, 3e-3, _EPOCHS_2)
    accuracy["full"] = _accuracy(full, *tasks[2][1])

    lora_rng = np.random.default_rng(seed + 2)
    lora_layers = {
        key: LoRALinear.from_init(
            lora_init(base[f"{key}.weight"], rank, alpha=2.0 * rank, rng=lora_rng),
            weight=base[f"{key}.weight"],
            bias=base[f"{key}.bias"],
        )
        for key in _LAYERS
    }
    lora = Network([lora_layers["0"], Tanh(), lora_layers["2"], Tanh(), lora_layers["4"]])
    fit(lora, 2, _LORA_LR, _EPOCHS_2)
    accuracy["lora"] = _accuracy(lora, *tasks[2][1])

    out.mkdir(parents=True, exist_ok=True)
    made = DigitsFinetune(
        base=out / "base.safetensors",
        tuned_full=out / "tuned_full.safetensors",
        adapter=out / "adapter_lora",
        rank=rank,
        accuracy=accuracy,
    )
    save_safetensors(made.base, base)
    save_safetensors(made.tuned_full, full.parameters())
    trained = lora.parameters()
    save_peft_adapter(
        made.adapter,
        {
            key: (trained[f"{key}.lora_A.default.weight"], trained[f"{key}.lora_B.default.weight"])
            for key in _LAYERS
        },
        {"r": rank, "lora_alpha": 2 * rank},
        overwrite=True,
    )
    return made


def _copy(params: dict[str, Any], index: int) -> Linear:
    return Linear(params[f"{index}.weight"], params[f"{index}.bias"])
