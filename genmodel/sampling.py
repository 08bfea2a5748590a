"""Generative sampling by reversing the discretised SPDE (paper, Algorithm 3.1, Appendix D).

Predictor: Euler-Maruyama on the reverse SDE (19)-(22),

    u <- u + Delta [tr D_u Sigma + Sigma s - b] + sigma sqrt(Delta) Q^{1/2} xi,   Sigma = diag(g2) Q diag(g2),

with every piece from spdekit (:mod:`spdekit.reverse`: Sigma s through ``apply_Q``, the divergence
term exactly; the drift b and g2 from the SPDE's kernels), run on the tensors' memory through
DLPack. A step goes from t_i to t_i - Delta; the score is taken at t_i and b, Sigma at the target
time t_i - Delta. That is the pairing of the exact reverse of one chain step: for
u_{k+1} = M u_k + eps, eps ~ N(0, dt Sigma_k), Tweedie's formula gives
E[u_k | u_{k+1}] = M^{-1}(u_{k+1} + dt Sigma_k s_{k+1}(u_{k+1})) = u_{k+1} - dt b(t_k, u_{k+1})
+ dt Sigma_k s_{k+1} + O(dt^2). In continuous time both choices give eq. (20). The last step returns
the mean (no noise).

Corrector: unadjusted Langevin (ULA) at t_i before each predictor step (``corrector_steps`` of
them), u <- u + eps s + sqrt(2 eps) z, z ~ N(0, I), with the score_sde step-size rule
eps = 2 (snr |z| / |s|)^2, the norms averaged over the batch (Song et al. 2021, LangevinCorrector).

Priors: "gaussian" is the moment-matched Gaussian of U_T (:class:`GaussianPrior`); "forward" runs
the forward chain to T from data (Section 3.3).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from spdekit.reverse import reverse_drift
from spdekit.spectral import from_modes, to_modes

from .bridge import from_torch, to_torch
from .processes import SPDEProcess

PRIORS = ("gaussian", "forward")
FULL_COVARIANCE_MAX = 4096


def _np(t):
    return from_torch(t.detach().contiguous())


def _psd_factor(C):
    w, U = np.linalg.eigh(0.5 * (C + C.T))
    return U * np.sqrt(np.clip(w, 0.0, None))[None, :]


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
            x0 = _np(data).astype(np.float64)
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
                outs.append(_np(process.simulate(u0, process.n_steps, rng)).astype(np.float64))
        return cls.from_samples(np.concatenate(outs))

    def sample(self, n: int, rng: np.random.Generator, dtype=torch.float32) -> torch.Tensor:
        xi = rng.standard_normal((n, self.mean.size) if self.kind == "full" else (n,) + self.mean.shape)
        if self.kind == "full":
            x = self.mean.reshape(-1) + xi @ self.factor.T
            x = x.reshape((n,) + self.mean.shape)
        else:
            x = self.mean + from_modes(self.factor * xi, "conservative")
        return torch.as_tensor(x, dtype=dtype)

    def state_dict(self) -> dict:
        return {"mean": torch.as_tensor(self.mean), "factor": torch.as_tensor(self.factor), "kind": self.kind}

    @classmethod
    def from_state_dict(cls, d: dict) -> GaussianPrior:
        return cls(d["mean"].numpy(), d["factor"].numpy(), d["kind"])


def _check_score(s: torch.Tensor, u: torch.Tensor, t) -> torch.Tensor:
    if not isinstance(s, torch.Tensor) or s.shape != u.shape:
        raise ValueError(f"score_fn must return a tensor of shape {tuple(u.shape)}, got "
                         f"{getattr(s, 'shape', type(s).__name__)}")
    return s.to(u.dtype).contiguous()


def _check_finite(u: torch.Tensor, t: float):
    if not bool(torch.isfinite(u.sum())):  # one reduction; NaN/inf propagate into the sum
        raise FloatingPointError(
            f"the reverse chain became non-finite at t = {t:.6g}: the score is non-finite or too large for the "
            "step (try more steps, a smaller snr or fewer corrector steps)"
        )


def langevin_corrector(process, score_fn, t: float, u: torch.Tensor, snr: float, gen: torch.Generator):
    """One ULA step at forward time t with the score_sde step-size rule (module doc)."""
    tt = torch.full((u.shape[0],), t, dtype=u.dtype)
    s = _check_score(score_fn(tt, u), u, t)
    z = torch.randn(u.shape, generator=gen, dtype=u.dtype)
    s_norm = s.reshape(u.shape[0], -1).norm(dim=-1).mean()
    z_norm = z.reshape(u.shape[0], -1).norm(dim=-1).mean()
    eps = 2.0 * (snr * z_norm / s_norm) ** 2
    return u + eps * s + torch.sqrt(2.0 * eps) * z


def reverse_predictor(process, score_fn, t: float, delta: float, u: torch.Tensor, rng: np.random.Generator,
                      add_noise: bool = True) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE from forward time t to t - delta (module doc)."""
    B = u.shape[0]
    tt = torch.full((B,), t, dtype=u.dtype)
    s = _check_score(score_fn(tt, u), u, t)
    t_coef = np.full(B, max(t - delta, 0.0))
    spde = process.spde
    un = _np(u)
    bbar = reverse_drift(spde, t_coef, un, _np(s))
    out = un + delta * bbar
    if add_noise:
        dW = math.sqrt(delta) * spde.noise.sample(un.shape, rng, un.dtype)
        out = out + spde.noise_term(t_coef, un, dW)
    return to_torch(np.ascontiguousarray(out, dtype=un.dtype))


