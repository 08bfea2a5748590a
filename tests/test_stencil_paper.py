"""The paper stencil against eq. (35)-(36) transcribed row by row, and a hand-computed grid.

The transcription below follows the printed formulas literally, in the paper's indexing
U(i1, i2) = u[i2, i1] (i1 along x = axis -1, i2 along y = axis -2), with three typos fixed:
  * ∂_T D, i1 = 0: ``u_{i1, i2 ∨ 0}`` read as ``u_{i1, i2-2 ∨ 0}``;
  * ∂_T D, i1 > 0: the factor ``(u_{i1+1, i2} - u_i)`` missing after the first g1 restored;
  * ∂_R D, i2 = d2 - 1: ``u_{i1-1, i2+1}`` read as ``u_{i1-1, i2}``.
"""

import math

import numpy as np
import pytest

from spdekit.backends import numba_backend, numpy_backend


def paper_drift_transcribed(u, alpha, lam, g=None):
    """Eq. (35)-(36) written out term by term (no vectorisation, no shared helpers). ``g(x1, x2)``:
    another g1 of the two unscaled difference components (tests/test_diffusivity.py passes each
    diffusivity family written out); by default eq. (9) as printed."""
    d2, d1 = u.shape

    def U(i1, i2):
        return u[i2, i1]

    def g1(x1, x2):
        if g is not None:
            return g(x1, x2)
        return alpha / math.sqrt(1.0 + (x1 * x1 + x2 * x2) / (lam * lam))

    b = np.zeros_like(u)
    for i2 in range(d2):
        for i1 in range(d1):
            Ui = U(i1, i2)
            up1 = min(i1 + 2, d1 - 1)
            dn1 = max(i1 - 2, 0)
            up2 = min(i2 + 2, d2 - 1)
            dn2 = max(i2 - 2, 0)
            if 1 <= i1 <= d1 - 2 and 1 <= i2 <= d2 - 2:  # D°
                v = (
                    g1(U(up1, i2) - Ui, U(i1 + 1, i2 + 1) - U(i1 + 1, i2 - 1)) * (U(i1 + 1, i2) - Ui)
                    - g1(Ui - U(dn1, i2), U(i1 - 1, i2 + 1) - U(i1 - 1, i2 - 1)) * (Ui - U(i1 - 1, i2))
                    + g1(U(i1 + 1, i2 + 1) - U(i1 - 1, i2 + 1), U(i1, up2) - Ui) * (U(i1, i2 + 1) - Ui)
                    - g1(U(i1 + 1, i2 - 1) - U(i1 - 1, i2 - 1), Ui - U(i1, dn2)) * (Ui - U(i1, i2 - 1))
                )
            elif i1 == 0 and i2 <= d2 - 2:  # ∂_L D
                if i2 == 0:
                    v = (g1(U(up1, i2) - Ui, 0) + g1(0, 0)) * (U(i1 + 1, i2) - Ui) + (
                        g1(0, U(i1, up2) - Ui) + g1(0, 0)
                    ) * (U(i1, i2 + 1) - Ui)
                else:
                    t = U(i1 + 1, i2 + 1) - U(i1 + 1, i2 - 1)
                    v = (
                        (g1(U(up1, i2) - Ui, t) + g1(0, t)) * (U(i1 + 1, i2) - Ui)
                        + g1(0, U(i1, up2) - Ui) * (U(i1, i2 + 1) - Ui)
                        - g1(0, Ui - U(i1, dn2)) * (Ui - U(i1, i2 - 1))
                    )
            elif i2 == d2 - 1 and i1 <= d1 - 2:  # ∂_T D
                if i1 == 0:
                    v = (g1(U(up1, i2) - Ui, 0) + g1(0, 0)) * (U(i1 + 1, i2) - Ui) + (
                        g1(0, Ui - U(i1, dn2)) + g1(0, 0)  # typo fixed: i2-2 ∨ 0
                    ) * (U(i1, i2 - 1) - Ui)
                else:
                    t = U(i1 + 1, i2 - 1) - U(i1 - 1, i2 - 1)
                    v = (
                        g1(U(up1, i2) - Ui, 0) * (U(i1 + 1, i2) - Ui)  # factor restored
                        - g1(Ui - U(dn1, i2), 0) * (Ui - U(i1 - 1, i2))
                        + (g1(t, 0) + g1(t, Ui - U(i1, dn2))) * (U(i1, i2 - 1) - Ui)
                    )
            elif i1 == d1 - 1 and i2 >= 1:  # ∂_R D
                if i2 == d2 - 1:
                    v = (g1(Ui - U(dn1, i2), 0) + g1(0, 0)) * (U(i1 - 1, i2) - Ui) + (  # typo fixed
                        g1(0, Ui - U(i1, dn2)) + g1(0, 0)
                    ) * (U(i1, i2 - 1) - Ui)
                else:
                    t = U(i1 - 1, i2 + 1) - U(i1 - 1, i2 - 1)
                    v = (
                        (g1(0, t) + g1(Ui - U(dn1, i2), t)) * (U(i1 - 1, i2) - Ui)
                        + g1(0, U(i1, up2) - Ui) * (U(i1, i2 + 1) - Ui)
                        - g1(0, Ui - U(i1, dn2)) * (Ui - U(i1, i2 - 1))
                    )
            elif i2 == 0 and i1 >= 1:  # ∂_B D
                if i1 == d1 - 1:
                    v = (g1(Ui - U(dn1, i2), 0) + g1(0, 0)) * (U(i1 - 1, i2) - Ui) + (
                        g1(0, U(i1, up2) - Ui) + g1(0, 0)
                    ) * (U(i1, i2 + 1) - Ui)
                else:
                    t = U(i1 + 1, i2 + 1) - U(i1 - 1, i2 + 1)
                    v = (
                        g1(U(up1, i2) - Ui, 0) * (U(i1 + 1, i2) - Ui)
                        - g1(Ui - U(dn1, i2), 0) * (Ui - U(i1 - 1, i2))
                        + (g1(t, U(i1, up2) - Ui) + g1(t, 0)) * (U(i1, i2 + 1) - Ui)
                    )
            else:  # pragma: no cover - the five parts partition D
                raise AssertionError((i1, i2))
            b[i2, i1] = v
    return b


