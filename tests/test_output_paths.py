"""Nothing is written outside the chosen output: config-supplied output folders that leave the
working directory are refused; the CLIs write only the files they are told to (plus atomic
temporary files next to them, removed again)."""

import os
from pathlib import Path

import pytest
from test_cli import CONFIG as SPDEKIT_CONFIG
from test_genmodel_train_cli import TINY

from genmodel.cli import main as genmodel_main
from genmodel.train import Trainer, check_output_dir, load_config
from spdekit.cli import main as spdekit_main


def _files(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("bad", ["../x", "runs/../../x", "/tmp/elsewhere", "", "  ", ".."])
def test_config_output_dir_outside_is_refused(tmp_path, monkeypatch, capsys, bad):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = work / "c.toml"
    cfg.write_text(TINY + f"\n[output]\ndir = {bad!r}\n".replace("'", '"'))
    assert genmodel_main(["train", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "[output] dir must be" in err and ("--out DIR" in err or "non-empty" in err)
    assert _files(tmp_path) == {"work/c.toml"}  # nothing written anywhere
    with pytest.raises(ValueError, match=r"\[output\] dir"):
        check_output_dir(bad)


def test_trainer_refuses_unchecked_config_dict(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    cfg = load_config(p)
    cfg["output"]["dir"] = "../escape"  # edited after load_config checked it
    with pytest.raises(ValueError, match=r"no '\.\.'"):
        Trainer(cfg, log=lambda *_: None)


def test_genmodel_writes_only_inside_its_folder(tmp_path, tmp_path_factory, monkeypatch):
    """A config folder below the working directory is used as given; train writes last.pt and
    model.pt there and nothing else; sample and evaluate write only their --out/--save-samples."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + '\n[output]\ndir = "runs/tiny"\n')
    before = _files(tmp_path)
    assert genmodel_main(["train", str(cfg), "--quiet"]) == 0
    assert _files(tmp_path) - before == {"runs/tiny/last.pt", "runs/tiny/model.pt"}
    assert genmodel_main(["sample", "runs/tiny/model.pt", "--n", "2", "--steps", "8", "--out", "s/g.npz",
                          "--quiet"]) == 0
    assert _files(tmp_path) - before == {"runs/tiny/last.pt", "runs/tiny/model.pt", "s/g.npz"}
    with pytest.raises(SystemExit, match="--out must end in"):  # checked before any work
        genmodel_main(["sample", "runs/tiny/model.pt", "--out", "g.txt"])
    # an explicit --out may be anywhere (the user's choice)
    other = tmp_path_factory.mktemp("elsewhere") / "run"
    assert genmodel_main(["train", str(cfg), "--quiet", "--steps", "2", "--no-export", "--out", str(other)]) == 0
    assert _files(other) == {"last.pt"}


def test_spdekit_cli_writes_only_out(tmp_path, monkeypatch):
    """spdekit's config names no output (only the initial image, read); simulate and plot write
    exactly --out, their atomic temporary files are gone."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(SPDEKIT_CONFIG.replace("size = 24", "size = 8").replace("T = 0.5", "T = 0.2"))
    before = _files(tmp_path)
    assert spdekit_main(["simulate", "run.toml", "--out", "a/traj.nc", "--no-progress"]) == 0
    assert spdekit_main(["plot", "a/traj.nc", "--out", "a/fig.png"]) == 0
    assert _files(tmp_path) - before == {"a/traj.nc", "a/fig.png"}
    assert not any(name.startswith(".tmp") for name in os.listdir(tmp_path / "a"))
