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
"""

from __future__ import annotations

import numpy as np

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
