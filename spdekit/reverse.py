"""Pieces of the reverse-time SDE of the discretised SPDE (paper, Appendix D, eq. 19-22).

For the forward SDE dU = b(t, U) dt + sigma(t, U) dW with W a Q-Wiener process and
sigma(t, u) = diag(g2(t, u)) (eq. 8, 37), the time reversal (Haussmann & Pardoux 1986; Anderson
1982) is dUbar = bbar(t, Ubar) dt + sigma(T - t, Ubar) dW with

    bbar(t, u) = tr D_u Sigma(T - t, u) + Sigma(T - t, u) s(T - t, u) - b(T - t, u)     (20)
    Sigma = (sigma Q^{1/2})(sigma Q^{1/2})^* = diag(g2) Q diag(g2)                     (22)

and s = grad log p_t the score. The functions here take the FORWARD time t (the caller maps
reverse time tau to t = T - tau) and work on numpy arrays of shape (H, W) or (B, C, H, W).

The divergence term, component i: (tr D_u Sigma)_i = sum_j d/du_j Sigma_ij. With
Sigma_ij = g2_i Q_ij g2_j and g2_j independent of u_j (eq. 37 uses the central differences
u_{j+1} - u_{j-1}, which exclude u_j):

    sum_j d/du_j Sigma_ij = sum_j Q_ij (g2_j d g2_i/du_j + g2_i d g2_j/du_j) = sum_j Q_ij g2_j d g2_i/du_j.

d g2_i / du_j is non-zero only for the four neighbours j = i +- e_x, i +- e_y whose difference
enters g2_i (interior along that axis; on a border the mirrored difference is 0). With
g2 = alpha2 / sqrt(1 + (dx^2 + dy^2) / (lambda2 h)^2) and dx = u_{i+e_x} - u_{i-e_x}:

    d g2_i / du_{i +- e_x} = +- (-dx_i / (lambda2 h)^2) * g2_i^3 / alpha2^2,

so (tr D_u Sigma)_i = -(g2_i^3 / (alpha2^2 (lambda2 h)^2)) * [dx_i q_x (g2_{i+e_x} - g2_{i-e_x})
+ dy_i q_y (g2_{i+e_y} - g2_{i-e_y})] with q_x = q(h e_x), q_y = q(h e_y) the covariance (11) of
neighbours. For white noise (l = 0) Q_ij = 0 for j != i and the term vanishes identically; with
lambda2 = inf (additive noise) g2 is constant and it vanishes too. Otherwise it does not vanish.
"""

from __future__ import annotations

import numpy as np

from ._checks import array_module
from .backends.numpy_backend import _central
from .spde import as_batch


def apply_sigma(spde, t, u, v, backend: str = "auto"):
    """Sigma(t, u) v = g2 * Q(g2 * v) (eq. 22), with Q applied by circulant embedding (exact
    unless the embedding had to be clipped; see :mod:`spdekit.noise`)."""
    g2 = spde.diffusion_amplitude(t, u, backend)
    return g2 * spde.noise.apply_Q(g2 * v)


def sigma_divergence(spde, t, u, backend: str = "auto"):
    """(tr D_u Sigma(t, u))_i = sum_j d Sigma_ij / d u_j for the g2 field of eq. (37) (module doc).

    Returns an array like u. Exactly zero (returned without computation) for white noise or
    lambda2 = inf."""
    xp = array_module(u)
    if spde.noise.is_white or spde.is_additive:
        return xp.zeros_like(u)
    ub, restore = as_batch(u)
    h = spde.spacing
    c = spde.coefficients(t, ub.shape[0])
    shape = (-1, 1, 1, 1)
    a2 = xp.asarray(c["alpha2"]).reshape(shape)
    il = xp.asarray(c["inv_lam2"]).reshape(shape) / (h * h)
    g = spde.diffusion_amplitude(t, ub, backend).astype(np.float64)
    ub64 = ub.astype(np.float64)
    dx = _central(ub64, -1, "reflect")
    dy = _central(ub64, -2, "reflect")
    # g^3 / alpha2^2 = alpha2 * (g / alpha2)^3, safe when alpha2 = 0 (then g = 0)
    safe = xp.where(a2 > 0, a2, 1.0)
    w = g * (g / safe) ** 2 * il
    qx = float(spde.noise.covariance(0.0, h))
    qy = float(spde.noise.covariance(h, 0.0))
    gp = xp.pad(g, [(0, 0)] * 2 + [(1, 1), (1, 1)])  # zero ghosts: their dx/dy factor is 0 anyway
    diff_x = gp[..., 1:-1, 2:] - gp[..., 1:-1, :-2]
    diff_y = gp[..., 2:, 1:-1] - gp[..., :-2, 1:-1]
    div = -w * (dx * qx * diff_x + dy * qy * diff_y)
    return restore(div.astype(u.dtype, copy=False))


def reverse_drift(spde, t, u, score, backend: str = "auto"):
    """bbar of eq. (20) at FORWARD time t: tr D_u Sigma(t, u) + Sigma(t, u) score - b(t, u)."""
    return sigma_divergence(spde, t, u, backend) + apply_sigma(spde, t, u, score, backend) - spde.drift(t, u, backend)


def dense_sigma(spde, t, u):
    """Sigma(t, u) as a dense (D, D) matrix for one (H, W) state (tests and tiny grids)."""
    if u.ndim != 2:
        raise ValueError(f"dense_sigma takes one (H, W) state, got shape {u.shape}")
    g = spde.diffusion_amplitude(t, u, "numpy").reshape(-1)
    return g[:, None] * spde.noise.dense_Q(u.shape) * g[None, :]


__all__ = ["apply_sigma", "dense_sigma", "reverse_drift", "sigma_divergence"]
