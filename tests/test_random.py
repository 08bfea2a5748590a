"""Counter-based Gaussian streams (Philox4x32-10 + Box-Muller)."""

import numpy as np
import pytest
from numba import njit
from scipy import stats

from spdekit.backends import philox, vecmath
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


# ---------------------------------------------------------------- the vectorisable math (vecmath)
@njit
def _eval_vecmath(u32, a32, u64, a64, out32, out64):
    for i in range(u32.size):
        out32[0, i] = vecmath.log_f32(u32[i])
        out32[1, i], out32[2, i] = vecmath.sincos_f32(a32[i])
    for i in range(u64.size):
        out64[0, i] = vecmath.log_f64(u64[i])
        out64[1, i], out64[2, i] = vecmath.sincos_f64(a64[i])


def test_vecmath_log_and_sincos_are_accurate_to_2_ulp():
    """The branch-free Cephes log/sin/cos on the generator's ranges: float32 against the float64
    truth (in float32 ulps), float64 against the C library (in float64 ulps)."""
    rng = np.random.default_rng(0)
    n = 1 << 20
    # every range of exponents the uniforms (x + 1/2) 2^-32 reach, plus both ends
    u32 = ((rng.integers(0, 2**32, n).astype(np.float64) + 0.5) * 2.0**-32 / 2.0 ** rng.integers(0, 20, n))
    u32 = np.concatenate([u32, [0.5 * 2.0**-32, 2.0**-20, 0.25, 0.70710678, 0.9999999, 1.0]]).astype(np.float32)
    a32 = np.concatenate([np.float32(2 * np.pi) * rng.random(n).astype(np.float32),
                          np.float32([0, np.pi / 4, np.pi / 2, np.pi, 1.5 * np.pi, 2 * np.pi])]).astype(np.float32)
    u64 = np.concatenate([(rng.integers(0, 2**53, n).astype(np.float64) + 0.5) * 2.0**-53,
                          [2.0**-54, 2.0**-20, 0.25, 0.7071067811865476, 1 - 2.0**-53, 1.0]])
    a64 = np.concatenate([2 * np.pi * rng.random(n), [0, np.pi / 4, np.pi / 2, np.pi, 1.5 * np.pi, 2 * np.pi]])
    out32 = np.empty((3, u32.size), np.float32)
    out64 = np.empty((3, u64.size))
    _eval_vecmath(u32, a32, u64, a64, out32, out64)
    for got, ref, tol in ((out32[0], np.log(u32.astype(np.float64)), 1.0),
                          (out32[1], np.sin(a32.astype(np.float64)), 2.0),
                          (out32[2], np.cos(a32.astype(np.float64)), 2.0)):
        # relative (ulps), except at the zeros of sin/cos (multiples of pi/2), where the float32 octant
        # reduction leaves an absolute error of about 1e-14 (far below a float32 normal's resolution)
        err = np.abs(got - ref)
        assert (err <= tol * np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64) + 2e-14).all()
    for got, ref in ((out64[0], np.log(u64)), (out64[1], np.sin(a64)), (out64[2], np.cos(a64))):
        assert (np.abs(got - ref) <= 2 * np.spacing(np.abs(ref)) + 1e-30).all()


@pytest.mark.parametrize("n", [1, 3, 5, 8, 13, 1024, 4 * 8192 + 5])  # the last: several parallel chunks
def test_normals_are_box_muller_of_the_philox_words(n):
    """Each block of the fill equals Box-Muller (in float64 from the same uniforms) of
    philox(j, sample, draw, stream): the stream's definition, tails of partial blocks included."""
    key, first, draw, stream, B = (12345, 678), 3, 7, 1, 2
    z32 = philox.standard_normal((B, n), key, first, draw, stream, dtype=np.float32)
    z64 = philox.standard_normal((B, n), key, first, draw, stream, dtype=np.float64)
    for b in range(B):
        ref32, ref64 = [], []
        for j in range((n + 1) // 2):
            x = philox.philox_block((j, first + b, draw, stream), key).astype(np.float64)
            if 4 * j < n:  # float32: 4 normals per block, uniforms and angle rounded as in the kernel
                u = ((x.astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-32)).astype(np.float64)
                ang = (np.float32(2 * np.pi) * u[[1, 3]].astype(np.float32)).astype(np.float64)
                r = np.sqrt(-2 * np.log(u[[0, 2]]))
                ref32 += [r[0] * np.cos(ang[0]), r[0] * np.sin(ang[0]), r[1] * np.cos(ang[1]), r[1] * np.sin(ang[1])]
            u1 = (x[0] * 2.0**21 + np.floor(x[1] / 2.0**11) + 0.5) * 2.0**-53
            u2 = (x[2] * 2.0**21 + np.floor(x[3] / 2.0**11) + 0.5) * 2.0**-53
            r = np.sqrt(-2 * np.log(u1))
            ref64 += [r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)]
        np.testing.assert_allclose(z32[b], ref32[:n], rtol=0, atol=4e-6)
        np.testing.assert_allclose(z64[b], ref64[:n], rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_draw_is_the_draw_times_the_scale(dtype):
    """``scale`` (Wiener increments: sqrt(dt)) multiplies in the same pass, rounding as a separate
    multiplication would, and advances the stream like an unscaled draw."""
    from spdekit.random import SampleStreams

    a, b = SampleStreams(5, 3), SampleStreams(5, 3)
    buf = np.empty((3, 2, 9, 7), dtype)
    for _ in range(2):
        got = a.standard_normal(buf.shape, dtype, out=buf, scale=0.03125 * 3)
        ref = b.standard_normal(buf.shape, dtype) * dtype(0.03125 * 3)
        assert got is buf and got.dtype == dtype
        np.testing.assert_array_equal(got, ref)


def test_normals_like_are_keyed_by_the_generator_and_come_in_the_arrays_type():
    """NormalsLike: each call takes one fresh key (two 32-bit integers) from the generator and draws
    SampleStreams under it; the same generator state gives the same numbers; arrays like the given
    one (numpy here, torch tensors through DLPack), in its dtype unless told."""
    from spdekit.random import NormalsLike, key_from

    g = np.random.default_rng(8)
    like = np.zeros((3, 2, 5), np.float32)
    a = NormalsLike(g, like).standard_normal(like.shape)
    b = NormalsLike(g, like).standard_normal(like.shape)
    assert a.dtype == np.float32 and a.shape == like.shape and not np.array_equal(a, b)
    h = np.random.default_rng(8)
    k1, k2 = key_from(h), key_from(h)
    np.testing.assert_array_equal(a, SampleStreams.from_key(k1, 3).standard_normal(like.shape, np.float32))
    np.testing.assert_array_equal(b, SampleStreams.from_key(k2, 3).standard_normal(like.shape, np.float32))
    assert g.bit_generator.state == h.bit_generator.state  # the generator advanced by the keys only
    c = NormalsLike(np.random.default_rng(8)).standard_normal((3, 2, 5), np.float64)
    assert c.dtype == np.float64
    assert NormalsLike(g, like).standard_normal((0, 4)).shape == (0, 4)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        NormalsLike(SampleStreams(0, 3), like)
    torch = pytest.importorskip("torch")
    t = NormalsLike(np.random.default_rng(8), torch.zeros(3, 2, 5)).standard_normal((3, 2, 5))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), a)
