r"""Path-space denoising score matching for nonlinear chains with additive noise (loss "path").

The one-step transition loss (:class:`genmodel.losses.TransitionDSM`) is exact for the nonlinear chain
but its target -S^{-1} eps has size 1/sqrt(dt); its antithetic pair leaves a Hutchinson trace term
whose variance does not fall at large t (docs/genmodel.md, Results). The exact-Gaussian DSM of a
linear chain has a target -C_k^{-1}(u_k - A_k u_0) whose variance falls as C_k grows. This loss gives
the nonlinear chain a target of the second kind, still unbiased for the discrete chain.

Derivation (a shift of the path, the discrete analogue of the Bismut-Elworthy-Li formula)
-----------------------------------------------------------------------------------------
The chain is u_m = Phi_{m-1}(u_{m-1}) + eps_m, Phi_{m}(u) = u + dt b(t_m, u) (untamed Euler-Maruyama,
eq. 38), eps_m ~ N(0, S_{m-1}), S_{m-1} = dt alpha2(t_{m-1})^2 I (additive white noise: lambda2 = inf,
l = 0). The law of the path u_0..u_k has the density p_0(u_0) prod_m N(u_m; Phi_{m-1}(u_{m-1}), S_{m-1}).
For any fixed matrices D_0 = 0, D_1, ..., D_{k-1}, D_k = I, the change of variables u_m -> u_m + D_m h
(m = 1..k-1; Jacobian 1; u_0 untouched, so the unknown data density drops out) gives
p_k(u_k + h) = E-integral of the shifted path density. Differentiating at h = 0:

    s_k(u_k) = grad log p_k(u_k) = E[ G_k | u_k ],
    G_k = - sum_{m=1}^{k} (D_m^T - D_{m-1}^T J_{m-1}^T) S_{m-1}^{-1} eps_m,   J_{m-1} = D Phi_{m-1}(u_{m-1}),

so E lambda_k |s_theta(u_k) - G_k|^2 is minimised by the score of the NONLINEAR chain for any choice
of the D_m (the one-step transition target is D_m = 0 for m < k). The choice sets the variance.

Choice of D. For a LINEAR chain u_m = A_{m-1} u_{m-1} + eps_m the choice
D_m = A_{k-1} ... A_m C_m C_k^{-1} (C_m = Cov(u_m | u_0)) turns G_k into -C_k^{-1}(u_k - A u_0), the
exact-Gaussian DSM target exactly (checked in tests). We take A, C of the LINEARISED chain
(lambda1 = lambda2 = inf, conservative stencil: diagonal in the DCT-II basis, per-mode factors
f_m = 1 + dt alpha1(t_m) mu and variances c_m; the same reference as
:class:`genmodel.networks.ScoreModel`), with the TRUE Jacobian J of the nonlinear drift. With
V_k := C_k (-G_k) this gives the recursion (mode coordinates for f, c; J^T in grid coordinates,
spdekit's adjoint kernel :meth:`spdekit.AnisotropicSPDE.drift_vjp`)

    V_k = f_{k-1} V_{k-1} + (c_k - f_{k-1} c_{k-1} J_{k-1}^T) S_{k-1}^{-1} eps_k
        = f_{k-1} V_{k-1} + eps_k + f_{k-1} c_{k-1} dt (alpha1 mu - J_b^T) S_{k-1}^{-1} eps_k,

    target_k = -C_k^{-1} V_k,           V_0 = 0,

(J = I + dt J_b; c_k = f_{k-1}^2 c_{k-1} + dt alpha2^2 was used). The last term is the mismatch between
the nonlinear drift's Jacobian and its linearisation: zero for the linear chain, and small wherever
the Perona-Malik drift acts like the heat equation. One V per forward path, updated with one
adjoint product per chain step; no antithetic pair (one network evaluation per state).

Measured (stop 16, scratch run of this recursion on 256 digit paths of the paper's anisotropic preset):
lambda_k E|target|^2 / D is 1.0 / 1.3 / 2.6 / 6.9 / 25 for k in [1, 80), [80, 600), [600, 1100),
[1100, 1600), [1600, 2000], against 1.1 / 2.0 / 4.9 / 12.5 / 30 for the exact DSM of the linearised
chain; Stein's identity E[target . phi(u_k)] = -E[div phi(u_k)] holds within its standard error
(tests/test_genmodel_path_dsm.py checks it).

Restrictions (clear errors): untamed Euler-Maruyama (the tamed step's Jacobian has a rank-one part
from the norm), additive (lambda2 = inf) and white (l = 0) noise (S^{-1} and the diagonal reference
need both).
"""

