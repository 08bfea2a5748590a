"""Priors of the reverse chain: the moment-matched Gaussian of U_T (paper, Section 3.3).

Any object with ``sample(n, rng, dtype)`` (and ``log_prob(x)`` for likelihoods) can serve as a
prior of :func:`genmodel.sample`; :class:`GaussianPrior` is the one models store, and
:class:`genmodel.exact.GaussianMixture` gives exact laws of U_T for validation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from spdekit.linear import _psd_factor
from spdekit.random import NormalsLike
from spdekit.spectral import to_modes

from . import modes
from .bridge import host_array
from .processes import SPDEProcess

FULL_COVARIANCE_MAX = 4096


class GaussianPrior:
    """N(mean, R R^T) on (C, H, W) images: the moment-matched Gaussian of U_T.

    How it is computed (:meth:`fit`):

    * linear chain (exact law available): mean_T = A_T m and Cov(U_T) = A_T C A_T^T + Cov[U_T | U_0]
      with (m, C) the empirical mean and covariance of ``data`` and A_T the mean map of the chain
      (spdekit.linear). These are the exact first two moments of U_T under the empirical data law;
      the law of U_T is exactly this Gaussian when the data are Gaussian with moments (m, C).
    * nonlinear chain: the forward chain is simulated to T from every data image ``replicates``
      times and the sample mean and covariance of the results are taken (Monte Carlo moments;
      exact only in the limit, and U_T is then only approximately Gaussian: Section 4.3).

    The covariance is full (over all C*H*W pixels) up to 4096 pixels, otherwise diagonal in the
    per-plane DCT-II basis (an approximation, stated in ``kind``).

    The moments are host tables (numpy, float64), fitted once; :meth:`sample` draws on any device.
    """

    def __init__(self, mean: np.ndarray, factor: np.ndarray, kind: str = "full"):
        self.mean = np.asarray(mean, dtype=np.float64)
        if self.mean.ndim == 2:
            self.mean = self.mean[None]
        if self.mean.ndim != 3:
            raise ValueError(f"prior mean must have shape (C, H, W) (or (H, W)), got {self.mean.shape}")
        self.factor = np.asarray(factor, dtype=np.float64)
        if kind not in ("full", "dct_diagonal"):
            raise ValueError(f"prior kind must be 'full' or 'dct_diagonal', got {kind!r}")
        self.kind = kind

    @property
    def shape(self):
        return self.mean.shape

    @classmethod
    def from_moments(cls, mean, cov) -> GaussianPrior:
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (mean.size, mean.size):
            raise ValueError(f"cov must be ({mean.size}, {mean.size}) for a mean of shape {mean.shape}, "
                             f"got {cov.shape}")
        return cls(mean, _psd_factor(cov), "full")

    @classmethod
    def from_samples(cls, x: np.ndarray) -> GaussianPrior:
        x = np.asarray(x, dtype=np.float64)
        n = x.shape[0]
        if n < 2:
            raise ValueError("need at least two samples to fit a Gaussian")
        mean = x.mean(0)
        d = (x - mean).reshape(n, -1)
        if d.shape[1] <= FULL_COVARIANCE_MAX:
            return cls(mean, _psd_factor(d.T @ d / (n - 1)), "full")
        z = to_modes(x - mean, "conservative")
        return cls(mean, np.sqrt((z**2).sum(0) / (n - 1)), "dct_diagonal")

    @classmethod
    def fit(cls, process: SPDEProcess, data: torch.Tensor, replicates: int = 4, seed=0,
            batch_size: int = 1024) -> GaussianPrior:
        """Moment-matched Gaussian of U_T from a batch of training images (class docstring)."""
        data = torch.as_tensor(data)
        if data.ndim != 4:
            raise ValueError(f"data must be (N, C, H, W), got shape {tuple(data.shape)}")
        if not torch.isfinite(data).all():
            raise ValueError("data contains NaN or inf")
        rng = np.random.default_rng(seed)
        if process.is_linear:
            law = process.law(data.shape)
            x0 = host_array(data).astype(np.float64)
            xT = law.mean(x0, law.n_steps)  # A_T u0 per image
            n = x0.shape[0]
            mean = xT.mean(0)
            d = (xT - mean).reshape(n, -1)
            C = d.T @ d / max(n - 1, 1)
            D = law.size
            noise = law.covariance(law.n_steps) if C.shape[0] <= FULL_COVARIANCE_MAX else None
            if noise is not None:
                for c in range(data.shape[1]):
                    C[c * D:(c + 1) * D, c * D:(c + 1) * D] += noise
                return cls(mean, _psd_factor(C), "full")
            raise ValueError(f"linear prior fit needs C*H*W <= {FULL_COVARIANCE_MAX}")
        outs = []
        for _ in range(int(replicates)):
            for i in range(0, data.shape[0], batch_size):
                u0 = data[i:i + batch_size].to(torch.float32).contiguous()
                outs.append(host_array(process.simulate(u0, process.n_steps, rng)).astype(np.float64))
        return cls.from_samples(np.concatenate(outs))

    def sample(self, n: int, rng: np.random.Generator, dtype=torch.float32, device=None) -> torch.Tensor:
        """``n`` draws as a tensor of ``dtype`` on ``device`` (default: the CPU), computed there in float64
        from Philox normals keyed by ``rng`` (:class:`spdekit.random.NormalsLike`)."""
        mean, factor = self._tables(device)
        shape = (n, self.mean.size) if self.kind == "full" else (n,) + self.mean.shape
        xi = NormalsLike(rng, mean).standard_normal(shape, np.float64)
        if self.kind == "full":
            x = (mean.reshape(-1) + xi @ factor.T).reshape((n,) + self.mean.shape)
        else:
            x = mean + modes.from_modes(factor * xi)
        return x.to(dtype)

    def _tables(self, device):
        """(mean, factor) as float64 tensors on ``device`` (moved once per device)."""
        device = torch.device("cpu" if device is None else device)
        cache = self.__dict__.setdefault("_placed", {})
        if device not in cache:
            cache[device] = (torch.as_tensor(self.mean).to(device), torch.as_tensor(self.factor).to(device))
        return cache[device]

    def log_prob(self, x) -> np.ndarray:
        """log density of each image of ``x`` (N, C, H, W) under this Gaussian (nats, float64).
        Refused for a singular covariance (a clipped eigenvalue or a zero mode variance)."""
        x = host_array(torch.as_tensor(x, dtype=torch.float64))
        n = x.shape[0]
        d = (x - self.mean).reshape(n, -1)
        if self.kind == "full":
            w, U = np.linalg.eigh(self.factor @ self.factor.T)
            if w.min() <= 1e-12 * max(w.max(), 1e-300):
                raise ValueError("the prior's covariance is singular: no density")
            y = (d @ U) / np.sqrt(w)
            logdet = np.log(w).sum()
        else:
            sd = self.factor.reshape(-1)
            if sd.min() <= 0:
                raise ValueError("the prior has a mode of zero variance: no density")
            y = to_modes(x - self.mean, "conservative").reshape(n, -1) / sd
            logdet = 2 * np.log(sd).sum()
        D = d.shape[1]
        return -0.5 * (y**2).sum(1) - 0.5 * logdet - 0.5 * D * math.log(2 * math.pi)

    def state_dict(self) -> dict:
        return {"mean": torch.as_tensor(self.mean), "factor": torch.as_tensor(self.factor), "kind": self.kind}

    @classmethod
    def from_state_dict(cls, d: dict) -> GaussianPrior:
        return cls(host_array(d["mean"]), host_array(d["factor"]), d["kind"])


__all__ = ["GaussianPrior", "FULL_COVARIANCE_MAX"]
