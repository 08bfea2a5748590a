"""Test problems with exact solutions on a given Brownian path (for convergence studies).

Every problem is an SDE/SPDE dU = drift(t, U) dt + noise_term(t, U, dW) in the form the solvers
accept (``drift``, ``noise_term``, ``noise``; :func:`spdekit.solver_base.generic_em_step`), with the
batch (path) axis first. A problem with an exact solution has

* ``exact_step(t, u, dt, path)``: the exact solution at t + dt started from u at t, driven by the
  same Brownian path the solver sees (``path.increment``), exact for any step on the path's grid;
* ``brownian_path(shape, t0, t1, dt_min, seed)``: the path to drive it with (a plain
  :class:`spdekit.BrownianPath`, or a :class:`spdekit.brownian.LinearGaussianPath` when the exact
  solution needs the stochastic convolution sampled jointly with the increments);
* ``orders``: the theoretical strong/weak orders of Euler-Maruyama on it (with their source).

Problems: :class:`GeometricBrownianMotion` (multiplicative noise), :class:`OrnsteinUhlenbeck`
(additive noise, linear drift), :class:`CubicSDE` (superlinear drift, tanh closed form),
:class:`LinearHeatEquation` (the lambda1 = lambda2 = inf instance (25) of the paper's SPDE on the
grid, solved exactly mode by mode) and :class:`GinzburgLandau` (superlinear drift, no closed form:
the taming example).
"""

from __future__ import annotations

import numpy as np

from . import schedules as S
from . import spectral
from ._checks import check_nonnegative, check_positive, check_real
from .brownian import BrownianPath, LinearGaussianPath
from .spde import AnisotropicSPDE


class WhiteNoise:
    """Independent standard normal increments on any state shape (Q = identity)."""

    correlation_length = 0.0
    is_white = True

    def sample(self, shape, rng, dtype=np.float64):
        return rng.standard_normal(tuple(shape), dtype=dtype)

    def apply_sqrt_Q(self, xi, grid_shape=None):
        return xi

    def embedding_shape(self, grid_shape):
        return tuple(grid_shape)

    def __repr__(self) -> str:
        return "WhiteNoise()"


class SDEProblem:
    """Base class of the scalar test problems (state shape (n_paths,) or (n_paths, d))."""

    name = "sde"
    noise = WhiteNoise()
    additive = False
    #: theoretical orders of Euler-Maruyama (strong, weak) and where they come from
    orders = {"strong": 0.5, "weak": 1.0, "source": "Kloeden & Platen (1992), Sec. 10.2 (strong), 14.1 (weak)"}

    def brownian_path(self, shape, t0, t1, dt_min, seed=0, **kw) -> BrownianPath:
        return BrownianPath(shape, t0, t1, dt_min, seed, **kw)

    def exact_solution(self, u0, path, t):
        """Exact U(t) from U(t0) = u0 on ``path`` (one exact step over [t0, t])."""
        return self.exact_step(path.t0, np.asarray(u0, dtype=np.float64), float(t) - path.t0, path)

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, **self._params()}

    def _params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


class GeometricBrownianMotion(SDEProblem):
    """dU = a U dt + b U dW, exact U(t) = U(s) exp((a - b^2/2)(t - s) + b (W(t) - W(s))).

    Multiplicative noise: Euler-Maruyama has strong order 1/2 and weak order 1.
    """

    name = "gbm"

    def __init__(self, a: float = 1.5, b: float = 0.5):
        self.a = check_real("a", a)
        self.b = check_real("b", b)

    def _params(self):
        return {"a": self.a, "b": self.b}

    def drift(self, t, u):
        return self.a * u

    def noise_term(self, t, u, dW):
        return self.b * u * dW

    def exact_step(self, t, u, dt, path):
        dW = path.increment(t, t + dt)
        return u * np.exp((self.a - 0.5 * self.b**2) * dt + self.b * dW)


