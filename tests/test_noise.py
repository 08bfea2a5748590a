"""Q-Wiener noise: exactness of the circulant embedding and a statistical covariance check."""

import numpy as np
import pytest

from spdekit import QWienerNoise

MAX_LAG = 8


def lag_statistics(noise, grid, n_samples, seed, chunk=2000):
    """Per-sample average products at every lag (dy, dx), 0 <= dy <= 8, |dx| <= 8, via FFT
    autocorrelation. Returns (lags, mean, standard error) over the independent samples."""
    H, W = grid
    rng = np.random.default_rng(seed)
    dys, dxs = np.meshgrid(np.arange(MAX_LAG + 1), np.arange(-MAX_LAG, MAX_LAG + 1), indexing="ij")
    counts = (H - dys) * (W - np.abs(dxs))
    stats = []
    for start in range(0, n_samples, chunk):
        x = noise.sample((min(chunk, n_samples - start), H, W), rng)
        f = np.fft.rfft2(x, s=(2 * H, 2 * W))
        acf = np.fft.irfft2(f * np.conj(f), s=(2 * H, 2 * W))  # acf[dy, dx] = sum x[y, x] x[y+dy, x+dx]
        stats.append(acf[:, dys, dxs % (2 * W)] / counts)
    s = np.concatenate(stats)
    return (dys, dxs), s.mean(axis=0), s.std(axis=0, ddof=1) / np.sqrt(len(s))


def check_covariance(noise, grid, n_samples=20_000, seed=0, z=4.0):
    (dys, dxs), mean, se = lag_statistics(noise, grid, n_samples, seed)
    target = noise.covariance(dys, dxs)
    zscores = np.abs(mean - target) / se
    # each lag two-sided at 4 standard errors: 99.994% per lag under the null
    assert np.all(zscores < z), f"worst lag {np.unravel_index(zscores.argmax(), zscores.shape)}: z={zscores.max():.2f}"
    return zscores


def test_exponential_covariance_l3_16x16_matches_within_4_standard_errors():
    noise = QWienerNoise(3.0)
    z = check_covariance(noise, (16, 16))
    assert z.size == 9 * 17


def test_white_noise_is_the_identity():
    noise = QWienerNoise(0.0)
    assert noise.is_white
    check_covariance(noise, (16, 16))
    v = np.random.default_rng(0).standard_normal((2, 16, 16))
    np.testing.assert_array_equal(noise.apply_Q(v), v)
    np.testing.assert_array_equal(noise.dense_Q((4, 5)), np.eye(20))


@pytest.mark.parametrize("ell,grid,padded", [(10.0, (64, 64), False), (16.0, (32, 32), True)])
def test_embeddings_are_exact_with_or_without_padding(ell, grid, padded):
    """On 64x64 the minimal torus (126x126) is non-negative for l = 10 (min/max eigenvalue about
    +6.7e-5); the Euclidean form first goes negative near l = a quarter of the domain, so l = 16 on
    32x32 needs a padded torus. Both must reproduce exp(-r/l) within 4 standard errors."""
    noise = QWienerNoise(ell)
    emb = noise.embedding(grid)
    assert (emb.padding != (0, 0)) == padded
    assert emb.exact and emb.min_eigenvalue > -1e-10 * emb.max_eigenvalue
    check_covariance(noise, grid)


@pytest.mark.parametrize("ell,kind", [(2.0, "euclidean"), (5.0, "euclidean"), (3.0, "separable"), (20.0, "separable")])
def test_sqrt_factor_reproduces_dense_Q(ell, kind):
    """S S^T = Q exactly (to rounding), S = crop(C^(1/2)), built column by column on the torus."""
    noise = QWienerNoise(ell, kind)
    grid = (7, 9)
    emb = noise.embedding(grid)
    m = emb.shape[0] * emb.shape[1]
    basis = np.eye(m).reshape(m, *emb.shape)
    S = noise.apply_sqrt_Q(basis, grid).reshape(m, -1).T  # (H*W, M1*M2)
    Q = noise.dense_Q(grid)
    np.testing.assert_allclose(S @ S.T, Q, atol=1e-12)
    if kind == "separable":
        assert emb.padding == (0, 0), "the separable covariance embeds at minimal size"


@pytest.mark.parametrize("ell,kind", [(0.0, "euclidean"), (1.5, "euclidean"), (4.0, "separable")])
def test_apply_Q_matches_dense_matrix(ell, kind):
    noise = QWienerNoise(ell, kind, spacing=0.5)
    grid = (6, 11)
    v = np.random.default_rng(1).standard_normal((3,) + grid)
    Q = noise.dense_Q(grid)
    expected = (v.reshape(3, -1) @ Q.T).reshape(v.shape)
    np.testing.assert_allclose(noise.apply_Q(v), expected, atol=1e-12)


def test_float32_samples_stay_float32():
    x = QWienerNoise(2.0).sample((4, 16, 16), np.random.default_rng(0), dtype=np.float32)
    assert x.dtype == np.float32 and x.shape == (4, 16, 16)


def test_clipping_is_reported_when_padding_is_not_allowed():
    noise = QWienerNoise(40.0, max_embedding_factor=1)
    with pytest.warns(RuntimeWarning, match="clipped mass"):
        emb = noise.embedding((32, 32))
    assert 0 < emb.clipped_mass < 1 and not emb.exact


def test_bad_parameters():
    with pytest.raises(ValueError, match="correlation_length must lie in \\[0, inf\\)"):
        QWienerNoise(-1.0)
    with pytest.raises(ValueError, match="noise kind must be one of"):
        QWienerNoise(1.0, kind="gaussian")
    with pytest.raises(ValueError, match="trailing shape"):
        QWienerNoise(2.0).apply_sqrt_Q(np.zeros((4, 4)), (8, 8))
