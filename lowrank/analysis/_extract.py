r"""A PEFT LoRA adapter of the difference between two checkpoints, layer by layer.

Pairs the matrices of a base and a fine-tuned checkpoint by name, extracts the
Eckart–Young–Mirsky-optimal LoRA of each difference :math:`\Delta W = W_\text{tuned} -
W_\text{base}` (:func:`lowrank.lora.extract_many`) and writes a PEFT adapter folder
(:func:`lowrank.io.peft.save_peft_adapter`). Pairs are loaded one at a time, so memory
follows the largest pair, not the checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowrank._typing import Array
from lowrank._validation import check_int, check_path
from lowrank.analysis._results import SkippedTensor
from lowrank.analysis._update import _checkpoint, _skip
from lowrank.errors import InputError
from lowrank.io import Patterns, TensorInfo, load_matrix, matrix_shape, select
from lowrank.io._paths import check_distinct_paths
from lowrank.io.peft import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, save_peft_adapter
from lowrank.lora import ExtractedAdapter, extract_many

__all__ = ["CheckpointExtraction", "extract_checkpoint"]

_SUFFIX = ".weight"


class _LazyPairs(Mapping[str, tuple[Array, Array]]):
    """Module name -> (W_base, W_tuned), each pair loaded only when asked for."""

    def __init__(self, pairs: dict[str, tuple[TensorInfo, TensorInfo]]) -> None:
        self._pairs = pairs

    def __getitem__(self, name: str) -> tuple[Array, Array]:
        base, tuned = self._pairs[name]
        return load_matrix(base), load_matrix(tuned)

    def __iter__(self) -> Iterator[str]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)


@dataclass(frozen=True, eq=False)
class CheckpointExtraction:
    """The adapter extracted from two checkpoints, and what was left out.

    Attributes
    ----------
    base, tuned : str
        Absolute paths of the two checkpoints.
    adapter : lowrank.lora.ExtractedAdapter
        Factors (with their exact errors) and the PEFT config, by module name.
    shapes : dict of str to tuple of int
        The ``(out, in)`` shape of each adapted module's weight.
    skipped : tuple of SkippedTensor
        Tensors without a partner of the same name in the other checkpoint (code
        ``"unpaired"``), of a different shape there (``"shape"``), tensors not named
        ``*.weight`` (``"name"``), unchanged weights (``"unchanged"``), and what the
        selection passed over.
    """

    base: str
    tuned: str
    adapter: ExtractedAdapter
    shapes: Mapping[str, tuple[int, int]]
    skipped: tuple[SkippedTensor, ...]

    def save(
        self,
        directory: str | os.PathLike[str],
        *,
        dtype: Any = None,
        base_model_name_or_path: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the PEFT adapter folder (see :func:`lowrank.io.save_peft_adapter`).

        Parameters
        ----------
        directory : str or os.PathLike
            The folder to create or, with ``overwrite``, update.
        dtype : dtype, optional
            Convert the factors (float16, bfloat16, float32 or float64).
        base_model_name_or_path : str, optional
            Written to ``adapter_config.json``.
        overwrite : bool, default False
            Replace the adapter files of an existing folder.

        Returns
        -------
        pathlib.Path
            The folder.

        Raises
        ------
        InputError
            ``directory`` is ``base`` or ``tuned`` (a checkpoint directory), or one of its two
            adapter files resolves to a file of them; otherwise as
            :func:`lowrank.io.save_peft_adapter`.
        NonFiniteError, DTypeError, ShapeError
            As :func:`lowrank.io.save_peft_adapter` (e.g. factors that overflow ``dtype``).
        """
        folder = check_path(directory, name="directory")
        check_distinct_paths(
            [
                ("directory", folder / ADAPTER_CONFIG_NAME),
                ("directory", folder / ADAPTER_WEIGHTS_NAME),
            ],
            [("base", self.base), ("tuned", self.tuned)],
            folders=[("directory", folder)],
        )
        return save_peft_adapter(
            directory,
            self.adapter.modules,
            self.adapter.config,
            base_model_name_or_path=base_model_name_or_path,
            dtype=dtype,
            overwrite=overwrite,
        )


