"""GPU kernels (cupy RawModule, CUDA C++). Same numerics as :mod:`.numpy_backend` (the readable
definition; see its module docstring for the stencils and their Neumann closures).

One thread per node; the launch grid is (blocks over C*H*W, B) so that every block belongs to one
sample and the per-sample taming norm is a shared-memory block reduction plus one atomicAdd per
block (float64 accumulators). A tamed step is two kernels that both read u: (1) the drift's
squared norm per sample, without storing the drift; (2) the update, recomputing the drift:
u + factor * b + g2 * dW. Memory traffic is then 4 N values (read u twice, read dW, write the
result) instead of 6 N for store-and-reload; the stencil arithmetic is cheap next to it. The
untamed step is a single kernel (3 N). Non-finite results set a device flag (atomicOr), read once
per step.

Random numbers: the Wiener increments are drawn on the GPU by the same counter-based Philox
generator as on the host (:mod:`spdekit.random`), so a seed gives the host's increments up to
the last-bit differences of log/sin/cos between math libraries.

The diffusivity family (:mod:`spdekit.operators`) is a kernel argument ``kind`` (its index in
``DIFFUSIVITIES``; uniform over the launch, so the switch in ``gfun`` does not diverge); ``gfun`` is
this backend's one definition of g (``dgfun`` of its derivative dg/ds).

The drift's adjoint ``drift_vjp`` (J^T w, genmodel's path loss) is one thread per node that GATHERS
the adjoint terms of the rows of :mod:`.stencil_tables` reading its node (built on the fly, within
two nodes of it): no atomics, so the result is deterministic; it equals the scatter of
:func:`.numpy_backend.drift_vjp` up to the order of the sums.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import operators
from .._arrays import to_host
from ..operators import sample_norms  # noqa: F401  (part of this backend's API; runs on cupy arrays)
from .base import as_coefficients, run_table
from .cuda_kernels import NAMES, SOURCE

try:
    import cupy as cp
except ImportError as exc:  # pragma: no cover - exercised only without cupy
    raise ImportError("cupy is not installed") from exc

name = "cupy"
CAPABILITIES = frozenset({"standard_normal", "drift_vjp", "em_run"})
_THREADS = 256


def is_available() -> bool:
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver / no device
        return False


@functools.cache
def _module():
    return cp.RawModule(code=SOURCE, options=("-std=c++14",), name_expressions=NAMES)


def _kernel(kind, dtype):
    t = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]
    return _module().get_function(f"{kind}<{t}>")


def _launch(u):
    B, C, H, W = u.shape
    n = C * H * W
    return ((n + _THREADS - 1) // _THREADS, B), (_THREADS,), (np.int32(C), np.int32(H), np.int32(W))


def _dev(a, dtype):
    """Per-sample coefficients as a contiguous device array of ``dtype``, clamped to its finite
    range (see numpy_backend._col)."""
    a = np.minimum(np.asarray(a, dtype=np.float64), np.finfo(dtype).max)
    return cp.ascontiguousarray(cp.asarray(a, dtype=dtype))


def _scalars(dtype, spacing):
    t = np.dtype(dtype).type
    return t(1.0 / spacing), t(1.0 / (spacing * spacing))


def _kind(diffusivity):
    return np.int32(operators.diffusivity_code(diffusivity))


def drift(u, alpha, inv_lam2, stencil="paper", spacing=1.0, out=None, diffusivity="charbonnier"):
    u = cp.ascontiguousarray(u)
    dtype = u.dtype
    il = np.asarray(inv_lam2, dtype=np.float64) / (1.0 if stencil == "conservative" else spacing**2)
    res = cp.empty_like(u) if out is None else out
    grid, block, dims = _launch(u)
    inv_h, inv_h2 = _scalars(dtype, spacing)
    _kernel("drift_kernel", dtype)(grid, block, (u, _dev(alpha, dtype), _dev(il, dtype), _kind(diffusivity), *dims,
                                                 np.int32(stencil == "conservative"), inv_h, inv_h2, res))
    return res


def drift_vjp(u, w, alpha, inv_lam2, stencil="paper", spacing=1.0, diffusivity="charbonnier"):
    """Same contract as :func:`.numpy_backend.drift_vjp` (J^T w of the drift at u), on the GPU."""
    if stencil not in ("paper", "conservative"):
        raise ValueError(f"stencil must be 'paper' or 'conservative'; got {stencil!r}")
    u = cp.ascontiguousarray(u)
    dtype = u.dtype
    B, C, H, W = u.shape
    if H < 2 or W < 2:
        raise ValueError(f"the drift stencils need at least 2 nodes per axis; got shape {(H, W)}")
    w = cp.ascontiguousarray(cp.asarray(w, dtype=dtype).reshape(u.shape))
    res = cp.empty_like(u)
    grid, block, dims = _launch(u)
    a = np.broadcast_to(np.asarray(to_host(alpha), dtype=np.float64), (B,))  # per sample (or one for all)
    il = np.broadcast_to(np.asarray(to_host(inv_lam2), dtype=np.float64) / spacing**2, (B,))
    _kernel("drift_vjp_kernel", dtype)(grid, block, (u, w, _dev(a, dtype), _dev(il, dtype), _kind(diffusivity),
                                                     *dims, np.int32(stencil == "conservative"),
                                                     _scalars(dtype, spacing)[1], res))
    return res


def diffusion_amplitude(u, alpha, inv_lam2, spacing=1.0, diffusivity="charbonnier"):
    u = cp.ascontiguousarray(u)
    res = cp.empty_like(u)
    grid, block, dims = _launch(u)
    il = np.asarray(inv_lam2, dtype=np.float64) / spacing**2
    _kernel("g2_kernel", u.dtype)(grid, block, (u, _dev(alpha, u.dtype), _dev(il, u.dtype), _kind(diffusivity), *dims,
                                                res))
    return res


def em_step(u, dW, dt, coef, stencil="paper", spacing=1.0, taming=None, out=None, work=None):
    """Same contract as :func:`.numpy_backend.em_step` (``work`` is unused: the drift is recomputed)."""
    coef = as_coefficients(coef)
    k1, k2 = _kind(coef.diffusivity1), _kind(coef.diffusivity2)
    u = cp.ascontiguousarray(u)
    dtype = u.dtype
    B, C, H, W = u.shape
    dW = cp.ascontiguousarray(cp.asarray(dW, dtype=dtype))
    res = cp.empty_like(u) if out is None else out
    cons = stencil == "conservative"
    il1 = np.asarray(coef.inv_lam1, dtype=np.float64) / (1.0 if cons else spacing**2)
    il2 = np.asarray(coef.inv_lam2, dtype=np.float64) / spacing**2
    a1, il1 = _dev(coef.alpha1, dtype), _dev(il1, dtype)
    a2, il2 = _dev(coef.alpha2, dtype), _dev(il2, dtype)
    grid, block, dims = _launch(u)
    inv_h, inv_h2 = _scalars(dtype, spacing)
    if taming is None:
        fac = cp.full(B, dt, dtype=dtype)
    else:
        gamma, norm = taming
        ssq = cp.zeros(B, dtype=cp.float64)
        _kernel("norm_kernel", dtype)(grid, block, (u, a1, il1, k1, *dims, np.int32(cons), inv_h, inv_h2, ssq))
        fac = operators.tamed_step(dt, operators.norm_from_squares(ssq, C * H * W, norm), gamma).astype(dtype)
    flag = cp.zeros(1, dtype=cp.int32)
    _kernel("step_kernel", dtype)(grid, block, (u, dW, fac, a1, il1, a2, il2, k1, k2, *dims, np.int32(cons),
                                                inv_h, inv_h2, res, flag))
    return res, not bool(flag.get()[0])


_NO_BAD = np.iinfo(np.int32).max


class EMRun:
    """A run of many (tamed) Euler-Maruyama steps with white noise, fused on the GPU (capability ``em_run``).

    Built once per run (the operator-built-once shape of py-pde): the coefficients of every step go to
    the device in ONE upload (float64 rows, scaled and clamped as :func:`em_step` does per step); then
    each step is one kernel (untamed) or two (tamed: the drift's squared norm per sample, then the
    update), with no host-device transfer: the Wiener increment is drawn inside the update kernel (the
    Philox normals of :func:`standard_normal`, counter (block, sample, draw, stream)), the taming factor
    dt / (1 + dt ||b||^gamma) is computed on the device from the norm kernel's sums, and non-finite
    results lower a device integer to the first bad step, read once per :meth:`advance`.

    Step k is exactly the per-step loop's step: ``em_step(u, sqrt(dt_k) * N_k, dt_k, coef_k, ...)``
    with N_k the normals of ``streams`` at draw ``draw0 + k`` (``draw0``: the streams' draw counter
    when the run was built), the same increments as :class:`spdekit.random.SampleStreams` gives a
    per-step loop; tested equal to the numpy backend's run (float64 1e-12, float32 1e-5 relative).

    Parameters: ``shape``, ``dtype`` of the state (B, C, H, W); ``columns``: alpha1, inv_lam1, alpha2,
    inv_lam2 per step, each of shape (n,) (the batch shares them) or (n, B); ``dts``: the n step
    sizes; ``streams``: a :class:`spdekit.random.SampleStreams` of the batch (its draw counter moves
    on with the run); ``taming``: None or (gamma, norm).
    """

    def __init__(self, shape, dtype, columns, dts, streams, stencil="paper", spacing=1.0, taming=None,
                 diffusivity1="charbonnier", diffusivity2="charbonnier"):
        self.shape, self.dtype = tuple(int(v) for v in shape), np.dtype(dtype)
        B = self.shape[0]
        self.n = len(np.ravel(dts))
        table, steps = run_table(columns, dts, B, self.dtype, stencil, spacing)
        nb = table.shape[2]
        cons = stencil == "conservative"
        self._coef = cp.asarray(table)
        self._dts = cp.asarray(steps)
        self._nb = np.int32(nb)
        self._kinds = (_kind(diffusivity1), _kind(diffusivity2))
        self._cons = np.int32(cons)
        self._inv = _scalars(self.dtype, spacing)
        self.streams = streams
        self._draw0 = int(streams.draw)
        self._key = (np.uint32(streams.key[0]), np.uint32(streams.key[1]))
        self._taming = taming
        self._ssq = cp.zeros((2, B), dtype=cp.float64)  # a two-row ring (run_step_kernel zeroes the next row)
        self._rows = (self._ssq[0], self._ssq[1])
        self._bad = cp.empty(1, dtype=cp.int32)
        C, H, W = self.shape[1:]
        per = 4 if self.dtype == np.float32 else 2
        self._dims = (np.int32(C), np.int32(H), np.int32(W))
        self._grid_nodes = ((C * H * W + _THREADS - 1) // _THREADS, B)
        self._grid_blocks = (((C * H * W + per - 1) // per + _THREADS - 1) // _THREADS, B)
        self._norm = _kernel("run_norm_kernel", self.dtype)
        self._step = _kernel("run_step_kernel", self.dtype)

    def advance(self, u, k0: int, k1: int):
        """Steps k0 .. k1 - 1 from the state u (a cupy array of the run's shape and dtype; used as a
        work buffer, so its contents change). Returns (u_k1, first_bad): first_bad is the index of
        the first step whose result is not finite, None if every result is (then u_k1 is the state
        after step k1 - 1; after a bad step, the states that follow are not meaningful)."""
        if not 0 <= k0 <= k1 <= self.n:
            raise ValueError(f"steps must satisfy 0 <= k0 <= k1 <= {self.n}; got {k0}, {k1}")
        a = cp.ascontiguousarray(u)
        if a.shape != self.shape or a.dtype != self.dtype:
            raise ValueError(f"u must be {self.shape} {self.dtype}; got {a.shape} {a.dtype}")
        b = cp.empty_like(a)
        self._bad.fill(_NO_BAD)
        self._rows[k0 & 1].fill(0.0)  # the ring row of the first step (later rows: zeroed by the step kernels)
        tamed = self._taming is not None
        gamma, rms = (float(self._taming[0]), self._taming[1] == "rms") if tamed else (1.0, False)
        k_1, k_2 = self._kinds
        ih, ih2 = self._inv
        block = (_THREADS,)
        first, stream = np.uint64(self.streams.first), np.uint32(self.streams.stream)
        for k in range(k0, k1):
            ssq, ssq_next = self._rows[k & 1], self._rows[(k + 1) & 1]
            if tamed:
                self._norm(self._grid_nodes, block, (a, self._coef, self._nb, np.int32(k), k_1, *self._dims,
                                                     self._cons, ih, ih2, ssq))
            self._step(self._grid_blocks, block, (a, self._coef, self._nb, self._dts, np.int32(k), k_1, k_2,
                                                  *self._dims, self._cons, ih, ih2, *self._key, first,
                                                  np.uint32(self._draw0 + k), stream, np.int32(tamed), ssq,
                                                  ssq_next, np.int32(rms), np.float64(gamma), b, self._bad))
            a, b = b, a
        self.streams.draw = self._draw0 + k1
        bad = int(self._bad.get()[0])
        return a, (None if bad == _NO_BAD else bad)


def em_run(shape, dtype, columns, dts, streams, stencil="paper", spacing=1.0, taming=None,
           diffusivity1="charbonnier", diffusivity2="charbonnier") -> EMRun:
    """A fused run of (tamed) Euler-Maruyama steps (:class:`EMRun`)."""
    return EMRun(shape, dtype, columns, dts, streams, stencil, spacing, taming, diffusivity1, diffusivity2)


def standard_normal(shape, key, first, draw, stream=0, dtype=np.float64, out=None):
    """The Philox normals of :func:`spdekit.backends.philox.standard_normal`, drawn on the GPU."""
    dtype = np.dtype(dtype)
    out = cp.empty(shape, dtype=dtype) if out is None else out
    B = out.shape[0]
    n = out.size // B
    per = 4 if dtype == np.float32 else 2
    total = B * ((n + per - 1) // per)
    name = {np.dtype(np.float32): "normal_f32", np.dtype(np.float64): "normal_f64"}[dtype]
    _module().get_function(name)(((total + _THREADS - 1) // _THREADS,), (_THREADS,),
                                 (out, np.int32(B), np.int64(n), np.uint32(key[0]), np.uint32(key[1]),
                                  np.uint64(first), np.uint32(draw), np.uint32(stream)))
    return out


def circulant_apply(v, spectrum_half, emb_shape):
    """cuFFT version of :func:`.numpy_backend.circulant_apply`."""
    m1, m2 = emb_shape
    f = cp.fft.rfft2(v, s=(m1, m2))
    f *= cp.asarray(spectrum_half, dtype=f.real.dtype)
    return cp.fft.irfft2(f, s=(m1, m2))
