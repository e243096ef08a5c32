r"""Update analyses: :math:`\Delta W = W_\text{tuned} - W_\text{base}` over two checkpoints.

The matrices of both checkpoints are paired by tensor name; each pair is one task on the
executor (the same executors, checkpointing and report as :func:`start_analysis`), which
loads only that pair. Names present in one checkpoint only and pairs whose shapes differ are
listed in the report's ``skipped`` (codes ``"unpaired"`` and ``"shape"``), not dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from lowrank._validation import check_callable
from lowrank.analysis._report import Report
from lowrank.analysis._results import DEFAULT_ENERGIES, DEFAULT_RANKS, SkippedTensor
from lowrank.analysis._run import AnalysisRun, Outcome, _check_run, _start_run, drain
from lowrank.analysis._update import _checkpoint, _skip
from lowrank.errors import InputError
from lowrank.io import NDPolicy, Patterns, Selection, TensorInfo, select
from lowrank.io._paths import check_distinct_paths

__all__ = ["analyze_update", "start_update_analysis"]


def _pair(
    tuned: Selection, base: Selection
) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...], tuple[SkippedTensor, ...]]:
    """Tuned matrices with a base partner of the same shape, their partners, the others."""
    by_name = {info.name: info for info in base.matrices}
    base_skips = {s.info.name: s.reason for s in base.skipped}
    paired: list[TensorInfo] = []
    partners: list[TensorInfo] = []
    unpaired: list[SkippedTensor] = []
    for info in tuned.matrices:
        other = by_name.pop(info.name, None)
        if other is None:
            why = "no matrix of this name in the base checkpoint"
            if info.name in base_skips:
                why += f" (there: {base_skips[info.name]})"
            unpaired.append(_skip(info, "unpaired", why))
        elif other.shape != info.shape:
            unpaired.append(
                _skip(info, "shape", f"shape {info.shape} in tuned but {other.shape} in base")
            )
        else:
            paired.append(info)
            partners.append(other)
    unpaired += [
        _skip(info, "unpaired", "no matrix of this name in the tuned checkpoint (base only)")
        for info in by_name.values()
    ]
    return tuple(paired), tuple(partners), tuple(unpaired)


def start_update_analysis(
    tuned: str | os.PathLike[str],
    base: str | os.PathLike[str],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    regex: bool = False,
    nd_policy: NDPolicy = "skip",
    ranks: Sequence[int] = DEFAULT_RANKS,
    energies: Sequence[float] = DEFAULT_ENERGIES,
    executor: Executor | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_interval: float = 5.0,
) -> AnalysisRun:
    r"""Pair the matrices of two checkpoints by name and submit one task per pair.

    Parameters
    ----------
    tuned, base : str or os.PathLike
        The fine-tuned and the base checkpoint: weight files, sharded checkpoints' indexes
        or directories (:func:`lowrank.io.list_tensors`), in any stored dtype (bfloat16
        included). The order matters: the update is ``tuned - base``.
    include, exclude, regex, nd_policy
        The selection (:func:`lowrank.io.select`), applied to both checkpoints.
    ranks, energies, executor, workers, threads_per_worker, checkpoint, checkpoint_interval
        As :func:`start_analysis` (the default executor counts the elements of both
        checkpoints' paired matrices).

    Returns
    -------
    AnalysisRun
        Its outcomes are :class:`UpdateResult` or :class:`SkippedTensor`; its report lists
        the unpaired tensors and shape mismatches in ``skipped``.

    Raises
    ------
    MissingFileError
        ``tuned`` or ``base`` does not exist, or as :func:`start_analysis`.
    InputError
        As :func:`start_analysis`; also a ``checkpoint`` that resolves to ``tuned``,
        ``base`` or a file of either, and checkpoints with no selected matrix of the same
        name and shape in common (nothing to compare; found from the headers).
    FileFormatError
        As :func:`start_analysis`.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors
    >>> W = np.eye(3, dtype=np.float32)
    >>> with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(1) as pool:
    ...     save_safetensors(Path(d) / "b.safetensors", {"q.weight": W, "k.weight": W})
    ...     save_safetensors(Path(d) / "t.safetensors", {"q.weight": 2 * W})
    ...     with start_update_analysis(Path(d) / "t.safetensors", Path(d) / "b.safetensors",
    ...                                ranks=[1], executor=pool) as run:
    ...         names = [outcome.name for outcome in run]
    ...         report = run.report()
    >>> names, [(s.name, s.code) for s in report.skipped]
    (['q.weight'], [('k.weight', 'unpaired')])
    """
    tuned_path = _checkpoint(tuned, name="tuned")
    base_path = _checkpoint(base, name="base")
    checked = _check_run(
        ranks=ranks,
        energies=energies,
        regex=regex,
        executor=executor,
        workers=workers,
        threads_per_worker=threads_per_worker,
        checkpoint=checkpoint,
        checkpoint_interval=checkpoint_interval,
    )
    # Before anything is written: the first checkpoint write would replace an input.
    check_distinct_paths(
        [("checkpoint", checked.target)], [("tuned", tuned_path), ("base", base_path)]
    )
    sel_tuned = select(
        tuned_path, include=include, exclude=exclude, regex=checked.regex, nd_policy=nd_policy
    )
    sel_base = select(
        base_path, include=include, exclude=exclude, regex=checked.regex, nd_policy=nd_policy
    )
    paired, partners, unpaired = _pair(sel_tuned, sel_base)
    if not paired:  # an empty report would pass for a complete one
        raise InputError(
            f"nothing to compare: '{tuned_path}' and the base '{base_path}' have no matrix of "
            f"the same name and shape in common ({len(sel_tuned.matrices)} selected in tuned, "
            f"{len(sel_base.matrices)} in base)"
        )
    return _start_run(
        Selection(matrices=paired, skipped=sel_tuned.skipped, nd_policy=sel_tuned.nd_policy),
        checked,
        source=tuned_path,
        include=include,
        exclude=exclude,
        nd_policy=nd_policy,
        base=str(base_path),
        bases=partners,
        unpaired=unpaired,
    )


def analyze_update(
    tuned: str | os.PathLike[str],
    base: str | os.PathLike[str],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    regex: bool = False,
    nd_policy: NDPolicy = "skip",
    ranks: Sequence[int] = DEFAULT_RANKS,
    energies: Sequence[float] = DEFAULT_ENERGIES,
    executor: Executor | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_interval: float = 5.0,
    on_result: Callable[[Outcome, AnalysisRun], None] | None = None,
) -> Report:
    r"""Analyse the update :math:`\Delta W = W_\text{tuned} - W_\text{base}` of every matrix.

    Parameters
    ----------
    tuned, base : str or os.PathLike
        The fine-tuned and the base checkpoint (:func:`start_update_analysis`).
    include, exclude, regex, nd_policy
        The selection (:func:`lowrank.io.select`), applied to both checkpoints.
    ranks : sequence of int, default (8, 16, 64)
        Ranks whose relative error (what :func:`lowrank.lora.extract` achieves), subspace
        overlaps and amplification factor are reported.
    energies : sequence of float, default (0.9, 0.99)
        Energy fractions of :math:`\|\Delta W\|_F^2` whose rank is reported.
    executor, workers, threads_per_worker, checkpoint, checkpoint_interval, on_result
        As :func:`analyze`.

    Returns
    -------
    Report
        One :class:`UpdateResult` per pair, in the tuned checkpoint's storage order;
        ``skipped`` lists what the selection passed over, the unpaired names (code
        ``"unpaired"``), the shape mismatches (``"shape"``), the unchanged matrices
        (``"unchanged"``) and the failed pairs (``"error"``); ``run.base`` is the base
        checkpoint.

    Raises
    ------
    AnalysisError, KeyboardInterrupt
        As :func:`analyze`.
    InputError, MissingFileError, FileFormatError
        As :func:`start_update_analysis`.

    Notes
    -----
    Each task loads one pair, so a worker's memory follows the largest pair (both stored
    matrices, their float64 copies, :math:`\Delta W` and the SVD workspaces: about 9
    float64 copies of one matrix at the peak, measured with ``tracemalloc`` on 300 x 200
    pairs), not the checkpoints. The per-pair numbers are those of
    :func:`analyze_update_matrix`; they cost more than :func:`analyze`'s (one SVD for the
    spectrum, then one full SVD of :math:`\Delta W` and one of :math:`W` for the overlaps
    and the amplification factors): measured on one BLAS thread, 1.2 s for a
    1024 x 1024 pair with the default ranks against 0.2 s for :func:`analyze_matrix` on
    one such matrix.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors
    >>> W = np.diag([4.0, 2.0, 1.0]).astype(np.float32)
    >>> with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(1) as pool:
    ...     save_safetensors(Path(d) / "b.safetensors", {"fc.weight": W})
    ...     save_safetensors(Path(d) / "t.safetensors", {"fc.weight": W + np.diag([0, 0, 3])})
    ...     report = analyze_update(Path(d) / "t.safetensors", Path(d) / "b.safetensors",
    ...                             ranks=[1], executor=pool)
    >>> m = report.matrices[0]
    >>> m.name, m.norm_fro, m.rank_errors, m.amplification
    ('fc.weight', 3.0, ((1, 0.0),), ((1, 3.0),))
    """
    if on_result is not None:
        check_callable(on_result, name="on_result")
    run = start_update_analysis(
        tuned,
        base,
        include=include,
        exclude=exclude,
        regex=regex,
        nd_policy=nd_policy,
        ranks=ranks,
        energies=energies,
        executor=executor,
        workers=workers,
        threads_per_worker=threads_per_worker,
        checkpoint=checkpoint,
        checkpoint_interval=checkpoint_interval,
    )
    return drain(run, on_result)
