"""Random streams for the Wiener increments: counter-based, one stream per sample.

``SampleStreams(seed, batch, first)`` draws standard normals with Philox4x32-10 and the
Box-Muller transform (:mod:`spdekit.backends.philox`). Number e of sample b at draw k is a pure
function of (seed, b, k, e), so

* a sample's path depends only on (seed, sample index): not on the batch size, on how an ensemble
  is chunked, on the number of threads or on the backend;
* any number of samples is drawn in one parallel, compiled loop (10^5 scalar paths cost no more
  per number than a few large images);
* the streams of different samples, draws and seeds are independent for all practical purposes
  (Philox passes TestU01's BigCrush for any counter increments; Salmon et al. 2011).

The seed (int, None or numpy SeedSequence) is hashed to the 64-bit Philox key by numpy's
SeedSequence; ``seed=None`` draws fresh OS entropy, kept in ``.seed``.

:class:`NormalsLike` serves callers whose randomness is driven by one seeded host
``numpy.random.Generator`` (its state is what they checkpoint) and whose arrays may live on a GPU or
belong to another library (torch tensors, through DLPack): each call takes a fresh key from the
generator (two 32-bit integers: the only host work) and draws the numbers with Philox on the device
of a given array, returned in that array's own type. The same generator state gives the same
numbers on the host and on a GPU (to the rounding of log/sin/cos, as above).
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_native
from ._checks import array_module
from .backends import philox


class SampleStreams:
    """Standard normals for samples ``first .. first + batch - 1``, one draw per call.

    ``standard_normal(size)`` is a drop-in for ``numpy.random.Generator.standard_normal`` under the
    batch-first convention: ``size[0]`` must equal ``batch``; each call advances the draw counter.
    ``stream`` separates independent uses of the same seed (e.g. two noise sources).
    ``device="cupy"`` draws the same numbers on the GPU (cupy arrays).
    """

    def __init__(self, seed, batch: int, first: int = 0, stream: int = 0, device: str = "host"):
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self.seed = root.entropy
        self.batch = int(batch)
        self.first = int(first)
        self.stream = int(stream)
        self.key = tuple(int(w) for w in root.generate_state(2, np.uint32))
        self.draw = 0
        self.device = device  #: "host" (numpy arrays) or "cupy" (drawn on the GPU)

    @classmethod
    def from_key(cls, key, batch: int, first: int = 0, stream: int = 0, device: str = "host") -> SampleStreams:
        """Streams under a given Philox key (two 32-bit words) instead of a hashed seed (``seed`` is None)."""
        self = cls.__new__(cls)
        self.seed = None
        self.batch, self.first, self.stream = int(batch), int(first), int(stream)
        self.key = tuple(int(w) & 0xFFFFFFFF for w in key)
        if len(self.key) != 2:
            raise ValueError(f"a Philox key is two 32-bit words, got {key!r}")
        self.draw = 0
        self.device = device
        return self

    def standard_normal(self, size, dtype=np.float64, out=None, scale=None):
        """One draw of normals for the batch (``size[0]`` = batch), into ``out`` if given; with
        ``scale`` the numbers come multiplied by it (on the host in the same pass)."""
        shape = tuple(int(s) for s in ((size,) if np.isscalar(size) else size))
        if not shape or shape[0] != self.batch:
            raise ValueError(f"SampleStreams of {self.batch} samples cannot draw shape {shape}: "
                             "the first axis must be the batch")
        if self.device == "cupy":
            res = self._device_generator()(shape, self.key, self.first, self.draw, self.stream, dtype=dtype, out=out)
            if scale is not None:
                res *= res.dtype.type(scale)
        else:
            res = philox.standard_normal(shape, self.key, self.first, self.draw, self.stream, dtype=dtype, out=out,
                                         scale=1.0 if scale is None else scale)
        self.draw += 1
        return res

    def _device_generator(self):
        from .backends import get_backend

        return get_backend("cupy").standard_normal


def key_from(rng: np.random.Generator) -> tuple[int, int]:
    """A fresh Philox key (two 32-bit words) from a numpy Generator, which advances by two integers."""
    w = rng.integers(0, 2**32, size=2, dtype=np.uint64)
    return int(w[0]), int(w[1])


class NormalsLike:
    """Standard normals for arrays like ``like``: on its device, in its array type (numpy, cupy, or any
    DLPack array such as a torch tensor), drawn by Philox under a fresh key from the host generator
    ``rng`` at every call (module doc).

    ``standard_normal(size, dtype)`` is a drop-in for ``numpy.random.Generator.standard_normal`` (so it
    serves :meth:`spdekit.noise.QWienerNoise.sample`); ``dtype`` defaults to like's (``.dtype``, a numpy
    dtype; float64 without ``like``); ``size[0]`` indexes the per-sample streams of the call. The numbers
    are a pure function of rng's state, the shape and the dtype: reproducible from a seed, resumable from
    ``rng.bit_generator.state``, the same on the host and on a GPU to rounding.
    """

    def __init__(self, rng: np.random.Generator, like=None):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (it keys the streams), got {type(rng).__name__}")
        self.rng = rng
        native, self._back = (np.empty(0), None) if like is None else as_native(like)
        self._xp = array_module(native)
        self.device = "host" if self._xp is np else "cupy"
        self.dtype = np.dtype(native.dtype)

    def standard_normal(self, size, dtype=None):
        shape = tuple(int(s) for s in ((size,) if np.isscalar(size) else size))
        if not shape:
            raise ValueError("NormalsLike draws arrays with a leading axis (the per-sample streams); got shape ()")
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        key = key_from(self.rng)
        if 0 in shape:
            out = self._xp.empty(shape, dtype=dtype)
        else:
            out = SampleStreams.from_key(key, shape[0], device=self.device).standard_normal(shape, dtype=dtype)
        return out if self._back is None else self._back(out)
