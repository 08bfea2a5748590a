"""Time schedules for the coefficients alpha_i(t) and lambda_i(t) (paper, Section 5.2, App. E.1).

Every schedule is callable on a float ``t`` (returns a float) or on an array of times (one per
sample in a batch; returns an array of the same shape). The paper asks for coefficients that are
continuous and nondecreasing on [0, T]; all schedules here are monotone, so their range over an
interval is attained at its ends (:meth:`Schedule.bounds`).

``float('inf')`` is a valid value for an anisotropy coefficient lambda (the isotropic limit);
the operators use ``1/lambda**2`` which is then exactly 0, never NaN.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ._checks import check_positive, check_real

__all__ = [
    "Schedule",
    "Constant",
    "Geometric",
    "Polynomial",
    "AnisotropyRamp",
    "as_schedule",
    "schedule_from_dict",
]


class Schedule:
    """Base class: a monotone function of time."""

    kind: str = "schedule"

    def _eval(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, t):
        arr = np.asarray(t, dtype=np.float64)
        if np.isnan(arr).any():
            raise ValueError(f"{self!r}: time t must not be NaN")
        out = self._eval(arr)
        if np.ndim(t) == 0 and not isinstance(t, np.ndarray):
            return float(out)
        return out

    def bounds(self, t0: float, t1: float) -> tuple[float, float]:
        """(min, max) of the schedule over [t0, t1] (monotone, so attained at the ends)."""
        a, b = float(self(t0)), float(self(t1))
        return (min(a, b), max(a, b))

    def to_dict(self) -> dict:
        return {"schedule": self.kind, **self._params()}

    def _params(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self._params().items()))))


class Constant(Schedule):
    """v(t) = v. ``v`` may be ``inf`` (useful for lambda)."""

    kind = "constant"

    def __init__(self, v: float):
        self.v = check_real("Constant value v", v, allow_inf=True)

    def _eval(self, t):
        return np.full(np.shape(t), self.v, dtype=np.float64)

    def _params(self):
        return {"v": self.v}


class Geometric(Schedule):
    """Geometric transition, eq. (15): v(t) = vmin * (vmax / vmin) ** (t / T), 0 < vmin < vmax."""

    kind = "geometric"

    def __init__(self, vmin: float, vmax: float, T: float):
        self.vmin = check_positive("Geometric vmin", vmin)
        self.vmax = check_positive("Geometric vmax", vmax)
        self.T = check_positive("Geometric T", T)

    def _eval(self, t):
        return self.vmin * (self.vmax / self.vmin) ** (t / self.T)

    def _params(self):
        return {"vmin": self.vmin, "vmax": self.vmax, "T": self.T}


class Polynomial(Schedule):
    """Polynomial transition of Fig. 5(b): v(t) = vmin + (vmax - vmin) * (t / T) ** r, r > 0.

    Defined for t >= 0 (negative times are rejected).
    """

    kind = "polynomial"

    def __init__(self, vmin: float, vmax: float, T: float, r: float):
        self.vmin = check_real("Polynomial vmin", vmin)
        self.vmax = check_real("Polynomial vmax", vmax)
        self.T = check_positive("Polynomial T", T)
        self.r = check_positive("Polynomial r", r)

    def _eval(self, t):
        if np.any(t < 0):
            raise ValueError(f"{self!r} is defined for t >= 0, got t = {np.min(t)}")
        return self.vmin + (self.vmax - self.vmin) * (t / self.T) ** self.r

    def _params(self):
        return {"vmin": self.vmin, "vmax": self.vmax, "T": self.T, "r": self.r}


class AnisotropyRamp(Schedule):
    """Anisotropy ramp, eq. (16): lambda(t) = lambda_min * (e^{kT} - 1) / (e^{k(T - t)} - 1).

    lambda(0) = lambda_min and lambda(t) -> inf as t -> T (the drift becomes isotropic). For
    t >= T the value is ``inf`` exactly (never NaN). Computed with ``expm1`` so that small k*T
    keeps full precision.
    """

    kind = "anisotropy_ramp"

    def __init__(self, lambda_min: float, k: float, T: float):
        self.lambda_min = check_positive("AnisotropyRamp lambda_min", lambda_min)
        self.k = check_positive("AnisotropyRamp k", k)
        self.T = check_positive("AnisotropyRamp T", T)

    def _eval(self, t):
        t = np.asarray(t, dtype=np.float64)
        den = np.expm1(self.k * (self.T - t))
        num = self.lambda_min * math.expm1(self.k * self.T)
        out = np.full(t.shape, np.inf)
        ok = den > 0
        np.divide(num, den, out=out, where=ok)
        return out

    def _params(self):
        return {"lambda_min": self.lambda_min, "k": self.k, "T": self.T}


_KINDS = {cls.kind: cls for cls in (Constant, Geometric, Polynomial, AnisotropyRamp)}


def as_schedule(name: str, value) -> Schedule:
    """Accept a number (-> :class:`Constant`) or a :class:`Schedule`."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, dict):
        return schedule_from_dict(value, name=name)
    return Constant(check_real(name, value, allow_inf=True))


def schedule_from_dict(d: dict, name: str = "schedule") -> Schedule:
    """Inverse of :meth:`Schedule.to_dict` (also used for TOML configs)."""
    if not isinstance(d, dict) or "schedule" not in d:
        raise ValueError(
            f"{name}: a schedule table needs a 'schedule' key, one of {sorted(_KINDS)}; got {d!r}"
        )
    kind = d["schedule"]
    if kind not in _KINDS:
        raise ValueError(f"{name}: unknown schedule {kind!r}; allowed: {sorted(_KINDS)}")
    cls = _KINDS[kind]
    params = {k: v for k, v in d.items() if k != "schedule"}
    allowed = list(inspect.signature(cls.__init__).parameters)[1:]
    unknown = set(params) - set(allowed)
    missing = set(allowed) - set(params)
    if unknown or missing:
        raise ValueError(
            f"{name}: schedule {kind!r} takes exactly the keys {allowed}; "
            f"unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    return cls(**params)
