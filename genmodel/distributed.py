"""Data-parallel training under ``torchrun`` (DistributedDataParallel).

``genmodel train CONFIG`` runs unchanged under

    torchrun --standalone --nproc_per_node=N -m genmodel.cli train CONFIG      (one node)

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``);
:func:`from_environment` reads them and joins the process group: backend ``nccl`` with one GPU per
process (``cuda:LOCAL_RANK``) when CUDA is available and ``[train] device`` allows it, ``gloo`` on
CPU otherwise. ``WORLD_SIZE`` unset or 1 is the ordinary single-process run, byte for byte.

What each rank does (see :class:`genmodel.train.Trainer`):

* the model is built from the same seed on every rank (DDP also broadcasts rank 0's weights), and
  gradients are averaged across ranks in ``backward``; so weights, optimizer and EMA stay identical;
* ``[train] batch`` and ``[train] pool`` are the GLOBAL sizes, split across ranks (``batch`` must be
  divisible by the number of processes, so that the averaged gradient weighs every chain state
  alike; ``pool`` is split as evenly as possible), so a config means the same optimisation problem
  whatever the number of processes;
* each rank draws from its own shard of the training images (rank r takes images r, r + N, ...);
* each rank has its own random streams (forward-process noise, time indices, dropout), children of
  ``numpy.random.SeedSequence(seed)`` spawned per rank: reproducible for a given (seed, N);
* only rank 0 prints, shows progress and writes checkpoints; a checkpoint holds the unwrapped
  module's weights (it loads in a single-process run) and every rank's random and pool state, so
  ``--resume`` under the same N continues the run exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def environment() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from the torchrun variables, or None outside torchrun / for
    a world of one process."""
    if "WORLD_SIZE" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"torchrun environment variables must be integers: {exc}") from exc
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return None if world == 1 else (rank, world, local)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``[train] device``: "auto" (cuda:LOCAL_RANK when CUDA is available, else cpu), "cpu" or "cuda"."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"[train] device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("[train] device = 'cuda' but torch sees no CUDA device")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def process_device(device: str, local_rank: int, local_world_size: int) -> torch.device:
    """The device of one torchrun process: NCCL needs a GPU of its own per process, so "auto" with
    more processes on this node than GPUs trains on the CPU (gloo), and "cuda" is refused."""
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda" and local_world_size > torch.cuda.device_count():
        if device == "auto":
            return torch.device("cpu")
        raise ValueError(f"[train] device = 'cuda' with {local_world_size} processes on this node but "
                         f"{torch.cuda.device_count()} GPU(s): each process needs its own GPU (NCCL); start at most "
                         f"{torch.cuda.device_count()} per node (torchrun --nproc-per-node) or set device = 'cpu'")
    return dev


def from_environment(device: str = "auto") -> DistContext | None:
    """Join the torchrun process group (None when not under torchrun with more than one process)."""
    env = environment()
    if env is None:
        return None
    import torch.distributed as dist

    rank, world, local = env
    dev = process_device(device, local, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local, backend, dev)


def rank_seeds(seed: int, rank: int, world_size: int, step: int | None = None) -> tuple[np.random.Generator, int]:
    """(numpy generator, torch seed) of one rank: children of SeedSequence(seed) (or of
    SeedSequence([seed, step]) when streams restart at ``step``), one per rank, each split into a
    numpy stream (noise, time indices, data draws) and a torch seed (dropout)."""
    root = np.random.SeedSequence(int(seed) if step is None else [int(seed), int(step)])
    child = root.spawn(world_size)[rank]
    np_seq, torch_seq = child.spawn(2)
    return np.random.default_rng(np_seq), int(torch_seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def shard(data: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s deterministic share of the training images (every ``world_size``-th)."""
    part = data[rank::world_size].contiguous()
    if part.shape[0] == 0:
        raise ValueError(f"{data.shape[0]} training images cannot be shared by {world_size} processes")
    return part


def split_evenly(total: int, world_size: int, what: str) -> int:
    if total % world_size:
        raise ValueError(f"[train] {what} = {total} must be divisible by the number of processes ({world_size})")
    return total // world_size


def share_of(total: int, rank: int, world_size: int, what: str) -> int:
    """Rank ``rank``'s part of ``total`` items split as evenly as possible (the first ranks take one
    more when it does not divide)."""
    part = total // world_size + (rank < total % world_size)
    if part < 1:
        raise ValueError(f"[train] {what} = {total} is smaller than the number of processes ({world_size})")
    return part


def all_gather_objects(obj, ctx: DistContext) -> list:
    import torch.distributed as dist

    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_across_ranks(value: float, ctx: DistContext) -> float:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            # leave together: a rank that tore down its gloo group while rank 0 was still exporting
            # the model aborted at exit ("terminate called without an active exception")
            dist.barrier()
            dist.destroy_process_group()


class OnDevice(torch.nn.Module):
    """Runs ``module`` on its device for inputs and outputs that live on the CPU (the forward
    process is simulated by spdekit on the CPU); autograd carries the gradients across."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        super().__init__()
        self.module = module
        self.device = device

    def forward(self, t, u):
        return self.module(t.to(self.device), u.to(self.device)).to(u.device)

    def gaussian_reference(self, process):
        """The wrapped model's Gaussian reference (host arrays), if it has one."""
        get = getattr(self.module, "gaussian_reference", None)
        return None if get is None else get(process)


def on_device(model: torch.nn.Module, device: str = "auto") -> torch.nn.Module:
    """``model`` for a sampler whose state stays on the CPU (spdekit's host kernels): moved to
    ``device`` ("auto": the GPU when torch sees one, "cpu", "cuda") and wrapped in :class:`OnDevice`,
    so each evaluation sends its (t, u) there and brings the result back. On the CPU: ``model``."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        return model
    return OnDevice(model.to(dev), dev)


def chain_device(device) -> torch.device:
    """Where genmodel's chain (spdekit's numerics: forward paths, path targets, reverse steps) runs for a
    network on ``device``: that device when spdekit can compute there (a CUDA device and cupy installed:
    spdekit's cupy backend, reached through DLPack without copies), else the CPU, and the network then
    gets its inputs through :class:`OnDevice`."""
    dev = torch.device(device)
    if dev.type == "cuda":
        from spdekit.backends import available

        if available("cupy"):
            return dev
    return torch.device("cpu")


def placed(model: torch.nn.Module, device: str = "auto") -> tuple[torch.nn.Module, torch.device]:
    """``(model for the sampler, the chain's device)``: the model moved to ``device`` ("auto": the GPU when
    torch sees one); where the chain can run there too (:func:`chain_device`) the model is returned as it
    is and the sampler's state lives on that device, else it is wrapped in :class:`OnDevice` and the
    chain stays on the CPU."""
    dev = resolve_device(device)
    chain = chain_device(dev)
    model = model.to(dev) if dev.type != "cpu" else model
    return (model if chain == dev else OnDevice(model, dev)), chain


__all__ = ["DistContext", "environment", "resolve_device", "process_device", "from_environment", "rank_seeds", "shard",
           "split_evenly", "share_of", "all_gather_objects", "mean_across_ranks", "barrier", "shutdown", "OnDevice",
           "on_device", "chain_device", "placed"]
