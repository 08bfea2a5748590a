"""Fused, parallel CPU kernels (numba). Same numerics as :mod:`.numpy_backend`, which is the
readable definition; tests hold the two equal (float64 to 1e-12, float32 to 1e-5).

Work is split into tasks of (plane, block of rows) so that both a large batch of small images
and one large image keep every core busy. Each task walks its rows once with rolling row buffers,
so each node's two diffusivities (as an x- and as a y-neighbour) are evaluated once. A tamed
Euler-Maruyama step is two passes over memory: (1) drift into a buffer plus the per-task sum of
squares for the taming norm, (2) the update u + factor * b + g2 * dW together with a finiteness
check. Untamed EM fuses everything into one pass.

Small samples (C*H*W <= _SAMPLE_TASK_MAX, paper stencil), e.g. a batch of 32x32 images, take
another route: one task per sample computes the drift of its planes with flat loops over each
plane (:func:`_paper_plane`: long vector loops even when rows are short), the taming factor and
the update, all in cache: one pass over memory, one parallel region per step.

fastmath is on without 'nnan'/'ninf': a blow-up must still show up as NaN/inf. The kernels use
numba's numpy error model (IEEE division, no Python ZeroDivisionError check): that check is a
branch in every division and keeps LLVM from vectorising the diffusivity loops (about 10x slower).

The diffusivity family (:mod:`spdekit.operators`) reaches the kernels as ``fam`` (``fam1`` for g1,
``fam2`` for g2), a marker of :data:`FAMILIES` whose numba type selects the family's g at compile
time; :func:`_gfun` and :func:`_dgds` are this backend's one definition of g and dg/ds.

Editing these helpers: numba's on-disk cache (``cache=True``) checks only the file that defines a
kernel, not the helpers it inlines from other files (numba PR 8396, not merged), so the cached kernels of
:mod:`.frozen_operator_numba` and :mod:`.numba_adjoint` keep the old g and dg/ds until their
cache is cleared: ``find spdekit -name '*.nb[ic]' -delete``. A fresh clone (CI) has no cache.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange, types
from numba.extending import overload

from .. import operators
from .base import as_coefficients
from .numpy_backend import circulant_apply  # noqa: F401  (FFTs: scipy.fft is already threaded)

name = "numba"
CAPABILITIES = frozenset({"drift_vjp", "threads"})

_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_ROWS = 32  # rows per task
# A sample of at most this many numbers (C*H*W) is one task of the one-pass step (_em_sample_kernel,
# paper stencil): its drift buffer stays in the core's L2. Larger samples are split into row blocks.
_SAMPLE_TASK_MAX = 16384


def _tasks(H):
    return (H + _ROWS - 1) // _ROWS


# ----------------------------------------------------------------------------- row helpers


def _cast_like(one, x):
    """x in the floating type of ``one`` (typed constants inside the kernels: a float literal is
    float64 in numba and would promote float32 arithmetic)."""
    return type(one)(x)


@overload(_cast_like, inline="always")
def _cast_like_impl(one, x):
    if one == types.float32:
        return lambda one, x: np.float32(x)
    return lambda one, x: np.float64(x)


# The diffusivity family reaches the kernels as an empty NamedTuple whose TYPE names it: numba
# compiles every kernel once per family (and dtype), with the family's formulas inlined, so the
# vector loops carry no branch on the family (a runtime family code cost a factor 2-5 in speed).
# Each family class holds this backend's one definition of its g (eq. 9 and its families) and
# dg/ds, in the state's dtype (``one``); s = |x|^2, il = 1 / lambda^2 (spdekit.operators).
_inline = njit(inline="always", fastmath=_FM, error_model="numpy")


class Charbonnier(NamedTuple):
    """g = a / sqrt(1 + z), z = s il: the paper's eq. (9)."""

    @staticmethod
    @_inline
    def g(a, il, s, one):
        return a / np.sqrt(one + s * il)

    @staticmethod
    @_inline
    def dg_ds(a, il, s, one):
        q = one + s * il
        return -a * il / ((one + one) * q * np.sqrt(q))


