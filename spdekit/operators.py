"""The math of the discretised SPDE that is not a kernel: the diffusivity g of eq. (9) and its
families, g's derivative, central differences with the two Neumann closures, the taming factor of
eq. (39) and the per-sample norms. These are the numpy definitions (they also run on cupy arrays:
numpy's ufuncs dispatch). The numba kernels (:mod:`spdekit.backends.numba_backend`: g and dg/ds)
and the CUDA source (:mod:`spdekit.backends.cupy_backend`: g) define g once more for their own
compilers, and write the closures below into their stencils; tests hold them equal to these.

Diffusivity families (eq. 9 and its classical alternatives)
-----------------------------------------------------------
With ``s = |x|^2`` the squared gradient argument of eq. (9) and ``z = s / lambda^2``,

====================  =====================================  =============================================
name                  g(t, x) / alpha(t)                     source
====================  =====================================  =============================================
``"charbonnier"``     1 / sqrt(1 + z)                        the paper's eq. (9); Charbonnier, Blanc-Feraud,
                                                             Aubert & Barlaud (1994)
``"perona-malik"``    1 / (1 + z)                            Perona & Malik (1990), their second g
``"exponential"``     exp(-z)                                Perona & Malik (1990), their first g
``"weickert"``        1 - exp(-C4 / z^4),  1 at z = 0        Weickert, "Anisotropic Diffusion in Image
                                                             Processing" (Teubner 1998), m = 4,
                                                             C4 = 3.31488
====================  =====================================  =============================================

Every family has g(0) = alpha, 0 <= g <= alpha and is non-increasing in s, so the explicit
stability bound h^2 / (4 max alpha1) (:meth:`spdekit.AnisotropicSPDE.stability_bound`) holds for
all of them. ``lambda = inf`` is passed as ``inv_lam2 = 1 / lambda^2 = 0``: then z = 0 and
g = alpha for every family (the isotropic limit, for finite gradients).

Exact boundary closure of each stencil
--------------------------------------
Both stencils use the two closures of :func:`central` (the unscaled central difference
``u[k+1] - u[k-1]``):

* ``mode="edge"`` (clamped): on a border node the difference is one-sided,
  ``u[min(k+1, d-1)] - u[max(k-1, 0)]`` (the paper's ``i+2 ∧ d-1``, ``i-2 ∨ 0`` of eq. 35-36);
* ``mode="reflect"`` (mirrored): ``u_{-1} := u_1``, so the difference is exactly 0 on a border
  node (zero normal derivative).

*Paper stencil* (eq. 35-36): ``b_i = (1/h^2) sum_n c(n, i) (u_n - u_i)`` over the four neighbours n;
c(n, i) is g1 at the neighbour n of its unscaled central differences / h (h = 1 in the paper), the
component along i -> n clamped and the component across it mirrored. A neighbour outside the grid
is a mirror ghost (value of the node mirrored across the border, diffusivity g1(0, across
difference of the mirrored node)). Details, and the three typos of the printed boundary rows, in
:mod:`spdekit.backends.numpy_backend`.

*Conservative stencil*: face fluxes ``F = g1(grad u on the face) (u_n - u_i) / h`` with the face
gradient (normal: ``(u_n - u_i) / h``; tangential: the mean of the two nodes' mirrored central
differences / (2h)); the flux through a border face is 0, so the drift sums to zero over the grid.

*Noise amplitude* (eq. 37): g2 at each node from its mirrored central differences.
"""

from __future__ import annotations

import numpy as np

#: the diffusivity families, in the order of their integer codes (the CUDA kernels' ``kind``)
DIFFUSIVITIES = ("charbonnier", "perona-malik", "exponential", "weickert")
#: Weickert's constant C_m for m = 4: with it the flux |x| g(|x|^2) of g(s) = 1 - exp(-C4 / (s /
#: lambda^2)^4) increases for |x| < lambda and decreases above (Weickert 1998)
WEICKERT_C4 = 3.31488


def check_diffusivity(value, name: str = "diffusivity") -> str:
    """``value`` if it names a family of :data:`DIFFUSIVITIES`; else a one-line ValueError."""
    if not isinstance(value, str) or value not in DIFFUSIVITIES:
        allowed = ", ".join(repr(c) for c in DIFFUSIVITIES)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def diffusivity_code(family: str) -> int:
    """The integer code of a family (its index in :data:`DIFFUSIVITIES`), for compiled kernels."""
    return DIFFUSIVITIES.index(check_diffusivity(family))


