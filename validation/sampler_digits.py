# ruff: noqa: E402
"""The samplers on trained digits models (issue 22, item 7): each predictor at the Table 1 step counts.

Models: the shipped digits model (``genmodel/assets/digits16_anisotropic.pt``), the asset it replaced at
stop 35 (the same config at 4,000 training steps: ``git show d15cecb:genmodel/assets/digits16_anisotropic.pt >
out/digits16_anisotropic_4000.pt``; skipped where that file is absent) and Table 1 run folders
(``--runs``: ``WORKDIR/full/<method>_16px_seed0/model.pt`` of ``validation/table1.py``). Settings, the same
for every model (NFE: network evaluations per image):

* em 264 / 528 with 1 Langevin corrector step each (Table 1's sampler; NFE 528 / 1056),
* exponential 264 / 528 with 1 corrector step each (NFE 528 / 1056),
* ode (Heun) 264 / 528, no corrector (NFE 527 / 1055),
* exponential_ode 264 / 528, no corrector (NFE 264 / 528),
* em 2000, no corrector: the paper's Delta = dt (NFE 2000).

Every setting samples ``--n`` images from the model's moment-matched Gaussian prior with the same seed
and is scored like Table 1 (shipped classifier features: FID/KID, IS analogue, confidence, the fraction
of pixels outside [-1.5, 1.5] before clipping). One JSON per (model, setting) in ``--workdir``: a rerun
skips finished ones (resumable). Writes ``docs/genmodel_samplers.md`` (generated) and its JSON.

    python validation/sampler_digits.py --runs /work/t1runs/full --n 500
    python validation/sampler_digits.py --status
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "validation"))

from table1 import DIVERGED, commit, machine  # noqa: E402

from genmodel.data import load_digits  # noqa: E402
from genmodel.metrics import evaluate_samples, load_classifier  # noqa: E402
from genmodel.runs import load_model, score_function  # noqa: E402
from genmodel.sampling import sample  # noqa: E402
from genmodel.train import _set_threads  # noqa: E402

SHIPPED = ROOT / "genmodel" / "assets" / "digits16_anisotropic.pt"
SHIPPED_4000 = ROOT / "out" / "digits16_anisotropic_4000.pt"  # the asset until stop 34 (module doc)
# (name, predictor, steps, corrector steps)
SETTINGS = [("em_264", "em", 264, 1), ("exponential_264", "exponential", 264, 1), ("em_2000", "em", 2000, 0),
            ("ode_264", "ode", 264, 0), ("exponential_ode_264", "exponential_ode", 264, 0),
            ("em_528", "em", 528, 1), ("exponential_528", "exponential", 528, 1), ("ode_528", "ode", 528, 0),
            ("exponential_ode_528", "exponential_ode", 528, 0)]
MODELS = [("shipped", "shipped digits model (anisotropic, path loss, time_weight_power 1, 12000 steps)"),
          ("shipped_4000", "the shipped config at 4000 steps (the asset until stop 34)"),
          ("anisotropic", "Table 1 anisotropic (path loss), seed 0"), ("ve_sde", "Table 1 VE-SDE, seed 0"),
          ("isotropic", "Table 1 isotropic heat, seed 0"),
          ("anisotropic_transition", "Table 1 anisotropic (transition loss), seed 0")]
SEED = 1000


def model_path(name: str, runs: Path | None) -> Path | None:
    if name == "shipped":
        return SHIPPED
    if name == "shipped_4000":
        return SHIPPED_4000 if SHIPPED_4000.is_file() else None
    p = None if runs is None else runs / f"{name}_16px_seed0" / "model.pt"
    return p if p is not None and p.is_file() else None


def nfe(predictor: str, steps: int, corr: int) -> int:
    return {"ode": 2 * steps - 1}.get(predictor, steps) + steps * corr


def run_setting(path: Path, setting, n: int, out: Path, classifier, heldout) -> dict:
    if out.is_file():
        return json.loads(out.read_text())
    name, predictor, steps, corr = setting
    model, process, prior, ck = load_model(path)
    t0 = time.perf_counter()
    try:
        x = sample(process, score_function(model), n, steps=steps, corrector_steps=corr, predictor=predictor,
                   corrector="langevin" if corr else "none", prior=prior, seed=SEED, batch_size=250, progress=True)
    except FloatingPointError as exc:  # a run that blew up is a result too
        res = {"setting": name, "predictor": predictor, "steps": steps, "corrector_steps": corr,
               "nfe": nfe(predictor, steps, corr), "n": n, "diverged": str(exc), "seconds": time.perf_counter() - t0,
               "model": str(path), "commit": commit(), "machine": machine()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
        print(f"[{out.parent.name}/{name}] diverged: {exc}", flush=True)
        return res
    secs = time.perf_counter() - t0
    diverged = float((x.abs() > DIVERGED).float().mean())
    outside = float((x.abs() > DIVERGED).flatten(1).any(1).float().mean())
    met = evaluate_samples(x.clamp(-1, 1), heldout, classifier=classifier, seed=0)
    p = classifier.probabilities(x.clamp(-1, 1))
    res = {"setting": name, "predictor": predictor, "steps": steps, "corrector_steps": corr,
           "nfe": nfe(predictor, steps, corr), "n": n, "fid": met["fid"], "kid": met["kid"],
           "is_analogue": met["is_analogue"], "confidence_mean": float(p.max(1).mean()),
           "confident_fraction": met["confident_fraction"], "diverged_pixels": diverged,
           "images_with_outside_pixels": outside, "max_abs": float(x.abs().max()), "seconds": secs,
           "s_per_image": secs / n, "model": str(path), "commit": commit(), "machine": machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out)
    print(f"[{out.parent.name}/{name}] FID {res['fid']:.2f} conf>0.9 {res['confident_fraction']:.3f} "
          f"outside {diverged:.4f} ({secs / 60:.1f} min)", flush=True)
    return res


def write_doc(results: dict, args, path: Path) -> None:
    commits = sorted({r["commit"] for rs in results.values() for r in rs.values()})
    minutes = sum(r.get("seconds", 0) for rs in results.values() for r in rs.values()) / 60
    lines = ["<!-- generated by validation/sampler_digits.py; do not edit by hand -->",
             "# The samplers on trained digits models (16 px, K = 2000 chain steps)", "",
             f"* command: `python validation/sampler_digits.py {' '.join(sys.argv[1:])}`",
             f"* commits of the runs: {', '.join(commits)}; written "
             f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
             f"* machine: {machine()}" + (f"; {args.note}" if args.note else ""),
             f"* every setting: {args.n} samples from the model's moment-matched Gaussian prior, seed {SEED}, "
             f"scored against the held-out digits ({len(load_digits(16, 'test'))} images) with the shipped classifier "
             "(as docs/table1.md); "
             "the models are the ones named below, unchanged; nothing tuned per predictor",
             f"* wall time of the sampling: {minutes:.0f} min", ""]
    for key, label in MODELS:
        if key not in results:
            continue
        lines += [f"## {label}", "", "| predictor | steps | corrector | NFE | FID ↓ | conf > 0.9 ↑ | confidence ↑ | "
                  f"IS analogue ↑ | pixels abs > {DIVERGED} | images with such pixels | max abs | s / image |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, *_ in SETTINGS:
            r = results[key].get(name)
            if r is None:
                continue
            if "diverged" in r:
                lines.append(f"| {r['predictor']} | {r['steps']} | {r['corrector_steps']} | {r['nfe']} | diverged: "
                             f"{r['diverged'].split(':')[0]} | - | - | - | - | - | - | - |")
                continue
            lines.append(f"| {r['predictor']} | {r['steps']} | {r['corrector_steps']} | {r['nfe']} | {r['fid']:.2f} | "
                         f"{r['confident_fraction']:.3f} | {r['confidence_mean']:.3f} | {r['is_analogue']:.2f} | "
                         f"{r['diverged_pixels']:.4f} | {r['images_with_outside_pixels']:.3f} | {r['max_abs']:.2f} | "
                         f"{r['s_per_image']:.2f} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(results, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", help="folder of Table 1 runs (WORKDIR/full of validation/table1.py)")
    ap.add_argument("--models", nargs="+", default=[m for m, _ in MODELS], choices=[m for m, _ in MODELS])
    ap.add_argument("--settings", nargs="+", default=[s[0] for s in SETTINGS], choices=[s[0] for s in SETTINGS])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--workdir", default=str(ROOT / "out" / "sampler_digits"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "genmodel_samplers.md"))
    ap.add_argument("--note", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--status", action="store_true")
    ap.add_argument("--report", action="store_true", help="only write --out from the settings already measured")
    a = ap.parse_args()
    _set_threads(a.threads)
    runs = Path(a.runs) if a.runs else None
    work = Path(a.workdir) / f"n{a.n}"
    todo = [(m, s) for m in a.models for s in SETTINGS if s[0] in a.settings]
    if a.status:
        for m, s in todo:
            done = (work / m / f"{s[0]}.json").is_file()
            print(f"{m:24s} {s[0]:22s} {'done' if done else ('no model' if model_path(m, runs) is None else 'to do')}")
        return 0
    results: dict = {}
    if a.report:
        for m, s in todo:
            if (work / m / f"{s[0]}.json").is_file():
                results.setdefault(m, {})[s[0]] = json.loads((work / m / f"{s[0]}.json").read_text())
        write_doc(results, a, Path(a.out))
        return 0
    classifier = load_classifier()
    heldout = load_digits(16, "test")
    for m, s in todo:
        path = model_path(m, runs)
        if path is None:
            print(f"[{m}] no model.pt under --runs; skipped", flush=True)
            continue
        results.setdefault(m, {})[s[0]] = run_setting(path, s, a.n, work / m / f"{s[0]}.json", classifier, heldout)
        write_doc(results, a, Path(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
