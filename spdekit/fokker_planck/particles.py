"""The N-particle McKean-Vlasov system behind (FP), stepped with spdekit's tamed Euler-Maruyama.

    dX_i = -lambda X_i (1 + kappa rho_eps(X_i)^gamma) dt + sqrt(2 sigma) dW_i,      i = 1..N,
    rho_eps(x) = (M / N) sum_j K_eps(x - X_j),   K_eps Gaussian of standard deviation eps,

so that rho_eps is a kernel density estimate of f scaled to the mass M (the nonlinearity sees the density
f itself, not the probability density f / M). As N -> inf and eps -> 0 slowly, the empirical measure
(M/N) sum_j delta_{X_j} converges to the solution f of (FP) (mean-field limit; for moderately interacting
particles with the kernel shrinking like eps = c N^(-beta), Oelschlaeger, Probab. Theory Related Fields 82
(1989); Jourdain & Meleard, Ann. IHP 34 (1998)). The drift is superlinear in the density, so the steps are
tamed (Hutzenthaler, Jentzen & Kloeden 2012) through :class:`spdekit.TamedEulerMaruyama`.

rho_eps is computed by linear binning on a mesh of spacing ``mesh_spacing`` (default eps/4), a discrete
convolution with the (mass-normalised) sampled Gaussian, and linear interpolation back to the particles
(Wand, J. Comput. Graph. Stat. 3, 1994): O(N + mesh) per evaluation instead of O(N^2), with relative error
O((mesh_spacing / eps)^2) against the exact sum :func:`kernel_density_direct` (tested). Particles outside the
mesh (beyond the box plus 5 eps, far in the tails) are binned into the border cells.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .._checks import check_int, check_positive
from .grid import BoxGrid
from .model import NonlinearFokkerPlanck


class StandardNormalNoise:
    """Independent standard normals per particle and coordinate: dW = sqrt(dt) * sample(...)."""

    def sample(self, shape, rng, dtype=np.float64):
        return rng.standard_normal(shape, dtype=np.dtype(dtype).type)

    def to_dict(self) -> dict:
        return {"type": "StandardNormalNoise"}


def kernel_density_direct(points, particles, mass: float, epsilon: float) -> np.ndarray:
    """Exact rho_eps at ``points`` (P, d) from ``particles`` (N, d): (M/N) sum_j K_eps(x - X_j). O(N P)."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    particles = np.atleast_2d(np.asarray(particles, dtype=np.float64))
    d = particles.shape[1]
    out = np.zeros(points.shape[0])
    norm = mass / particles.shape[0] / (2 * math.pi * epsilon**2) ** (d / 2)
    for start in range(0, particles.shape[0], 4096):
        chunk = particles[start:start + 4096]
        r2 = ((points[:, None, :] - chunk[None, :, :]) ** 2).sum(axis=-1)
        out += np.exp(-r2 / (2 * epsilon**2)).sum(axis=1)
    return norm * out


class BinnedKDE:
    """rho_eps by linear binning + separable Gaussian convolution on a mesh covering [-R, R]^d,
    R = half_width + 5 eps; evaluated at the particles by linear interpolation."""

    def __init__(self, dim: int, epsilon: float, half_width: float, mass: float, mesh_spacing: float | None = None):
        self.dim = check_int("dim", dim, minimum=1)
        if dim > 2:
            raise ValueError(f"dim must be 1 or 2, got {dim}")
        self.epsilon = check_positive("epsilon", epsilon)
        self.mass = check_positive("mass", mass)
        half_width = check_positive("half_width", half_width)
        delta = epsilon / 4 if mesh_spacing is None else check_positive("mesh_spacing", mesh_spacing)
        R = half_width + 5 * epsilon
        self.n = int(math.ceil(2 * R / delta)) + 1
        self.delta = 2 * R / (self.n - 1)
        self.origin = -R
        m = int(math.ceil(5 * epsilon / self.delta))
        k = np.arange(-m, m + 1) * self.delta
        w = np.exp(-(k * k) / (2 * epsilon**2))
        self.kernel = w / (w.sum() * self.delta)  # sums to 1 on the mesh: the mass is kept exactly

    @property
    def mesh(self) -> np.ndarray:
        return self.origin + np.arange(self.n) * self.delta

    def _weights(self, X):
        u = (np.asarray(X, dtype=np.float64) - self.origin) / self.delta
        u = np.clip(u, 0.0, self.n - 1 - 1e-9)
        i = np.floor(u).astype(np.int64)
        return i, u - i

    def mesh_density(self, X) -> np.ndarray:
        """rho_eps on the mesh, shape (n,) * dim (axis k is coordinate k: x, then y)."""
        X = np.asarray(X)
        N = X.shape[0]
        i, w = self._weights(X)
        n = self.n
        if self.dim == 1:
            c = np.bincount(i[:, 0], 1 - w[:, 0], minlength=n) + np.bincount(i[:, 0] + 1, w[:, 0], minlength=n)
        else:
            flat = lambda a, b: a * n + b  # noqa: E731  (axis 0 = x, axis 1 = y)
            c = np.zeros(n * n)
            for dx in (0, 1):
                wx = w[:, 0] if dx else 1 - w[:, 0]
                for dy in (0, 1):
                    wy = w[:, 1] if dy else 1 - w[:, 1]
                    c += np.bincount(flat(i[:, 0] + dx, i[:, 1] + dy), wx * wy, minlength=n * n)
            c = c.reshape(n, n)
        for axis in range(self.dim):
            c = ndimage.convolve1d(c, self.kernel, axis=axis, mode="constant") * self.delta
        return c * (self.mass / N) / self.delta**self.dim

    def __call__(self, X) -> np.ndarray:
        """rho_eps at the particles X (N, d)."""
        rho = self.mesh_density(X)
        i, w = self._weights(X)
        if self.dim == 1:
            return (1 - w[:, 0]) * rho[i[:, 0]] + w[:, 0] * rho[i[:, 0] + 1]
        out = np.zeros(X.shape[0])
        for dx in (0, 1):
            wx = w[:, 0] if dx else 1 - w[:, 0]
            for dy in (0, 1):
                wy = w[:, 1] if dy else 1 - w[:, 1]
                out += wx * wy * rho[i[:, 0] + dx, i[:, 1] + dy]
        return out


