"""The numba flux kernels against the numpy reference, the Bernoulli function and the flux Jacobian."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spdekit.fokker_planck import BoxGrid, NonlinearFokkerPlanck, StructurePreservingScheme
from spdekit.fokker_planck import _kernels as K


def test_bernoulli_values_and_limits():
    z = np.array([-800.0, -30.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 30.0, 705.0, 800.0])
    b = K.bernoulli(z)
    with np.errstate(over="ignore"):
        ref = np.array([800.0, 30 / (1 - np.exp(-30)), 1 / (1 - np.exp(-1)), 1 + 5e-9, 1.0, 1 - 5e-9,
                        1 / (np.e - 1), 30 / np.expm1(30), 705 * np.exp(-705), 0.0])
    np.testing.assert_allclose(b, ref, rtol=1e-14, atol=1e-320)
    # B(-z) = z + B(z): the identity behind the steady-state property
    zz = np.linspace(-40, 40, 161)
    np.testing.assert_allclose(K.bernoulli(-zz), zz + K.bernoulli(zz), rtol=1e-13, atol=1e-13)


def test_bernoulli_derivative_matches_finite_differences():
    z = np.array([-20.0, -2.0, -1e-3, 0.0, 5e-5, 1e-3, 0.7, 20.0])
    h = 1e-6
    fd = (K.bernoulli(z + h) - K.bernoulli(z - h)) / (2 * h)
    np.testing.assert_allclose(K.bernoulli_derivative(z), fd, rtol=1e-7, atol=1e-9)


fields = st.integers(0, 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(seed=fields, dim=st.sampled_from([1, 2]), gamma=st.floats(0.5, 4.0), kappa=st.sampled_from([0.0, 0.5, 1.0]),
       scale=st.sampled_from([1e-6, 1.0, 50.0]))
def test_numba_kernels_equal_numpy_reference(seed, dim, gamma, kappa, scale):
    rng = np.random.default_rng(seed)
    grid = BoxGrid((7, 9)[:dim] if dim == 2 else 11, 3.0, dim=dim)
    f = scale * rng.uniform(0.0, 2.0, grid.shape)
    f[rng.uniform(size=grid.shape) < 0.1] = 0.0  # zeros are allowed (vacuum)
    model = NonlinearFokkerPlanck(sigma=0.7, lam=1.3, gamma=gamma, kappa=kappa)
    ref = StructurePreservingScheme(model, grid, backend="numpy")
    fast = StructurePreservingScheme(model, grid, backend="numba")
    for (a1, b1), (a2, b2) in zip(ref.face_coefficients(f), fast.face_coefficients(f)):
        np.testing.assert_allclose(a2, a1, rtol=1e-13, atol=0)
        np.testing.assert_allclose(b2, b1, rtol=1e-13, atol=0)
    r1, r2 = ref.rhs(f), fast.rhs(f)
    scale_rhs = max(np.abs(r1).max(), 1e-300)
    assert np.abs(r2 - r1).max() <= 1e-12 * scale_rhs + 1e-300


@pytest.mark.parametrize("shape", [(15,), (6, 8)])
def test_flux_jacobian_matches_finite_differences(shape):
    grid = BoxGrid(shape if len(shape) == 2 else shape[0], 3.0, dim=len(shape))
    model = NonlinearFokkerPlanck(gamma=2.5)
    scheme = StructurePreservingScheme(model, grid)
    f = np.random.default_rng(1).uniform(0.2, 2.0, grid.shape)
    J = scheme.jacobian(f).toarray()
    fd = np.zeros_like(J)
    eps = 1e-6
    for p in range(grid.size):
        e = np.zeros(grid.size)
        e[p] = eps
        e = e.reshape(grid.shape)
        fd[:, p] = ((scheme.rhs(f + e) - scheme.rhs(f - e)) / (2 * eps)).ravel()
    assert np.abs(J - fd).max() <= 1e-8 * np.abs(J).max()


def test_operator_matches_rhs_and_columns_sum_to_zero():
    grid = BoxGrid((9, 7), 2.5)
    scheme = StructurePreservingScheme(NonlinearFokkerPlanck(gamma=2.0), grid)
    f = np.random.default_rng(2).uniform(0.0, 3.0, grid.shape)
    A = scheme.operator(f)
    np.testing.assert_allclose(A @ f.ravel(), scheme.rhs(f).ravel(), rtol=1e-12, atol=1e-12)
    colsum = np.asarray(A.sum(axis=0)).ravel()
    assert np.abs(colsum).max() <= 1e-13 * abs(A).max()
    off = A - __import__("scipy").sparse.diags(A.diagonal())
    assert off.min() >= 0.0  # M-matrix structure: positivity of the semi-implicit step
