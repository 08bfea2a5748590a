"""The Gaussian reference of a chain, and its exact reverse transitions (paper, Appendix D; Section 4.2).

The reference of the discretised chain of an :class:`spdekit.AnisotropicSPDE` (any lambda1, lambda2,
stencil) is its LINEARISED chain (lambda1 = lambda2 = inf, the conservative stencil, the same alpha1,
alpha2 and noise: :meth:`AnisotropicSPDE.linearised`, :class:`spdekit.LinearChain`) started from data
whose orthonormal DCT-II modes z = to_modes(u) are independent Gaussians N(m, v) (m, v: the training
set's per-mode means and variances). Every mode then follows its own scalar chain

    z_{k+1} = f_k z_k + sqrt(dt n) alpha2(t_k) xi_k,     f_k = 1 + dt alpha1(t_k) mu,

with mu the Laplacian eigenvalue of the mode and n its noise variance (n = 1 for white noise; for
Q-Wiener noise the diagonal of V^{-1} Q V^{-T}: the reference keeps the diagonal only). Everything
below is exact for this scalar chain:

* marginal: z_k ~ N(P_k m, V_k), P_k = prod_{i<k} f_i, V_k = P_k^2 v + c_k (c_k: the chain's noise
  variance, :meth:`LinearChain.diagonal_tables`); score s_k(z) = -(z - P_k m) / V_k;
* from step j to step k > j: z_k = A z_j + e, A = prod_{j<=i<k} f_i, e ~ N(0, c_{j->k}) with
  c_{j->k} the noise accumulated from step j (the same recursion started from 0 at j);
* the reverse kernel (Bayes, both Gaussian): z_j | z_k ~ N(P_j m + G (z_k - P_k m), rho) with

      G = A V_j / V_k,     rho = V_j c_{j->k} / V_k       (= V_j - G^2 V_k);

* the flow map: z_j = P_j m + r (z_k - P_k m), r = sqrt(V_j / V_k), pushes N(P_k m, V_k) to
  N(P_j m, V_j) monotonically (in one dimension the only such affine map: the probability-flow ODE's).

The reverse kernel is the law of the chain itself, not of a time discretisation: drawing z_j from it
for any j < k reproduces the joint law of the chain at the visited steps, whatever the step count.
This is the part of the reverse dynamics that the exponential-integrator predictor
(:meth:`spdekit.reverse.ReverseSDE.exponential_step`) integrates exactly.

In continuous time the reference SDE is dz = alpha1 mu z dt + alpha2 sqrt(n) dW: its reverse drift
(eq. 20) is alpha2^2 n s - alpha1 mu z (:meth:`reverse_drift_modes`); the predictors treat the rest of
the true reverse drift, the difference between the two, explicitly.

The chain is not that SDE: one step multiplies a mode by f = 1 - dt alpha1 |mu|, not by
exp(-dt alpha1 |mu|), so its marginals decay at the rate a = -log(f) / dt = alpha1 |mu| (1 + dt alpha1
|mu| / 2 + ...). For the reverse SDE this is harmless (the score term pulls the state back to the
chain's marginal), but the probability-flow ODE du/dt = b - Sigma s / 2 transports variances at the
SDE's rate, and a mode's variance ratio to the chain's drifts by exp(int dt alpha1^2 mu^2 dt), which is
large wherever dt alpha1 |mu| is not small (docs/genmodel.md, Samplers). The chain's own continuous-time
interpolation per step
is the linear SDE with rate a_k = -log(f_k) / dt and noise rate sigma_k^2 = 2 a_k dt alpha2^2 n / (1 - f_k^2),
whose law at every t_k IS the chain's; its probability-flow drift -a_k z - sigma_k^2 s / 2
(:meth:`flow_drift_modes`) differs from the SDE's by :class:`ChainFlow` (on the SDE's own stencil), which the
probability-flow ODE of the discretised chain adds (:meth:`spdekit.reverse.ReverseSDE.probability_flow`).
"""

from __future__ import annotations

import numpy as np

from ._checks import array_module, check_int
from .linear import LinearChain
from .spectral import adjoint_modes, from_modes, to_modes


