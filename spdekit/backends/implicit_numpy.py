"""Stiff-stable steps, numpy reference: the frozen (lagged) drift operator, its linear solves
(Jacobi-preconditioned conjugate gradients and BiCGSTAB, batched over planes), the per-axis
tridiagonal (Thomas) solves of additive operator splitting, and the two steps built on them.
:mod:`.implicit_numba` runs the same numerics with fused kernels and is tested equal to this module.

The frozen operator
-------------------
Both drift stencils are, at every node i and for each of the four directions d = +x, -x, +y, -y
(:mod:`.stencil_tables`, the tables that also define the drift's adjoint),

    b_i(u) = (1/h^2) sum_d c_{d,i}(u) (u[nb_{d,i}] - u_i).

Freezing the diffusivities at a state v (the *lagged diffusivity* of Kacur & Mikula and of
semi-implicit Perona-Malik schemes) gives the linear operator

    (A_v w)_i = sum_d W_{d,i} (w[nb_{d,i}] - w_i),     W_{d,i} = c_{d,i}(v) / h^2 >= 0,

with A_v v = b(v) exactly. :func:`frozen_weights` returns W (shape (4, B, C, H, W), float64), read
from the stencil tables, with the weight of a conservative border face (zero flux, nb = i) set to 0.
The neighbour of a border node across the border is then its mirror image (paper stencil: the mirror
ghost u_{-1} = u_1 of eq. 35-36; conservative: weight 0, so any index will do), which is what
:func:`neighbours` returns.

What holds for M = I - s A_v (s = theta * dt > 0):

* every row has diagonal 1 + s sum_d W_{d,i} and off-diagonal entries -s W_{d,i} <= 0 summing to
  minus (diagonal - 1): M is a strictly row-diagonally dominant M-matrix, hence invertible, with
  ||M^{-1}||_inf <= 1, for both stencils and every diffusivity family;
* conservative stencil: W_{+x,i} = W_{-x,i+1} (one diffusivity per face), so A_v is symmetric
  negative semi-definite and M is symmetric positive definite: :func:`solve` uses conjugate gradients;
* paper stencil: the weight of the link i -> n is the diffusivity of n, so A_v is NOT symmetric. In
  the interior A_v = S D with D = diag(c) and S symmetric, so D A_v is symmetric and A_v is
  self-adjoint for the c-weighted inner product; the border nodes (a neighbour's x- and y-role
  diffusivities differ there, and the mirror ghost adds a second link to the mirrored node) break
  that, and in the isotropic limit A_v = alpha W^{-1} L_cons is self-adjoint only for the trapezoid
  weights W (:mod:`spdekit.spectral`). No inner product makes M symmetric in general, so the paper
  stencil is solved with BiCGSTAB (van der Vorst 1992), correct for any invertible M.

Both Krylov solvers are preconditioned (CG: P^{-1} applied to the residual, P symmetric positive
definite; BiCGSTAB: right preconditioning, any invertible P), start from 0 and stop per plane when
||r||_2 <= rtol ||rhs||_2. Preconditioners: "jacobi" (M's diagonal) and "dct"
(:class:`DCTPreconditioner`: P = I - s wbar L, L the unit-spacing Neumann Laplacian, wbar the plane's
mean frozen weight per link, inverted by a DCT-II). The mean rather than the maximum weight: a plane of
constant diffusivity c then has P = M exactly (conservative stencil: one iteration), and on the paper
preset the mean took as many or fewer iterations than the maximum (one state of the 128^2 preset at t =
0.5, 1.5, 1.95, dt = 16 and 64 times the bound). The conservative stencil's constant-coefficient operator
is the cell-centred Neumann Laplacian, diagonalised by the DCT-II; the paper stencil's (mirror ghost
u_{-1} = u_1) is node-centred, diagonalised by the DCT-I (``dct_type=1``), but scipy's DCT-I of length N
runs an FFT of length 2 (N - 1), slow for powers of two N (forward and inverse transform of two 128^2
planes, one thread: 3.7 ms against 0.33 ms), so the solver uses the DCT-II for both stencils (exact up to
the border rows on the paper stencil: a few more iterations). The steps solve for the *increment* of the
state, so the tolerance is relative to the size of the step's change, not of the state.

AOS (Weickert, ter Haar Romeny & Viergever, IEEE TIP 7(3), 1998)
---------------------------------------------------------------
A_v = A_x + A_y splits by axis (the +-x and the +-y terms); each is tridiagonal along its lines,
with the mirror neighbour of a border node folded onto its inner neighbour. One AOS step with m = 2
axes is u+ = (1/2) sum_l (I - 2 dt A_l)^{-1} f, one Thomas solve (no pivoting: the lines are strictly
diagonally dominant) per line and axis. :func:`tridiagonal` gives the three diagonals.
"""

