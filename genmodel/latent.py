"""Latent-space generative modelling (paper, Appendix O): any process runs on an autoencoder's latents.

:class:`Autoencoder` is the interface: ``encode(x) -> z`` maps (N, C, H, W) images in [-1, 1] to
(N, c, h, w) latents (a spatial grid, so the SPDE operators act on it as on an image), ``decode(z)``
maps back; ``latent_shape`` gives (c, h, w). Latents are standardised (per channel, by statistics of
the training images' latents stored with the model) so that the processes' schedules, designed for
data of unit scale, apply unchanged (the "scale factor" of latent diffusion).

:class:`ConvAutoencoder` is a small deterministic convolutional autoencoder trained on digits by
:func:`train_autoencoder` (mean squared reconstruction error, Adam); the paper uses the pretrained
Stable-Diffusion VAE on LSUN, which is not shipped here (nothing is downloaded at run time).

Training on latents: ``[data] dataset = "latents"``, ``autoencoder = "ae.pt"`` and a ``source``
table (the image dataset, e.g. ``{dataset = "digits", image_size = 16}``); :func:`genmodel.data.load_dataset`
encodes both splits once. ``genmodel sample`` / ``evaluate`` decode the generated latents back to images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import CheckpointError, load_checkpoint, load_state_strict, save_checkpoint


class Autoencoder(nn.Module):
    """Interface: ``encode`` (images -> standardised latents), ``decode`` (latents -> images in [-1, 1]),
    ``latent_shape`` ((c, h, w) for the model's image size). Subclasses implement ``_encode``/``_decode``
    on raw latents; the standardisation (``latent_mean``, ``latent_std`` buffers) is done here."""

    def __init__(self, latent_channels: int):
        super().__init__()
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    def _encode(self, x):  # pragma: no cover - interface
        raise NotImplementedError

    def _decode(self, z):  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def latent_shape(self) -> tuple:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self._encode(x)
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z * self.latent_std[:, None, None] + self.latent_mean[:, None, None])

    @torch.no_grad()
    def set_latent_statistics(self, x: torch.Tensor, batch_size: int = 512) -> None:
        """Per-channel mean and standard deviation of the raw latents of ``x``."""
        z = torch.cat([self._encode(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        self.latent_mean.copy_(z.mean((0, 2, 3)))
        self.latent_std.copy_(z.std((0, 2, 3)).clamp_min(1e-6))


class ConvAutoencoder(Autoencoder):
    """Conv encoder (stride-2 downsamplings by ``factor``) to ``latent_channels`` x (S/factor)^2 and a
    mirrored decoder (nearest upsampling + conv), tanh output."""

    def __init__(self, image_size: int = 16, in_channels: int = 1, latent_channels: int = 2, factor: int = 2,
                 width: int = 32):
        super().__init__(latent_channels)
        if factor not in (1, 2, 4) or image_size % factor:
            raise ValueError(f"factor must be 1, 2 or 4 and divide image_size {image_size}, got {factor}")
        self.arch = {"image_size": image_size, "in_channels": in_channels, "latent_channels": latent_channels,
                     "factor": factor, "width": width}
        n_down = {1: 0, 2: 1, 4: 2}[factor]
        enc = [nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU()]
        for _ in range(n_down):
            enc += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
                    nn.SiLU()]
        enc.append(nn.Conv2d(width, latent_channels, 3, padding=1))
        dec = [nn.Conv2d(latent_channels, width, 3, padding=1), nn.SiLU()]
        for _ in range(n_down):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                    nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        dec.append(nn.Conv2d(width, in_channels, 3, padding=1))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple:
        a = self.arch
        s = a["image_size"] // a["factor"]
        return (a["latent_channels"], s, s)

    def _encode(self, x):
        return self.encoder(x)

    def _decode(self, z):
        return torch.tanh(self.decoder(z))


def train_autoencoder(train: torch.Tensor, heldout: torch.Tensor | None = None, epochs: int = 30, batch: int = 32,
                      lr: float = 5e-3, seed: int = 0, log=print, **arch) -> tuple[ConvAutoencoder, dict]:
    """Train a :class:`ConvAutoencoder` on (N, C, H, W) images by mean squared reconstruction error;
    returns it (latent statistics set from ``train``) and the RMS reconstruction errors."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ae = ConvAutoencoder(image_size=train.shape[-1], in_channels=train.shape[1], **arch)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(int(epochs)):
        ae.train()
        perm = torch.as_tensor(rng.permutation(train.shape[0]))
        for i in range(0, train.shape[0], batch):
            xb = train[perm[i:i + batch]]
            loss = F.mse_loss(ae._decode(ae._encode(xb)), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    ae.eval()
    ae.set_latent_statistics(train)
    res = {"rms_train": reconstruction_rms(ae, train)}
    if heldout is not None:
        res["rms_heldout"] = reconstruction_rms(ae, heldout)
    log(f"autoencoder {ae.arch}: reconstruction RMS {res}")
    return ae, res


@torch.no_grad()
def reconstruction_rms(ae: Autoencoder, x: torch.Tensor) -> float:
    ae.eval()
    return float((ae.decode(ae.encode(x)) - x).square().mean().sqrt())


def save_autoencoder(ae: ConvAutoencoder, path, meta: dict | None = None) -> Path:
    return save_checkpoint(path, {"kind": "autoencoder", "arch": ae.arch, "arch_hash": "conv-autoencoder-v1",
                                  "ema": ae.state_dict(), "meta": meta or {}})


def load_autoencoder(path) -> ConvAutoencoder:
    ck = load_checkpoint(path, kind="autoencoder")
    if ck["arch_hash"] != "conv-autoencoder-v1":
        raise CheckpointError(f"{str(path)!r}: unknown autoencoder architecture {ck['arch_hash']!r}")
    ae = ConvAutoencoder(**ck["arch"])
    load_state_strict(ae, ck["ema"], "autoencoder")
    ae.eval()
    ae.meta = ck.get("meta", {})
    return ae


@torch.no_grad()
def encode_dataset(ae: Autoencoder, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    ae.eval()
    if x is None:
        return None
    return torch.cat([ae.encode(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]).contiguous()


@torch.no_grad()
def decode_latents(ae: Autoencoder, z: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    ae.eval()
    return torch.cat([ae.decode(z[i:i + batch_size]) for i in range(0, z.shape[0], batch_size)])


def decoder_for(config: dict):
    """For a model's training config: the autoencoder whose latents it models, or None for pixel models."""
    d = config.get("data", {})
    if d.get("dataset") != "latents":
        return None
    return load_autoencoder(d["autoencoder"])


__all__ = ["Autoencoder", "ConvAutoencoder", "train_autoencoder", "save_autoencoder", "load_autoencoder",
           "encode_dataset", "decode_latents", "reconstruction_rms", "decoder_for"]
