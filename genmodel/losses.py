r"""Score-matching losses for the discretised chain (paper, Section 3.2, eq. 4-5).

Both losses estimate the L^2(eta) distance of eq. (5) between the model s_theta and the score
s_k = grad log p_k of the chain at the times t_k = k dt, with the time weighting

    lambda_k = sigma_k^2 = sum_{m<k} dt alpha2(t_m)^2        (the zeta(t) of eq. 4),

the noise variance the chain has accumulated by step k. The score scales like 1/sigma_k (at small
k it is about -noise/sigma_k^2 with noise ~ sigma_k), so lambda_k |s_k|^2 is O(1) per pixel at every
k and no time dominates the loss (Song et al. 2021 use lambda = sigma^2 for the same reason). With
the :class:`genmodel.networks.ScoreModel` parameterisation s = F / sigma_k the weighted loss is the
plain squared error of F.

The time measure. The states are drawn with k uniform on {1..K} (eq. 4's U_I) by default. With
``time_weight_power`` p > 0 they are drawn with probability proportional to (t_k / T)^p instead, i.e.
zeta(t) = lambda (t / T)^p in eq. (4)-(5): the minimiser (the score at every k) is the same, but a
network of limited size spends more of its fit, and a run of limited length more of its draws, on
late times. Drawing (rather than multiplying the loss by (t_k / T)^p) keeps the gradient noise of
the down-weighted states out of the batch. The pools draw their ``batch`` states without replacement
among ``size`` chains, so the proportionality holds up to O(batch / size).

1. Exact-Gaussian denoising score matching (:class:`ExactGaussianDSM`, linear chains only)
------------------------------------------------------------------------------------------
For a linear chain u_k | u_0 ~ N(A_k u_0, C_k) exactly (spdekit.linear), so (Vincent 2011)

    L = E_k E_{u_0} E_{u_k | u_0} lambda_k |s_theta(t_k, u_k) + C_k^{-1}(u_k - A_k u_0)|^2 / D,

whose minimiser is the marginal score s_k (the conditional expectation of the target given u_k).
u_k = A_k u_0 + R xi with R R^T = C_k and the target -C_k^{-1} R xi come from the same xi.

2. One-step transition score matching for nonlinear chains (:class:`TransitionDSM`)
-----------------------------------------------------------------------------------
For the nonlinear chain there is no closed-form law of u_k | u_0, but ONE step is Gaussian exactly:

    u_{k+1} = mu_k + eps,  mu_k = u_k + dt b(t_k, u_k) (tamed: eq. 39),  eps ~ N(0, S_k),
    S_k = dt diag(g2_k) Q diag(g2_k),  g2_k = g2(t_k, u_k),

so grad_{u'} log p(u' | u_k) = -S_k^{-1}(u' - mu_k). Since p_{k+1}(u') = E[p(u' | u_k)], the marginal
score is s_{k+1}(u') = E[-S_k^{-1} eps | u_{k+1} = u'] (Birrell et al. 2024, NDSM; here exact for
the discrete chain, with no small-time approximation, because the chain IS the forward process).
Hence, for any metric M(t_{k+1}, u') > 0 that depends on u' only,

    L = E lambda_{k+1} |s_theta(u_{k+1}) + S_k^{-1} eps|^2_M
      = E lambda_{k+1} [ s^T M s + 2 s^T M S_k^{-1} eps ] + (a constant independent of theta)

is minimised by s_{k+1}. The u_k come from simulated forward paths (:class:`TransitionPool`).

Variance. The target S_k^{-1} eps has size 1/sqrt(dt * alpha2^2), far larger than the score at the
paper's dt = 1e-3 (sigma_k^2 / (dt alpha2(t_k)^2) is about 190 there for the geometric alpha2), and the
cross term 2 s^T M S^{-1} eps carries that variance into the gradient. Control variate: given u_k, eps is
centred and symmetric, so any term odd in eps has conditional mean zero; in particular
c = -2 s_theta(mu_k - eps)^T M S^{-1} eps (with M not depending on eps) has E[c | u_k] = 0 and is
strongly correlated with the cross term. Rather than one evaluation at an extra point we use the
antithetic pair u_pm = mu_k +- eps: both points are exact draws of u_{k+1} | u_k, so averaging the
loss over the pair is unbiased and adds the control variate automatically:

    L_pair = lambda [ (q(s_+) + q(s_-)) / 2 + s_+^T M_+ S^{-1} eps - s_-^T M_- S^{-1} eps ],
    q(s) = s^T M s.

By Taylor expansion s_+ - s_- = 2 J eps + O(|eps|^3), J = D_u s_theta, so the cross term becomes
2 eps^T M J S^{-1} eps = O(1) instead of O(|eps|^{-1}): the O(dt^{-1/2}) part is gone. What is left
is the Hutchinson-type trace estimate of implicit score matching (Hyvarinen 2005),
E[eps^T J S^{-1} eps] = tr J for M = I. Measured (tests/test_genmodel_losses.py): at dt = 1e-3 the
batch variance of L(s* + delta) - L(s*) drops about 450-fold. The price is two network evaluations
per chain state.

Metric M: it must not depend on u_k (else the minimiser is biased). We take
 * additive noise (lambda2 = inf, any l): M = Q, so M S^{-1} = I / (dt alpha2(t_k)^2); q(s) = s^T Q s is
   applied by spdekit's circulant Q (:class:`ApplyQ`, differentiable); no Q^{-1} is needed;
 * multiplicative noise with white noise (l = 0): M = diag(g2(t_k, u')^2) / alpha2(t_k)^2 and
   M S^{-1} eps = M eps / (dt g2_k^2), all g2 fields from spdekit;
 * multiplicative correlated noise (l > 0, lambda2 < inf) would need Q^{-1}: not supported (clear error).
For white additive noise M = I and this is the same weighted L^2 distance as loss 1.

The loss value has the theta-independent constant E lambda |S^{-1} eps|^2_M removed, so it can be
negative; compare models by their score error against an exact score, not by this value.

3. Path-space score matching for nonlinear chains (:class:`genmodel.path_dsm.PathDSM`, loss "path")
---------------------------------------------------------------------------------------------------
A shift of the whole path (not just its last step) gives an unbiased target for the nonlinear chain
that reduces to loss 1's target on a linear chain; its variance falls with t like loss 1's. It needs
the adjoint of the drift (spdekit) along the path, untamed EM and additive white noise. Derivation in
:mod:`genmodel.path_dsm`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .processes import SPDEProcess, Transition

LOSSES = ("exact", "transition", "path")


class ApplyQ(torch.autograd.Function):
    """v -> Q v with spdekit's circulant-embedded Q (on v's device); Q is symmetric so the backward is Q
    again."""

    @staticmethod
    def forward(ctx, v, noise):
        ctx.noise = noise
        return noise.apply_Q(v.detach().contiguous()).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        return ctx.noise.apply_Q(g.detach().contiguous()).to(g.dtype), None


def apply_Q(noise, v: torch.Tensor) -> torch.Tensor:
    return v if noise.is_white else ApplyQ.apply(v, noise)


def _times(t, like: torch.Tensor) -> torch.Tensor:
    """Host times (an array) as a tensor of like's dtype on its device."""
    return torch.as_tensor(np.asarray(t, dtype=np.float64), dtype=like.dtype).to(like.device)


