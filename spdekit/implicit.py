"""Stiff-stable solvers for the discretised SPDE (paper eq. 6-11, 35-38): a linearly implicit
(lagged-diffusivity) stochastic theta-method and an additive-operator-splitting Euler-Maruyama.

Why: the explicit schemes of :mod:`spdekit.solvers` need dt <= h^2 / (4 max alpha1) (eq. 39 is
explicit in the drift), and the Section 5.2 schedules make alpha1 reach 2 * image_size. Both solvers
here are stable at any dt for both stencils; the numerics (frozen operator, Krylov and Thomas solves)
are in :mod:`spdekit.backends.implicit_numpy` (reference) and :mod:`spdekit.backends.implicit_numba`.

The drift frozen at the start of the step
-----------------------------------------
Write the drift of eq. (35)-(36) (or the conservative stencil) as b(t, u) = A(t, u) u, with A(t, v)
the linear operator whose diffusivities g1(t, .) are those of v (``implicit_numpy`` module doc). Since
g1 = alpha1(t) phi(|x|^2 / lambda1(t)^2) (eq. 9 and its families), A = alpha1(t) A~(lambda1(t), v).
Over a step [t_n, t_n + dt] the state dependence and lambda1 are frozen at the start (u_n, t_n), and
alpha1, a known function of time, enters through its integral over the step:

    A_n = abar1 A~(lambda1(t_n), u_n),          abar1 = (1/dt) int_{t_n}^{t_n+dt} alpha1(s) ds.

For the linear heat equation (lambda1 = inf) this is exact time-reparametrisation: with
tau = int alpha1, dU = alpha1(t) L U dt becomes dU/dtau = L U, and the schemes below are the
classical ones in tau with step int alpha1. With alpha1 geometric (eq. 15) the left-point value
misses a factor E(k dt) = (e^{k dt} - 1) / (k dt), k = ln(alpha_max/alpha_min) / T, of the step's
decay rate (1.15 at 50 times the explicit bound on the 64^2 preset).

The schedules over a step: time change and scaling
--------------------------------------------------
For the linear heat equation (lambda1 = lambda2 = inf) dU = alpha1(t) L U dt + alpha2(t) dW, the time
change tau = int alpha1 and the scaling V = phi(t) U, phi = sqrt(alpha1) / alpha2, give

    dV = (L + c / alpha1) V dtau + dB(tau),      c = phi' / phi = alpha1' / (2 alpha1) - alpha2' / alpha2,

with B a (Q-)Wiener process in tau: constant L, noise of unit intensity, and a scalar c / alpha1 as the
only time dependence left. A mode of L with eigenvalue mu, |mu| >> |c| / alpha1 (a stiff mode), has in
V the stationary variance 1 / (2 |mu|) whatever the schedules, i.e. in U the quasi-stationary
alpha2(t)^2 / (2 |mu| alpha1(t)) it follows in time. The schemes below are the theta-method (or AOS)
applied to V in tau, with the noise integral's exact variance (int alpha1 ds = dtau per step) and the
scalar C = int_t^{t+dt} c ds = ln(phi(t + dt) / phi(t)) (exact for any schedule) inside the implicit
operator, by the trapezoidal rule whatever theta (the slow modes then see (1 + C/2) / (1 - C/2) e^{-C}
= 1 + O(C^3) per step; implicit Euler on C would leave 1 + O(C^2), 16% on the image at 50 times the
bound with theta = 1). Written for U (divide V by phi(t_n)):

    (I - theta dt A_n - C/2) delta = dt b(U_n) + C U_n + xi_n,       U_{n+1} = e^{-C} (U_n + delta),
    xi_n = g2(alpha2(t_n) sqrt(abar1 / alpha1(t_n)), lambda2(t_n); U_n) * dW_n,

with A_n the drift frozen at (U_n, lambda1(t_n)) and alpha1 replaced by its step mean abar1 (so
dt A_n = dtau A~, b(U_n) = A_n U_n) and dW_n the increment of the Q-Wiener path. For the
multiplicative noise of eq. (9), g2 = alpha2(t) phi2(|grad u|^2 / lambda2^2), phi2 is frozen at U_n
(Ito) and the same scaling applies.

Why it matters: with theta = 1/2 a stiff mode's amplification is near -1, so it relaxes over many steps;
in U its target alpha2^2 / (2 |mu| alpha1) moves (156-fold over [0, 2] on the 64^2 Section 5.2 preset) and
its variance lags behind, while in V the target is fixed. On the linear heat version of the 64^2
preset (mode by mode, flat start) the final noise standard deviation comes out 0.0% / 0.2% low at
20 / 50 times the explicit bound, against 3% / 11% low for the theta-method in U with the same exact
integrals (``coefficients="integral"``: alpha1 -> abar1 and alpha2 -> its root mean square over the
step, which gives xi_n the noise integral's exact variance) and 6% / 17% low with left-point values
(``coefficients="left"``: alpha1(t_n), alpha2(t_n); a geometric alpha2 then loses the factor
1 / E(2 k dt), E(x) = (e^x - 1) / x, of the step's variance: 24% of the last step's at 50 times).
These figures, and the nonlinear preset's, are in docs/validation.md. The transform needs alpha1, alpha2 > 0
at both ends of the step and C <= 1 (C > 0 only where alpha1 grows faster than alpha2^2); a sample
where that fails takes the "integral" step. The pathwise difference between the
scheme's noise term and the Ito integral is O(dt^{3/2}) per step, so strong orders are kept.

The schemes
-----------
:class:`LinearlyImplicitTheta` (stochastic theta-method, implicit in the frozen drift; Kloeden & Platen
1992, Sec. 12.2, with lagged diffusivity): the step above, theta in [1/2, 1]; with C = 0 it reads
U_{n+1} = U_n + dt [(1 - theta) A_n U_n + theta A_n U_{n+1}] + xi_n. (1 - C/2) I - theta dt A_n is an
M-matrix for every dt > 0 (``implicit_numpy``; C <= 1), and for a frozen operator with real
non-positive eigenvalues mu the amplification R(z) = (1 + (1 - theta) z) / (1 - theta z), z = mu dt,
satisfies |R| <= 1: A-stable. Default theta = 1/2 (Crank-Nicolson), because it keeps the *law* at
large steps: on a linear mode dz = mu z dt + sigma dB (mu < 0), the theta-scheme's stationary variance is

    sigma^2 / (|mu| (2 + (2 theta - 1) |mu| dt)),

the exact sigma^2 / (2 |mu|) for theta = 1/2 at every dt, and for theta = 1 (implicit Euler, L-stable)
too small by the factor 2 / (2 + |mu| dt) on every mode with |mu| dt >> 1: at 20-50 times the explicit
bound that is most of the grid's modes, and the final spatial standard deviation of the 64^2 preset from
a flat start comes out about 30% / 40% low at 20 / 50 times the bound (docs/validation.md). The price of
theta = 1/2 is R -> -1 for |mu| dt -> inf: stiff modes of the initial state are damped slowly and
alternate in sign. Strong order: 1 for additive noise (the drift is linear in U_{n+1}; the lag changes
the drift by O(dt) per step), 1/2 for multiplicative noise (no Milstein term).

:class:`AOSEulerMaruyama` (additive operator splitting, Weickert, ter Haar Romeny & Viergever, IEEE
TIP 7(3), 1998, with the noise in the right-hand side), on V with C split evenly between the axes
(trapezoidal, as above):

    U_{n+1} = e^{-C} / (1 - C/2) (1/2) sum_{l = x, y} (I - 2 dt / (1 - C/2) A_{n,l})^{-1} ((1 + C/2) U_n + xi_n),

A_{n,l} the +-l terms of A_n: one tridiagonal Thomas solve per line and axis, O(N) work without
iterations. It is the semi-implicit (theta = 1) scheme up to the splitting error O(dt^2 A_x A_y), first
order in dt, unconditionally stable (each (I - tau A_l)^{-1} is a non-negative matrix with row sums 1,
and so is their mean: with C = 0 a discrete maximum principle for the drift part) and, like implicit Euler, its
law at large steps is not the SPDE's (its stiff modes' noise is damped along one axis only: too much
variance, docs/validation.md).

Both stencils are supported by both solvers: the conservative stencil's frozen operator is symmetric
(conjugate gradients), the paper stencil's is not (BiCGSTAB); the AOS split holds for both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import schedules as S
from ._checks import check_choice, check_int, check_real
from .backends import get_backend
from .backends.base import Coefficients, as_coefficients
from .grid import as_batch
from .solver_base import Solver

COEFFICIENTS = ("transformed", "integral", "left")
PRECONDITIONERS = ("jacobi", "dct")
#: Gauss-Legendre nodes/weights on [0, 1] for schedules without a closed-form integral
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_GL_X, _GL_W = 0.5 * (_GL_X + 1.0), 0.5 * _GL_W


# ----------------------------------------------------------------------------- schedule integrals


def _expm1_ratio(x):
    """E(x) = (e^x - 1) / x, E(0) = 1."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-8
    return np.where(small, 1.0 + 0.5 * x, np.expm1(x) / np.where(small, 1.0, x))


