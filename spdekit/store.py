"""Streaming trajectory output: every saved state reaches the disk as soon as it is computed.

``simulate(..., out=path)`` writes through a :class:`TrajectoryWriter`. The file is netCDF-3 with
64-bit data (CDF-5) and an unlimited ``time`` dimension; after each saved state the file is synced,
so a run that is killed (SIGKILL, power loss) leaves a valid file holding every state written
before that moment. (HDF5-based netCDF-4 files can be left unreadable by a kill in mid-write, which
is why the streaming format is netCDF-3; :meth:`Trajectory.to_netcdf` writes compressed netCDF-4
atomically for finished runs.)

Integrity: every saved state carries ``u_crc32``, the CRC-32 of its time (float64) and its values
(both little-endian), written before its time; :func:`spdekit.open_trajectory` recomputes it for each
state and reports a truncated or corrupted file with :class:`DamagedFileError`. (netCDF-3 has no
filters, so HDF5's Fletcher32 cannot protect the streamed files; one scheme serves both formats.)

Completion is recorded in fixed-size numeric attributes, so updating them at the end never grows
the file header (which would make netCDF-3 rewrite the whole file): ``completed`` (0/1),
``stop_reason`` (an index into :data:`STOP_REASONS`), ``stopped_at_step`` and ``stopped_at_time``
(-1 and NaN if none). A streamed file holds ``completed = 0, stop_reason = 1`` (interrupted) from its
creation until the run ends; an interrupted run records the step and time of its last saved state
when it can close the file, and the reader derives them from the last saved state when it could not
(a kill).

Attributes that hold JSON are strict JSON: non-finite floats are written as the strings "inf",
"-inf" and "nan" (:func:`to_json`, :func:`from_json`; the bare ``Infinity`` of older files is read too).
"""

from __future__ import annotations

import json
import math
import os
import zlib

import numpy as np

from ._arrays import to_host
from ._version import __version__

META_ATTR = "spdekit_run"
CHECKSUM_VAR = "u_crc32"
CHECKSUM_ATTRS = {"long_name": "CRC-32 of the saved state: its time (float64) then u, both little-endian",
                  "units": "1"}
STOP_REASONS = ("completed", "interrupted", "non-finite state", "damaged file")
SCHEDULES = (("alpha1", "diffusivity coefficient alpha_1(t)"),
             ("lambda1", "anisotropy coefficient lambda_1(t) of the drift"),
             ("alpha2", "intensity coefficient alpha_2(t)"),
             ("lambda2", "anisotropy coefficient lambda_2(t) of the noise"))


class DamagedFileError(ValueError):
    """A trajectory file is truncated or corrupted: a saved state fails its checksum or cannot be read."""


def state_checksum(t: float, state) -> int:
    """CRC-32 of a saved state: its time as float64, then its values, both little-endian."""
    a = np.asarray(state)
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return zlib.crc32(a, zlib.crc32(np.asarray(t, dtype="<f8").tobytes()))


def saved_step(t: float, t0: float, dt: float) -> int | None:
    """The step number of a saved state at time ``t`` of a run from ``t0`` with step ``dt``."""
    return round((float(t) - float(t0)) / float(dt)) if dt and math.isfinite(t) else None


def _strict(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(float(obj))  # "inf", "-inf", "nan"
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def _restore(obj):
    if isinstance(obj, str) and obj in ("inf", "-inf", "nan"):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj


def to_json(obj) -> str:
    """Strict JSON (RFC 8259): non-finite floats become the strings "inf", "-inf", "nan"."""
    return json.dumps(_strict(obj), allow_nan=False)


def from_json(text: str):
    """Read :func:`to_json` output (and the bare Infinity/NaN of older files) back; the strings
    "inf", "-inf" and "nan" become floats."""
    return _restore(json.loads(text))


def run_attributes(meta: dict, spde) -> dict:
    """The CF and spdekit attributes shared by streamed and finished trajectory files."""
    attrs = {
        "Conventions": "CF-1.10",
        "title": "spdekit trajectory",
        "source": f"spdekit {__version__}",
        "history": f"simulated with spdekit {__version__} ({meta['solver']['solver']}, backend {meta['backend']})",
        META_ATTR: to_json({k: v for k, v in meta.items() if k not in ("completed", "stopped_at")}),
        "dt": float(meta["dt"]),
        "t0": float(meta["t0"]),
        "t1": float(meta["t1"]),
        "seed": "none" if meta["seed"] is None else str(meta["seed"]),
        "backend": meta["backend"],
        "spdekit_version": __version__,
        "stop_reason_meanings": ", ".join(f"{i}: {r}" for i, r in enumerate(STOP_REASONS)),
    }
    if hasattr(spde, "to_dict"):  # one attribute per field (spde_diffusivity: the family of g1 and g2)
        for k, v in spde.to_dict().items():
            if k != "type":
                attrs[f"spde_{k}"] = to_json(v) if isinstance(v, (dict, list)) else v
    return attrs


def completion_attributes(completed: bool, stopped_at: dict | None) -> dict:
    """Fixed-size attributes; ``stopped_at`` is {"step", "time", "reason"} (reason in STOP_REASONS)."""
    stopped_at = {} if completed or not stopped_at else stopped_at
    reason = "completed" if completed else stopped_at.get("reason", "interrupted")
    step, time = stopped_at.get("step"), stopped_at.get("time")
    return {
        "completed": np.int32(bool(completed)),
        "stop_reason": np.int32(STOP_REASONS.index(reason) if reason in STOP_REASONS else 1),
        "stopped_at_step": np.int64(-1 if step is None else step),
        "stopped_at_time": np.float64(np.nan if time is None else time),
    }


class TrajectoryWriter:
    """Append saved states (B, C, H, W) to ``path`` as they come, each with its checksum; see the
    module doc."""

    def __init__(self, path, meta: dict, spde, state_shape, dtype):
        import netCDF4

        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        B, C, H, W = state_shape
        h = float(getattr(spde, "spacing", 1.0))
        self._spde = spde
        self._t0, self._dt, self._last_t = float(meta["t0"]), float(meta["dt"]), None
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
        self._crc = nc.createVariable(CHECKSUM_VAR, "u4", ("time",))
        self._crc.setncatts(CHECKSUM_ATTRS)
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
        host = np.asarray(to_host(state), dtype=self._u.dtype)
        self._u[k] = host
        for name, v in self._sched.items():
            v[k] = float(getattr(self._spde, name)(float(t)))
        self._crc[k] = state_checksum(t, host)
        self._time[k] = t  # written last: a record is complete once its time is set
        self._last_t = float(t)
        self.n += 1
        self._nc.sync()

    def close(self, completed: bool, stopped_at: dict | None = None) -> None:
        """Record how the run ended. An interrupted run (``stopped_at`` None) records its last saved state."""
        if self._nc is None:
            return
        if not completed and stopped_at is None and self._last_t is not None:
            stopped_at = {"step": saved_step(self._last_t, self._t0, self._dt), "time": self._last_t,
                          "reason": "interrupted"}
        for k, v in completion_attributes(completed, stopped_at).items():
            self._nc.setncattr(k, v)
        self._nc.close()
        self._nc = None