def _backend_drift(backend, u, alpha, lam):
    il = 0.0 if math.isinf(lam) else 1.0 / lam**2
    return backend.drift(u[None, None], np.array([alpha]), np.array([il]), "paper", 1.0)[0, 0]


@pytest.mark.parametrize("shape", [(5, 6), (3, 3), (4, 7), (9, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_published_row_on_random_fields(shape, seed):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(shape)
    alpha, lam = 0.8 + seed, 0.3 + 0.5 * seed
    ref = paper_drift_transcribed(u, alpha, lam)
    for backend in (numpy_backend, numba_backend):
        np.testing.assert_allclose(_backend_drift(backend, u, alpha, lam), ref, rtol=1e-13, atol=1e-13)


def test_interior_term_by_term_large_random_field():
    """The acceptance check: D° of eq. (35) on a random 32x32 field (and the border too)."""
    rng = np.random.default_rng(42)
    u = rng.uniform(-1, 1, size=(32, 32))
    ref = paper_drift_transcribed(u, alpha=1.7, lam=0.025)
    got = _backend_drift(numpy_backend, u, 1.7, 0.025)
    np.testing.assert_allclose(got[1:-1, 1:-1], ref[1:-1, 1:-1], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)


def test_hand_computed_ramp():
    """u = x on a 3x4 grid, alpha = lambda = 1, computed by hand (see module doc of the backend):

    left border  : ghost (value u_1 = 1, g1(0, 0) = 1) + neighbour x=1 (clamped dx = 2: 1/sqrt 5)
    x = 1        : neighbour x=2 (dx = u3 - u1 = 2: 1/sqrt 5) minus neighbour x=0 (dx = u1 - u0 = 1: 1/sqrt 2)
    x = 2        : 1/sqrt 2 - 1/sqrt 5;   right border: -(1 + 1/sqrt 5)
    y-differences vanish, so all three rows are equal.
    """
    u = np.tile(np.arange(4.0), (3, 1))
    s5, s2 = 1 / math.sqrt(5), 1 / math.sqrt(2)
    row = np.array([1 + s5, s5 - s2, s2 - s5, -1 - s5])
    expected = np.tile(row, (3, 1))
    for backend in (numpy_backend, numba_backend):
        np.testing.assert_allclose(_backend_drift(backend, u, 1.0, 1.0), expected, rtol=1e-14)


def test_hand_computed_bump():
    """A unit bump at the centre of a 3x3 grid, alpha = lambda = 1: the centre sees four neighbours
    with clamped along-difference -1 (g1 = 1/sqrt 2, u_n - u_i = -1): b = -2 sqrt 2; each edge
    midpoint sees the bump twice (the neighbour with g1 = 1 and the mirror ghost with g1(0, 0) = 1):
    b = 2; the corners see nothing."""
    u = np.zeros((3, 3))
    u[1, 1] = 1.0
    expected = np.array([[0, 2, 0], [2, -2 * math.sqrt(2), 2], [0, 2, 0]])
    for backend in (numpy_backend, numba_backend):
        np.testing.assert_allclose(_backend_drift(backend, u, 1.0, 1.0), expected, rtol=1e-14, atol=1e-15)
