"""Steady states f_theta and the critical mass m_c (model module doc, eq. SS; steady_states module doc)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spdekit.fokker_planck import (
    BoxGrid,
    NonlinearFokkerPlanck,
    critical_mass,
    discrete_critical_mass,
    discrete_steady_state,
    steady_state_mass,
    theta_for_mass,
)


def test_critical_mass_published_values():
    assert critical_mass(2, 2, 1, 1) == pytest.approx(math.pi**2, rel=1e-12)
    assert round(critical_mass(1, 3, 1, 1), 3) == 5.872
    assert round(critical_mass(1, 4, 1, 1), 3) == 3.997


def test_critical_mass_infinite_iff_d_gamma_at_most_2():
    assert critical_mass(1, 2) == math.inf
    assert critical_mass(2, 1) == math.inf
    assert critical_mass(1, 1.5) == math.inf
    assert math.isfinite(critical_mass(1, 2.05))
    assert math.isfinite(critical_mass(3, 1))  # the 3D Kaniadakis-Quarati model
    assert critical_mass(1, 3, kappa=0.0) == math.inf  # linear Fokker-Planck: no condensation


@settings(max_examples=15, deadline=None)
@given(lam=st.floats(0.2, 5.0), sigma=st.floats(0.2, 5.0), d=st.sampled_from([1, 2]), kappa=st.floats(0.1, 3.0))
def test_critical_mass_scaling(lam, sigma, d, kappa):
    """x -> sqrt(sigma/lambda) x and f -> kappa^(-1/gamma) f map the models onto each other."""
    gamma = 3.0 if d == 1 else 2.0
    ref = critical_mass(d, gamma)
    got = critical_mass(d, gamma, lam, sigma, kappa)
    assert got == pytest.approx((sigma / lam) ** (d / 2) * kappa ** (-1 / gamma) * ref, rel=1e-9)


def test_mass_matches_riemann_sum_on_a_fine_grid():
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(200001, 12.0)
    for theta in (1e-3, 0.3, 2.0):
        f = model.steady_state(grid.x_sq, theta)
        assert grid.integrate(f) == pytest.approx(steady_state_mass(theta, 1, model), rel=1e-6)


def test_linear_model_mass_is_gaussian():
    model = NonlinearFokkerPlanck(sigma=0.7, lam=1.3, gamma=2.0, kappa=0.0)
    assert steady_state_mass(0.4, 2, model) == pytest.approx(2 * math.pi * 0.7 / 1.3 * math.exp(-0.4), rel=1e-14)


@pytest.mark.parametrize("mass", [0.5, 3.0, 5.8])
def test_theta_for_mass_round_trip(mass):
    model = NonlinearFokkerPlanck(gamma=3.0)
    theta, condensate = theta_for_mass(mass, 1, model)
    assert condensate == 0.0 and theta > 0
    assert steady_state_mass(theta, 1, model) == pytest.approx(mass, rel=1e-10)


def test_theta_for_supercritical_mass_gives_condensate():
    model = NonlinearFokkerPlanck(gamma=2.0)
    theta, condensate = theta_for_mass(15.0, 2, model)
    assert theta == 0.0
    assert condensate == pytest.approx(15.0 - math.pi**2, rel=1e-12)


def test_steady_state_solves_zero_flux_pointwise():
    """sigma f' + lambda x f (1 + kappa f^gamma) = 0 for f_theta (central differences, fine step)."""
    model = NonlinearFokkerPlanck(sigma=0.8, lam=1.7, gamma=2.5, kappa=1.3)
    x = np.linspace(-3, 3, 13)
    eps = 1e-5
    f = lambda y: model.steady_state(y * y, 0.4)  # noqa: E731
    df = (f(x + eps) - f(x - eps)) / (2 * eps)
    flux = model.sigma * df + model.lam * x * f(x) * (1 + model.kappa * f(x) ** model.gamma)
    assert np.abs(flux).max() < 1e-8


@pytest.mark.parametrize("mass", [2.0, 9.0])
def test_discrete_steady_state_has_the_mass(mass):
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(101, 6.0)
    f, theta = discrete_steady_state(grid, model, mass)
    assert grid.integrate(f) == pytest.approx(mass, rel=1e-13)
    w = model.entropy_variable(f, grid.x_sq)
    assert np.ptp(w) < 1e-12 * max(1.0, abs(w).max())  # w = h(f) + s constant (= -theta)


def test_discrete_condensate_and_discrete_critical_mass():
    """Above m_c,h the origin cell carries M - m_c,h (up to the tiny theta of the discrete state)."""
    model = NonlinearFokkerPlanck(gamma=3.0)
    grid = BoxGrid(201, 6.0)
    mch = discrete_critical_mass(grid, model)
    f, theta = discrete_steady_state(grid, model, 9.0)
    assert 0 < theta < 1e-5
    assert f[100] * grid.cell_volume == pytest.approx(9.0 - mch, rel=1e-4)
    # the deficit m_c - m_c,h of the singular quadrature is O(h^(d - 2/gamma)) = O(h^(1/3)) here
    d1 = critical_mass(1, 3) - mch
    d2 = critical_mass(1, 3) - discrete_critical_mass(BoxGrid(1601, 6.0), model)
    assert d1 / d2 == pytest.approx(8 ** (1 / 3), rel=0.05)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="gamma"):
        NonlinearFokkerPlanck(gamma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        NonlinearFokkerPlanck(sigma=-1.0)
    with pytest.raises(ValueError, match="kappa"):
        NonlinearFokkerPlanck(kappa=-0.5)
    with pytest.raises(ValueError, match="theta"):
        NonlinearFokkerPlanck(gamma=2.0).steady_state(np.ones(3), -0.1)
    with pytest.raises(ValueError, match="origin"):
        discrete_critical_mass(BoxGrid(100, 5.0), NonlinearFokkerPlanck(gamma=3.0))
    with pytest.raises(ValueError, match="dim"):
        BoxGrid(11, 1.0, dim=3)
    with pytest.raises(ValueError, match="mass"):
        discrete_steady_state(BoxGrid(11, 3.0), NonlinearFokkerPlanck(), -1.0)
