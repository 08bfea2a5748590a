"""Variable time grids for :func:`spdekit.simulate`: ``dt=StabilityBoundSteps(cfl=...)``.

An explicit scheme is stable for dt <= h^2 / (4 max alpha1) (:meth:`spdekit.AnisotropicSPDE.stability_bound`:
the forward-Euler map of either stencil is monotone up to that step, for every diffusivity family,
since 0 <= g1 <= alpha1). A fixed step has to satisfy the bound at the largest alpha1 of the run;
with the geometric schedule of eq. (15) alpha1 grows by 2 * image_size / 0.5 over [0, T], so a step
that follows the bound,

    dt(t) = cfl * h^2 / (4 max alpha1 on [t, t + dt]),

takes int 4 alpha1(t) / (cfl h^2) dt steps instead of T 4 max alpha1 / h^2: for the geometric
schedule a fraction (1 - 1/r) / ln r of them, r = alpha_max / alpha_min (r = 256 on the 64^2 preset:
18%, about 5.5 times fewer steps; 512^2: r = 2048, 13%, 7.6 times fewer).

Each step is the largest dt with dt <= cfl h^2 / (4 max alpha1 on [t, t + dt]) (bisection; the
schedules are monotone, so the max is at an end of the step), shortened to land exactly on every
requested save time and on t1; a step that would leave a sliver before such a stop is split into two
equal ones.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_positive, check_real


class StepSchedule:
    """Base class of variable time grids: :meth:`grid` returns the step boundaries."""

    kind = "step_schedule"

    def grid(self, spde, t0: float, t1: float, stops=()) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"steps": self.kind}

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()


class StabilityBoundSteps(StepSchedule):
    """Steps that follow the explicit stability bound of the drift (module doc).

    Parameters
    ----------
    cfl : fraction of the bound, in (0, 1] (above 1 the explicit step is not monotone for the
        isotropic limit of either stencil).
    dt_max : the largest step (default: none; alpha1 = 0 then takes one step per save interval).
    """

    kind = "stability_bound"

    def __init__(self, cfl: float = 0.9, dt_max: float | None = None):
        cfl = check_real("cfl", cfl)
        if not 0.0 < cfl <= 1.0:
            raise ValueError(f"cfl must lie in (0, 1] (a fraction of the explicit stability bound); got {cfl}")
        self.cfl = cfl
        self.dt_max = None if dt_max is None else check_positive("dt_max", dt_max)

    def bound(self, spde, t: float, dt: float) -> float:
        """cfl * h^2 / (4 max alpha1 on [t, t + dt]) (inf when alpha1 vanishes there)."""
        lo, hi = spde.alpha1.bounds(t, t + dt)
        return math.inf if hi <= 0 else self.cfl * spde.spacing**2 / (4.0 * hi)

    def largest_step(self, spde, t: float, limit: float) -> float:
        """The largest dt <= limit with dt <= bound(t, dt)."""
        if limit <= self.bound(spde, t, limit):
            return limit
        lo, hi = 0.0, min(limit, self.bound(spde, t, 0.0))
        if hi <= self.bound(spde, t, hi):
            return hi
        for _ in range(60):  # d - bound(t, d) increases with d: bisection
            mid = 0.5 * (lo + hi)
            if mid <= self.bound(spde, t, mid):
                lo = mid
            else:
                hi = mid
        return lo

    def grid(self, spde, t0: float, t1: float, stops=()) -> np.ndarray:
        """Step boundaries t0 < s_1 < ... < t1 containing every time of ``stops`` (in (t0, t1])."""
        t0, t1 = float(t0), float(t1)
        ends = sorted({float(s) for s in stops if t0 < s < t1} | {t1})
        out = [t0]
        t = t0
        for stop in ends:
            while stop - t > 1e-12 * max(1.0, abs(stop)):
                limit = stop - t if self.dt_max is None else min(self.dt_max, stop - t)
                d = self.largest_step(spde, t, limit)
                if d <= 0:
                    raise ValueError(f"StabilityBoundSteps: no positive step at t = {t:g} (alpha1 is not finite?)")
                if d < stop - t < 2 * d:  # no sliver before the stop: two equal steps
                    d = 0.5 * (stop - t)
                t = stop if d >= stop - t else t + d
                out.append(t)
            t = stop
            out[-1] = stop
        return np.asarray(out)

    def to_dict(self) -> dict:
        return {"steps": self.kind, "cfl": self.cfl, "dt_max": self.dt_max}

    def __repr__(self) -> str:
        extra = "" if self.dt_max is None else f", dt_max={self.dt_max:g}"
        return f"StabilityBoundSteps(cfl={self.cfl}{extra})"


__all__ = ["StepSchedule", "StabilityBoundSteps"]
