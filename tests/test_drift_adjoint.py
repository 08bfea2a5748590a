"""The adjoint of the drift (J^T w): stencil tables, numpy reference, numba kernel, public API, for
every diffusivity family (spdekit.operators: g and dg/ds)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spdekit import AnisotropicSPDE
from spdekit.backends import numba_backend, numpy_backend, stencil_tables

SHAPES = [(3, 3), (5, 6), (3, 7), (16, 16)]
FAMILIES = ["charbonnier", "perona-malik", "exponential", "weickert"]


def _coefficients(rng, B):
    return rng.uniform(0.1, 3.0, B), np.concatenate([[0.0, 40.0], rng.uniform(0, 5, B - 2)])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("shape", SHAPES)
def test_tables_reproduce_the_drift(family, stencil, shape):
    """The index tables ARE the stencil: the drift rebuilt from them equals numpy_backend's."""
    rng = np.random.default_rng(1)
    u = rng.normal(size=(4, 2) + shape)
    a, il = _coefficients(rng, 4)
    ref = numpy_backend.drift(u, a, il, stencil, 0.7, diffusivity=family)
    np.testing.assert_allclose(stencil_tables.forward(u, a, il, stencil, 0.7, family), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("shape", SHAPES)
def test_vjp_is_the_transpose_of_the_jacobian(family, stencil, shape):
    """<w, J v> = <J^T w, v> with J v by the complex step (exact to rounding), float64: checks the
    adjoint sum and each family's dg/ds at once."""
    rng = np.random.default_rng(2)
    u = rng.normal(size=(4, 1) + shape)
    a, il = _coefficients(rng, 4)
    v, w = rng.normal(size=u.shape), rng.normal(size=u.shape)
    h = 1e-30
    jv = numpy_backend.drift(u + 1j * h * v, a, il, stencil, 1.3, diffusivity=family).imag / h
    jtw = numpy_backend.drift_vjp(u, w, a, il, stencil, 1.3, diffusivity=family)
    lhs, rhs = (w * jv).sum((1, 2, 3)), (jtw * v).sum((1, 2, 3))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-11, atol=1e-11 * np.abs(jtw * v).sum((1, 2, 3)).max())
    assert np.abs(lhs).max() > 1e-3  # not a trivially zero Jacobian


def test_paper_stencil_jacobian_is_not_symmetric():
    """The paper stencil takes g1 at the neighbour, so J^T w != J w: an adjoint that returned the
    Jacobian-vector product would be wrong (the conservative stencil's Jacobian is symmetric only in
    the isotropic limit)."""
    rng = np.random.default_rng(3)
    u = rng.normal(size=(1, 1, 6, 6))
    w = rng.normal(size=u.shape)
    a, il = np.ones(1), np.ones(1)
    jw = numpy_backend.drift(u + 1j * 1e-30 * w, a, il, "paper").imag / 1e-30
    assert np.abs(numpy_backend.drift_vjp(u, w, a, il, "paper") - jw).max() > 1e-2


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_numba_equals_numpy(family, stencil, dtype, tol):
    rng = np.random.default_rng(4)
    u = rng.normal(size=(6, 2, 9, 7)).astype(dtype)
    w = rng.normal(size=u.shape).astype(dtype)
    a, il = _coefficients(rng, 6)
    ref = numpy_backend.drift_vjp(u, w, a, il, stencil, 0.9, diffusivity=family)
    out = numba_backend.drift_vjp(u, w, a, il, stencil, 0.9, diffusivity=family)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * np.abs(ref).max())


@settings(max_examples=25, deadline=None)
@given(c=st.floats(-5, 5), shape=st.sampled_from(SHAPES), stencil=st.sampled_from(["paper", "conservative"]),
       family=st.sampled_from(FAMILIES))
def test_constant_field_adjoint(c, shape, stencil, family):
    """At a constant field J = alpha1 L (g1' terms vanish with the differences): J^T 1 = L^T 1, which is
    0 for the conservative stencil (mass conservation: the columns of L sum to 0)."""
    u = np.full((1, 1) + shape, c)
    w = np.ones_like(u)
    out = numpy_backend.drift_vjp(u, w, np.array([2.0]), np.array([3.0]), stencil, diffusivity=family)
    if stencil == "conservative":
        assert np.abs(out).max() < 1e-12
    lin = numpy_backend.drift_vjp(np.zeros_like(u), w, np.array([2.0]), np.array([0.0]), stencil)
    np.testing.assert_allclose(out, lin, atol=1e-12)


def test_public_api_and_errors():
    spde = AnisotropicSPDE.paper_anisotropic(8)
    rng = np.random.default_rng(5)
    u = rng.normal(size=(8, 8))
    w = rng.normal(size=(8, 8))
    out = spde.drift_vjp(0.3, u, w)
    assert out.shape == (8, 8)
    ref = spde.drift_vjp(0.3, u[None, None], w[None, None], backend="numpy")[0, 0]
    np.testing.assert_allclose(out, ref, atol=1e-12)
    with pytest.raises(ValueError, match="w must have the shape of u"):
        spde.drift_vjp(0.3, u, w[:4])
    pm = AnisotropicSPDE(alpha1=2.0, lambda1=0.5, alpha2=0.1, lambda2=float("inf"), diffusivity="perona-malik")
    ref = numpy_backend.drift_vjp(u[None, None], w[None, None], np.array([2.0]), np.array([4.0]), "paper",
                                  diffusivity="perona-malik")[0, 0]
    np.testing.assert_allclose(pm.drift_vjp(0.3, u, w), ref, atol=1e-12)  # the SPDE passes its family
    with pytest.raises(ValueError, match="at least 2 nodes"):
        stencil_tables.tables((1, 5), "paper")
    with pytest.raises(ValueError, match="stencil must be"):
        stencil_tables.tables((4, 5), "upwind")
