"""Pieces of the reverse-time SDE of the discretised SPDE (paper, Appendix D, eq. 19-22).

For the forward SDE dU = b(t, U) dt + sigma(t, U) dW with W a Q-Wiener process and
sigma(t, u) = diag(g2(t, u)) (eq. 8, 37), the time reversal (Haussmann & Pardoux 1986; Anderson
1982) is dUbar = bbar(t, Ubar) dt + sigma(T - t, Ubar) dW with

    bbar(t, u) = tr D_u Sigma(T - t, u) + Sigma(T - t, u) s(T - t, u) - b(T - t, u)     (20)
    Sigma = (sigma Q^{1/2})(sigma Q^{1/2})^* = diag(g2) Q diag(g2)                     (22)

and s = grad log p_t the score. The functions here take the FORWARD time t (the caller maps
reverse time tau to t = T - tau) and work on arrays of shape (H, W) or (B, C, H, W): numpy, cupy or
any DLPack array (a torch tensor: viewed without a copy, results come back in its own type on its
device, :mod:`spdekit._arrays`).

The divergence term, component i: (tr D_u Sigma)_i = sum_j d/du_j Sigma_ij. With
Sigma_ij = g2_i Q_ij g2_j and g2_j independent of u_j (eq. 37 uses the central differences
u_{j+1} - u_{j-1}, which exclude u_j):

    sum_j d/du_j Sigma_ij = sum_j Q_ij (g2_j d g2_i/du_j + g2_i d g2_j/du_j) = sum_j Q_ij g2_j d g2_i/du_j.

d g2_i / du_j is non-zero only for the four neighbours j = i +- e_x, i +- e_y whose difference
enters g2_i (interior along that axis; on a border the mirrored difference is 0). With
g2 = alpha2 / sqrt(1 + (dx^2 + dy^2) / (lambda2 h)^2) and dx = u_{i+e_x} - u_{i-e_x}:

    d g2_i / du_{i +- e_x} = +- (-dx_i / (lambda2 h)^2) * g2_i^3 / alpha2^2,

so (tr D_u Sigma)_i = -(g2_i^3 / (alpha2^2 (lambda2 h)^2)) * [dx_i q_x (g2_{i+e_x} - g2_{i-e_x})
+ dy_i q_y (g2_{i+e_y} - g2_{i-e_y})] with q_x = q(h e_x), q_y = q(h e_y) the covariance (11) of
neighbours. For white noise (l = 0) Q_ij = 0 for j != i and the term vanishes identically; with
lambda2 = inf (additive noise) g2 is constant and it vanishes too. Otherwise it does not vanish.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_native
from ._checks import array_module
from .backends.numpy_backend import _central, taming_factor
from .grid import as_batch
from .operators import dg_ds
from .reference import phi1
from .spectral import from_modes, to_modes


def apply_sigma(spde, t, u, v, backend: str = "auto"):
    """Sigma(t, u) v = g2 * Q(g2 * v) (eq. 22), with Q applied by circulant embedding (exact
    unless the embedding had to be clipped; see :mod:`spdekit.noise`)."""
    u, back = as_native(u)
    v, _ = as_native(v)
    g2 = spde.diffusion_amplitude(t, u, backend)
    return back(g2 * spde.noise.apply_Q(g2 * v))


def sigma_divergence(spde, t, u, backend: str = "auto", g2=None):
    """(tr D_u Sigma(t, u))_i = sum_j d Sigma_ij / d u_j for the g2 field of eq. (37) (module doc).

    Returns an array like u. Exactly zero (returned without computation) for white noise or
    lambda2 = inf. ``g2``: the field g2(t, u) when the caller has it already."""
    u, back = as_native(u)
    xp = array_module(u)
    if spde.noise.is_white or spde.is_additive:
        return back(xp.zeros_like(u))
    ub, restore = as_batch(u)
    h = spde.spacing
    c = spde.coefficients(t, ub.shape[0])
    shape = (-1, 1, 1, 1)
    a2 = xp.asarray(c["alpha2"]).reshape(shape)
    il = xp.asarray(c["inv_lam2"]).reshape(shape) / (h * h)
    g = (spde.diffusion_amplitude(t, ub, backend) if g2 is None else as_batch(g2, "g2")[0]).astype(np.float64)
    ub64 = ub.astype(np.float64)
    dx = _central(ub64, -1, "reflect")
    dy = _central(ub64, -2, "reflect")
    # g2 = g(s), s = dx^2 + dy^2 (eq. 9): its derivative in u brings 2 g'(s) (dx, dy) times the central
    # differences of the neighbours (spdekit.operators.dg_ds, any family; Charbonnier: -g^3 il / (2 alpha2^2))
    dgds = dg_ds(a2, il, dx * dx + dy * dy, spde.diffusivity2)
    qx = float(spde.noise.covariance(0.0, h))
    qy = float(spde.noise.covariance(h, 0.0))
    gp = xp.pad(g, [(0, 0)] * 2 + [(1, 1), (1, 1)])  # zero ghosts: their dx/dy factor is 0 anyway
    diff_x = gp[..., 1:-1, 2:] - gp[..., 1:-1, :-2]
    diff_y = gp[..., 2:, 1:-1] - gp[..., :-2, 1:-1]
    div = 2 * dgds * (dx * qx * diff_x + dy * qy * diff_y)
    return back(restore(div.astype(u.dtype, copy=False)))


def reverse_drift(spde, t, u, score, backend: str = "auto"):
    """bbar of eq. (20) at FORWARD time t: tr D_u Sigma(t, u) + Sigma(t, u) score - b(t, u)."""
    u, back = as_native(u)
    score, _ = as_native(score)
    return back(sigma_divergence(spde, t, u, backend) + apply_sigma(spde, t, u, score, backend)
                - spde.drift(t, u, backend))


def dense_sigma(spde, t, u):
    """Sigma(t, u) as a dense (D, D) matrix for one (H, W) numpy state (tests and tiny grids)."""
    if u.ndim != 2:
        raise ValueError(f"dense_sigma takes one (H, W) state, got shape {u.shape}")
    g = spde.diffusion_amplitude(t, u, "numpy").reshape(-1)
    return g[:, None] * spde.noise.dense_Q(u.shape) * g[None, :]


class ReverseSDE:
    """The time reversal (20) of the discretised SPDE as a problem for spdekit's solvers.

    As in score_sde, times are the FORWARD times t of the chain: a step of size dt goes from t to
    t - dt (reverse time T - t grows by dt). ``score(t, u)`` is the score of the forward chain's
    marginal at forward time t: a callable taking t as a (B,) float64 array and u as a (B, C, H, W)
    array, both in the array type of the state passed to the step (numpy arrays for numpy states, torch
    tensors on the tensor's device for torch states: genmodel hands its networks over this way),
    returning an array of that type like u. Every step takes and returns states of any of the types
    of :func:`spdekit._arrays.as_native`, computing on a zero-copy numpy (host) or cupy (GPU) view.
    ``reference``: the chain's :class:`spdekit.reference.GaussianReference`, needed by the
    exponential steps. Built by :meth:`spdekit.AnisotropicSPDE.reverse`.

    Steps (each evaluates the score once and g2 once):

    * :meth:`em_step` (what ``EulerMaruyama().step(rsde, t, u, dt, dW)`` calls): Euler-Maruyama,

          u <- u + dt [tr D_u Sigma + Sigma s - b] + g2 dW,     dW ~ N(0, dt Q),

      the score at t and b, Sigma, g2 at the target time t - dt. That is the pairing of the exact
      reverse of one chain step u_{k+1} = M u_k + eps, eps ~ N(0, dt Sigma_k): Tweedie's formula gives
      E[u_k | u_{k+1}] = M^{-1}(u_{k+1} + dt Sigma_k s_{k+1}(u_{k+1})) = u_{k+1} - dt b(t_k, u_{k+1})
      + dt Sigma_k s_{k+1} + O(dt^2). In continuous time both pairings give eq. (20). ``dW=None``: no
      noise (the last step, which returns the mean).
    * :meth:`exponential_step`: from chain step k to chain step j < k (t = k dt, h = (k - j) dt).
      Split the reverse drift into the reference's (linear and diagonal in DCT-II modes, module
      :mod:`spdekit.reference`) and the remainder R = bbar - bbar_ref (the nonlinear drift minus its
      linearisation, Sigma s minus the reference's Sigma_ref s_ref: non-Gaussian data, an imperfect
      network, the paper stencil's border rows). The reference part is integrated EXACTLY by its
      reverse kernel (the Gaussian posterior of z_j given z_k), R explicitly with the variation-of-
      constants weight of an exactly integrated linear step, h phi_1(log G):

          z_j = P_j m + G (z_k - P_k m) + h phi_1(log G) R_z(t, u) + sqrt(rho) xi,   xi ~ N(0, I),

      per DCT-II mode (G, rho, P, m: :meth:`GaussianReference.reverse_kernel`; phi_1(x) = (e^x - 1)/x;
      modes with G <= 0, possible only for dt above h^2 / (8 alpha1), get the weight h). When is it
      exact? For a linear chain on the conservative stencil with white noise (b = b_ref, Sigma =
      Sigma_ref), data that are Gaussian with independent DCT modes (the reference IS the data law)
      and the exact score (s = s_ref), R = 0 and every step draws from the chain's own reverse kernel:
      exact in law for ANY step count, including the last step to t = 0 (which keeps its noise rho:
      the posterior of u_0 is not a point). Otherwise the error comes from R alone, and the stiff
      part (fast relaxation of high modes, where explicit Euler needs h < 2 / (8 alpha1)) stays in the
      exact part: with 0 <= (rate of R) <= (rate of the reference) the step contracts like the exact
      flow for any h (h phi_1 weights keep e^{-a} + (1 - e^{-a})(1 - a'/a) in [0, 1]).
    * :meth:`probability_flow`: the probability-flow ODE of the discretised chain,
      du/dt = b - (tr D_u Sigma + Sigma s) / 2 (all at t) plus, with a reference, the correction that
      makes its linearisation carry the chain's own marginals (:mod:`spdekit.reference`): deterministic.
    * :meth:`exponential_flow_step`: the same split for the ODE; the reference's flow map
      z_j = P_j m + r (z_k - P_k m), r = sqrt(V_j / V_k), is exact, the remainder weighted h phi_1(log r).
      Exact (and deterministic) in law under the same conditions as :meth:`exponential_step`.
    """

    def __init__(self, spde, score, reference=None):
        if not callable(score):
            raise TypeError(f"score must be a callable score(t, u), got {type(score).__name__}")
        self.spde = spde
        self.score = score
        self.reference = reference

    # ------------------------------------------------------------------ pieces (native arrays inside)
    @staticmethod
    def _times(t, batch: int) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return np.full(batch, float(t)) if t.ndim == 0 else t

    def _score(self, t, u, back):
        """The score at forward time t for the native state u, called in the caller's array type
        (``back``: the way back from :func:`as_native`); returned native, of u's dtype."""
        xp = array_module(u)
        s = self.score(back(xp.asarray(self._times(t, u.shape[0]))), back(u))
        if getattr(s, "shape", None) is None or tuple(s.shape) != tuple(u.shape):
            raise ValueError(f"the score must have the shape of u {tuple(u.shape)}, got "
                             f"{getattr(s, 'shape', type(s).__name__)}")
        s, _ = as_native(s)
        return s.astype(u.dtype, copy=False)

    def score_at(self, t, u):
        """The score at forward time t (scalar or (B,)), checked: an array of u's shape, dtype and type."""
        u, back = as_native(u)
        return back(self._score(t, u, back))

    def _bbar(self, t, u, s, g2, backend):
        """tr D_u Sigma + Sigma s - b at coefficient time t, with g2 = g2(t, u) given (native arrays)."""
        div = sigma_divergence(self.spde, t, u, backend, g2=g2)
        return div + g2 * self.spde.noise.apply_Q(g2 * s) - self.spde.drift(t, u, backend)

    def drift(self, t, u, s=None, backend: str = "auto"):
        """bbar(t, u) of eq. (20), score and coefficients at forward time t (``s``: the score, if known)."""
        u, back = as_native(u)
        s = self._score(t, u, back) if s is None else as_native(s)[0]
        return back(self._bbar(t, u, s, self.spde.diffusion_amplitude(t, u, backend), backend))

    def noise_term(self, t, u, dW, backend: str = "auto"):
        """sigma(t, u) dW = g2(t, u) dW."""
        return self.spde.noise_term(t, u, dW, backend)

    def probability_flow(self, t, u, s=None, backend: str = "auto"):
        """du/dt = b - (tr D_u Sigma + Sigma s) / 2 at forward time t (a forward-time derivative): the
        probability-flow ODE of the SDE (12). With a reference, at chain times t = k dt, the drift of the
        DISCRETISED chain's flow: plus :meth:`ChainFlow.correction` (the chain decays
        a mode by f = 1 + dt alpha1 mu per step, not by exp(dt alpha1 mu); without the correction the
        ODE does not carry the chain's marginals: :mod:`spdekit.reference`)."""
        u, back = as_native(u)
        s = self._score(t, u, back) if s is None else as_native(s)[0]
        return back(self._flow(t, u, s, backend))

    def _flow(self, t, u, s, backend):
        g2 = self.spde.diffusion_amplitude(t, u, backend)
        half = sigma_divergence(self.spde, t, u, backend, g2=g2) + g2 * self.spde.noise.apply_Q(g2 * s)
        f = self.spde.drift(t, u, backend) - 0.5 * half
        if self.reference is None:
            return f
        corr = self.reference.chain_flow.correction(self._chain_step(t), u.astype(np.float64), s.astype(np.float64))
        return (f + array_module(u).asarray(corr)).astype(u.dtype, copy=False)

    def _chain_step(self, t) -> int:
        ref = self._reference()
        t = np.asarray(t, dtype=np.float64)
        tt = float(t.ravel()[0])
        k = int(round(tt / ref.dt))
        if np.any(t != tt) or abs(k * ref.dt - tt) > 1e-6 * ref.dt:
            raise ValueError(f"the chain's probability flow is defined at chain times k dt (one for the batch); "
                             f"got t = {t.ravel()[:4]} with dt = {ref.dt}")
        return k

    # ------------------------------------------------------------------ steps
    def em_step(self, t, u, dt, dW, taming=None, backend: str = "auto", **_):
        """One (tamed) Euler-Maruyama step from t to t - dt (class doc); returns (u_next, all_finite)."""
        u, back = as_native(u)
        xp = array_module(u)
        s = self._score(t, u, back)
        tc = np.maximum(np.asarray(t, dtype=np.float64) - dt, 0.0)
        g2 = self.spde.diffusion_amplitude(tc, u, backend)
        bbar = self._bbar(tc, u, s, g2, backend)
        if taming is None:
            out = u + dt * bbar
        else:
            factor = xp.asarray(taming_factor(bbar, dt, taming)).reshape((-1,) + (1,) * (u.ndim - 1))
            out = u + factor.astype(u.dtype) * bbar
        if dW is not None:
            out = out + g2 * as_native(dW)[0]
        return back(out), bool(xp.isfinite(out).all())

    def _reference(self):
        if self.reference is None:
            raise ValueError("the exponential steps need the chain's Gaussian reference: build the reverse SDE "
                             "with reference= (spdekit.reference.GaussianReference)")
        return self.reference

    def _chain_time(self, k: int, j: int):
        ref = self._reference()
        if not 0 <= j < k <= ref.n_steps:
            raise ValueError(f"exponential steps go from chain step k to j with 0 <= j < k <= {ref.n_steps}; "
                             f"got k = {k}, j = {j}")
        return ref, k * ref.dt, (k - j) * ref.dt

    def exponential_step(self, k: int, j: int, u, xi=None, backend: str = "auto"):
        """Exponential-integrator step of the reverse SDE from chain step k to j < k (class doc).
        ``xi``: standard normal draws like u (None: no noise). Returns (u_j, all_finite)."""
        ref, t, h = self._chain_time(k, j)
        u, back = as_native(u)
        xp = array_module(u)
        s = self._score(t, u, back)
        bbar = self._bbar(t, u, s, self.spde.diffusion_amplitude(t, u, backend), backend)
        z = to_modes(u.astype(np.float64), "conservative")
        R = to_modes(bbar.astype(np.float64), "conservative") - ref.reverse_drift_modes(t, z, ref.score_modes(k, z))
        mj, G, mk, rho = (xp.asarray(a) for a in ref.reverse_kernel(k, j))
        w = h * xp.where(G > 0, phi1(xp.log(xp.where(G > 0, G, 1.0))), 1.0)
        zj = mj + G * (z - mk) + w * R
        if xi is not None:
            zj = zj + xp.sqrt(rho) * xp.asarray(as_native(xi)[0])
        out = from_modes(zj, "conservative").astype(u.dtype)
        return back(out), bool(xp.isfinite(out).all())

    def exponential_flow_step(self, k: int, j: int, u, backend: str = "auto"):
        """Exponential step of the probability-flow ODE from chain step k to j < k (class doc)."""
        ref, t, h = self._chain_time(k, j)
        u, back = as_native(u)
        xp = array_module(u)
        s = self._score(t, u, back)
        f = self._flow(t, u, s, backend)
        z = to_modes(u.astype(np.float64), "conservative")
        # reverse-time drifts: -f and -f_ref
        R = ref.flow_drift_modes(k, z, ref.score_modes(k, z)) - to_modes(f.astype(np.float64), "conservative")
        mj, r, mk = (xp.asarray(a) for a in ref.flow_map(k, j))
        zj = mj + r * (z - mk) + h * phi1(xp.log(r)) * R
        out = from_modes(zj, "conservative").astype(u.dtype)
        return back(out), bool(xp.isfinite(out).all())


__all__ = ["ReverseSDE", "apply_sigma", "dense_sigma", "reverse_drift", "sigma_divergence"]
