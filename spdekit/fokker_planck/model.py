"""The generalised Kaniadakis-Quarati Fokker-Planck model (Herty-Tettamanti, reconstructed).

Only a summary of the second paper (Herty & Tettamanti, "A PDE-based framework for generative modeling beyond
classical score-based diffusion") was available, not its equations; the model is reconstructed from that
summary and the literature below (docs/fokker_planck.md states what is reconstructed):

    d_t f = div( sigma grad f + lambda x f (1 + kappa f^gamma) ),   x in R^d,  f >= 0,      (FP)

an Ornstein-Uhlenbeck confinement lambda |x|^2 / 2 with a superlinear (Bose-Einstein type)
drift. kappa = 1 is the model of the paper and of Carrillo, Hopf & Wolfram (Kinet. Relat.
Models 13, 2020, eq. 1.1, arXiv:1902.06266) and Carrillo, Hopf & Rodrigo (Adv. Math. 360,
2020) with lambda = sigma = 1; gamma = 1, d = 3 is the Kaniadakis-Quarati model for bosons
(Kaniadakis & Quarati, Phys. Rev. E 49, 1994). kappa = 0 is the linear Ornstein-Uhlenbeck
Fokker-Planck equation, kept as a configuration with exact solutions (a test case). Any kappa > 0
reduces to kappa = 1 by the scaling f -> kappa^(1/gamma) f, so kappa only changes units.

Gradient-flow form (the structure every scheme in this package preserves). With the entropy
variable

    h(f) = log f - (1/gamma) log(1 + kappa f^gamma),      h'(f) = 1 / (f (1 + kappa f^gamma)),

and the potential s(x) = lambda |x|^2 / (2 sigma), the flux reads

    J = sigma grad f + lambda x f (1 + kappa f^gamma)
      = sigma f (1 + kappa f^gamma) grad( h(f) + s(x) ).                                    (GF)

Steady states (J = 0): h(f) + s = -theta, i.e.

    f_theta(x) = ( exp(gamma (lambda |x|^2 / (2 sigma) + theta)) - kappa )^(-1/gamma),      (SS)

finite everywhere iff gamma theta > log kappa (theta > 0 for kappa = 1). theta = log(kappa)/gamma
gives f_0, singular at 0 like |x|^(-2/gamma), integrable iff d gamma > 2: its mass is the
critical mass m_c (see :mod:`.steady_states`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .._checks import check_nonnegative, check_positive


@dataclass(frozen=True)
class NonlinearFokkerPlanck:
    """Parameters of (FP): ``sigma`` (diffusion), ``lam`` (lambda, OU confinement), ``gamma``
    (exponent of the superlinear drift), ``kappa`` (its strength; 1 in the paper, 0 = linear OU).
    The space dimension belongs to the grid / particle system, not to the model."""

    sigma: float = 1.0
    lam: float = 1.0
    gamma: float = 1.0
    kappa: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))
        object.__setattr__(self, "lam", check_positive("lam (lambda)", self.lam))
        object.__setattr__(self, "gamma", check_positive("gamma", self.gamma))
        object.__setattr__(self, "kappa", check_nonnegative("kappa", self.kappa))

    # ------------------------------------------------------------------ pointwise formulas
    def potential(self, x_sq):
        """s(x) = lambda |x|^2 / (2 sigma) from |x|^2."""
        return self.lam * np.asarray(x_sq, dtype=np.float64) / (2.0 * self.sigma)

    def log_mobility(self, f):
        """log(1 + kappa f^gamma), stable for large f and exactly 0 at f = 0."""
        f = np.asarray(f, dtype=np.float64)
        if self.kappa == 0.0:
            return np.zeros_like(f)
        with np.errstate(divide="ignore"):
            return np.logaddexp(0.0, math.log(self.kappa) + self.gamma * np.log(f))

    def entropy_variable(self, f, x_sq):
        """w = h(f) + s(x) of (GF); constant (= -theta) exactly on the steady states (SS)."""
        f = np.asarray(f, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.log(f) - self.log_mobility(f) / self.gamma + self.potential(x_sq)

    @property
    def theta_min(self) -> float:
        """Smallest admissible theta: log(kappa)/gamma (0 for kappa = 1; -inf for kappa = 0)."""
        return -math.inf if self.kappa == 0.0 else math.log(self.kappa) / self.gamma

    def steady_state(self, x_sq, theta):
        """f_theta of (SS) at points with squared norm ``x_sq`` (inf where the profile is singular)."""
        theta = float(theta)
        if theta < self.theta_min:
            raise ValueError(f"theta must be >= log(kappa)/gamma = {self.theta_min:g}, got {theta}")
        a = self.gamma * (self.potential(x_sq) + theta)
        return np.exp(-(a + _log1m_kappa_exp(a, self.kappa)) / self.gamma)

    def particle_drift(self, x, density):
        """-lambda x (1 + kappa rho^gamma): the McKean-Vlasov drift at positions ``x`` (N, d)
        given the density ``rho`` (N,) seen by each particle."""
        rho = np.asarray(density, dtype=np.float64)
        return -self.lam * x * (1.0 + self.kappa * rho[:, None] ** self.gamma)

    def critical_mass(self, d: int) -> float:
        """m_c(d, gamma, lambda, sigma) = mass of f_0 (inf when d gamma <= 2 or kappa = 0)."""
        from .steady_states import critical_mass

        return critical_mass(d, self.gamma, self.lam, self.sigma, self.kappa)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {"type": "NonlinearFokkerPlanck", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> NonlinearFokkerPlanck:
        d = {k: v for k, v in dict(d).items() if k != "type"}
        return cls(**d)


def _log1m_kappa_exp(a, kappa):
    """log(1 - kappa exp(-a)) for a > log(kappa); exact near a = 0 when kappa = 1 (log(-expm1(-a)))."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if kappa == 1.0:
            return np.log(-np.expm1(-a))
        if kappa == 0.0:
            return np.zeros_like(a)
        return np.log1p(-kappa * np.exp(-a))
