"""The structure-preserving finite-volume scheme: positivity, conservation, exact steady states,
consistency, relaxation (subcritical) and condensation (supercritical)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spdekit.fokker_planck import (
    BoxGrid,
    NonlinearFokkerPlanck,
    PositivityError,
    StructurePreservingScheme,
    condensate_mass,
    condensation_diagnostics,
    critical_mass,
    discrete_critical_mass,
    discrete_steady_state,
    l2_norm,
    origin_cell_mass,
    theta_for_mass,
)


def bump(grid, mass, center, width=0.6):
    """Cell averages of a Gaussian bump of the given mass."""
    def g(*coords):
        r2 = sum((c - x0) ** 2 for c, x0 in zip(coords, center[::-1]))
        return np.exp(-r2 / (2 * width**2))

    f = grid.cell_averages(g)
    return f * mass / grid.integrate(f)


# ------------------------------------------------------------------ positivity and conservation
@pytest.mark.parametrize("method", ["explicit", "semi-implicit"])
@pytest.mark.parametrize("dim", [1, 2])
def test_positivity_and_mass_conservation_over_1e4_steps(method, dim):
    model = NonlinearFokkerPlanck(gamma=3.0 if dim == 1 else 2.0)
    grid = BoxGrid(61, 5.0) if dim == 1 else BoxGrid((13, 11), 4.0)
    mass = 5.0 if dim == 1 else 8.0  # close to (below) m_c: strong nonlinearity
    f = bump(grid, mass, (1.0,) * dim, width=0.5)
    f[..., :3] = 0.0  # vacuum somewhere: positivity must hold from zero values too
    f *= mass / grid.integrate(f)
    scheme = StructurePreservingScheme(model, grid)
    m0 = grid.integrate(f)
    worst = 0.0
    for _ in range(10_000):
        # explicit: at 0.95 x the positivity bound of the current state (the bound moves with f)
        dt = 0.95 * scheme.positivity_dt(f) if method == "explicit" else 0.05
        f = scheme.step(f, dt, method)
        assert f.min() >= 0.0
        worst = max(worst, abs(grid.integrate(f) - m0) / m0)
    assert worst <= 1e-12


def test_explicit_step_refuses_dt_above_the_positivity_bound():
    grid = BoxGrid(41, 4.0)
    scheme = StructurePreservingScheme(NonlinearFokkerPlanck(gamma=3.0), grid)
    f = bump(grid, 3.0, (0.5,))
    bound = scheme.positivity_dt(f)
    scheme.explicit_step(f, bound)
    with pytest.raises(PositivityError, match="positivity bound"):
        scheme.explicit_step(f, 1.5 * bound)
    # the bound is sharp for the frozen coefficients: beyond it I + dt A(f) has a negative diagonal entry, so
    # a state concentrated in that cell turns negative
    A = scheme.operator(f).toarray()
    j = int(np.argmin(np.diag(A)))
    e = np.zeros(grid.size)
    e[j] = 1.0
    assert ((e + bound * (A @ e)) >= -1e-15).all()
    assert (e + 1.01 * bound * (A @ e))[j] < 0


def test_implicit_step_is_positive_and_conservative_through_condensation():
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(101, 6.0)
    scheme = StructurePreservingScheme(model, grid)
    f = bump(grid, 9.0, (1.5,), width=0.7)
    for _ in range(100):
        f = scheme.implicit_step(f, 0.05)
        assert f.min() >= 0.0
    assert abs(grid.integrate(f) - 9.0) <= 1e-12 * 9.0 * 100
    assert origin_cell_mass(f, grid) > 0.5 * (9.0 - discrete_critical_mass(grid, model))


# ------------------------------------------------------------------ exact steady states
@pytest.mark.parametrize("dim,gamma,mass", [(1, 3.0, 2.0), (1, 4.0, 3.0), (1, 3.0, 9.0), (2, 2.0, 5.0),
                                            (2, 2.0, 14.0)])
def test_scheme_stationary_solution_is_f_theta_to_rounding(dim, gamma, mass):
    model = NonlinearFokkerPlanck(sigma=0.8, lam=1.4, gamma=gamma)
    grid = BoxGrid(81, 5.0) if dim == 1 else BoxGrid((21, 23), 4.0)
    scheme = StructurePreservingScheme(model, grid)
    f, theta = discrete_steady_state(grid, model, mass)
    # the nodal values are exactly the closed form f_theta(x_i)
    np.testing.assert_allclose(f, (np.exp(gamma * (model.potential(grid.x_sq) + theta)) - 1) ** (-1 / gamma),
                               rtol=1e-9)
    coefs = scheme.face_coefficients(f)
    scale = max(float(np.max(np.abs(b * f[tuple(slice(0, n - 1) if k == ax else slice(None)
                                              for k, n in enumerate(f.shape))])))
                for ax, (a, b) in enumerate(coefs))
    assert np.abs(scheme.rhs(f)).max() <= 1e-14 * scale  # every face flux cancels to rounding
    for method, dt in (("semi-implicit", 0.5), ("implicit", 0.5), ("explicit", 0.5 * scheme.positivity_dt(f))):
        g = scheme.step(f, dt, method)
        # rounding of one step: eps times the size of the terms dt * rate * f that cancel
        rounding = 1e-14 * (1 + dt / scheme.positivity_dt(f)) * f.max()
        assert np.abs(g - f).max() <= rounding, (method, np.abs(g - f).max(), rounding)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), gamma=st.floats(0.5, 5.0), kappa=st.sampled_from([0.0, 1.0, 2.0]))
def test_face_flux_has_the_sign_of_the_entropy_variable_jump(seed, gamma, kappa):
    """F_{i+1/2} = (sigma M/h) B(l) f_i (exp(w_{i+1} - w_i) - 1): the semi-discrete free energy decreases."""
    rng = np.random.default_rng(seed)
    model = NonlinearFokkerPlanck(sigma=1.3, lam=0.7, gamma=gamma, kappa=kappa)
    grid = BoxGrid(25, 3.0)
    f = np.exp(rng.normal(0.0, 2.0, grid.shape))
    scheme = StructurePreservingScheme(model, grid)
    (F,) = scheme.fluxes(f)
    dw = np.diff(model.entropy_variable(f, grid.x_sq))
    big = np.abs(dw) > 1e-9
    assert np.all(np.sign(F[big]) == np.sign(dw[big]))
    # hence sum_i w_i (df_i/dt) = -sum_faces F dw <= 0
    assert float(np.sum(model.entropy_variable(f, grid.x_sq) * scheme.rhs(f))) <= 1e-12 * np.abs(F).sum()


# ------------------------------------------------------------------ consistency
def _exact_divergence_1d(x, model, A=1.3, c=0.4, v=0.5):
    f = A * np.exp(-((x - c) ** 2) / (2 * v))
    fp = -(x - c) / v * f
    fpp = ((x - c) ** 2 / v**2 - 1 / v) * f
    g, k = model.gamma, model.kappa
    return f, model.sigma * fpp + model.lam * f * (1 + k * f**g) + model.lam * x * fp * (1 + (g + 1) * k * f**g)


def test_flux_is_second_order_consistent_off_equilibrium():
    """The mobility form is consistent with (FP) itself, not only at equilibrium."""
    model = NonlinearFokkerPlanck(sigma=0.9, lam=1.2, gamma=3.0)
    errs = []
    for n in (81, 161, 321):
        grid = BoxGrid(n, 4.0)
        f, div = _exact_divergence_1d(grid.centers[0], model)
        errs.append(np.abs(StructurePreservingScheme(model, grid).rhs(f) - div).max())
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 1.9), (errs, rates)


def test_linear_case_matches_the_exact_ornstein_uhlenbeck_solution():
    """kappa = 0: Gaussian data stay Gaussian, mean m e^{-lam t}, variance sigma/lam + (v0 - sigma/lam) e^{-2 lam t}."""
    model = NonlinearFokkerPlanck(sigma=0.5, lam=1.0, gamma=2.0, kappa=0.0)
    m0, v0, T = 1.0, 0.2, 0.5
    errs = []
    for n, dt in ((61, 0.01), (121, 0.005), (241, 0.0025)):
        grid = BoxGrid(n, 4.0)
        scheme = StructurePreservingScheme(model, grid)

        def gauss(m, v, grid=grid):
            return grid.cell_averages(lambda x: np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v))

        f = scheme.solve(gauss(m0, v0), T, dt, method="implicit").final
        vT = model.sigma / model.lam + (v0 - model.sigma / model.lam) * math.exp(-2 * model.lam * T)
        errs.append(grid.integrate(np.abs(f - gauss(m0 * math.exp(-model.lam * T), vT))))
    assert errs[0] > 1.8 * errs[1] > 3.2 * errs[2]  # first order in dt (dt ~ h)


# ------------------------------------------------------------------ long-time behaviour
def test_subcritical_mass_converges_to_f_theta():
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(201, 6.0)
    mass = 3.0
    f = bump(grid, mass, (1.5,), width=0.5)
    traj = StructurePreservingScheme(model, grid).solve(f, 30.0, 0.1, method="implicit")
    fss, _ = discrete_steady_state(grid, model, mass)
    assert grid.integrate(np.abs(traj.final - fss)) < 1e-8
    theta, condensate = theta_for_mass(mass, 1, model)
    assert condensate == 0.0
    exact = model.steady_state(grid.x_sq, theta)
    assert grid.integrate(np.abs(traj.final - exact)) < 2e-3  # O(h^2) distance to the continuum profile


def test_supercritical_mass_forms_a_condensate_1d():
    """M = 9 > m_c(1, 3) = 5.872: the L^2 norm grows and the origin carries about M - m_c.

    Tolerances: the origin cell carries M - m_c,h exactly at the discrete steady state (after relaxation, to
    1e-4); M - m_c,h differs from M - m_c by the O(h^(1/3)) quadrature deficit of the singular profile f_0
    (1.67 at h = 0.06). The estimator condensate_mass (mass in B(0, 0.5) minus what f_0 puts there) converges
    at O(h^2): here within 1e-3 of M - m_c."""
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(201, 6.0)
    M = 9.0
    f = bump(grid, M, (1.5,), width=0.5)
    traj = StructurePreservingScheme(model, grid).solve(f, 12.0, 0.05, method="implicit", save_every=20)
    diag = condensation_diagnostics(traj, l2_threshold=10.0)
    mc, mch = critical_mass(1, 3), discrete_critical_mass(grid, model)
    h = grid.spacing[0]
    # grid blow-up: the L^2 norm reaches the scale of a one-cell delta of mass M - m_c,h
    assert diag["l2_norm"][-1] >= (M - mch) / math.sqrt(h) > 2.5 * diag["l2_norm"][0]
    assert diag["l2_threshold_time"] is not None and diag["l2_threshold_time"] < 3.0
    fss, theta = discrete_steady_state(grid, model, M)
    assert grid.integrate(np.abs(traj.final - fss)) < 1e-5 * M  # relaxed to the discrete condensed state
    cond = origin_cell_mass(traj.final, grid)
    # f_theta < f_0 off the origin: the origin cell carries slightly more than M - m_c,h, by O(theta / h^2)
    assert 0 <= cond - (M - mch) <= 1e-3
    assert abs(cond - (M - mc)) <= abs(mc - mch) + 1e-3
    assert condensate_mass(traj.final, grid, model, 0.5) == pytest.approx(M - mc, abs=1e-3)
    # the balls shrink onto the condensate: their masses decrease towards the origin-cell mass
    assert np.all(np.diff(diag["ball_mass"][-1]) <= 0)


def test_supercritical_mass_forms_a_condensate_2d():
    """M = 14 > m_c(2, 2) = pi^2 in 2D. Origin cell: M - m_c,h, about 0.95 above M - m_c at h = 0.24 (O(h));
    estimator within 2.5e-2 of M - m_c (O(h^2))."""
    model = NonlinearFokkerPlanck(gamma=2.0)
    grid = BoxGrid(41, 5.0, dim=2)
    M = 14.0
    f = bump(grid, M, (1.0, -0.5), width=0.7)
    traj = StructurePreservingScheme(model, grid).solve(f, 8.0, 0.1, method="implicit", save_every=10)
    l2 = l2_norm(traj.densities, grid)
    mch = discrete_critical_mass(grid, model)
    assert l2[-1] >= (M - mch) / grid.spacing[0] > 3 * l2[0]  # one-cell delta of mass M - m_c,h in 2D
    fss, _ = discrete_steady_state(grid, model, M)
    assert grid.integrate(np.abs(traj.final - fss)) < 1e-5 * M
    assert 0 <= origin_cell_mass(traj.final, grid) - (M - mch) <= 5e-3  # O(theta / h^2), see the 1D test
    assert condensate_mass(traj.final, grid, model, 1.0) == pytest.approx(M - math.pi**2, abs=2.5e-2)


def test_solve_argument_errors():
    grid = BoxGrid(21, 3.0)
    scheme = StructurePreservingScheme(NonlinearFokkerPlanck(gamma=3.0), grid)
    f = bump(grid, 1.0, (0.0,))
    with pytest.raises(ValueError, match="method"):
        scheme.solve(f, 1.0, 0.1, method="rk4")
    with pytest.raises(ValueError, match="dt"):
        scheme.solve(f, 1.0, 0.3)
    with pytest.raises(ValueError, match="non-negative"):
        scheme.solve(-f, 1.0, 0.1)
    with pytest.raises(ValueError, match="grid shape"):
        scheme.solve(np.ones(5), 1.0, 0.1)
    with pytest.raises(ValueError, match="save_times"):
        scheme.solve(f, 1.0, 0.1, save_times=[0.5])


def test_adaptive_stepping_lands_on_the_save_times():
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(61, 5.0)
    scheme = StructurePreservingScheme(model, grid)
    f = bump(grid, 8.0, (1.0,), width=0.8)
    for method in ("explicit", "semi-implicit"):
        traj = scheme.solve(f, 0.2, 0.05, method=method, adaptive=True, save_times=[0.05, 0.1, 0.2], rtol=1e-3)
        np.testing.assert_allclose(traj.times, [0.0, 0.05, 0.1, 0.2], rtol=1e-12)
        assert traj.densities.min() >= 0
        np.testing.assert_allclose(traj.masses(), 8.0, rtol=1e-12)
    # the step-doubling controller follows the accurate (implicit, small dt) solution where fixed lagged steps fail
    ref = scheme.solve(f, 0.2, 0.001, method="implicit").final
    adapt = scheme.solve(f, 0.2, 0.05, method="semi-implicit", adaptive=True, rtol=1e-4).final
    lagged = scheme.solve(f, 0.2, 0.05, method="semi-implicit").final
    assert grid.integrate(np.abs(adapt - ref)) < 0.2 * grid.integrate(np.abs(lagged - ref))


def test_newton_failure_halves_the_step_and_stays_positive_and_conservative():
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(81, 5.0)
    scheme = StructurePreservingScheme(model, grid)
    f = bump(grid, 9.0, (1.5,), width=0.4)
    # 8 Newton iterations do not converge for this stiff step (dt = 0.5): it is split (7 levels deep here)
    g = scheme.implicit_step(f, 0.5, max_iter=8)
    assert g.min() >= 0 and abs(grid.integrate(g) - 9.0) < 1e-12 * 9.0
    # the split steps are finer: at least as close as the single step to a fine-step reference
    ref = scheme.solve(f, 0.5, 0.005, method="implicit").final
    one = scheme.implicit_step(f, 0.5)
    assert grid.integrate(np.abs(g - ref)) <= grid.integrate(np.abs(one - ref))
    with pytest.raises(FloatingPointError, match="8 halvings"):
        scheme.implicit_step(f, 0.5, max_iter=2)
