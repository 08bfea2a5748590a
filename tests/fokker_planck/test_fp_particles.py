"""The McKean-Vlasov particle system: kernel density, OU limit (kappa = 0) and the mean-field limit."""

import math

import numpy as np
import pytest

from spdekit import TamedEulerMaruyama
from spdekit.fokker_planck import BoxGrid, NonlinearFokkerPlanck, StructurePreservingScheme
from spdekit.fokker_planck.particles import (
    BinnedKDE,
    McKeanVlasovParticles,
    histogram_density,
    kernel_density_direct,
    sample_density,
    simulate_particles,
)


@pytest.mark.parametrize("dim", [1, 2])
def test_binned_kde_converges_to_the_exact_sum_at_second_order(dim):
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 1.0, (3000, dim))
    eps, M = 0.25, 3.0
    probe = rng.normal(0.0, 1.0, (200, dim))
    exact = kernel_density_direct(probe, X, M, eps)
    errs = []
    for ratio in (2, 4, 8):
        kde = BinnedKDE(dim, eps, 5.0, M, mesh_spacing=eps / ratio)
        # evaluate rho at the probes through the mesh (same interpolation as for the particles)
        rho_mesh = kde.mesh_density(X)
        i, w = kde._weights(probe)
        if dim == 1:
            got = (1 - w[:, 0]) * rho_mesh[i[:, 0]] + w[:, 0] * rho_mesh[i[:, 0] + 1]
        else:
            got = sum((w[:, 0] if a else 1 - w[:, 0]) * (w[:, 1] if b else 1 - w[:, 1])
                      * rho_mesh[i[:, 0] + a, i[:, 1] + b] for a in (0, 1) for b in (0, 1))
        errs.append(np.abs(got - exact).max() / exact.max())
    assert errs[-1] < 5e-3
    assert errs[0] / errs[1] > 3.0 and errs[1] / errs[2] > 3.0  # O(mesh_spacing^2)


def test_binned_kde_keeps_the_mass():
    X = np.random.default_rng(1).normal(0.0, 1.0, (5000, 2))
    kde = BinnedKDE(2, 0.2, 6.0, mass=7.0)
    assert kde.mesh_density(X).sum() * kde.delta**2 == pytest.approx(7.0, rel=1e-12)


def test_linear_particles_follow_the_ornstein_uhlenbeck_law():
    """kappa = 0: X_T ~ N(m0 e^{-lam T}, sigma/lam + (v0 - sigma/lam) e^{-2 lam T}) exactly in law. Mean and
    variance of N = 20000 particles within 4 standard errors (fixed seed; a 4-sigma check fails by chance
    with probability < 1e-4)."""
    model = NonlinearFokkerPlanck(sigma=0.5, lam=1.0, gamma=2.0, kappa=0.0)
    N, T, m0, v0 = 20000, 1.0, 1.5, 0.1
    rng = np.random.default_rng(2)
    X0 = (m0 + math.sqrt(v0) * rng.standard_normal(N))[:, None]
    prob = McKeanVlasovParticles(model, 1.0, 0.1, dim=1)
    XT = simulate_particles(prob, X0, T, 1e-3, seed=3, solver=TamedEulerMaruyama()).final[:, 0]
    mT = m0 * math.exp(-T)
    vT = 0.5 + (v0 - 0.5) * math.exp(-2 * T)
    assert abs(XT.mean() - mT) < 4 * math.sqrt(vT / N) + 2e-3  # + the O(dt) weak error of (tamed) EM
    assert abs(XT.var() - vT) < 4 * vT * math.sqrt(2 / N) + 2e-3


def test_histogram_and_sampling_keep_mass_and_law():
    grid = BoxGrid((21, 25), 3.0)
    f = grid.cell_averages(lambda y, x: np.exp(-((x - 0.5) ** 2 + y**2)))
    X = sample_density(f, grid, 200000, np.random.default_rng(4))
    h = histogram_density(X, grid, mass=grid.integrate(f))
    assert grid.integrate(h) == pytest.approx(grid.integrate(f), rel=1e-12)
    assert grid.integrate(np.abs(h - f)) / grid.integrate(f) < 0.05
    assert X[:, 0].mean() == pytest.approx(0.5, abs=0.01)  # column 0 is x


def test_particle_histogram_approaches_the_pde_as_n_grows():
    """Mean-field limit, subcritical gamma = 3, M = 4 (m_c = 5.872), T = 0.5: the L^1 distance of the particle
    histogram to the PDE solution falls with N like the sampling noise of N i.i.d. points from the PDE
    solution itself (fixed seeds)."""
    model = NonlinearFokkerPlanck(gamma=3.0)
    M, T, L = 4.0, 0.5, 6.0
    fine = BoxGrid(31 * 7, L)
    coarse = BoxGrid(31, L)
    f0 = fine.cell_averages(lambda x: M * np.exp(-((x - 0.8) ** 2) / 0.32) / math.sqrt(0.32 * math.pi))
    fT = StructurePreservingScheme(model, fine).solve(f0, T, 2e-3, method="implicit").final
    fT_coarse = fT.reshape(31, 7).mean(axis=1)
    l1, l1_iid = [], []
    for N in (1000, 30000):
        rng = np.random.default_rng(N)
        X0 = sample_density(f0, fine, N, rng)
        prob = McKeanVlasovParticles(model, M, 0.5 * N ** (-0.2), dim=1, half_width=L)
        XT = simulate_particles(prob, X0, T, 2e-3, seed=N + 1).final
        l1.append(coarse.integrate(np.abs(histogram_density(XT, coarse, M) - fT_coarse)))
        iid = sample_density(fT, fine, N, rng)
        l1_iid.append(coarse.integrate(np.abs(histogram_density(iid, coarse, M) - fT_coarse)))
    assert l1[1] < 0.35 * l1[0]
    assert l1[1] < 2.0 * l1_iid[1]
