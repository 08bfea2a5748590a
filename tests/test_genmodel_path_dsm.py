"""The path-space score target (genmodel.path_dsm): exact DSM on linear chains, unbiased on the
nonlinear one (Stein's identity), pool, errors, training."""

import numpy as np
import pytest
import torch

from genmodel.data import load_digits
from genmodel.path_dsm import PathDSM, PathTargets
from genmodel.processes import SPDEProcess
from genmodel.train import make_loss


@pytest.fixture(scope="module")
def digits16():
    return load_digits(16)[:256].to(torch.float32)


def test_linear_chain_target_is_the_exact_dsm_target(digits16):
    """On the isotropic heat chain (conservative stencil: the linearised chain IS the chain) the path
    target equals -C_k^{-1}(u_k - A_k u_0) on the same path, at every k."""
    p = SPDEProcess.from_preset("paper_isotropic", 16, T=0.5, dt=1e-3, stencil="conservative")
    u0 = digits16[:12]
    k = np.array([1, 2, 5, 30, 100, 250, 400, 500, 500, 77, 3, 499])
    u, V = PathTargets(p, u0.shape).simulate(u0, k, np.random.default_rng(0))
    target = PathTargets(p, u0.shape).target(k, V, u).double()
    m = p.marginal(u0, k)
    exact = -torch.as_tensor(m.cov.solve((u - m.mean).double().numpy()))
    err = (target - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
    assert err.max() < 1e-4, err


def _div_drift(p, u, k):
    """div b(u) = tr D_u b per sample: the Jacobian diagonal by 9 complex-step probes (b_i depends on
    nodes at most 2 apart, so nodes 3 apart on both axes never share a stencil)."""
    from spdekit.backends import numpy_backend as nb
    co = p.spde.coefficients(np.full(u.shape[0], k * p.dt), u.shape[0])
    div = np.zeros(u.shape[0])
    for cy in range(3):
        for cx in range(3):
            v = np.zeros_like(u)
            v[..., cy::3, cx::3] = 1
            jv = nb.drift(u + 1e-30j * v, co["alpha1"], co["inv_lam1"], p.spde.stencil).imag / 1e-30
            div += (jv * v).sum((1, 2, 3))
    return nb.drift(u, co["alpha1"], co["inv_lam1"], p.spde.stencil), div


def test_stein_identity_on_the_anisotropic_chain(digits16):
    """Stein's identity E[s_k(u_k) . phi(u_k)] = -E[div phi(u_k)], with phi the drift b(t_k, .) (the
    nonlinear part) and phi(u) = u^3 pixelwise, holds for the path target of the NONLINEAR chain at
    k = 1000 (t = 1): 256 paths, each statistic within 4 standard errors of 0 (two-sided, p = 6e-5
    per statistic under the null; fixed seed). Power: the same target without the adjoint correction
    (the linearised chain's formula on the same nonlinear paths) is biased and must fail by > 8
    standard errors (measured, stop 16: z = 30-40 at k = 1000-1500 against |z| < 2 for the path target)."""
    p = SPDEProcess.from_preset("paper_anisotropic", 16, T=2.0, dt=1e-3)
    k, n = 1000, 256
    u0 = digits16[torch.arange(n) % digits16.shape[0]]
    paths = PathTargets(p, u0.shape)
    u, V = paths.simulate(u0, k, np.random.default_rng(1))
    ud = u.double().numpy()
    b, div_b = _div_drift(p, ud, k)

    def z(target, phi, div):
        stat = (target.double().numpy() * phi).sum((1, 2, 3)) + div
        return float(stat.mean() / (stat.std() / np.sqrt(n)))

    tau = paths.target(np.full(n, k), V, u)
    assert abs(z(tau, b, div_b)) < 4
    assert abs(z(tau, ud**3, 3 * (ud**2).sum((1, 2, 3)))) < 4

    uncorrected = PathTargets(p, u0.shape)
    uncorrected.process = _LinearVJP(p)
    u2, V2 = uncorrected.simulate(u0, k, np.random.default_rng(1))
    assert torch.equal(u2, u)  # the same paths
    assert abs(z(uncorrected.target(np.full(n, k), V2, u2), b, div_b)) > 8


class _LinearVJP:
    """A process whose drift adjoint is that of the linearised (isotropic, conservative) drift."""

    def __init__(self, p):
        self.p = p
        self.dt = p.dt

    def __getattr__(self, name):
        return getattr(self.p, name)

    def drift_vjp(self, k, u, w):
        lin = self.p.spde.linearised("conservative")
        t = np.asarray(k, dtype=np.float64) * self.p.dt
        return torch.as_tensor(lin.drift_vjp(t, u.numpy(), w.numpy()))


def test_pool_draws_and_restores(digits16):
    p = SPDEProcess.from_preset("paper_anisotropic", 16, T=0.1, dt=1e-3)
    loss = make_loss("path", p, digits16, np.random.default_rng(2), pool_size=32, pool_advance=3)
    assert isinstance(loss, PathDSM)
    k, u, target = loss.pool.draw(16, np.random.default_rng(3))
    assert k.min() >= 1 and k.max() <= p.n_steps and u.shape == target.shape == (16, 1, 16, 16)
    state = loss.state_dict()
    other = make_loss("path", p, digits16, np.random.default_rng(9), pool_size=32, pool_advance=3)
    other.load_state_dict(state)
    a = loss.pool.draw(8, np.random.default_rng(4))
    b = other.pool.draw(8, np.random.default_rng(4))
    assert all(torch.equal(x, y) for x, y in zip(a[1:], b[1:])) and np.array_equal(a[0], b[0])
    # a chain that reaches K restarts from a fresh image with its running sum cleared
    loss.pool.k[0], loss.pool.V[0] = p.n_steps, 1e9
    loss.pool.advance = 1
    loss.pool.draw(4, np.random.default_rng(5))
    assert loss.pool.k[0] == 1 and float(loss.pool.V[0].abs().max()) < 1
    with pytest.raises(ValueError, match="k >= 1"):
        loss.loss_at(lambda t, x: x, digits16[:2], 0, np.random.default_rng(0))


def test_errors_name_the_restriction(digits16):
    rng = np.random.default_rng(0)
    tamed = SPDEProcess.from_preset("paper_anisotropic", 16, T=0.1, dt=1e-3,
                                    solver={"solver": "tamed_euler_maruyama", "gamma": 1.0})
    with pytest.raises(ValueError, match="untamed"):
        make_loss("path", tamed, digits16, rng, pool_size=4)
    corr = SPDEProcess.from_preset("paper_anisotropic", 16, T=0.1, dt=1e-3, correlation_length=2.0)
    with pytest.raises(ValueError, match="additive white noise"):
        make_loss("path", corr, digits16, rng, pool_size=4)
    aniso = SPDEProcess.from_preset("paper_anisotropic", 16, T=0.1).spde.to_dict()
    mult = SPDEProcess.from_preset("custom", 16, T=0.1, dt=1e-3,
                                   spde=dict(aniso, lambda2={"schedule": "constant", "v": 0.5}))
    with pytest.raises(ValueError, match="additive white noise"):
        make_loss("path", mult, digits16, rng, pool_size=4)
