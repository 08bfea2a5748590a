"""Reproducible Brownian paths that coarsen exactly (for convergence studies and paired runs).

A :class:`BrownianPath` is one fixed sample path of a (Q-)Wiener process W on a time grid
``t0 + k * dt_min``, k = 0..n_steps. The increment over any step whose ends lie on that grid is
the sum of the finest increments inside it, so a run at dt = m * dt_min and a run at dt_min see
the same path ("nested ladders on one path", as in diffrax's and torchsde's Brownian objects).

Reproducibility without storing the whole path
----------------------------------------------
The finest increments are generated in blocks of ``block_steps`` finest steps. Block b is drawn
from its own counter-based stream, ``numpy.random.SeedSequence(seed, spawn_key=(b,))`` (the same
child that ``SeedSequence(seed).spawn`` would give as its b-th child), so a block is a pure
function of (seed, b): any query order gives the same numbers, bit for bit, and a block can be
dropped and regenerated at will. Blocks are kept in a small LRU cache (``cache_bytes``).

Memory/time tradeoff: a path of n_steps finest steps over a state of S numbers weighs
8 * n_steps * S bytes (float64). If that fits in ``cache_bytes`` every block is generated once;
otherwise blocks are regenerated when they are queried again, at the cost of drawing them anew
(roughly 10-30 ns per normal number on one core, plus the Q^(1/2) FFTs for correlated noise).
A forward sweep (what :func:`spdekit.simulate` does) touches each block once, whatever the
cache size; :func:`spdekit.convergence.strong_order` steps every dt of a ladder in lockstep so
that a single sweep serves them all.

Q-Wiener noise (eq. 10-11): each finest increment is ``sqrt(dt_min) * S xi`` with xi standard
normal on the circulant-embedding torus and S = ``noise.apply_sqrt_Q`` (S S^T = Q). S is linear,
so sums of finest increments are exact increments of the same Q-Wiener path at any coarser step.

:class:`LinearGaussianPath` extends the path with the stochastic convolutions
``int e^{c (t_e - s)} dB_s`` of linear (Ornstein-Uhlenbeck-type) modes, sampled jointly with the
increments on every finest step; it gives the exact solution of linear problems on the same
path that the time stepper sees (:mod:`spdekit.problems`).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ._checks import check_int, check_nonnegative, check_real
from .noise import QWienerNoise
from .simulate import n_steps_for

#: tolerance (in units of dt_min) for a time to count as lying on the path's grid
GRID_TOL = 1e-6


def _child_rng(seed_seq: np.random.SeedSequence, block: int) -> np.random.Generator:
    """The generator of block ``block``: the ``block``-th spawned child of ``seed_seq``."""
    child = np.random.SeedSequence(seed_seq.entropy, spawn_key=tuple(seed_seq.spawn_key) + (int(block),),
                                   pool_size=seed_seq.pool_size)
    return np.random.Generator(np.random.PCG64(child))


class BrownianPath:
    """One sample path of a Wiener process with state shape ``shape`` on ``[t0, t1]``.

    Parameters
    ----------
    shape : shape of the state the increments drive, batch axis first (e.g. (n_paths,) for a
        scalar SDE, (n_paths, C, H, W) for fields). Correlated noise acts on the last two axes.
    t0, t1 : time interval; ``dt_min`` must divide ``t1 - t0``.
    dt_min : the finest step; :meth:`increment` accepts any step whose ends are on the grid
        ``t0 + k * dt_min``.
    seed : int or numpy SeedSequence. Same seed, same path.
    correlation_length : l >= 0 of eq. (11) (0: white noise). Ignored when ``noise`` is given.
    noise_kind, spacing : passed to :class:`spdekit.QWienerNoise` when ``correlation_length > 0``.
    noise : a :class:`spdekit.QWienerNoise` (e.g. ``spde.noise``) to correlate the increments with.
    block_steps : finest steps per generated block (default: about 4 MB per block).
    cache_bytes : memory kept for generated blocks (default 256 MiB; at least two blocks).
    """

    def __init__(self, shape, t0: float, t1: float, dt_min: float, seed=0, correlation_length: float = 0.0,
                 *, noise_kind: str = "euclidean", spacing: float = 1.0, noise=None,
                 block_steps: int | None = None, cache_bytes: int = 256 * 2**20):
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        self.shape = tuple(check_int("shape entries", s, minimum=1) for s in shape)
        if len(self.shape) < 1:
            raise ValueError("shape must have at least one axis (the batch axis)")
        self.n_steps = n_steps_for(t0, t1, dt_min)
        self.t0, self.t1, self.dt_min = float(t0), float(t1), float(dt_min)
        if noise is None:
            l = check_nonnegative("correlation_length", correlation_length)
            noise = QWienerNoise(l, noise_kind, spacing) if l > 0 else None
        if noise is not None and getattr(noise, "is_white", False):
            noise = None
        if noise is not None and len(self.shape) < 2:
            raise ValueError(f"correlated noise needs a state shape ending with (H, W); got shape {self.shape}")
        self.noise = noise
        if isinstance(seed, np.random.SeedSequence):
            self.seed_sequence = seed
        else:
            self.seed_sequence = np.random.SeedSequence(check_int("seed", seed, minimum=0))
        self.seed = seed
        bytes_per_step = 8 * self._numbers_per_step()
        if block_steps is None:
            block_steps = max(1, (4 * 2**20) // bytes_per_step)
        self.block_steps = min(check_int("block_steps", block_steps, minimum=1), self.n_steps)
        self.n_blocks = -(-self.n_steps // self.block_steps)
        block_bytes = self.block_steps * bytes_per_step
        self.cache_blocks = max(2, int(check_nonnegative("cache_bytes", cache_bytes) // block_bytes))
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self.blocks_generated = 0  #: how many blocks were drawn (regenerations included)

    # ------------------------------------------------------------------ description
    def _numbers_per_step(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes the whole path would take if stored (float64)."""
        return 8 * self._numbers_per_step() * self.n_steps

    @property
    def times(self) -> np.ndarray:
        """The finest grid t0 + k dt_min, k = 0..n_steps."""
        return self.t0 + self.dt_min * np.arange(self.n_steps + 1)

    def __repr__(self) -> str:
        kind = "white" if self.noise is None else repr(self.noise)
        return (f"{type(self).__name__}(shape={self.shape}, t in [{self.t0:g}, {self.t1:g}], "
                f"dt_min={self.dt_min:g}, n_steps={self.n_steps}, noise={kind}, seed={self.seed!r})")

    # ------------------------------------------------------------------ grid
    def index(self, t, name: str = "t") -> int:
        """k such that t = t0 + k * dt_min (to GRID_TOL * dt_min); clear error otherwise."""
        t = check_real(name, float(t))
        x = (t - self.t0) / self.dt_min
        k = round(x)
        if abs(x - k) > GRID_TOL:
            raise ValueError(
                f"{name}={t!r} is not on the path's grid t0 + k*dt_min (t0={self.t0:g}, dt_min={self.dt_min:g}); "
                f"steps must be multiples of dt_min"
            )
        if not 0 <= k <= self.n_steps:
            raise ValueError(f"{name}={t!r} lies outside the path's interval [{self.t0:g}, {self.t1:g}]")
        return int(k)

    # ------------------------------------------------------------------ generation
    def _generate(self, rng: np.random.Generator, n: int) -> dict:
        """Finest increments of one block: {"dW": array (n, *shape)}."""
        if self.noise is None:
            xi = rng.standard_normal((n,) + self.shape)
            return {"dW": math.sqrt(self.dt_min) * xi}
        grid = self.shape[-2:]
        xi = rng.standard_normal((n,) + self.shape[:-2] + tuple(self.noise.embedding_shape(grid)))
        return {"dW": math.sqrt(self.dt_min) * self.noise.apply_sqrt_Q(xi, grid)}

    def _block(self, b: int) -> dict:
        blk = self._cache.get(b)
        if blk is not None:
            self._cache.move_to_end(b)
            return blk
        n = min(self.block_steps, self.n_steps - b * self.block_steps)
        blk = self._generate(_child_rng(self.seed_sequence, b), n)
        for v in blk.values():
            v.setflags(write=False)
        self._cache[b] = blk
        self.blocks_generated += 1
        while len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return blk

    def _segments(self, i0: int, i1: int):
        """(block index, block, lo, hi) pieces covering the finest steps [i0, i1)."""
        bs = self.block_steps
        for b in range(i0 // bs, (i1 - 1) // bs + 1):
            lo = max(i0 - b * bs, 0)
            hi = min(i1 - b * bs, bs)
            yield b, self._block(b), lo, hi

    # ------------------------------------------------------------------ queries
    def fine_increments(self, i0: int, i1: int, key: str = "dW") -> np.ndarray:
        """The finest increments of steps i0..i1-1, array (i1 - i0, *shape)."""
        if not 0 <= i0 < i1 <= self.n_steps:
            raise ValueError(f"need 0 <= i0 < i1 <= n_steps={self.n_steps}; got i0={i0}, i1={i1}")
        return np.concatenate([blk[key][lo:hi] for _, blk, lo, hi in self._segments(i0, i1)], axis=0)

    def increment(self, t_start: float, t_end: float) -> np.ndarray:
        """W(t_end) - W(t_start), the sum of the finest increments inside [t_start, t_end].

        Both ends must lie on the grid ``t0 + k * dt_min``. Float64 array of ``shape``.
        """
        i0 = self.index(t_start, "t_start")
        i1 = self.index(t_end, "t_end")
        if i1 < i0:
            raise ValueError(f"t_end must be >= t_start; got t_start={t_start!r}, t_end={t_end!r}")
        out = np.zeros(self.shape)
        if i1 == i0:
            return out
        for _, blk, lo, hi in self._segments(i0, i1):
            out += blk["dW"][lo:hi].sum(axis=0)
        return out

    def value(self, t: float) -> np.ndarray:
        """W(t) with W(t0) = 0."""
        return self.increment(self.t0, t)


# ---------------------------------------------------------------------- linear Gaussian modes

#: |c h| below which the residual covariance uses its power series (cancellation-free)
SERIES_RADIUS = 0.5
_SERIES_DEGREE = 24


def expm1_ratio(x):
    """E(x) = (e^x - 1) / x, with E(0) = 1 (elementwise, accurate near 0)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.ones_like(x)
    nz = x != 0
    out[nz] = np.expm1(x[nz]) / x[nz]
    return out


def _series_coefficients(K=_SERIES_DEGREE):
    """C[p, q] with E(x + y) - E(x) E(y) = sum_{p, q >= 1} C[p, q] x^p y^q.

    From E(x) = sum_m x^m / (m + 1)!: the x^p y^q coefficient of E(x + y) is 1 / (p! q! (p + q + 1)),
    that of E(x) E(y) is 1 / ((p + 1)! (q + 1)!); they agree when p = 0 or q = 0.
    """
    C = np.zeros((K + 1, K + 1))
    for p in range(1, K + 1):
        for q in range(1, K + 1 - p):
            C[p, q] = 1.0 / (math.factorial(p) * math.factorial(q) * (p + q + 1)) \
                - 1.0 / (math.factorial(p + 1) * math.factorial(q + 1))
    return C


_COEF = _series_coefficients()


def residual_kernel(x, y):
    """G(x, y) = E(x + y) - E(x) E(y) for all pairs (outer in x and y), G ~ x y / 12 near 0.

    h M_jk G(c_j h, c_k h) is the covariance of the stochastic convolutions I given the Brownian
    increments (see :class:`LinearGaussianPath`). The direct difference cancels for small
    arguments, so pairs with |x|, |y| < SERIES_RADIUS use the power series (degree 24; the
    truncation error there is below 1e-20).
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    direct = expm1_ratio(x[:, None] + y[None, :]) - expm1_ratio(x)[:, None] * expm1_ratio(y)[None, :]
    K = _COEF.shape[0] - 1
    px = np.power.outer(np.clip(x, -SERIES_RADIUS, SERIES_RADIUS), np.arange(K + 1))  # (n, K+1)
    py = np.power.outer(np.clip(y, -SERIES_RADIUS, SERIES_RADIUS), np.arange(K + 1))
    series = px @ _COEF @ py.T
    small = (np.abs(x) < SERIES_RADIUS)[:, None] & (np.abs(y) < SERIES_RADIUS)[None, :]
    return np.where(small, series, direct)


def ou_residual_variance(x):
    """r(x) = G(x, x) = E(2x) - E(x)^2 elementwise: Var(I | dB) / h for one mode with c h = x.

    For |x| < SERIES_RADIUS the series r(x) = sum_{m >= 2} (2^m (m - 2) + 2) / (m + 2)! x^m (the
    diagonal of :func:`residual_kernel`'s series: E(2x) = sum 2^m x^m / (m + 1)!,
    E(x)^2 = sum (2^(m+2) - 2) x^m / (m + 2)!), r ~ x^2 / 12.
    """
    x = np.asarray(x, dtype=np.float64)
    direct = expm1_ratio(2 * x) - expm1_ratio(x) ** 2
    series = np.zeros_like(x)
    for m in range(_SERIES_DEGREE, 1, -1):  # Horner
        series = series * x + (2.0**m * (m - 2) + 2) / math.factorial(m + 2)
    series = series * x * x
    return np.maximum(np.where(np.abs(x) < SERIES_RADIUS, series, direct), 0.0)


def psd_sqrt(A):
    """A square-root factor S (S S^T = A) of a symmetric positive semi-definite matrix, by its
    eigendecomposition; returns (S, clipped) with clipped = |most negative eigenvalue| / max
    eigenvalue (rounding; 0 for an exactly PSD matrix)."""
    w, U = np.linalg.eigh(0.5 * (A + A.T))
    top = max(float(w.max()), 0.0)
    clipped = float(max(0.0, -w.min()) / top) if top > 0 else 0.0
    return U * np.sqrt(np.clip(w, 0.0, None)), clipped


class LinearGaussianPath(BrownianPath):
    """A Brownian path together with the stochastic convolutions of linear modes.

    For linear problems whose mode coordinates z = V^{-1} u solve dz_k = c_k z_k dt + dB_k, with
    B = V^{-1} W and Cov(B(t)) = t M (M = V^{-1} Q V^{-T}; identity for white noise in an
    orthonormal basis), the exact solution over a finest step [t_n, t_n + h] is

        z_k(t_n + h) = e^{c_k h} z_k(t_n) + I_k,    I_k = int_{t_n}^{t_n + h} e^{c_k (t_n + h - s)} dB_k(s),

    and the pair (I, dB) is jointly Gaussian with zero mean and (E(x) = (e^x - 1)/x, E(0) = 1)

        Cov(I_j, I_k)   = M_jk h E((c_j + c_k) h),
        Cov(I_j, dB_k)  = M_jk h E(c_j h),
        Cov(dB_j, dB_k) = M_jk h.

    Since Cov(I, dB) Cov(dB)^{-1} = diag(E(c h)), the conditional law is

        I = E(c h) * dB + R,    R ~ N(0, h M o G),   G_jk = E((c_j + c_k) h) - E(c_j h) E(c_k h)

    (o: entrywise product; :func:`residual_kernel` evaluates G without cancellation). Each finest
    step draws dB ~ N(0, h M) and R independently; the grid increments are dW = V dB. A solver fed
    with :meth:`increment` and the exact solution built from :meth:`convolution` therefore see the
    same path: the reference is exact, not a fine-step approximation.

    Independent modes (``mode_covariance=None``, M = I) need no matrix: per mode
    dB = sqrt(h) xi1, R = sqrt(h G(ch, ch)) xi2. Correlated modes use square-root factors of M and
    of M o G from their eigendecompositions (O(N^3) once, two N x N products per finest step and
    path; N = 32 x 32 = 1024 modes is fine). A zero rate c_0 = 0 gives G_0k = 0, so I_0 = dB_0.

    Parameters
    ----------
    shape : state shape, batch axes first; its trailing axes are the mode shape ``rates.shape``.
    rates : the c_k (<= 0 for the decaying modes of a Laplacian; any real value is exact).
    mode_covariance : M, (N, N) with N = rates.size (row-major mode order), or None for identity.
    to_modes, from_modes : z = V^{-1} u and u = V z on arrays (..., *rates.shape); default identity.
    The other parameters are those of :class:`BrownianPath` (white noise only: correlation enters
    through M).
    """

    def __init__(self, shape, t0, t1, dt_min, rates, seed=0, *, mode_covariance=None, to_modes=None,
                 from_modes=None, block_steps=None, cache_bytes=256 * 2**20):
        self.rates = np.asarray(rates, dtype=np.float64)
        if not np.isfinite(self.rates).all():
            raise ValueError("rates must be finite")
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
        k = self.rates.ndim
        if len(shape) <= k or (k and tuple(shape[-k:]) != self.rates.shape):
            raise ValueError(f"shape {shape} must be (batch..., *rates.shape) with rates.shape = {self.rates.shape}")
        self.mode_shape = self.rates.shape
        self.batch_shape = tuple(shape[: len(shape) - k])
        self._to_modes = to_modes if to_modes is not None else (lambda v: v)
        self._from_modes = from_modes if from_modes is not None else (lambda v: v)
        super().__init__(shape, t0, t1, dt_min, seed, block_steps=block_steps, cache_bytes=cache_bytes)
        x = self.rates.ravel() * self.dt_min
        n_modes = self.rates.size
        self._E = expm1_ratio(self.rates * self.dt_min)
        if mode_covariance is None:
            self.mode_covariance = None
            self._r = np.sqrt(self.dt_min * ou_residual_variance(self.rates * self.dt_min))
            self.clipped_eigenvalue = 0.0
        else:
            M = np.asarray(mode_covariance, dtype=np.float64)
            if M.shape != (n_modes, n_modes):
                raise ValueError(f"mode_covariance must have shape ({n_modes}, {n_modes}), got {M.shape}")
            if not np.allclose(M, M.T, rtol=0, atol=1e-12 * np.abs(M).max()):
                raise ValueError("mode_covariance must be symmetric")
            self.mode_covariance = M
            self._SB, c1 = psd_sqrt(M)
            self._SR, c2 = psd_sqrt(M * residual_kernel(x, x))
            self.clipped_eigenvalue = max(c1, c2)  #: rounding clipped from the factors (relative)

    def _numbers_per_step(self) -> int:
        return 2 * int(np.prod(self.shape))  # dW on the grid and I in modes

    def _generate(self, rng, n):
        sh = math.sqrt(self.dt_min)
        xi = rng.standard_normal((2, n) + self.shape)
        if self.mode_covariance is None:
            dB = sh * xi[0]
            res = self._r * xi[1]
        else:
            N = self.rates.size
            flat = xi.reshape(2, -1, N)  # one 2-D GEMM each (a stacked matmul would loop over GEMVs)
            dB = (sh * (flat[0] @ self._SB.T)).reshape((n,) + self.shape)
            res = (sh * (flat[1] @ self._SR.T)).reshape((n,) + self.shape)
        conv = self._E * dB + res
        return {"dW": np.ascontiguousarray(self._from_modes(dB)), "I": conv}

    def decay(self, dt: float) -> np.ndarray:
        """e^{c dt}, shape ``rates.shape``."""
        return np.exp(self.rates * float(dt))

    def convolution(self, t_start: float, t_end: float) -> np.ndarray:
        """The stochastic convolution int_{t_start}^{t_end} e^{c (t_end - s)} dB_s in mode coordinates:
        the sum over finest steps n in [t_start, t_end) of e^{c (t_end - t_{n+1})} I_n."""
        i0 = self.index(t_start, "t_start")
        i1 = self.index(t_end, "t_end")
        if i1 < i0:
            raise ValueError(f"t_end must be >= t_start; got t_start={t_start!r}, t_end={t_end!r}")
        out = np.zeros(self.shape)
        if i1 == i0:
            return out
        lead = (1,) * len(self.batch_shape)
        bs = self.block_steps
        for b, blk, lo, hi in self._segments(i0, i1):
            conv = blk["I"][lo:hi]
            if i1 - i0 == 1:
                out += conv[0]
                continue
            k = (i1 - 1) - (b * bs + np.arange(lo, hi))  # steps left after step n
            w = np.exp(np.multiply.outer(k * self.dt_min, self.rates))
            out += (w.reshape((hi - lo,) + lead + self.mode_shape) * conv).sum(axis=0)
        return out

    def to_modes(self, u):
        return self._to_modes(u)

    def from_modes(self, z):
        return self._from_modes(z)
