"""Trajectories and their xarray / netCDF form.

A :class:`Trajectory` holds the saved states ``(time, sample, channel, y, x)`` and everything
needed to rebuild the run: the SPDE, the solver, dt, the seed, the backend and the package
version. ``to_xarray()`` turns it into a CF-style Dataset; ``to_netcdf(path)`` writes it
atomically (to a temporary file, then renamed), and :func:`open_trajectory` reads it back and
rebuilds the SPDE (``open_trajectory(path).spde``). The round trip is lossless: values are stored
in their own dtype with lossless zlib compression.

Files carry a CRC-32 per saved state (:mod:`spdekit.store`); :func:`open_trajectory` verifies each
state and raises :class:`~spdekit.store.DamagedFileError` for a truncated or corrupted file, or
returns its valid states with ``recover=True``.
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
from .store import (
    CHECKSUM_ATTRS,
    CHECKSUM_VAR,
    META_ATTR,
    SCHEDULES,
    STOP_REASONS,
    DamagedFileError,
    completion_attributes,
    from_json,
    run_attributes,
    saved_step,
    state_checksum,
)


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
    #: set by :func:`open_trajectory`: "verified" (every state matched its checksum), "unverified"
    #: (a file written without checksums), "recovered" (the valid states of a damaged file)
    integrity: str | None = None

    @property
    def final(self):
        return self.states[-1]

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        state = "complete" if self.completed else f"partial, stopped at {self.stopped_at}"
        integrity = f", {self.integrity}" if self.integrity else ""
        return (
            f"Trajectory({len(self.times)} saved states of shape {tuple(self.states.shape[1:])}, "
            f"t in [{self.t0:g}, {self.t1:g}], dt={self.dt:g}, {state}{integrity})"
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
        """Write atomically (temporary file + rename), one chunk and one CRC-32 (``u_crc32``) per
        saved state; returns the path."""
        ds = self.to_xarray()
        states = ds["u"].values
        crc = [state_checksum(t, s) for t, s in zip(ds["time"].values, states)]
        ds[CHECKSUM_VAR] = ("time", np.asarray(crc, dtype=np.uint32), CHECKSUM_ATTRS)
        enc = {"u": {"chunksizes": (1, *states.shape[1:]), "zlib": compression > 0, "complevel": compression}}
        return write_dataset_atomic(ds, path, encoding=enc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_dataset_atomic(ds, path, encoding=None) -> str:
    """Write ``ds`` to a temporary file beside ``path``, then rename it into place (with the
    permissions the umask gives new files)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nc", dir=directory)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding or {})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def trajectory_from_dataset(ds, source: str = "dataset", recover: bool = False) -> Trajectory:
    """Rebuild a :class:`Trajectory` from a Dataset written by :meth:`Trajectory.to_xarray`, verifying
    its states' checksums as :func:`open_trajectory` does."""
    dims = {name: tuple(v.dims) for name, v in ds.variables.items()}
    return _rebuild(dict(ds.attrs), dims, lambda name, k=slice(None): np.asarray(ds[name][k].values), source,
                    recover)


def open_trajectory(path, recover: bool = False) -> Trajectory:
    """Read a trajectory file (``simulate(out=...)`` or :meth:`Trajectory.to_netcdf`) and verify it.

    Every saved state is checked against its stored CRC-32 (of its time and values); the result's
    ``integrity`` is "verified", or "unverified" for a file written before checksums existed. A
    truncated or corrupted file raises :class:`DamagedFileError` (a ValueError) naming the first bad
    state and how many states before it are valid. ``recover=True`` returns those valid states
    instead, with ``completed=False``, ``stopped_at`` at the last valid state (reason "damaged file"),
    ``integrity="recovered"`` and ``attrs["recovered_from"]``. A run that was interrupted is not
    damaged: it opens with ``completed=False`` and stopped_at reason "interrupted". States are loaded
    eagerly.
    """
    import netCDF4

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no trajectory file at {path!r}")
    try:
        nc = netCDF4.Dataset(path)
    except (OSError, UnicodeDecodeError) as exc:  # the latter: names in a corrupted header
        if _has_netcdf_signature(path):
            why = getattr(exc, "strerror", None) or _first_line(exc)
            raise _damaged(repr(path), f"netCDF cannot open it ({why}); no state can be read") from None
        raise ValueError(f"{path!r} is not a readable netCDF file ({exc})") from exc
    with nc:
        try:
            attrs, dims = nc.__dict__, {name: tuple(v.dimensions) for name, v in nc.variables.items()}
        except UnicodeDecodeError:
            raise _damaged(repr(path), "its netCDF header holds undecodable names; no state can be read") from None
        if not dims and _has_netcdf_signature(path):
            raise _damaged(repr(path), "its netCDF header is incomplete; no state can be read")
        nc.set_auto_maskandscale(False)  # raw values: the checksums are of what was written
        return _rebuild(attrs, dims, lambda name, k=slice(None): np.asarray(nc.variables[name][k]), repr(path),
                        recover)


def _damaged(source: str, what: str) -> DamagedFileError:
    return DamagedFileError(f"{source} is damaged (truncated or corrupted): {what}")


