"""Training loop, exact resume, export, CLI (train / sample / evaluate / info), bad input."""

import json

import numpy as np
import pytest
import torch
from _signals import sigint_default
from tiny_configs import tiny_toml

from genmodel.checkpoint import CheckpointError, load_checkpoint
from genmodel.cli import main
from genmodel.runs import load_model
from genmodel.train import Trainer, load_config

TINY = tiny_toml(train="""
steps = 4
batch = 8
pool = 16
checkpoint_every = 2
threads = 1
warmup = 2
""", sampling="steps = 5", dropout=0.1)


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def weights(tr):
    return {k: v.clone() for k, v in tr.model.state_dict().items()}


@pytest.mark.parametrize("loss", ["auto", "path"])
def test_resume_is_bit_for_bit(tmp_path, tiny_config, loss):
    """4 steps straight == 2 steps, a fresh process resuming from last.pt, 2 more steps: model,
    EMA, optimizer, numpy and torch RNG (dropout) and the forward-path pool (with the path loss's
    running sums) are all restored."""
    # bitwise on the CPU (cuDNN/cuBLAS kernels are not bitwise reproducible; tests/test_genmodel_gpu.py)
    tiny_config.write_text(TINY.replace("steps = 4", f'steps = 4\nloss = "{loss}"\ndevice = "cpu"'))
    cfg = load_config(tiny_config)
    a = Trainer(cfg, tmp_path / "a", log=lambda *_: None)
    a.run(progress=False)
    b = Trainer(cfg, tmp_path / "b", log=lambda *_: None)
    b.run(steps=2, progress=False)
    c = Trainer(cfg, tmp_path / "b", log=lambda *_: None)
    c.resume()
    assert c.step == 2
    c.run(progress=False)
    wa, wc = weights(a), weights(c)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    assert all(torch.equal(x, y) for x, y in zip(a.ema.shadow.state_dict().values(),
                                                   c.ema.shadow.state_dict().values()))


def test_resume_refuses_other_architecture(tmp_path, tiny_config):
    cfg = load_config(tiny_config)
    Trainer(cfg, tmp_path, log=lambda *_: None).run(steps=2, progress=False)
    cfg2 = load_config(tiny_config)
    cfg2["network"]["ch"] = 16
    with pytest.raises(CheckpointError, match="ch: checkpoint 8 vs model 16"):
        Trainer(cfg2, tmp_path, log=lambda *_: None).resume()
    cfg3 = load_config(tiny_config)
    cfg3["process"]["T"] = 0.2
    with pytest.raises(CheckpointError, match="another process"):
        Trainer(cfg3, tmp_path, log=lambda *_: None).resume()


def test_cli_train_sample_evaluate_info(tmp_path, tiny_config, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    assert (out / "last.pt").is_file() and (out / "model.pt").is_file()
    model, process, prior, ck = load_model(out / "model.pt")
    assert prior is not None and prior.mean.shape == (1, 8, 8) and ck["step"] == 4
    assert main(["sample", str(out / "model.pt"), "--n", "6", "--out", str(tmp_path / "g.png"), "--quiet"]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    assert main(["sample", str(out / "model.pt"), "--n", "3", "--out", str(tmp_path / "s.npz"), "--steps", "3",
                 "--prior", "forward", "--quiet"]) == 0
    with np.load(tmp_path / "s.npz") as z:
        assert z["images"].shape == (3, 1, 8, 8) and np.isfinite(z["images"]).all()
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.pt"), "--n", "20", "--steps", "3", "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"fid", "kid", "is_analogue", "confident_fraction", "class_histogram"} <= set(res)
    # samples drawn elsewhere (e.g. in parallel with different seeds) are evaluated as one set
    assert main(["sample", str(out / "model.pt"), "--n", "4", "--out", str(tmp_path / "s2.npz"), "--steps", "3",
                 "--seed", "1", "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.pt"), "--samples", str(tmp_path / "s.npz"), str(tmp_path / "s2.npz"),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_samples"] == 7 and res["sampling_seconds"] is None
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 1, 16, 16)))
    assert main(["evaluate", str(out / "model.pt"), "--samples", str(tmp_path / "wrong.npz")]) == 2
    assert "shape" in capsys.readouterr().err
    assert main(["info", str(out / "model.pt")]) == 0