from __future__ import annotations

import numpy as np

from . import numpy_backend as nb_
from . import stencil_tables
from .base import as_coefficients

name = "numpy"
#: Krylov methods by stencil (module doc: why BiCGSTAB for the paper stencil)
METHODS = {"conservative": "cg", "paper": "bicgstab"}


class LinearSolveError(RuntimeError):
    """A linear solve of an implicit step did not reach its tolerance."""


# ----------------------------------------------------------------------------- the frozen operator


def frozen_weights(u, alpha, inv_lam2, stencil="paper", spacing=1.0, diffusivity="charbonnier"):
    """W_{d,i} = c_{d,i}(u) / h^2 of the drift frozen at u (module doc), shape (4, B, C, H, W),
    float64; d = +x, -x, +y, -y. The diffusivities are computed in u's precision, like the drift."""
    B, C, H, W = u.shape
    tabs = stencil_tables.tables((H, W), stencil)
    flat = u.reshape(B, C, H * W)
    a = nb_._col(alpha, flat[..., None])[..., 0]
    il = nb_._col(np.asarray(inv_lam2) / (spacing * spacing), flat[..., None])[..., 0]
    own = np.arange(H * W)
    out = np.empty((4, B, C, H * W))
    for d in range(4):
        c = stencil_tables.diffusivity(flat, tabs, d, a, il, diffusivity)[3]
        out[d] = np.where(tabs[0][d] == own, 0.0, c.astype(np.float64)) / (spacing * spacing)
    return out.reshape(4, B, C, H, W)


def neighbours(x):
    """The four neighbour fields of x (+x, -x, +y, -y), mirrored across the borders."""
    px = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(1, 1)], mode="reflect")
    py = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (0, 0)], mode="reflect")
    return px[..., :, 2:], px[..., :, :-2], py[..., 2:, :], py[..., :-2, :]


def apply_operator(w, x):
    """A x = sum_d W_d (x[nb_d] - x) (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return sum(w[d] * (n - x) for d, n in enumerate(neighbours(x)))


def _col(s):
    """Per-plane values (B, C) -> (B, C, 1, 1)."""
    return np.asarray(s, dtype=np.float64)[..., None, None]


def system_apply(w, x, scale):
    """M x = x - s A x with s = ``scale`` per sample (B,) (module doc)."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 1, 1)
    return x - s * apply_operator(w, x)


def system_diagonal(w, scale):
    """The diagonal of M: 1 + s sum_d W_d."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 1, 1)
    return 1.0 + s * w.sum(axis=0)


# ----------------------------------------------------------------------------- Krylov solvers


def _dot(a, b):
    return (a * b).sum(axis=(-2, -1))


def solve(w, rhs, scale, method="cg", rtol=1e-6, maxiter=500, preconditioner="jacobi", stencil=None):
    """Solve M x = rhs per plane (M = I - scale A, A frozen with weights w) from x = 0.

    ``method``: "cg" (M symmetric: conservative stencil) or "bicgstab" (any M). ``preconditioner``:
    "jacobi" (M's diagonal) or "dct" (:class:`DCTPreconditioner`, which needs the ``stencil``: default
    "conservative" for "cg", "paper" for "bicgstab"). Returns (x, info) with info = {"iterations":
    (B, C) int array, "converged": bool, "residual": (B, C) relative residuals}. Planes stop
    independently (a converged plane is left unchanged)."""
    rhs = np.asarray(rhs, dtype=np.float64)
    if method not in ("cg", "bicgstab"):
        raise ValueError(f"method must be 'cg' or 'bicgstab'; got {method!r}")
    pc = make_preconditioner(w, scale, method, preconditioner, stencil)
    mv = lambda x: system_apply(w, x, scale)  # noqa: E731
    x, it, rr, bb = (_cg if method == "cg" else _bicgstab)(mv, pc, rhs, rtol, maxiter)
    return x, _info(it, rr, bb, rtol)


def make_preconditioner(w, scale, method, preconditioner, stencil=None):
    """The preconditioner of :func:`solve` as a function r -> P^{-1} r on (..., H, W) arrays: w is
    (4, ..., H, W), ``scale`` per leading index of the planes' first axis (B,) or per plane."""
    if preconditioner == "jacobi":
        dinv = 1.0 / system_diagonal(w, scale)
        return lambda r: r * dinv
    if preconditioner == "dct":
        return DCTPreconditioner(w, scale, stencil or ("conservative" if method == "cg" else "paper"))
    raise ValueError(f"preconditioner must be 'jacobi' or 'dct'; got {preconditioner!r}")


