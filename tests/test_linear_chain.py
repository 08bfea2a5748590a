"""spdekit.linear: the exact Gaussian law of the linear Euler-Maruyama chain (eq. 13/17/25)."""

import numpy as np
import pytest

import spdekit
from spdekit import schedules as S
from spdekit.linear import LinearChain


def heat(stencil="conservative", ell=0.0, T=1.0):
    return spdekit.AnisotropicSPDE(
        alpha1=S.Geometric(0.5, 8.0, T), lambda1=float("inf"), alpha2=S.Geometric(0.05, 0.5, T),
        lambda2=float("inf"), correlation_length=ell, stencil=stencil,
    )


def dense_step(spde, t, dt, shape):
    """I + dt b(t, .) as a dense matrix, from the backend drift applied to unit vectors."""
    D = shape[0] * shape[1]
    E = np.eye(D).reshape(D, 1, *shape)
    cols = spde.drift(np.full(D, t), E, backend="numpy").reshape(D, D).T
    return np.eye(D) + dt * cols


@pytest.mark.parametrize("stencil", ["conservative", "paper"])
@pytest.mark.parametrize("ell", [0.0, 1.5])
def test_law_matches_dense_recursion(stencil, ell):
    """Mean operator and covariance against the dense recursion C+ = M C M^T + dt a2^2 Q, where
    M = I + dt b comes from the backend's own drift (no spectral formula involved)."""
    shape, dt, K = (5, 6), 0.01, 40
    spde = heat(stencil, ell)
    chain = LinearChain(spde, shape, dt, K)
    assert chain.diagonal == (stencil == "conservative" and ell == 0.0)
    Q = spde.noise.dense_Q(shape)
    D = 30
    A = np.eye(D)
    C = np.zeros((D, D))
    for k in range(K):
        t = k * dt
        M = dense_step(spde, t, dt, shape)
        A = M @ A
        C = M @ C @ M.T + dt * spde.alpha2(t) ** 2 * Q
        if k + 1 in (1, 17, K):
            np.testing.assert_allclose(chain.transfer_matrix(k + 1), A, atol=1e-12)
            np.testing.assert_allclose(chain.covariance(k + 1), C, rtol=1e-10, atol=1e-14)
    u0 = np.random.default_rng(0).standard_normal((3, 1) + shape)
    np.testing.assert_allclose(chain.mean(u0, K), (A @ u0.reshape(3, D).T).T.reshape(u0.shape), atol=1e-12)
    ks = np.array([0, 5, K])
    m = chain.mean(u0, ks)
    for i, k in enumerate(ks):
        np.testing.assert_allclose(m[i], chain.mean(u0[i], int(k)), atol=1e-12)


def test_mean_is_the_noiseless_chain():
    """E[u_k | u0] equals the chain run by spdekit.simulate with zero Wiener increments."""
    shape, dt, K = (8, 8), 2e-3, 250
    spde = heat("paper")
    u0 = np.random.default_rng(1).standard_normal(shape)
    traj = spdekit.simulate(spde, u0, 0.0, K * dt, dt, solver=spdekit.EulerMaruyama(),
                            brownian=np.zeros((K, 1, 1) + shape), backend="numpy")
    np.testing.assert_allclose(LinearChain(spde, shape, dt, K).mean(u0, K), traj.states[-1, 0, 0], atol=1e-12)


def frob_sampling_bound(C, n):
    """E ||C_hat - C||_F^2 for the sample covariance of n Gaussian draws (known mean)."""
    d = np.diag(C)
    return (np.outer(d, d) + C**2).sum() / n


