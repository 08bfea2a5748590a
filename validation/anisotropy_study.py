# ruff: noqa: E402
"""Does anisotropy help? The controlled study of issue 23, on two data sets, with paired seeds.

The paper (Section 5) says "the only difference between their methods and Ours (anisotropic) is the
introduction of anisotropy". Table 1 (validation/table1.py) cannot attribute anything to anisotropy: its
rows differ in more than that. Here every row has the same U-Net, training steps (3,600), batch,
learning-rate schedule, EMA, network evaluations per sample (NFE) and, for every SPDE row, the same time
measure (``time_weight_power = 1``: states drawn with probability ~ t_k / T, genmodel/losses.py):

    a   the paper's anisotropic preset, eq. (14)-(16) (alpha1 0.5 -> 2 * size, lambda1 the ramp (16) with
        lambda1_min = 0.025, alpha2 0.01 -> 2, lambda2 = inf, l = 0, the paper's stencil), path loss;
    b   row a with lambda1 = inf at every t: anisotropy switched off, NOTHING else changed (same alpha1,
        alpha2, stencil, solver, loss, sampler): the control that isolates anisotropy;
    c   the VE-SDE as Song et al. (2021) define it, written as an eq. (13) preset: sigma(t) = sigma_min
        (sigma_max / sigma_min)^(t / T) with sigma_min = 0.01 and sigma_max by Song & Ermon's rule
        (Technique 1 of "Improved Techniques for Training Score-Based Generative Models": the largest
        Euclidean distance between two training images), and their prior N(0, sigma_max^2 I);
    d   the VE-SDE row of Table 1 (alpha2 geometric 0.01 -> 2), for continuity;
    e   the isotropic heat SPDE of eq. (17) as Table 1 ran it ("Ours (isotropic)": alpha2 -> 0.5, the
        conservative stencil, the exact loss);
    f   flow matching, OT path (Lipman et al. 2022; no time measure: its own loss);
    l0.0125, l0.05   row a with lambda1_min = 0.0125 / 0.05 (with a and b: the lambda1 ablation, path loss).

Rows c, d, e (linear chains) keep Table 1's exact-Gaussian loss, as the issue defines them. Seeds: 5 for
rows a and b, 3 for every other cell. Data sets: ``digits16`` (scikit-learn digits, 16 px, as Table 1) with
every row, and ``sharp16`` (the 8x8 digits thresholded at mid-grey and upscaled nearest-neighbour: binary
images with sharp edges, generated here, nothing downloaded) with rows a, b, c, f; ``sharp16`` is scored
with its own classifier, trained by the project's recipe (genmodel.metrics.train_digits_classifier, as the
shipped digits classifier) on its training split.

Sampling: the main tables use ``--predictor`` (default "em": Euler-Maruyama, Table 1's budget: 264
predictor steps at 16 px with 1 Langevin corrector step, NFE 528; flow matching Heun with the same NFE).
Rows a and b are also sampled with the paper's sampler, Euler-Maruyama at Delta = dt (K = 2,000 steps, no
corrector) on 500 samples, so the conclusion does not rest on one sampler. The effect of anisotropy is the
paired difference a - b per training seed (the seed of the network's initialisation and of every random
stream of the run), with its mean and 95 % t-interval; a - c and a - f likewise. The ``--quick`` profile
(table1's: a small U-Net, 250 steps, one seed, 128 samples, 32 for EM at Delta = dt) checks the pipeline only.

Harness: validation/table1.py's (make_config, run_one, run folders, run_status, sample_and_score,
reference_row, commit, machine). Finished runs are kept in ``--workdir``; a rerun skips them and an
interrupted training resumes from its ``last.pt`` (an interrupted extra evaluation restarts from the run's
``model.pt``). The document is always written from every finished run of the whole plan (whatever command
made it), with what is left listed. Layout: ``WORKDIR/data`` (the sharp training split as .npz; the runs'
configs name it by its absolute path, so a moved workdir reads as another config; a relative
``--workdir`` is resolved first), ``WORKDIR/classifiers``,
``WORKDIR/full|quick/<data set>_<row>_seed<k>/`` (table1's run folder, plus ``eval_<tag>.json`` and
``grid_<tag>.pt`` per extra evaluation) and ``commands.jsonl`` (the commands that made them).

    python validation/anisotropy_study.py --status                  # what is done / resumable / left
    python validation/anisotropy_study.py --jobs 1                  # the whole study (~30 h on one core)
    python validation/anisotropy_study.py --datasets sharp16 --jobs 1   # one data set
    python validation/anisotropy_study.py --rows a b --seeds 0 1    # a piece (finished runs are kept)
    python validation/anisotropy_study.py --report                  # only rewrite docs/anisotropy.md
    python validation/anisotropy_study.py --quick --rows a --datasets sharp16 --workdir /tmp/w  # smoke level

Writes ``docs/anisotropy.md`` (``docs/anisotropy_quick.md`` with ``--quick``; generated: command, commit,
machine, wall time in the header), its raw JSON next to it and sample grids under
``docs/figures/anisotropy/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "validation"))  # spawned workers import table1 and anisotropy_* by name

import table1 as T1
from anisotropy_doc import collect, prior_comparison, write_doc, write_grids
from anisotropy_rows import (
    CLASSIFIER_RECIPE,
    DATASETS,
    EM_DT_SAMPLES,
    PREDICTORS,
    ROWS,
    EvalSpec,
    Task,
    classifier_path,
    dataset_images,
    extra_evals,
    plan,
    prepare_dataset,
    row_prior,
    seeds_for,
    song_ermon_sigma_max,
)
from anisotropy_stats import paired_table

from genmodel.distributed import on_device, resolve_device
from genmodel.metrics import load_classifier
from genmodel.runs import load_model


# ------------------------------------------------------------------------------------------ running
def run_extra_eval(task: Task, run_dir: Path, spec: EvalSpec, classifier, heldout, log=print,
                   progress: bool = True) -> dict:
    """One evaluation ``spec`` of a trained run (its model.pt), kept as ``eval_<tag>.json`` (skipped when
    it exists), scored like table1.run_one (table1.sample_and_score)."""
    path = run_dir / f"eval_{spec.tag}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    model, process, stored, ck = load_model(run_dir / "model.pt")
    dev = resolve_device(task.cfg["train"].get("device", "auto"))
    model = on_device(model, dev.type)
    samp = dict(ck["sampling"], predictor=spec.predictor, steps=spec.steps, corrector_steps=spec.corrector_steps)
    prior = row_prior(task)
    prior = stored if prior is None else prior
    x, ev = T1.sample_and_score(model, process, prior, samp, DATASETS[task.dataset][1], spec.n, task.seed,
                                classifier, heldout, progress)
    res = {"name": task.name, "eval": spec.tag, **spec._asdict(), **ev, "commit": T1.COMMIT_AT_START,
           "timed_on": T1.timed_on(dev), "machine": T1.machine(), "wall_seconds": time.perf_counter() - t0}
    torch.save(x[:64].clone(), run_dir / f"grid_{spec.tag}.pt")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, default=str))
    os.replace(tmp, path)
    log(f"[{task.name}] {spec.tag}: FID {res['fid']:.2f} KID {res['kid']:.4f} conf {res['confidence_mean']:.3f}")
    return res


def run_task(task: Task, workdir: Path, settings: dict, classifier=None, log=print, progress: bool = True) -> dict:
    """Train / resume / reuse one run (table1.run_one: its data set's held-out split and classifier, row c's
    prior), then its extra evaluations. Returns {"result": ..., "evals": {tag: ...}}."""
    torch.set_num_threads(1)
    if classifier is None:
        classifier = load_classifier(classifier_path(Path(settings["root"]), task.dataset))
    heldout = dataset_images(task.dataset, "test")
    res = T1.run_one(task.name, task.cfg, workdir, classifier, log, progress, heldout=heldout,
                     n_samples=settings["n_samples"], prior=row_prior(task))
    evals = {s.tag: run_extra_eval(task, workdir / task.name, s, classifier, heldout, log, progress)
             for s in extra_evals(task, settings)}
    return {"result": res, "evals": evals}


def _worker(task: Task, workdir: Path, settings: dict, commit_at_start: str) -> dict:
    """One run in a spawned worker process (one thread), with the parent's commit."""
    T1.COMMIT_AT_START = commit_at_start
    return run_task(task, workdir, settings, None, print, False)