class GaussianReference:
    """The Gaussian reference of the chain of ``spde`` on an (H, W) grid (module doc).

    Parameters
    ----------
    spde : :class:`spdekit.AnisotropicSPDE` (its linearisation is used).
    shape : (C, H, W) or (H, W) of one image.
    dt, n_steps : the chain's step and number of steps K.
    mean_z, var_z : per-mode means and variances of the data, shape (C, H, W) (broadcastable);
        variances are floored at 1e-8.
    """

    def __init__(self, spde, shape, dt: float, n_steps: int, mean_z=0.0, var_z=1.0):
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W) or (H, W), got {shape}")
        self.shape = shape
        self.spde = spde
        self.chain = LinearChain(spde.linearised("conservative"), shape[1:], dt, n_steps)
        self.dt = self.chain.dt
        self.n_steps = self.chain.n_steps
        #: mean factors P_k and noise variances c_k, shape (K+1, H, W)
        self.P, self.c = self.chain.diagonal_tables()
        #: per-mode noise variance n (1 for white noise)
        self.noise_diag = (np.ones(shape[1:]) if self.chain.diagonal
                           else np.diag(self.chain.dense_basis()[2]).reshape(shape[1:]))
        self.mu = self.chain.mu
        self._rates_table = None
        self._chain_flow = None
        self.mean_z = np.broadcast_to(np.asarray(mean_z, dtype=np.float64), shape).copy()
        self.var_z = np.maximum(np.broadcast_to(np.asarray(var_z, dtype=np.float64), shape), 1e-8)
        self._intervals: dict = {}

    @classmethod
    def from_data(cls, spde, dt: float, n_steps: int, data) -> GaussianReference:
        """The reference with the per-mode means and (unbiased) variances of ``data`` (N, C, H, W)."""
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 4 or x.shape[0] < 2:
            raise ValueError(f"data must be (N >= 2, C, H, W), got shape {x.shape}")
        z = to_modes(x, "conservative")
        return cls(spde, x.shape[1:], dt, n_steps, z.mean(0), z.var(0, ddof=1))

    @classmethod
    def from_moments(cls, spde, dt: float, n_steps: int, mean, cov) -> GaussianReference:
        """The reference for data with mean ``mean`` (H, W) and pixel covariance ``cov`` (D, D): the
        modes' means and the diagonal of their covariance (exact when the modes are independent)."""
        mean = np.asarray(mean, dtype=np.float64)
        H, W = mean.shape[-2:]
        D = H * W
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (D, D):
            raise ValueError(f"cov must be ({D}, {D}) for a mean of shape {mean.shape}, got {cov.shape}")
        basis = to_modes(np.eye(D).reshape(D, H, W), "conservative").reshape(D, D)  # row i: modes of e_i
        var_z = np.einsum("ia,ij,ja->a", basis, cov, basis).reshape(H, W)
        return cls(spde, (1, H, W), dt, n_steps, to_modes(mean, "conservative"), var_z)

    # ------------------------------------------------------------------ tables
    def _check_k(self, k) -> int:
        k = check_int("k", k, minimum=0)
        if k > self.n_steps:
            raise ValueError(f"chain step k must lie in [0, {self.n_steps}], got {k}")
        return k

    def marginal(self, k):
        """(mean, variance) of the modes at chain step k, each (C, H, W)."""
        k = self._check_k(k)
        return self.P[k] * self.mean_z, self.P[k] ** 2 * self.var_z + self.c[k]

    def interval(self, j: int, k: int):
        """(A, c_{j->k}) per mode, (H, W) each, for chain steps j <= k (cached)."""
        j, k = self._check_k(j), self._check_k(k)
        if j > k:
            raise ValueError(f"interval needs j <= k, got j = {j}, k = {k}")
        key = (j, k)
        if key not in self._intervals:
            A = np.ones(self.shape[1:])
            c = np.zeros(self.shape[1:])
            f, q = self.chain.step_factors, self.chain.step_noise
            for i in range(j, k):
                A = A * f[i]
                c = f[i] ** 2 * c + q[i] * self.noise_diag
            self._intervals[key] = (A, c)
        return self._intervals[key]

    def reverse_kernel(self, k: int, j: int):
        """The exact law of z_j given z_k (j < k): (mean_j, G, mean_k, rho) with
        z_j ~ N(mean_j + G (z_k - mean_k), rho), each (C, H, W) (module doc)."""
        A, cjk = self.interval(j, k)
        mj, Vj = self.marginal(j)
        mk, Vk = self.marginal(k)
        return mj, A * Vj / Vk, mk, Vj * cjk / Vk

    def flow_map(self, k: int, j: int):
        """(mean_j, r, mean_k) with z_j = mean_j + r (z_k - mean_k), r = sqrt(V_j / V_k) (module doc)."""
        mj, Vj = self.marginal(j)
        mk, Vk = self.marginal(k)
        return mj, np.sqrt(Vj / Vk), mk

    # ------------------------------------------------------------------ fields
    def score_modes(self, k: int, z):
        """s_k in mode coordinates: -(z - P_k m) / V_k, for z of shape (B, C, H, W)."""
        m, V = (_like(a, z) for a in self.marginal(k))  # host tables moved to z's device once per call
        return -(z - m) / V

    def score(self, k: int, u):
        """The reference score at chain step k for node values u (B, C, H, W) (float64, u's array module)."""
        u = u.astype(np.float64) if array_module(u) is not np else np.asarray(u, dtype=np.float64)
        return from_modes(self.score_modes(k, to_modes(u, "conservative")), "conservative")

    def _rates(self, t):
        t = float(t)
        return float(self.chain.spde.alpha1(t)), float(self.chain.spde.alpha2(t))

    def reverse_drift_modes(self, t: float, z, s_z):
        """The reference's reverse drift (eq. 20) in modes at forward time t: alpha2^2 n s - alpha1 mu z."""
        a1, a2 = self._rates(t)
        return a2 * a2 * _like(self.noise_diag, z) * s_z - a1 * _like(self.mu, z) * z

    def interpolation(self):
        """(a, sigma^2), each (K, H, W): the decay and noise rates of the reference chain's continuous-time
        interpolation (module doc; :func:`interpolation_rates`); computed on first use."""
        if self._rates_table is None:
            self._rates_table = interpolation_rates(self.chain.step_factors, self.chain.step_noise, self.dt,
                                                    self.noise_diag)
        return self._rates_table

    def flow_drift_modes(self, k: int, z, s_z):
        """The probability-flow drift of this reference's chain interpolation (module doc) in modes at
        chain step k: -a z - sigma^2 s / 2 (rates of :func:`centred_rates`)."""
        a, q = (_like(r, z) for r in centred_rates(*self.interpolation(), k))
        return -a * z - 0.5 * q * s_z

    @property
    def chain_flow(self) -> ChainFlow:
        """The correction of the probability-flow ODE for the chain of the SDE itself (its own stencil)."""
        if self._chain_flow is None:
            self._chain_flow = ChainFlow(self.spde, self.shape[1:], self.dt, self.n_steps)
        return self._chain_flow

    def mode_matrices(self):
        """(M_H, M_W) with to_modes(u) = M_H u M_W^T per plane (for a tensor implementation)."""
        return self.chain.mode_matrices()


