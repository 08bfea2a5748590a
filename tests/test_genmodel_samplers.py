"""The samplers (genmodel.samplers, spdekit.reverse.ReverseSDE, spdekit.reference; issue 22).

* "em" with the old arguments returns the same samples, bit for bit, as the loop it replaced (a literal
  transcription of that loop is kept here as the reference);
* every predictor's single step equals its closed form, written out mode by mode, on a chain whose
  DCT-II modes are independent 1-D Gaussians (conservative stencil, white noise, Gaussian data with
  independent modes and the exact score);
* the exponential predictor is exact in law for any step count there (a statistical test);
* the chain's probability flow carries the chain's covariances (Lyapunov check, both stencils);
* sample, SDEdit and the CLI all go through the one loop (genmodel.samplers.reverse_loop).
"""

import math

import numpy as np
import pytest
import torch

import genmodel.samplers as samplers
import spdekit
from genmodel import GaussianPrior, SPDEProcess, sample
from genmodel.bridge import from_torch, to_torch
from genmodel.exact import GaussianDataScore
from genmodel.stroke import sdedit_spde
from spdekit.linear import LinearChain, _basis_matrices
from spdekit.random import NormalsLike
from spdekit.reference import ChainFlow
from spdekit.reverse import reverse_drift
from spdekit.spectral import from_modes, laplacian_eigenvalues, to_modes


# ------------------------------------------------------------------ the old loop, transcribed (commit 0ed27b8)
def _old_langevin(score_fn, t, u, snr, gen):
    tt = torch.full((u.shape[0],), t, dtype=u.dtype)
    s = score_fn(tt, u).to(u.dtype).contiguous()
    z = torch.randn(u.shape, generator=gen, dtype=u.dtype)
    s_norm = s.reshape(u.shape[0], -1).norm(dim=-1).mean()
    z_norm = z.reshape(u.shape[0], -1).norm(dim=-1).mean()
    eps = 2.0 * (snr * z_norm / s_norm) ** 2
    return u + eps * s + torch.sqrt(2.0 * eps) * z


def _old_predictor(process, score_fn, t, delta, u, rng, add_noise=True):
    B = u.shape[0]
    tt = torch.full((B,), t, dtype=u.dtype)
    s = score_fn(tt, u).to(u.dtype).contiguous()
    t_coef = np.full(B, max(t - delta, 0.0))
    spde = process.spde
    un = from_torch(u.detach().contiguous())
    bbar = reverse_drift(spde, t_coef, un, from_torch(s.detach().contiguous()))
    out = un + delta * bbar
    if add_noise:
        # the chain's noise: Philox normals keyed by rng (spdekit.random.NormalsLike), as the predictor draws it
        dW = math.sqrt(delta) * spde.noise.sample(un.shape, NormalsLike(rng, un), un.dtype)
        out = out + spde.noise_term(t_coef, un, dW)
    return to_torch(np.ascontiguousarray(out, dtype=un.dtype))


def _old_sample(process, score_fn, n, steps, corrector_steps, snr, prior, seed, batch_size, dtype):
    ss = np.random.SeedSequence(seed)
    chunks = []
    delta = process.T / steps
    for start, child in zip(range(0, n, batch_size), ss.spawn(math.ceil(n / batch_size))):
        m = min(batch_size, n - start)
        rng = np.random.default_rng(child)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        u = prior.sample(m, rng, dtype).contiguous()
        for i in range(steps):
            t = process.T - i * delta
            for _ in range(corrector_steps):
                u = _old_langevin(score_fn, t, u, snr, gen)
            u = _old_predictor(process, score_fn, t, delta, u, rng, add_noise=i < steps - 1)
        chunks.append(u)
    return torch.cat(chunks)


def _linear_score(shape, seed=0):
    """A fixed linear 'score' -(u - m) @ P (a stand-in network: deterministic, any state)."""
    g = np.random.default_rng(seed)
    D = int(np.prod(shape))
    A = g.standard_normal((D, D)) / np.sqrt(D)
    P = torch.as_tensor(np.eye(D) * 4.0 + 0.5 * (A + A.T))
    m = torch.as_tensor(g.standard_normal(D) * 0.1)

    def score(t, u):
        x = u.reshape(u.shape[0], -1).to(torch.float64)
        return (-(x - m) @ P * (1.0 + t.to(torch.float64)[:, None])).reshape(u.shape).to(u.dtype)

    return score