def run_all(tasks: list[Task], workdir: Path, settings: dict, jobs: int) -> list[str]:
    """Every task, here (``jobs`` = 1) or in ``jobs`` spawned workers; returns the names of failed runs
    (the others are kept: a failure does not stop the study)."""
    failed = []
    if jobs == 1:
        for t in tasks:
            print(f"=== {t.name} ===", flush=True)
            try:
                run_task(t, workdir, settings)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                print(f"[{t.name}] FAILED: {exc!r}", flush=True)
                failed.append(t.name)
        return failed
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        futures = {t.name: ex.submit(_worker, t, workdir, settings, T1.COMMIT_AT_START) for t in tasks}
        for name, f in futures.items():
            try:
                f.result()
            except Exception as exc:  # noqa: BLE001
                print(f"[{name}] FAILED: {exc!r}", flush=True)
                failed.append(name)
    return failed


# ------------------------------------------------------------------------------------------ status
def status_lines(tasks: list[Task], workdir: Path, settings: dict) -> list[str]:
    """table1.run_status per run, each with its extra evaluations' state, and a summary. Reads files only."""
    base = T1.run_status([(t.row, 16, t.seed, t.name, t.cfg) for t in tasks], workdir)
    lines, counts = [], {"done": 0, "resumable": 0, "not started": 0, "ANOTHER": 0}
    evals_left = 0
    for t, line in zip(tasks, base):
        state = line.split(": ", 1)[1]
        counts[next(k for k in counts if k in state)] += 1
        ex = []
        for s in extra_evals(t, settings):
            done = (workdir / t.name / f"eval_{s.tag}.json").is_file()
            evals_left += not done
            ex.append(f"{s.tag} {'done' if done else 'left'}")
        lines.append(line + (f" | {', '.join(ex)}" if ex else ""))
    lines.append(f"{len(tasks)} runs: {counts['done']} done, {counts['resumable']} resumable, "
                 f"{counts['not started']} not started, {counts['ANOTHER']} made with another config; "
                 f"{evals_left} extra evaluation(s) left")
    return lines