def _scale_col(scale, lead):
    """``scale`` (B,) or per plane, shaped to broadcast against planes of leading shape ``lead``."""
    s = np.asarray(scale, dtype=np.float64)
    return s.reshape(s.shape + (1,) * (len(lead) - s.ndim))


#: the 1-d DCT types by stencil (DCTPreconditioner)
DCT_TYPES = {"conservative": 2, "paper": 2}


def dct_eigenvalues(n, dct_type):
    """Eigenvalues 2 - 2 cos(.) of minus the unit-spacing 1-d Neumann second difference diagonalised by the
    DCT of this type: type 2 (cell-centred, zero-flux faces) pi k / n, type 1 (node-centred, mirror
    ghost u_{-1} = u_1) pi k / (n - 1)."""
    k = np.arange(n)
    return 2.0 - 2.0 * np.cos(np.pi * k / (n if dct_type == 2 else max(n - 1, 1)))


class DCTPreconditioner:
    """P = I - s wbar L per plane, inverted exactly by a 2-d DCT (scipy.fft, one thread): L the unit-spacing
    five-point Neumann Laplacian, wbar the plane's mean frozen weight over its links (sum of W over
    directions and nodes, divided by the number of links: 4 H W for the paper stencil, whose mirror ghost
    is a link, 4 H W - 2 H - 2 W for the conservative one, whose border faces are not). On a plane of
    constant diffusivity c, W = c / h^2 on every link, P = M and the solve takes one iteration (with the
    stencil's own transform, module doc). P is symmetric positive definite (CG can use it)."""

    def __init__(self, w, scale, stencil, dct_type=None):
        H, W = w.shape[-2:]
        lead = w.shape[1:-2]
        links = 4 * H * W - (2 * H + 2 * W if stencil == "conservative" else 0)
        self.type = DCT_TYPES[stencil] if dct_type is None else dct_type
        self.wbar = w.sum(axis=(0, -2, -1)) / links
        lam = dct_eigenvalues(H, self.type)[:, None] + dct_eigenvalues(W, self.type)[None, :]
        sw = (_scale_col(scale, lead) * self.wbar)[..., None, None]
        self.inv = 1.0 / (1.0 + sw * lam)

    def __call__(self, r):
        from scipy import fft

        y = fft.dctn(r, type=self.type, axes=(-2, -1), workers=1)
        y *= self.inv
        return fft.idctn(y, type=self.type, axes=(-2, -1), workers=1)


def _info(it, rr, bb, rtol):
    with np.errstate(invalid="ignore", divide="ignore"):
        res = np.where(bb > 0, np.sqrt(rr / np.where(bb > 0, bb, 1.0)), 0.0)
    return {"iterations": it, "residual": res, "converged": bool((rr <= rtol * rtol * bb).all())}


def _cg(matvec, pc, b, rtol, maxiter):
    """Preconditioned conjugate gradients (``pc``: r -> P^{-1} r, P symmetric positive definite), batched
    over planes; ``matvec``: x -> M x."""
    x = np.zeros_like(b)
    r = b.copy()
    z = pc(r)
    p = z.copy()
    rz = _dot(r, z)
    bb = _dot(b, b)
    rr = bb.copy()
    thr = rtol * rtol * bb
    active = rr > thr
    it = np.zeros(bb.shape, dtype=np.int64)
    while active.any() and it.max() < maxiter:
        q = matvec(p)
        pq = _dot(p, q)
        ok = active & (pq > 0)
        alpha = np.where(ok, rz / np.where(ok, pq, 1.0), 0.0)
        x += _col(alpha) * p
        r -= _col(alpha) * q
        rr = np.where(ok, _dot(r, r), rr)
        z = pc(r)
        rz_new = _dot(r, z)
        beta = np.where(ok, rz_new / np.where(ok, rz, 1.0), 0.0)
        p = np.where(_col(ok) > 0, z + _col(beta) * p, p)
        rz = np.where(ok, rz_new, rz)
        it += ok
        active = ok & (rr > thr)
    return x, it, rr, bb


