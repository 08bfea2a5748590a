r"""Flow matching with the optimal-transport conditional path (Lipman et al. 2023, Section 4.1, eq. 20-23).

The baseline of the paper's Table 1 ("Lipman et al. (2022)"), trained with the SAME U-Net and time
embedding as the SPDE models so that the comparison isolates the forward process.

Path and target (t = 0 noise, t = 1 data; Lipman et al. eq. 20-23):

    x0 ~ N(0, I),  x1 ~ data,  x_t = (1 - (1 - sigma_min) t) x0 + t x1,
    u_t(x_t | x1) = x1 - (1 - sigma_min) x0,

    L_CFM(theta) = E_{t ~ U[0, 1], x0, x1} |v_theta(t, x_t) - (x1 - (1 - sigma_min) x0)|^2 / D.

Its minimiser is the marginal velocity v(t, x) = E[x1 - (1 - sigma_min) x0 | x_t = x], whose flow
carries N(0, I) at t = 0 to the law of sigma_min x0 + x1 at t = 1 (data convolved with
N(0, sigma_min^2 I)). Samples come from integrating dx/dt = v(t, x) from t = 0 to 1 with explicit
Euler or Heun (trapezoidal predictor-corrector, 2nd order) on a uniform grid.

For Gaussian data x1 ~ N(m, C) the marginal velocity has a closed form (:class:`GaussianOTVelocity`):
(x_t, u) is jointly Gaussian with x_t ~ N(t m, a_t^2 I + t^2 C), a_t = 1 - (1 - sigma_min) t, and
Cov(u, x_t) = t C - (1 - sigma_min) a_t I, so

    v(t, x) = m + (t C - (1 - sigma_min) a_t I)(a_t^2 I + t^2 C)^{-1} (x - t m).

It is used by the tests to check the samplers (the pushforward of N(0, I) must be N(m, C + sigma_min^2 I)).

Training goes through :class:`FlowMatchingTrainer`, a :class:`genmodel.train.Trainer` with the
flow-matching loss and export; a TOML config selects it with ``[process] preset = "flow_matching"``
(optional ``sigma_min``) or ``[train] loss = "flow_matching"``. The SPDE-only keys ([process] T, dt,
solver; [sampling] corrector_steps, snr; [network] score_param) are ignored ([train] time_weight_power
other than 0 is an error); ``[sampling] steps``
and ``method`` ("heun" default, or "euler") set the ODE sampler.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .train import Trainer

METHODS = ("euler", "heun")
FLOW_MATCHING = "flow_matching"


class OTPath:
    """The OT conditional path of Lipman et al. (eq. 20-23): x_t = (1 - (1 - sigma_min) t) x0 + t x1."""

    method = FLOW_MATCHING

    def __init__(self, sigma_min: float = 1e-4):
        sigma_min = float(sigma_min)
        if not 0 <= sigma_min < 1:
            raise ValueError(f"sigma_min must lie in [0, 1), got {sigma_min}")
        self.sigma_min = sigma_min

    def alpha(self, t):
        """a_t = 1 - (1 - sigma_min) t, the weight of the noise x0."""
        return 1.0 - (1.0 - self.sigma_min) * t

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for per-sample times t of shape (B,)."""
        tt = t.reshape((-1,) + (1,) * (x0.ndim - 1)).to(x0.dtype)
        return self.alpha(tt) * x0 + tt * x1

    def target(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The conditional velocity u_t(x_t | x1) = x1 - (1 - sigma_min) x0 (independent of t)."""
        return x1 - (1.0 - self.sigma_min) * x0

    def to_dict(self) -> dict:
        return {"method": FLOW_MATCHING, "sigma_min": self.sigma_min}

    @classmethod
    def from_dict(cls, d: dict) -> OTPath:
        if d.get("method") != FLOW_MATCHING:
            raise ValueError(f"not a flow-matching path description: {d}")
        return cls(d["sigma_min"])

    def __repr__(self) -> str:
        return f"OTPath(sigma_min={self.sigma_min})"


class VelocityModel(nn.Module):
    """v_theta(t, x) = net(x, t): the U-Net of :mod:`genmodel.networks` (time embedding of t in [0, 1])."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, t, x):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.net(x, t)


class FlowMatchingLoss:
    """L_CFM of the module doc on the (N, C, H, W) training set ``data``; t ~ U[0, 1]."""

    name = FLOW_MATCHING

    def __init__(self, path: OTPath, data: torch.Tensor):
        self.path = path
        self.data = torch.as_tensor(data)

    def __call__(self, model, batch: int, rng: np.random.Generator) -> torch.Tensor:
        x1 = self.data[torch.as_tensor(rng.integers(0, self.data.shape[0], batch))].to(torch.float32)
        x0 = torch.as_tensor(rng.standard_normal(x1.shape), dtype=x1.dtype, device=x1.device)
        t = torch.as_tensor(rng.random(batch), dtype=x1.dtype, device=x1.device)
        v = model(t, self.path.interpolate(x0, x1, t))
        return (v - self.path.target(x0, x1)).square().flatten(1).mean(1).mean()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


class GaussianOTVelocity:
    """The exact marginal velocity of the OT path for Gaussian data N(m, C) (module doc), on images
    of shape (C, H, W) flattened to D = C*H*W; ``velocity(t, x)`` works on (B, C, H, W) tensors."""

    def __init__(self, mean, cov, sigma_min: float = 1e-4):
        self.path = OTPath(sigma_min)
        self.mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        D = self.mean.size
        if cov.shape != (D, D):
            raise ValueError(f"cov must be ({D}, {D}) for a mean of shape {self.mean.shape}, got {cov.shape}")
        w, U = np.linalg.eigh(0.5 * (cov + cov.T))
        if w.min() < -1e-12 * max(1.0, w.max()):
            raise ValueError("cov must be positive semi-definite")
        self.eig, self.U = np.clip(w, 0.0, None), U

    def __call__(self, t, x: torch.Tensor) -> torch.Tensor:
        t = np.broadcast_to(np.asarray(torch.as_tensor(t).detach().cpu(), dtype=np.float64), (x.shape[0],))
        B = x.shape[0]
        m = self.mean.reshape(-1)
        xn = x.detach().cpu().double().numpy().reshape(B, -1)
        a = self.path.alpha(t)[:, None]
        tt = t[:, None]
        z = (xn - tt * m) @ self.U  # eigen-coordinates of C
        gain = (tt * self.eig - (1.0 - self.path.sigma_min) * a) / (a**2 + tt**2 * self.eig)
        v = m + (gain * z) @ self.U.T
        return torch.as_tensor(v.reshape(x.shape), dtype=x.dtype)


def integrate(velocity_fn, x0: torch.Tensor, steps: int = 100, method: str = "heun", t0: float = 0.0,
              t1: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Integrate dx/dt = velocity_fn(t, x) from t0 to t1 in ``steps`` uniform steps.

    ``method``: "euler" (x += h v(t, x)) or "heun" (x~ = x + h v(t, x); x += h/2 (v(t, x) + v(t + h, x~))),
    2 velocity evaluations per step (global error O(h^2))."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    h = (t1 - t0) / steps
    x = x0.clone()
    B = x.shape[0]
    for i in tqdm(range(steps), disable=not progress, desc=f"ode ({method})", unit="step"):
        t = t0 + i * h
        tt = torch.full((B,), t, dtype=x.dtype)
        v = velocity_fn(tt, x)
        if method == "euler":
            x = x + h * v
        else:
            xp = x + h * v
            v2 = velocity_fn(torch.full((B,), t + h, dtype=x.dtype), xp)
            x = x + 0.5 * h * (v + v2)
    if not bool(torch.isfinite(x.sum())):
        raise FloatingPointError("the flow-matching ODE became non-finite (try more steps)")
    return x


def sample(velocity_fn, n: int, shape, steps: int = 100, method: str = "heun", seed=None,
           batch_size: int | None = None, dtype=torch.float32, progress: bool = False) -> torch.Tensor:
    """``n`` samples: x0 ~ N(0, I) of ``shape`` (C, H, W), integrated from t = 0 to 1 (:func:`integrate`).
    Each chunk of ``batch_size`` draws its noise from its own child of ``seed``."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    batch_size = n if batch_size is None else int(batch_size)
    ss = np.random.SeedSequence(seed)
    out = []
    with torch.no_grad():
        for start, child in zip(range(0, n, batch_size), ss.spawn(math.ceil(n / batch_size))):
            m = min(batch_size, n - start)
            x0 = torch.as_tensor(np.random.default_rng(child).standard_normal((m,) + tuple(shape)), dtype=dtype)
            out.append(integrate(velocity_fn, x0, steps, method, progress=progress))
    return torch.cat(out)


def is_flow_matching(cfg: dict) -> bool:
    """Whether a training config (from :func:`genmodel.train.load_config`) asks for flow matching."""
    preset = cfg.get("process", {}).get("preset")
    loss = cfg.get("train", {}).get("loss")
    if (preset == FLOW_MATCHING) != (loss == FLOW_MATCHING) and loss not in ("auto", FLOW_MATCHING):
        raise ValueError(f"[process] preset = {preset!r} and [train] loss = {loss!r} do not go together: flow "
                         "matching has its own path and loss (set loss = 'flow_matching' or 'auto')")
    return preset == FLOW_MATCHING or loss == FLOW_MATCHING


class FlowMatchingTrainer(Trainer):
    """A :class:`genmodel.train.Trainer` (same optimiser, warm-up, clipping, EMA, atomic checkpoints and
    exact resume) with the OT path, the CFM loss and a velocity model instead of a score model."""

    def _build_process(self, image_size: int):
        return OTPath(self.cfg["process"].get("sigma_min", 1e-4))

    def _build_model(self):
        return VelocityModel(self.net)

    def _make_loss(self):
        if self.cfg["train"].get("time_weight_power", 0.0) != 0:
            raise ValueError("[train] time_weight_power is a time measure of the SPDE losses; flow matching draws its "
                             "path time uniformly (leave it at 0)")
        return FlowMatchingLoss(self.process, self.local_data)

    def export(self, path=None, prior_seed: int = 0):
        from pathlib import Path

        from .checkpoint import save_checkpoint

        t0 = time.perf_counter()
        state = self.exported_weights()
        sampling = {"steps": int(self.cfg["sampling"].get("steps", 100)),
                    "method": self.cfg["sampling"].get("method", "heun")}
        payload = {"kind": "model", "method": FLOW_MATCHING, "arch": self.net.cfg.to_dict(),
                   "arch_hash": self.net.arch_hash, "process": self.process.to_dict(), "config": self.cfg,
                   "ema": state, "sampling": sampling, "step": self.step, "seconds": self.seconds}
        self.prior_seconds = time.perf_counter() - t0  # no prior to fit: N(0, I)
        return save_checkpoint(Path(path) if path else self.out / "model.pt", payload)


def load_flow_model(ck: dict):
    """(velocity model with EMA weights, OTPath, None, checkpoint) from a loaded flow-matching checkpoint."""
    from .checkpoint import load_state_strict
    from .networks import unet_from_checkpoint

    model = VelocityModel(unet_from_checkpoint(ck))
    load_state_strict(model, ck["ema"], "EMA")
    model.eval()
    return model, OTPath.from_dict(ck["process"]), None, ck


__all__ = ["OTPath", "VelocityModel", "FlowMatchingLoss", "GaussianOTVelocity", "FlowMatchingTrainer", "integrate",
           "sample", "is_flow_matching", "load_flow_model", "METHODS", "FLOW_MATCHING"]
