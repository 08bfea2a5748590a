"""spdekit.reverse: Sigma = diag(g2) Q diag(g2) (eq. 22) and the divergence tr D_u Sigma (eq. 20)."""

import numpy as np
import pytest

import spdekit
from spdekit.reverse import apply_sigma, dense_sigma, reverse_drift, sigma_divergence


def spde_with(ell, lambda2, kind="euclidean"):
    return spdekit.AnisotropicSPDE(alpha1=0.7, lambda1=0.5, alpha2=0.8, lambda2=lambda2,
                                   correlation_length=ell, noise_kind=kind)


def fd_divergence(spde, t, u, eps=1e-6):
    """sum_j d Sigma_ij / d u_j by central finite differences of the dense Sigma."""
    D = u.size
    out = np.zeros(D)
    for j in range(D):
        e = np.zeros(D)
        e[j] = eps
        Sp = dense_sigma(spde, t, u + e.reshape(u.shape))
        Sm = dense_sigma(spde, t, u - e.reshape(u.shape))
        out += (Sp[:, j] - Sm[:, j]) / (2 * eps)
    return out.reshape(u.shape)


@pytest.mark.parametrize("kind", ["euclidean", "separable"])
def test_divergence_matches_finite_differences_for_correlated_noise(kind):
    spde = spde_with(1.5, 0.3, kind)
    u = np.random.default_rng(0).standard_normal((5, 6))
    div = sigma_divergence(spde, 0.0, u, backend="numpy")
    ref = fd_divergence(spde, 0.0, u)
    assert np.abs(ref).max() > 1e-2  # it does not vanish for l > 0
    np.testing.assert_allclose(div, ref, atol=1e-7)
    # batched call, float32
    ub = np.stack([u, 2 * u])[:, None].astype(np.float32)
    div_b = sigma_divergence(spde, np.array([0.0, 0.0]), ub)
    np.testing.assert_allclose(div_b[0, 0], div, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(div_b[1, 0], sigma_divergence(spde, 0.0, 2 * u), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["charbonnier", "perona-malik", "exponential", "weickert"])
def test_divergence_matches_finite_differences_for_every_diffusivity_family(family):
    """tr D_u Sigma uses the derivative of g2's own family (spdekit.operators.dg_ds)."""
    spde = spdekit.AnisotropicSPDE(alpha1=0.7, lambda1=0.5, alpha2=0.8, lambda2=0.3, correlation_length=1.5,
                                   diffusivity=family)
    u = 0.3 * np.random.default_rng(2).standard_normal((5, 6))
    div = sigma_divergence(spde, 0.0, u, backend="numpy")
    ref = fd_divergence(spde, 0.0, u)
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(div, ref, atol=1e-7)
    spde.reverse(lambda t, x: np.zeros_like(x))  # every family reverses


@pytest.mark.parametrize("ell,lambda2", [(0.0, 0.3), (1.5, float("inf"))])
def test_divergence_vanishes_for_white_or_additive_noise(ell, lambda2):
    """l = 0 with the paper's g2 (central differences exclude u_i), or lambda2 = inf: zero, and the
    finite differences of the dense Sigma agree (the shortcut is not what is being tested)."""
    spde = spde_with(ell, lambda2)
    u = np.random.default_rng(1).standard_normal((5, 6))
    assert np.all(sigma_divergence(spde, 0.0, u) == 0)
    assert np.abs(fd_divergence(spde, 0.0, u)).max() < 1e-8


@pytest.mark.parametrize("ell,lambda2", [(0.0, 0.3), (1.5, 0.3), (2.0, float("inf"))])
def test_apply_sigma_is_dense_sigma(ell, lambda2):
    spde = spde_with(ell, lambda2)
    rng = np.random.default_rng(2)
    u = rng.standard_normal((5, 6))
    v = rng.standard_normal((5, 6))
    np.testing.assert_allclose(apply_sigma(spde, 0.0, u, v, backend="numpy"),
                               (dense_sigma(spde, 0.0, u) @ v.reshape(-1)).reshape(u.shape), atol=1e-12)


def test_reverse_drift_composition():
    spde = spde_with(1.5, 0.3)
    rng = np.random.default_rng(3)
    u = rng.standard_normal((2, 1, 5, 6))
    s = rng.standard_normal(u.shape)
    t = np.array([0.1, 0.2])
    expected = sigma_divergence(spde, t, u) + apply_sigma(spde, t, u, s) - spde.drift(t, u)
    np.testing.assert_allclose(reverse_drift(spde, t, u, s), expected)
