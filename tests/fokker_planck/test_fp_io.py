"""netCDF export of density trajectories (spdekit conventions: CF attributes, JSON run description,
atomic write)."""

import json

import numpy as np
import pytest
import xarray as xr

from spdekit.fokker_planck import BoxGrid, NonlinearFokkerPlanck, StructurePreservingScheme, open_density_trajectory
from spdekit.trajectory import META_ATTR


@pytest.mark.parametrize("grid", [BoxGrid(31, 4.0), BoxGrid((9, 11), (3.0, 4.0))])
def test_netcdf_round_trip_is_lossless(tmp_path, grid):
    model = NonlinearFokkerPlanck(sigma=0.9, lam=1.1, gamma=2.5)
    f0 = grid.cell_averages(lambda *c: np.exp(-sum((x - 0.3) ** 2 for x in c)))
    traj = StructurePreservingScheme(model, grid).solve(f0, 1.0, 0.1, save_every=2, attrs={"note": "test"})
    path = traj.to_netcdf(tmp_path / "sub" / "traj.nc")
    back = open_density_trajectory(path)
    np.testing.assert_array_equal(back.densities, traj.densities)
    np.testing.assert_array_equal(back.times, traj.times)
    assert back.grid == grid and back.model == model
    assert back.run == json.loads(json.dumps(traj.run)) and back.attrs == {"note": "test"}
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.10"
        meta = json.loads(ds.attrs[META_ATTR])
        assert meta["model"]["gamma"] == 2.5 and meta["run"]["method"] == "semi-implicit"
        assert ds["f"].dims == ("time",) + ("y", "x")[-grid.dim:]
        assert ds["x"].attrs["axis"] == "X" and ds["time"].attrs["axis"] == "T"
        np.testing.assert_allclose(ds["mass"].values, traj.masses(), rtol=1e-14)
    assert not list((tmp_path / "sub").glob(".tmp-*"))  # the temporary file was renamed away


def test_open_rejects_foreign_files(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"a": ("t", np.arange(3.0))}).to_netcdf(path)
    with pytest.raises(ValueError, match="not an spdekit density trajectory"):
        open_density_trajectory(path)
    with pytest.raises(FileNotFoundError):
        open_density_trajectory(tmp_path / "missing.nc")


def test_interpolation_in_time_for_forward_and_reverse_trajectories():
    from spdekit.fokker_planck import DensityTrajectory

    grid = BoxGrid(5, 1.0)
    dens = np.stack([np.full(5, v) for v in (1.0, 2.0, 4.0)])
    fwd = DensityTrajectory(np.array([0.0, 1.0, 3.0]), dens, grid, NonlinearFokkerPlanck())
    rev = DensityTrajectory(np.array([3.0, 1.0, 0.0]), dens[::-1], grid, NonlinearFokkerPlanck())
    for traj in (fwd, rev):
        np.testing.assert_allclose(traj.at(2.0), 3.0)
        np.testing.assert_allclose(traj.at(0.5), 1.5)
        np.testing.assert_allclose(traj.at(-1.0), 1.0)
        np.testing.assert_allclose(traj.at(9.0), 4.0)


def test_run_description_is_strict_json(tmp_path):
    """Non-finite numbers in the run description are written as strings (RFC 8259 has no Infinity) and read back
    as floats."""
    grid = BoxGrid(15, 3.0)
    model = NonlinearFokkerPlanck(sigma=0.9, lam=1.1, gamma=2.5)
    traj = StructurePreservingScheme(model, grid).solve(grid.cell_averages(lambda x: np.exp(-x**2)), 0.2, 0.1,
                                                        attrs={"horizon": float("inf")})
    path = traj.to_netcdf(tmp_path / "traj.nc")
    with xr.open_dataset(path) as ds:
        meta = json.loads(ds.attrs[META_ATTR], parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert meta["attrs"]["horizon"] == "inf"
    assert open_density_trajectory(path).attrs == {"horizon": float("inf")}