class PeronaMalik(NamedTuple):
    """g = a / (1 + z)."""

    @staticmethod
    @_inline
    def g(a, il, s, one):
        return a / (one + s * il)

    @staticmethod
    @_inline
    def dg_ds(a, il, s, one):
        q = one + s * il
        return -a * il / (q * q)


class Exponential(NamedTuple):
    """g = a exp(-z)."""

    @staticmethod
    @_inline
    def g(a, il, s, one):
        return a * np.exp(-(s * il))

    @staticmethod
    @_inline
    def dg_ds(a, il, s, one):
        return -a * il * np.exp(-(s * il))


class Weickert(NamedTuple):
    """g = a (1 - exp(-C4 / z^4)), a at z = 0 (there w = C4 / z^4 = inf)."""

    @staticmethod
    @_inline
    def g(a, il, s, one):
        z = s * il
        return a * -np.expm1(-(_cast_like(one, operators.WEICKERT_C4) / (z * z * z * z)))

    @staticmethod
    @_inline
    def dg_ds(a, il, s, one):
        z = s * il
        w = _cast_like(one, operators.WEICKERT_C4) / (z * z * z * z)
        e = np.exp(-w)  # dg/dz = -4 a e^-w w / z, 0 where e^-w underflows (z -> 0)
        return -_cast_like(one, 4.0) * a * il * e * (w / z) if e > 0 else one - one


FAMILIES = dict(zip(operators.DIFFUSIVITIES, (Charbonnier(), PeronaMalik(), Exponential(), Weickert())))
_NAMES = {type(v): k for k, v in FAMILIES.items()}


def _per_family(formula, reference):
    """f(fam, a, il, s, one): in compiled code the family's ``formula`` (a method name of the family
    classes), chosen by fam's type and inlined; called from Python, ``reference`` of
    :mod:`spdekit.operators`."""

    def f(fam, a, il, s, one):
        return reference(a, il, s, _NAMES[type(fam)])

    @overload(f, inline="always")
    def _compiled(fam, a, il, s, one):
        impl = getattr(fam.instance_class, formula)
        return lambda fam, a, il, s, one: impl(a, il, s, one)

    f.__name__ = f.__qualname__ = f"_{formula}"
    return f


_gfun = _per_family("g", operators.g)  # g of eq. (9) in the family fam
_dgds = _per_family("dg_ds", operators.dg_ds)  # its derivative in s


@njit(fastmath=_FM, error_model="numpy")
def _row_diffusivities(u, r, fam, a, il, one, cx, cy):
    """Diffusivities of row r as an x-neighbour (cx: g(dx clamped, dy mirrored)) and as a
    y-neighbour (cy: g(dx mirrored, dy clamped)). Off the border both are g(central dx, central dy),
    so an interior row costs one g per node (the numpy reference evaluates both)."""
    H, W = u.shape
    zero = one - one
    if 0 < r < H - 1:
        for x in range(1, W - 1):
            dx = u[r, x + 1] - u[r, x - 1]
            dy = u[r + 1, x] - u[r - 1, x]
            v = _gfun(fam, a, il, dx * dx + dy * dy, one)
            cx[x] = v
            cy[x] = v
        for x in (0, W - 1):
            dx = u[r, min(x + 1, W - 1)] - u[r, max(x - 1, 0)]
            dy = u[r + 1, x] - u[r - 1, x]
            cx[x] = _gfun(fam, a, il, dx * dx + dy * dy, one)
            cy[x] = _gfun(fam, a, il, dy * dy, one)
    else:  # a y-border row: dy mirrored is 0, dy clamped is one-sided
        rp = min(r + 1, H - 1)
        rm = max(r - 1, 0)
        for x in range(1, W - 1):
            dx = u[r, x + 1] - u[r, x - 1]
            dy = u[rp, x] - u[rm, x]
            cx[x] = _gfun(fam, a, il, dx * dx, one)
            cy[x] = _gfun(fam, a, il, dx * dx + dy * dy, one)
        for x in (0, W - 1):
            dx = u[r, min(x + 1, W - 1)] - u[r, max(x - 1, 0)]
            dy = u[rp, x] - u[rm, x]
            cx[x] = _gfun(fam, a, il, dx * dx, one)
            cy[x] = _gfun(fam, a, il, dy * dy + zero, one)


