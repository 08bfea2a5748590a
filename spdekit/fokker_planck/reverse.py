"""Reverse-time generation: the stabilised reverse equation as a PDE, a reverse SDE and a probability-flow ODE.

Forward: d_t f = div J_f, J_f = sigma grad f + lambda x f (1 + kappa f^gamma) (mass flows with velocity -J_f/f),
the law of dX = -lambda X (1 + kappa f^gamma) dt + sqrt(2 sigma) dW. The time reversal Y_s = X_{T-s} solves
(Anderson, Stoch. Proc. Appl. 12, 1982; Haussmann & Pardoux, Ann. Probab. 14, 1986)

    dY = b_rev(T - s, Y) ds + sqrt(2 sigma) dW,   b_rev = lambda x (1 + kappa f^gamma) + 2 sigma grad log f,   (RSDE)

and its law g(s) = f(T - s) solves the reverse equation. Written naively, d_s g = -div J_g is a backward heat
equation (ill-posed). Rewriting the diffusion with the score, sigma grad g = 2 sigma g grad log f - sigma grad g at
g = f, and FREEZING the coefficients f (score and f^gamma) from the stored forward solution gives the stabilised
reverse equation (reconstructed, docs/fokker_planck.md section 7; the device is that of score-based diffusion
models, Song et al., ICLR 2021, eq. 6, applied at the PDE level):

    d_s g = div( sigma grad g - g b_rev ),   b_rev = J_f/f + sigma grad log f,    f = f(T - s) given,         (REV)

a linear, forward-parabolic Fokker-Planck equation in g (well-posed, positive, mass-conserving) that has
g(s) = f(T - s) as a solution. The probability-flow ODE of (REV) (Song et al. 2021, eq. 13) moves samples with
the velocity b_rev - sigma grad log f = J_f / f (the forward velocity reversed).

Discretisation (:class:`ReversePDE`). On each face, split b_rev = J_f/f + sigma grad log f:
* sigma grad g - sigma g grad log f: Scharfetter-Gummel / Chang-Cooper flux with potential -log f, i.e.
  (sigma/h)[B(-l) g_{i+1} - B(l) g_i], l = log f_i - log f_{i+1}: exactly zero at g = f;
* -g J_f/f: upwind transport, velocity F_f / f_up with F_f the forward scheme's own face flux
  (:class:`StructurePreservingScheme`) and f_up, g_up taken on the upwind side: equal to -F_f at g = f.
So the semi-discrete reverse operator R(f) satisfies R(f) f = -A(f) f: the time reversal of the semi-discrete
forward scheme is an exact solution of the semi-discrete reverse scheme, and the reconstruction error is made
only by the time stepping (both directions) and by starting from the asymptotic state instead of f(T). R(f) has
the M-matrix structure of the forward operator: the implicit reverse step is positive and conservative for every
step size. With ``coefficients="step"`` the reverse step uses the forward step's own flux (the step it undoes),
and the reverse reproduces a stored forward trajectory to rounding (a structural test).

Regularisation (documented choices):
* tails: f is floored at ``floor`` x max f (default 1e-12) before logarithms and divisions; the score is not
  used where the forward density is below that level (this changes R only where g carries ~1e-12 of the mass);
* condensate: the singular parts lambda x kappa f^gamma and 2 sigma grad log f (each ~ |x|^-1 near a condensate,
  of opposite signs) are never evaluated separately: J_f / f comes from the structure-preserving flux, which
  vanishes on the singular equilibrium profile, and the score enters through the exact cell integral
  log(f_{i+1}/f_i) of the exponential fitting. The delta is thereby mollified at the grid scale (one cell); the
  particle samplers interpolate these face fields and use tamed steps (:class:`ReverseParticleSampler`).
* ``t_min``: coefficients at forward times below t_min are frozen at f(t_min) (score-based models likewise never
  use the score at t = 0); the default 0 uses the whole stored trajectory. Density filtering uses t_min > 0.

Learned scores: :class:`ReverseParticleSampler` accepts ``score(t, x) -> grad log f`` and ``density(t, x) -> f``
callables instead of the PDE fields (for a score network, e.g. from genmodel; that comparison is not part of this
package yet).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse.linalg as spla
from tqdm.auto import tqdm

from .._checks import check_choice, check_int, check_nonnegative, check_positive
from . import _kernels
from .io import DensityTrajectory
from .schemes import StructurePreservingScheme, _face_slices, identity_minus, operator_diagonals

COEFFICIENTS = ("state", "step")


class FrozenCoefficients:
    """The forward solution as coefficient fields at any forward time t (linear interpolation in time between
    saved states, frozen at t_min below it), floored at ``floor`` x max f."""

    def __init__(self, forward: DensityTrajectory, scheme: StructurePreservingScheme | None = None,
                 floor: float = 1e-12, t_min: float = 0.0):
        if not isinstance(forward, DensityTrajectory):
            raise TypeError(f"forward must be a DensityTrajectory, got {type(forward).__name__}")
        self.forward = forward
        self.scheme = scheme or StructurePreservingScheme(forward.model, forward.grid)
        if self.scheme.grid != forward.grid or self.scheme.model != forward.model:
            raise ValueError("the scheme must be built on the forward trajectory's model and grid")
        self.floor = check_nonnegative("floor", floor)
        self.t_min = check_nonnegative("t_min", t_min)
        self.T = float(forward.times[-1])
        if self.t_min > self.T:
            raise ValueError(f"t_min must lie in [0, T = {self.T:g}], got {t_min}")
        self._cache: dict = {}

    def density(self, t: float) -> np.ndarray:
        f = self.forward.at(max(float(t), self.t_min))
        return np.maximum(f, self.floor * f.max())

    def face_fields(self, t: float):
        """Per array axis: (F_f/h, f_lo, f_hi) with F_f the forward face flux of the (floored) state f(t)."""
        key = round(float(max(t, self.t_min)), 14)
        if key not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            f = self.density(t)
            fluxes = self.scheme.fluxes(f)
            out = []
            for k, F in enumerate(fluxes):
                lo, hi = _face_slices(f.ndim, k, f.shape[k])
                out.append((F, f[lo], f[hi]))
            self._cache[key] = (f, out)
        return self._cache[key]


def reverse_face_coefficients(sigma_h2, faces, fluxes=None):
    """(a, b) per axis of the reverse operator: F_rev/h = a g_{i+1} - b g_i (module doc). ``faces`` are
    (F_f/h, f_lo, f_hi) per axis; ``fluxes`` optionally replaces F_f/h (``coefficients="step"``)."""
    coefs = []
    for k, (F, f_lo, f_hi) in enumerate(faces):
        if fluxes is not None:
            F = fluxes[k]
        ell = np.log(f_lo) - np.log(f_hi)
        a = sigma_h2[k] * _kernels.bernoulli(-ell) + np.maximum(-F, 0.0) / f_hi
        b = sigma_h2[k] * _kernels.bernoulli(ell) + np.maximum(F, 0.0) / f_lo
        coefs.append((a, b))
    return coefs


class ReversePDE:
    """The stabilised reverse equation (REV) on the forward grid, stepped by implicit Euler (one sparse solve
    per step; positive and conservative for every step).

    Parameters
    ----------
    forward : the stored forward :class:`DensityTrajectory` (save densely: the coefficients are interpolated
        linearly in time between saved states).
    floor, t_min : regularisation (module doc).
    coefficients : "state" (default; coefficients from the forward state at the new reverse time, any step size)
        or "step" (the exact inverse of each stored forward step; needs every forward step saved and the same
        step size; forward method read from ``forward.run``).
    """

    def __init__(self, forward: DensityTrajectory, scheme: StructurePreservingScheme | None = None,
                 floor: float = 1e-12, t_min: float = 0.0, coefficients: str = "state"):
        self.coef = FrozenCoefficients(forward, scheme, floor, t_min)
        self.scheme = self.coef.scheme
        self.grid, self.model = forward.grid, forward.model
        self.coefficients = check_choice("coefficients", coefficients, COEFFICIENTS)
        if coefficients == "step" and forward.run.get("method") not in ("explicit", "semi-implicit", "implicit"):
            raise ValueError("coefficients='step' needs a forward trajectory computed by StructurePreservingScheme")

    @property
    def T(self) -> float:
        return self.coef.T

    def face_coefficients(self, t: float):
        """Reverse (a, b) per axis with the coefficients frozen at forward time t."""
        _, faces = self.coef.face_fields(t)
        return reverse_face_coefficients(self.scheme.sigma_h2, faces)

    def rhs(self, g, t: float):
        return self.scheme._div(np.asarray(g, dtype=np.float64), self.face_coefficients(t))

    def _step_coefficients(self, k_forward: int):
        """Coefficients that undo the stored forward step k -> k + 1 exactly (``coefficients="step"``)."""
        fwd = self.coef.forward
        f_old, f_new = fwd.densities[k_forward], fwd.densities[k_forward + 1]
        method = fwd.run["method"]
        at = f_new if method == "implicit" else f_old
        fluxes = self.scheme.fluxes(f_old if method == "explicit" else f_new, self.scheme.face_coefficients(at))
        f = np.maximum(f_old, self.coef.floor * f_old.max())
        faces = []
        for k, F in enumerate(fluxes):
            lo, hi = _face_slices(f.ndim, k, f.shape[k])
            faces.append((F, f[lo], f[hi]))
        return reverse_face_coefficients(self.scheme.sigma_h2, faces)

    def step(self, g, t_coef: float, ds: float, coefs=None):
        """One implicit step (I - ds R) g+ = g, R frozen at forward time ``t_coef``."""
        if coefs is None:
            coefs = self.face_coefficients(t_coef)
        lhs = identity_minus(ds, operator_diagonals(coefs, self.grid.shape), self.grid.shape)
        x = spla.spsolve(lhs, np.ravel(g), permc_spec=self.scheme._permc).reshape(self.grid.shape)
        new = g + ds * self.scheme._div(x, coefs)  # flux form: conserves mass to rounding (schemes module)
        return new if (new >= 0).all() else x

    def solve(self, g0, ds: float | None = None, t_stop: float = 0.0, save_every: int | None = None,
              progress: bool = False) -> DensityTrajectory:
        """Integrate (REV) from forward time T (reverse time s = 0) down to forward time ``t_stop``.

        ds : reverse step; None walks back through the saved forward times (the natural choice: the coefficients
            are then used exactly where they were stored). A reverse step from forward time t to t - ds freezes
            the coefficients at t, the state it starts from (the pairing that inverts an implicit forward step to
            second order in ds; freezing at t - ds or at the midpoint was measured less accurate).
        Returns a DensityTrajectory whose ``times`` are FORWARD times (decreasing from T to t_stop)."""
        g = self.grid.check_field(g0, "g0").copy()
        t_stop = check_nonnegative("t_stop", t_stop)
        fwd_times = self.coef.forward.times
        if not t_stop < self.T:
            raise ValueError(f"t_stop must be below T = {self.T:g}, got {t_stop}")
        if ds is None:
            grid_t = fwd_times[fwd_times >= t_stop - 1e-12][::-1]
            if grid_t[-1] > t_stop + 1e-12:
                grid_t = np.append(grid_t, t_stop)
        else:
            ds = check_positive("ds", ds)
            span = self.T - t_stop
            n = int(round(span / ds))
            if n < 1 or abs(n * ds - span) > 1e-9 * span:
                raise ValueError(f"ds must divide T - t_stop = {span:g} into whole steps, got ds={ds:g}")
            grid_t = self.T - ds * np.arange(n + 1)
            grid_t[-1] = t_stop
        n = grid_t.size - 1
        if self.coefficients == "step":
            if t_stop != fwd_times[0] or grid_t.size != fwd_times.size or not np.allclose(grid_t[::-1], fwd_times):
                raise ValueError("coefficients='step' needs every forward step saved, the reverse steps on the "
                                 "forward times (ds=None) and t_stop equal to the forward start time")
        save_every = n if save_every is None else check_int("save_every", save_every, minimum=1)
        times, states = [self.T], [g.copy()]
        for k in tqdm(range(1, n + 1), disable=not progress, desc="reverse PDE", unit="step", leave=False):
            t_from, t_to = grid_t[k - 1], grid_t[k]
            coefs = self._step_coefficients(n - k) if self.coefficients == "step" else None
            g = self.step(g, t_from, t_from - t_to, coefs)
            if k % save_every == 0 or k == n:
                times.append(t_to)
                states.append(g.copy())
        run = {"kind": "reverse", "scheme": "stabilised reverse equation (score form, frozen coefficients)",
               "method": "implicit Euler", "dt": "forward times" if ds is None else ds, "t0": self.T,
               "t1": t_stop, "floor": self.coef.floor, "t_min": self.coef.t_min,
               "coefficients": self.coefficients, "forward_run": self.coef.forward.run}
        return DensityTrajectory(times=np.asarray(times), densities=np.stack(states), grid=self.grid,
                                 model=self.model, run=run)


# ============================================================================ particle samplers
def _log_mean(a, b):
    """Logarithmic mean (a - b) / (log a - log b), = a when a = b (a, b > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(a) - np.log(b)
        out = (a - b) / d
    small = np.abs(d) < 1e-8
    out[small] = 0.5 * (a[small] + b[small])
    return out


class _FaceInterpolator:
    """Linear (1D) / bilinear staggered (2D) interpolation of face-centred fields to points (x[, y])."""

    def __init__(self, grid):
        self.grid = grid

    def __call__(self, fields, X):
        """``fields``: per array axis the values on ALL faces (interior + the two walls) along that axis.
        Returns the interpolated vector field at X (N, d) in (x, y) order."""
        g = self.grid
        out = np.empty_like(X)
        for k in range(g.dim):  # array axis k is coordinate d-1-k
            comp = g.dim - 1 - k
            pos = []
            for ax in range(g.dim):
                coord = X[:, g.dim - 1 - ax]
                if ax == k:  # along the face normal: face positions -L + i h, i = 0..n
                    u = (coord + g.half_width[ax]) / g.spacing[ax]
                    n_nodes = g.n[ax] + 1
                else:  # across: cell centres -L + (j + 1/2) h
                    u = (coord + g.half_width[ax]) / g.spacing[ax] - 0.5
                    n_nodes = g.n[ax]
                u = np.clip(u, 0.0, n_nodes - 1 - 1e-9)
                i = np.floor(u).astype(np.int64)
                pos.append((i, u - i))
            F = fields[k]
            if g.dim == 1:
                (i, w), = pos
                out[:, comp] = (1 - w) * F[i] + w * F[i + 1]
            else:
                (i0, w0), (i1, w1) = pos
                out[:, comp] = ((1 - w0) * (1 - w1) * F[i0, i1] + (1 - w0) * w1 * F[i0, i1 + 1]
                                + w0 * (1 - w1) * F[i0 + 1, i1] + w0 * w1 * F[i0 + 1, i1 + 1])
        return out


def _pad_faces(field, axis, edge):
    """Add the two wall faces along ``axis``: value 0 (``edge=False``, zero flux) or a copy of the nearest
    interior face (``edge=True``)."""
    pad = [(0, 0)] * field.ndim
    pad[axis] = (1, 1)
    return np.pad(field, pad, mode="edge" if edge else "constant")


class ReverseParticleSampler:
    """Samplers of (REV) with particles: ``mode="sde"`` (reverse SDE, tamed Euler-Maruyama through
    :func:`spdekit.simulate`) or ``mode="ode"`` (probability-flow ODE, Heun's method).

    Default fields (PDE score): on every face the forward velocity v = F_f / f_face (F_f the structure-preserving
    forward flux, f_face the logarithmic mean of the two cells) and the score (log f_{i+1} - log f_i)/h, both
    frozen from the stored forward solution and interpolated (staggered, linear) to the particles; drift
    v + sigma score (SDE) or v (ODE). Walls: v = 0, score copied from the nearest interior face.

    Learned score hook: ``score(t, x) -> grad log f (N, d)`` (forward time t, x in (x, y) order) replaces the PDE
    fields by the pointwise form b_rev = lambda x (1 + kappa rho^gamma) + 2 sigma score (SDE) or
    lambda x (1 + kappa rho^gamma) + sigma score (ODE), with rho = ``density(t, x)`` (default: the stored PDE
    density interpolated linearly). This form evaluates the two singular terms separately: use it for subcritical
    states or with a score that is itself regularised near a condensate.
    """

    def __init__(self, forward: DensityTrajectory, mode: str = "sde", scheme=None, floor: float = 1e-12,
                 t_min: float = 0.0, score=None, density=None):
        self.mode = check_choice("mode", mode, ("sde", "ode"))
        self.coef = FrozenCoefficients(forward, scheme, floor, t_min)
        self.grid, self.model = forward.grid, forward.model
        self.dim = self.grid.dim
        self.score_fn, self.density_fn = score, density
        self.interp = _FaceInterpolator(self.grid)
        self.noise = _StandardNormal()
        self._amp = math.sqrt(2 * self.model.sigma)
        self._field_cache: dict = {}

    @property
    def T(self) -> float:
        return self.coef.T

    # ------------------------------------------------------------------ fields
    def face_velocity_and_score(self, t: float):
        """Per array axis, on all faces (walls included): forward velocity F_f / f_face and score."""
        key = round(float(max(t, self.coef.t_min)), 14)
        if key not in self._field_cache:
            if len(self._field_cache) > 4:
                self._field_cache.clear()
            _, faces = self.coef.face_fields(t)
            vel, sco = [], []
            for k, (F, f_lo, f_hi) in enumerate(faces):
                vel.append(_pad_faces(F * self.grid.spacing[k] / _log_mean(f_hi, f_lo), k, edge=False))
                sco.append(_pad_faces((np.log(f_hi) - np.log(f_lo)) / self.grid.spacing[k], k, edge=True))
            self._field_cache[key] = (vel, sco)
        return self._field_cache[key]

    def pde_score(self, t: float, X) -> np.ndarray:
        """grad log f of the stored forward solution at points X (N, d): the PDE score, in the form a learned
        score takes (for comparisons)."""
        return self.interp(self.face_velocity_and_score(t)[1], np.atleast_2d(X))

    def pde_density(self, t: float, X) -> np.ndarray:
        """The stored forward density at X by (bi)linear interpolation between cell centres."""
        from scipy.interpolate import RegularGridInterpolator

        f = self.coef.density(t)
        pts = np.atleast_2d(X)[:, ::-1]  # (y, x) order of the array axes
        interp = RegularGridInterpolator(self.grid.centers, f, bounds_error=False, fill_value=None)
        return np.maximum(interp(pts), 0.0)

    def velocity(self, s: float, Y) -> np.ndarray:
        """The ODE velocity (mode "ode") or the SDE drift (mode "sde") at reverse time s."""
        t = self.T - s
        if self.score_fn is None:
            vel, sco = self.face_velocity_and_score(t)
            v = self.interp(vel, Y)
            return v + self.model.sigma * self.interp(sco, Y) if self.mode == "sde" else v
        rho = self.density_fn(t, Y) if self.density_fn is not None else self.pde_density(t, Y)
        m = self.model
        base = m.lam * Y * (1.0 + m.kappa * np.asarray(rho)[:, None] ** m.gamma)
        weight = 2.0 if self.mode == "sde" else 1.0
        return base + weight * m.sigma * np.asarray(self.score_fn(t, Y))

    # spdekit "problem" interface (reverse time s is the SDE time)
    def drift(self, s, Y):
        return self.velocity(s, Y)

    def noise_term(self, s, Y, dW):
        return self._amp * dW

    # ------------------------------------------------------------------ sampling
    def sample(self, Y0, ds: float | None = None, times=None, t_stop: float = 0.0, seed=None, solver=None,
               save_every: int | None = None, progress: bool = False):
        """Move the particles Y0 (N, d) from forward time T down to ``t_stop``.

        Steps: uniform ``ds``, or the forward times ``times`` (increasing, from t_stop to T; e.g. a graded
        :func:`time_grid`: the reverse dynamics is fastest near t = 0), or by default the saved forward times.
        SDE: tamed Euler-Maruyama (``spdekit.TamedEulerMaruyama().step`` by default; dW = sqrt(h) N(0, I) from
        ``seed``); ODE: Heun's method. Returns (forward times, states of shape (n_saved, N, d))."""
        from ..solvers import TamedEulerMaruyama

        Y = np.array(Y0, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] != self.dim:
            raise ValueError(f"Y0 must have shape (N, {self.dim}), got {Y.shape}")
        t_stop = check_nonnegative("t_stop", t_stop)
        if not t_stop < self.T:
            raise ValueError(f"t_stop must be below T = {self.T:g}, got {t_stop}")
        if ds is not None and times is not None:
            raise ValueError("give ds or times, not both")
        if ds is not None:
            from ..simulate import n_steps_for

            n = n_steps_for(t_stop, self.T, check_positive("ds", ds))
            grid_t = np.linspace(t_stop, self.T, n + 1)
        else:
            grid_t = np.asarray(self.coef.forward.times if times is None else times, dtype=np.float64)
            grid_t = grid_t[grid_t >= t_stop - 1e-12]
            if grid_t.ndim != 1 or grid_t.size < 2 or not (np.diff(grid_t) > 0).all():
                raise ValueError("times must be increasing with at least two entries above t_stop")
            if abs(grid_t[-1] - self.T) > 1e-9 * max(1.0, self.T):
                raise ValueError(f"times must end at the forward final time T = {self.T:g}")
        s_grid = self.T - grid_t[::-1]  # reverse times, increasing from 0
        n = s_grid.size - 1
        save_every = n if save_every is None else check_int("save_every", save_every, minimum=1)
        solver = solver or TamedEulerMaruyama()
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        saved_s, states = [0.0], [Y.copy()]
        desc = "reverse SDE" if self.mode == "sde" else "probability-flow ODE"
        for k in tqdm(range(n), disable=not progress, desc=desc, leave=False):
            s, h = s_grid[k], s_grid[k + 1] - s_grid[k]
            if self.mode == "sde":
                dW = math.sqrt(h) * self.noise.sample(Y.shape, rng)
                Y, finite = solver.step(self, s, Y, h, dW)
                if not finite:
                    raise FloatingPointError(f"reverse SDE diverged at reverse time {s + h:.6g}")
            else:
                v1 = self.velocity(s, Y)
                v2 = self.velocity(s + h, Y + h * v1)
                Y = Y + 0.5 * h * (v1 + v2)
            if (k + 1) % save_every == 0 or k + 1 == n:
                saved_s.append(s_grid[k + 1])
                states.append(Y.copy())
        return self.T - np.asarray(saved_s), np.stack(states)


class _StandardNormal:
    def sample(self, shape, rng, dtype=np.float64):
        return rng.standard_normal(shape, dtype=np.dtype(dtype).type)
