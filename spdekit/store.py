"""Streaming trajectory output: every saved state reaches the disk as soon as it is computed.

``simulate(..., out=path)`` writes through a :class:`TrajectoryWriter`. The file is netCDF-3 with
64-bit data (CDF-5) and an unlimited ``time`` dimension; after each saved state the file is synced,
so a run that is killed (SIGKILL, power loss) leaves a valid file holding every state written
before that moment. (HDF5-based netCDF-4 files can be left unreadable by a kill in mid-write, which
is why the streaming format is netCDF-3; :meth:`Trajectory.to_netcdf` writes compressed netCDF-4
atomically for finished runs.)

Completion is recorded in fixed-size numeric attributes, so updating them at the end never grows
the file header (which would make netCDF-3 rewrite the whole file): ``completed`` (0/1),
``stopped_at_step`` (-1 if none) and ``stopped_at_time`` (NaN if none). A file with
``completed = 0`` and ``stopped_at_step = -1`` is the record of a run that was interrupted.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ._arrays import to_host
from ._version import __version__

META_ATTR = "spdekit_run"
SCHEDULES = (("alpha1", "diffusivity coefficient alpha_1(t)"),
             ("lambda1", "anisotropy coefficient lambda_1(t) of the drift"),
             ("alpha2", "intensity coefficient alpha_2(t)"),
             ("lambda2", "anisotropy coefficient lambda_2(t) of the noise"))


def run_attributes(meta: dict, spde) -> dict:
    """The CF and spdekit attributes shared by streamed and finished trajectory files."""
    attrs = {
        "Conventions": "CF-1.10",
        "title": "spdekit trajectory",
        "source": f"spdekit {__version__}",
        "history": f"simulated with spdekit {__version__} ({meta['solver']['solver']}, backend {meta['backend']})",
        META_ATTR: json.dumps({k: v for k, v in meta.items() if k not in ("completed", "stopped_at")}),
        "dt": float(meta["dt"]),
        "t0": float(meta["t0"]),
        "t1": float(meta["t1"]),
        "seed": "none" if meta["seed"] is None else str(meta["seed"]),
        "backend": meta["backend"],
        "spdekit_version": __version__,
    }
    if hasattr(spde, "to_dict"):
        for k, v in spde.to_dict().items():
            if k != "type":
                attrs[f"spde_{k}"] = json.dumps(v) if isinstance(v, dict) else v
    return attrs


def completion_attributes(completed: bool, stopped_at: dict | None) -> dict:
    return {
        "completed": np.int32(bool(completed)),
        "stopped_at_step": np.int64(-1 if not stopped_at else stopped_at["step"]),
        "stopped_at_time": np.float64(np.nan if not stopped_at else stopped_at["time"]),
    }


class TrajectoryWriter:
    """Append saved states (B, C, H, W) to ``path`` as they come; see the module doc."""

    def __init__(self, path, meta: dict, spde, state_shape, dtype):
        import netCDF4

        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        B, C, H, W = state_shape
        h = float(getattr(spde, "spacing", 1.0))
        self._spde = spde
        self._nc = nc = netCDF4.Dataset(self.path, "w", format="NETCDF3_64BIT_DATA")
        for name, size in (("time", None), ("sample", B), ("channel", C), ("y", H), ("x", W)):
            nc.createDimension(name, size)
        coords = {
            "time": ("f8", ("time",), {"long_name": "SPDE time t", "units": "1", "axis": "T"}, None),
            "sample": ("i8", ("sample",), {"long_name": "sample index in the batch"}, np.arange(B)),
            "channel": ("i8", ("channel",), {"long_name": "image channel"}, np.arange(C)),
            "y": ("f8", ("y",), {"long_name": "grid coordinate y (i2)", "units": "1", "axis": "Y"}, np.arange(H) * h),
            "x": ("f8", ("x",), {"long_name": "grid coordinate x (i1)", "units": "1", "axis": "X"}, np.arange(W) * h),
        }
        for name, (kind, dims, attrs, values) in coords.items():
            v = nc.createVariable(name, kind, dims)
            v.setncatts(attrs)
            if values is not None:
                v[:] = values
        self._u = nc.createVariable("u", np.dtype(dtype).str[1:], ("time", "sample", "channel", "y", "x"))
        self._u.setncatts({"long_name": "state U_t of the discretised SPDE", "units": "1"})
        self._sched = {}
        for name, long in SCHEDULES:
            if callable(getattr(spde, name, None)):
                v = nc.createVariable(name, "f8", ("time",))
                v.setncatts({"long_name": long, "units": "1"})
                self._sched[name] = v
        nc.setncatts({**run_attributes(meta, spde), **completion_attributes(False, None)})
        self._time = nc.variables["time"]
        self.n = 0
        nc.sync()

    def append(self, t: float, state) -> None:
        k = self.n
        self._u[k] = to_host(state)
        for name, v in self._sched.items():
            v[k] = float(getattr(self._spde, name)(float(t)))
        self._time[k] = t  # written last: a record is complete once its time is set
        self.n += 1
        self._nc.sync()

    def close(self, completed: bool, stopped_at: dict | None = None) -> None:
        if self._nc is None:
            return
        for k, v in completion_attributes(completed, stopped_at).items():
            self._nc.setncattr(k, v)
        self._nc.close()
        self._nc = None
