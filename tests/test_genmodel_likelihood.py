"""Likelihoods through the probability-flow ODE (genmodel.likelihood; issue 22).

Gaussian data N(m, C) on a 3x3 grid, a linear chain, the exact chain score and the exact prior: the
flow's NLL equals the analytic -log2 N(x; m, C) / D (the ODE carries the chain's marginals: the
correction of spdekit.reference.ChainFlow), and Hutchinson's estimate agrees with the exact divergence
within its standard error."""

import math

import numpy as np
import pytest
import torch

import spdekit
from genmodel import GaussianPrior, SPDEProcess
from genmodel.exact import GaussianDataScore
from genmodel.likelihood import log_likelihood

H = 3


def problem(chain):
    T, dt = 1.0, 1 / 256
    spde = (spdekit.AnisotropicSPDE.paper_isotropic(H, T, stencil=chain) if chain != "ve"
            else spdekit.AnisotropicSPDE.pure_noise(spdekit.schedules.Geometric(0.01, 1.0, T)))
    p = SPDEProcess(spde, T, dt)
    yy, xx = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    d = np.hypot(yy.ravel()[:, None] - yy.ravel()[None], xx.ravel()[:, None] - xx.ravel()[None])
    m = 0.3 * np.cos(yy + xx)
    C = 0.05 * np.exp(-d / 1.5)
    prior = GaussianPrior.from_moments(*p.law((H, H)).propagate(m, C, p.n_steps))
    return p, GaussianDataScore(p, m, C), prior, m, C


@pytest.mark.parametrize("chain", ["conservative", "paper", "ve"])
def test_flow_nll_is_the_analytic_nll_on_gaussian_data(chain):
    p, score, prior, m, C = problem(chain)
    n = 64
    L = np.linalg.cholesky(C)
    x = m.ravel() + np.random.default_rng(1).standard_normal((n, H * H)) @ L.T
    y = np.linalg.solve(L, (x - m.ravel()).T)
    nats = 0.5 * (y**2).sum(0) + np.log(np.diag(L)).sum() + 0.5 * H * H * math.log(2 * math.pi)
    true = nats / (H * H * math.log(2))
    xt = torch.as_tensor(x.reshape(n, 1, H, H))
    exact, det = log_likelihood(p, score, xt, exact_trace=True, prior=prior, dtype=torch.float64, details=True)
    assert abs(exact.mean() - true.mean()) < 0.01
    assert np.abs(exact - true).max() < 0.03
    assert det["dims"] == H * H and np.isfinite(det["divergence_integral"]).all()
    hutch = log_likelihood(p, score, xt, seed=3, prior=prior, dtype=torch.float64)
    d = hutch - exact
    assert abs(d.mean()) < 4 * d.std(ddof=1) / math.sqrt(n)
    assert d.std() > 0  # it is an estimate


def test_likelihood_errors():
    p, score, prior, m, C = problem("conservative")
    x = torch.zeros(2, 1, H, H, dtype=torch.float64)
    with pytest.raises(ValueError, match="prior="):
        log_likelihood(p, score, x)
    with pytest.raises(ValueError, match="differentiable"):
        log_likelihood(p, lambda t, u: score(t, u).detach(), x, prior=prior, dtype=torch.float64,
                       reference=score.gaussian_reference())
    with pytest.raises(ValueError, match="steps must lie"):
        log_likelihood(p, score, x, prior=prior, steps=1000, dtype=torch.float64)
    mult = SPDEProcess(spdekit.AnisotropicSPDE(alpha1=1.0, lambda1=0.1, alpha2=0.5, lambda2=0.3), 1.0, 1 / 256)
    with pytest.raises(ValueError, match="additive"):
        log_likelihood(mult, score, x, prior=prior)
