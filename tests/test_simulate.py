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
