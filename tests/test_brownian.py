"""BrownianPath: exact coarsening, query-order independence, Q-Wiener covariance, simulate hook;
LinearGaussianPath: joint law of (stochastic convolution, increment)."""

import numpy as np
import pytest

from spdekit import EulerMaruyama, simulate
from spdekit.brownian import (
    BrownianPath,
    LinearGaussianPath,
    expm1_ratio,
    ou_residual_variance,
    residual_kernel,
)
from spdekit.noise import QWienerNoise
from spdekit.problems import GeometricBrownianMotion, LinearHeatEquation


@pytest.mark.parametrize("ell", [0.0, 2.0])
@pytest.mark.parametrize("block_steps", [None, 5])
def test_coarse_increments_are_sums_of_fine_ones(ell, block_steps):
    dt = 1 / 64
    path = BrownianPath((3, 1, 8, 8), 0.0, 1.0, dt, seed=11, correlation_length=ell, block_steps=block_steps)
    fine = [path.increment(k * dt, (k + 1) * dt) for k in range(64)]
    scale = np.abs(np.stack(fine)).max()
    for m in (2, 4, 8, 64):  # steps of m * dt_min, straddling blocks when block_steps=5
        for j in range(64 // m):
            coarse = path.increment(j * m * dt, (j + 1) * m * dt)
            np.testing.assert_allclose(coarse, np.sum(fine[j * m:(j + 1) * m], axis=0), rtol=0, atol=1e-13 * scale * m)
    np.testing.assert_allclose(path.value(1.0), np.sum(fine, axis=0), rtol=0, atol=1e-12 * scale)
    assert np.array_equal(path.increment(0.25, 0.25), np.zeros(path.shape))


def test_query_order_independence_bitwise():
    dt = 1 / 32
    kw = dict(shape=(4, 1, 6, 5), t0=0.0, t1=1.0, dt_min=dt, seed=5, correlation_length=1.5, block_steps=3)
    a = BrownianPath(**kw)
    steps = [(k * 2 * dt, (k + 1) * 2 * dt) for k in range(16)]
    forward = [a.increment(*s) for s in steps]
    b = BrownianPath(**kw, cache_bytes=0)  # keeps 2 blocks only: blocks are regenerated on revisits
    order = np.random.default_rng(0).permutation(len(steps))
    shuffled = {int(i): b.increment(*steps[i]) for i in order}
    b.increment(0.5, 1.0)  # unrelated queries in between change nothing
    again = {int(i): b.increment(*steps[i]) for i in order[::-1]}
    assert b.blocks_generated > b.n_blocks  # regeneration really happened
    for i, f in enumerate(forward):
        assert np.array_equal(f, shuffled[i]) and np.array_equal(f, again[i])
    c = BrownianPath(**{**kw, "seed": 6})
    assert not np.allclose(c.increment(0, 1), a.increment(0, 1))


def test_block_streams_are_the_spawned_children():
    """Block b uses SeedSequence(seed).spawn(...)[b]: documented, and what makes blocks independent."""
    path = BrownianPath((7,), 0.0, 1.0, 0.125, seed=42, block_steps=2)
    children = np.random.SeedSequence(42).spawn(4)
    for b, child in enumerate(children):
        xi = np.random.Generator(np.random.PCG64(child)).standard_normal((2, 7))
        np.testing.assert_array_equal(path.fine_increments(2 * b, 2 * b + 2), np.sqrt(0.125) * xi)


def test_white_increment_variance():
    """Var(dW) = dt: 200 000 samples, 99.9% two-sided chi-square band (about +-1.04% here)."""
    path = BrownianPath((1000,), 0.0, 2.0, 0.01, seed=3)
    x = path.fine_increments(0, 200).ravel() / np.sqrt(0.01)
    n = x.size
    assert abs(x.mean()) < 3.3 / np.sqrt(n)
    assert abs(x.var() - 1.0) < 3.3 * np.sqrt(2.0 / n)


def test_q_wiener_increment_covariance():
    """Empirical covariance of the increments = dt Q (6x6 grid, l = 2, 24 000 samples; each entry
    within 5 standard deviations sqrt((Q_ii Q_jj + Q_ij^2)/n) dt)."""
    dt = 0.5
    path = BrownianPath((3000, 6, 6), 0.0, 4.0, dt, seed=9, correlation_length=2.0)
    X = path.fine_increments(0, 8).reshape(-1, 36)
    n = X.shape[0]
    C = X.T @ X / n
    Q = QWienerNoise(2.0).dense_Q((6, 6))
    sd = dt * np.sqrt((np.outer(np.diag(Q), np.diag(Q)) + Q**2) / n)
    assert np.all(np.abs(C - dt * Q) < 5 * sd)


def test_grid_errors_name_the_parameter():
    path = BrownianPath((2,), 0.0, 1.0, 0.1, seed=0)
    with pytest.raises(ValueError, match="t_end"):
        path.increment(0.0, 0.05)
    with pytest.raises(ValueError, match="outside"):
        path.increment(0.0, 1.2)
    with pytest.raises(ValueError, match="t_end must be >= t_start"):
        path.increment(0.5, 0.2)
    with pytest.raises(ValueError, match="dt must divide"):
        BrownianPath((2,), 0.0, 1.0, 0.3)
    with pytest.raises(ValueError, match="H, W"):
        BrownianPath((5,), 0.0, 1.0, 0.1, correlation_length=1.0)


def test_simulate_uses_the_path():
    """simulate(..., brownian=path) equals a hand-written EM loop on path.increment, and two runs
    on the same path at different dt end close (same path), different seeds do not."""
    gbm = GeometricBrownianMotion(0.5, 0.7)
    u0 = np.ones(500)
    path = BrownianPath(u0.shape, 0.0, 1.0, 1 / 256, seed=1)
    traj = simulate(gbm, u0, 0.0, 1.0, 1 / 64, EulerMaruyama(), brownian=path, backend="numpy")
    u = u0.copy()
    for k in range(64):
        u = u + gbm.drift(0, u) / 64 + gbm.noise_term(0, u, path.increment(k / 64, (k + 1) / 64))
    np.testing.assert_array_equal(traj.final, u)
    fine = simulate(gbm, u0, 0.0, 1.0, 1 / 256, EulerMaruyama(), brownian=path, backend="numpy").final
    other_path = BrownianPath(u0.shape, 0, 1, 1 / 256, seed=2)
    other = simulate(gbm, u0, 0.0, 1.0, 1 / 256, EulerMaruyama(), brownian=other_path, backend="numpy").final
    exact = gbm.exact_solution(u0, path, 1.0)
    assert np.sqrt(np.mean((fine - exact) ** 2)) < 0.6 * np.sqrt(np.mean((traj.final - exact) ** 2))
    assert np.sqrt(np.mean((other - exact) ** 2)) > 0.5


# ---------------------------------------------------------------------- LinearGaussianPath


def test_residual_kernel_series_matches_direct_formula():
    x = np.array([-0.45, -0.3, -0.1, 0.0, 0.2, 0.45])
    K = residual_kernel(x, x)
    direct = expm1_ratio(x[:, None] + x[None, :]) - expm1_ratio(x)[:, None] * expm1_ratio(x)[None, :]
    np.testing.assert_allclose(K, direct, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.diag(K), ou_residual_variance(x), rtol=1e-12, atol=1e-18)
    # near 0 the series keeps the x y / 12 leading term where the direct difference has cancelled
    tiny = np.array([-1e-6, 1e-7])
    np.testing.assert_allclose(residual_kernel(tiny, tiny), np.outer(tiny, tiny) / 12, rtol=1e-5)
    assert residual_kernel(np.array([0.0]), np.array([-3.0]))[0, 0] == 0.0


@pytest.mark.parametrize("ell", [0.0, 2.0])
def test_joint_law_of_convolution_and_increment(ell):
    """(I, dB) on one step: Cov(I_j, dB_k) = M_jk h E(c_j h), Cov(I_j, I_k) = M_jk h E((c_j+c_k) h),
    Cov(dB) = h M; 4x4 grid, 32 000 samples, 5-sigma entrywise bounds."""
    heat = LinearHeatEquation(alpha1=3.0, alpha2=1.0, correlation_length=ell)
    h = 0.25
    path = heat.brownian_path((4000, 1, 4, 4), 0.0, 2.0, h, seed=4)
    dB = path.to_modes(path.fine_increments(0, 8)).reshape(-1, 16)
    conv = path.fine_increments(0, 8, "I").reshape(-1, 16)
    n = dB.shape[0]
    M = heat.mode_covariance((4, 4))
    M = np.eye(16) if M is None else M
    c = heat.mode_rates((4, 4)).ravel()
    targets = [
        (dB, dB, h * M),
        (conv, dB, h * M * expm1_ratio(c * h)[:, None]),
        (conv, conv, h * M * expm1_ratio((c[:, None] + c[None, :]) * h)),
    ]
    for A, B, T in targets:
        C = A.T @ B / n
        sd = np.sqrt((np.outer((A * A).mean(0), (B * B).mean(0)) + T**2) / n)
        assert np.all(np.abs(C - T) < 5 * sd + 1e-12)


def test_convolution_composes_exactly():
    """conv(t, t + 4h) = sum_n e^{c (t + 4h - t_{n+1})} I_n: equal to chaining one-step exact updates."""
    path = LinearGaussianPath((3, 5), 0.0, 1.0, 0.125, rates=np.array([0.0, -1.0, -4.0, -20.0, 2.0]), seed=2,
                              block_steps=3)
    z = np.zeros((3, 5))
    for k in range(4):
        z = path.decay(0.125) * z + path.convolution(k * 0.125, (k + 1) * 0.125)
    np.testing.assert_allclose(path.convolution(0.0, 0.5), z, rtol=1e-13, atol=1e-15)
    # the zero mode's convolution is its Brownian increment
    np.testing.assert_allclose(path.convolution(0.0, 0.5)[:, 0], path.increment(0.0, 0.5)[:, 0], rtol=1e-13)
