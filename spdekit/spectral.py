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
scipy.fft along the last two axes. They (and :func:`adjoint_modes`) accept numpy and cupy arrays and
any DLPack-capable array (torch tensors, CPU or CUDA; :func:`spdekit._arrays.as_native`) and return
the input's array type on its device: cupy and CUDA tensors are transformed on the GPU with
cupyx.scipy.fft (DCT-II) and cupy.fft (the paper stencil's DCT-I, which cupyx does not provide,
as the real FFT of the even extension), with scipy.fft's definitions and normalisations.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ._arrays import as_native
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


def _dct1_by_fft(a, xp):
    """scipy.fft's unnormalised DCT-I along the last two axes, as the real FFT of the even extension
    [x_0, ..., x_{n-1}, x_{n-2}, ..., x_1] (length 2(n - 1)): cupyx.scipy.fft has DCT types 2 and 3
    only. ``xp`` is numpy or cupy (tested equal to scipy on the host: tests/test_spectral_arrays.py)."""
    for axis in (-2, -1):
        n = a.shape[axis]
        inner = xp.flip(xp.take(a, xp.arange(1, n - 1), axis=axis), axis=axis)
        a = xp.fft.rfft(xp.concatenate([a, inner], axis=axis), axis=axis).real
    return a


class _HostFFT:
    asarray = staticmethod(np.asarray)

    @staticmethod
    def dct2(a):
        return sfft.dctn(a, type=2, norm="ortho", axes=(-2, -1))

    @staticmethod
    def idct2(a):
        return sfft.idctn(a, type=2, norm="ortho", axes=(-2, -1))

    @staticmethod
    def dct1(a):
        return sfft.dctn(a, type=1, axes=(-2, -1))


class _DeviceFFT:
    def __init__(self):
        import cupy
        import cupyx.scipy.fft as cfft

        self.xp, self.fft, self.asarray = cupy, cfft, cupy.asarray

    def dct2(self, a):
        return self.fft.dctn(a, type=2, norm="ortho", axes=(-2, -1))

    def idct2(self, a):
        return self.fft.idctn(a, type=2, norm="ortho", axes=(-2, -1))

    def dct1(self, a):
        return _dct1_by_fft(a, self.xp)


def _native(x):
    """(native array, restore, transforms): numpy -> scipy.fft; cupy (and CUDA tensors, through
    DLPack) -> cupyx.scipy.fft; lists and scalars become numpy arrays."""
    if not isinstance(x, np.ndarray) and not hasattr(x, "__dlpack__") and type(x).__module__.split(".")[0] != "cupy":
        x = np.asarray(x)
    a, back = as_native(x)
    return a, back, (_HostFFT if isinstance(a, np.ndarray) else _DeviceFFT())


def to_modes(u, stencil: str = "conservative"):
    """Mode coordinates z = V^{-1} u along the last two axes (u's array type in and out)."""
    check_choice("stencil", stencil, STENCILS)
    u, back, f = _native(u)
    if stencil == "conservative":
        return back(f.dct2(u))
    # scipy's DCT-I is y_j = 2 sum_k w_k x_k cos(pi j k / (n-1)), so V z = DCT-I(z / (2w)) and,
    # since DCT-I twice is 2(n-1) times the identity, z = w DCT-I(u) / (n-1) per axis.
    H, W = u.shape[-2:]
    return back(f.asarray(trapezoid_weights((H, W))) * f.dct1(u) / ((H - 1) * (W - 1)))


def from_modes(z, stencil: str = "conservative"):
    """u = V z (inverse of :func:`to_modes`; z's array type in and out)."""
    check_choice("stencil", stencil, STENCILS)
    z, back, f = _native(z)
    if stencil == "conservative":
        return back(f.idct2(z))
    return back(f.dct1(z / (4 * f.asarray(trapezoid_weights(z.shape[-2:])))))


def adjoint_modes(s, stencil: str = "conservative"):
    """V^T s along the last two axes (the transpose of :func:`from_modes`; equal to :func:`to_modes`
    for the orthonormal DCT-II; s's array type in and out)."""
    check_choice("stencil", stencil, STENCILS)
    s, back, f = _native(s)
    if stencil == "conservative":
        return back(f.dct2(s))
    return back(f.dct1(s / f.asarray(trapezoid_weights(s.shape[-2:]))) / 4.0)


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