@pytest.mark.parametrize("stencil,ell", [("conservative", 0.0), ("paper", 0.0), ("conservative", 2.0)])
def test_law_matches_monte_carlo(stencil, ell):
    """Monte Carlo with spdekit.simulate (EM, seed 3): the squared Frobenius error of the sample
    covariance stays below 2x its expectation E||C_hat - C||^2 (a chi-square-like sum over 2080
    entries concentrates tightly; failure probability far below 1e-6 for a correct law)."""
    shape, dt, K, n = (8, 8), 4e-3, 100, 3000
    spde = heat(stencil, ell, T=K * dt)
    chain = LinearChain(spde, shape, dt, K)
    u0 = np.random.default_rng(2).standard_normal(shape)
    traj = spdekit.simulate(spde, np.broadcast_to(u0, (n, 1) + shape).copy(), 0.0, K * dt, dt,
                            solver=spdekit.EulerMaruyama(), seed=3)
    x = traj.states[-1, :, 0].reshape(n, -1)
    m = chain.mean(u0, K).reshape(-1)
    C = chain.covariance(K)
    d = x - m
    C_hat = d.T @ d / n
    assert ((C_hat - C) ** 2).sum() < 2 * frob_sampling_bound(C, n)
    # the mean: each coordinate's z-score is N(0, 1); their mean square is chi2_64 / 64
    z = d.mean(0) / np.sqrt(np.diag(C) / n)
    assert np.mean(z**2) < 2.0
    # sampling from the law itself has the same covariance
    y = chain.sample(np.broadcast_to(u0, (n,) + shape), K, np.random.default_rng(4)).reshape(n, -1) - m
    assert ((y.T @ y / n - C) ** 2).sum() < 2 * frob_sampling_bound(C, n)


def test_propagate_gaussian_initial_law():
    shape, dt, K = (5, 6), 0.01, 30
    spde = heat("paper", 1.0)
    chain = LinearChain(spde, shape, dt, K)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((30, 30))
    C0 = B @ B.T / 30
    m0 = rng.standard_normal(shape)
    m, C = chain.propagate(m0, C0, K)
    A = chain.transfer_matrix(K)
    np.testing.assert_allclose(m.reshape(-1), A @ m0.reshape(-1), atol=1e-12)
    np.testing.assert_allclose(C, A @ C0 @ A.T + chain.covariance(K), atol=1e-12)


def test_accumulated_noise_is_pure_noise_variance():
    spde = spdekit.AnisotropicSPDE.pure_noise(S.Geometric(0.1, 2.0, 1.0), stencil="conservative")
    chain = LinearChain(spde, (4, 4), 0.01, 100)
    np.testing.assert_allclose(chain.mode_variances([100])[0], chain.accumulated_noise(100))


def test_bad_input():
    with pytest.raises(ValueError, match="linear SPDE"):
        LinearChain(spdekit.AnisotropicSPDE.paper_anisotropic(8), (8, 8), 1e-3, 10)
    with pytest.raises(ValueError, match="max_dense"):
        LinearChain(heat("paper"), (40, 40), 1e-3, 10)
    with pytest.raises(ValueError, match="stability bound"):
        LinearChain(heat("conservative"), (8, 8), 0.5, 10)
    chain = LinearChain(heat(), (8, 8), 1e-3, 10)
    with pytest.raises(ValueError, match=r"k must lie in \[0, 10\]"):
        chain.mean(np.zeros((8, 8)), 11)
    with pytest.raises(TypeError, match="integer"):
        chain.mean(np.zeros((8, 8)), 1.5)


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
def test_pure_noise_law_is_diagonal_whatever_the_stencil(stencil):
    """Pure noise (eq. 13, alpha1 = 0) with white noise: u_k = u_0 + sigma_k xi, Cov = sigma_k^2 I,
    handled by the diagonal (DCT-II) branch also for the paper stencil, whose DCT-I basis would
    otherwise make every covariance a dense D x D matrix (a regression: 11 s per VE training batch)."""
    spde = spdekit.AnisotropicSPDE.pure_noise(S.Geometric(0.01, 2.0, 1.0), stencil=stencil)
    law = LinearChain(spde, (6, 5), 0.01, 100)
    assert law.diagonal and law.basis == "conservative"
    u0 = np.random.default_rng(0).standard_normal((3, 1, 6, 5))
    k = np.array([1, 40, 100])
    np.testing.assert_allclose(law.mean(u0, k), u0, rtol=0, atol=1e-12)
    for kk in (1, 40, 100):
        s2 = law.accumulated_noise(kk)
        np.testing.assert_allclose(law.covariance(kk), s2 * np.eye(30), rtol=1e-12, atol=1e-15)


def test_linearised_spde_keeps_the_schedules():
    from spdekit import AnisotropicSPDE

    spde = AnisotropicSPDE.paper_anisotropic(16, correlation_length=1.5)
    lin = spde.linearised("conservative")
    t = np.linspace(0, 2, 7)
    assert lin.is_linear and not spde.is_linear and lin.stencil == "conservative"
    np.testing.assert_array_equal(lin.alpha1(t), spde.alpha1(t))
    np.testing.assert_array_equal(lin.alpha2(t), spde.alpha2(t))
    assert lin.correlation_length == 1.5 and lin.spacing == spde.spacing