def _host_steps(k: torch.Tensor) -> np.ndarray:
    """A pool's saved step indices (a tensor in the checkpoint) as the host int64 array it keeps."""
    return np.array(k.tolist(), dtype=np.int64).reshape(tuple(k.shape))


def time_draw_probabilities(k, n_steps: int, power: float):
    """Probabilities proportional to (k / K)^power over the step indices ``k`` (>= 1): the time measure
    of the module doc; ``None`` for power 0 (uniform: callers then draw without weights)."""
    if power == 0:
        return None
    w = (np.asarray(k, dtype=np.float64) / n_steps) ** power
    return w / w.sum()


def check_time_weight_power(power) -> float:
    power = float(power)
    if not (math.isfinite(power) and power >= 0):
        raise ValueError(f"time_weight_power must be a finite number >= 0 (0: uniform in t), got {power}")
    return power


def weighted_dsm_loss(model, process: SPDEProcess, k, u: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_b lambda_{k_b} |s_theta(t_k, u_b) - target_b|^2 / D, lambda_k = sigma_k^2 (module doc)."""
    s = model(_times(k * process.dt, u), u)
    lam = _times(process.sigma2[k], u)
    return (lam * (s - target).square().flatten(1).sum(1)).mean() / u[0].numel()


class ExactGaussianDSM:
    """Loss 1 of the module doc; ``data`` is the (N, C, H, W) training set."""

    name = "exact"

    def __init__(self, process: SPDEProcess, data: torch.Tensor, time_weight_power: float = 0.0):
        if not process.is_linear:
            raise ValueError("the exact-Gaussian loss needs a linear chain (lambda1 = lambda2 = inf, untamed EM); "
                             "use loss='transition'")
        self.process = process
        self.data = data
        self.time_weight_power = check_time_weight_power(time_weight_power)

    def __call__(self, model, batch: int, rng: np.random.Generator) -> torch.Tensor:
        idx = torch.as_tensor(rng.integers(0, self.data.shape[0], batch), device=self.data.device)
        u0 = self.data[idx].contiguous()
        K = self.process.n_steps
        p = time_draw_probabilities(np.arange(1, K + 1), K, self.time_weight_power)
        k = rng.integers(1, K + 1, batch) if p is None else rng.choice(np.arange(1, K + 1), size=batch, p=p)
        return self.loss_at(model, u0, k, rng)

    def loss_at(self, model, u0: torch.Tensor, k, rng: np.random.Generator) -> torch.Tensor:
        """The loss on given data images ``u0`` at given chain steps ``k`` (>= 1), u_k drawn from ``rng``."""
        p = self.process
        k = np.broadcast_to(np.asarray(k, dtype=np.int64), (u0.shape[0],))
        u, target = p.marginal(u0, k).sample(rng)
        return weighted_dsm_loss(model, p, k, u, target)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


class TransitionPool:
    """Forward paths for the transition loss, simulated on the fly by spdekit.

    ``size`` chains run side by side at staggered steps (a warm-up draws k ~ U{0..K-1} and
    simulates each chain from a data image to its k). Each call of :meth:`draw` moves EVERY chain
    one step (the spdekit kernel over the whole pool), returns the transitions of ``batch`` random
    chains, and restarts chains that reach K from fresh data images at k = 0. The step index of a
    chain is then uniform on {0..K-1} in the long run (a renewal process), and the pool sees
    size / K new images per call. Cost per call: one chain step for ``size`` images; memory:
    ``size`` images.

    ``advance`` > 1 moves every chain ``advance`` steps per call (the first ``advance - 1`` by the
    fused spdekit step, the last as the returned transition): the pool then starts
    size * advance / K fresh paths per call. Why it matters: two states drawn from one path a few
    steps apart share most of their noise, so the number of DISTINCT paths,
    size * (1 + advance * calls / K), not the number of drawn states, bounds how many noise
    realisations of each image the network sees. The chain steps are cheap next to the network.
    """

    def __init__(self, process: SPDEProcess, data: torch.Tensor, size: int, rng: np.random.Generator,
                 advance: int = 1, time_weight_power: float = 0.0):
        self._configure(process, data, size, advance, time_weight_power)
        self.k = rng.integers(0, process.n_steps, self.size)
        self.u = process.simulate(self._fresh(self.size, rng), self.k, rng)

    def _configure(self, process, data, size, advance, time_weight_power=0.0):
        """Check and store the pool's parameters (shared with :class:`genmodel.path_dsm.PathPool`)."""
        self.time_weight_power = check_time_weight_power(time_weight_power)
        self.process = process
        self.data = data
        self.size = int(size)
        if self.size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.advance = int(advance)
        if not 1 <= self.advance <= process.n_steps:
            raise ValueError(f"pool advance (chain steps per draw) must be in [1, K = {process.n_steps}], "
                             f"got {advance}")

    def _pick(self, batch: int, target_k, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``batch`` distinct chains, weighted by the time measure at their target steps."""
        p = time_draw_probabilities(target_k, self.process.n_steps, self.time_weight_power)
        return rng.choice(self.size, size=min(batch, self.size), replace=False, p=p)

    def _fresh(self, n, rng):
        idx = torch.as_tensor(rng.integers(0, self.data.shape[0], n), device=self.data.device)
        return self.data[idx].to(torch.float32).contiguous()

    def _restart_finished(self, rng):
        done = np.nonzero(self.k >= self.process.n_steps)[0]
        if done.size:
            self.u[torch.as_tensor(done, device=self.u.device)] = self._fresh(done.size, rng)
            self.k[done] = 0

    def draw(self, batch: int, rng: np.random.Generator) -> Transition:
        for _ in range(self.advance - 1):
            self.u = self.process.step(self.k, self.u, rng)
            self.k = self.k + 1
            self._restart_finished(rng)
        tr = self.process.transition(self.k, self.u, rng)
        idx = self._pick(batch, self.k + 1, rng)
        it = torch.as_tensor(idx, device=tr.u.device)
        out = Transition(k=self.k[idx].copy(), u=tr.u[it], mean=tr.mean[it], eps=tr.eps[it])
        self.u = tr.next.contiguous()
        self.k = self.k + 1
        self._restart_finished(rng)
        return out

    def state_dict(self) -> dict:
        return {"u": self.u.clone(), "k": torch.as_tensor(self.k)}

    def load_state_dict(self, d: dict) -> None:
        if tuple(d["u"].shape) != tuple(self.u.shape):
            raise ValueError(f"pool state has shape {tuple(d['u'].shape)}, this pool {tuple(self.u.shape)}")
        self.u = d["u"].to(self.u.device).clone().contiguous()
        self.k = _host_steps(d["k"])


class TransitionDSM:
    """Loss 2 of the module doc (one-step transition target, antithetic control variate)."""

    name = "transition"

    def __init__(self, process: SPDEProcess, data: torch.Tensor, pool_size: int, rng: np.random.Generator,
                 antithetic: bool = True, pool_advance: int = 1, time_weight_power: float = 0.0):
        spde = process.spde
        if not (spde.is_additive or spde.noise.is_white):
            raise NotImplementedError(
                "the transition loss with multiplicative (lambda2 < inf) AND correlated (l > 0) noise needs Q^{-1}; "
                "use lambda2 = inf or correlation_length = 0"
            )
        self.process = process
        self.antithetic = bool(antithetic)
        self.pool = TransitionPool(process, data, pool_size, rng, pool_advance, time_weight_power)

    def loss_on(self, model, tr: Transition) -> torch.Tensor:
        p = self.process
        spde = p.spde
        k = tr.k
        t1 = _times((k + 1) * p.dt, tr.u)
        lam = _times(p.sigma2[k + 1], tr.u)
        a2 = _times(np.asarray(spde.alpha2(k * p.dt)) ** 2, tr.u)[:, None, None, None]
        up = tr.mean + tr.eps
        if self.antithetic:
            um = tr.mean - tr.eps
            s = model(torch.cat([t1, t1]), torch.cat([up, um]))
            branches = [(s[: len(k)], up, 1.0), (s[len(k):], um, -1.0)]
        else:
            branches = [(model(t1, up), up, 1.0)]
        total = 0.0
        for s_b, u_b, sign in branches:
            if spde.is_additive:
                q = (s_b * apply_Q(spde.noise, s_b)).flatten(1).sum(1)
                c = (s_b * tr.eps).flatten(1).sum(1) / (p.dt * a2.flatten())
            else:
                g2p = p.diffusion_amplitude(k, u_b)
                g2k = p.diffusion_amplitude(k, tr.u)
                M = g2p.square() / a2
                q = (M * s_b.square()).flatten(1).sum(1)
                c = (M * s_b * tr.eps / (p.dt * g2k.square())).flatten(1).sum(1)
            total = total + (q + 2.0 * sign * c) / len(branches)
        D = tr.u[0].numel()
        return (lam * total).mean() / D

    def __call__(self, model, batch: int, rng: np.random.Generator) -> torch.Tensor:
        return self.loss_on(model, self.pool.draw(batch, rng))

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.pool.load_state_dict(d["pool"])


__all__ = ["ExactGaussianDSM", "TransitionDSM", "TransitionPool", "ApplyQ", "LOSSES"]
