"""Random streams: one independent stream per sample, drawn in parallel.

Sample b of a run with seed s draws its Wiener increments from the stream
``numpy.random.SeedSequence(s).spawn(...)[b]`` (PCG64), in step order. Hence:

* a sample's path depends only on (seed, sample index): not on the batch size, on how a batch is
  split into chunks, on the number of threads or on the backend;
* the streams are statistically independent (SeedSequence spawning, O'Neill 2015).

Filling is done by a small thread pool; numpy releases the GIL while it fills an array, so the
draw runs on all cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="spdekit-rng")
    return _POOL


def sample_seed_sequences(seed, batch: int, first: int = 0) -> list[np.random.SeedSequence]:
    """SeedSequences of samples ``first .. first + batch - 1`` of the run seeded with ``seed``."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # children are identified by their spawn key, so sample b gets the same stream however many
    # samples are spawned around it
    return [np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key + (first + b,)) for b in range(batch)]


class SampleStreams:
    """Independent per-sample generators with a batched, threaded ``standard_normal``.

    Parameters
    ----------
    seed : int, None or SeedSequence (None draws fresh OS entropy, recorded in ``.seed``).
    batch : number of samples.
    first : index of the first sample (for chunked ensembles: chunk [first, first + batch)).
    """

    def __init__(self, seed, batch: int, first: int = 0):
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self.seed = root.entropy
        self.first = int(first)
        self.generators = [np.random.Generator(np.random.PCG64(s)) for s in sample_seed_sequences(root, batch, first)]

    def standard_normal(self, per_sample_shape, dtype=np.float64, out=None):
        """Array (batch, *per_sample_shape) of independent N(0, 1), sample b from stream b."""
        shape = (len(self.generators),) + tuple(per_sample_shape)
        out = np.empty(shape, dtype=dtype) if out is None else out
        gens = self.generators
        n_workers = min(_pool()._max_workers, len(gens))
        if n_workers <= 1 or out.size < 65536:  # small draws: threads cost more than they save
            for b, g in enumerate(gens):
                g.standard_normal(out=out[b], dtype=dtype)
            return out
        bounds = np.linspace(0, len(gens), n_workers + 1).astype(int)

        def fill(lo, hi):
            for b in range(lo, hi):
                gens[b].standard_normal(out=out[b], dtype=dtype)

        list(_pool().map(lambda r: fill(*r), zip(bounds[:-1], bounds[1:])))
        return out
