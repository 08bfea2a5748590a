import numpy as np
import pytest

import spdekit as sk
from spdekit.cli import main

CONFIG = """
[spde]
preset = "paper_anisotropic"
T = 0.5
[initial]
image = "astronaut"
size = 24
channels = 3
batch = 2
[run]
dt = 1e-3
save_every = 100
seed = 4
"""


def test_simulate_then_plot(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "traj.nc"
    assert main(["simulate", str(cfg), "--out", str(out), "--no-progress"]) == 0
    traj = sk.open_trajectory(out)
    assert traj.states.shape == (6, 2, 3, 24, 24) and traj.states.dtype == np.float32
    assert traj.spde == sk.AnisotropicSPDE.paper_anisotropic(24, T=0.5)
    assert traj.seed == 4 and traj.attrs["initial_image"] == "astronaut"
    png = tmp_path / "fig.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_config_exits_2_with_message(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace("seed = 4", "seeds = 4"))
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "x.nc")]) == 2
    assert "unknown key run.seeds" in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists()


def test_divergence_writes_the_partial_trajectory(tmp_path, capsys):
    cfg = tmp_path / "blowup.toml"
    cfg.write_text("""
[spde]
preset = "custom"
alpha1 = 100.0
lambda1 = inf
alpha2 = 0.0
lambda2 = inf
[initial]
image = "camera"
size = 8
[run]
dt = 0.125
t1 = 125.0
solver = "em"
save_every = 1
""")
    out = tmp_path / "partial.nc"
    with pytest.warns(sk.StabilityWarning):
        assert main(["simulate", str(cfg), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "diverged at step" in err and "partial trajectory written" in err
    assert not sk.open_trajectory(out).completed


def test_plot_of_a_non_trajectory(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("garbage")
    assert main(["plot", str(bad), "--out", str(tmp_path / "f.png")]) == 2
    assert "not a readable netCDF file" in capsys.readouterr().err