_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


def _has_netcdf_signature(path) -> bool:
    """True when the file starts like a netCDF-3 or HDF5 file (or is a prefix of one: empty, cut short)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return any(sig.startswith(head) or head.startswith(sig) for sig in _SIGNATURES)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _rebuild(attrs: dict, dims: dict, read, source: str, recover: bool) -> Trajectory:
    """The trajectory of a file or Dataset: ``dims`` maps variable names to their dimensions and
    ``read(name, k)`` returns variable ``name`` (record ``k`` if given)."""
    from .spde import AnisotropicSPDE

    if META_ATTR not in attrs:
        raise ValueError(
            f"{source} is not an spdekit trajectory: attribute {META_ATTR!r} is missing "
            f"(found attributes: {sorted(attrs)[:10]})"
        )
    try:
        meta = from_json(attrs[META_ATTR])
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: attribute {META_ATTR!r} is not valid JSON ({exc})") from exc
    for key in ("spde", "solver", "dt"):
        if key not in meta:
            raise ValueError(f"{source}: run description lacks {key!r}")
    if "u" not in dims or "time" not in dims:
        raise ValueError(f"{source}: variables 'u' and 'time' are required")
    expected = ("time", "sample", "channel", "y", "x")
    if dims["u"] != expected:
        raise ValueError(f"{source}: variable 'u' must have dims {expected}, got {dims['u']}")
    try:
        spde = AnisotropicSPDE.from_dict(meta["spde"]) if meta["spde"].get("type") == "AnisotropicSPDE" \
            else meta["spde"]
        solver = solver_from_dict(meta["solver"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{source}: cannot rebuild the SPDE/solver from its attributes: {exc}") from exc
    t0, dt = float(meta.get("t0", 0.0)), float(meta["dt"])
    completed = bool(int(attrs.get("completed", meta.get("completed", True))))

    try:
        times = np.asarray(read("time"), dtype=np.float64)
        checksums = read(CHECKSUM_VAR) if CHECKSUM_VAR in dims else None
    except Exception as exc:  # noqa: BLE001 - HDF5/netCDF read errors of a corrupted chunk
        raise _damaged(source, f"its times or checksums cannot be read ({_first_line(exc)}); no state can be "
                               f"verified") from None
    n = len(times)
    if not completed:  # a run in progress writes a record's time last: drop a record it did not finish
        while n and not (np.isfinite(times[n - 1]) and abs(times[n - 1]) < 1e30):
            n -= 1
    states, bad, why = None, None, ""
    for k in range(n):  # state by state: the first bad one is named, the ones before it are kept
        try:
            state = read("u", k)
        except Exception as exc:  # noqa: BLE001 - HDF5/netCDF read errors of a corrupted chunk
            bad, why = k, f"cannot be read ({_first_line(exc)})"
            break
        if checksums is not None and state_checksum(times[k], state) != int(checksums[k]):
            bad, why = k, "fails its checksum"
            break
        if states is None:
            states = np.empty((n, *state.shape), dtype=state.dtype)
        states[k] = state
    valid = n if bad is None else bad
    if bad is not None and (not recover or valid == 0):
        span = f"t = {times[0]:g}" + (f" to {times[valid - 1]:g}" if valid > 1 else "")
        kept = (f"{valid} of its {n} states {'is' if valid == 1 else 'are'} valid ({span}): pass recover=True "
                f"to open_trajectory to read them") if valid else f"none of its {n} states is valid"
        raise _damaged(source, f"saved state {bad} (recorded t = {times[bad]:g}) {why}; {kept}")
    if states is None:  # no saved state (a run stopped before its first one)
        states = np.asarray(read("u"))[:0]
    last = {"step": saved_step(times[valid - 1], t0, dt), "time": float(times[valid - 1])} if valid else {}

    run_attrs = dict(meta.get("attrs", {}))
    integrity = "unverified" if checksums is None else "verified"
    stopped_at = None
    if bad is not None:
        completed, integrity = False, "recovered"
        stopped_at = {**last, "reason": "damaged file"}
        run_attrs["recovered_from"] = {"file": source.strip("'\""), "first_bad_state": bad, "states_in_file": n}
    elif not completed:
        step = int(attrs.get("stopped_at_step", -1))
        # files without stop_reason (older ones): a recorded step meant divergence, none an interruption
        code = int(attrs.get("stop_reason", 2 if step >= 0 else 1))
        reason = STOP_REASONS[code] if 0 < code < len(STOP_REASONS) else "interrupted"
        if step >= 0:
            stopped_at = {"step": step, "time": float(attrs.get("stopped_at_time", np.nan)), "reason": reason}
        else:  # killed (or an older file): it stopped after its last saved state
            stopped_at = {"step": None, "time": None, **last, "reason": reason}
    return Trajectory(
        times=times[:valid],
        states=states[:valid],
        spde=spde,
        solver=solver,
        dt=dt,
        seed=meta.get("seed"),
        backend=meta.get("backend", "numpy"),
        t0=t0,
        t1=float(meta.get("t1", 0.0)),
        completed=completed,
        stopped_at=stopped_at,
        attrs=run_attrs,
        integrity=integrity,
    )
