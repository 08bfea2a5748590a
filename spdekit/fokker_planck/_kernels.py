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
    def _bernoulli_scalar(z):
        if abs(z) < BERNOULLI_SERIES:
            return 1.0 - 0.5 * z + z * z / 12.0
        if z > 700.0:
            return z * math.exp(-z)  # z / (e^z - 1), e^z - 1 = e^z to double precision
        return z / math.expm1(z)

    @numba.njit(cache=True, inline="always")
    def _log_mob_scalar(f, gamma, logk):
        if f <= 0.0:
            return 0.0
        t = logk + gamma * math.log(f)
        if t > 0.0:
            return t + math.log1p(math.exp(-t))
        return math.log1p(math.exp(t))

    @numba.njit(cache=True)
    def _faces_last(f2, ds, sigma_h2, gamma, kappa, a, b):
        """Faces along the last axis of a (lines, n) array."""
        nl, n = f2.shape
        logk = math.log(kappa) if kappa > 0.0 else 0.0
        for line in range(nl):
            f_lo = f2[line, 0]
            L_lo = _log_mob_scalar(f_lo, gamma, logk) if kappa > 0.0 else 0.0
            p_lo = f_lo ** gamma if kappa > 0.0 else 0.0
            for i in range(n - 1):
                f_hi = f2[line, i + 1]
                if kappa > 0.0:
                    L_hi = _log_mob_scalar(f_hi, gamma, logk)
                    p_hi = f_hi ** gamma
                else:
                    L_hi = 0.0
                    p_hi = 0.0
                ell = ds[i] + (L_lo - L_hi) / gamma
                mob = 1.0 + 0.5 * kappa * (p_lo + p_hi)
                a[line, i] = sigma_h2 * mob * _bernoulli_scalar(-ell)
                b[line, i] = sigma_h2 * mob * _bernoulli_scalar(ell)
                L_lo = L_hi
                p_lo = p_hi

    @numba.njit(cache=True)
    def _faces_first(f2, ds, sigma_h2, gamma, kappa, a, b):
        """Faces along the first axis of an (n, columns) array (2D y-faces)."""
        n, nc = f2.shape
        logk = math.log(kappa) if kappa > 0.0 else 0.0
        L = np.empty(nc)
        p = np.empty(nc)
        for j in range(nc):
            L[j] = _log_mob_scalar(f2[0, j], gamma, logk) if kappa > 0.0 else 0.0
            p[j] = f2[0, j] ** gamma if kappa > 0.0 else 0.0
        for i in range(n - 1):
            for j in range(nc):
                f_hi = f2[i + 1, j]
                if kappa > 0.0:
                    L_hi = _log_mob_scalar(f_hi, gamma, logk)
                    p_hi = f_hi ** gamma
                else:
                    L_hi = 0.0
                    p_hi = 0.0
                ell = ds[i] + (L[j] - L_hi) / gamma
                mob = 1.0 + 0.5 * kappa * (p[j] + p_hi)
                a[i, j] = sigma_h2 * mob * _bernoulli_scalar(-ell)
                b[i, j] = sigma_h2 * mob * _bernoulli_scalar(ell)
                L[j] = L_hi
                p[j] = p_hi

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
    """Same as :func:`face_coefficients_numpy`, fused numba kernel (1D or 2D)."""
    f = np.ascontiguousarray(f, dtype=np.float64)
    ds = np.ascontiguousarray(s_diff, dtype=np.float64)
    axis = axis % f.ndim
    shape = list(f.shape)
    shape[axis] -= 1
    a = np.empty(shape)
    b = np.empty(shape)
    if f.ndim == 1:
        _faces_last(f.reshape(1, -1), ds, float(sigma_h2), float(gamma), float(kappa),
                    a.reshape(1, -1), b.reshape(1, -1))
    elif f.ndim == 2 and axis == 1:
        _faces_last(f, ds, float(sigma_h2), float(gamma), float(kappa), a, b)
    elif f.ndim == 2 and axis == 0:
        _faces_first(f, ds, float(sigma_h2), float(gamma), float(kappa), a, b)
    else:
        raise ValueError(f"fields must be 1D or 2D, got shape {f.shape}")
    return a, b


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
