r"""Generated test cases: small frozen containers and the pure-NumPy constructions behind the
strategies of :mod:`lowrank.testing.strategies`.

Nothing here imports Hypothesis. Each container keeps what the construction knows *exactly*
(the spectrum and singular vectors of a matrix built as :math:`U\operatorname{diag}(S)V^H`,
the noise added to a low-rank signal, the spikes planted in a random bulk, the factors of a
LoRA adapter), so that a property test can compare against known values instead of
computing another SVD.

Every matrix is built in float64 (complex128) and rounded once to the requested dtype; the
exact values describe the float64 matrix, and the rounding moves each singular value by at
most :math:`u\,\|A\|_F` (Weyl), well inside :attr:`MatrixWithSpectrum.spectrum_tolerance`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowrank._dtypes import finfo_of
from lowrank._numerics import STORAGE_EPS
from lowrank._typing import Array, ArrayLike, NormName, RNGLike
from lowrank._validation import (
    as_dtype,
    as_vector,
    check_bool,
    check_choice,
    check_int,
    check_matrix_shape,
    check_positive_float,
    check_shape,
    normalize_rng,
)
from lowrank.approx import eym_error
from lowrank.errors import DTypeError, InputError, ShapeError
from lowrank.lora import lora_scaling
from lowrank.testing.tolerances import DEFAULT_FACTOR, svd_tolerance

__all__ = [
    "LoRAFactors",
    "MatrixWithSpectrum",
    "NoisyLowRank",
    "WeightLike",
    "haar_orthonormal",
    "householder_orthonormal",
    "matrix_with_spectrum",
    "random_lora_factors",
    "weight_like_matrix",
]


def _wide(dtype: Any) -> type[np.floating[Any]] | type[np.complexfloating[Any, Any]]:
    return np.complex128 if np.dtype(dtype).kind == "c" else np.float64


def _float_dtype(value: object, *, complex_ok: bool) -> np.dtype[Any]:
    """``dtype`` as a floating (or, with ``complex_ok``, complex) NumPy dtype."""
    dt = as_dtype(value, name="dtype")
    if dt.kind == "f" or dt.name in STORAGE_EPS or (complex_ok and dt.kind == "c"):
        return dt
    allowed = "float16, bfloat16, float32, float64"
    if complex_ok:
        allowed += ", complex64, complex128"
    kind = "floating or complex" if complex_ok else "real floating"
    raise DTypeError(f"dtype must be a {kind} dtype ({allowed}); got {value!r} ({dt.name})")


def _real_values(x: ArrayLike, *, name: str) -> Array:
    """``x`` as a finite, real, non-negative 1-D float64 array."""
    v = as_vector(x, name=name)
    if v.dtype.kind == "c":
        raise InputError(f"{name} must be real; got dtype {v.dtype.name}")
    if v.size and float(v.min()) < 0.0:
        raise InputError(f"{name} must be non-negative; got {v}")
    return v.astype(np.float64)


def _summary(a: Array, limit: int = 36) -> str:
    if a.size <= limit:
        text = np.array2string(a, precision=4, separator=", ", max_line_width=10**6)
        return " ".join(text.split())
    return f"<{a.shape} array>"


def haar_orthonormal(n: int, k: int, *, complex_: bool = False, rng: RNGLike = None) -> Array:
    r"""An n×k matrix with orthonormal columns, Haar-distributed (uniform on the Stiefel
    manifold), in float64 (complex128 with ``complex_``).

    QR of a Gaussian matrix with the signs (phases) of :math:`\operatorname{diag} R` moved
    into :math:`Q`, which makes the distribution exactly Haar (Mezzadri 2007).

    Parameters
    ----------
    n : int
        Rows, ``>= 0``.
    k : int
        Columns, ``0 <= k <= n``.
    complex_ : bool, default False
        Complex entries (orthonormal columns of a unitary matrix) instead of real ones.
    rng : None, int or numpy.random.Generator, optional
        Source of the Gaussian matrix (normalised with ``numpy.random.default_rng``).

    Returns
    -------
    ndarray, shape (n, k)
        float64 (complex128 with ``complex_``), with :math:`Q^HQ = I_k` to float64 rounding.

    Raises
    ------
    InputError
        ``n`` or ``k`` not an integer with ``0 <= k <= n``, ``complex_`` not a bool, or a bad
        ``rng``.

    Examples
    --------
    >>> import numpy as np
    >>> Q = haar_orthonormal(5, 3, rng=0)
    >>> bool(np.allclose(Q.T @ Q, np.eye(3)))
    True
    >>> Z = haar_orthonormal(4, 4, complex_=True, rng=1)  # unitary
    >>> Z.dtype, bool(np.allclose(Z @ Z.conj().T, np.eye(4)))
    (dtype('complex128'), True)
    """
    n = check_int(n, name="n", minimum=0)
    k = check_int(k, name="k", minimum=0, maximum=n, maximum_text=f"n = {n}")
    complex_ = check_bool(complex_, name="complex_")
    gen = normalize_rng(rng)
    z = gen.standard_normal((n, k))
    if complex_:
        z = z + 1j * gen.standard_normal((n, k))
    if k == 0:
        return z
    q, r = np.linalg.qr(z)
    d = np.diag(r)
    phase = np.where(np.abs(d) > 0, d / np.where(np.abs(d) > 0, np.abs(d), 1.0), 1.0)
    return np.ascontiguousarray(q * phase)


def householder_orthonormal(n: int, k: int, vectors: Sequence[ArrayLike]) -> Array:
    r"""The first ``k`` columns of the product of Householder reflections
    :math:`H(v) = I - 2\,vv^H/(v^Hv)`, one per vector in ``vectors`` (zero vectors are
    skipped, so no vectors give the identity).

    With small integer vectors the result is structured: signed permutations, exact zeros,
    ties in magnitude. Complex vectors give a unitary matrix.

    Parameters
    ----------
    n : int
        The size of the reflections, ``>= 0``.
    k : int
        The number of columns kept, ``0 <= k <= n``.
    vectors : sequence of array_like, each of shape (n,)
        The vectors :math:`v_1, v_2, \dots`, real or complex, finite; the product is
        :math:`H(v_1)H(v_2)\cdots`.

    Returns
    -------
    ndarray, shape (n, k)
        The first ``k`` columns of the product: float64, or complex128 when a vector is
        complex; orthonormal to float64 rounding.

    Raises
    ------
    InputError
        ``n`` or ``k`` not an integer with ``0 <= k <= n``, or ``vectors`` not a sequence.
    ShapeError, DTypeError, NonFiniteError
        A vector not of shape ``(n,)``, not numeric, or not finite.

    Examples
    --------
    >>> householder_orthonormal(3, 2, [[1, -1, 0]])  # swaps the first two coordinates
    array([[0., 1.],
           [1., 0.],
           [0., 0.]])
    >>> householder_orthonormal(2, 2, [])  # no reflection: the identity
    array([[1., 0.],
           [0., 1.]])
    """
    n = check_int(n, name="n", minimum=0)
    k = check_int(k, name="k", minimum=0, maximum=n, maximum_text=f"n = {n}")
    if isinstance(vectors, (str, bytes)) or not hasattr(vectors, "__iter__"):
        raise InputError(
            f"vectors must be a sequence of vectors of shape (n,) = ({n},); got {vectors!r}"
        )
    vs = [as_vector(v, name=f"vectors[{i}]") for i, v in enumerate(vectors)]
    for i, v in enumerate(vs):
        if v.shape != (n,):
            raise ShapeError(f"vectors[{i}] must have shape (n,) = ({n},); got {v.shape}")
    complex_ = any(v.dtype.kind == "c" for v in vs)
    q: Array = np.eye(n, k, dtype=np.complex128 if complex_ else np.float64)
    for v in reversed(vs):
        vv = v.astype(q.dtype)
        norm2 = float(np.real(np.vdot(vv, vv)))
        if norm2 == 0.0:
            continue
        q = q - np.outer(vv, (2.0 / norm2) * (vv.conj() @ q))
    return q


@dataclass(frozen=True, eq=False)
class MatrixWithSpectrum:
    r"""A matrix :math:`A = U\operatorname{diag}(S)V^H` together with its exact SVD.

    Attributes
    ----------
    A : ndarray, shape (m, n)
        The matrix in the requested dtype (the float64 product, rounded once).
    S : ndarray, shape (min(m, n),)
        Its singular values, float64, descending, exact for the float64 product; trailing
        zeros are exact zeros (rank-deficient).
    U : ndarray, shape (m, min(m, n))
        Left singular vectors, float64 or complex128, orthonormal to float64 rounding.
    Vh : ndarray, shape (min(m, n), n)
        Right singular vectors (conjugate-transposed).
    factors : str
        How ``U`` and ``Vh`` were made: ``"haar"``, ``"householder"`` or ``"given"``.
    """

    A: Array
    S: Array
    U: Array
    Vh: Array
    factors: str = "given"

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``."""
        return (int(self.A.shape[0]), int(self.A.shape[1]))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of :attr:`A`."""
        return self.A.dtype

    @property
    def rank(self) -> int:
        """The exact rank: the number of non-zero entries of :attr:`S`."""
        return int(np.count_nonzero(self.S))

    @property
    def spectrum_tolerance(self) -> float:
        r"""How far the singular values of :attr:`A` may be from :attr:`S` (absolute).

        .. math:: \tau = 16\,\varepsilon\sqrt{\max(m,n)}\,S_0 + \sqrt{mn}\,\eta/2

        The first term is :func:`~lowrank.testing.tolerances.svd_tolerance` of the dtype:
        it covers the rounding of the float64 product (:math:`\lesssim
        \varepsilon_{64}\sqrt{k}\,S_0`) and the relative part of the cast to ``dtype``
        (:math:`\le u\,\|A\|_F \le u\sqrt{k}\,S_0`), and also a backward-stable SVD of
        :attr:`A` in ``dtype``. The second is the cast of entries that fall below the
        normal range, where rounding is absolute: at most :math:`\eta/2` per entry
        (:math:`\eta` the smallest subnormal of ``dtype``, :math:`\sqrt2\,\eta/2` for
        a complex entry), :math:`\sqrt{mn}\,\eta/2` in the Frobenius norm, which by Weyl
        bounds the move of every value. It is negligible unless :math:`S_0` is near the
        bottom of the normal range (8×8 float32 with every value 1e-42 moved them by
        5.3e-46, above the first term alone, 5.4e-48).
        :func:`~lowrank.testing.strategies.matrices_with_spectrum` refuses non-zero values
        below the normal range altogether.
        """
        top = float(self.S[0]) if self.S.size else 0.0
        m, n = self.shape
        # Absolute rounding below the normal range: eta/2 per real part (multiplied before
        # halving: eta/2 itself rounds to 0 in float64).
        eta = float(finfo_of(self.dtype).smallest_subnormal)
        entries = math.sqrt(m * n * (2.0 if self.dtype.kind == "c" else 1.0))
        subnormal = entries * eta / 2.0 if top > 0.0 else 0.0
        return svd_tolerance(self.dtype, self.shape, top, factor=DEFAULT_FACTOR) + subnormal

    def optimal_error(
        self, rank: int, *, norm: NormName = "fro", p: float | None = None, k: int | None = None
    ) -> float:
        r"""The Eckart–Young–Mirsky optimum :math:`\min_{\operatorname{rank}X\le r}\|A - X\|`,
        from the exact :attr:`S` (see :func:`lowrank.eym_error`).

        Parameters
        ----------
        rank : int
            :math:`r`, ``0 <= rank <= min(m, n)``.
        norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
            The unitarily invariant norm.
        p : float, optional
            Schatten exponent, ``p >= 1`` (``inf`` is the spectral norm); for
            ``norm="schatten"``.
        k : int, optional
            Number of singular values in the Ky Fan k-norm; for ``norm="ky_fan"``.

        Returns
        -------
        float
            The optimal error, in float64: the norm of ``S[rank:]``.

        Raises
        ------
        RankError
            ``rank`` out of range.
        InputError
            A bad ``norm``, or a missing or invalid ``p``/``k``.

        Examples
        --------
        >>> case = matrix_with_spectrum([12.0, 4.0, 3.0], (5, 3), rng=0)
        >>> case.optimal_error(1)  # sqrt(4**2 + 3**2)
        5.0
        >>> case.optimal_error(1, norm="spectral"), case.optimal_error(1, norm="nuclear")
        (4.0, 7.0)
        """
        return eym_error(self.S, rank, norm=norm, p=p, k=k)

    def truncation(self, rank: int) -> Array:
        r"""The best rank-``rank`` approximation :math:`U_r\operatorname{diag}(S_r)V_r^H` from
        the exact factors, in float64 (complex128).

        Parameters
        ----------
        rank : int
            :math:`r`, ``0 <= rank <= min(m, n)``.

        Returns
        -------
        ndarray, shape (m, n)
            float64, or complex128 when the factors are complex (whatever :attr:`dtype` is).

        Raises
        ------
        InputError
            ``rank`` out of range.

        Examples
        --------
        >>> import numpy as np
        >>> case = matrix_with_spectrum([3.0, 1.0], (4, 3), rng=0)
        >>> X = case.truncation(1)
        >>> X.shape, round(float(np.linalg.norm(case.A - X)), 12)  # the optimum, S[1]
        ((4, 3), 1.0)
        """
        if not 0 <= rank <= self.S.size:
            raise InputError(
                f"rank must satisfy 0 <= rank <= min(A.shape) = {self.S.size}; got {rank}"
            )
        return (self.U[:, :rank] * self.S[:rank]) @ self.Vh[:rank]

    def __repr__(self) -> str:
        return (
            f"MatrixWithSpectrum(shape={self.shape}, dtype={self.dtype.name}, "
            f"factors={self.factors!r}, S={_summary(self.S)}, A={_summary(self.A)})"
        )


def matrix_with_spectrum(
    S: ArrayLike,
    shape: tuple[int, int],
    *,
    dtype: Any = np.float64,
    rng: RNGLike = None,
) -> MatrixWithSpectrum:
    r"""A matrix of the given shape whose singular values are ``S`` (padded with zeros),
    with Haar-random singular vectors.

    Parameters
    ----------
    S : array_like, shape (q,)
        Non-negative values, ``q <= min(shape)``; sorted descending here.
    shape : (int, int)
        ``(m, n)``.
    dtype : floating or complex dtype, default float64
        float16, bfloat16, float32, float64, complex64 or complex128; complex dtypes get
        unitary factors. The matrix is built in float64 (complex128) and rounded once.
    rng : None, int or numpy.random.Generator, optional
        Source of the factors.

    Returns
    -------
    MatrixWithSpectrum
        The matrix with its exact SVD (``factors="haar"``).

    Raises
    ------
    ShapeError
        ``shape`` not two integers >= 0, ``S`` not 1-D or longer than ``min(shape)``.
    InputError
        ``S`` not real, finite and non-negative, or a bad ``rng``.
    DTypeError
        ``dtype`` not a floating or complex dtype.

    Examples
    --------
    >>> import numpy as np
    >>> case = matrix_with_spectrum([3.0, 1.0], (4, 3), rng=0)
    >>> case.S
    array([3., 1., 0.])
    >>> bool(np.allclose(np.linalg.svd(case.A, compute_uv=False), case.S))
    True
    """
    m, n = check_matrix_shape(shape)
    q = min(m, n)
    s = np.sort(_real_values(S, name="S"))[::-1]
    if s.size > q:
        raise ShapeError(f"S must have at most min(shape) = {q} values; got {s.size}")
    dtype = _float_dtype(dtype, complex_ok=True)
    s = np.concatenate([s, np.zeros(q - s.size)])
    gen = normalize_rng(rng)
    complex_ = dtype.kind == "c"
    U = haar_orthonormal(m, q, complex_=complex_, rng=gen)
    V = haar_orthonormal(n, q, complex_=complex_, rng=gen)
    return _build_matrix(s, U, V.conj().T, dtype=dtype, factors="haar")


def _build_matrix(S: Array, U: Array, Vh: Array, *, dtype: Any, factors: str) -> MatrixWithSpectrum:
    """``U diag(S) Vh`` in float64 (complex128), rounded to ``dtype``; no validation."""
    wide = _wide(dtype)
    A64 = (U.astype(wide) * S) @ Vh.astype(wide)
    with np.errstate(over="ignore"):
        A = A64.astype(dtype)
    return MatrixWithSpectrum(A=A, S=S, U=U, Vh=Vh, factors=factors)


@dataclass(frozen=True, eq=False)
class NoisyLowRank:
    r"""A low-rank signal plus dense noise: :math:`A = L + E`, :math:`\operatorname{rank}L = r`.

    Attributes
    ----------
    A : ndarray, shape (m, n)
        :math:`L + E` in the requested dtype.
    signal : MatrixWithSpectrum
        :math:`L` with its exact SVD (``signal.S`` has ``rank`` non-zero values).
    noise : ndarray, shape (m, n)
        :math:`E` in float64 (complex128), Gaussian, scaled so that
        :math:`\|E\|_F = \nu\,\|L\|_F`.
    noise_level : float
        :math:`\nu`.

    Notes
    -----
    The bounds below hold for the float64 (complex128) sum :math:`L + E`. :attr:`A` is that
    sum rounded once to its dtype, :math:`A = L + E + \Delta` with
    :math:`\|\Delta\|_2 \le \|\Delta\|_F \le` :attr:`rounding` (0 in float64; about
    :math:`6\cdot10^{-8}\|A\|_F` in float32). :math:`L` is a rank-r candidate, so the
    optimum satisfies :math:`\min_{\operatorname{rank}X\le r}\|L + E - X\| \le \|E\|` in
    every unitarily invariant norm, and by Weyl

    .. math:: |\sigma_i(A) - \sigma_i(L)| \le \|E\|_2 + \|\Delta\|_2 \le
        \|E\|_2 + \text{rounding} ;

    the rounding term is what makes the bound hold in float32 and complex64 (without it,
    ``noise_level=0`` in float32 breaks it by about :math:`10^{-8}`). Compared with the
    exact values ``signal.S`` (:math:`L` itself is a rounded float64 product), use
    :attr:`spectrum_tolerance`.
    """

    A: Array
    signal: MatrixWithSpectrum
    noise: Array
    noise_level: float

    @property
    def rank(self) -> int:
        """The rank of the signal."""
        return self.signal.rank

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``."""
        return self.signal.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of :attr:`A`."""
        return self.A.dtype

    @property
    def rounding(self) -> float:
        r"""A bound on :math:`\|A - (L + E)\|_F`, the rounding of the float64 sum to
        :attr:`dtype`: :math:`(u\|A\|_F + \sqrt{N}\,\eta/2)/(1 - u)` with :math:`u` the
        unit roundoff of :attr:`dtype` (0 for float64 and complex128), :math:`\eta` its
        smallest subnormal (:math:`\sqrt2\,\eta/2` per complex entry) and :math:`N` the
        number of entries. It bounds :math:`\|\cdot\|_2` too, hence by Weyl the move of every
        singular value beyond :math:`\|E\|_2` (see the Notes of the class)."""
        dt = self.A.dtype
        if dt in (np.dtype(np.float64), np.dtype(np.complex128)) or dt.kind in "iu":
            return 0.0
        info = finfo_of(dt)
        u = float(info.eps) / 2.0
        entries = self.A.size * (2.0 if dt.kind == "c" else 1.0)
        wide = self.A.astype(np.complex128 if dt.kind == "c" else np.float64)
        fro = float(np.linalg.norm(wide)) if wide.size else 0.0
        tiny = math.sqrt(entries) * float(info.smallest_subnormal) / 2.0
        return (u * fro + tiny) / (1.0 - u)

    @property
    def spectrum_tolerance(self) -> float:
        r"""How far the singular values of :attr:`A` may be from ``signal.S`` (absolute):
        :math:`\|E\|_2` + ``signal.spectrum_tolerance`` (the float64 product :math:`L`,
        see :attr:`MatrixWithSpectrum.spectrum_tolerance`) + :attr:`rounding` (the cast of
        :math:`L + E` to :attr:`dtype`), by Weyl."""
        return self.noise_norm(norm="spectral") + self.signal.spectrum_tolerance + self.rounding

    def noise_norm(self, *, norm: NormName = "fro") -> float:
        r""":math:`\|E\|` in ``"fro"``, ``"spectral"`` or ``"nuclear"`` norm (float64).

        Parameters
        ----------
        norm : {"fro", "spectral", "nuclear"}, default "fro"
            The norm.

        Returns
        -------
        float
            The norm of :attr:`noise`, from its singular values.

        Raises
        ------
        InputError
            ``norm`` not one of the three names.

        Examples
        --------
        >>> import numpy as np
        >>> signal = matrix_with_spectrum([2.0], (3, 2), rng=0)
        >>> E = np.array([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
        >>> case = NoisyLowRank(A=signal.A + E, signal=signal, noise=E, noise_level=2.5)
        >>> case.noise_norm(), case.noise_norm(norm="spectral"), case.noise_norm(norm="nuclear")
        (5.0, 4.0, 7.0)
        """
        values = np.linalg.svd(self.noise, compute_uv=False)
        if norm == "fro":
            return float(np.sqrt(np.sum(values**2)))
        if norm == "spectral":
            return float(values[0]) if values.size else 0.0
        if norm == "nuclear":
            return float(np.sum(values))
        raise InputError(f"norm must be one of 'fro', 'spectral', 'nuclear'; got {norm!r}")

    def __repr__(self) -> str:
        return (
            f"NoisyLowRank(shape={self.shape}, dtype={self.dtype.name}, rank={self.rank}, "
            f"noise_level={self.noise_level!r}, signal_S={_summary(self.signal.S)})"
        )


@dataclass(frozen=True, eq=False)
class WeightLike:
    r"""A "weight-like" matrix: a Marchenko–Pastur bulk with a few planted spikes,

    .. math:: A = \sigma\Big(\frac{G}{\sqrt{N}} + \sum_j \theta_j\, u_j v_j^H\Big),
       \qquad N = \max(m, n),

    with :math:`G` standard Gaussian and :math:`u_j, v_j` orthonormal. As the size grows
    the singular values of the bulk fill :math:`\sigma[1 - \sqrt\gamma, 1 + \sqrt\gamma]`,
    :math:`\gamma = \min(m,n)/\max(m,n)`, and a spike with :math:`\theta > \gamma^{1/4}`
    separates from it (Benaych-Georges & Nadakuditi 2012). The flat bulk is the hard case
    for randomized and Krylov SVDs.

    Attributes
    ----------
    A : ndarray, shape (m, n)
    spikes : ndarray, shape (j,)
        :math:`\theta_j`, descending (may be empty).
    scale : float
        :math:`\sigma`.
    """

    A: Array
    spikes: Array
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``."""
        return (int(self.A.shape[0]), int(self.A.shape[1]))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of :attr:`A`."""
        return self.A.dtype

    @property
    def aspect(self) -> float:
        r""":math:`\gamma = \min(m, n) / \max(m, n)`."""
        return min(self.shape) / max(self.shape)

    @property
    def bulk_edge(self) -> float:
        r"""The asymptotic upper edge of the bulk, :math:`\sigma(1 + \sqrt\gamma)`."""
        return self.scale * (1.0 + math.sqrt(self.aspect))

    def __repr__(self) -> str:
        return (
            f"WeightLike(shape={self.shape}, dtype={self.dtype.name}, scale={self.scale!r}, "
            f"spikes={_summary(self.spikes)})"
        )


def weight_like_matrix(
    shape: tuple[int, int],
    *,
    spikes: ArrayLike = (),
    scale: float = 1.0,
    dtype: Any = np.float64,
    rng: RNGLike = None,
) -> WeightLike:
    r"""A :class:`WeightLike` matrix: Marchenko–Pastur bulk of scale ``scale`` plus ``spikes``.

    Parameters
    ----------
    shape : (int, int)
        ``(m, n)``, sides ``>= 1``.
    spikes : array_like, shape (j,), default ()
        The spike strengths :math:`\theta_j` relative to the bulk: real, finite,
        non-negative, at most ``min(m, n)`` of them (sorted descending here).
    scale : float, default 1.0
        :math:`\sigma`, the scale of the bulk; finite and ``> 0``.
    dtype : floating or complex dtype, default float64
        float16, bfloat16, float32, float64, complex64 or complex128; the matrix is built in
        float64 (complex128) and rounded once. Complex dtypes get a complex Gaussian bulk and
        unitary spike vectors.
    rng : None, int or numpy.random.Generator, optional
        Source of the bulk and of the spike vectors.

    Returns
    -------
    WeightLike
        The matrix with its ``spikes`` and ``scale``.

    Raises
    ------
    ShapeError
        ``shape`` not two integers >= 1, ``spikes`` not 1-D or longer than ``min(shape)``.
    InputError
        ``spikes`` not real, finite and non-negative; ``scale`` not finite and > 0; a bad
        ``rng``.
    DTypeError
        ``dtype`` not a floating or complex dtype.

    Examples
    --------
    >>> case = weight_like_matrix((30, 20), spikes=[5.0], rng=0)
    >>> case.bulk_edge  # 1 + sqrt(20/30)
    1.816496580927726
    >>> import numpy as np
    >>> s = np.linalg.svd(case.A, compute_uv=False)
    >>> bool(s[0] > 4.5 and s[1] < 2.0)  # the spike stands out of the bulk
    True
    """
    m, n = check_shape(shape, name="shape", ndim=2, allow_zero=False)
    theta = np.sort(_real_values(spikes, name="spikes"))[::-1]
    if theta.size > min(m, n):
        raise ShapeError(
            f"spikes must hold at most min(shape) = {min(m, n)} values; got {theta.size}"
        )
    scale = check_positive_float(scale, name="scale")
    dtype = _float_dtype(dtype, complex_ok=True)
    gen = normalize_rng(rng)
    complex_ = dtype.kind == "c"
    G = gen.standard_normal((m, n))
    if complex_:
        G = (G + 1j * gen.standard_normal((m, n))) / math.sqrt(2.0)
    A64 = G / math.sqrt(max(m, n))
    if theta.size:
        U = haar_orthonormal(m, theta.size, complex_=complex_, rng=gen)
        V = haar_orthonormal(n, theta.size, complex_=complex_, rng=gen)
        A64 = A64 + (U * theta) @ V.conj().T
    return WeightLike(A=(scale * A64).astype(dtype), spikes=theta, scale=float(scale))


@dataclass(frozen=True, eq=False)
class LoRAFactors:
    r"""A LoRA adapter with PEFT's conventions: :math:`W' = W + s\,BA`.

    Attributes
    ----------
    W : ndarray, shape (out, in)
        The base weight (``torch.nn.Linear.weight``).
    A : ndarray, shape (r, in)
        ``lora_A``.
    B : ndarray, shape (out, r)
        ``lora_B``.
    scaling : float
        :math:`s = \alpha / r`, or :math:`\alpha/\sqrt r` with rsLoRA.
    alpha : float
        ``lora_alpha``.
    use_rslora : bool
        Whether ``scaling`` is rank-stabilised.

    Iterating gives ``(W, A, B, scaling)``, so ``W, A, B, s = factors`` works.
    """

    W: Array
    A: Array
    B: Array
    scaling: float
    alpha: float
    use_rslora: bool

    @property
    def rank(self) -> int:
        """``r``, the inner dimension."""
        return int(self.A.shape[0])

    @property
    def out_features(self) -> int:
        """``out``."""
        return int(self.W.shape[0])

    @property
    def in_features(self) -> int:
        """``in``."""
        return int(self.W.shape[1])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the arrays."""
        return self.W.dtype

    def delta_weight(self) -> Array:
        r""":math:`\Delta W = s\,BA`, computed in float64 from the stored factors.

        Returns
        -------
        ndarray, shape (out, in)
            float64.

        Examples
        --------
        >>> import numpy as np
        >>> f = LoRAFactors(W=np.eye(2), A=np.array([[1.0, 2.0]]), B=np.array([[1.0], [0.0]]),
        ...                 scaling=0.5, alpha=0.5, use_rslora=False)
        >>> f.delta_weight()
        array([[0.5, 1. ],
               [0. , 0. ]])
        """
        return self.scaling * (self.B.astype(np.float64) @ self.A.astype(np.float64))

    def merged(self) -> Array:
        r""":math:`W + s\,BA` in float64 from the stored arrays (the exact merge).

        Returns
        -------
        ndarray, shape (out, in)
            float64.

        Examples
        --------
        >>> import numpy as np
        >>> f = LoRAFactors(W=np.eye(2), A=np.array([[1.0, 2.0]]), B=np.array([[1.0], [0.0]]),
        ...                 scaling=0.5, alpha=0.5, use_rslora=False)
        >>> f.merged()
        array([[1.5, 1. ],
               [0. , 1. ]])
        """
        return self.W.astype(np.float64) + self.delta_weight()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.W, self.A, self.B, self.scaling))

    def __repr__(self) -> str:
        return (
            f"LoRAFactors(out={self.out_features}, in={self.in_features}, r={self.rank}, "
            f"dtype={self.dtype.name}, alpha={self.alpha!r}, use_rslora={self.use_rslora}, "
            f"scaling={self.scaling!r}, B_is_zero={not np.any(self.B)})"
        )


def random_lora_factors(
    out_features: int,
    in_features: int,
    rank: int,
    *,
    alpha: float = 16.0,
    use_rslora: bool = False,
    b_init: str = "gaussian",
    dtype: Any = np.float64,
    rng: RNGLike = None,
) -> LoRAFactors:
    r"""Random LoRA factors: :math:`W \sim \mathcal N(0, 1/\text{in})`, ``A`` PEFT's default
    (Kaiming-uniform, :math:`U(-1/\sqrt{\text{in}}, 1/\sqrt{\text{in}})`), ``B`` zeros (PEFT's
    initialisation) or :math:`\mathcal N(0, 1/r)` (``"gaussian"``, a trained adapter). The
    scaling is :func:`lowrank.lora.lora_scaling` of ``alpha`` and ``rank``.

    Parameters
    ----------
    out_features : int
        ``out``, the rows of ``W`` and ``B``; ``>= 1``.
    in_features : int
        ``in``, the columns of ``W`` and ``A``; ``>= 1``.
    rank : int
        ``r``, the inner dimension; ``>= 1`` (may exceed ``min(out, in)``, as PEFT allows).
    alpha : float, default 16.0
        ``lora_alpha``; finite and ``> 0``.
    use_rslora : bool, default False
        Scale by :math:`\alpha/\sqrt r` (rsLoRA) instead of :math:`\alpha/r`.
    b_init : {"gaussian", "zeros"}, default "gaussian"
        ``lora_B`` as after training (Gaussian) or as PEFT initialises it (zeros, a zero
        update).
    dtype : real floating dtype, default float64
        float16, bfloat16, float32 or float64; the arrays are drawn in float64 and rounded
        once.
    rng : None, int or numpy.random.Generator, optional
        Source of ``W``, ``A`` and ``B``.

    Returns
    -------
    LoRAFactors
        ``W`` (out, in), ``A`` (r, in), ``B`` (out, r) in ``dtype``, with ``scaling``,
        ``alpha`` and ``use_rslora``.

    Raises
    ------
    InputError
        ``out_features``, ``in_features`` or ``rank`` not an integer >= 1, ``alpha`` not finite
        and > 0, ``use_rslora`` not a bool, ``b_init`` not ``"zeros"`` or ``"gaussian"``, or a
        bad ``rng``.
    DTypeError
        ``dtype`` not a real floating dtype.

    Examples
    --------
    >>> f = random_lora_factors(6, 4, 2, alpha=8.0, rng=0)
    >>> f.W.shape, f.A.shape, f.B.shape, f.scaling
    ((6, 4), (2, 4), (6, 2), 4.0)
    >>> W, A, B, s = f
    >>> g = random_lora_factors(6, 4, 4, alpha=8.0, use_rslora=True, b_init="zeros", rng=0)
    >>> g.scaling, bool(g.B.any())  # 8 / sqrt(4); PEFT's zero B
    (4.0, False)
    """
    out_features = check_int(out_features, name="out_features", minimum=1)
    in_features = check_int(in_features, name="in_features", minimum=1)
    rank = check_int(rank, name="rank", minimum=1)
    alpha = check_positive_float(alpha, name="alpha")
    use_rslora = check_bool(use_rslora, name="use_rslora")
    check_choice(b_init, name="b_init", choices=("zeros", "gaussian"))
    dtype = _float_dtype(dtype, complex_ok=False)
    scaling = lora_scaling(alpha, rank, use_rslora=use_rslora)
    gen = normalize_rng(rng)
    bound = 1.0 / math.sqrt(in_features)
    W = gen.standard_normal((out_features, in_features)) * bound
    A = gen.uniform(-bound, bound, size=(rank, in_features))
    if b_init == "zeros":
        B = np.zeros((out_features, rank))
    else:
        B = gen.standard_normal((out_features, rank)) / math.sqrt(rank)
    return LoRAFactors(
        W=W.astype(dtype),
        A=A.astype(dtype),
        B=B.astype(dtype),
        scaling=float(scaling),
        alpha=float(alpha),
        use_rslora=bool(use_rslora),
    )
