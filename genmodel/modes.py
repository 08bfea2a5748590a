"""DCT-II mode coordinates of image tensors, computed where the tensors live.

The linearised chain that the networks' reference, the path targets, the exact marginals and the
priors use is diagonal in the orthonormal DCT-II basis of each (H, W) plane (the conservative
stencil's Neumann Laplacian, :mod:`spdekit.spectral`). spdekit gives the 1-D basis matrices
(:func:`spdekit.spectral.axis_inverse_matrix`); with them the coordinate change is two matrix
products, z = M_H u M_W^T and u = M_H^T z M_W, done by torch on the tensors' device and dtype (the
same products as :meth:`genmodel.networks.ScoreModel.reference_score`). The matrices are built once
per grid and moved once per device and dtype.
"""

from __future__ import annotations

import torch

from spdekit.spectral import axis_inverse_matrix

_HOST: dict = {}
_PLACED: dict = {}


def _matrices(n: int, like: torch.Tensor) -> torch.Tensor:
    key = (n, like.device, like.dtype)
    m = _PLACED.get(key)
    if m is None:
        if n not in _HOST:
            _HOST[n] = torch.as_tensor(axis_inverse_matrix(n, "conservative"), dtype=torch.float64)
        m = _PLACED[key] = _HOST[n].to(device=like.device, dtype=like.dtype)
    return m


def to_modes(u: torch.Tensor) -> torch.Tensor:
    """z = V^{-1} u along the last two axes (orthonormal DCT-II), like spdekit.spectral.to_modes(u,
    "conservative")."""
    return _matrices(u.shape[-2], u) @ u @ _matrices(u.shape[-1], u).T


def from_modes(z: torch.Tensor) -> torch.Tensor:
    """u = V z (the inverse, and transpose, of :func:`to_modes`)."""
    return _matrices(z.shape[-2], z).T @ z @ _matrices(z.shape[-1], z)


__all__ = ["to_modes", "from_modes"]
