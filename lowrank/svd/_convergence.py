"""The a-posteriori error model of the adaptive block Krylov method."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from lowrank._typing import Array


def contraction(ratio: float, before: int, now: int) -> float:
    r"""The per-step factor :math:`\rho` of a geometric error :math:`E_k = C\rho^k` whose
    decreases over two consecutive intervals of ``before`` and ``now`` steps have the ratio
    ``ratio`` = :math:`\rho^{b}(1-\rho^{n})/(1-\rho^{b})` (increasing in :math:`\rho`,
    from 0 to :math:`n/b`); 1.0 when no :math:`\rho < 1` fits."""
    return float(_contractions(np.array([ratio], dtype=np.float64), before, now)[0])


# Bisection steps of _contractions: rho to 2**-40 (1e-12), far finer than the model.
_BISECTIONS = 40


def _contractions(ratios: Array, before: int, now: int) -> Array:
    r""":func:`contraction` of each entry: in closed form for the intervals the check
    schedule uses most (equal, or one twice the other: a quadratic in
    :math:`y = \rho^{\min(b, n)}`), otherwise by bisection on all entries at once."""
    fits = ratios < now / before
    safe = np.where(fits, ratios, 0.0)
    if now == before:
        return np.where(fits, safe ** (1.0 / now), 1.0)
    if now == 2 * before:  # ratio = y (1 + y), y = rho**before; no cancellation for small y
        y = 2.0 * safe / (1.0 + np.sqrt(1.0 + 4.0 * safe))
        return np.where(fits, y ** (1.0 / before), 1.0)
    if before == 2 * now:  # ratio = y**2 / (1 + y), y = rho**now
        y = 0.5 * (safe + np.sqrt(safe * safe + 4.0 * safe))
        return np.where(fits, y ** (1.0 / now), 1.0)
    return np.where(fits, _bisected_contractions(safe, before, now), 1.0)


def _bisected_contractions(ratios: Array, before: int, now: int) -> Array:
    """:func:`contraction` of each entry, by bisection on all of them at once."""
    lo = np.zeros_like(ratios)
    hi = np.ones_like(ratios)
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            # mid rounds to 1.0 only for ratios next to now/before: 0/0 is then "not below".
            below = mid**before * (1.0 - mid**now) / (1.0 - mid**before) < ratios
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.where(ratios >= now / before, 1.0, hi)


def _extrapolate(
    now: float, before: float, steps_now: int, steps_before: int
) -> tuple[float, float]:
    """Remaining decrease and per-step factor of a geometric sequence whose decreases over
    the last two intervals (``steps_before`` then ``steps_now`` steps) were ``before`` and
    ``now``: ``(inf, 1.0)`` when they do not shrink like one."""
    remaining, rho = _extrapolate_each(np.array([now]), np.array([before]), steps_now, steps_before)
    return float(remaining[0]), float(rho[0])


def _extrapolate_each(
    now: Array, before: Array, steps_now: int, steps_before: int
) -> tuple[Array, Array]:
    """:func:`_extrapolate` for each entry of ``now`` and ``before``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(before > 0.0, now / np.where(before > 0.0, before, 1.0), np.inf)
    rho = _contractions(ratios, steps_before, steps_now)
    shrink = rho**steps_now
    with np.errstate(divide="ignore", invalid="ignore"):
        remaining = np.where(
            rho < 1.0, now * shrink / np.where(rho < 1.0, 1.0 - shrink, 1.0), np.inf
        )
    return remaining, np.where(rho < 1.0, rho, 1.0)


# Growth of a Ritz value below this many epsilons of the top one is rounding noise.
NOISE_EPS = 8.0

# Energy growth at the rounding level counts as converged for excess_tol when the residual
# itself is within this factor of that level (Progress._excess_noise_allowed).
NOISE_RESIDUAL = 4.0

# How many Ritz values below the rank may overtake one above it (Progress._overtaken): the
# nearest ones, which a converged top value is separated from by its gap.
_OVERTAKING_DEPTH = 64

# A convergence claim needs the growth seen since the previous check to stay within this
# factor of what that check predicted would remain (see Progress, Validation).
PREDICTION_SLACK = 2.0


