"""Checkpoints: atomic writes, safe loads, verified contents, clear errors for bad files and other architectures."""

import os
from pathlib import Path

import pytest
import torch

import genmodel
from genmodel.checkpoint import (
    FORMAT,
    CheckpointError,
    check_architecture,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
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
    with pytest.raises(CheckpointError, match="not a readable.*unsupported global posix.system") as info:
        load_checkpoint(evil)
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)


def test_a_digest_mismatch_names_the_file(tmp_path):
    _, pl = payload(UNetConfig(**SMALL))
    path = save_checkpoint(tmp_path / "m.pt", pl)
    raw = torch.load(path, weights_only=True)
    assert len(raw["sha256"]) == 64 and "sha256" not in load_checkpoint(path)
    key = next(iter(raw["ema"]))
    raw["ema"][key] = raw["ema"][key] + 1e-3
    torch.save(raw, path)  # a consistent zip archive whose contents differ from the recorded digest
    with pytest.raises(CheckpointError, match=r"'.*m\.pt' is damaged: .*SHA-256 digest"):
        load_checkpoint(path)


def test_zeroed_bytes_inside_a_tensor_are_caught_with_or_without_a_digest(tmp_path):
    _, pl = payload(UNetConfig(**SMALL))
    new = save_checkpoint(tmp_path / "new.pt", pl)
    old = tmp_path / "old.pt"  # as written before checkpoints had a digest
    torch.save({"format": FORMAT, "version": 1, **pl}, old)
    assert "sha256" not in torch.load(old, weights_only=True) and load_checkpoint(old)["kind"] == "model"
    tensor = max(pl["ema"].values(), key=torch.numel)
    for path in (new, old):
        data = bytearray(path.read_bytes())
        start = data.find(tensor.numpy().tobytes())
        assert start > 0
        at = start + 4 * (tensor.numel() // 2)
        data[at:at + 4] = bytes(4)
        bad = tmp_path / f"bad-{path.name}"
        bad.write_bytes(data)
        torch.load(bad, weights_only=True)  # torch's zip reader does not check the CRC-32s: it loads
        with pytest.raises(CheckpointError, match=f"bad-{path.name}' is damaged"):
            load_checkpoint(bad)


def test_the_shipped_checkpoints_carry_a_digest_that_catches_damage(tmp_path):
    assets = Path(genmodel.__file__).parent / "assets"
    for asset in sorted(assets.glob("*.pt")):
        assert len(torch.load(asset, weights_only=True)["sha256"]) == 64
        load_checkpoint(asset)
    data = bytearray((assets / "digits16_anisotropic.pt").read_bytes())  # the reproduction of issue 24
    data[1_000_000:1_000_004] = bytes(4)
    (tmp_path / "zeroed.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match="zeroed.pt' is damaged"):
        load_checkpoint(tmp_path / "zeroed.pt")


def test_the_network_of_a_checkpoint_is_rebuilt_and_checked():
    """One rebuild for score and velocity models: the architecture entry gives the U-Net, the recorded hash
    must match it, and a broken entry is a CheckpointError naming the source."""
    from genmodel.networks import unet_from_checkpoint

    cfg = UNetConfig(in_channels=1, image_size=8, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=())
    _, ck = payload(cfg)
    assert unet_from_checkpoint(ck).cfg == cfg
    with pytest.raises(CheckpointError, match="^'m.pt': unusable architecture entry"):
        unet_from_checkpoint(dict(ck, arch={"ch": "eight"}), "'m.pt'")
    with pytest.raises(CheckpointError):
        unet_from_checkpoint(dict(ck, arch_hash="0" * 16))
