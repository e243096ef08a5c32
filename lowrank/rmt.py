r"""The random-matrix view of a matrix: the Marchenko–Pastur bulk edge and the power-law tail.

Two questions about a weight matrix ``W`` (m×n), answered from its singular values:

* **How much of it stands above a random bulk?** A matrix of i.i.d. entries of variance
  :math:`\sigma^2` has its singular values in
  :math:`[\sigma(\sqrt N - \sqrt M), \sigma(\sqrt N + \sqrt M)]` asymptotically
  (Marchenko–Pastur; ``N`` the larger and ``M`` the smaller side).
  :func:`marchenko_pastur_edge` estimates :math:`\sigma` from the matrix itself and counts
  the singular values above the edge (the *spikes*), their share of :math:`\|W\|_F^2` and
  the MP soft rank.
* **How heavy is the tail of its eigenvalue distribution?** :func:`power_law_fit` fits
  :math:`p(\lambda) \propto \lambda^{-\alpha}` to the eigenvalues :math:`\lambda_i =
  \sigma_i^2` above a threshold chosen by the Kolmogorov–Smirnov distance (Clauset, Shalizi
  & Newman 2009), and reports WeightWatcher's ``alpha``, ``alpha_weighted``, ``D`` and the
  under-/over-trained flags.

:func:`random_matrix_summary` computes the singular values of a matrix and both results.
Like :mod:`lowrank.metrics`, the functions take the singular values (all of them, from
:func:`lowrank.singular_values`) and the ``shape``.

**WeightWatcher's names.** Its ``alpha``, ``xmin``, ``xmax``, ``D`` (``ks_distance``),
``sigma`` (``alpha_stderr``), ``num_pl_spikes`` (``n_tail``) and ``alpha_weighted`` are the
fields of :class:`PowerLawFit`; with ``ks="weightwatcher"`` they equal WeightWatcher 0.7.7's
to 1e-10 relative on the matrices of all-MiniLM-L6-v2 and on seeded layers of 8 to 19
eigenvalues, where WeightWatcher switches to its small-sample fit and ``ks="weightwatcher"``
with it (the interop test ``tests/test_interop_weightwatcher.py`` runs WeightWatcher
itself). Three of its other columns differ from the :mod:`lowrank.metrics` of similar name:
its ``spectral_norm`` (and ``lambda_max``) is :math:`\sigma_1^2`, not :math:`\sigma_1`
(:func:`~lowrank.metrics.spectral_norm`); its ``norm`` is :math:`\|W\|_F^2`, not
:math:`\|W\|_F`; its ``entropy`` is :math:`-\sum_k q_k\ln q_k/\ln r` with :math:`q_k =
\sigma_k^2/\sum_i\sigma_i^2` and :math:`r` the rank with float64's epsilon, in [0, 1],
whereas :func:`~lowrank.metrics.entropy_effective_rank` is :math:`\exp(-\sum_k p_k\ln p_k)`
with :math:`p_k = \sigma_k/\sum_i\sigma_i`, and neither converts into the other.

Every computation runs on :math:`\sigma_i/\sigma_1`, and the scale is put back at the end:
multiplying ``W`` by a power of two changes ``edge``, ``sigma`` and ``xmin`` by that power
(of two, squared for eigenvalues) exactly and leaves counts, shares, ``alpha`` and ``D``
bit-for-bit unchanged; eigenvalues are handled as logarithms, so :math:`\sigma_1 = 10^{200}`
does not overflow.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lowrank._numerics import power_of_two_scale, tolerance
from lowrank._spectrum import as_singular_values
from lowrank._storage_noise import check_side_limit, storage_margin, storage_noise_level_of
from lowrank._typing import Array, ArrayLike
from lowrank._validation import (
    as_array,
    as_matrix,
    check_choice,
    check_matrix_shape,
    check_positive_float,
)
from lowrank.errors import InputError, ShapeError
from lowrank.svd import singular_values as _singular_values

__all__ = [
    "MarchenkoPasturEdge",
    "PowerLawFit",
    "RandomMatrixSummary",
    "marchenko_pastur_edge",
    "marchenko_pastur_median",
    "power_law_fit",
    "random_matrix_summary",
]

EdgeMethod = Literal["closed_form", "fit"]
KSStatistic = Literal["clauset", "weightwatcher"]

UNDER_TRAINED_ALPHA = 6.0
"""WeightWatcher's threshold: ``alpha`` above it flags a layer as under-trained."""
OVER_TRAINED_ALPHA = 2.0
"""WeightWatcher's threshold: ``alpha`` below it flags a layer as over-trained."""
WW_SMALL_N = 20
"""WeightWatcher 0.7.7 fits fewer positive eigenvalues than this with its small-sample rule
(``SMALL_N_CUTOFF``); ``ks="weightwatcher"`` does too (see :func:`power_law_fit`)."""
WW_SMALL_N_MIN_TAIL = 8
"""The shortest tail WeightWatcher's small-sample rule considers (its ``k_min``)."""
# Its small-sample rule skips a tail whose sum of ln(lambda_j / xmin) is at most this.
_WW_DEGENERATE_SPREAD = 1e-12

# Elements of the (candidates × tail) block the KS scan evaluates at once: 2**20 float64
# values are 8 MiB per temporary, a few temporaries at a time.
_BLOCK = 1 << 20


