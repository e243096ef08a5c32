r"""LoRA extraction: the Eckart–Young–Mirsky-optimal adapter of a fine-tuning difference.

For a base weight :math:`W_0` and a fine-tuned :math:`W_1`, the task vector
:math:`\Delta W = W_1 - W_0` has the SVD :math:`\sum_i \sigma_i u_i v_i^\top`. Its best
rank-:math:`r` approximation in every unitarily invariant norm is the truncated SVD, so the
best LoRA of rank :math:`r` and scaling :math:`s` is

.. math::

    B = U_r\sqrt{S_r/s}, \qquad A = \sqrt{S_r/s}\,V_r^\top, \qquad
    \|\Delta W - sBA\|_F = \Big(\sum_{i>r}\sigma_i^2\Big)^{1/2} .

The singular values are split as square roots between the factors (mergekit's
``--distribute-scale``, which it adopted "to improve numerical precision"), and ``alpha``
defaults to ``r`` so that :math:`s = 1`, as mergekit, kohya and PEFT's ``convert_to_lora`` do.

Ranks can be chosen by a relative Frobenius tolerance or a captured-energy fraction; both are
measured against the exact :math:`\|\Delta W\|_F` computed from the entries, never against
the sum of the singular values a truncated or randomized SVD happened to compute.

References
----------
.. [1] C. Eckart and G. Young, Psychometrika 1(3), 1936; L. Mirsky, Q. J. Math. 11, 1960.
.. [2] E. J. Hu et al., "LoRA", ICLR 2022, arXiv:2106.09685.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from lowrank._dtypes import cast_finite
from lowrank._operator import dense_input
from lowrank._typing import Array, ArrayLike, RNGLike, SVDMethod
from lowrank._validation import check_bool, normalize_rng
from lowrank.curves import select_rank
from lowrank.errors import DTypeError, InputError, RankError, ShapeError
from lowrank.lora._weights import weight_view
from lowrank.lora.config import LoRAConfig, anchored_patterns
from lowrank.lora.conventions import _check_lora_rank as check_lora_rank
from lowrank.lora.conventions import _check_positive_rank as check_positive_rank
from lowrank.lora.conventions import _resolve_alpha as check_alpha
from lowrank.lora.conventions import _split_triplets as split_triplets
from lowrank.lora.conventions import lora_scaling
from lowrank.svd import RandomizedOptions, TruncatedSVDResult, svd_of, svd_options

__all__ = ["ExtractedAdapter", "Extraction", "extract", "extract_many"]


@dataclass(frozen=True, eq=False)
class Extraction:
    r"""The optimal LoRA of one weight difference and the error it leaves.

    Attributes
    ----------
    lora_A : ndarray, shape (r, in)
    lora_B : ndarray, shape (out, r)
    rank : int
    alpha : float
    scaling : float
        :math:`s`; :math:`sBA` approximates :math:`\Delta W` (in ``(out, in)`` layout).
    use_rslora : bool
    fan_in_fan_out : bool
    delta_fro : float
        :math:`\|\Delta W\|_F`, exact (from the entries, in float64).
    error_fro : float
        :math:`\|\Delta W - sBA\|_F` for the factors in the compute dtype: the EYM tail
        :math:`(\sum_{i>r}\sigma_i^2)^{1/2}` for an exact SVD, else
        :math:`(\|\Delta W\|_F^2 - \sum_{i\le r}\sigma_i^2)^{1/2}` (Rayleigh–Ritz).
        Rounding the factors to float16/bfloat16 adds about :math:`\varepsilon\|\Delta W\|_F`.
    relative_error : float
        ``error_fro / delta_fro`` (0 when :math:`\Delta W = 0`).
    svd : TruncatedSVDResult
        The rank-``r`` SVD of :math:`\Delta W` the factors come from; for a randomized SVD
        ``svd.optimal_fro_bounds`` and ``svd.excess_bound`` say how far from optimal it is.
    """

    lora_A: Array
    lora_B: Array
    rank: int
    alpha: float
    scaling: float
    use_rslora: bool
    fan_in_fan_out: bool
    delta_fro: float
    error_fro: float
    relative_error: float
    svd: TruncatedSVDResult

    @property
    def energy(self) -> float:
        r"""Captured energy :math:`1 - \|\Delta W - sBA\|_F^2/\|\Delta W\|_F^2` (1 for
        :math:`\Delta W = 0`)."""
        return 1.0 - self.relative_error**2


def _targets(rank: object, rel_tol: object, energy: object) -> None:
    given = [
        n for n, v in (("rank", rank), ("rel_tol", rel_tol), ("energy", energy)) if v is not None
    ]
    if len(given) != 1:
        raise InputError(
            f"give exactly one of rank, rel_tol and energy; got {', '.join(given) or 'none'}"
        )


def _output_dtype(dtype: DTypeLike | None, default: np.dtype[Any]) -> np.dtype[Any]:
    if dtype is None:
        return default
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise InputError(f"dtype must be a NumPy dtype; got {dtype!r} ({exc})") from None
    if dt.name not in ("float16", "bfloat16", "float32", "float64"):
        raise DTypeError(f"dtype must be float16, bfloat16, float32 or float64; got {dt.name}")
    return dt


def _select(
    res: TruncatedSVDResult, rel_tol: float | None, energy: float | None, limit: int
) -> int:
    if res.spectrum_complete:
        k = select_rank(res.spectrum, rel_tol=rel_tol, energy=energy)
    else:
        # Ritz values satisfy sum(S^2) <= ||A||_F^2 exactly; allow for its rounding.
        values = res.S.astype(np.float64)
        total = max(res.norm_fro, float(np.sqrt(np.dot(values, values))))
        try:
            k = select_rank(values, rel_tol=rel_tol, energy=energy, norm_fro=total)
        except RankError:
            k = limit
    return max(1, min(k, limit))


def _extract(
    base: Any,
    tuned: Any,
    *,
    rank: int | None,
    rel_tol: float | None,
    energy: float | None,
    max_rank: int | None,
    alpha: float | None,
    use_rslora: bool,
    method: SVDMethod,
    options: RandomizedOptions,
    rng: np.random.Generator,
    fan_in_fan_out: bool,
    dtype: DTypeLike | None,
    name: str,
) -> Extraction:
    prefix = f"{name} " if name else ""
    vb = weight_view(base, name=f"{prefix}W_base", fan_in_fan_out=fan_in_fan_out)
    vt = weight_view(tuned, name=f"{prefix}W_tuned", fan_in_fan_out=fan_in_fan_out)
    if vb.matrix.shape != vt.matrix.shape:
        raise ShapeError(
            f"{prefix}W_base and W_tuned must have the same shape; got {np.shape(base)} and "
            f"{np.shape(tuned)}"
        )
    out_dtype = _output_dtype(dtype, np.result_type(vb.storage, vt.storage))
    cd = np.result_type(vb.matrix.dtype, vt.matrix.dtype)
    if out_dtype == np.float64:
        # float64 factors asked of float32 weights are float64-accurate, not float32 ones cast.
        cd = np.dtype(np.float64)
    delta = vt.matrix.astype(cd, copy=False) - vb.matrix.astype(cd, copy=False)
    p = min(delta.shape)
    if rank is not None:
        k = check_lora_rank(rank, upper=p)
        res = svd_of(dense_input(delta), k, method=method, options=options, rng=rng)
    else:
        if max_rank is not None:
            limit = check_lora_rank(max_rank, upper=p, upper_text="min(W.shape)")
        else:
            # svds needs rank < min(W.shape) for ARPACK and LOBPCG, and PROPACK does not
            # converge on full-width problems.
            limit = max(p - 1, 1) if method in ("arpack", "lobpcg", "propack") else p
        computed = svd_of(dense_input(delta), limit, method=method, options=options, rng=rng)
        k = _select(computed, rel_tol, energy, limit)
        res = replace(computed, U=computed.U[:, :k], S=computed.S[:k], Vh=computed.Vh[:k])
    a = check_alpha(alpha, k, use_rslora=use_rslora)
    s = lora_scaling(a, k, use_rslora=use_rslora)
    A, B = split_triplets(res.U, res.S, res.Vh, s)
    error = res.residual_fro
    return Extraction(
        lora_A=cast_finite(A, out_dtype, what=f"{prefix}lora_A"),
        lora_B=cast_finite(B, out_dtype, what=f"{prefix}lora_B"),
        rank=k,
        alpha=a,
        scaling=s,
        use_rslora=use_rslora,
        fan_in_fan_out=fan_in_fan_out,
        delta_fro=res.norm_fro,
        error_fro=error,
        relative_error=error / res.norm_fro if res.norm_fro > 0 else 0.0,
        svd=res,
    )


def _check_options(
    method: object, n_iter: object, oversample: object, use_rslora: object, fan_in_fan_out: object
) -> RandomizedOptions:
    check_bool(use_rslora, name="use_rslora")
    check_bool(fan_in_fan_out, name="fan_in_fan_out")
    return svd_options(method, n_iter=n_iter, oversample=oversample)


def extract(
    W_base: ArrayLike,
    W_tuned: ArrayLike,
    *,
    rank: int | None = None,
    rel_tol: float | None = None,
    energy: float | None = None,
    max_rank: int | None = None,
    alpha: float | None = None,
    use_rslora: bool = False,
    method: SVDMethod = "exact",
    n_iter: int | None = None,
    oversample: int | None = None,
    rng: RNGLike = None,
    fan_in_fan_out: bool = False,
    dtype: DTypeLike | None = None,
) -> Extraction:
    r"""The optimal LoRA of ``W_tuned - W_base`` at a given rank, tolerance or energy.

    Parameters
    ----------
    W_base, W_tuned : array_like, shape (out, in) (``(in, out)`` with ``fan_in_fan_out``)
        Same shape; float16/bfloat16 are computed in float32, float32 and float64 kept. The
        difference is taken in the compute dtype (exact for nearby values, Sterbenz).
    rank : int, optional
        The adapter's rank, ``1 <= rank <= min(W.shape)``.
    rel_tol : float, optional
        The smallest rank with :math:`\|\Delta W - sBA\|_F \le` ``rel_tol``
        :math:`\cdot\|\Delta W\|_F`.
    energy : float, optional
        The smallest rank capturing ``energy`` of :math:`\|\Delta W\|_F^2`. Exactly one of
        ``rank``, ``rel_tol``, ``energy``. A selected rank of 0 becomes 1 (PEFT has no
        rank-0 adapters).
    max_rank : int, optional
        With ``rel_tol``/``energy``: the most triplets computed (the sketch size of a
        randomized SVD) and the largest rank returned (default ``min(W.shape)``, minus one for
        the ``svds`` methods). If the target needs more, the result has rank
        ``max_rank`` and says its ``relative_error``.
    alpha : float, optional
        ``lora_alpha``; default the rank (``sqrt(rank)`` with rsLoRA): scaling 1.
    use_rslora : bool, default False
        rsLoRA's scaling ``alpha / sqrt(rank)`` instead of ``alpha / rank``.
    method : str, default "exact"
        Any :func:`lowrank.truncated_svd` method.
    n_iter : int, optional
        Forwarded to :func:`lowrank.truncated_svd` (``method="randomized"``: a fixed number
        of Krylov iterations).
    oversample : int, optional
        Forwarded to :func:`lowrank.truncated_svd` (with ``n_iter``).
    rng : None, int or numpy.random.Generator
        Forwarded to :func:`lowrank.truncated_svd` (randomized and ``svds`` methods).
    fan_in_fan_out : bool, default False
        Both weights are stored ``(in, out)``; the factors have the usual shapes.
    dtype : dtype, optional
        dtype of the factors; default the inputs' (promoted) dtype, e.g. bfloat16 for
        bfloat16 weights. float32 keeps full precision for half-precision models; float64
        factors are computed in float64 whatever the weights' dtype.

    Returns
    -------
    Extraction
        The factors, their rank, alpha and scaling, and the exact error of the extraction.

    Raises
    ------
    InputError
        Not exactly one of ``rank``, ``rel_tol``, ``energy``; bad options.
    RankError
        ``rank`` or ``max_rank`` out of range.
    ShapeError, DTypeError
        Weights that are not real matrices of one shape.
    NonFiniteError
        Weights with NaN or infinite entries, or factors beyond the range of the output
        dtype (``dtype``, or the weights' float16), e.g. of an update of norm 1e10 in
        float16.
    ConvergenceError
        The SVD did not converge.

    Examples
    --------
    >>> import numpy as np
    >>> W0 = np.zeros((3, 3)); W1 = np.diag([3.0, 4.0, 0.0])
    >>> ex = extract(W0, W1, rank=1)
    >>> ex.lora_B.T, ex.lora_A, ex.scaling          # sqrt(4) in each factor
    (array([[0., 2., 0.]]), array([[0., 2., 0.]]), 1.0)
    >>> ex.error_fro, ex.relative_error
    (3.0, 0.6)
    >>> extract(W0, W1, energy=0.9).rank
    2
    """
    _targets(rank, rel_tol, energy)
    options = _check_options(method, n_iter, oversample, use_rslora, fan_in_fan_out)
    if max_rank is not None:  # checked even where rank makes it moot
        check_positive_rank(max_rank, name="max_rank")
    return _extract(
        W_base,
        W_tuned,
        rank=rank,
        rel_tol=rel_tol,
        energy=energy,
        max_rank=max_rank,
        alpha=alpha,
        use_rslora=bool(use_rslora),
        method=method,
        options=options,
        rng=normalize_rng(rng),
        fan_in_fan_out=bool(fan_in_fan_out),
        dtype=dtype,
        name="",
    )


@dataclass(frozen=True, eq=False)
class ExtractedAdapter:
    """LoRA factors for many layers and the PEFT config that gives each its rank and scaling.

    Attributes
    ----------
    modules : dict of str to Extraction
        By module name, in the input order (skipped layers left out).
    config : LoRAConfig
        ``r`` and ``lora_alpha`` the largest rank (its square root under rsLoRA), so every
        module has scaling 1; modules of other ranks in ``rank_pattern`` and
        ``alpha_pattern`` (keys anchored with ``^`` and escaped where a plain name would
        also match another module); ``target_modules`` the module names.
    skipped : tuple of str
        Layers whose :math:`\\Delta W` is exactly zero (with ``skip_unchanged``).
    """

    modules: Mapping[str, Extraction]
    config: LoRAConfig
    skipped: tuple[str, ...]

    @property
    def ranks(self) -> dict[str, int]:
        """The rank of each module."""
        return {name: ex.rank for name, ex in self.modules.items()}


def extract_many(
    layers: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    rank: int | Mapping[str, int] | None = None,
    rel_tol: float | None = None,
    energy: float | None = None,
    max_rank: int | None = None,
    use_rslora: bool = False,
    method: SVDMethod = "exact",
    n_iter: int | None = None,
    oversample: int | None = None,
    rng: RNGLike = None,
    fan_in_fan_out: bool = False,
    dtype: DTypeLike | None = None,
    skip_unchanged: bool = True,
) -> ExtractedAdapter:
    r"""Extract a LoRA from every layer, each with its own rank, and the PEFT config.

    Parameters
    ----------
    layers : mapping of str to ``(W_base, W_tuned)``
        Module names (as in PEFT's keys, e.g. ``"model.layers.0.self_attn.q_proj"``) to
        weight pairs.
    rank : int or mapping of str to int, optional
        One rank for all layers, or one per layer (every layer named).
    rel_tol, energy, max_rank
        Per-layer rank selection, as :func:`extract`. Exactly one of ``rank``, ``rel_tol``,
        ``energy``. ``max_rank`` caps every layer at ``min(max_rank, min(W.shape))``, so a
        layer smaller than the cap is not an error.
    use_rslora, method, n_iter, oversample, fan_in_fan_out, dtype
        As :func:`extract`; every module gets scaling 1.
    rng : None, int or numpy.random.Generator
        One generator, normalised once and used by the layers in order.
    skip_unchanged : bool, default True
        Leave out layers with :math:`\Delta W = 0` exactly (listed in ``skipped``).

    Returns
    -------
    ExtractedAdapter

    Raises
    ------
    InputError
        ``layers`` empty or not a mapping of names to pairs; a ``rank`` mapping that does
        not name every layer; every layer unchanged; and the errors of :func:`extract`
        (whose messages name the layer).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = {n: rng.standard_normal((6, 5)) for n in ("q", "v")}
    >>> low = rng.standard_normal((6, 1)) @ rng.standard_normal((1, 5))
    >>> pairs = {"q": (W["q"], W["q"] + low), "v": (W["v"], W["v"] + rng.standard_normal((6, 5)))}
    >>> out = extract_many(pairs, rel_tol=1e-6)
    >>> out.ranks, out.config.r, dict(out.config.rank_pattern)
    ({'q': 1, 'v': 5}, 5, {'q': 1})
    >>> out.config.scaling_for("q"), out.config.scaling_for("v")
    (1.0, 1.0)
    """
    if not isinstance(layers, Mapping) or not layers:
        raise InputError(
            "layers must be a non-empty mapping of module names to (W_base, W_tuned) pairs; "
            f"got {layers!r:.80}"
        )
    if rank is not None and isinstance(rank, Mapping):
        missing = [n for n in layers if n not in rank]
        if missing:
            raise InputError(f"rank must give a rank for every layer; missing {missing}")
        _targets(0, rel_tol, energy)
    else:
        _targets(rank, rel_tol, energy)
    options = _check_options(method, n_iter, oversample, use_rslora, fan_in_fan_out)
    check_bool(skip_unchanged, name="skip_unchanged")
    if max_rank is not None:
        check_positive_rank(max_rank, name="max_rank")
    gen = normalize_rng(rng)
    modules: dict[str, Extraction] = {}
    skipped: list[str] = []
    for name, pair in layers.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"layer names must be non-empty strings; got {name!r}")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputError(
                f"layers[{name!r}] must be a pair (W_base, W_tuned); got {type(pair).__name__}"
            )
        base, tuned = pair
        if skip_unchanged and np.array_equal(np.asarray(base), np.asarray(tuned)):
            skipped.append(name)
            continue
        layer_rank: object = rank[name] if isinstance(rank, Mapping) else rank
        if layer_rank is not None and (
            isinstance(layer_rank, bool) or not isinstance(layer_rank, numbers.Integral)
        ):
            raise RankError(f"rank for layer {name!r} must be an integer; got {layer_rank!r}")
        cap: object = max_rank  # validated by _extract; anything odd passes through to it
        layer_max = cap
        if isinstance(cap, (int, np.integer)) and not isinstance(cap, bool):
            # A layer smaller than the cap keeps every rank it has.
            layer_max = min(int(cap), *np.shape(base)[:2])
        modules[name] = _extract(
            base,
            tuned,
            rank=None if layer_rank is None else int(layer_rank),
            rel_tol=rel_tol,
            energy=energy,
            max_rank=layer_max,  # type: ignore[arg-type]
            alpha=None,
            use_rslora=bool(use_rslora),
            method=method,
            options=options,
            rng=gen,
            fan_in_fan_out=bool(fan_in_fan_out),
            dtype=dtype,
            name=f"layer {name!r}:",
        )
    if not modules:
        raise InputError(f"every layer is unchanged (W_tuned == W_base): {skipped}")
    top = max(ex.rank for ex in modules.values())
    top_alpha = check_alpha(None, top, use_rslora=bool(use_rslora))
    lower = {n: ex for n, ex in modules.items() if ex.rank != top}
    config = LoRAConfig(
        r=top,
        lora_alpha=top_alpha,
        use_rslora=bool(use_rslora),
        rank_pattern=anchored_patterns({n: ex.rank for n, ex in lower.items()}, modules),
        alpha_pattern=anchored_patterns({n: ex.alpha for n, ex in lower.items()}, modules),
        target_modules=tuple(modules),
        fan_in_fan_out=bool(fan_in_fan_out),
    )
    return ExtractedAdapter(modules=modules, config=config, skipped=tuple(skipped))
