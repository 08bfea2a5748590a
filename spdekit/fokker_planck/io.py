"""Density trajectories and their xarray / netCDF form, with spdekit's conventions.

A :class:`DensityTrajectory` holds saved densities ``(time, x)`` or ``(time, y, x)`` on a
:class:`BoxGrid`, the model and a ``run`` description (scheme, method, dt, ...). ``to_xarray()`` gives a
CF-1.10 Dataset (coordinates with long_name/units/axis, the density ``f`` and its mass and L^2 norm per
time) whose attribute ``spdekit_run`` (the same attribute name as :mod:`spdekit.trajectory`) is the JSON
run description needed to rebuild it; ``to_netcdf`` writes atomically through
:func:`spdekit.trajectory.write_dataset_atomic` (temporary file + rename) with lossless zlib compression,
and :func:`open_density_trajectory` reads it back (lossless round trip).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..store import from_json, to_json
from ..trajectory import META_ATTR, write_dataset_atomic
from .grid import BoxGrid
from .model import NonlinearFokkerPlanck

KIND = "spdekit.fokker_planck.DensityTrajectory"


@dataclass
class DensityTrajectory:
    times: np.ndarray  #: (n_saved,)
    densities: np.ndarray  #: (n_saved, *grid.shape)
    grid: BoxGrid
    model: NonlinearFokkerPlanck
    run: dict = field(default_factory=dict)  #: scheme, method, dt, backend, t0, t1, ...
    attrs: dict = field(default_factory=dict)  #: free metadata

    @property
    def final(self) -> np.ndarray:
        return self.densities[-1]

    @property
    def initial(self) -> np.ndarray:
        return self.densities[0]

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        return (f"DensityTrajectory({len(self.times)} saved densities on {self.grid}, "
                f"t in [{self.times[0]:g}, {self.times[-1]:g}], {self.run.get('kind', '?')})")

    def masses(self) -> np.ndarray:
        return np.asarray(self.grid.integrate(self.densities))

    def at(self, t: float) -> np.ndarray:
        """Density at time t by linear interpolation between the saved states (t clipped to the range)."""
        times, dens = self.times, self.densities
        if len(times) > 1 and times[-1] < times[0]:  # a reverse trajectory: forward times decreasing
            times, dens = times[::-1], dens[::-1]
        if t <= times[0]:
            return dens[0]
        if t >= times[-1]:
            return dens[-1]
        k = int(np.searchsorted(times, t, side="right")) - 1
        w = (t - times[k]) / (times[k + 1] - times[k])
        return (1 - w) * dens[k] + w * dens[k + 1]

    # ------------------------------------------------------------------ xarray / netCDF
    def metadata(self) -> dict:
        return {"type": KIND, "grid": self.grid.to_dict(), "model": self.model.to_dict(), "run": self.run,
                "spdekit_version": __version__, "attrs": self.attrs}

    def to_xarray(self):
        import xarray as xr

        dims = ("y", "x")[-self.grid.dim:]
        coords = {"time": ("time", np.asarray(self.times, dtype=np.float64),
                           {"long_name": "time t of the Fokker-Planck equation", "units": "1", "axis": "T"})}
        for name, c, L in zip(dims, self.grid.centers, self.grid.half_width):
            coords[name] = (name, c, {"long_name": f"cell centre coordinate {name}", "units": "1",
                                      "axis": name.upper(), "actual_range": [-L, L]})
        from .diagnostics import l2_norm

        data_vars = {
            "f": (("time",) + dims, np.asarray(self.densities),
                  {"long_name": "density f(t, x) (cell averages)", "units": "1"}),
            "mass": ("time", self.masses(), {"long_name": "mass: integral of f over the box", "units": "1"}),
            "l2_norm": ("time", np.asarray([l2_norm(d, self.grid) for d in self.densities]),
                        {"long_name": "L2 norm of f over the box", "units": "1"}),
        }
        meta = self.metadata()
        m = self.model
        attrs = {
            "Conventions": "CF-1.10",
            "title": "spdekit nonlinear Fokker-Planck density trajectory",
            "source": f"spdekit {__version__}",
            "history": f"computed with spdekit {__version__} "
                       f"({self.run.get('kind', '')}, {self.run.get('method', '')})",
            "comment": "d_t f = div(sigma grad f + lambda x f (1 + kappa f^gamma)) on a zero-flux box",
            META_ATTR: to_json(meta),
            "sigma": m.sigma, "lambda": m.lam, "gamma": m.gamma, "kappa": m.kappa,
            "dim": self.grid.dim,
            "spdekit_version": __version__,
        }
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def to_netcdf(self, path, compression: int = 4) -> str:
        """Write atomically (temporary file + rename); returns the path."""
        ds = self.to_xarray()
        enc = {"f": {"zlib": True, "complevel": int(compression)}} if compression else {}
        return write_dataset_atomic(ds, path, encoding=enc)


def trajectory_from_dataset(ds, source: str = "dataset") -> DensityTrajectory:
    if META_ATTR not in ds.attrs:
        raise ValueError(f"{source} is not an spdekit density trajectory: attribute {META_ATTR!r} is missing")
    try:
        meta = from_json(ds.attrs[META_ATTR])
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: attribute {META_ATTR!r} is not valid JSON ({exc})") from exc
    if meta.get("type") != KIND:
        raise ValueError(f"{source}: {META_ATTR!r} describes a {meta.get('type')!r}, not a {KIND}")
    if "f" not in ds.variables:
        raise ValueError(f"{source}: variable 'f' is missing")
    grid = BoxGrid.from_dict(meta["grid"])
    return DensityTrajectory(
        times=np.asarray(ds["time"].values, dtype=np.float64),
        densities=np.asarray(ds["f"].values),
        grid=grid, model=NonlinearFokkerPlanck.from_dict(meta["model"]),
        run=meta.get("run", {}), attrs=meta.get("attrs", {}),
    )


def open_density_trajectory(path) -> DensityTrajectory:
    """Read a file written by :meth:`DensityTrajectory.to_netcdf` (loaded eagerly)."""
    import xarray as xr

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no density trajectory file at {path!r}")
    with xr.open_dataset(path, engine="netcdf4", decode_times=False) as ds:
        ds.load()
        return trajectory_from_dataset(ds, source=repr(path))
