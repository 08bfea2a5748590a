"""The numpy reference backend: readable, vectorised, and the definition the fast kernels are
tested against.

Arrays are ``(B, C, H, W)``; per-sample coefficients are arrays of shape ``(B,)``. The
coefficient arguments follow eq. (9), g(t, x) = alpha / sqrt(1 + |x / lambda|^2), and are passed as
``alpha`` and ``inv_lam2 = 1 / lambda^2`` (exactly 0 for lambda = inf, so the isotropic limit
never produces NaN); ``diffusivity`` names the family of g (:mod:`spdekit.operators`, where g, its
derivative, the central differences and the taming factor are defined). The contract this module
implements: :mod:`.base`.

Paper stencil (eq. 35-36) and its Neumann closure
--------------------------------------------------
The drift at node i is a sum over its four neighbours n,

    b_i = (1/h^2) * sum_n c(n, i) * (u_n - u_i),

where c(n, i) = g1 evaluated AT THE NEIGHBOUR n with unscaled central differences (no 1/2):

* the component along the direction i -> n uses clamped indices,
  ``u[min(n+1, d-1)] - u[max(n-1, 0)]`` (the paper's ``i+2 ∧ d-1`` and ``i-2 ∨ 0``);
* the component across that direction is the central difference of n, set to 0 when n lies
  on a border normal to it (mirror, zero normal derivative).

A neighbour outside the grid is a mirror ghost: its value is that of the node mirrored across
the border (u_{-1} := u_1, node-centred reflection) and its diffusivity is g1 of (0 along the
border normal, across component of the mirrored node). This one rule gives eq. (35)'s interior
rows exactly and every published boundary row of eq. (35)-(36) once three typos are fixed:
``∂_T D, i1 = 0`` (``u_{i1, i2 ∨ 0}`` read as ``u_{i1, i2-2 ∨ 0}``), ``∂_T D, i1 > 0`` (the missing
factor ``(u_{i1+1, i2} - u_i)`` after the first g1) and ``∂_R D, i2 = d2-1``
(``u_{i1-1, i2+1}`` read as ``u_{i1-1, i2}``). ``tests/test_stencil_paper.py`` checks every
published row on a 5x6 grid against this rule. The scheme is not flux-conservative.

With grid spacing h the differences are divided by h inside g1 and the sum by h^2; h = 1
(pixel units) is the paper's setting.

Conservative stencil
--------------------
Face fluxes F_{i+1/2} = g1(grad u on the face) (u_{i+1} - u_i) / h with the face gradient
((u_{i+1} - u_i)/h, mean of the two nodes' mirrored central differences / (2h)) and F = 0 on
border faces; b_i = (F_{i+1/2} - F_{i-1/2}) / h per axis. The sum of b over the grid telescopes
to zero (mass conservation). Here g1 sees the gradient itself, whereas the paper stencil sees
unscaled central differences (about twice the gradient).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .. import operators
from ..operators import sample_norms, taming_factor  # noqa: F401  (part of this backend's API)
from . import stencil_tables
from .base import as_coefficients

name = "numpy"
CAPABILITIES = frozenset({"drift_vjp"})
_central = operators.central  # the name reverse.py and older code import


def _col(a, like):
    """(B,) per-sample coefficient -> (B, 1, 1, 1) in the dtype of ``like`` (computations stay in
    the state's precision: float32 in, float32 arithmetic). Values beyond the dtype's range are
    clamped to its largest finite number: 1/lambda^2 of a tiny lambda must stay finite, or a flat
    region (|grad u| = 0) would give 0 * inf = NaN instead of g = alpha."""
    big = np.finfo(like.dtype).max
    return np.minimum(np.asarray(a, dtype=np.float64), big).astype(like.dtype).reshape((-1,) + (1,) * (like.ndim - 1))


def g(alpha, inv_lam2, gx, gy, diffusivity="charbonnier"):
    """Eq. (9) of the gradient components (gx, gy): :func:`spdekit.operators.g` of s = gx^2 + gy^2."""
    return operators.g(alpha, inv_lam2, gx * gx + gy * gy, diffusivity)


def paper_diffusivities(u, alpha, inv_lam2, diffusivity="charbonnier"):
    """The diffusivities of eq. (35)-(36), padded with the mirror ghosts.

    Returns ``cx`` of shape (..., H, W+2) and ``cy`` of shape (..., H+2, W): cx[..., y, x+1] is
    the diffusivity of node (y, x) seen from its x-neighbours, cx[..., y, 0] and cx[..., y, -1]
    are the left and right ghosts; likewise cy along y. ``diffusivity``: the family of g1.
    """
    dx_clamp, dy_clamp = _central(u, -1, "edge"), _central(u, -2, "edge")
    dx_mirror, dy_mirror = _central(u, -1, "reflect"), _central(u, -2, "reflect")
    zero_x = np.zeros_like(dy_mirror[..., :, :1])
    zero_y = np.zeros_like(dx_mirror[..., :1, :])
    f = diffusivity
    cx = np.concatenate(
        [
            g(alpha, inv_lam2, zero_x, dy_mirror[..., :, 1:2], f),  # ghost left of x = 0
            g(alpha, inv_lam2, dx_clamp, dy_mirror, f),
            g(alpha, inv_lam2, zero_x, dy_mirror[..., :, -2:-1], f),  # ghost right of x = W-1
        ],
        axis=-1,
    )
    cy = np.concatenate(
        [
            g(alpha, inv_lam2, dx_mirror[..., 1:2, :], zero_y, f),  # ghost before y = 0
            g(alpha, inv_lam2, dx_mirror, dy_clamp, f),
            g(alpha, inv_lam2, dx_mirror[..., -2:-1, :], zero_y, f),  # ghost after y = H-1
        ],
        axis=-2,
    )
    return cx, cy


def drift_paper(u, alpha, inv_lam2, spacing=1.0, diffusivity="charbonnier"):
    """Eq. (35)-(36): b_i = sum over neighbours of c(n) (u_n - u_i) / h^2 (closure: module doc)."""
    a = _col(alpha, u)
    il = _col(np.asarray(inv_lam2) / (spacing * spacing), u)
    cx, cy = paper_diffusivities(u, a, il, diffusivity)
    ux = np.pad(u, [(0, 0)] * (u.ndim - 1) + [(1, 1)], mode="reflect")  # mirror ghosts along x
    uy = np.pad(u, [(0, 0)] * (u.ndim - 2) + [(1, 1), (0, 0)], mode="reflect")
    b = (
        cx[..., :, 2:] * (ux[..., :, 2:] - u)
        + cx[..., :, :-2] * (ux[..., :, :-2] - u)
        + cy[..., 2:, :] * (uy[..., 2:, :] - u)
        + cy[..., :-2, :] * (uy[..., :-2, :] - u)
    )
    return b / (spacing * spacing)


def drift_conservative(u, alpha, inv_lam2, spacing=1.0, diffusivity="charbonnier"):
    """Flux form div(g1(grad u) grad u) with zero flux through the border (module doc)."""
    h = spacing
    a = _col(alpha, u)
    il = _col(inv_lam2, u)
    dx_mirror, dy_mirror = _central(u, -1, "reflect"), _central(u, -2, "reflect")
    # faces between x and x+1: normal and tangential gradient components
    dn_x = (u[..., :, 1:] - u[..., :, :-1]) / h
    dt_x = (dy_mirror[..., :, 1:] + dy_mirror[..., :, :-1]) / (4 * h)
    flux_x = g(a, il, dn_x, dt_x, diffusivity) * dn_x
    dn_y = (u[..., 1:, :] - u[..., :-1, :]) / h
    dt_y = (dx_mirror[..., 1:, :] + dx_mirror[..., :-1, :]) / (4 * h)
    flux_y = g(a, il, dt_y, dn_y, diffusivity) * dn_y
    zx = np.zeros_like(flux_x[..., :, :1])
    zy = np.zeros_like(flux_y[..., :1, :])
    fx = np.concatenate([zx, flux_x, zx], axis=-1)  # zero flux on the left/right border faces
    fy = np.concatenate([zy, flux_y, zy], axis=-2)
    return ((fx[..., :, 1:] - fx[..., :, :-1]) + (fy[..., 1:, :] - fy[..., :-1, :])) / h


def drift(u, alpha, inv_lam2, stencil="paper", spacing=1.0, out=None, diffusivity="charbonnier"):
    """The drift by ``stencil`` with g1 of the family ``diffusivity`` (``out`` is accepted for
    interface parity with the fused backends and ignored)."""
    if stencil == "paper":
        return drift_paper(u, alpha, inv_lam2, spacing, diffusivity)
    return drift_conservative(u, alpha, inv_lam2, spacing, diffusivity)


def drift_vjp(u, w, alpha, inv_lam2, stencil="paper", spacing=1.0, diffusivity="charbonnier"):
    """J^T w with J = d b / d u the Jacobian of the drift (either stencil) at u: the adjoint sum of
    :mod:`.stencil_tables` (the stencil as index tables; the paper stencil is not symmetric, so
    J^T != J). u, w: (B, C, H, W); per-sample alpha, inv_lam2 of shape (B,); g1 of the family
    ``diffusivity``, its derivative :func:`spdekit.operators.dg_ds`."""
    tabs = stencil_tables.tables(u.shape[-2:], stencil)
    nb, xi, xw, yi, yw = tabs
    flat = u.reshape(u.shape[:-2] + (-1,))
    wf = w.reshape(flat.shape).astype(u.dtype, copy=False)
    a = _col(alpha, flat[..., None])[..., 0]
    il = _col(np.asarray(inv_lam2) / (spacing * spacing), flat[..., None])[..., 0]
    out = np.zeros_like(flat)
    lead = (slice(None),) * (flat.ndim - 1)
    for d in range(stencil_tables.N_DIRECTIONS):
        X, Y, s, c = stencil_tables.diffusivity(flat, tabs, d, a, il, diffusivity)
        np.add.at(out, lead + (nb[d],), wf * c)
        out -= wf * c
        # w (u_n - u_i) (dc/dX) / X, dc/dX = 2 X dg/ds
        r = wf * (flat[..., nb[d]] - flat) * (2 * operators.dg_ds(a, il, s, diffusivity))
        for t in range(stencil_tables.N_TERMS):
            np.add.at(out, lead + (xi[d, :, t],), r * X * xw[d, :, t])
            np.add.at(out, lead + (yi[d, :, t],), r * Y * yw[d, :, t])
    return (out / (spacing * spacing)).reshape(u.shape)


def diffusion_amplitude(u, alpha, inv_lam2, spacing=1.0, diffusivity="charbonnier"):
    """Eq. (37): g2 at each node from its mirrored central differences (0 across a border)."""
    a = _col(alpha, u)
    il = _col(np.asarray(inv_lam2) / (spacing * spacing), u)
    return g(a, il, _central(u, -1, "reflect"), _central(u, -2, "reflect"), diffusivity)


def em_step(u, dW, dt, coef, stencil="paper", spacing=1.0, taming=None, out=None, work=None):
    """One (tamed) Euler-Maruyama step, eq. (39) with the step size in the numerator:

        u+ = u + dt * b / (1 + dt * ||b||^gamma) + g2 * dW          (taming = (gamma, norm))
        u+ = u + dt * b + g2 * dW                                     (taming = None)

    ``coef`` is a :class:`.base.Coefficients` record (per-sample arrays ``alpha1, inv_lam1, alpha2,
    inv_lam2`` and the two families; a dict with those four keys means Charbonnier's g); ``dW`` is
    the Q-Wiener increment (covariance dt * Q). Returns (u+, all_finite). ``out``/``work`` are
    accepted for interface parity with the fused backends and ignored.
    """
    c = as_coefficients(coef)
    b = drift(u, c.alpha1, c.inv_lam1, stencil, spacing, diffusivity=c.diffusivity1)
    factor = _col(taming_factor(b, dt, taming), u)
    g2 = diffusion_amplitude(u, c.alpha2, c.inv_lam2, spacing, c.diffusivity2)
    new = u + factor * b + g2 * dW
    return new, bool(np.isfinite(new).all())


# -- Q-Wiener noise: circulant embedding applied with real FFTs (scipy.fft, multithreaded) --


def circulant_apply(v, spectrum_half, emb_shape):
    """Apply the symmetric circulant matrix with half-spectrum ``spectrum_half`` (shape
    (M1, M2//2+1)) to fields ``v`` of shape (..., M1, M2), zero-padding smaller fields."""
    m1, m2 = emb_shape
    f = sfft.rfft2(v, s=(m1, m2), workers=-1)
    f *= spectrum_half.astype(f.real.dtype, copy=False)
    return sfft.irfft2(f, s=(m1, m2), workers=-1)
