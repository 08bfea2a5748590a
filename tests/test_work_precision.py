"""validation/work_precision.py (issue 26, item 4): the --quick (64^2) setting end to end; structure only,
no timings are checked."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wp():
    sys.path.insert(0, str(ROOT / "validation"))  # its sibling module doc_sections, as under `python validation/...`
    spec = importlib.util.spec_from_file_location("work_precision", ROOT / "validation" / "work_precision.py")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "validation"))
    return mod


@pytest.fixture(scope="module")
def quick_run(wp, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wp")
    md = tmp / "v.md"
    md.write_text("# Validation\n\nbefore\n\n<!-- work-precision:begin -->\nold\n"
                  "<!-- work-precision:end -->\n\nafter\n")
    argv = ["--quick", "--out", str(md), "--json", str(tmp / "w.json"), "--figures", str(tmp / "fig"),
            "--cache", str(tmp / "cache")]
    wp.main(argv)
    return wp, tmp, md, argv


def test_json_structure(quick_run):
    wp, tmp, _, _ = quick_run
    data = json.loads((tmp / "w.json").read_text())
    for key in ("target", "sizes", "samples", "problems", "analysis", "points", "wall_s"):
        assert key in data
    assert data["sizes"] == [64] and data["target"] == 1e-2
    for p in data["points"]:
        for key in ("problem", "size", "scheme", "param", "dt_mean", "steps", "rel_err", "err", "time_s",
                    "repeats_s", "ms_per_step", "iterations_mean", "finite", "bound"):
            assert key in p
        assert len(p["rel_err"]) == data["samples"] and len(p["repeats_s"]) == 2
        assert p["time_s"] == min(p["repeats_s"]) > 0
        assert p["finite"] and np.isfinite(p["err"])
        assert (p["iterations_mean"] is not None) == (p["scheme"] == "theta")
    schemes = {(p["problem"], p["scheme"]) for p in data["points"]}
    assert schemes == {(pr, s) for pr in ("heat", "paper") for s in wp.SCHEMES}
    for d in data["analysis"].values():
        assert set(d) == set(wp.SCHEMES)
        for s in wp.SCHEMES:
            assert d[s]["how"] in ("interpolated", "at most", "not reached")
            assert set(d[s]["at"]) == {f"{x:g}" for x in wp.TARGETS}


def test_errors_decrease_with_dt(quick_run):
    wp, tmp, _, _ = quick_run
    data = json.loads((tmp / "w.json").read_text())
    for pr in ("heat", "paper"):
        for s in wp.SCHEMES:
            rs = wp.rows_of(data["points"], pr, 64, s)  # by decreasing mean step
            assert len(rs) >= 2
            errs = [r["err"] for r in rs]
            assert all(a > b for a, b in zip(errs, errs[1:])), (pr, s, errs)


def test_bound_grid_respects_the_bound(wp):
    spde, T, _ = wp.problem("paper", 32)
    b = spde.stability_bound(0.0, T)
    g = wp.bound_grid(spde, T, 1.0, b / 4)
    t = g * b / 4
    assert g[0] == 0 and round(T / (b / 4)) == g[-1]
    for t0, t1 in zip(t, t[1:]):
        lo, hi = spde.alpha1.bounds(t0, t1)
        assert t1 - t0 <= spde.spacing**2 / (4 * hi) * (1 + 1e-9)
    assert len(g) - 1 < round(T / b)  # fewer steps than the fixed bound


def test_section_and_cache(quick_run):
    wp, tmp, md, argv = quick_run
    text = md.read_text()
    assert text.startswith("# Validation\n\nbefore\n\n<!-- work-precision:begin -->")
    assert text.rstrip().endswith("<!-- work-precision:end -->\n\nafter")
    assert "old" not in text and "## Work-precision" in text and "**Acceptance**" in text
    assert (tmp / "fig" / "work_precision_paper.png").exists() and (tmp / "fig" / "work_precision_heat.png").exists()
    cache = json.loads((tmp / "cache" / "cache_quick.json").read_text())
    assert len(cache) == len(json.loads((tmp / "w.json").read_text())["points"])
    # resumable: a second run finds every point in the cache and integrates nothing
    def no_solver(scheme):
        raise AssertionError(f"{scheme} was integrated again")

    saved, wp.solver_for = wp.solver_for, no_solver
    try:
        wp.main(argv)
    finally:
        wp.solver_for = saved


def test_config_reductions_at_512(wp):
    heat = wp.config("heat", 512, False)
    assert heat["samples"] == 1 and heat["factor"] == 32  # the exact reference needs the path at b/32
    cfg = wp.config("paper", 512, False)
    assert cfg["samples"] == 1 and cfg["repeats"] == 1
    others = [p for s in ("tamed-bound", "em-fixed", "em-bound") for p in cfg[s]]
    assert min(others) >= 4.0 / cfg["factor"]  # the reference 4 times finer than these explicit points
    assert min(cfg["tamed-fixed"]) == 1.0 / 128  # fixed-step tamed EM goes on, bridged, until it reaches 1e-2
    small = wp.config("paper", 128, False)
    assert small["samples"] is None and small["repeats"] == 2
    assert min(small["tamed-fixed"]) < 1.0 / small["factor"]  # bridged below the path's finest step


def test_bridged_substeps(wp, tmp_path):
    """tamed EM below the path's finest step (Brownian-bridge sub-increments): the steps count the
    sub-steps, and the error keeps falling with dt."""
    cfg = {"factor": 2, "samples": None, "repeats": 1, "tamed-fixed": [1.0, 0.5, 0.25], "tamed-bound": [],
           "em-fixed": [], "em-bound": [], "theta": [], "aos": []}
    cache = {}
    wp.run_pass("paper", 16, 1, 3, cfg, str(tmp_path / "ref.npy"), cache, str(tmp_path / "c.json"))
    rows = {r["param"]: r for r in cache.values()}
    assert rows[0.25]["bridged_substeps"] == 2 and rows[0.5]["bridged_substeps"] == 1
    assert rows[0.25]["steps"] == 2 * rows[0.5]["steps"] == 4 * rows[1.0]["steps"]
    assert rows[1.0]["err"] > rows[0.5]["err"] > rows[0.25]["err"] and rows[0.25]["finite"]


def test_acceptance_conditions_are_stated_separately():
    """The verdict states each of the acceptance's two conditions: measured, or an estimate both
    extrapolations agree on, or undetermined when they disagree."""
    sys.path.insert(0, str(ROOT / "validation"))
    try:
        import work_precision_report as R
    finally:
        sys.path.remove(str(ROOT / "validation"))
    txt = {"tamed-fixed": ("5.34", 5.34, True, 5.34), "tamed-bound": ("> 0.02", 10.0, False, 0.77)}
    met = R._condition(txt, "tamed-fixed", 5.0, [128, 512], {}, 512)
    assert "**met** (measured: 5.34)" in met
    und = R._condition(txt, "tamed-bound", 1.0, [128, 512], {}, 512)
    assert "**undetermined**" in und and "order 1 0.77" in und
    txt["tamed-fixed"] = ("4.9", 4.9, True, 4.9)
    assert "**not met** (measured: 4.90)" in R._condition(txt, "tamed-fixed", 5.0, [512], {}, 512)
    txt["tamed-bound"] = ("> 0.5", 0.6, False, 0.5)
    assert "**not met, on an estimate**" in R._condition(txt, "tamed-bound", 1.0, [512], {}, 512)