# --------------------------------------------------------------------------------------
# Marchenko–Pastur
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarchenkoPasturEdge:
    r"""The Marchenko–Pastur bulk of a matrix and what stands above it.

    Attributes
    ----------
    edge : float
        The upper bulk edge in singular-value units, :math:`\hat\sigma(\sqrt N + \sqrt M)`.
    bulk_min : float
        The lower bulk edge, :math:`\hat\sigma(\sqrt N - \sqrt M)`.
    sigma : float
        :math:`\hat\sigma`, the estimated standard deviation of an entry.
    method : str
        ``"closed_form"`` or ``"fit"``: how :math:`\hat\sigma` was estimated.
    num_spikes : int
        The number of singular values strictly above ``edge``.
    spike_share : float
        :math:`\sum_{\sigma_i > \text{edge}} \sigma_i^2 / \|W\|_F^2`, in [0, 1].
    mp_softrank : float
        WeightWatcher's MP soft rank :math:`\lambda_+/\lambda_{\max} =
        \text{edge}^2/\sigma_1^2`; not clamped (above 1 when the whole spectrum is inside the
        bulk); 0 for the zero matrix.
    """

    edge: float
    bulk_min: float
    sigma: float
    method: str
    num_spikes: int
    spike_share: float
    mp_softrank: float


@functools.lru_cache(maxsize=256)
def _mp_median(gamma: float) -> float:
    """Median of the Marchenko–Pastur law of ratio ``gamma`` in (0, 1] and mean 1."""
    if gamma < 1e-9:
        # The law shrinks to a semicircle around 1; its median is 1 - gamma/3 + O(gamma^2)
        # (fitted to the closed form below at gamma = 1e-4 .. 1e-7).
        return 1.0 - gamma / 3.0
    root = math.sqrt(gamma)
    k = (1.0 - root) / (1.0 + root)

    def upper(theta: float) -> float:
        # 1 - F(x) at x = (1 + gamma) + 2 sqrt(gamma) cos(theta): the mass above x.
        return (
            -2.0 * root * math.sin(theta)
            + (1.0 + gamma) * theta
            - 2.0 * (1.0 - gamma) * math.atan(k * math.tan(theta / 2.0))
        ) / (2.0 * math.pi * gamma)

    lo, hi = 0.0, math.pi  # upper() rises from 0 at theta = 0 to 1 at theta = pi
    for _ in range(80):  # bisection to the resolution of a double
        mid = 0.5 * (lo + hi)
        if upper(mid) < 0.5:
            lo = mid
        else:
            hi = mid
    theta = 0.5 * (lo + hi)
    return (1.0 + gamma) + 2.0 * root * math.cos(theta)


def marchenko_pastur_median(shape: tuple[int, int]) -> float:
    r"""The median of the Marchenko–Pastur law for an m×n matrix, in units of :math:`N\sigma^2`.

    For ``W`` with i.i.d. entries of variance :math:`\sigma^2`, the eigenvalues of
    :math:`W W^T` (the smaller side) divided by :math:`N\sigma^2` follow, as the sides grow
    with :math:`\gamma = M/N` fixed, the Marchenko–Pastur law of ratio :math:`\gamma`: mean
    1, support :math:`[(1-\sqrt\gamma)^2, (1+\sqrt\gamma)^2]`. This returns its median
    :math:`\mu_\gamma`, the constant of Gavish and Donoho's noise estimator.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``, both at least 1.

    Returns
    -------
    float
        :math:`\mu_\gamma` with :math:`\gamma = \min(m, n)/\max(m, n)`: 0.6528 for a square
        matrix, rising to 1 as :math:`\gamma \to 0`.

    Raises
    ------
    ShapeError
        If ``shape`` is not a pair of positive integers no larger than the largest array
        dimension (``2**63 - 1`` on 64-bit platforms).

    Notes
    -----
    The distribution function has a closed form. With :math:`x = (1+\gamma) +
    2\sqrt\gamma\cos\theta`, :math:`\theta \in [0, \pi]`, and
    :math:`k = (1-\sqrt\gamma)/(1+\sqrt\gamma)`,

    .. math::

        1 - F(x) = \frac{1}{2\pi\gamma}\Bigl[(1+\gamma)\,\theta - 2\sqrt\gamma\sin\theta
        - 2(1-\gamma)\arctan\bigl(k\tan\tfrac\theta2\bigr)\Bigr],

    obtained by integrating the density
    :math:`\sqrt{(\lambda_+ - x)(x - \lambda_-)}/(2\pi\gamma x)`; the median solves
    :math:`1 - F = 1/2` by bisection in :math:`\theta` (80 steps).

    References
    ----------
    .. [1] V. A. Marchenko and L. A. Pastur, "Distribution of eigenvalues for some sets of
       random matrices", Math. USSR-Sbornik 1 (1967) 457-483.
    .. [2] M. Gavish and D. L. Donoho, "The optimal hard threshold for singular values is
       4/√3", IEEE Trans. Inf. Theory 60 (2014) 5040-5053, arXiv:1305.5870.

    Examples
    --------
    >>> round(marchenko_pastur_median((500, 500)), 4)
    0.6528
    >>> round(marchenko_pastur_median((100, 400)), 4)
    0.916
    """
    m, n = _positive_shape(shape)
    return _mp_median(min(m, n) / max(m, n))


def _positive_shape(shape: object) -> tuple[int, int]:
    m, n = check_matrix_shape(shape)
    if m == 0 or n == 0:
        raise ShapeError(f"shape must have both sides >= 1; got {shape!r}")
    check_side_limit(m, n)
    return m, n


