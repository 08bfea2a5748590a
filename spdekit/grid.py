"""The image grid on which the SPDE is discretised (paper, Appendix H.1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import as_native
from ._checks import check_int, check_positive

#: smallest number of nodes per axis: the paper's stencil (35) reaches two nodes away.
MIN_NODES = 3


@dataclass(frozen=True)
class Grid:
    """A rectangular grid of ``shape = (H, W)`` nodes with uniform ``spacing``.

    Node ``(y, x)`` sits at ``(y * spacing, x * spacing)``; the default spacing of 1 means pixel
    units, as in the paper. Borders are Neumann (zero normal derivative): the exact closure of each
    stencil (paper, conservative) and of the noise amplitude is stated in :mod:`spdekit.operators`.

    Array axis -1 is the paper's first index ``i1`` (x, width ``d1 = W``), axis -2 its second
    index ``i2`` (y, height ``d2 = H``). The paper's "top" edge ``i2 = d2 - 1`` is the last row.
    """

    shape: tuple[int, int]
    spacing: float = 1.0

    def __post_init__(self):
        shape = tuple(self.shape)
        if len(shape) != 2:
            raise ValueError(f"Grid shape must be (H, W), got {shape!r}")
        h = check_int("Grid shape[0] (H)", shape[0], minimum=MIN_NODES)
        w = check_int("Grid shape[1] (W)", shape[1], minimum=MIN_NODES)
        object.__setattr__(self, "shape", (h, w))
        object.__setattr__(self, "spacing", check_positive("spacing", self.spacing))

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def y(self) -> np.ndarray:
        """Node coordinates along axis -2."""
        return np.arange(self.shape[0]) * self.spacing

    @property
    def x(self) -> np.ndarray:
        """Node coordinates along axis -1."""
        return np.arange(self.shape[1]) * self.spacing

    @classmethod
    def like(cls, u, spacing: float = 1.0) -> Grid:
        """The grid of an array whose last two axes are (H, W)."""
        return cls(tuple(int(s) for s in u.shape[-2:]), spacing)


def as_batch(u, name: str = "u"):
    """View u as (B, C, H, W) and check it; returns (view, restore) where restore maps results back.

    u may be numpy, cupy or any DLPack array (e.g. a torch tensor): it is viewed without a copy
    and results come back in u's own type, on u's device (:mod:`spdekit._arrays`). Checked: rank 2
    or 4, a grid of at least 3 x 3 nodes, at least one sample and channel, float32 or float64."""
    u, back = as_native(u)
    if u.ndim == 4:
        view, restore = u, back
    elif u.ndim == 2:
        view, restore = u[None, None], lambda v: back(v[0, 0])
    else:
        raise ValueError(
            f"{name} must have rank 2 (H, W) or 4 (batch, channels, H, W); got shape {tuple(u.shape)}"
        )
    if np.dtype(u.dtype) not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {u.dtype}")
    Grid(tuple(int(s) for s in view.shape[-2:]))
    if view.shape[0] < 1 or view.shape[1] < 1:
        raise ValueError(f"{name} needs at least one sample and one channel; got shape {tuple(u.shape)}")
    return view, restore
