"""The anisotropy study's paired statistics: per-seed paired differences between two rows, their mean and
t-interval, the verdict and the generated sentence (validation/anisotropy_study.py, issue 23)."""

from __future__ import annotations

import math

import numpy as np
from anisotropy_rows import EM_DT_ROWS, METRICS, PAIRS


# ------------------------------------------------------------------------------------------ paired differences
def paired_differences(x: dict, y: dict, level: float = 0.95) -> dict:
    """Paired differences d_s = x_s - y_s over the seeds s both have (finite values): their mean, sample
    standard deviation and the two-sided t-interval mean -+ t_{(1 + level) / 2, n - 1} sd / sqrt(n)
    (Student's t, scipy.stats.t); no interval for n < 2."""
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    seeds = sorted(s for s in set(x) & set(y) if np.isfinite(x[s]) and np.isfinite(y[s]))
    d = np.array([x[s] - y[s] for s in seeds], dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"seeds": seeds, "diffs": d.tolist(), "n": n, "mean": mean, "sd": sd, "lo": mean - half,
            "hi": mean + half, "level": level}


def verdict(stat: dict, lower_is_better: bool) -> str:
    """"helps" (the interval lies on the side where x is better than y), "hurts" (the other side),
    "inside" (the interval contains 0), or "no interval" (fewer than two pairs)."""
    lo, hi = stat["lo"], stat["hi"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    if hi < 0:
        return "helps" if lower_is_better else "hurts"
    if lo > 0:
        return "hurts" if lower_is_better else "helps"
    return "inside"



# ------------------------------------------------------------------------------------------ per data set
def metric_by_seed(cells: dict, ds: str, row: str, key: str, which: str = "main") -> dict:
    return {s: e[which][key] for s, e in cells.get((ds, row), {}).items() if e.get(which)}


def paired_table(cells: dict, ds: str) -> list[dict]:
    """Every paired comparison of PAIRS (and a - b with EM at Delta = dt) on data set ``ds``."""
    out = []
    for x, y, better, worse in PAIRS:
        for which in ("main", "em_dt"):
            if which == "em_dt" and y not in EM_DT_ROWS:
                continue
            for key, name, lower, fmt in METRICS:
                st = paired_differences(metric_by_seed(cells, ds, x, key, which), metric_by_seed(cells, ds, y, key,
                                                                                                   which))
                if st["n"]:
                    out.append({"x": x, "y": y, "sampler": which, "metric": key, "name": name, "fmt": fmt,
                                "verdict": verdict(st, lower), "better": better, "worse": worse, **st})
    return out


def statement(p: dict) -> str:
    """One generated sentence from a paired comparison's interval."""
    f = p["fmt"]
    ci = (f"95 % CI [{f.format(p['lo'])}, {f.format(p['hi'])}]" if p["n"] > 1 else "no interval")
    what = {"helps": p["better"], "hurts": p["worse"], "inside": "the difference is inside the interval (no "
            "effect resolved at this number of seeds)", "no interval": "one seed: no interval"}[p["verdict"]]
    return (f"{p['name']}: {what} ({p['x']} - {p['y']} = {f.format(p['mean'])}, {ci}, {p['n']} seed"
            f"{'s' if p['n'] != 1 else ''})")