def _spectrum_for_shape(singular_values: ArrayLike, shape: object) -> tuple[Array, int, int]:
    """Validated singular values (descending, float64) and the shape they belong to."""
    m, n = _positive_shape(shape)
    s = as_singular_values(singular_values)
    if s.size != min(m, n):
        raise ShapeError(
            f"singular_values must hold all min(shape) = {min(m, n)} singular values of a "
            f"matrix of shape={(m, n)}; got {s.size}"
        )
    return s, m, n


def marchenko_pastur_edge(
    singular_values: ArrayLike,
    *,
    shape: tuple[int, int],
    method: EdgeMethod = "closed_form",
) -> MarchenkoPasturEdge:
    r"""The Marchenko–Pastur bulk edge of a matrix, its spikes and its MP soft rank.

    Parameters
    ----------
    singular_values : array_like, shape (min(m, n),)
        All singular values of ``W`` (any order; sorted descending here).
    shape : tuple of int
        ``(m, n)`` of ``W``.
    method : {"closed_form", "fit"}, default "closed_form"
        How the entry scale :math:`\hat\sigma` is estimated (see Notes): ``"closed_form"``
        from the whole energy, :math:`\hat\sigma^2 = \|W\|_F^2/(mn)`; ``"fit"`` from the
        median eigenvalue, which the spikes hardly move.

    Returns
    -------
    MarchenkoPasturEdge
        ``edge`` :math:`= \hat\sigma(\sqrt N + \sqrt M)`, ``bulk_min``, ``sigma``, the number
        of singular values above the edge (``num_spikes``), their share of
        :math:`\|W\|_F^2` (``spike_share``) and ``mp_softrank`` :math:`=
        \text{edge}^2/\sigma_1^2`.

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D or does not hold exactly ``min(shape)`` values, or
        ``shape`` is not a pair of positive integers no larger than the largest array
        dimension.
    InputError
        If a value is negative or complex, or ``method`` is not one of the two.
    NonFiniteError
        If a value is NaN or infinite.

    Notes
    -----
    **Model.** ``W`` = signal + noise, the noise with i.i.d. zero-mean entries of variance
    :math:`\sigma^2`. With :math:`N = \max(m, n)`, :math:`M = \min(m, n)`,
    :math:`\gamma = M/N`, the eigenvalues :math:`\lambda_i = \sigma_i^2` of the noise divided
    by :math:`N\sigma^2` follow the Marchenko–Pastur law (support
    :math:`[(1-\sqrt\gamma)^2, (1+\sqrt\gamma)^2]`) as the sides grow, and the largest
    noise singular value tends to :math:`\sigma(\sqrt N + \sqrt M)` (Geman 1980). A signal
    direction shows as a spike above the edge only if it is strong enough (above
    :math:`\sigma(NM)^{1/4}`, the BBP transition); weaker ones disappear into the bulk.

    **closed_form** (the norm-matched edge): :math:`\hat\sigma^2 = \|W\|_F^2/(mn) =
    \sum_i\sigma_i^2/(mn)`, the mean squared entry. Exact in expectation for pure noise,
    with relative error about :math:`1/\sqrt{mn}`; the signal's energy counts as noise, so
    with strong spikes it over-estimates :math:`\sigma` (by
    :math:`\sqrt{1 + E_{\text{signal}}/E_{\text{noise}}}`) and under-counts spikes, and a
    non-zero mean of the entries counts as well. On the 39 matrices of all-MiniLM-L6-v2 its
    ``mp_softrank`` ranks the layers like WeightWatcher's fitted one (Spearman 0.993).

    **fit** (Gavish and Donoho's median estimator): :math:`\hat\sigma^2 =
    \lambda_{\text{med}}/(N\mu_\gamma)`, the median eigenvalue against the median
    :math:`\mu_\gamma` of the MP law (:func:`marchenko_pastur_median`). Spikes are in the
    top of the spectrum, so ``k`` of them move the median only to the bulk's quantile
    :math:`M/(2(M-k))`: a relative bias of order :math:`k/M` rather than the energy they
    carry. It needs the bulk to hold more than half of the values; a low-rank matrix
    without noise (more than half of its singular values 0) gets :math:`\hat\sigma = 0`, and
    then every non-zero singular value is a spike. WeightWatcher's ``mp_fit`` instead fits a
    kernel density estimate of the ESD and adds a Tracy–Widom margin to the edge before it
    counts spikes; that costs about a second per layer, this is O(M).

    Both are asymptotic: at finite size the largest noise singular value fluctuates around
    the edge by :math:`O(N^{-2/3})` relative (Tracy–Widom), so pure noise may show a spike
    or so.

    **MP soft rank.** WeightWatcher's definition (``mp_softrank``, Martin & Mahoney 2018,
    arXiv:1810.01075): :math:`\mathcal R_{mp} = \lambda_+/\lambda_{\max} =
    \text{edge}^2/\sigma_1^2`. Near 1 (or above: it is not clamped) the whole spectrum sits
    inside the bulk, like a random matrix; small values mean :math:`\sigma_1` has grown far
    beyond it. (It is not :math:`\|W\|_F^2/\text{edge}^2`.) 0 for the zero matrix, by
    convention.

    References
    ----------
    .. [1] V. A. Marchenko and L. A. Pastur, "Distribution of eigenvalues for some sets of
       random matrices", Math. USSR-Sbornik 1 (1967) 457-483.
    .. [2] S. Geman, "A limit theorem for the norm of random matrices", Ann. Probab. 8
       (1980) 252-261.
    .. [3] M. Gavish and D. L. Donoho, "The optimal hard threshold for singular values is
       4/√3", IEEE Trans. Inf. Theory 60 (2014) 5040-5053, arXiv:1305.5870.
    .. [4] C. H. Martin and M. W. Mahoney, "Implicit self-regularization in deep neural
       networks", J. Mach. Learn. Res. 22 (2021), arXiv:1810.01075.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((400, 200))
    >>> W[:, 0] += 10.0                       # one strong direction
    >>> s = np.linalg.svd(W, compute_uv=False)
    >>> mp = marchenko_pastur_edge(s, shape=W.shape, method="fit")
    >>> mp.num_spikes, round(mp.sigma, 1)
    (1, 1.0)
    >>> round(float(mp.edge / (np.sqrt(400) + np.sqrt(200))), 1)   # sigma = 1
    1.0
    """
    s, m, n = _spectrum_for_shape(singular_values, shape)
    check_choice(method, name="method", choices=("closed_form", "fit"))
    return _marchenko_pastur_edge(s, m, n, method)


