"""The anisotropy study's document (docs/anisotropy[_quick].md; validation/anisotropy_study.py, issue 23):
the finished runs read back (:func:`collect`), the sample grids, row c's prior check and the markdown."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import table1 as T1
import torch
from anisotropy_rows import (
    DATASETS,
    EM_DT_ROWS,
    PAIRS,
    ROWS,
    TIME_WEIGHT_POWER,
    Task,
    dataset_images,
    extra_evals,
    main_eval_file,
    row_process,
    run_name,
    seeds_for,
)
from anisotropy_stats import paired_table, statement
from table1_doc import _ms

from genmodel.cli import save_grid
from genmodel.priors import GaussianPrior
from genmodel.train import build_process


# ------------------------------------------------------------------------------------------ collecting
def collect(tasks: list[Task], workdir: Path, settings: dict) -> dict:
    """{(dataset, row): {seed: {"main": result or None, "em_dt": eval or None, "result": result.json}}}
    from the finished files of ``tasks``."""
    out: dict = {}
    for t in tasks:
        d = workdir / t.name
        entry = {}
        for key, fname in (("result", "result.json"), ("main", main_eval_file(t, settings))):
            entry[key] = json.loads((d / fname).read_text()) if (d / fname).is_file() else None
        em = [s for s in extra_evals(t, settings) if s.predictor == "em" and s.corrector_steps == 0]
        entry["em_dt"] = (json.loads((d / f"eval_{em[0].tag}.json").read_text())
                          if em and (d / f"eval_{em[0].tag}.json").is_file() else None)
        out.setdefault((t.dataset, t.row), {})[t.seed] = entry
    return out



# ------------------------------------------------------------------------------------------ row c's prior
def prior_comparison(ds: str, prof: dict, sigma_max: float) -> dict:
    """Row c's prior N(0, sigma_max^2 I) against the moment-matched Gaussian of its chain at T (exact for
    the linear chain under the empirical data law; genmodel.priors.GaussianPrior.fit): the chain's noise
    variance at T, the moment-matched per-pixel standard deviations, the largest |mean| and the KL divergence
    KL(moment-matched || Song) per pixel."""
    size = DATASETS[ds][1]
    proc = build_process({**row_process("c", size, prof["T"], sigma_max), "T": prof["T"], "dt": prof["dt"]}, size)
    mm = GaussianPrior.fit(proc, dataset_images(ds, "train"))
    C = mm.factor @ mm.factor.T
    D = C.shape[0]
    s2 = sigma_max**2
    m = mm.mean.reshape(-1)
    logdet = np.linalg.slogdet(C)[1]
    kl = 0.5 * (np.trace(C) / s2 + m @ m / s2 - D + D * math.log(s2) - logdet)
    sd = np.sqrt(np.diag(C))
    return {"sigma_max": sigma_max, "chain_sd_T": float(math.sqrt(proc.sigma2[-1])), "mm_sd_min": float(sd.min()),
            "mm_sd_max": float(sd.max()), "mm_mean_abs_max": float(np.abs(m).max()), "kl_per_pixel": float(kl / D)}



# ------------------------------------------------------------------------------------------ the document
def _f(v, fmt):
    return "-" if v is None or not np.isfinite(v) else fmt.format(v)


def _commit_short(c) -> str:
    return str(c).split()[0] + ("*" if "uncommitted" in str(c) else "")


def write_grids(cells: dict, workdir: Path, figdir: Path, mode: str) -> dict:
    """One PNG per (data set, row, sampler) from the first finished seed's stored samples."""
    grids = {}
    for (ds, row), seeds in cells.items():
        for which in ("main", "em_dt"):
            done = [s for s, e in sorted(seeds.items()) if e.get(which)]
            if not done:
                continue
            e = seeds[done[0]][which]
            src = workdir / run_name(ds, row, done[0]) / (f"grid_{e['eval']}.pt" if "eval" in e else "grid_samples.pt")
            if not src.is_file():
                continue
            extra = ", EM at dt" if which == "em_dt" else ""
            g = figdir / f"{mode}_{ds}_{row}{'_em_dt' if extra else ''}.png"
            save_grid(torch.load(src, weights_only=True), g, nrow=8, title=f"{ds}, row {row}{extra}, seed {done[0]}")
            grids[(ds, row, which)] = g
    return grids


