"""Checkpoints: atomic writes, safe loads, clear errors.

A checkpoint is a dict of tensors and plain Python values written by ``torch.save`` to a temporary
file in the target folder and moved into place with ``os.replace`` (atomic on POSIX: a reader sees
the old file or the new one, never a torn write; a crash leaves the old checkpoint intact). It is
read with ``torch.load(weights_only=True)``: no arbitrary objects are unpickled.

Integrity: ``save_checkpoint`` adds ``sha256``, the SHA-256 of the contents (every tensor's dtype,
shape and bytes and every plain value, in order; :func:`payload_digest`), and ``load_checkpoint``
recomputes it after loading: a file damaged on disk or in transfer raises :class:`CheckpointError`
naming it (torch's zip reader does not check the archive's CRC-32s, so without this a few flipped
bytes inside a tensor load silently). Checkpoints written before the digest existed are checked
against their zip archive's CRC-32s instead.

Every checkpoint carries ``format``, ``version``, ``kind`` ("train": model + EMA + optimizer +
RNG + data-pool state for ``--resume``; "model": EMA weights only, for sampling) and the network
architecture with its hash, so a checkpoint of another architecture is reported with the
differing settings instead of a wall of state_dict key errors.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

FORMAT = "genmodel-checkpoint"
VERSION = 1
DIGEST_KEY = "sha256"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (unreadable, not ours, other architecture)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def payload_digest(data: dict) -> str:
    """SHA-256 of a checkpoint's contents, its ``sha256`` entry excepted: tensors and numpy arrays by
    dtype, shape and bytes, containers by their items in order, other values by type and repr."""
    h = hashlib.sha256()

    def feed(obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(obj, np.ndarray):
            h.update(f"array {obj.dtype.str} {obj.shape};".encode())
            h.update(np.ascontiguousarray(obj).view(np.uint8))
        elif isinstance(obj, Mapping):
            h.update(f"dict {len(obj)};".encode())
            for k, v in obj.items():
                feed(k)
                feed(v)
        elif isinstance(obj, (list, tuple)):
            h.update(f"seq {len(obj)};".encode())
            for v in obj:
                feed(v)
        else:
            h.update(f"{type(obj).__name__} {obj!r};".encode())

    feed({k: v for k, v in data.items() if k != DIGEST_KEY})
    return h.hexdigest()


def save_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` (plus format, version and the ``sha256`` digest) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **{k: v for k, v in payload.items() if k != DIGEST_KEY}}
    data[DIGEST_KEY] = payload_digest(data)
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
    """Load, verify and validate a checkpoint: its ``sha256`` digest (or, in a checkpoint written
    before digests, its zip CRC-32s), format, version and entries. ``kind`` ("train" or "model") is
    checked when given; a "train" checkpoint is accepted where a "model" one is asked for (it holds
    the EMA weights). The returned dict lacks the digest entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not usable
        _check_zip_crcs(path)  # a damaged archive is named as such
        if "weights only load failed" not in str(exc).lower():
            raise _unreadable(path, exc) from exc
        # torch's message advises weights_only=False, i.e. running the file's code: not for us
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"unsupported global {found.group(1)}" if found else "objects other than tensors and plain values"
        raise CheckpointError(f"{str(path)!r} is not a readable genmodel checkpoint: it holds {what}, which "
                              f"loading with weights_only=True refuses") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a torch file but not a genmodel checkpoint (no format tag)")
    digest = data.pop(DIGEST_KEY, None)
    if digest is not None and digest != payload_digest(data):
        raise CheckpointError(f"{str(path)!r} is damaged: its contents do not match the SHA-256 digest recorded "
                              f"when it was saved (corrupted on disk or in transfer); save or copy it again")
    if digest is None:
        _check_zip_crcs(path)
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


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return CheckpointError(f"{str(path)!r} is not a readable genmodel checkpoint (corrupt, truncated or not a "
                           f"torch file): {type(exc).__name__}: {first}")


def _check_zip_crcs(path: Path) -> None:
    """Verify the CRC-32 that torch's zip writer stores for every record (torch.load does not)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError):
        return  # a legacy (non-zip) torch file: nothing to check
    if bad is not None:
        raise CheckpointError(f"{str(path)!r} is damaged: its record {bad!r} fails the zip CRC-32 check "
                              f"(corrupted on disk or in transfer); save or copy it again")


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


__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "payload_digest", "check_architecture",
           "load_state_strict"]
