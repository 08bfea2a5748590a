"""Stiff-stable steps, numba kernels: the same numerics as :mod:`.implicit_numpy` (the readable
definition, whose module doc derives them), tested equal to it (float64 to 1e-9 relative after a
step's Krylov solve, float32 to 1e-5).

Layout: the planes (sample, channel) of a (B, C, H, W) state are split into tasks of (plane, block of
_ROWS rows), run in parallel. A Krylov iteration is a few fused passes (operator application with the
dot products it needs; vector updates with theirs); each task writes its partial sums, which are
added per plane in task order, so the results do not depend on the thread count. The per-plane
scalar recurrences (alpha, beta, omega, convergence) are numpy on (planes,) arrays, written exactly
as in the reference. The Thomas solves of AOS run one task per (plane, block of _LINES x-lines) and
one task per (plane, block of _COLS columns) along y, the lines (columns) as the inner, vectorised loop.

Planes of at most _FUSED_MAX nodes instead run their whole Krylov solve in one task (the same
recurrences, serial sums), planes in parallel: no per-iteration overhead for small images.

The frozen weights come from :mod:`.frozen_operator_numba`; the drift and the noise amplitude from the
kernels of :mod:`.numba_backend`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import implicit_numpy as _ref
from . import numba_backend as kb
from .frozen_operator_numba import _FM, frozen_weights  # _FM: no reassociation, the sums keep their order
from .implicit_numpy import METHODS, LinearSolveError, aos_step_with, theta_step_with  # noqa: F401

name = "numba"
_ROWS = 16  # rows per task of the blocked Krylov kernels
_COLS = 64  # columns per task of the y-direction Thomas solve
_LINES = 16  # x-lines swept together by a task of the x-direction Thomas solve
#: planes of at most this many nodes run a whole Krylov solve in one task (one parallel region per
#: solve, planes in parallel); larger planes use the blocked kernels (one region per pass, row blocks
#: in parallel). Chosen by the plane's size only, so a sample's result does not depend on the batch.
_FUSED_MAX = 65536


def _blocks(H):
    return (H + _ROWS - 1) // _ROWS


# ----------------------------------------------------------------------------- kernels


@njit(inline="always")
def _row_apply(w, s, x, p, y, W, H, out):
    """out[y, :] = (M x)[y, :] for plane p (M = I - s A, mirrored neighbours)."""
    ym = y - 1 if y > 0 else 1
    yp = y + 1 if y < H - 1 else H - 2
    for k in range(W):
        km = k - 1 if k > 0 else 1
        kp = k + 1 if k < W - 1 else W - 2
        c = x[p, y, k]
        acc = (w[0, p, y, k] * (x[p, y, kp] - c) + w[1, p, y, k] * (x[p, y, km] - c)
               + w[2, p, y, k] * (x[p, yp, k] - c) + w[3, p, y, k] * (x[p, ym, k] - c))
        out[p, y, k] = c - s * acc


@njit(parallel=True, fastmath=_FM, cache=True)
def _apply_dots(w, scale, x, out, yv, active, part_oy, part_oo):
    """out = M x on active planes; per task: sum(out * yv) and sum(out * out)."""
    P, H, W = x.shape
    nb = part_oy.shape[1]
    for task in prange(P * nb):
        p = task // nb
        blk = task % nb
        if not active[p]:
            continue
        s = scale[p]
        oy = 0.0
        oo = 0.0
        for y in range(blk * _ROWS, min(H, (blk + 1) * _ROWS)):
            _row_apply(w, s, x, p, y, W, H, out)
            for k in range(W):
                o = out[p, y, k]
                oy += o * yv[p, y, k]
                oo += o * o
        part_oy[p, blk] = oy
        part_oo[p, blk] = oo


@njit(parallel=True, fastmath=_FM, cache=True)
def _cg_update(x, r, z, p_, q, dinv, alpha, active, part_rr, part_rz):
    """x += alpha p; r -= alpha q; z = r / diag; per task sum(r r), sum(r z)."""
    P, H, W = x.shape
    nb = part_rr.shape[1]
    for task in prange(P * nb):
        p = task // nb
        blk = task % nb
        if not active[p]:
            continue
        a = alpha[p]
        rr = 0.0
        rz = 0.0
        for y in range(blk * _ROWS, min(H, (blk + 1) * _ROWS)):
            for k in range(W):
                x[p, y, k] += a * p_[p, y, k]
                rv = r[p, y, k] - a * q[p, y, k]
                r[p, y, k] = rv
                zv = rv * dinv[p, y, k]
                z[p, y, k] = zv
                rr += rv * rv
                rz += rv * zv
        part_rr[p, blk] = rr
        part_rz[p, blk] = rz


@njit(parallel=True, fastmath=_FM, cache=True)
def _xpby(p_, z, beta, active):
    """p = z + beta p on active planes."""
    P, H, W = p_.shape
    for task in prange(P * H):
        p = task // H
        y = task % H
        if not active[p]:
            continue
        b = beta[p]
        for k in range(W):
            p_[p, y, k] = z[p, y, k] + b * p_[p, y, k]


@njit(parallel=True, fastmath=_FM, cache=True)
def _bicg_direction(p_, r, v, phat, dinv, beta, omega, active):
    """p = r + beta (p - omega v); phat = p / diag, on active planes."""
    P, H, W = p_.shape
    for task in prange(P * H):
        p = task // H
        y = task % H
        if not active[p]:
            continue
        b = beta[p]
        om = omega[p]
        for k in range(W):
            pv = r[p, y, k] + b * (p_[p, y, k] - om * v[p, y, k])
            p_[p, y, k] = pv
            phat[p, y, k] = pv * dinv[p, y, k]


@njit(parallel=True, fastmath=_FM, cache=True)
def _bicg_half(s_, r, v, shat, dinv, alpha, active, part_ss):
    """s = r - alpha v; shat = s / diag; per task sum(s s)."""
    P, H, W = s_.shape
    nb = part_ss.shape[1]
    for task in prange(P * nb):
        p = task // nb
        blk = task % nb
        if not active[p]:
            continue
        a = alpha[p]
        ss = 0.0
        for y in range(blk * _ROWS, min(H, (blk + 1) * _ROWS)):
            for k in range(W):
                sv = r[p, y, k] - a * v[p, y, k]
                s_[p, y, k] = sv
                shat[p, y, k] = sv * dinv[p, y, k]
                ss += sv * sv
        part_ss[p, blk] = ss


@njit(parallel=True, fastmath=_FM, cache=True)
def _bicg_finish(x, r, phat, shat, s_, t, rhat, alpha, omega, mode, part_rr, part_rr2):
    """mode 1 (converged on the half step): x += alpha phat. mode 2: x += alpha phat + omega shat;
    r = s - omega t; per task sum(r r), sum(rhat r)."""
    P, H, W = x.shape
    nb = part_rr.shape[1]
    for task in prange(P * nb):
        p = task // nb
        blk = task % nb
        m = mode[p]
        if m == 0:
            continue
        a = alpha[p]
        om = omega[p] if m == 2 else 0.0
        rr = 0.0
        rh = 0.0
        for y in range(blk * _ROWS, min(H, (blk + 1) * _ROWS)):
            for k in range(W):
                x[p, y, k] += a * phat[p, y, k] + om * shat[p, y, k]
                if m == 2:
                    rv = s_[p, y, k] - om * t[p, y, k]
                    r[p, y, k] = rv
                    rr += rv * rv
                    rh += rhat[p, y, k] * rv
        part_rr[p, blk] = rr
        part_rr2[p, blk] = rh


@njit(parallel=True, fastmath=_FM, cache=True)
def _plane_dots(a, b, part):
    P, H, W = a.shape
    nb = part.shape[1]
    for task in prange(P * nb):
        p = task // nb
        blk = task % nb
        acc = 0.0
        for y in range(blk * _ROWS, min(H, (blk + 1) * _ROWS)):
            for k in range(W):
                acc += a[p, y, k] * b[p, y, k]
        part[p, blk] = acc


@njit(parallel=True, fastmath=_FM, cache=True)
def _diag_inverse(w, scale, out):
    P, H, W = out.shape
    for task in prange(P * H):
        p = task // H
        y = task % H
        s = scale[p]
        for k in range(W):
            out[p, y, k] = 1.0 / (1.0 + s * (w[0, p, y, k] + w[1, p, y, k] + w[2, p, y, k] + w[3, p, y, k]))


@njit(parallel=True, fastmath=_FM, cache=True)
def _thomas_x(w, tau, f, out):
    """Each x-line of each plane: (I - tau A_x) out = f (Thomas; mirror ends folded). Tasks of (plane,
    block of _LINES lines) copy their lines' coefficients transposed into task-local buffers and sweep
    the lines together, the lines as the inner (vectorised) loop, as the y-direction solve does with
    columns: one line's recurrence is a chain of dependent divisions, independent lines side by side
    hide their latency. Each line's arithmetic is that of the serial algorithm, in the same order."""
    P, H, W = f.shape
    nb = (H + _LINES - 1) // _LINES
    for task in prange(P * nb):
        p = task // nb
        y0 = (task % nb) * _LINES
        L = min(_LINES, H - y0)
        t = tau[p]
        fw = np.empty((W, L))
        bw = np.empty((W, L))
        cp = np.empty((W, L))
        dp = np.empty((W, L))
        for j in range(L):  # transpose the block's lines (reads along rows)
            for k in range(W):
                fw[k, j] = t * w[0, p, y0 + j, k]
                bw[k, j] = t * w[1, p, y0 + j, k]
                dp[k, j] = f[p, y0 + j, k]
        for j in range(L):  # k = 0: the -neighbour is the mirror of node 1
            dg = 1.0 + fw[0, j] + bw[0, j]
            cp[0, j] = (-fw[0, j] - bw[0, j]) / dg
            dp[0, j] = dp[0, j] / dg
        for k in range(1, W - 1):
            for j in range(L):
                lo = -bw[k, j]
                m = (1.0 + fw[k, j] + bw[k, j]) - lo * cp[k - 1, j]
                cp[k, j] = -fw[k, j] / m
                dp[k, j] = (dp[k, j] - lo * dp[k - 1, j]) / m
        k = W - 1  # the +neighbour of the last node is its mirror, k - 1 (no cp: nothing follows it)
        for j in range(L):
            lo = -bw[k, j] - fw[k, j]
            m = (1.0 + fw[k, j] + bw[k, j]) - lo * cp[k - 1, j]
            dp[k, j] = (dp[k, j] - lo * dp[k - 1, j]) / m
        for k in range(W - 2, -1, -1):  # back substitution, in place in dp
            for j in range(L):
                dp[k, j] = dp[k, j] - cp[k, j] * dp[k + 1, j]
        for j in range(L):
            for k in range(W):
                out[p, y0 + j, k] = dp[k, j]


