"""Dask ensembles: identical statistics for any number of workers and chunk size; lazy mode; a
worker lost in mid-task is recomputed without losing or duplicating paths."""

import os
import sys

import numpy as np
import pytest

import spdekit as sk
from spdekit.ensemble import ensemble

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def spde():
    return sk.AnisotropicSPDE.paper_anisotropic(8, T=0.2)


@pytest.fixture(scope="module")
def u0():
    return np.random.default_rng(0).uniform(0, 1, (1, 8, 8))


def _stats(spde, u0, n_workers, chunk_size):
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        return ensemble(spde, u0, 40, 0.0, 0.2, 1e-3, save_every=50, seed=7, chunk_size=chunk_size, client=client,
                        statistics=("mean", "var", "quantiles"))


def test_statistics_identical_for_1_2_4_workers(spde, u0):
    ref = _stats(spde, u0, 1, 8)
    for n_workers, chunk in ((2, 8), (4, 8)):
        other = _stats(spde, u0, n_workers, chunk)
        for name in ("mean", "var", "quantiles"):
            np.testing.assert_array_equal(other[name].values, ref[name].values)
    # a different chunking changes only the pairwise combination order: equal to rounding
    rechunked = _stats(spde, u0, 2, 13)
    np.testing.assert_allclose(rechunked["mean"].values, ref["mean"].values, rtol=1e-13)
    np.testing.assert_allclose(rechunked["var"].values, ref["var"].values, rtol=1e-10)
    np.testing.assert_array_equal(rechunked["quantiles"].values, ref["quantiles"].values)


def test_statistics_equal_a_direct_simulation(spde, u0):
    ref = _stats(spde, u0, 1, 8)
    direct = sk.simulate(spde, np.broadcast_to(u0, (40,) + u0.shape).copy(), 0.0, 0.2, 1e-3, save_every=50, seed=7)
    phi = direct.states.mean(axis=(-3, -2, -1))  # (time, path)
    np.testing.assert_allclose(ref["mean"].sel(functional="mean_value").values, phi.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(ref["var"].sel(functional="mean_value").values, phi.var(axis=1, ddof=1), rtol=1e-9)


def test_lazy_paths_mode(spde, u0, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        ds = ensemble(spde, u0, 20, 0.0, 0.2, 1e-3, save_every=100, seed=3, chunk_size=6)
        assert ds.u.chunks[1] == (6, 6, 6, 2)  # one dask chunk per path chunk, nothing computed yet
        mean = ds.u.mean("sample").compute()
        ds.to_netcdf(tmp_path / "ens.nc")
    direct = sk.simulate(spde, np.broadcast_to(u0, (20,) + u0.shape).copy(), 0.0, 0.2, 1e-3, save_every=100, seed=3)
    np.testing.assert_allclose(mean.values, direct.states.mean(axis=1), rtol=1e-12)
    import xarray as xr

    with xr.open_dataset(tmp_path / "ens.nc") as back:
        np.testing.assert_array_equal(back.u.values, direct.states)


KILL_FLAG = "SPDEKIT_TEST_KILL_FLAG"


def _dying_functional(u):
    """Kills its worker process the first time it runs (the flag file is removed first)."""
    flag = os.environ.get(KILL_FLAG)
    if flag and os.path.exists(flag):
        os.remove(flag)
        os._exit(1)
    return u.mean(axis=(-3, -2, -1))


@pytest.mark.slow
def test_a_lost_worker_is_recomputed_without_losing_or_duplicating_paths(spde, u0, tmp_path, monkeypatch):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    flag = tmp_path / "kill-once"
    flag.write_text("1")
    monkeypatch.setenv(KILL_FLAG, str(flag))
    funcs = {"mean_value": _dying_functional}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={KILL_FLAG: str(flag), "NUMBA_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        got = ensemble(spde, u0, 24, 0.0, 0.2, 1e-3, save_every=50, seed=5, chunk_size=4, client=client,
                       statistics=("mean", "quantiles"), functionals=funcs)
    assert not flag.exists(), "the worker was not killed: the test did not exercise a lost worker"
    direct = sk.simulate(spde, np.broadcast_to(u0, (24,) + u0.shape).copy(), 0.0, 0.2, 1e-3, save_every=50, seed=5)
    phi = direct.states.mean(axis=(-3, -2, -1))
    np.testing.assert_allclose(got["mean"].values[0], phi.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got["quantiles"].values[:, 0], np.quantile(phi, (0.05, 0.5, 0.95), axis=1), rtol=1e-12)


def test_bad_arguments(spde, u0):
    with pytest.raises(ValueError, match="n_paths must be an integer >= 1"):
        ensemble(spde, u0, 0, 0.0, 0.2, 1e-3)
    with pytest.raises(ValueError, match="u0 must be"):
        ensemble(spde, u0[0], 4, 0.0, 0.2, 1e-3)


def test_stiff_solver_in_an_ensemble_equals_a_direct_simulation(spde, u0):
    dt = 0.05  # 3.2 times the explicit bound of this 8x8 preset
    solver = sk.LinearlyImplicitTheta()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        got = ensemble(spde, u0, 12, 0.0, 0.2, dt, solver=solver, seed=4, chunk_size=5, client=client,
                       statistics=("mean",))
    assert '"linearly_implicit_theta"' in got.attrs["solver"]
    direct = sk.simulate(spde, np.broadcast_to(u0, (12,) + u0.shape).copy(), 0.0, 0.2, dt, solver=solver, seed=4)
    phi = direct.states.mean(axis=(-3, -2, -1))
    np.testing.assert_allclose(got["mean"].sel(functional="mean_value").values, phi.mean(axis=1), rtol=1e-12)