def test_cli_bad_input(tmp_path, tiny_config, capsys):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["sample", str(bad), "--n", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert "not a readable genmodel checkpoint" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.pt")]) == 2
    cfg = tmp_path / "bad.toml"
    cfg.write_text(TINY + "\n[extra]\nx = 1\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "unknown config sections ['extra']" in capsys.readouterr().err
    cfg.write_text(TINY.replace("batch = 8", "batch = 0"))
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "batch must be a positive integer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="pool_advance must be a positive integer"):
        load_config({"train": {"pool_advance": 0}})
    from genmodel.metrics import DEFAULT_CLASSIFIER

    with pytest.raises(CheckpointError, match="'model' checkpoint is needed"):
        load_checkpoint(DEFAULT_CLASSIFIER, kind="model")


def test_lr_schedule_warmup_then_cosine_to_lr_final():
    import types

    cfg = load_config({"train": {"steps": 110, "warmup": 10, "lr": 2.0, "lr_schedule": "cosine", "lr_final": 0.1}})
    lr = [Trainer.lr_at(types.SimpleNamespace(cfg=cfg), s) for s in range(111)]
    assert lr[0] == pytest.approx(0.2) and lr[9] == pytest.approx(2.0)  # linear warm-up
    assert lr[10] == pytest.approx(2.0) and lr[60] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half way
    assert lr[110] == pytest.approx(0.2) and all(a >= b for a, b in zip(lr[10:], lr[11:]))  # monotone decay
    const = load_config({"train": {"steps": 110, "warmup": 0, "lr": 2.0}})
    assert {Trainer.lr_at(types.SimpleNamespace(cfg=const), s) for s in range(111)} == {2.0}
    with pytest.raises(ValueError, match="lr_schedule"):
        load_config({"train": {"lr_schedule": "step"}})
    with pytest.raises(ValueError, match="lr_final"):
        load_config({"train": {"lr_final": 2.0}})


@pytest.mark.parametrize("name", ["digits16_anisotropic", "digits16_anisotropic_transition", "digits16_isotropic",
                                  "digits16_flow_matching"])
def test_shipped_configs_load(name):
    """The configs under genmodel/configs parse and name a known loss (a typo would only show after
    a 25-minute training started)."""
    from pathlib import Path

    from genmodel.losses import LOSSES

    cfg = load_config(Path(__file__).resolve().parents[1] / "genmodel" / "configs" / f"{name}.toml")
    assert cfg["train"]["loss"] in LOSSES + ("flow_matching",)


# ------------------------------------------------------------------------------------------ signals, messages
SIGNAL_RUN = tiny_toml(train="""
steps = 150
batch = 8
pool = 16
checkpoint_every = 1000
log_every = 1
threads = 1
warmup = 2
device = "cpu"
""", sampling="steps = 5", dropout=0.1)


def _start(argv, cwd):
    """A genmodel process whose stdout and stderr are collected by threads (``buf``)."""
    import os
    import subprocess
    import sys
    import threading

    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genmodel.cli", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=sigint_default)
    buf = {"out": [], "err": []}

    def pump(stream, key):
        for chunk in iter(lambda: stream.read1(4096), b""):
            buf[key].append(chunk)

    for stream, key in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=pump, args=(stream, key), daemon=True).start()
    return proc, buf


def _text(buf, key):
    return b"".join(buf[key]).decode(errors="replace")


def _wait_for(proc, buf, key, pattern, timeout=120.0):
    import re
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, _text(buf, key))
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {pattern!r} in the {key} of the process: {_text(buf, key)[-2000:]}")