@pytest.mark.parametrize("case", ["heat_white", "anisotropic_multiplicative_correlated"])
def test_em_is_the_old_loop_bit_for_bit(case):
    H = 6
    if case == "heat_white":
        spde = spdekit.AnisotropicSPDE.paper_isotropic(H, 1.0, stencil="conservative")
    else:  # tr D_u Sigma != 0: multiplicative (lambda2 < inf) Q-Wiener noise, the paper stencil
        spde = spdekit.AnisotropicSPDE(alpha1=spdekit.schedules.Geometric(0.5, 12.0, 1.0), lambda1=0.1, alpha2=0.3,
                                       lambda2=0.2, correlation_length=1.0, stencil="paper")
    p = SPDEProcess(spde, 1.0, 0.01)
    prior = GaussianPrior(np.zeros((1, H, H)), np.eye(H * H) * 0.3)
    score = _linear_score((1, H, H))
    for steps, corr, batch in ((40, 1, 5), (25, 0, 3)):
        old = _old_sample(p, score, 7, steps, corr, 0.16, prior, 11, batch, torch.float32)
        new = sample(p, score, 7, steps=steps, corrector_steps=corr, prior=prior, seed=11, batch_size=batch)
        assert torch.equal(old, new)
    new = sample(p, score, 7, steps=25, corrector="none", prior=prior, seed=11, batch_size=3)
    assert torch.equal(old, new)  # corrector="none" is corrector_steps=0


def test_sdedit_em_is_the_old_loop_bit_for_bit():
    H = 6
    p = SPDEProcess(spdekit.AnisotropicSPDE.paper_isotropic(H, 1.0, stencil="conservative"), 1.0, 0.01)
    score = _linear_score((1, H, H), 1)
    strokes = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, (3, 1, H, H)), dtype=torch.float32)
    t0, steps = 0.37, 30
    # the old sdedit_spde: forward to k0 dt, then the old loop on t0 - i delta
    rng = np.random.default_rng(5)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    k0 = round(t0 / p.dt)
    t0r = k0 * p.dt
    n_rev = max(1, int(round(t0r / (p.T / steps))))
    delta = t0r / n_rev
    u = p.simulate(strokes, k0, rng).contiguous()
    for i in range(n_rev):
        t = t0r - i * delta
        u = _old_langevin(score, t, u, 0.16, gen)
        u = _old_predictor(p, score, t, delta, u, rng, add_noise=i < n_rev - 1)
    assert torch.equal(u, sdedit_spde(p, score, strokes, t0, steps=steps, seed=5))


# ------------------------------------------------------------------ closed forms on independent 1-D modes
H1 = 3  # 9 independent modes


def _mode_problem(T=1.0, dt=1 / 64):
    spde = spdekit.AnisotropicSPDE.paper_isotropic(H1, T, stencil="conservative")
    p = SPDEProcess(spde, T, dt)
    g = np.random.default_rng(3)
    m_z = g.normal(0, 0.3, (H1, H1))
    v_z = g.uniform(0.02, 0.2, (H1, H1))
    M = _basis_matrices((H1, H1), "conservative")[0]  # u = M z, orthonormal
    C = M @ np.diag(v_z.ravel()) @ M.T
    score = GaussianDataScore(p, from_modes(m_z, "conservative"), C)
    return p, score, m_z, v_z


def _scalar_tables(p, m_z, v_z):
    """P_k, c_k, f_k per mode by the scalar recursions written out."""
    K = p.n_steps
    mu = laplacian_eigenvalues((H1, H1), "conservative")
    a1 = [float(p.spde.alpha1(k * p.dt)) for k in range(K + 1)]
    a2 = [float(p.spde.alpha2(k * p.dt)) for k in range(K + 1)]
    f = np.array([1 + p.dt * a1[k] * mu for k in range(K)])
    P = np.ones((K + 1, H1, H1))
    c = np.zeros((K + 1, H1, H1))
    for k in range(K):
        P[k + 1] = f[k] * P[k]
        c[k + 1] = f[k] ** 2 * c[k] + p.dt * a2[k] ** 2
    return P, c, f, mu, a1, a2


