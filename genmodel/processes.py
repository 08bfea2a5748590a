"""Forward processes as the generative model sees them (paper, Sections 3.1, 4.2, 5).

:class:`SPDEProcess` is the discretised chain u_{k+1} = u_k + dt b(t_k, u_k) + g2(t_k, u_k) dW_k,
t_k = k dt, k = 0..K (K = T / dt): the finite-dimensional SDE (12) stepped by (tamed)
Euler-Maruyama (eq. 38-39). Following Section 4.2 this chain IS the forward process: its scores are
what the network learns and what the sampler reverses, so forward and backward live at the same
level of approximation.

All numerics are spdekit's: the chain's torch tensors are passed to spdekit as they are (spdekit views
them through DLPack, computes on their memory and returns tensors on their device,
:mod:`spdekit._arrays`), so one code path serves CPU and CUDA tensors. The noise is drawn on the
tensors' device by spdekit's counter-based Philox streams, keyed by the caller's numpy Generator
(:class:`spdekit.random.NormalsLike`): the generator's state is the whole random state of a run.
Nothing here re-implements a stencil, the g2 field or the noise.

Linear chains (lambda1 = lambda2 = inf: pure noise eq. 13, heat eq. 17; white or Q-Wiener noise)
with the untamed EM solver have an exact Gaussian law given u_0 (:mod:`spdekit.linear`):
:meth:`SPDEProcess.marginal` returns its mean and a covariance operator, diagonal in the DCT-II
basis for the conservative stencil with white noise, dense otherwise (see spdekit.linear for which
and what it costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import spdekit
from spdekit.linear import LinearChain
from spdekit.random import NormalsLike
from spdekit.reference import GaussianReference
from spdekit.simulate import n_steps_for
from spdekit.solvers import solver_from_dict
from spdekit.spectral import from_modes, to_modes

from . import modes
from .exact import GaussianDataScore  # noqa: F401  (re-exported: it lived here)

PRESETS = ("paper_anisotropic", "paper_isotropic", "pure_noise", "custom")


def _table(x, like: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """A host table (numpy) as a tensor on like's device."""
    return torch.as_tensor(x, dtype=dtype).to(like.device)


