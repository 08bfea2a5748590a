"""Strong and weak convergence orders, estimated on nested step ladders that share one Brownian path.

For a ladder dt_1 > dt_2 > ... (each a multiple of the smallest), every path p is integrated once
per dt on the SAME Brownian path (:class:`spdekit.BrownianPath`: coarse increments are sums of
the fine ones), and compared at the final time T with a reference X_ref on that path:

* the exact solution when the problem has one (``problem.exact_step``, :mod:`spdekit.problems`);
* otherwise the same solver at a much finer step ``ref_dt`` (default min(dt) / 16).

Errors (per path p, ||.|| = root mean square over the non-batch axes, |.| for scalar states):

    strong(dt)     = sqrt( mean_p ||X_dt(T) - X_ref(T)||^2 )                          (RMS over paths)
    strong_max(dt) = sqrt( mean_p max_n ||X_dt(t_n) - X_ref(t_n)||^2 )   (optional, on the dt grid)
    weak(dt)       = | mean_p ( phi(X_dt(T)) - phi(X_ref(T)) ) |          (coupled estimator)

The coupled weak estimator uses the same paths for X_dt and X_ref, so its Monte Carlo noise is
of the size of the strong error / sqrt(n_paths), not of the spread of phi(X).

The order is the least-squares slope of log(error) against log(dt). Its confidence interval is
a percentile bootstrap over paths: the paths are resampled with replacement, the errors of every
dt recomputed from the resampled paths (keeping the coupling between dts) and the slope refitted.
This interval covers the Monte Carlo uncertainty of the errors; it does not cover a bias from a
ladder that is not yet in the asymptotic regime (curvature of the log-log line), which the
regression's standard error (also reported) reflects.

All dts are stepped in lockstep, in one sweep over the path, so each block of finest increments is
generated once (see :mod:`spdekit.brownian` for the memory/time tradeoff). A step is
``solver.step(problem, t, u, dt, dW, backend=...)``, the very call :func:`spdekit.simulate`
makes with ``brownian=path``, so the two give identical states. Stiff-stable solvers
(:class:`spdekit.LinearlyImplicitTheta`, :class:`spdekit.AOSEulerMaruyama`) take dts above the explicit
stability bound without a warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ._checks import check_choice, check_int, check_positive
from .brownian import BrownianPath
from .simulate import n_steps_for
from .solvers import Solver

REFERENCES = ("auto", "exact", "fine")
PHIS = ("square", "identity")


# ---------------------------------------------------------------------- fits


@dataclass(frozen=True)
class OrderFit:
    """A fitted convergence order: slope of log(error) vs log(dt) and its confidence interval."""

    order: float
    ci_low: float
    ci_high: float
    intercept: float  #: log(error) = intercept + order * log(dt)
    stderr: float  #: the regression's standard error of the slope
    confidence: float
    method: str
    n_points: int

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def within(self, value: float, tol: float) -> bool:
        """True when the point estimate lies in [value - tol, value + tol]."""
        return abs(self.order - value) <= tol

    def __str__(self) -> str:
        return f"{self.order:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


def fit_order(dts, errors) -> tuple[float, float, float]:
    """Least-squares line log(err) = a + p log(dt). Returns (p, a, standard error of p)."""
    x = np.log(np.asarray(dts, dtype=np.float64))
    y = np.log(np.asarray(errors, dtype=np.float64))
    if x.size < 2:
        raise ValueError(f"need at least two (dt, error) points to fit an order, got {x.size}")
    A = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    a, p = float(coef[0]), float(coef[1])
    if x.size > 2:
        resid = y - (a + p * x)
        s2 = float(resid @ resid) / (x.size - 2)
        se = float(np.sqrt(s2 / ((x - x.mean()) @ (x - x.mean()))))
    else:
        se = float("nan")
    return p, a, se


def _errors_from_means(m, kind):
    return np.sqrt(m) if kind == "strong" else np.abs(m)


def _errors_from_paths(per_path, kind):
    """Errors per dt from per-path values (n_paths, n_dt)."""
    return _errors_from_means(per_path.mean(axis=0), kind)


def bootstrap_order(dts, per_path, kind: str = "strong", n_boot: int = 2000, confidence: float = 0.95,
                    seed=12345, max_groups: int = 4096) -> OrderFit:
    """Order and percentile-bootstrap CI from per-path values (n_paths, n_dt).

    ``kind="strong"``: per_path holds squared errors, error = sqrt(mean); ``kind="weak"``: per_path
    holds phi differences, error = |mean|. Only dts with a finite, positive error enter the fit.

    Each resample draws paths with replacement (multinomial counts), recomputes the errors of all
    dts from the same resample and refits the slope. With more than ``max_groups`` paths, the
    i.i.d. paths are first pooled into ``max_groups`` groups (path i in group i mod max_groups) and
    the groups are resampled: the same bootstrap for i.i.d. data at a cost independent of n_paths.
    """
    check_choice("kind", kind, ("strong", "weak"))
    dts = np.asarray(dts, dtype=np.float64)
    per_path = np.asarray(per_path, dtype=np.float64)
    err = _errors_from_paths(per_path, kind)
    keep = np.isfinite(err) & (err > 0)
    if keep.sum() < 2:
        raise ValueError(f"fewer than two dts with a finite, positive {kind} error: {err}")
    dts, per_path, err = dts[keep], per_path[:, keep], err[keep]
    p, a, se = fit_order(dts, err)
    n = per_path.shape[0]
    g = min(n, check_int("max_groups", max_groups, minimum=2))
    sums = np.zeros((g, per_path.shape[1]))
    np.add.at(sums, np.arange(n) % g, per_path)
    counts = np.bincount(np.arange(n) % g, minlength=g).astype(np.float64)
    rng = np.random.default_rng(seed)
    x = np.log(dts)
    xc = x - x.mean()
    slopes = []
    chunk = max(1, min(n_boot, 2**22 // g))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, g, size=(b, g)) + g * np.arange(b)[:, None]
        w = np.bincount(idx.ravel(), minlength=b * g).reshape(b, g).astype(np.float64)  # multinomial counts
        e = _errors_from_means((w @ sums) / (w @ counts)[:, None], kind)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(e)
        slopes.append((y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc))
        done += b
    slopes = np.concatenate(slopes)
    slopes = slopes[np.isfinite(slopes)]
    q = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(slopes, [q, 1.0 - q])
    unit = "paths" if g == n else f"paths, pooled in {g} groups"
    return OrderFit(order=p, ci_low=float(lo), ci_high=float(hi), intercept=a, stderr=se,
                    confidence=confidence, method=f"percentile bootstrap over {unit} ({slopes.size} resamples)",
                    n_points=int(dts.size))


# ---------------------------------------------------------------------- the ladder run


def _phi_fn(phi):
    if callable(phi):
        return phi
    check_choice("phi", phi, PHIS)

    def f(u):
        v = np.asarray(u, dtype=np.float64).reshape(u.shape[0], -1)
        return (v * v).mean(axis=1) if phi == "square" else v.mean(axis=1)

    f.__name__ = phi
    return f


def _per_path_sq(a, b):
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).reshape(a.shape[0], -1)
    return (d * d).mean(axis=1)


def _ratio(a, b, what):
    r = a / b
    k = round(r)
    if k < 1 or abs(r - k) > 1e-6 * r:
        raise ValueError(f"{what}: {a:g} is not an integer multiple of {b:g}")
    return int(k)


def run_ladder(problem, u0, t0: float, t1: float, dts, solver: Solver, *, n_paths: int | None = None,
               reference: str = "auto", ref_dt: float | None = None, ref_factor: int = 16, seed=0,
               phi="square", max_over_time: bool = False, backend: str = "auto", path=None,
               progress: bool = False) -> dict:
    """Integrate ``problem`` from u0 on every dt of the ladder (and the reference) on one path.

    Returns a dict of numpy arrays: ``dt`` (descending), ``sq_error`` (n_paths, n_dt) squared
    per-path final errors, ``sq_error_max`` (or None), ``phi_diff`` (n_paths, n_dt),
    ``diverged`` (n_dt,) fraction of non-finite paths, ``final`` list of final states per dt,
    ``reference_final``, and the run description. See :func:`convergence_study`.
    """
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be an spdekit Solver, got {type(solver).__name__}")
    check_choice("reference", reference, REFERENCES)
    u0 = np.asarray(u0)
    if n_paths is not None:
        n_paths = check_int("n_paths", n_paths, minimum=2)
        u0 = np.broadcast_to(u0, (n_paths,) + u0.shape).copy()
    if u0.ndim < 1 or u0.shape[0] < 2:
        raise ValueError(f"u0 must have a batch axis first with at least 2 paths, got shape {u0.shape}; "
                         f"pass n_paths= to replicate one initial state")
    if not np.issubdtype(u0.dtype, np.floating):
        u0 = u0.astype(np.float64)
    dts = sorted({float(check_positive("dt", d)) for d in dts}, reverse=True)
    if len(dts) < 2:
        raise ValueError(f"dts must hold at least two distinct step sizes, got {dts}")
    for d in dts:
        n_steps_for(t0, t1, d)
    exact_step = getattr(problem, "exact_step", None)
    if reference == "auto":
        reference = "exact" if callable(exact_step) else "fine"
    if reference == "exact" and not callable(exact_step):
        raise ValueError(f"reference='exact' needs a problem with exact_step; {problem!r} has none")
    dt_f = dts[-1]
    if reference == "exact":
        ref_dt = dt_f
    else:
        ref_dt = dt_f / check_int("ref_factor", ref_factor, minimum=2) if ref_dt is None else float(ref_dt)
        if ref_dt >= dt_f:
            raise ValueError(f"ref_dt={ref_dt:g} must be smaller than the smallest dt {dt_f:g}")
    m_f = _ratio(dt_f, ref_dt, "smallest dt vs ref_dt")
    ratios = [_ratio(d, dt_f, "dt vs the smallest dt") for d in dts]
    n_f = n_steps_for(t0, t1, dt_f)
    if hasattr(problem, "check_state") and u0.ndim == 4:
        problem.check_state(u0)
    if hasattr(problem, "check_dt") and not getattr(solver, "stiff_stable", False):
        for d in dts + ([ref_dt] if reference == "fine" else []):
            problem.check_dt(d, t0, t1)

    if path is None:
        make = getattr(problem, "brownian_path", None)
        if callable(make):
            path = make(u0.shape, t0, t1, ref_dt, seed)
        else:
            noise = getattr(problem, "noise", None)
            noise = noise if getattr(noise, "is_white", True) is False else None
            path = BrownianPath(u0.shape, t0, t1, ref_dt, seed, noise=noise)
    if tuple(path.shape) != tuple(u0.shape):
        raise ValueError(f"path shape {path.shape} differs from the state shape {u0.shape}")
    path.index(t0, "t0")
    path.index(t1, "t1")
    _ratio(ref_dt, path.dt_min, "ref_dt vs the path's dt_min")

    dtype = u0.dtype
    phi_f = _phi_fn(phi)
    states = [u0.copy() for _ in dts]
    ref = u0.astype(np.float64) if reference == "exact" else u0.copy()
    sq_max = np.zeros((u0.shape[0], len(dts))) if max_over_time else None
    finite = [True] * len(dts)
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            tqdm(total=n_f, disable=not progress, desc="convergence", unit="step", leave=False) as bar:
        for k in range(n_f):
            t_prev = t0 + k * dt_f
            if reference == "exact":
                ref = exact_step(t_prev, ref, dt_f, path)
            else:
                for i in range(m_f):
                    t = t0 + (k * m_f + i) * ref_dt
                    dW = path.increment(t, t + ref_dt).astype(dtype, copy=False)
                    ref, _ = solver.step(problem, t, ref, ref_dt, dW, backend=backend)
            for j, (d, r) in enumerate(zip(dts, ratios)):
                if (k + 1) % r:
                    continue
                t = t0 + ((k + 1) // r - 1) * d
                dW = path.increment(t, t + d).astype(dtype, copy=False)
                states[j], ok = solver.step(problem, t, states[j], d, dW, backend=backend)
                finite[j] = finite[j] and ok
                if max_over_time:
                    sq_max[:, j] = np.fmax(sq_max[:, j], _per_path_sq(states[j], ref))
            bar.update(1)
    wall = time.perf_counter() - start
    with np.errstate(over="ignore", invalid="ignore"):  # diverged paths give inf/NaN, reported below
        sq = np.stack([_per_path_sq(s, ref) for s in states], axis=1)
        dphi = np.stack([phi_f(s) - phi_f(ref) for s in states], axis=1)
    bad = np.stack([~np.isfinite(np.asarray(s, dtype=np.float64).reshape(s.shape[0], -1)).all(axis=1)
                    for s in states], axis=1)
    bad |= ~np.isfinite(sq)
    if max_over_time:
        sq_max[bad] = np.inf
    return {
        "dt": np.asarray(dts), "n_steps": np.asarray([n_steps_for(t0, t1, d) for d in dts]),
        "sq_error": sq, "sq_error_max": sq_max, "phi_diff": dphi, "diverged": bad.mean(axis=0),
        "final": states, "reference_final": ref, "reference": reference, "ref_dt": ref_dt,
        "wall_time": wall, "path": path, "phi": getattr(phi_f, "__name__", "phi"),
    }


# ---------------------------------------------------------------------- results


@dataclass
class ConvergenceResult:
    """Errors by dt (``dataset``, an xarray Dataset) and the fitted orders.

    ``order`` is the fit asked for (``strong_order`` -> strong, ``weak_order`` -> weak)."""

    dataset: object
    strong: OrderFit | None
    weak: OrderFit | None
    strong_max: OrderFit | None = None
    kind: str = "strong"

    @property
    def order(self) -> OrderFit | None:
        return {"strong": self.strong, "weak": self.weak, "strong_max": self.strong_max}[self.kind]

    @property
    def dts(self) -> np.ndarray:
        return self.dataset["dt"].values

    def errors(self, kind: str | None = None) -> np.ndarray:
        kind = kind or self.kind
        return self.dataset[f"{kind}_error"].values

    def plot(self, ax=None, **kw):
        return plot_convergence(self, ax=ax, **kw)

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in ("strong", "weak", "strong_max") if getattr(self, k)]
        return f"ConvergenceResult({', '.join(parts)}; dts={list(self.dts)})"


def _safe_fit(dts, per_path, kind, n_boot, confidence, seed):
    try:
        return bootstrap_order(dts, per_path, kind, n_boot, confidence, seed)
    except ValueError:
        return None


def convergence_study(problem, u0, t0: float, t1: float, dts, solver: Solver, *, n_paths: int | None = None,
                      reference: str = "auto", ref_dt: float | None = None, ref_factor: int = 16, seed=0,
                      phi="square", max_over_time: bool = False, backend: str = "auto",
                      n_boot: int = 2000, confidence: float = 0.95, path=None, progress: bool = False,
                      kind: str = "strong") -> ConvergenceResult:
    """Strong and weak errors of ``solver`` on ``problem`` for every dt, and their fitted orders.

    Parameters
    ----------
    problem : an SDE/SPDE (``drift``, ``noise_term``, ``noise``), e.g. from :mod:`spdekit.problems`
        or an :class:`spdekit.AnisotropicSPDE`. ``exact_step`` (and ``brownian_path``) make an exact
        reference possible.
    u0 : initial states with the batch (path) axis first, shape (n_paths, ...); or, with ``n_paths``,
        ONE state without the batch axis (a scalar, (d,), or (C, H, W) for fields), replicated.
    t0, t1 : time interval; every dt must divide t1 - t0.
    dts : the ladder; each dt an integer multiple of the smallest.
    solver : :class:`spdekit.EulerMaruyama` or :class:`spdekit.TamedEulerMaruyama`.
    reference : "exact", "fine" (same solver at ``ref_dt``, default min(dts) / ``ref_factor``) or
        "auto" (exact when the problem has one).
    seed : seed of the Brownian path (ignored when ``path`` is given).
    phi : test function of the weak error: "square" (mean of u^2 over non-batch axes), "identity"
        (mean of u) or a callable (n_paths, ...) -> (n_paths,).
    max_over_time : also compute the RMS over paths of the max over the dt grid of the error.
    backend : passed to ``solver.step`` ("numpy", "numba", "auto").
    n_boot, confidence : bootstrap resamples and level of the confidence intervals.
    """
    res = run_ladder(problem, u0, t0, t1, dts, solver, n_paths=n_paths, reference=reference, ref_dt=ref_dt,
                     ref_factor=ref_factor, seed=seed, phi=phi, max_over_time=max_over_time, backend=backend,
                     path=path, progress=progress)
    return result_from_run(res, problem=problem, solver=solver, t0=t0, t1=t1, backend=backend, n_boot=n_boot,
                           confidence=confidence, kind=kind)


def _error_table(sq, dphi, n_paths):
    return {
        "strong_error": ("dt", np.sqrt(sq.mean(axis=0))),
        "weak_error": ("dt", np.abs(dphi.mean(axis=0))),
        "weak_error_stderr": ("dt", dphi.std(axis=0, ddof=1) / np.sqrt(n_paths)),
    }


def result_from_run(res: dict, *, problem=None, solver=None, t0=0.0, t1=1.0, backend="auto", n_boot=2000,
                    confidence=0.95, kind="strong") -> ConvergenceResult:
    """Fit the orders of a :func:`run_ladder` output and pack everything into an xarray Dataset."""
    import xarray as xr

    dts = res["dt"]
    sq, dphi = res["sq_error"], res["phi_diff"]
    strong = _safe_fit(dts, sq, "strong", n_boot, confidence, 1)
    weak = _safe_fit(dts, dphi, "weak", n_boot, confidence, 2)
    smax = _safe_fit(dts, res["sq_error_max"], "strong", n_boot, confidence, 3) \
        if res["sq_error_max"] is not None else None
    n_paths = sq.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        data = _error_table(sq, dphi, n_paths)
    data.update({
        "diverged_fraction": ("dt", res["diverged"]),
        "sq_error": (("path", "dt"), sq),
        "phi_diff": (("path", "dt"), dphi),
    })
    if res["sq_error_max"] is not None:
        data["strong_max_error"] = ("dt", np.sqrt(res["sq_error_max"].mean(axis=0)))
        data["sq_error_max"] = (("path", "dt"), res["sq_error_max"])
    attrs = {
        "problem": repr(problem), "solver": repr(solver), "reference": res["reference"],
        "ref_dt": float(res["ref_dt"]), "t0": float(t0), "t1": float(t1), "n_paths": int(n_paths),
        "backend": str(backend), "phi": res["phi"], "wall_time_s": float(res["wall_time"]),
        "path": repr(res["path"]), "confidence": float(confidence),
        "strong_error": "sqrt(mean over paths of RMS-over-nodes squared final error)",
        "weak_error": "|mean over paths of phi(X_dt(T)) - phi(X_ref(T))| (coupled estimator)",
    }
    for name, fit in (("strong", strong), ("weak", weak), ("strong_max", smax)):
        if fit is not None:
            attrs[f"{name}_order"] = fit.order
            attrs[f"{name}_order_ci"] = [fit.ci_low, fit.ci_high]
            attrs[f"{name}_order_stderr"] = fit.stderr
            attrs["ci_method"] = fit.method
    ds = xr.Dataset(data, coords={"dt": dts, "n_steps": ("dt", res["n_steps"]), "path": np.arange(n_paths)},
                    attrs=attrs)
    return ConvergenceResult(dataset=ds, strong=strong, weak=weak, strong_max=smax, kind=kind)


def strong_order(problem, u0, t0, t1, dts, solver, **kw) -> ConvergenceResult:
    """Strong order of ``solver`` on ``problem`` (``result.order``); see :func:`convergence_study`."""
    return convergence_study(problem, u0, t0, t1, dts, solver, kind="strong", **kw)


def weak_order(problem, u0, t0, t1, dts, solver, *, phi="square", **kw) -> ConvergenceResult:
    """Weak order (coupled estimator, test function ``phi``); see :func:`convergence_study`."""
    return convergence_study(problem, u0, t0, t1, dts, solver, phi=phi, kind="weak", **kw)


# ---------------------------------------------------------------------- plotting


def plot_convergence(results, ax=None, kind: str | None = None, labels=None, reference_slopes=(0.5, 1.0),
                     title: str | None = None):
    """Log-log plot of error vs dt with the fitted lines and reference slopes (matplotlib).

    ``results``: one :class:`ConvergenceResult` or a list; ``kind``: "strong", "weak" or
    "strong_max" (default: each result's own kind). Reference slopes are drawn through the first
    result's coarsest point. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if isinstance(results, ConvergenceResult):
        results = [results]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    labels = labels or [None] * len(results)
    anchor = None
    for res, label in zip(results, labels):
        k = kind or res.kind
        dts, err = res.dts, res.errors(k)
        fit = getattr(res, k)
        ok = np.isfinite(err) & (err > 0)
        text = f"{label + ': ' if label else ''}{k}" + (f" {fit.order:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"
                                                        if fit else " (no fit)")
        (line,) = ax.loglog(dts[ok], err[ok], "o-", label=text)
        if fit is not None:
            ax.loglog(dts[ok], np.exp(fit.intercept) * dts[ok] ** fit.order, "--", color=line.get_color(),
                      alpha=0.6)
        if (~ok).any():
            bad = ", ".join(f"{d:g}" for d in dts[~ok])
            ax.plot([], [], "x", color=line.get_color(), label=f"  no finite error at dt = {bad}")
        if anchor is None and ok.any():
            i = int(np.argmax(np.where(ok, dts, -np.inf)))
            anchor = (dts[i], err[i], dts[ok])
    if anchor is not None:
        d0, e0, ds = anchor
        for s in reference_slopes:
            ax.loglog(ds, e0 * 0.5 * (ds / d0) ** s, ":", color="grey")
            ax.annotate(f"slope {s:g}", (ds[-1], e0 * 0.5 * (ds[-1] / d0) ** s), fontsize=8, color="grey",
                        ha="left", va="center")
    ax.set_xlabel("dt")
    ax.set_ylabel("error")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return ax