def _marchenko_pastur_edge(s: Array, m: int, n: int, method: str) -> MarchenkoPasturEdge:
    """Body of :func:`marchenko_pastur_edge` for checked arguments (``s`` descending)."""
    top = float(s[0])
    if top == 0.0:
        return MarchenkoPasturEdge(0.0, 0.0, 0.0, method, 0, 0.0, 0.0)
    big, small = max(m, n), min(m, n)
    r = s / top  # relative singular values: exact under scaling by powers of two
    squares = r * r
    energy = float(np.sum(squares[::-1]))  # smallest first
    if method == "closed_form":
        rel_sigma = math.sqrt(energy / m / n)
    else:
        # The square root of the median eigenvalue, from r without squaring it: r**2
        # underflows below 1.5e-154 (sigma came out 0, and every value a spike).
        half = r.size // 2
        if r.size % 2:
            root_median = float(r[half])
        else:  # sqrt((a**2 + b**2)/2) of the two middle values
            root_median = math.hypot(float(r[half - 1]), float(r[half])) / math.sqrt(2.0)
        rel_sigma = root_median / math.sqrt(big * _mp_median(small / big))
    rel_edge = rel_sigma * (math.sqrt(big) + math.sqrt(small))
    above = r > rel_edge
    spikes = int(np.count_nonzero(above))
    share = float(np.sum(squares[above][::-1])) / energy
    return MarchenkoPasturEdge(
        edge=rel_edge * top,
        bulk_min=rel_sigma * (math.sqrt(big) - math.sqrt(small)) * top,
        sigma=rel_sigma * top,
        method=method,
        num_spikes=spikes,
        spike_share=min(share, 1.0),
        mp_softrank=rel_edge * rel_edge,
    )


# --------------------------------------------------------------------------------------
# Power law
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    r"""A power law :math:`p(\lambda) \propto \lambda^{-\alpha}` fitted to the eigenvalues
    :math:`\lambda_i = \sigma_i^2` at and above ``xmin``.

    Attributes
    ----------
    alpha : float
        The maximum-likelihood exponent :math:`\hat\alpha` (WeightWatcher's ``alpha``);
        with ``ks="weightwatcher"``, ``xmin`` chosen and fewer than 20 positive eigenvalues,
        WeightWatcher's bias-corrected :math:`1 + (n-1)/\sum_i\ln(\lambda_i/x_{\min})`.
    alpha_stderr : float
        Its asymptotic standard error :math:`(\hat\alpha - 1)/\sqrt{n_{\text{tail}}}`
        (WeightWatcher's ``sigma``).
    xmin : float
        The lower end of the tail, an eigenvalue (units of :math:`\sigma^2`); ``inf``
        (or 0) if it overflows (underflows) float64, which leaves the other fields intact:
        they are computed from logarithms.
    xmax : float
        The largest eigenvalue, :math:`\sigma_1^2` (``inf`` for :math:`\sigma_1 >
        1.3\cdot 10^{154}`).
    ks_distance : float
        The Kolmogorov–Smirnov distance ``D`` between the tail's empirical distribution and
        the fitted one (in the convention of ``ks``).
    n_tail : int
        The number of eigenvalues at or above ``xmin`` (WeightWatcher's ``num_pl_spikes``).
    alpha_weighted : float
        :math:`\hat\alpha\log_{10}\lambda_{\max} = \hat\alpha\log_{10}\sigma_1^2`
        (WeightWatcher's ``alpha_weighted``).
    under_trained : bool
        :math:`\hat\alpha > 6`.
    over_trained : bool
        :math:`\hat\alpha < 2`.
    ks : str
        ``"clauset"`` or ``"weightwatcher"``: how ``ks_distance`` was measured.
    """

    alpha: float
    alpha_stderr: float
    xmin: float
    xmax: float
    ks_distance: float
    n_tail: int
    alpha_weighted: float
    under_trained: bool
    over_trained: bool
    ks: str