def _bicgstab(matvec, pc, b, rtol, maxiter):
    """Right-preconditioned BiCGSTAB (van der Vorst 1992; ``pc``: r -> P^{-1} r), batched over planes."""
    x = np.zeros_like(b)
    r = b.copy()
    rhat = b.copy()
    p = np.zeros_like(b)
    v = np.zeros_like(b)
    shape = b.shape[:-2]
    rho, alpha, omega = np.ones(shape), np.ones(shape), np.ones(shape)
    bb = _dot(b, b)
    rr = bb.copy()
    thr = rtol * rtol * bb
    active = rr > thr
    it = np.zeros(shape, dtype=np.int64)
    while active.any() and it.max() < maxiter:
        rho_new = _dot(rhat, r)
        ok = active & (rho_new != 0) & (omega != 0)
        beta = np.where(ok, (rho_new / np.where(ok, rho, 1.0)) * (alpha / np.where(ok, omega, 1.0)), 0.0)
        p = np.where(_col(ok) > 0, r + _col(beta) * (p - _col(omega) * v), p)
        phat = pc(p)
        v = np.where(_col(ok) > 0, matvec(phat), v)
        rv = _dot(rhat, v)
        ok &= rv != 0
        alpha = np.where(ok, rho_new / np.where(ok, rv, 1.0), alpha)
        s = r - _col(np.where(ok, alpha, 0.0)) * v
        ss = _dot(s, s)
        done = ok & (ss <= thr)  # converged on the half step
        x += _col(np.where(done, alpha, 0.0)) * phat
        rr = np.where(done, ss, rr)
        go = ok & ~done
        shat = pc(s)
        t = matvec(shat)
        tt = _dot(t, t)
        go &= tt > 0
        omega = np.where(go, _dot(t, s) / np.where(go, tt, 1.0), omega)
        x += _col(np.where(go, alpha, 0.0)) * phat + _col(np.where(go, omega, 0.0)) * shat
        r = np.where(_col(go) > 0, s - _col(omega) * t, r)
        rr = np.where(go, _dot(r, r), rr)
        rho = np.where(go, rho_new, rho)
        it += ok
        active = go & (rr > thr)
    return x, it, rr, bb


# ----------------------------------------------------------------------------- AOS: Thomas solves


def tridiagonal(w, tau, axis):
    """(lower, diag, upper) of I - tau A_l along ``axis`` (-1: x, -2: y), arrays of the lines' shape
    with the line axis last: lower[k] multiplies x[k-1], upper[k] x[k+1]; the mirror neighbour of an
    end node is folded onto its inner neighbour. ``tau`` per sample (B,)."""
    fw, bw = (w[0], w[1]) if axis == -1 else (w[2], w[3])  # towards +axis, towards -axis
    if axis == -2:
        fw, bw = np.swapaxes(fw, -1, -2), np.swapaxes(bw, -1, -2)
    t = np.asarray(tau, dtype=np.float64).reshape(-1, 1, 1, 1)
    diag = 1.0 + t * (fw + bw)
    lower = -t * bw
    upper = -t * fw
    lower[..., -1] += -t[..., 0] * fw[..., -1]  # the +neighbour of the last node is its mirror, k-1
    upper[..., 0] += -t[..., 0] * bw[..., 0]  # the -neighbour of the first node is its mirror, k+1
    lower[..., 0] = 0.0
    upper[..., -1] = 0.0
    return lower, diag, upper


def thomas(lower, diag, upper, f):
    """Solve the tridiagonal systems (last axis) by the Thomas algorithm, vectorised over lines."""
    n = f.shape[-1]
    cp = np.empty_like(diag)
    dp = np.empty_like(diag)
    cp[..., 0] = upper[..., 0] / diag[..., 0]
    dp[..., 0] = f[..., 0] / diag[..., 0]
    for k in range(1, n):
        m = diag[..., k] - lower[..., k] * cp[..., k - 1]
        cp[..., k] = upper[..., k] / m
        dp[..., k] = (f[..., k] - lower[..., k] * dp[..., k - 1]) / m
    x = np.empty_like(dp)
    x[..., -1] = dp[..., -1]
    for k in range(n - 2, -1, -1):
        x[..., k] = dp[..., k] - cp[..., k] * x[..., k + 1]
    return x


def aos_solve(w, f, dt, scale=None, dtype=np.float64):
    """``scale`` (1/2) sum_{l = x, y} (I - 2 dt A_l)^{-1} f, ``scale`` per sample (default 1), returned in
    ``dtype`` (computed in float64)."""
    f = np.asarray(f, dtype=np.float64)
    tau = 2.0 * np.asarray(dt, dtype=np.float64)
    yx = thomas(*tridiagonal(w, tau, -1), f)
    yy = np.swapaxes(thomas(*tridiagonal(w, tau, -2), np.swapaxes(f, -1, -2)), -1, -2)
    out = 0.5 * (yx + yy)
    if scale is not None:
        out = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 1, 1) * out
    return out.astype(dtype, copy=False)


