r"""The LoRA paper's analysis of learned adapters (Hu et al. 2021, §7 and Appendices G, H).

**Normalised subspace similarity** (§7.2, eq. 4). For two learned factors with top-:math:`i`
and top-:math:`j` singular-vector matrices :math:`U^i_1` and :math:`U^j_2`,

.. math::

    \phi(X_1, X_2, i, j) = \frac{\|{U^i_1}^\top U^j_2\|_F^2}{\min(i, j)}
                         = \frac{1}{\min(i,j)}\sum_k \sigma_k^2({U^i_1}^\top U^j_2)
                         \in [0, 1] ,

1 when one span contains the other, 0 when they are orthogonal. The paper takes the **right**
singular vectors of the ``lora_A`` matrices (``side="right"``); its footnote notes the same can
be done with ``lora_B`` and left singular vectors (``side="left"``). (Appendix G prints the
right-hand side as :math:`(1 - d^2)/p` with the projection metric :math:`d`; algebraically it is
:math:`1 - d^2/p`, which is what the formula above computes.)

**Amplification factor** (§7.3, Appendix H.4): with :math:`U_r, V_r` the top-:math:`r`
left/right singular vectors of :math:`\Delta W`, the factor
:math:`\|\Delta W\|_F / \|U_r^\top W V_r\|_F` says how strongly the adapter amplifies
directions that :math:`W` itself barely uses (about 21.5 for GPT-3's :math:`W_q` at
:math:`r = 4`).

Letters: the paper's :math:`A` is ``lora_A`` ``(r, in)`` and its :math:`B` is ``lora_B``
``(out, r)``, as in PEFT.

References
----------
.. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
   arXiv:2106.09685, §7.2–7.3, Appendices G and H.
.. [2] J. Hamm and D. D. Lee, "Grassmann discriminant analysis", ICML 2008 (projection metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lowrank._numerics import frobenius_norm, tolerance
from lowrank._operator import dense_input
from lowrank._typing import Array, ArrayLike
from lowrank._validation import (
    as_array,
    as_matrix,
    check_choice,
    check_positive_float,
    check_rank,
)
from lowrank.errors import InputError, RankError, ShapeError
from lowrank.lora._weights import storage_dtype
from lowrank.lora.convert import _factored_svd
from lowrank.svd import svd_of

__all__ = [
    "Amplification",
    "amplification_factor",
    "subspace_similarity",
    "subspace_similarity_grid",
]

Side = Literal["right", "left"]


def _rounding_level(S: Array, shape: tuple[int, ...], dtype: Any = np.float64) -> float:
    r"""The singular value at or below which a computed :math:`\sigma_r` counts as 0.

    :math:`16\,\varepsilon\sqrt{\max(m, n)}\,\sigma_1`, the rounding level of a
    backward-stable SVD in ``dtype`` (the level below which the update analysis reports
    its overlaps as undefined, for float64). ``S`` descending; 0 for a zero matrix.
    """
    top = float(S[0]) if S.size else 0.0
    return tolerance(dtype, size=max(shape, default=1), scale=max(top, 0.0))


def _beyond_rank(owner: str, k: int, arg: str, value: int, quantity: str) -> RankError:
    """The error for ``arg = value`` above the numerical rank ``k`` of ``owner``.

    Past the numerical rank the singular vectors are an arbitrary basis LAPACK picks, so
    a number computed from them would depend on it: refused, never returned.
    """
    if k == 0:
        why = f"{owner} is zero (numerical rank 0): it has no singular subspace"
    else:
        why = (
            f"{owner} has numerical rank {k} < {arg} = {value} (its further singular "
            "values are at the rounding level of its SVD, 16 eps sqrt(max(shape)) sigma_1): "
            f"its top-{value} singular subspace is not defined"
        )
    hint = f"; use {arg} <= {k}" if k else ""
    return RankError(f"{why}, so {quantity} is undefined{hint}")


def _singular_vectors(X: ArrayLike, side: str, name: str) -> tuple[Array, int]:
    """Orthonormal columns: the right (rows of Vh, transposed) or left singular vectors,
    all ``min(X.shape)`` of them, in float64; and the numerical rank of ``X``, the number
    of singular values above their rounding level (the vectors past it are an arbitrary
    basis LAPACK picks, not ``X``'s)."""
    raw = as_array(X, name=name)
    storage_dtype(raw.dtype, name=name)
    m = as_matrix(raw, name=name).astype(np.float64, copy=False)
    res = svd_of(dense_input(m), min(m.shape), method="exact")
    level = _rounding_level(res.S, m.shape)
    rank = int(np.count_nonzero(level < res.S))
    return (res.Vh.T if side == "right" else res.U), rank


def _similarity_grid(X1: ArrayLike, X2: ArrayLike, side: str) -> tuple[Array, int, int]:
    """The whole grid, defined or not, and the numerical ranks of ``X1`` and ``X2``."""
    check_choice(side, name="side", choices=("right", "left"))
    U1, k1 = _singular_vectors(X1, side, "X1")
    U2, k2 = _singular_vectors(X2, side, "X2")
    if U1.shape[0] != U2.shape[0]:
        axis = "columns" if side == "right" else "rows"
        raise ShapeError(
            f"X1 and X2 must have the same number of {axis} for side={side!r} (their "
            f"singular vectors must live in one space); got {np.shape(X1)} and {np.shape(X2)}"
        )
    M2 = (U1.T @ U2) ** 2
    cumulative = np.cumsum(np.cumsum(M2, axis=0), axis=1)
    i = np.arange(1, M2.shape[0] + 1)[:, None]
    j = np.arange(1, M2.shape[1] + 1)[None, :]
    grid: Array = np.clip(cumulative / np.minimum(i, j), 0.0, 1.0)
    return grid, k1, k2


def subspace_similarity_grid(
    X1: ArrayLike,
    X2: ArrayLike,
    *,
    side: Side = "right",
) -> Array:
    r"""All :math:`\phi(X_1, X_2, i, j)` at once: the grid of the LoRA paper's Figure 3.

    Parameters
    ----------
    X1, X2 : array_like
        Two learned factors: ``lora_A`` matrices ``(r1, in)``, ``(r2, in)`` with
        ``side="right"``, or ``lora_B`` matrices ``(out, r1)``, ``(out, r2)`` with
        ``side="left"``.
    side : {"right", "left"}, default "right"
        Which singular vectors span the subspaces.

    Returns
    -------
    ndarray, shape (k1, k2)
        ``grid[i - 1, j - 1]`` is :math:`\phi(i, j)`, for :math:`k = \min(X.shape)`;
        ``nan`` where :math:`\phi` is undefined: ``i`` above the numerical rank of ``X1``
        or ``j`` above that of ``X2`` (every entry for an all-zero factor). See Notes.

    Raises
    ------
    InputError
        Unknown ``side``.
    ShapeError
        The singular vectors live in spaces of different dimensions (``X1.shape[1] !=
        X2.shape[1]`` for ``"right"``, ``X1.shape[0] != X2.shape[0]`` for ``"left"``), or a
        factor that is not 2-D or is empty.
    DTypeError, NonFiniteError
        Unsupported dtype or non-finite entries.

    Notes
    -----
    With :math:`M = U_1^\top U_2` (all vectors), :math:`\phi(i, j)` is the sum of
    :math:`M_{ab}^2` over :math:`a \le i, b \le j` divided by :math:`\min(i, j)`: one SVD per
    factor and two cumulative sums give the whole grid.

    The numerical rank of a factor is the number of its singular values above
    :math:`\tau = 16\,\varepsilon_{64}\sqrt{\max(X.shape)}\,\sigma_1`, the rounding level
    of its float64 SVD (the rule by which :func:`lowrank.analysis.analyze_update_matrix`
    reports undefined overlaps). Past it the singular vectors are an arbitrary basis LAPACK
    picks, not the factor's (a factor of rank 1 has a span of dimension 1, a zero factor
    none), so :math:`\phi` there would measure that basis: those rows and columns are
    ``nan``. Singular vectors of repeated singular values are not unique either, and
    neither is :math:`\phi` at an :math:`i` or :math:`j` inside such a tie.

    Examples
    --------
    >>> import numpy as np
    >>> A1 = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])   # distinct singular values
    >>> A2 = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    >>> subspace_similarity_grid(A1, A2)
    array([[0. , 0. ],
           [1. , 0.5]])
    """
    grid, k1, k2 = _similarity_grid(X1, X2, side)
    grid[k1:, :] = np.nan
    grid[:, k2:] = np.nan
    return grid


def subspace_similarity(
    X1: ArrayLike,
    X2: ArrayLike,
    i: int,
    j: int,
    *,
    side: Side = "right",
) -> float:
    r"""The normalised subspace similarity :math:`\phi(X_1, X_2, i, j)` of the LoRA paper.

    Parameters
    ----------
    X1, X2 : array_like
        ``lora_A`` matrices (``side="right"``) or ``lora_B`` matrices (``side="left"``).
    i, j : int
        Numbers of leading singular vectors, ``1 <= i <= min(X1.shape)``,
        ``1 <= j <= min(X2.shape)``.
    side : {"right", "left"}, default "right"

    Returns
    -------
    float
        In :math:`[0, 1]`.

    Raises
    ------
    RankError
        ``i`` or ``j`` out of range, or above the numerical rank of its factor (where
        :func:`subspace_similarity_grid` has ``nan``: the span is not defined there, e.g.
        every ``i`` for an all-zero ``X1``, such as LoRA's initial ``lora_B``).
    And the errors of :func:`subspace_similarity_grid`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((4, 4000))
    >>> round(subspace_similarity(A, 3.0 * A, 4, 4), 12)         # same row space
    1.0
    >>> round(subspace_similarity(A, rng.standard_normal((4, 4000)), 1, 1), 2)   # unrelated
    0.0
    """
    grid, k1, k2 = _similarity_grid(X1, X2, side)
    ii = check_rank(i, upper=grid.shape[0], lower=1, name="i", upper_text="min(X1.shape)")
    jj = check_rank(j, upper=grid.shape[1], lower=1, name="j", upper_text="min(X2.shape)")
    for arg, value, factor, k in (("i", ii, "X1", k1), ("j", jj, "X2", k2)):
        if value > k:
            raise _beyond_rank(factor, k, arg, value, "phi(X1, X2, i, j)")
    return float(grid[ii - 1, jj - 1])


@dataclass(frozen=True)
class Amplification:
    r"""How much an adapter amplifies directions of :math:`W` (LoRA paper, §7.3).

    Attributes
    ----------
    rank : int
        :math:`r`, the number of singular directions of :math:`\Delta W` projected on.
    delta_fro : float
        :math:`\|\Delta W\|_F`.
    projection_fro : float
        :math:`\|U_r^\top W V_r\|_F`, with :math:`U_r, V_r` from :math:`\Delta W`.
    weight_fro : float
        :math:`\|W\|_F`.
    factor : float
        ``delta_fro / projection_fro`` (``inf`` if the projection is 0).
    """

    rank: int
    delta_fro: float
    projection_fro: float
    weight_fro: float
    factor: float


def amplification_factor(
    W: ArrayLike,
    delta_W: Any,
    *,
    rank: int | None = None,
    scaling: float | None = None,
) -> Amplification:
    r"""The LoRA paper's amplification factor :math:`\|\Delta W\|_F / \|U_r^\top W V_r\|_F`.

    Parameters
    ----------
    W : array_like, shape (out, in)
        The pre-trained weight.
    delta_W : array_like (out, in), a pair ``(lora_A, lora_B)``, or factors
        The update, dense or factored (:math:`\Delta W = s\,BA`; the dense product is never
        formed for factors). A pair is in the project's one factor order,
        ``(lora_A, lora_B)`` (as :func:`lowrank.lora.factored_svd` and PEFT); an object
        with ``lora_A`` and ``lora_B`` attributes (a ``LoRAInit``, an ``Extraction``, a
        ``PeftModule``) gives its factors, and its ``scaling`` unless ``scaling`` is
        given.
    rank : int, optional
        :math:`r`, ``1 <= rank`` and at most the numerical rank of :math:`\Delta W` (see
        Notes); default the inner dimension of a factored update. Required for a dense one.
    scaling : float, optional
        :math:`s` for a factored update: default the object's ``scaling``, else 1.0
        (only 1.0 for a dense one).

    Returns
    -------
    Amplification

    Raises
    ------
    InputError
        ``rank`` missing for a dense update, or ``scaling`` given with one.
    RankError
        ``rank`` out of range, or above the numerical rank of :math:`\Delta W` (every
        ``rank`` of a zero update, e.g. LoRA's initial ``lora_B = 0``).
    ShapeError
        ``W`` and :math:`\Delta W` of different shapes, or factors that do not pair up.
    DTypeError, NonFiniteError
        Unsupported dtypes or non-finite entries; for a pair, also finite factors whose
        product :math:`s\,BA` overflows float64.

    Notes
    -----
    :math:`U_r, V_r` are defined by :math:`\Delta W` only up to its numerical rank
    :math:`k`, the number of its singular values above
    :math:`16\,\varepsilon\sqrt{\max(m, n)}\,\sigma_1(\Delta W)` (:math:`\varepsilon` of
    the dtype the SVD runs in, float64 for a pair), the rounding level of the SVD: past
    it the singular vectors are an arbitrary basis LAPACK picks, and a factor computed
    from them would change with it (and between a dense and a factored form of the same
    update). A ``rank`` above :math:`k` is therefore refused with a ``RankError``, as
    :func:`lowrank.analysis.analyze_update_matrix` reports ``nan`` there; for
    :math:`\Delta W = 0` (:math:`k = 0`, the ratio :math:`0/0`) every ``rank`` is. The
    factor is not unique either at a ``rank`` inside a tie of the singular values of
    :math:`\Delta W` (:math:`\sigma_r = \sigma_{r+1}`), which the analysis reports as
    ``nan`` too.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.diag([10.0, 1.0, 0.0])
    >>> amp = amplification_factor(W, np.diag([0.0, 0.0, 2.0]), rank=1)
    >>> amp.projection_fro, amp.factor                 # ΔW lives where W is 0
    (0.0, inf)
    >>> B, A = np.array([[0.0], [1.0], [0.0]]), np.array([[0.0, 2.0, 0.0]])
    >>> amplification_factor(W, (A, B)).factor         # ||ΔW|| = 2 on W's value 1
    2.0
    """
    raw_W = as_array(W, name="W")
    storage_dtype(raw_W.dtype, name="W")
    Wm = as_matrix(raw_W, name="W")
    if hasattr(delta_W, "lora_A") and hasattr(delta_W, "lora_B"):
        if scaling is None:
            scaling = getattr(delta_W, "scaling", 1.0)
        delta_W = (delta_W.lora_A, delta_W.lora_B)
    if isinstance(delta_W, tuple):
        if len(delta_W) != 2:
            raise InputError(
                f"delta_W must be an (out, in) array or a pair (lora_A, lora_B); got a tuple "
                f"of length {len(delta_W)}"
            )
        A = as_matrix(delta_W[0], name="lora_A")
        B = as_matrix(delta_W[1], name="lora_B")
        for x, nm in ((delta_W[0], "lora_A"), (delta_W[1], "lora_B")):
            storage_dtype(np.asarray(x).dtype, name=nm)
        if B.shape[1] != A.shape[0]:
            raise ShapeError(
                f"lora_B (out, r) and lora_A (r, in) must share r; got {B.shape} and {A.shape}"
            )
        shape = (B.shape[0], A.shape[1])
        s = check_positive_float(1.0 if scaling is None else scaling, name="scaling")
        cd = np.result_type(B.dtype, A.dtype, Wm.dtype)
        if shape != Wm.shape:
            raise ShapeError(f"delta_W must have the shape of W, {Wm.shape}; got {shape}")
        full = _factored_svd(B.astype(cd, copy=False), A.astype(cd, copy=False), s)
        r = check_rank(
            rank if rank is not None else A.shape[0],
            upper=full.rank,
            lower=1,
            upper_text="min(out, in, inner dimension)",
        )
        U, Vh, delta_fro = full.U[:, :r], full.Vh[:r], full.norm_fro
        # The factored SVD's QRs and core run in float64 whatever cd is.
        S, svd_dtype = full.S, np.dtype(np.float64)
    else:
        if rank is None:
            raise InputError("rank is required for a dense delta_W (the LoRA rank r)")
        if scaling is not None and scaling != 1.0:
            raise InputError(f"scaling applies to a factored delta_W only; got {scaling!r}")
        raw = as_array(delta_W, name="delta_W")
        storage_dtype(raw.dtype, name="delta_W")
        D = as_matrix(raw, name="delta_W")
        if D.shape != Wm.shape:
            raise ShapeError(f"delta_W must have the shape of W, {Wm.shape}; got {D.shape}")
        cd = np.result_type(D.dtype, Wm.dtype)
        r = check_rank(rank, upper=min(D.shape), lower=1)
        res = svd_of(dense_input(D.astype(cd, copy=False)), r, method="exact")
        U, Vh, delta_fro = res.U, res.Vh, res.norm_fro
        S, svd_dtype = res.S, res.S.dtype
    level = _rounding_level(S, Wm.shape, svd_dtype)
    if S[r - 1] <= level:
        # U_r, V_r past the numerical rank are LAPACK's basis, not ΔW's (ΔW = 0: all of
        # them); the factor would depend on it. sigma_r > level > 0 below: delta_fro > 0.
        k = int(np.count_nonzero(S[:r] > level))
        raise _beyond_rank("delta_W", k, "rank", r, "the amplification factor")
    projection = U.T @ (Wm.astype(cd, copy=False) @ Vh.T)
    projection_fro = frobenius_norm(projection)
    factor = float("inf") if projection_fro == 0.0 else delta_fro / projection_fro
    return Amplification(
        rank=r,
        delta_fro=delta_fro,
        projection_fro=projection_fro,
        weight_fro=frobenius_norm(Wm),
        factor=factor,
    )