from __future__ import annotations

import numpy as np
import torch

from . import modes
from .losses import TransitionPool, _host_steps, weighted_dsm_loss
from .processes import SPDEProcess


def _check(process: SPDEProcess) -> None:
    spde = process.spde
    if process.solver.taming is not None:
        raise ValueError("the path loss needs the untamed Euler-Maruyama chain (solver taming = None); "
                         "use loss='transition' for the tamed chain")
    if not (spde.is_additive and spde.noise.is_white):
        raise ValueError("the path loss needs additive white noise (lambda2 = inf, correlation_length = 0); "
                         f"got lambda2={spde.lambda2!r}, correlation_length={spde.correlation_length}. "
                         "Use loss='transition'")


class PathTargets:
    """Forward paths together with the running sum V_k of the module doc (one chain step at a time).

    V is a float64 tensor in DCT-II mode coordinates on the paths' device; the reference tables are
    moved there once per device."""

    def __init__(self, process: SPDEProcess, shape):
        _check(process)
        self.process = process
        sp = process.spde
        ref = process.gaussian_reference(tuple(shape[-2:]))  # the networks' reference chain
        t = process.dt * np.arange(process.n_steps)
        self._host = {
            "c": ref.c,  # (K+1, H, W)
            "f": ref.chain.step_factors,  # (K, H, W)
            "mu": ref.mu,  # (H, W)
            "a1": np.asarray(sp.alpha1(t), dtype=np.float64),  # (K,)
            "a2sq": np.asarray(sp.alpha2(t), dtype=np.float64) ** 2,
        }
        self._placed: dict = {}

    def _tables(self, device) -> dict:
        device = torch.device(device)
        if device not in self._placed:
            self._placed[device] = {n: torch.as_tensor(a, dtype=torch.float64).to(device)
                                    for n, a in self._host.items()}
        return self._placed[device]

    def step(self, k: np.ndarray, u: torch.Tensor, V: torch.Tensor, rng: np.random.Generator):
        """(u_{k+1}, V_{k+1}) from (u_k, V_k) for chains at steps k (B,) < K; V in mode coordinates."""
        p = self.process
        tab = self._tables(u.device)
        kt = torch.as_tensor(k, device=u.device)
        tr = p.transition(k, u, rng)
        inv_s = 1.0 / (p.dt * tab["a2sq"][kt])[:, None, None, None]  # S^{-1} = I / (dt alpha2^2)
        w = tr.eps * inv_s.to(u.dtype)
        jtw = p.drift_vjp(k, u, w).to(torch.float64)
        eps_hat = modes.to_modes(tr.eps.to(torch.float64))
        w_hat = eps_hat * inv_s
        f = tab["f"][kt][:, None]
        fc = f * tab["c"][kt][:, None]
        a1mu = tab["a1"][kt][:, None, None, None] * tab["mu"]
        V = f * V + eps_hat + fc * p.dt * (a1mu * w_hat - modes.to_modes(jtw))
        return tr.next.contiguous(), V

    def target(self, k: np.ndarray, V: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """-C_k^{-1} V_k in grid coordinates (k >= 1), in like's dtype on V's device."""
        c = self._tables(V.device)["c"][torch.as_tensor(k, device=V.device)][:, None]
        return modes.from_modes(-V / c).to(like.dtype)

    def simulate(self, u0: torch.Tensor, k, rng: np.random.Generator):
        """(u_k, V_k) for every image of u0 run to its own step k (int or (B,) array, >= 0); the target is
        :meth:`target` of V_k."""
        B = u0.shape[0]
        k = np.broadcast_to(np.asarray(k, dtype=np.int64), (B,))
        if k.min() < 0 or k.max() > self.process.n_steps:
            raise ValueError(f"step indices must lie in [0, K = {self.process.n_steps}]")
        u = u0.detach().to(torch.float32).clone().contiguous()
        V = torch.zeros(tuple(u.shape), dtype=torch.float64, device=u.device)
        for j in range(int(k.max())):
            idx = np.nonzero(k > j)[0]
            it = torch.as_tensor(idx, device=u.device)
            un, V[it] = self.step(np.full(idx.size, j), u[it].contiguous(), V[it], rng)
            u[it] = un
        return u, V


class PathPool(TransitionPool):
    """Forward paths for the path loss, moved ``advance`` chain steps per draw as in
    :class:`genmodel.losses.TransitionPool`: ``size`` chains at staggered steps, each with its V."""

    def __init__(self, process: SPDEProcess, data: torch.Tensor, size: int, rng: np.random.Generator,
                 advance: int = 1, time_weight_power: float = 0.0):
        self._configure(process, data, size, advance, time_weight_power)
        self.paths = PathTargets(process, data.shape)
        self.k = rng.integers(0, process.n_steps, self.size)
        self.u, self.V = self.paths.simulate(self._fresh(self.size, rng), self.k, rng)

    def draw(self, batch: int, rng: np.random.Generator):
        """Move every chain ``advance`` steps (chains at K restart from fresh images first); return
        (k, u_k, target_k) of ``batch`` random chains, all with k >= 1."""
        for _ in range(self.advance):
            self._restart_finished(rng)
            self.u, self.V = self.paths.step(self.k, self.u, self.V, rng)
            self.k = self.k + 1
        idx = self._pick(batch, self.k, rng)
        k = self.k[idx].copy()
        it = torch.as_tensor(idx, device=self.u.device)
        return k, self.u[it], self.paths.target(k, self.V[it], self.u)

    def _restart_finished(self, rng):
        """Chains at K restart from fresh images at k = 0 with V = 0."""
        done = np.nonzero(self.k >= self.process.n_steps)[0]
        if done.size:
            self.V[torch.as_tensor(done, device=self.V.device)] = 0.0
        super()._restart_finished(rng)

    def state_dict(self) -> dict:
        return {"u": self.u.clone(), "k": torch.as_tensor(self.k), "V": self.V.clone()}

    def load_state_dict(self, d: dict) -> None:
        if tuple(d["u"].shape) != tuple(self.u.shape) or "V" not in d:
            raise ValueError(f"path-pool state does not match this pool (shape {tuple(self.u.shape)})")
        self.u = d["u"].to(self.u.device).clone().contiguous()
        self.k = _host_steps(d["k"])
        self.V = d["V"].to(device=self.u.device, dtype=torch.float64).clone()


class PathDSM:
    """The path-space loss of the module doc: E lambda_k |s_theta(t_k, u_k) - target_k|^2 / D."""

    name = "path"

    def __init__(self, process: SPDEProcess, data: torch.Tensor, pool_size: int, rng: np.random.Generator,
                 pool_advance: int = 1, time_weight_power: float = 0.0):
        self.process = process
        self.data = data
        self.pool = PathPool(process, data, pool_size, rng, pool_advance, time_weight_power)

    def __call__(self, model, batch: int, rng: np.random.Generator) -> torch.Tensor:
        k, u, target = self.pool.draw(batch, rng)
        return weighted_dsm_loss(model, self.process, k, u, target)

    def loss_at(self, model, u0: torch.Tensor, k, rng: np.random.Generator) -> torch.Tensor:
        """The loss on given data images ``u0`` at given chain steps ``k`` (>= 1), paths drawn from ``rng``."""
        k = np.broadcast_to(np.asarray(k, dtype=np.int64), (u0.shape[0],))
        if k.min() < 1:
            raise ValueError("the path loss needs k >= 1 (the score of u_0 is the data's)")
        u, V = self.pool.paths.simulate(u0, k, rng)
        return weighted_dsm_loss(model, self.process, k, u, self.pool.paths.target(k, V, u))

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.pool.load_state_dict(d["pool"])


__all__ = ["PathDSM", "PathPool", "PathTargets"]