# ----------------------------------------------------------------------------- the steps


def theta_step(u, dW, dt, coef, theta=0.5, stencil="paper", spacing=1.0, rtol=1e-6, maxiter=500, shift=None,
               factor=None, preconditioner="jacobi"):
    """One linearly implicit theta step (:class:`spdekit.LinearlyImplicitTheta`, whose module doc
    derives it):

        (I - theta dt A_u - C/2) delta = dt b(u) + C u + g2(u) dW,      u+ = f (u + delta),

    A_u the drift frozen at u, b(u) = A_u u the drift, with the coefficients of ``coef`` (the step's:
    :func:`spdekit.implicit.step_plan`), per-sample shift C (``shift``, default 0) and factor f
    (``factor``, default 1). Solved as (I - s A_u) delta = rhs / (1 - C/2), s = theta dt / (1 - C/2).
    ``preconditioner``: "jacobi" or "dct" (:func:`solve`). Returns (u+, all_finite, info)."""
    return theta_step_with(nb_, frozen_weights, solve, u, dW, dt, coef, theta, stencil, spacing, rtol, maxiter,
                           shift, factor, preconditioner)


def theta_step_with(kernels, frozen_weights, solve, u, dW, dt, coef, theta, stencil, spacing, rtol, maxiter,
                    shift, factor, preconditioner="jacobi"):
    """:func:`theta_step` with a backend's own ``kernels`` (drift, diffusion_amplitude),
    ``frozen_weights`` and Krylov ``solve``: the one statement of the step for every backend."""
    c = as_coefficients(coef)
    B = u.shape[0]
    C = np.zeros(B) if shift is None else np.asarray(shift, dtype=np.float64)
    f = np.ones(B) if factor is None else np.asarray(factor, dtype=np.float64)
    b = kernels.drift(u, c.alpha1, c.inv_lam1, stencil, spacing, diffusivity=c.diffusivity1)
    g2 = kernels.diffusion_amplitude(u, c.alpha2, c.inv_lam2, spacing, c.diffusivity2)
    d0 = (1.0 - 0.5 * C).reshape(-1, 1, 1, 1)
    rhs = (dt * b.astype(np.float64) + C.reshape(-1, 1, 1, 1) * u + g2.astype(np.float64) * dW) / d0
    w = frozen_weights(u, c.alpha1, c.inv_lam1, stencil, spacing, c.diffusivity1)
    delta, info = solve(w, rhs, theta * dt / d0.ravel(), METHODS[stencil], rtol, maxiter, preconditioner, stencil)
    new = (f.reshape(-1, 1, 1, 1) * (u + delta)).astype(u.dtype)
    return new, bool(np.isfinite(new).all()), info


def aos_step(u, dW, dt, coef, stencil="paper", spacing=1.0, shift=None, factor=None):
    """One AOS Euler-Maruyama step (:class:`spdekit.AOSEulerMaruyama`):

        u+ = f / (1 - C/2) (1/2) sum_{l = x, y} (I - 2 dt / (1 - C/2) A_{l,u})^{-1} ((1 + C/2) u + g2(u) dW),

    C = ``shift`` (default 0), f = ``factor`` (default 1) per sample. Returns (u+, all_finite)."""
    return aos_step_with(nb_, frozen_weights, aos_solve, u, dW, dt, coef, stencil, spacing, shift, factor)


def aos_step_with(kernels, frozen_weights, aos_solve, u, dW, dt, coef, stencil, spacing, shift, factor):
    """:func:`aos_step` with a backend's own ``kernels`` (diffusion_amplitude), ``frozen_weights`` and
    ``aos_solve``: the one statement of the step for every backend."""
    c = as_coefficients(coef)
    B = u.shape[0]
    C = np.zeros(B) if shift is None else np.asarray(shift, dtype=np.float64)
    d0 = 1.0 - 0.5 * C
    f = np.ones(B) if factor is None else np.asarray(factor, dtype=np.float64)
    g2 = kernels.diffusion_amplitude(u, c.alpha2, c.inv_lam2, spacing, c.diffusivity2)
    rhs = (1.0 + 0.5 * C).reshape(-1, 1, 1, 1) * u + g2.astype(np.float64) * dW
    w = frozen_weights(u, c.alpha1, c.inv_lam1, stencil, spacing, c.diffusivity1)
    new = aos_solve(w, rhs, float(dt) / d0, f / d0, u.dtype)
    return new, bool(np.isfinite(new).all())