def interpolation_rates(f, step_noise, dt: float, noise_diag):
    """(a, sigma^2), each (K, H, W): the rates of the linear SDE dz = -a z dt + sigma dW whose law after
    dt is one chain step z -> f z + N(0, step_noise n): a = -log(f) / dt, sigma^2 = 2 a step_noise n /
    (1 - f^2) (-> step_noise n / dt as f -> 1)."""
    f = np.asarray(f, dtype=np.float64)
    if np.any(f <= 0):
        raise ValueError("the linearised chain has a mode factor 1 + dt alpha1 mu <= 0 (dt above h^2 / (8 alpha1)): "
                         "no continuous-time interpolation")
    rate = -np.log(f) / dt
    one_minus = 1.0 - f * f
    ok = one_minus > 1e-12
    ratio = np.where(ok, 2.0 * rate * dt / np.where(ok, one_minus, 1.0), 1.0)
    return rate, ratio * (np.asarray(step_noise) / dt)[:, None, None] * noise_diag


def centred_rates(rate, noise_rate, k: int):
    """(a, sigma^2) at chain time k dt: the mean of the steps ending and starting there. An ODE integrator
    that samples the drift at chain times (Heun's trapezoid) then integrates the piecewise-constant rates
    of the steps in between to second order; the rates of one side only would shift them by half a chain
    step, an O(dt) bias that no ODE step size removes (docs/genmodel.md, Samplers)."""
    K = rate.shape[0]
    lo, hi = max(int(k) - 1, 0), min(int(k), K - 1)
    return 0.5 * (rate[lo] + rate[hi]), 0.5 * (noise_rate[lo] + noise_rate[hi])


