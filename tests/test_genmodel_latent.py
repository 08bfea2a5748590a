"""Latent space: the autoencoder interface, a digits autoencoder, a process trained on latents, decoding."""

import numpy as np
import pytest
import torch

from genmodel.checkpoint import CheckpointError
from genmodel.cli import main
from genmodel.data import load_dataset, load_digits
from genmodel.latent import (
    ConvAutoencoder,
    encode_dataset,
    load_autoencoder,
    reconstruction_rms,
    save_autoencoder,
    train_autoencoder,
)
from genmodel.train import Trainer, load_config


def test_autoencoder_latent_process_and_decoding(tmp_path):
    """3 epochs of a small conv autoencoder on 16x16 digits (2 x 8 x 8 latents) reconstruct held-out digits with
    less than half the RMS error of the best constant image (the training mean; measured 0.17 of it); latents
    are standardised per channel; an SPDE model trains on them from a config and `genmodel sample` returns
    decoded images."""
    torch.set_num_threads(1)
    train, held = load_digits(16, "train"), load_digits(16, "test")
    ae, res = train_autoencoder(train, held, epochs=3, width=16, log=lambda *_: None)
    base = float((held - train.mean(0)).square().mean().sqrt())
    assert res["rms_heldout"] < 0.5 * base, (res, base)
    assert ae.latent_shape == (2, 8, 8)
    z = encode_dataset(ae, train)
    assert z.shape == (train.shape[0], 2, 8, 8)
    np.testing.assert_allclose(z.mean((0, 2, 3)).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(z.std((0, 2, 3)).numpy(), 1, atol=1e-3)
    path = save_autoencoder(ae, tmp_path / "ae.pt", res)
    ae2 = load_autoencoder(path)
    assert reconstruction_rms(ae2, held[:50]) == pytest.approx(reconstruction_rms(ae, held[:50]), rel=1e-6)

    data = {"dataset": "latents", "autoencoder": str(path), "source": {"dataset": "digits", "image_size": 16}}
    tr_lat, held_lat = load_dataset(data)
    assert torch.allclose(tr_lat, z)
    cfg = load_config({
        "data": data,
        "process": {"preset": "paper_isotropic", "T": 0.2, "dt": 0.01, "stencil": "conservative"},
        "network": {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "groups": 4},
        "train": {"steps": 2, "batch": 8, "threads": 1, "loss": "exact"},
        "sampling": {"steps": 20, "corrector_steps": 0},  # Delta = 0.01 < h^2 / (4 alpha1_max) = 0.0156
    })
    tr = Trainer(cfg, tmp_path / "run", log=lambda *_: None)
    assert tr.train_data.shape[1:] == (2, 8, 8)
    tr.run(progress=False)
    ckpt = tr.export()
    out = tmp_path / "s.npz"
    assert main(["sample", str(ckpt), "--n", "5", "--out", str(out), "--quiet"]) == 0
    x = np.load(out)["images"]
    assert x.shape == (5, 1, 16, 16) and np.all(np.abs(x) <= 1)
    # SDEdit on latents: image strokes are encoded, outputs decoded
    out2 = tmp_path / "st.npz"
    assert main(["stroke2img", str(ckpt), "--from-digits", "2", "--n-per-stroke", "2", "--t0", "0.05", "--out",
                 str(out2), "--quiet"]) == 0
    z2 = np.load(out2)
    assert z2["images"].shape == (4, 1, 16, 16) and z2["strokes"].shape == (2, 1, 16, 16)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="factor"):
        ConvAutoencoder(image_size=16, factor=3)
    with pytest.raises(ValueError, match="autoencoder"):
        load_dataset({"dataset": "latents", "source": {"dataset": "digits"}})
    torch.save({"format": "genmodel-checkpoint", "version": 1, "kind": "model", "arch": {}, "arch_hash": "x",
                "ema": {}}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="autoencoder"):
        load_autoencoder(tmp_path / "m.pt")
