"""The drift's adjoint J^T w on the numba backend (capability ``drift_vjp``; genmodel's path-space
loss and the likelihood): the scatter of :mod:`.stencil_tables`, the loop of
:func:`.numpy_backend.drift_vjp`, with the numba backend's diffusivity and its derivative
(:func:`.numba_backend._gfun`, :func:`.numba_backend._dgds`). Reached through
:func:`.numba_backend.drift_vjp`; tested equal to the numpy reference.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit, prange

from . import stencil_tables
from .numba_backend import _FM, _dgds, _family, _gfun, _per_plane


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _drift_vjp_kernel(u, w, fam, a, il, nb, xi, xw, yi, yw, inv_h2, one, out, block):
    """J^T w per plane: the scatter of :mod:`.stencil_tables` (the loop of numpy_backend.drift_vjp).

    One task per block of ``block`` planes, held transposed (node-major, plane-minor) in task-local
    buffers, so every gather and scatter of the tables moves ``block`` contiguous values (timed
    against the numpy reference in benchmarks/adjoint.py). Per plane it adds the reference's terms,
    node by node rather than direction-array by direction-array: equal to rounding (tested)."""
    P, D = u.shape
    ND, _, NT = xi.shape
    nblk = (P + block - 1) // block
    for b in prange(nblk):
        p0 = b * block
        n = min(P, p0 + block) - p0
        uT = np.empty((D, n), dtype=u.dtype)
        wT = np.empty((D, n), dtype=u.dtype)
        oT = np.zeros((D, n), dtype=u.dtype)
        for q in range(n):
            for j in range(D):
                uT[j, q] = u[p0 + q, j]
                wT[j, q] = w[p0 + q, j]
        ap = a[p0:p0 + n]
        ilp = il[p0:p0 + n]
        X = np.empty(n, dtype=u.dtype)
        Y = np.empty(n, dtype=u.dtype)
        for d in range(ND):
            for i in range(D):
                ui = uT[i]
                un = uT[nb[d, i]]
                wi = wT[i]
                x0 = uT[xi[d, i, 0]]
                y0 = uT[yi[d, i, 0]]
                cx = xw[d, i, 0]
                cy = yw[d, i, 0]
                for q in range(n):
                    X[q] = x0[q] * cx
                    Y[q] = y0[q] * cy
                for t in range(1, NT):
                    xt = uT[xi[d, i, t]]
                    yt = uT[yi[d, i, t]]
                    cx = xw[d, i, t]
                    cy = yw[d, i, t]
                    for q in range(n):
                        X[q] += xt[q] * cx
                        Y[q] += yt[q] * cy
                on = oT[nb[d, i]]
                oi = oT[i]
                for q in range(n):
                    sx = X[q] * X[q] + Y[q] * Y[q]
                    wc = wi[q] * _gfun(fam, ap[q], ilp[q], sx, one)
                    # w (u_n - u_i) (dc/dX) / X with dc/dX = 2 X dg/ds
                    r = wi[q] * (un[q] - ui[q]) * ((one + one) * _dgds(fam, ap[q], ilp[q], sx, one))
                    on[q] += wc
                    oi[q] -= wc
                    X[q] *= r
                    Y[q] *= r
                for t in range(NT):
                    ox = oT[xi[d, i, t]]
                    oy = oT[yi[d, i, t]]
                    cx = xw[d, i, t]
                    cy = yw[d, i, t]
                    for q in range(n):
                        ox[q] += X[q] * cx
                        oy[q] += Y[q] * cy
        for q in range(n):
            for j in range(D):
                out[p0 + q, j] = oT[j, q] * inv_h2



_VJP_BLOCK = 64  # planes per task of the adjoint kernel


@lru_cache(maxsize=16)
def _vjp_tables(shape, stencil, dtype):
    """The stencil tables with int32 indices and weights in the state's dtype (kernel inputs)."""
    nb, xi, xw, yi, yw = stencil_tables.tables(shape, stencil)
    nt = max(1, int(np.max(np.nonzero((xw != 0).any((0, 1)) | (yw != 0).any((0, 1)))[0])) + 1)  # terms in use
    xi, xw, yi, yw = (a[..., :nt] for a in (xi, xw, yi, yw))
    i32 = [np.ascontiguousarray(a, dtype=np.int32) for a in (nb, xi, yi)]
    return i32[0], i32[1], np.ascontiguousarray(xw, dtype=dtype), i32[2], np.ascontiguousarray(yw, dtype=dtype)


def drift_vjp(u, w, alpha, inv_lam2, stencil="paper", spacing=1.0, diffusivity="charbonnier"):
    """Same contract as :func:`.numpy_backend.drift_vjp` (J^T w of the drift), one task per block of planes."""
    B, C, H, W = u.shape
    dt = u.dtype
    up = np.ascontiguousarray(u).reshape(B * C, H * W)
    wp = np.ascontiguousarray(w, dtype=dt).reshape(B * C, H * W)
    nb, xi, xw, yi, yw = _vjp_tables((H, W), stencil, dt)
    h2 = float(spacing) ** 2
    il = np.asarray(inv_lam2, dtype=np.float64) / h2
    out = np.empty_like(up)
    _drift_vjp_kernel(up, wp, _family(diffusivity), _per_plane(alpha, B, C, dt),
                      _per_plane(il, B, C, dt), nb, xi, xw, yi, yw, dt.type(1.0 / h2), dt.type(1.0), out, _VJP_BLOCK)
    return out.reshape(u.shape)


__all__ = ["drift_vjp"]
