"""Exact solutions of the test problems: consistency on a path, their laws, and the heat equation's
mode decomposition against the backend kernels."""

import numpy as np
import pytest
import scipy.linalg

from spdekit import EulerMaruyama, simulate, spectral
from spdekit.backends import available
from spdekit.brownian import BrownianPath
from spdekit.problems import (
    CubicSDE,
    GeometricBrownianMotion,
    GinzburgLandau,
    LinearHeatEquation,
    OrnsteinUhlenbeck,
    paper_multiplicative,
)


@pytest.mark.parametrize("problem, u0", [(GeometricBrownianMotion(0.5, 0.7), 1.3), (CubicSDE(), 0.4),
                                         (OrnsteinUhlenbeck(2.0, 0.8), 1.0)])
def test_exact_step_composes(problem, u0):
    """The exact flow over [0, 1] equals the composition of exact flows over its quarters (the
    solution is a function of the path, not of how it is queried)."""
    path = problem.brownian_path((50,), 0.0, 1.0, 1 / 16, seed=3)
    u = np.full(50, u0)
    for k in range(4):
        u = problem.exact_step(k / 4, u, 0.25, path)
    np.testing.assert_allclose(problem.exact_solution(np.full(50, u0), path, 1.0), u, rtol=1e-12)


@pytest.mark.parametrize("problem, u0", [(GeometricBrownianMotion(0.5, 0.7), 1.0), (CubicSDE(), 0.3),
                                         (OrnsteinUhlenbeck(2.0, 0.8), 1.0)])
def test_exact_solution_solves_the_sde(problem, u0):
    """EM on the same path converges to the exact solution: RMS error at dt = 2^-12 below 0.02
    and at least 6x smaller than at dt = 2^-6 (EM's error ratio is 8 for order 1/2, 64 for 1)."""
    path = problem.brownian_path((400,), 0.0, 1.0, 2.0**-12, seed=5)
    exact = problem.exact_solution(np.full(400, u0), path, 1.0)
    errs = []
    for dt in (2.0**-6, 2.0**-12):
        fin = simulate(problem, np.full(400, u0), 0.0, 1.0, dt, EulerMaruyama(), brownian=path, backend="numpy").final
        errs.append(np.sqrt(np.mean((fin - exact) ** 2)))
    assert errs[1] < 0.02 and errs[0] / errs[1] > 6


def test_cubic_exact_solution_is_tanh_of_the_path():
    path = BrownianPath((10,), 0.0, 2.0, 0.01, seed=1)
    u0 = np.linspace(-0.9, 0.9, 10)
    np.testing.assert_allclose(CubicSDE().exact_solution(u0, path, 2.0),
                               np.tanh(path.value(2.0) / 2 + np.arctanh(u0)), rtol=1e-14)


def test_ou_exact_law():
    """U(T) ~ N(e^{-theta T} u0, sigma^2 (1 - e^{-2 theta T}) / (2 theta)); 40 000 paths, 4-sigma bands."""
    ou = OrnsteinUhlenbeck(1.5, 0.7)
    path = ou.brownian_path((40000,), 0.0, 1.0, 0.1, seed=8)
    x = ou.exact_solution(np.full(40000, 2.0), path, 1.0)
    mean, var = 2.0 * np.exp(-1.5), 0.49 * (1 - np.exp(-3.0)) / 3.0
    n = x.size
    assert abs(x.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(x.var() - var) < 4 * var * np.sqrt(2 / n)


@pytest.mark.parametrize("stencil, ell", [("conservative", 0.0), ("conservative", 2.0), ("paper", 0.0)])
def test_heat_exact_law(stencil, ell):
    """Exact heat solution from u0 on a 4x4 grid: mean e^{alpha1 L T} u0 (dense expm of the drift
    matrix built from the backend kernel) and covariance sum_jk V (M_jk (e^{(c_j+c_k)T} - 1)/(c_j+c_k)) V^T;
    12 000 paths, 5-sigma bands."""
    heat = LinearHeatEquation(alpha1=0.7, alpha2=0.5, correlation_length=ell, stencil=stencil)
    H = W = 4
    n = 12000
    rng = np.random.default_rng(0)
    u0 = rng.standard_normal((1, H, W))
    path = heat.brownian_path((n, 1, H, W), 0.0, 1.0, 0.25, seed=2)
    x = heat.exact_solution(np.broadcast_to(u0, (n, 1, H, W)), path, 1.0).reshape(n, -1)
    eye = np.eye(H * W).reshape(-1, H, W)
    A = heat.drift(0.0, eye[:, None], backend="numpy").reshape(H * W, H * W).T  # drift matrix: column k = b(e_k)
    mean = scipy.linalg.expm(A) @ u0.ravel()
    Q = np.eye(H * W) if ell == 0 else heat.noise.dense_Q((H, W))
    # Cov(U(T)) = a2^2 int_0^T e^{A s} Q e^{A^T s} ds, by quadrature (Simpson, 401 nodes)
    s = np.linspace(0, 1, 401)
    step, E, vals = scipy.linalg.expm(A * (s[1] - s[0])), np.eye(H * W), []
    for _ in s:
        vals.append(E @ Q @ E.T)
        E = step @ E
    vals = np.stack(vals)
    cov = 0.25 * scipy.integrate.simpson(vals, x=s, axis=0)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    C = np.cov(x.T)
    sd = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(C - cov) < 5 * sd)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("stencil, ell", [("conservative", 0.0), ("conservative", 2.0), ("paper", 0.0)])
def test_heat_em_is_the_mode_recursion(backend, stencil, ell):
    """simulate() with the backend kernel on dW = V dB equals the EM recursion z+ = (1 + c h) z + a2 dB
    in mode coordinates, to rounding: the grid drift is alpha1 V diag(mu) V^{-1}."""
    if backend == "numba" and not available("numba"):
        pytest.skip("numba not installed")
    heat = LinearHeatEquation(alpha1=0.8, alpha2=0.6, correlation_length=ell, stencil=stencil)
    shape = (3, 1, 8, 6)
    path = heat.brownian_path(shape, 0.0, 0.5, 1 / 32, seed=1)
    u0 = np.random.default_rng(1).standard_normal(shape)
    fin = simulate(heat, u0, 0.0, 0.5, 1 / 16, EulerMaruyama(), brownian=path, backend=backend).final
    z = spectral.to_modes(u0, stencil)
    c = heat.mode_rates((8, 6))
    for k in range(8):
        dB = spectral.to_modes(path.increment(k / 16, (k + 1) / 16), stencil)
        z = (1 + c / 16) * z + 0.6 * dB
    np.testing.assert_allclose(fin, spectral.from_modes(z, stencil), rtol=0, atol=1e-12)


def test_problem_attributes():
    assert GinzburgLandau().exact_step is None
    m = paper_multiplicative(16, 2.0, lambda2=0.1)
    assert not m.is_additive and m.lambda2(0.0) == 0.1
    with pytest.raises(ValueError, match="lambda2"):
        paper_multiplicative(16, lambda2=0.0)
    with pytest.raises(TypeError, match="constant"):
        from spdekit import schedules

        LinearHeatEquation(alpha1=schedules.Geometric(0.1, 1.0, 1.0))
    with pytest.raises(ValueError, match="n_paths, C, H, W"):
        LinearHeatEquation().brownian_path((4, 4), 0, 1, 0.5)
