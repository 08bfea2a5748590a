"""Face coefficients and divergence of the structure-preserving flux: numpy reference + numba kernels.

On the face between cells i and i+1 along one axis (spacing h) the flux of (FP) is

    F_{i+1/2} / h = a_{i+1/2} f_{i+1} - b_{i+1/2} f_i,          d f_i / dt = sum_axes F_{i+1/2}/h - F_{i-1/2}/h,

    a = (sigma / h^2) M B(-l),   b = (sigma / h^2) M B(l),    B(z) = z / (e^z - 1)  (Bernoulli function),
    l = (s_{i+1} - s_i) + (1/gamma) (L_i - L_{i+1}),   L = log(1 + kappa f^gamma),   s = lambda |x|^2/(2 sigma),
    M = 1 + kappa (f_i^gamma + f_{i+1}^gamma) / 2.

``l`` is the jump across the cell of the quasi-equilibrium potential s - L/gamma (the part of the entropy
variable h(f) + s other than log f), so F = (sigma M / h) B(l) f_i (exp(w_{i+1} - w_i) - 1) with
w = h(f) + s: F vanishes iff w_{i+1} = w_i. That is why every nodal f_theta is an exact discrete steady state
and why the semi-discrete free energy decreases (F has the sign of the jump of w). a, b >= 0 give positivity.
See :mod:`.schemes` for the derivation and the sources.

The numba kernels are tested equal to the numpy reference (tests/test_fp_kernels.py).
"""

from __future__ import annotations

import math

import numpy as np

try:  # numba is a core dependency; the guard only keeps the numpy path importable without it
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

#: below this |z| the Bernoulli function uses its Taylor series 1 - z/2 + z^2/12 (error < z^4/720)
BERNOULLI_SERIES = 1e-6


# ============================================================================ numpy reference
def bernoulli(z):
    """B(z) = z / (e^z - 1), B(0) = 1; exact limits B(z) -> 0 (z -> +inf), B(z) ~ -z (z -> -inf)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    small = np.abs(z) < BERNOULLI_SERIES
    zs = z[small]
    out[small] = 1.0 - 0.5 * zs + zs * zs / 12.0
    big = z > 700.0  # e^z - 1 = e^z to double precision (and expm1 would overflow past 709.78)
    out[big] = z[big] * np.exp(-z[big])
    mid = ~(small | big)
    out[mid] = z[mid] / np.expm1(z[mid])
    return out


def log_mobility(f, gamma, kappa):
    """L = log(1 + kappa f^gamma) (0 where f = 0 or kappa = 0)."""
    f = np.asarray(f, dtype=np.float64)
    if kappa == 0.0:
        return np.zeros_like(f)
    with np.errstate(divide="ignore"):
        return np.logaddexp(0.0, math.log(kappa) + gamma * np.log(f))


def face_coefficients_numpy(f, s_diff, axis, sigma_h2, gamma, kappa):
    """(a, b) on the interior faces along ``axis`` (shape of f with n - 1 along ``axis``).

    ``s_diff``: s_{i+1} - s_i along the axis (1D, length n - 1); ``sigma_h2`` = sigma / h^2."""
    f = np.asarray(f, dtype=np.float64)
    n = f.shape[axis]
    lo = [slice(None)] * f.ndim
    hi = [slice(None)] * f.ndim
    lo[axis] = slice(0, n - 1)
    hi[axis] = slice(1, n)
    lo, hi = tuple(lo), tuple(hi)
    shape = [1] * f.ndim
    shape[axis] = n - 1
    ds = np.asarray(s_diff, dtype=np.float64).reshape(shape)
    L = log_mobility(f, gamma, kappa)
    ell = ds + (L[lo] - L[hi]) / gamma
    fg = f ** gamma if kappa != 0.0 else None
    mob = 1.0 + 0.5 * kappa * (fg[lo] + fg[hi]) if kappa != 0.0 else np.ones_like(ell)
    a = sigma_h2 * mob * bernoulli(-ell)
    b = sigma_h2 * mob * bernoulli(ell)
    return a, b


def divergence_numpy(f, coefs):
    """df/dt = sum over axes of (a f_{i+1} - b f_i) on face i+1/2 minus the same on face i-1/2."""
    f = np.asarray(f, dtype=np.float64)
    out = np.zeros_like(f)
    for axis, (a, b) in enumerate(coefs):
        n = f.shape[axis]
        lo = [slice(None)] * f.ndim
        hi = [slice(None)] * f.ndim
        lo[axis] = slice(0, n - 1)
        hi[axis] = slice(1, n)
        lo, hi = tuple(lo), tuple(hi)
        flux = a * f[hi] - b * f[lo]  # F_{i+1/2} / h
        out[lo] += flux
        out[hi] -= flux
    return out


def bernoulli_derivative(z):
    """B'(z) = B(z) (1 - z - B(z)) / z, B'(0) = -1/2 (series -1/2 + z/6 for small |z|)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    small = np.abs(z) < 1e-4
    out[small] = -0.5 + z[small] / 6.0
    zb = z[~small]
    bz = bernoulli(zb)
    out[~small] = bz * (1.0 - zb - bz) / zb
    return out