def sample(process: SPDEProcess, score_fn, n: int, steps: int | None = None, corrector_steps: int = 1,
           snr: float = 0.16, prior: str | GaussianPrior = "gaussian", data=None, prior_stats=None, seed=None,
           batch_size: int | None = None, dtype=torch.float32, progress: bool = False) -> torch.Tensor:
    """Generate ``n`` samples by the predictor-corrector scheme (Algorithm 3.1).

    Parameters
    ----------
    process : the forward chain (:class:`SPDEProcess`).
    score_fn : callable ``score_fn(t, u)`` -> score tensor like u; t is a (B,) tensor of forward
        times. A network wrapper (:class:`genmodel.networks.ScoreModel`) or an exact score.
    steps : predictor steps from T to 0 (Delta = T / steps); default: the chain's K = T / dt.
    corrector_steps : ULA steps per predictor step (0 disables the corrector).
    snr : signal-to-noise ratio of the corrector's step-size rule.
    prior : "gaussian" (moment-matched Gaussian of U_T from ``prior_stats`` (a
        :class:`GaussianPrior`, e.g. stored with a model) or fitted from ``data``), "forward" (the
        chain run to T from images drawn from ``data``), or a :class:`GaussianPrior`.
    seed : seed for all randomness (prior, predictor noise, corrector noise).
    batch_size : generate in chunks of this size (each chunk seeded from ``seed``).
    """
    if isinstance(prior, GaussianPrior):
        prior_stats, prior = prior, "gaussian"
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS} or a GaussianPrior; got {prior!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    steps = process.n_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if corrector_steps < 0 or snr <= 0:
        raise ValueError(f"corrector_steps must be >= 0 and snr > 0; got {corrector_steps}, {snr}")
    if data is not None:
        data = torch.as_tensor(data)
        if not torch.isfinite(data).all():
            raise ValueError("data contains NaN or inf")
    if prior == "gaussian" and prior_stats is None:
        if data is None:
            raise ValueError("prior='gaussian' needs prior_stats (a GaussianPrior) or data= to fit one")
        prior_stats = GaussianPrior.fit(process, data, seed=seed)
    if prior == "forward" and data is None:
        raise ValueError("prior='forward' needs data= (training images to run the forward chain from)")

    ss = np.random.SeedSequence(seed)
    batch_size = n if batch_size is None else int(batch_size)
    chunks = []
    delta = process.T / steps
    # the reverse drift contains -b (anti-diffusion) balanced by Sigma s: an explicit step is stable
    # only under the same bound as the forward chain, Delta <= h^2 / (4 max alpha1): warn otherwise
    process.spde.check_dt(delta, 0.0, process.T)
    with tqdm(total=steps * math.ceil(n / batch_size), disable=not progress, desc="sample", unit="step") as bar:
        for start, child in zip(range(0, n, batch_size), ss.spawn(math.ceil(n / batch_size))):
            m = min(batch_size, n - start)
            rng = np.random.default_rng(child)
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            if prior == "gaussian":
                u = prior_stats.sample(m, rng, dtype)
            else:
                idx = rng.integers(0, data.shape[0], m)
                u = process.simulate(data[idx].to(dtype).contiguous(), process.n_steps, rng)
            u = u.contiguous()
            for i in range(steps):
                t = process.T - i * delta
                for _ in range(corrector_steps):
                    u = langevin_corrector(process, score_fn, t, u, snr, gen)
                u = reverse_predictor(process, score_fn, t, delta, u, rng, add_noise=i < steps - 1)
                if i % 25 == 0 or i == steps - 1:
                    _check_finite(u, t - delta)
                bar.update(1)
            chunks.append(u)
    return torch.cat(chunks)


def residual_dependence(process: SPDEProcess, data, seed=0, batch_size: int = 1024) -> dict:
    """How much of U_0 survives at T (Section 4.3): the fraction of Var(U_T) explained by U_0,

        R = tr Cov(E[U_T | U_0]) / tr Cov(U_T)       (0: U_0 forgotten; 1: U_T determined by U_0),

    estimated from two independent forward runs X1, X2 from each image (given U_0 they are
    independent, so E[(X1 - m)(X2 - m)] = Cov(E[U_T | U_0])). Also per DCT-II mode (``per_mode``,
    shape (C, H, W)), where the lowest modes show what the drift keeps (the mean is conserved by the
    conservative stencil). For linear chains ``exact`` is the same ratio from the exact law
    (A_T C A_T^T against A_T C A_T^T + Cov[U_T | U_0], with C the data covariance).
    """
    data = torch.as_tensor(data).to(torch.float32)
    if data.ndim != 4 or data.shape[0] < 2:
        raise ValueError(f"data must be (N >= 2, C, H, W), got {tuple(data.shape)}")
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(2):
        outs = [_np(process.simulate(data[i:i + batch_size].contiguous(), process.n_steps, rng)).astype(np.float64)
                for i in range(0, data.shape[0], batch_size)]
        runs.append(np.concatenate(outs))
    x1, x2 = runs
    m = 0.5 * (x1.mean(0) + x2.mean(0))
    z1, z2 = to_modes(x1 - m, "conservative"), to_modes(x2 - m, "conservative")
    explained = (z1 * z2).mean(0)
    total = 0.5 * (z1**2 + z2**2).mean(0)
    out = {"fraction": float(explained.sum() / total.sum()),
           "per_mode": explained / np.where(total > 0, total, 1.0),
           "n": int(data.shape[0])}
    if process.is_linear:
        law = process.law(data.shape)
        xT = law.mean(_np(data).astype(np.float64), law.n_steps)
        d = (xT - xT.mean(0)).reshape(xT.shape[0], -1)
        ex = (d**2).sum() / max(d.shape[0] - 1, 1)
        if law.diagonal:
            noise = data.shape[1] * law.mode_variances([law.n_steps]).sum()
        else:
            noise = data.shape[1] * np.trace(law.covariance(law.n_steps))
        out["exact"] = float(ex / (ex + noise))
    return out


__all__ = ["GaussianPrior", "sample", "residual_dependence", "langevin_corrector", "reverse_predictor", "PRIORS"]