def step_mean(schedule, t, dt, power: int = 1):
    """(1/dt) int_t^{t+dt} v(s)^power ds for a schedule v (power 1 or 2), per entry of t.

    Closed forms: Constant; Geometric v(t0) E(power k dt), k = ln(vmax/vmin)/T (eq. 15);
    Polynomial (Fig. 5b) term by term. Other schedules: 8-point Gauss-Legendre quadrature."""
    t = np.asarray(t, dtype=np.float64)
    dt = float(dt)
    if isinstance(schedule, S.Constant):
        return np.full(t.shape, schedule.v**power)
    if isinstance(schedule, S.Geometric):
        k = math.log(schedule.vmax / schedule.vmin) / schedule.T
        return np.asarray(schedule(t), dtype=np.float64) ** power * _expm1_ratio(power * k * dt)
    if isinstance(schedule, S.Polynomial):
        lo, d, T, r = schedule.vmin, schedule.vmax - schedule.vmin, schedule.T, schedule.r
        if np.any(t < 0):
            raise ValueError(f"{schedule!r} is defined for t >= 0, got t = {np.min(t)}")

        def prim(q):  # (1/dt) int_t^{t+dt} (s/T)^q ds
            return T / (q + 1) * (((t + dt) / T) ** (q + 1) - (t / T) ** (q + 1)) / dt

        if power == 1:
            return lo + d * prim(r)
        return lo * lo + 2 * lo * d * prim(r) + d * d * prim(2 * r)
    s = t[..., None] + dt * _GL_X
    return (np.asarray(schedule(s), dtype=np.float64) ** power * _GL_W).sum(axis=-1)