@njit(fastmath=_FM, error_model="numpy")
def _ghost_y_row(u, r, fam, a, il, one, out):
    """Ghost diffusivity beyond a y-border: g(dx mirrored of row r, 0)."""
    W = u.shape[1]
    for x in range(1, W - 1):
        dx = u[r, x + 1] - u[r, x - 1]
        out[x] = _gfun(fam, a, il, dx * dx, one)
    out[0] = a  # g(0) = a for every family
    out[W - 1] = a


@njit(fastmath=_FM, error_model="numpy")
def _paper_row(u, y, fam, a, il, one, cprev, cnext, cx, out):
    """Eq. (35)-(36) for row y: cx = row y's x-role diffusivities, cprev/cnext = the y-role
    diffusivities of rows y-1 / y+1 (or the ghosts beyond a border)."""
    H, W = u.shape
    interior_y = 0 < y < H - 1
    ym = y - 1 if interior_y else y  # mirrored dy is 0 on the y-borders
    yp = y + 1 if interior_y else y
    # ghost diffusivities left / right: g(0, dy mirrored of the mirrored column)
    d0 = u[yp, 1] - u[ym, 1]
    d1 = u[yp, W - 2] - u[ym, W - 2]
    gl = _gfun(fam, a, il, d0 * d0, one)
    gr = _gfun(fam, a, il, d1 * d1, one)
    yu = y + 1 if y < H - 1 else H - 2  # mirror ghost values across the y-borders
    yd = y - 1 if y > 0 else 1
    for x in range(1, W - 1):
        c = u[y, x]
        out[x] = (
            cx[x + 1] * (u[y, x + 1] - c)
            + cx[x - 1] * (u[y, x - 1] - c)
            + cnext[x] * (u[yu, x] - c)
            + cprev[x] * (u[yd, x] - c)
        )
    c = u[y, 0]
    out[0] = (cx[1] + gl) * (u[y, 1] - c) + cnext[0] * (u[yu, 0] - c) + cprev[0] * (u[yd, 0] - c)
    c = u[y, W - 1]
    out[W - 1] = (
        (cx[W - 2] + gr) * (u[y, W - 2] - c)
        + cnext[W - 1] * (u[yu, W - 1] - c)
        + cprev[W - 1] * (u[yd, W - 1] - c)
    )


@njit(fastmath=_FM, error_model="numpy")
def _paper_block(u, y0, y1, fam, a, il, one, rowbuf):
    """Eq. (35)-(36) for rows [y0, y1) of one plane, written to rowbuf[y - y0] (unscaled by h).
    Rolling buffers: the y-role diffusivities of rows y-1, y, y+1 and the x-role ones of rows y, y+1."""
    H, W = u.shape
    cy0 = np.empty(W, u.dtype)
    cy1 = np.empty(W, u.dtype)
    cy2 = np.empty(W, u.dtype)
    cx1 = np.empty(W, u.dtype)
    cx2 = np.empty(W, u.dtype)
    if y0 == 0:
        _ghost_y_row(u, 1, fam, a, il, one, cy0)
    else:
        _row_diffusivities(u, y0 - 1, fam, a, il, one, cx2, cy0)  # only its y-role is used
    _row_diffusivities(u, y0, fam, a, il, one, cx1, cy1)
    for y in range(y0, y1):
        if y + 1 < H:
            _row_diffusivities(u, y + 1, fam, a, il, one, cx2, cy2)
        else:
            _ghost_y_row(u, H - 2, fam, a, il, one, cy2)
        _paper_row(u, y, fam, a, il, one, cy0, cy2, cx1, rowbuf[y - y0])
        cy0, cy1, cy2 = cy1, cy2, cy0
        cx1, cx2 = cx2, cx1


