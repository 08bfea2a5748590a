"""Structure-preserving finite-volume scheme for d_t f = div(sigma grad f + lambda x f (1 + kappa f^gamma)).

Construction (Chang & Cooper, J. Comput. Phys. 6, 1970; Pareschi & Zanella, "Structure preserving schemes
for nonlinear Fokker-Planck equations and applications", J. Sci. Comput. 74, 2018 -- "PZ" below).
PZ write a flux B f + D d_x f on the face i+1/2 as

    F = C~ f~ + D (f_{i+1} - f_i)/h,   f~ = (1 - delta) f_{i+1} + delta f_i,
    delta = 1/l + 1/(1 - e^l),   l = h C~ / D,                                                  (PZ weights)

with C~ the cell integral of the drift over D taken on the local (quasi-)equilibrium; then
F = (D/h) [B(-l) f_{i+1} - B(l) f_i], B(z) = z/(e^z - 1), and F = 0 exactly when f_{i+1}/f_i = e^{-l}.
For the superlinear drift we use the gradient-flow form (model module doc, eq. GF)

    J = sigma grad f + lambda x f (1 + kappa f^gamma) = (1 + kappa f^gamma) * sigma f grad( log f + Phi[f] ),
    Phi[f] = s(x) - (1/gamma) log(1 + kappa f^gamma),   s = lambda |x|^2 / (2 sigma),

i.e. a mobility (1 + kappa f^gamma) times a linear-in-f Fokker-Planck flux with the quasi-equilibrium
potential Phi. The PZ weights are applied to the inner flux, with l = Phi_{i+1} - Phi_i the exact jump of
the quasi-equilibrium potential between the two nodes (no quadrature: it is a difference of nodal values),
and the mobility is averaged on the face:

    F_{i+1/2} = (sigma/h) M_{i+1/2} [ B(-l) f_{i+1} - B(l) f_i ],   M_{i+1/2} = 1 + kappa (f_i^gamma + f_{i+1}^gamma)/2.

Why the mobility is kept outside: putting the whole nonlinear drift into C~ with the quasi-equilibrium
closure d_x log f = -lambda x (1 + kappa f^gamma)/sigma gives the same steady states but is consistent with
d_t f = d_x(lambda x f + sigma d_x f / (1 + kappa f^gamma)), a different equation away from equilibrium.
With the mobility outside, Taylor expansion gives F = J + O(h^2) for smooth positive f.

Properties (proved in docs/fokker_planck.md, tested in tests/test_fp_scheme.py):
* conservation: fluxes telescope, border faces carry no flux (zero-flux box);
* positivity: F = a f_{i+1} - b f_i with a, b >= 0; explicit Euler keeps f >= 0 iff
  dt <= 1 / max_i sum_faces(outgoing rates) (:meth:`positivity_dt`); the semi-implicit step
  (I - dt A(f^n)) f^{n+1} = f^n has an M-matrix (columns sum to zero, off-diagonals >= 0), so it is
  positive for every dt;
* exact steady states: F = (sigma/h) M B(l) f_i (exp(w_{i+1} - w_i) - 1), w = h(f) + s the entropy variable,
  vanishes iff w is constant, i.e. iff f = f_theta at the nodes, for every theta (both time steppers keep
  f_theta to rounding);
* free-energy decay of the semi-discrete scheme: F has the sign of w_{i+1} - w_i.
2D: the same 1D flux on the x- and y-faces (s jumps only along the face normal).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from tqdm.auto import tqdm

from .._checks import check_choice, check_int, check_positive, check_real
from . import _kernels
from .grid import BoxGrid
from .io import DensityTrajectory
from .model import NonlinearFokkerPlanck

METHODS = ("semi-implicit", "explicit", "implicit")


class PositivityError(ValueError):
    """An explicit step was asked with dt above the positivity bound of the current state."""


def _resolve_backend(backend: str) -> str:
    check_choice("backend", backend, ("auto", "numpy", "numba"))
    if backend == "auto":
        return "numba" if _kernels.HAVE_NUMBA else "numpy"
    if backend == "numba" and not _kernels.HAVE_NUMBA:  # pragma: no cover
        raise ImportError("backend 'numba' needs numba installed")
    return backend


class StructurePreservingScheme:
    """The finite-volume scheme of the module doc on a :class:`BoxGrid`.

    Parameters
    ----------
    model : :class:`NonlinearFokkerPlanck`.
    grid : :class:`BoxGrid` (1D or 2D).
    backend : "auto" (numba when available), "numpy" (reference) or "numba".
    """

    def __init__(self, model: NonlinearFokkerPlanck, grid: BoxGrid, backend: str = "auto"):
        if not isinstance(model, NonlinearFokkerPlanck):
            raise TypeError(f"model must be a NonlinearFokkerPlanck, got {type(model).__name__}")
        if not isinstance(grid, BoxGrid):
            raise TypeError(f"grid must be a BoxGrid, got {type(grid).__name__}")
        self.model, self.grid = model, grid
        self.backend = _resolve_backend(backend)
        self._faces, self._div = _kernels.KERNELS[self.backend]
        # s_{i+1} - s_i along each array axis (the other coordinates cancel) and sigma / h^2
        self.s_diff = tuple(np.diff(model.potential(c * c)) for c in grid.centers)
        self.sigma_h2 = tuple(model.sigma / (h * h) for h in grid.spacing)
        # SuperLU column ordering: none needed for a tridiagonal matrix; minimum degree on A^T + A for the
        # structurally symmetric 5-point pattern (fastest of SuperLU's orderings on these grids)
        self._permc = "NATURAL" if grid.dim == 1 else "MMD_AT_PLUS_A"

    # ------------------------------------------------------------------ spatial operator
    def face_coefficients(self, f) -> list:
        """[(a, b)] per array axis: F/h = a f_{i+1} - b f_i on the interior faces."""
        m = self.model
        if self.backend == "numba":
            axes = [(k, self.s_diff[k], self.sigma_h2[k]) for k in range(self.grid.dim)]
            return _kernels.all_face_coefficients_numba(f, axes, m.gamma, m.kappa)
        return [self._faces(f, self.s_diff[k], k, self.sigma_h2[k], m.gamma, m.kappa) for k in range(self.grid.dim)]

    def rhs(self, f, coefs=None) -> np.ndarray:
        """The semi-discrete right-hand side d f / dt = A(f) f."""
        if coefs is None:
            coefs = self.face_coefficients(f)
        return self._div(f, coefs)

    def fluxes(self, f, coefs=None) -> list:
        """Face fluxes F_{i+1/2}/h = a f_{i+1} - b f_i per array axis (interior faces)."""
        if coefs is None:
            coefs = self.face_coefficients(f)
        out = []
        for k, (a, b) in enumerate(coefs):
            lo, hi = _face_slices(f.ndim, k, f.shape[k])
            out.append(a * f[hi] - b * f[lo])
        return out

    def operator(self, f, coefs=None) -> sp.csc_matrix:
        """Sparse A(f) with A(f) g = divergence of the flux with f's coefficients applied to g."""
        if coefs is None:
            coefs = self.face_coefficients(f)
        return assemble_operator(coefs, self.grid.shape)

    def positivity_dt(self, f, coefs=None) -> float:
        """Largest explicit Euler step that keeps f >= 0: 1 / max_i (total outgoing rate of cell i)."""
        if coefs is None:
            coefs = self.face_coefficients(f)
        out = outgoing_rates(coefs, self.grid.shape)
        m = float(out.max())
        return math.inf if m == 0.0 else 1.0 / m

    # ------------------------------------------------------------------ time steps
    def explicit_step(self, f, dt: float, check: bool = True) -> np.ndarray:
        """Forward Euler f + dt A(f) f; raises :class:`PositivityError` when dt exceeds the bound."""
        coefs = self.face_coefficients(f)
        if check:
            bound = self.positivity_dt(f, coefs)
            if dt > bound * (1 + 1e-12):
                raise PositivityError(
                    f"dt = {dt:.6g} exceeds the explicit positivity bound {bound:.6g} of this state; "
                    f"use dt <= {bound:.6g}, adaptive=True, or the semi-implicit method"
                )
        return f + dt * self._div(f, coefs)

    def semi_implicit_step(self, f, dt: float) -> np.ndarray:
        """(I - dt A(f^n)) f^{n+1} = f^n: one sparse LU solve (scipy.sparse.linalg.spsolve)."""
        return self._conservative_solve(f, dt, self.face_coefficients(f))

    def _conservative_solve(self, f, dt, coefs) -> np.ndarray:
        """Solve (I - dt A) x = f with A from ``coefs`` and return f + dt A x in flux form.

        In exact arithmetic both are the same positive vector. In floating point the columns of the stored
        matrix sum to 1 only up to eps (1 + dt rate) -- far from eps when dt rate is large, as inside a
        condensate -- so x itself conserves mass only to that level; the flux-form update f + dt div F(x)
        telescopes, conserving mass to rounding of the fluxes. Should it carry a rounding-size negative value,
        x (positive by the M-matrix property) is returned instead."""
        lhs = identity_minus(dt, operator_diagonals(coefs, self.grid.shape), self.grid.shape)
        x = spla.spsolve(lhs, f.ravel(), permc_spec=self._permc).reshape(f.shape)
        new = f + dt * self._div(x, coefs)
        return new if (new >= 0).all() else x

    def _jacobian_faces(self, f):
        m = self.model
        return [_kernels.face_jacobian_numpy(f, self.s_diff[k], k, self.sigma_h2[k], m.gamma, m.kappa)
                for k in range(self.grid.dim)]

    def jacobian(self, f) -> sp.csc_matrix:
        """Sparse Jacobian d(A(f) f)/df of the semi-discrete right-hand side (numpy reference)."""
        return assemble_jacobian(self._jacobian_faces(f), self.grid.shape)

    def implicit_step(self, f, dt: float, tol: float = 1e-9, max_iter: int = 25, _depth: int = 0) -> np.ndarray:
        """Fully implicit Euler f^{n+1} = f^n + dt A(f^{n+1}) f^{n+1}.

        Newton's method started from the semi-implicit step (iterates kept >= 0.1 x the previous one), stopped
        when the update or the residual falls below ``tol`` (L1, relative to ||f^n||_1) or stagnates at the
        rounding floor (about 1e-16 times the largest face rate times dt: large inside a condensate); then one
        conservative positive corrector (I - dt A(f*)) f^{n+1} = f^n with the converged f*, so the returned
        state is positive and conserves mass to rounding whatever the Newton tolerance. If Newton does not
        converge the step is split in two halves (at most 8 times)."""
        shape, n1 = f.shape, float(np.abs(f).sum())
        g = self.semi_implicit_step(f, dt)
        converged, prev = False, math.inf
        for _ in range(max_iter):
            res = g - f - dt * self.rhs(g)
            r = float(np.abs(res).sum()) / n1
            if r <= tol or (r < 1e-6 and r > 0.5 * prev):
                converged = True
                break
            prev = r
            lhs = identity_minus(dt, jacobian_diagonals(self._jacobian_faces(g), shape), shape)
            delta = spla.spsolve(lhs, -res.ravel(), permc_spec=self._permc).reshape(shape)
            if not np.isfinite(delta).all():
                break
            g = np.maximum(g + delta, 0.1 * g)
            if float(np.abs(delta).sum()) <= tol * n1:
                converged = True
                break
        if not converged:
            if _depth >= 8:
                raise FloatingPointError(f"Newton's method did not converge for dt = {dt:g} even after 8 halvings")
            half = self.implicit_step(f, 0.5 * dt, tol, max_iter, _depth + 1)
            return self.implicit_step(half, 0.5 * dt, tol, max_iter, _depth + 1)
        return self._conservative_solve(f, dt, self.face_coefficients(g))

    # ------------------------------------------------------------------ time loop
    def step(self, f, dt: float, method: str = "semi-implicit") -> np.ndarray:
        if method == "explicit":
            return self.explicit_step(f, dt)
        if method == "implicit":
            return self.implicit_step(f, dt)
        return self.semi_implicit_step(f, dt)

    def solve(self, f0, t1: float, dt: float, method: str = "semi-implicit", t0: float = 0.0,
              save_every: int | None = None, save_times=None, adaptive: bool = False, rtol: float = 1e-3,
              cfl: float = 0.9, dt_min: float = 1e-12, progress: bool = False,
              attrs: dict | None = None) -> DensityTrajectory:
        """Integrate from ``t0`` to ``t1``.

        method : "semi-implicit" (default; lagged coefficients, one sparse solve per step, positive for every dt),
            "explicit" (forward Euler under the positivity bound) or "implicit" (fully implicit Euler by Newton,
            see :meth:`implicit_step`; the accurate choice through condensation).
        dt : the fixed step, or the largest step when ``adaptive``.
        save_every : (fixed steps) save every this many steps; None saves only the first and last states.
        save_times : (adaptive) times at which to save (the steps are shortened to land on them).
        adaptive : explicit: dt_n = min(dt, cfl * positivity bound of f^n). semi-implicit: step doubling,
            the local error ||f_(dt) - f_(dt/2, dt/2)||_L1 / mass is kept below ``rtol`` (the two half steps
            are kept). The lagged coefficients of the semi-implicit step slow condensation down when dt is
            too large for the growth of the condensate (see docs/fokker_planck.md); the controller detects it.
        """
        check_choice("method", method, METHODS)
        f = self.grid.check_field(f0, "f0").copy()
        t0, t1 = check_real("t0", t0), check_real("t1", t1)
        dt = check_positive("dt", dt)
        if not t1 > t0:
            raise ValueError(f"t1 must be > t0, got t0={t0}, t1={t1}")
        cfl = check_positive("cfl", cfl)
        if cfl > 1:
            raise ValueError(f"cfl must lie in (0, 1], got {cfl}")
        rtol = check_positive("rtol", rtol)
        run = {"kind": "forward", "scheme": "structure-preserving FV (Chang-Cooper / Pareschi-Zanella weights)",
               "method": method, "dt": dt, "adaptive": bool(adaptive), "backend": self.backend, "t0": t0, "t1": t1}
        if adaptive:
            run.update(cfl=cfl) if method == "explicit" else run.update(rtol=rtol)
            times, states, n = self._solve_adaptive(f, t0, t1, dt, method, save_times, cfl, rtol, dt_min, progress)
        else:
            if save_times is not None:
                raise ValueError("save_times needs adaptive=True; with fixed steps use save_every")
            times, states, n = self._solve_fixed(f, t0, t1, dt, method, save_every, progress)
        run["n_steps"] = n
        return DensityTrajectory(times=np.asarray(times), densities=np.stack(states), grid=self.grid,
                                 model=self.model, run=run, attrs=dict(attrs or {}))

    def solve_on(self, f0, times, method: str = "implicit", progress: bool = False,
                 attrs: dict | None = None) -> DensityTrajectory:
        """Step through the increasing ``times`` (e.g. :func:`time_grid`, graded towards t0 where the solution
        changes fast) and save the state at every one of them: the stored forward solution that the reverse
        equation freezes its coefficients from."""
        check_choice("method", method, METHODS)
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or times.size < 2 or not (np.diff(times) > 0).all():
            raise ValueError("times must be a 1D increasing array with at least two entries")
        f = self.grid.check_field(f0, "f0").copy()
        states = [f.copy()]
        for k in tqdm(range(times.size - 1), disable=not progress, desc=f"FP {method}", leave=False):
            f = self.step(f, times[k + 1] - times[k], method)
            _check_finite(f, k + 1, times[k + 1])
            states.append(f.copy())
        run = {"kind": "forward", "scheme": "structure-preserving FV (Chang-Cooper / Pareschi-Zanella weights)",
               "method": method, "dt": "time grid", "backend": self.backend, "t0": float(times[0]),
               "t1": float(times[-1]), "n_steps": int(times.size - 1)}
        return DensityTrajectory(times=times, densities=np.stack(states), grid=self.grid, model=self.model,
                                 run=run, attrs=dict(attrs or {}))

    def _solve_fixed(self, f, t0, t1, dt, method, save_every, progress):
        from ..simulate import n_steps_for

        n_steps = n_steps_for(t0, t1, dt)
        save_every = n_steps if save_every is None else check_int("save_every", save_every, minimum=1)
        times, states = [t0], [f.copy()]
        for k in tqdm(range(1, n_steps + 1), disable=not progress, desc=f"FP {method}", unit="step", leave=False):
            f = self.step(f, dt, method)
            _check_finite(f, k, t0 + k * dt)
            if k % save_every == 0 or k == n_steps:
                times.append(t0 + k * dt)
                states.append(f.copy())
        return times, states, n_steps

    def _solve_adaptive(self, f, t0, t1, dt_max, method, save_times, cfl, rtol, dt_min, progress):
        targets = np.asarray([t1] if save_times is None else save_times, dtype=np.float64)
        if targets.ndim != 1 or (targets <= t0).any() or (targets > t1 * (1 + 1e-14)).any():
            raise ValueError(f"save_times must lie in (t0, t1] = ({t0}, {t1}]")
        targets = np.unique(np.append(targets, t1))
        times, states = [t0], [f.copy()]
        t, k, h_try, mass = t0, 0, dt_max, float(self.grid.integrate(f))
        eps = 1e-13 * max(1.0, abs(t1))
        with tqdm(total=t1 - t0, disable=not progress, desc=f"FP {method} (adaptive)", leave=False) as bar:
            for target in targets:
                while t < target - eps:
                    h = min(h_try, dt_max, target - t)
                    if method == "explicit":
                        h = min(h, cfl * self.positivity_dt(f))
                        new = self.explicit_step(f, h, check=False)
                    else:
                        big = self.step(f, h, method)
                        new = self.step(self.step(f, 0.5 * h, method), 0.5 * h, method)
                        err = float(self.grid.integrate(np.abs(new - big))) / mass
                        factor = 0.9 * math.sqrt(rtol / max(err, 1e-300))
                        if err > rtol and h > dt_min:
                            h_try = max(h * max(0.2, factor), dt_min)
                            continue
                        h_try = h * min(2.0, factor)
                    f, t, k = new, (target if target - (t + h) <= eps else t + h), k + 1
                    _check_finite(f, k, t)
                    bar.update(h)
                times.append(t)
                states.append(f.copy())
        return times, states, k