def power_law_fit(
    singular_values: ArrayLike,
    *,
    xmin: float | None = None,
    ks: KSStatistic = "clauset",
) -> PowerLawFit:
    r"""Fit a power law to the tail of the eigenvalues :math:`\lambda_i = \sigma_i^2`.

    Parameters
    ----------
    singular_values : array_like, shape (k,)
        Singular values of ``W`` (any order). Zeros are left out of the fit.
    xmin : float, optional
        The lower end of the tail, as an *eigenvalue* (a squared singular value). By
        default it is chosen among the distinct eigenvalues as the one whose fit has the
        smallest KS distance (Clauset, Shalizi & Newman).
    ks : {"clauset", "weightwatcher"}, default "clauset"
        The KS distance: ``"clauset"`` is the supremum over the tail of
        :math:`|S(x) - P(x)|` (the empirical distribution function is a step function, so
        both sides of each step count); ``"weightwatcher"`` measures only the left limits of
        the steps, :math:`\max_j |P(x_j) - j/n|`, as WeightWatcher 0.7 and the ``powerlaw``
        package do. The two differ by less than :math:`1/n_{\text{tail}}`, but may choose
        different ``xmin``. ``"weightwatcher"`` also follows WeightWatcher 0.7.7's rule for
        fewer than 20 positive eigenvalues when it chooses ``xmin`` (see Notes).

    Returns
    -------
    PowerLawFit
        ``alpha``, ``alpha_stderr``, ``xmin``, ``xmax``, ``ks_distance``, ``n_tail``,
        ``alpha_weighted`` and the flags ``under_trained`` (:math:`\alpha > 6`) and
        ``over_trained`` (:math:`\alpha < 2`).

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D.
    InputError
        If a value is negative or complex; if there are fewer than two distinct positive
        values (no tail to fit); if ``xmin`` is not a positive number, or no eigenvalue
        lies above it; or if ``ks`` is not one of the two.
    NonFiniteError
        If a value is NaN or infinite.

    Notes
    -----
    **Estimator.** For the :math:`n` eigenvalues :math:`\lambda_i \ge x_{\min}`, the
    continuous power law :math:`p(\lambda) = \frac{\alpha-1}{x_{\min}}
    (\lambda/x_{\min})^{-\alpha}` has the maximum-likelihood exponent and standard error

    .. math::

        \hat\alpha = 1 + n\Bigl[\sum_i \ln\frac{\lambda_i}{x_{\min}}\Bigr]^{-1}, \qquad
        \hat s = \frac{\hat\alpha - 1}{\sqrt n}.

    With ``xmin`` not given, every distinct positive eigenvalue but the largest is a
    candidate, and the one minimising the KS distance
    :math:`D = \max_{\lambda \ge x_{\min}} |S(\lambda) - P(\lambda)|` between the empirical
    distribution :math:`S` of the tail and the fitted :math:`P(\lambda) = 1 -
    (\lambda/x_{\min})^{1-\hat\alpha}` is kept (the smallest such ``xmin`` on a tie).

    **Cost.** All candidates' :math:`\hat\alpha` come from one cumulative sum of the sorted
    log-eigenvalues, O(k) in total. Each candidate's :math:`D` needs its own tail, so the
    scan does :math:`k^2/2` evaluations of :math:`P`; they run as NumPy blocks of at most
    :math:`2^{20}` elements: bounded memory, and about 0.1 s for a 4096-value spectrum on
    one core (WeightWatcher's loop over the same candidates: 0.17 s).

    **WeightWatcher.** With ``ks="weightwatcher"``, ``xmin`` not given and distinct
    eigenvalues this is the fit of WeightWatcher 0.7.7's ``WWFit`` (same candidates,
    exponent, distance and first minimum), including its small-sample rule
    (``SMALL_N_CUTOFF``): with :math:`k < 20` positive eigenvalues, only tails of at least
    8 of them (and :math:`\sum_i\ln(\lambda_i/x_{\min}) > 10^{-12}`) are candidates,
    each fitted with the bias-corrected :math:`\hat\alpha = 1 + (n-1)/\sum_i
    \ln(\lambda_i/x_{\min})`, and the one of smallest :math:`D` is kept (WeightWatcher
    also scores them by :math:`D - 0.868/\sqrt n`, but its ``WWFit`` then reports the
    minimum of :math:`D`, which is what ``analyze()`` returns); ``alpha_stderr`` is
    :math:`(\hat\alpha - 1)/\sqrt n` of that :math:`\hat\alpha`. With fewer than 8
    positive eigenvalues the whole spectrum is the tail, as in WeightWatcher (whose
    ``sigma`` is then :math:`-1/\sqrt k`, not computed from the fit; ``alpha_stderr`` here
    is). Three differences remain: WeightWatcher first drops eigenvalues at or below an
    absolute :math:`10^{-5}` (here only zeros are dropped, so that the fit does not depend
    on the scale; pass ``s[s**2 > 1e-5]`` to match, which also makes :math:`k` the count it
    sees); with tied eigenvalues it tries each copy as a candidate, whose tail then leaves
    out the earlier copies; and its ``xmin`` argument only bounds its scan from below,
    whereas a given ``xmin`` here is the tail's start, fitted with the plain estimator
    above whatever ``ks``.

    **Caveats.** The flags are WeightWatcher's rules of thumb for layers of trained networks
    (Martin & Mahoney), not statistical tests:

    * :math:`\hat\alpha` is noisy for small tails: its standard error is
      :math:`(\alpha-1)/\sqrt n`, so with :math:`n_{\text{tail}} = 20` and
      :math:`\alpha = 4` it is 0.7 — a flag decided by less than that margin is not
      significant. Check ``n_tail`` and ``alpha_stderr``.
    * The MLE is biased at finite :math:`n` (:math:`\mathrm E\hat\alpha - \alpha \approx
      (\alpha-1)/n`, upwards), and the KS choice of ``xmin`` tends to favour short tails
      in spectra that are not power laws at all: a spectrum with no heavy tail (e.g. a
      random Gaussian matrix, whose Marchenko–Pastur bulk has a hard edge) still gets an
      :math:`\hat\alpha` — often large, hence "under-trained" (seeded Gaussian matrices of
      500×250, 768×384 and 1000×1000: 4.9, 12.6 and 9.8 on tails of 57, 22 and 57
      values, with :math:`D \approx 0.13`). A small ``ks_distance``
      does not prove a power law (Clauset et al. compare against alternatives with a
      bootstrap; not done here).
    * Eigenvalues are :math:`\sigma_i^2` of ``W`` itself, not normalised by ``N``:
      ``alpha`` does not depend on the scale, ``alpha_weighted`` does (it grows with
      :math:`\log_{10}\sigma_1^2`), as in WeightWatcher 0.7.
    * :math:`\hat\alpha < 2` may also mean a few outlying eigenvalues ("fingers") or a
      rank-deficient layer, not over-training.

    References
    ----------
    .. [1] A. Clauset, C. R. Shalizi and M. E. J. Newman, "Power-law distributions in
       empirical data", SIAM Review 51 (2009) 661-703, arXiv:0706.1062.
    .. [2] C. H. Martin and M. W. Mahoney, "Implicit self-regularization in deep neural
       networks", J. Mach. Learn. Res. 22 (2021), arXiv:1810.01075.
    .. [3] C. H. Martin, T. S. Peng and M. W. Mahoney, "Predicting trends in the quality of
       state-of-the-art neural networks without access to training or testing data",
       Nature Communications 12 (2021) 4122, arXiv:2002.06716 (``alpha_weighted``).

    Examples
    --------
    Eigenvalues :math:`1, e, e^2` with ``xmin = 1``: :math:`\hat\alpha = 1 + 3/(0+1+2) = 2`.

    >>> import numpy as np
    >>> fit = power_law_fit(np.exp([0.0, 0.5, 1.0]), xmin=1.0)
    >>> fit.alpha, fit.n_tail, round(fit.ks_distance, 4)
    (2.0, 3, 0.3333)
    >>> round(power_law_fit(np.exp([0.0, 0.5, 1.0]), xmin=1.0, ks="weightwatcher").ks_distance, 4)
    0.2988

    Pareto eigenvalues with :math:`\alpha = 3`:

    >>> rng = np.random.default_rng(1)
    >>> lam = (1.0 - rng.random(2000)) ** (-1.0 / 2.0)
    >>> fit = power_law_fit(np.sqrt(lam))
    >>> abs(fit.alpha - 3.0) < 3 * fit.alpha_stderr, fit.under_trained, fit.over_trained
    (True, False, False)
    """
    s = as_singular_values(singular_values)
    if xmin is not None:
        xmin = check_positive_float(xmin, name="xmin")
    check_choice(ks, name="ks", choices=("clauset", "weightwatcher"))
    positive = s[s > 0.0]
    if np.unique(positive).size < 2:
        raise InputError(
            "singular_values must hold at least two distinct positive values for a power-law "
            f"fit; got {positive.size} positive value(s) of {s.size}, "
            f"{np.unique(positive).size} distinct"
        )
    return _power_law_fit(positive, xmin, ks)


