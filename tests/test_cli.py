import numpy as np
import pytest
from _signals import sigint_default

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
allow_unstable_dt = true
""")
    out = tmp_path / "partial.nc"
    assert main(["simulate", str(cfg), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "warning: run.dt = 0.125 exceeds the explicit stability bound" in lines[0]
    assert "diverged at step" in lines[1] and "partial trajectory written" in lines[1]
    traj = sk.open_trajectory(out)
    assert not traj.completed and traj.stopped_at["reason"] == "non-finite state"


@pytest.mark.parametrize("solver", ["theta", "aos", '{solver = "linearly_implicit_theta", theta = 1.0}'])
def test_a_stiff_stable_solver_takes_a_step_above_the_explicit_bound(tmp_path, capsys, solver):
    """run.solver = "theta"/"aos" at 20x the explicit bound: no refusal, no warning, a finite run; the
    same dt with the explicit solver is refused, naming the bound."""
    text = """
[spde]
preset = "paper_anisotropic"
T = 2.0
[initial]
image = "camera"
size = 16
[run]
dt = 0.05
save_every = 20
"""
    cfg = tmp_path / "stiff.toml"
    cfg.write_text(text + f"solver = {solver if solver.startswith('{') else repr(solver)}\n".replace("'", '"'))
    out = tmp_path / "stiff.nc"
    assert main(["simulate", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "exceeds the explicit stability bound" not in capsys.readouterr().err
    traj = sk.open_trajectory(out)
    assert traj.completed and "unstable_dt" not in traj.attrs
    assert len(traj) > 1 and np.isfinite(traj.states).all() and np.abs(traj.states).max() < 2
    cfg.write_text(text + 'solver = "tamed"\n')
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "x.nc"), "--no-progress"]) == 2
    assert "exceeds the explicit stability bound" in capsys.readouterr().err


def test_plot_of_a_non_trajectory(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("garbage")
    assert main(["plot", str(bad), "--out", str(tmp_path / "f.png")]) == 2
    assert "not a readable netCDF file" in capsys.readouterr().err


LONG_RUN = """
[spde]
preset = "paper_anisotropic"
T = 2.0
[initial]
image = "camera"
size = 16
[run]
dt = 1e-5
save_every = 500
backend = "numpy"
"""


@pytest.mark.parametrize("sig,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_keeps_the_trajectory_marked_interrupted(tmp_path, sig, status):
    """Ctrl-C (or SIGTERM) in `spdekit simulate`: one line, exit status 130 (143), no traceback; the
    states saved so far stay in --out, which is marked interrupted."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG_RUN)
    out = tmp_path / "long.nc"
    proc = subprocess.Popen([sys.executable, "-m", "spdekit.cli", "simulate", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NUMBA_NUM_THREADS": "1"}, preexec_fn=sigint_default)
    os.set_blocking(proc.stderr.fileno(), False)
    err, deadline = b"", time.monotonic() + 120
    while not re.search(rb"\|\s*[1-9]\d*/200000 \[", err):  # the progress bar reports steps
        assert proc.poll() is None and time.monotonic() < deadline, err.decode()
        time.sleep(0.02)
        err += proc.stderr.read() or b""
    proc.send_signal(getattr(signal, sig))
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == status
    text = (err + rest).decode().replace("\r", "\n")
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert re.fullmatch(rf"spdekit simulate: interrupted \({sig}\); \d+ saved states? up to t = \S+ (are|is) kept "
                        rf"in {re.escape(str(out))}, marked interrupted \(completed = 0\)", last), last
    traj = sk.open_trajectory(out)
    assert not traj.completed and traj.stopped_at["reason"] == "interrupted" and len(traj.times) >= 1


def test_plot_creates_folders_and_checks_columns(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.replace("size = 24", "size = 8").replace("T = 0.5", "T = 0.2"))
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "t.nc"), "--no-progress"]) == 0
    png = tmp_path / "new" / "folder" / "f.png"
    assert main(["plot", str(tmp_path / "t.nc"), "--out", str(png), "--columns", "2"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="max_columns must be an integer >= 1"):
        from spdekit.plotting import plot_trajectory

        plot_trajectory(sk.open_trajectory(tmp_path / "t.nc"), max_columns=0)


def _parsers(parser):
    """The parser and its sub-command parsers."""
    import argparse

    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out += list(action.choices.values())
    return out


@pytest.mark.parametrize("cli", ["spdekit", "genmodel"])
def test_every_option_has_help_with_its_default_and_version(cli, capsys):
    """`--help` describes every option and states its default; `--version` exists (issue 24, item 7)."""
    import argparse
    import importlib

    mod = importlib.import_module(f"{cli}.cli")
    for parser in _parsers(mod.build_parser()):
        fmt = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            assert action.help, (parser.prog, action.dest)
            text = fmt._expand_help(action) if hasattr(fmt, "_expand_help") else action.help
            if action.option_strings and action.default is not None and action.default is not False:
                assert "(default" in text or "default:" in text, (parser.prog, action.dest, text)
        parser.format_help()  # every help text formats (no stray %)
    with pytest.raises(SystemExit) as exc:
        mod.main(["--version"])
    assert exc.value.code == 0 and "spdekit 0.1" in capsys.readouterr().out


def test_plot_refuses_a_truncated_file_and_recovers_on_request(tmp_path, capsys):
    """The reproduction of issue 24: a trajectory cut short was plotted as complete. Now it is refused in one line
    naming the first bad state; --recover plots the valid states and says so."""
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "traj.nc"
    assert main(["simulate", str(cfg), "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    cut = tmp_path / "cut.nc"
    data = out.read_bytes()
    cut.write_bytes(data[:len(data) - len(data) // 12])  # inside the last saved state
    capsys.readouterr()
    png = tmp_path / "fig.png"
    assert main(["plot", str(cut), "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is damaged" in err and "saved state 5" in err and "--recover plots them" in err
    assert not png.exists()
    assert main(["plot", str(cut), "--out", str(png), "--recover"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "plotted its 5 valid states" in err and png.exists()


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_simulate_threads_option(tmp_path, capsys, bad):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    with pytest.raises(SystemExit) as info:
        main(["simulate", str(cfg), "--out", str(tmp_path / "t.nc"), "--threads", bad])
    assert info.value.code == 2 and "--threads" in capsys.readouterr().err
