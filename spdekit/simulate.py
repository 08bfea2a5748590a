"""The time loop: ``simulate(spde, u0, t0, t1, dt, ...) -> Trajectory``."""

from __future__ import annotations

import contextlib
import math

import numpy as np
from tqdm.auto import tqdm

from ._arrays import as_native, to_host
from ._checks import check_int, check_real
from .backends import get_backend
from .random import SampleStreams
from .solvers import Solver, TamedEulerMaruyama
from .spde import AnisotropicSPDE, as_batch
from .store import TrajectoryWriter
from .threads import ThreadPolicy, check_threads
from .trajectory import Trajectory


class SimulationDiverged(FloatingPointError):
    """The state became non-finite. ``.trajectory`` holds the states saved before that step."""

    def __init__(self, message, step, time, trajectory):
        super().__init__(message)
        self.step = step
        self.time = time
        self.trajectory = trajectory


def n_steps_for(t0: float, t1: float, dt: float) -> int:
    """Number of steps of size dt from t0 to t1; dt must divide t1 - t0 (to 1e-9 relative)."""
    t0 = check_real("t0", t0)
    t1 = check_real("t1", t1)
    dt = check_real("dt", dt)
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if not t1 > t0:
        raise ValueError(f"t1 must be > t0, got t0={t0}, t1={t1}")
    n = round((t1 - t0) / dt)
    if n < 1 or abs(n * dt - (t1 - t0)) > 1e-9 * (t1 - t0):
        m = max(1, math.ceil((t1 - t0) / dt))
        raise ValueError(
            f"dt must divide t1 - t0 = {t1 - t0:g} into whole steps; got dt={dt:g} "
            f"(e.g. dt={(t1 - t0) / m:.12g} gives {m} steps)"
        )
    return n


class _Increments:
    """Wiener increments dW over [t, t + dt], from a seeded generator, an explicit array of
    shape (n_steps, *state_shape), or an object with ``increment(t_start, t_end)``."""

    def __init__(self, noise, shape, dtype, seed, brownian, n_steps, on_device=False):
        self.noise, self.shape, self.dtype = noise, tuple(shape), np.dtype(dtype)
        self.brownian = brownian
        if brownian is None and on_device:
            # the same counter-based streams, drawn on the GPU
            self.rng = SampleStreams(seed, self.shape[0], device="cupy")
        elif brownian is None:
            # one stream per sample (spdekit.random): a sample's path depends on (seed, index) only
            if isinstance(seed, (np.random.Generator, SampleStreams)):
                self.rng = seed
            else:
                self.rng = SampleStreams(seed, self.shape[0])
        elif hasattr(brownian, "increment"):
            pass
        else:
            arr = brownian
            expected = (n_steps,) + self.shape
            if tuple(arr.shape) != expected:
                raise ValueError(
                    f"brownian increments must have shape (n_steps, *u0.shape) = {expected}, "
                    f"got {tuple(arr.shape)}"
                )

        # white noise from host streams: drawn into one reused buffer, scaled in the same pass (a step
        # consumes its increment before the next is drawn)
        self._buf = None
        if (brownian is None and not on_device and getattr(self.noise, "is_white", False)
                and isinstance(self.rng, SampleStreams)):
            self._buf = np.empty(self.shape, self.dtype)

    def __call__(self, k, t, dt):
        if self._buf is not None:
            return self.rng.standard_normal(self.shape, self.dtype, out=self._buf, scale=math.sqrt(dt))
        if self.brownian is None:
            return self.dtype.type(math.sqrt(dt)) * self.noise.sample(self.shape, self.rng, self.dtype)
        if hasattr(self.brownian, "increment"):
            return self.brownian.increment(t, t + dt).astype(self.dtype, copy=False)
        return self.brownian[k].astype(self.dtype, copy=False)


