"""Exact scores of linear chains for Gaussian and Gaussian-mixture data (validation of the samplers).

For a linear chain (lambda1 = lambda2 = inf, untamed Euler-Maruyama: :class:`spdekit.LinearChain`)
u_k = A_k u_0 + e_k with e_k ~ N(0, Cov[u_k | u_0]) independent of u_0. So:

* Gaussian data N(m, C): u_k ~ N(A_k m, A_k C A_k^T + Cov[u_k | u_0]) and s_k(u) = -C_k^{-1}(u - m_k);
* a Gaussian mixture sum_i pi_i N(m_i, C_i): u_k is the mixture of the propagated components with the
  same weights, and its score is the posterior-weighted mixture of the component scores,

      s_k(u) = sum_i r_i(u) s_{i,k}(u),     r_i(u) = pi_i N(u; m_{i,k}, C_{i,k}) / sum_j pi_j N(u; m_{j,k}, C_{j,k}),

  which is NOT linear in u: its residual against any Gaussian reference is non-zero.

The scores are torch functions (differentiable in u: the likelihood's divergence uses autograd) of
single-channel (B, 1, H, W) states, at chain times t_k = k dt (k = 0 is the data law itself, defined
when the covariances are non-singular). Dense D x D algebra: for small grids (8x8, 16x16).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from spdekit.reference import GaussianReference


def _step_index(process, t) -> np.ndarray:
    t = np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64)
    k = np.rint(t / process.dt).astype(np.int64)
    if np.any(np.abs(k * process.dt - t) > 1e-4 * process.dt) or np.any(k < 0) or np.any(k > process.n_steps):
        raise ValueError("the exact chain score is defined at chain times t_k = k dt, 0 <= k <= K; "
                         f"got t = {t.ravel()[:4]} with dt = {process.dt}")
    return k


class GaussianMixture:
    """sum_i pi_i N(m_i, C_i) on (1, H, W) images: exact draws and log densities (a prior for the samplers)."""

    def __init__(self, weights, means, covs):
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.ndim != 1 or np.any(self.weights <= 0) or abs(self.weights.sum() - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {weights}")
        self.means = [np.asarray(m, dtype=np.float64) for m in means]
        self.covs = [0.5 * (np.asarray(c, dtype=np.float64) + np.asarray(c, dtype=np.float64).T) for c in covs]
        self.shape = (1,) + self.means[0].shape[-2:]
        self._chol = [np.linalg.cholesky(c) for c in self.covs]

    def sample(self, n: int, rng: np.random.Generator, dtype=torch.float32, return_labels: bool = False,
               device=None):
        """``n`` exact draws (host numpy, a validation prior), as a tensor on ``device`` (default the CPU)."""
        lab = rng.choice(len(self.weights), size=n, p=self.weights)
        xi = rng.standard_normal((n, self.means[0].size))
        x = np.empty_like(xi)
        for i, (m, L) in enumerate(zip(self.means, self._chol)):
            sel = lab == i
            x[sel] = m.reshape(-1) + xi[sel] @ L.T
        out = torch.as_tensor(x.reshape((n,) + self.shape), dtype=dtype).to("cpu" if device is None else device)
        return (out, lab) if return_labels else out

    def component_log_densities(self, x) -> np.ndarray:
        """log N(x; m_i, C_i) per sample and component, (n, I)."""
        x = np.asarray(torch.as_tensor(x, dtype=torch.float64)).reshape(len(x), -1)
        out = []
        for m, L in zip(self.means, self._chol):
            y = np.linalg.solve(L, (x - m.reshape(-1)).T)
            out.append(-0.5 * (y**2).sum(0) - np.log(np.diag(L)).sum() - 0.5 * x.shape[1] * math.log(2 * math.pi))
        return np.stack(out, 1)

    def log_prob(self, x) -> np.ndarray:
        lp = self.component_log_densities(x) + np.log(self.weights)[None]
        mx = lp.max(1, keepdims=True)
        return (mx + np.log(np.exp(lp - mx).sum(1, keepdims=True)))[:, 0]

    def moments(self):
        """Mean (H, W) and covariance (D, D) of the mixture."""
        m = sum(w * mi for w, mi in zip(self.weights, self.means))
        C = sum(w * (Ci + np.outer(mi.ravel() - m.ravel(), mi.ravel() - m.ravel()))
                for w, mi, Ci in zip(self.weights, self.means, self.covs))
        return m, C


class GaussianMixtureScore:
    """The exact score of the linear chain for mixture data sum_i pi_i N(m_i, C_i) (module doc).

    A ``score_fn(t, u)`` for :func:`genmodel.sample` and :func:`genmodel.log_likelihood`; one
    component gives the Gaussian-data score (:class:`GaussianDataScore`)."""

    def __init__(self, process, weights, means, covs):
        self.process = process
        self.data = GaussianMixture(weights, means, covs)
        self.law = process.law(self.data.means[0].shape[-2:])
        self._cache: dict = {}

    def component_moments(self, k: int):
        """Per component (m_k (D,), C_k^{-1} (D, D), log det C_k) at chain step k (cached)."""
        if k not in self._cache:
            comps = []
            for m, C in zip(self.data.means, self.data.covs):
                mk, Ck = self.law.propagate(m, C, k) if k > 0 else (m, C)
                sign, logdet = np.linalg.slogdet(Ck)
                if sign <= 0:
                    raise ValueError(f"the covariance of a component is singular at chain step {k}")
                comps.append((torch.as_tensor(mk.reshape(-1)), torch.as_tensor(np.linalg.inv(Ck)), float(logdet)))
            self._cache[k] = comps
        return self._cache[k]

    def marginal(self, k: int) -> GaussianMixture:
        """The exact law of u_k: the mixture of the propagated components."""
        means, covs = [], []
        for m, C in zip(self.data.means, self.data.covs):
            mk, Ck = self.law.propagate(m, C, k) if k > 0 else (m, C)
            means.append(mk)
            covs.append(Ck)
        return GaussianMixture(self.data.weights, means, covs)

    def prior(self) -> GaussianMixture:
        """The exact law of U_T (a prior object for :func:`genmodel.sample`)."""
        return self.marginal(self.process.n_steps)

    def gaussian_reference(self, process=None) -> GaussianReference:
        """The samplers' Gaussian reference: the moment-matched Gaussian of the data, modes independent."""
        p = self.process if process is None else process
        m, C = self.data.moments()
        return GaussianReference.from_moments(p.spde, p.dt, p.n_steps, m, C)

    def __call__(self, t, u: torch.Tensor) -> torch.Tensor:
        B = u.shape[0]
        k = np.broadcast_to(_step_index(self.process, t), (B,))
        x = u.reshape(B, -1).to(torch.float64)
        out = torch.empty_like(x)
        logw = torch.as_tensor(np.log(self.data.weights))
        for kk in np.unique(k):
            sel = torch.as_tensor(k == kk)
            xs = x[sel]
            logs, qs = [], []
            for (m, P, logdet), lw in zip(self.component_moments(int(kk)), logw):
                q = (xs - m) @ P.T
                qs.append(q)
                logs.append(lw - 0.5 * ((xs - m) * q).sum(1) - 0.5 * logdet)
            r = torch.softmax(torch.stack(logs, 1), 1)
            out[sel] = -(r[:, :, None] * torch.stack(qs, 1)).sum(1)
        return out.reshape(u.shape).to(u.dtype)


