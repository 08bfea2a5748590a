"""The losses' time measure (genmodel.losses module doc): states drawn with probability proportional
to (t_k / T)^p. Statistical checks on the mean of k / K; every bound below is at least 5 standard
errors of independent draws (the pools' draws are correlated, hence their looser bounds)."""

import numpy as np
import pytest
import torch

import spdekit
from genmodel import SPDEProcess
from genmodel.losses import ExactGaussianDSM, TransitionDSM, time_draw_probabilities
from genmodel.path_dsm import PathDSM
from genmodel.train import load_config, make_loss


def heat(T=0.2, dt=0.01):
    return SPDEProcess(spdekit.AnisotropicSPDE.paper_isotropic(8, T, stencil="conservative"), T, dt)


def data(n=64):
    return torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (n, 1, 8, 8)), dtype=torch.float32)


def expected_mean(K, power):
    """E[k / K] for k on {1..K} with probability proportional to k^power."""
    k = np.arange(1, K + 1, dtype=np.float64)
    return float((k ** (power + 1)).sum() / (K * (k ** power).sum()))


def test_probabilities():
    assert time_draw_probabilities(np.arange(1, 11), 10, 0.0) is None
    p = time_draw_probabilities(np.arange(1, 11), 10, 2.0)
    np.testing.assert_allclose(p, np.arange(1, 11) ** 2 / 385)


@pytest.mark.parametrize("power", [0.0, 1.0, 3.0])
def test_exact_loss_draws_steps_from_the_time_measure(power):
    p = heat()
    loss = ExactGaussianDSM(p, data(), time_weight_power=power)
    seen = []
    loss.loss_at = lambda model, u0, k, rng: seen.append(np.asarray(k))  # record the drawn steps
    rng = np.random.default_rng(1)
    for _ in range(20):
        loss(None, 200, rng)
    k = np.concatenate(seen)
    assert k.min() >= 1 and k.max() <= p.n_steps
    # sd of k / K <= 0.3, 4000 independent draws: standard error <= 0.005
    assert abs(k.mean() / p.n_steps - expected_mean(p.n_steps, power)) < 0.025


@pytest.mark.parametrize("kind", ["transition", "path"])
def test_pools_draw_chains_from_the_time_measure(kind):
    """The pools hold chains at roughly uniform steps; the drawn batch follows the time measure (its
    target step: k + 1 for a transition, k for a path state)."""
    p = heat() if kind == "transition" else SPDEProcess.from_preset("paper_anisotropic", 8, T=0.2, dt=0.01)
    K = p.n_steps
    means = {}
    for power in (0.0, 2.0):
        rng = np.random.default_rng(2)
        loss = make_loss(kind, p, data(), rng, pool_size=1024, pool_advance=1, time_weight_power=power)
        ks = []
        for _ in range(60):
            out = loss.pool.draw(64, rng)
            ks.append(out.k + 1 if kind == "transition" else out[0])
        ks = np.concatenate(ks)
        assert ks.min() >= 1 and ks.max() <= K
        means[power] = ks.mean() / K
    # uniform: 0.525, power 2: 0.77 for K = 20; chains are correlated from draw to draw: loose bounds
    assert abs(means[0.0] - expected_mean(K, 0.0)) < 0.04
    assert abs(means[2.0] - expected_mean(K, 2.0)) < 0.04


def test_bad_power_is_rejected():
    p = heat()
    with pytest.raises(ValueError, match="time_weight_power"):
        ExactGaussianDSM(p, data(), time_weight_power=-1.0)
    with pytest.raises(ValueError, match="time_weight_power"):
        TransitionDSM(p, data(), 16, np.random.default_rng(0), time_weight_power=float("nan"))
    nl = SPDEProcess.from_preset("paper_anisotropic", 8, T=0.2, dt=0.01)
    with pytest.raises(ValueError, match="time_weight_power"):
        PathDSM(nl, data(), 16, np.random.default_rng(0), time_weight_power=-0.5)
    with pytest.raises(ValueError, match="time_weight_power"):
        load_config({"train": {"time_weight_power": -2}})
