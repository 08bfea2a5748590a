"""Checkpoints: atomic writes, safe loads, clear errors.

A checkpoint is a dict of tensors and plain Python values written by ``torch.save`` to a temporary
file in the target folder and moved into place with ``os.replace`` (atomic on POSIX: a reader sees
the old file or the new one, never a torn write; a crash leaves the old checkpoint intact). It is
read with ``torch.load(weights_only=True)``: no arbitrary objects are unpickled.

Every checkpoint carries ``format``, ``version``, ``kind`` ("train": model + EMA + optimizer +
RNG + data-pool state for ``--resume``; "model": EMA weights only, for sampling) and the network
architecture with its hash, so a checkpoint of another architecture is reported with the
differing settings instead of a wall of state_dict key errors.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = "genmodel-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (unreadable, not ours, other architecture)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` (plus format/version) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Load and validate a checkpoint. ``kind`` ("train" or "model") is checked when given; a
    "train" checkpoint is accepted where a "model" one is asked for (it holds the EMA weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not usable
        raise CheckpointError(
            f"{str(path)!r} is not a readable genmodel checkpoint (corrupt, truncated or not a torch file): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a torch file but not a genmodel checkpoint (no format tag)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {data.get('version')}, this genmodel reads "
                              f"version {VERSION}")
    required = ("kind", "arch", "arch_hash") + (("state",) if data.get("kind") == "classifier" else ("ema",))
    for key in required:
        if key not in data:
            raise CheckpointError(f"{str(path)!r} lacks the entry {key!r} (incomplete checkpoint)")
    if kind is not None and data["kind"] != kind and not (kind == "model" and data["kind"] == "train"):
        raise CheckpointError(f"{str(path)!r} is a {data['kind']!r} checkpoint; a {kind!r} checkpoint is needed")
    return data


def check_architecture(ckpt: dict, arch: dict, arch_hash: str, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the differing settings when the architectures differ."""
    if ckpt["arch_hash"] == arch_hash:
        return
    theirs = ckpt["arch"]
    diff = sorted(k for k in set(theirs) | set(arch) if k != "dropout" and theirs.get(k) != arch.get(k))
    detail = ", ".join(f"{k}: {source} {theirs.get(k)!r} vs model {arch.get(k)!r}" for k in diff)
    raise CheckpointError(
        f"the {source} was written by another network architecture (hash {ckpt['arch_hash']} vs "
        f"{arch_hash}): {detail or 'same settings, different code version'}"
    )


def load_state_strict(module: torch.nn.Module, state: dict, what: str = "model") -> None:
    """load_state_dict with a readable error on missing/unexpected/mis-shaped entries."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5]))
        raise CheckpointError(f"{what} weights do not fit this network: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "check_architecture", "load_state_strict"]
