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
    converged" (infinity).

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

    @property
    def estimate(self) -> float:
        return self.value_estimate if self.criterion == "values" else self.excess_estimate

    def reached(self, tol: float) -> bool:
        """The criterion's estimate is below ``tol``, or its growth is rounding noise."""
        noise = self.values_at_noise if self.criterion == "values" else self.excess_at_noise
        return self.validated and (noise or self.estimate <= tol)

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
        if self.excess_at_noise:
            remaining, rho = 0.0, 0.0
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
        if remaining >= residual_sq:
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
    are not counted: copies of zero change nothing.
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