def _log_eigenvalues(s: Array) -> tuple[Array, float]:
    """``(ln(λ/λ_max) ascending, ln λ_max)`` for positive singular values ``s`` (descending)."""
    top = float(s[0])
    ratios = s[::-1] / top  # ascending; exact under scaling by a power of two
    with np.errstate(divide="ignore"):
        rel = 2.0 * np.log(ratios)
    tiny = ratios == 0.0  # a ratio below the smallest subnormal: take the logs apart
    if np.any(tiny):
        rel[tiny] = 2.0 * (np.log(s[::-1][tiny]) - math.log(top))
    return rel, 2.0 * math.log(top)


def _power_law_fit(s: Array, xmin: float | None, ks: str) -> PowerLawFit:
    """Body of :func:`power_law_fit`: ``s`` positive, descending, two distinct values."""
    logs, log_top = _log_eigenvalues(s)
    with np.errstate(over="ignore", under="ignore"):  # inf/0 beyond float64; compare right
        lam = np.square(s[::-1])  # ascending, like logs
    if xmin is None:
        small = ks == "weightwatcher" and logs.size < WW_SMALL_N
        starts, alphas, distances = _scan_xmin(logs, ks, small=small)
        best = int(np.argmin(distances))  # first minimum: the smallest xmin on a tie
        start = int(starts[best])
        alpha, distance, ref = float(alphas[best]), float(distances[best]), float(logs[start])
    else:
        # Membership by the eigenvalues themselves (sigma_j^2 >= xmin, as a caller who took
        # xmin = s[j]**2 or a previous fit's xmin expects), ln(lambda_j/xmin) from the logs.
        start = int(np.searchsorted(lam, xmin, side="left"))
        ref = math.log(xmin) - log_top
        tail = np.maximum(logs[start:] - ref, 0.0)
        total = float(np.sum(tail))
        if not (lam[-1] > xmin and total > 0.0):
            raise InputError(
                f"xmin must lie below the largest eigenvalue sigma_1^2 = {float(lam[-1])!r} "
                f"for a tail to fit; got {xmin!r}"
            )
        alpha = 1.0 + tail.size / total
        distance = float(
            _ks_distances(
                (tail + ref)[None, :], np.array([ref]), np.array([alpha]), np.array([tail.size]), ks
            )[0]
        )
    n_tail = int(logs.size - start)
    return PowerLawFit(
        alpha=alpha,
        alpha_stderr=(alpha - 1.0) / math.sqrt(n_tail),
        xmin=float(lam[start]) if xmin is None else xmin,
        xmax=float(lam[-1]),
        ks_distance=distance,
        n_tail=n_tail,
        alpha_weighted=alpha * log_top / math.log(10.0),
        under_trained=alpha > UNDER_TRAINED_ALPHA,
        over_trained=alpha < OVER_TRAINED_ALPHA,
        ks=ks,
    )