def test_each_predictor_is_its_closed_form_on_independent_modes():
    p, score, m_z, v_z = _mode_problem()
    P, c, f, mu, a1, a2 = _scalar_tables(p, m_z, v_z)
    V = lambda k: P[k] ** 2 * v_z + c[k]  # noqa: E731
    ref = score.gaussian_reference()
    np.testing.assert_allclose(ref.mean_z[0], m_z, atol=1e-12)
    np.testing.assert_allclose(ref.var_z[0], v_z, rtol=1e-10)
    rsde = samplers.reverse_sde(p, score, ref)  # tensors in, tensors out (the samplers' reverse SDE)
    g = np.random.default_rng(0)
    u = torch.as_tensor(g.normal(0, 0.5, (4, 1, H1, H1)))
    z = to_modes(u.numpy(), "conservative")
    k, j = 20, 12
    h = (k - j) * p.dt
    s_z = lambda kk, zz: -(zz - P[kk] * m_z) / V(kk)  # noqa: E731  the exact score per mode

    # exponential: the chain's reverse kernel, A = prod f, c_{j->k} by the recursion from 0
    A = np.prod(f[j:k], axis=0)
    cjk = np.zeros_like(A)
    for i in range(j, k):
        cjk = f[i] ** 2 * cjk + p.dt * a2[i] ** 2
    G = A * V(j) / V(k)
    xi = g.standard_normal(u.shape)
    want = P[j] * m_z + G * (z - P[k] * m_z) + np.sqrt(V(j) * cjk / V(k)) * xi
    got, ok = rsde.exponential_step(k, j, u, torch.as_tensor(xi))
    assert ok and isinstance(got, torch.Tensor)
    np.testing.assert_allclose(to_modes(got.numpy(), "conservative"), want, atol=1e-12)

    # exponential ODE: the flow map sqrt(V_j / V_k)
    want = P[j] * m_z + np.sqrt(V(j) / V(k)) * (z - P[k] * m_z)
    np.testing.assert_allclose(to_modes(rsde.exponential_flow_step(k, j, u)[0].numpy(), "conservative"), want,
                               atol=1e-12)

    # em: z + h (alpha2(t')^2 s(t) - alpha1(t') mu z) + alpha2(t') dW, t' = t - h (the target-time pairing)
    tk = k * p.dt
    tc = tk - h
    dW = g.standard_normal(u.shape) * math.sqrt(h)
    al1, al2 = float(p.spde.alpha1(tc)), float(p.spde.alpha2(tc))
    want = z + h * (al2**2 * s_z(k, z) - al1 * mu * z) + al2 * to_modes(dW, "conservative")
    got, _ = spdekit.EulerMaruyama().step(rsde, tk, u, h, torch.as_tensor(dW))
    np.testing.assert_allclose(to_modes(got.numpy(), "conservative"), want, atol=1e-12)

    # ode (Heun) on the chain's interpolation: drift -abar z - sigma2bar s / 2 with the rates of the
    # steps on either side of the chain time, a = -log f / dt, sigma^2 = 2 a dt alpha2^2 / (1 - f^2)
    def rates(kk):
        out = []
        for i in sorted({max(kk - 1, 0), min(kk, p.n_steps - 1)}):
            a = -np.log(f[i]) / p.dt
            sig = np.where(np.abs(1 - f[i] ** 2) > 1e-12, 2 * a * p.dt * a2[i] ** 2 / np.where(
                np.abs(1 - f[i] ** 2) > 1e-12, 1 - f[i] ** 2, 1), a2[i] ** 2)
            out.append((a, sig))
        return sum(o[0] for o in out) / len(out), sum(o[1] for o in out) / len(out)

    def flow(kk, zz):
        a, sig = rates(kk)
        return -a * zz - 0.5 * sig * s_z(kk, zz)

    grid = samplers.ReverseGrid(np.array([k, j]) * p.dt, np.array([h]), np.array([k, j]))
    f0 = flow(k, z)
    z1 = z - h * f0
    want = z - 0.5 * h * (f0 + flow(j, z1))
    got, _ = samplers.HeunODEPredictor().step(rsde, grid, 0, u, None)
    np.testing.assert_allclose(to_modes(got.numpy(), "conservative"), want, atol=1e-10)


