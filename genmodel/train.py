"""Training: config -> data, process, network, loss; Adam with warm-up, gradient clipping and EMA;
atomic checkpoints every N steps and exact resume.

A run writes to its output folder:

* ``last.pt`` ("train" checkpoint): model, EMA, optimizer, step, all RNG states (numpy generator,
  torch CPU generator) and the loss's state (the forward-path pool), so ``--resume`` continues the
  same run;
* ``model.pt`` ("model" checkpoint, at the end): the EMA weights (optionally float16), the
  architecture, the process, the moment-matched Gaussian prior of U_T fitted on the training images
  (:class:`genmodel.GaussianPrior`), the sampler defaults and the config. This is what
  ``genmodel sample`` and ``genmodel evaluate`` read.
"""

from __future__ import annotations

import copy
import math
import os
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, check_architecture, load_checkpoint, load_state_strict, save_checkpoint
from .data import load_dataset
from .losses import make_loss
from .networks import ScoreModel, UNet, UNetConfig, count_parameters
from .processes import SPDEProcess
from .sampling import GaussianPrior

DEFAULTS = {
    "data": {"dataset": "digits", "image_size": 16, "holdout": 0.2, "seed": 0},
    "process": {"preset": "paper_anisotropic", "T": 2.0, "dt": 1e-3, "solver": "euler_maruyama"},
    "network": {},
    "train": {"steps": 6000, "batch": 64, "lr": 2e-4, "ema": 0.999, "grad_clip": 1.0, "warmup": 200,
              "loss": "auto", "pool": 2048, "antithetic": True, "checkpoint_every": 500, "seed": 0,
              "threads": 0, "log_every": 25, "sigma_data": 0.5},
    "prior": {"replicates": 4},
    "sampling": {"steps": 500, "corrector_steps": 1, "snr": 0.16},
    "output": {"dir": "runs/genmodel", "half_precision_export": False},
}
SECTIONS = tuple(DEFAULTS)


def load_config(path_or_dict) -> dict:
    """Read a TOML config (or take a dict) and fill defaults; unknown sections/keys are errors."""
    if isinstance(path_or_dict, dict):
        user = copy.deepcopy(path_or_dict)
    else:
        p = Path(path_or_dict)
        if not p.is_file():
            raise FileNotFoundError(f"config {str(p)!r} does not exist")
        try:
            user = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config {str(p)!r} is not valid TOML: {exc}") from exc
    unknown = set(user) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; allowed: {list(SECTIONS)}")
    cfg = copy.deepcopy(DEFAULTS)
    for sec, vals in user.items():
        if not isinstance(vals, dict):
            raise ValueError(f"config section [{sec}] must be a table")
        if sec == "train":
            bad = set(vals) - set(DEFAULTS["train"])
            if bad:
                raise ValueError(f"unknown [train] keys {sorted(bad)}; allowed: {sorted(DEFAULTS['train'])}")
        if sec == "data" and vals.get("dataset", "digits") != "digits":
            cfg[sec] = {}  # the digits defaults do not apply to other datasets
        if sec == "process" and vals.get("preset", "paper_anisotropic") != cfg[sec]["preset"]:
            cfg[sec] = {k: v for k, v in cfg[sec].items() if k != "preset"}
        cfg[sec].update(vals)
    tr = cfg["train"]
    for key in ("steps", "batch", "checkpoint_every", "pool", "log_every"):
        if not isinstance(tr[key], int) or tr[key] < 1:
            raise ValueError(f"[train] {key} must be a positive integer, got {tr[key]!r}")
    if not isinstance(tr["warmup"], int) or tr["warmup"] < 0:
        raise ValueError(f"[train] warmup must be an integer >= 0, got {tr['warmup']!r}")
    if not 0 <= tr["ema"] < 1:
        raise ValueError(f"[train] ema must lie in [0, 1), got {tr['ema']}")
    if not tr["lr"] > 0 or not tr["grad_clip"] > 0:
        raise ValueError("[train] lr and grad_clip must be > 0")
    return cfg


def build_process(pcfg: dict, image_size: int) -> SPDEProcess:
    pcfg = dict(pcfg)
    preset = pcfg.pop("preset", "paper_anisotropic")
    T = float(pcfg.pop("T", 2.0))
    dt = float(pcfg.pop("dt", 1e-3))
    solver = pcfg.pop("solver", "euler_maruyama")
    spde = pcfg.pop("spde", None)
    return SPDEProcess.from_preset(preset, image_size, T, dt, solver, spde=spde, **pcfg)


