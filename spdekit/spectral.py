"""Eigenbases of the discrete Neumann Laplacians: the lambda1 = inf limit of the drift.

With lambda1 = inf, g1 = alpha1 and both stencils become alpha1 times a 5-point Laplacian; they
differ only in the border closure, and so in their eigenbasis:

* ``stencil="conservative"`` (zero flux through the border faces, ghost u_{-1} = u_0): the
  symmetric path-graph Laplacian, diagonal in the orthonormal DCT-II basis, eigenvalues
  mu_k = -(4 / h^2) sin^2(pi k / (2 n)), k = 0..n-1, per axis.
* ``stencil="paper"`` (mirror ghosts u_{-1} = u_1, the boundary rows of eq. 35-36):
  L = W^{-1} L_cons with trapezoid weights W = diag(1/2, 1, ..., 1, 1/2) per axis. It is not
  symmetric but self-adjoint for <u, v>_W = u^T W v, diagonal in the DCT-I basis
  v_k(j) = cos(pi j k / (n - 1)), eigenvalues mu_k = -(2 / h^2) (1 - cos(pi k / (n - 1))).

In 2D the eigenvalues add over the two axes. ``to_modes`` / ``from_modes`` are the coordinate
changes u = V z, z = V^{-1} u (V orthogonal for DCT-II; W-orthogonal columns for DCT-I), done with
scipy.fft along the last two axes.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ._checks import check_choice

STENCILS = ("paper", "conservative")


def axis_eigenvalues(n: int, stencil: str = "conservative", spacing: float = 1.0) -> np.ndarray:
    """Eigenvalues (<= 0) of the 1D Neumann Laplacian on n nodes."""
    check_choice("stencil", stencil, STENCILS)
    k = np.arange(n)
    if stencil == "conservative":
        return -4.0 * np.sin(np.pi * k / (2 * n)) ** 2 / spacing**2
    return -2.0 * (1.0 - np.cos(np.pi * k / (n - 1))) / spacing**2


def laplacian_eigenvalues(shape, stencil: str = "conservative", spacing: float = 1.0) -> np.ndarray:
    """Eigenvalues mu[k1, k2] of the 2D Neumann Laplacian on an (H, W) grid, shape (H, W)."""
    H, W = shape
    return axis_eigenvalues(H, stencil, spacing)[:, None] + axis_eigenvalues(W, stencil, spacing)[None, :]


def _axis_weights(n):
    """DCT-I coefficient weights: 1/2 at both ends, 1 inside."""
    w = np.ones(n)
    w[0] = w[-1] = 0.5
    return w


def to_modes(u, stencil: str = "conservative"):
    """Mode coordinates z = V^{-1} u along the last two axes."""
    check_choice("stencil", stencil, STENCILS)
    if stencil == "conservative":
        return sfft.dctn(u, type=2, norm="ortho", axes=(-2, -1))
    # scipy's DCT-I is y_j = 2 sum_k w_k x_k cos(pi j k / (n-1)), so V z = DCT-I(z / (2w)) and,
    # since DCT-I twice is 2(n-1) times the identity, z = w DCT-I(u) / (n-1) per axis.
    H, W = u.shape[-2:]
    return trapezoid_weights((H, W)) * sfft.dctn(u, type=1, axes=(-2, -1)) / ((H - 1) * (W - 1))


def from_modes(z, stencil: str = "conservative"):
    """u = V z (inverse of :func:`to_modes`)."""
    check_choice("stencil", stencil, STENCILS)
    if stencil == "conservative":
        return sfft.idctn(z, type=2, norm="ortho", axes=(-2, -1))
    return sfft.dctn(z / (4 * trapezoid_weights(z.shape[-2:])), type=1, axes=(-2, -1))


def adjoint_modes(s, stencil: str = "conservative"):
    """V^T s along the last two axes (the transpose of :func:`from_modes`; equal to :func:`to_modes`
    for the orthonormal DCT-II)."""
    check_choice("stencil", stencil, STENCILS)
    if stencil == "conservative":
        return sfft.dctn(s, type=2, norm="ortho", axes=(-2, -1))
    return sfft.dctn(s / trapezoid_weights(s.shape[-2:]), type=1, axes=(-2, -1)) / 4.0


def axis_inverse_matrix(n: int, stencil: str = "conservative") -> np.ndarray:
    """The 1-D V^{-1} (n x n): mode coordinates of the n unit vectors of one axis."""
    check_choice("stencil", stencil, STENCILS)
    eye = np.eye(n)
    if stencil == "conservative":
        return sfft.dct(eye, type=2, norm="ortho", axis=0)
    return _axis_weights(n)[:, None] * sfft.dct(eye, type=1, axis=0) / (n - 1)


def white_noise_diagonal(shape, stencil: str = "conservative") -> np.ndarray:
    """diag(V^{-1} V^{-T}) on an (H, W) grid: the variance each mode of white unit noise gets (1 for
    the orthonormal DCT-II; the DCT-I modes of the paper stencil are not orthonormal)."""
    H, W = shape
    nh = (axis_inverse_matrix(H, stencil) ** 2).sum(1)
    nw = (axis_inverse_matrix(W, stencil) ** 2).sum(1)
    return nh[:, None] * nw[None, :]


def trapezoid_weights(shape) -> np.ndarray:
    """W of the paper stencil's inner product (product of the per-axis trapezoid weights)."""
    H, W = shape
    return _axis_weights(H)[:, None] * _axis_weights(W)[None, :]
