r"""LoRA factor initialisers: random (LoRA), principal (PiSSA), minor (MiLoRA) and QR (OLoRA).

Each initialiser takes a weight :math:`W` (``(out, in)``, PEFT's layout) and a rank
:math:`r` and returns a :class:`LoRAInit` with ``lora_A`` ``(r, in)``, ``lora_B`` ``(out, r)``,
the scaling :math:`s` and, for the methods that move part of :math:`W` into the adapter, the
residual base weight :math:`W_\mathrm{res}` such that

.. math:: W_\mathrm{res} + s\,B A = W \quad\text{to rounding.}

==============  ===============================================================  ==================
``init``        factors                                                          residual
==============  ===============================================================  ==================
``"lora"``      :math:`A \sim U(-1/\sqrt{in}, 1/\sqrt{in})`, B = 0               none (W unchanged)
``"gaussian"``  :math:`A \sim N(0, 1/r^2)`, B = 0                                none
``"pissa"``     :math:`B = U_r\sqrt{S_r/s}`, :math:`A = \sqrt{S_r/s}\,V_r^\top`  :math:`W - sBA`
                (leading triplets)
``"milora"``    the same with the *trailing* r triplets                          :math:`W - sBA`
``"olora"``     :math:`W = QR`; :math:`B = Q_{:, :r}`, :math:`A = R_{:r}`        :math:`W - sBA`
==============  ===============================================================  ==================

The residual is computed **from the returned factors** (after rounding them to the output
dtype), as PEFT's README asks, so :math:`W_\mathrm{res} + sBA = W` holds to the rounding of
:math:`W_\mathrm{res}` alone even when the SVD is randomized and far from optimal. It is the
one place where the dense :math:`BA` is formed: it *is* the initialisation.

dtypes follow the package's one rule: float16/bfloat16 are computed in float32 and
returned in their own dtype, float32 stays float32, float64 stays float64.

A :class:`LoRAInit` becomes a trainable layer in one call, with its alpha, scaling, layout and
residual base: :meth:`lowrank.adapter.LoRALinear.from_init`.

References
----------
.. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
   arXiv:2106.09685.
.. [2] F. Meng, Z. Wang and M. Zhang, "PiSSA: Principal Singular Values and Singular Vectors
   Adaptation of Large Language Models", NeurIPS 2024, arXiv:2404.02948.
.. [3] H. Wang et al., "MiLoRA: Harnessing Minor Singular Components for Parameter-Efficient
   LLM Finetuning", NAACL 2025, arXiv:2406.09044.
.. [4] K. Büyükakyüz, "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models",
   arXiv:2406.01775, 2024.
.. [5] D. Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA",
   arXiv:2312.03732, 2023.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla

from lowrank._operator import dense_input
from lowrank._typing import Array, ArrayLike, RNGLike, SVDMethod
from lowrank._validation import check_bool, check_choice, normalize_rng
from lowrank.errors import InputError
from lowrank.lora._weights import WeightView, weight_view
from lowrank.lora.conventions import (
    _check_lora_rank,
    _check_positive_rank,
    _resolve_alpha,
    _split_triplets,
    lora_scaling,
)
from lowrank.svd import SVD_OPTION_NAMES, RandomizedOptions, TruncatedSVDResult, svd_of, svd_options

__all__ = [
    "INIT_METHODS",
    "LoRAInit",
    "init_factors",
    "lora_init",
    "milora_init",
    "olora_init",
    "pissa_init",
]

INIT_METHODS: tuple[str, ...] = ("lora", "gaussian", "pissa", "milora", "olora")
"""The values of ``init`` accepted by :func:`init_factors` (plus ``"pissa_niter_K"``)."""

_NITER = re.compile(r"pissa_niter_(\d+)")


@dataclass(frozen=True, eq=False)
class LoRAInit:
    r"""Initial LoRA factors of one weight, and the residual base weight where there is one.

    Attributes
    ----------
    lora_A : ndarray, shape (r, in)
        PEFT's ``lora_A.weight``; the LoRA paper's :math:`A`.
    lora_B : ndarray, shape (out, r)
        PEFT's ``lora_B.weight``; the LoRA paper's :math:`B`.
    residual : ndarray of W's shape, or None
        :math:`W_\mathrm{res} = W - sBA` in W's layout (transposed back for
        ``fan_in_fan_out``) and output dtype: the new frozen base weight. None for ``"lora"``
        and ``"gaussian"``, whose :math:`BA = 0` leaves :math:`W` as it is.
    init : str
        ``"lora"``, ``"gaussian"``, ``"pissa"``, ``"milora"`` or ``"olora"``.
    rank : int
        ``r``.
    alpha : float
        ``lora_alpha``.
    scaling : float
        :math:`s = \alpha/r`, or :math:`\alpha/\sqrt r` with rsLoRA.
    use_rslora : bool
    fan_in_fan_out : bool
        Whether ``W`` was given ``(in, out)`` (GPT-2's ``Conv1D``).
    svd : TruncatedSVDResult or None
        The decomposition the SVD inits used, for PiSSA the leading ``r`` triplets: its
        ``residual_fro`` is :math:`\|W_\mathrm{res}\|_F` before rounding, and
        ``optimal_fro_bounds`` / ``excess_bound`` tell how far a randomized init is from the
        Eckart–Young–Mirsky optimum. For MiLoRA the full decomposition whose trailing
        triplets were taken. None for the other inits.
    """

    lora_A: Array
    lora_B: Array
    residual: Array | None
    init: str
    rank: int
    alpha: float
    scaling: float
    use_rslora: bool
    fan_in_fan_out: bool
    svd: TruncatedSVDResult | None

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the factors (and residual)."""
        return self.lora_A.dtype


def _check_decomposition_init(
    W: ArrayLike, rank: object, alpha: object, use_rslora: object, fan_in_fan_out: object
) -> tuple[WeightView, int, float, float, bool]:
    """Check the arguments of the inits that decompose ``W`` (PiSSA, MiLoRA, OLoRA), whose
    rank is at most ``min(W.shape)``; return ``(view, r, alpha, scaling, use_rslora)``."""
    rslora = check_bool(use_rslora, name="use_rslora")
    view = weight_view(W, fan_in_fan_out=check_bool(fan_in_fan_out, name="fan_in_fan_out"))
    r = _check_lora_rank(rank, upper=min(view.matrix.shape))
    a = _resolve_alpha(alpha, r, use_rslora=rslora)
    return view, r, a, lora_scaling(a, r, use_rslora=rslora), rslora


def _with_residual(
    view: WeightView,
    A: Array,
    B: Array,
    *,
    init: str,
    alpha: float,
    scaling: float,
    use_rslora: bool,
    svd: TruncatedSVDResult | None,
) -> LoRAInit:
    """Round the factors to the output dtype, then ``W_res = W - s B A`` from those factors.

    An overflow of the output dtype (float16: OLoRA's ``R`` holds column norms of ``W``; a
    tiny alpha scales PiSSA's factors up) raises NonFiniteError naming the array."""
    A_out = view.to_storage(A, what="lora_A")
    B_out = view.to_storage(B, what="lora_B")
    cd = view.matrix.dtype
    # The one dense product of the module: the initialisation itself.
    residual = B_out.astype(cd, copy=False) @ A_out.astype(cd, copy=False)
    residual *= cd.type(-scaling)
    residual += view.matrix
    return LoRAInit(
        lora_A=A_out,
        lora_B=B_out,
        residual=view.to_storage_layout(residual, what="residual"),
        init=init,
        rank=int(A.shape[0]),
        alpha=alpha,
        scaling=scaling,
        use_rslora=use_rslora,
        fan_in_fan_out=view.fan_in_fan_out,
        svd=svd,
    )


def checked_svd_options(method: object, **options: Any) -> RandomizedOptions:
    """The SVD ``method`` and options of an init, checked once (see `truncated_svd`)."""
    unknown = sorted(set(options) - set(SVD_OPTION_NAMES))
    if unknown:
        raise InputError(
            f"unknown SVD option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(SVD_OPTION_NAMES)}"
        )
    return svd_options(method, **options)


def lora_init(
    W: ArrayLike,
    rank: int,
    *,
    alpha: float | None = None,
    use_rslora: bool = False,
    distribution: Literal["kaiming_uniform", "gaussian"] = "kaiming_uniform",
    rng: RNGLike = None,
    fan_in_fan_out: bool = False,
) -> LoRAInit:
    r"""The default LoRA initialisation: random ``lora_A``, zero ``lora_B``.

    Parameters
    ----------
    W : array_like, shape (out, in) (``(in, out)`` with ``fan_in_fan_out``)
        The base weight; only its shape and dtype are used (it is not modified).
    rank : int
        ``r >= 1``. Unlike the SVD inits, ``r`` may exceed ``min(W.shape)``.
    alpha : float, optional
        ``lora_alpha``; default ``r`` (``sqrt(r)`` with rsLoRA), i.e. scaling 1.
    use_rslora : bool, default False
        :math:`s = \alpha/\sqrt r` instead of :math:`\alpha/r`.
    distribution : {"kaiming_uniform", "gaussian"}, default "kaiming_uniform"
        ``"kaiming_uniform"``: PEFT's default, ``kaiming_uniform_(a=sqrt(5))`` on a
        ``(r, in)`` tensor, which is :math:`U(-1/\sqrt{in}, 1/\sqrt{in})` (the gain
        :math:`\sqrt{2/(1+a^2)} = 1/\sqrt3` times :math:`\sqrt{3/in}`). ``"gaussian"``:
        PEFT's ``init_lora_weights="gaussian"``, :math:`N(0, \sigma^2)` with
        :math:`\sigma = 1/r`.
    rng : None, int or numpy.random.Generator
        Source of ``lora_A`` (drawn in float64, then rounded to the output dtype).
    fan_in_fan_out : bool, default False
        ``W`` is stored ``(in, out)``.

    Returns
    -------
    LoRAInit
        ``residual`` is None: :math:`BA = 0`, so the base weight stays :math:`W`.

    Raises
    ------
    RankError
        ``rank`` not an integer >= 1.
    InputError
        Bad ``alpha``, ``distribution`` or ``rng``.
    ShapeError, DTypeError, NonFiniteError
        ``W`` is not a finite 2-D matrix of a supported dtype.

    Examples
    --------
    >>> import numpy as np
    >>> init = lora_init(np.zeros((3, 4), dtype=np.float32), 2, rng=0)
    >>> init.lora_A.shape, init.lora_B.shape, init.lora_A.dtype, init.scaling
    ((2, 4), (3, 2), dtype('float32'), 1.0)
    >>> bool(np.all(np.abs(init.lora_A) <= 0.5)), bool(np.all(init.lora_B == 0))
    (True, True)
    """
    rslora = check_bool(use_rslora, name="use_rslora")
    check_choice(distribution, name="distribution", choices=("kaiming_uniform", "gaussian"))
    view = weight_view(W, fan_in_fan_out=fan_in_fan_out)
    r = _check_positive_rank(rank)
    a = _resolve_alpha(alpha, r, use_rslora=rslora)
    gen = normalize_rng(rng)
    shape = (r, view.in_features)
    if distribution == "kaiming_uniform":
        bound = 1.0 / math.sqrt(view.in_features)
        A = gen.uniform(-bound, bound, size=shape)
    else:
        A = gen.normal(0.0, 1.0 / r, size=shape)
    return LoRAInit(
        lora_A=A.astype(view.storage),
        lora_B=np.zeros((view.out_features, r), dtype=view.storage),
        residual=None,
        init="lora" if distribution == "kaiming_uniform" else "gaussian",
        rank=r,
        alpha=a,
        scaling=lora_scaling(a, r, use_rslora=rslora),
        use_rslora=rslora,
        fan_in_fan_out=view.fan_in_fan_out,
        svd=None,
    )


def pissa_init(
    W: ArrayLike,
    rank: int,
    *,
    alpha: float | None = None,
    use_rslora: bool = False,
    method: SVDMethod = "exact",
    rng: RNGLike = None,
    fan_in_fan_out: bool = False,
    **svd_options: Any,
) -> LoRAInit:
    r"""PiSSA: the adapter starts as the principal rank-``r`` part of ``W``.

    With the leading triplets :math:`W \approx U_r S_r V_r^\top`,

    .. math::

        B = U_r \sqrt{S_r/s}, \qquad A = \sqrt{S_r/s}\; V_r^\top, \qquad
        W_\mathrm{res} = W - s\,BA ,

    so that :math:`sBA = U_r S_r V_r^\top` and, for an exact SVD, :math:`W_\mathrm{res}` holds
    the minor singular triplets only (PEFT ``init_lora_weights="pissa"``).

    Parameters
    ----------
    W : array_like, shape (out, in) (``(in, out)`` with ``fan_in_fan_out``)
        float16, bfloat16, float32, float64 or integer; see the module docstring.
    rank : int
        ``1 <= rank <= min(W.shape)``.
    alpha : float, optional
        ``lora_alpha``; default ``r`` (``sqrt(r)`` with rsLoRA), i.e. scaling 1.
    use_rslora : bool, default False
    method : str, default "exact"
        Any :func:`lowrank.truncated_svd` method. ``"exact"`` is PEFT's ``"pissa"``;
        ``"randomized"`` with ``n_iter=K`` plays the role of PEFT's ``"pissa_niter_K"``
        (``torch.svd_lowrank(q=r, niter=K)``, no oversampling), with ``oversample`` extra
        columns and a block Krylov basis, so it is at least as accurate for the same K.
    rng : None, int or numpy.random.Generator
        Forwarded to :func:`lowrank.truncated_svd`.
    fan_in_fan_out : bool, default False
        ``W`` is stored ``(in, out)``: it is decomposed as ``W.T`` and the residual is
        returned ``(in, out)``.
    **svd_options
        The randomized method's options of :func:`lowrank.truncated_svd` (``value_tol``,
        ``excess_tol``, ``max_iter``, ``n_iter``, ``oversample``, ``block_size``,
        ``block_krylov``), with ``method="randomized"`` (or ``"auto"``).
        ``excess_tol=FAST_TOL`` converges the residual :math:`\|W - sBA\|_F` instead of
        the singular values, to 5e-4 of the optimum: as good a start as PEFT's
        ``pissa_niter_4`` or better, in less time (``benchmarks/RESULTS.md``).

    Returns
    -------
    LoRAInit
        ``svd`` is the rank-``r`` :class:`~lowrank.TruncatedSVDResult`: ``svd.residual_fro`` is the
        init's error :math:`\|W - sBA\|_F` and ``svd.optimal_fro_bounds`` brackets the
        optimum (equal for ``"exact"``), so ``svd.excess_bound`` says how far from optimal a
        randomized init is.

    Raises
    ------
    RankError
        ``rank`` out of range.
    InputError
        Bad ``alpha``, ``method``, ``rng`` or SVD options (as :func:`lowrank.truncated_svd`).
    ShapeError, DTypeError, NonFiniteError
        ``W`` is not a finite 2-D matrix of a supported dtype. Also NonFiniteError when
        ``lora_A``, ``lora_B`` or the residual does not fit in W's dtype (float16 ends at
        65504; a tiny ``alpha`` scales the factors up): pass ``W`` as float32 then.
    ConvergenceError
        The SVD did not converge.

    Notes
    -----
    The PiSSA paper writes :math:`W = W^{res} + AB` with its :math:`A \in
    \mathbb{R}^{m\times r}` (left, :math:`U\sqrt S`) and :math:`B \in \mathbb{R}^{r\times n}`
    (right): the paper's :math:`A` is ``lora_B`` here and its :math:`B` is ``lora_A``. PEFT
    and this function use the LoRA paper's letters.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.diag([4.0, 1.0])
    >>> init = pissa_init(W, 1, alpha=4.0)           # s = 4
    >>> init.lora_B, init.lora_A                     # sqrt(4 / 4) = 1
    (array([[1.],
           [0.]]), array([[1., 0.]]))
    >>> init.residual
    array([[0., 0.],
           [0., 1.]])
    >>> init.svd.residual_fro, init.svd.optimal_fro_bounds
    (1.0, (1.0, 1.0))
    """
    options = checked_svd_options(method, **svd_options)
    generator = normalize_rng(rng)
    view, r, a, s, rslora = _check_decomposition_init(W, rank, alpha, use_rslora, fan_in_fan_out)
    res = svd_of(dense_input(view.matrix), r, method=method, options=options, rng=generator)
    A, B = _split_triplets(res.U, res.S, res.Vh, s)
    return _with_residual(view, A, B, init="pissa", alpha=a, scaling=s, use_rslora=rslora, svd=res)


def milora_init(
    W: ArrayLike,
    rank: int,
    *,
    alpha: float | None = None,
    use_rslora: bool = False,
    method: SVDMethod = "exact",
    rng: RNGLike = None,
    fan_in_fan_out: bool = False,
    **svd_options: Any,
) -> LoRAInit:
    r"""MiLoRA: the adapter starts as the *minor* rank-``r`` part of ``W``.

    With all singular triplets of :math:`W` and :math:`U_m, S_m, V_m` the last ``r``
    (smallest values, kept in descending order),

    .. math::

        B = U_m \sqrt{S_m/s}, \qquad A = \sqrt{S_m/s}\; V_m^\top, \qquad
        W_\mathrm{res} = W - s\,BA ,

    so the principal part stays frozen in :math:`W_\mathrm{res}` (the official code,
    deondou/reproduce_lora ``svd_init.py`` mode ``"min"``; not in PEFT).

    Parameters
    ----------
    W, rank, alpha, use_rslora, rng, fan_in_fan_out, **svd_options
        As :func:`pissa_init`.
    method : str, default "exact"
        A :func:`lowrank.truncated_svd` method that can compute all ``min(W.shape)``
        triplets: ``"exact"``, ``"auto"``, ``"randomized"`` (then a full-width sketch) or
        ``"propack"``. The minor triplets need the whole decomposition.

    Returns
    -------
    LoRAInit
        ``svd`` is the full decomposition the trailing triplets were taken from.

    Raises
    ------
    RankError
        ``rank`` out of range.
    InputError
        ``method`` is ``"arpack"`` or ``"lobpcg"``, which cannot compute every triplet;
        other bad options as :func:`pissa_init`.
    ShapeError, DTypeError, NonFiniteError, ConvergenceError
        As :func:`pissa_init`.

    Notes
    -----
    MiLoRA names its factors as the LoRA paper does (:math:`B_m` left, :math:`A_m` right), so
    its :math:`A_m` is ``lora_A`` here.

    Examples
    --------
    >>> import numpy as np
    >>> init = milora_init(np.diag([4.0, 1.0]), 1)
    >>> init.lora_B, init.lora_A
    (array([[0.],
           [1.]]), array([[0., 1.]]))
    >>> init.residual
    array([[4., 0.],
           [0., 0.]])
    """
    options = checked_svd_options(method, **svd_options)
    generator = normalize_rng(rng)
    if method in ("arpack", "lobpcg"):
        raise InputError(
            f"milora needs all min(W.shape) singular triplets to take the minor ones, which "
            f"method={method!r} cannot compute; use 'exact', 'randomized' or 'propack'"
        )
    view, r, a, s, rslora = _check_decomposition_init(W, rank, alpha, use_rslora, fan_in_fan_out)
    full = svd_of(
        dense_input(view.matrix),
        min(view.matrix.shape),
        method=method,
        options=options,
        rng=generator,
    )
    A, B = _split_triplets(full.U[:, -r:], full.S[-r:], full.Vh[-r:], s)
    return _with_residual(
        view, A, B, init="milora", alpha=a, scaling=s, use_rslora=rslora, svd=full
    )


def olora_init(
    W: ArrayLike,
    rank: int,
    *,
    alpha: float | None = None,
    use_rslora: bool = False,
    fan_in_fan_out: bool = False,
) -> LoRAInit:
    r"""OLoRA: the adapter starts from the QR factorisation of ``W``.

    With the economic Householder QR :math:`W = QR` (LAPACK ``geqrf``, as
    ``torch.linalg.qr``),

    .. math:: B = Q_{:, :r}, \qquad A = R_{:r, :}, \qquad W_\mathrm{res} = W - s\,BA .

    Nothing is divided by :math:`s` (as in PEFT's ``olora_init``), so the adapter's initial
    contribution :math:`sBA` grows with :math:`s` while :math:`W_\mathrm{res} + sBA = W`
    still holds.

    Parameters
    ----------
    W, rank, alpha, use_rslora, fan_in_fan_out
        As :func:`pissa_init`.

    Returns
    -------
    LoRAInit
        ``svd`` is None.

    Raises
    ------
    RankError, InputError, ShapeError, DTypeError, NonFiniteError
        As :func:`pissa_init`. In float16, ``lora_A`` (rows of ``R``) holds the column
        norms of ``W``, which may exceed 65504 even when ``W`` fits: NonFiniteError, and
        float32 ``W`` then.

    Notes
    -----
    PEFT's ``olora_init`` decomposes the stored weight without transposing it for
    ``fan_in_fan_out``; here ``W.T`` is decomposed, so the factors have the shapes of
    ``lora_A``/``lora_B`` in both layouts.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[3.0, 1.0], [4.0, 2.0]])
    >>> init = olora_init(W, 1)
    >>> bool(np.allclose(init.residual + init.scaling * init.lora_B @ init.lora_A, W))
    True
    >>> float(np.linalg.norm(init.lora_B))            # a column of Q
    1.0
    """
    view, r, a, s, rslora = _check_decomposition_init(W, rank, alpha, use_rslora, fan_in_fan_out)
    Q, R = sla.qr(view.matrix, mode="economic", check_finite=False)
    return _with_residual(
        view, R[:r], Q[:, :r], init="olora", alpha=a, scaling=s, use_rslora=rslora, svd=None
    )


def init_factors(
    W: ArrayLike,
    rank: int,
    *,
    init: str = "lora",
    alpha: float | None = None,
    use_rslora: bool = False,
    method: SVDMethod | None = None,
    n_iter: int | None = None,
    oversample: int | None = None,
    rng: RNGLike = None,
    fan_in_fan_out: bool = False,
) -> LoRAInit:
    r"""Initialise LoRA factors by name, as PEFT's ``init_lora_weights`` does.

    Parameters
    ----------
    W : array_like, shape (out, in) (``(in, out)`` with ``fan_in_fan_out``)
    rank : int
    init : str, default "lora"
        ``"lora"`` (PEFT's ``True``: :func:`lora_init` with Kaiming-uniform ``A``),
        ``"gaussian"``, ``"pissa"``, ``"pissa_niter_K"`` (PiSSA with a randomized SVD of
        ``K`` iterations), ``"milora"`` or ``"olora"``.
    alpha, use_rslora, rng, fan_in_fan_out
        As the initialisers.
    method, n_iter, oversample : optional
        SVD options, for ``"pissa"`` and ``"milora"`` only (defaults: ``"exact"``, the
        method's default, 10). ``"pissa_niter_K"`` means ``method="randomized"``,
        ``n_iter=K``.

    Returns
    -------
    LoRAInit

    Raises
    ------
    InputError
        Unknown ``init``; SVD options given for an init without SVD; ``method`` other than
        ``"randomized"`` or ``n_iter`` other than ``K`` with ``"pissa_niter_K"``; and the
        initialisers' own errors.
    RankError, ShapeError, DTypeError, NonFiniteError, ConvergenceError
        From the initialiser.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.random.default_rng(0).standard_normal((8, 6))
    >>> fast = init_factors(W, 2, init="pissa_niter_4", rng=0)
    >>> fast.init, fast.svd.method
    ('pissa', 'randomized')
    >>> bool(np.allclose(fast.residual + fast.scaling * fast.lora_B @ fast.lora_A, W))
    True
    """
    if not isinstance(init, str):
        raise InputError(f"init must be a string such as 'lora' or 'pissa'; got {init!r}")
    niter = _NITER.fullmatch(init)
    kind = "pissa" if niter else init
    listed = ", ".join(repr(k) for k in INIT_METHODS)
    if kind not in INIT_METHODS:
        raise InputError(f"init must be one of {listed} or 'pissa_niter_K'; got {init!r}")
    if kind not in ("pissa", "milora"):
        given = {"method": method, "n_iter": n_iter, "oversample": oversample}
        extra = {k: v for k, v in given.items() if v is not None}
        if extra:
            raise InputError(
                f"method, n_iter and oversample apply to the SVD inits 'pissa' and 'milora'; "
                f"got {extra} with init={init!r}"
            )
    if niter:
        k = int(niter.group(1))
        if method not in (None, "randomized") or n_iter not in (None, k):
            raise InputError(
                f"init={init!r} means method='randomized' with n_iter={k}; got "
                f"method={method!r}, n_iter={n_iter!r}"
            )
        method, n_iter = "randomized", k
    common: dict[str, Any] = {
        "alpha": alpha,
        "use_rslora": use_rslora,
        "fan_in_fan_out": fan_in_fan_out,
    }
    if kind in ("lora", "gaussian"):
        distribution: Literal["kaiming_uniform", "gaussian"] = (
            "kaiming_uniform" if kind == "lora" else "gaussian"
        )
        return lora_init(W, rank, distribution=distribution, rng=rng, **common)
    if kind == "olora":
        return olora_init(W, rank, **common)
    forwarded: dict[str, Any] = {
        "method": method if method is not None else "exact",
        "rng": rng,
    }
    if n_iter is not None:
        forwarded["n_iter"] = n_iter
    if oversample is not None:
        forwarded["oversample"] = oversample
    if kind == "pissa":
        return pissa_init(W, rank, **forwarded, **common)
    return milora_init(W, rank, **forwarded, **common)