class GaussianDataScore(GaussianMixtureScore):
    """The exact score of the linear chain when u_0 ~ N(m, C): at step k the law of u_k is
    N(A_k m, A_k C A_k^T + Cov[u_k | u_0]) (spdekit.linear), so s_k(u) = -P_k (u - m_k).

    A ``score_fn(t, u)`` for :func:`genmodel.sample`; t must be a chain time k dt (k = 0: the data
    law, for a non-singular C). Precisions are computed per k on first use (dense D x D, single channel)."""

    def __init__(self, process, mean0, cov0):
        super().__init__(process, [1.0], [mean0], [cov0])
        self.mean0 = self.data.means[0]
        self.cov0 = self.data.covs[0]

    def step_index(self, t) -> np.ndarray:
        return _step_index(self.process, t)

    def moments(self, k: int):
        """(m_k (D,), C_k^{-1}) as numpy arrays."""
        m, P, _ = self.component_moments(k)[0]
        return m.numpy(), P.numpy()

    def __call__(self, t, u: torch.Tensor) -> torch.Tensor:
        B = u.shape[0]
        k = np.broadcast_to(_step_index(self.process, t), (B,))
        x = u.reshape(B, -1).to(torch.float64)
        out = torch.empty_like(x)
        for kk in np.unique(k):
            sel = torch.as_tensor(k == kk)
            m, P, _ = self.component_moments(int(kk))[0]
            out[sel] = -(x[sel] - m) @ P.T
        return out.reshape(u.shape).to(u.dtype)


__all__ = ["GaussianDataScore", "GaussianMixtureScore", "GaussianMixture"]