class ChainFlow:
    """What turns the probability-flow drift of the SDE (12) into that of its discretised chain (module
    doc), for the LINEARISED chain on the SDE's own stencil, in that stencil's Laplacian eigenbasis V
    (orthonormal DCT-II for the conservative stencil, DCT-I for the paper stencil):

        correction(k, x, s) = V (c_z o V^{-1} x) - V (M - alpha2^2 N) V^T s / 2,     c_z = -a - alpha1 mu,

    with a the interpolation's decay rates (:func:`interpolation_rates`), N = V^{-1} Q V^{-T} the mode
    noise covariance and M its interpolation rate, M_ij = alpha2^2 N_ij dt (a_i + a_j) / (1 - f_i f_j)
    (the Lyapunov integral of one step; M_ii = sigma_i^2), both centred at chain times
    (:func:`centred_rates`). For the conservative stencil with white noise N = I and everything is
    diagonal (any grid size). Otherwise N is dense (the DCT-I is not orthonormal; Q-Wiener noise couples
    modes) and M is formed densely for grids up to ``max_dense`` nodes; above, only its diagonal is kept
    (an approximation, warned about). For a linear chain the corrected flow is the flow of the chain's
    own interpolation, whose marginals at chain times are the chain's."""

    def __init__(self, spde, grid_shape, dt: float, n_steps: int, max_dense: int = 1024):
        from .linear import _basis_matrices
        from .spectral import laplacian_eigenvalues, white_noise_diagonal

        self.stencil = spde.stencil
        self.dt = float(dt)
        self.n_steps = int(n_steps)
        H, W = (int(s) for s in grid_shape)
        D = H * W
        t = self.dt * np.arange(self.n_steps + 1)
        self.a1 = np.asarray(spde.alpha1(t), dtype=np.float64)
        self.a2 = np.asarray(spde.alpha2(t), dtype=np.float64)
        self.mu = laplacian_eigenvalues((H, W), self.stencil, spde.spacing)
        diagonal = self.stencil == "conservative" and spde.noise.is_white
        self.dense = not diagonal and D <= max_dense
        self.N = None
        if diagonal:
            self.noise_diag = np.ones((H, W))
        elif spde.noise.is_white and not self.dense:
            self.noise_diag = white_noise_diagonal((H, W), self.stencil)
        else:
            if D > 4096:
                raise ValueError(f"the probability flow of a chain with Q-Wiener noise needs V^-1 Q V^-T from dense "
                                 f"matrices: grids up to 4096 nodes, got {H} x {W}")
            _, Vinv = _basis_matrices((H, W), self.stencil)
            N = Vinv @ spde.noise.dense_Q((H, W)) @ Vinv.T
            self.noise_diag = np.diag(N).reshape(H, W).copy()
            self.N = 0.5 * (N + N.T) if self.dense else None
        if not diagonal and not self.dense:
            import warnings

            warnings.warn(f"probability flow on {H} x {W} nodes with stencil {self.stencil!r} / correlated noise: the "
                          f"chain correction keeps the diagonal of its noise part only (dense up to {max_dense} nodes)",
                          stacklevel=2)
        self.f = 1.0 + self.dt * self.a1[:-1, None, None] * self.mu[None]  # (K, H, W)
        self.rate, self.noise_rate = interpolation_rates(self.f, self.dt * self.a2[:-1] ** 2, self.dt,
                                                         self.noise_diag)

    def _steps(self, k: int):
        k = int(k)
        return sorted({max(k - 1, 0), min(k, self.n_steps - 1)})

    def coefficients(self, k: int):
        """(c_z, c_s) per mode at chain step k, each (H, W); c_s = -(diag M - alpha2^2 n) / 2."""
        a, q = centred_rates(self.rate, self.noise_rate, k)
        return -a - self.a1[k] * self.mu, -0.5 * (q - self.a2[k] ** 2 * self.noise_diag)

    def _noise_matrix(self, k: int):
        """-(M - alpha2^2 N) / 2, dense (D, D), centred at chain step k."""
        acc = 0.0
        steps = self._steps(k)
        for i in steps:
            f = self.f[i].reshape(-1)
            a = self.rate[i].reshape(-1)
            den = 1.0 - np.outer(f, f)
            ok = den > 1e-12
            R = np.where(ok, self.dt * (a[:, None] + a[None, :]) / np.where(ok, den, 1.0), 1.0)
            acc = acc + self.a2[i] ** 2 * self.N * R
        return -0.5 * (acc / len(steps) - self.a2[k] ** 2 * self.N)

    def apply_x(self, k: int, x):
        """V (c_z o V^{-1} x)."""
        cz, _ = self.coefficients(k)
        return from_modes(_like(cz, x) * to_modes(x, self.stencil), self.stencil)

    def apply_s(self, k: int, s):
        """-V (M - alpha2^2 N) V^T s / 2 (a symmetric operator)."""
        y = adjoint_modes(s, self.stencil)
        if self.dense:
            shp = y.shape
            y = (y.reshape(-1, shp[-2] * shp[-1]) @ _like(self._noise_matrix(k).T, y)).reshape(shp)
        else:
            y = _like(self.coefficients(k)[1], y) * y
        return from_modes(y, self.stencil)

    def correction(self, k: int, x, s):
        return self.apply_x(k, x) + self.apply_s(k, s)


def phi1(x):
    """phi_1(x) = (e^x - 1) / x, 1 at x = 0: the weight of a constant forcing over an exactly
    integrated linear step (variation of constants). numpy or cupy (x's array module)."""
    xp = array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    small = xp.abs(x) < 1e-8
    safe = xp.where(small, 1.0, x)
    return xp.where(small, 1.0 + 0.5 * x, xp.expm1(safe) / safe)


def _like(table, z):
    """A host table in the array module of z (numpy: unchanged; cupy: one host->device copy)."""
    return array_module(z).asarray(table)


__all__ = ["GaussianReference", "ChainFlow", "interpolation_rates", "centred_rates", "phi1"]