def time_grid(t1: float, n_steps: int, grading: float = 1.0, t0: float = 0.0) -> np.ndarray:
    """t_k = t0 + (t1 - t0) (k / n)^grading, k = 0..n: uniform for grading 1, refined near t0 for grading > 1
    (where a forward solution from rough data changes fastest)."""
    n = check_int("n_steps", n_steps, minimum=1)
    grading = check_positive("grading", grading)
    return t0 + (t1 - t0) * (np.arange(n + 1) / n) ** grading


def _check_finite(f, k, t):
    if not np.isfinite(f).all():
        raise FloatingPointError(f"the density became non-finite at step {k} (t = {t:.6g})")


# ---------------------------------------------------------------------- assembly helpers
def _face_slices(ndim, axis, n):
    lo = [slice(None)] * ndim
    hi = [slice(None)] * ndim
    lo[axis] = slice(0, n - 1)
    hi[axis] = slice(1, n)
    return tuple(lo), tuple(hi)


def outgoing_rates(coefs, shape) -> np.ndarray:
    """-diag(A): rate at which each cell loses mass (b on its upper faces, a on its lower faces)."""
    out = np.zeros(shape)
    for k, (a, b) in enumerate(coefs):
        lo, hi = _face_slices(len(shape), k, shape[k])
        out[lo] += b
        out[hi] += a
    return out


