"""genmodel.losses: exact-Gaussian DSM and the one-step transition loss with its antithetic control
variate; unbiasedness, variance, and the learned-score comparison of the issue."""

import numpy as np
import pytest
import torch

import spdekit
from genmodel import GaussianDataScore, SPDEProcess
from genmodel.losses import ExactGaussianDSM, TransitionDSM
from genmodel.networks import ScoreModel, UNet, UNetConfig
from genmodel.train import EMA, make_loss

H = 8


def gaussian_data(n, seed=0):
    yy, xx = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    m = 0.5 * np.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 8) - 0.2
    d = np.hypot(yy.ravel()[:, None] - yy.ravel()[None], xx.ravel()[:, None] - xx.ravel()[None])
    C = 0.09 * np.exp(-d / 2.0)
    x = m.ravel() + np.random.default_rng(seed).standard_normal((n, H * H)) @ np.linalg.cholesky(C).T
    return m, C, torch.as_tensor(x.reshape(n, 1, H, H), dtype=torch.float32)


def heat(T=1.0, dt=0.01, ell=0.0):
    return SPDEProcess(spdekit.AnisotropicSPDE.paper_isotropic(H, T, stencil="conservative", correlation_length=ell),
                       T, dt)


class Shifted(torch.nn.Module):
    """s(t_k, u) = exact(t_k, u) + delta, delta = beta u / sigma_k^power: a model with a known excess
    loss E lambda_k |delta|^2 / D (delta is linear in u at each time)."""

    def __init__(self, exact, beta, power=2.0):
        super().__init__()
        self.exact, self.beta, self.power = exact, beta, power

    def delta(self, k, u):
        s2 = torch.as_tensor(self.exact.process.sigma2[k], dtype=u.dtype)[:, None, None, None]
        return self.beta * u / s2 ** (self.power / 2)

    def forward(self, t, u):
        k = np.rint(t.numpy().astype(np.float64) / self.exact.process.dt).astype(np.int64)
        return self.exact(torch.as_tensor(k * self.exact.process.dt), u.double()).float() + self.delta(k, u)


@pytest.mark.parametrize("ell", [0.0, 1.5])
def test_transition_loss_is_unbiased(ell):
    """L(s* + delta) - L(s*) = E lambda |delta|_Q^2 / D for delta linear in u: the cross term (which
    carries the 1/dt-sized target) must cancel exactly against Stein's identity E[delta . s*] =
    -E[div delta]. The same transitions are used for both models (common random numbers); the
    check is a z-test at 5 standard errors on 20 independent batches of 512."""
    p = heat(T=0.5, dt=0.01, ell=ell)
    m, C, data = gaussian_data(2000)
    exact = GaussianDataScore(p, m, C)
    loss = TransitionDSM(p, data, 4096, np.random.default_rng(0))
    diffs, expected = [], []
    rng = np.random.default_rng(1)
    lam_fn = torch.as_tensor(p.sigma2, dtype=torch.float32)
    for _ in range(20):
        tr = loss.pool.draw(512, rng)
        l0 = loss.loss_on(Shifted(exact, 0.0), tr)
        shifted = Shifted(exact, 0.05)
        l1 = loss.loss_on(shifted, tr)
        dp, dm = shifted.delta(tr.k + 1, tr.mean + tr.eps), shifted.delta(tr.k + 1, tr.mean - tr.eps)
        lam = lam_fn[tr.k + 1]
        # the metric is M = Q (identity for white noise): excess = lambda delta^T Q delta / D
        qdp = torch.as_tensor(p.spde.noise.apply_Q(dp.numpy()), dtype=dp.dtype)
        qdm = torch.as_tensor(p.spde.noise.apply_Q(dm.numpy()), dtype=dm.dtype)
        ex = (lam * 0.5 * (dp * qdp + dm * qdm).flatten(1).sum(1)).mean() / 64
        diffs.append(float(l1 - l0))
        expected.append(float(ex))
    d = np.array(diffs) - np.array(expected)
    assert abs(d.mean()) < 5 * d.std(ddof=1) / np.sqrt(len(d)) + 1e-3 * np.mean(expected)
    assert np.mean(expected) > 0.05  # the perturbation is not negligible


