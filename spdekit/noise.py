"""Q-Wiener noise on the grid (paper, eq. 10-11).

The covariance between grid nodes x_i, x_j is

    Q_ij = exp(-|x_i - x_j| / l)            (kind="euclidean", eq. 11)
    Q_ij = exp(-|dx_1| / l - |dx_2| / l)    (kind="separable")

with distances in the grid's units (pixel units for spacing 1) and l = ``correlation_length``.
l = 0 is white noise (Q = identity, the paper's cylindrical Wiener process of Section 5).

Exact sampling by circulant embedding (Dietrich & Newsam 1997; Lord, Powell & Shardlow 2014,
Ch. 7): Q is the top-left block of a symmetric circulant matrix C on an M1 x M2 torus,
C = F* diag(lam) F. When all eigenvalues lam >= 0, C^(1/2) = F* diag(sqrt(lam)) F is real and
symmetric and ``apply_sqrt_Q(xi) = crop(C^(1/2) xi)`` with xi ~ N(0, I) on the torus has covariance
exactly Q. The minimal torus (M = 2(n - 1)) can have negative eigenvalues for the Euclidean form
when l is a sizeable fraction of the domain; the torus is then enlarged until the spectrum is
non-negative. If that fails within ``max_embedding_factor``, the negative part is clipped and a
warning reports the clipped mass (sum of |negative eigenvalues| / sum of |eigenvalues|). The
separable form embeds without padding (each 1D factor does).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from ._arrays import as_native
from ._checks import array_module, check_choice, check_nonnegative, check_positive

KINDS = ("euclidean", "separable")
#: eigenvalues above -EIG_TOL * max(eig) count as zero (rounding of the FFT)
EIG_TOL = 1e-10


@dataclass(frozen=True)
class CirculantEmbedding:
    """The embedding used for one grid shape (reported for inspection)."""

    grid_shape: tuple[int, int]
    shape: tuple[int, int]  #: torus shape (M1, M2)
    padding: tuple[int, int]  #: M - 2(n - 1) per axis; (0, 0) is the minimal embedding
    min_eigenvalue: float  #: smallest eigenvalue of C before clipping
    max_eigenvalue: float
    clipped_mass: float  #: 0 when the embedding is exact
    spectrum_half: np.ndarray  #: eigenvalues, rfft layout (M1, M2//2 + 1), clipped at 0
    sqrt_spectrum_half: np.ndarray  #: their square roots (the spectrum of C^(1/2))

    @property
    def exact(self) -> bool:
        return self.clipped_mass == 0.0


class QWienerNoise:
    """Spatial covariance of the Wiener increments: dW ~ N(0, dt * Q) on each (sample, channel).

    Parameters
    ----------
    correlation_length : l >= 0 of eq. (11); 0 means white noise.
    kind : "euclidean" (eq. 11) or "separable".
    spacing : grid spacing (distances are index differences times spacing).
    max_embedding_factor : largest torus side, as a multiple of the minimal 2(n - 1).
    """

    def __init__(self, correlation_length: float = 0.0, kind: str = "euclidean", spacing: float = 1.0,
                 max_embedding_factor: int = 8):
        self.correlation_length = check_nonnegative("correlation_length", correlation_length)
        self.kind = check_choice("noise kind", kind, KINDS)
        self.spacing = check_positive("spacing", spacing)
        self.max_embedding_factor = int(max_embedding_factor)

    # ----------------------------------------------------------------- description
    @property
    def is_white(self) -> bool:
        return self.correlation_length == 0.0

    def to_dict(self) -> dict:
        return {"correlation_length": self.correlation_length, "kind": self.kind, "spacing": self.spacing}

    def __repr__(self) -> str:
        return f"QWienerNoise(correlation_length={self.correlation_length}, kind={self.kind!r})"

    def covariance(self, dy, dx):
        """q as a function of the offsets (in grid units times spacing), eq. (11)."""
        dy = np.abs(np.asarray(dy, dtype=np.float64))
        dx = np.abs(np.asarray(dx, dtype=np.float64))
        if self.is_white:
            return ((dy == 0) & (dx == 0)).astype(np.float64)
        if self.kind == "euclidean":
            return np.exp(-np.hypot(dy, dx) / self.correlation_length)
        return np.exp(-(dy + dx) / self.correlation_length)

    def dense_Q(self, grid_shape) -> np.ndarray:
        """The full (H*W, H*W) matrix Q, row-major node order (for tests and small grids)."""
        H, W = grid_shape
        yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        y = yy.ravel() * self.spacing
        x = xx.ravel() * self.spacing
        return self.covariance(y[:, None] - y[None, :], x[:, None] - x[None, :])

    # ----------------------------------------------------------------- embedding
    def embedding(self, grid_shape) -> CirculantEmbedding:
        """The (cached) circulant embedding for ``grid_shape = (H, W)``."""
        H, W = (int(s) for s in grid_shape)
        return _embed(self.correlation_length, self.kind, self.spacing, H, W, self.max_embedding_factor)

    def embedding_shape(self, grid_shape) -> tuple[int, int]:
        """Shape of the standard-normal field that :meth:`apply_sqrt_Q` takes."""
        if self.is_white:
            return tuple(int(s) for s in grid_shape)
        return self.embedding(grid_shape).shape

    # ----------------------------------------------------------------- operators
    def apply_Q(self, v):
        """Q v for fields v of shape (..., H, W) (numpy, cupy or any DLPack array; same type out)."""
        v, back = as_native(v)
        if self.is_white:
            return back(v.copy())
        H, W = v.shape[-2:]
        emb = self.embedding((H, W))
        out = _circulant_apply(v, emb)
        return back(xp_contiguous(out[..., :H, :W]))

    def apply_sqrt_Q(self, xi, grid_shape=None):
        """A square-root factor S of Q (S S^T = Q) applied to xi of shape (..., M1, M2).

        S = P C^(1/2) where P crops the torus to the grid; pass ``grid_shape`` (default: the
        grid whose embedding has xi's trailing shape, found from the minimal embedding if xi is
        already grid-sized for white noise).
        """
        xi, back = as_native(xi)
        if self.is_white:
            return back(xi)
        if grid_shape is None:
            raise ValueError("apply_sqrt_Q needs grid_shape=(H, W) for correlated noise")
        emb = self.embedding(grid_shape)
        if tuple(xi.shape[-2:]) != emb.shape:
            raise ValueError(
                f"xi must have trailing shape {emb.shape} (the embedding torus of grid {tuple(grid_shape)}), "
                f"got {tuple(xi.shape[-2:])}"
            )
        out = _circulant_apply(xi, emb, spectrum=emb.sqrt_spectrum_half)
        H, W = grid_shape
        return back(xp_contiguous(out[..., :H, :W]))

    def sample(self, shape, rng, dtype=np.float64):
        """Fields of shape ``(..., H, W)`` with covariance Q (unit time): S xi, xi ~ N(0, I).

        ``rng`` is a numpy Generator (or cupy's for device arrays), or a
        :class:`spdekit.random.SampleStreams` whose batch is ``shape[0]`` (one stream per sample).
        The increment of a Q-Wiener process over dt is ``sqrt(dt) * sample(...)``.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"shape must end with (H, W), got {shape}")
        grid = shape[-2:]
        xi = rng.standard_normal(shape[:-2] + tuple(self.embedding_shape(grid)), dtype=dtype)
        return self.apply_sqrt_Q(xi, grid)