def test_exponential_predictor_is_exact_in_law_at_any_step_count():
    """Independent modes, exact score and prior: 4 predictor steps for a 64-step chain give the data's
    mode variances. n = 20,000: a sample variance has relative sd sqrt(2/n) = 1%; 5 sd allowed per mode."""
    p, score, m_z, v_z = _mode_problem()
    P, c, *_ = _scalar_tables(p, m_z, v_z)
    K = p.n_steps
    M = _basis_matrices((H1, H1), "conservative")[0]
    prior = GaussianPrior.from_moments(from_modes(P[K] * m_z, "conservative"),
                                       M @ np.diag((P[K] ** 2 * v_z + c[K]).ravel()) @ M.T)
    n = 20000
    for pred in ("exponential", "exponential_ode"):
        x = sample(p, score, n, steps=4, predictor=pred, corrector="none", prior=prior, seed=1, dtype=torch.float64)
        z = to_modes(x.numpy()[:, 0], "conservative")
        assert np.all(np.abs(z.var(0) / v_z - 1) < 5 * math.sqrt(2 / n)), (pred, z.var(0) / v_z)
        assert np.all(np.abs(z.mean(0) - m_z) < 5 * np.sqrt(v_z / n))
    # Euler-Maruyama at 4 steps is not (the high modes are far off): the test can tell
    x = sample(p, score, n, steps=4, predictor="em", corrector="none", prior=prior, seed=1, dtype=torch.float64)
    z = to_modes(x.numpy()[:, 0], "conservative")
    assert np.max(np.abs(z.var(0) / v_z - 1)) > 0.2


@pytest.mark.parametrize("stencil", ["conservative", "paper"])
def test_chain_flow_carries_the_chains_covariance(stencil):
    """For a linear chain u_{k+1} = (I + dt alpha1 L) u_k + noise, the corrected probability-flow drift
    F u (exact score -C_k^{-1}(u - m)) moves the covariance as the chain does: F C_k + C_k F^T equals the
    chain's (C_{k+1} - C_{k-1}) / (2 dt) to O(dt^2) relative, where the SDE's own flow is off by O(dt) and
    by 40% late in the chain."""
    H, T, K = 5, 2.0, 400
    dt = T / K
    spde = spdekit.AnisotropicSPDE.paper_isotropic(H, T, stencil=stencil)
    chain = LinearChain(spde, (H, H), dt, K)
    flow = ChainFlow(spde, (H, H), dt, K)
    D = H * H
    g = np.random.default_rng(0)
    A0 = g.standard_normal((D, D)) * 0.1
    C0 = A0 @ A0.T + 0.05 * np.eye(D)
    E = np.eye(D).reshape(D, H, H)
    worst, worst_sde = 0.0, 0.0
    for k in (50, 200, 380):
        C = [chain.propagate(np.zeros((H, H)), C0, kk)[1] for kk in (k - 1, k, k + 1)]
        Pk = np.linalg.inv(C[1])
        t = k * dt
        L = np.stack([spde.drift(t, e).ravel() for e in E], 1)
        Gx = np.stack([flow.apply_x(k, e).ravel() for e in E], 1)
        Gs = np.stack([flow.apply_s(k, e).ravel() for e in E], 1)
        np.testing.assert_allclose(Gs, Gs.T, atol=1e-14)
        a2 = float(spde.alpha2(t))
        target = (C[2] - C[0]) / (2 * dt)
        for F, key in ((L + 0.5 * a2**2 * Pk + Gx - Gs @ Pk, "chain"), (L + 0.5 * a2**2 * Pk, "sde")):
            err = np.linalg.norm(F @ C[1] + C[1] @ F.T - target) / np.linalg.norm(target)
            if key == "chain":
                worst = max(worst, err)
            else:
                worst_sde = max(worst_sde, err)
    assert worst < 0.01
    assert worst_sde > 0.3