def face_jacobian_numpy(f, s_diff, axis, sigma_h2, gamma, kappa):
    """(d_lo, d_hi): derivatives of F_{i+1/2}/h = (sigma/h^2) M [B(-l) f_{i+1} - B(l) f_i] with respect to
    f_i (lo) and f_{i+1} (hi), through M, l and the explicit f's (for Newton's method)."""
    f = np.asarray(f, dtype=np.float64)
    n = f.shape[axis]
    lo = [slice(None)] * f.ndim
    hi = [slice(None)] * f.ndim
    lo[axis] = slice(0, n - 1)
    hi[axis] = slice(1, n)
    lo, hi = tuple(lo), tuple(hi)
    shape = [1] * f.ndim
    shape[axis] = n - 1
    ds = np.asarray(s_diff, dtype=np.float64).reshape(shape)
    L = log_mobility(f, gamma, kappa)
    ell = ds + (L[lo] - L[hi]) / gamma
    fl, fh = f[lo], f[hi]
    Bm, Bp = bernoulli(-ell), bernoulli(ell)
    P = Bm * fh - Bp * fl
    dP_dell = -bernoulli_derivative(-ell) * fh - bernoulli_derivative(ell) * fl
    if kappa == 0.0:
        mob = np.ones_like(ell)
        q_lo = q_hi = dM_lo = dM_hi = 0.0
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            g1 = np.where(f > 0, f ** (gamma - 1.0), 0.0)  # (gamma < 1: the one-sided derivative at 0 is dropped)
        pg = f ** gamma
        mob = 1.0 + 0.5 * kappa * (pg[lo] + pg[hi])
        q = np.where(f > 0, kappa * g1 / (1.0 + kappa * pg), 0.0)  # dL/df / gamma
        q_lo, q_hi = q[lo], q[hi]
        dM_lo, dM_hi = 0.5 * kappa * gamma * g1[lo], 0.5 * kappa * gamma * g1[hi]
    d_lo = sigma_h2 * (dM_lo * P + mob * (dP_dell * q_lo - Bp))
    d_hi = sigma_h2 * (dM_hi * P + mob * (-dP_dell * q_hi + Bm))
    return d_lo, d_hi


