"""Monte Carlo ensembles of SPDE paths on Dask (a LocalCluster or any dask.distributed scheduler).

Paths are split into chunks of ``chunk_size``. Chunk [first, first + size) draws its increments
from the per-sample streams of :mod:`spdekit.random` (sample b of seed s has stream s/b), so every
path, and every statistic, is the same whatever the chunk size, the number of workers or the
order in which chunks run; a chunk lost with its worker is recomputed by the scheduler and gives
the same numbers again (tasks are pure functions of (seed, first, size); they also carry
``retries`` for transient failures).

Two modes:

* ``statistics=None``: a lazily-backed xarray Dataset of all paths, dims (time, sample, channel,
  y, x), one dask chunk per path chunk. Nothing runs until it is computed, reduced (e.g.
  ``ds.u.mean("sample")`` never gathers all paths) or written (``ds.to_netcdf``, ``ds.to_zarr``),
  chunk by chunk, on the default Dask scheduler (the client passed in, or the LocalCluster made
  here, is the default once created).
* ``statistics=("mean", "var", "quantiles")`` with ``functionals``: each chunk reduces its paths to
  the values of scalar functionals phi(u) over time; chunks are combined in chunk order with the
  pairwise mean/variance update (Chan, Golub & LeVeque 1979), so results are bitwise identical for
  any number of workers. Quantiles keep only the (n_paths, n_times) functional values.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_int
from .random import SampleStreams
from .simulate import n_steps_for, simulate
from .threads import check_threads

DEFAULT_FUNCTIONALS = {
    "mean_value": lambda u: u.mean(axis=(-3, -2, -1)),
    "l2_norm": lambda u: np.sqrt((u.astype(np.float64) ** 2).sum(axis=(-3, -2, -1))),
}


def _chunks(n_paths, chunk_size):
    return [(first, min(chunk_size, n_paths - first)) for first in range(0, n_paths, chunk_size)]


def run_chunk(spde, u0, first, size, t0, t1, dt, solver, save_every, seed, backend, threads="auto"):
    """States (n_saved, size, C, H, W) of paths [first, first + size); pure in its arguments (``threads``
    changes the speed only)."""
    init = u0[first:first + size] if u0.ndim == 4 else np.broadcast_to(u0, (size,) + u0.shape)
    traj = simulate(spde, np.ascontiguousarray(init), t0, t1, dt, solver=solver, save_every=save_every,
                    seed=SampleStreams(seed, size, first=first), backend=backend, threads=threads)
    return traj.states


def chunk_statistics(spde, u0, first, size, t0, t1, dt, solver, save_every, seed, backend, threads, functionals):
    """Per-chunk reduction: functional values (n_functionals, size, n_saved), float64."""
    states = run_chunk(spde, u0, first, size, t0, t1, dt, solver, save_every, seed, backend, threads)
    per_path = np.moveaxis(states, 1, 0)  # (size, n_saved, C, H, W)
    return np.stack([np.asarray(f(per_path), dtype=np.float64) for f in functionals.values()])


def _combine(chunks):
    """Pairwise (Chan et al.) mean and M2 over the path axis, chunks combined in order."""
    n, mean, m2 = 0, None, None
    for v in chunks:  # v: (F, size, T)
        nb = v.shape[1]
        mb = v.mean(axis=1)
        m2b = ((v - mb[:, None]) ** 2).sum(axis=1)
        if mean is None:
            n, mean, m2 = nb, mb, m2b
            continue
        delta = mb - mean
        tot = n + nb
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta**2 * (n * nb / tot)
        n = tot
    return n, mean, m2


def ensemble(spde, u0, n_paths: int, t0: float, t1: float, dt: float, solver=None, save_every=None, seed: int = 0,
             chunk_size: int = 64, client=None, statistics=None, functionals=None,
             quantiles=(0.05, 0.5, 0.95), backend: str = "auto", retries: int = 2, out=None, threads="auto"):
    """Simulate ``n_paths`` independent paths of ``spde`` on a Dask cluster.

    Parameters
    ----------
    u0 : (C, H, W) shared by every path, or (n_paths, C, H, W).
    client : a ``dask.distributed.Client``, a scheduler address (str), or None for a LocalCluster
        with one single-threaded worker per core (created here and left running as the default
        client; close it with ``ensemble_client().close()`` or reuse it).
    statistics : None (all paths, lazily) or a subset of ("mean", "var", "quantiles").
    functionals : dict name -> phi(u) mapping arrays (..., C, H, W) to (...) (default: spatial mean
        and l2 norm), for ``statistics``.
    out : optional path; the result is written there (``.zarr`` -> zarr store, else netCDF),
        chunk by chunk for the lazy mode.
    threads : numba threads of each chunk's run (:func:`spdekit.simulate`): "auto" (default; the default
        cluster's workers have one thread each, so one) or a count.

    Returns an ``xarray.Dataset``.
    """
    import dask
    import xarray as xr

    n_paths = check_int("n_paths", n_paths, minimum=1)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    u0 = np.asarray(u0)
    if u0.ndim == 4 and u0.shape[0] != n_paths:
        raise ValueError(f"u0 of shape {u0.shape} must be (C, H, W) or (n_paths={n_paths}, C, H, W)")
    if u0.ndim not in (3, 4):
        raise ValueError(f"u0 must be (C, H, W) or (n_paths, C, H, W); got shape {u0.shape}")
    spde.check_state(u0 if u0.ndim == 4 else u0[None])
    n_steps = n_steps_for(t0, t1, dt)
    every = n_steps if save_every is None else check_int("save_every", save_every, minimum=1)
    times = np.unique(np.concatenate([np.arange(0, n_steps + 1, every), [n_steps]])) * float(dt) + float(t0)
    client = _client(client)
    chunks = _chunks(n_paths, chunk_size)
    args = (t0, t1, dt, solver, save_every, seed, backend, check_threads(threads))
    C, H, W = u0.shape[-3:]

    if statistics is None:
        import dask.array as da

        with dask.annotate(retries=retries):
            blocks = [da.from_delayed(dask.delayed(run_chunk, pure=True)(spde, u0, first, size, *args),
                                      shape=(len(times), size, C, H, W), dtype=u0.dtype)
                      for first, size in chunks]
        u = da.concatenate(blocks, axis=1)
        ds = xr.Dataset({"u": (("time", "sample", "channel", "y", "x"), u,
                               {"long_name": "state U_t of the discretised SPDE", "units": "1"})},
                        coords={"time": times, "sample": np.arange(n_paths)})
        ds.attrs.update(_attrs(spde, solver, dt, seed, n_paths, chunk_size))
        if out is not None:
            _write(ds, out)
        return ds

    wanted = set(statistics)
    unknown = wanted - {"mean", "var", "quantiles"}
    if unknown:
        raise ValueError(f"statistics must be a subset of ('mean', 'var', 'quantiles'); unknown {sorted(unknown)}")
    functionals = dict(DEFAULT_FUNCTIONALS if functionals is None else functionals)
    futures = client.map(chunk_statistics, [spde] * len(chunks), [u0] * len(chunks),
                         [f for f, _ in chunks], [s for _, s in chunks],
                         *[[a] * len(chunks) for a in args], [functionals] * len(chunks),
                         pure=True, retries=retries)
    values = client.gather(futures)  # small: (F, size, T) per chunk
    n, mean, m2 = _combine(values)
    names = list(functionals)
    data = {}
    if "mean" in wanted:
        data["mean"] = (("functional", "time"), mean, {"long_name": "ensemble mean of phi(U_t)"})
    if "var" in wanted:
        var = m2 / (n - 1) if n > 1 else np.full_like(m2, np.nan)
        data["var"] = (("functional", "time"), var, {"long_name": "unbiased ensemble variance of phi(U_t)"})
    if "quantiles" in wanted:
        allv = np.concatenate(values, axis=1)  # (F, n_paths, T): functional values only
        data["quantiles"] = (("quantile", "functional", "time"), np.quantile(allv, quantiles, axis=1),
                             {"long_name": "ensemble quantiles of phi(U_t)"})
    ds = xr.Dataset(data, coords={"functional": names, "time": times,
                                  **({"quantile": list(quantiles)} if "quantiles" in wanted else {})})
    ds.attrs.update(_attrs(spde, solver, dt, seed, n_paths, chunk_size))
    if out is not None:
        _write(ds, out)
    return ds


def _attrs(spde, solver, dt, seed, n_paths, chunk_size):
    import json

    from .solvers import TamedEulerMaruyama

    solver = TamedEulerMaruyama() if solver is None else solver
    return {"Conventions": "CF-1.10", "title": "spdekit ensemble", "spde": json.dumps(spde.to_dict()),
            "solver": json.dumps(solver.to_dict()), "dt": float(dt), "seed": int(seed), "n_paths": int(n_paths),
            "chunk_size": int(chunk_size)}


def _write(ds, out):
    out = str(out)
    if out.endswith(".zarr"):
        ds.to_zarr(out, mode="w")
    else:
        ds.to_netcdf(out)


_LOCAL = {}


def _client(client):
    from dask.distributed import Client, LocalCluster

    if isinstance(client, Client):
        return client
    if isinstance(client, str):
        return Client(client)
    if client is not None:
        raise TypeError(f"client must be a dask.distributed Client, a scheduler address or None; got {client!r}")
    if "client" not in _LOCAL:
        import os

        # one single-threaded worker process per core; numba inside each worker uses one thread
        n = max(1, os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        _LOCAL["client"] = Client(cluster)
    return _LOCAL["client"]


def ensemble_client():
    """The LocalCluster client created by :func:`ensemble` (None if none was made)."""
    return _LOCAL.get("client")

