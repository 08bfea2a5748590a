import numpy as np
import pytest

import spdekit as sk


@pytest.fixture
def spde():
    return sk.AnisotropicSPDE.paper_anisotropic(16, T=0.5)


def _u0(dtype=np.float64, shape=(2, 1, 16, 16)):
    return np.random.default_rng(0).uniform(0, 1, shape).astype(dtype)


def test_same_seed_same_path_on_every_backend(spde):
    a = sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, seed=5, backend="numpy")
    b = sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, seed=5, backend="numba")
    c = sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, seed=6, backend="numba")
    np.testing.assert_allclose(a.final, b.final, rtol=0, atol=1e-12)
    assert np.abs(a.final - c.final).max() > 1e-3


def test_save_every_and_times(spde):
    tr = sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, save_every=30, seed=0)
    np.testing.assert_allclose(tr.times, [0.0, 0.03, 0.06, 0.09, 0.1])
    assert tr.states.shape == (5, 2, 1, 16, 16)
    np.testing.assert_array_equal(tr.states[0], _u0())
    assert tr.completed and tr.stopped_at is None


def test_rank2_input_and_explicit_increments(spde):
    u0 = _u0()[0, 0]
    n, dt = 20, 5e-3
    dW = np.zeros((n, 1, 1, 16, 16))
    tr = sk.simulate(spde, u0, 0.0, n * dt, dt, brownian=dW, solver=sk.EulerMaruyama())
    # no noise: the same as stepping the drift by hand
    u = u0[None, None].copy()
    for k in range(n):
        u = u + dt * spde.drift(k * dt, u, backend="numpy")
    np.testing.assert_allclose(tr.final, u, atol=1e-12)
    with pytest.raises(ValueError, match="brownian increments must have shape"):
        sk.simulate(spde, u0, 0.0, n * dt, dt, brownian=np.zeros((n, 16, 16)))


def test_divergence_stops_with_step_time_and_keeps_the_saved_part():
    # dt = 50x the stability bound: the checkerboard mode grows like (1 - 8 dt alpha)^k
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.0, lambda2=float("inf"))
    u0 = _u0(np.float32, (1, 1, 8, 8))
    with pytest.warns(sk.StabilityWarning, match="stability bound"):
        with pytest.raises(sk.SimulationDiverged, match=r"diverged at step \d+ of 1000 \(t = ") as info:
            sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), save_every=1, seed=0)
    exc = info.value
    traj = exc.trajectory
    assert not traj.completed and traj.stopped_at["step"] == exc.step
    assert exc.time == pytest.approx(exc.step * 0.125)
    assert len(traj.times) == exc.step  # every state before the failing step was saved
    assert np.isfinite(traj.states).all()
    np.testing.assert_array_equal(traj.states[0], u0)


def test_tamed_solver_survives_where_plain_em_blows_up_on_a_superlinear_drift():
    """The anisotropic drift is bounded (|g1 grad u| <= alpha1 lambda1), but a large dt still
    makes plain EM oscillate; taming bounds each step by 1 (in norm) whatever the drift."""
    spde = sk.AnisotropicSPDE(alpha1=50.0, lambda1=float("inf"), alpha2=0.01, lambda2=float("inf"))
    u0 = _u0(np.float64, (1, 1, 8, 8))
    with pytest.warns(sk.StabilityWarning):
        tamed = sk.simulate(spde, u0, 0.0, 2.0, 0.02, solver=sk.TamedEulerMaruyama(), seed=1)
    assert np.isfinite(tamed.final).all()
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged):
        sk.simulate(spde, u0, 0.0, 200.0, 0.02, solver=sk.EulerMaruyama(), seed=1)


def test_progress_bar_runs(spde, capsys):
    sk.simulate(spde, _u0(), 0.0, 0.01, 1e-3, progress=True, seed=0)


def test_float32_stays_float32(spde):
    tr = sk.simulate(spde, _u0(np.float32), 0.0, 0.01, 1e-3, seed=0)
    assert tr.states.dtype == np.float32


def test_a_sample_path_does_not_depend_on_the_batch_it_runs_in(spde):
    """Per-sample streams: sample 2 of a batch of 5 equals sample 2 of a batch of 3."""
    u5 = _u0(shape=(5, 1, 16, 16))
    big = sk.simulate(spde, u5, 0.0, 0.02, 1e-3, seed=11)
    small = sk.simulate(spde, u5[:3], 0.0, 0.02, 1e-3, seed=11)
    np.testing.assert_array_equal(big.final[:3], small.final)


# ----------------------------------------------------------------------------- variable steps, save times


