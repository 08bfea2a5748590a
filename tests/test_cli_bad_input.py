"""Bad input to both command lines (issue 24, items 4-6), table-driven.

Every case asserts: exit status 2 (1 for a diverged run); exactly one line on stderr,
``PROG COMMAND: error: ...``, naming the option, or the config key with its section; no traceback;
no output file left behind (nor a temporary or probe file). The CLIs run in-process through their
``main(argv)`` (argparse errors and bad outputs raise SystemExit(2) like argparse, the others return
2); a few cases run as real subprocesses. Nothing is trained or sampled: every check happens before
the work (the few cases that need a model share one trained for 2 steps).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_configs import tiny_toml

from genmodel.cli import main as genmodel_main
from spdekit.cli import main as spdekit_main

SPDE_OK = """
[spde]
preset = "paper_anisotropic"
T = 0.2
[initial]
image = "camera"
size = 8
[run]
dt = 0.01
save_every = 5
seed = 0
backend = "numpy"
"""

GEN_OK = tiny_toml(train="""
steps = 2
batch = 8
pool = 16
threads = 1
warmup = 1
device = "cpu"
""", sampling="steps = 5")


def sp(old=None, new=None, add=None):
    """The good spdekit config with ``old`` replaced by ``new`` (and/or ``add`` appended)."""
    text = SPDE_OK
    if old is not None:
        assert old in text, old
        text = text.replace(old, new)
    return text + (add or "")


def gm(old=None, new=None, add=None):
    """The good genmodel config with ``old`` replaced by ``new`` (and/or ``add`` appended)."""
    text = GEN_OK
    if old is not None:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text + (add or "")


def section(name, body):
    """Insert ``body`` at the top of [name] in the genmodel config."""
    return gm(f"[{name}]\n", f"[{name}]\n{body}\n")


IMAGES = '[data]\ndataset = "images"\npath = "{path}"\n'
DIGITS_DATA = '[data]\ndataset = "digits"\nimage_size = 8\n'


def images(path, extra=""):
    return gm(DIGITS_DATA, IMAGES.format(path=path) + extra)


# (id, cli, argv, config text or None, status, substrings of the error line)
# placeholders: {cfg} the config file, {out} the output (must not exist afterwards), {tmp} the case's folder,
# {ro} a folder where no file can be created, {model} a tiny trained model.pt, {afile} a regular file
S, G = "spdekit", "genmodel"
SIM = ["simulate", "{cfg}", "--out", "{out}.nc", "--no-progress"]
TRAIN = ["train", "{cfg}", "--out", "{out}", "--quiet"]
CASES = [
    # ---------------------------------------------------------------- spdekit simulate: the config
    ("sp-unknown-key", S, SIM, sp("seed = 0", "seeds = 0"), 2, ["unknown key run.seeds"]),
    ("sp-unknown-section", S, SIM, sp(add="[extra]\nx = 1\n"), 2, ["unknown section", "extra"]),
    ("sp-dt-string", S, SIM, sp("dt = 0.01", 'dt = "0.01"'), 2, ["run.dt must be", "got str"]),
    ("sp-dt-negative", S, SIM, sp("dt = 0.01", "dt = -1e-3"), 2, ["run.dt must be > 0"]),
    ("sp-dt-zero", S, SIM, sp("dt = 0.01", "dt = 0.0"), 2, ["run.dt must be > 0"]),
    ("sp-dt-not-dividing", S, SIM, sp("dt = 0.01", "dt = 0.015"), 2, ["run.dt must divide"]),
    ("sp-dt-unstable", S, SIM, sp("dt = 0.01", "dt = 0.1"), 2,
     ["run.dt = 0.1 exceeds the explicit stability bound", "0.01562", "allow_unstable_dt"]),
    ("sp-dt-missing", S, SIM, sp("dt = 0.01\n", ""), 2, ["missing key run.dt"]),
    ("sp-seed-negative", S, SIM, sp("seed = 0", "seed = -1"), 2, ["run.seed must be an integer >= 0"]),
    ("sp-seed-float", S, SIM, sp("seed = 0", "seed = 1.5"), 2, ["run.seed must be"]),
    ("sp-seed-bool", S, SIM, sp("seed = 0", "seed = true"), 2, ["run.seed must be", "bool"]),
    ("sp-save-every-zero", S, SIM, sp("save_every = 5", "save_every = 0"), 2, ["run.save_every"]),
    ("sp-backend", S, SIM, sp('backend = "numpy"', 'backend = "fortran"'), 2, ["run.backend"]),
    ("sp-dtype", S, SIM, sp(add='dtype = "float16"\n'), 2, ["run.dtype"]),
    ("sp-t1-before-t0", S, SIM, sp(add="t0 = 0.5\nt1 = 0.2\n"), 2, ["run.t1", "run.t0"]),
    ("sp-t1-inf", S, SIM, sp(add="t1 = inf\n"), 2, ["run.t1 must be finite"]),
    ("sp-solver", S, SIM, sp(add='solver = "rk4"\n'), 2, ["run.solver", "rk4"]),
    ("sp-preset", S, SIM, sp('preset = "paper_anisotropic"', 'preset = "vesde"'), 2, ["spde.preset"]),
    ("sp-preset-plus-alpha1", S, SIM, sp("T = 0.2", "T = 0.2\nalpha1 = 3.0"), 2,
     ["spde.alpha1", "fixes the coefficients"]),
    ("sp-custom-missing", S, SIM, sp('preset = "paper_anisotropic"', 'preset = "custom"\nalpha1 = 1.0'), 2,
     ["spde.lambda1"]),
    ("sp-alpha-negative", S, SIM,
     sp('preset = "paper_anisotropic"', 'preset = "custom"\nalpha1 = -1\nlambda1 = inf\nalpha2 = 0.1\nlambda2 = inf'),
     2, ["spde.alpha1", ">= 0"]),
    ("sp-correlation-negative", S, SIM, sp("T = 0.2", "T = 0.2\ncorrelation_length = -1.0"), 2,
     ["spde.correlation_length"]),
    ("sp-T-zero", S, SIM, sp("T = 0.2", "T = 0.0"), 2, ["spde.T must be"]),
    ("sp-T-string", S, SIM, sp("T = 0.2", 'T = "2"'), 2, ["spde.T must be", "got str"]),
    ("sp-stencil", S, SIM, sp("T = 0.2", 'T = 0.2\nstencil = "upwind"'), 2, ["spde.stencil"]),
    ("sp-image-missing", S, SIM, sp('image = "camera"', 'image = "pics/none.png"'), 2,
     ["initial.image", "pics/none.png", "tried", "relative to the config's folder"]),
    ("sp-image-corrupt", S, SIM, sp('image = "camera"', 'image = "garbage.png"'), 2,
     ["initial.image", "not a readable image file", "readable: PNG"]),
    ("sp-size", S, SIM, sp("size = 8", "size = 2"), 2, ["initial.size"]),
    ("sp-channels", S, SIM, sp("size = 8", "size = 8\nchannels = 2"), 2, ["initial.channels"]),
    ("sp-batch", S, SIM, sp("size = 8", "size = 8\nbatch = 0"), 2, ["initial.batch"]),
    ("sp-value-range", S, SIM, sp("size = 8", "size = 8\nvalue_range = [1.0, 0.0]"), 2, ["initial.value_range"]),
    ("sp-not-toml", S, SIM, "[spde\npreset = 1", 2, ["not valid TOML"]),
    ("sp-config-missing", S, ["simulate", "{tmp}/none.toml", "--out", "{out}.nc"], None, 2, ["none.toml", "not found"]),
    # ---------------------------------------------------------------- spdekit: options and outputs
    ("sp-out-readonly", S, ["simulate", "{cfg}", "--out", "{ro}/t.nc"], sp(), 2, ["--out", "cannot write"]),
    ("sp-out-under-file", S, ["simulate", "{cfg}", "--out", "{afile}/t.nc"], sp(), 2, ["--out", "not a folder"]),
    ("sp-out-folder", S, ["simulate", "{cfg}", "--out", "{tmp}"], sp(), 2, ["--out", "is a folder"]),
    ("sp-out-missing", S, ["simulate", "{cfg}"], sp(), 2, ["--out"]),
    ("plot-columns-zero", S, ["plot", "{tmp}/garbage.nc", "--out", "{out}.png", "--columns", "0"], None, 2,
     ["--columns", ">= 1"]),
    ("plot-columns-word", S, ["plot", "{tmp}/garbage.nc", "--out", "{out}.png", "--columns", "many"], None, 2,
     ["--columns"]),
    ("plot-out-format", S, ["plot", "{tmp}/garbage.nc", "--out", "{out}.xyz"], None, 2, ["--out must end in", ".png"]),
    ("plot-out-readonly", S, ["plot", "{tmp}/garbage.nc", "--out", "{ro}/f.png"], None, 2, ["--out", "cannot write"]),
    ("plot-not-netcdf", S, ["plot", "{tmp}/garbage.nc", "--out", "{out}.png"], None, 2, ["garbage.nc"]),
    ("plot-missing", S, ["plot", "{tmp}/none.nc", "--out", "{out}.png"], None, 2, ["none.nc"]),
    # ---------------------------------------------------------------- spdekit: a diverged run (status 1)
    ("sp-diverged", S, SIM,
     sp('preset = "paper_anisotropic"\nT = 0.2',
        'preset = "custom"\nalpha1 = 100.0\nlambda1 = inf\nalpha2 = 0.0\nlambda2 = inf\nT = 125.0').replace(
         "dt = 0.01", 'dt = 0.125\nsolver = "em"\nallow_unstable_dt = true').replace("save_every = 5",
                                                                                    "save_every = 1"),
     1, ["diverged at step", "partial trajectory written", "run.dt"]),
    # ---------------------------------------------------------------- genmodel train: [process]
    ("gm-process-unknown", G, TRAIN, section("process", "alpha = -1"), 2, ["[process]", "'alpha'"]),
    ("gm-process-alpha1", G, TRAIN, section("process", "alpha1 = 2.0"), 2,
     ["[process] alpha1", "fixes the coefficients", "custom"]),
    ("gm-process-T-string", G, TRAIN, gm("T = 0.1", 'T = "2"'), 2, ["[process] T must be", "not a string"]),
    ("gm-process-dt-negative", G, TRAIN, gm("dt = 0.01", "dt = -1e-3"), 2, ["[process] dt must be"]),
    ("gm-process-dt-above-T", G, TRAIN, gm("dt = 0.01", "dt = 0.5"), 2, ["[process] dt", "T"]),
    ("gm-process-dt-not-dividing", G, TRAIN, gm("dt = 0.01", "dt = 0.03"), 2, ["[process]", "dt must divide"]),
    ("gm-process-preset", G, TRAIN, gm('preset = "paper_anisotropic"', 'preset = "vesde"'), 2, ["[process] preset"]),
    ("gm-process-custom-no-spde", G, TRAIN, gm('preset = "paper_anisotropic"', 'preset = "custom"'), 2,
     ["[process]", "spde"]),
    ("gm-process-stencil-type", G, TRAIN, section("process", "stencil = 3"), 2, ["[process] stencil"]),
    # ---------------------------------------------------------------- genmodel train: [train]
    ("gm-train-batch-string", G, TRAIN, gm("batch = 8", 'batch = "128"'), 2, ["[train] batch", "str"]),
    ("gm-train-batch-zero", G, TRAIN, gm("batch = 8", "batch = 0"), 2, ["[train] batch must be a positive integer"]),
    ("gm-train-seed-negative", G, TRAIN, section("train", "seed = -1"), 2, ["[train] seed must be an integer >= 0"]),
    ("gm-train-ema-string", G, TRAIN, section("train", 'ema = "0.9"'), 2, ["[train] ema"]),
    ("gm-train-ema-one", G, TRAIN, section("train", "ema = 1.0"), 2, ["[train] ema", "[0, 1)"]),
    ("gm-train-lr-zero", G, TRAIN, section("train", "lr = 0.0"), 2, ["[train] lr"]),
    ("gm-train-unknown", G, TRAIN, section("train", "epochs = 3"), 2, ["unknown [train] keys", "epochs"]),
    ("gm-train-device", G, TRAIN, gm('device = "cpu"', 'device = "tpu"'), 2, ["[train] device"]),
    ("gm-train-loss", G, TRAIN, section("train", 'loss = "l2"'), 2, ["[train] loss"]),
    ("gm-train-antithetic", G, TRAIN, section("train", 'antithetic = "yes"'), 2, ["[train] antithetic"]),
    ("gm-train-warmup", G, TRAIN, gm("warmup = 1", "warmup = -1"), 2, ["[train] warmup"]),
    # ---------------------------------------------------------------- genmodel train: [data]
    ("gm-data-holdout-one", G, TRAIN, section("data", "holdout = 1.0"), 2, ["[data] holdout"]),
    ("gm-data-holdout-images", G, TRAIN, images("imgs", "holdout = 1.5\n"), 2, ["[data] holdout", "[0, 1)"]),
    ("gm-data-holdout-all", G, TRAIN, images("two.npz", "holdout = 0.9\n"), 2, ["[data] holdout", "no training"]),
    ("gm-data-seed-negative", G, TRAIN, section("data", "seed = -1"), 2, ["[data] seed must be an integer >= 0"]),
    ("gm-data-size", G, TRAIN, gm("image_size = 8", "image_size = 12"), 2, ["[data] image_size"]),
    ("gm-data-size-string", G, TRAIN, gm("image_size = 8", 'image_size = "8"'), 2, ["[data] image_size", "str"]),
    ("gm-data-unknown", G, TRAIN, section("data", 'folder = "x"'), 2, ["[data]", "folder"]),
    ("gm-data-dataset", G, TRAIN, gm('dataset = "digits"', 'dataset = "mnist"'), 2, ["[data] dataset"]),
    ("gm-data-path-missing", G, TRAIN, images("no_such_folder"), 2,
     ["[data] path", "no_such_folder", "tried", "relative to the config's folder"]),
    ("gm-data-path-key", G, TRAIN, gm(DIGITS_DATA, '[data]\ndataset = "images"\n'), 2, ["[data]", "path"]),
    ("gm-data-mixed-sizes", G, TRAIN, images("imgs_mixed"), 2, ["mixes image sizes", "[data] image_size"]),
    ("gm-data-corrupt-image", G, TRAIN, images("imgs_bad"), 2, ["cannot read image", "readable: PNG"]),
    ("gm-data-grayscale", G, TRAIN, images("imgs", 'grayscale = "no"\n'), 2, ["[data] grayscale"]),
    # ---------------------------------------------------------------- genmodel train: other sections
    ("gm-network-string", G, TRAIN, gm("ch = 8", 'ch = "8"'), 2, ["[network] ch"]),
    ("gm-network-unknown", G, TRAIN, section("network", "width = 8"), 2, ["[network]", "width"]),
    ("gm-network-groups", G, TRAIN, gm("groups = 4", "groups = 3"), 2, ["[network]", "groups"]),
    ("gm-sampling-steps", G, TRAIN, gm("[sampling]\nsteps = 5", "[sampling]\nsteps = 0"), 2, ["[sampling] steps"]),
    ("gm-sampling-predictor", G, TRAIN, section("sampling", 'predictor = "rk4"'), 2, ["[sampling] predictor"]),
    ("gm-prior-replicates", G, TRAIN, gm("replicates = 1", "replicates = 0"), 2, ["[prior] replicates"]),
    ("gm-output-bool", G, TRAIN, gm(add='[output]\nhalf_precision_export = "yes"\n'), 2,
     ["[output] half_precision_export"]),
    ("gm-extra-section", G, TRAIN, gm(add="[extra]\nx = 1\n"), 2, ["unknown config sections", "extra"]),
    ("gm-not-toml", G, TRAIN, "[data\nx = ", 2, ["not valid TOML"]),
    ("gm-config-missing", G, ["train", "{tmp}/none.toml"], None, 2, ["none.toml", "does not exist"]),
    # ---------------------------------------------------------------- genmodel train: options
    ("train-steps-negative", G, TRAIN + ["--steps", "-1"], gm(), 2, ["--steps", ">= 1"]),
    ("train-steps-zero", G, TRAIN + ["--steps", "0"], gm(), 2, ["--steps", ">= 1"]),
    ("train-steps-word", G, TRAIN + ["--steps", "many"], gm(), 2, ["--steps"]),
    ("train-out-readonly", G, ["train", "{cfg}", "--out", "{ro}/run"], gm(), 2, ["--out", "cannot write"]),
    ("train-out-file", G, ["train", "{cfg}", "--out", "{afile}"], gm(), 2, ["--out", "not a folder"]),
    ("train-resume-nothing", G, TRAIN + ["--resume"], gm(), 2, ["--resume", "last.pt"]),
    # ---------------------------------------------------------------- genmodel sample / evaluate
    ("sample-steps-zero", G, ["sample", "{model}", "--steps", "0", "--out", "{out}.png"], None, 2, ["--steps"]),
    ("sample-n-zero", G, ["sample", "{model}", "--n", "0", "--out", "{out}.png"], None, 2, ["--n"]),
    ("sample-out-format", G, ["sample", "{model}", "--out", "{out}.txt"], None, 2, ["--out must end in", ".npz"]),
    ("sample-out-readonly", G, ["sample", "{model}", "--out", "{ro}/g.png"], None, 2, ["--out", "cannot write"]),
    ("sample-batch-size", G, ["sample", "{model}", "--batch-size", "0", "--out", "{out}.png"], None, 2,
     ["--batch-size"]),
    ("sample-seed-negative", G, ["sample", "{model}", "--seed", "-1", "--out", "{out}.png"], None, 2,
     ["--seed", ">= 0"]),
    ("sample-snr", G, ["sample", "{model}", "--snr", "0", "--out", "{out}.png"], None, 2, ["--snr"]),
    ("sample-corrector-steps", G, ["sample", "{model}", "--corrector-steps", "-1", "--out", "{out}.png"], None, 2,
     ["--corrector-steps"]),
    ("sample-predictor", G, ["sample", "{model}", "--predictor", "rk4", "--out", "{out}.png"], None, 2,
     ["--predictor"]),
    ("sample-threads", G, ["sample", "{model}", "--threads", "-1", "--out", "{out}.png"], None, 2, ["--threads"]),
    ("sample-ckpt-missing", G, ["sample", "{tmp}/none.pt", "--out", "{out}.png"], None, 2,
     ["none.pt", "does not exist"]),
    ("sample-ckpt-corrupt", G, ["sample", "{tmp}/garbage.pt", "--out", "{out}.png"], None, 2, ["garbage.pt"]),
    ("evaluate-n-one", G, ["evaluate", "{model}", "--n", "1"], None, 2, ["--n", ">= 2"]),
    ("evaluate-save-format", G, ["evaluate", "{model}", "--save-samples", "{out}.png"], None, 2,
     ["--save-samples must end in .npz"]),
    ("evaluate-save-readonly", G, ["evaluate", "{model}", "--save-samples", "{ro}/s.npz"], None, 2,
     ["--save-samples", "cannot write"]),
    ("evaluate-samples-missing", G, ["evaluate", "{model}", "--samples", "{tmp}/none.npz"], None, 2,
     ["--samples", "none.npz"]),
    ("evaluate-samples-shape", G, ["evaluate", "{model}", "--samples", "{tmp}/wrong.npz"], None, 2,
     ["--samples", "shape"]),
    # ---------------------------------------------------------------- genmodel stroke2img / likelihood / others
    ("stroke-neither", G, ["stroke2img", "{model}", "--t0", "0.05", "--out", "{out}.png"], None, 2, ["--from-digits"]),
    ("stroke-t0-zero", G, ["stroke2img", "{model}", "--from-digits", "2", "--t0", "0"], None, 2, ["--t0"]),
    ("stroke-t0-above-T", G, ["stroke2img", "{model}", "--from-digits", "2", "--t0", "5", "--out", "{out}.png"],
     None, 2, ["t0 must lie in (0, T"]),
    ("stroke-levels", G, ["stroke2img", "{model}", "--from-digits", "2", "--t0", "0.05", "--levels", "1"], None, 2,
     ["--levels"]),
    ("stroke-blur", G, ["stroke2img", "{model}", "--from-digits", "2", "--t0", "0.05", "--blur", "-1"], None, 2,
     ["--blur"]),
    ("stroke-file-missing", G, ["stroke2img", "{model}", "{tmp}/none.png", "--t0", "0.05", "--out", "{out}.png"],
     None, 2, ["stroke image", "none.png"]),
    ("stroke-file-corrupt", G, ["stroke2img", "{model}", "{tmp}/garbage.png", "--t0", "0.05", "--out", "{out}.png"],
     None, 2, ["stroke image", "not a readable image file"]),
    ("stroke-out-readonly", G, ["stroke2img", "{model}", "--from-digits", "2", "--t0", "0.05", "--out", "{ro}/s.png"],
     None, 2, ["--out", "cannot write"]),
    ("likelihood-n-zero", G, ["likelihood", "{model}", "--n", "0"], None, 2, ["--n must be >= 1"]),
    ("likelihood-batch-size", G, ["likelihood", "{model}", "--batch-size", "0"], None, 2, ["--batch-size"]),
    ("classifier-epochs", G, ["train-classifier", "--out", "{out}.pt", "--epochs", "0"], None, 2, ["--epochs"]),
    ("classifier-image-size", G, ["train-classifier", "--out", "{out}.pt", "--image-size", "12"], None, 2,
     ["--image-size"]),
    ("classifier-out-readonly", G, ["train-classifier", "--out", "{ro}/c.pt"], None, 2, ["--out", "cannot write"]),
    ("autoencoder-factor", G, ["train-autoencoder", "--out", "{out}.pt", "--factor", "3"], None, 2, ["--factor"]),
    ("info-missing", G, ["info", "{tmp}/none.pt"], None, 2, ["none.pt", "does not exist"]),
]


@pytest.fixture(scope="module")
def readonly_dir(tmp_path_factory):
    """A folder in which no file can be created (chmod 555 as a normal user; /sys as root), or None."""
    d = tmp_path_factory.mktemp("readonly")
    os.chmod(d, 0o555)
    for cand in (d, Path("/sys")):
        try:
            (cand / ".probe").write_bytes(b"")
            (cand / ".probe").unlink()
        except OSError:
            return cand
    return None


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import tomllib

    import torch

    from genmodel.train import Trainer, load_config

    torch.set_num_threads(1)
    tr = Trainer(load_config(tomllib.loads(GEN_OK)), tmp_path_factory.mktemp("model"), log=lambda *_: None)
    tr.run(progress=False)
    return str(tr.export())


def _files(tmp: Path) -> None:
    from skimage import io

    (tmp / "imgs").mkdir()
    (tmp / "imgs_mixed").mkdir()
    (tmp / "imgs_bad").mkdir()
    for name, size in (("a.png", 8), ("b.png", 8)):
        io.imsave(tmp / "imgs" / name, np.full((size, size), 100, np.uint8), check_contrast=False)
    for name, size in (("a.png", 8), ("b.png", 12)):
        io.imsave(tmp / "imgs_mixed" / name, np.full((size, size), 100, np.uint8), check_contrast=False)
    (tmp / "imgs_bad" / "a.png").write_bytes(b"not an image")
    (tmp / "garbage.png").write_bytes(b"not an image")
    (tmp / "garbage.nc").write_bytes(b"not netcdf")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp / "afile").write_text("a file, not a folder")
    np.savez(tmp / "two.npz", images=np.zeros((2, 1, 8, 8), np.float32))
    np.savez(tmp / "wrong.npz", images=np.zeros((3, 1, 16, 16), np.float32))


def run_cli(cli, argv, capsys):
    """(status, stdout, stderr) of an in-process run; SystemExit (argparse, UsageError) gives its code."""
    main = spdekit_main if cli == S else genmodel_main
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case_id,cli,argv,config,status,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, cli, argv, config, status, needles, tmp_path, capsys, monkeypatch, request):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    if config is not None:
        cfg.write_text(config)
    subs = {"{cfg}": str(cfg), "{out}": str(tmp_path / "outputs" / "o"), "{tmp}": str(tmp_path),
            "{afile}": str(tmp_path / "afile")}
    if any("{ro}" in a for a in argv):
        ro = request.getfixturevalue("readonly_dir")
        if ro is None:
            pytest.skip("no folder here refuses new files")
        subs["{ro}"] = str(ro / "spdekit-test")
    if any("{model}" in a for a in argv):
        subs["{model}"] = request.getfixturevalue("tiny_model")
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    before = _listing(tmp_path)
    got, out, err = run_cli(cli, args, capsys)
    warned = [ln for ln in err.splitlines() if ln.startswith(f"{cli} {args[0]}: warning: ")]
    lines = [ln for ln in err.splitlines() if ln.strip() and ln not in warned]
    assert "Traceback" not in err
    assert got == status, (got, err)
    assert len(lines) == 1, err
    assert len(warned) == (case_id == "sp-diverged"), err  # the opted-in unstable dt is reported, one line
    line = lines[0]
    assert line.startswith(f"{cli} {args[0]}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert "pip install" not in line and "will likely succeed" not in line  # imageio's and torch's advice
    new = _listing(tmp_path) - before
    if status == 1:  # a diverged run keeps its partial trajectory, marked as such
        import spdekit as sk

        assert new == {"outputs", "outputs/o.nc"}
        traj = sk.open_trajectory(tmp_path / "outputs" / "o.nc")
        assert not traj.completed and traj.stopped_at["reason"] == "non-finite state"
    else:
        assert new == set(), new  # no output, no temporary or probe file, no folder


def test_table_size():
    assert len(CASES) >= 60


def test_relative_path_found_from_the_working_directory_is_explained(tmp_path, monkeypatch, capsys):
    """A config in a subfolder naming a path that exists relative to the working directory only: the
    error says which path was tried and why."""
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "c.toml"
    cfg.write_text(images("imgs"))
    status, _, err = run_cli(G, ["train", str(cfg), "--out", str(tmp_path / "run")], capsys)
    assert status == 2
    assert f"tried '{tmp_path / 'sub' / 'imgs'}'" in err and "exists relative to the working directory" in err
    cfg.write_text(sp('image = "camera"', 'image = "garbage.png"'))
    status, _, err = run_cli(S, ["simulate", str(cfg), "--out", str(tmp_path / "t.nc")], capsys)
    assert status == 2 and "exists relative to the working directory" in err
    # written relative to the config's folder, the same files are found
    cfg.write_text(images("../two.npz", "holdout = 0.5\n"))
    from genmodel.train import load_config

    assert load_config(cfg)["data"]["path"] == str(tmp_path / "sub" / ".." / "two.npz")


@pytest.mark.parametrize("argv,needle", [
    (["spdekit.cli", "plot", "x.nc", "--out", "f.png", "--columns", "0"], "spdekit plot: error: argument --columns"),
    (["genmodel.cli", "train", "c.toml", "--steps", "-1"], "genmodel train: error: argument --steps"),
    (["genmodel.cli", "sample", "m.pt", "--out", "afile/g.png"], "genmodel sample: error: --out"),
])
def test_real_processes(tmp_path, argv, needle):
    """The command lines as processes: status 2, one line, no traceback (UsageError is a SystemExit)."""
    (tmp_path / "afile").write_text("a file, not a folder")
    res = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(needle), res.stderr
    assert "Traceback" not in res.stderr