@njit(parallel=True, fastmath=_FM, cache=True)
def _thomas_y(w, tau, f, yx, scale, out, cp, dp):
    """Each y-line: (I - tau A_y) z = f, columns in blocks of _COLS as the inner loop; then the AOS
    combination out = scale (yx + z) / 2 (yx: the x-direction solution)."""
    P, H, W = f.shape
    ncb = (W + _COLS - 1) // _COLS
    for task in prange(P * ncb):
        p = task // ncb
        k0 = (task % ncb) * _COLS
        k1 = min(W, k0 + _COLS)
        t = tau[p]
        for y in range(H):
            for k in range(k0, k1):
                fw = t * w[2, p, y, k]
                bw = t * w[3, p, y, k]
                lo = -bw if y > 0 else 0.0
                up = -fw if y < H - 1 else 0.0
                if y == 0:
                    up -= bw
                if y == H - 1:
                    lo -= fw
                dg = 1.0 + fw + bw
                if y == 0:
                    cp[p, 0, k] = up / dg
                    dp[p, 0, k] = f[p, 0, k] / dg
                else:
                    m = dg - lo * cp[p, y - 1, k]
                    cp[p, y, k] = up / m
                    dp[p, y, k] = (f[p, y, k] - lo * dp[p, y - 1, k]) / m
        for y in range(H - 2, -1, -1):  # back substitution, in place in dp
            for k in range(k0, k1):
                dp[p, y, k] = dp[p, y, k] - cp[p, y, k] * dp[p, y + 1, k]
        sc = scale[p]
        for y in range(H):
            for k in range(k0, k1):
                out[p, y, k] = sc * (0.5 * (yx[p, y, k] + dp[p, y, k]))


