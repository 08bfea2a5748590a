"""Score networks: a U-Net of the NCSN++/DDPM++ family (Song et al. 2021, score_sde).

Residual blocks with GroupNorm and SiLU, the time embedding added inside each block, self-attention
at the low resolutions, a Gaussian Fourier embedding of time, skip connections rescaled by 1/sqrt(2)
(DDPM++ "skip_rescale"). Written from the architecture description, not copied.

The network ``UNet(cfg)`` maps (u, c) -> F with u of shape (B, C, H, W) and c of shape (B,) (the
conditioning time, scaled to about [0, 1]). The score model (:class:`ScoreModel`) wraps it with the
preconditioning of the process: s(t, u) = F(c_in(t) u, t / T) / sigma(t).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet`. ``ch_mult[i]`` multiplies ``ch`` at level i (resolution
    image_size / 2**i); ``attn_resolutions`` lists the resolutions that get self-attention."""

    in_channels: int = 1
    image_size: int = 16
    ch: int = 64
    ch_mult: tuple = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (8,)
    dropout: float = 0.1
    fourier_scale: float = 16.0
    groups: int = 16

    def __post_init__(self):
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions)
        for name in ("in_channels", "image_size", "ch", "num_res_blocks", "groups"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {v!r}")
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(f"UNetConfig.ch_mult must be a non-empty tuple of positive integers, got {self.ch_mult}")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**(len(ch_mult)-1) = "
                f"{2 ** (len(self.ch_mult) - 1)}"
            )
        for m in self.ch_mult:
            if (self.ch * m) % self.groups:
                raise ValueError(
                    f"every level width ch*ch_mult ({self.ch}*{m}) must be divisible by groups={self.groups}"
                )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        allowed = set(cls.__dataclass_fields__)
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown network keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    def arch_hash(self) -> str:
        """Hash of everything that fixes the parameter shapes (dropout excluded)."""
        d = self.to_dict()
        d.pop("dropout")
        blob = json.dumps({"class": "UNet", **d}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class GaussianFourierProjection(nn.Module):
    """gamma(c) = [sin(2 pi W c), cos(2 pi W c)], W ~ N(0, scale^2) fixed (Tancik et al. 2020)."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, c):
        proj = 2 * math.pi * c[:, None] * self.W[None, :]
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def _zero(module: nn.Module) -> nn.Module:
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Dense(temb), GN-SiLU-dropout-conv (zero-initialised), skip; /sqrt(2)."""

    def __init__(self, cin: int, cout: int, temb: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.dense = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.dense(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map; output projection zero-init."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = h.transpose(1, 2).reshape(B, C, H, W)
        return (x + self.proj(h)) / math.sqrt(2.0)


class UNet(nn.Module):
    """NCSN++/DDPM++-style U-Net; see :class:`UNetConfig`."""

    def __init__(self, cfg: UNetConfig | None = None, **kw):
        super().__init__()
        cfg = UNetConfig(**kw) if cfg is None else cfg
        self.cfg = cfg
        ch, g = cfg.ch, cfg.groups
        temb = 4 * ch
        self.fourier = GaussianFourierProjection(ch, cfg.fourier_scale)
        self.temb = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        widths = [ch]
        cur = ch
        res = cfg.image_size
        for level, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                blocks = nn.ModuleList([ResBlock(cur, ch * mult, temb, cfg.dropout, g)])
                cur = ch * mult
                if res in cfg.attn_resolutions:
                    blocks.append(AttnBlock(cur, g))
                self.down.append(blocks)
                widths.append(cur)
            if level != len(cfg.ch_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                widths.append(cur)
                res //= 2

        self.mid = nn.ModuleList(
            [ResBlock(cur, cur, temb, cfg.dropout, g), AttnBlock(cur, g), ResBlock(cur, cur, temb, cfg.dropout, g)]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(cur + widths.pop(), ch * mult, temb, cfg.dropout, g)])
                cur = ch * mult
                if res in cfg.attn_resolutions:
                    blocks.append(AttnBlock(cur, g))
                self.up.append(blocks)
            if level != 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(cur, cur, 3, padding=1)]))
                res *= 2
        self.norm_out = nn.GroupNorm(min(g, cur), cur)
        self.conv_out = nn.Conv2d(cur, cfg.in_channels, 3, padding=1)

    @property
    def arch_hash(self) -> str:
        return self.cfg.arch_hash()

    def forward(self, x, c):
        emb = self.temb(self.fourier(c))
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            first = blocks[0]
            if isinstance(first, ResBlock):
                h = first(h, emb)
                for b in blocks[1:]:
                    h = b(h)
            else:
                h = first(h)
            hs.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        for blocks in self.up:
            first = blocks[0]
            if isinstance(first, ResBlock):
                h = first(torch.cat([h, hs.pop()], dim=1), emb)
                for b in blocks[1:]:
                    h = b(h)
            else:
                for b in blocks:
                    h = b(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MLPScoreNet(nn.Module):
    """A small fully connected net for tiny grids and tests: [u, gamma(c)] -> hidden (SiLU) -> F.
    Same call signature as :class:`UNet` (u of shape (B, C, H, W), c of shape (B,))."""

    def __init__(self, shape, hidden: int = 256, depth: int = 3, fourier_scale: float = 16.0):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        d = math.prod(self.shape)
        self.fourier = GaussianFourierProjection(64, fourier_scale)
        layers, width = [], d + 64
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, d))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x, c):
        h = torch.cat([x.flatten(1), self.fourier(c)], dim=1)
        return self.mlp(h).reshape((-1,) + self.shape)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())





