"""Exact Gaussian law of the discretised LINEAR chain (lambda1 = lambda2 = inf).

With lambda1 = lambda2 = inf the Euler-Maruyama chain of eq. (25) (pure noise eq. 13 when
alpha1 = 0, the heat equation eq. 17 otherwise) is

    u_{k+1} = (I + dt alpha1(t_k) L) u_k + alpha2(t_k) sqrt(dt) S xi_k,   S S^T = Q,  t_k = k dt,

with L the Neumann Laplacian of the stencil (the lambda1 = inf limit of eq. 35-36 or of the
conservative stencil; :mod:`spdekit.spectral`). L = V diag(mu) V^{-1}, so in mode coordinates
z = V^{-1} u every mode is scaled by its own factor f_k = 1 + dt alpha1(t_k) mu and

    z_{k+1} = f_k * z_k + alpha2(t_k) sqrt(dt) V^{-1} S xi_k.

Given u_0 the chain is Gaussian at every step (exactly, for the discrete chain):

    mean:       E[u_k | u_0] = V diag(P_k) V^{-1} u_0,     P_k = prod_{m<k} f_m
    covariance: Cov[u_k | u_0] = V C_k V^T,   C_{k+1} = (f_k f_k^T) o C_k + dt alpha2(t_k)^2 N,
                N = V^{-1} Q V^{-T}  (o: entrywise product; C_0 = 0).

Which parts are diagonal:

* ``stencil="conservative"`` and white noise (l = 0): V is the orthonormal DCT-II, N = I and
  C_k is diagonal: the per-mode variance recursion c_{k+1} = f_k^2 c_k + dt alpha2^2. Cost
  O(K D) for K steps and D = H W nodes, any grid size.
* pure noise (alpha1 = 0 at every step, eq. 13) with white noise: C_k = sigma_k^2 I whatever the
  stencil; the DCT-II basis is used (``basis``), diagonal as above.
* ``stencil="paper"`` (V = DCT-I, not orthogonal: N = V^{-1} V^{-T} is dense even for white noise)
  or Q-Wiener noise (l > 0, N = V^T Q V dense): C_k is a dense D x D matrix; the recursion is
  entrywise in the mode basis, O(D^2) per step and O(D^2) memory per stored step, plus O(D^3) for
  a factorisation. Fine for 8x8 (D = 64) and 16x16 (D = 256); refused above ``max_dense`` nodes
  (default 1024, i.e. 32x32: 8 MB per stored covariance).

The chain is the untamed Euler-Maruyama chain (:class:`spdekit.EulerMaruyama`); the tamed scheme
(eq. 39) rescales the drift by a factor that depends on |b|, which makes the chain nonlinear.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_int, check_positive
from .spectral import from_modes, laplacian_eigenvalues, to_modes

DEFAULT_MAX_DENSE = 1024


def _basis_matrices(shape, stencil):
    """Dense V (from modes to nodes) and V^{-1}, row-major node and mode order."""
    H, W = shape
    eye = np.eye(H * W).reshape(H * W, H, W)
    V = from_modes(eye, stencil).reshape(H * W, H * W).T
    Vinv = to_modes(eye, stencil).reshape(H * W, H * W).T
    return V, Vinv


class LinearChain:
    """The exact law of the linear Euler-Maruyama chain of ``spde`` on a grid (module doc).

    Parameters
    ----------
    spde : :class:`spdekit.AnisotropicSPDE` with ``is_linear`` (lambda1 = lambda2 = inf).
    grid_shape : (H, W).
    dt : step of the chain; t_k = k dt.
    n_steps : K, the number of steps the chain is followed (k = 0..K).
    max_dense : the largest H*W for which dense covariances are formed.
    """

    def __init__(self, spde, grid_shape, dt: float, n_steps: int, max_dense: int = DEFAULT_MAX_DENSE):
        if not getattr(spde, "is_linear", False):
            raise ValueError(
                "LinearChain needs a linear SPDE (lambda1 = lambda2 = inf, eq. 13/17/25); got "
                f"{spde!r}. Nonlinear chains have no closed-form law: simulate them."
            )
        self.spde = spde
        self.grid = spde.grid(grid_shape)
        self.shape = self.grid.shape
        self.dt = check_positive("dt", dt)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        self.stencil = spde.stencil
        t = self.dt * np.arange(self.n_steps)
        a1 = np.asarray(spde.alpha1(t), dtype=np.float64)
        a2 = np.asarray(spde.alpha2(t), dtype=np.float64)
        #: the stencil whose Laplacian eigenbasis carries the law: the SPDE's own, except for the
        #: pure-noise chain (alpha1 = 0 at every step, eq. 13) with white noise, whose law
        #: N(u_0, sigma_k^2 I) is diagonal in any orthonormal basis: the DCT-II is used then.
        self.basis = spde.stencil
        if spde.noise.is_white and not np.any(a1):
            self.basis = "conservative"
        self.diagonal = self.basis == "conservative" and spde.noise.is_white
        self.max_dense = check_int("max_dense", max_dense, minimum=1)
        D = self.shape[0] * self.shape[1]
        if not self.diagonal and D > max_dense:
            raise ValueError(
                f"the law of this chain (stencil={spde.stencil!r}, correlation_length="
                f"{spde.correlation_length}) has a dense {D} x {D} covariance; grids up to max_dense={max_dense} "
                f"nodes are allowed (memory O(D^2) per stored step, O(D^3) to factorise). Use the conservative "
                f"stencil with white noise for a diagonal law, or raise max_dense."
            )
        self.mu = laplacian_eigenvalues(self.shape, self.basis, spde.spacing)  # (H, W)
        #: per-step mode factors f_k, shape (K, H, W)
        self.step_factors = 1.0 + self.dt * a1[:, None, None] * self.mu[None]
        #: per-step noise variance dt alpha2(t_k)^2, shape (K,)
        self.step_noise = self.dt * a2**2
        if np.any(np.abs(self.step_factors) > 1.0 + 1e-12):
            k = int(np.argmax(np.abs(self.step_factors).reshape(self.n_steps, -1).max(axis=1) > 1.0))
            raise ValueError(
                f"dt = {self.dt:g} is above the stability bound of the linear chain at step {k} "
                f"(|1 + dt alpha1 mu| > 1 for some mode): the exact law grows without bound"
            )
        P = np.ones((self.n_steps + 1,) + self.shape)
        np.cumprod(self.step_factors, axis=0, out=P[1:])
        #: cumulative mode factors P_k = prod_{m<k} f_m, shape (K+1, H, W)
        self.mean_factors = P
        self._dense = None

    # ------------------------------------------------------------------ helpers
    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def _check_k(self, k):
        k = np.asarray(k)
        if not np.issubdtype(k.dtype, np.integer):
            raise TypeError(f"step index k must be an integer (or integer array), got dtype {k.dtype}")
        if k.size and (k.min() < 0 or k.max() > self.n_steps):
            raise ValueError(f"step index k must lie in [0, {self.n_steps}], got range [{k.min()}, {k.max()}]")
        return k

    def _check_dense(self):
        if self.size > self.max_dense:
            raise ValueError(
                f"a dense {self.size} x {self.size} matrix was asked for; grids up to max_dense={self.max_dense} "
                "nodes are allowed"
            )

    def dense_basis(self):
        """(V, V^{-1}, N) as dense matrices; N = V^{-1} Q V^{-T} is the mode noise covariance."""
        self._check_dense()
        if self._dense is None:
            V, Vinv = _basis_matrices(self.shape, self.basis)
            Q = self.spde.noise.dense_Q(self.shape)
            N = Vinv @ Q @ Vinv.T
            self._dense = (V, Vinv, 0.5 * (N + N.T))
        return self._dense

    def accumulated_noise(self, k):
        """sum_{m<k} dt alpha2(t_m)^2: the noise variance a node receives in k steps, ignoring the
        drift (the variance of the pure-noise chain eq. 13). Scalar or array like k."""
        k = self._check_k(k)
        cum = np.concatenate([[0.0], np.cumsum(self.step_noise)])
        return cum[k]

    # ------------------------------------------------------------------ mean
    def mean(self, u0, k):
        """E[u_k | u_0] = V diag(P_k) V^{-1} u_0 for u0 of shape (..., H, W).

        ``k`` is an integer or an array of integers of shape u0.shape[:1] (one step per sample of
        a (B, ...) batch)."""
        k = self._check_k(k)
        z = to_modes(np.asarray(u0, dtype=np.float64), self.basis)
        fac = self.mean_factors[k]
        if fac.ndim == 3:  # one k per leading sample
            fac = fac.reshape(fac.shape[:1] + (1,) * (z.ndim - 3) + fac.shape[1:])
        return from_modes(z * fac, self.basis)

    # ------------------------------------------------------------------ covariance
    def mode_variances(self, ks):
        """Diagonal case only: per-mode variances c_k, shape (len(ks), H, W)."""
        if not self.diagonal:
            raise ValueError("mode_variances is the diagonal case (conservative stencil or pure noise, white noise); "
                             "use mode_covariances")
        ks = self._check_k(np.atleast_1d(ks))
        out = np.empty((len(ks),) + self.shape)
        c = np.zeros(self.shape)
        want = {}
        for i, k in enumerate(ks):
            want.setdefault(int(k), []).append(i)
        for i in want.get(0, []):
            out[i] = 0.0
        for k in range(self.n_steps):
            c = self.step_factors[k] ** 2 * c + self.step_noise[k]
            for i in want.get(k + 1, []):
                out[i] = c
            if k + 1 >= ks.max():
                break
        return out

    def mode_covariances(self, ks):
        """Mode covariances C_k (dense), shape (len(ks), D, D), by the entrywise recursion."""
        ks = self._check_k(np.atleast_1d(ks))
        D = self.size
        if self.diagonal:
            var = self.mode_variances(ks).reshape(len(ks), D)
            out = np.zeros((len(ks), D, D))
            idx = np.arange(D)
            out[:, idx, idx] = var
            return out
        _, _, N = self.dense_basis()
        out = np.empty((len(ks), D, D))
        want = {}
        for i, k in enumerate(ks):
            want.setdefault(int(k), []).append(i)
        C = np.zeros((D, D))
        for i in want.get(0, []):
            out[i] = 0.0
        kmax = int(ks.max())
        for k in range(kmax):
            f = self.step_factors[k].reshape(D)
            C *= np.outer(f, f)
            C += self.step_noise[k] * N
            for i in want.get(k + 1, []):
                out[i] = C
        return out

    def covariance(self, k) -> np.ndarray:
        """Cov[u_k | u_0] = V C_k V^T as a dense (D, D) matrix (row-major node order)."""
        self._check_dense()
        (Ck,) = self.mode_covariances([k])
        V, _, _ = self.dense_basis()
        return V @ Ck @ V.T

    def transfer_matrix(self, k) -> np.ndarray:
        """A_k = V diag(P_k) V^{-1} (dense), so that E[u_k | u_0] = A_k u_0."""
        V, Vinv, _ = self.dense_basis()
        return (V * self.mean_factors[self._check_k(k)].reshape(-1)[None, :]) @ Vinv

    def propagate(self, mean0, cov0, k):
        """Law of u_k when u_0 has mean ``mean0`` (H, W) and covariance ``cov0`` (D, D):
        (A_k m0, A_k C0 A_k^T + Cov[u_k | u_0]). Exact for any law of u_0 with these two moments;
        the law of u_k is Gaussian when u_0 is."""
        A = self.transfer_matrix(k)
        m = (A @ np.asarray(mean0, dtype=np.float64).reshape(-1)).reshape(self.shape)
        cov0 = np.asarray(cov0, dtype=np.float64)
        if cov0.shape != (self.size, self.size):
            raise ValueError(f"cov0 must have shape ({self.size}, {self.size}), got {cov0.shape}")
        C = A @ cov0 @ A.T + self.covariance(k)
        return m, 0.5 * (C + C.T)

    def diagonal_tables(self):
        """(P, c): mean factors P_k and the diagonal c_k of the mode covariance C_k for all
        k = 0..K, each of shape (K+1, H, W). Exact in the diagonal case; otherwise c_k is the
        exact diagonal of the dense C_k (the entrywise recursion keeps diagonal entries apart:
        c_{k+1} = f_k^2 c_k + dt alpha2(t_k)^2 N_ii)."""
        if self.diagonal:
            n_diag = np.ones(self.shape)
        else:
            n_diag = np.diag(self.dense_basis()[2]).reshape(self.shape)
        c = np.zeros((self.n_steps + 1,) + self.shape)
        for k in range(self.n_steps):
            c[k + 1] = self.step_factors[k] ** 2 * c[k] + self.step_noise[k] * n_diag
        return self.mean_factors.copy(), c

    def mode_matrices(self):
        """Conservative stencil: the 1D orthonormal DCT-II matrices (M_H, M_W) with
        to_modes(u) = M_H u M_W^T on (H, W) planes (and u = M_H^T z M_W)."""
        if self.basis != "conservative":
            raise ValueError("mode_matrices is defined for the conservative stencil (orthonormal DCT-II)")
        H, W = self.shape
        MH = to_modes(np.eye(H)[:, :, None], "conservative")[:, :, 0].T
        MW = to_modes(np.eye(W)[:, :, None], "conservative")[:, :, 0].T
        return MH, MW

    # ------------------------------------------------------------------ sampling
    def noise_factor(self, k) -> np.ndarray:
        """A factor R with R R^T = Cov[u_k | u_0] in node coordinates: (D, D) dense, or, in the
        diagonal case, the per-mode standard deviations (H, W) (then u = mean + V (sd * xi))."""
        if self.diagonal:
            return np.sqrt(self.mode_variances([k])[0])
        V, _, _ = self.dense_basis()
        (Ck,) = self.mode_covariances([k])
        return V @ _psd_factor(Ck)

    def sample(self, u0, k: int, rng, dtype=np.float64):
        """Draw u_k given u0 (shape (..., H, W)) from the exact law, one common step k."""
        k = int(self._check_k(k))
        m = self.mean(u0, k)
        xi = rng.standard_normal(m.shape)
        if self.diagonal:
            out = m + from_modes(self.noise_factor(k) * xi, self.basis)
        else:
            R = self.noise_factor(k)
            out = m + (xi.reshape(-1, self.size) @ R.T).reshape(m.shape)
        return out.astype(dtype, copy=False)


def _psd_factor(C: np.ndarray) -> np.ndarray:
    """R with R R^T = C for a symmetric positive semi-definite C (eigen-decomposition, clipping
    rounding-level negative eigenvalues)."""
    w, U = np.linalg.eigh(0.5 * (C + C.T))
    return U * np.sqrt(np.clip(w, 0.0, None))[None, :]


__all__ = ["LinearChain"]
