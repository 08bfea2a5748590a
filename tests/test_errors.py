"""Every bad input of the core issue's item 11 gives a clear error naming the parameter and range."""

import numpy as np
import pytest

import spdekit as sk
from spdekit import schedules as S
from spdekit.config import ConfigError, build, load_config

INF = float("inf")


def _spde(**kw):
    base = dict(alpha1=1.0, lambda1=1.0, alpha2=0.1, lambda2=INF)
    base.update(kw)
    return sk.AnisotropicSPDE(**base)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_initial_data(bad):
    u0 = np.zeros((1, 1, 8, 8))
    u0[0, 0, 3, 4] = bad
    with pytest.raises(ValueError, match="u0 must be finite; it contains"):
        sk.simulate(_spde(), u0, 0.0, 0.01, 1e-3)


@pytest.mark.parametrize("name", ["alpha1", "alpha2"])
def test_negative_alpha(name):
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        _spde(**{name: -0.5})
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        _spde(**{name: S.Polynomial(-1.0, 2.0, 1.0, 1.0)})


@pytest.mark.parametrize("name", ["lambda1", "lambda2"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_lambda_not_positive(name, value):
    with pytest.raises(ValueError, match=rf"{name} must lie in \(0, inf\]"):
        _spde(**{name: value})


def test_schedule_parameters():
    with pytest.raises(ValueError, match=r"Geometric vmin must lie in \(0, inf\)"):
        S.Geometric(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"AnisotropyRamp k must lie in \(0, inf\)"):
        S.AnisotropyRamp(0.1, -1.0, 1.0)
    with pytest.raises(TypeError, match="must be a real number"):
        S.Constant("fast")


def test_negative_correlation_length():
    with pytest.raises(ValueError, match=r"correlation_length must lie in \[0, inf\)"):
        _spde(correlation_length=-1.0)


@pytest.mark.parametrize("t0,t1,dt,msg", [
    (0.0, 1.0, 0.0, "dt must be > 0"),
    (0.0, 1.0, -1e-3, "dt must be > 0"),
    (1.0, 1.0, 1e-3, "t1 must be > t0"),
    (1.0, 0.5, 1e-3, "t1 must be > t0"),
    (0.0, 1.0, 0.3, "dt must divide t1 - t0"),
    (0.0, 1.0, float("nan"), "dt must be a real number, got NaN"),
])
def test_bad_times(t0, t1, dt, msg):
    with pytest.raises(ValueError, match=msg):
        sk.simulate(_spde(), np.zeros((8, 8)), t0, t1, dt)


@pytest.mark.parametrize("shape", [(8,), (1, 8, 8), (1, 1, 1, 8, 8)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"u0 must have rank 2 \(H, W\) or 4 \(batch, channels, H, W\)"):
        sk.simulate(_spde(), np.zeros(shape), 0.0, 0.01, 1e-3)
    with pytest.raises(ValueError, match="u must have rank 2"):
        _spde().drift(0.0, np.zeros(shape))


def test_grid_too_small_and_integer_data():
    with pytest.raises(ValueError, match=r"Grid shape\[1\] \(W\) must be an integer >= 3"):
        sk.simulate(_spde(), np.zeros((8, 2)), 0.0, 0.01, 1e-3)
    with pytest.raises(TypeError, match="u0 must be a float32 or float64 array"):
        sk.simulate(_spde(), np.zeros((8, 8), dtype=np.uint8), 0.0, 0.01, 1e-3)


def test_unknown_backend_stencil_solver():
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'numpy', 'numba', 'cupy'; got 'fortran'"):
        sk.simulate(_spde(), np.zeros((8, 8)), 0.0, 0.01, 1e-3, backend="fortran")
    with pytest.raises(ValueError, match="stencil must be one of"):
        _spde(stencil="upwind")
    with pytest.raises(ValueError, match="norm must be one of 'l2', 'rms'"):
        sk.TamedEulerMaruyama(norm="max")
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, inf\)"):
        sk.TamedEulerMaruyama(gamma=0)
    with pytest.raises(TypeError, match="solver must be an spdekit Solver"):
        sk.simulate(_spde(), np.zeros((8, 8)), 0.0, 0.01, 1e-3, solver="tamed")


def test_dt_above_stability_bound_warns_with_the_bound():
    spde = _spde(alpha1=S.Geometric(0.5, 64.0, 2.0))
    msg = r"exceeds the explicit stability bound h\^2/\(4 max alpha1\) = 0.003906"
    with pytest.warns(sk.StabilityWarning, match=msg):
        sk.simulate(spde, np.zeros((8, 8)), 0.0, 2.0, 0.01)
    # below the bound: no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", sk.StabilityWarning)
        sk.simulate(spde, np.zeros((8, 8)), 0.0, 0.1, 1e-3)


def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


GOOD = """
[spde]
preset = "paper_anisotropic"
[initial]
image = "camera"
size = 16
[run]
dt = 1e-3
"""


def test_good_config_builds(tmp_path):
    cfg = build(load_config(_write(tmp_path, GOOD)))
    assert cfg.u0.shape == (1, 1, 16, 16) and cfg.spde.alpha1.vmax == 32.0


@pytest.mark.parametrize("text,msg", [
    (GOOD + "\n[extra]\nx = 1\n", r"unknown section\(s\) \['extra'\]"),
    (GOOD.replace("dt = 1e-3", "dt = 1e-3\nsteps = 10"), r"unknown key run.steps; allowed"),
    (GOOD.replace("size = 16", "size = 'big'"), r"initial.size must be int or \[H, W\]; got str 'big'"),
    (GOOD.replace("dt = 1e-3", "dt = '1e-3'"), r"run.dt must be time step > 0; got str"),
    (GOOD.replace("dt = 1e-3", "dt = 1e-3\nseed = true"), r"run.seed must be random seed; got bool"),
    (GOOD.replace('preset = "paper_anisotropic"', 'preset = "vesde"'), "spde.preset must be one of"),
    (GOOD.replace("[run]\ndt = 1e-3", "[run]\nseed = 1"), r"missing key run.dt"),
    (GOOD.replace('image = "camera"', 'image = "no/such/file.png"'),
     "initial.image: image 'no/such/file.png' is neither"),
    (GOOD + "alpha1 = 3.0\n", "unknown key run.alpha1"),
    (GOOD.replace('preset = "paper_anisotropic"', 'preset = "custom"\nalpha1 = -1\nlambda1 = inf\n'
                  'alpha2 = 0.1\nlambda2 = inf'), "alpha1 must be >= 0"),
    ("[spde\npreset=1", "not valid TOML"),
    (GOOD.replace("dt = 1e-3", "dt = -1e-3"), r"run.dt must be > 0; got -0.001"),
    (GOOD.replace("dt = 1e-3", "dt = 1e-3\nseed = -1"), r"run.seed must be an integer >= 0; got -1"),
    (GOOD.replace("dt = 1e-3", "dt = 0.01"),
     r"run.dt = 0.01 exceeds the explicit stability bound h\^2/\(4 max alpha1\) = 0.007812 .*\(e.g. dt = 0.005\) "
     r"or set run.allow_unstable_dt = true"),
    (GOOD + "T = 0.0\n", "unknown key run.T"),
    (GOOD.replace('preset = "paper_anisotropic"', 'preset = "paper_anisotropic"\nT = 0.0'), "spde.T must be"),
    (GOOD.replace('preset = "paper_anisotropic"', 'preset = "pure_noise"\nalpha2 = 1.0\nalpha1 = 1.0'),
     "spde.alpha1: preset 'pure_noise' takes spde.alpha2 only"),
    (GOOD.replace("size = 16", "size = 16\nchannels = 2"), "initial.channels must be 1 or 3"),
])
def test_bad_configs(tmp_path, text, msg):
    with pytest.raises(ConfigError, match=msg):
        build(load_config(_write(tmp_path, text)))


def test_unstable_dt_runs_only_when_allowed(tmp_path):
    cfg = build(load_config(_write(tmp_path, GOOD.replace("dt = 1e-3", "dt = 0.01\nallow_unstable_dt = true"))))
    assert cfg.dt == 0.01 and cfg.spde.stability_bound(cfg.t0, cfg.t1) < cfg.dt


def test_relative_image_path_is_relative_to_the_config(tmp_path, monkeypatch):
    """A config's image path is found next to the config, whatever the working directory."""
    (tmp_path / "conf").mkdir()
    np.save(tmp_path / "conf" / "img.npy", np.linspace(0, 1, 64).reshape(8, 8))
    cfg = tmp_path / "conf" / "c.toml"
    cfg.write_text(GOOD.replace('image = "camera"', 'image = "img.npy"').replace("size = 16", "size = 8"))
    monkeypatch.chdir(tmp_path)
    run = build(load_config(cfg))
    assert run.raw["initial"]["image"] == str(tmp_path / "conf" / "img.npy") and run.u0.shape == (1, 1, 8, 8)
