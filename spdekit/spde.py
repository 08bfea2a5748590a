"""The anisotropic SPDE of the paper (eq. 6-11), spatially discretised (Appendix H):

    dU = b(t, U) dt + sigma(t, U) dW,    b(t, u) = div(g1(t, grad u) grad u)            (6), (7)
    sigma(t, u) v = g2(t, grad u) v,     g_i(t, x) = alpha_i(t) / sqrt(1 + |x / lambda_i(t)|^2)  (8), (9)

with W a Q-Wiener process of exponential covariance (10)-(11). After discretisation this is the
finite-dimensional SDE (12)/(38) that the generative model reverses (Section 4.2). Besides the
paper's g (Charbonnier's), g1 and g2 may be taken from the classical families of nonlinear
diffusion (``diffusivity=``; :mod:`spdekit.operators`).
"""

from __future__ import annotations

import warnings

import numpy as np

from . import schedules as S
from ._checks import check_choice, check_finite_array, check_positive
from .backends import get_backend
from .backends.base import Coefficients, as_coefficients, capability
from .grid import Grid, as_batch  # noqa: F401  (as_batch: spdekit.spde.as_batch is public)
from .noise import QWienerNoise
from .operators import DIFFUSIVITIES, check_diffusivity

STENCILS = ("paper", "conservative")


class StabilityWarning(UserWarning):
    """dt exceeds the explicit stability bound of the drift."""


