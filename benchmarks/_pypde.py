"""A contender, not part of spdekit: the anisotropic SPDE written for py-pde (its own central-
difference operators with Neumann conditions, its own numba-compiled Euler-Maruyama). The
continuum right-hand side is the same, div(g1(|grad u|) grad u) + alpha2 dW; py-pde's boundary
discretisation differs from eq. (35)-(36), and py-pde has no tamed scheme and no batch axis."""

from __future__ import annotations

import numpy as np
import pde


class AnisotropicPeronaMalik(pde.pdes.base.SDEBase):
    """du = div(alpha1 / sqrt(1 + |grad u|^2 / lambda1^2) grad u) dt + alpha2 dW, constant coefficients."""

    default_bc = "auto_periodic_neumann"

    def __init__(self, alpha1, lambda1, alpha2, bc="auto_periodic_neumann", rng=None):
        super().__init__(noise=alpha2**2, rng=rng)  # py-pde's noise is the variance per unit cell volume
        self.alpha1, self.lambda1, self.bc = float(alpha1), float(lambda1), bc

    def evolution_rate(self, state, t=0):
        g = state.gradient(bc=self.bc)
        coef = self.alpha1 / np.sqrt(1 + (g.data**2).sum(axis=0) / self.lambda1**2)
        return (g * coef).divergence(bc=self.bc)

    def make_evolution_rate(self, state, backend):
        grad = state.grid.make_operator("gradient", bc=self.bc, backend=backend, dtype=state.dtype)
        div = state.grid.make_operator("divergence", bc=self.bc, backend=backend, dtype=state.dtype)
        a, il = self.alpha1, 1.0 / self.lambda1**2

        def pde_rhs(state_data, t=0):
            g = grad(state_data)
            c = a / np.sqrt(1 + (g[0] * g[0] + g[1] * g[1]) * il)
            return div(c * g)

        return pde_rhs


def make_stepper(shape, alpha1, lambda1, alpha2, dt, dtype=np.float64, seed=0):
    """(run, state): ``run(n)`` advances one (H, W) field by n Euler-Maruyama steps of fixed dt with
    py-pde's numba stepper, compiled once here (``solve()`` would recompile on every call)."""
    H, W = shape
    grid = pde.CartesianGrid([[0, W], [0, H]], [W, H])  # unit cells: spacing 1, as in pixel units
    eq = AnisotropicPeronaMalik(alpha1, lambda1, alpha2, rng=np.random.default_rng(seed))
    state = pde.ScalarField.random_uniform(grid, 0, 1, dtype=dtype, rng=np.random.default_rng(seed))
    solver = pde.EulerSolver(eq, backend="numba", adaptive=False)
    stepper = solver.make_stepper(state, dt=dt)
    clock = {"t": 0.0}

    def run(n_steps):
        t_end = clock["t"] + n_steps * dt
        clock["t"] = stepper(state, clock["t"], t_end - 0.5 * dt)  # stops after exactly n_steps steps
        return state

    return run, state
