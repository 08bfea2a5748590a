"""Time steppers for dU = b(t, U) dt + sigma(t, U) dW (paper, Appendix H.3, eq. 38-39).

A step is a pure function of (t, u, dt, dW): ``solver.step(problem, t, u, dt, dW)`` returns the
next state and a finiteness flag; ``dW`` is the Wiener increment over [t, t + dt] (covariance
dt * Q). Problems that own a fused kernel (:class:`spdekit.AnisotropicSPDE`) provide
``em_step``; any other problem needs ``drift(t, u)`` and ``noise_term(t, u, dW)`` and gets the
readable generic step below.

Tamed Euler-Maruyama (Hutzenthaler, Jentzen & Kloeden, Ann. Appl. Probab. 22(4), 2012):

    U+ = U + dt * b / (1 + dt * ||b||^gamma) + sigma dW.

The paper's eq. (39) prints b / (1 + dt ||b||^gamma) without the dt in the numerator; that is a
typo (as printed the scheme is not consistent with the SDE: for small b it adds b instead of
dt * b). gamma = 1 is HJK's scheme; ||.|| is taken per sample over all non-batch axes, either the
Euclidean norm ("l2", as in HJK) or the root mean square ("rms", resolution independent).

Stiff-stable solvers (stable at any dt, ``stiff_stable = True``): :class:`spdekit.LinearlyImplicitTheta`
and :class:`spdekit.AOSEulerMaruyama`, defined in :mod:`spdekit.implicit` and registered here; all subclass
:class:`spdekit.solver_base.Solver`.
"""

from __future__ import annotations

from ._checks import check_choice, check_positive
from .implicit import AOSEulerMaruyama, LinearlyImplicitTheta
from .solver_base import Solver, generic_em_step  # noqa: F401  (spdekit.solvers.Solver, generic_em_step)

NORMS = ("l2", "rms")


class EulerMaruyama(Solver):
    """Explicit Euler-Maruyama: U+ = U + dt b(t, U) + sigma(t, U) dW."""

    name = "euler_maruyama"


class TamedEulerMaruyama(Solver):
    """Tamed Euler-Maruyama, eq. (39) with the step size in the numerator (see module doc).

    Parameters
    ----------
    gamma : taming exponent (> 0); 1 is Hutzenthaler-Jentzen-Kloeden's scheme.
    norm : "l2" (Euclidean norm per sample) or "rms" (root mean square, resolution independent).
    """

    name = "tamed_euler_maruyama"

    def __init__(self, gamma: float = 1.0, norm: str = "l2"):
        self.gamma = check_positive("gamma", gamma)
        self.norm = check_choice("norm", norm, NORMS)

    @property
    def taming(self):
        return (self.gamma, self.norm)

    def to_dict(self) -> dict:
        return {"solver": self.name, "gamma": self.gamma, "norm": self.norm}

    def __repr__(self) -> str:
        return f"TamedEulerMaruyama(gamma={self.gamma}, norm={self.norm!r})"


SOLVERS = {"euler_maruyama": EulerMaruyama, "tamed_euler_maruyama": TamedEulerMaruyama,
           "linearly_implicit_theta": LinearlyImplicitTheta, "aos_euler_maruyama": AOSEulerMaruyama}
ALIASES = {"em": "euler_maruyama", "euler": "euler_maruyama", "tamed": "tamed_euler_maruyama",
           "tamed_em": "tamed_euler_maruyama", "theta": "linearly_implicit_theta",
           "implicit": "linearly_implicit_theta", "aos": "aos_euler_maruyama"}


def solver_from_dict(d) -> Solver:
    """Build a solver from ``{"solver": name, ...}`` or a bare name (aliases: em, tamed)."""
    if isinstance(d, Solver):
        return d
    if isinstance(d, str):
        d = {"solver": d}
    d = dict(d)
    name = ALIASES.get(d.get("solver"), d.get("solver"))
    check_choice("solver", name, tuple(SOLVERS) + tuple(ALIASES))
    d.pop("solver")
    return SOLVERS[name](**d)
