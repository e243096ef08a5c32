r"""The random-matrix view of a whole model: per module type and overall.

:meth:`Report.random_matrix_summary <lowrank.analysis.Report.random_matrix_summary>` groups
the matrices of a report by module type (:func:`lowrank.analysis.parse_layer_name`:
``attention.self.query`` gathers that module of every layer; a matrix without a layer index,
such as ``embeddings.word_embeddings.weight``, is a group of its own, under its name) and
reduces each group's :attr:`MatrixResult.random_matrix` to a few numbers, WeightWatcher's
model-level view (its ``get_summary()`` means) with the spike counts of the
Marchenko–Pastur edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lowrank.analysis._layers import parse_layer_name
from lowrank.analysis._results import MatrixResult

__all__ = ["RandomMatrixGroup", "RandomMatrixOverview"]


@dataclass(frozen=True)
class RandomMatrixGroup:
    r"""The random-matrix view of a group of matrices (a module type, or all of them).

    Statistics of :math:`\alpha` are over the matrices with a power-law fit (``fitted`` of
    them); they are ``None`` when there is none.

    Attributes
    ----------
    name : str
        The module type (``"attention.self.query"``), the tensor name of a matrix without
        a layer index, or ``"all"`` for the overall group.
    count : int
        The number of matrices in the group.
    fitted : int
        How many of them have a power-law fit (``random_matrix.power_law`` not ``None``).
    alpha_mean, alpha_median : float or None
        The mean and median of ``alpha``.
    alpha_weighted_mean : float or None
        The mean of ``alpha_weighted`` (:math:`\alpha\log_{10}\sigma_1^2`).
    spikes : int
        The total number of singular values above the closed-form Marchenko–Pastur edge
        (:attr:`RandomMatrixView.marchenko_pastur`), over the group.
    under_trained_share, over_trained_share : float or None
        The share of the fitted matrices flagged under-trained (:math:`\alpha > 6`) or
        over-trained (:math:`\alpha < 2`), in [0, 1].
    """

    name: str
    count: int
    fitted: int
    alpha_mean: float | None
    alpha_median: float | None
    alpha_weighted_mean: float | None
    spikes: int
    under_trained_share: float | None
    over_trained_share: float | None


@dataclass(frozen=True)
class RandomMatrixOverview:
    """The random-matrix view of a report: per module type and overall.

    Attributes
    ----------
    modules : tuple of RandomMatrixGroup
        One group per module type (or per matrix without a layer index), in the order
        of their first matrix in the report.
    overall : RandomMatrixGroup
        All matrices of the report, named ``"all"``.
    """

    modules: tuple[RandomMatrixGroup, ...]
    overall: RandomMatrixGroup


def group_name(name: str) -> str:
    """The module type of a tensor name, or the name itself without a layer index."""
    parsed = parse_layer_name(name)
    return name if parsed is None else parsed.module


def _group(name: str, matrices: Sequence[MatrixResult]) -> RandomMatrixGroup:
    views = [m.random_matrix for m in matrices if m.random_matrix is not None]
    fits = [v.power_law for v in views if v.power_law is not None]
    alphas = [f.alpha for f in fits]

    def mean(values: list[float]) -> float | None:
        return math.fsum(values) / len(values) if values else None

    def share(flags: list[bool]) -> float | None:
        return sum(flags) / len(flags) if flags else None

    return RandomMatrixGroup(
        name=name,
        count=len(matrices),
        fitted=len(fits),
        alpha_mean=mean(alphas),
        alpha_median=float(np.median(alphas)) if alphas else None,
        alpha_weighted_mean=mean([f.alpha_weighted for f in fits]),
        spikes=sum(v.marchenko_pastur.num_spikes for v in views),
        under_trained_share=share([f.under_trained for f in fits]),
        over_trained_share=share([f.over_trained for f in fits]),
    )


def summarize(matrices: Sequence[MatrixResult]) -> RandomMatrixOverview:
    """The body of :meth:`Report.random_matrix_summary`."""
    groups: dict[str, list[MatrixResult]] = {}
    for m in matrices:
        groups.setdefault(group_name(m.name), []).append(m)
    return RandomMatrixOverview(
        modules=tuple(_group(name, ms) for name, ms in groups.items()),
        overall=_group("all", list(matrices)),
    )
