"""Convergence orders on problems with exact solutions (small ladders, fixed seeds).

Tolerances are those of the acceptance list (GBM strong 0.5 +- 0.15, weak 1.0 +- 0.3; OU and the
heat equation strong 1.0 +- 0.15); the seeds are fixed, so each test is deterministic.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from spdekit import EulerMaruyama, TamedEulerMaruyama, simulate
from spdekit.backends import available
from spdekit.convergence import (
    ConvergenceResult,
    bootstrap_order,
    convergence_study,
    fit_order,
    plot_convergence,
    run_ladder,
    strong_order,
    weak_order,
)
from spdekit.problems import GeometricBrownianMotion, GinzburgLandau, LinearHeatEquation, OrnsteinUhlenbeck

LADDER = [2.0**-k for k in range(3, 8)]


def test_fit_order_recovers_a_power_law():
    dts = np.array([0.1, 0.05, 0.025, 0.0125])
    p, a, se = fit_order(dts, 3.0 * dts**0.73)
    assert p == pytest.approx(0.73, abs=1e-12) and np.exp(a) == pytest.approx(3.0) and se < 1e-10
    with pytest.raises(ValueError, match="two"):
        fit_order([0.1], [1.0])


def test_bootstrap_ci_covers_the_slope_of_noisy_paths():
    """Per-path squared errors e_p^2 = dt^(2 * 0.8) * chi2_1: the fitted order is 0.8 up to Monte
    Carlo noise and the 95% CI brackets the estimate; more paths give a narrower interval."""
    rng = np.random.default_rng(0)
    dts = np.array([0.2, 0.1, 0.05, 0.025])
    widths = []
    for n in (200, 5000):
        xi = rng.standard_normal((n, 1)) * (1 + 0.1 * rng.standard_normal((n, 4)))
        fit = bootstrap_order(dts, (xi**2) * dts**1.6, "strong", n_boot=400)
        assert fit.ci_low <= fit.order <= fit.ci_high
        assert abs(fit.order - 0.8) < 0.05
        widths.append(fit.ci_high - fit.ci_low)
    assert widths[1] < widths[0]


@pytest.fixture(scope="module")
def gbm_em():
    return convergence_study(GeometricBrownianMotion(0.5, 0.7), 1.0, 0.0, 1.0, LADDER, EulerMaruyama(),
                             n_paths=40000, seed=1, phi="identity", n_boot=300)


def test_gbm_em_strong_and_weak_orders(gbm_em):
    assert isinstance(gbm_em, ConvergenceResult)
    assert abs(gbm_em.strong.order - 0.5) <= 0.15
    assert abs(gbm_em.weak.order - 1.0) <= 0.3
    ds = gbm_em.dataset
    assert ds["strong_error"].dims == ("dt",) and ds.sizes["path"] == 40000
    assert ds.attrs["reference"] == "exact" and "strong_order_ci" in ds.attrs


def test_gbm_weak_estimator_matches_the_known_em_bias(gbm_em):
    """For phi(x) = x, E[X_dt(1)] = (1 + a dt)^(1/dt) exactly, so mean(X_dt - X) must agree with
    (1 + a dt)^(1/dt) - e^a within 4 of its standard errors at every dt."""
    ds = gbm_em.dataset
    dts = ds["dt"].values
    bias = (1 + 0.5 * dts) ** (1 / dts) - np.exp(0.5)
    mean = ds["phi_diff"].mean("path").values
    assert np.all(np.abs(mean - bias) < 4 * ds["weak_error_stderr"].values)
    assert np.all(np.sign(mean) == np.sign(bias))


def test_gbm_tamed_strong_order():
    res = strong_order(GeometricBrownianMotion(0.5, 0.7), 1.0, 0.0, 1.0, LADDER, TamedEulerMaruyama(),
                       n_paths=20000, seed=2, n_boot=200)
    assert res.order is res.strong and abs(res.order.order - 0.5) <= 0.15


def test_ou_strong_order():
    res = strong_order(OrnsteinUhlenbeck(2.0, 1.0), 1.0, 0.0, 1.0, LADDER, EulerMaruyama(), n_paths=2000,
                       seed=3, n_boot=200)
    assert abs(res.order.order - 1.0) <= 0.15
    w = weak_order(OrnsteinUhlenbeck(2.0, 1.0), 1.0, 0.0, 1.0, LADDER, EulerMaruyama(), n_paths=2000, seed=3,
                   phi="identity", n_boot=200)
    assert w.order is w.weak and abs(w.order.order - 1.0) <= 0.3


@pytest.mark.parametrize("ell", [0.0, 2.0])
def test_heat_equation_strong_order(ell):
    """EM on the 16x16 linear stochastic heat equation, exact reference (white and Q-Wiener l=2)."""
    heat = LinearHeatEquation(alpha1=1.0, alpha2=1.0, correlation_length=ell)
    u0 = np.cos(np.linspace(0, np.pi, 16))[None, :, None] * np.ones((1, 16, 16))
    res = strong_order(heat, u0, 0.0, 1.0, [2.0**-k for k in range(3, 7)], EulerMaruyama(), n_paths=8, seed=4,
                       backend="numpy", n_boot=200)
    assert abs(res.order.order - 1.0) <= 0.15


@pytest.mark.skipif(not available("numba"), reason="numba not installed")
def test_heat_equation_numba_matches_numpy():
    heat = LinearHeatEquation(alpha1=1.0, alpha2=1.0)
    u0 = np.zeros((1, 12, 12))
    kw = dict(n_paths=4, seed=5, n_boot=50)
    a = strong_order(heat, u0, 0.0, 0.5, [2.0**-k for k in range(3, 6)], EulerMaruyama(), backend="numpy", **kw)
    b = strong_order(heat, u0, 0.0, 0.5, [2.0**-k for k in range(3, 6)], EulerMaruyama(), backend="numba", **kw)
    np.testing.assert_allclose(a.errors(), b.errors(), rtol=1e-9)


def test_run_ladder_matches_simulate_on_the_same_path():
    """The lockstep ladder and simulate(..., brownian=path) produce the same final state, bit for bit."""
    heat = LinearHeatEquation(alpha1=0.5, alpha2=1.0, correlation_length=1.0)
    u0 = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    res = run_ladder(heat, u0, 0.0, 1.0, [0.25, 0.125], EulerMaruyama(), seed=7, backend="numpy")
    traj = simulate(heat, u0, 0.0, 1.0, 0.25, EulerMaruyama(), brownian=res["path"], backend="numpy")
    assert np.array_equal(traj.final, res["final"][0])


def test_fine_reference_and_divergence_bookkeeping():
    """No exact solution -> same-solver reference at min(dt)/16. Plain EM on a superlinear drift
    from a wide start overflows on some paths at dt = 1/8: reported as a diverged fraction and left
    out of the fit; tamed EM stays finite."""
    gl = GinzburgLandau(0.5)
    u0 = 2.0 * np.random.default_rng(7).standard_normal(4000)
    dts = [2.0**-k for k in range(3, 8)]
    em = convergence_study(gl, u0, 0.0, 1.0, dts, EulerMaruyama(), seed=3, n_boot=50)
    tamed = convergence_study(gl, u0, 0.0, 1.0, dts, TamedEulerMaruyama(), seed=3, n_boot=50)
    assert em.dataset.attrs["reference"] == "fine" and em.dataset.attrs["ref_dt"] == pytest.approx(2.0**-11)
    assert em.dataset["diverged_fraction"].values[0] > 0
    assert not np.isfinite(em.errors()[0])
    assert em.strong is None or em.strong.n_points < len(dts)
    assert np.all(tamed.dataset["diverged_fraction"].values == 0) and np.all(np.isfinite(tamed.errors()))


def test_max_over_time_error_and_plot(tmp_path):
    res = strong_order(OrnsteinUhlenbeck(1.0, 1.0), 0.5, 0.0, 1.0, LADDER, EulerMaruyama(), n_paths=500, seed=1,
                       max_over_time=True, n_boot=50)
    smax = res.dataset["strong_max_error"].values
    assert np.all(smax >= res.errors() - 1e-15) and res.strong_max is not None
    ax = plot_convergence([res], labels=["OU"])
    ax.figure.savefig(tmp_path / "conv.png")
    assert (tmp_path / "conv.png").stat().st_size > 1000


def test_bad_ladders_raise():
    gbm = GeometricBrownianMotion()
    with pytest.raises(ValueError, match="integer multiple"):
        strong_order(gbm, 1.0, 0.0, 1.0, [0.25, 0.1], EulerMaruyama(), n_paths=10)
    with pytest.raises(ValueError, match="at least two"):
        strong_order(gbm, 1.0, 0.0, 1.0, [0.25], EulerMaruyama(), n_paths=10)
    with pytest.raises(ValueError, match="exact_step"):
        strong_order(GinzburgLandau(), 1.0, 0.0, 1.0, [0.25, 0.125], EulerMaruyama(), n_paths=10, reference="exact")
    with pytest.raises(ValueError, match="batch axis"):
        strong_order(gbm, np.ones(1), 0.0, 1.0, [0.25, 0.125], EulerMaruyama())


def test_stiff_solvers_in_the_convergence_tools():
    """A ladder above the explicit bound raises no StabilityWarning for a stiff-stable solver, and the
    lockstep ladder equals simulate on the same path for it too."""
    import warnings

    from spdekit import LinearlyImplicitTheta

    heat = LinearHeatEquation(alpha1=4.0, alpha2=1.0)  # explicit bound 1/16
    u0 = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_ladder(heat, u0, 0.0, 1.0, [0.25, 0.125], LinearlyImplicitTheta(rtol=1e-12), seed=7,
                         backend="numpy")
    traj = simulate(heat, u0, 0.0, 1.0, 0.25, LinearlyImplicitTheta(rtol=1e-12), brownian=res["path"],
                    backend="numpy")
    assert np.array_equal(traj.final, res["final"][0])
    assert np.all(res["diverged"] == 0)
