import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spdekit import schedules as S


def test_geometric_eq15():
    s = S.Geometric(0.5, 64.0, 2.0)
    assert s(0.0) == 0.5 and s(2.0) == pytest.approx(64.0)
    assert s(1.0) == pytest.approx(math.sqrt(0.5 * 64.0))


def test_ramp_eq16_and_isotropic_limit_without_nan():
    s = S.AnisotropyRamp(0.025, 0.5, 2.0)
    assert s(0.0) == pytest.approx(0.025)
    t = np.array([0.0, 1.0, 1.999999, 2.0, 2.5])
    v = s(t)
    assert not np.isnan(v).any()
    assert np.isinf(v[3]) and np.isinf(v[4]) and np.isfinite(v[2])
    expected = 0.025 * (math.exp(1.0) - 1) / (math.exp(0.5) - 1)
    assert v[1] == pytest.approx(expected, rel=1e-14)
    assert math.isinf(s(2.0))


def test_polynomial_fig5b():
    s = S.Polynomial(0.01, 2.0, 2.0, 2.0)
    assert s(1.0) == pytest.approx(0.01 + 1.99 * 0.25)
    with pytest.raises(ValueError, match="defined for t >= 0"):
        s(-1.0)


def test_scalar_in_scalar_out_array_in_array_out():
    s = S.Geometric(1.0, 4.0, 1.0)
    assert isinstance(s(0.5), float)
    out = s(np.array([0.0, 0.5, 1.0]))
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert isinstance(S.Constant(float("inf"))(np.zeros(4)), np.ndarray)


@given(st.sampled_from([S.Constant(2.0), S.Geometric(0.1, 9.0, 2.0), S.Polynomial(0.0, 3.0, 2.0, 0.7),
                        S.AnisotropyRamp(0.05, 1.5, 2.0)]),
       st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_monotone_and_bounds(s, a, b):
    lo_t, hi_t = min(a, b), max(a, b)
    assert s(lo_t) <= s(hi_t)
    lo, hi = s.bounds(lo_t, hi_t)
    assert lo == s(lo_t) and hi == s(hi_t)


@pytest.mark.parametrize("s", [S.Constant(float("inf")), S.Geometric(0.5, 64.0, 2.0), S.Polynomial(0.0, 1.0, 2.0, 3.0),
                               S.AnisotropyRamp(0.025, 0.5, 2.0)])
def test_dict_round_trip(s):
    assert S.schedule_from_dict(s.to_dict()) == s


def test_dict_errors():
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        S.schedule_from_dict({"schedule": "cosine"})
    with pytest.raises(ValueError, match=r"takes exactly the keys \['vmin', 'vmax', 'T'\]"):
        S.schedule_from_dict({"schedule": "geometric", "vmin": 1.0})
