"""The finite-volume box [-L, L]^d (d = 1, 2) on which the Fokker-Planck equation is solved.

Cell-centred: n cells per axis of width h = 2L/n, centres x_i = -L + (i + 1/2) h, zero-flux
faces at +-L. With n odd the origin is a cell centre: the condensate of a supercritical state
then sits in one cell (see :mod:`.steady_states`), which is what the diagnostics assume.

Array layout follows spdekit: 1D arrays are ``(x,)``, 2D arrays ``(y, x)`` (axis -1 is x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_int, check_positive

#: fewest cells per axis (one interior face on each side of the centre cell)
MIN_CELLS = 3


@dataclass(frozen=True)
class BoxGrid:
    """``n`` cells per axis on [-half_width, half_width]^dim (``n``/``half_width`` may be tuples,
    one entry per array axis, i.e. (ny, nx) in 2D)."""

    n: tuple
    half_width: tuple
    dim: int = 1

    def __init__(self, n, half_width, dim: int | None = None):
        n_t = tuple(n) if np.ndim(n) else None
        hw_t = tuple(half_width) if np.ndim(half_width) else None
        if dim is None:
            dim = len(n_t) if n_t is not None else (len(hw_t) if hw_t is not None else 1)
        dim = check_int("dim", dim, minimum=1)
        if dim > 2:
            raise ValueError(f"dim must be 1 or 2, got {dim}")
        n_t = n_t if n_t is not None else (n,) * dim
        hw_t = hw_t if hw_t is not None else (half_width,) * dim
        if len(n_t) != dim or len(hw_t) != dim:
            raise ValueError(f"n and half_width need {dim} entries for dim={dim}, got {n_t!r}, {hw_t!r}")
        n_t = tuple(check_int(f"n[{k}]", v, minimum=MIN_CELLS) for k, v in enumerate(n_t))
        hw_t = tuple(check_positive(f"half_width[{k}]", v) for k, v in enumerate(hw_t))
        object.__setattr__(self, "n", n_t)
        object.__setattr__(self, "half_width", hw_t)
        object.__setattr__(self, "dim", dim)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple:
        return self.n

    @property
    def size(self) -> int:
        return int(np.prod(self.n))

    @property
    def spacing(self) -> tuple:
        """Cell width per array axis."""
        return tuple(2.0 * L / n for n, L in zip(self.n, self.half_width))

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def centers(self) -> tuple:
        """Cell centres per array axis (1D arrays)."""
        return tuple(-L + (np.arange(n) + 0.5) * h for n, L, h in zip(self.n, self.half_width, self.spacing))

    @property
    def faces(self) -> tuple:
        """Face positions per array axis (n + 1 each, the two outer ones are the zero-flux walls)."""
        return tuple(-L + np.arange(n + 1) * h for n, L, h in zip(self.n, self.half_width, self.spacing))

    def mesh(self) -> tuple:
        """Centre coordinates broadcast to the grid shape, one array per array axis."""
        return tuple(np.meshgrid(*self.centers, indexing="ij"))

    @property
    def x_sq(self) -> np.ndarray:
        """|x|^2 at the cell centres, shape ``self.shape``."""
        return sum(c * c for c in self.mesh())

    @property
    def points(self) -> np.ndarray:
        """Cell centres as (size, dim) points in (x, y) order (array axes reversed)."""
        return np.stack([m.ravel() for m in self.mesh()[::-1]], axis=1)

    @property
    def origin_index(self):
        """Index of the cell whose centre is the origin, or None (n even on some axis)."""
        if all(n % 2 == 1 for n in self.n):
            return tuple(n // 2 for n in self.n)
        return None

    # ------------------------------------------------------------------ quadrature
    def integrate(self, f):
        """Integral of a cell-average field over the box: sum over the last ``dim`` axes times h^d."""
        f = np.asarray(f)
        return f.sum(axis=tuple(range(-self.dim, 0))) * self.cell_volume

    def cell_averages(self, func, order: int = 4) -> np.ndarray:
        """Cell averages of ``func(*coords)`` (coords in array-axis order, each of the grid shape)
        by tensor Gauss-Legendre quadrature with ``order`` points per axis."""
        nodes, weights = np.polynomial.legendre.leggauss(check_int("order", order, minimum=1))
        out = np.zeros(self.shape)
        mesh = self.mesh()
        for idx in np.ndindex(*(order,) * self.dim):
            coords = [m + 0.5 * h * nodes[k] for m, h, k in zip(mesh, self.spacing, idx)]
            w = np.prod([weights[k] / 2.0 for k in idx])
            out += w * np.asarray(func(*coords), dtype=np.float64)
        return out

    def check_field(self, f, name: str = "f") -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        if f.shape != self.shape:
            raise ValueError(f"{name} must have the grid shape {self.shape}, got {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"{name} must be finite")
        if (f < 0).any():
            raise ValueError(f"{name} must be non-negative (a density); min is {f.min():g}")
        return f

    def to_dict(self) -> dict:
        return {"type": "BoxGrid", "n": list(self.n), "half_width": list(self.half_width), "dim": self.dim}

    @classmethod
    def from_dict(cls, d: dict) -> BoxGrid:
        return cls(tuple(d["n"]), tuple(d["half_width"]), d.get("dim"))

    def __repr__(self) -> str:
        n = self.n[0] if self.dim == 1 else self.n
        L = self.half_width[0] if len(set(self.half_width)) == 1 else self.half_width
        return f"BoxGrid(n={n}, half_width={L}, dim={self.dim}, h={_fmt(self.spacing)})"


def _fmt(t):
    return ", ".join(f"{v:.4g}" for v in t) if len(t) > 1 else f"{t[0]:.4g}"


def ball_mask(grid: BoxGrid, radius: float) -> np.ndarray:
    """Cells whose centre lies in the closed ball of ``radius`` around 0."""
    return grid.x_sq <= radius * radius * (1 + 1e-12)