@pytest.mark.parametrize("k", [3, 40])
def test_exact_loss_at_a_given_step(k):
    """ExactGaussianDSM.loss_at(model, u0, k) scores step k only: with common random numbers,
    L(s* + delta) - L(s*) = lambda_k (|delta|^2 + 2 delta . (s* - target)) / D, whose mean over u_k is
    lambda_k E|delta|^2 / D at THIS k (E[target | u_k] = s*); z-test at 5 standard errors on 20
    batches of 512. __call__ is loss_at at the drawn images and steps (same draws, same value)."""
    p = heat(T=0.5, dt=0.01)
    m, C, data = gaussian_data(2000)
    exact = GaussianDataScore(p, m, C)
    loss = ExactGaussianDSM(p, data)
    shifted = Shifted(exact, 0.05)
    rng = np.random.default_rng(4)
    d, expected = [], []
    for _ in range(20):
        u0 = data[torch.as_tensor(rng.integers(0, 2000, 512))]
        seed = int(rng.integers(1 << 31))
        l0 = loss.loss_at(Shifted(exact, 0.0), u0, k, np.random.default_rng(seed))
        l1 = loss.loss_at(shifted, u0, k, np.random.default_rng(seed))
        u, _ = p.marginal(u0, np.full(512, k)).sample(np.random.default_rng(seed))
        delta = shifted.delta(np.full(512, k), u)
        expected.append(float(p.sigma2[k] * delta.square().flatten(1).sum(1).mean() / 64))
        d.append(float(l1 - l0) - expected[-1])
    d = np.array(d)
    assert abs(d.mean()) < 5 * d.std(ddof=1) / np.sqrt(len(d))
    assert np.mean(expected) > 0.02  # the perturbation is not negligible
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    u0 = data[torch.as_tensor(b.integers(0, 2000, 16))]
    ks = b.integers(1, p.n_steps + 1, 16)
    assert loss(shifted, 16, a).item() == loss.loss_at(shifted, u0, ks, b).item()


def test_pool_advance_moves_every_chain_and_restarts():
    """advance = 3: every chain moves 3 steps per draw (restarting at k = 0 from data after K), the
    transitions come from the third step, and the stationary step index stays uniform on {0..K-1}."""
    p = heat(T=0.2, dt=0.01)  # K = 20
    _, _, data = gaussian_data(64)
    rng = np.random.default_rng(0)
    loss = TransitionDSM(p, data, 256, rng, pool_advance=3)
    pool = loss.pool
    K = p.n_steps
    ks = []
    for _ in range(40):
        k_before = pool.k.copy()
        expect = k_before.copy()
        for _ in range(2):
            expect = np.where(expect + 1 >= K, 0, expect + 1)
        tr = pool.draw(pool.size, rng)  # every chain, in random order
        np.testing.assert_array_equal(np.sort(tr.k), np.sort(expect))  # transitions from the third step
        after = np.where(expect + 1 >= K, 0, expect + 1)
        np.testing.assert_array_equal(pool.k, after)
        # the chains that did not restart now hold the returned transitions' next states
        moved = {tuple(r) for r in (tr.mean + tr.eps)[torch.as_tensor(tr.k < K - 1)].flatten(1).tolist()}
        kept = {tuple(r) for r in pool.u[torch.as_tensor(after > 0)].flatten(1).tolist()}
        assert moved == kept
        assert torch.isfinite(pool.u).all()
        ks.append(pool.k.copy())
    ks = np.concatenate(ks)
    # uniform on {0..K-1}: mean (K-1)/2, sd of a uniform / sqrt(n) is tiny, chains are correlated: loose
    assert abs(ks.mean() - (K - 1) / 2) < 1.0
    assert np.bincount(ks, minlength=K).min() > 0
    with pytest.raises(ValueError, match="advance"):
        TransitionDSM(p, data, 8, rng, pool_advance=0)


def test_antithetic_control_variate_cuts_the_variance():
    """What drives training is how the loss separates two models, L(s* + delta) - L(s*). Its
    batch-to-batch variance with the plain one-step target (cross term of size 1/sqrt(dt)) against
    the antithetic pair, on the same transitions. With dt = 1e-3 the noise added in one step is
    1/64 of the accumulated variance sigma_k^2 (geometric alpha2), so the plain cross term is about
    8 times larger than the score term; the antithetic pair removes it."""
    p = heat(T=0.5, dt=1e-3)
    m, C, data = gaussian_data(2000)
    exact = GaussianDataScore(p, m, C)
    base, shifted = Shifted(exact, 0.0, 1.0), Shifted(exact, 0.3, 1.0)
    anti = TransitionDSM(p, data, 2048, np.random.default_rng(0))
    plain = TransitionDSM(p, data, 2048, np.random.default_rng(0), antithetic=False)
    rng = np.random.default_rng(2)
    da, dp = [], []
    for _ in range(30):
        tr = anti.pool.draw(64, rng)
        da.append(float(anti.loss_on(shifted, tr) - anti.loss_on(base, tr)))
        dp.append(float(plain.loss_on(shifted, tr) - plain.loss_on(base, tr)))
    va, vp = np.var(da), np.var(dp)
    print(f"variance of L(s*+delta) - L(s*) per batch of 64: antithetic {va:.3g}, plain {vp:.3g}")
    assert va < vp / 20
    # both estimate the same excess loss (plain with a far larger error bar)
    assert abs(np.mean(da) - np.mean(dp)) < 5 * np.sqrt(vp / 30)


