"""The a-posteriori error model of the adaptive block Krylov method."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lowrank._typing import Array


def contraction(ratio: float, before: int, now: int) -> float:
    r"""The per-step factor :math:`\rho` of a geometric error :math:`E_k = C\rho^k` whose
    decreases over two consecutive intervals of ``before`` and ``now`` steps have the ratio
    ``ratio`` = :math:`\rho^{b}(1-\rho^{n})/(1-\rho^{b})` (increasing in :math:`\rho`,
    from 0 to :math:`n/b`); 1.0 when no :math:`\rho < 1` fits."""
    if ratio >= now / before:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mid**before * (1.0 - mid**now) / (1.0 - mid**before) < ratio:
            lo = mid
        else:
            hi = mid
    return hi


def _extrapolate(
    now: float, before: float, steps_now: int, steps_before: int
) -> tuple[float, float]:
    """Remaining decrease and per-step factor of a geometric sequence whose decreases over
    the last two intervals (``steps_before`` then ``steps_now`` steps) were ``before`` and
    ``now``: ``(inf, 1.0)`` when they do not shrink like one."""
    if before <= 0.0:
        return math.inf, 1.0
    rho = contraction(now / before, steps_before, steps_now)
    if rho >= 1.0:
        return math.inf, 1.0
    shrink = rho**steps_now
    return now * shrink / (1.0 - shrink), rho


@dataclass
class Progress:
    r"""Ritz values at the convergence checks of the adaptive method, and two estimates.

    Krylov Ritz values increase monotonically to the singular values, so what is still
    missing can be extrapolated from how much they grew between checks. A geometric
    decrease :math:`E_k = C\rho^k` is fitted to the growth over the last two intervals
    between checks (:func:`contraction`); the remaining error is then
    :math:`d\,\rho^\Delta/(1-\rho^\Delta)` for a growth :math:`d` over the last :math:`\Delta`
    steps. Krylov convergence accelerates, so the model over-estimates once it has set in.

    * ``value_estimate``: of :math:`\max_{i\le r}(\sigma_i-\tilde\sigma_i)/\tilde\sigma_i`, from
      the largest relative growth of the top ``rank`` Ritz values;
    * ``excess_estimate``: of the relative excess of the Frobenius residual over the optimum,
      from the growth of the captured energy :math:`E = \sum_{i\le r}\tilde\sigma_i^2`: with
      :math:`\delta` the extrapolated remaining growth and
      :math:`\rho_F^2 = \|A\|_F^2 - E` the residual, the optimum is at least
      :math:`(\rho_F^2-\delta)^{1/2}` and the excess about
      :math:`(\rho_F^2/(\rho_F^2-\delta))^{1/2} - 1`.

    Growth below the rounding level (:math:`8\varepsilon\tilde\sigma_1/\tilde\sigma_i` for
    a value) counts as converged; growth that does not shrink means "not converged"
    (infinity).
    """

    rank: int
    eps: float
    norm_fro: float
    criterion: str  # "values" or "excess"
    steps: list[int] = field(default_factory=list)
    values: list[Array] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    value_estimate: float = math.inf
    excess_estimate: float = math.inf
    rho: float = 1.0
    values_at_noise: bool = False
    excess_at_noise: bool = False

    @property
    def estimate(self) -> float:
        return self.value_estimate if self.criterion == "values" else self.excess_estimate

    def reached(self, tol: float) -> bool:
        """The criterion's estimate is below ``tol``, or its growth is rounding noise."""
        noise = self.values_at_noise if self.criterion == "values" else self.excess_at_noise
        return noise or self.estimate <= tol

    def update(self, step: int, ritz: Array) -> float:
        """Record the Ritz values after ``step`` steps; returns the criterion's estimate."""
        scale = self.norm_fro if self.norm_fro > 0 else 1.0
        top = np.asarray(ritz[: self.rank], dtype=np.float64) / scale
        self.steps.append(step)
        self.values.append(top)
        self.energies.append(float(np.dot(top[::-1], top[::-1])))
        if len(self.values) >= 2:
            self._update_values()
            self._update_excess()
        return self.estimate

    def _intervals(self) -> tuple[int, int]:
        now = self.steps[-1] - self.steps[-2]
        before = self.steps[-2] - self.steps[-3] if len(self.steps) >= 3 else 0
        return now, before

    def _update_values(self) -> None:
        cur, prev = self.values[-1], self.values[-2]
        safe = np.where(cur > 0, cur, 1.0)
        noise = 8.0 * self.eps * float(cur[0]) / safe
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
        d_before = np.abs(prev - self.values[-3]) / safe
        worst_now = float(np.max(np.where(d_now > noise, d_now, 0.0)))
        remaining, rho = _extrapolate(worst_now, float(np.max(d_before)), now, before)
        self.value_estimate = remaining
        if self.criterion == "values":
            self.rho = rho

    def _update_excess(self) -> None:
        e = self.energies
        residual_sq = max(1.0 - e[-1], 0.0)
        top = self.values[-1]
        noise = 8.0 * self.eps * float(top[0]) * float(np.sum(top))
        self.excess_at_noise = abs(e[-1] - e[-2]) <= noise
        if self.excess_at_noise:
            remaining, rho = 0.0, 0.0
        elif len(e) < 3:
            return
        else:
            now, before = self._intervals()
            remaining, rho = _extrapolate(e[-1] - e[-2], e[-2] - e[-3], now, before)
        if remaining >= residual_sq:
            self.excess_estimate = math.inf
        else:
            self.excess_estimate = math.sqrt(residual_sq / (residual_sq - remaining)) - 1.0
        if self.criterion == "excess":
            self.rho = rho

    def steps_to(self, tol: float) -> int:
        """Steps until the geometric model reaches ``tol`` (at least 1; a large number when
        no rate is known)."""
        est = self.estimate
        if not (math.isfinite(est) and 0.0 < self.rho < 1.0):
            return 1 if est <= tol else 1 << 30
        if est <= tol:
            return 1
        return max(1, math.ceil(math.log(tol / est) / math.log(self.rho)))
