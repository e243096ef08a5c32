r"""PiSSA (or MiLoRA, OLoRA) adapters to plain LoRA, and SVDs of factored products.

An adapter trained from a residual base, :math:`W = W_\mathrm{res} + sB_0A_0` at
initialisation and :math:`W_\mathrm{res} + sBA` after training, changes the original weight by

.. math::

    \Delta W = s\,(BA - B_0A_0) = s\,[B,\ -B_0]\begin{bmatrix}A\\ A_0\end{bmatrix}
             = s'\,B'A' ,

a plain LoRA for the *original* base of rank :math:`2r` with ``lora_alpha`` doubled (times
:math:`\sqrt2` under rsLoRA) so that :math:`s' = s` (PEFT's
``save_pretrained(path_initial_model_for_weight_conversion=...)``). Concatenation and negation
are exact in floating point, so the conversion is exact.

:math:`\Delta W` often has numerical rank below :math:`2r`. :func:`factored_svd` gives its SVD
without forming the ``out × in`` product: with economic QRs :math:`B' = Q_B R_B` and
:math:`A'^\top = Q_A R_A`,

.. math:: B'A' = Q_B\,(R_B R_A^\top)\,Q_A^\top, \qquad R_B R_A^\top = U_c \Sigma V_c^\top ,

so :math:`B'A' = (Q_B U_c)\,\Sigma\,(Q_A V_c)^\top` is an SVD (orthonormal times orthonormal),
at cost :math:`O((out + in)\,r^2)`. Truncating it is the Eckart–Young–Mirsky optimum among
rank-:math:`k` adapters, with the exact error :math:`s(\sum_{i>k}\sigma_i^2)^{1/2}`.

References
----------
.. [1] F. Meng, Z. Wang and M. Zhang, "PiSSA", NeurIPS 2024, arXiv:2404.02948 (§ on
   converting PiSSA to LoRA).
.. [2] C. Eckart and G. Young, Psychometrika 1(3), 1936; L. Mirsky, Q. J. Math. 11, 1960.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.linalg as sla

from lowrank._numerics import frobenius_norm, tolerance
from lowrank._scaling import alpha_of, scaling_denominator
from lowrank._typing import Array, ArrayLike
from lowrank._validation import as_array, as_matrix, check_bool, check_positive_float
from lowrank.curves import select_rank
from lowrank.errors import InputError, NonFiniteError, ShapeError
from lowrank.lora._weights import storage_dtype
from lowrank.lora.config import LoRAConfig
from lowrank.lora.conventions import (
    _check_lora_rank,
    _resolve_alpha,
    _split_triplets,
    lora_scaling,
)
from lowrank.svd import TruncatedSVDResult, fix_signs
from lowrank.svd._lapack import lapack_svd

__all__ = [
    "ConvertedAdapter",
    "LoRAConversion",
    "convert_pissa_adapter",
    "factored_svd",
    "pissa_to_lora",
]


def _factor(x: ArrayLike, name: str) -> tuple[Array, np.dtype[Any]]:
    raw = as_array(x, name=name)
    storage = storage_dtype(raw.dtype, name=name)
    return as_matrix(raw, name=name), storage


def _factored_svd(
    B: Array, A: Array, scaling: float, *, product: str = "scaling * lora_B @ lora_A"
) -> TruncatedSVDResult:
    """Body of :func:`factored_svd` on validated arrays of one compute dtype.

    ``product`` names s·BA in the caller's arguments, for the error raised when it
    overflows float64.
    """
    out, k = B.shape
    n_in = A.shape[1]
    cd = B.dtype
    # Everything in double precision (the factors are thin: out x k and in x k): the
    # factors are exact numbers, and a float32 update of 1e-3 relative beside the PiSSA
    # factors it moved (0.6 against ||B||_F ||A||_F = 1.6e4) is real, while a float32
    # QR's rounding, eps32 ||B|| ||A||, would hide it.
    wide = np.complex128 if cd.kind == "c" else np.float64
    QB, RB = sla.qr(B.astype(wide), mode="economic", check_finite=False)
    QA, RA = sla.qr(A.T.astype(wide), mode="economic", check_finite=False)
    # Finite factors and scaling can still give a product beyond float64 (s = 1e308, or
    # factors of 1e155): refuse it here, naming the caller's product, instead of letting
    # LAPACK fail on the inf/NaN core.
    with np.errstate(over="ignore", invalid="ignore"):
        core = (RB * scaling) @ RA.T
    if not np.isfinite(core).all():
        raise NonFiniteError(
            f"{product} overflows float64 (scaling = {scaling:g}, factors of Frobenius norm "
            f"{frobenius_norm(B):.3g} and {frobenius_norm(A):.3g}); rescale the factors or "
            "the scaling"
        )
    Uc, Sc, Vch = lapack_svd(core)
    # Values at the rounding level of the product are zeros in disguise (an untrained
    # [B, -B0][A; A0] gives 1e-15 noise, not 0): clear them so ranks and norms are exact.
    # The small factor 16 eps sqrt(n) multiplies first, so that s ||B|| ||A|| beyond float64
    # (with a finite core) does not make the level inf and clear every value.
    noise = (
        tolerance(np.dtype(wide), size=max(out, n_in, k), scale=scaling)
        * frobenius_norm(B)
        * frobenius_norm(A)
    )
    Sc = np.where(Sc <= noise, 0.0, Sc)
    p = min(out, n_in, k)
    U = (QB @ Uc[:, :p]).astype(cd)
    Vh = (QA @ Vch[:p].T).T.astype(cd)
    S = Sc[:p].astype(cd)
    U, S, Vh = fix_signs(U, S, Vh)
    spectrum = np.zeros(min(out, n_in), dtype=cd)
    spectrum[:p] = Sc[:p]
    return TruncatedSVDResult(
        U=np.ascontiguousarray(U),
        S=S,
        Vh=np.ascontiguousarray(Vh),
        method="factored",
        shape=(out, n_in),
        norm_fro=frobenius_norm(Sc),
        spectrum=spectrum,
        spectrum_complete=True,
    )


def factored_svd(
    lora_A: ArrayLike, lora_B: ArrayLike, *, scaling: float = 1.0
) -> TruncatedSVDResult:
    r"""The SVD of :math:`s\,BA` from its factors, never forming the ``out × in`` product.

    Parameters
    ----------
    lora_A : array_like, shape (k, in)
    lora_B : array_like, shape (out, k)
        In the project's one factor order, ``(lora_A, lora_B)`` (as PEFT stores them);
        swapped factors are refused by their shapes unless both are square.
    scaling : float, default 1.0
        :math:`s > 0`.

    Returns
    -------
    TruncatedSVDResult
        All :math:`p = \min(out, in, k)` triplets (``method="factored"``), in the compute
        dtype of the factors (float32 for float16/bfloat16), signed by the core's sign rule.
        ``spectrum`` is complete (zeros beyond :math:`p`), so ``residual_fro`` after keeping
        fewer triplets is the exact Eckart–Young–Mirsky error.

    Raises
    ------
    ShapeError
        Factors that are not 2-D, empty, or whose inner dimensions differ.
    DTypeError, InputError
        Unsupported dtypes, or a bad ``scaling``.
    NonFiniteError
        NaN/infinity in the factors, or finite factors whose product
        :math:`s\,BA` overflows float64.

    Notes
    -----
    See the module docstring. The QRs and the :math:`k\times k` core run in float64
    (complex128) whatever the factors' dtype (they are thin), so the singular values are
    accurate to about
    :math:`\tau = 16\,\varepsilon_{64}\sqrt{\max(out, in, k)}\; s\,\|B\|_F\|A\|_F`
    before the result is rounded to the compute dtype; values below :math:`\tau` cannot be
    told from rounding and are returned as 0, so that for example the change
    :math:`BA - BA` of an untrained adapter has rank 0 and norm 0, while a small update of
    float32 factors is kept (in single precision :math:`\tau` would be 5e8 times larger,
    and a PiSSA adapter's 0.1 % change in ``lora_B`` vanished in it).

    Examples
    --------
    >>> import numpy as np
    >>> B = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]); A = np.array([[3.0, 0.0], [0.0, 4.0]])
    >>> res = factored_svd(A, B)            # B @ A = [[3, 4], [0, 0], [0, 0]]
    >>> res.S, res.residual_fro
    (array([5., 0.]), 0.0)
    """
    Am, _ = _factor(lora_A, "lora_A")
    Bm, _ = _factor(lora_B, "lora_B")
    if Bm.shape[1] != Am.shape[0]:
        raise ShapeError(
            f"lora_A (k, in) and lora_B (out, k) must share k; got {Am.shape} and {Bm.shape}"
        )
    s = check_positive_float(scaling, name="scaling")
    cd = np.result_type(Bm.dtype, Am.dtype)
    return _factored_svd(Bm.astype(cd, copy=False), Am.astype(cd, copy=False), s)


@dataclass(frozen=True, eq=False)
class LoRAConversion:
    r"""A plain LoRA for the original base, converted from a residual-base adapter.

    Attributes
    ----------
    lora_A : ndarray, shape (k, in)
    lora_B : ndarray, shape (out, k)
    rank : int
        ``k``: :math:`2r` for the exact conversion, else the rank asked for.
    alpha : float
        ``lora_alpha`` giving the trained adapter's scaling at rank ``k``.
    scaling : float
        Unchanged from the trained adapter.
    use_rslora : bool
    delta_fro : float
        :math:`\|\Delta W\|_F`, the norm of the change to the original weight.
    error_fro : float
        :math:`\|\Delta W - s\,B'A'\|_F`: 0 for the exact conversion (up to rounding), the
        exact EYM error :math:`(\sum_{i>k}\sigma_i^2)^{1/2}` after recompression, with
        :math:`\sigma_i` the ``singular_values`` of :math:`\Delta W` (the scaling included).
    relative_error : float
        ``error_fro / delta_fro`` (0 when :math:`\Delta W = 0`).
    singular_values : ndarray, shape (p,)
        All singular values of :math:`\Delta W` (:math:`p = \min(out, in, 2r)`), descending:
        how many directions training really used.
    recompressed : bool
    """

    lora_A: Array
    lora_B: Array
    rank: int
    alpha: float
    scaling: float
    use_rslora: bool
    delta_fro: float
    error_fro: float
    relative_error: float
    singular_values: Array
    recompressed: bool


def _check_pair(A: Array, B: Array, names: tuple[str, str]) -> int:
    if A.shape[0] != B.shape[1]:
        raise ShapeError(
            f"{names[0]} (r, in) and {names[1]} (out, r) must share r; got {A.shape} and {B.shape}"
        )
    return int(A.shape[0])


def pissa_to_lora(
    lora_A: ArrayLike,
    lora_B: ArrayLike,
    initial_A: ArrayLike,
    initial_B: ArrayLike,
    *,
    alpha: float | None = None,
    use_rslora: bool = False,
    rank: int | None = None,
    rel_tol: float | None = None,
    energy: float | None = None,
) -> LoRAConversion:
    r"""Convert an adapter trained from a residual base into a LoRA for the original base.

    Parameters
    ----------
    lora_A, lora_B : array_like, shapes (r, in) and (out, r)
        The trained factors.
    initial_A, initial_B : array_like, shapes (r, in) and (out, r)
        The factors at initialisation (e.g. :func:`~lowrank.lora.pissa_init`'s), the ones
        removed from the base: :math:`W_\mathrm{res} = W - sB_0A_0`.
    alpha : float, optional
        The trained adapter's ``lora_alpha``; default ``r`` (``sqrt(r)`` with rsLoRA).
    use_rslora : bool, default False
    rank, rel_tol, energy : optional
        At most one. None of them: the exact rank-:math:`2r` conversion
        :math:`A' = [A; A_0]`, :math:`B' = [B, -B_0]`, ``alpha`` doubled (:math:`\sqrt2`
        times under rsLoRA), in the factors' dtype. ``rank=k``: recompress to the optimal
        rank-``k`` adapter (``1 <= k <= min(out, in, 2r)``); ``rel_tol``/``energy``: the
        smallest such ``k`` meeting the target (as :func:`lowrank.select_rank`, at least 1).
        Recompressed factors are in the compute dtype cast back to the factors' dtype, with
        the same scaling :math:`s` (``alpha`` becomes :math:`s\,k` or :math:`s\sqrt k`).

    Returns
    -------
    LoRAConversion

    Raises
    ------
    ShapeError
        Factors that do not pair up, or trained and initial factors of different shapes.
    RankError
        ``rank`` out of range.
    InputError
        More than one of ``rank``, ``rel_tol``, ``energy``; a bad ``alpha`` or target.
    DTypeError, NonFiniteError
        Unsupported dtypes, non-finite entries, or finite factors whose
        :math:`\Delta W` overflows float64.

    Notes
    -----
    Recompression never forms :math:`\Delta W`: see :func:`factored_svd`. For the exact
    conversion the singular values are computed the same way (cost
    :math:`O((out+in)\,r^2)`), to report how many of the :math:`2r` directions matter.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A0, B0 = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    >>> A, B = A0 + 0.1, B0.copy()          # training moved A only
    >>> conv = pissa_to_lora(A, B, A0, B0, alpha=4.0)
    >>> conv.rank, conv.alpha, conv.scaling
    (4, 8.0, 2.0)
    >>> bool(np.allclose(conv.scaling * conv.lora_B @ conv.lora_A, 2.0 * (B @ A - B0 @ A0)))
    True
    >>> small = pissa_to_lora(A, B, A0, B0, alpha=4.0, rank=2)   # ΔW = B0 (0.1 J) has rank 1
    >>> small.rank, small.alpha, bool(small.relative_error < 1e-12)
    (2, 4.0, True)
    """
    A, a_storage = _factor(lora_A, "lora_A")
    B, b_storage = _factor(lora_B, "lora_B")
    A0, a0_storage = _factor(initial_A, "initial_A")
    B0, b0_storage = _factor(initial_B, "initial_B")
    r = _check_pair(A, B, ("lora_A", "lora_B"))
    _check_pair(A0, B0, ("initial_A", "initial_B"))
    if A.shape != A0.shape or B.shape != B0.shape:
        raise ShapeError(
            "the trained and initial factors must have the same shapes; got lora_A "
            f"{A.shape} vs initial_A {A0.shape}, lora_B {B.shape} vs initial_B {B0.shape}"
        )
    rslora = check_bool(use_rslora, name="use_rslora")
    a = _resolve_alpha(alpha, r, use_rslora=rslora)
    s = lora_scaling(a, r, use_rslora=rslora)
    targets = {"rank": rank, "rel_tol": rel_tol, "energy": energy}
    chosen = {k: v for k, v in targets.items() if v is not None}
    if len(chosen) > 1:
        raise InputError(f"give at most one of rank, rel_tol and energy; got {chosen}")
    storage = np.result_type(a_storage, b_storage, a0_storage, b0_storage)
    cd = np.result_type(A.dtype, B.dtype, A0.dtype, B0.dtype)
    A_cat = np.concatenate([A.astype(cd, copy=False), A0.astype(cd, copy=False)], axis=0)
    B_cat = np.concatenate([B.astype(cd, copy=False), -B0.astype(cd, copy=False)], axis=1)
    full = _factored_svd(B_cat, A_cat, s, product="s * (lora_B @ lora_A - initial_B @ initial_A)")
    p = full.rank
    values = full.S.astype(np.float64)
    delta = full.norm_fro
    if not chosen:
        raw = [np.asarray(x) for x in (lora_A, initial_A, lora_B, initial_B)]
        exact_A = np.concatenate([raw[0], raw[1]], axis=0).astype(storage, copy=False)
        exact_B = np.concatenate([raw[2], -raw[3]], axis=1).astype(storage, copy=False)
        # The same scaling at rank 2r: alpha times the denominator ratio d(2r)/d(r) = d(2).
        alpha2 = a * scaling_denominator(2, rslora)
        return LoRAConversion(
            lora_A=np.ascontiguousarray(exact_A),
            lora_B=np.ascontiguousarray(exact_B),
            rank=2 * r,
            alpha=float(alpha2),
            scaling=s,
            use_rslora=rslora,
            delta_fro=delta,
            error_fro=0.0,
            relative_error=0.0,
            singular_values=values,
            recompressed=False,
        )
    if rank is not None:
        k = _check_lora_rank(rank, upper=p, upper_text="min(out, in, 2r)")
    else:
        k = max(1, select_rank(full.spectrum, rel_tol=rel_tol, energy=energy))
    kept = TruncatedSVDResult(
        U=full.U[:, :k],
        S=full.S[:k],
        Vh=full.Vh[:k],
        method=full.method,
        shape=full.shape,
        norm_fro=full.norm_fro,
        spectrum=full.spectrum,
        spectrum_complete=True,
    )
    new_alpha = alpha_of(s, k, rslora)
    A_k, B_k = _split_triplets(kept.U, kept.S, kept.Vh, s)
    error = kept.residual_fro
    return LoRAConversion(
        lora_A=np.ascontiguousarray(A_k.astype(storage, copy=False)),
        lora_B=np.ascontiguousarray(B_k.astype(storage, copy=False)),
        rank=k,
        alpha=float(new_alpha),
        scaling=s,
        use_rslora=rslora,
        delta_fro=delta,
        error_fro=error,
        relative_error=error / delta if delta > 0 else 0.0,
        singular_values=values,
        recompressed=True,
    )


@dataclass(frozen=True, eq=False)
class ConvertedAdapter:
    """A whole residual-base adapter converted to plain LoRA.

    Attributes
    ----------
    modules : dict of str to LoRAConversion
        By module name, in the input order.
    config : LoRAConfig
        :meth:`LoRAConfig.doubled` of the input config for the exact conversion; the input
        config (``init_lora_weights=True``) when recompressed to the original ranks.
    """

    modules: Mapping[str, LoRAConversion]
    config: LoRAConfig


def _factor_pairs(mapping: object, which: str) -> dict[str, tuple[ArrayLike, ArrayLike]]:
    """``mapping`` checked as module names (str) to ``(lora_A, lora_B)`` pairs."""
    if not isinstance(mapping, Mapping):
        raise InputError(
            f"{which} must be a mapping of module names to (lora_A, lora_B) pairs; got "
            f"{type(mapping).__name__}"
        )
    out: dict[str, tuple[ArrayLike, ArrayLike]] = {}
    for name, pair in mapping.items():
        if not isinstance(name, str):
            raise InputError(f"{which} must have module names (str) as keys; got {name!r}")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputError(
                f"{which}[{name!r}] must be a pair (lora_A, lora_B); got "
                f"{type(pair).__name__} of length {len(pair) if hasattr(pair, '__len__') else '?'}"
            )
        out[name] = (pair[0], pair[1])
    return out


def convert_pissa_adapter(
    trained: Mapping[str, tuple[ArrayLike, ArrayLike]],
    initial: Mapping[str, tuple[ArrayLike, ArrayLike]],
    config: LoRAConfig,
    *,
    recompress: bool = False,
) -> ConvertedAdapter:
    r"""Convert every module of a PiSSA/MiLoRA/OLoRA adapter with :func:`pissa_to_lora`.

    Parameters
    ----------
    trained, initial : mapping of module name to ``(lora_A, lora_B)``
        The trained and initial factors, with the same module names.
    config : LoRAConfig
        The adapter's config (ranks and alphas per module, rsLoRA).
    recompress : bool, default False
        False: the exact rank-:math:`2r` conversion and :meth:`LoRAConfig.doubled`. True:
        each module recompressed to its original rank (the optimal rank-r LoRA of its
        :math:`\Delta W`; see each module's ``relative_error``), and the original config.

    Returns
    -------
    ConvertedAdapter

    Raises
    ------
    InputError
        The two mappings name different modules, or ``config`` is not a :class:`LoRAConfig`.
    ShapeError
        A module whose factors do not have the rank the config gives it.
    And the errors of :func:`pissa_to_lora`.

    Examples
    --------
    >>> import numpy as np
    >>> cfg = LoRAConfig(r=2, lora_alpha=2, init_lora_weights="pissa")
    >>> A0, B0 = np.ones((2, 3)), np.ones((4, 2))
    >>> out = convert_pissa_adapter({"fc": (2 * A0, B0)}, {"fc": (A0, B0)}, cfg)
    >>> out.modules["fc"].lora_A.shape, out.config.r, out.config.lora_alpha
    ((4, 3), 4, 4.0)
    """
    if not isinstance(config, LoRAConfig):
        raise InputError(f"config must be a LoRAConfig; got {type(config).__name__}")
    check_bool(recompress, name="recompress")
    pairs = {
        which: _factor_pairs(mapping, which)
        for which, mapping in (("trained", trained), ("initial", initial))
    }
    trained, initial = pairs["trained"], pairs["initial"]
    if set(trained) != set(initial):
        raise InputError(
            "trained and initial must name the same modules; only in trained: "
            f"{sorted(set(trained) - set(initial))}, only in initial: "
            f"{sorted(set(initial) - set(trained))}"
        )
    modules: dict[str, LoRAConversion] = {}
    for name, (A, B) in trained.items():
        A0, B0 = initial[name]
        r = config.rank_for(name)
        # Checked as matrices first: a scalar or 1-D factor has no rank to compare.
        rows = _factor(A, f"trained[{name!r}] lora_A")[0].shape[0]
        if rows != r:
            raise ShapeError(
                f"module {name!r}: lora_A has {rows} rows but the config gives rank {r}"
            )
        modules[name] = pissa_to_lora(
            A,
            B,
            A0,
            B0,
            alpha=config.alpha_for(name),
            use_rslora=config.use_rslora,
            rank=r if recompress else None,
        )
    if recompress:
        out_config = replace(config, init_lora_weights=True)
    else:
        out_config = config.doubled()
    return ConvertedAdapter(modules=modules, config=out_config)