def g(alpha, inv_lam2, s, family: str = "charbonnier"):
    """Eq. (9) and its families: g = alpha * phi(s * inv_lam2), s = |x|^2, inv_lam2 = 1 / lambda^2
    (module doc). Arrays (numpy or cupy) broadcast; the result has the dtype of the array arguments."""
    z = np.multiply(s, inv_lam2)  # a numpy scalar for Python floats: IEEE division below
    if family == "charbonnier":
        return alpha / np.sqrt(1 + z)
    if family == "perona-malik":
        return alpha / (1 + z)
    if family == "exponential":
        return alpha * np.exp(-z)
    if family == "weickert":
        with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
            w = WEICKERT_C4 / (z * z * z * z)  # z -> 0: w -> inf, g -> alpha
            return np.where(z == 0, alpha, alpha * -np.expm1(-w))  # g = alpha at s = 0 (also complex)
    raise ValueError(check_diffusivity(family))  # pragma: no cover - check_diffusivity raises first


def dg_ds(alpha, inv_lam2, s, family: str = "charbonnier"):
    """d g / d s of :func:`g` (s = |x|^2): the derivative the drift's adjoint needs
    (d c / d X = 2 X dg/ds for a diffusivity c = g(X^2 + Y^2)). Real arrays."""
    z = np.multiply(s, inv_lam2)
    if family == "charbonnier":
        q = 1 + z
        return -alpha * inv_lam2 / (2 * q * np.sqrt(q))
    if family == "perona-malik":
        q = 1 + z
        return -alpha * inv_lam2 / (q * q)
    if family == "exponential":
        return -alpha * inv_lam2 * np.exp(-z)
    if family == "weickert":
        # g = alpha (1 - e^-w), w = C4 z^-4: dg/dz = -4 alpha e^-w w / z, which tends to 0 with z
        # (e^-w underflows to 0 long before w / z overflows: e^-w > 0 needs z > 0.25 in float64)
        with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
            w = WEICKERT_C4 / (z * z * z * z)
            e = np.exp(-w)
            d = -4 * alpha * inv_lam2 * e * (w / z)
            return np.where(e > 0, d, np.zeros_like(d))
    raise ValueError(check_diffusivity(family))  # pragma: no cover


def central(u, axis: int, mode: str):
    """Unscaled central difference ``u[k+1] - u[k-1]`` along ``axis``.

    mode="edge": clamped indices (one-sided difference on the border nodes);
    mode="reflect": mirror closure (exactly 0 on the border nodes).
    """
    pad = [(0, 0)] * u.ndim
    pad[axis] = (1, 1)
    p = np.pad(u, pad, mode=mode)
    n = u.shape[axis]
    return np.take(p, np.arange(2, n + 2), axis=axis) - np.take(p, np.arange(0, n), axis=axis)


def norm_from_squares(ssq, count, norm: str = "l2"):
    """A per-sample norm from its sum of squares ``ssq`` over ``count`` numbers: 'l2' (Euclidean)
    or 'rms' (root mean square)."""
    return np.sqrt(ssq if norm == "l2" else ssq / count)


def sample_norms(b, norm: str = "l2"):
    """Per-sample norm of b over all non-batch axes: 'l2' (Euclidean) or 'rms' (root mean square).
    Works for numpy and cupy arrays (numpy ufuncs dispatch)."""
    b2 = np.square(b.astype(np.float64)).reshape(b.shape[0], -1)
    return norm_from_squares(b2.sum(axis=1), b2.shape[1], norm)


def tamed_step(dt, norms, gamma):
    """The step factor of eq. (39) with the step size in the numerator: dt / (1 + dt ||b||^gamma)."""
    return dt / (1.0 + dt * norms**gamma)


def taming_factor(b, dt, taming):
    """Per-sample step factor of eq. (39): dt / (1 + dt ||b||^gamma) for ``taming = (gamma, norm)``,
    or dt untamed (``taming = None``)."""
    if taming is None:
        return np.full(b.shape[0], float(dt))
    gamma, norm = taming
    return tamed_step(dt, sample_norms(b, norm), gamma)
