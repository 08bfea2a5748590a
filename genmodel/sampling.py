"""Generative sampling by reversing the discretised SPDE (paper, Algorithm 3.1, Appendix D).

:func:`sample` draws from the prior (the moment-matched Gaussian of U_T, :class:`GaussianPrior`, or
the chain run to T from data: Section 3.3) and reverses the chain with a predictor and a corrector
(:mod:`genmodel.samplers`: Euler-Maruyama, the exponential integrator, the probability-flow ODE;
Langevin). :func:`residual_dependence` measures how much of U_0 survives at T (Section 4.3).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from spdekit.spectral import to_modes

from .bridge import host_array
from .priors import FULL_COVARIANCE_MAX, GaussianPrior  # noqa: F401  (GaussianPrior lived here)
from .processes import SPDEProcess
from .samplers import CORRECTORS, PREDICTORS, get_corrector, get_predictor, reverse_run

PRIORS = ("gaussian", "forward")


def sample(process: SPDEProcess, score_fn, n: int, steps: int | None = None, corrector_steps: int = 1,
           snr: float = 0.16, prior="gaussian", data=None, prior_stats=None, seed=None,
           batch_size: int | None = None, dtype=torch.float32, progress: bool = False, predictor: str = "em",
           corrector: str = "langevin", reference=None, device=None) -> torch.Tensor:
    """Generate ``n`` samples by the predictor-corrector scheme (Algorithm 3.1).

    Parameters
    ----------
    process : the forward chain (:class:`SPDEProcess`).
    score_fn : callable ``score_fn(t, u)`` -> score tensor like u; t is a (B,) tensor of forward
        times. A network wrapper (:class:`genmodel.networks.ScoreModel`) or an exact score.
    steps : predictor steps from T to 0; default: the chain's K = T / dt. The "em" predictor uses
        Delta = T / steps; the others run on chain steps (at most K of them).
    predictor : "em" (default), "exponential", "ode" or "exponential_ode" (:mod:`genmodel.samplers`).
    corrector : "langevin" (default) or "none"; ``corrector_steps`` ULA steps per predictor step (0: none).
    snr : signal-to-noise ratio of the corrector's step-size rule.
    prior : "gaussian" (moment-matched Gaussian of U_T from ``prior_stats`` (a
        :class:`GaussianPrior`, e.g. stored with a model) or fitted from ``data``), "forward" (the
        chain run to T from images drawn from ``data``), or a prior object with
        ``sample(n, rng, dtype, device)`` (a :class:`GaussianPrior`, :class:`genmodel.exact.GaussianMixture`).
    reference : the chain's :class:`spdekit.GaussianReference` for the exponential predictors (default:
        the score function's own, or one fitted to ``data``).
    seed : seed for all randomness (prior, predictor noise, corrector noise).
    batch_size : generate in chunks of this size (each chunk seeded from ``seed``).
    device : where the chain runs (its state, its noise; default the CPU): ``score_fn`` gets tensors there.
    """
    if not isinstance(prior, str):
        if not callable(getattr(prior, "sample", None)):
            raise ValueError(f"prior must be one of {PRIORS} or a prior object with sample(n, rng, dtype); "
                             f"got {prior!r}")
        prior_stats, prior = prior, "gaussian"
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS} or a GaussianPrior; got {prior!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    steps = process.n_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    pred = get_predictor(predictor)
    corr = get_corrector(corrector, snr, corrector_steps)
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

    device = torch.device("cpu" if device is None else device)
    ss = np.random.SeedSequence(seed)
    batch_size = n if batch_size is None else int(batch_size)
    chunks = []
    with tqdm(total=steps * math.ceil(n / batch_size), disable=not progress, desc="sample", unit="step") as bar:
        for start, child in zip(range(0, n, batch_size), ss.spawn(math.ceil(n / batch_size))):
            m = min(batch_size, n - start)
            rng = np.random.default_rng(child)
            gen = torch.Generator(device).manual_seed(int(rng.integers(2**62)))
            if prior == "gaussian":
                u = prior_stats.sample(m, rng, dtype, device=device)
            else:
                idx = torch.as_tensor(rng.integers(0, data.shape[0], m))
                u = process.simulate(data[idx].to(device=device, dtype=dtype).contiguous(), process.n_steps, rng)
            chunks.append(reverse_run(process, score_fn, u, process.T, steps, pred, corr, rng=rng, gen=gen,
                                      reference=reference, data=data, bar=bar))
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
        outs = [host_array(process.simulate(data[i:i + batch_size].contiguous(), process.n_steps, rng)).astype(
            np.float64)
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
        xT = law.mean(host_array(data).astype(np.float64), law.n_steps)
        d = (xT - xT.mean(0)).reshape(xT.shape[0], -1)
        ex = (d**2).sum() / max(d.shape[0] - 1, 1)
        if law.diagonal:
            noise = data.shape[1] * law.mode_variances([law.n_steps]).sum()
        else:
            noise = data.shape[1] * np.trace(law.covariance(law.n_steps))
        out["exact"] = float(ex / (ex + noise))
    return out


__all__ = ["GaussianPrior", "sample", "residual_dependence", "PRIORS", "PREDICTORS", "CORRECTORS"]
