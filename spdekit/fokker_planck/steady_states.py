"""Steady states f_theta, the critical mass m_c, and their discrete (grid) counterparts.

Continuum (model module doc, eq. SS): f_theta(x) = (exp(gamma(lambda|x|^2/(2 sigma) + theta)) - kappa)^(-1/gamma).
With u = lambda |x|^2 / (2 sigma) and delta = theta - log(kappa)/gamma >= 0 its mass is

    m(theta) = |S^{d-1}|/2 (2 sigma/lambda)^{d/2} kappa^{-1/gamma}
               * int_0^inf u^{d/2-1} (expm1(gamma(u+delta)))^{-1/gamma} du,

decreasing in theta. Near u = 0 the integrand of delta = 0 behaves like u^{d/2-1-1/gamma}, so the
critical mass m_c = m(log(kappa)/gamma) (the mass of the singular profile f_0) is finite iff
d gamma > 2 (Carrillo, Hopf & Rodrigo, Adv. Math. 360 (2020), for d = 1; Hopf, arXiv:2107.08531,
for d >= 1). Values for lambda = sigma = kappa = 1: m_c(2, 2) = pi^2 (closed form: the integral is
pi/2 * 2), m_c(1, 3) = 5.8721..., m_c(1, 4) = 3.9965... Scaling: m_c(d, gamma, lambda, sigma) =
(sigma/lambda)^{d/2} m_c(d, gamma, 1, 1) (x -> sqrt(sigma/lambda) x).

For mass M < m_c the unique steady state of mass M is f_theta with m(theta) = M; for M >= m_c the
free-energy minimiser is f_0 + (M - m_c) delta_0 (the condensate; Hopf 2021).

Discrete: on a grid the steady states of the structure-preserving scheme are exactly the nodal
values f_theta(x_i) (see :mod:`.schemes`), now for every theta with gamma (s_i + theta) > log kappa
at every node. With a node at the origin, the nodal mass sum_i f_theta(x_i) h^d grows without bound
as theta -> log(kappa)/gamma, so EVERY mass M has a discrete steady state: for M > m_c the origin cell
carries the condensate, mass M - sum_{i != 0} f_theta(x_i) h^d >= M - m_c,h where

    m_c,h = sum_{i != 0} f_0(x_i) h^d       (the discrete critical mass, box truncated).

m_c,h - m_c is the quadrature error of the singular integrand f_0 ~ |x|^{-2/gamma}, of order
h^{d - 2/gamma} (plus the tail outside the box); it is the tolerance with which a grid condensate
can carry "M - m_c".
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize

from .._checks import check_int, check_positive
from .grid import BoxGrid
from .model import NonlinearFokkerPlanck, _log1m_kappa_exp


def _sphere_area(d: int) -> float:
    return 2.0 * math.pi ** (d / 2) / math.gamma(d / 2)


def _radial_integral(d: int, gamma: float, delta: float) -> float:
    """int_0^inf u^{d/2-1} expm1(gamma (u + delta))^{-1/gamma} du (delta >= 0)."""
    a = d / 2.0 - 1.0
    opts = dict(limit=800, epsabs=0.0, epsrel=1e-13)
    if delta == 0.0:
        # u^{a - 1/gamma} * (expm1(gamma u)/u)^{-1/gamma}: the algebraic weight takes the singularity
        def smooth(u):
            u = max(u, 1e-300)
            return (math.expm1(gamma * u) / u) ** (-1.0 / gamma)

        head, _ = integrate.quad(smooth, 0.0, 1.0, weight="alg", wvar=(a - 1.0 / gamma, 0.0), **opts)
    else:
        # [0, min(delta, 1)] with the algebraic weight u^a, then geometric pieces [delta 4^k, delta 4^(k+1)]
        # on which the near-singular factor (gamma(u + delta))^(-1/gamma) is smooth.
        def smooth(u):
            return math.expm1(gamma * (u + delta)) ** (-1.0 / gamma)

        def g(u):
            return u ** a * smooth(u)

        b = min(delta, 1.0)
        head, _ = integrate.quad(smooth, 0.0, b, weight="alg", wvar=(a, 0.0), **opts)
        while b < 1.0:
            c = min(4.0 * b, 1.0)
            head += integrate.quad(g, b, c, **opts)[0]
            b = c

    def tail_f(u):
        e = gamma * (u + delta)
        return u ** a * math.exp(-e / gamma) * (-math.expm1(-e)) ** (-1.0 / gamma)

    tail, _ = integrate.quad(tail_f, 1.0, math.inf, **opts)
    return head + tail


def steady_state_mass(theta: float, d: int, model: NonlinearFokkerPlanck) -> float:
    """Mass of f_theta on R^d (inf at theta = log(kappa)/gamma when d gamma <= 2)."""
    d = check_int("d", d, minimum=1)
    theta = float(theta)
    if model.kappa == 0.0:
        return (2 * math.pi * model.sigma / model.lam) ** (d / 2) * math.exp(-theta)
    delta = theta - model.theta_min
    if delta < 0:
        raise ValueError(f"theta must be >= log(kappa)/gamma = {model.theta_min:g}, got {theta}")
    if delta == 0.0 and d * model.gamma <= 2:
        return math.inf
    pref = 0.5 * _sphere_area(d) * (2 * model.sigma / model.lam) ** (d / 2) * model.kappa ** (-1 / model.gamma)
    return pref * _radial_integral(d, model.gamma, delta)


def critical_mass(d: int, gamma: float, lam: float = 1.0, sigma: float = 1.0, kappa: float = 1.0) -> float:
    """m_c(d, gamma, lambda, sigma): mass of f_0, by quadrature; math.inf unless d gamma > 2 (and kappa > 0).

    >>> round(critical_mass(1, 3), 3)
    5.872
    """
    d = check_int("d", d, minimum=1)
    model = NonlinearFokkerPlanck(sigma=sigma, lam=lam, gamma=gamma, kappa=kappa)
    if model.kappa == 0.0 or d * model.gamma <= 2:
        return math.inf
    return steady_state_mass(model.theta_min, d, model)


def theta_for_mass(mass: float, d: int, model: NonlinearFokkerPlanck) -> tuple[float, float]:
    """(theta, condensate_mass): the continuum steady state of mass M is f_theta for M < m_c, and
    f_0 plus a condensate of mass M - m_c at the origin otherwise."""
    mass = check_positive("mass", mass)
    if model.kappa == 0.0:
        return math.log((2 * math.pi * model.sigma / model.lam) ** (d / 2) / mass), 0.0
    mc = critical_mass(d, model.gamma, model.lam, model.sigma, model.kappa)
    if mass >= mc:
        return model.theta_min, mass - mc

    def gap(t):
        return steady_state_mass(model.theta_min + math.exp(t), d, model) - mass

    lo, hi = -60.0, 1.0
    while gap(hi) > 0:
        hi += 5.0
    if gap(lo) < 0:  # mass extremely close to m_c
        return model.theta_min + math.exp(lo), 0.0
    t = optimize.brentq(gap, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)
    return model.theta_min + math.exp(t), 0.0


# ---------------------------------------------------------------------- discrete steady states
def nodal_profile(model: NonlinearFokkerPlanck, x_sq, theta: float) -> np.ndarray:
    """f_theta at nodes, allowing any theta with gamma (s_i + theta) > log kappa at every node."""
    a = model.gamma * (model.potential(x_sq) + theta)
    if model.kappa > 0 and (a <= math.log(model.kappa)).any():
        raise ValueError("theta too small: the profile is singular at some node")
    return np.exp(-(a + _log1m_kappa_exp(a, model.kappa)) / model.gamma)


def discrete_theta_min(grid: BoxGrid, model: NonlinearFokkerPlanck) -> float:
    """Infimum of the admissible theta on the grid: log(kappa)/gamma - min_i s(x_i)."""
    return model.theta_min - float(model.potential(grid.x_sq).min())


def discrete_steady_state(grid: BoxGrid, model: NonlinearFokkerPlanck, mass: float) -> tuple[np.ndarray, float]:
    """The exact steady state of the structure-preserving scheme with mass ``mass`` on ``grid``:
    (nodal f_theta, theta), theta found by bisection on log(theta - theta_inf) to rounding. Exists for
    every mass when kappa > 0 (supercritical masses put a condensate at the minimum-potential cell)."""
    mass = check_positive("mass", mass)
    x_sq = grid.x_sq
    if model.kappa == 0.0:
        g = np.exp(-model.potential(x_sq))
        theta = math.log(grid.integrate(g) / mass)
        return g * math.exp(-theta), theta
    theta_inf = discrete_theta_min(grid, model)

    def grid_mass(t):
        with np.errstate(over="ignore", divide="ignore"):
            return float(grid.integrate(nodal_profile(model, x_sq, theta_inf + math.exp(t))))

    lo, hi = math.log(1e-300), 0.0
    while grid_mass(hi) > mass:
        hi += 2.0
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if grid_mass(mid) > mass:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
    # take the end whose mass is closer (both within rounding of each other)
    t = lo if abs(grid_mass(lo) - mass) < abs(grid_mass(hi) - mass) else hi
    theta = theta_inf + math.exp(t)
    return nodal_profile(model, x_sq, theta), theta


def discrete_critical_mass(grid: BoxGrid, model: NonlinearFokkerPlanck) -> float:
    """m_c,h = sum over cells other than the origin cell of f_0(x_i) h^d (needs an origin cell)."""
    idx = grid.origin_index
    if idx is None:
        raise ValueError(f"the grid {grid} has no cell centred at the origin; use an odd number of cells per axis")
    if model.kappa == 0.0:
        return math.inf
    x_sq = grid.x_sq.copy()
    x_sq[idx] = np.inf  # excluded: f_0 is singular there (f = 0 at |x| = inf)
    return float(grid.integrate(nodal_profile(model, x_sq, model.theta_min)))
