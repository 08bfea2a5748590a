"""genmodel.sample with exact scores: the reverse SDE reproduces Gaussian data (issue acceptance).

Gaussian data N(m, C) on 8x8 (C: exponential covariance, length 2, sd 0.3), the isotropic heat
chain (eq. 17, paper_isotropic(8) schedules on T = 1, conservative stencil: the law is diagonal in
DCT-II for white noise, dense for l = 2), exact chain score (GaussianDataScore) and the exact
Gaussian prior of U_T. n = 16384 samples: the sampling error of the covariance alone is about 3%
(computed below from E||C_hat - C||_F^2 = sum_ij (C_ii C_jj + C_ij^2) / n).
"""

import numpy as np
import pytest
import torch

import spdekit
from genmodel import GaussianDataScore, GaussianPrior, SPDEProcess, residual_dependence, sample

H = 8
N_SAMPLES = 16384


def gaussian_problem():
    yy, xx = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    m = 0.5 * np.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 8) - 0.2
    d = np.hypot(yy.ravel()[:, None] - yy.ravel()[None], xx.ravel()[:, None] - xx.ravel()[None])
    return m, 0.09 * np.exp(-d / 2.0)


def heat(dt, ell=0.0, T=1.0):
    spde = spdekit.AnisotropicSPDE.paper_isotropic(H, T, stencil="conservative", correlation_length=ell)
    return SPDEProcess(spde, T, dt)


def run_exact(dt, ell, seed=0):
    m, C = gaussian_problem()
    p = heat(dt, ell)
    prior = GaussianPrior.from_moments(*p.law((H, H)).propagate(m, C, p.n_steps))
    x = sample(p, GaussianDataScore(p, m, C), N_SAMPLES, prior=prior, seed=seed, dtype=torch.float64)
    x = x.numpy().reshape(N_SAMPLES, -1)
    C_hat = np.cov(x.T)
    err_C = np.linalg.norm(C_hat - C) / np.linalg.norm(C)
    d = np.diag(C)
    sampling = np.sqrt((np.outer(d, d) + C**2).sum() / N_SAMPLES) / np.linalg.norm(C)
    err_m = np.linalg.norm(x.mean(0) - m.ravel()) / np.linalg.norm(m)
    # squared error minus its expected sampling part: an estimate of the discretisation bias
    bias_C = np.sqrt(max(err_C**2 - sampling**2, 0.0))
    print(f"dt={dt} l={ell}: rel. Frobenius error of C {err_C:.4f} (sampling alone ~{sampling:.4f}, "
          f"bias estimate {bias_C:.4f}), rel. error of the mean {err_m:.4f}")
    return err_C, err_m, bias_C, sampling


@pytest.mark.slow
def test_exact_score_white_noise_and_dt_halving():
    err_C, err_m, bias_C, sampling = run_exact(0.01, 0.0)
    assert 0.02 < sampling < 0.06
    assert err_C < 0.10
    err_C2, err_m2, bias_C2, _ = run_exact(0.005, 0.0)
    assert err_C2 < 0.10
    # the discretisation error shrinks with dt: the mean error (sampling part ~1%) and the bias
    # estimate of the covariance error both decrease when dt halves
    assert err_m2 < 0.75 * err_m
    assert bias_C2 < bias_C


@pytest.mark.slow
def test_exact_score_q_wiener_noise():
    err_C, err_m, _, _ = run_exact(0.01, 2.0)
    assert err_C < 0.10
    assert err_m < 0.10


def test_prior_fit_is_exact_for_linear_chains():
    """GaussianPrior.fit on a linear chain: A_T C_hat A_T^T + Cov[U_T | U_0] with the empirical
    moments of the data, i.e. spdekit's propagate of those moments."""
    m, C = gaussian_problem()
    p = heat(0.01, 1.0, T=0.2)
    rng = np.random.default_rng(0)
    data = torch.as_tensor((m.ravel() + rng.standard_normal((500, 64)) @ np.linalg.cholesky(C).T)
                           .reshape(500, 1, H, H))
    prior = GaussianPrior.fit(p, data)
    x = data.numpy().reshape(500, -1)
    mT, CT = p.law((H, H)).propagate(x.mean(0).reshape(H, H), np.cov(x.T), p.n_steps)
    np.testing.assert_allclose(prior.mean[0], mT, atol=1e-10)
    np.testing.assert_allclose(prior.factor @ prior.factor.T, CT, atol=1e-10)


def test_sampler_options_and_errors():
    m, C = gaussian_problem()
    p = heat(0.01, T=0.2)
    score = GaussianDataScore(p, m, C)
    data = torch.as_tensor(np.broadcast_to(m, (8, 1, H, H)).copy())
    a = sample(p, score, 6, prior="forward", data=data, seed=3, corrector_steps=0)
    b = sample(p, score, 6, prior="forward", data=data, seed=3, corrector_steps=0)
    assert a.shape == (6, 1, H, H) and torch.equal(a, b)  # seeded
    c = sample(p, score, 6, data=data, seed=3, batch_size=4)  # gaussian prior fitted from data, chunks
    assert torch.isfinite(c).all()
    with pytest.raises(ValueError, match="prior_stats"):
        sample(p, score, 4)
    with pytest.raises(ValueError, match="forward"):
        sample(p, score, 4, prior="forward")
    with pytest.raises(ValueError, match="prior must be"):
        sample(p, score, 4, prior="uniform", data=data)
    bad = data.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sample(p, score, 4, data=bad)
    with pytest.raises(ValueError, match="shape"):
        sample(p, lambda t, u: torch.zeros(3), 4, data=data)
    with pytest.raises(FloatingPointError, match="non-finite"):
        sample(p, lambda t, u: torch.full_like(u, float("nan")), 4, data=data, corrector_steps=0)


def test_residual_dependence_linear_exact_vs_monte_carlo():
    """Section 4.3 diagnostic: the Monte Carlo estimate (two independent forward runs per image)
    agrees with the exact ratio of the linear chain; the conserved mean mode keeps everything
    (fraction 1 for mode (0, 0) with the conservative stencil up to the noise it receives)."""
    m, C = gaussian_problem()
    p = heat(0.01, T=1.0)
    rng = np.random.default_rng(1)
    data = torch.as_tensor((m.ravel() + rng.standard_normal((2000, 64)) @ np.linalg.cholesky(C).T)
                           .reshape(2000, 1, H, H), dtype=torch.float32)
    r = residual_dependence(p, data, seed=2)
    assert abs(r["fraction"] - r["exact"]) < 0.05
    assert r["per_mode"][0, 0, 0] > r["per_mode"][0, -1, -1]