class OrnsteinUhlenbeck(SDEProblem):
    """dU = -theta U dt + sigma dW (additive noise): EM has strong order 1 and weak order 1.

    Exact on a path: U(t + h) = e^{-theta h} U(t) + sigma int_t^{t+h} e^{-theta (t + h - s)} dW_s. The
    stochastic convolution is NOT a function of the increment W(t+h) - W(t) alone; it is sampled
    jointly with the increments on every finest step (:class:`LinearGaussianPath`, exact law), so
    the exact solution and the solver share one path. ``brownian_path`` must be used to drive it.
    """

    name = "ou"
    additive = True
    orders = {"strong": 1.0, "weak": 1.0, "source": "Kloeden & Platen (1992), additive noise: EM = Milstein"}

    def __init__(self, theta: float = 1.0, sigma: float = 1.0):
        self.theta = check_real("theta", theta)
        self.sigma = check_real("sigma", sigma)

    def _params(self):
        return {"theta": self.theta, "sigma": self.sigma}

    def drift(self, t, u):
        return -self.theta * u

    def noise_term(self, t, u, dW):
        return self.sigma * dW

    def brownian_path(self, shape, t0, t1, dt_min, seed=0, **kw) -> LinearGaussianPath:
        return LinearGaussianPath(shape, t0, t1, dt_min, rates=-self.theta, seed=seed, **kw)

    def exact_step(self, t, u, dt, path):
        if not isinstance(path, LinearGaussianPath):
            raise TypeError("OrnsteinUhlenbeck.exact_step needs the path from OrnsteinUhlenbeck.brownian_path")
        return path.decay(dt) * u + self.sigma * path.convolution(t, t + dt)


class CubicSDE(SDEProblem):
    """dU = -1/4 U (1 - U^2) dt + 1/2 (1 - U^2) dW, |U(0)| < 1: superlinear (cubic) coefficients.

    Exact solution: U(t) = tanh(W(t)/2 + artanh U(0)). Check by Ito's formula with
    f(y) = tanh(y), Y = W/2 + artanh U(0), dY = dW/2, d<Y> = dt/4, f' = 1 - f^2, f'' = -2 f (1 - f^2):
    dU = f'(Y) dY + 1/2 f''(Y) d<Y> = 1/2 (1 - U^2) dW - 1/4 U (1 - U^2) dt.
    The exact solution stays in (-1, 1); outside it the drift 1/4 U^3 pushes outward, so an
    explicit scheme that leaves (-1, 1) can blow up: the case for taming. Expected orders of EM and
    tamed EM: strong 1/2 (multiplicative noise), weak 1, since the coefficients are smooth and
    Lipschitz on [-1, 1] where the solution lives; no theorem covers it as stated (the coefficients
    are superlinear outside [-1, 1], and HJK 2012 needs globally Lipschitz noise).
    """

    name = "cubic"

    def drift(self, t, u):
        return -0.25 * u * (1.0 - u * u)

    def noise_term(self, t, u, dW):
        return 0.5 * (1.0 - u * u) * dW

    def exact_step(self, t, u, dt, path):
        dW = path.increment(t, t + dt)
        return np.tanh(np.arctanh(u) + 0.5 * dW)


class GinzburgLandau(SDEProblem):
    """Stochastic Ginzburg-Landau dU = (U - U^3) dt + sigma U dW (multiplicative) or sigma dW
    (``multiplicative=False``). Superlinear, one-sided Lipschitz drift, globally Lipschitz noise:
    the setting of Hutzenthaler, Jentzen & Kloeden (Proc. R. Soc. A 467, 2011: the moments of
    Euler-Maruyama diverge; Ann. Appl. Probab. 22(4), 2012: tamed Euler converges with strong
    order 1/2). No closed form on a path: use a fine-step reference."""

    name = "ginzburg_landau"
    orders = {"strong": 0.5, "weak": None, "source": "Hutzenthaler, Jentzen & Kloeden (2012), tamed EM"}

    def __init__(self, sigma: float = 0.5, multiplicative: bool = True):
        self.sigma = check_nonnegative("sigma", sigma)
        self.multiplicative = bool(multiplicative)

    def _params(self):
        return {"sigma": self.sigma, "multiplicative": self.multiplicative}

    def drift(self, t, u):
        return u - u * u * u

    def noise_term(self, t, u, dW):
        return self.sigma * (u * dW if self.multiplicative else dW)

    exact_step = None