@njit(fastmath=_FM, error_model="numpy")
def _paper_plane(u, fam, a, il, one, cx, cy, gprev, gnext, out):
    """Eq. (35)-(36) for a whole (H, W) plane at once (unscaled by h), for small planes.

    Same values as :func:`_paper_block`, organised for short rows: the diffusivities and the
    stencil of all nodes off the border are two flat loops over the plane (one vector loop of
    H*W - 2W - 2 nodes each, instead of H loops of W - 2), which also visit the nodes of columns
    0 and W-1 with the wrong neighbours; those, the rows 0 and H-1 and the ghosts are then
    overwritten by the border rules. cx, cy: scratch of H*W; gprev, gnext: scratch of W."""
    H, W = u.shape
    N = H * W
    uf = u.reshape(N)
    of = out.reshape(N)
    lo, hi = W + 1, N - W - 1
    n = hi - lo
    # shifted views: every access in the flat loops is view[j] (this is what lets LLVM vectorise)
    ue, uw, un, us = uf[lo + 1:hi + 1], uf[lo - 1:hi - 1], uf[lo + W:hi + W], uf[lo - W:hi - W]
    uc = uf[lo:hi]
    cxc, cyc = cx[lo:hi], cy[lo:hi]
    for j in range(n):  # interior rule (both roles equal), wrong on columns 0 and W-1
        dx = ue[j] - uw[j]
        dy = un[j] - us[j]
        v = _gfun(fam, a, il, dx * dx + dy * dy, one)
        cxc[j] = v
        cyc[j] = v
    for y in range(1, H - 1):  # columns 0 and W-1 of the interior rows: dx clamped, dy mirrored
        for x in (0, W - 1):
            i = y * W + x
            dx = uf[y * W + min(x + 1, W - 1)] - uf[y * W + max(x - 1, 0)]
            dy = uf[i + W] - uf[i - W]
            cx[i] = _gfun(fam, a, il, dx * dx + dy * dy, one)
            cy[i] = _gfun(fam, a, il, dy * dy, one)
    _row_diffusivities(u, 0, fam, a, il, one, cx[:W], cy[:W])
    _row_diffusivities(u, H - 1, fam, a, il, one, cx[N - W:], cy[N - W:])
    _ghost_y_row(u, 1, fam, a, il, one, gprev)
    _ghost_y_row(u, H - 2, fam, a, il, one, gnext)
    cxe, cxw, cyn, cys = cx[lo + 1:hi + 1], cx[lo - 1:hi - 1], cy[lo + W:hi + W], cy[lo - W:hi - W]
    oc = of[lo:hi]
    for j in range(n):  # interior stencil, wrong on columns 0 and W-1
        c = uc[j]
        oc[j] = cxe[j] * (ue[j] - c) + cxw[j] * (uw[j] - c) + cyn[j] * (un[j] - c) + cys[j] * (us[j] - c)
    for y in range(1, H - 1):  # columns 0 and W-1: mirror ghosts left / right
        i = y * W
        d0 = uf[i + W + 1] - uf[i - W + 1]
        gl = _gfun(fam, a, il, d0 * d0, one)
        c = uf[i]
        of[i] = (cx[i + 1] + gl) * (uf[i + 1] - c) + cy[i + W] * (uf[i + W] - c) + cy[i - W] * (uf[i - W] - c)
        i = y * W + W - 1
        d1 = uf[i + W - 1] - uf[i - W - 1]
        gr = _gfun(fam, a, il, d1 * d1, one)
        c = uf[i]
        of[i] = (cx[i - 1] + gr) * (uf[i - 1] - c) + cy[i + W] * (uf[i + W] - c) + cy[i - W] * (uf[i - W] - c)
    _paper_row(u, 0, fam, a, il, one, gprev, cy[W:2 * W], cx[:W], out[0])
    _paper_row(u, H - 1, fam, a, il, one, cy[N - 2 * W:N - W], gnext, cx[N - W:], out[H - 1])