def simulate(
    spde,
    u0,
    t0: float,
    t1: float,
    dt: float,
    solver: Solver | None = None,
    save_every: int | None = None,
    seed=None,
    brownian=None,
    backend: str = "auto",
    progress: bool = False,
    attrs: dict | None = None,
    out=None,
    threads="auto",
) -> Trajectory:
    """Integrate the discretised SPDE from ``t0`` to ``t1`` with fixed step ``dt``.

    Parameters
    ----------
    spde : :class:`spdekit.AnisotropicSPDE` (or any problem with drift/noise_term/noise).
    u0 : initial state, (H, W) or (B, C, H, W), float32 or float64 (the dtype is kept).
    solver : :class:`TamedEulerMaruyama` (default) or :class:`EulerMaruyama`.
    save_every : save the state every this many steps (the initial and final states are always
        saved); None saves only those two.
    seed : seed for the Wiener increments: sample b draws from its own stream
        (:mod:`spdekit.random`), so a seed gives the same path on every backend, for every batch size
        and thread count. A numpy Generator is also accepted (one stream for the whole batch).
    brownian : explicit increments instead of a seed: an array (n_steps, *u0.shape) or an object with
        ``increment(t_start, t_end)`` (e.g. a Brownian path that coarsens exactly).
    backend : "auto", "numpy", "numba" or "cupy".
    progress : show a tqdm progress bar.
    attrs : free metadata stored with the trajectory (e.g. the initial image's name).
    out : path of a netCDF file that receives every saved state as soon as it is computed
        (:mod:`spdekit.store`): a run that is killed keeps a valid file of what it had saved.
    threads : threads of the numba backend's kernels: "auto" (default: chosen by measuring steps with
        one and with all threads while the run goes on, :mod:`spdekit.threads`) or a fixed count. The
        results do not depend on it.

    Raises :class:`SimulationDiverged` (with the saved part in ``.trajectory``) if the state
    becomes non-finite.
    """
    solver = TamedEulerMaruyama() if solver is None else solver
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be an spdekit Solver, got {type(solver).__name__}")
    n_steps = n_steps_for(t0, t1, dt)
    t0, t1, dt = float(t0), float(t1), float(dt)
    if save_every is None:
        save_every = n_steps
    save_every = check_int("save_every", save_every, minimum=1)
    threads = check_threads(threads)
    be = get_backend(backend, as_native(u0)[0])

    if isinstance(spde, AnisotropicSPDE):
        spde.check_state(u0)
        spde.check_dt(dt, t0, t1)
        u = as_batch(u0)[0].copy()  # always (B, C, H, W) inside the loop; numpy or cupy
    else:
        u = as_native(u0)[0].copy()
    incr = _Increments(spde.noise, u.shape, u.dtype, seed, brownian, n_steps, on_device=be.name == "cupy")

    times, states = [t0], [to_host(u).copy()]  # saved states live on the host
    writer = None
    if out is not None:
        meta = Trajectory(times=np.asarray(times), states=states[0][None], spde=spde, solver=solver, dt=dt,
                          seed=_seed_repr(seed, brownian), backend=be.name, t0=t0, t1=t1,
                          attrs=dict(attrs or {})).metadata()
        writer = TrajectoryWriter(out, meta, spde, u.shape, u.dtype)
        writer.append(t0, states[0])
    buffers = {}
    if be.name == "numba":
        buffers = {"out": np.empty_like(u), "work": np.empty_like(u)}
    fast = {}
    if isinstance(spde, AnisotropicSPDE):  # validated once above: skip per-step checks and schedules
        step_times = t0 + dt * np.arange(n_steps)
        table = spde.coefficient_table(step_times, u.shape[0]) if n_steps <= 100_000 else None
        fast = {"checked": True}

    def partial(k, t, reason):
        return Trajectory(
            times=np.asarray(times), states=np.stack(states), spde=spde, solver=solver, dt=dt,
            seed=_seed_repr(seed, brownian), backend=be.name, t0=t0, t1=t1, completed=False,
            stopped_at={"step": k, "time": t, "reason": reason}, attrs=dict(attrs or {}),
        )

    policy = ThreadPolicy(threads, work=u.size) if be.name == "numba" else contextlib.nullcontext()
    reached = {"step": 0, "time": t0, "reason": "interrupted"}  # the last completed step, for an interruption
    with _closing(writer, reached) as finish, policy, tqdm(total=n_steps, disable=not progress, unit="step",
                                                  desc="simulate", leave=False) as bar:
        for k in range(n_steps):
            if be.name == "numba":
                policy.tick()
            t = t0 + k * dt
            dW = incr(k, t, dt)
            if fast:
                fast["coef"] = table[k] if table is not None else None
            new, finite = solver.step(spde, t, u, dt, dW, backend=be, **fast, **buffers)
            if not finite:
                traj = partial(k + 1, t + dt, "non-finite state")
                finish(False, traj.stopped_at)
                raise SimulationDiverged(
                    f"simulation diverged at step {k + 1} of {n_steps} (t = {t + dt:.6g}): the state is "
                    f"no longer finite. {len(times)} saved states up to t = {times[-1]:.6g} are kept in "
                    f"exc.trajectory. Reduce dt (stability bound h^2/(4 max alpha1)) or use the tamed solver.",
                    step=k + 1, time=t + dt, trajectory=traj,
                )
            if buffers:
                buffers["out"], u = u, new  # ping-pong between two buffers
            else:
                u = new
            reached["step"], reached["time"] = k + 1, t0 + (k + 1) * dt
            if (k + 1) % save_every == 0 or k + 1 == n_steps:
                times.append(t0 + (k + 1) * dt)
                states.append(to_host(u).copy())
                if writer is not None:
                    writer.append(times[-1], states[-1])
            bar.update(1)
        finish(True, None)

    return Trajectory(
        times=np.asarray(times), states=np.stack(states), spde=spde, solver=solver, dt=dt,
        seed=_seed_repr(seed, brownian), backend=be.name, t0=t0, t1=t1, attrs=dict(attrs or {}),
    )


@contextlib.contextmanager
def _closing(writer, reached: dict):
    """Yields finish(completed, stopped_at); an exception (KeyboardInterrupt included) closes the
    file as an interrupted run at the step it had reached (``reached``), keeping what it holds."""
    def finish(completed, stopped_at):
        if writer is not None:
            writer.close(completed, stopped_at)

    try:
        yield finish
    finally:
        finish(False, dict(reached))  # no-op once closed


def _seed_repr(seed, brownian):
    if brownian is not None:
        return None
    if isinstance(seed, SampleStreams):
        return int(seed.seed) if seed.first == 0 else None
    return int(seed) if isinstance(seed, (int, np.integer)) else None