@dataclass
class Progress:
    r"""Ritz values at the convergence checks of the adaptive method, and two estimates.

    Krylov Ritz values increase monotonically to the singular values, so what is still
    missing can be extrapolated from how much they grew between checks. A geometric
    decrease :math:`E_k = C\rho^k` is fitted to the growth over the last two intervals
    between checks (:func:`contraction`); the remaining error is then
    :math:`d\,\rho^\Delta/(1-\rho^\Delta)` for a growth :math:`d` over the last :math:`\Delta`
    steps. Krylov convergence accelerates, so the model tends to over-estimate once it has
    set in.

    * ``value_estimate``: of :math:`\max_{i\le r}(\sigma_i-\tilde\sigma_i)/\tilde\sigma_i`, from
      the largest relative growth of the top ``rank`` Ritz values, and at least how far a
      lower Ritz value would pass one of them with one more interval of its growth
      (:math:`\sigma_i \ge \sigma_j` for :math:`j > i`; :meth:`_overtaken`);
    * ``excess_estimate``: of the relative excess of the Frobenius residual over the optimum,
      from the growth of the captured energy :math:`E = \sum_{i\le r}\tilde\sigma_i^2`: with
      :math:`\delta` the extrapolated remaining growth and
      :math:`\rho_F^2 = \|A\|_F^2 - E` the residual, the optimum is at least
      :math:`(\rho_F^2-\delta)^{1/2}` and the excess about
      :math:`(\rho_F^2/(\rho_F^2-\delta))^{1/2} - 1`. Each :math:`\tilde\sigma_i^2` is
      extrapolated by itself; one without a rate ends at most where the values above it
      are extrapolated to end (:math:`\sigma_i \le \sigma_j`, :math:`j < i`), and below
      :math:`\sigma_1^2`.

    Growth below the rounding level (:math:`8\varepsilon\tilde\sigma_1/\tilde\sigma_i` for
    a value, :data:`NOISE_EPS`) counts as converged; growth that does not shrink means "not
    converged" (infinity). For the energy, that level :math:`\delta E` is an uncertainty,
    not zero: the excess estimate is then the residual's relative uncertainty
    :math:`1 - (1 - \delta E/\rho_F^2)^{1/2}` (about :math:`\delta E/(2\rho_F^2)`), and it
    counts as converged only within ``tol`` or the residual's rounding level, or when
    :math:`\rho_F^2` itself is at the level :math:`\delta E`
    (:meth:`_excess_noise_allowed`).

    These estimates are extrapolations; a claim for ``value_tol`` is confirmed by the
    residuals of the Ritz triplets before it stands (:func:`residual_value_bounds`).

    **Validation.** Two intervals fit any rate, and Krylov convergence comes in phases: a
    cluster of singular values is first separated from the rest of the spectrum quickly,
    then resolved inside slowly, so a rate fitted across the change of phase is far too
    optimistic (a float32 cluster of relative width 1e-2 stopped after three checks with
    its values 700 times ``tol`` off). So a convergence claim counts only when the previous
    check's estimate, a prediction of all the growth still to come, was not exceeded
    (beyond a factor :data:`PREDICTION_SLACK`) by the growth actually seen since
    (:attr:`validated`). In the accelerating phase the model is pessimistic and this costs
    nothing; after a change of phase it costs one more interval.
    """

    rank: int
    eps: float
    norm_fro: float
    criterion: str  # "values" or "excess"
    steps: list[int] = field(default_factory=list)
    values: list[Array] = field(default_factory=list)
    ritz: list[Array] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    value_estimate: float = math.inf
    excess_estimate: float = math.inf
    rho: float = 1.0
    values_at_noise: bool = False
    excess_at_noise: bool = False
    validated: bool = False
    # max(m, n): the residual's rounding level is about eps sqrt(size) ||A||_F.
    size: int = 1
    excess_noise: float = 0.0  # the captured energy's rounding level at the last check

    @property
    def estimate(self) -> float:
        return self.value_estimate if self.criterion == "values" else self.excess_estimate

    def reached(self, tol: float) -> bool:
        """The criterion's estimate is below ``tol``, or its growth is rounding noise (for
        the excess, only where that noise is no larger than ``tol`` or the rounding level of
        the residual allows: :meth:`_excess_noise_allowed`)."""
        if not self.validated:
            return False
        if self.criterion == "values":
            return self.values_at_noise or self.value_estimate <= tol
        return self.excess_estimate <= tol or (
            self.excess_at_noise and self._excess_noise_allowed(tol)
        )

    def _excess_noise_allowed(self, tol: float) -> bool:
        r"""Whether energy growth at the rounding level may count as converged for
        ``excess_tol``: the residual's uncertainty that the energy's rounding
        (:math:`\delta E`) leaves, :math:`\rho_F - (\rho_F^2 - \delta E)^{1/2}`, is within
        ``tol`` times the residual plus its rounding level :math:`\varepsilon\sqrt{N}\|A\|_F`
        — or the residual is itself at the energy's rounding level
        (:math:`\rho_F^2 \le` :data:`NOISE_RESIDUAL` :math:`\delta E`: the optimum is near
        zero in working precision, as for a matrix of rank below ``rank``). Otherwise more
        steps still lower the residual although the energy no longer shows it (a two-scale
        spectrum with an optimum 2e-6 times :math:`\|A\|_F` in float64 stopped 30 times
        ``excess_tol`` off, its estimate 0.0)."""
        residual_sq = max(1.0 - self.energies[-1], 0.0)
        if residual_sq <= NOISE_RESIDUAL * self.excess_noise:
            return True
        residual = math.sqrt(residual_sq)
        uncertain = residual - math.sqrt(max(residual_sq - self.excess_noise, 0.0))
        return uncertain <= tol * residual + self.eps * math.sqrt(self.size)

    def update(self, step: int, ritz: Array) -> float:
        """Record the Ritz values after ``step`` steps; returns the criterion's estimate."""
        scale = self.norm_fro if self.norm_fro > 0 else 1.0
        every = np.asarray(ritz, dtype=np.float64) / scale
        top = every[: self.rank]
        predicted = self.estimate
        self.steps.append(step)
        self.values.append(top)
        self.ritz.append(every)
        self.energies.append(float(np.dot(top[::-1], top[::-1])))
        if len(self.values) >= 2:
            self._update_values()
            overtaken = self._overtaken()
            if overtaken > 0.0:
                self.values_at_noise = False
                self.value_estimate = max(self.value_estimate, overtaken)
            self._update_excess()
            noise = self.values_at_noise if self.criterion == "values" else self.excess_at_noise
            self.validated = math.isfinite(predicted) and (
                noise or self._observed() <= PREDICTION_SLACK * predicted
            )
        return self.estimate

    def _observed(self) -> float:
        """The growth since the previous check, in the criterion's unit."""
        cur, prev = self.values[-1], self.values[-2]
        if self.criterion == "values":
            safe = np.where(cur > 0, cur, 1.0)
            return float(np.max(np.abs(cur - prev) / safe))
        residual_sq = max(1.0 - self.energies[-1], 0.0)
        before = residual_sq + abs(self.energies[-1] - self.energies[-2])
        return math.sqrt(before / residual_sq) - 1.0 if residual_sq > 0.0 else math.inf

    def _intervals(self) -> tuple[int, int]:
        now = self.steps[-1] - self.steps[-2]
        before = self.steps[-2] - self.steps[-3] if len(self.steps) >= 3 else 0
        return now, before

    def _update_values(self) -> None:
        cur, prev = self.values[-1], self.values[-2]
        safe = np.where(cur > 0, cur, 1.0)
        noise = NOISE_EPS * self.eps * float(cur[0]) / safe
        d_now = np.abs(cur - prev) / safe
        self.values_at_noise = bool(np.all(d_now <= noise))
        if self.values_at_noise:
            self.value_estimate = float(np.max(d_now))
            if self.criterion == "values":
                self.rho = 0.0
            return
        if len(self.values) < 3:
            return
        now, before = self._intervals()
        # Each value by itself: values converge at their own rates and in phases, and the
        # largest growth now and the largest growth before may belong to different values.
        d_before = np.abs(prev - self.values[-3]) / safe
        moving = d_now > noise
        remaining, rho = _extrapolate_each(d_now[moving], d_before[moving], now, before)
        worst = int(np.argmax(remaining))
        self.value_estimate = float(remaining[worst])
        if self.criterion == "values":
            self.rho = float(rho[worst])

    def _overtaken(self) -> float:
        r"""How far above one of the top ``rank`` Ritz values a Ritz value below it is
        extrapolated to end, relative to it (0 when none is).

        :math:`\sigma_i \ge \sigma_j \ge \tilde\sigma_j` for :math:`j > i`, so a lower
        value whose growth carries it past :math:`\tilde\sigma_i` shows that
        :math:`\tilde\sigma_i` still has at least that far to go, whatever its own growth
        says. That growth can mislead: a value that converges quickly to the edge of two
        nearly equal singular values across it, then resolves them slowly (float64,
        :math:`\sigma_4 = 5`, :math:`\sigma_5 = 4.9995`, rank 4: the 4th value's growth
        shrank 7-fold in one interval, and its own model left 8.5e-6 where 1.0e-4 did; the
        5th value, 4.2e-4 below it, had climbed 1.2e-3). Each value is extrapolated as in
        :meth:`_update_values`, but by no more than one more interval of the growth it just
        had, which is also the allowance without a rate (as in the climbing rule of
        :func:`hidden_multiplicity`): a young Ritz value, whose growth barely shrinks yet,
        would otherwise be extrapolated far past its singular value (a Marchenko–Pastur
        bulk at rank 8 then took 30 % more steps).
        """
        cur, prev = self.ritz[-1], self.ritz[-2]
        known = min(cur.size, prev.size, self.rank + _OVERTAKING_DEPTH)
        cur, prev = cur[:known], prev[:known]
        growth = np.maximum(cur - prev, 0.0)
        noise = NOISE_EPS * self.eps * float(cur[0])
        moving = growth > noise
        if known <= 1 or not np.any(moving[1:]):
            return 0.0
        end = cur.copy()
        end[moving] += growth[moving]
        if len(self.ritz) >= 3:
            older = self.ritz[-3]
            dated = np.flatnonzero(moving[: min(known, older.size)])
            now, before = self._intervals()
            remaining, _ = _extrapolate_each(
                growth[dated], np.maximum(prev[dated] - older[dated], 0.0), now, before
            )
            end[dated] = cur[dated] + np.minimum(remaining, growth[dated])
        # The highest end among the values below each of the top ``rank``; passing by no
        # more than the rounding level is no evidence (exactly repeated values).
        below = np.maximum.accumulate(end[::-1])[::-1][1:]
        top = min(self.rank, known - 1)
        ahead = below[:top] - cur[:top]
        safe = np.where(cur[:top] > 0.0, cur[:top], 1.0)
        return float(np.max(np.where(ahead > noise, ahead, 0.0) / safe, initial=0.0))

    def _update_excess(self) -> None:
        e = self.energies
        residual_sq = max(1.0 - e[-1], 0.0)
        top = self.values[-1]
        noise = NOISE_EPS * self.eps * float(top[0]) * float(np.sum(top))
        self.excess_at_noise = abs(e[-1] - e[-2]) <= noise
        self.excess_noise = noise
        if self.excess_at_noise:
            # Growth at the rounding level of the captured energy: the energy is known to
            # about ``noise`` only, so the optimum may be that much below the residual (an
            # energy uncertainty dE is a residual uncertainty of about dE / (2 rho), far
            # above the rounding level of the residual when the optimum rho is small).
            remaining, rho = noise, 0.0
        elif len(e) < 3:
            return
        else:
            # The captured energy grows by each value's own growth, at its own rate (see
            # _update_values): extrapolating their sum as one sequence is too optimistic
            # when a cluster converges slowly after the rest has (measured 7x excess_tol).
            now, before = self._intervals()
            cur, prev, old = self.values[-1], self.values[-2], self.values[-3]
            grow_now = np.abs(cur**2 - prev**2)
            grow_before = np.abs(prev**2 - old**2)
            value_noise = NOISE_EPS * self.eps * float(top[0]) * top
            moving = grow_now > value_noise
            each, rates = _extrapolate_each(grow_now[moving], grow_before[moving], now, before)
            # No value can grow past sigma_1, nor past any value above it (sigma_i <=
            # sigma_j for j < i): the square where each value is extrapolated to end,
            # running-minimised down the ranking, caps what a value without a rate (growth
            # not yet shrinking, as near the rank of a flat spectrum for many steps) still
            # adds. Values not moving end where they are.
            final = cur**2
            final[moving] += each
            ceiling = np.minimum.accumulate(np.minimum(final, self._top_ceiling()))
            each = np.maximum(ceiling[moving] - cur[moving] ** 2, 0.0)
            remaining = float(np.sum(each))
            rho = float(np.max(rates)) if rates.size else 0.0
        if self.excess_at_noise:
            # The residual's relative uncertainty (at most 1: the optimum may be zero).
            residual = math.sqrt(residual_sq)
            uncertain = residual - math.sqrt(max(residual_sq - remaining, 0.0))
            self.excess_estimate = uncertain / residual if residual > 0.0 else 0.0
        elif remaining >= residual_sq:
            self.excess_estimate = math.inf
        else:
            self.excess_estimate = math.sqrt(residual_sq / (residual_sq - remaining)) - 1.0
        if self.criterion == "excess":
            self.rho = rho

    def _top_ceiling(self) -> float:
        r"""An estimate of :math:`\sigma_1^2` from above, in units of :math:`\|A\|_F^2`: the
        top Ritz value plus its extrapolated growth when it has a rate, otherwise the
        bound :math:`\sigma_1^2 \le \|A\|_F^2 - \sum_{2 \le i \le r}\tilde\sigma_i^2`
        (the Ritz values are below the singular values they converge to)."""
        cur, prev, old = self.values[-1], self.values[-2], self.values[-3]
        now, before = self._intervals()
        bound = max(1.0 - float(np.dot(cur[1:], cur[1:])), float(cur[0]) ** 2)
        growth, _ = _extrapolate(
            abs(float(cur[0] - prev[0])), abs(float(prev[0] - old[0])), now, before
        )
        if not math.isfinite(growth):
            return bound
        return min(bound, (float(cur[0]) + growth) ** 2)

    def copy(self) -> Progress:
        """An independent copy (the histories are new lists of the same arrays)."""
        return replace(
            self,
            steps=list(self.steps),
            values=list(self.values),
            ritz=list(self.ritz),
            energies=list(self.energies),
        )

    def restart(self) -> None:
        """Forget the history: the space was augmented, so the growth seen so far no longer
        follows one geometric model."""
        self.steps.clear()
        self.values.clear()
        self.ritz.clear()
        self.energies.clear()
        self.value_estimate = self.excess_estimate = math.inf
        self.rho = 1.0
        self.values_at_noise = self.excess_at_noise = self.validated = False

    def steps_to(self, tol: float) -> int:
        """Steps until the geometric model reaches ``tol`` (at least 1; a large number when
        no rate is known)."""
        est = self.estimate
        if not (math.isfinite(est) and 0.0 < self.rho < 1.0):
            return 1 if est <= tol else 1 << 30
        if est <= tol:
            return 1
        return max(1, math.ceil(math.log(tol / est) / math.log(self.rho)))