def extract_checkpoint(
    base: str | os.PathLike[str],
    tuned: str | os.PathLike[str],
    *,
    rank: int | None = None,
    energy: float | None = None,
    include: Patterns = None,
    exclude: Patterns = None,
    regex: bool = False,
    use_rslora: bool = False,
    dtype: Any = None,
) -> CheckpointExtraction:
    r"""Extract a LoRA adapter of ``tuned - base`` for every ``*.weight`` matrix in both.

    Parameters
    ----------
    base, tuned : str or os.PathLike
        Checkpoints as accepted by :func:`lowrank.io.list_tensors`. The order matters: the
        adapter approximates ``tuned - base``, so swapping them negates it.
    rank : int, optional
        One rank for every module (capped at ``min(out, in)`` of each).
    energy : float, optional
        Per module, the smallest rank capturing this fraction of
        :math:`\|\Delta W\|_F^2` (at least 1). Exactly one of ``rank`` and ``energy``.
    include, exclude, regex
        Tensor selection, as :func:`lowrank.io.select`, applied to both checkpoints.
        Embedding matrices should be excluded: PEFT adapts ``nn.Embedding`` with other
        keys (``lora_embedding_A/B``) than the plain LoRA written here.
    use_rslora : bool, default False
        Write an rsLoRA config (scaling :math:`\alpha/\sqrt r`); factors still give
        :math:`\Delta W \approx sBA` with :math:`s = 1`.
    dtype : dtype, optional
        dtype of the factors (float16, bfloat16, float32 or float64), as
        :func:`lowrank.lora.extract_many`; default the weights'. float64 factors of float32
        weights are computed in float64.

    Returns
    -------
    CheckpointExtraction

    Raises
    ------
    InputError
        ``base`` or ``tuned`` not a non-empty ``str`` or ``os.PathLike``, not exactly one
        of ``rank`` and ``energy``, a bad value, ``include``/``exclude``
        patterns that select no matrix of a checkpoint (naming its closest tensor names,
        :func:`lowrank.io.select` with ``require_match=True``), no matrix common to both
        checkpoints, or every common matrix unchanged.
    MissingFileError
        ``base`` or ``tuned`` does not exist; or as :func:`lowrank.io.list_tensors` and
        :func:`lowrank.io.load_matrix`.
    FileFormatError
        As :func:`lowrank.io.list_tensors` and :func:`lowrank.io.load_matrix`.
    RankError, NonFiniteError
        As :func:`lowrank.lora.extract_many`.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((6, 5)).astype(np.float32)
    >>> delta = np.outer(rng.standard_normal(6), rng.standard_normal(5)).astype(np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_safetensors(Path(d) / "base.safetensors", {"fc.weight": W})
    ...     save_safetensors(Path(d) / "tuned.safetensors", {"fc.weight": W + delta})
    ...     result = extract_checkpoint(Path(d) / "base.safetensors",
    ...                                 Path(d) / "tuned.safetensors", rank=1)
    >>> module = result.adapter.modules["fc"]
    >>> module.lora_A.shape, module.lora_B.shape
    ((1, 5), (6, 1))
    """
    base_path = _checkpoint(base, name="base")
    tuned_path = _checkpoint(tuned, name="tuned")
    if (rank is None) == (energy is None):
        raise InputError(
            f"give exactly one of rank and energy; got rank={rank!r}, energy={energy!r}"
        )
    if rank is not None:
        rank = check_int(rank, name="rank", minimum=1)
    sel_base = select(base_path, include=include, exclude=exclude, regex=regex, require_match=True)
    sel_tuned = select(
        tuned_path, include=include, exclude=exclude, regex=regex, require_match=True
    )
    by_name = {info.name: info for info in sel_tuned.matrices}
    pairs: dict[str, tuple[TensorInfo, TensorInfo]] = {}
    shapes: dict[str, tuple[int, int]] = {}
    skipped = [_skip(s.info, s.code, s.reason) for s in sel_base.skipped]
    for info in sel_base.matrices:
        other = by_name.pop(info.name, None)
        if other is None:
            why = "no matrix of this name in the tuned checkpoint"
            skipped.append(_skip(info, "unpaired", why))
        elif other.shape != info.shape:
            skipped.append(
                _skip(info, "shape", f"shape {info.shape} in base but {other.shape} in tuned")
            )
        elif not info.name.endswith(_SUFFIX):
            skipped.append(_skip(info, "name", "not a '*.weight' tensor, so not a module weight"))
        else:
            module = info.name[: -len(_SUFFIX)]
            pairs[module] = (info, other)
            shapes[module] = matrix_shape(info)
    skipped += [
        _skip(info, "unpaired", "no matrix of this name in the base checkpoint")
        for info in by_name.values()
    ]
    if not pairs:
        raise InputError(
            f"the checkpoints have no '*.weight' matrix of the same name and shape in common "
            f"({len(sel_base.matrices)} selected in base, {len(sel_tuned.matrices)} in tuned)"
        )
    ranks = None if rank is None else {m: min(rank, min(shapes[m])) for m in pairs}
    adapter = extract_many(
        _LazyPairs(pairs), rank=ranks, energy=energy, use_rslora=use_rslora, dtype=dtype
    )
    for module in adapter.skipped:
        info = pairs[module][0]
        skipped.append(_skip(info, "unchanged", "the weight is identical in both checkpoints"))
        shapes.pop(module)
    return CheckpointExtraction(
        base=str(base_path),
        tuned=str(tuned_path),
        adapter=adapter,
        shapes=shapes,
        skipped=tuple(skipped),
    )
