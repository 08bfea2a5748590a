"""Validation of spdekit.fokker_planck; writes docs/fokker_planck.md and docs/figures/fokker_planck/*.png.

    python validation/fokker_planck.py            (about 3-5 minutes on 2 cores)

Every number in the generated document comes from this run. Sections: critical masses; structure preservation
(positivity, mass, exact steady states, consistency); forward dynamics 1D / 2D, sub- and supercritical, with the
condensation diagnostics and the condensate tolerance; the mean-field limit of the particle system; reverse-time
reconstruction (PDE, reverse SDE, probability-flow ODE) with convergence tables; forward-reverse density
filtering 1D / 2D; netCDF export.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spdekit import __version__  # noqa: E402
from spdekit.fokker_planck import (  # noqa: E402
    BoxGrid,
    McKeanVlasovParticles,
    NonlinearFokkerPlanck,
    ReverseParticleSampler,
    ReversePDE,
    StructurePreservingScheme,
    condensate_mass,
    condensation_diagnostics,
    critical_mass,
    discrete_critical_mass,
    discrete_steady_state,
    histogram_density,
    l2_norm,
    mass_in_ball,
    open_density_trajectory,
    origin_cell_mass,
    sample_density,
    simulate_particles,
    theta_for_mass,
    time_grid,
)
from spdekit.fokker_planck.filtering import forward_reverse_filter, total_variation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fokker_planck.md"
FIG = ROOT / "docs" / "figures" / "fokker_planck"
TIMINGS: dict = {}


def timed(name):
    def deco(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            TIMINGS[name] = time.perf_counter() - t0
            print(f"[{name}] {TIMINGS[name]:.1f} s", flush=True)
            return out
        return run
    return deco


def table(header, rows, fmt=None):
    fmt = fmt or ["{}"] * len(header)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(f.format(v) if v is not None else "-" for f, v in zip(fmt, r)) + " |")
    return "\n".join(out)


def orders(errs):
    return [None] + [math.log2(a / b) if a > 0 and b > 0 else None for a, b in zip(errs[:-1], errs[1:])]


def normalised(f, grid, mass):
    """Scale cell averages to the exact mass (the Gaussian tails outside the box are dropped)."""
    return f * (mass / grid.integrate(f))


def gauss_mix(comps):
    def pdf(*coords):  # coords in array-axis order; comps ((x[, y]), std, weight)
        x = coords[::-1]
        out = 0.0
        for c, s, w in comps:
            r2 = sum((xi - ci) ** 2 for xi, ci in zip(x, c))
            out = out + w * np.exp(-r2 / (2 * s * s)) / (2 * math.pi * s * s) ** (len(x) / 2)
        return out
    return pdf


M1D = NonlinearFokkerPlanck(gamma=3.0)  # m_c(1, 3) = 5.872
M2D = NonlinearFokkerPlanck(gamma=2.0)  # m_c(2, 2) = pi^2
TWO_BUMPS = gauss_mix([((-1.5,), 0.4, 0.5), ((1.2,), 0.3, 0.5)])
WIDE = gauss_mix([((0.8,), 1.2, 1.0)])
WIDE_2D = gauss_mix([((0.8, -0.4), 1.0, 1.0)])
THREE_2D = gauss_mix([((-1.2, -0.8), 0.35, 0.4), ((1.0, 0.2), 0.3, 0.35), ((-0.2, 1.3), 0.3, 0.25)])


MODEL_CHOICES = [
    ("equation", "(FP); kappa = 1 is the paper's (reconstructed, see the introduction)",
     "generalised Kaniadakis-Quarati model: Kaniadakis & Quarati, Phys. Rev. E 49 (1994) (gamma = 1, d = 3); "
     "Carrillo, Hopf & Wolfram, Kinet. Relat. Models 13 (2020), eq. (1.1), arXiv:1902.06266; "
     "Carrillo, Hopf & Rodrigo, Adv. Math. 360 (2020) (d = 1)",
     "`NonlinearFokkerPlanck(sigma, lam, gamma, kappa)`; kappa = 0 is the linear OU Fokker-Planck equation "
     "(an exact test case); kappa > 0 rescales to kappa = 1 (f -> kappa^(1/gamma) f)"),
    ("space", "box [-L, L]^d, d = 1, 2, zero-flux walls, cell-centred finite volumes, n odd so that a cell is "
     "centred at 0",
     "the paper works on R^d; the box truncates tails of size exp(-lambda L^2/(2 sigma)) (below 1e-7 for L = 6)",
     "`BoxGrid(n, half_width, dim)` (n and L per axis allowed)"),
    ("steady states", "f_theta(x) = (exp(gamma (lambda abs(x)^2/(2 sigma) + theta)) - kappa)^(-1/gamma), "
     "gamma theta >= log kappa", "zero flux in the gradient-flow form (section 2)",
     "`model.steady_state(x_sq, theta)`, `theta_for_mass`, `discrete_steady_state`"),
    ("critical mass", "m_c = mass of f_0 (theta = log(kappa)/gamma), by radial quadrature; finite iff d gamma > 2",
     "Carrillo-Hopf-Rodrigo 2020 (d = 1); Hopf, arXiv:2107.08531 (d >= 1); f_0 ~ abs(x)^(-2/gamma) near 0",
     "`critical_mass(d, gamma, lam, sigma, kappa)`"),
    ("supercritical limit", "free-energy minimiser f_0 + (M - m_c) delta_0; on a grid the condensate sits in the "
     "origin cell", "Hopf 2021; Carrillo-Hopf-Wolfram 2020 (finite-time condensation)", "-"),
    ("scheme", "Chang-Cooper / Scharfetter-Gummel flux with Pareschi-Zanella quasi-equilibrium weights, in "
     "mobility form (section 2)", "Chang & Cooper, J. Comput. Phys. 6 (1970); Pareschi & Zanella, "
     "J. Sci. Comput. 74 (2018)", "`StructurePreservingScheme(model, grid, backend)`"),
    ("particles", "dX = -lambda X (1 + kappa rho_eps(X)^gamma) dt + sqrt(2 sigma) dW, rho_eps a Gaussian KDE "
     "scaled to M, eps_N = 0.5 N^(-1/5) in the tables",
     "moderately interacting particles: Oelschlaeger, PTRF 82 (1989); Jourdain & Meleard, Ann. IHP 34 (1998); "
     "KDE by linear binning: Wand, JCGS 3 (1994)",
     "`McKeanVlasovParticles(model, mass, epsilon, dim, half_width, mesh_spacing)`"),
    ("particle time stepping", "tamed Euler-Maruyama of spdekit (per-particle taming of the superlinear drift)",
     "Hutzenthaler, Jentzen & Kloeden, Ann. Appl. Probab. 22 (2012)", "`simulate_particles(..., solver=...)`"),
    ("reverse equation", "score form with frozen coefficients (section 7)",
     "time reversal: Anderson, SPA 12 (1982); Haussmann & Pardoux, Ann. Probab. 14 (1986); score and "
     "probability flow: Song et al., ICLR 2021 (eq. 6, 13); stabilisation reconstructed here (section 7)",
     "`ReversePDE`, `ReverseParticleSampler`"),
    ("filtering", "forward for a short horizon, reverse with coefficients frozen at t_min > 0 (section 8)",
     "our reading of the paper's \"density filtering through successive steps\" (its details are not available)",
     "`forward_reverse_filter(f, scheme, n_iter, horizon, t_min)`"),
]


# ============================================================================ 1. theory
@timed("critical masses")
def critical_masses():
    rows = []
    cases = ((2, 2, 1, 1, "pi^2 = 9.869604401089358"), (1, 3, 1, 1, "5.872"), (1, 4, 1, 1, "3.997"),
             (3, 1, 1, 1, "(3D Kaniadakis-Quarati)"), (1, 2.5, 1, 1, ""), (1, 3, 2, 0.5, "= 5.8721 / 2"),
             (1, 2, 1, 1, "d gamma = 2: infinite"), (2, 1, 1, 1, "d gamma = 2: infinite"))
    for d, g, lam, sig, ref in cases:
        mc = critical_mass(d, g, lam, sig)
        rows.append((d, g, lam, sig, "inf" if math.isinf(mc) else f"{mc:.12f}", ref))
    return rows


# ============================================================================ 2. structure preservation
@timed("structure preservation")
def structure():
    res = {}
    # positivity + mass over 10^4 steps
    rows = []
    for dim, grid, M in ((1, BoxGrid(201, 6.0), 5.5), (2, BoxGrid(21, 4.0, dim=2), 9.0)):
        model = M1D if dim == 1 else M2D
        scheme = StructurePreservingScheme(model, grid)
        f0 = grid.cell_averages(gauss_mix([((1.0,) * dim, 0.5, 1.0)]))
        f0[..., :5] = 0.0
        f0 *= M / grid.integrate(f0)
        for method in ("explicit", "semi-implicit", "implicit"):
            n = 10_000 if method != "implicit" else 2_000
            f, worst, fmin, t = f0.copy(), 0.0, math.inf, 0.0
            for _ in range(n):
                dt = 0.95 * scheme.positivity_dt(f) if method == "explicit" else 0.05
                f = scheme.step(f, dt, method)
                t += dt
                worst = max(worst, abs(grid.integrate(f) - M) / M)
                fmin = min(fmin, float(f.min()))
            rows.append((dim, str(grid.shape), method, n, f"{t:.3g}", f"{fmin:.2e}", f"{worst:.1e}"))
    res["conservation"] = rows
    # exact steady states
    rows = []
    for dim, gamma, M, grid in ((1, 3.0, 3.0, BoxGrid(201, 6.0)), (1, 3.0, 9.0, BoxGrid(201, 6.0)),
                                (1, 4.0, 2.0, BoxGrid(201, 6.0)), (2, 2.0, 6.0, BoxGrid(41, 5.0, dim=2)),
                                (2, 2.0, 14.0, BoxGrid(41, 5.0, dim=2))):
        model = NonlinearFokkerPlanck(gamma=gamma)
        scheme = StructurePreservingScheme(model, grid)
        f, theta = discrete_steady_state(grid, model, M)
        coefs = scheme.face_coefficients(f)
        scale = max(float((b * np.delete(f, -1, axis=k)).max()) for k, (a, b) in enumerate(coefs))
        r = float(np.abs(scheme.rhs(f)).max()) / scale
        g1 = scheme.step(f, 0.5, "implicit")
        rounding = np.finfo(float).eps * (1 + 0.5 / scheme.positivity_dt(f))
        rows.append((dim, gamma, M, f"{theta:.3e}", f"{r:.1e}", f"{np.abs(g1 - f).max() / f.max():.1e}",
                     f"{rounding:.1e}"))
    res["steady"] = rows
    # consistency of the flux off equilibrium
    model = NonlinearFokkerPlanck(sigma=0.9, lam=1.2, gamma=3.0)
    errs = []
    for n in (81, 161, 321, 641):
        grid = BoxGrid(n, 4.0)
        x = grid.centers[0]
        f = 1.3 * np.exp(-((x - 0.4) ** 2) / 1.0)
        fp, fpp = -(x - 0.4) / 0.5 * f, ((x - 0.4) ** 2 / 0.25 - 2.0) * f
        div = 0.9 * fpp + 1.2 * f * (1 + f**3) + 1.2 * x * fp * (1 + 4 * f**3)
        errs.append(float(np.abs(StructurePreservingScheme(model, grid).rhs(f) - div).max()))
    res["consistency"] = list(zip((81, 161, 321, 641), errs, orders(errs)))
    return res


# ============================================================================ 3. forward dynamics 1D
@timed("forward 1D")
def forward_1d():
    res = {}
    grid = BoxGrid(801, 6.0)
    scheme = StructurePreservingScheme(M1D, grid)
    runs = {}
    for M in (4.0, 8.0):
        f0 = normalised(grid.cell_averages(WIDE), grid, M)
        runs[M] = scheme.solve(f0, 15.0, 0.01, method="implicit", save_every=1)
    res["runs"] = runs
    # figure: profiles
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    x = grid.centers[0]
    for ax, M in zip(axes, (4.0, 8.0)):
        tr = runs[M]
        for t in (0, 0.1, 0.25, 0.5, 1, 2, 15):
            k = int(np.argmin(np.abs(tr.times - t)))
            ax.semilogy(x, np.maximum(tr.densities[k], 1e-6), label=f"t = {tr.times[k]:g}")
        th, _ = theta_for_mass(min(M, 5.8721), 1, M1D)
        if M < 5.872:
            ax.semilogy(x, M1D.steady_state(x * x, th), "k--", lw=1, label="f_theta (mass M)")
        else:
            ax.semilogy(x[x != 0], M1D.steady_state(x[x != 0] ** 2, 0.0), "k--", lw=1, label="f_0 (critical)")
        ax.set_title(f"d = 1, gamma = 3, M = {M:g} ({'sub' if M < 5.872 else 'super'}critical, m_c = 5.872)")
        ax.set_xlabel("x")
        ax.set_ylim(1e-4, 200)
        ax.set_xlim(-4, 4)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("f(t, x)")
    fig.tight_layout()
    fig.savefig(FIG / "profiles_1d.png", dpi=110)
    plt.close(fig)
    # condensation diagnostics figure
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for M, style in ((4.0, "--"), (8.0, "-")):
        tr = runs[M]
        axes[0].semilogy(tr.times, l2_norm(tr.densities, grid), style, label=f"M = {M:g}")
    axes[0].set_xlabel("t")
    axes[0].set_ylabel("||f(t)||_L2")
    axes[0].set_xscale("symlog", linthresh=0.1)
    axes[0].set_xlim(0, tr.times[-1])
    axes[0].legend()
    tr = runs[8.0]
    h = grid.spacing[0]
    for r in (1.0, 0.5, 0.25, 0.1, 0.0):
        label = f"mass in B(0, {r:g})" if r else "origin cell"
        axes[1].plot(tr.times, mass_in_ball(tr.densities, grid, r), label=label)
    axes[1].axhline(8.0 - critical_mass(1, 3), color="k", ls=":", label="M - m_c")
    axes[1].set_xscale("symlog", linthresh=0.1)
    axes[1].set_xlim(0, tr.times[-1])
    axes[1].set_xlabel("t")
    axes[1].legend(fontsize=7)
    axes[1].set_title(f"M = 8, shrinking balls (h = {h:.4f})")
    fig.tight_layout()
    fig.savefig(FIG / "condensation_1d.png", dpi=110)
    plt.close(fig)
    # condensate vs grid
    rows = []
    mc = critical_mass(1, 3)
    for n in (101, 201, 401, 801, 1601):
        g = BoxGrid(n, 6.0)
        sc = StructurePreservingScheme(M1D, g)
        f0 = normalised(g.cell_averages(WIDE), g, 8.0)
        tr = sc.solve(f0, 15.0, 0.01, method="implicit", save_every=2)
        d = condensation_diagnostics(tr, l2_threshold=3 * float(l2_norm(f0, g)))
        mch = discrete_critical_mass(g, M1D)
        rows.append((n, g.spacing[0], origin_cell_mass(tr.final, g), 8.0 - mch, 8.0 - mc, mc - mch,
                     condensate_mass(tr.final, g, M1D, 0.5), d["l2_threshold_time"],
                     float(abs(g.integrate(tr.final) - 8.0) / 8.0)))
    res["condensate"] = rows
    # the semi-implicit lag
    rows = []
    g = BoxGrid(201, 6.0)
    sc = StructurePreservingScheme(M1D, g)
    f0 = normalised(g.cell_averages(WIDE), g, 8.0)
    for method, dt in (("semi-implicit", 0.05), ("semi-implicit", 0.01), ("semi-implicit", 0.002),
                       ("semi-implicit", 0.0005), ("implicit", 0.05), ("implicit", 0.01), ("implicit", 0.002)):
        tr = sc.solve(f0, 3.0, dt, method=method, save_every=int(round(1.0 / dt)))
        rows.append((method, dt, *[float(origin_cell_mass(f, g)) for f in tr.densities[1:]]))
    res["lag"] = rows
    return res


# ============================================================================ 4. forward dynamics 2D
@timed("forward 2D")
def forward_2d():
    res = {}
    grid = BoxGrid(61, 5.0, dim=2)
    scheme = StructurePreservingScheme(M2D, grid)
    runs = {}
    for M in (6.0, 14.0):
        runs[M] = scheme.solve(normalised(grid.cell_averages(WIDE_2D), grid, M), 6.0, 0.02, method="implicit",
                               save_every=5)
    times = (0.0, 0.2, 1.0, 6.0)
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.2))
    L = grid.half_width[0]
    for row, M in enumerate((6.0, 14.0)):
        tr = runs[M]
        for col, t in enumerate(times):
            k = int(np.argmin(np.abs(tr.times - t)))
            im = axes[row, col].imshow(np.log10(np.maximum(tr.densities[k], 1e-4)), origin="lower",
                                       extent=(-L, L, -L, L), vmin=-4, vmax=2.5, cmap="magma")
            axes[row, col].set_title(f"M = {M:g}, t = {tr.times[k]:g}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="log10 f")
    fig.savefig(FIG / "snapshots_2d.png", dpi=100)
    plt.close(fig)
    res["runs"] = runs
    rows = []
    for n in (41, 61, 81):
        g = BoxGrid(n, 5.0, dim=2)
        tr = StructurePreservingScheme(M2D, g).solve_on(normalised(g.cell_averages(WIDE_2D), g, 14.0),
                                                        time_grid(12.0, 150, 2.0))
        d = condensation_diagnostics(tr, l2_threshold=3 * float(l2_norm(tr.densities[0], g)))
        mch = discrete_critical_mass(g, M2D)
        rows.append((n, g.spacing[0], origin_cell_mass(tr.final, g), 14.0 - mch, 14.0 - math.pi**2, math.pi**2 - mch,
                     condensate_mass(tr.final, g, M2D, 1.0), d["l2_threshold_time"],
                     float(abs(g.integrate(tr.final) - 14.0) / 14.0)))
    res["condensate"] = rows
    return res


# ============================================================================ 5. mean-field limit
@timed("mean-field limit")
def mean_field():
    M, T, L = 4.0, 1.0, 6.0
    fine = BoxGrid(61 * 9, L)
    coarse = BoxGrid(61, L)
    f0 = M * fine.cell_averages(TWO_BUMPS)
    fT = StructurePreservingScheme(M1D, fine).solve(f0, T, 1e-3, method="implicit").final
    fT_c = fT.reshape(61, 9).mean(axis=1)
    rows, hists = [], {}
    for N in (1_000, 10_000, 100_000):
        rng = np.random.default_rng(N)
        X0 = sample_density(f0, fine, N, rng)
        eps = 0.5 * N ** (-0.2)
        prob = McKeanVlasovParticles(M1D, M, eps, dim=1, half_width=L)
        t0 = time.perf_counter()
        XT = simulate_particles(prob, X0, T, 1e-3, seed=N + 1).final
        wall = time.perf_counter() - t0
        h = histogram_density(XT, coarse, M)
        hists[N] = h
        iid = histogram_density(sample_density(fT, fine, N, rng), coarse, M)
        rows.append((N, eps, float(coarse.integrate(np.abs(h - fT_c))), float(coarse.integrate(np.abs(iid - fT_c))),
                     wall))
    l1 = [r[2] for r in rows]
    rows = [r + (o if o is None else o / math.log2(10),) for r, o in zip(rows, orders(l1))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(fine.centers[0], fT, "k", lw=2, label="PDE f(T)")
    for N, h in hists.items():
        ax.step(coarse.centers[0], h, where="mid", label=f"particles N = {N:,}")
    ax.set_xlim(-4, 4)
    ax.set_xlabel("x")
    ax.set_title(f"mean-field limit: d = 1, gamma = 3, M = {M:g}, T = {T:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIG / "meanfield_1d.png", dpi=110)
    plt.close(fig)
    return rows


# ============================================================================ 6. reconstruction
def _reverse_error(n, K, M, pdf, T=8.0, grading=3.0):
    grid = BoxGrid(n, 6.0)
    scheme = StructurePreservingScheme(M1D, grid)
    f0 = M * grid.cell_averages(pdf)
    fwd = scheme.solve_on(f0, time_grid(T, K, grading))
    finf, _ = discrete_steady_state(grid, M1D, M)
    rev = ReversePDE(fwd, scheme).solve(finf)
    return grid, scheme, f0, fwd, finf, rev, float(grid.integrate(np.abs(rev.final - f0)))


@timed("reconstruction")
def reconstruction():
    res = {}
    M = 4.0
    joint = [(61, 50), (121, 100), (241, 200), (481, 400), (961, 800)]
    errs = []
    for n, K in joint:
        *_, e = _reverse_error(n, K, M, TWO_BUMPS)
        errs.append(e)
    res["joint"] = [(n, 12.0 / n, K, e, o) for (n, K), e, o in zip(joint, errs, orders(errs))]
    errs = [_reverse_error(n, 800, M, TWO_BUMPS)[-1] for n in (121, 241, 481, 961)]
    res["space"] = [(n, 800, e, o) for n, e, o in zip((121, 241, 481, 961), errs, orders(errs))]
    errs = [_reverse_error(961, K, M, TWO_BUMPS)[-1] for K in (100, 200, 400, 800)]
    res["time"] = [(961, K, e, o) for K, e, o in zip((100, 200, 400, 800), errs, orders(errs))]
    # exact step inversion check
    grid = BoxGrid(241, 6.0)
    scheme = StructurePreservingScheme(M1D, grid)
    f0 = M * grid.cell_averages(TWO_BUMPS)
    fwd = scheme.solve(f0, 2.0, 0.01, method="implicit", save_every=1)
    rev = ReversePDE(fwd, scheme, coefficients="step").solve(fwd.final)
    res["step_exact"] = float(grid.integrate(np.abs(rev.final - f0)))
    # supercritical
    errs, sup = [], None
    levels = [(121, 200), (241, 400), (481, 800), (961, 1600)]
    for n, K in levels:
        out = _reverse_error(n, K, 8.0, WIDE, T=12.0)
        errs.append(out[-1])
        if n == 481:
            sup = out
    res["super"] = [(n, K, e, o) for (n, K), e, o in zip(levels, errs, orders(errs))]
    # particle samplers (subcritical, n = 481, K = 400) and the learned-score hook fed with the PDE score
    grid, scheme, f0, fwd, finf, rev, e_pde = _reverse_error(481, 400, M, TWO_BUMPS)
    coarse = BoxGrid(61, 6.0)
    f0c = M * coarse.cell_averages(TWO_BUMPS)
    rows, hists = [], {}
    tg = time_grid(8.0, 1000, 2.0)
    for N in (10_000, 100_000):
        rng = np.random.default_rng(N)
        Y0 = sample_density(finf, grid, N, rng)
        floor = float(coarse.integrate(np.abs(histogram_density(sample_density(f0, grid, N, rng), coarse, M) - f0c)))
        base = ReverseParticleSampler(fwd, mode="sde", scheme=scheme)
        ode = ReverseParticleSampler(fwd, mode="ode", scheme=scheme)
        hook = ReverseParticleSampler(fwd, mode="sde", scheme=scheme, score=base.pde_score, density=base.pde_density)
        for label, smp in (("reverse SDE (PDE face fields)", base), ("probability-flow ODE (PDE face fields)", ode),
                           ("reverse SDE, score hook fed with pde_score", hook)):
            t0 = time.perf_counter()
            Y = smp.sample(Y0, times=tg, seed=N + 7)[1][-1]
            wall = time.perf_counter() - t0
            h = histogram_density(Y, coarse, M)
            hists[(label, N)] = h
            rows.append((label, N, float(coarse.integrate(np.abs(h - f0c))), floor, wall))
    res["particles"] = rows
    res["pde_481"] = e_pde
    res["start_l1"] = float(grid.integrate(np.abs(finf - f0)))
    # figure
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = grid.centers[0]
    ax = axes[0]
    ax.plot(x, f0, "k", lw=2, label="f_0 (data)")
    ax.plot(x, finf, "0.6", label="asymptotic state f_inf (start)")
    ax.plot(x, rev.final, "C3--", label=f"reverse PDE (L1 {e_pde:.3f})")
    ax.set_xlim(-4, 4)
    ax.set_title("subcritical M = 4: reverse PDE, n = 481, 400 graded steps")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(coarse.centers[0], f0c, "k", lw=2, label="f_0 (bins)")
    for label, N in ((rows[3][0], 100_000), (rows[4][0], 100_000), (rows[5][0], 100_000)):
        ax.step(coarse.centers[0], hists[(label, N)], where="mid", label=label)
    ax.set_xlim(-4, 4)
    ax.set_title("particle samplers, N = 100,000")
    ax.legend(fontsize=7)
    ax = axes[2]
    g2, _, f0s, fwds, finfs, revs, es = sup
    ax.semilogy(g2.centers[0], np.maximum(f0s, 1e-5), "k", lw=2, label="f_0 (M = 8)")
    ax.semilogy(g2.centers[0], np.maximum(finfs, 1e-5), "0.6", label="condensed f_inf (start)")
    ax.semilogy(g2.centers[0], np.maximum(revs.final, 1e-5), "C3--", label=f"reverse PDE (L1 {es:.3f})")
    ax.set_xlim(-5, 5)
    ax.set_ylim(1e-4, 200)
    ax.set_title("supercritical M = 8: un-condensing, n = 481")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIG / "reconstruction_1d.png", dpi=110)
    plt.close(fig)
    # 2D
    grid = BoxGrid(61, 4.0, dim=2)
    scheme = StructurePreservingScheme(M2D, grid)
    f0 = 6.0 * grid.cell_averages(THREE_2D)
    fwd = scheme.solve_on(f0, time_grid(6.0, 120, 3.0))
    finf, _ = discrete_steady_state(grid, M2D, 6.0)
    rev = ReversePDE(fwd, scheme).solve(finf)
    res["2d"] = (float(grid.integrate(np.abs(rev.final - f0))), float(grid.integrate(np.abs(finf - f0))))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    L = grid.half_width[0]
    panels = (("f_0", f0), ("asymptotic state f_inf", finf), ("reverse PDE from f_inf", rev.final))
    for ax, (title, f) in zip(axes, panels):
        im = ax.imshow(f, origin="lower", extent=(-L, L, -L, L), vmin=0, vmax=f0.max(), cmap="viridis")
        ax.set_title(title)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(FIG / "reconstruction_2d.png", dpi=100)
    plt.close(fig)
    return res


# ============================================================================ 7. filtering
@timed("filtering")
def filtering():
    res = {}
    grid = BoxGrid(241, 6.0)
    clean = 3.0 * grid.cell_averages(TWO_BUMPS)
    scheme = StructurePreservingScheme(M1D, grid)
    rng = np.random.default_rng(0)
    noisy = np.maximum(clean * (1 + 0.5 * rng.standard_normal(grid.shape)), 0.0)
    noisy *= 3.0 / grid.integrate(noisy)
    hist = histogram_density(sample_density(clean, grid, 2000, rng), grid, 3.0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = grid.centers[0]
    for ax, (name, f_in) in zip(axes, (("multiplicative noise 50 %", noisy), ("histogram of 2000 samples", hist))):
        r = forward_reverse_filter(f_in, scheme, n_iter=6, horizon=0.02, t_min=0.005, reference=clean)
        fwd_only = scheme.solve_on(f_in, time_grid(0.02, 20)).final
        res[name] = (r, float(grid.integrate(np.abs(fwd_only - clean))), total_variation(clean, grid))
        ax.plot(x, f_in, color="0.75", lw=0.8, label="input")
        ax.plot(x, clean, "k", lw=2, label="clean")
        ax.plot(x, r.iterates[1], "C3", label=f"1 iteration (L1 {r.l1_to_reference[1]:.3f})")
        ax.plot(x, fwd_only, "C0--", label=f"forward only, same horizon (L1 {res[name][1]:.3f})")
        ax.set_xlim(-3.5, 3.5)
        ax.set_title(name)
        ax.legend(fontsize=7)
    for name, style in (("multiplicative noise 50 %", "o-"), ("histogram of 2000 samples", "s-")):
        axes[2].plot(res[name][0].l1_to_reference, style, label=name)
    grid2 = BoxGrid(61, 4.0, dim=2)
    clean2 = 5.0 * grid2.cell_averages(THREE_2D)
    hist2 = histogram_density(sample_density(clean2, grid2, 20000, np.random.default_rng(1)), grid2, 5.0)
    r2 = forward_reverse_filter(hist2, StructurePreservingScheme(M2D, grid2), n_iter=6, horizon=0.02, t_min=0.01,
                                reference=clean2)
    res["2d"] = (r2, total_variation(clean2, grid2))
    axes[2].plot(r2.l1_to_reference, "^-", label="2D histogram of 20000 samples")
    axes[2].set_xlabel("iteration")
    axes[2].set_ylabel("L1 to the clean density")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIG / "filtering_1d.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    L = grid2.half_width[0]
    best = r2.best_iteration
    for ax, (title, f) in zip(axes, (("clean", clean2), ("histogram (20000 samples)", hist2),
                                     (f"filtered, {best} iteration(s)", r2.iterates[best]))):
        im = ax.imshow(f, origin="lower", extent=(-L, L, -L, L), vmin=0, vmax=clean2.max() * 1.2, cmap="viridis")
        ax.set_title(title)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(FIG / "filtering_2d.png", dpi=100)
    plt.close(fig)
    return res


# ============================================================================ 8. netCDF
@timed("netCDF export")
def netcdf(traj):
    with tempfile.TemporaryDirectory() as tmp:
        path = traj.to_netcdf(Path(tmp) / "supercritical_1d.nc")
        size = os.path.getsize(path)
        back = open_density_trajectory(path)
        same = bool(np.array_equal(back.densities, traj.densities) and np.array_equal(back.times, traj.times))
    return size, same, traj.densities.shape


# ============================================================================ document
def main():
    FIG.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    mcs = critical_masses()
    sp = structure()
    f1 = forward_1d()
    f2 = forward_2d()
    mf = mean_field()
    rc = reconstruction()
    ft = filtering()
    nc = netcdf(f1["runs"][8.0])
    total = time.perf_counter() - t_start
    text = render(mcs, sp, f1, f2, mf, rc, ft, nc, total)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)} and {len(list(FIG.glob('*.png')))} figures in {total:.0f} s")


def render(mcs, sp, f1, f2, mf, rc, ft, nc, total):
    tables = {
        "choices": table(["choice", "what the code does", "source", "to change it"], MODEL_CHOICES),
        "critical_masses": table(["d", "gamma", "lambda", "sigma", "m_c by quadrature", "reference"], mcs),
        "conservation": table(["d", "grid", "method", "steps", "final t", "min f over all steps",
                               "max relative mass error"], sp["conservation"]),
        "steady": table(["d", "gamma", "M", "theta", "max abs(A(f_theta) f_theta) / largest face term",
                         "max abs(implicit step - f_theta) / max f (dt = 0.5)", "rounding scale eps (1 + dt max rate)"],
                        sp["steady"]),
        "consistency": table(["n", "max error of A(f) f against div J", "observed order"], sp["consistency"],
                             ["{}", "{:.3e}", "{:.2f}"]),
        "condensate_1d": table(["n", "h", "origin cell mass", "M - m_c,h", "M - m_c", "m_c - m_c,h",
                                "estimator (r = 0.5)", "t(L2 = 3 L2(0))", "mass error"], f1["condensate"],
                               ["{}", "{:.4f}", "{:.5f}", "{:.5f}", "{:.5f}", "{:.4f}", "{:.6f}", "{:.3f}",
                                "{:.1e}"]),
        "condensate_2d": table(["n", "h", "origin cell mass", "M - m_c,h", "M - m_c", "m_c - m_c,h",
                                "estimator (r = 1)", "t(L2 = 3 L2(0))", "mass error"], f2["condensate"],
                               ["{}", "{:.4f}", "{:.5f}", "{:.5f}", "{:.5f}", "{:.4f}", "{:.5f}", "{:.3f}",
                                "{:.1e}"]),
        "lag": table(["method", "dt", "origin mass t = 1", "t = 2", "t = 3"], f1["lag"],
                     ["{}", "{}", "{:.4f}", "{:.4f}", "{:.4f}"]),
        "meanfield": table(["N", "eps = 0.5 N^(-1/5)", "L1(particles, PDE)", "L1(N i.i.d. samples of f(T), f(T))",
                            "wall s", "observed rate in N"], mf,
                           ["{:,}", "{:.4f}", "{:.4f}", "{:.4f}", "{:.1f}", "{:.2f}"]),
        "rec_joint": table(["n cells", "h", "steps K (graded)", "L1(g(T), f_0)", "observed order"], rc["joint"],
                           ["{}", "{:.4f}", "{}", "{:.4f}", "{:.2f}"]),
        "rec_space": table(["n cells", "steps K", "L1", "observed order"], rc["space"],
                           ["{}", "{}", "{:.4f}", "{:.2f}"]),
        "rec_time": table(["n cells", "steps K", "L1", "observed order"], rc["time"], ["{}", "{}", "{:.4f}", "{:.2f}"]),
        "rec_super": table(["n cells", "steps K", "L1(g(T), f_0)", "observed order"], rc["super"],
                           ["{}", "{}", "{:.4f}", "{:.2f}"]),
        "rec_particles": table(["sampler", "N", "L1 to f_0 (61 bins)", "L1 of N i.i.d. samples of f_0", "wall s"],
                               rc["particles"], ["{}", "{:,}", "{:.4f}", "{:.4f}", "{:.1f}"]),
    }
    filt_rows = []
    for name in ("multiplicative noise 50 %", "histogram of 2000 samples"):
        r, fwd_l1, tvc = ft[name]
        filt_rows.append(("1D " + name, *[f"{v:.3f}" for v in r.l1_to_reference], f"{fwd_l1:.3f}"))
        filt_rows.append((f"  total variation (clean: {tvc:.2f})", *[f"{v:.2f}" for v in r.total_variation], ""))
    r2, tvc2 = ft["2d"]
    filt_rows.append(("2D histogram of 20000 samples", *[f"{v:.3f}" for v in r2.l1_to_reference], ""))
    filt_rows.append((f"  total variation (clean: {tvc2:.2f})", *[f"{v:.2f}" for v in r2.total_variation], ""))
    tables["filtering"] = table(["input", "L1 it. 0 (input)", "1", "2", "3", "4", "5", "6", "forward only"], filt_rows)
    timing = table(["section", "wall s"], [(k, f"{v:.1f}") for k, v in TIMINGS.items()] + [("total", f"{total:.1f}")])
    cond = f1["condensate"]
    est_err = [abs(r[6] - r[4]) for r in cond]
    values = dict(
        gap_1d=f"{max(r[2] - r[3] for r in cond):.1e}", est_coarse=f"{est_err[0]:.1e}", est_fine=f"{est_err[-1]:.1e}",
        est_orders=", ".join(f"{o:.2f}" for o in orders(est_err)[1:]), pde_481=f"{rc['pde_481']:.3f}",
        version=__version__, python=sys.version.split()[0], timing=timing,
        step_exact=f"{rc['step_exact']:.1e}", rec2d=f"{rc['2d'][0]:.3f}", rec2d_start=f"{rc['2d'][1]:.3f}",
        rec_start=f"{rc['start_l1']:.3f}", nc_size=f"{nc[0] / 1024:.0f} KiB", nc_same="yes" if nc[1] else "NO",
        nc_shape=str(nc[2]), **tables,
    )
    return BODY.format(**values)


# the document around the numbers: str.format fields {name}; literal braces are doubled
BODY = (Path(__file__).resolve().parent / "fokker_planck_template.md").read_text()


if __name__ == "__main__":
    main()