class StepPlan(NamedTuple):
    """What a step of [t, t + dt] uses (module doc), per sample: the coefficient record (alpha1 -> abar1,
    alpha2 -> the noise amplitude before the solve), the scalar shift C inside the implicit operator and
    the factor e^{-C} applied after it."""

    coef: Coefficients
    shift: np.ndarray
    factor: np.ndarray


def step_plan(spde, t, dt, batch: int, coefficients: str = "transformed") -> StepPlan:
    """The coefficients of a step of [t, t + dt] (module doc). ``coefficients``: "transformed" (time
    change and scaling V = sqrt(alpha1) / alpha2 U; samples where it does not apply, or C > 1, take
    "integral"), "integral" (abar1 and the root mean square of alpha2 over the step) or "left"
    (alpha1(t), alpha2(t)). lambda1, lambda2 at t."""
    c = as_coefficients(spde.coefficients(t, batch))
    one = np.ones(batch)
    if coefficients == "left":
        return StepPlan(c, 0.0 * one, one)
    tb = np.broadcast_to(np.asarray(t, dtype=np.float64), (batch,))
    abar1 = step_mean(spde.alpha1, tb, dt)
    a2 = np.sqrt(step_mean(spde.alpha2, tb, dt, 2))
    shift, factor = 0.0 * one, one.copy()
    if coefficients == "transformed":
        a1_0, a1_1 = c.alpha1, np.asarray(spde.alpha1(tb + dt), dtype=np.float64)
        a2_0, a2_1 = c.alpha2, np.asarray(spde.alpha2(tb + dt), dtype=np.float64)
        ends = np.stack([a1_0, a1_1, a2_0, a2_1])
        ok = np.isfinite(ends).all(axis=0) & (ends > 0).all(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            C = 0.5 * np.log(a1_1 / a1_0) - np.log(a2_1 / a2_0)
            amp = a2_0 * np.sqrt(abar1 / a1_0)
        ok &= np.isfinite(C) & (C <= 1.0)
        shift = np.where(ok, C, 0.0)
        factor = np.exp(-shift)
        a2 = np.where(ok, amp, a2)
    rec = Coefficients(abar1, c.inv_lam1, a2, c.inv_lam2, c.diffusivity1, c.diffusivity2)
    return StepPlan(rec, shift, factor)


# ----------------------------------------------------------------------------- solvers


def _implicit_backend(backend, u, solver):
    be = get_backend(backend, u) if isinstance(backend, str) else backend
    if be.name == "numpy":
        from .backends import implicit_numpy as mod
    elif be.name == "numba":
        from .backends import implicit_numba as mod
    else:
        raise ValueError(f"{type(solver).__name__} has numpy and numba kernels only; got backend {be.name!r} "
                         f"(use backend='numba' or 'numpy' with host arrays)")
    return mod


def _check_problem(problem, solver):
    from .spde import AnisotropicSPDE

    if not isinstance(problem, AnisotropicSPDE):
        raise TypeError(f"{type(solver).__name__} steps an AnisotropicSPDE (it freezes the drift's diffusivities "
                        f"into a linear operator); got {type(problem).__name__}")


class _StiffSolver(Solver):
    """Shared parts: the problem check, the coefficients, the (H, W) / (B, C, H, W) handling."""

    stiff_stable = True

    def _prepare(self, problem, t, u, dt, dW, backend, checked):
        _check_problem(problem, self)
        if checked:
            ub, restore, dWb = u, (lambda a: a), dW
        else:
            ub, restore = as_batch(u)
            dWb = as_batch(dW, "dW")[0]
        mod = _implicit_backend(backend, ub, self)
        plan = step_plan(problem, t, dt, ub.shape[0], self.coefficients)
        return mod, ub, restore, dWb, plan


class LinearlyImplicitTheta(_StiffSolver):
    """Linearly implicit (lagged-diffusivity) stochastic theta-method (module doc).

    Parameters
    ----------
    theta : implicitness in [1/2, 1]; 1/2 (default, Crank-Nicolson) keeps the stationary variance of
        every linear mode at any dt, 1 (implicit Euler) is L-stable but damps the stiff modes' noise.
    rtol : relative tolerance of the linear solve, in (0, 1): ||residual|| <= rtol ||right-hand side||
        per plane, the right-hand side being the step's increment dt b + xi (default 1e-6).
    maxiter : most Krylov iterations per step (default 500); more raises LinearSolveError.
    coefficients : how the schedules enter a step (module doc): "transformed" (default: the scheme in
        the time tau = int alpha1 and the variable sqrt(alpha1) / alpha2 U), "integral" (alpha1's mean
        and alpha2's root mean square over the step) or "left" (their values at the step's start).
    preconditioner : "jacobi" (default: the diagonal of the system) or "dct" (the constant-coefficient
        system I - s wbar L, wbar the plane's mean frozen weight, inverted exactly by a 2-d DCT-II:
        :class:`spdekit.backends.implicit_numpy.DCTPreconditioner`). The DCT needs fewer iterations but
        costs more per step on the paper preset, whose diffusivity varies too much across the image for a
        constant-coefficient preconditioner; it pays where the diffusivity is nearly constant (the linear
        heat equation: one iteration). Measured: docs/validation.md, "Preconditioners of the theta solve".
    """

    name = "linearly_implicit_theta"
    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0

    def __init__(self, theta: float = 0.5, rtol: float = 1e-6, maxiter: int = 500, coefficients: str = "transformed",
                 preconditioner: str = "jacobi"):
        theta = check_real("theta", theta)
        if not 0.5 <= theta <= 1.0:
            raise ValueError(f"theta must lie in [0.5, 1] (A-stable theta-methods); got {theta}")
        rtol = check_real("rtol", rtol)
        if not 0.0 < rtol < 1.0:
            raise ValueError(f"rtol must lie in (0, 1); got {rtol}")
        self.theta = theta
        self.rtol = rtol
        self.maxiter = check_int("maxiter", maxiter, minimum=1)
        self.coefficients = check_choice("coefficients", coefficients, COEFFICIENTS)
        self.preconditioner = check_choice("preconditioner", preconditioner, PRECONDITIONERS)

    def step_info(self, problem, t, u, dt, dW, backend="auto", checked=False, **_):
        """(u_next, all_finite, info): ``info`` holds the Krylov iterations and relative residuals per
        (sample, channel). Raises LinearSolveError when the solve misses its tolerance."""
        mod, ub, restore, dWb, plan = self._prepare(problem, t, u, dt, dW, backend, checked)
        new, finite, info = mod.theta_step(ub, dWb, float(dt), plan.coef, self.theta, problem.stencil,
                                           problem.spacing, self.rtol, self.maxiter, plan.shift, plan.factor,
                                           self.preconditioner)
        if not info["converged"] and finite:
            worst = float(np.max(info["residual"]))
            raise mod.LinearSolveError(
                f"LinearlyImplicitTheta: the linear solve at t = {float(np.max(t)):.6g} stopped at relative residual "
                f"{worst:.3g} > rtol = {self.rtol:g} after maxiter = {self.maxiter} iterations; raise maxiter or rtol, "
                f"or reduce dt"
            )
        return restore(new), finite, info

    def step(self, problem, t, u, dt, dW, backend="auto", checked=False, **options):
        new, finite, _ = self.step_info(problem, t, u, dt, dW, backend, checked)
        return new, finite

    def to_dict(self) -> dict:
        d = {"solver": self.name, "theta": self.theta, "rtol": self.rtol, "maxiter": self.maxiter,
             "coefficients": self.coefficients}
        if self.preconditioner != "jacobi":  # descriptions written before the option stay equal
            d["preconditioner"] = self.preconditioner
        return d

    def __repr__(self) -> str:
        extra = "" if self.coefficients == "transformed" else f", coefficients={self.coefficients!r}"
        extra += "" if self.preconditioner == "jacobi" else f", preconditioner={self.preconditioner!r}"
        return f"LinearlyImplicitTheta(theta={self.theta}, rtol={self.rtol:g}, maxiter={self.maxiter}{extra})"


class AOSEulerMaruyama(_StiffSolver):
    """Additive operator splitting Euler-Maruyama (Weickert, ter Haar Romeny & Viergever 1998; module
    doc): U+ = (1/2) sum over the axes of (I - 2 dt A_axis)^{-1} (U + xi) (with C = 0), one Thomas solve
    per line and axis.

    Parameters
    ----------
    coefficients : "transformed" (default), "integral" or "left", as for :class:`LinearlyImplicitTheta`.
    """

    name = "aos_euler_maruyama"
    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0

    def __init__(self, coefficients: str = "transformed"):
        self.coefficients = check_choice("coefficients", coefficients, COEFFICIENTS)

    def step(self, problem, t, u, dt, dW, backend="auto", checked=False, **options):
        mod, ub, restore, dWb, plan = self._prepare(problem, t, u, dt, dW, backend, checked)
        new, finite = mod.aos_step(ub, dWb, float(dt), plan.coef, problem.stencil, problem.spacing, plan.shift,
                                   plan.factor)
        return restore(new), finite

    def to_dict(self) -> dict:
        return {"solver": self.name, "coefficients": self.coefficients}

    def __repr__(self) -> str:
        return "AOSEulerMaruyama()" if self.coefficients == "transformed" else \
            f"AOSEulerMaruyama(coefficients={self.coefficients!r})"


__all__ = ["AOSEulerMaruyama", "LinearlyImplicitTheta", "StepPlan", "step_mean", "step_plan"]
