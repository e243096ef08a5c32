"""Layer index and module name from tensor names, and the layer × module grid of a report.

Transformer checkpoints name their weights ``<stack>.<i>.<module>.weight``:
``encoder.layer.3.attention.self.query.weight`` (BERT), ``model.layers.0.self_attn.q_proj.weight``
(Llama), ``transformer.h.11.mlp.c_fc.weight`` (GPT-2). The first all-digit component after
the start is the layer index, what comes before it the stack, what follows the module
(without a final ``weight``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lowrank._typing import Array
from lowrank.analysis._results import MatrixResult
from lowrank.errors import InputError

__all__ = ["LayerGrid", "LayerName", "layer_grid", "parse_layer_name"]


@dataclass(frozen=True)
class LayerName:
    """The parts of a tensor name like ``encoder.layer.3.attention.self.query.weight``.

    Attributes
    ----------
    stack : str
        What precedes the layer index (``"encoder.layer"``).
    layer : int
        The layer index (``3``).
    module : str
        What follows it, without a final ``weight`` (``"attention.self.query"``).
    """

    stack: str
    layer: int
    module: str


def parse_layer_name(name: str) -> LayerName | None:
    """Split a tensor name into stack, layer index and module, or ``None`` if it has no index.

    Parameters
    ----------
    name : str
        A tensor name, e.g. ``"encoder.layer.3.attention.self.query.weight"``.

    Returns
    -------
    LayerName or None
        The first all-digit component is the layer index; what precedes it is the stack,
        what follows it (without a final ``weight``) the module.

    Raises
    ------
    InputError
        ``name`` is not a str.

    Examples
    --------
    >>> parse_layer_name("encoder.layer.3.attention.self.query.weight")
    LayerName(stack='encoder.layer', layer=3, module='attention.self.query')
    >>> parse_layer_name("model.layers.12.mlp.down_proj.weight").module
    'mlp.down_proj'
    >>> parse_layer_name("embeddings.word_embeddings.weight") is None
    True
    """
    if not isinstance(name, str):
        raise InputError(f"name must be a str; got {type(name).__name__}")
    parts = name.split(".")
    for i in range(1, len(parts) - 1):
        if parts[i].isdigit():
            module = parts[i + 1 :]
            if len(module) > 1 and module[-1] == "weight":
                module = module[:-1]
            return LayerName(
                stack=".".join(parts[:i]), layer=int(parts[i]), module=".".join(module)
            )
    return None


@dataclass(frozen=True, eq=False)
class LayerGrid:
    """Rank needed for an energy level, per layer (rows) and module (columns).

    Attributes
    ----------
    energy : float
        The energy fraction.
    rows : tuple of str
        Row labels: ``"3"`` for one stack, ``"decoder.block.3"`` when there are several.
    modules : tuple of str
        Column labels, in order of first appearance in the report.
    ranks : ndarray of float, shape (len(rows), len(modules))
        The rank; NaN where a layer has no such module.
    full_ranks : ndarray of float, same shape
        ``min(m, n)`` of each matrix (NaN where missing), to show ranks as fractions.
    left_out : tuple of str
        Analysed matrices whose names have no layer index (embeddings, heads...).
    """

    energy: float
    rows: tuple[str, ...]
    modules: tuple[str, ...]
    ranks: Array
    full_ranks: Array
    left_out: tuple[str, ...]


def layer_grid(results: Iterable[MatrixResult], *, energy: float) -> LayerGrid:
    """Arrange the rank for ``energy`` of layered matrices in a layer × module grid.

    Parameters
    ----------
    results : iterable of MatrixResult
        E.g. ``report.matrices``.
    energy : float
        One of the energies the analysis reported.

    Returns
    -------
    LayerGrid
        The ranks, the row and column labels, and the matrices left out.

    Raises
    ------
    InputError
        No name has a layer index, or ``energy`` was not analysed.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank.analysis import analyze_matrix
    >>> results = [
    ...     analyze_matrix(np.diag([1.0] * (layer + 1) + [0.0] * 3), name=f"h.{layer}.{m}.weight")
    ...     for layer in range(2)
    ...     for m in ("q", "v")
    ... ]
    >>> grid = layer_grid(results, energy=0.9)
    >>> grid.rows, grid.modules
    (('0', '1'), ('q', 'v'))
    >>> grid.ranks
    array([[1., 1.],
           [2., 2.]])
    """
    given: object = results
    if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
        raise InputError(f"results must be an iterable of MatrixResult objects; got {results!r}")
    items = list(results)
    for m in items:
        if not isinstance(m, MatrixResult):
            raise InputError(
                f"results must hold MatrixResult objects; got an item of type {type(m).__name__}"
            )
    placed: dict[tuple[str, int, str], MatrixResult] = {}
    left_out: list[str] = []
    for m in items:
        parsed = parse_layer_name(m.name)
        if parsed is None:
            left_out.append(m.name)
        else:
            placed.setdefault((parsed.stack, parsed.layer, parsed.module), m)
    if not placed:
        raise InputError(
            "a layer x module grid needs tensor names with a layer index, like "
            f"'encoder.layer.3.attention.self.query.weight'; none of the {len(items)} names has one"
        )
    stacks = list(dict.fromkeys(k[0] for k in placed))
    row_keys = sorted({(k[0], k[1]) for k in placed}, key=lambda r: (stacks.index(r[0]), r[1]))
    modules = list(dict.fromkeys(k[2] for k in placed))
    ranks = np.full((len(row_keys), len(modules)), np.nan)
    full = np.full_like(ranks, np.nan)
    for (stack, layer, module), m in placed.items():
        i, j = row_keys.index((stack, layer)), modules.index(module)
        ranks[i, j] = m.rank_for_energy(energy)
        full[i, j] = min(m.shape)
    labels = [str(layer) if len(stacks) == 1 else f"{stack}.{layer}" for stack, layer in row_keys]
    return LayerGrid(
        energy=float(energy),
        rows=tuple(labels),
        modules=tuple(modules),
        ranks=ranks,
        full_ranks=full,
        left_out=tuple(left_out),
    )
