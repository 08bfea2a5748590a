"""Likelihoods through the probability-flow ODE of the discretised chain (Song et al. 2021, Appendix D).

Along the probability-flow ODE dx/dt = f(t, x) from x_0 = x (f: :meth:`spdekit.reverse.ReverseSDE.
probability_flow`, b - Sigma s / 2 plus the correction that makes it carry the chain's own marginals)
the log density changes by d log p_t(x_t) / dt = -div f(t, x_t), so

    log p_0(x) = log p_T(x_T) + int_0^T div f(t, x_t) dt,

with p_T the model's prior (the moment-matched Gaussian of U_T, :class:`genmodel.GaussianPrior`).

Divergence. For additive noise (lambda2 = inf: Sigma does not depend on x) the correction is
G_x x + G_s s with linear operators (:class:`spdekit.reference.ChainFlow`: G_x = V diag(c_z) V^{-1},
G_s = V diag(c_s) V^T symmetric), so

    v . J_f v = v . J_b^T v + v . G_x v + v . J_s^T (G_s - Sigma / 2) v,

J_b^T v by spdekit's drift adjoint (:meth:`AnisotropicSPDE.drift_vjp`), J_s^T w by torch autograd
through the score function. div f = E[eps . J_f eps] for Rademacher eps (Hutchinson 1989; one eps
per image for the whole solve, as score_sde does): an unbiased estimate, or exactly
sum_i e_i . J_f e_i with ``exact_trace=True`` (D backward passes per evaluation: small images).
Multiplicative noise (lambda2 < inf) is refused (Sigma would depend on x).

The ODE and the integral are stepped together by Heun's method on chain steps (the times the
scores and the reference are defined at), forward from t = 0 to T.

Units: the negative log-likelihood of the CONTINUOUS density of images in [-1, 1]^D, in bits per
dimension -log2 p(x) / D. No dequantisation: it is not a bound on the NLL of 8-bit images, and
for data near a low-dimensional set it can be very negative. On the [0, 255] pixel scale the
same density has log2(127.5) = 6.99 bits per dimension more.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from spdekit.reverse import apply_sigma

from .bridge import numpy_score
from .samplers import _attribute, gaussian_reference


def _differentiable(score_fn):
    """The callable to differentiate: a model behind :func:`genmodel.runs.score_function` (which
    runs without grad) or the score function itself."""
    model = _attribute(score_fn, "model")
    return score_fn if model is None else model


def _chain_steps(n_steps: int, steps: int) -> np.ndarray:
    if not 1 <= steps <= n_steps:
        raise ValueError(f"steps must lie in [1, K = {n_steps}], got {steps}")
    return np.rint(n_steps * np.arange(steps + 1) / steps).astype(np.int64)


class _Flow:
    """f(t, x) and div f(t, x) for one batch (module doc)."""

    def __init__(self, process, score_fn, reference, exact_trace: bool):
        self.spde = process.spde
        self.fn = _differentiable(score_fn)
        self.ref = reference
        self.rsde = process.spde.reverse(numpy_score(score_fn), reference)
        self.exact = exact_trace

    def __call__(self, k: int, x: np.ndarray, eps: np.ndarray):
        t = k * self.ref.dt
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        with torch.enable_grad():
            s = self.fn(torch.full((x.shape[0],), t, dtype=xt.dtype), xt)
        if not (isinstance(s, torch.Tensor) and s.requires_grad):
            raise ValueError("log_likelihood needs a score function differentiable in u by torch autograd "
                             "(a ScoreModel, genmodel.exact scores, or torch code)")
        s_np = s.detach().numpy()
        f = self.rsde.probability_flow(t, x, s_np)
        flow = self.ref.chain_flow

        def quad(v):
            """v . J_f v per image (module doc), with transposes where the operators give them."""
            w = apply_sigma(self.spde, t, x, v) - 2.0 * flow.apply_s(k, v)
            js = torch.autograd.grad(s, xt, grad_outputs=torch.as_tensor(w, dtype=s.dtype), retain_graph=True)[0]
            jf = self.spde.drift_vjp(t, x, v) + flow.apply_x(k, v) - 0.5 * js.numpy()
            return (v * jf).reshape(v.shape[0], -1).sum(1)

        B = x.shape[0]
        if not self.exact:
            return f, quad(eps)
        D = x[0].size
        div = np.zeros(B)
        for i in range(D):
            e = np.zeros_like(x).reshape(B, -1)
            e[:, i] = 1.0
            div += quad(e.reshape(x.shape))
        return f, div


def log_likelihood(process, score_fn, x, steps: int | None = None, exact_trace: bool = False, seed=None,
                   prior=None, reference=None, data=None, batch_size: int = 256, dtype=torch.float32,
                   progress: bool = False, details: bool = False):
    """Negative log-likelihood of images ``x`` (N, C, H, W) in bits per dimension (module doc).

    Parameters
    ----------
    process, score_fn : the chain and its score (a model from :func:`genmodel.runs.load_model`, its
        :func:`score_function`, or an exact score of :mod:`genmodel.exact`).
    steps : Heun steps from 0 to T on chain steps (default K); 2 score evaluations (and backward passes) each.
    exact_trace : the exact divergence (D backward passes per evaluation) instead of Hutchinson's estimate.
    seed : seed of the Rademacher probes.
    prior : the prior at T with ``log_prob`` (a :class:`GaussianPrior`, e.g. the model's).
    reference : the chain's :class:`spdekit.GaussianReference` (default: the score function's own, or
        one fitted to ``data``).
    dtype : the dtype the score function is evaluated in (float32 for networks).
    details : also return a dict with the prior term and the divergence integral (nats).

    Returns the per-image NLL in bits per dimension, a numpy array (N,) (and the dict).
    """
    if prior is None or not callable(getattr(prior, "log_prob", None)):
        raise ValueError("log_likelihood needs prior= with log_prob(x) (the model's GaussianPrior)")
    if not process.spde.is_additive:
        raise ValueError("log_likelihood supports additive noise (lambda2 = inf) only: with multiplicative noise "
                         "Sigma depends on u and its divergence terms are not implemented")
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    ks = _chain_steps(process.n_steps, process.n_steps if steps is None else int(steps))
    ref = gaussian_reference(process, score_fn, reference, data)
    flow = _Flow(process, score_fn, ref, exact_trace)
    rng = np.random.default_rng(seed)
    npdtype = torch.empty((), dtype=dtype).numpy().dtype
    prior_lp, integral = [], []
    n = x.shape[0]
    with tqdm(total=(len(ks) - 1) * math.ceil(n / batch_size), disable=not progress, desc="likelihood",
              unit="step") as bar:
        for start in range(0, n, batch_size):
            xb = x[start:start + batch_size].to(torch.float64).numpy().astype(npdtype)
            eps = (2 * rng.integers(0, 2, xb.shape) - 1).astype(npdtype)
            acc = np.zeros(xb.shape[0])
            f0, d0 = flow(int(ks[0]), xb, eps)
            for k0, k1 in zip(ks[:-1], ks[1:]):
                h = (k1 - k0) * process.dt
                pred = (xb + h * f0).astype(npdtype)
                f1, d1 = flow(int(k1), pred, eps)
                xb = (xb + 0.5 * h * (f0 + f1)).astype(npdtype)
                acc += 0.5 * h * (d0 + d1)
                if not np.isfinite(xb).all():
                    raise FloatingPointError(f"the probability-flow ODE became non-finite at t = {k1 * process.dt:.6g}")
                f0, d0 = flow(int(k1), xb, eps) if k1 != ks[-1] else (None, None)
                bar.update(1)
            prior_lp.append(np.asarray(prior.log_prob(torch.as_tensor(xb))))
            integral.append(acc)
    prior_lp, integral = np.concatenate(prior_lp), np.concatenate(integral)
    D = x[0].numel()
    bpd = -(prior_lp + integral) / (D * math.log(2))
    if details:
        return bpd, {"prior_log_prob": prior_lp, "divergence_integral": integral, "dims": D}
    return bpd


__all__ = ["log_likelihood"]
