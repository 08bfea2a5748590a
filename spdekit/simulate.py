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
from .steps import StepSchedule
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


def time_grid(spde, t0, t1, dt, save_times=None):
    """(grid, t0, t1, dt, schedule): the step boundaries of a run. A fixed ``dt`` gives t0 + k dt
    (dt must divide t1 - t0; save_times must lie on that grid) and schedule None; a
    :class:`spdekit.steps.StepSchedule` gives its grid through every save time, dt = 0.0 and itself."""
    if isinstance(dt, StepSchedule):
        t0, t1 = check_real("t0", t0), check_real("t1", t1)
        if not t1 > t0:
            raise ValueError(f"t1 must be > t0, got t0={t0}, t1={t1}")
        if not (hasattr(spde, "alpha1") and hasattr(spde, "spacing")):
            raise TypeError(f"dt={dt!r} follows alpha1 of an AnisotropicSPDE; {type(spde).__name__} has none: "
                            f"give a fixed dt")
        stops = _check_save_times(save_times, t0, t1)
        return dt.grid(spde, t0, t1, stops), t0, t1, 0.0, dt
    if isinstance(dt, str):
        raise TypeError(f"dt must be a number or a spdekit.steps.StepSchedule (e.g. "
                        f"spdekit.StabilityBoundSteps(cfl=0.9)); got {dt!r}")
    n = n_steps_for(t0, t1, dt)
    t0, t1, dt = float(t0), float(t1), float(dt)
    grid = t0 + dt * np.arange(n + 1)
    for s in _check_save_times(save_times, t0, t1):
        k = (s - t0) / dt
        if abs(k - round(k)) > 1e-6:
            raise ValueError(f"save_times must lie on the step grid t0 + k dt (dt = {dt:g}); {s:g} does not")
    return grid, t0, t1, dt, None


def _check_save_times(save_times, t0, t1):
    if save_times is None:
        return []
    vals = [check_real("save_times entries", v) for v in np.atleast_1d(np.asarray(save_times, dtype=object))]
    bad = [v for v in vals if not t0 < v <= t1 + 1e-12 * max(1.0, abs(t1))]
    if bad:
        raise ValueError(f"save_times must lie in (t0, t1] = ({t0:g}, {t1:g}]; got {bad[0]:g}")
    return sorted(set(vals))