def test_reference_of_a_network_is_its_own_reference():
    """ScoreModel.gaussian_reference rebuilds the tables the network's reference score uses, and spdekit's
    reference score equals the network's torch one."""
    from genmodel.networks import MLPScoreNet, ScoreModel

    H = 4
    p = SPDEProcess(spdekit.AnisotropicSPDE.paper_anisotropic(H, 1.0), 1.0, 0.01)
    data = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (50, 1, H, H)), dtype=torch.float32)
    model = ScoreModel.for_process(MLPScoreNet((1, H, H)), p, parameterization="reference", data=data)
    ref = model.gaussian_reference(p)
    np.testing.assert_allclose(ref.P, model.ref_P.numpy())
    np.testing.assert_allclose(ref.c, model.ref_c.numpy())
    u = torch.as_tensor(np.random.default_rng(1).normal(0, 1, (3, 1, H, H)))
    k = 37
    got = model.reference_score(torch.full((3,), k * p.dt, dtype=torch.float64), u).numpy()
    np.testing.assert_allclose(got, ref.score(k, u.numpy()), rtol=1e-5, atol=1e-6)
    assert samplers.gaussian_reference(p, model) is not None
    with pytest.raises(ValueError, match="Gaussian reference"):
        sample(p, lambda t, u: torch.zeros_like(u), 2, steps=5, predictor="exponential", prior=GaussianPrior(
            np.zeros((1, H, H)), np.eye(H * H)))


def test_options_and_errors():
    p, score, m_z, v_z = _mode_problem()
    prior = GaussianPrior(np.zeros((1, H1, H1)), np.eye(H1 * H1) * 0.1)
    with pytest.raises(ValueError, match="predictor must be one of"):
        sample(p, score, 2, prior=prior, predictor="rk4")
    with pytest.raises(ValueError, match="corrector must be one of"):
        sample(p, score, 2, prior=prior, corrector="mala")
    with pytest.raises(ValueError, match="steps must be <= 64"):
        sample(p, score, 2, prior=prior, predictor="exponential", steps=65)
    with pytest.raises(ValueError, match="prior must be"):
        sample(p, score, 2, prior=object())
    x = sample(p, score, 3, steps=8, prior=prior, predictor="ode", seed=0, dtype=torch.float64)
    y = sample(p, score, 3, steps=8, prior=prior, predictor="ode", seed=0, dtype=torch.float64)
    assert torch.equal(x, y) and torch.isfinite(x).all()
    assert samplers.get_predictor("ode").nfe(8) == 15
    g = samplers.chain_grid(2000, 264, 1e-3)
    assert g.k[0] == 2000 and g.k[-1] == 0 and set(np.diff(-g.k)) <= {7, 8}
    # a blow-up names the step and time
    with pytest.raises(FloatingPointError, match=r"step 1 of 4 \(t = "):
        sample(p, lambda t, u: torch.full_like(u, float("inf")), 2, steps=4, prior=prior, predictor="exponential",
               reference=score.gaussian_reference(), corrector="none")


def test_one_loop_serves_sample_and_sdedit(monkeypatch):
    calls = []
    real = samplers.reverse_loop

    def spy(*a, **k):
        calls.append(a[4].name)
        return real(*a, **k)

    monkeypatch.setattr(samplers, "reverse_loop", spy)
    p, score, m_z, v_z = _mode_problem()
    prior = GaussianPrior(np.zeros((1, H1, H1)), np.eye(H1 * H1) * 0.1)
    sample(p, score, 2, steps=4, prior=prior, seed=0, dtype=torch.float64)
    sample(p, score, 2, steps=4, prior=prior, seed=0, dtype=torch.float64, predictor="exponential")
    sdedit_spde(p, score, torch.zeros(2, 1, H1, H1), 0.5, steps=8, seed=0, predictor="ode")
    assert calls == ["em", "exponential", "ode"]
    # no other module steps a reverse chain itself
    import pathlib

    import genmodel

    for f in pathlib.Path(genmodel.__file__).parent.glob("*.py"):
        src = f.read_text()
        if f.name != "samplers.py":
            assert ".step(rsde" not in src and "em_step(" not in src and "exponential_step(" not in src, f.name