class SPDEProcess:
    """The discretised forward chain of an :class:`spdekit.AnisotropicSPDE`.

    Parameters
    ----------
    spde : the SPDE (e.g. ``AnisotropicSPDE.paper_anisotropic(16)``).
    T : final time; dt : step; T / dt must be an integer K.
    solver : :class:`spdekit.EulerMaruyama` (default) or :class:`spdekit.TamedEulerMaruyama`.
        Exact Gaussian laws exist only for the untamed chain of a linear SPDE.
    """

    def __init__(self, spde, T: float, dt: float, solver=None):
        if not isinstance(spde, spdekit.AnisotropicSPDE):
            raise TypeError(f"spde must be an spdekit.AnisotropicSPDE, got {type(spde).__name__}")
        self.spde = spde
        self.T = float(T)
        self.dt = float(dt)
        self.n_steps = n_steps_for(0.0, self.T, self.dt)
        self.solver = spdekit.EulerMaruyama() if solver is None else solver_from_dict(solver)
        spde.check_dt(self.dt, 0.0, self.T)
        a2 = np.asarray(spde.alpha2(self.dt * np.arange(self.n_steps)))
        if np.any(a2 <= 0):
            raise ValueError("alpha2 must be > 0 on [0, T): without noise the forward chain has no density (no score)")
        #: accumulated noise variance sigma_k^2 = sum_{m<k} dt alpha2(t_m)^2, k = 0..K
        self.sigma2 = np.concatenate([[0.0], np.cumsum(self.dt * a2**2)])
        self._laws: dict = {}

    # ------------------------------------------------------------------ description
    @classmethod
    def from_preset(cls, preset: str, image_size: int, T: float = 2.0, dt: float = 1e-3, solver=None,
                    spde: dict | None = None, **spde_kw) -> SPDEProcess:
        """Presets of Section 5: "paper_anisotropic" (eq. 14-16), "paper_isotropic" (eq. 17),
        "pure_noise" (eq. 13, VE-SDE alpha2 geometric 0.01 -> 2 unless given), or "custom" with an
        ``spde`` dict (``AnisotropicSPDE.to_dict`` layout)."""
        if preset == "paper_anisotropic":
            s = spdekit.AnisotropicSPDE.paper_anisotropic(image_size, T, **spde_kw)
        elif preset == "paper_isotropic":
            s = spdekit.AnisotropicSPDE.paper_isotropic(image_size, T, **spde_kw)
        elif preset == "pure_noise":
            alpha2 = spde_kw.pop("alpha2", spdekit.schedules.Geometric(0.01, 2.0, T))
            s = spdekit.AnisotropicSPDE.pure_noise(alpha2, **spde_kw)
        elif preset == "custom":
            if spde is None:
                raise ValueError("process preset 'custom' needs an 'spde' table (AnisotropicSPDE.to_dict layout)")
            s = spdekit.AnisotropicSPDE.from_dict(spde)
        else:
            raise ValueError(f"process preset must be one of {PRESETS}; got {preset!r}")
        return cls(s, T, dt, solver)

    def to_dict(self) -> dict:
        return {"spde": self.spde.to_dict(), "T": self.T, "dt": self.dt, "solver": self.solver.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> SPDEProcess:
        return cls(spdekit.AnisotropicSPDE.from_dict(d["spde"]), d["T"], d["dt"], d["solver"])

    def __repr__(self) -> str:
        return f"SPDEProcess({self.spde!r}, T={self.T}, dt={self.dt}, solver={self.solver!r})"

    @property
    def is_linear(self) -> bool:
        """Linear SPDE stepped by untamed EM: the chain has an exact Gaussian law."""
        return self.spde.is_linear and self.solver.taming is None

    @property
    def is_additive(self) -> bool:
        return self.spde.is_additive

    def time(self, k):
        """t_k = k dt (k int, array or tensor)."""
        return k * self.dt

    # ------------------------------------------------------------------ simulation (spdekit kernels)
    def _coeff_t(self, k, batch):
        k = np.asarray(k)
        return np.full(batch, float(k) * self.dt) if k.ndim == 0 else k.astype(np.float64) * self.dt

    def wiener_increment(self, like: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """dW over one chain step for states like ``like`` (its shape, dtype and device): sqrt(dt) times a
        Q-Wiener field (spdekit's circulant sampler) of Philox normals keyed by ``rng``."""
        normals = NormalsLike(rng, like)
        return math.sqrt(self.dt) * self.spde.noise.sample(like.shape, normals, normals.dtype)

    def drift_step(self, k, u: torch.Tensor) -> torch.Tensor:
        """mu = the deterministic part of one solver step from t_k: u + dt b (tamed: eq. 39)."""
        u = u.detach().contiguous()
        res, _ = self.solver.step(self.spde, self._coeff_t(k, u.shape[0]), u, self.dt, torch.zeros_like(u))
        return res

    def drift_vjp(self, k, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """J^T w, J = D_u b(t_k, u) the Jacobian of the discretised drift at u (spdekit's adjoint kernel)."""
        return self.spde.drift_vjp(self._coeff_t(k, u.shape[0]), u.detach().contiguous(),
                                   w.detach().to(u.dtype).contiguous())

    def diffusion_amplitude(self, k, u: torch.Tensor) -> torch.Tensor:
        """g2(t_k, u) of eq. (37), by spdekit."""
        return self.spde.diffusion_amplitude(self._coeff_t(k, u.shape[0]), u.detach().contiguous())

    def transition(self, k, u: torch.Tensor, rng: np.random.Generator) -> Transition:
        """The one-step law of the chain from (t_k, u_k): Gaussian with mean mu = u + dt b and
        noise eps = g2(t_k, u_k) dW, dW ~ N(0, dt Q). ``k`` is an int or a (B,) array."""
        u = u.detach().contiguous()
        mu = self.drift_step(k, u)
        dW = self.wiener_increment(u, rng)
        eps = self.spde.noise_term(self._coeff_t(k, u.shape[0]), u, dW)
        return Transition(k=np.broadcast_to(np.asarray(k), (u.shape[0],)).copy(), u=u, mean=mu, eps=eps)

    def step(self, k, u: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """u_{k+1} from u_k by the solver (spdekit's fused kernel), a new tensor on u's device."""
        u = u.detach().contiguous()
        dW = self.wiener_increment(u, rng)
        res, finite = self.solver.step(self.spde, self._coeff_t(k, u.shape[0]), u, self.dt, dW)
        if not finite:
            raise FloatingPointError(f"forward chain became non-finite at step {k}; dt={self.dt} may be unstable")
        return res

    def simulate(self, u0: torch.Tensor, k, rng: np.random.Generator, k0=0) -> torch.Tensor:
        """Run the chain from step ``k0`` to step ``k`` per sample (k: int or (B,) array). Samples
        stop at their own k; all steps run in spdekit kernels on the tensor memory."""
        B = u0.shape[0]
        k = np.broadcast_to(np.asarray(k, dtype=np.int64), (B,))
        k0 = np.broadcast_to(np.asarray(k0, dtype=np.int64), (B,))
        if k.min() < 0 or k.max() > self.n_steps or np.any(k0 > k):
            raise ValueError(f"step indices must satisfy 0 <= k0 <= k <= K = {self.n_steps}")
        u = u0.detach().clone().contiguous()
        for j in range(int(k0.min()), int(k.max())):
            active = np.nonzero((k0 <= j) & (k > j))[0]
            if active.size == 0:
                continue
            if active.size == B:
                u = self.step(j, u, rng)
            else:
                idx = torch.as_tensor(active)
                u[idx] = self.step(j, u[idx].contiguous(), rng)
        return u

    # ------------------------------------------------------------------ the Gaussian reference
    def gaussian_reference(self, shape, mean_z=0.0, var_z=1.0, data=None) -> GaussianReference:
        """The Gaussian reference of this chain on (C, H, W) (or (H, W)) images: the LINEARISED chain
        (lambda1 = lambda2 = inf, conservative stencil; :class:`spdekit.GaussianReference`) from data whose
        DCT-II modes have means ``mean_z`` and variances ``var_z``, or those of ``data`` (N, C, H, W). The one
        constructor of the reference that the score networks' 'reference' parameterisation
        (:class:`genmodel.networks.ScoreModel`), the path loss (:mod:`genmodel.path_dsm`) and the samplers'
        exponential predictors (:mod:`genmodel.samplers`) share."""
        if data is not None:
            return GaussianReference.from_data(self.spde, self.dt, self.n_steps, data)
        return GaussianReference(self.spde, shape, self.dt, self.n_steps, mean_z, var_z)

    # ------------------------------------------------------------------ exact law (linear chains)
    def law(self, shape) -> LinearChain:
        """spdekit's exact law of the linear chain on an (H, W) grid (cached)."""
        if not self.is_linear:
            raise ValueError(
                f"{self!r} has no closed-form law: it needs lambda1 = lambda2 = inf and the untamed "
                "EulerMaruyama solver. Use the transition (nonlinear) loss and the simulated chain."
            )
        key = tuple(int(s) for s in shape[-2:])
        if key not in self._laws:
            self._laws[key] = LinearChain(self.spde, key, self.dt, self.n_steps)
        return self._laws[key]

    def marginal(self, u0: torch.Tensor, k) -> GaussianMarginal:
        """The exact Gaussian law of u_k given u_0 (linear chains): mean (like u0, on its device) and a
        covariance operator acting on each (H, W) plane. ``k``: int or (B,) array."""
        law = self.law(u0.shape)
        k = np.broadcast_to(np.asarray(k, dtype=np.int64), (u0.shape[0],))
        cov = MarginalCovariance(law, k)
        return GaussianMarginal(mean=cov.mean(u0), cov=cov)


@dataclass
class Transition:
    """One step of the chain from (t_k, u): u_{k+1} = mean + eps, eps ~ N(0, dt Sigma(t_k, u))."""

    k: np.ndarray
    u: torch.Tensor
    mean: torch.Tensor
    eps: torch.Tensor

    @property
    def next(self) -> torch.Tensor:
        return self.mean + self.eps


@dataclass
class GaussianMarginal:
    mean: torch.Tensor
    cov: MarginalCovariance

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(u_k, score target) with u_k = mean + R xi and target = grad log p(u_k | u_0) = -C^{-1}(u_k - mean),
        on the mean's device (xi: Philox normals keyed by ``rng``)."""
        noise, target = self.cov.sample_with_target(self.mean, rng)
        return self.mean + noise.to(self.mean.dtype), target.to(self.mean.dtype)


class MarginalCovariance:
    """Cov[u_k | u_0] of the linear chain for a batch with per-sample step k, acting on each
    (H, W) plane: ``mean(u0)`` = E[u_k | u_0] and ``sample_with_target`` on tensors (on their device);
    ``apply(v)`` = C v, ``solve(v)`` = C^{-1} v and ``dense(i)`` on host arrays (checks)."""

    def __init__(self, law: LinearChain, k: np.ndarray):
        self.law = law
        self.k = np.asarray(k)
        if np.any(self.k < 1):
            raise ValueError("the law of u_0 given u_0 is a point mass: marginal covariances need k >= 1")
        uk, inv = np.unique(self.k, return_inverse=True)
        self._uk, self._inv = uk, inv
        if law.diagonal:
            self._var = law.mode_variances(uk)  # (U, H, W)
        else:
            V, Vinv, _ = law.dense_basis()
            Cz = law.mode_covariances(uk)
            L = np.linalg.cholesky(Cz)
            self._V, self._Vinv = V, Vinv
            self._R = V[None] @ L  # u - mean = R xi
            self._Tt = np.swapaxes(np.linalg.inv(L), 1, 2)  # L^{-T}
            self._VinvT = Vinv.T
            self._Cpix = V[None] @ Cz @ V.T[None]

    def _per_sample(self, arr):
        return arr[self._inv]

    # ------------------------------------------------------------------ tensors (the loss)
    def mean(self, u0: torch.Tensor) -> torch.Tensor:
        """E[u_k | u_0] = V diag(P_k) V^{-1} u_0 (spdekit.LinearChain.mean), in u0's dtype on its device."""
        x = u0.detach().to(torch.float64)
        P = _table(self.law.mean_factors[self.k], x)  # (B, H, W)
        if self.law.diagonal:  # the conservative DCT-II basis
            m = modes.from_modes(P[:, None] * modes.to_modes(x))
        else:
            B, D = x.shape[0], self.law.size
            z = x.reshape(B, -1, D) @ _table(self._Vinv, x).T
            m = (P.reshape(B, 1, D) * z) @ _table(self._V, x).T
        return m.reshape(u0.shape).to(u0.dtype)

    def sample_with_target(self, like: torch.Tensor, rng: np.random.Generator):
        """(R xi, -C^{-1} R xi) for xi ~ N(0, I) (Philox normals keyed by ``rng``), float64 tensors of
        like's shape on its device: the noise of u_k and its DSM target."""
        xi = NormalsLike(rng, like).standard_normal(tuple(like.shape), np.float64)
        if self.law.diagonal:
            sd = _table(np.sqrt(self._per_sample(self._var)), xi)[:, None]
            return modes.from_modes(sd * xi), -modes.from_modes(xi / sd)
        B, D = xi.shape[0], self.law.size
        x = xi.reshape(B, -1, D)
        noise = torch.einsum("bij,bcj->bci", _table(self._per_sample(self._R), x), x)
        # C^{-1} R xi = V^{-T} Cz^{-1} V^{-1} V L xi = V^{-T} L^{-T} xi
        target = -torch.einsum("ij,bcj->bci", _table(self._VinvT, x),
                               torch.einsum("bij,bcj->bci", _table(self._per_sample(self._Tt), x), x))
        return noise.reshape(like.shape), target.reshape(like.shape)

    # ------------------------------------------------------------------ host arrays (checks)
    def _planes(self, v):
        v = np.asarray(v, dtype=np.float64)
        B = v.shape[0]
        return v.reshape(B, -1, self.law.size), v.shape

    def apply(self, v):
        """C v for v of shape (B, C, H, W) (numpy)."""
        if self.law.diagonal:
            var = self._per_sample(self._var)[:, None]
            return from_modes(var * to_modes(np.asarray(v, np.float64), "conservative"), "conservative")
        x, shape = self._planes(v)
        return np.einsum("bij,bcj->bci", self._per_sample(self._Cpix), x).reshape(shape)

    def solve(self, v):
        """C^{-1} v."""
        if self.law.diagonal:
            var = self._per_sample(self._var)[:, None]
            return from_modes(to_modes(np.asarray(v, np.float64), "conservative") / var, "conservative")
        x, shape = self._planes(v)
        C = self._per_sample(self._Cpix)
        return np.linalg.solve(C[:, None], x[..., None])[..., 0].reshape(shape)

    def dense(self, i: int = 0) -> np.ndarray:
        """The (D, D) covariance of sample i's planes."""
        if self.law.diagonal:
            return self.law.covariance(int(self.k[i]))
        return self._Cpix[self._inv[i]]


__all__ = ["SPDEProcess", "Transition", "GaussianMarginal", "MarginalCovariance", "GaussianDataScore", "PRESETS"]
