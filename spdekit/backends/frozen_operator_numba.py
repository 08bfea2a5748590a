"""The frozen (lagged) drift operator of the stiff-stable steps, numba kernels: the weights
W_{d,i} = c_{d,i}(u) / h^2 of :func:`.implicit_numpy.frozen_weights` (whose module doc defines the
operator), tested equal to it.

The weights are the stencil tables' diffusivities (:mod:`.stencil_tables`, which the reference reads
link by link) written out per node, with the numba backend's diffusivity g (:func:`.numba_backend._gfun`,
one definition per backend). Here each diffusivity is evaluated once: per node for the paper stencil
(the drift's own rolling row diffusivities, :func:`.numba_backend._row_diffusivities`, a link carrying its
neighbour's), per face for the conservative one (written to both of the face's nodes). Tasks of (plane,
block of _ROWS rows) run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numba_backend as kb

_ROWS = 16  # rows per task
_FM = {"nsz", "arcp", "contract", "afn"}  # fast-math without reassociation (implicit_numba's sums keep their order)


@njit(fastmath=_FM, error_model="numpy")
def _paper_weight_rows(u, y0, y1, fam, a, il, one, inv_h2, out):
    """Rows [y0, y1) of the paper stencil's weights of one plane (``out``: (4, H, W)). The link
    i -> n carries n's diffusivity in the role of the link's axis: the drift's rolling row
    diffusivities (:func:`.numba_backend._row_diffusivities`, one g per interior node), and beyond a
    border the mirror ghost's (:func:`.numba_backend._ghost_y_row`; along x g(0, dy mirrored) of
    column 1 / W-2, as in :func:`.numba_backend._paper_row`)."""
    H, W = u.shape
    cxr = np.empty(W, u.dtype)  # x-role diffusivities of row y
    cxn = np.empty(W, u.dtype)
    cyp = np.empty(W, u.dtype)  # y-role of row y-1 (or the ghost beyond row 0)
    cyc = np.empty(W, u.dtype)  # y-role of row y
    cyn = np.empty(W, u.dtype)  # y-role of row y+1 (or the ghost beyond row H-1)
    if y0 == 0:
        kb._ghost_y_row(u, 1, fam, a, il, one, cyp)
    else:
        kb._row_diffusivities(u, y0 - 1, fam, a, il, one, cxn, cyp)  # only its y-role is used
    kb._row_diffusivities(u, y0, fam, a, il, one, cxr, cyc)
    for y in range(y0, y1):
        if y + 1 < H:
            kb._row_diffusivities(u, y + 1, fam, a, il, one, cxn, cyn)
        else:
            kb._ghost_y_row(u, H - 2, fam, a, il, one, cyn)
        interior_y = 0 < y < H - 1
        ym = y - 1 if interior_y else y  # mirrored dy is 0 on the y-borders
        yp = y + 1 if interior_y else y
        d0 = u[yp, 1] - u[ym, 1]
        d1 = u[yp, W - 2] - u[ym, W - 2]
        for x in range(W - 1):
            out[0, y, x] = cxr[x + 1] * inv_h2
        out[0, y, W - 1] = kb._gfun(fam, a, il, d1 * d1, one) * inv_h2
        out[1, y, 0] = kb._gfun(fam, a, il, d0 * d0, one) * inv_h2
        for x in range(1, W):
            out[1, y, x] = cxr[x - 1] * inv_h2
        for x in range(W):
            out[2, y, x] = cyn[x] * inv_h2
            out[3, y, x] = cyp[x] * inv_h2
        cyp, cyc, cyn = cyc, cyn, cyp
        cxr, cxn = cxn, cxr


@njit(fastmath=_FM, error_model="numpy")
def _y_faces(u, r, fam, a, il, one, inv_h2, out):
    """Conservative weights of the faces between rows r and r+1 (0 <= r < H-1): g(X^2 + Y^2) / h^2 with
    X the difference across the face and Y the mean of the two nodes' mirrored x-differences, halved."""
    W = u.shape[1]
    quarter = one / (one + one + one + one)
    zero = one - one
    for x in range(W):
        X = u[r + 1, x] - u[r, x]
        if 0 < x < W - 1:
            Y = ((u[r, x + 1] - u[r, x - 1]) + (u[r + 1, x + 1] - u[r + 1, x - 1])) * quarter
        else:
            Y = (zero + zero) * quarter
        out[x] = kb._gfun(fam, a, il, X * X + Y * Y, one) * inv_h2