def test_multiplicative_branch_reduces_to_additive():
    """lambda2 huge: g2 = alpha2 (to rounding), so the multiplicative white-noise metric
    diag(g2^2)/alpha2^2 is the identity and both branches give the same loss."""
    kw = dict(alpha1=1.0, lambda1=0.5, alpha2=spdekit.schedules.Geometric(0.1, 1.0, 0.2))
    add = SPDEProcess(spdekit.AnisotropicSPDE(lambda2=float("inf"), **kw), 0.2, 0.01)
    mul = SPDEProcess(spdekit.AnisotropicSPDE(lambda2=1e9, **kw), 0.2, 0.01)
    _, _, data = gaussian_data(64)
    la = TransitionDSM(add, data, 64, np.random.default_rng(0))
    lm = TransitionDSM(mul, data, 64, np.random.default_rng(0))
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), groups=4))
    model = ScoreModel.for_process(net, add)
    tr = la.pool.draw(16, np.random.default_rng(1))
    np.testing.assert_allclose(la.loss_on(model, tr).item(), lm.loss_on(model, tr).item(), rtol=1e-4)
    with pytest.raises(NotImplementedError, match="Q\\^\\{-1\\}"):
        TransitionDSM(SPDEProcess(spdekit.AnisotropicSPDE(lambda2=1.0, correlation_length=1.0, **kw), 0.2, 0.01),
                      data, 8, np.random.default_rng(0))


def test_make_loss_choices():
    p = heat(T=0.2)
    _, _, data = gaussian_data(32)
    rng = np.random.default_rng(0)
    assert isinstance(make_loss("auto", p, data, rng), ExactGaussianDSM)
    assert isinstance(make_loss("transition", p, data, rng, pool_size=8), TransitionDSM)
    nl = SPDEProcess.from_preset("paper_anisotropic", 8, T=0.2, dt=0.01)
    assert isinstance(make_loss("auto", nl, data, rng, pool_size=8), TransitionDSM)
    with pytest.raises(ValueError, match="linear chain"):
        make_loss("exact", nl, data, rng)
    with pytest.raises(ValueError, match="loss must be"):
        make_loss("fancy", p, data, rng)


def relative_score_error(model, p, exact, data, n=4096, seed=123):
    """E lambda_k |s - s*|^2 / E lambda_k |s*|^2 over k ~ U{1..K}, u ~ p_k (exact law)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(1, p.n_steps + 1, n)
    u0 = data[torch.as_tensor(rng.integers(0, data.shape[0], n))]
    u = p.marginal(u0, k).sample(rng)[0]
    with torch.no_grad():
        s = model(torch.as_tensor(k * p.dt, dtype=torch.float32), u)
    se = exact(torch.as_tensor(k * p.dt), u)
    lam = torch.as_tensor(p.sigma2[k], dtype=torch.float32)
    return float((lam * (s - se).square().flatten(1).sum(1)).mean() / (lam * se.square().flatten(1).sum(1)).mean())


@pytest.mark.slow
def test_learned_score_transition_within_2x_of_exact():
    """Issue acceptance: the same network trained for the same number of steps (400, batch 64,
    Adam 2e-3, EMA 0.99) with the exact-Gaussian loss and with the transition loss (which only
    sees simulated chain steps, not told the process is linear). The EMA model's relative score
    error of the transition-trained network is within 2x of the exact-trained one. The plain
    parameterisation s = F / sigma is used: with the Gaussian reference (the default) the reference
    is nearly exact for this linear Gaussian problem and both errors drop to ~5e-4."""
    torch.set_num_threads(1)
    p = heat(T=1.0, dt=0.01)
    m, C, data = gaussian_data(4096)
    exact = GaussianDataScore(p, m, C)
    errors = {}
    for name in ("exact", "transition"):
        torch.manual_seed(0)
        net = UNet(UNetConfig(image_size=8, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                              groups=8, dropout=0.0, score_param="plain"))
        model = ScoreModel.for_process(net, p, data=data)
        ema = EMA(model, 0.99)
        rng = np.random.default_rng(1)
        loss = make_loss(name, p, data, rng, pool_size=1024)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(400):
            value = loss(model, 64, rng)
            opt.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema.update(model)
        errors[name] = relative_score_error(ema.shadow, p, exact, data)
    print(f"relative score error after 400 steps: exact loss {errors['exact']:.4f}, "
          f"transition loss {errors['transition']:.4f} (ratio {errors['transition'] / errors['exact']:.2f})")
    assert errors["exact"] < 0.1
    assert errors["transition"] < 2 * errors["exact"]
