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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from spdekit.reference import GaussianReference

from .bridge import host_array
from .checkpoint import CheckpointError, check_architecture

PARAMETERIZATIONS = ("plain", "reference", "moments")
MOMENT_GRID = 10  # chain steps between the stored forward-moment corrections


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet`. ``ch_mult[i]`` multiplies ``ch`` at level i (resolution
    image_size / 2**i); ``attn_resolutions`` lists the resolutions that get self-attention.

    The default (ch 48, (1, 2, 2), two residual blocks per level, attention at 8x8) has 3.8 M
    parameters at 16x16 and 32x32. The shipped CPU digits model uses ch 16, (1, 2, 4), one block,
    attention at 4x4: 0.69 M parameters, about 0.5 s per training step of 128 evaluations on one
    core (genmodel/configs/digits16_anisotropic.toml)."""

    in_channels: int = 1
    image_size: int = 16
    ch: int = 48
    ch_mult: tuple = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (8,)
    dropout: float = 0.1
    fourier_scale: float = 16.0
    groups: int = 16
    skip_kernel: int = 5
    score_param: str = "reference"

    def __post_init__(self):
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions)
        for name in ("in_channels", "image_size", "ch", "num_res_blocks", "groups"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {v!r}")
        if self.score_param not in PARAMETERIZATIONS:
            raise ValueError(f"UNetConfig.score_param must be one of {PARAMETERIZATIONS}, got {self.score_param!r}")
        sk = self.skip_kernel
        if not isinstance(sk, int) or sk < 0 or (sk and sk % 2 == 0):
            raise ValueError(f"UNetConfig.skip_kernel must be 0 (off) or an odd positive integer, got {sk!r}")
        if self.skip_kernel // 2 >= self.image_size:
            raise ValueError(f"skip_kernel {self.skip_kernel} is too large for image_size {self.image_size}")
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


class LinearSkip(nn.Module):
    """A linear, time-dependent k x k filter of the input (per channel), its kernel a (zero-
    initialised) linear function of the time embedding; Neumann-like reflect padding.

    Why: where the drift relaxes fast (high frequencies at late times) the score must cancel twice
    the drift, Sigma s = 2 b + ..., to within a few percent, or the anti-diffusive -b of the reverse
    drift (eq. 20) makes the reverse chain explode. That part of the score is linear in u (a
    Laplacian-like stencil), so it gets an exactly linear path that keeps its response linear for
    states off the training distribution instead of saturating."""

    def __init__(self, channels: int, kernel: int, temb: int):
        super().__init__()
        self.kernel = kernel
        self.proj = _zero(nn.Linear(temb, channels * kernel * kernel))

    def forward(self, x, emb):
        B, C, H, W = x.shape
        k = self.kernel
        w = self.proj(emb).reshape(B * C, 1, k, k)
        xp = F.pad(x.reshape(1, B * C, H, W), (k // 2,) * 4, mode="reflect")
        return F.conv2d(xp, w, groups=B * C).reshape(B, C, H, W)


class UNet(nn.Module):
    """NCSN++/DDPM++-style U-Net; see :class:`UNetConfig`. With ``skip_kernel > 0`` the output
    adds a time-dependent linear filter of the input (:class:`LinearSkip`)."""

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
        self.skip = LinearSkip(cfg.in_channels, cfg.skip_kernel, temb) if cfg.skip_kernel else None

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
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out if self.skip is None else out + self.skip(x, emb)


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


def unet_from_checkpoint(ck: dict, source: str = "checkpoint") -> UNet:
    """The (untrained) U-Net of a model checkpoint's architecture entry, checked against the hash it recorded."""
    try:
        cfg = UNetConfig.from_dict(ck["arch"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: unusable architecture entry: {exc}") from exc
    net = UNet(cfg)
    check_architecture(ck, cfg.to_dict(), net.arch_hash)
    return net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())





class ScoreModel(nn.Module):
    """The score s(t, u) from a network F, with the process's preconditioning.

    ``parameterization="plain"``: s = F(c_in(t) u, t / T) / sigma(t), with sigma(t)^2 = sum_{m<k} dt
    alpha2(t_m)^2 the noise variance the chain has accumulated (``SPDEProcess.sigma2``), so that F is
    O(1) at every time, and c_in = 1 / sqrt(sigma_data^2 + sigma^2) (Karras et al. 2022).

    ``parameterization="reference"`` (default): s = s_ref + F(c_in u, t / T) / sigma(t), where s_ref is
    the exact score of a Gaussian reference: the LINEARISED chain (lambda1 = lambda2 = inf, the same
    alpha1, alpha2, conservative stencil, spdekit.linear) started from Gaussian data whose DCT-II
    modes are independent with the training set's mode means m_z and variances v_z:

        s_ref = V^T [ -(z - P_k m_z) / (P_k^2 v_z + c_k) ],   z = V u  (orthonormal DCT-II),

    with P_k the chain's mean factors and c_k the diagonal of its noise covariance. Why: where the
    drift relaxes fast (high frequencies, late times) the score must cancel about twice the drift,
    Sigma s ~ 2 b, to within a few percent, or the anti-diffusive -b of the reverse drift (eq. 20)
    makes the reverse chain explode; a network alone reaches that only after long training and
    saturates off the training distribution (measured: the reverse chain of a 2500-step network blew
    up within 0.05 time units). The reference carries that equilibrium part exactly and linearly; the
    network learns the rest (non-Gaussian data, the anisotropic drift). Any reference leaves the
    minimiser of the loss unchanged: it only shifts what F has to represent.

    ``parameterization="moments"``: the same, with the reference's per-mode means and variances
    replaced by those of the ACTUAL chain, measured once by simulating the training images forward
    with spdekit (:meth:`set_forward_moments`; stored every 10 chain steps as a ratio to the
    linearised variance, interpolated in between). For a nonlinear drift (the anisotropic preset
    decays edges more slowly than the linearised heat chain) the reference then matches the
    marginal variances of the process itself, and the network has a smaller residual to learn.
    """

    def __init__(self, net, sigma2_table, dt: float, T: float, sigma_data: float = 0.5, reference=None,
                 channels: int = 1):
        super().__init__()
        self.net = net
        self.register_buffer("sigma2", torch.as_tensor(sigma2_table, dtype=torch.float64))
        self.dt = float(dt)
        self.T = float(T)
        self.sigma_data = float(sigma_data)
        self.parameterization = "plain" if reference is None else "reference"
        if reference is not None:
            if len(reference) == 5:
                self.parameterization = reference[4]
                reference = reference[:4]
            P, c, MH, MW = reference
            self.register_buffer("ref_P", torch.as_tensor(P, dtype=torch.float64), persistent=False)
            self.register_buffer("ref_c", torch.as_tensor(c, dtype=torch.float64), persistent=False)
            self.register_buffer("ref_MH", torch.as_tensor(MH, dtype=torch.float32), persistent=False)
            self.register_buffer("ref_MW", torch.as_tensor(MW, dtype=torch.float32), persistent=False)
            shape = (channels,) + tuple(P.shape[1:])
            # data statistics in DCT-II modes (persistent: they travel with the weights)
            self.register_buffer("data_mean_z", torch.zeros(shape, dtype=torch.float64))
            self.register_buffer("data_var_z", torch.ones(shape, dtype=torch.float64))
            if self.parameterization == "moments":
                G = (P.shape[0] - 2) // MOMENT_GRID + 2
                self.register_buffer("mom_mean_z", torch.zeros((G,) + shape, dtype=torch.float64))
                self.register_buffer("mom_ratio_z", torch.ones((G,) + shape, dtype=torch.float64))

    @classmethod
    def for_process(cls, net, process, sigma_data: float = 0.5, parameterization: str | None = None,
                    data: torch.Tensor | None = None) -> ScoreModel:
        """Build for ``process``; the reference parameterization takes its data statistics from
        ``data`` (N, C, H, W) (or later from a state dict)."""
        cfg = getattr(net, "cfg", None)
        parameterization = parameterization or getattr(cfg, "score_param", "reference")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        if cfg is not None:
            channels, shape = cfg.in_channels, (cfg.image_size, cfg.image_size)
        else:
            channels, shape = net.shape[0], tuple(net.shape[-2:])
        reference = None
        if parameterization in ("reference", "moments"):
            ref = process.gaussian_reference((channels,) + shape)
            reference = (ref.P, ref.c) + ref.mode_matrices() + (parameterization,)
        model = cls(net, process.sigma2, process.dt, process.T, sigma_data, reference, channels)
        if data is not None and reference is not None:
            model.set_data_statistics(data)
            if parameterization == "moments":
                model.set_forward_moments(process, data)
        return model

    def gaussian_reference(self, process) -> GaussianReference | None:
        """The Gaussian reference this model's score is built on (the samplers' exponential predictors
        integrate it exactly): the linearised chain of ``process`` from the stored data mode statistics.
        None for the 'plain' parameterization. (For 'moments' the network's own reference also rescales
        the variances by the simulated ones; the samplers use the linearised chain, the rest is remainder.)"""
        if self.parameterization == "plain":
            return None
        return process.gaussian_reference(tuple(self.data_mean_z.shape), host_array(self.data_mean_z),
                                          host_array(self.data_var_z))

    def grid_steps(self) -> np.ndarray:
        """Chain steps at which forward moments are stored: 0, 10, 20, ..., and K."""
        K = self.sigma2.shape[0] - 1
        return np.unique(np.concatenate([np.arange(0, K, MOMENT_GRID), [K]]))[: self.mom_mean_z.shape[0]]

    @torch.no_grad()
    def set_forward_moments(self, process, data: torch.Tensor, seed: int = 0, batch_size: int = 1024) -> None:
        """Simulate every image of ``data`` along the chain (spdekit kernels) and store, at the grid
        steps, the per-mode means and the ratio of the per-mode variances to the linearised ones."""
        grid = self.grid_steps()
        rng = np.random.default_rng(seed)
        G = len(grid)
        s1 = torch.zeros((G,) + tuple(self.data_mean_z.shape), dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        n = 0
        for i in range(0, data.shape[0], batch_size):
            u = torch.as_tensor(data[i:i + batch_size], dtype=torch.float32).contiguous()
            for g, k in enumerate(grid):
                if g:
                    u = process.simulate(u, int(k), rng, k0=int(grid[g - 1]))
                z = self._to_modes(u).to(torch.float64)
                s1[g] += z.sum(0)
                s2[g] += z.square().sum(0)
            n += u.shape[0]
        mean = s1 / n
        var = (s2 / n - mean.square()).clamp_min(0) * n / max(n - 1, 1)
        P = self.ref_P[torch.as_tensor(grid)][:, None]
        c = self.ref_c[torch.as_tensor(grid)][:, None]
        lin = P.square() * self.data_var_z[None] + c
        self.mom_mean_z.copy_(mean)
        self.mom_ratio_z.copy_((var / lin).clamp(1e-2, 1e3))

    @torch.no_grad()
    def set_data_statistics(self, data: torch.Tensor) -> None:
        """Mode means and variances (DCT-II) of the training images, for the reference score."""
        z = self._to_modes(torch.as_tensor(data, dtype=torch.float32)).to(torch.float64)
        self.data_mean_z.copy_(z.mean(0))
        self.data_var_z.copy_(z.var(0).clamp_min(1e-8))

    def _to_modes(self, u):
        return torch.einsum("ki,bcij,lj->bckl", self.ref_MH.to(u.dtype), u, self.ref_MW.to(u.dtype))

    def _from_modes(self, z):
        return torch.einsum("ki,bckl,lj->bcij", self.ref_MH.to(z.dtype), z, self.ref_MW.to(z.dtype))

    def _index(self, t: torch.Tensor):
        K = self.sigma2.shape[0] - 1
        x = (t.detach().to(torch.float64) / self.dt).clamp(1.0, float(K))
        lo = x.floor().clamp(max=K - 1).long()
        return lo, x - lo

    def noise_scale(self, t: torch.Tensor) -> torch.Tensor:
        lo, w = self._index(t)
        return (self.sigma2[lo] * (1 - w) + self.sigma2[lo + 1] * w).sqrt()

    def reference_score(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """s_ref(t, u) of the class docstring."""
        lo, w = self._index(t)
        w3 = w[:, None, None]
        P = self.ref_P[lo] * (1 - w3) + self.ref_P[lo + 1] * w3
        c = self.ref_c[lo] * (1 - w3) + self.ref_c[lo + 1] * w3
        var = P[:, None] ** 2 * self.data_var_z[None] + c[:, None]
        mean = P[:, None] * self.data_mean_z[None]
        if self.parameterization == "moments":
            x = (lo.to(torch.float64) + w) / MOMENT_GRID
            K = self.sigma2.shape[0] - 1
            G = self.mom_mean_z.shape[0]
            g0 = x.floor().long().clamp(max=G - 2)
            g1 = g0 + 1
            k0 = (g0 * MOMENT_GRID).to(torch.float64)
            k1 = torch.minimum(g1 * MOMENT_GRID, torch.tensor(K)).to(torch.float64)
            a = ((lo.to(torch.float64) + w - k0) / (k1 - k0)).clamp(0, 1)[:, None, None, None]
            var = var * (self.mom_ratio_z[g0] * (1 - a) + self.mom_ratio_z[g1] * a)
            mean = self.mom_mean_z[g0] * (1 - a) + self.mom_mean_z[g1] * a
        zs = -(self._to_modes(u).to(torch.float64) - mean) / var
        return self._from_modes(zs.to(u.dtype))

    def forward(self, t, u):
        t = torch.as_tensor(t, dtype=u.dtype, device=u.device)
        if t.ndim == 0:
            t = t.expand(u.shape[0])
        sigma = self.noise_scale(t).to(u.dtype)
        c_in = torch.rsqrt(self.sigma_data**2 + sigma**2)
        s = self.net(u * c_in[:, None, None, None], t / self.T) / sigma[:, None, None, None]
        if self.parameterization != "plain":
            s = s + self.reference_score(t, u)
        return s


__all__ = ["UNet", "UNetConfig", "ScoreModel", "MLPScoreNet", "GaussianFourierProjection", "count_parameters"]