@pytest.mark.parametrize("sig,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_writes_a_checkpoint_and_resume_is_bit_for_bit(tmp_path, capsys, sig, status):
    """Ctrl-C (SIGINT) or SIGTERM during `genmodel train`: the current step finishes, last.pt is written at
    that step, one line says how to resume, exit status 130 / 143. Resumed to the end, the weights, EMA
    and optimizer equal those of an uninterrupted run bit for bit (CPU)."""
    import re
    import signal

    cfg = tmp_path / "c.toml"
    cfg.write_text(SIGNAL_RUN)
    a = tmp_path / "a"
    proc, buf = _start(["train", str(cfg), "--out", str(a), "--no-export"], tmp_path)
    _wait_for(proc, buf, "out", r"setup .*: done")  # a line per setup stage, on stdout as they start
    _wait_for(proc, buf, "err", r"\|\s*[1-9]\d*/150 \[")  # the progress bar reports a step
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=120) == status
    err = _text(buf, "err")
    assert "Traceback" not in err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    m = re.fullmatch(rf"genmodel train: interrupted \({sig}\) at step (\d+) of 150: checkpoint written to "
                     rf"(\S+); resume with: genmodel train (\S+) --out (\S+) --resume --no-export", last)
    assert m, last
    step = int(m.group(1))
    assert 1 <= step < 150 and m.group(2) == str(a / "last.pt") and m.group(4) == str(a)
    assert load_checkpoint(a / "last.pt", kind="train")["step"] == step
    if sig == "SIGTERM":
        return  # the resume is the same as after SIGINT
    # the printed command, in-process: continue to step 150; and the same run without interruption
    assert main(["train", str(cfg), "--out", str(a), "--resume", "--quiet", "--no-export"]) == 0
    assert f"resumed from {a / 'last.pt'} at step {step}" in capsys.readouterr().out
    assert main(["train", str(cfg), "--out", str(tmp_path / "b"), "--quiet", "--no-export"]) == 0
    ra, rb = load_checkpoint(a / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert ra["step"] == rb["step"] == 150
    for key in ("model", "ema"):
        assert ra[key].keys() == rb[key].keys()
        assert all(torch.equal(ra[key][k], rb[key][k]) for k in ra[key]), key
    sa, sb = ra["optimizer"]["state"], rb["optimizer"]["state"]
    assert all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])


def test_cli_messages_setup_lines_fid_warning_and_json_stdout(tmp_path, tiny_config, capsys):
    """train shows its setup stages; evaluate warns (one line) when FID is computed from too few samples;
    stroke2img --json writes only the JSON to stdout; messages name TOML keys, not Python arguments."""
    out = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    stages = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("setup ")]
    assert "loading the data" in stages[0] and stages[-1].endswith(": done") and len(stages) == 5
    model = str(out / "model.pt")
    assert main(["evaluate", model, "--n", "20", "--steps", "3", "--json", "--quiet"]) == 0
    res = capsys.readouterr()
    assert json.loads(res.out)["n_samples"] == 20
    warning = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(warning) == 1 and warning[0].startswith("genmodel evaluate: warning: FID from 20 samples is biased")
    assert main(["stroke2img", model, "--from-digits", "1", "--n-per-stroke", "2", "--t0", "0.05", "--steps", "4",
                 "--out", str(tmp_path / "s.png"), "--json", "--quiet"]) == 0
    res = capsys.readouterr()
    assert json.loads(res.out)["n"] == 2 and f"wrote {tmp_path / 's.png'}" in res.err

    from skimage import io

    from genmodel.data import load_images

    (tmp_path / "mixed").mkdir()
    io.imsave(tmp_path / "mixed" / "a.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    io.imsave(tmp_path / "mixed" / "b.png", np.zeros((8, 8, 3), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match=r"set \[data\] grayscale = true"):
        load_images(tmp_path / "mixed")


def test_config_types_are_checked_alike():
    """A string where a number belongs is refused in every section, naming the key (issue 24, item 6)."""
    for sec, key, value in (("process", "T", "2"), ("train", "batch", "128"), ("train", "lr", "1e-3"),
                            ("data", "holdout", "0.2"), ("sampling", "snr", "0.16"), ("network", "dropout", "0")):
        with pytest.raises(ValueError, match=rf"\[{sec}\] {key} must be .*got str"):
            load_config({sec: {key: value}})