def build_network(ncfg: dict, in_channels: int, image_size: int) -> UNet:
    d = {"in_channels": in_channels, "image_size": image_size, **ncfg}
    if d["in_channels"] != in_channels or d["image_size"] != image_size:
        raise ValueError(f"[network] in_channels/image_size ({d['in_channels']}, {d['image_size']}) do not match "
                         f"the data ({in_channels}, {image_size})")
    return UNet(UNetConfig.from_dict(d))


class EMA:
    """Exponential moving average of the parameters (and a copy of the buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach(), 1.0 - self.decay)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)


def _set_threads(n: int) -> int:
    n = int(n) or max(1, min(os.cpu_count() or 1, 2))
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover
        pass
    return n


class Trainer:
    """One training run (see the module doc). ``cfg``: a dict from :func:`load_config`."""

    def __init__(self, cfg: dict, out_dir=None, log=print):
        self.cfg = cfg
        self.log = log
        self.out = Path(out_dir or cfg["output"]["dir"])
        tr = cfg["train"]
        self.threads = _set_threads(tr["threads"])
        self.train_data, self.heldout = load_dataset(cfg["data"])
        _, C, H, W = self.train_data.shape
        if H != W:
            raise ValueError(f"square images are needed, got {H}x{W}")
        self.process = build_process(cfg["process"], H)
        torch.manual_seed(tr["seed"])
        self.net = build_network(cfg["network"], C, H)
        self.model = ScoreModel.for_process(self.net, self.process, tr["sigma_data"], data=self.train_data)
        self.ema = EMA(self.model, tr["ema"])
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tr["lr"])
        self.rng = np.random.default_rng(tr["seed"])
        self.loss = make_loss(tr["loss"], self.process, self.train_data, self.rng, tr["pool"], tr["antithetic"])
        self.step = 0
        self.seconds = 0.0
        self.history: list = []

    @property
    def n_params(self) -> int:
        return count_parameters(self.net)

    # ------------------------------------------------------------------ state
    def _train_state(self) -> dict:
        return {
            "kind": "train",
            "arch": self.net.cfg.to_dict(),
            "arch_hash": self.net.arch_hash,
            "process": self.process.to_dict(),
            "config": self.cfg,
            "model": self.model.state_dict(),
            "ema": self.ema.shadow.state_dict(),
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "rng_numpy": self.rng.bit_generator.state,
            "rng_torch": torch.get_rng_state(),
            "loss_state": self.loss.state_dict(),
            "history": self.history,
        }

    def save(self) -> Path:
        return save_checkpoint(self.out / "last.pt", self._train_state())

    def resume(self, path=None) -> None:
        path = Path(path) if path else self.out / "last.pt"
        ck = load_checkpoint(path, kind="train")
        check_architecture(ck, self.net.cfg.to_dict(), self.net.arch_hash)
        if ck["process"] != self.process.to_dict():
            raise CheckpointError(f"{str(path)!r} was trained on another process: {ck['process']} vs "
                                  f"{self.process.to_dict()}")
        load_state_strict(self.model, ck["model"], "model")
        load_state_strict(self.ema.shadow, ck["ema"], "EMA")
        self.opt.load_state_dict(ck["optimizer"])
        self.step = int(ck["step"])
        self.seconds = float(ck["seconds"])
        self.rng.bit_generator.state = ck["rng_numpy"]
        torch.set_rng_state(ck["rng_torch"])
        self.loss.load_state_dict(ck["loss_state"])
        self.history = list(ck.get("history", []))
        self.log(f"resumed from {path} at step {self.step}")

    # ------------------------------------------------------------------ loop
    def lr_at(self, step: int) -> float:
        w = self.cfg["train"]["warmup"]
        return self.cfg["train"]["lr"] * (min(1.0, (step + 1) / w) if w else 1.0)

    def train_step(self) -> float:
        tr = self.cfg["train"]
        self.model.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        loss = self.loss(self.model, tr["batch"], self.rng)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr["grad_clip"])
        self.opt.step()
        self.ema.update(self.model)
        self.step += 1
        return float(loss.detach())

    def run(self, steps: int | None = None, progress: bool = True) -> None:
        tr = self.cfg["train"]
        total = tr["steps"] if steps is None else int(steps)
        t_last = time.perf_counter()
        running = None
        with tqdm(total=total, initial=self.step, disable=not progress, desc="train", unit="step",
                  dynamic_ncols=True) as bar:
            while self.step < total:
                loss = self.train_step()
                running = loss if running is None else 0.98 * running + 0.02 * loss
                now = time.perf_counter()
                self.seconds += now - t_last
                t_last = now
                bar.update(1)
                if self.step % tr["log_every"] == 0:
                    self.history.append((self.step, running, self.seconds))
                    bar.set_postfix(loss=f"{running:.4g}", sps=f"{self.step / max(self.seconds, 1e-9):.2f}")
                if self.step % tr["checkpoint_every"] == 0 or self.step == total:
                    self.save()
                    t_last = time.perf_counter()

    # ------------------------------------------------------------------ export
    def export(self, path=None, prior_seed: int = 0) -> Path:
        """Write the "model" checkpoint: EMA weights + everything sampling needs."""
        t0 = time.perf_counter()
        prior = GaussianPrior.fit(self.process, self.train_data, replicates=self.cfg["prior"]["replicates"],
                                  seed=prior_seed)
        self.prior_seconds = time.perf_counter() - t0
        half = bool(self.cfg["output"]["half_precision_export"])
        state = {k: (v.half() if half and v.is_floating_point() and k.startswith("net.") else v)
                 for k, v in self.ema.shadow.state_dict().items()}
        payload = {
            "kind": "model",
            "arch": self.net.cfg.to_dict(),
            "arch_hash": self.net.arch_hash,
            "process": self.process.to_dict(),
            "config": self.cfg,
            "ema": state,
            "sigma_data": self.cfg["train"]["sigma_data"],
            "prior": GaussianPrior.state_dict(prior),
            "sampling": self.cfg["sampling"],
            "step": self.step,
            "seconds": self.seconds,
        }
        return save_checkpoint(Path(path) if path else self.out / "model.pt", payload)


def make_trainer(cfg: dict, out_dir=None, log=print) -> Trainer:
    """The trainer a config asks for: :class:`Trainer` (SPDE score model) or, with ``[process] preset =
    "flow_matching"`` or ``[train] loss = "flow_matching"``, :class:`genmodel.flow_matching.FlowMatchingTrainer`."""
    from .flow_matching import FlowMatchingTrainer, is_flow_matching

    return (FlowMatchingTrainer if is_flow_matching(cfg) else Trainer)(cfg, out_dir, log=log)


def load_model(path) -> tuple[ScoreModel, SPDEProcess, GaussianPrior | None, dict]:
    """(score model with EMA weights, process, prior or None, checkpoint dict) from a checkpoint.
    A flow-matching checkpoint gives (velocity model, :class:`genmodel.flow_matching.OTPath`, None, ck)."""
    ck = load_checkpoint(path, kind="model")
    if ck.get("method") == "flow_matching" or ck.get("process", {}).get("method") == "flow_matching":
        from .flow_matching import load_flow_model

        return load_flow_model(ck)
    try:
        cfg = UNetConfig.from_dict(ck["arch"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: unusable architecture entry: {exc}") from exc
    net = UNet(cfg)
    check_architecture(ck, cfg.to_dict(), net.arch_hash)
    process = SPDEProcess.from_dict(ck["process"])
    sigma_data = float(ck.get("sigma_data", ck.get("config", {}).get("train", {}).get("sigma_data", 0.5)))
    model = ScoreModel.for_process(net, process, sigma_data)
    load_state_strict(model, ck["ema"], "EMA")
    model.eval()
    prior = GaussianPrior.from_state_dict(ck["prior"]) if "prior" in ck else None
    return model, process, prior, ck


def score_function(model: ScoreModel, batch_size: int = 1024):
    """A ``score_fn(t, u)`` for :func:`genmodel.sample` from a model (no grad, chunked)."""

    @torch.no_grad()
    def score_fn(t, u):
        if u.shape[0] <= batch_size:
            return model(t, u)
        return torch.cat([model(t[i:i + batch_size], u[i:i + batch_size]) for i in range(0, u.shape[0], batch_size)])

    return score_fn


def seconds_to_text(s: float) -> str:
    return f"{int(s // 60)} min {s - 60 * math.floor(s / 60):.0f} s"


__all__ = ["Trainer", "EMA", "load_config", "load_model", "score_function", "build_process", "build_network",
           "DEFAULTS", "make_trainer"]