class StencilPattern:
    """The fixed sparsity pattern of the 3-point (1D) / 5-point (2D) operators, built once per grid shape.

    Matrices are given by their diagonals [main, +1, -1(, +nx, -nx)] (C order) and scattered into a CSC matrix
    through a precomputed permutation: no format conversion per step."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        N = int(np.prod(shape))
        nx = shape[-1]
        self.offsets = [0, 1, -1] if len(shape) == 1 else [0, 1, -1, nx, -nx]
        rows, cols = [], []
        for off in self.offsets:
            r = np.arange(max(0, -off), N - max(0, off))
            rows.append(r)
            cols.append(r + off)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        m = sp.coo_matrix((np.arange(rows.size, dtype=np.float64) + 1.0, (rows, cols)), shape=(N, N)).tocsc()
        m.sort_indices()
        self.perm = m.data.astype(np.int64) - 1
        self.indices, self.indptr, self.N = m.indices.copy(), m.indptr.copy(), N

    def matrix(self, diagonals) -> sp.csc_matrix:
        data = np.concatenate([np.ravel(d) for d in diagonals])[self.perm]
        return sp.csc_matrix((data, self.indices, self.indptr), shape=(self.N, self.N))

    def diagonals_from_faces(self, lower_upper, shape):
        """[main, +1, -1(, +nx, -nx)] of the matrix whose face (lo, hi) pair contributes
        M[lo, hi] = up, M[hi, lo] = down, M[lo, lo] += d_lo, M[hi, hi] += d_hi, from per-axis
        tuples (up, down, d_lo, d_hi) on the interior faces."""
        diag = np.zeros(shape)
        for k, (_, _, d_lo, d_hi) in enumerate(lower_upper):
            lo, hi = _face_slices(len(shape), k, shape[k])
            diag[lo] += d_lo
            diag[hi] += d_hi
        if len(shape) == 1:
            (up, down, _, _), = lower_upper
            return [diag.ravel(), up, down]
        ny, nx = shape
        (upy, downy, _, _), (upx, downx, _, _) = lower_upper
        zero = np.zeros((ny, 1))
        return [diag.ravel(), np.hstack([upx, zero]).ravel()[:-1], np.hstack([downx, zero]).ravel()[:-1],
                upy.ravel(), downy.ravel()]


_PATTERNS: dict = {}


def stencil_pattern(shape) -> StencilPattern:
    shape = tuple(shape)
    if shape not in _PATTERNS:
        _PATTERNS[shape] = StencilPattern(shape)
    return _PATTERNS[shape]


def operator_diagonals(coefs, shape):
    """Diagonals of A from the face coefficients: A[lo, hi] = a, A[hi, lo] = b, A[lo, lo] -= b, A[hi, hi] -= a."""
    return stencil_pattern(shape).diagonals_from_faces([(a, b, -b, -a) for a, b in coefs], shape)


def jacobian_diagonals(derivs, shape):
    """Diagonals of the flux-divergence Jacobian from the face derivatives (d_lo, d_hi)."""
    return stencil_pattern(shape).diagonals_from_faces([(dh, -dl, dl, -dh) for dl, dh in derivs], shape)


def assemble_jacobian(derivs, shape) -> sp.csc_matrix:
    """Jacobian of the flux divergence from the face derivatives (d_lo, d_hi) per axis."""
    return stencil_pattern(shape).matrix(jacobian_diagonals(derivs, shape))


def assemble_operator(coefs, shape) -> sp.csc_matrix:
    """Sparse matrix of the flux divergence from face coefficients (C order; 1D: 3 diagonals, 2D: 5)."""
    return stencil_pattern(shape).matrix(operator_diagonals(coefs, shape))


def identity_minus(dt, diagonals, shape) -> sp.csc_matrix:
    """I - dt M for M given by its diagonals (the system matrix of an implicit step)."""
    d = [-dt * np.asarray(v) for v in diagonals]
    d[0] = d[0] + 1.0
    return stencil_pattern(shape).matrix(d)
