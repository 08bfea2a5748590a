"""Checkpoints: atomic writes, safe loads, clear errors for bad files and other architectures."""

import os

import pytest
import torch

from genmodel.checkpoint import CheckpointError, check_architecture, load_checkpoint, load_state_strict, save_checkpoint
from genmodel.networks import UNet, UNetConfig


def payload(cfg):
    net = UNet(cfg)
    return net, {"kind": "model", "arch": cfg.to_dict(), "arch_hash": cfg.arch_hash(), "ema": net.state_dict()}


SMALL = dict(image_size=8, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), groups=8)


def test_atomic_write_and_roundtrip(tmp_path):
    net, pl = payload(UNetConfig(**SMALL))
    path = save_checkpoint(tmp_path / "sub" / "m.pt", pl)
    assert sorted(os.listdir(path.parent)) == ["m.pt"]  # no temporary file left behind
    ck = load_checkpoint(path, kind="model")
    other = UNet(UNetConfig(**SMALL))
    load_state_strict(other, ck["ema"])
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    # overwriting keeps a complete file at every moment: the old one until os.replace
    save_checkpoint(path, pl)
    assert sorted(os.listdir(path.parent)) == ["m.pt"]


def test_failed_write_leaves_old_checkpoint(tmp_path):
    _, pl = payload(UNetConfig(**SMALL))
    path = save_checkpoint(tmp_path / "m.pt", pl)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - an unpicklable object aborts torch.save
        save_checkpoint(path, {**pl, "bad": lambda: 0})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_other_architecture_is_named(tmp_path):
    _, pl = payload(UNetConfig(**SMALL))
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.pt", pl))
    wider = UNetConfig(**{**SMALL, "ch": 32})
    with pytest.raises(CheckpointError, match=r"another network architecture.*ch: checkpoint 16 vs model 32"):
        check_architecture(ck, wider.to_dict(), wider.arch_hash())
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_state_strict(UNet(wider), ck["ema"])
    assert UNetConfig(**{**SMALL, "dropout": 0.3}).arch_hash() == UNetConfig(**SMALL).arch_hash()


def test_corrupt_truncated_and_foreign_files(tmp_path):
    _, pl = payload(UNetConfig(**SMALL))
    good = save_checkpoint(tmp_path / "m.pt", pl)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable genmodel checkpoint"):
        load_checkpoint(trunc)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a genmodel checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="'train' checkpoint is needed"):
        load_checkpoint(good, kind="train")
    incomplete = save_checkpoint(tmp_path / "inc.pt", {"kind": "model", "arch": {}, "arch_hash": "x"})
    with pytest.raises(CheckpointError, match="lacks the entry 'ema'"):
        load_checkpoint(incomplete)


def test_unsafe_pickles_are_refused(tmp_path):
    """weights_only=True: a file that would run code on unpickling is rejected as unreadable."""
    evil = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": "genmodel-checkpoint", "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(evil)