@njit(fastmath=_FM, error_model="numpy")
def _conservative_weight_rows(u, y0, y1, fam, a, il, one, inv_h2, out):
    """Rows [y0, y1) of the conservative stencil's weights of one plane: one diffusivity per face
    (:func:`_y_faces` and its x analogue), evaluated once and written to both of its nodes; 0 on a
    border face (zero flux)."""
    H, W = u.shape
    quarter = one / (one + one + one + one)
    zero = one - one
    below = np.zeros(W)  # faces between rows y-1 and y
    above = np.zeros(W)  # faces between rows y and y+1
    if y0 > 0:
        _y_faces(u, y0 - 1, fam, a, il, one, inv_h2, below)
    for y in range(y0, y1):
        if y < H - 1:
            _y_faces(u, y, fam, a, il, one, inv_h2, above)
        else:
            above[:] = 0.0
        for x in range(W):
            out[2, y, x] = above[x]
            out[3, y, x] = below[x]
        for x in range(W - 1):  # the x-faces of row y
            X = u[y, x + 1] - u[y, x]
            if 0 < y < H - 1:
                Y = ((u[y + 1, x] - u[y - 1, x]) + (u[y + 1, x + 1] - u[y - 1, x + 1])) * quarter
            else:
                Y = (zero + zero) * quarter
            v = kb._gfun(fam, a, il, X * X + Y * Y, one) * inv_h2
            out[0, y, x] = v
            out[1, y, x + 1] = v
        out[0, y, W - 1] = 0.0
        out[1, y, 0] = 0.0
        below, above = above, below


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _weights_kernel(u, fam, a, il, one, conservative, inv_h2, out):
    """out[d, p, y, x] = g1(X^2 + Y^2) / h^2 per direction d = +x, -x, +y, -y: the stencil tables'
    diffusivities (module doc of .stencil_tables) written out per node; 0 on a zero-flux border face.
    Tasks of (plane, block of _ROWS rows); a diffusivity is evaluated once per node (paper) or per face
    (conservative), where the reference evaluates it once per link."""
    P, H, W = u.shape
    nb = (H + _ROWS - 1) // _ROWS
    for task in prange(P * nb):
        p = task // nb
        y0 = (task % nb) * _ROWS
        y1 = min(H, y0 + _ROWS)
        if conservative:
            _conservative_weight_rows(u[p], y0, y1, fam, a[p], il[p], one, inv_h2, out[:, p])
        else:
            _paper_weight_rows(u[p], y0, y1, fam, a[p], il[p], one, inv_h2, out[:, p])


def frozen_weights(u, alpha, inv_lam2, stencil="paper", spacing=1.0, diffusivity="charbonnier"):
    """Same contract as :func:`.implicit_numpy.frozen_weights`."""
    B, C, H, W = u.shape
    dt = u.dtype
    up = np.ascontiguousarray(u).reshape(B * C, H, W)
    h2 = float(spacing) ** 2
    out = np.empty((4, B * C, H, W))
    _weights_kernel(up, kb.FAMILIES[diffusivity], kb._per_plane(alpha, B, C, dt),
                    kb._per_plane(np.asarray(inv_lam2, dtype=np.float64) / h2, B, C, dt), dt.type(1.0),
                    stencil == "conservative", 1.0 / h2, out)
    return out.reshape(4, B, C, H, W)
