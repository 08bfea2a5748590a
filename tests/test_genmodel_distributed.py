"""Fault tolerance and data-parallel training: SIGKILL + --resume is bit for bit, torchrun with 2
processes (gloo, CPU) trains and its checkpoint loads and samples in a single process."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_genmodel_train_cli import TINY

from genmodel import distributed
from genmodel.checkpoint import load_checkpoint
from genmodel.runs import load_model, score_function
from genmodel.sampling import sample
from genmodel.train import Trainer, load_config

ROOT = Path(__file__).resolve().parents[1]
# guards against a hang, not timings: a run takes 5-20 s on 2 free cores but was measured at 60-90 s
# on a 2-core machine at load average 8
HANG_GUARD_S = 300


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                             "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _config(tmp_path, **train):
    head, rest = TINY.split("[train]\n")
    body, tail = rest.split("[prior]\n")
    keys = {line.split(" = ")[0]: line.split(" = ")[1] for line in body.splitlines() if line}
    keys.update({k: str(v) for k, v in train.items()})
    text = head + "[train]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "[prior]\n" + tail
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def _same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)  # a GPU run may continue a CPU one


# ---------------------------------------------------------------------------------------- kill + resume
def test_sigkill_then_resume_is_bit_for_bit(tmp_path):
    """`genmodel train` is SIGKILLed at a random moment after its first checkpoint; `--resume`
    continues to step S. Loss history (every step), weights, EMA and optimizer state equal an
    uninterrupted run of S steps bit for bit (CPU, 1 thread)."""
    cfg_path = _config(tmp_path, log_every=1, checkpoint_every=3, device='"cpu"')  # bitwise: the CPU
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "genmodel.cli", "train", str(cfg_path), "--out", str(out), "--quiet", "--no-export"]
    # the killed run is asked for far more steps than it can do before the kill: the kill lands mid-run
    # on any machine (the number of steps only decides where training stops, not its trajectory)
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen(cmd + ["--steps", "1000000"], env=_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not (out / "last.pt").exists():
            assert proc.poll() is None, f"training died early: {(tmp_path / 'killed.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no checkpoint within {HANG_GUARD_S} s"
            time.sleep(0.02)
        time.sleep(random.Random(20261122).uniform(0.0, 0.6))  # the random moment (fixed seed)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    k = int(load_checkpoint(out / "last.pt", kind="train")["step"])  # the atomic write left a whole file
    assert k >= 3 and k % 3 == 0
    S = k + 7
    res = _run(cmd + ["--resume", "--steps", str(S)])
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed from {out / 'last.pt'} at step {k}" in res.stdout
    resumed = load_checkpoint(out / "last.pt", kind="train")
    assert resumed["step"] == S

    straight = Trainer(load_config(cfg_path), tmp_path / "straight", log=lambda *_: None)
    straight.run(steps=S, progress=False)
    assert [h[:2] for h in resumed["history"]] == [h[:2] for h in straight.history]  # (step, loss), bitwise
    assert [h[0] for h in resumed["history"]] == list(range(1, S + 1))
    assert _same_state(resumed["model"], straight.model.state_dict())
    assert _same_state(resumed["ema"], straight.ema.shadow.state_dict())
    opt = straight.opt.state_dict()["state"]
    assert all(_same_state(resumed["optimizer"]["state"][i], opt[i]) for i in opt)
    assert resumed["rng_numpy"] == straight.rng.bit_generator.state


# ---------------------------------------------------------------------------------------- torchrun
def _run(cmd, timeout=HANG_GUARD_S):
    """Run ``cmd`` in its own process group; on a hang kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _torchrun(args, nproc=2):
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                 "-m", "genmodel.cli", "train", *args])


