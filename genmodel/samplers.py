"""Predictors, correctors and the one reverse-time loop (paper, Algorithm 3.1; the shape of score_sde).

The reverse chain is spdekit's :class:`spdekit.reverse.ReverseSDE` (eq. 20-22: drift tr D_u Sigma +
Sigma s - b, noise sigma dW; every piece computed by spdekit on the tensors' memory through DLPack).
The state is a torch tensor throughout, on the device the caller put it on: the predictors hand it
to spdekit as it is, spdekit hands it to the score function as a tensor (:func:`reverse_sde`), and
the noise is drawn there by spdekit's Philox streams keyed by the run's numpy Generator
(:class:`spdekit.random.NormalsLike`; the corrector's by the run's torch Generator, on that device).
A run alternates, on a decreasing grid of forward times t_0 > t_1 > ... > t_N = 0,

    corrector (``corrector_steps`` times at t_i)  ->  predictor (t_i -> t_{i+1}),

in :func:`reverse_loop`, the only sampling loop of genmodel (:func:`genmodel.sample`, SDEdit in
:mod:`genmodel.stroke` and the command line go through :func:`reverse_run`).

Predictors (``predictor=``; network evaluations per step in brackets):

* ``"em"`` [1]: Euler-Maruyama on the reverse SDE, score at t_i, coefficients at t_{i+1} (the pairing of
  the exact reverse of one chain step, :meth:`ReverseSDE.em_step`), on the uniform grid t_i = t_0 - i Delta;
  the last step returns the mean. Explicit: stable only for Delta <= h^2 / (4 max alpha1) (a warning
  says so), and at that edge the high modes' variance is already off (issue 22).
* ``"exponential"`` [1]: the reference's part of the reverse dynamics (the Gaussian reference of the
  linearised chain, diagonal in DCT-II: :mod:`spdekit.reference`) integrated exactly by its reverse
  kernel, the remainder explicitly (:meth:`ReverseSDE.exponential_step`, derivation there). Exact in law
  for any step count on a linear chain with Gaussian data and the exact score.
* ``"ode"`` [2, the last step 1]: Heun's method on the probability-flow ODE du/dt = b - (tr D_u Sigma +
  Sigma s) / 2 of the discretised chain (with the correction that makes it carry the chain's marginals,
  not only the SDE's: :mod:`spdekit.reference`); deterministic; the last step, to t = 0 where the
  score is not defined, is Euler, as in Karras et al. 2022.
* ``"exponential_ode"`` [1]: the reference's flow map exact, the remainder explicit
  (:meth:`ReverseSDE.exponential_flow_step`); deterministic, exact for the Gaussian reference.

The last three run on chain steps k_i = round(k_0 (1 - i / N)) (the reference's tables and exact
scores live at chain times t_k = k dt); with N = K / 7.6 the steps are 7 or 8 chain steps long.

Correctors (``corrector=``): ``"langevin"``: unadjusted Langevin (ULA) at t_i, u <- u + eps s +
sqrt(2 eps) z, z ~ N(0, I), with the score_sde step-size rule eps = 2 (snr |z| / |s|)^2, the norms
averaged over the batch (Song et al. 2021, LangevinCorrector); ``"none"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import spdekit
from spdekit.random import NormalsLike
from spdekit.reference import GaussianReference

from .bridge import host_array

PREDICTORS = ("em", "exponential", "ode", "exponential_ode")
CORRECTORS = ("langevin", "none")


# ---------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class ReverseGrid:
    """Forward times of a reverse run: step i goes from ``t[i]`` to ``t[i] - delta[i]`` (= ``t[i + 1]``);
    ``k``: the chain steps of the times (chain grids) or None (the uniform grid)."""

    t: np.ndarray
    delta: np.ndarray
    k: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return len(self.delta)


def uniform_grid(t_start: float, steps: int) -> ReverseGrid:
    """t_i = t_start - i Delta, Delta = t_start / steps (the EM predictor's grid)."""
    delta = t_start / steps
    t = np.append(t_start - np.arange(steps) * delta, 0.0)
    return ReverseGrid(t, np.full(steps, delta))


def chain_grid(k_start: int, steps: int, dt: float) -> ReverseGrid:
    """Chain steps k_i = round(k_start (1 - i / steps)), i = 0..steps (at most k_start steps)."""
    if steps > k_start:
        raise ValueError(f"steps must be <= {k_start} (the chain steps to reverse) for a chain-grid predictor, "
                         f"got {steps}")
    k = np.rint(k_start * (1.0 - np.arange(steps + 1) / steps)).astype(np.int64)
    return ReverseGrid(k * dt, (k[:-1] - k[1:]) * dt, k)


# ---------------------------------------------------------------------------------------------- predictors
class Predictor:
    """A reverse step of the chain. ``step`` returns (u_next, all_finite)."""

    name = "predictor"
    deterministic = False
    on_chain_grid = True
    needs_reference = False

    def nfe(self, steps: int) -> int:
        """Network evaluations for ``steps`` predictor steps (correctors not included)."""
        return steps

    def grid(self, process, t_start: float, steps: int) -> ReverseGrid:
        k0 = int(round(t_start / process.dt))
        return chain_grid(k0, steps, process.dt)

    def prepare(self, process, grid: ReverseGrid) -> None:
        """Checks before a run (warnings about the step size)."""

    def step(self, rsde, grid: ReverseGrid, i: int, u: torch.Tensor, rng: np.random.Generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerMaruyamaPredictor(Predictor):
    """``"em"``: Euler-Maruyama (or tamed EM: ``solver=spdekit.TamedEulerMaruyama()``) on the reverse SDE,
    stepped by spdekit's solver machinery (``solver.step(rsde, t, u, Delta, dW)``)."""

    name = "em"
    on_chain_grid = False

    def __init__(self, solver=None):
        self.solver = spdekit.EulerMaruyama() if solver is None else solver

    def grid(self, process, t_start, steps):
        return uniform_grid(t_start, steps)

    def prepare(self, process, grid):
        # the reverse drift contains -b (anti-diffusion) balanced by Sigma s: an explicit step is stable
        # only under the same bound as the forward chain, Delta <= h^2 / (4 max alpha1): warn otherwise
        process.spde.check_dt(float(grid.delta.max()), 0.0, float(grid.t[0]))

    def step(self, rsde, grid, i, u, rng):
        t, delta = float(grid.t[i]), float(grid.delta[i])
        dW = None
        if i < grid.steps - 1:  # the last step returns the mean
            normals = NormalsLike(rng, u)
            dW = math.sqrt(delta) * rsde.spde.noise.sample(u.shape, normals, normals.dtype)
        out, ok = self.solver.step(rsde, t, u, delta, dW)
        return out.to(u.dtype), ok


class ExponentialPredictor(Predictor):
    """``"exponential"``: the reference's reverse kernel exact, the remainder explicit (module doc).
    Every step draws its noise, the last one too (the posterior of u_0 given u_{k_1} is not a point)."""

    name = "exponential"
    needs_reference = True

    def step(self, rsde, grid, i, u, rng):
        xi = NormalsLike(rng, u).standard_normal(u.shape, np.float64)
        return rsde.exponential_step(int(grid.k[i]), int(grid.k[i + 1]), u, xi)


class HeunODEPredictor(Predictor):
    """``"ode"``: Heun's method on the probability-flow ODE of the chain (with the reference's correction,
    :meth:`spdekit.reverse.ReverseSDE.probability_flow`); the last step (to t = 0) is Euler."""

    name = "ode"
    deterministic = True
    needs_reference = True

    def nfe(self, steps):
        return 2 * steps - 1

    def step(self, rsde, grid, i, u, rng):
        t, t1 = float(grid.t[i]), float(grid.t[i + 1])
        h = t - t1
        f0 = rsde.probability_flow(t, u)
        euler = u - h * f0
        if grid.k[i + 1] == 0:
            out = euler
        else:
            f1 = rsde.probability_flow(t1, euler.to(u.dtype).contiguous())
            out = u - (0.5 * h) * (f0 + f1)
        return out.to(u.dtype), bool(torch.isfinite(out).all())


class ExponentialODEPredictor(Predictor):
    """``"exponential_ode"``: the reference's flow map exact, the remainder explicit (module doc)."""

    name = "exponential_ode"
    deterministic = True
    needs_reference = True

    def step(self, rsde, grid, i, u, rng):
        return rsde.exponential_flow_step(int(grid.k[i]), int(grid.k[i + 1]), u)


PREDICTOR_CLASSES = {c.name: c for c in (EulerMaruyamaPredictor, ExponentialPredictor, HeunODEPredictor,
                                         ExponentialODEPredictor)}


def get_predictor(predictor) -> Predictor:
    """A :class:`Predictor` from a name in :data:`PREDICTORS` (or an instance, returned as is)."""
    if isinstance(predictor, Predictor):
        return predictor
    if predictor not in PREDICTOR_CLASSES:
        raise ValueError(f"predictor must be one of {PREDICTORS}; got {predictor!r}")
    return PREDICTOR_CLASSES[predictor]()


# ---------------------------------------------------------------------------------------------- correctors
def _check_score(s: torch.Tensor, u: torch.Tensor, t) -> torch.Tensor:
    if not isinstance(s, torch.Tensor) or s.shape != u.shape:
        raise ValueError(f"score_fn must return a tensor of shape {tuple(u.shape)}, got "
                         f"{getattr(s, 'shape', type(s).__name__)}")
    return s.to(u.dtype).contiguous()


class LangevinCorrector:
    """``"langevin"``: ``steps`` ULA steps at t with the score_sde step-size rule (module doc)."""

    name = "langevin"

    def __init__(self, snr: float = 0.16, steps: int = 1):
        if steps < 0 or not snr > 0:
            raise ValueError(f"corrector_steps must be >= 0 and snr > 0; got {steps}, {snr}")
        self.snr = float(snr)
        self.steps = int(steps)

    def step(self, score_fn, t: float, u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One ULA step; ``gen``: a torch Generator on u's device (its noise)."""
        tt = torch.full((u.shape[0],), t, dtype=u.dtype, device=u.device)
        s = _check_score(score_fn(tt, u), u, t)
        z = torch.randn(u.shape, generator=gen, dtype=u.dtype, device=u.device)
        s_norm = s.reshape(u.shape[0], -1).norm(dim=-1).mean()
        z_norm = z.reshape(u.shape[0], -1).norm(dim=-1).mean()
        eps = 2.0 * (self.snr * z_norm / s_norm) ** 2
        return u + eps * s + torch.sqrt(2.0 * eps) * z


class NoCorrector:
    """``"none"``."""

    name = "none"
    steps = 0


def get_corrector(corrector, snr: float = 0.16, steps: int = 1):
    if isinstance(corrector, (LangevinCorrector, NoCorrector)):
        return corrector
    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}; got {corrector!r}")
    if corrector == "none" or steps == 0:
        if not snr > 0 or steps < 0:
            raise ValueError(f"corrector_steps must be >= 0 and snr > 0; got {steps}, {snr}")
        return NoCorrector()
    return LangevinCorrector(snr, steps)


# ---------------------------------------------------------------------------------------------- reference
def _attribute(obj, name):
    """``obj.name``, looking through wrappers (score_function's closure, OnDevice, DDP)."""
    for o in (obj, getattr(obj, "model", None), getattr(obj, "module", None)):
        if o is not None and hasattr(o, name):
            return getattr(o, name)
    return None


def gaussian_reference(process, score_fn, reference=None, data=None) -> GaussianReference:
    """The chain's Gaussian reference for the exponential predictors: ``reference`` if given, else the
    score function's own (``score_fn.gaussian_reference(process)``: networks with the 'reference' or
    'moments' parameterization, exact scores), else one fitted to ``data``."""
    if reference is not None:
        if not isinstance(reference, GaussianReference):
            raise TypeError(f"reference must be a spdekit.GaussianReference, got {type(reference).__name__}")
        return reference
    getter = _attribute(score_fn, "gaussian_reference")
    ref = getter(process) if getter is not None else None
    if ref is None and data is not None:
        ref = process.gaussian_reference(None, data=host_array(torch.as_tensor(data, dtype=torch.float64)))
    if ref is None:
        raise ValueError("the exponential predictors need the chain's Gaussian reference: a ScoreModel with "
                         "score_param 'reference' or 'moments', an exact score (genmodel.exact), reference= "
                         "(spdekit.GaussianReference) or data= to fit one")
    return ref


# ---------------------------------------------------------------------------------------------- the loop
def reverse_loop(rsde, score_fn, u: torch.Tensor, grid: ReverseGrid, predictor: Predictor, corrector,
                 rng: np.random.Generator, gen: torch.Generator, bar=None) -> torch.Tensor:
    """The predictor-corrector loop over ``grid`` (module doc). A non-finite state stops the run with
    the step and time at which it appeared."""
    n = grid.steps
    for i in range(n):
        t = float(grid.t[i])
        for _ in range(corrector.steps):
            u = corrector.step(score_fn, t, u, gen)
        u, ok = predictor.step(rsde, grid, i, u, rng)
        if not ok:
            raise FloatingPointError(
                f"the reverse chain became non-finite at step {i + 1} of {n} (t = {float(grid.t[i + 1]):.6g}, "
                f"predictor {predictor.name!r}): the score is non-finite or too large for the step (try more "
                "steps, a smaller snr or fewer corrector steps)")
        if bar is not None:
            bar.update(1)
    return u


def reverse_sde(process, score_fn, reference=None):
    """``process``'s reverse SDE (:class:`spdekit.ReverseSDE`) with the score ``score_fn(t, u)`` on the
    chain's tensors: spdekit calls it with the state as a tensor (on the state's device) and t as a
    (B,) tensor, here cast to u's dtype; the result is checked and detached (spdekit does not trace)."""

    def score(t, u):
        return _check_score(score_fn(t.to(u.dtype), u), u, t).detach()

    score.score_fn = score_fn
    return process.spde.reverse(score, reference)


def reverse_run(process, score_fn, u: torch.Tensor, t_start: float, steps: int, predictor="em",
                corrector="langevin", corrector_steps: int = 1, snr: float = 0.16, rng=None, gen=None,
                reference=None, data=None, bar=None) -> torch.Tensor:
    """Reverse the chain of ``process`` from ``u`` at forward time ``t_start`` to 0 in ``steps``
    predictor steps: builds the reverse SDE, the predictor's grid and the corrector, then
    :func:`reverse_loop`. Used by :func:`genmodel.sample` and :func:`genmodel.stroke.sdedit_spde`."""
    pred = get_predictor(predictor)
    corr = get_corrector(corrector, snr, corrector_steps)
    grid = pred.grid(process, t_start, steps)
    pred.prepare(process, grid)
    ref = gaussian_reference(process, score_fn, reference, data) if pred.needs_reference else None
    rsde = reverse_sde(process, score_fn, ref)
    return reverse_loop(rsde, score_fn, u.contiguous(), grid, pred, corr, rng, gen, bar)


__all__ = ["PREDICTORS", "CORRECTORS", "ReverseGrid", "uniform_grid", "chain_grid", "Predictor",
           "EulerMaruyamaPredictor", "ExponentialPredictor", "HeunODEPredictor", "ExponentialODEPredictor",
           "LangevinCorrector", "NoCorrector", "get_predictor", "get_corrector", "gaussian_reference",
           "reverse_sde", "reverse_loop", "reverse_run"]
