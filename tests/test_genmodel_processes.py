"""genmodel.SPDEProcess: the discretised chain through spdekit, its exact law for linear cases."""

import math

import numpy as np
import pytest
import torch

import spdekit
from genmodel import GaussianDataScore, SPDEProcess
from spdekit import schedules as S
from spdekit.random import NormalsLike


def heat_process(stencil="conservative", ell=0.0, T=0.2, dt=0.01):
    spde = spdekit.AnisotropicSPDE.paper_isotropic(8, T, stencil=stencil, correlation_length=ell)
    return SPDEProcess(spde, T, dt)


def test_simulate_is_spdekit_simulate():
    """Same increments, same path: the process runs spdekit's own chain (no re-implementation); its
    increments are sqrt(dt) Q^{1/2} xi with xi Philox normals keyed by the generator, one key per step."""
    spde = spdekit.AnisotropicSPDE.paper_anisotropic(8, 0.1)
    p = SPDEProcess(spde, 0.1, 1e-3)
    u0 = torch.rand(4, 1, 8, 8) * 2 - 1
    got = p.simulate(u0, p.n_steps, np.random.default_rng(7))
    g = np.random.default_rng(7)
    dW = np.stack([math.sqrt(p.dt) * spde.noise.sample(u0.shape, NormalsLike(g), np.float32)
                   for _ in range(p.n_steps)])
    ref = spdekit.simulate(spde, u0.numpy().copy(), 0.0, 0.1, 1e-3, solver=spdekit.EulerMaruyama(), brownian=dW)
    np.testing.assert_allclose(got.numpy(), ref.states[-1], rtol=1e-6, atol=1e-6)


def test_simulate_per_sample_step_index():
    p = heat_process("paper")
    u0 = torch.rand(3, 1, 8, 8)
    k = np.array([0, 5, 20])
    u = p.simulate(u0, k, np.random.default_rng(0))
    assert torch.equal(u[0], u0[0])  # k = 0: untouched
    # the sample stopped at k = 5 equals a 5-step run with the noise it drew: check its law via
    # the noiseless limit instead: alpha2 -> tiny makes it the deterministic mean
    spde = spdekit.AnisotropicSPDE(alpha1=2.0, lambda1=float("inf"), alpha2=1e-12, lambda2=float("inf"))
    q = SPDEProcess(spde, 0.2, 0.01)
    v = q.simulate(u0, k, np.random.default_rng(0))
    law = q.law((8, 8))
    for i, kk in enumerate(k):
        np.testing.assert_allclose(v[i, 0].numpy(), law.mean(u0[i, 0].double().numpy(), int(kk)), atol=1e-5)
    with pytest.raises(ValueError, match="step indices"):
        p.simulate(u0, p.n_steps + 1, np.random.default_rng(0))


@pytest.mark.parametrize("stencil,ell", [("conservative", 0.0), ("paper", 0.0), ("conservative", 2.0)])
def test_marginal_sample_and_target(stencil, ell):
    """u_k = mean + R xi with target -C^{-1}(u_k - mean), C the covariance of spdekit's exact law."""
    p = heat_process(stencil, ell)
    u0 = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    k = np.array([1, 7, 20])
    marg = p.marginal(u0, k)
    law = p.law((8, 8))
    for i, kk in enumerate(k):
        np.testing.assert_allclose(marg.mean[i, 0].numpy(), law.mean(u0[i, 0].numpy(), int(kk)), atol=1e-12)
    u, target = marg.sample(np.random.default_rng(1))
    for i, kk in enumerate(k):
        C = law.covariance(int(kk))
        d = (u[i, 0] - marg.mean[i, 0]).numpy().reshape(-1)
        np.testing.assert_allclose(target[i, 0].numpy().reshape(-1), -np.linalg.solve(C, d), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(marg.cov.dense(i), C, atol=1e-12)
    v = torch.randn(3, 1, 8, 8, dtype=torch.float64).numpy()
    np.testing.assert_allclose(marg.cov.solve(marg.cov.apply(v)), v, atol=1e-8)


def test_transition_is_one_chain_step():
    """mean + eps of the transition equals the solver step with the same Wiener increment."""
    spde = spdekit.AnisotropicSPDE(alpha1=1.0, lambda1=0.3, alpha2=0.5, lambda2=0.4)
    p = SPDEProcess(spde, 0.1, 1e-3, solver=spdekit.TamedEulerMaruyama())
    u = torch.randn(4, 1, 8, 8)
    k = np.array([0, 3, 50, 99])
    tr = p.transition(k, u, np.random.default_rng(3))
    dW = p.wiener_increment(u, np.random.default_rng(3)).numpy()
    ref, _ = p.solver.step(spde, k * p.dt, u.numpy().copy(), p.dt, dW, backend="numpy")
    np.testing.assert_allclose(tr.next.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_gaussian_data_score_is_the_gradient_of_the_log_density():
    p = heat_process("paper", 1.0)
    rng = np.random.default_rng(4)
    B = rng.standard_normal((64, 64))
    C0 = 0.05 * B @ B.T / 64 + 0.01 * np.eye(64)
    m0 = rng.standard_normal((8, 8))
    score = GaussianDataScore(p, m0, C0)
    k = 9
    m, C = p.law((8, 8)).propagate(m0, C0, k)
    u = torch.as_tensor(rng.standard_normal((2, 1, 8, 8)))
    s = score(torch.full((2,), k * p.dt), u).numpy().reshape(2, -1)

    def logp(x):
        d = x - m.reshape(-1)
        return -0.5 * d @ np.linalg.solve(C, d)

    x = u[0, 0].numpy().reshape(-1)
    fd = np.array([(logp(x + 1e-6 * e) - logp(x - 1e-6 * e)) / 2e-6 for e in np.eye(64)])
    np.testing.assert_allclose(s[0], fd, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="chain times"):
        score(torch.full((2,), 0.5 * p.dt), u)


def test_process_errors_and_serialisation():
    p = SPDEProcess.from_preset("paper_anisotropic", 16, T=2.0, dt=1e-3)
    assert not p.is_linear and p.n_steps == 2000
    with pytest.raises(ValueError, match="no closed-form law"):
        p.marginal(torch.zeros(1, 1, 16, 16), 3)
    q = SPDEProcess.from_dict(p.to_dict())
    assert q.to_dict() == p.to_dict()
    with pytest.raises(ValueError, match="preset"):
        SPDEProcess.from_preset("nope", 16)
    with pytest.raises(ValueError, match="whole steps"):
        SPDEProcess.from_preset("paper_isotropic", 16, T=1.0, dt=0.3)
    with pytest.raises(ValueError, match="alpha2 must be > 0"):
        SPDEProcess(spdekit.AnisotropicSPDE(alpha1=1.0, lambda1=1.0, alpha2=0.0, lambda2=1.0), 1.0, 0.01)
    lin = SPDEProcess(spdekit.AnisotropicSPDE.pure_noise(S.Geometric(0.01, 1.0, 1.0)), 1.0, 0.01)
    assert lin.is_linear
    assert not SPDEProcess(lin.spde, 1.0, 0.01, solver=spdekit.TamedEulerMaruyama()).is_linear