def test_torchrun_two_processes_gloo(tmp_path):
    """20 steps data-parallel on 2 CPU processes; only rank 0 prints and writes; the checkpoints
    hold the unwrapped module (loadable by the single-process loader) and both ranks' streams."""
    cfg_path = _config(tmp_path, steps=20, checkpoint_every=5, log_every=5)
    out = tmp_path / "ddp"
    res = _torchrun([str(cfg_path), "--out", str(out), "--quiet"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.count("network:") == 1 and res.stdout.count("wrote ") == 1  # rank 0 only
    assert "2 processes (gloo, cpu), batch 4 per process" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "model.pt"]  # no stray temporary files

    last = load_checkpoint(out / "last.pt", kind="train")
    assert last["step"] == 20 and last["world_size"] == 2 and len(last["ranks"]) == 2
    assert not any(k.startswith("module.") for k in last["model"])
    r0, r1 = last["ranks"]
    assert r0["rng_numpy"] != r1["rng_numpy"]  # each rank its own noise stream
    assert not torch.equal(r0["loss_state"]["pool"]["u"], r1["loss_state"]["pool"]["u"])
    assert [h[0] for h in last["history"]] == [5, 10, 15, 20] and all(np.isfinite(h[1]) for h in last["history"])

    model, process, prior, ck = load_model(out / "model.pt")
    assert ck["step"] == 20
    x = sample(process, score_function(model), 4, steps=8, corrector_steps=0, prior_stats=prior, seed=0,
               progress=False)
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()

    # a single process continues from the 2-process checkpoint (weights and optimizer restored)
    log = []
    tr = Trainer(load_config(cfg_path), out, log=log.append)
    tr.resume()
    assert tr.step == 20 and "written by 2 process(es), now 1" in log[-1]
    assert _same_state(tr.model.state_dict(), last["model"])
    tr.run(steps=22, progress=False)
    assert tr.step == 22


@pytest.mark.slow
def test_torchrun_resume_is_bit_for_bit(tmp_path):
    """Under torchrun too: 10 steps, then `--resume` to 16 (all ranks load the same checkpoint)
    equals 16 steps straight; every rank's streams and pool are restored."""
    cfg_path = _config(tmp_path, steps=16, checkpoint_every=5, log_every=2, device='"cpu"')  # bitwise: the CPU
    res = _torchrun([str(cfg_path), "--out", str(tmp_path / "a"), "--quiet", "--no-export"])
    assert res.returncode == 0, res.stderr[-3000:]
    res = _torchrun([str(cfg_path), "--out", str(tmp_path / "b"), "--quiet", "--no-export", "--steps", "10"])
    assert res.returncode == 0, res.stderr[-3000:]
    res = _torchrun([str(cfg_path), "--out", str(tmp_path / "b"), "--quiet", "--no-export", "--resume"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "at step 10" in res.stdout and "restarted" not in res.stdout
    a = load_checkpoint(tmp_path / "a" / "last.pt", kind="train")
    b = load_checkpoint(tmp_path / "b" / "last.pt", kind="train")
    assert a["step"] == b["step"] == 16
    assert [h[:2] for h in a["history"]] == [h[:2] for h in b["history"]]
    assert _same_state(a["model"], b["model"]) and _same_state(a["ema"], b["ema"])
    for ra, rb in zip(a["ranks"], b["ranks"]):
        assert ra["rng_numpy"] == rb["rng_numpy"] and torch.equal(ra["rng_torch"], rb["rng_torch"])
        assert torch.equal(ra["loss_state"]["pool"]["u"], rb["loss_state"]["pool"]["u"])


# ---------------------------------------------------------------------------------------- pieces
def test_environment_and_rank_streams(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.environment() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.environment() is None  # one process = the ordinary run
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.environment() == (2, 4, 0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="inconsistent torchrun environment"):
        distributed.environment()
    with pytest.raises(ValueError, match="device must be"):
        distributed.resolve_device("tpu")
    # NCCL needs a GPU per process: more torchrun processes on a node than GPUs -> "auto" trains on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.process_device("auto", 0, 1) == torch.device("cuda", 0)
    assert distributed.process_device("auto", 1, 2).type == "cpu"
    with pytest.raises(ValueError, match="2 processes on this node but 1 GPU"):
        distributed.process_device("cuda", 1, 2)
    assert distributed.process_device("cpu", 1, 2).type == "cpu"
    monkeypatch.undo()
    net = torch.nn.Linear(2, 2)
    assert distributed.on_device(net, "cpu") is net  # on the CPU: the module itself, no wrapper
    if not torch.cuda.is_available():
        assert distributed.on_device(net, "auto") is net
        with pytest.raises(ValueError, match="sees no CUDA device"):
            distributed.on_device(net, "cuda")

    draws = [distributed.rank_seeds(7, r, 3)[0].standard_normal(4) for r in range(3)]
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])
    again = distributed.rank_seeds(7, 1, 3)
    assert np.array_equal(again[0].standard_normal(4), draws[1])  # reproducible
    assert again[1] == distributed.rank_seeds(7, 1, 3)[1] != distributed.rank_seeds(7, 0, 3)[1]
    assert 0 <= again[1] < 2 ** 63

    data = torch.arange(10.0).reshape(10, 1, 1, 1)
    parts = [distributed.shard(data, r, 3) for r in range(3)]
    assert sorted(torch.cat(parts).flatten().tolist()) == list(range(10))  # a partition
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        distributed.split_evenly(10, 3, "batch")
    assert [distributed.share_of(2048, r, 3, "pool") for r in range(3)] == [683, 683, 682]
    with pytest.raises(ValueError, match="smaller than the number of processes"):
        distributed.share_of(2, 2, 3, "pool")