@njit(fastmath=_FM, error_model="numpy")
def _conservative_block(u, y0, y1, fam, a, il, one, inv_h, rowbuf):
    """Flux-form drift for rows [y0, y1) of one plane (see numpy_backend.drift_conservative)."""
    H, W = u.shape
    quarter = one / (one + one + one + one)
    zero = one - one
    fx = np.empty(W + 1, u.dtype)
    fy_lo = np.empty(W, u.dtype)
    fy_hi = np.empty(W, u.dtype)

    for y in range(y0, y1):
        # vertical fluxes through the faces below (y-1/2) and above (y+1/2) of row y
        for which in range(2):
            r0 = y - 1 if which == 0 else y
            dst = fy_lo if which == 0 else fy_hi
            if r0 < 0 or r0 + 1 > H - 1:
                for x in range(W):
                    dst[x] = zero
                continue
            r1 = r0 + 1
            for x in range(W):
                dn = (u[r1, x] - u[r0, x]) * inv_h
                if 0 < x < W - 1:
                    dt = (u[r0, x + 1] - u[r0, x - 1] + u[r1, x + 1] - u[r1, x - 1]) * quarter * inv_h
                else:
                    dt = zero
                dst[x] = _gfun(fam, a, il, dn * dn + dt * dt, one) * dn
        # horizontal fluxes through the faces x-1/2 ... x+1/2 of row y
        fx[0] = zero
        fx[W] = zero
        for x in range(W - 1):
            dn = (u[y, x + 1] - u[y, x]) * inv_h
            if 0 < y < H - 1:
                dt = (u[y + 1, x] - u[y - 1, x] + u[y + 1, x + 1] - u[y - 1, x + 1]) * quarter * inv_h
            else:
                dt = zero
            fx[x + 1] = _gfun(fam, a, il, dn * dn + dt * dt, one) * dn
        out = rowbuf[y - y0]
        for x in range(W):
            out[x] = ((fx[x + 1] - fx[x]) + (fy_hi[x] - fy_lo[x])) * inv_h


@njit(fastmath=_FM, error_model="numpy")
def _g2_row(u, y, fam, a, il, one, out):
    """Eq. (37) for row y: g2 of the mirrored central differences."""
    H, W = u.shape
    interior_y = 0 < y < H - 1
    zero = one - one
    for x in range(W):
        dx = u[y, x + 1] - u[y, x - 1] if 0 < x < W - 1 else zero
        dy = u[y + 1, x] - u[y - 1, x] if interior_y else zero
        out[x] = _gfun(fam, a, il, dx * dx + dy * dy, one)
    if not interior_y:
        # the corners see no difference: g2 = g(0) = a for every family. Written out because fast-math
        # reassociation turns the constant s = 0*0 + 0*0 into 0 * (2 il), NaN once 2 il overflows
        # (1/lambda^2 clamped to the dtype's largest number)
        out[0] = a
        out[W - 1] = a