def data_status(workdir: Path, datasets) -> list[str]:
    out = []
    for ds in datasets:
        if ds.startswith("sharp"):
            have = classifier_path(workdir, ds).is_file()
            out.append(f"{ds}: classifier {'trained' if have else 'not trained yet (trained before its first run)'}")
    return out


# ------------------------------------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, naming the argument (argparse's own message), no usage block
        raise SystemExit(f"anisotropy_study.py: {message}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke level: table1's quick profile, one seed per cell")
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), help="only these data sets")
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), help="only these rows")
    ap.add_argument("--seeds", type=int, nargs="+", help="only these seeds (of the plan's: 0-4 for a, b; 0-2 else)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes, one thread each")
    ap.add_argument("--predictor", default="em", choices=PREDICTORS,
                    help="the main sampler's predictor at the Table 1 budget (default em)")
    ap.add_argument("--workdir", default=str(ROOT / "out" / "anisotropy"),
                    help="run folders, data and classifiers (default out/anisotropy, git-ignored)")
    ap.add_argument("--out", help="markdown output (default docs/anisotropy[_quick].md)")
    ap.add_argument("--figdir", default=str(ROOT / "docs" / "figures" / "anisotropy"))
    ap.add_argument("--note", default="", help="a note on the machine for the header")
    ap.add_argument("--status", action="store_true", help="list the runs (done / resumable / not started) and stop")
    ap.add_argument("--report", action="store_true", help="write the document from the finished runs; train nothing")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"anisotropy_study.py: --jobs must be an integer >= 1, got {args.jobs}")
    top = max(len(seeds_for(r, "quick" if args.quick else "full")) for r in ROWS) - 1
    bad = [s for s in args.seeds or [] if not 0 <= s <= top]
    if bad:
        raise SystemExit(f"anisotropy_study.py: --seeds must lie in 0..{top} (the plan's seeds), got {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    T1.COMMIT_AT_START = T1.commit()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "full"
    prof = dict(T1.PROFILES[mode])
    root = Path(args.workdir).resolve()  # the runs' configs name the data by absolute path
    workdir = root / mode
    settings = {"mode": mode, "predictor": args.predictor, "n_samples": T1.samples_for(prof, 16),
                "em_dt_samples": EM_DT_SAMPLES[mode], "note": args.note, "root": str(root)}
    todo = plan(prof, mode, root, args.datasets, args.rows, args.seeds)
    if not todo and not args.report:
        raise SystemExit("anisotropy_study.py: --datasets / --rows / --seeds select no run of the plan (seeds 0-4 "
                         "for rows a, b, 0-2 for the others; sharp16 has rows a, b, c, f)")
    if args.status:
        print("\n".join(data_status(root, args.datasets or DATASETS) + status_lines(todo, workdir, settings)))
        return 0
    t_start = time.perf_counter()
    failed = []
    if not args.report:
        _log_command(workdir, argv)
        for ds in sorted({t.dataset for t in todo}):
            prepare_dataset(ds, root)
        failed = run_all(todo, workdir, settings, args.jobs)
    everything = plan(prof, mode, root)
    cells = collect(everything, workdir, settings)
    ran = {k[0] for k, c in cells.items() if any(e.get("main") for e in c.values())}
    refs, priors, classifiers = {}, {}, {}
    for ds in ran:
        if not classifier_path(root, ds).is_file():
            continue
        clf = load_classifier(classifier_path(root, ds))
        refs[ds] = T1.reference_row(DATASETS[ds][1], clf, dataset_images(ds, "train"), dataset_images(ds, "test"))
        acc = clf.meta.get("accuracy_heldout", clf.meta.get("accuracy"))
        classifiers[ds] = (f"`{_shown(classifier_path(root, ds))}`, held-out accuracy {acc:.4f}"
                           + (" (shipped digits classifier)" if ds.startswith("digits") else
                              f" (trained by this script: genmodel.metrics.train_digits_classifier, "
                              f"{CLASSIFIER_RECIPE['epochs']} epochs, seed {CLASSIFIER_RECIPE['seed']}, on the "
                              "training split)"))
        if "c" in DATASETS[ds][2]:
            priors[ds] = prior_comparison(ds, prof, song_ermon_sigma_max(dataset_images(ds, "train")))
    out = Path(args.out) if args.out else ROOT / "docs" / f"anisotropy{'_quick' if args.quick else ''}.md"
    grids = write_grids(cells, workdir, Path(args.figdir), mode)
    total = time.perf_counter() - t_start
    write_doc(out, everything, cells, refs, priors, classifiers, grids, settings, prof, _commands(workdir, argv),
              total)
    raw = {"settings": settings, "profile": prof, "priors": priors, "reference": refs,
           "cells": {f"{ds}_{row}": seeds for (ds, row), seeds in cells.items()},
           "paired": {ds: paired_table(cells, ds) for ds in DATASETS}}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"wrote {out} in {total / 60:.1f} min")
    if failed:
        raise SystemExit(f"anisotropy_study.py: {len(failed)} run(s) failed (the others are kept): {', '.join(failed)}")
    return 0


def _shown(p: Path) -> str:
    """A path relative to the repository when it lies inside it, else as it is."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _log_command(workdir: Path, argv) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "commands.jsonl", "a") as fh:
        fh.write(json.dumps({"argv": list(argv), "commit": T1.COMMIT_AT_START,
                             "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}) + "\n")


def _commands(workdir: Path, argv) -> list:
    """The distinct commands that made runs in ``workdir`` (in order), then this one."""
    seen = []
    f = workdir / "commands.jsonl"
    if f.is_file():
        for line in f.read_text().splitlines():
            a = json.loads(line)["argv"]
            if a not in seen:
                seen.append(a)
    return seen + ([list(argv)] if list(argv) not in seen else [])


if __name__ == "__main__":
    sys.exit(main())
