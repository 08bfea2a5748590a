"""Both drift stencils as index tables, for the adjoint (vector-Jacobian product) of the drift.

Each stencil of :mod:`.numpy_backend` (paper, eq. 35-36; conservative flux form) is, at every
node i and for each of its four neighbour directions d,

    b_i = (1 / h^2) sum_d c_{d,i} (u[nb_{d,i}] - u_i),
    c_{d,i} = g(alpha, inv_lam2 / h^2, X_{d,i}^2 + Y_{d,i}^2)    (eq. 9, any family of spdekit.operators),
    X_{d,i} = sum_r xw[d,i,r] u[xi[d,i,r]],   Y_{d,i} = sum_r yw[d,i,r] u[yi[d,i,r]]   (r < 4),

with X, Y the two (unscaled) difference components g1 sees:

* paper: c is the diffusivity of the neighbour n (along: clamped central difference of n;
  across: mirrored central difference of n). A neighbour outside the grid is the mirror ghost: its
  value is that of the mirrored node m, its diffusivity g(0, across difference of m);
* conservative: c is g1 on the face between i and n (normal: u_n - u_i; tangential: the mean of
  the two nodes' mirrored central differences, /4 since g1 sees the gradient, not the unscaled
  central difference); a border face has zero flux, written as nb = i.

The tables are built from the module doc of :mod:`.numpy_backend` and tested to reproduce
:func:`.numpy_backend.drift_paper` and :func:`.numpy_backend.drift_conservative` exactly
(``tests/test_drift_adjoint.py``). The adjoint

    (J^T w)_j = sum_i w_i d b_i / d u_j
              = (1/h^2) sum_{d,i} [ w_i c_{d,i} (delta_{j, nb} - delta_{j, i})
                                   + w_i (u[nb] - u_i) (dc/dX dX/du_j + dc/dY dY/du_j) ],
    dc/dX = 2 X g'(X^2 + Y^2),   g' = dg/ds (:func:`spdekit.operators.dg_ds`),   il = inv_lam2 / h^2,

is then a scatter over the tables: :func:`.numpy_backend.drift_vjp` (reference) and the numba kernel
run exactly this loop. It is what a path-space score target needs (genmodel's "path" loss): the
paper stencil is not symmetric (c is taken at the neighbour), so J^T != J.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import operators

N_DIRECTIONS = 4
N_TERMS = 4


@lru_cache(maxsize=16)
def tables(shape: tuple, stencil: str):
    """(nb, xi, xw, yi, yw) for an (H, W) grid: nb (4, D) int64, xi/yi (4, D, 4) int64,
    xw/yw (4, D, 4) float64, D = H W, flat row-major node index. Read-only arrays."""
    H, W = (int(s) for s in shape)
    if H < 2 or W < 2:
        raise ValueError(f"the drift stencils need at least 2 nodes per axis; got shape {(H, W)}")
    if stencil not in ("paper", "conservative"):
        raise ValueError(f"stencil must be 'paper' or 'conservative'; got {stencil!r}")
    D = H * W
    nb = np.zeros((N_DIRECTIONS, D), np.int64)
    xi = np.zeros((N_DIRECTIONS, D, N_TERMS), np.int64)
    yi = np.zeros_like(xi)
    xw = np.zeros((N_DIRECTIONS, D, N_TERMS))
    yw = np.zeros_like(xw)

    def node(y, x):
        return y * W + x

    def mirror(k, n):  # node-centred reflection of an index one step outside [0, n)
        return 1 if k < 0 else (n - 2 if k >= n else k)

    def mirrored_central(y, x, axis):
        """(indices, weights) of the mirrored central difference at (y, x): 0 on a border normal to it."""
        if axis == 1:
            if x in (0, W - 1):
                return [], []
            return [node(y, x + 1), node(y, x - 1)], [1.0, -1.0]
        if y in (0, H - 1):
            return [], []
        return [node(y + 1, x), node(y - 1, x)], [1.0, -1.0]

    def clamped_central(y, x, axis):
        if axis == 1:
            return [node(y, min(x + 1, W - 1)), node(y, max(x - 1, 0))], [1.0, -1.0]
        return [node(min(y + 1, H - 1), x), node(max(y - 1, 0), x)], [1.0, -1.0]

    def put(d, i, which, idx, wts):
        ia, wa = (xi, xw) if which == 0 else (yi, yw)
        ia[d, i, :] = i
        for r, (j, w) in enumerate(zip(idx, wts)):
            ia[d, i, r] = j
            wa[d, i, r] = w

    # directions: +x, -x, +y, -y
    steps = [(0, 1), (0, -1), (1, 0), (-1, 0)]
    for y in range(H):
        for x in range(W):
            i = node(y, x)
            for d, (sy, sx) in enumerate(steps):
                axis = 1 if sx else 0  # the axis along the direction
                ny, nx = y + sy, x + sx
                inside = 0 <= ny < H and 0 <= nx < W
                if stencil == "paper":
                    my, mx = (ny, nx) if inside else (mirror(ny, H), mirror(nx, W))
                    nb[d, i] = node(my, mx)
                    if inside:
                        put(d, i, 0, *clamped_central(my, mx, axis))
                    else:
                        put(d, i, 0, [], [])  # ghost: 0 along the border normal
                    put(d, i, 1, *mirrored_central(my, mx, 1 - axis))
                else:
                    if not inside:  # zero flux through a border face
                        nb[d, i] = i
                        put(d, i, 0, [], [])
                        put(d, i, 1, [], [])
                        continue
                    n = node(ny, nx)
                    nb[d, i] = n
                    put(d, i, 0, [n, i], [1.0, -1.0])
                    ia, wa = mirrored_central(y, x, 1 - axis)
                    ib, wb = mirrored_central(ny, nx, 1 - axis)
                    put(d, i, 1, ia + ib, [w / 4.0 for w in wa + wb])
    for a in (nb, xi, yi, xw, yw):
        a.setflags(write=False)
    return nb, xi, xw, yi, yw


def diffusivity(flat, tabs, d, a, il, family="charbonnier"):
    """(X, Y, s, c) of direction d for flat fields (..., D): the two differences, s = X^2 + Y^2 and
    c = g(a, il, s) of the diffusivity ``family`` (eq. 9, :func:`spdekit.operators.g`)."""
    nb, xi, xw, yi, yw = tabs
    X = (flat[..., xi[d]] * xw[d]).sum(-1)
    Y = (flat[..., yi[d]] * yw[d]).sum(-1)
    s = X * X + Y * Y
    return X, Y, s, operators.g(a, il, s, family)


def forward(u, alpha, inv_lam2, stencil, spacing=1.0, family="charbonnier"):
    """The drift from the tables (numpy, (B, C, H, W) or (H, W) with scalar coefficients per sample):
    only for testing the tables against the stencils of :mod:`.numpy_backend`."""
    u = np.asarray(u)
    tabs = tables(u.shape[-2:], stencil)
    nb = tabs[0]
    flat = u.reshape(u.shape[:-2] + (-1,))
    a = np.asarray(alpha, dtype=np.float64).reshape((-1,) + (1,) * (flat.ndim - 1)) if np.ndim(alpha) else alpha
    il = np.asarray(inv_lam2, dtype=np.float64) / spacing**2
    il = il.reshape((-1,) + (1,) * (flat.ndim - 1)) if np.ndim(il) else il
    b = np.zeros_like(flat)
    for d in range(N_DIRECTIONS):
        c = diffusivity(flat, tabs, d, a, il, family)[3]
        b = b + c * (flat[..., nb[d]] - flat)
    return (b / spacing**2).reshape(u.shape)