# ----------------------------------------------------------------------------- drift / g2


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _drift_kernel(u, fam, a, il, conservative, inv_h, inv_h2, one, out):
    """u, out: (P, H, W); a, il: per plane. Fills out with the drift; returns per-task sum b^2."""
    P, H, W = u.shape
    nt = (H + _ROWS - 1) // _ROWS
    ssq = np.zeros(P * nt)
    for task in prange(P * nt):
        p = task // nt
        y0 = (task % nt) * _ROWS
        y1 = min(y0 + _ROWS, H)
        rows = out[p, y0:y1]
        if conservative:
            _conservative_block(u[p], y0, y1, fam, a[p], il[p], one, inv_h, rows)
            s = 0.0
            for r in range(y1 - y0):
                for x in range(W):
                    v = rows[r, x]
                    s += v * v
        else:
            _paper_block(u[p], y0, y1, fam, a[p], il[p], one, rows)
            s = 0.0
            for r in range(y1 - y0):
                for x in range(W):
                    v = rows[r, x] * inv_h2
                    rows[r, x] = v
                    s += v * v
        ssq[task] = s
    return ssq


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _drift_plane_kernel(u, fam, a, il, inv_h2, one, out):
    """Paper-stencil drift of small planes, one task per plane (flat loops: :func:`_paper_plane`)."""
    P, H, W = u.shape
    for p in prange(P):
        cx = np.empty(H * W, u.dtype)
        cy = np.empty(H * W, u.dtype)
        gprev = np.empty(W, u.dtype)
        gnext = np.empty(W, u.dtype)
        _paper_plane(u[p], fam, a[p], il[p], one, cx, cy, gprev, gnext, out[p])
        of = out[p].reshape(H * W)
        for i in range(H * W):
            of[i] *= inv_h2


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _g2_kernel(u, fam, a, il, one, out):
    P, H, W = u.shape
    for task in prange(P * H):
        p = task // H
        y = task % H
        _g2_row(u[p], y, fam, a[p], il[p], one, out[p, y])


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _update_kernel(u, b, dW, fac, fam2, a2, il2, one, out):
    """out = u + fac * b + g2(u) * dW (per plane fac, a2, il2). Returns per-task sum |out|, a
    finiteness probe (non-finite iff some entry is)."""
    P, H, W = u.shape
    nt = (H + _ROWS - 1) // _ROWS
    probe = np.zeros(P * nt)
    for task in prange(P * nt):
        p = task // nt
        y0 = (task % nt) * _ROWS
        y1 = min(y0 + _ROWS, H)
        f = fac[p]
        s = 0.0
        if il2[p] == 0:  # additive noise: g2 = alpha2, no row buffer needed
            g = a2[p]
            for y in range(y0, y1):
                for x in range(W):
                    v = u[p, y, x] + f * b[p, y, x] + g * dW[p, y, x]
                    out[p, y, x] = v
                    s += abs(v)
        else:
            g2row = np.empty(W, u.dtype)
            for y in range(y0, y1):
                _g2_row(u[p], y, fam2, a2[p], il2[p], one, g2row)
                for x in range(W):
                    v = u[p, y, x] + f * b[p, y, x] + g2row[x] * dW[p, y, x]
                    out[p, y, x] = v
                    s += abs(v)
        probe[task] = s
    return probe


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _em_fused_kernel(u, dW, dt, fam1, a1, il1, fam2, a2, il2, conservative, inv_h, inv_h2, one, out):
    """Untamed EM in one pass: out = u + dt * b(u) + g2(u) * dW."""
    P, H, W = u.shape
    nt = (H + _ROWS - 1) // _ROWS
    probe = np.zeros(P * nt)
    for task in prange(P * nt):
        p = task // nt
        y0 = (task % nt) * _ROWS
        y1 = min(y0 + _ROWS, H)
        rows = np.empty((y1 - y0, W), u.dtype)
        if conservative:
            _conservative_block(u[p], y0, y1, fam1, a1[p], il1[p], one, inv_h, rows)
            scale = dt
        else:
            _paper_block(u[p], y0, y1, fam1, a1[p], il1[p], one, rows)
            scale = dt * inv_h2
        g2row = np.empty(W, u.dtype)
        s = 0.0
        for r in range(y1 - y0):
            y = y0 + r
            if il2[p] == 0:
                for x in range(W):
                    g2row[x] = a2[p]
            else:
                _g2_row(u[p], y, fam2, a2[p], il2[p], one, g2row)
            for x in range(W):
                v = u[p, y, x] + scale * rows[r, x] + g2row[x] * dW[p, y, x]
                out[p, y, x] = v
                s += abs(v)
        probe[task] = s
    return probe


