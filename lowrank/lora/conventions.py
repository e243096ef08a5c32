r"""PEFT's LoRA conventions, in one place: the scaling rule, the default alpha, the factor split.

Every part of :mod:`lowrank` that turns ``(alpha, r)`` into a scaling, picks a default
``alpha``, or splits singular triplets into ``(lora_A, lora_B)`` calls these functions
(:mod:`lowrank.lora.init`, the extraction, :mod:`lowrank.lora.convert`,
:class:`lowrank.lora.LoRAConfig` and :class:`lowrank.adapter.LoRALinear`); the formula itself
is ``lowrank._scaling``, at the bottom layer, so that :mod:`lowrank.io` can use it too.

=====================  =====================================  ==============================
convention             rule                                   PEFT
=====================  =====================================  ==============================
shapes                 ``W (out, in)``, ``lora_A (r, in)``,   ``lora.Linear``
                       ``lora_B (out, r)``, ``ΔW = s·B@A``
scaling                :math:`s = \alpha/r`, rsLoRA           ``update_layer``
                       :math:`s = \alpha/\sqrt r`
default alpha          :math:`\alpha = r` (:math:`\sqrt r`    extractors (mergekit, kohya,
                       with rsLoRA), i.e. :math:`s = 1`       ``convert_to_lora``)
factor split           :math:`B = U\sqrt{S/s}`,               ``pissa_init``
                       :math:`A = \sqrt{S/s}\,V^\top`
rank                   :math:`r \ge 1`                        no rank-0 adapters
=====================  =====================================  ==============================

PEFT's own ``LoraConfig`` defaults are ``r = 8``, ``lora_alpha = 8``, also scaling 1.

References
----------
.. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
   arXiv:2106.09685.
.. [2] D. Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA",
   arXiv:2312.03732, 2023.
.. [3] F. Meng, Z. Wang and M. Zhang, "PiSSA", NeurIPS 2024, arXiv:2404.02948.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lowrank._dtypes import layer_dtype
from lowrank._scaling import alpha_of, scaling_of
from lowrank._typing import Array, ArrayLike
from lowrank._validation import (
    as_matrix,
    as_vector,
    check_bool,
    check_positive_float,
    check_rank,
)
from lowrank.errors import InputError, RankError, ShapeError

__all__ = ["alpha_for_scaling", "default_alpha", "lora_scaling", "split_triplets"]


# -- checks shared by the lora modules (private) ----------------------------------------


def _check_positive_rank(rank: object, *, name: str = "rank") -> int:
    """An integer ``>= 1`` with no upper bound (a random LoRA init may exceed min(W.shape))."""
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or int(rank) < 1:
        raise RankError(f"{name} must be an integer >= 1; got {rank!r}")
    return int(rank)


def _check_lora_rank(rank: object, *, upper: int, upper_text: str = "min(W.shape)") -> int:
    """A LoRA rank: an integer with ``1 <= rank <= upper`` (PEFT has no rank-0 adapters)."""
    return check_rank(rank, upper=upper, lower=1, upper_text=upper_text)


def _resolve_alpha(alpha: object, rank: int, *, use_rslora: bool) -> float:
    """``alpha`` as a finite positive float; ``None`` gives :func:`default_alpha`."""
    if alpha is None:
        return alpha_of(1.0, rank, use_rslora)
    return check_positive_float(alpha, name="alpha")


def _split_triplets(U: Array, S: Array, Vh: Array, scaling: float) -> tuple[Array, Array]:
    """Body of :func:`split_triplets` on clean arrays: ``(lora_A, lora_B)`` in U's dtype."""
    root = np.sqrt(S.astype(np.float64) / scaling).astype(U.dtype, copy=False)
    return root[:, None] * Vh, U * root


# -- public ------------------------------------------------------------------------------


def lora_scaling(alpha: float, rank: int, *, use_rslora: bool = False) -> float:
    r"""The LoRA scaling :math:`s = \alpha / r`, or :math:`\alpha / \sqrt{r}` with rsLoRA.

    Parameters
    ----------
    alpha : float
        ``lora_alpha``, finite and > 0.
    rank : int
        ``r >= 1``.
    use_rslora : bool, default False
        Rank-stabilised scaling (Kalajdzievski 2023, arXiv:2312.03732).

    Returns
    -------
    float

    Raises
    ------
    InputError
        ``alpha`` not finite and > 0, or ``use_rslora`` not a bool.
    RankError
        ``rank`` not an integer >= 1.

    Examples
    --------
    >>> lora_scaling(16, 8)
    2.0
    >>> lora_scaling(16, 4, use_rslora=True)
    8.0
    """
    a = check_positive_float(alpha, name="alpha")
    r = _check_positive_rank(rank)
    return scaling_of(a, r, check_bool(use_rslora, name="use_rslora"))


