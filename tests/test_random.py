"""Counter-based Gaussian streams (Philox4x32-10 + Box-Muller)."""

import numpy as np
import pytest
from scipy import stats

from spdekit.backends import philox
from spdekit.random import SampleStreams

# Random123's known-answer vectors: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(counter, key, expected):
    assert philox.philox_block(counter, key).tolist() == list(expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_sample_is_the_same_in_any_batch_or_chunk(dtype):
    big = SampleStreams(3, 64)
    a = [big.standard_normal((64, 3, 17), dtype=dtype) for _ in range(3)]
    chunk = SampleStreams(3, 10, first=20)
    b = [chunk.standard_normal((10, 3, 17), dtype=dtype) for _ in range(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[20:30], y)
    assert not np.array_equal(a[0], a[1])  # each call is a new draw
    with pytest.raises(ValueError, match="the first axis must be the batch"):
        big.standard_normal((5, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normals_are_standard_gaussian(dtype):
    """Kolmogorov-Smirnov against N(0, 1) on 400,000 numbers (fixed seed): at the 0.1% level the
    test rejects a correct generator once in a thousand seeds; moments within 5 standard errors."""
    z = SampleStreams(11, 400).standard_normal((400, 1000), dtype=dtype).astype(np.float64).ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)


def test_streams_samples_and_draws_are_uncorrelated():
    s = SampleStreams(5, 8)
    x = np.concatenate([s.standard_normal((8, 20_000)), s.standard_normal((8, 20_000))])  # 16 rows
    c = np.corrcoef(x)
    off = c[~np.eye(16, dtype=bool)]
    # 20,000 numbers per row: |corr| of independent rows ~ 1/sqrt(2e4) = 0.007; 5-sigma bound
    assert np.abs(off).max() < 5 / np.sqrt(20_000)
    other_seed = SampleStreams(6, 8).standard_normal((8, 20_000))
    assert abs(np.corrcoef(x[0], other_seed[0])[0, 1]) < 5 / np.sqrt(20_000)
    other_stream = SampleStreams(5, 8, stream=1).standard_normal((8, 20_000))
    assert abs(np.corrcoef(x[0], other_stream[0])[0, 1]) < 5 / np.sqrt(20_000)


def test_many_scalar_paths_are_cheap_to_draw():
    """10^5 one-number samples in one call (the particle and SDE-ensemble case)."""
    z = SampleStreams(1, 100_000).standard_normal((100_000, 1))
    assert z.shape == (100_000, 1) and abs(z.mean()) < 5 / np.sqrt(1e5)