class AnisotropicSPDE:
    """The stochastic Perona-Malik equation (6) on an image grid.

    Parameters
    ----------
    alpha1, lambda1 : diffusivity and anisotropy coefficients of the drift g1 (eq. 9); numbers or
        :mod:`spdekit.schedules` objects. alpha >= 0, lambda in (0, inf] (inf: isotropic).
    alpha2, lambda2 : intensity and anisotropy coefficients of the noise amplitude g2 (eq. 9).
    correlation_length : l >= 0 of eq. (11); 0 is white noise.
    stencil : "paper" (eq. 35-36) or "conservative" (face fluxes, mass-conserving).
    noise_kind : "euclidean" (eq. 11) or "separable".
    spacing : grid spacing h (1 = pixel units, the paper's setting).
    diffusivity : the family of g1 and g2, one of :data:`spdekit.operators.DIFFUSIVITIES`:
        "charbonnier" (eq. 9, the default), "perona-malik", "exponential" or "weickert"; all are
        alpha_i(t) * phi(|x|^2 / lambda_i(t)^2). One name sets both g1 and g2 (eq. 9 gives them one
        form; with lambda2 = inf, as in every preset, g2 = alpha2 whatever the family); a pair
        (g1's, g2's) sets them apart, e.g. a Perona-Malik drift with Charbonnier noise amplitude.
    """

    def __init__(self, alpha1, lambda1, alpha2, lambda2, correlation_length: float = 0.0,
                 stencil: str = "paper", noise_kind: str = "euclidean", spacing: float = 1.0,
                 diffusivity="charbonnier"):
        self.alpha1 = S.as_schedule("alpha1", alpha1)
        self.lambda1 = S.as_schedule("lambda1", lambda1)
        self.alpha2 = S.as_schedule("alpha2", alpha2)
        self.lambda2 = S.as_schedule("lambda2", lambda2)
        self.diffusivity1, self.diffusivity2 = _families(diffusivity)
        self.stencil = check_choice("stencil", stencil, STENCILS)
        self.spacing = check_positive("spacing", spacing)
        self.noise = QWienerNoise(correlation_length, noise_kind, self.spacing)
        horizon = max(getattr(s, "T", 1.0) for s in (self.alpha1, self.lambda1, self.alpha2, self.lambda2))
        self._check_ranges(0.0, horizon)

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper_anisotropic(cls, image_size: int, T: float = 2.0, **kw) -> AnisotropicSPDE:
        """Section 5.2, eq. (14)-(16): alpha1 geometric 0.5 -> 2*image_size, lambda1 the ramp (16)
        with lambda_min = 0.025, k = 1/2; alpha2 geometric 0.01 -> 2; lambda2 = inf; l = 0."""
        return cls(
            alpha1=S.Geometric(0.5, 2.0 * image_size, T),
            lambda1=S.AnisotropyRamp(0.025, 0.5, T),
            alpha2=S.Geometric(0.01, 2.0, T),
            lambda2=float("inf"),
            **kw,
        )

    @classmethod
    def paper_isotropic(cls, image_size: int, T: float = 2.0, **kw) -> AnisotropicSPDE:
        """Section 5.3, eq. (17): stochastic heat equation; alpha1 geometric 0.5 -> 2*image_size,
        alpha2 geometric 0.01 -> 0.5, lambda1 = lambda2 = inf, l = 0."""
        return cls(
            alpha1=S.Geometric(0.5, 2.0 * image_size, T),
            lambda1=float("inf"),
            alpha2=S.Geometric(0.01, 0.5, T),
            lambda2=float("inf"),
            **kw,
        )

    @classmethod
    def pure_noise(cls, alpha2, **kw) -> AnisotropicSPDE:
        """Section 5.1, eq. (13): dU = alpha2(t) dW (no drift); the VE-SDE of Song et al. is the
        instance alpha2(t) = sigma_min (sigma_max/sigma_min)^t sqrt(2 log(sigma_max/sigma_min))."""
        return cls(alpha1=0.0, lambda1=float("inf"), alpha2=alpha2, lambda2=float("inf"), **kw)

    # ------------------------------------------------------------------ properties
    @property
    def correlation_length(self) -> float:
        return self.noise.correlation_length

    @property
    def diffusivity(self):
        """The family name of g1 and g2, or the pair (g1's, g2's) when they differ."""
        d1, d2 = self.diffusivity1, self.diffusivity2
        return d1 if d1 == d2 else (d1, d2)

    @property
    def is_additive(self) -> bool:
        """True when g2 does not depend on u (lambda2 = inf): additive noise, eq. (24)/(25)."""
        return isinstance(self.lambda2, S.Constant) and self.lambda2.v == float("inf")

    @property
    def is_linear(self) -> bool:
        """True for the linear heat/noise equation (25): lambda1 = lambda2 = inf."""
        return self.is_additive and isinstance(self.lambda1, S.Constant) and self.lambda1.v == float("inf")

    def linearised(self, stencil: str = "conservative") -> AnisotropicSPDE:
        """The same SPDE with lambda1 = lambda2 = inf (g1 = alpha1, g2 = alpha2: the heat equation (17)
        with this schedule), on ``stencil``: the linear chain whose exact law (:class:`spdekit.LinearChain`)
        serves as a Gaussian reference for a nonlinear one."""
        return AnisotropicSPDE(alpha1=self.alpha1, lambda1=float("inf"), alpha2=self.alpha2, lambda2=float("inf"),
                               correlation_length=self.correlation_length, stencil=stencil,
                               noise_kind=self.noise.kind, spacing=self.spacing, diffusivity=self.diffusivity)

    def reverse(self, score, reference=None):
        """The time reversal (eq. 20) of this SPDE's discretised chain for a score ``score(t, u)``:
        a :class:`spdekit.reverse.ReverseSDE` (``reference``: its Gaussian reference, for the
        exponential steps)."""
        from .reverse import ReverseSDE

        return ReverseSDE(self, score, reference)

    def grid(self, shape) -> Grid:
        return Grid(tuple(shape)[-2:], self.spacing)

    def _check_ranges(self, t0: float, t1: float) -> None:
        for name in ("alpha1", "alpha2"):
            lo, _ = getattr(self, name).bounds(t0, t1)
            if lo < 0:
                raise ValueError(f"{name} must be >= 0 on [{t0}, {t1}]; {getattr(self, name)!r} reaches {lo}")
        for name in ("lambda1", "lambda2"):
            lo, _ = getattr(self, name).bounds(t0, t1)
            if not lo > 0:
                raise ValueError(
                    f"{name} must lie in (0, inf] on [{t0}, {t1}]; {getattr(self, name)!r} reaches {lo}"
                )

    # ------------------------------------------------------------------ coefficients
    def coefficients(self, t, batch: int) -> Coefficients:
        """The coefficients of g1 and g2 at time(s) t: a :class:`spdekit.backends.base.Coefficients`
        record of per-sample arrays (batch,) alpha1, inv_lam1 = 1/lambda1^2, alpha2, inv_lam2 =
        1/lambda2^2 (exactly 0 for lambda = inf) and the two families. ``c["alpha1"]`` reads a field
        as the former dict did."""
        t_arr = np.asarray(t, dtype=np.float64)
        if t_arr.ndim == 0:
            t_arr = np.full(batch, float(t_arr))
        elif t_arr.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape (batch,) = ({batch},); got {t_arr.shape}")
        return self._record(*self._columns(t_arr))

    def _columns(self, times):
        """alpha1, 1/lambda1^2, alpha2, 1/lambda2^2 at ``times`` (float64 arrays like ``times``)."""
        lam1 = np.asarray(self.lambda1(times), dtype=np.float64)
        lam2 = np.asarray(self.lambda2(times), dtype=np.float64)
        return (np.asarray(self.alpha1(times), dtype=np.float64), 1.0 / (lam1 * lam1),
                np.asarray(self.alpha2(times), dtype=np.float64), 1.0 / (lam2 * lam2))

    def _record(self, alpha1, inv_lam1, alpha2, inv_lam2) -> Coefficients:
        return Coefficients(alpha1, inv_lam1, alpha2, inv_lam2, self.diffusivity1, self.diffusivity2)

    def stability_bound(self, t0: float, t1: float) -> float:
        """Explicit-Euler bound for the drift on [t0, t1]: dt <= h^2 / (4 max alpha1).

        Every row of eq. (35)-(36) has off-diagonal weights summing to at most 4 alpha1 / h^2
        (g1 <= alpha1, for every diffusivity family), so the forward Euler map of the drift is
        monotone for dt up to this bound (the 2D heat-equation limit). Returns inf when alpha1 = 0.
        """
        _, amax = self.alpha1.bounds(t0, t1)
        return float("inf") if amax == 0 else self.spacing**2 / (4.0 * amax)

    # ------------------------------------------------------------------ operators
    def drift(self, t, u, backend: str = "auto"):
        """b(t, u) of eq. (7), discretised by ``self.stencil``; u is (H, W) or (B, C, H, W)."""
        ub, restore = as_batch(u)
        c = self.coefficients(t, ub.shape[0])
        be = get_backend(backend, ub)
        return restore(be.drift(ub, c.alpha1, c.inv_lam1, self.stencil, self.spacing, diffusivity=c.diffusivity1))

    def drift_vjp(self, t, u, w, backend: str = "auto"):
        """J^T w, J = D_u b(t, u) the Jacobian of the discretised drift (eq. 35-36 or the conservative
        stencil) at u: the adjoint that path-space score targets need (the paper stencil is not
        symmetric). u, w: (H, W) or (B, C, H, W); a backend with the ``drift_vjp`` capability (numpy,
        numba; :mod:`spdekit.backends.base`)."""
        ub, restore = as_batch(u)
        wb, _ = as_batch(w, "w")
        if wb.shape != ub.shape:
            raise ValueError(f"w must have the shape of u {ub.shape}; got {wb.shape}")
        c = self.coefficients(t, ub.shape[0])
        vjp = capability(get_backend(backend, ub), "drift_vjp")
        return restore(vjp(ub, wb, c.alpha1, c.inv_lam1, self.stencil, self.spacing, diffusivity=c.diffusivity1))

    def diffusion_amplitude(self, t, u, backend: str = "auto"):
        """The g2 field of eq. (37): sigma(t, u) v = g2 * v (diagonal in the grid nodes)."""
        ub, restore = as_batch(u)
        c = self.coefficients(t, ub.shape[0])
        be = get_backend(backend, ub)
        return restore(be.diffusion_amplitude(ub, c.alpha2, c.inv_lam2, self.spacing, diffusivity=c.diffusivity2))

    def noise_term(self, t, u, dW, backend: str = "auto"):
        """sigma(t, u) dW = g2(t, grad u) * dW."""
        ub, restore = as_batch(u)
        return restore(self.diffusion_amplitude(t, ub, backend) * as_batch(dW)[0])

    def em_step(self, t, u, dt, dW, taming=None, backend: str = "auto", coef=None, checked=False, **buffers):
        """One (tamed) Euler-Maruyama step (eq. 39) by the backend's fused kernel.

        Returns (u_next, all_finite). ``taming`` is None or (gamma, norm). The time loop passes
        ``coef`` (the coefficients at t, precomputed for all steps: a
        :class:`~spdekit.backends.base.Coefficients` record, or a dict with its four arrays, which
        then takes this SPDE's families) and ``checked=True`` (u and dW are validated (B, C, H, W)
        arrays of the backend's kind) to skip per-step overhead."""
        if checked:
            be = get_backend(backend, u) if isinstance(backend, str) else backend
            c = self.coefficients(t, u.shape[0]) if coef is None else self._as_record(coef)
            return be.em_step(u, dW, dt, c, self.stencil, self.spacing, taming, **buffers)
        ub, restore = as_batch(u)
        c = self.coefficients(t, ub.shape[0]) if coef is None else self._as_record(coef)
        be = get_backend(backend, ub)
        out, ok = be.em_step(ub, as_batch(dW)[0], dt, c, self.stencil, self.spacing, taming, **buffers)
        return restore(out), ok

    def _as_record(self, coef) -> Coefficients:
        """A coefficient record; a dict (the former form) takes this SPDE's families."""
        return as_coefficients(coef, self.diffusivity1, self.diffusivity2)

    def coefficient_table(self, times, batch: int) -> list[Coefficients]:
        """:meth:`coefficients` at every time of ``times`` (schedules evaluated once, vectorised)."""
        cols = self._columns(np.asarray(times, dtype=np.float64))
        return [self._record(*(np.full(batch, v[i]) for v in cols)) for i in range(len(cols[0]))]

    def check_state(self, u, name: str = "u0") -> None:
        """Rank, grid size, dtype and finiteness checks with clear messages."""
        u = as_batch(u, name)[0]
        check_finite_array(name, u)

    def check_dt(self, dt: float, t0: float, t1: float) -> None:
        self._check_ranges(t0, t1)
        bound = self.stability_bound(t0, t1)
        if dt > bound:
            warnings.warn(
                f"dt = {dt:g} exceeds the explicit stability bound h^2/(4 max alpha1) = {bound:.4g} "
                f"on [{t0:g}, {t1:g}]; expect oscillations or blow-up (taming does not cure stiffness)",
                StabilityWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """The description :meth:`from_dict` rebuilds. ``diffusivity`` is written only when it is not
        the default Charbonnier g, so descriptions of the paper's SPDE (run configs, checkpoints, files)
        stay the ones written before the families existed, and compare equal to them."""
        d = self.diffusivity
        out = {
            "type": "AnisotropicSPDE",
            "alpha1": self.alpha1.to_dict(),
            "lambda1": self.lambda1.to_dict(),
            "alpha2": self.alpha2.to_dict(),
            "lambda2": self.lambda2.to_dict(),
            "correlation_length": self.noise.correlation_length,
            "noise_kind": self.noise.kind,
            "stencil": self.stencil,
            "spacing": self.spacing,
        }
        if d != "charbonnier":
            out["diffusivity"] = d if isinstance(d, str) else list(d)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> AnisotropicSPDE:
        """Inverse of :meth:`to_dict`; a description without ``diffusivity`` (files written before the
        families existed) is the paper's Charbonnier g."""
        d = dict(d)
        kind = d.pop("type", "AnisotropicSPDE")
        if kind != "AnisotropicSPDE":
            raise ValueError(f"not an AnisotropicSPDE description (type={kind!r})")
        for k in ("alpha1", "lambda1", "alpha2", "lambda2"):
            if k not in d:
                raise ValueError(f"SPDE description lacks {k!r}")
            d[k] = S.schedule_from_dict(d[k], name=k)
        return cls(**d)

    def __eq__(self, other) -> bool:
        return isinstance(other, AnisotropicSPDE) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"AnisotropicSPDE(alpha1={self.alpha1!r}, lambda1={self.lambda1!r}, alpha2={self.alpha2!r}, "
            f"lambda2={self.lambda2!r}, correlation_length={self.correlation_length}, stencil={self.stencil!r}"
            + ("" if self.diffusivity == "charbonnier" else f", diffusivity={self.diffusivity!r}") + ")"
        )


def _families(diffusivity) -> tuple[str, str]:
    """(g1's family, g2's family) from one name or a pair of names; else a one-line ValueError."""
    if isinstance(diffusivity, str):
        return check_diffusivity(diffusivity), diffusivity
    pair = isinstance(diffusivity, (tuple, list)) and len(diffusivity) == 2
    if pair and all(isinstance(v, str) for v in diffusivity):
        g1, g2 = diffusivity
        return check_diffusivity(g1, "diffusivity[0] (g1)"), check_diffusivity(g2, "diffusivity[1] (g2)")
    allowed = ", ".join(repr(c) for c in DIFFUSIVITIES)
    raise ValueError(f"diffusivity must be one of {allowed}, or a pair (g1's, g2's) of them; got {diffusivity!r}")