class McKeanVlasovParticles:
    """The particle system as an spdekit "problem" (drift, noise_term, noise), state X of shape (N, d).

    Parameters
    ----------
    model : :class:`NonlinearFokkerPlanck`.
    mass : the mass M that the N particles represent (each carries M/N).
    epsilon : kernel width of rho_eps.
    dim : 1 or 2.
    half_width : the KDE mesh covers [-half_width - 5 eps, half_width + 5 eps]^d (use the PDE box).
    mesh_spacing : KDE mesh spacing (default eps/4).
    """

    def __init__(self, model: NonlinearFokkerPlanck, mass: float, epsilon: float, dim: int = 1,
                 half_width: float = 6.0, mesh_spacing: float | None = None):
        if not isinstance(model, NonlinearFokkerPlanck):
            raise TypeError(f"model must be a NonlinearFokkerPlanck, got {type(model).__name__}")
        self.model = model
        self.mass = check_positive("mass", mass)
        self.kde = BinnedKDE(dim, epsilon, half_width, mass, mesh_spacing)
        self.dim = dim
        self.noise = StandardNormalNoise()
        self._amp = math.sqrt(2 * model.sigma)

    def density(self, X) -> np.ndarray:
        return self.kde(X)

    def drift(self, t, X):
        """-lambda X (1 + kappa rho_eps(X)^gamma)."""
        return self.model.particle_drift(X, self.kde(X))

    def noise_term(self, t, X, dW):
        return self._amp * dW

    def to_dict(self) -> dict:
        return {"type": "McKeanVlasovParticles", "model": self.model.to_dict(), "mass": self.mass,
                "epsilon": self.kde.epsilon, "dim": self.dim, "mesh_spacing": self.kde.delta}


def simulate_particles(problem, X0, t1: float, dt: float, seed=None, save_every: int | None = None,
                       solver=None, progress: bool = False):
    """Run the particle system with :func:`spdekit.simulate` (tamed Euler-Maruyama by default).
    Returns the spdekit Trajectory (states of shape (n_saved, N, d))."""
    from ..simulate import simulate
    from ..solvers import TamedEulerMaruyama

    X0 = np.asarray(X0, dtype=np.float64)
    if X0.ndim != 2 or X0.shape[1] != problem.dim:
        raise ValueError(f"X0 must have shape (N, {problem.dim}), got {X0.shape}")
    return simulate(problem, X0, 0.0, t1, dt, solver=solver or TamedEulerMaruyama(), save_every=save_every,
                    seed=seed, backend="numpy", progress=progress)


def sample_density(f, grid: BoxGrid, n: int, rng) -> np.ndarray:
    """n points from the piecewise-constant density ``f`` on ``grid`` (uniform inside each cell);
    columns in (x, y) order."""
    n = check_int("n", n, minimum=1)
    f = grid.check_field(f)
    p = f.ravel() / f.sum()
    cells = rng.choice(f.size, size=n, p=p)
    idx = np.unravel_index(cells, grid.shape)  # array-axis order (y, x)
    cols = []
    for k in range(grid.dim)[::-1]:
        h = grid.spacing[k]
        cols.append(grid.centers[k][idx[k]] + (rng.uniform(size=n) - 0.5) * h)
    return np.stack(cols, axis=1)


def histogram_density(X, grid: BoxGrid, mass: float) -> np.ndarray:
    """Cell averages of the empirical measure (M/N) sum_j delta_{X_j} on ``grid``; particles outside the box
    are counted in the nearest border cell (the mass is kept)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if X.shape[1] != grid.dim:
        raise ValueError(f"X must have shape (N, {grid.dim}), got {X.shape}")
    idx = []
    for k in range(grid.dim):
        coord = X[:, grid.dim - 1 - k]  # array axis k is coordinate dim-1-k (y, x)
        i = np.floor((coord + grid.half_width[k]) / grid.spacing[k]).astype(np.int64)
        idx.append(np.clip(i, 0, grid.n[k] - 1))
    flat = np.ravel_multi_index(tuple(idx), grid.shape)
    counts = np.bincount(flat, minlength=grid.size).reshape(grid.shape)
    return counts * (mass / X.shape[0]) / grid.cell_volume
