"""Properties of the drift and noise amplitude (both stencils, both host backends)."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import spdekit as sk
from spdekit.backends import numba_backend, numpy_backend

BACKENDS = [numpy_backend, numba_backend]
STENCILS = ["paper", "conservative"]

shapes = st.tuples(st.integers(3, 9), st.integers(3, 9))
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
alphas = st.floats(0.0, 50.0)
lambdas = st.one_of(st.just(float("inf")), st.floats(1e-3, 1e3))
spacings = st.sampled_from([1.0, 0.5, 2.0])


def _coef(lam):
    return np.array([0.0 if np.isinf(lam) else 1.0 / lam**2])


@st.composite
def fields(draw):
    shape = draw(shapes)
    return draw(arrays(np.float64, (1, 1) + shape, elements=finite))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("stencil", STENCILS)
@given(shape=shapes, c=finite, alpha=alphas, lam=lambdas, h=spacings)
def test_constant_field_has_zero_drift(backend, stencil, shape, c, alpha, lam, h):
    u = np.full((1, 1) + shape, c)
    b = backend.drift(u, np.array([alpha]), _coef(lam), stencil, h)
    assert np.array_equal(b, np.zeros_like(b))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, lam=lambdas, h=spacings)
def test_conservative_stencil_conserves_mass(backend, u, alpha, lam, h):
    b = backend.drift(u, np.array([alpha]), _coef(lam), "conservative", h)
    # relative to the size of the terms that cancel (1e-12 relative)
    scale = np.abs(b).sum() + 1e-300
    assert abs(b.sum()) <= 1e-12 * scale


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("stencil", STENCILS)
@given(u=fields(), alpha=alphas, lam=lambdas)
def test_drift_commutes_with_grid_symmetries(backend, stencil, u, alpha, lam):
    """Flips and the transpose of the grid map the drift accordingly (the closures are symmetric)."""
    a, il = np.array([alpha]), _coef(lam)

    def drift(v):
        return backend.drift(np.ascontiguousarray(v), a, il, stencil, 1.0)

    b = drift(u)
    scale = 1e-12 * (1 + np.abs(b).max())
    np.testing.assert_allclose(drift(u[..., ::-1]), b[..., ::-1], atol=scale, rtol=1e-12)
    np.testing.assert_allclose(drift(u[..., ::-1, :]), b[..., ::-1, :], atol=scale, rtol=1e-12)
    np.testing.assert_allclose(drift(np.swapaxes(u, -1, -2)), np.swapaxes(b, -1, -2), atol=scale, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, c=finite)
def test_drift_is_shift_invariant_and_odd(backend, u, alpha, c):
    """b(u + c) = b(u) and b(-u) = -b(u): only differences of u enter eq. (35)-(36)."""
    a, il = np.array([alpha]), np.array([4.0])
    b = backend.drift(u, a, il, "paper", 1.0)
    tol = 1e-9 * (1 + np.abs(b).max())
    np.testing.assert_allclose(backend.drift(u + c, a, il, "paper", 1.0), b, atol=tol * (1 + abs(c)))
    np.testing.assert_allclose(backend.drift(-u, a, il, "paper", 1.0), -b, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, h=spacings)
def test_isotropic_limit_is_alpha_times_5_point_laplacian(backend, u, alpha, h):
    """lambda = inf: the paper stencil is alpha * the 5-point Laplacian with mirror ghosts
    (u_{-1} = u_1, scipy's mode='mirror'), the conservative one with zero-flux ghosts
    (u_{-1} = u_0, mode='nearest')."""
    a, il = np.array([alpha]), np.array([0.0])
    for stencil, mode in (("paper", "mirror"), ("conservative", "nearest")):
        expected = alpha * ndi.laplace(u[0, 0], mode=mode) / h**2
        got = backend.drift(u, a, il, stencil, h)[0, 0]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * (1 + np.abs(expected).max()))


def test_isotropic_preset_drift_is_laplacian_on_a_real_image():
    from spdekit.images import load_image

    u = load_image("camera", size=32)[None]
    spde = sk.AnisotropicSPDE.paper_isotropic(32)
    b = spde.drift(0.7, u, backend="numpy")
    alpha = spde.alpha1(0.7)
    np.testing.assert_allclose(b[0, 0], alpha * ndi.laplace(u[0, 0], mode="mirror"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, lam=lambdas)
def test_noise_amplitude_eq37(backend, u, alpha, lam):
    """g2 of eq. (37): mirrored central differences, 0 across a border; g2 = alpha on constants,
    g2 = alpha everywhere when lambda2 = inf, and 0 < g2 <= alpha."""
    g2 = backend.diffusion_amplitude(u, np.array([alpha]), _coef(lam), 1.0)[0, 0]
    v = u[0, 0]
    H, W = v.shape
    ref = np.empty_like(v)
    for y in range(H):
        for x in range(W):
            dx = v[y, x + 1] - v[y, x - 1] if 0 < x < W - 1 else 0.0
            dy = v[y + 1, x] - v[y - 1, x] if 0 < y < H - 1 else 0.0
            ref[y, x] = alpha / np.sqrt(1 + (dx * dx + dy * dy) * _coef(lam)[0])
    np.testing.assert_allclose(g2, ref, rtol=1e-12, atol=1e-300)
    assert np.all(g2 <= alpha * (1 + 1e-15))
    # the corners see no difference at all (eq. 37's last case)
    np.testing.assert_allclose(g2[[0, 0, -1, -1], [0, -1, 0, -1]], alpha, rtol=1e-15)


def test_paper_stencil_is_not_conservative_but_conservative_is():
    rng = np.random.default_rng(3)
    u = rng.standard_normal((1, 1, 12, 10))
    a, il = np.array([1.0]), np.array([1.0])
    assert abs(numpy_backend.drift(u, a, il, "paper").sum()) > 1e-3
    assert abs(numpy_backend.drift(u, a, il, "conservative").sum()) < 1e-12


def test_per_sample_times_use_per_sample_coefficients():
    """t of shape (batch,): each sample is stepped with its own alpha(t), lambda(t)."""
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, (3, 2, 16, 16))
    t = np.array([0.1, 1.0, 1.9])
    b = spde.drift(t, u, backend="numpy")
    for i, ti in enumerate(t):
        np.testing.assert_array_equal(b[i], spde.drift(float(ti), u[i : i + 1], backend="numpy")[0])
    with pytest.raises(ValueError, match="shape \\(batch,\\)"):
        spde.drift(np.array([0.1, 0.2]), u)