@njit(parallel=True, fastmath=_FM, error_model="numpy", cache=True)
def _em_sample_kernel(u, dW, C, dt, tamed, gamma, rms, fam1, a1, il1, fam2, a2, il2, inv_h2, one, out):
    """(Tamed) EM, paper stencil, one task per sample for small samples: the drift of the sample's
    C planes goes to a task-local buffer (it stays in cache), its norm gives the taming factor and
    the update follows in the same task, so a step is one pass over memory and one parallel region.
    u, dW, out: (S*C, H, W). Returns per-sample sum |out| (finiteness probe)."""
    P, H, W = u.shape
    S = P // C
    N = H * W
    probe = np.zeros(S)
    facs = np.empty(S, u.dtype)
    for s in prange(S):
        b = np.empty((C, N), u.dtype)
        cx = np.empty(N, u.dtype)
        cy = np.empty(N, u.dtype)
        gprev = np.empty(W, u.dtype)
        gnext = np.empty(W, u.dtype)
        ssq = 0.0
        for c in range(C):
            p = s * C + c
            bc = b[c]
            _paper_plane(u[p], fam1, a1[p], il1[p], one, cx, cy, gprev, gnext, bc.reshape(H, W))
            for i in range(N):
                v = bc[i] * inv_h2
                bc[i] = v
                ssq += v * v
        if tamed:
            nrm = ssq / (C * N) if rms else ssq
            facs[s] = dt / (1.0 + dt * np.sqrt(nrm) ** gamma)
        else:
            facs[s] = dt
        f = facs[s]
        acc = 0.0
        for c in range(C):
            p = s * C + c
            bc = b[c]
            uf = u[p].reshape(N)
            wf = dW[p].reshape(N)
            of = out[p].reshape(N)
            if il2[p] == 0:  # additive noise
                g = a2[p]
                for i in range(N):
                    v = uf[i] + f * bc[i] + g * wf[i]
                    of[i] = v
                    acc += abs(v)
            else:
                g2row = cx[:W]  # the scratch is free again
                for y in range(H):
                    _g2_row(u[p], y, fam2, a2[p], il2[p], one, g2row)
                    for x in range(W):
                        i = y * W + x
                        v = uf[i] + f * bc[i] + g2row[x] * wf[i]
                        of[i] = v
                        acc += abs(v)
        probe[s] = acc
    return probe


# ----------------------------------------------------------------------------- public API


def _family(name):
    return FAMILIES[operators.check_diffusivity(name)]


def _planes(u):
    B, C, H, W = u.shape
    return np.ascontiguousarray(u).reshape(B * C, H, W), B, C


def _per_plane(a, B, C, dtype):
    """Per-sample values (..., B) repeated per channel -> (..., B*C), clamped to the dtype's finite
    range (numpy_backend._col)."""
    a = np.asarray(a, dtype=np.float64)
    a = np.minimum(a.reshape(a.shape[:-1] + (B,)) if a.ndim else np.full(B, a), np.finfo(dtype).max)
    return np.repeat(a, C, axis=-1).astype(dtype)


def drift(u, alpha, inv_lam2, stencil="paper", spacing=1.0, out=None, diffusivity="charbonnier"):
    """Same contract as :func:`.numpy_backend.drift`; ``out``: an optional buffer of u's shape."""
    up, B, C = _planes(u)
    dt = u.dtype
    fam = _family(diffusivity)
    res = np.empty_like(up) if out is None else out.reshape(up.shape)
    h = float(spacing)
    il = np.asarray(inv_lam2, dtype=np.float64) / (1.0 if stencil == "conservative" else h * h)
    if stencil == "paper" and u.shape[-2] * u.shape[-1] <= _SAMPLE_TASK_MAX:
        _drift_plane_kernel(up, fam, _per_plane(alpha, B, C, dt), _per_plane(il, B, C, dt),
                            dt.type(1.0 / (h * h)), dt.type(1.0), res)
        return res.reshape(u.shape)
    _drift_kernel(
        up, fam, _per_plane(alpha, B, C, dt), _per_plane(il, B, C, dt), stencil == "conservative",
        dt.type(1.0 / h), dt.type(1.0 / (h * h)), dt.type(1.0), res,
    )
    return res.reshape(u.shape)