def xp_contiguous(a):
    """A C-contiguous copy of a cropped field (numpy or cupy)."""
    return array_module(a).ascontiguousarray(a)


def _circulant_apply(v, emb: CirculantEmbedding, spectrum=None):
    """Apply the circulant C (or C^(1/2) with ``spectrum``) to v, zero-padded to the torus; the
    FFTs run in the backend that owns v (numpy: scipy.fft, cupy: cuFFT)."""
    from .backends import get_backend

    backend = get_backend("cupy" if array_module(v) is not np else "numpy", v)
    spec = emb.spectrum_half if spectrum is None else spectrum
    return backend.circulant_apply(v, spec, emb.shape)


def _torus_distance(n, m):
    k = np.arange(m)
    return np.minimum(k, m - k)


@lru_cache(maxsize=64)
def _embed(ell, kind, spacing, H, W, max_factor) -> CirculantEmbedding:
    noise = QWienerNoise(ell, kind, spacing)
    base = (max(2 * (H - 1), 1), max(2 * (W - 1), 1))
    m1, m2 = base
    best = None
    while True:
        dy = _torus_distance(H, m1) * spacing
        dx = _torus_distance(W, m2) * spacing
        c = noise.covariance(dy[:, None], dx[None, :])
        spec = sfft.rfft2(c, workers=-1).real
        lo, hi = float(spec.min()), float(spec.max())
        if best is None or lo / hi > best[2] / best[3]:
            best = (m1, m2, lo, hi, spec)
        if lo >= -EIG_TOL * hi:
            break
        if m1 >= max_factor * base[0] and m2 >= max_factor * base[1]:
            m1, m2, lo, hi, spec = best
            break
        # grow the torus by about a quarter of the grid, keeping FFT-friendly sizes
        m1 = sfft.next_fast_len(m1 + max(2, H // 4))
        m2 = sfft.next_fast_len(m2 + max(2, W // 4))
    neg = np.clip(spec, None, 0.0)
    clipped = 0.0
    if lo < -EIG_TOL * hi:
        # full-spectrum weights: rfft columns other than 0 (and M2/2) stand for two eigenvalues
        w = np.full(spec.shape, 2.0)
        w[:, 0] = 1.0
        if m2 % 2 == 0:
            w[:, -1] = 1.0
        clipped = float((w * np.abs(neg)).sum() / (w * np.abs(spec)).sum())
        warnings.warn(
            f"circulant embedding of exp covariance (l={ell}, grid {H}x{W}) kept negative eigenvalues "
            f"on a {m1}x{m2} torus; clipped mass {clipped:.3g} (the sampled covariance is approximate)",
            RuntimeWarning,
            stacklevel=3,
        )
    spectrum = np.clip(spec, 0.0, None)
    sqrt_spectrum = np.sqrt(spectrum)
    spectrum.setflags(write=False)
    sqrt_spectrum.setflags(write=False)
    return CirculantEmbedding(
        grid_shape=(H, W),
        shape=(m1, m2),
        padding=(m1 - base[0], m2 - base[1]),
        min_eigenvalue=lo,
        max_eigenvalue=hi,
        clipped_mass=clipped,
        spectrum_half=spectrum,
        sqrt_spectrum_half=sqrt_spectrum,
    )

