"""Forward-reverse density filtering."""

import math

import numpy as np
import pytest

from spdekit.fokker_planck import (
    BoxGrid,
    NonlinearFokkerPlanck,
    StructurePreservingScheme,
    discrete_steady_state,
    histogram_density,
    sample_density,
    time_grid,
)
from spdekit.fokker_planck.filtering import forward_reverse_filter, local_maxima, total_variation

MODEL = NonlinearFokkerPlanck(gamma=3.0)
M = 3.0
MODES = ((-1.5, 0.4, 0.5), (1.2, 0.3, 0.5))


def clean_density(grid):
    def pdf(x):
        return sum(w * np.exp(-((x - mu) ** 2) / (2 * s * s)) / (s * math.sqrt(2 * math.pi)) for mu, s, w in MODES)

    return M * grid.cell_averages(pdf)


@pytest.mark.parametrize("kind", ["multiplicative", "histogram"])
def test_filter_removes_noise_and_keeps_the_modes(kind):
    grid = BoxGrid(241, 6.0)
    clean = clean_density(grid)
    rng = np.random.default_rng(0)
    if kind == "multiplicative":
        noisy = np.maximum(clean * (1 + 0.5 * rng.standard_normal(grid.shape)), 0.0)
        noisy *= M / grid.integrate(noisy)
    else:
        noisy = histogram_density(sample_density(clean, grid, 2000, rng), grid, M)
    scheme = StructurePreservingScheme(MODEL, grid)
    res = forward_reverse_filter(noisy, scheme, n_iter=3, horizon=0.02, t_min=0.005, reference=clean)
    l1 = res.l1_to_reference
    assert l1[1] < 0.6 * l1[0]  # the first iteration removes at least 40 % of the L^1 error
    tv_clean = total_variation(clean, grid)
    assert abs(res.total_variation[1] - tv_clean) < 0.25 * abs(res.total_variation[0] - tv_clean)  # noise gone
    assert np.abs(grid.integrate(res.iterates) - grid.integrate(noisy)).max() < 1e-12 * M
    assert res.iterates.min() >= 0
    # modes kept: mean over 11 cells around each clean mode. The filter keeps the mode heights of its input
    # (histogram noise: the clean heights within 5 %; multiplicative noise moves these means itself, by up to 20 %,
    # and that large-scale content is kept within 10 %), whereas forward smoothing alone flattens them
    fwd_only = scheme.solve_on(noisy, time_grid(0.02, 20)).final
    for mu, _, _ in MODES:
        i = int(np.argmin(np.abs(grid.centers[0] - mu)))
        win = slice(i - 5, i + 6)
        h_clean, h_in, h_filt, h_fwd = (float(a[win].mean()) for a in (clean, noisy, res.iterates[1], fwd_only))
        target, tol = (h_clean, 0.05) if kind == "histogram" else (h_in, 0.1)
        assert abs(h_filt - target) < tol * target
        assert h_fwd < 0.9 * min(h_filt, h_in)
    if kind == "histogram":  # (the low-frequency part of the multiplicative noise shifts its maxima by ~0.2)
        peaks = [p[0][0] for p in local_maxima(res.iterates[1], grid, 0.5)[:2]]
        assert all(min(abs(p - mu) for p in peaks) < 0.2 for mu, _, _ in MODES)  # the two top peaks are the modes


def test_filter_leaves_steady_states_unchanged():
    grid = BoxGrid(81, 5.0)
    fss, _ = discrete_steady_state(grid, MODEL, 2.0)
    res = forward_reverse_filter(fss, StructurePreservingScheme(MODEL, grid), n_iter=2, horizon=0.05, t_min=0.02)
    np.testing.assert_allclose(res.iterates[-1], fss, rtol=1e-10, atol=1e-13)


def test_filter_2d_histogram():
    model = NonlinearFokkerPlanck(gamma=2.0)
    grid = BoxGrid(41, 4.0, dim=2)
    def pdf(y, x):
        bumps = np.exp(-((x + 1) ** 2 + (y + 0.5) ** 2) / 0.5) + np.exp(-((x - 1) ** 2 + (y - 0.7) ** 2) / 0.5)
        return bumps / (2 * math.pi * 0.25 * 2)

    clean = 5.0 * grid.cell_averages(pdf)
    noisy = histogram_density(sample_density(clean, grid, 5000, np.random.default_rng(1)), grid, grid.integrate(clean))
    res = forward_reverse_filter(noisy, StructurePreservingScheme(model, grid), n_iter=2, horizon=0.02, t_min=0.01,
                                 reference=clean)
    l1 = res.l1_to_reference
    assert l1[1] < 0.7 * l1[0] and l1[2] < l1[1]


def test_total_variation_and_errors():
    grid = BoxGrid((5, 7), 2.0)
    f = np.zeros(grid.shape)
    f[2, 3] = 1.0
    hy, hx = grid.spacing
    assert total_variation(f, grid) == pytest.approx(2 * hx + 2 * hy)  # 2 jumps per axis x face length
    with pytest.raises(ValueError, match="t_min"):
        forward_reverse_filter(np.ones(grid.shape), StructurePreservingScheme(MODEL, grid), horizon=0.1, t_min=0.2)