def drift_vjp(u, w, alpha, inv_lam2, stencil="paper", spacing=1.0, diffusivity="charbonnier"):
    """Same contract as :func:`.numpy_backend.drift_vjp` (J^T w of the drift); kernels in :mod:`.numba_adjoint`."""
    from .numba_adjoint import drift_vjp as vjp

    return vjp(u, w, alpha, inv_lam2, stencil, spacing, diffusivity)


def diffusion_amplitude(u, alpha, inv_lam2, spacing=1.0, diffusivity="charbonnier"):
    up, B, C = _planes(u)
    dt = u.dtype
    res = np.empty_like(up)
    il = np.asarray(inv_lam2, dtype=np.float64) / (spacing * spacing)
    _g2_kernel(up, _family(diffusivity), _per_plane(alpha, B, C, dt), _per_plane(il, B, C, dt),
               dt.type(1.0), res)
    return res.reshape(u.shape)


def em_step(u, dW, dt, coef, stencil="paper", spacing=1.0, taming=None, out=None, work=None):
    """Same contract as :func:`.numpy_backend.em_step`; ``out``/``work`` are optional buffers of
    u's shape (the simulation loop reuses them)."""
    c = as_coefficients(coef)
    f1, f2 = FAMILIES[c.diffusivity1], FAMILIES[c.diffusivity2]
    up, B, C = _planes(u)
    dtype = u.dtype
    dWp = np.ascontiguousarray(dW, dtype=dtype).reshape(up.shape)
    res = np.empty_like(up) if out is None else out.reshape(up.shape)
    h = float(spacing)
    cons = stencil == "conservative"
    scale = np.array([1.0, 1.0 if cons else 1.0 / (h * h), 1.0, 1.0 / (h * h)])[:, None]
    table = np.stack([c.alpha1, c.inv_lam1, c.alpha2, c.inv_lam2]).astype(np.float64)
    a1, il1p, a2, il2p = _per_plane(table * scale, B, C, dtype)
    one = dtype.type(1.0)
    if not cons and C * u.shape[2] * u.shape[3] <= _SAMPLE_TASK_MAX:
        gamma, norm = taming if taming is not None else (1.0, "l2")
        probe = _em_sample_kernel(
            up, dWp, C, float(dt), taming is not None, float(gamma), norm == "rms", f1, a1, il1p, f2, a2, il2p,
            dtype.type(1.0 / (h * h)), one, res,
        )
    elif taming is None:
        probe = _em_fused_kernel(
            up, dWp, dtype.type(dt), f1, a1, il1p, f2, a2, il2p, cons,
            dtype.type(1.0 / h), dtype.type(1.0 / (h * h)), one, res,
        )
    else:
        gamma, norm = taming
        b = np.empty_like(up) if work is None else work.reshape(up.shape)
        ssq = _drift_kernel(up, f1, a1, il1p, cons, dtype.type(1.0 / h), dtype.type(1.0 / (h * h)), one, b)
        norms = operators.norm_from_squares(ssq.reshape(B, -1).sum(axis=1), C * u.shape[2] * u.shape[3], norm)
        factor = operators.tamed_step(dt, norms, gamma)
        probe = _update_kernel(up, b, dWp, _per_plane(factor, B, C, dtype), f2, a2, il2p, one, res)
    return res.reshape(u.shape), bool(np.isfinite(probe.sum()))


def threads() -> int:
    return get_num_threads()