class LinearHeatEquation(AnisotropicSPDE):
    """The linear stochastic heat equation dU = alpha1 L U dt + alpha2 dW on the grid (paper eq. 25:
    lambda1 = lambda2 = inf), Neumann borders, with constant alpha1 >= 0, alpha2, and white
    (l = 0) or Q-Wiener (l > 0, eq. 11) noise. It IS an :class:`AnisotropicSPDE`, so the solvers
    step it with the backend kernels (numpy reference, numba) being validated.

    Exact solution: L = V diag(mu) V^{-1} (:mod:`spdekit.spectral`; orthonormal DCT-II for the
    conservative stencil, DCT-I for the paper stencil), so the mode coordinates z = V^{-1} U are
    OU processes dz_k = alpha1 mu_k z_k dt + alpha2 dB_k with B = V^{-1} W of covariance
    t M, M = V^{-1} Q V^{-T} (M = I for white noise and DCT-II). :meth:`brownian_path` samples the
    per-step stochastic convolutions jointly with dB (:class:`LinearGaussianPath`) and feeds the
    solver dW = V dB; :meth:`exact_step` is z(t + h) = e^{alpha1 mu h} z(t) + alpha2 conv.
    EM: strong order 1 (additive noise, linear drift) and weak order 1 on the fixed grid.
    """

    name = "heat"
    additive = True
    orders = {"strong": 1.0, "weak": 1.0, "source": "Kloeden & Platen (1992), additive noise: EM = Milstein"}

    def __init__(self, alpha1: float = 1.0, alpha2: float = 1.0, correlation_length: float = 0.0,
                 stencil: str = "conservative", noise_kind: str = "euclidean", spacing: float = 1.0):
        for name, v in (("alpha1", alpha1), ("alpha2", alpha2)):
            if isinstance(v, S.Schedule) and not isinstance(v, S.Constant):
                raise TypeError(f"{name} must be a constant for the exact solution, got {v!r}")
        super().__init__(alpha1=alpha1, lambda1=float("inf"), alpha2=alpha2, lambda2=float("inf"),
                         correlation_length=correlation_length, stencil=stencil, noise_kind=noise_kind,
                         spacing=spacing)
        self.a1 = float(self.alpha1(0.0))
        self.a2 = float(self.alpha2(0.0))
        check_nonnegative("alpha1", self.a1)

    def mode_rates(self, grid_shape) -> np.ndarray:
        """c_k = alpha1 mu_k, shape (H, W)."""
        return self.a1 * spectral.laplacian_eigenvalues(tuple(grid_shape), self.stencil, self.spacing)

    def mode_covariance(self, grid_shape):
        """M = V^{-1} Q V^{-T} (N x N, row-major modes), or None when it is the identity."""
        H, W = grid_shape
        if self.noise.is_white and self.stencil == "conservative":
            return None
        n = H * W
        eye = np.eye(n).reshape(n, H, W)
        Vinv = spectral.to_modes(eye, self.stencil).reshape(n, n).T  # column i = V^{-1} e_i
        Q = np.eye(n) if self.noise.is_white else self.noise.dense_Q((H, W))
        M = Vinv @ Q @ Vinv.T
        return 0.5 * (M + M.T)

    def brownian_path(self, shape, t0, t1, dt_min, seed=0, **kw) -> LinearGaussianPath:
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(f"LinearHeatEquation paths need a state shape (n_paths, C, H, W); got {shape}")
        grid = shape[-2:]
        return LinearGaussianPath(
            shape, t0, t1, dt_min, rates=self.mode_rates(grid), seed=seed,
            mode_covariance=self.mode_covariance(grid),
            to_modes=lambda v: spectral.to_modes(v, self.stencil),
            from_modes=lambda z: spectral.from_modes(z, self.stencil), **kw,
        )

    def exact_step(self, t, u, dt, path):
        if not isinstance(path, LinearGaussianPath):
            raise TypeError("LinearHeatEquation.exact_step needs the path from LinearHeatEquation.brownian_path")
        z = spectral.to_modes(np.asarray(u, dtype=np.float64), self.stencil)
        z = path.decay(dt) * z + self.a2 * path.convolution(t, t + dt)
        return spectral.from_modes(z, self.stencil)

    def exact_solution(self, u0, path, t):
        return self.exact_step(path.t0, u0, float(t) - path.t0, path)


def paper_multiplicative(image_size: int, T: float = 2.0, lambda2: float = 0.5, **kw) -> AnisotropicSPDE:
    """The paper's framework (eq. 6-9) with the Section 5.2 drift and multiplicative, anisotropic
    noise: g2 = alpha2 / sqrt(1 + |grad u / lambda2|^2) with finite constant ``lambda2`` (or another
    family of g2: ``diffusivity=``, :mod:`spdekit.operators`)."""
    check_positive("lambda2", lambda2)
    base = AnisotropicSPDE.paper_anisotropic(image_size, T, **kw)
    return AnisotropicSPDE(alpha1=base.alpha1, lambda1=base.lambda1, alpha2=base.alpha2, lambda2=lambda2,
                           correlation_length=base.correlation_length, stencil=base.stencil,
                           noise_kind=base.noise.kind, spacing=base.spacing, diffusivity=base.diffusivity)


__all__ = ["WhiteNoise", "GeometricBrownianMotion", "OrnsteinUhlenbeck", "CubicSDE", "GinzburgLandau",
           "LinearHeatEquation", "paper_multiplicative"]