# ----------------------------------------------------------------------------- fused per-plane solves


@njit(fastmath=_FM)
def _apply_plane(w, s, x, p, out):
    H, W = x.shape[1], x.shape[2]
    for y in range(H):
        _row_apply(w, s, x, p, y, W, H, out)


@njit(fastmath=_FM)
def _dot_plane(a, b, p):
    acc = 0.0
    for y in range(a.shape[1]):
        for k in range(a.shape[2]):
            acc += a[p, y, k] * b[p, y, k]
    return acc


@njit(parallel=True, fastmath=_FM, cache=True)
def _cg_fused(w, scale, b, dinv, thr, maxiter, x, r, z, pv, q, it_out, rr_out):
    """Jacobi-preconditioned CG, one plane per task: the recurrences of implicit_numpy._cg."""
    P, H, W = b.shape
    for p in prange(P):
        s = scale[p]
        for y in range(H):
            for k in range(W):
                x[p, y, k] = 0.0
                r[p, y, k] = b[p, y, k]
                zv = b[p, y, k] * dinv[p, y, k]
                z[p, y, k] = zv
                pv[p, y, k] = zv
        rz = _dot_plane(r, z, p)
        rr = _dot_plane(b, b, p)
        it = 0
        while rr > thr[p] and it < maxiter:
            _apply_plane(w, s, pv, p, q)
            pq = _dot_plane(pv, q, p)
            if not pq > 0:
                break
            alpha = rz / pq
            rr = 0.0
            rz_new = 0.0
            for y in range(H):
                for k in range(W):
                    x[p, y, k] += alpha * pv[p, y, k]
                    rv = r[p, y, k] - alpha * q[p, y, k]
                    r[p, y, k] = rv
                    zv = rv * dinv[p, y, k]
                    z[p, y, k] = zv
                    rr += rv * rv
                    rz_new += rv * zv
            beta = rz_new / rz
            for y in range(H):
                for k in range(W):
                    pv[p, y, k] = z[p, y, k] + beta * pv[p, y, k]
            rz = rz_new
            it += 1
        it_out[p] = it
        rr_out[p] = rr