# ============================================================================ numba kernels
if HAVE_NUMBA:

    @numba.njit(cache=True, inline="always")
    def _bernoulli_pair(z):
        """(B(z), B(-z)) with one expm1: B of the positive argument from the definition, the other by the
        identity B(-x) = x + B(x) (both terms positive: no cancellation)."""
        x = abs(z)
        if x < BERNOULLI_SERIES:
            return 1.0 - 0.5 * z + z * z / 12.0, 1.0 + 0.5 * z + z * z / 12.0
        bx = x * math.exp(-x) if x > 700.0 else x / math.expm1(x)
        if z > 0:
            return bx, x + bx
        return x + bx, bx

    @numba.njit(cache=True)
    def _cell_terms(flat, gamma, kappa, L, P):
        """Per cell: L = log(1 + kappa f^gamma) and P = f^gamma (once per cell, shared by all its faces)."""
        logk = math.log(kappa) if kappa > 0.0 else 0.0
        for i in range(flat.shape[0]):
            f = flat[i]
            if kappa > 0.0 and f > 0.0:
                p = f ** gamma
                P[i] = p
                kp = kappa * p
                L[i] = math.log1p(kp) if kp < 1e300 else logk + gamma * math.log(f)
            else:
                P[i] = 0.0
                L[i] = 0.0

    @numba.njit(cache=True)
    def _faces_lines(L, P, ds, sigma_h2, gamma, kappa, a, b, stride_line, stride_i, nl, n):
        """Faces along one axis of a C-ordered field seen as nl lines of n cells (given strides)."""
        for line in range(nl):
            base = line * stride_line
            for i in range(n - 1):
                lo = base + i * stride_i
                hi = lo + stride_i
                ell = ds[i] + (L[lo] - L[hi]) / gamma
                mob = sigma_h2 * (1.0 + 0.5 * kappa * (P[lo] + P[hi]))
                bp, bm = _bernoulli_pair(ell)
                a[line, i] = mob * bm
                b[line, i] = mob * bp

    @numba.njit(cache=True)
    def _div_1d(f, a, b, out):
        n = f.shape[0]
        for i in range(n):
            out[i] = 0.0
        for i in range(n - 1):
            flux = a[i] * f[i + 1] - b[i] * f[i]
            out[i] += flux
            out[i + 1] -= flux

    @numba.njit(cache=True)
    def _div_2d(f, ay, by, ax, bx, out):
        ny, nx = f.shape
        for j in range(ny):
            for i in range(nx):
                out[j, i] = 0.0
        for j in range(ny):
            for i in range(nx - 1):
                flux = ax[j, i] * f[j, i + 1] - bx[j, i] * f[j, i]
                out[j, i] += flux
                out[j, i + 1] -= flux
        for j in range(ny - 1):
            for i in range(nx):
                flux = ay[j, i] * f[j + 1, i] - by[j, i] * f[j, i]
                out[j, i] += flux
                out[j + 1, i] -= flux


def face_coefficients_numba(f, s_diff, axis, sigma_h2, gamma, kappa):
    """Same as :func:`face_coefficients_numpy`, numba kernels (1D or 2D)."""
    return all_face_coefficients_numba(f, [(axis % np.ndim(f), s_diff, sigma_h2)], gamma, kappa)[0]


def all_face_coefficients_numba(f, axes, gamma, kappa):
    """Face coefficients for several axes at once, the per-cell terms computed once.
    ``axes``: list of (axis, s_diff, sigma_h2)."""
    f = np.ascontiguousarray(f, dtype=np.float64)
    if f.ndim not in (1, 2):
        raise ValueError(f"fields must be 1D or 2D, got shape {f.shape}")
    flat = f.ravel()
    L = np.empty(flat.size)
    P = np.empty(flat.size)
    _cell_terms(flat, float(gamma), float(kappa), L, P)
    out = []
    for axis, ds, sigma_h2 in axes:
        ds = np.ascontiguousarray(ds, dtype=np.float64)
        n = f.shape[axis]
        if f.ndim == 1:
            nl, stride_line, stride_i = 1, 0, 1
        elif axis == 1:
            nl, stride_line, stride_i = f.shape[0], f.shape[1], 1
        else:
            nl, stride_line, stride_i = f.shape[1], 1, f.shape[1]
        a = np.empty((nl, n - 1))
        b = np.empty((nl, n - 1))
        _faces_lines(L, P, ds, float(sigma_h2), float(gamma), float(kappa), a, b, stride_line, stride_i, nl, n)
        if f.ndim == 1:
            a, b = a[0], b[0]
        elif axis == 0:  # lines were columns: (nx, ny-1) -> (ny-1, nx)
            a, b = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
        out.append((a, b))
    return out


def divergence_numba(f, coefs):
    """Same as :func:`divergence_numpy`, numba kernel."""
    f = np.ascontiguousarray(f, dtype=np.float64)
    out = np.empty_like(f)
    if f.ndim == 1:
        (a, b), = coefs
        _div_1d(f, a, b, out)
    else:
        (ay, by), (ax, bx) = coefs
        _div_2d(f, ay, by, ax, bx, out)
    return out


KERNELS = {
    "numpy": (face_coefficients_numpy, divergence_numpy),
    "numba": (face_coefficients_numba, divergence_numba),
}