def _save_flags(grid, save_every, save_times):
    """Which grid points (index 0..n) are saved: the last always; every save_every-th step, or the
    points nearest to save_times (they are on the grid: time_grid checked it)."""
    n = len(grid) - 1
    flags = np.zeros(n + 1, dtype=bool)
    flags[n] = True
    if save_every is not None:
        every = check_int("save_every", save_every, minimum=1)
        flags[np.arange(every, n + 1, every)] = True
    elif save_times is not None:
        for s in np.atleast_1d(np.asarray(save_times, dtype=np.float64)):
            flags[int(np.argmin(np.abs(grid - s)))] = True
    flags[0] = False
    return flags


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
    dt,
    solver: Solver | None = None,
    save_every: int | None = None,
    seed=None,
    brownian=None,
    backend: str = "auto",
    progress: bool = False,
    attrs: dict | None = None,
    out=None,
    threads="auto",
    save_times=None,
) -> Trajectory:
    """Integrate the discretised SPDE from ``t0`` to ``t1`` with a fixed step ``dt`` or a variable
    time grid.

    Parameters
    ----------
    spde : :class:`spdekit.AnisotropicSPDE` (or any problem with drift/noise_term/noise).
    u0 : initial state, (H, W) or (B, C, H, W), float32 or float64 (the dtype is kept).
    dt : the fixed step (it must divide t1 - t0), or a :class:`spdekit.steps.StepSchedule` such as
        ``spdekit.StabilityBoundSteps(cfl=0.9)``: steps that follow the explicit stability bound
        h^2 / (4 alpha1(t)) of an AnisotropicSPDE (:mod:`spdekit.steps`). A variable-step trajectory
        records ``dt = 0`` and its schedule and step count in ``attrs["steps"]``.
    solver : :class:`TamedEulerMaruyama` (default), :class:`EulerMaruyama`, or a stiff-stable solver
        (:class:`spdekit.LinearlyImplicitTheta`, :class:`spdekit.AOSEulerMaruyama`: no stability
        warning for a dt above the explicit bound).
    save_every : save the state every this many steps (the initial and final states are always
        saved); None saves only those two.
    save_times : times in (t0, t1] at which to save the state (t0 and t1 are always saved), instead
        of ``save_every``. With a fixed dt they must lie on the grid t0 + k dt; a step schedule
        lands on each of them.
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
    if save_every is not None and save_times is not None:
        raise ValueError("give save_every or save_times, not both")
    grid, t0, t1, dt, schedule = time_grid(spde, t0, t1, dt, save_times)
    n_steps = len(grid) - 1
    save_at = _save_flags(grid, save_every, save_times)
    threads = check_threads(threads)
    be = get_backend(backend, as_native(u0)[0])
    if schedule is not None:  # a variable grid (dt = 0): the trajectory records its schedule
        attrs = {**dict(attrs or {}), "steps": {**schedule.to_dict(), "n_steps": n_steps}}

    if isinstance(spde, AnisotropicSPDE):
        spde.check_state(u0)
        if dt > 0 and not getattr(solver, "stiff_stable", False):
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
    run = _fused_run(spde, solver, be, u, grid, incr)
    fast = {}
    if isinstance(spde, AnisotropicSPDE) and run is None:  # validated once above: skip per-step checks, schedules
        table = spde.coefficient_table(grid[:-1], u.shape[0]) if n_steps <= 100_000 else None
        fast = {"checked": True}

    def partial(k, t, reason):
        return Trajectory(
            times=np.asarray(times), states=np.stack(states), spde=spde, solver=solver, dt=dt,
            seed=_seed_repr(seed, brownian), backend=be.name, t0=t0, t1=t1, completed=False,
            stopped_at={"step": k, "time": t, "reason": reason}, attrs=dict(attrs or {}),
        )

    def diverged(k):  # step k (1-based) gave a non-finite state
        traj = partial(k, float(grid[k]), "non-finite state")
        finish(False, traj.stopped_at)
        return SimulationDiverged(
            f"simulation diverged at step {k} of {n_steps} (t = {float(grid[k]):.6g}): the state is "
            f"no longer finite. {len(times)} saved states up to t = {times[-1]:.6g} are kept in "
            f"exc.trajectory. Reduce dt (stability bound h^2/(4 max alpha1)), use the tamed solver or a "
            f"stiff-stable one (spdekit.LinearlyImplicitTheta).",
            step=k, time=float(grid[k]), trajectory=traj,
        )

    def save(k):
        times.append(float(grid[k]))
        states.append(to_host(u).copy())
        if writer is not None:
            writer.append(times[-1], states[-1])

    policy = ThreadPolicy(threads, work=u.size) if be.name == "numba" else contextlib.nullcontext()
    reached = {"step": 0, "time": t0, "reason": "interrupted"}  # the last completed step, for an interruption
    with _closing(writer, reached) as finish, policy, tqdm(total=n_steps, disable=not progress, unit="step",
                                                  desc="simulate", leave=False) as bar:
        if run is not None:  # fused on the device: chunks up to the next save point, CHECK_EVERY steps at most
            saves = np.flatnonzero(save_at)
            k = 0
            while k < n_steps:
                stop = min(int(saves[np.searchsorted(saves, k + 1)]), k + CHECK_EVERY)
                u, bad = run.advance(u, k, stop)
                if bad is not None:
                    raise diverged(bad + 1)
                bar.update(stop - k)
                k = stop
                reached["step"], reached["time"] = k, float(grid[k])
                if save_at[k]:
                    save(k)
        for k in range(n_steps if run is None else 0):
            if be.name == "numba":
                policy.tick()
            t, t_next = float(grid[k]), float(grid[k + 1])
            h = dt if dt > 0 else t_next - t
            dW = incr(k, t, h)
            if fast:
                fast["coef"] = table[k] if table is not None else None
            new, finite = solver.step(spde, t, u, h, dW, backend=be, **fast, **buffers)
            if not finite:
                raise diverged(k + 1)
            if buffers:
                buffers["out"], u = u, new  # ping-pong between two buffers
            else:
                u = new
            reached["step"], reached["time"] = k + 1, t_next
            if save_at[k + 1]:
                save(k + 1)
            bar.update(1)
        finish(True, None)

    return Trajectory(
        times=np.asarray(times), states=np.stack(states), spde=spde, solver=solver, dt=dt,
        seed=_seed_repr(seed, brownian), backend=be.name, t0=t0, t1=t1, attrs=dict(attrs or {}),
    )


#: steps of a fused device run between two reads of its finiteness flag (and progress updates)
CHECK_EVERY = 256


def _fused_run(spde, solver, be, u, grid, incr):
    """A fused device run (backend capability ``em_run``, :class:`spdekit.backends.cupy_backend.EMRun`) when
    the run is (tamed) Euler-Maruyama on an AnisotropicSPDE with white noise from seeded streams; else None
    (the step loop). Both give the same increments and the same steps."""
    if ("em_run" not in getattr(be, "CAPABILITIES", ()) or not isinstance(spde, AnisotropicSPDE)
            or type(solver).step is not Solver.step or incr.brownian is not None or not spde.noise.is_white
            or not isinstance(getattr(incr, "rng", None), SampleStreams)):
        return None
    return be.em_run(u.shape, u.dtype, spde._columns(grid[:-1]), np.diff(grid), incr.rng, spde.stencil,
                     spde.spacing, solver.taming, spde.diffusivity1, spde.diffusivity2)


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