def _scan_xmin(logs: Array, ks: str, *, small: bool = False) -> tuple[Array, Array, Array]:
    r"""Every candidate ``xmin`` of the sorted log-eigenvalues ``logs`` (ascending).

    Returns ``(starts, alphas, distances)``: the index where each candidate's tail starts
    (the first of each run of equal values, the largest value excluded), its
    :math:`\hat\alpha` and its KS distance. With ``small`` (WeightWatcher's small-sample
    rule), :math:`\hat\alpha = 1 + (n-1)/\sum_j\ln(\lambda_j/x_{\min})` and the distance
    is ``inf`` for the candidates the rule leaves out.

    :math:`\sum_{j \ge i}(\ell_j - \ell_i) = T_i - (k - i)\,\ell_i` with the suffix sums
    :math:`T_i = \sum_{j \ge i}\ell_j`: every :math:`\hat\alpha` in O(k). ``logs`` is
    relative to the largest value (``logs[-1] = 0``), so :math:`|\ell_i|` never exceeds the
    spread of the tail and the subtraction loses at most :math:`\log_2 n` bits.
    """
    k = logs.size
    first = np.ones(k, dtype=bool)
    first[1:] = logs[1:] != logs[:-1]
    first &= logs < logs[-1]
    starts = np.flatnonzero(first)
    suffix = np.cumsum(logs[::-1])[::-1]
    counts = (k - starts).astype(np.float64)
    spread = suffix[starts] - counts * logs[starts]
    alphas = 1.0 + (counts - 1.0 if small else counts) / spread
    distances = np.empty(starts.size)
    # Blocks of consecutive candidates, each row its tail from column 0 (a strided view of
    # the log-eigenvalues padded with +inf, where the fitted P is 1 and the target is
    # clipped to 1: padding contributes 0).
    width0 = k - int(starts[0])  # the longest tail (there is at least one candidate)
    padded = np.concatenate([logs, np.full(width0, np.inf)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width0)
    i = 0
    while i < starts.size:
        width = k - int(starts[i])
        rows = max(1, min(starts.size - i, _BLOCK // width))
        block = starts[i : i + rows]
        tails = windows[block, :width]
        distances[i : i + rows] = _ks_distances(
            tails, logs[block], alphas[i : i + rows], counts[i : i + rows], ks
        )
        i += rows
    if small:
        # WeightWatcher's small-sample rule: only tails of at least WW_SMALL_N_MIN_TAIL
        # values whose spread exceeds 1e-12 compete; if there is none, the whole spectrum.
        allowed = (counts >= WW_SMALL_N_MIN_TAIL) & (spread > _WW_DEGENERATE_SPREAD)
        if not np.any(allowed):
            allowed = starts == 0
        distances[~allowed] = np.inf
    return starts, alphas, distances


def _ks_distances(tails: Array, refs: Array, alphas: Array, counts: Array, ks: str) -> Array:
    r"""KS distance of each row's tail to its fitted power law.

    ``tails[r]`` holds :math:`\ln\lambda_j` of row ``r``'s tail, ascending from
    :math:`\ln x_{\min} =` ``refs[r]``, its first ``counts[r]`` entries real and the rest
    ``+inf`` padding.

    With :math:`P_j = 1 - (\lambda_j/x_{\min})^{1-\alpha}` and the empirical distribution
    stepping from :math:`j/n` to :math:`(j+1)/n` at :math:`\lambda_j`, the supremum is
    :math:`\max_j \max(P_j - j/n, (j+1)/n - P_j) = \max_j |P_j - (j+\frac12)/n| +
    \frac1{2n}` (``"clauset"``); WeightWatcher's is :math:`\max_j |P_j - j/n|`.
    """
    width = tails.shape[1]
    half = 0.5 if ks == "clauset" else 0.0
    n = counts[:, None]
    work = tails - refs[:, None]  # ln(λ_j/xmin) >= 0; +inf in the padding
    work *= 1.0 - alphas[:, None]
    np.expm1(work, out=work)  # -P_j; -1 in the padding
    target = np.minimum(np.arange(width, dtype=np.float64)[None, :] + half, n) / n
    work += target  # target - P_j: 0 in the padding (target clipped to 1 there)
    np.abs(work, out=work)
    result: Array = np.max(work, axis=1) + half / counts
    return result


# --------------------------------------------------------------------------------------
# A matrix
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomMatrixSummary:
    r"""The random-matrix view of one matrix (:func:`random_matrix_summary`).

    Attributes
    ----------
    shape : tuple of int
        ``(m, n)``.
    marchenko_pastur : MarchenkoPasturEdge
        :func:`marchenko_pastur_edge` of the matrix.
    power_law : PowerLawFit or None
        :func:`power_law_fit` of its eigenvalues; ``None`` when it has fewer than two
        positive singular values that differ by more than rounding (the zero matrix, a
        multiple of an orthogonal matrix), which have no tail to fit.
    singular_values : ndarray of float64, shape (min(m, n),)
        Its singular values, descending.
    """

    shape: tuple[int, int]
    marchenko_pastur: MarchenkoPasturEdge
    power_law: PowerLawFit | None
    singular_values: np.ndarray[Any, np.dtype[np.float64]]


def _rounding_spread(s: Array, m: int, n: int, stored: np.dtype[Any]) -> float:
    r"""How far apart rounding alone puts the singular values ``s`` of equal exact ones.

    The SVD's own rounding, :math:`16\,\varepsilon_{64}\sqrt N\sigma_1`; and rounding the
    entries to ``stored`` adds :math:`E` with :math:`\|E\|_2 < \tau_s` (the storage threshold
    of :func:`lowrank.metrics.numerical_rank`), which moves each value by at most
    :math:`\|E\|_2` (Weyl): :math:`2\tau_s`. In units of a power of two near
    :math:`\sigma_1`, so that :math:`\|A\|_F` cannot overflow.
    """
    top = float(s[0])
    unit = power_of_two_scale(top)
    norm = float(np.sqrt(np.sum(np.square(s[::-1] / unit))))
    storage = 2.0 * storage_margin(m, n) * storage_noise_level_of(m, n, norm, stored, unit=unit)
    return max(tolerance(np.float64, size=max(m, n), scale=top), storage * unit)


def random_matrix_summary(
    A: ArrayLike,
    *,
    method: EdgeMethod = "closed_form",
    xmin: float | None = None,
    ks: KSStatistic = "clauset",
) -> RandomMatrixSummary:
    r"""The Marchenko–Pastur edge and the power-law fit of a matrix.

    Computes the singular values once (:func:`lowrank.singular_values`) and hands them to
    :func:`marchenko_pastur_edge` and :func:`power_law_fit`.

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix (real or complex).
    method : {"closed_form", "fit"}, default "closed_form"
        The estimator of the entry scale (see :func:`marchenko_pastur_edge`).
    xmin : float, optional
        The lower end of the power-law tail, an eigenvalue (see :func:`power_law_fit`);
        chosen by the KS distance by default.
    ks : {"clauset", "weightwatcher"}, default "clauset"
        The KS distance's convention (see :func:`power_law_fit`).

    Returns
    -------
    RandomMatrixSummary
        ``shape``, ``marchenko_pastur``, ``power_law`` and the ``singular_values``. The
        fit leaves out the values at the rounding level of the SVD route that computed
        them, which cannot be told from 0: :math:`16\,\varepsilon_{64}\sqrt N\,\sigma_1`
        (:math:`N = \max(m, n)`) for float64 and complex128 input (LAPACK in float64), and
        :math:`\sqrt{16\,\varepsilon_{64}\sqrt N}\,\sigma_1` (about
        :math:`10^{-7}\sigma_1`) for single and lower precision, whose values are the
        eigenvalues of a Gram matrix formed in float64 (see
        :func:`lowrank.singular_values`), not limited by the input's epsilon. ``power_law``
        is ``None`` unless at least two of the remaining values differ by more than
        rounding can explain: the SVD's, :math:`16\,\varepsilon_{64}\sqrt N\,\sigma_1`, or
        twice the noise threshold :math:`\tau_s` of rounding the entries to ``A``'s dtype
        (:func:`lowrank.metrics.numerical_rank` with ``storage_dtype``), whichever is
        larger. So a multiple of an orthogonal matrix, stored in any dtype, has
        ``power_law=None``.

    Raises
    ------
    ShapeError
        If ``A`` is not a non-empty 2-D matrix.
    DTypeError
        If ``A`` is not numeric.
    NonFiniteError
        If ``A`` has a NaN or infinite entry.
    InputError
        If ``method`` or ``ks`` is not one of its choices, or ``xmin`` is not a positive
        number below :math:`\sigma_1^2`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((300, 100)) + 3.0 * np.outer(rng.standard_normal(300),
    ...                                                       rng.standard_normal(100))
    >>> result = random_matrix_summary(W, method="fit")
    >>> result.marchenko_pastur.num_spikes, result.power_law.n_tail > 0
    (1, True)
    """
    check_choice(method, name="method", choices=("closed_form", "fit"))
    check_choice(ks, name="ks", choices=("clauset", "weightwatcher"))
    if xmin is not None:
        xmin = check_positive_float(xmin, name="xmin")
    raw = as_array(A, name="A")
    a = as_matrix(raw)
    # The route lowrank.singular_values takes by default, named so that the floor below
    # follows the precision of the route that computed the values.
    route: Literal["lapack", "gram"] = (
        "lapack" if a.dtype in (np.float64, np.complex128) else "gram"
    )
    s = np.asarray(_singular_values(a, method=route), dtype=np.float64)
    m, n = int(a.shape[0]), int(a.shape[1])
    edge = _marchenko_pastur_edge(s, m, n, method)
    top, size = float(s[0]), max(m, n)
    # Values at the rounding level of the SVD are zeros in disguise (a rank-1 matrix of ones
    # gave [6, 1.3e-32] and a "power law" with alpha 1.03): only those above it are fitted.
    # Both routes compute in float64: LAPACK's values carry an absolute error of about
    # eps64 sqrt(N) sigma_1, the Gram route's eigenvalues eps64 sqrt(N) sigma_1**2, so that
    # its sigma_i are noise below sqrt(eps64 sqrt(N)) sigma_1 (float32 input is not limited
    # to float32's epsilon: its Gram matrix is formed in float64).
    if route == "lapack":
        floor = tolerance(np.float64, size=size, scale=top)
    else:
        floor = math.sqrt(tolerance(np.float64, size=size)) * top
    positive = s[s > floor]
    distinct = positive.size >= 2 and float(positive[0]) - float(positive[-1]) > _rounding_spread(
        s, m, n, raw.dtype
    )
    fit = _power_law_fit(positive, xmin, ks) if distinct else None
    return RandomMatrixSummary(
        shape=(m, n), marchenko_pastur=edge, power_law=fit, singular_values=s
    )