class ScoreModel(nn.Module):
    """s(t, u) = F(c_in(t) u, t / T) / sigma(t): the network with the process's preconditioning.

    sigma(t)^2 = sum_{m<k} dt alpha2(t_m)^2 is the noise variance the chain has accumulated
    (``SPDEProcess.sigma2``), so that F is O(1) at every time: near t = 0 the
    score is about -(noise)/sigma^2, later about -(u - m)/Var(u) with Var(u) >= sigma^2 only damped by
    the drift. c_in = 1 / sqrt(sigma_data^2 + sigma(t)^2) keeps the input O(1) (Karras et al. 2022).
    The sigma table travels with the weights (a buffer), so a loaded model needs no process object.
    """

    def __init__(self, net: UNet, sigma2_table, dt: float, T: float, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.register_buffer("sigma2", torch.as_tensor(sigma2_table, dtype=torch.float64))
        self.dt = float(dt)
        self.T = float(T)
        self.sigma_data = float(sigma_data)

    @classmethod
    def for_process(cls, net: UNet, process, sigma_data: float = 0.5) -> ScoreModel:
        return cls(net, process.sigma2, process.dt, process.T, sigma_data)

    def noise_scale(self, t: torch.Tensor) -> torch.Tensor:
        K = self.sigma2.shape[0] - 1
        x = (t.detach().to(torch.float64) / self.dt).clamp(1.0, float(K))
        lo = x.floor().clamp(max=K - 1).long()
        w = x - lo
        return (self.sigma2[lo] * (1 - w) + self.sigma2[lo + 1] * w).sqrt()

    def forward(self, t, u):
        t = torch.as_tensor(t, dtype=u.dtype, device=u.device)
        if t.ndim == 0:
            t = t.expand(u.shape[0])
        sigma = self.noise_scale(t).to(u.dtype)
        c_in = torch.rsqrt(self.sigma_data**2 + sigma**2)
        F_ = self.net(u * c_in[:, None, None, None], t / self.T)
        return F_ / sigma[:, None, None, None]

__all__ = ["UNet", "UNetConfig", "ScoreModel", "MLPScoreNet", "GaussianFourierProjection", "count_parameters"]
