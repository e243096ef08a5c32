"""Layer index and module name from tensor names, and the layer × module grid of a report.

Transformer checkpoints name their weights ``<stack>.<i>.<module>.weight``:
``encoder.layer.3.attention.self.query.weight`` (BERT), ``model.layers.0.self_attn.q_proj.weight``
(Llama), ``transformer.h.11.mlp.c_fc.weight`` (GPT-2). The first all-digit component after
the start is the layer index, what comes before it the stack, what follows the module
(without a final ``weight``).

The grid's columns follow the model's order, not the file's (``module_order``): attention
first (query, key, value, a fused ``qkv``, then the output projection), then the feed-forward
block (up, gate, down), by the common names of BERT, Llama, GPT-2, T5 and DistilBERT modules;
modules of none of these kinds come after, in order of first appearance.
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


# The place of a module in a transformer block, by the last component of its name (and,
# for names used in both blocks, whether the name says attention). Lower comes first.
_QUERY, _KEY, _VALUE, _ATTN_OUT, _UP, _GATE, _DOWN = range(7)
_LAST_NAME = {
    **dict.fromkeys(("query", "q_proj", "q", "wq", "q_lin", "query_proj"), _QUERY),
    **dict.fromkeys(("c_attn", "qkv", "qkv_proj", "query_key_value", "wqkv", "in_proj"), _QUERY),
    **dict.fromkeys(("key", "k_proj", "k", "wk", "k_lin", "key_proj"), _KEY),
    **dict.fromkeys(("value", "v_proj", "v", "wv", "v_lin", "value_proj"), _VALUE),
    **dict.fromkeys(("o_proj", "out_proj", "o", "out_lin", "dense_proj"), _ATTN_OUT),
    **dict.fromkeys(("up_proj", "c_fc", "fc1", "w3", "lin1", "wi", "wi_1", "fc_in"), _UP),
    **dict.fromkeys(("dense_h_to_4h",), _UP),
    **dict.fromkeys(("gate_proj", "w1", "wi_0", "gate"), _GATE),
    **dict.fromkeys(("down_proj", "fc2", "w2", "lin2", "fc_out", "dense_4h_to_h"), _DOWN),
}
_ATTENTION_WORDS = ("attn", "attention")


def _module_place(module: str) -> int | None:
    parts = module.lower().split(".")
    last = parts[-1]
    in_attention = any(w in p for p in parts[:-1] for w in _ATTENTION_WORDS)
    if last in ("c_proj", "wo", "dense"):
        # GPT-2 attn.c_proj / mlp.c_proj, T5 SelfAttention.o / DenseReluDense.wo, BERT
        # attention.output.dense / intermediate.dense / output.dense.
        if in_attention:
            return _ATTN_OUT
        if "intermediate" in parts[:-1]:
            return _UP
        return _DOWN
    return _LAST_NAME.get(last)


def module_order(modules: Iterable[str]) -> list[str]:
    """Sort module names in the order of a transformer block; unknown ones after, as given.

    Parameters
    ----------
    modules : iterable of str
        Module names as :func:`parse_layer_name` gives them (``"attention.self.query"``).

    Returns
    -------
    list of str
        The distinct names: attention query, key and value (a fused ``qkv``/``c_attn``
        with the query), the attention output projection, then the feed-forward up, gate and
        down projections; names of none of these kinds last, in their first-seen order.
        Recognised by the last component: ``query``/``q_proj``/``q``/``wq``/``q_lin``,
        ``key``/``k_proj``..., ``value``/``v_proj``..., ``o_proj``/``out_proj``/``o``, and
        ``up_proj``/``c_fc``/``fc1``/``w3``/``wi``, ``gate_proj``/``w1``,
        ``down_proj``/``fc2``/``w2``; ``dense``, ``c_proj`` and ``wo`` are the attention
        output under an ``attention``/``attn`` component, the up projection under
        ``intermediate`` (BERT) and the down projection otherwise.

    Raises
    ------
    InputError
        ``modules`` is not an iterable of str.

    Examples
    --------
    >>> module_order(["mlp.down_proj", "self_attn.o_proj", "self_attn.q_proj", "mlp.up_proj"])
    ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.up_proj', 'mlp.down_proj']
    >>> module_order(["output.dense", "attention.output.dense", "intermediate.dense", "adapter"])
    ['attention.output.dense', 'intermediate.dense', 'output.dense', 'adapter']
    """
    given: object = modules
    if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
        raise InputError(f"modules must be an iterable of str; got {modules!r}")
    names = list(dict.fromkeys(modules))
    bad = [type(n).__name__ for n in names if not isinstance(n, str)]
    if bad:
        raise InputError(f"modules must hold str; got an item of type {bad[0]}")
    places = {n: _module_place(n) for n in names}
    known = sorted((n for n in names if places[n] is not None), key=lambda n: places[n] or 0)
    return known + [n for n in names if places[n] is None]


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
        Column labels in the order of a transformer block: attention query, key, value
        (a fused ``qkv`` with the query), output projection, then feed-forward up, gate,
        down, by the common module names of BERT, Llama, GPT-2, T5 and DistilBERT; other
        modules after these, in order of first appearance.
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
    modules = module_order(k[2] for k in placed)
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
