"""Trajectory files verify every saved state: truncated or corrupted files are named, with their valid part."""

import json
import os

import numpy as np
import pytest

import spdekit as sk
from spdekit.store import META_ATTR, TrajectoryWriter, from_json, to_json

SPDE = sk.AnisotropicSPDE.paper_anisotropic(16)  # lambda2 = inf: its description holds a non-finite float


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A streamed (netCDF-3) file, a compressed and an uncompressed netCDF-4 file, of 6 states each."""
    d = tmp_path_factory.mktemp("traj")
    u0 = np.random.default_rng(0).uniform(0, 1, (2, 1, 16, 16))
    tr = sk.simulate(SPDE, u0, 0.0, 0.05, 1e-3, save_every=10, seed=1, out=d / "streamed.nc")
    return tr, {"streamed": d / "streamed.nc", "nc4": tr.to_netcdf(d / "nc4.nc"),
                "nc4-raw": tr.to_netcdf(d / "nc4-raw.nc", compression=0)}


def damaged(path, tmp_path, keep=None, flip=None):
    data = bytearray(open(path, "rb").read())
    if flip is not None:
        data[flip] ^= 0xFF
    out = tmp_path / "damaged.nc"
    out.write_bytes(bytes(data[:keep]))
    return out


def assert_prefix(back, tr, n):
    assert len(back) == n and back.integrity == "recovered" and not back.completed
    np.testing.assert_array_equal(back.states, tr.states[:n])
    np.testing.assert_array_equal(back.times, tr.times[:n])
    assert back.stopped_at == {"step": 10 * (n - 1), "time": tr.times[n - 1], "reason": "damaged file"}
    assert back.attrs["recovered_from"]["first_bad_state"] == n and back.attrs["recovered_from"]["states_in_file"] == 6


def test_intact_files_are_verified(files):
    tr, paths = files
    for path in paths.values():
        back = sk.open_trajectory(path)
        assert back.integrity == "verified" and back.completed and "verified" in repr(back)
        np.testing.assert_array_equal(back.states, tr.states)


@pytest.mark.parametrize("where", ["last state", "middle"])
def test_a_truncated_streamed_file_names_its_first_bad_state_and_recovers_the_rest(files, tmp_path, where):
    tr, paths = files
    size = os.path.getsize(paths["streamed"])
    cut = damaged(paths["streamed"], tmp_path, keep=size - 1000 if where == "last state" else size // 2)
    with pytest.raises(sk.DamagedFileError) as info:
        sk.open_trajectory(cut)
    msg = str(info.value)
    assert "\n" not in msg and str(cut) in msg and "recover=True" in msg
    back = sk.open_trajectory(cut, recover=True)
    n = len(back)
    assert f"saved state {n} " in msg and f"{n} of its 6 states {'is' if n == 1 else 'are'} valid" in msg
    assert n == 5 if where == "last state" else 1 <= n < 5
    assert_prefix(back, tr, n)
    # the recovered part is a trajectory like any other: written again, it reads back verified
    again = sk.open_trajectory(back.to_netcdf(tmp_path / "again.nc"))
    assert again.integrity == "verified" and again.stopped_at["reason"] == "damaged file"


@pytest.mark.parametrize("kind", ["streamed", "nc4", "nc4-raw"])
@pytest.mark.parametrize("keep", [0, 3, 100, 2000, -1])
def test_files_cut_in_the_header_or_anywhere_in_netcdf4_are_reported_in_one_line(files, tmp_path, kind, keep):
    _, paths = files
    if kind == "streamed" and keep == -1:
        return  # a netCDF-3 file cut in its last byte: covered above
    cut = damaged(paths[kind], tmp_path, keep=keep)
    for recover in (False, True):  # nothing to recover
        with pytest.raises(sk.DamagedFileError, match=r"damaged\.nc' is damaged \(truncated or corrupted\)") as info:
            sk.open_trajectory(cut, recover=recover)
        assert "\n" not in str(info.value) and "recover=True" not in str(info.value)


@pytest.mark.parametrize("kind, order", [("streamed", ">"), ("nc4-raw", "<")])
def test_a_flipped_byte_inside_a_state(files, tmp_path, kind, order):
    tr, paths = files
    data = open(paths[kind], "rb").read()
    at = data.find(tr.states[3].astype(order + "f8").tobytes())
    assert at > 0
    bad = damaged(paths[kind], tmp_path, flip=at + 1234)
    with pytest.raises(sk.DamagedFileError, match=r"saved state 3 \(recorded t = 0.03\) fails its checksum; 3 of"):
        sk.open_trajectory(bad)
    assert_prefix(sk.open_trajectory(bad, recover=True), tr, 3)


def test_a_corrupted_compressed_chunk(files, tmp_path):
    tr, paths = files
    size = os.path.getsize(paths["nc4"])
    for offset in range(size // 3, size, size // 7):  # compressed state chunks fill most of the file
        bad = damaged(paths["nc4"], tmp_path, flip=offset)
        try:
            back = sk.open_trajectory(bad)
        except sk.DamagedFileError as exc:
            assert "\n" not in str(exc)
            continue
        np.testing.assert_array_equal(back.states, tr.states)  # the byte was not one of the states'


def test_an_interrupted_run_opens_as_incomplete_with_its_last_step(tmp_path, monkeypatch):
    append = TrajectoryWriter.append

    def append_then_interrupt(self, t, state):
        append(self, t, state)
        if self.n == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrajectoryWriter, "append", append_then_interrupt)
    u0 = np.random.default_rng(0).uniform(0, 1, (1, 1, 16, 16))
    with pytest.raises(KeyboardInterrupt):
        sk.simulate(SPDE, u0, 0.0, 0.05, 1e-3, save_every=10, seed=1, out=tmp_path / "i.nc")
    back = sk.open_trajectory(tmp_path / "i.nc")
    assert len(back) == 3 and not back.completed and back.integrity == "verified"
    assert back.stopped_at == {"step": 20, "time": 0.02, "reason": "interrupted"}


def test_files_written_before_checksums_open_unverified(files, tmp_path):
    """The old format: no u_crc32, bare Infinity in the JSON, no stop_reason; an interrupted one
    (completed 0, step -1) opens as incomplete at its last saved state."""
    tr, _ = files
    for completed in (True, False):
        ds = tr.to_xarray()
        meta = json.loads(ds.attrs[META_ATTR])
        meta["spde"]["lambda2"] = {"schedule": "constant", "v": float("inf")}
        ds.attrs[META_ATTR] = json.dumps(meta)
        assert "Infinity" in ds.attrs[META_ATTR]
        del ds.attrs["stop_reason"], ds.attrs["stop_reason_meanings"]
        ds.attrs.update(completed=np.int32(completed), stopped_at_step=np.int64(-1), stopped_at_time=np.nan)
        ds.to_netcdf(tmp_path / "old.nc")
        back = sk.open_trajectory(tmp_path / "old.nc")
        assert back.integrity == "unverified" and "unverified" in repr(back) and back.spde == SPDE
        np.testing.assert_array_equal(back.states, tr.states)
        assert back.completed == completed
        if not completed:
            assert back.stopped_at == {"step": 50, "time": 0.05, "reason": "interrupted"}


def test_divergence_keeps_its_reason(tmp_path):
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.0, lambda2=float("inf"))
    u0 = np.random.default_rng(1).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as info:
        sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), save_every=1, out=tmp_path / "d.nc")
    expected = {"step": info.value.step, "time": info.value.time, "reason": "non-finite state"}
    assert sk.open_trajectory(tmp_path / "d.nc").stopped_at == expected
    assert sk.open_trajectory(info.value.trajectory.to_netcdf(tmp_path / "d4.nc")).stopped_at == expected


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_follow_the_umask(files, tmp_path, mask):
    tr, _ = files
    old = os.umask(mask)
    try:
        path = tr.to_netcdf(tmp_path / "m.nc")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_json_attributes_are_strict_and_keep_non_finite_values(files):
    _, paths = files
    import netCDF4

    for path in paths.values():
        with netCDF4.Dataset(path) as nc:
            texts = [nc.getncattr(META_ATTR)] + [nc.getncattr(k) for k in nc.ncattrs() if k.startswith("spde_lambda")]
        for text in texts:
            json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
        assert sk.open_trajectory(path).spde == SPDE
    values = {"a": [float("inf"), -float("inf")], "b": {"c": 1.5, "d": "x"}}
    assert to_json(values) == '{"a": ["inf", "-inf"], "b": {"c": 1.5, "d": "x"}}'
    assert from_json(to_json(values)) == values == from_json('{"a": [Infinity, -Infinity], "b": {"c": 1.5, "d": "x"}}')
    assert np.isnan(from_json(to_json({"n": float("nan")}))["n"])


def test_damaged_file_error_is_a_value_error():
    assert issubclass(sk.DamagedFileError, ValueError) and "DamagedFileError" in sk.__all__


def test_an_interruption_between_saves_records_the_step_reached(tmp_path):
    """Ctrl-C between two saved states: the file keeps the saved ones and records the step the run had reached."""
    calls = {"n": 0}

    class Interrupting(sk.TamedEulerMaruyama):
        def step(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 16:  # the 16th step: 15 completed
                raise KeyboardInterrupt
            return super().step(*a, **k)

    u0 = np.random.default_rng(0).uniform(0, 1, (1, 1, 16, 16))
    with pytest.raises(KeyboardInterrupt):
        sk.simulate(SPDE, u0, 0.0, 0.05, 1e-3, solver=Interrupting(), save_every=10, seed=1,
                    out=tmp_path / "i.nc")
    back = sk.open_trajectory(tmp_path / "i.nc")
    assert len(back) == 2 and not back.completed  # t = 0 and step 10
    assert back.stopped_at["step"] == 15 and back.stopped_at["time"] == pytest.approx(0.015)
    assert back.stopped_at["reason"] == "interrupted"
