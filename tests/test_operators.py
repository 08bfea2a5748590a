"""Properties of the drift and noise amplitude (both stencils, both host backends, every diffusivity
family) and of the operators they are built from (spdekit.operators: g and its derivative, central
differences, norms, the taming factor)."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_diffusivity import FAMILIES, written_out

import spdekit as sk
from spdekit import operators
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


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("stencil", STENCILS)
@given(shape=shapes, c=finite, alpha=alphas, lam=lambdas, h=spacings)
def test_constant_field_has_zero_drift(family, backend, stencil, shape, c, alpha, lam, h):
    u = np.full((1, 1) + shape, c)
    b = backend.drift(u, np.array([alpha]), _coef(lam), stencil, h, diffusivity=family)
    assert np.array_equal(b, np.zeros_like(b))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, lam=lambdas, h=spacings)
def test_conservative_stencil_conserves_mass(family, backend, u, alpha, lam, h):
    b = backend.drift(u, np.array([alpha]), _coef(lam), "conservative", h, diffusivity=family)
    # relative to the size of the terms that cancel (1e-12 relative)
    scale = np.abs(b).sum() + 1e-300
    assert abs(b.sum()) <= 1e-12 * scale


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("stencil", STENCILS)
@given(u=fields(), alpha=alphas, lam=lambdas)
def test_drift_commutes_with_grid_symmetries(family, backend, stencil, u, alpha, lam):
    """Flips and the transpose of the grid map the drift accordingly (the closures are symmetric)."""
    a, il = np.array([alpha]), _coef(lam)

    def drift(v):
        return backend.drift(np.ascontiguousarray(v), a, il, stencil, 1.0, diffusivity=family)

    b = drift(u)
    scale = 1e-12 * (1 + np.abs(b).max())
    np.testing.assert_allclose(drift(u[..., ::-1]), b[..., ::-1], atol=scale, rtol=1e-12)
    np.testing.assert_allclose(drift(u[..., ::-1, :]), b[..., ::-1, :], atol=scale, rtol=1e-12)
    np.testing.assert_allclose(drift(np.swapaxes(u, -1, -2)), np.swapaxes(b, -1, -2), atol=scale, rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, c=finite)
def test_drift_is_shift_invariant_and_odd(family, backend, u, alpha, c):
    """b(u + c) = b(u) and b(-u) = -b(u): only differences of u enter eq. (35)-(36)."""
    a, il = np.array([alpha]), np.array([4.0])
    b = backend.drift(u, a, il, "paper", 1.0, diffusivity=family)
    tol = 1e-9 * (1 + np.abs(b).max())
    np.testing.assert_allclose(backend.drift(u + c, a, il, "paper", 1.0, diffusivity=family), b,
                               atol=tol * (1 + abs(c)))
    np.testing.assert_allclose(backend.drift(-u, a, il, "paper", 1.0, diffusivity=family), -b, atol=tol)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, h=spacings)
def test_isotropic_limit_is_alpha_times_5_point_laplacian(family, backend, u, alpha, h):
    """lambda = inf (every family: g = alpha): the paper stencil is alpha * the 5-point Laplacian with
    mirror ghosts (u_{-1} = u_1, scipy's mode='mirror'), the conservative one with zero-flux ghosts
    (u_{-1} = u_0, mode='nearest')."""
    a, il = np.array([alpha]), np.array([0.0])
    for stencil, mode in (("paper", "mirror"), ("conservative", "nearest")):
        expected = alpha * ndi.laplace(u[0, 0], mode=mode) / h**2
        got = backend.drift(u, a, il, stencil, h, diffusivity=family)[0, 0]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * (1 + np.abs(expected).max()))


def test_isotropic_preset_drift_is_laplacian_on_a_real_image():
    from spdekit.images import load_image

    u = load_image("camera", size=32)[None]
    spde = sk.AnisotropicSPDE.paper_isotropic(32)
    b = spde.drift(0.7, u, backend="numpy")
    alpha = spde.alpha1(0.7)
    np.testing.assert_allclose(b[0, 0], alpha * ndi.laplace(u[0, 0], mode="mirror"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@given(u=fields(), alpha=alphas, lam=lambdas)
def test_noise_amplitude_eq37(family, backend, u, alpha, lam):
    """g2 of eq. (37): mirrored central differences, 0 across a border; g2 = alpha on constants,
    g2 = alpha everywhere when lambda2 = inf, and 0 <= g2 <= alpha."""
    g2 = backend.diffusion_amplitude(u, np.array([alpha]), _coef(lam), 1.0, diffusivity=family)[0, 0]
    v = u[0, 0]
    H, W = v.shape
    g = written_out(family, alpha, lam)
    ref = np.empty_like(v)
    for y in range(H):
        for x in range(W):
            dx = v[y, x + 1] - v[y, x - 1] if 0 < x < W - 1 else 0.0
            dy = v[y + 1, x] - v[y - 1, x] if 0 < y < H - 1 else 0.0
            ref[y, x] = g(dx, dy)
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


# ----------------------------------------------------------------------------- spdekit.operators

families = st.sampled_from(FAMILIES)
squares = st.floats(0.0, 1e8)


def _il(lam):
    return 0.0 if math.isinf(lam) else 1.0 / lam**2


@given(family=families, alpha=alphas, lam=lambdas, s1=squares, s2=squares)
def test_g_is_alpha_at_zero_bounded_and_nonincreasing(family, alpha, lam, s1, s2):
    """Every family: g(0) = alpha, 0 <= g <= alpha, g non-increasing in s (so the explicit stability
    bound of the drift holds for all of them), and lambda = inf gives g = alpha."""
    il = _il(lam)
    lo, hi = sorted((s1, s2))
    g0, glo, ghi = (float(operators.g(alpha, il, s, family)) for s in (0.0, lo, hi))
    assert g0 == alpha
    assert 0.0 <= ghi <= glo * (1 + 1e-15) <= alpha * (1 + 1e-15)
    if il == 0.0:
        assert glo == ghi == alpha


@given(family=families, alpha=st.floats(0.1, 10.0), lam=st.floats(0.1, 10.0), z=st.floats(1e-3, 30.0))
def test_dg_ds_is_the_derivative_of_g(family, alpha, lam, z):
    """dg/ds against a central difference of g (relative step 1e-6), and dg/ds <= 0."""
    il = _il(lam)
    s = z / il
    eps = 1e-6 * s
    fd = (float(operators.g(alpha, il, s + eps, family)) - float(operators.g(alpha, il, s - eps, family))) / (2 * eps)
    d = float(operators.dg_ds(alpha, il, s, family))
    assert d <= 0.0
    assert abs(d - fd) <= 1e-6 * abs(d) + 1e-9 * alpha * il


@pytest.mark.parametrize("family", FAMILIES)
def test_dg_ds_at_zero_and_at_infinity(family):
    """The derivative is finite at s = 0 (Weickert's is 0 there: all its derivatives vanish) and
    tends to 0 as s grows; arrays work elementwise without warnings."""
    s = np.array([0.0, 1e-300, 1e-3, 1.0, 1e100])
    d = operators.dg_ds(2.0, 3.0, s, family)
    assert np.isfinite(d).all() and (d <= 0).all() and abs(d[-1]) < 1e-99
    if family == "weickert":
        assert d[0] == d[1] == 0.0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_numba_g_and_derivative_equal_the_operators(family, dtype, tol):
    """The numba backend's one definition of g and dg/ds (compiled, with the kernels' IEEE error model)
    against spdekit.operators."""
    from numba import njit

    @njit(error_model="numpy")
    def both(fam, a, il, s, one):
        g = np.empty_like(s)
        d = np.empty_like(s)
        for i in range(s.size):
            g[i] = numba_backend._gfun(fam, a, il, s[i], one)
            d[i] = numba_backend._dgds(fam, a, il, s[i], one)
        return g, d

    s = np.concatenate([[0.0], np.geomspace(1e-4, 1e3, 60)]).astype(dtype)
    a, il = dtype(1.7), dtype(2.3)
    g, d = both(numba_backend.FAMILIES[family], a, il, s, dtype(1.0))
    assert g.dtype == d.dtype == dtype
    np.testing.assert_allclose(g, operators.g(a, il, s, family), rtol=tol, atol=tol * 1e-30)
    ref = operators.dg_ds(a, il, s, family)
    np.testing.assert_allclose(d, ref, rtol=10 * tol, atol=10 * tol * np.abs(ref).max())
    # the Python face of the numba functions is the operators' definition
    fam = numba_backend.FAMILIES[family]
    assert numba_backend._gfun(fam, a, il, s[3], dtype(1)) == operators.g(a, il, s[3], family)


def test_unknown_family_is_a_one_line_error():
    with pytest.raises(ValueError, match="diffusivity must be one of 'charbonnier', 'perona-malik'") as exc:
        operators.g(1.0, 1.0, 1.0, "huber")
    assert "\n" not in str(exc.value)
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="diffusivity must be one of"):
            backend.drift(np.zeros((1, 1, 4, 4)), np.ones(1), np.ones(1), diffusivity="huber")


@settings(deadline=None)
@given(u=fields())
def test_central_differences_and_their_closures(u):
    """Interior: u[k+1] - u[k-1] for both closures; on a border node 'reflect' gives 0 and 'edge' the
    one-sided difference; a constant field gives 0."""
    for axis in (-1, -2):
        e, r = operators.central(u, axis, "edge"), operators.central(u, axis, "reflect")
        v = np.moveaxis(u, axis, -1)
        ev, rv = np.moveaxis(e, axis, -1), np.moveaxis(r, axis, -1)
        np.testing.assert_array_equal(ev[..., 1:-1], v[..., 2:] - v[..., :-2])
        np.testing.assert_array_equal(rv[..., 1:-1], ev[..., 1:-1])
        assert not rv[..., [0, -1]].any()
        np.testing.assert_array_equal(ev[..., 0], v[..., 1] - v[..., 0])
        np.testing.assert_array_equal(ev[..., -1], v[..., -1] - v[..., -2])
        assert not operators.central(np.full_like(u, 3.0), axis, "edge").any()


@given(b=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)), elements=finite),
       dt=st.floats(1e-6, 1.0), gamma=st.floats(0.5, 2.0))
def test_norms_and_taming_factor(b, dt, gamma):
    """rms = l2 / sqrt(n); untamed factor = dt; tamed: dt / (1 + dt ||b||^gamma), in (0, dt],
    decreasing in ||b||."""
    l2, rms = operators.sample_norms(b, "l2"), operators.sample_norms(b, "rms")
    np.testing.assert_allclose(l2, np.sqrt((b**2).sum(1)), rtol=1e-12)
    np.testing.assert_allclose(rms, l2 / np.sqrt(b.shape[1]), rtol=1e-12)
    assert (operators.taming_factor(b, dt, None) == dt).all()
    f = operators.taming_factor(b, dt, (gamma, "l2"))
    np.testing.assert_allclose(f, dt / (1 + dt * l2**gamma), rtol=1e-14)
    assert ((f > 0) & (f <= dt)).all()
    assert (operators.taming_factor(2 * b, dt, (gamma, "l2")) <= f).all()
    # the backends' names are these functions
    assert numpy_backend.taming_factor is operators.taming_factor
    assert numpy_backend.sample_norms is operators.sample_norms
