import json

import netCDF4
import numpy as np
import pytest
import xarray as xr

import spdekit as sk


@pytest.fixture
def traj():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16, correlation_length=1.5, stencil="conservative")
    u0 = np.random.default_rng(0).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    return sk.simulate(spde, u0, 0.0, 0.05, 1e-3, save_every=10, seed=3, attrs={"note": "test"})


def test_xarray_layout_and_attributes(traj):
    ds = traj.to_xarray()
    assert ds["u"].dims == ("time", "sample", "channel", "y", "x")
    assert ds["u"].attrs["long_name"] and ds["time"].attrs["long_name"]
    assert ds.attrs["Conventions"].startswith("CF-")
    assert ds.attrs["seed"] == "3" and ds.attrs["spdekit_version"] == sk.__version__
    for name in ("alpha1", "lambda1", "alpha2", "lambda2"):
        np.testing.assert_allclose(ds[name].values, getattr(traj.spde, name)(traj.times))
    assert json.loads(ds.attrs["spde_lambda1"])["schedule"] == "anisotropy_ramp"


def test_netcdf_round_trip_is_lossless_and_rebuilds_the_spde(traj, tmp_path):
    path = traj.to_netcdf(tmp_path / "t.nc")
    back = sk.open_trajectory(path)
    assert back.states.dtype == traj.states.dtype
    np.testing.assert_array_equal(back.states, traj.states)
    np.testing.assert_array_equal(back.times, traj.times)
    assert back.spde == traj.spde and back.solver == traj.solver
    assert back.seed == 3 and back.dt == traj.dt and back.attrs == {"note": "test"}
    # the rebuilt SPDE continues the run exactly like the original
    a = sk.simulate(traj.spde, traj.final, 0.05, 0.06, 1e-3, seed=9)
    b = sk.simulate(back.spde, back.final, 0.05, 0.06, 1e-3, seed=9)
    np.testing.assert_array_equal(a.final, b.final)


def test_partial_run_round_trip(tmp_path):
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.0, lambda2=float("inf"))
    u0 = np.random.default_rng(1).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as info:
        sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), save_every=5)
    path = info.value.trajectory.to_netcdf(tmp_path / "partial.nc")
    back = sk.open_trajectory(path)
    assert not back.completed and back.stopped_at["step"] == info.value.step


def test_missing_file_and_not_netcdf(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trajectory file"):
        sk.open_trajectory(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"this is not a netCDF file at all")
    with pytest.raises(ValueError, match="not a readable netCDF file"):
        sk.open_trajectory(bad)


def test_truncated_file(traj, tmp_path):
    path = traj.to_netcdf(tmp_path / "t.nc")
    data = open(path, "rb").read()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 2])
    with pytest.raises(sk.DamagedFileError, match="cut.nc' is damaged"):
        sk.open_trajectory(tmp_path / "cut.nc")


def test_foreign_netcdf_and_wrong_attributes(traj, tmp_path):
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(tmp_path / "foreign.nc")
    with pytest.raises(ValueError, match="not an spdekit trajectory: attribute 'spdekit_run' is missing"):
        sk.open_trajectory(tmp_path / "foreign.nc")
    path = traj.to_netcdf(tmp_path / "t.nc")
    with netCDF4.Dataset(path, "a") as nc:
        nc.setncattr("spdekit_run", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        sk.open_trajectory(path)
    path = traj.to_netcdf(tmp_path / "t2.nc")
    with netCDF4.Dataset(path, "a") as nc:
        meta = json.loads(nc.getncattr("spdekit_run"))
        meta["spde"]["lambda1"] = {"schedule": "anisotropy_ramp", "k": 0.5}
        nc.setncattr("spdekit_run", json.dumps(meta))
    with pytest.raises(ValueError, match="cannot rebuild the SPDE"):
        sk.open_trajectory(path)


def test_write_is_atomic(traj, tmp_path, monkeypatch):
    """A failing write leaves no half-written file behind (and keeps an older file intact)."""
    path = tmp_path / "t.nc"
    traj.to_netcdf(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        traj.to_netcdf(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.nc"]


def test_streamed_file_equals_the_returned_trajectory(tmp_path):
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u0 = np.random.default_rng(0).uniform(0, 1, (2, 1, 16, 16))
    tr = sk.simulate(spde, u0, 0.0, 0.05, 1e-3, save_every=10, seed=1, out=tmp_path / "s.nc")
    back = sk.open_trajectory(tmp_path / "s.nc")
    np.testing.assert_array_equal(back.states, tr.states)
    np.testing.assert_array_equal(back.times, tr.times)
    assert back.completed and back.spde == spde and back.seed == 1


def test_streamed_divergence_records_where_it_stopped(tmp_path):
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.0, lambda2=float("inf"))
    u0 = np.random.default_rng(1).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as info:
        sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), save_every=1, out=tmp_path / "d.nc")
    back = sk.open_trajectory(tmp_path / "d.nc")
    assert not back.completed and back.stopped_at["step"] == info.value.step
    np.testing.assert_array_equal(back.states, info.value.trajectory.states)


KILL_SCRIPT = """
import sys, numpy as np, spdekit as sk
spde = sk.AnisotropicSPDE.paper_anisotropic(32)
u0 = np.random.default_rng(0).uniform(0, 1, (2, 1, 32, 32))
sk.simulate(spde, u0, 0.0, 2.0, 1e-4, save_every=20, seed=0, out=sys.argv[1])
"""


def test_a_killed_simulation_keeps_a_valid_partial_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "killed.nc"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until a few states are on disk
            time.sleep(0.5)
            if path.exists():
                try:
                    if len(sk.open_trajectory(path)) >= 3:
                        break
                except (ValueError, OSError):
                    pass
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    back = sk.open_trajectory(path)
    assert 3 <= len(back) < 1001
    assert not back.completed and back.integrity == "verified"
    assert back.stopped_at == {"step": 20 * (len(back) - 1), "time": back.times[-1], "reason": "interrupted"}
    assert np.isfinite(back.states).all()
    np.testing.assert_allclose(back.times, np.arange(len(back)) * 20e-4, rtol=1e-12)
    # the saved part is exactly the run's: it continues as the uninterrupted run does
    ref = sk.simulate(back.spde, back.states[0], 0.0, float(back.times[-1]), 1e-4, save_every=20, seed=0)
    np.testing.assert_array_equal(back.states[-1], ref.final)
