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

Under ``torchrun`` the same loop runs data-parallel (:mod:`genmodel.distributed`): one Trainer per
process, DDP over the model, per-rank data shards and random streams, rank 0 writing the
checkpoints. A config's ``[output] dir`` must lie below the working directory
(:func:`check_output_dir`); ``--out`` / ``out_dir`` choose any folder.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, check_architecture, load_checkpoint, load_state_strict, save_checkpoint

# the config schema lives in genmodel.config; its entry points are re-exported here (genmodel.train.load_config)
from .config import DEFAULTS, _check_process, check_config, check_output_dir, load_config  # noqa: F401
from .data import load_dataset
from .distributed import (
    DistContext,
    OnDevice,
    all_gather_objects,
    chain_device,
    mean_across_ranks,
    rank_seeds,
    resolve_device,
    shard,
    share_of,
    split_evenly,
)
from .losses import LOSSES, ExactGaussianDSM, TransitionDSM
from .networks import ScoreModel, UNet, UNetConfig, count_parameters
from .path_dsm import PathDSM
from .priors import GaussianPrior
from .processes import SPDEProcess


def build_process(pcfg: dict, image_size: int) -> SPDEProcess:
    """The process of a ``[process]`` table; errors name the section."""
    _check_process({"preset": "paper_anisotropic", "T": 2.0, "dt": 1e-3, **pcfg}, flow=False)
    pcfg = dict(pcfg)
    preset = pcfg.pop("preset", "paper_anisotropic")
    T = float(pcfg.pop("T", 2.0))
    dt = float(pcfg.pop("dt", 1e-3))
    solver = pcfg.pop("solver", "euler_maruyama")
    spde = pcfg.pop("spde", None)
    try:
        return SPDEProcess.from_preset(preset, image_size, T, dt, solver, spde=spde, **pcfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"[process] {exc}") from exc


def build_network(ncfg: dict, in_channels: int, image_size: int) -> UNet:
    d = {"in_channels": in_channels, "image_size": image_size, **ncfg}
    if d["in_channels"] != in_channels or d["image_size"] != image_size:
        raise ValueError(f"[network] in_channels/image_size ({d['in_channels']}, {d['image_size']}) do not match "
                         f"the data ({in_channels}, {image_size})")
    try:
        return UNet(UNetConfig.from_dict(d))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[network] {str(exc).replace('UNetConfig.', '')}") from exc


def make_loss(kind: str, process: SPDEProcess, data: torch.Tensor, rng: np.random.Generator,
              pool_size: int = 2048, antithetic: bool = True, pool_advance: int = 1, time_weight_power: float = 0.0):
    """The loss of a ``[train] loss`` name: "exact", "transition" (:mod:`genmodel.losses`), "path"
    (:mod:`genmodel.path_dsm`), or "auto" (exact for linear chains, transition otherwise);
    ``time_weight_power``: the time measure of :mod:`genmodel.losses` (0: uniform)."""
    if kind == "auto":
        kind = "exact" if process.is_linear else "transition"
    if kind == "exact":
        return ExactGaussianDSM(process, data, time_weight_power)
    if kind == "transition":
        return TransitionDSM(process, data, pool_size, rng, antithetic, pool_advance, time_weight_power)
    if kind == "path":
        return PathDSM(process, data, pool_size, rng, pool_advance, time_weight_power)
    raise ValueError(f"loss must be one of 'auto', {LOSSES}; got {kind!r}")


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