# Ritz values within this relative distance of each other count as one repeated value when
# looking for multiplicities that a block Krylov space cannot resolve.
CLUSTER_SPREAD = 1e-3
# Ritz values up to this many cluster widths below a cluster may be climbing into it (see
# hidden_multiplicity).
CLIMB_SPREADS = 4.0


def hidden_multiplicity(
    values: Array,
    rank: int,
    capacity: int,
    eps: float,
    tol: float,
    previous: Array | None = None,
    widened: bool = True,
) -> bool:
    r"""Whether the top ``rank`` Ritz values may be missing copies of a repeated singular value.

    A block Krylov space grown from ``capacity`` random vectors holds at most ``capacity``
    independent directions of any singular subspace of one repeated value (its Krylov
    polynomials cannot tell them apart), and for a tight cluster it finds more only very
    slowly. So when ``capacity`` or more Ritz values agree to ``CLUSTER_SPREAD`` (relative),
    more copies may exist outside the space, unseen by the growth of the Ritz values: the
    plateau of a spectrum longer than the block. The same holds for a cluster that
    contains the ``capacity``-th Ritz value: the block captures the leading ``capacity``
    directions together, and a cluster member beyond them only as the polynomials resolve
    the cluster (measured: a float64 cluster of width 1e-11 across the 16th value, block
    16, left the top values 1e-12 off with no visible growth). Wider clusters are resolved
    with visible growth: a cluster of relative width :math:`s` separates at a rate of about
    :math:`1 - 2\sqrt s` per step, so each step moves its values by about
    :math:`2 s^{3/2}`, which is below the rounding level :math:`8\varepsilon` (twice, for
    the values of both checks) for :math:`s < (16\varepsilon)^{2/3}` (2e-10 in double,
    2e-4 in single precision): only clusters that tight count here, and only runs of at
    least half the capacity. Shorter runs fit in the block with room to spare, and in a
    dense spectrum they occur by chance (Marchenko–Pastur at 4096 x 11008, rank 256:
    Ritz values 63 and 64, 1.1e-4 apart, widened a capacity of 64 for nothing, 22 steps
    where 18 had converged). Measured: 1,200 spectra with clusters of 2 to 12 values of
    widths 1e-13 to 1e-4 across the capacity-th value, both targets, float32 and float64,
    had no false claim even with this rule for runs across that value removed altogether
    (worst 1.1 times ``tol``).

    The Ritz values of a cluster that the space has not resolved yet spread below it (they
    mix its members with the rest of the spectrum) and climb into it as the space grows. So
    with ``previous``, the Ritz values of the check before, once a cluster holds half the
    capacity or more, a value within :data:`CLIMB_SPREADS` cluster widths below counts in
    it also when its growth since then, repeated, would carry it in (measured: a cluster
    of 27 values within 1e-3, block 16, held 15 Ritz values within 1e-3 and the 16th at
    2e-3, climbing 3.6e-3 per check; the top values stopped 21 times ``tol`` off). Only
    then: below the rank of a dense spectrum (Marchenko–Pastur at 4096 x 11008, values
    1e-4 apart, 9 within 1e-3 against a capacity of 64) the Ritz values beyond the rank
    climb towards values of their own, and counting them widened the space again and
    again (rank 256: excess 4.5e-9 where 5e-4 was asked, 9.3 s against 6.5 s).

    Missing copies matter when they would displace smaller Ritz values from the top
    ``rank`` (the run ends before index ``rank``), or when the run reaches past the rank
    but its values differ by more than ``tol`` (which of them belong to the top ``rank`` is
    then unresolved). Values at the rounding level (:math:`100\,\varepsilon\tilde\sigma_1`)
    are not counted: copies of zero change nothing. That exemption needs ``widened``
    (the space was widened before) when the run fills the capacity: Ritz values that fill
    it at a plateau agree with each other whether or not a value above the plateau is
    still missing, whose direction emerges only slowly over a close plateau (float64,
    :math:`\sigma_1 = 1` over 300 copies of 0.999, rank 1, block 2: two agreeing Ritz
    values at the plateau after 4 steps, ``converged`` with the top value 1e-3 off where
    ``tol`` was 1e-4). Widening and converging again gives it that time.
    """
    v = np.asarray(values, dtype=np.float64)
    top = min(rank, v.size)
    if top == 0 or v[0] <= 0.0:
        return False
    floor = 100.0 * eps * float(v[0])
    unresolved = (16.0 * eps) ** (2.0 / 3.0)
    # v is descending; for each start i the run is v[i..j] with v[j] >= v[i] (1 - spread).
    ascending = v[::-1]

    def run_end(i: int, spread: float) -> int:
        low = v[i] * (1.0 - spread)
        return v.size - 1 - int(np.searchsorted(ascending, low, side="left"))

    # Each value's growth since the previous check: as much again may carry it up.
    growth = np.zeros_like(v)
    if previous is not None:
        known = min(v.size, np.asarray(previous).size)
        before = np.asarray(previous, dtype=np.float64)[:known]
        growth[:known] = np.maximum(v[:known] - before, 0.0)

    for i in range(top):
        if v[i] <= floor:
            break
        low = v[i] * (1.0 - CLUSTER_SPREAD)
        members = np.flatnonzero(v[i:] >= low)
        if 2 * members.size >= capacity:
            near = v[i:] >= v[i] * (1.0 - CLIMB_SPREADS * CLUSTER_SPREAD)
            members = np.flatnonzero((v[i:] >= low) | (near & (v[i:] + growth[i:] >= low)))
        j = i + int(members[-1])
        if members.size >= capacity and not widened and v[j] > floor:
            return True
        if members.size < capacity:
            # A cluster across the space's leading ``capacity`` values: they converge
            # together, and members beyond them only as the polynomials resolve the
            # cluster, which is invisible while its growth per step is below rounding.
            # A run shorter than half the capacity is a chance pair of a dense spectrum.
            j = run_end(i, unresolved)
            if not (i <= capacity - 1 < j) or 2 * (j - i + 1) < capacity:
                continue
        if j < rank - 1 or 1.0 - v[min(j, rank)] / v[i] > tol:
            return True
    return False