def _row_table(cells: dict, ds: str, rows, which: str) -> list[str]:
    """Mean ± sample sd over the finished seeds of each row (``which``: "main" or "em_dt")."""
    wall = "min per run (train + sample)" if which == "main" else "min per evaluation"
    lines = ["| row | seeds | FID ↓ | KID ↓ | confidence ↑ | conf > 0.9 ↑ | IS analogue ↑ | pixels abs > "
             f"{T1.DIVERGED} | NFE | {wall} |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        rs = [e[which] for _, e in sorted(cells.get((ds, row), {}).items()) if e.get(which)]
        if not rs:
            continue
        lines.append(f"| {row} | {len(rs)} | {_ms([r['fid'] for r in rs], '{:.2f}')} | "
                     f"{_ms([r['kid'] for r in rs], '{:.4f}')} | "
                     f"{_ms([r['confidence_mean'] for r in rs], '{:.3f}')} | "
                     f"{_ms([r['confident_fraction'] for r in rs], '{:.3f}')} | "
                     f"{_ms([r['is_analogue'] for r in rs], '{:.2f}')} | "
                     f"{_ms([r['diverged_fraction'] for r in rs], '{:.4f}')} | {rs[0]['nfe']} | "
                     f"{_ms([r.get('wall_seconds', math.nan) / 60 for r in rs], '{:.0f}')} |")
    return lines


def _seed_table(cells: dict, ds: str, rows) -> list[str]:
    """Every finished run: its metrics, timings, EM-at-dt result and commit."""
    lines = ["| row | seed | FID | KID | confidence | conf > 0.9 | train s / 1k steps | sample s / image | "
             "EM at dt: FID / conf | wall min | commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for s, e in sorted(cells.get((ds, row), {}).items()):
            r, em = e.get("main"), e.get("em_dt")
            if not r:
                continue
            wall = (e["result"] or {}).get("wall_seconds", math.nan) + (em or {}).get("wall_seconds", 0.0)
            lines.append(f"| {row} | {s} | {r['fid']:.2f} | {r['kid']:.4f} | {r['confidence_mean']:.3f} | "
                         f"{r['confident_fraction']:.3f} | {_f((e['result'] or {}).get('train_s_per_1k'), '{:.0f}')} | "
                         f"{r['sample_s_per_image']:.3f} | "
                         + (f"{em['fid']:.2f} / {em['confidence_mean']:.3f}" if em else "-")
                         + f" | {_f(wall / 60, '{:.0f}')} | {_commit_short(r.get('commit', '?'))} |")
    return lines


def write_doc(path: Path, tasks: list[Task], cells: dict, refs: dict, priors: dict, classifiers: dict, grids: dict,
              settings: dict, prof: dict, commands: list, total_seconds: float) -> None:
    """The generated document (see the module doc of validation/anisotropy_study.py)."""
    mode = settings["mode"]
    done = [e for c in cells.values() for e in c.values() if e.get("main")]
    walls = [e["result"].get("wall_seconds", 0.0) for c in cells.values() for e in c.values() if e.get("result")]
    walls += [e["em_dt"].get("wall_seconds", 0.0) for c in cells.values() for e in c.values() if e.get("em_dt")]
    left = [t.name for t in tasks if not cells[(t.dataset, t.row)][t.seed].get("main")]
    commits = sorted({_commit_short(e["main"].get("commit", "?")) for e in done})
    net = prof["network"]
    lines = [
        "<!-- generated by validation/anisotropy_study.py; do not edit by hand -->",
        f"# Does anisotropy help? A controlled study (issue 23){' — SMOKE LEVEL (--quick)' if mode == 'quick' else ''}",
        "",
        *[f"* command: `python validation/anisotropy_study.py {' '.join(c)}`" for c in commands],
        f"* runs made at commit(s) {', '.join(commits) or '-'} (* = with uncommitted changes); this document "
        f"written at commit {T1.COMMIT_AT_START or T1.commit()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        f"* machine: {T1.machine()}" + (f"; {settings['note']}" if settings.get("note") else ""),
        *T1._run_machines({k: [e["main"] for e in c.values() if e.get("main")] for k, c in cells.items()}),
        f"* wall time: {sum(walls) / 60:.1f} min for the {len(done)} finished runs (training, sampling, scoring, "
        f"extra evaluations), {total_seconds / 60:.1f} min for this invocation (finished runs are read back)",
        "",
    ]
    if mode == "quick":
        lines += ["**Smoke level.** `--quick` trains a small U-Net for "
                  f"{prof['steps']} steps with one seed and scores {settings['n_samples']} samples: it checks the "
                  "pipeline end to end. It answers nothing about anisotropy.", ""]
    if left:
        lines += [f"**Not complete.** {len(left)} of {len(tasks)} runs are not finished: {', '.join(left)}. "
                  "The tables below hold the finished ones; `--status` lists the state of each.", ""]
    lines += [
        "## Setup (the same for every row)",
        "",
        f"* network: U-Net ch {net['ch']}, ch_mult {net['ch_mult']}, {net['num_res_blocks']} res block(s), attention "
        f"at {net['attn_resolutions']}, score_param '{net['score_param']}' (SPDE rows); training {prof['steps']} "
        f"steps, batch {prof['batch']}, Adam lr {prof['lr']} (warm-up {prof['warmup']}"
        + (", cosine decay to 0.1 lr" if prof.get("lr_schedule") == "cosine" else "")
        + f"), EMA {prof['ema']}, grad clip 1, one torch thread per run (validation/table1.py's settings)",
        f"* time measure: `time_weight_power = {TIME_WEIGHT_POWER:g}` for every SPDE row (rows a-e and the "
        "ablation); flow matching draws its times uniformly (its own loss)",
        f"* chains: T = {prof['T']}, dt = {prof['dt']} (K = {round(prof['T'] / prof['dt'])} steps)",
        f"* main sampler: predictor '{settings['predictor']}', {T1.spde_sampler_steps(prof['T'], 16)} steps at 16 px "
        f"with {prof['corrector']} Langevin corrector step(s) each (snr 0.16), model's moment-matched prior (row c: "
        "N(0, sigma_max^2 I)); flow matching: Heun with the same NFE; "
        f"{settings['n_samples']} samples per run" + (" (EM: table1.run_one's result.json; another predictor: an "
                                                       "extra evaluation of the same model)"
                                                       if settings["predictor"] != "em" else ""),
        f"* second sampler for rows a and b: Euler-Maruyama at Delta = dt ({round(prof['T'] / prof['dt'])} steps, "
        f"no corrector: the paper's sampler), {settings['em_dt_samples']} samples",
        "* metrics: FID / KID on the data set's classifier's 128-d features against its held-out split, mean "
        "top-class probability (confidence), fraction above 0.9, IS analogue; NOT Inception features",
        f"* seeds: {', '.join(f'{r}: {len(seeds_for(r, mode))}' for r in ROWS)}; paired differences are per "
        "training seed (the seed of the network's initialisation and of the run's random streams), mean and 95 % "
        "t-interval (scipy.stats.t)",
        "",
        "| row | definition | process | loss |",
        "|---|---|---|---|",
    ]
    for row, (label, _, loss) in ROWS.items():
        t = next((t for t in tasks if t.row == row), None)
        proc = "-" if t is None else _process_text(t.cfg["process"], DATASETS[t.dataset][1])
        lines.append(f"| {row} | {label} | {proc} | {loss} |")
    lines.append("")
    for ds, (ds_label, _, ds_rows) in DATASETS.items():
        if not any(k[0] == ds for k in cells):
            continue
        lines += _dataset_section(ds, ds_label, ds_rows, cells, refs, priors, classifiers, grids, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _schedule_text(d: dict) -> str:
    kind = d["schedule"]
    if kind == "constant":
        return "inf" if math.isinf(d["v"]) else f"{d['v']:g}"
    if kind == "geometric":
        return f"{d['vmin']:.4g} -> {d['vmax']:.4g} (geometric, eq. 15)"
    if kind == "anisotropy_ramp":
        return f"ramp (16) from {d['lambda_min']:g}"
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _process_text(p: dict, size: int = 16) -> str:
    """A row's process in words, from the SPDE its [process] table builds."""
    if p.get("preset") == "flow_matching":
        return f"OT path, sigma_min {p.get('sigma_min')}"
    d = build_process(p, size).spde.to_dict()
    return (f"alpha1 {_schedule_text(d['alpha1'])}, lambda1 {_schedule_text(d['lambda1'])}, alpha2 "
            f"{_schedule_text(d['alpha2'])}, lambda2 {_schedule_text(d['lambda2'])}, {d['stencil']} stencil")


def _finished(cells: dict, ds: str, row: str, which: str = "main") -> list:
    return [e[which] for _, e in sorted(cells.get((ds, row), {}).items()) if e.get(which)]


def _dataset_header(ds: str, refs: dict, priors: dict, classifiers: dict) -> list[str]:
    """The data set's classifier, its floor and row c's sigma_max and prior check."""
    lines = [f"* classifier: {classifiers[ds]}"] if ds in classifiers else []
    if ds in refs:
        r = refs[ds]
        lines += [f"* floor (held-out vs as many training images, {r['n']}): FID {r['fid']:.2f}, KID {r['kid']:.4f}, "
                  f"confidence {r['confidence_mean']:.3f}, conf > 0.9 {r['confident_fraction']:.3f}, IS analogue "
                  f"{r['is_analogue']:.2f}"]
    if ds in priors:
        p = priors[ds]
        lines += [f"* row c: sigma_max = {p['sigma_max']:.3f} (Song & Ermon's rule on the training split); the "
                  f"chain's noise standard deviation at T is {p['chain_sd_T']:.3f}; the moment-matched prior of that "
                  f"chain has per-pixel standard deviations {p['mm_sd_min']:.3f} to {p['mm_sd_max']:.3f} and means up "
                  f"to {p['mm_mean_abs_max']:.3f} in absolute value: KL(moment-matched || N(0, sigma_max^2 I)) = "
                  f"{p['kl_per_pixel']:.2e} nats per pixel"]
    return lines + [""]


def _diverged_lines(cells: dict, ds: str, rows) -> list[str]:
    """Runs whose reverse chain ran away (table1's criterion): their metrics measure that."""
    bad = [f"{r.get('name', row)}{' (EM at dt)' if which == 'em_dt' else ''}: {100 * r['diverged_fraction']:.0f} % "
           f"of the pixels beyond {T1.DIVERGED}, up to {r['max_abs_before_clamp']:.3g}"
           for row in rows for which in ("main", "em_dt") for r in _finished(cells, ds, row, which)
           if r.get("diverged_fraction", 0) > 0.01 and r.get("max_abs_before_clamp", 0) > 10]
    return (["**Diverged samplers** (before clipping to [-1, 1]): " + "; ".join(bad) + ". Their metrics measure a "
             "runaway reverse chain.", ""] if bad else [])


def _paired_lines(pairs: list[dict]) -> list[str]:
    if not pairs:
        return ["No pairs yet (a pair is both rows finished at the same seed).", ""]
    lines = ["| x - y | sampler | metric | n | per seed | mean | 95 % t-interval | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        f = p["fmt"]
        ci = f"[{f.format(p['lo'])}, {f.format(p['hi'])}]" if p["n"] > 1 else "-"
        lines.append(f"| {p['x']} - {p['y']} | {'EM at dt' if p['sampler'] == 'em_dt' else 'main'} | {p['name']} | "
                     f"{p['n']} | {' / '.join(f.format(v) for v in p['diffs'])} | {f.format(p['mean'])} | {ci} | "
                     f"{p['verdict']} |")
    return lines + [""]


def _statement_lines(pairs: list[dict]) -> list[str]:
    """The plain statement: one generated sentence per comparison, sampler and metric."""
    questions = {"b": "Does anisotropy help (a vs b)?", "c": "Does the anisotropic model beat the faithful VE-SDE "
                 "(a vs c)?", "f": "Does the anisotropic model beat flow matching (a vs f)?"}
    lines = []
    for x, y, _, _ in PAIRS:
        for which in ("main", "em_dt"):
            ps = [p for p in pairs if p["x"] == x and p["y"] == y and p["sampler"] == which]
            if ps:
                lines.append(f"* **{questions[y]}**{' (Euler-Maruyama at Delta = dt)' if which == 'em_dt' else ''} "
                             + "; ".join(statement(p) for p in ps) + ".")
    return (lines or ["Nothing to state yet: no paired seeds."]) + [""]


def _dataset_section(ds, ds_label, ds_rows, cells, refs, priors, classifiers, grids, path) -> list[str]:
    """Everything the document says about one data set."""
    lines = [f"## {ds}: {ds_label}", "", *_dataset_header(ds, refs, priors, classifiers)]
    if not any(_finished(cells, ds, r) for r in ds_rows):
        return lines + ["No finished run yet.", ""]
    lines += ["### Per row (mean ± sample sd over seeds; main sampler)", "", *_row_table(cells, ds, ds_rows, "main"),
              "", *_diverged_lines(cells, ds, ds_rows)]
    if any(_finished(cells, ds, r, "em_dt") for r in EM_DT_ROWS):
        lines += ["Rows a and b with Euler-Maruyama at Delta = dt:", "", *_row_table(cells, ds, EM_DT_ROWS, "em_dt"),
                  ""]
    abl = [r for r in ("l0.0125", "a", "l0.05", "b") if r in ds_rows]
    if len(abl) == 4 and any(_finished(cells, ds, r) for r in ("l0.0125", "l0.05")):
        lines += ["### The lambda1 ablation (path loss; lambda1_min 0.0125, 0.025 = row a, 0.05, inf = row b)", "",
                  *_row_table(cells, ds, abl, "main"), ""]
    pairs = paired_table(cells, ds)
    lines += ["### Per seed", "", *_seed_table(cells, ds, ds_rows), "",
              "### Paired differences (x - y per seed; FID, KID: negative = x better; confidence: positive = x "
              "better)", "", *_paired_lines(pairs),
              "### Plain statement (generated from the intervals above)", "", *_statement_lines(pairs)]
    if ds == "digits16":
        lines += ["Off the data: SDEdit from digit strokes (`genmodel stroke2img`) with the models of rows a and b is "
                  "measured separately (`python validation/stroke_inputs.py --sweep CKPT ...`): "
                  "[docs/genmodel.md](genmodel.md), stroke2img, \"Runaways come with the anisotropic recipe\".", ""]
    lines += ["### Sample grids (first finished seed)", ""]
    for (gds, row, which), g in grids.items():
        if gds == ds:
            lines.append(f"* row {row}{', EM at dt' if which == 'em_dt' else ''}: "
                         f"![{ds} {row}]({os.path.relpath(g, path.parent)})")
    return lines + [""]