def test_stability_bound_steps_follow_the_bound_and_land_on_the_save_times():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)  # alpha1: 0.5 -> 32 over T = 2 (r = 64)
    steps = sk.StabilityBoundSteps(cfl=0.9)
    grid = steps.grid(spde, 0.0, 2.0, stops=[0.5, 1.0, 1.5])
    dt = np.diff(grid)
    bound = np.array([spde.stability_bound(a, b) for a, b in zip(grid[:-1], grid[1:])])
    assert (dt <= 0.9 * bound * (1 + 1e-12)).all() and (dt > 0).all()
    assert {0.5, 1.0, 1.5, 2.0} <= set(grid.tolist()) and grid[0] == 0.0
    fixed = 2.0 / (0.9 * spde.stability_bound(0.0, 2.0))
    r = 64.0
    # the module doc's count, (1 - 1/r) / ln r of the fixed step's, up to the discreteness of 72 steps
    assert len(dt) / fixed == pytest.approx((1 - 1 / r) / np.log(r), rel=0.1)
    # a step is never a sliver before a stop: at least half the largest allowed step
    assert (dt >= 0.5 * np.minimum.accumulate(dt[::-1])[::-1] * 0.999).all()


def test_simulate_with_a_step_schedule_saves_at_the_requested_times(tmp_path):
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u0 = np.zeros((2, 1, 16, 16))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the schedule respects the bound: no StabilityWarning
        tr = sk.simulate(spde, u0, 0.0, 2.0, sk.StabilityBoundSteps(0.9), solver=sk.EulerMaruyama(),
                         save_times=[0.5, 1.0, 1.5], seed=1, out=tmp_path / "run.nc")
    np.testing.assert_array_equal(tr.times, [0.0, 0.5, 1.0, 1.5, 2.0])
    assert tr.dt == 0.0 and tr.attrs["steps"]["steps"] == "stability_bound" and tr.attrs["steps"]["cfl"] == 0.9
    n = len(sk.StabilityBoundSteps(0.9).grid(spde, 0.0, 2.0, [0.5, 1.0, 1.5])) - 1
    assert tr.attrs["steps"]["n_steps"] == n
    assert np.isfinite(tr.final).all() and 0.02 < tr.final.std() < 0.5  # explicit EM, stable on every step
    back = sk.open_trajectory(tmp_path / "run.nc")
    np.testing.assert_array_equal(back.times, tr.times)
    np.testing.assert_array_equal(back.final, tr.final)
    # the increments of a step schedule come from the same per-sample streams: a sample's path does not
    # depend on the batch it runs in
    one = sk.simulate(spde, u0[1:], 0.0, 2.0, sk.StabilityBoundSteps(0.9), solver=sk.EulerMaruyama(),
                      save_times=[0.5, 1.0, 1.5], seed=sk.random.SampleStreams(1, 1, first=1))
    np.testing.assert_allclose(one.final[0], tr.final[1], rtol=0, atol=1e-12)


def test_save_times_with_a_fixed_step(spde):
    tr = sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, save_times=[0.025, 0.05], seed=0)
    np.testing.assert_allclose(tr.times, [0.0, 0.025, 0.05, 0.1])
    ref = sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, save_every=25, seed=0)
    np.testing.assert_array_equal(tr.states, ref.states[[0, 1, 2, 4]])


def test_bad_step_and_save_arguments_are_one_line_errors(spde):
    with pytest.raises(ValueError, match=r"save_times must lie on the step grid t0 \+ k dt \(dt = 0.001\); 0.0125"):
        sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, save_times=[0.0125])
    with pytest.raises(ValueError, match=r"save_times must lie in \(t0, t1\]"):
        sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, save_times=[0.2])
    with pytest.raises(ValueError, match="give save_every or save_times, not both"):
        sk.simulate(spde, _u0(), 0.0, 0.1, 1e-3, save_every=10, save_times=[0.05])
    with pytest.raises(TypeError, match="dt must be a number or a spdekit.steps.StepSchedule"):
        sk.simulate(spde, _u0(), 0.0, 0.1, "adaptive")
    for cfl in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"cfl must (lie in \(0, 1\]|be a real number)"):
            sk.StabilityBoundSteps(cfl)
    with pytest.raises(TypeError, match="follows alpha1 of an AnisotropicSPDE"):
        sk.simulate(sk.problems.OrnsteinUhlenbeck(), np.zeros(4), 0.0, 1.0, sk.StabilityBoundSteps())


def test_stiff_solvers_take_large_steps_without_a_stability_warning(spde):
    import warnings

    dt = 0.1
    assert dt > 10 * spde.stability_bound(0.0, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for solver in (sk.LinearlyImplicitTheta(), sk.AOSEulerMaruyama()):
            tr = sk.simulate(spde, _u0(), 0.0, 0.5, dt, solver=solver, seed=0)
            assert np.isfinite(tr.final).all() and np.abs(tr.final).max() < 3
    with pytest.warns(sk.StabilityWarning):
        sk.simulate(spde, _u0(), 0.0, 0.5, dt, solver=sk.TamedEulerMaruyama(), seed=0)