def alpha_for_scaling(scaling: float, rank: int, *, use_rslora: bool = False) -> float:
    r"""The ``lora_alpha`` with scaling ``scaling`` at rank ``rank``: :math:`s\,r` (rsLoRA
    :math:`s\sqrt r`), the inverse of :func:`lora_scaling`.

    A conversion that changes the rank but must keep :math:`s\,BA` (PiSSA→LoRA doubles the
    rank; a recompression lowers it) sets its alpha with this.

    Parameters
    ----------
    scaling : float
        :math:`s`, finite and > 0.
    rank : int
        ``r >= 1``.
    use_rslora : bool, default False

    Returns
    -------
    float

    Raises
    ------
    InputError
        ``scaling`` not finite and > 0, or ``use_rslora`` not a bool.
    RankError
        ``rank`` not an integer >= 1.

    Examples
    --------
    >>> alpha_for_scaling(2.0, 8)
    16.0
    >>> alpha_for_scaling(2.0, 16, use_rslora=True)
    8.0
    """
    s = check_positive_float(scaling, name="scaling")
    r = _check_positive_rank(rank)
    return alpha_of(s, r, check_bool(use_rslora, name="use_rslora"))


def default_alpha(rank: int, *, use_rslora: bool = False) -> float:
    r"""The ``lora_alpha`` used when none is given: :math:`r` (:math:`\sqrt r` with rsLoRA), so
    that the scaling is 1.

    This is what mergekit, kohya and PEFT's ``convert_to_lora`` write for extracted adapters,
    and what the initialisers of :mod:`lowrank.lora` use.

    Parameters
    ----------
    rank : int
        ``r >= 1``.
    use_rslora : bool, default False

    Returns
    -------
    float

    Raises
    ------
    RankError
        ``rank`` not an integer >= 1.
    InputError
        ``use_rslora`` not a bool.

    Examples
    --------
    >>> default_alpha(8), default_alpha(16, use_rslora=True)
    (8.0, 4.0)
    >>> lora_scaling(default_alpha(5), 5)
    1.0
    """
    r = _check_positive_rank(rank)
    return alpha_of(1.0, r, check_bool(use_rslora, name="use_rslora"))


def split_triplets(
    U: ArrayLike, S: ArrayLike, Vh: ArrayLike, *, scaling: float
) -> tuple[Array, Array]:
    r"""Split singular triplets into LoRA factors ``(lora_A, lora_B)`` with
    :math:`s\,BA = U \operatorname{diag}(S)\, V^\top`.

    The singular values are divided by :math:`s` and split as square roots between the
    factors, :math:`B = U\sqrt{S/s}`, :math:`A = \sqrt{S/s}\,V^\top` (PEFT's ``pissa_init``;
    mergekit's ``--distribute-scale``). Both factors then have the same column/row norms, which
    keeps their rounding balanced.

    Parameters
    ----------
    U : array_like, shape (out, r)
    S : array_like, shape (r,)
        Non-negative (singular values; any order).
    Vh : array_like, shape (r, in)
    scaling : float
        :math:`s > 0`.

    Returns
    -------
    lora_A : ndarray, shape (r, in)
    lora_B : ndarray, shape (out, r)
        In the common real compute dtype of ``U`` and ``Vh`` (float16 and integers computed
        in float32 and float64).

    Raises
    ------
    ShapeError
        ``U``, ``Vh`` not 2-D and non-empty, ``S`` not 1-D, or the three of inconsistent
        shapes.
    InputError
        A negative singular value, or ``scaling`` not finite and > 0.
    DTypeError, NonFiniteError
        Complex or non-numeric arrays; NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> A, B = split_triplets(np.eye(2, 1), [4.0], np.eye(1, 3), scaling=4.0)
    >>> B, A
    (array([[1.],
           [0.]]), array([[1., 0., 0.]]))
    >>> bool(np.array_equal(4.0 * B @ A, 4.0 * np.eye(2, 1) @ np.eye(1, 3)))
    True
    """
    s = check_positive_float(scaling, name="scaling")
    u = as_matrix(U, name="U")
    vh = as_matrix(Vh, name="Vh")
    values = as_vector(S, name="S")
    dt: np.dtype[Any] = np.result_type(
        layer_dtype(u.dtype, name="U"), layer_dtype(vh.dtype, name="Vh")
    )
    k = u.shape[1]
    if values.shape != (k,) or vh.shape[0] != k:
        raise ShapeError(
            f"U, S and Vh must have shapes (out, r), (r,) and (r, in) with one r; got "
            f"{u.shape}, {values.shape} and {vh.shape}"
        )
    layer_dtype(values.dtype, name="S")
    if np.any(values < 0):
        raise InputError(
            f"S must be non-negative (singular values); got min {float(values.min())!r}"
        )
    return _split_triplets(u.astype(dt, copy=False), values, vh.astype(dt, copy=False), s)