def _set_threads(n: int, share: int = 1) -> int:
    """``n`` threads (0: up to 2, the cores divided among the ``share`` processes of this node).

    numba first: with its OpenMP threading layer, launching numba's pool (which ``set_num_threads``
    does) resets the OpenMP thread count torch shares with it to numba's default (all cores). Set
    after it, torch keeps ``n``; set before, torch silently ran on every core."""
    n = int(n) or max(1, min((os.cpu_count() or 1) // max(1, share), 2))
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover
        pass
    torch.set_num_threads(n)
    return n


class Trainer:
    """One training run (see the module doc). ``cfg``: a dict from :func:`load_config`.

    ``dist``: a :class:`genmodel.distributed.DistContext` to train data-parallel (one Trainer per
    torchrun process; see :mod:`genmodel.distributed`), None for the single-process run."""

    def __init__(self, cfg: dict, out_dir=None, log=print, dist: DistContext | None = None, progress: bool = False):
        self.cfg = cfg
        self.log = log
        self.dist = dist
        self.rank, self.world_size = (dist.rank, dist.world_size) if dist else (0, 1)
        self.out = Path(out_dir) if out_dir else Path(check_output_dir(cfg["output"]["dir"]))
        tr = cfg["train"]
        self.device = dist.device if dist else resolve_device(tr["device"])
        self.threads = _set_threads(tr["threads"], int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if dist else 1)
        self.local_batch = split_evenly(tr["batch"], self.world_size, "batch")
        self.local_pool = share_of(tr["pool"], self.rank, self.world_size, "pool")
        t_setup = time.perf_counter()

        def stage(text):  # one line per setup stage, as it starts (a slow setup is not silent)
            self.log(f"setup {time.perf_counter() - t_setup:5.1f} s: {text}")

        stage(f"loading the data ([data] dataset = {cfg['data'].get('dataset', 'digits')!r})")
        self.train_data, self.heldout = load_dataset(cfg["data"])
        _, C, H, W = self.train_data.shape
        if H != W:
            raise ValueError(f"[data]: square images are needed, got {H}x{W}")
        self.local_data = shard(self.train_data, self.rank, self.world_size) if dist else self.train_data
        stage(f"{self.train_data.shape[0]} training and "
              f"{0 if self.heldout is None else self.heldout.shape[0]} held-out images {C}x{H}x{W}; building the "
              f"process ([process] preset = {cfg['process'].get('preset')!r})")
        self.process = self._build_process(H)
        torch.manual_seed(tr["seed"])
        stage("building the network and the model (reference tables of the process)")
        self.net = build_network(cfg["network"], C, H)
        with _elapsed("setup: model", progress and self.rank == 0):
            self.model = self._build_model()
        if self.device.type != "cpu":
            self.model.to(self.device)
        self.ema = EMA(self.model, tr["ema"])
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tr["lr"])
        if dist:
            self.rng, torch_seed = rank_seeds(tr["seed"], self.rank, self.world_size)
            torch.manual_seed(torch_seed)  # dropout: one stream per rank
        else:
            self.rng = np.random.default_rng(tr["seed"])
        # the chain (pools, path targets) on the network's device when spdekit can compute there (cupy)
        self.chain_device = chain_device(self.device)
        self.local_data = self.local_data.to(self.chain_device)
        stage(f"preparing the loss ([train] loss = {tr['loss']!r}, pool = {tr['pool']}: forward paths are "
              f"simulated to random times, on {self.chain_device})")
        with _elapsed("setup: loss", progress and self.rank == 0):
            self.loss = self._make_loss()
        self.forward_model = self._wrap(self.model)
        stage("done")
        self.step = 0
        self.seconds = 0.0
        self.running = None  # the smoothed loss shown in the logs (part of the resumable state)
        self.history: list = []

    # hooks that another method (genmodel.flow_matching) overrides; everything else is shared
    def _build_process(self, image_size: int):
        return build_process(self.cfg["process"], image_size)

    def _build_model(self):
        return ScoreModel.for_process(self.net, self.process, self.cfg["train"]["sigma_data"], data=self.train_data)

    def _make_loss(self):
        tr = self.cfg["train"]
        return make_loss(tr["loss"], self.process, self.local_data, self.rng, self.local_pool, tr["antithetic"],
                         tr["pool_advance"], tr["time_weight_power"])

    def _wrap(self, model):
        """The module the loss calls: DDP over the model under torchrun; moved to the device."""
        if self.dist:
            import torch.distributed as tdist
            from torch.nn.parallel import DistributedDataParallel

            # the buffers (data statistics, reference tables) are identical on every rank and never change:
            # synchronise them once, not at every forward (they are MBs for the reference tables)
            for b in model.buffers():
                tdist.broadcast(b, 0)
            no_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})  # torch < 2.13
            model = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                            **no_sync)
        return OnDevice(model, self.device) if self.device != self.chain_device else model

    @property
    def n_params(self) -> int:
        return count_parameters(self.net)

    # ------------------------------------------------------------------ state
    def _stream_state(self) -> dict:
        """This rank's random streams and forward-path pool."""
        d = {"rng_numpy": self.rng.bit_generator.state, "rng_torch": torch.get_rng_state(),
             "loss_state": self.loss.state_dict()}
        if self.device.type == "cuda":
            d["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return d

    def _train_state(self) -> dict:
        """The "train" checkpoint; under torchrun a collective call (every rank's streams are gathered)."""
        streams = self._stream_state()
        state = {
            "kind": "train",
            "arch": self.net.cfg.to_dict(),
            "arch_hash": self.net.arch_hash,
            "process": self.process.to_dict(),
            "config": self.cfg,
            "model": _cpu(self.model.state_dict()),
            "ema": _cpu(self.ema.shadow.state_dict()),
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "running_loss": self.running,
            "history": self.history,
            "world_size": self.world_size,
        }
        if self.dist:
            state["ranks"] = all_gather_objects(streams, self.dist)
        else:
            state.update(streams)
        return state

    def save(self) -> Path | None:
        """Write ``last.pt`` atomically (rank 0 only; every rank must call it under torchrun)."""
        state = self._train_state()
        return save_checkpoint(self.out / "last.pt", state) if self.rank == 0 else None

    def resume(self, path=None) -> None:
        """Continue from a "train" checkpoint. Written by the same number of processes: exactly
        (weights, optimizer, EMA, every random stream, the forward-path pools). By another number:
        weights, optimizer, EMA and step are restored and each rank's random streams restart from
        SeedSequence([seed, step]) with a fresh pool (the run goes on statistically, not bit for bit)."""
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
        self.running = ck.get("running_loss")
        self.history = [tuple(h) for h in ck.get("history", [])]
        written_by = int(ck.get("world_size", 1))
        if written_by == self.world_size:
            streams = ck["ranks"][self.rank] if "ranks" in ck else ck
            self.rng.bit_generator.state = streams["rng_numpy"]
            torch.set_rng_state(streams["rng_torch"])
            if self.device.type == "cuda" and "rng_cuda" in streams:
                torch.cuda.set_rng_state(streams["rng_cuda"], self.device)
            self.loss.load_state_dict(streams["loss_state"])
            self.log(f"resumed from {path} at step {self.step}")
        else:
            self.rng, torch_seed = rank_seeds(self.cfg["train"]["seed"], self.rank, self.world_size, self.step)
            torch.manual_seed(torch_seed)
            self.loss = self._make_loss()
            self.log(f"resumed from {path} at step {self.step}: written by {written_by} process(es), now "
                     f"{self.world_size}; weights, optimizer and EMA restored, random streams and forward-path "
                     f"pool restarted (statistically the same run, not bit for bit)")

    # ------------------------------------------------------------------ loop
    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup`` steps, then constant or (``lr_schedule = "cosine"``) a cosine
        decay to ``lr_final`` x lr at the last step (Loshchilov & Hutter 2017, without restarts)."""
        tr = self.cfg["train"]
        w = tr["warmup"]
        if step < w:
            return tr["lr"] * (step + 1) / w
        if tr["lr_schedule"] == "constant":
            return tr["lr"]
        x = min(1.0, (step - w) / max(tr["steps"] - w, 1))
        return tr["lr"] * (tr["lr_final"] + (1 - tr["lr_final"]) * 0.5 * (1 + math.cos(math.pi * x)))

    def train_step(self) -> float:
        tr = self.cfg["train"]
        self.forward_model.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        loss = self.loss(self.forward_model, self.local_batch, self.rng)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.step}"
                                     + (f" on rank {self.rank}" if self.dist else ""))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: gradients averaged over the ranks here
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr["grad_clip"])
        self.opt.step()
        self.ema.update(self.model)
        self.step += 1
        value = float(loss.detach())
        return mean_across_ranks(value, self.dist) if self.dist else value

    def run(self, steps: int | None = None, progress: bool = True, stop_on_signals: bool = False) -> None:
        """Train up to ``steps`` (default: ``[train] steps``), writing ``last.pt`` every ``checkpoint_every``
        steps and at the end.

        ``stop_on_signals`` (single process, main thread; the command line sets it): SIGINT (Ctrl-C) and
        SIGTERM let the current step finish, write ``last.pt`` at that step and raise
        :class:`TrainingInterrupted`; ``resume()`` then continues bit for bit (on the CPU). A second
        signal stops at once with KeyboardInterrupt, keeping the last checkpoint written."""
        tr = self.cfg["train"]
        total = tr["steps"] if steps is None else int(steps)
        t_last = time.perf_counter()
        progress = progress and self.rank == 0
        stop = _StopSignals(stop_on_signals and self.dist is None)
        with stop, tqdm(total=total, initial=self.step, disable=not progress, desc="train", unit="step",
                        dynamic_ncols=True) as bar:
            while self.step < total:
                loss = self.train_step()
                running = self.running = loss if self.running is None else 0.98 * self.running + 0.02 * loss
                now = time.perf_counter()
                self.seconds += now - t_last
                t_last = now
                bar.update(1)
                if self.step % tr["log_every"] == 0:
                    self.history.append((self.step, running, self.seconds))
                    bar.set_postfix(loss=f"{running:.4g}", sps=f"{self.step / max(self.seconds, 1e-9):.2f}")
                saved = self.step % tr["checkpoint_every"] == 0 or self.step == total
                if saved or stop.signum is not None:
                    path = self.save()
                    t_last = time.perf_counter()
                    if stop.signum is not None:
                        raise TrainingInterrupted(stop.signum, self.step, total, path)

    # ------------------------------------------------------------------ export
    def exported_weights(self) -> dict:
        """The EMA state dict on the CPU, the network's floating weights in float16 when
        ``[output] half_precision_export`` is set (shared by every trainer's export)."""
        half = bool(self.cfg["output"]["half_precision_export"])
        return {k: (v.half() if half and v.is_floating_point() and k.startswith("net.") else v)
                for k, v in _cpu(self.ema.shadow.state_dict()).items()}

    def export(self, path=None, prior_seed: int = 0) -> Path:
        """Write the "model" checkpoint: EMA weights + everything sampling needs."""
        t0 = time.perf_counter()
        prior = GaussianPrior.fit(self.process, self.train_data, replicates=self.cfg["prior"]["replicates"],
                                  seed=prior_seed)
        self.prior_seconds = time.perf_counter() - t0
        state = self.exported_weights()
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


@contextlib.contextmanager
def _elapsed(desc: str, enabled: bool):
    """A ticking elapsed-time display on stderr while a setup stage without its own progress bar runs."""
    if not enabled:
        yield
        return
    bar = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed} elapsed", leave=False)
    done = threading.Event()

    def tick():
        while not done.wait(0.5):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        bar.close()


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing ``last.pt`` at ``step`` (see :meth:`Trainer.run`)."""

    def __init__(self, signum: int, step: int, total: int, path):
        self.signum, self.step, self.total, self.path = int(signum), step, total, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step} of {total}; checkpoint {path}")


class _StopSignals:
    """While active (if ``enabled`` and in the main thread): the first SIGINT or SIGTERM only records
    ``signum`` (the loop stops after its step); a second one raises KeyboardInterrupt at once."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self.signum = signum

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False


def _cpu(state: dict) -> dict:
    """A state dict with its tensors on the CPU (a checkpoint then loads anywhere); no copy on CPU."""
    return {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


def seconds_to_text(s: float) -> str:
    return f"{int(s // 60)} min {s - 60 * math.floor(s / 60):.0f} s"


__all__ = ["Trainer", "TrainingInterrupted", "EMA", "load_config", "check_config", "build_process", "build_network",
           "make_loss", "DEFAULTS"]