@njit(parallel=True, fastmath=_FM, cache=True)
def _bicgstab_fused(w, scale, b, dinv, thr, maxiter, x, r, pv, v, phat, s_, shat, t, it_out, rr_out):
    """Right-preconditioned BiCGSTAB, one plane per task: the recurrences of implicit_numpy._bicgstab
    (rhat = b)."""
    P, H, W = b.shape
    for p in prange(P):
        sc = scale[p]
        for y in range(H):
            for k in range(W):
                x[p, y, k] = 0.0
                r[p, y, k] = b[p, y, k]
                pv[p, y, k] = 0.0
                v[p, y, k] = 0.0
        rho = 1.0
        alpha = 1.0
        omega = 1.0
        rr = _dot_plane(b, b, p)
        rho_new = rr
        it = 0
        while rr > thr[p] and it < maxiter:
            if rho_new == 0.0 or omega == 0.0:
                break
            beta = (rho_new / rho) * (alpha / omega)
            for y in range(H):
                for k in range(W):
                    pn = r[p, y, k] + beta * (pv[p, y, k] - omega * v[p, y, k])
                    pv[p, y, k] = pn
                    phat[p, y, k] = pn * dinv[p, y, k]
            _apply_plane(w, sc, phat, p, v)
            rv = _dot_plane(b, v, p)
            if rv == 0.0:
                break
            it += 1
            alpha = rho_new / rv
            ss = 0.0
            for y in range(H):
                for k in range(W):
                    sv = r[p, y, k] - alpha * v[p, y, k]
                    s_[p, y, k] = sv
                    shat[p, y, k] = sv * dinv[p, y, k]
                    ss += sv * sv
            if ss <= thr[p]:
                for y in range(H):
                    for k in range(W):
                        x[p, y, k] += alpha * phat[p, y, k]
                rr = ss
                break
            _apply_plane(w, sc, shat, p, t)
            ts = _dot_plane(t, s_, p)
            tt = _dot_plane(t, t, p)
            if not tt > 0:
                break
            omega = ts / tt
            rr = 0.0
            rh = 0.0
            for y in range(H):
                for k in range(W):
                    x[p, y, k] += alpha * phat[p, y, k] + omega * shat[p, y, k]
                    rn = s_[p, y, k] - omega * t[p, y, k]
                    r[p, y, k] = rn
                    rr += rn * rn
                    rh += b[p, y, k] * rn
            rho = rho_new
            rho_new = rh
        it_out[p] = it
        rr_out[p] = rr


# ----------------------------------------------------------------------------- drivers