def residual_value_bounds(values: Array, residuals: Array, previous: Array | None = None) -> Array:
    r"""A-posteriori bounds on :math:`\sigma_i - \tilde\sigma_i` for the top Ritz values, from
    the residuals :math:`\eta_i = \|Av_i - \tilde\sigma_i u_i\|` of their triplets.

    The Ritz triplets of the one-sided projection have :math:`A^H u_i = \tilde\sigma_i v_i`
    exactly, so :math:`u_i` is an approximate eigenvector of :math:`M = AA^H` for
    :math:`\tilde\sigma_i^2` with the residual :math:`\tilde\sigma_i (Av_i - \tilde\sigma_i u_i)`,
    orthogonal to the whole space. For a group :math:`G` of consecutive Ritz values with
    residual matrix :math:`R_G` (:math:`\|R_G\|_2^2 \le \sum_{j\in G}\tilde\sigma_j^2\eta_j^2`)
    there are eigenvalues of :math:`M` within :math:`\|R_G\|_2` of the
    :math:`\tilde\sigma_j^2`, and within :math:`\|R_G\|_2^2/\delta_G` when the rest of the
    spectrum is :math:`\delta_G` away (Kato–Temple; Mathias's quadratic residual bounds).
    The rest is taken to be the Ritz values around the group — the value below it raised
    by its growth since ``previous`` (Ritz values lie below the singular values they
    converge to, so the gap below a group is over-estimated while they climb). Each value
    gets the least bound over the groups that contain it, ``min(linear, quadratic)``.
    A cluster whose members the space has not resolved yet has large residuals and small
    gaps inside, so it is not claimed on the strength of growth that merely slowed down
    (a staircase of 24 values within 1.5e-3, rank 1: the growth-based estimate said
    2e-7 where the top value was 1.4e-4 off).

    ``values``: all Ritz values, descending; ``residuals``: :math:`\eta_i` of the top ones.
    These bounds see only what the space holds: a singular value whose direction it barely
    contains yet (above a plateau) is beyond them (see :func:`hidden_multiplicity`).
    """
    v = np.asarray(values, dtype=np.float64)
    eta = np.asarray(residuals, dtype=np.float64)
    top = eta.size
    t = v[:top]
    if top == 0:
        return np.zeros(0)
    below = float(v[top]) if v.size > top else 0.0
    following = np.append(v[1:top], below) if top > 1 else np.array([below])
    if previous is not None:
        prev = np.asarray(previous, dtype=np.float64)
        known = min(prev.size, v.size) - 1
        idx = np.arange(1, top + 1)
        ok = idx <= known
        lift = np.zeros(top)
        lift[ok] = np.maximum(v[idx[ok]] - prev[idx[ok]], 0.0)
        following = following + lift
    squares = t * t
    lower = squares - np.minimum(following, t) ** 2  # gap below a group ending at b
    upper = np.full(top, np.inf)  # gap above a group starting at a
    upper[1:] = squares[:-1] - squares[1:]
    weights = (t * eta) ** 2
    sums = np.concatenate([[0.0], np.cumsum(weights)])
    a = np.arange(top)[:, None]
    b = np.arange(top)[None, :]
    inside = a <= b
    total = np.where(inside, sums[b + 1] - sums[a], np.inf)
    gap = np.minimum(upper[:, None], lower[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        quadratic = np.where(gap > 0.0, total / np.where(gap > 0.0, gap, 1.0), np.inf)
    # In units of sigma^2: the least of the linear and quadratic bounds of each group.
    group = np.where(inside, np.minimum(np.sqrt(total), quadratic), np.inf)
    # For value j: the least over groups a <= j <= b.
    down = np.minimum.accumulate(group, axis=0)  # [j, b] = min over a <= j
    best = np.minimum.accumulate(down[:, ::-1], axis=1)[:, ::-1]  # min over b >= j
    bound_sq = np.diagonal(best).copy()
    # sigma^2 - theta^2 <= x gives sigma - theta <= x / (sigma + theta) <= x / (2 theta)
    # for the eigenvalue above, and |sigma - theta| <= sqrt(x) in any case.
    safe = np.where(t > 0.0, t, 1.0)
    return np.where(t > 0.0, np.minimum(bound_sq / (2.0 * safe), np.sqrt(bound_sq)), 0.0)
