"""Condensation diagnostics: L^2 norm, mass in shrinking balls around 0, threshold-crossing times, L^1.

For supercritical mass M > m_c the solution concentrates at the origin (Carrillo, Hopf & Wolfram 2020;
Hopf 2021): the L^2 norm blows up and the mass in B(0, r) tends, as t -> inf and then r -> 0, to the
condensate mass M - m_c. On a grid the L^2 norm stays finite (about (M - m_c) h^{-d/2} once the
condensate sits in one cell), so "blow-up" is read as the L^2 norm exceeding a threshold, and the
condensate as the mass of the origin cell (the smallest ball), see :mod:`.steady_states` for its tolerance.
"""

from __future__ import annotations

import numpy as np

from .grid import BoxGrid, ball_mask


def mass(f, grid: BoxGrid):
    return grid.integrate(f)


def l2_norm(f, grid: BoxGrid):
    """||f||_{L^2} of the cell-average field (last ``dim`` axes)."""
    f = np.asarray(f)
    return np.sqrt((f * f).sum(axis=tuple(range(-grid.dim, 0))) * grid.cell_volume)


def l1_distance(f, g, grid: BoxGrid):
    return grid.integrate(np.abs(np.asarray(f) - np.asarray(g)))


def mass_in_ball(f, grid: BoxGrid, radius: float):
    """Mass of the cells whose centre lies in B(0, radius) (works on (..., *grid.shape) stacks)."""
    f = np.asarray(f)
    return (f * ball_mask(grid, radius)).sum(axis=tuple(range(-grid.dim, 0))) * grid.cell_volume


def shrinking_ball_masses(f, grid: BoxGrid, radii):
    """Mass in B(0, r) for each r in ``radii`` (decreasing radii show the concentration)."""
    return np.array([mass_in_ball(f, grid, r) for r in radii]).T


def origin_cell_mass(f, grid: BoxGrid):
    """Mass of the origin cell: the grid-level condensate (needs an odd number of cells per axis)."""
    idx = grid.origin_index
    if idx is None:
        raise ValueError(f"{grid} has no cell centred at the origin; use an odd number of cells per axis")
    f = np.asarray(f)
    return f[(...,) + idx] * grid.cell_volume


def threshold_time(times, values, threshold: float):
    """First time at which ``values`` reaches ``threshold`` (linear interpolation between saved times);
    None if it never does."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    above = np.nonzero(values >= threshold)[0]
    if above.size == 0:
        return None
    k = int(above[0])
    if k == 0:
        return float(times[0])
    v0, v1 = values[k - 1], values[k]
    w = (threshold - v0) / (v1 - v0)
    return float(times[k - 1] + w * (times[k] - times[k - 1]))


def condensation_diagnostics(trajectory, radii=None, l2_threshold=None) -> dict:
    """Per saved time: mass, L^2 norm, mass in the balls ``radii`` (default: 4, 2, 1 cells and the origin
    cell), and the first time the L^2 norm reaches ``l2_threshold`` (default: twice its initial value)."""
    grid = trajectory.grid
    dens = trajectory.densities
    h = max(grid.spacing)
    radii = [4 * h, 2 * h, h, 0.0] if radii is None else list(radii)
    l2 = l2_norm(dens, grid)
    thr = 2.0 * float(l2[0]) if l2_threshold is None else float(l2_threshold)
    return {
        "times": np.asarray(trajectory.times),
        "mass": np.asarray(grid.integrate(dens)),
        "l2_norm": l2,
        "radii": np.asarray(radii, dtype=np.float64),
        "ball_mass": shrinking_ball_masses(dens, grid, radii),
        "l2_threshold": thr,
        "l2_threshold_time": threshold_time(trajectory.times, l2, thr),
    }


def regular_mass_outside(grid: BoxGrid, model, radius: float, order: int = 6) -> float:
    """Integral of f_0 over R^d minus the cells whose centre lies in B(0, radius): cell integrals by
    Gauss-Legendre (f_0 is smooth away from 0) plus the tail outside the box by quadrature."""
    from scipy import integrate

    mask = ball_mask(grid, radius)
    if grid.origin_index is None or not mask[grid.origin_index]:
        raise ValueError("the ball must contain the origin cell (odd number of cells per axis)")
    # every neighbour of the origin cell must be in the ball: f_0 is singular at 0
    if radius < 1.5 * max(grid.spacing):
        raise ValueError(f"radius must be >= 1.5 cell widths ({1.5 * max(grid.spacing):.4g}), got {radius}")
    tm = model.theta_min

    def f0(*coords):
        r2 = sum(c * c for c in coords)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(r2 > 0, model.steady_state(np.where(r2 > 0, r2, 1.0), tm), 0.0)

    cells = grid.cell_averages(f0, order=order)
    inside_box = float((cells * ~mask).sum() * grid.cell_volume)
    if grid.dim == 1:
        L = grid.half_width[0]
        tail = 2 * integrate.quad(lambda x: f0(np.array(x)), L, np.inf, epsabs=0, epsrel=1e-12)[0]
    else:
        Ly, Lx = grid.half_width

        def g(y, x):
            return float(f0(np.array(y), np.array(x)))

        # {|x| > Lx} plus {|x| <= Lx, |y| > Ly}, by symmetry 2 x each half
        a = 2 * integrate.dblquad(g, Lx, np.inf, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-10)[0]
        b = 2 * integrate.dblquad(g, -Lx, Lx, Ly, np.inf, epsabs=1e-13, epsrel=1e-10)[0]
        tail = a + b
    return inside_box + tail


def condensate_mass(f, grid: BoxGrid, model, radius: float):
    """Estimate of the condensate carried by a (nearly) condensed state: mass in B(0, radius) minus the
    mass f_0 puts there, i.e. mass_in_ball - (m_c - regular_mass_outside). Once f is close to the discrete
    steady state the only errors are the cell-average vs nodal value of the smooth f_0 outside the ball
    (O(h^2)) and theta > 0 of the discrete state: it converges to M - m_c at second order, unlike the origin
    cell mass, which carries M - m_c,h with the O(h^(d - 2/gamma)) deficit of the singular quadrature."""
    mc = model.critical_mass(grid.dim)
    if not np.isfinite(mc):
        raise ValueError(f"no condensate: the critical mass is infinite for d={grid.dim}, gamma={model.gamma}")
    return mass_in_ball(f, grid, radius) - (mc - regular_mass_outside(grid, model, radius))