def _planes(a, dtype=np.float64):
    B, C, H, W = a.shape[-4:]
    return np.ascontiguousarray(a, dtype=dtype).reshape(a.shape[:-4] + (B * C, H, W))


def _per_plane(v, B, C):
    return np.repeat(np.broadcast_to(np.asarray(v, dtype=np.float64), (B,)), C)


def solve(w, rhs, scale, method="cg", rtol=1e-6, maxiter=500, preconditioner="jacobi", stencil=None):
    """Same contract as :func:`.implicit_numpy.solve`."""
    B, C = rhs.shape[:2]
    wp = _planes(w)
    b = _planes(rhs)
    sc = _per_plane(scale, B, C)
    if method not in ("cg", "bicgstab"):
        raise ValueError(f"method must be 'cg' or 'bicgstab'; got {method!r}")
    if preconditioner == "dct":
        x, it, rr, bb = _solve_dct(wp, b, sc, method, rtol, maxiter, stencil)
        return x.reshape(rhs.shape), _ref._info(it.reshape(B, C), rr.reshape(B, C), bb.reshape(B, C), rtol)
    if preconditioner != "jacobi":
        raise ValueError(f"preconditioner must be 'jacobi' or 'dct'; got {preconditioner!r}")
    dinv = np.empty_like(b)
    _diag_inverse(wp, sc, dinv)
    if b.shape[1] * b.shape[2] <= _FUSED_MAX:
        P = b.shape[0]
        bb = np.einsum("pij,pij->p", b, b)
        thr = rtol * rtol * bb
        it, rr = np.zeros(P, dtype=np.int64), np.zeros(P)
        x = np.empty_like(b)
        scratch = [np.empty_like(b) for _ in range(4 if method == "cg" else 7)]
        if method == "cg":
            _cg_fused(wp, sc, b, dinv, thr, int(maxiter), x, *scratch, it, rr)
        else:
            _bicgstab_fused(wp, sc, b, dinv, thr, int(maxiter), x, *scratch, it, rr)
    elif method == "cg":
        x, it, rr, bb = _cg(wp, b, sc, dinv, rtol, maxiter)
    elif method == "bicgstab":
        x, it, rr, bb = _bicgstab(wp, b, sc, dinv, rtol, maxiter)
    else:
        raise ValueError(f"method must be 'cg' or 'bicgstab'; got {method!r}")
    from .implicit_numpy import _info

    return x.reshape(rhs.shape), _info(it.reshape(B, C), rr.reshape(B, C), bb.reshape(B, C), rtol)


def _solve_dct(wp, b, sc, method, rtol, maxiter, stencil):
    """DCT-preconditioned solve: the reference's recurrences (:func:`.implicit_numpy._cg`,
    :func:`.implicit_numpy._bicgstab`) with the jitted operator; the preconditioner is scipy's DCT,
    applied from Python between the kernels (numba cannot call scipy.fft)."""
    pc = _ref.DCTPreconditioner(wp, sc, stencil or ("conservative" if method == "cg" else "paper"))
    P, H, _ = b.shape
    active = np.ones(P, dtype=np.bool_)
    parts = np.zeros((P, _blocks(H))), np.zeros((P, _blocks(H)))

    def matvec(x):
        out = np.empty_like(x)
        _apply_dots(wp, sc, x, out, x, active, *parts)
        return out

    return (_ref._cg if method == "cg" else _ref._bicgstab)(matvec, pc, b, rtol, maxiter)


def _cg(w, b, sc, dinv, rtol, maxiter):
    P, H, _ = b.shape
    nb = _blocks(H)
    part1, part2 = np.zeros((P, nb)), np.zeros((P, nb))
    x = np.zeros_like(b)
    r = b.copy()
    z = r * dinv
    p = z.copy()
    q = np.empty_like(b)
    _plane_dots(r, z, part1)
    rz = part1.sum(axis=1)
    _plane_dots(b, b, part1)
    bb = part1.sum(axis=1)
    rr = bb.copy()
    thr = rtol * rtol * bb
    active = rr > thr
    it = np.zeros(P, dtype=np.int64)
    while active.any() and it.max() < maxiter:
        _apply_dots(w, sc, p, q, p, active, part1, part2)
        pq = np.where(active, part1.sum(axis=1), 0.0)
        ok = active & (pq > 0)
        alpha = np.where(ok, rz / np.where(ok, pq, 1.0), 0.0)
        _cg_update(x, r, z, p, q, dinv, alpha, ok, part1, part2)
        rr = np.where(ok, part1.sum(axis=1), rr)
        rz_new = part2.sum(axis=1)
        beta = np.where(ok, rz_new / np.where(ok, rz, 1.0), 0.0)
        _xpby(p, z, beta, ok)
        rz = np.where(ok, rz_new, rz)
        it += ok
        active = ok & (rr > thr)
    return x, it, rr, bb


