"""Condensation and reverse-time generation with the nonlinear Fokker-Planck equation (spdekit.fokker_planck).

    python examples/fokker_planck_condensation.py [--out out/fokker_planck]

1. the critical mass m_c(1, 3) of d_t f = div(grad f + x f (1 + f^3));
2. forward runs below and above m_c (the supercritical one forms a condensate at 0), saved as netCDF;
3. reverse-time reconstruction of the data from the asymptotic state: PDE and reverse-SDE particles;
4. forward-reverse filtering of a histogram.
Runs in about half a minute on a laptop; writes a figure and two netCDF files.
"""

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spdekit.fokker_planck import (  # noqa: E402
    BoxGrid,
    NonlinearFokkerPlanck,
    ReverseParticleSampler,
    ReversePDE,
    StructurePreservingScheme,
    condensate_mass,
    critical_mass,
    discrete_steady_state,
    histogram_density,
    open_density_trajectory,
    sample_density,
    time_grid,
)
from spdekit.fokker_planck.filtering import forward_reverse_filter  # noqa: E402


def data(x):
    """Two Gaussian bumps, a probability density."""
    return 0.5 * np.exp(-((x + 1.5) ** 2) / 0.32) / math.sqrt(0.32 * math.pi) + \
        0.5 * np.exp(-((x - 1.2) ** 2) / 0.18) / math.sqrt(0.18 * math.pi)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/fokker_planck", help="output folder")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    model = NonlinearFokkerPlanck(sigma=1.0, lam=1.0, gamma=3.0)
    mc = critical_mass(1, model.gamma, model.lam, model.sigma)
    print(f"critical mass m_c(d=1, gamma=3) = {mc:.6f}")
    grid = BoxGrid(241, 6.0)
    scheme = StructurePreservingScheme(model, grid)
    times = time_grid(10.0, 300, grading=3.0)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = grid.centers[0]
    for M, ax in ((4.0, axes[0]), (8.0, axes[1])):
        f0 = M * grid.cell_averages(data)
        fwd = scheme.solve_on(f0, times)  # implicit Euler, every state stored
        path = fwd.to_netcdf(out / f"forward_M{M:g}.nc")
        assert np.array_equal(open_density_trajectory(path).densities, fwd.densities)
        finf, _ = discrete_steady_state(grid, model, M)  # the asymptotic state (with a condensate if M > m_c)
        rev = ReversePDE(fwd, scheme).solve(finf)  # stabilised reverse equation, back to t = 0
        err = grid.integrate(np.abs(rev.final - f0))
        print(f"M = {M:g}: mass drift {abs(grid.integrate(fwd.final) - M):.1e}, reverse-PDE L1 error {err:.4f}"
              + (f", condensate {condensate_mass(fwd.final, grid, model, 0.5):.4f} (M - m_c = {M - mc:.4f})"
                 if M > mc else ""))
        ax.semilogy(x, np.maximum(f0, 1e-6), "k", lw=2, label="data f_0")
        ax.semilogy(x, np.maximum(fwd.final, 1e-6), "0.6", label=f"forward f(T = {times[-1]:g})")
        ax.semilogy(x, np.maximum(rev.final, 1e-6), "C3--", label="reverse PDE from f_inf")
        if M < mc:  # particles: reverse SDE from samples of the asymptotic state
            Y0 = sample_density(finf, grid, 20000, np.random.default_rng(0))
            sampler = ReverseParticleSampler(fwd, mode="sde", scheme=scheme)
            _, Y = sampler.sample(Y0, times=time_grid(10.0, 600, 2.0), seed=1)
            coarse = BoxGrid(61, 6.0)
            h = histogram_density(Y[-1], coarse, M)
            ax.step(coarse.centers[0], np.maximum(h, 1e-6), where="mid", color="C0",
                    label="reverse SDE, 20000 particles")
            print(f"   reverse-SDE particles: L1 {coarse.integrate(np.abs(h - M * coarse.cell_averages(data))):.4f}")
        ax.set_ylim(1e-4, 100)
        ax.set_xlim(-4, 4)
        ax.set_title(f"M = {M:g} ({'sub' if M < mc else 'super'}critical, m_c = {mc:.3f})")
        ax.legend(fontsize=7)

    clean = 3.0 * grid.cell_averages(data)
    noisy = histogram_density(sample_density(clean, grid, 2000, np.random.default_rng(2)), grid, 3.0)
    res = forward_reverse_filter(noisy, scheme, n_iter=3, horizon=0.02, t_min=0.005, reference=clean)
    print("filtering a 2000-sample histogram, L1 to the clean density per iteration:",
          np.round(res.l1_to_reference, 3))
    axes[2].plot(x, noisy, color="0.7", lw=0.8, label="histogram")
    axes[2].plot(x, clean, "k", lw=2, label="clean")
    axes[2].plot(x, res.iterates[res.best_iteration], "C3", label="filtered")
    axes[2].set_xlim(-3.5, 3.5)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fokker_planck.png", dpi=100)
    print(f"wrote {out / 'fokker_planck.png'} and the netCDF trajectories in {out}")


if __name__ == "__main__":
    main()
