"""Trajectories and their xarray / netCDF form.

A :class:`Trajectory` holds the saved states ``(time, sample, channel, y, x)`` and everything
needed to rebuild the run: the SPDE, the solver, dt, the seed, the backend and the package
version. ``to_xarray()`` turns it into a CF-style Dataset; ``to_netcdf(path)`` writes it
atomically (to a temporary file, then renamed), and :func:`open_trajectory` reads it back and
rebuilds the SPDE (``open_trajectory(path).spde``). The round trip is lossless: values are stored
in their own dtype with lossless zlib compression.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ._arrays import to_host
from ._version import __version__
from .solvers import Solver, solver_from_dict
from .store import META_ATTR, SCHEDULES, completion_attributes, run_attributes


@dataclass
class Trajectory:
    times: np.ndarray  #: (n_saved,)
    states: np.ndarray  #: (n_saved, B, C, H, W)
    spde: object
    solver: Solver
    dt: float
    seed: int | None = None
    backend: str = "numpy"
    t0: float = 0.0
    t1: float = 0.0
    completed: bool = True  #: False when the run stopped early (divergence, interruption)
    stopped_at: dict | None = None  #: {"step": k, "time": t, "reason": ...} for a partial run
    attrs: dict = field(default_factory=dict)  #: free metadata (initial image, config, ...)

    @property
    def final(self):
        return self.states[-1]

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        state = "complete" if self.completed else f"partial, stopped at {self.stopped_at}"
        return (
            f"Trajectory({len(self.times)} saved states of shape {tuple(self.states.shape[1:])}, "
            f"t in [{self.t0:g}, {self.t1:g}], dt={self.dt:g}, {state})"
        )

    # ------------------------------------------------------------------ xarray
    def metadata(self) -> dict:
        spde = self.spde.to_dict() if hasattr(self.spde, "to_dict") else {"type": type(self.spde).__name__}
        return {
            "spde": spde,
            "solver": self.solver.to_dict(),
            "dt": float(self.dt),
            "seed": self.seed,
            "backend": self.backend,
            "t0": float(self.t0),
            "t1": float(self.t1),
            "completed": bool(self.completed),
            "stopped_at": self.stopped_at,
            "spdekit_version": __version__,
            "attrs": self.attrs,
        }

    def to_xarray(self):
        import xarray as xr

        states = to_host(self.states)
        if states.ndim != 5:
            raise ValueError(f"states must be (time, sample, channel, y, x); got shape {states.shape}")
        n, B, C, H, W = states.shape
        h = float(getattr(self.spde, "spacing", 1.0))
        coords = {
            "time": ("time", np.asarray(self.times, dtype=np.float64),
                     {"long_name": "SPDE time t", "units": "1", "axis": "T"}),
            "sample": ("sample", np.arange(B), {"long_name": "sample index in the batch"}),
            "channel": ("channel", np.arange(C), {"long_name": "image channel"}),
            "y": ("y", np.arange(H) * h, {"long_name": "grid coordinate y (i2)", "units": "1", "axis": "Y"}),
            "x": ("x", np.arange(W) * h, {"long_name": "grid coordinate x (i1)", "units": "1", "axis": "X"}),
        }
        data_vars = {
            "u": (("time", "sample", "channel", "y", "x"), states,
                  {"long_name": "state U_t of the discretised SPDE", "units": "1"}),
        }
        for name, long in SCHEDULES:
            sched = getattr(self.spde, name, None)
            if callable(sched):
                data_vars[name] = ("time", np.asarray(sched(np.asarray(self.times)), dtype=np.float64),
                                   {"long_name": long, "units": "1"})
        attrs = {**run_attributes(self.metadata(), self.spde),
                 **completion_attributes(self.completed, self.stopped_at)}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def to_netcdf(self, path, compression: int = 4) -> str:
        """Write atomically (temporary file + rename); returns the path."""
        ds = self.to_xarray()
        enc = {"u": {"zlib": compression > 0, "complevel": compression}} if compression else {}
        return write_dataset_atomic(ds, path, encoding=enc)


def write_dataset_atomic(ds, path, encoding=None) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nc", dir=directory)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding or {})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def trajectory_from_dataset(ds, source: str = "dataset") -> Trajectory:
    """Rebuild a :class:`Trajectory` from a Dataset written by :meth:`Trajectory.to_xarray`."""
    from .spde import AnisotropicSPDE

    if META_ATTR not in ds.attrs:
        raise ValueError(
            f"{source} is not an spdekit trajectory: attribute {META_ATTR!r} is missing "
            f"(found attributes: {sorted(ds.attrs)[:10]})"
        )
    try:
        meta = json.loads(ds.attrs[META_ATTR])
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: attribute {META_ATTR!r} is not valid JSON ({exc})") from exc
    for key in ("spde", "solver", "dt"):
        if key not in meta:
            raise ValueError(f"{source}: run description lacks {key!r}")
    if "u" not in ds.variables or "time" not in ds.variables:
        raise ValueError(f"{source}: variables 'u' and 'time' are required")
    u = ds["u"]
    expected = ("time", "sample", "channel", "y", "x")
    if tuple(u.dims) != expected:
        raise ValueError(f"{source}: variable 'u' must have dims {expected}, got {tuple(u.dims)}")
    times = np.asarray(ds["time"].values, dtype=np.float64)
    # a streamed file cut off in mid-record: keep the records whose time was written
    n = len(times)
    while n and not (np.isfinite(times[n - 1]) and abs(times[n - 1]) < 1e30):
        n -= 1
    completed = bool(int(ds.attrs.get("completed", meta.get("completed", True))))
    step = int(ds.attrs.get("stopped_at_step", -1))
    stopped_at = meta.get("stopped_at")
    if not completed and step >= 0:
        stopped_at = {"step": step, "time": float(ds.attrs.get("stopped_at_time", np.nan)),
                      "reason": "non-finite state"}
    elif not completed:
        stopped_at = {"step": None, "time": None, "reason": "interrupted"}
    try:
        spde = AnisotropicSPDE.from_dict(meta["spde"]) if meta["spde"].get("type") == "AnisotropicSPDE" \
            else meta["spde"]
        solver = solver_from_dict(meta["solver"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{source}: cannot rebuild the SPDE/solver from its attributes: {exc}") from exc
    return Trajectory(
        times=times[:n],
        states=np.asarray(u.values[:n]),
        spde=spde,
        solver=solver,
        dt=float(meta["dt"]),
        seed=meta.get("seed"),
        backend=meta.get("backend", "numpy"),
        t0=float(meta.get("t0", 0.0)),
        t1=float(meta.get("t1", 0.0)),
        completed=completed,
        stopped_at=stopped_at,
        attrs=meta.get("attrs", {}),
    )


def open_trajectory(path) -> Trajectory:
    """Read a trajectory written by :meth:`Trajectory.to_netcdf` (states are loaded eagerly)."""
    import xarray as xr

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no trajectory file at {path!r}")
    try:
        with xr.open_dataset(path, engine="netcdf4", decode_times=False) as ds:
            ds.load()
            return trajectory_from_dataset(ds, source=repr(path))
    except OSError as exc:
        raise ValueError(f"{path!r} is not a readable netCDF file ({exc})") from exc