def _bicgstab(w, b, sc, dinv, rtol, maxiter):
    P, H, _ = b.shape
    nb = _blocks(H)
    parts = [np.zeros((P, nb)) for _ in range(2)]
    x = np.zeros_like(b)
    r = b.copy()
    rhat = b
    p = np.zeros_like(b)
    v = np.zeros_like(b)
    phat, s, shat, t = (np.empty_like(b) for _ in range(4))
    rho, alpha, omega = np.ones(P), np.ones(P), np.ones(P)
    _plane_dots(b, b, parts[0])
    bb = parts[0].sum(axis=1)
    rr = bb.copy()
    rho_new = bb.copy()  # <rhat, r> with r = rhat = b
    thr = rtol * rtol * bb
    active = rr > thr
    it = np.zeros(P, dtype=np.int64)
    while active.any() and it.max() < maxiter:
        ok = active & (rho_new != 0) & (omega != 0)
        beta = np.where(ok, (rho_new / np.where(ok, rho, 1.0)) * (alpha / np.where(ok, omega, 1.0)), 0.0)
        _bicg_direction(p, r, v, phat, dinv, beta, omega, ok)
        _apply_dots(w, sc, phat, v, rhat, ok, *parts)
        rv = np.where(ok, parts[0].sum(axis=1), 0.0)
        ok &= rv != 0
        alpha = np.where(ok, rho_new / np.where(ok, rv, 1.0), alpha)
        _bicg_half(s, r, v, shat, dinv, np.where(ok, alpha, 0.0), ok, parts[0])
        ss = parts[0].sum(axis=1)
        done = ok & (ss <= thr)
        rr = np.where(done, ss, rr)
        go = ok & ~done
        _apply_dots(w, sc, shat, t, s, go, *parts)
        ts, tt = parts[0].sum(axis=1), parts[1].sum(axis=1)
        go &= tt > 0
        omega = np.where(go, ts / np.where(go, tt, 1.0), omega)
        mode = np.where(go, 2, np.where(done, 1, 0)).astype(np.int64)
        _bicg_finish(x, r, phat, shat, s, t, rhat, alpha, omega, mode, *parts)
        rr = np.where(go, parts[0].sum(axis=1), rr)
        rho = np.where(go, rho_new, rho)
        rho_new = np.where(go, parts[1].sum(axis=1), rho_new)
        it += ok
        active = go & (rr > thr)
    return x, it, rr, bb


def aos_solve(w, f, dt, scale=None, dtype=np.float64):
    """Same contract as :func:`.implicit_numpy.aos_solve`."""
    B, C = f.shape[:2]
    wp = _planes(w)
    fp = _planes(f)
    tau = 2.0 * _per_plane(dt, B, C)
    sc = np.ones(B * C) if scale is None else _per_plane(scale, B, C)
    yx, cp, dp = np.empty_like(fp), np.empty_like(fp), np.empty_like(fp)
    out = np.empty(fp.shape, dtype=dtype)
    _thomas_x(wp, tau, fp, yx)
    _thomas_y(wp, tau, fp, yx, sc, out, cp, dp)
    return out.reshape(f.shape)


def theta_step(u, dW, dt, coef, theta=0.5, stencil="paper", spacing=1.0, rtol=1e-6, maxiter=500, shift=None,
               factor=None, preconditioner="jacobi"):
    """Same contract as :func:`.implicit_numpy.theta_step`."""
    return theta_step_with(kb, frozen_weights, solve, u, dW, dt, coef, theta, stencil, spacing, rtol, maxiter,
                           shift, factor, preconditioner)


def aos_step(u, dW, dt, coef, stencil="paper", spacing=1.0, shift=None, factor=None):
    """Same contract as :func:`.implicit_numpy.aos_step`."""
    return aos_step_with(kb, frozen_weights, aos_solve, u, dW, dt, coef, stencil, spacing, shift, factor)
