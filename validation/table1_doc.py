"""The documents of validation/table1.py: docs/table1[_quick][_ablation].md and its raw JSON.

Provenance (commit, machine), the markdown table with its per-seed spread, rows kept from an earlier raw
JSON (a table made in pieces, or rewritten with ``--rewrite``), the withdrawn ablation rows, and the
paper's published numbers (copied, not measured).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

DIVERGED = 1.5  # |pixel| above this before clipping to [-1, 1] counts as a diverged sample pixel


# The paper's own Table 1 (Inception-v3 features; CIFAR-10 32x32 / CelebA 64x64 / ImageNet2012 64x64 /
# LSUN church 256x256; 200k training steps on 8 H100). Copied from the paper, NOT measured here.
PAPER_TABLE1 = [
    ("Ours (anisotropic)", "10.2 / 3.1 / 13.5 / 3.6", "2.0 / 2.4 / 19.1 / 5.9", "6.1e-4 / 1.7e-3 / 1.9e-2 / 4.6e-3"),
    ("Lipman et al. (2022)", "9.2 / 2.4 / 10.5 / -", "2.0 / 2.3 / 26.8 / -", "7.1e-4 / 1.4e-3 / 3.4e-2 / -"),
    ("Song et al. (2021c)", "9.8 / 2.5 / 12.3 / 2.5", "7.1 / 3.7 / 24.0 / 16.7", "6.6e-4 / 2.6e-3 / 2.5e-2 / 1.2e-2"),
    ("Vandersanden et al. (2024)", "7.1 / 2.7 / - / 3.4", "28.7 / 12.0 / - / 49.1", "2.2e-2 / 8.4e-3 / - / 4.3e-2"),
    ("Ours (isotropic), CIFAR-10 only", "8.8", "19.6", "1.6e-2"),
    ("Rissanen et al. (2023), CIFAR-10 only", "5.9", "84.3", "7.2e-2"),
]


def samples_for(prof: dict, size: int) -> int:
    """Samples scored per run: ``n_samples``, or ``n_samples_32px`` at 32 px where the profile sets it."""
    return int(prof.get("n_samples_32px", prof["n_samples"])) if size == 32 else int(prof["n_samples"])


def _ms(vals, fmt):
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(np.mean(vals))} ± {fmt.format(np.std(vals, ddof=1))}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores visible, "
            f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} thread)")


def commit() -> str:
    if os.environ.get("TABLE1_COMMIT"):  # a copy of the tree whose .git is missing or stale (e.g. on a GPU machine)
        return os.environ["TABLE1_COMMIT"]
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return h + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _run_machines(rows: dict) -> list[str]:
    """A line naming the machines the runs were made on, when any run was made elsewhere than here. Runs
    from before the field was stored say "not recorded" (not this machine: a table can be made in pieces)."""
    here = machine()
    seen: dict = {}
    for rs in rows.values():
        for r in rs:
            m = r.get("machine", "machine not recorded (a run from before runs stored it)")
            seen[m] = seen.get(m, 0) + 1
    if set(seen) <= {here}:
        return []
    return ["* runs made on: " + "; ".join(f"{m} ({n} run{'s' if n > 1 else ''})" for m, n in seen.items())]


def kept_rows(raw_path: Path, sizes, figdir: Path, mode: str) -> tuple[dict, dict, dict, dict]:
    """(rows, reference rows, grids, commands) of the image sizes NOT in ``sizes``, read from an earlier
    raw JSON next to the document (``--keep-rows``: a table made in pieces, e.g. 16 px on one machine and
    32 px on another; each size keeps the command that made it). Nothing when the file does not exist."""
    if not raw_path.is_file():
        return {}, {}, {}, {}
    try:
        raw = json.loads(raw_path.read_text())
        rows, grids = {}, {}
        for name, rs in raw["rows"].items():
            key, px = name.rsplit("_", 1)
            if not px.endswith("px"):
                raise ValueError(f"row {name!r} does not end in _<size>px")
            size = int(px[:-2])
            if size in sizes:
                continue
            rows[(key, size)] = rs
            g = figdir / f"{mode}_{key}_{size}px.png"
            if g.is_file():
                grids[(key, size)] = g
        refs = {int(k): v for k, v in raw.get("reference", {}).items() if int(k) not in sizes}
        made = raw.get("commands") or {str(size): raw.get("command") for _, size in rows}
        commands = {int(k): v for k, v in made.items() if int(k) not in sizes and v}
    except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as e:
        raise SystemExit(f"--keep-rows: {raw_path} is not a raw table written by this script ({e!r})") from e
    return rows, refs, grids, commands


def write_doc(path: Path, rows: dict, refs: dict, args, prof: dict, total_seconds: float, grids: dict,
              labels: dict, commands: dict | None = None, written_at: str | None = None,
              machine_line: str | None = None, reference_check: dict | None = None) -> None:
    """The markdown table. ``commands``: {image size: argv} when the rows were made by several commands
    (``--keep-rows``); default: this process's command line. ``written_at``: the commit writing it (default:
    HEAD now); ``machine_line``: the header's machine (default: this machine and ``args.note``).
    Withdrawn ablation rows (:func:`withdrawn_row`) leave the table for a paragraph saying why, with
    ``reference_check`` ({l: outside fraction and max |u| of the reference-only reverse chain})."""
    commands = commands or {None: sys.argv}
    gone = {k: rs for k, rs in rows.items() if withdrawn_row(k[0])}
    rows = {k: rs for k, rs in rows.items() if k not in gone}
    grids = {k: g for k, g in grids.items() if k not in gone}
    if machine_line is None:
        machine_line = machine() + (f"; {args.note}" if args.note else "")
    lines = [
        "<!-- generated by validation/table1.py; do not edit by hand -->",
        f"# Table 1 on digits{' (ablation)' if args.ablation else ''}: "
        f"{'SMOKE-LEVEL quick run' if args.quick else 'full run'}",
        "",
        *(f"* command{'' if size is None else f' ({size} px rows)'}: `python validation/table1.py "
          f"{' '.join(argv[1:])}`" for size, argv in sorted(commands.items(), key=lambda kv: kv[0] or 0)),
        f"* runs made at commit(s) {', '.join(sorted({r.get('commit', '?') for rs in rows.values() for r in rs}))}; "
        f"this document written at commit {written_at or commit()}; date (UTC): "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())}",
        f"* machine: {machine_line}",
        *_run_machines(rows),
        f"* wall time: {sum(r.get('wall_seconds', float('nan')) for rs in rows.values() for r in rs) / 60:.1f} min "
        f"for the runs (training, export, sampling, scoring), {total_seconds / 60:.1f} min for this invocation "
        "(runs finished earlier are read back, not redone)",
        "",
    ]
    if args.quick:
        lines += [
            f"**Smoke level.** `--quick` trains a {next(iter(rows.values()))[0]['params'] / 1e6:.2f} M-parameter U-Net "
            "for "
            f"{prof['steps']} steps (batch {prof['batch']}), one seed, and scores {prof['n_samples']} samples: it "
            "checks that every method trains, samples and is scored end to end on the same footing. It does "
            "NOT rank the methods: at this budget all are far from converged, and FID/KID on "
            f"{prof['n_samples']} samples have a large sampling bias and spread. The full run "
            "(`python validation/table1.py`) is the comparison.",
            "",
        ]
    if prof.get("missing"):
        lines += [f"**Not complete.** {prof['missing']}", ""]
    net = prof["network"]
    lines += [
        "## Setup (the same for every method)",
        "",
        f"* data: scikit-learn digits in [-1, 1], sizes {prof['sizes']}, stratified 80/20 split (seed 0); "
        "metrics against the held-out 20 % (360 images)",
        f"* network: U-Net ch {net['ch']}, ch_mult {net['ch_mult']}, {net['num_res_blocks']} res block(s) per level, "
        f"attention at {net['attn_resolutions']} (at 32 px: [8]), Gaussian Fourier time embedding, linear skip "
        f"kernel {net['skip_kernel']}; SPDE models: score_param '{net['score_param']}' (Gaussian reference score + "
        "network residual; why not 'moments': see validation/table1.py); flow matching: the network output is the "
        "velocity",
        f"* training: {prof['steps']} steps, batch {prof['batch']}, Adam lr {prof['lr']} (warm-up {prof['warmup']}"
        + (", then cosine decay to 0.1 lr" if prof.get("lr_schedule") == "cosine" else "") + "), "
        f"grad clip 1, EMA {prof['ema']}, seeds {prof['seeds']}, 1 torch thread. Losses: exact-Gaussian DSM "
        "(VE-SDE, isotropic: linear chains), path-space DSM (anisotropic; genmodel.path_dsm: the same target as the "
        "exact DSM on a linear chain, unbiased on the nonlinear one), one network evaluation per state for each; "
        "CFM (flow matching)" + ("; the transition-loss row: one-step transition DSM with antithetic pairs (2 network "
        "evaluations per state)" if "anisotropic_transition" in labels else "")
        + ("; the ablation's variants: all one-step transition DSM (the path loss needs white noise, l = 0; "
           "the exact loss a linear chain)"
        if args.ablation else ""),
        f"* processes: T = {prof['T']}, dt = {prof['dt']} (K = {round(prof['T'] / prof['dt'])} chain steps); VE-SDE "
        "alpha2 geometric 0.01 -> 2; presets of Section 5; flow matching sigma_min = 1e-4",
        f"* sampling: SPDE predictor-corrector, predictor steps 264 (16 px) / 528 (32 px) (the stability bound of "
        f"the heat presets with 3 % margin), {prof['corrector']} corrector step(s) each, snr 0.16, moment-matched "
        "Gaussian prior; flow matching Heun with the same number of network evaluations (NFE) per image; "
        f"{prof['n_samples']} samples per run" + (f" ({samples_for(prof, 32)} at 32 px)" if 32 in prof["sizes"]
                                                  and samples_for(prof, 32) != prof["n_samples"] else ""),
        "* metrics: shipped digits classifier (`genmodel/assets/digits_classifier_16.pt`): FID/KID on its 128-d "
        "features, IS analogue (max 10), mean top-class probability and the fraction above 0.9; 32 px images "
        "are scored after 2x2 area averaging to 16 px (samples and held-out alike)",
        "",
        "## Our results (measured by this script)",
        "",
        "| method | px | FID ↓ | KID ↓ | IS analogue ↑ | confidence ↑ | conf > 0.9 ↑ | train s / 1k steps | "
        f"sample s / image | network on | NFE | params | pixels with abs > {DIVERGED} before clipping |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, size), rs in rows.items():
        lines.append(
            f"| {labels[method]} | {size} | {_ms([r['fid'] for r in rs], '{:.2f}')} | "
            f"{_ms([r['kid'] for r in rs], '{:.4f}')} | {_ms([r['is_analogue'] for r in rs], '{:.2f}')} | "
            f"{_ms([r['confidence_mean'] for r in rs], '{:.3f}')} | "
            f"{_ms([r['confident_fraction'] for r in rs], '{:.3f}')} | "
            f"{_ms([r['train_s_per_1k'] for r in rs], '{:.0f}')} | "
            f"{_ms([r['sample_s_per_image'] for r in rs], '{:.3f}')} | "
            f"{', '.join(sorted({r.get('timed_on', 'CPU') for r in rs}))} | {rs[0]['nfe']} | "
            f"{rs[0]['params'] / 1e6:.2f} M | {_ms([r['diverged_fraction'] for r in rs], '{:.3f}')} |")
    for size, r in refs.items():
        lines.append(f"| held-out vs training digits (floor) | {size} | {r['fid']:.2f} | {r['kid']:.4f} | "
                     f"{r['is_analogue']:.2f} | {r['confidence_mean']:.3f} | {r['confident_fraction']:.3f} | - | - | - "
                     "| - | - | 0 |")
    bad = [(k, r["max_abs_before_clamp"], r["diverged_fraction"]) for k, rs in rows.items() for r in rs
           if r["diverged_fraction"] > 0.01 and r["max_abs_before_clamp"] > 10]
    if bad:
        lines += ["", "**Diverged samplers.** " + "; ".join(
            f"{labels[k[0]]} ({k[1]} px): {100 * f:.0f} % of the pixels outside [-{DIVERGED}, {DIVERGED}], up to abs "
            f"{m:.3g} before clipping" for k, m, f in bad)
            + ". Their reverse chains ran away (the images saturate after clipping to [-1, 1]), so their metrics "
            "measure that, not what the method reaches with enough training."]
    if gone:
        lines += ["", _withdrawn_text(gone, labels, reference_check or {})]
    if not args.ablation:
        lines += ["", ROWS_DIFFER]
    lines += [
        "",
        f"Values are mean ± sample standard deviation over {len(prof['seeds'])} seed(s) (one value: one seed). "
        "Timings are wall-clock on the machine each run was made on (above; 'network on': where the U-Net ran, the "
        "chain's numerics and the data always on one CPU thread)" + (" (shared with other jobs: inflated)" if args.note
                                                                    else "")
        + "; train s / 1k steps excludes setup (forward-moment simulation, data loading). Timings of different "
        "devices do not compare.",
        "",
    ]
    if len(prof["seeds"]) > 1:
        lines += [
            "Per seed (the spread behind the means; seeds " + ", ".join(map(str, prof["seeds"])) + "):",
            "",
            "| method | px | FID per seed | conf > 0.9 per seed | commit per seed |",
            "|---|---|---|---|---|",
        ]
        for (m, size), rs in rows.items():
            fid = " / ".join(f"{r['fid']:.2f}" for r in rs)
            conf = " / ".join(f"{r['confident_fraction']:.3f}" for r in rs)
            made = " / ".join(str(r.get("commit", "?")).split()[0] + ("*" if "uncommitted" in str(r.get("commit"))
                                                                       else "") for r in rs)
            lines.append(f"| {labels[m]} | {size} | {fid} | {conf} | {made} |")
        lines += ["", "(* the run's tree had uncommitted changes at that commit.)", ""]
    lines += [
        "Sample grids (first 64 samples of seed " + str(prof["seeds"][0]) + "):",
        "",
    ]
    for key, g in grids.items():
        lines.append(f"* {labels[key[0]]}, {key[1]} px: ![{key[0]} {key[1]}px]({os.path.relpath(g, path.parent)})")
    if not args.ablation:
        lines += [
            "",
            "## The paper's published numbers (THEIRS, copied from Table 1 of the paper; not measured here)",
            "",
            "Inception-v3 features, CIFAR-10 32x32 / CelebA 64x64 / ImageNet2012 64x64 / LSUN church 256x256, "
            "200k training steps (NCSN++, 8 H100). Not comparable with the digits numbers above (other data, "
            "other feature extractor, 10^2-10^3 times more training).",
            "",
            "| method (paper) | IS ↑ | FID ↓ | KID ↓ |",
            "|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in PAPER_TABLE1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# What keeps this table from attributing anything to anisotropy (issue 23); docs/anisotropy.md is the controlled study.
ROWS_DIFFER = (
    "**What this table can and cannot say.** Its rows differ in more than anisotropy: 'Ours (isotropic)' is the "
    "isotropic heat SPDE of eq. 17 (alpha2 -> 0.5, the conservative stencil, the exact Gaussian loss), not the "
    "isotropic limit of the anisotropic row (alpha2 -> 2, the paper's stencil, the path loss); the VE-SDE row's "
    "alpha2 0.01 -> 2 ends at a standard deviation of about 0.87, far below Song & Ermon's sigma_max (the largest "
    "distance between training images: 17.1 at 16 px), so it is not the paper's VE baseline; no row has the time "
    "measure time_weight_power = 1; and the SPDE rows were sampled with Euler-Maruyama at Delta = 7.6 dt (16 px) "
    "and 3.8 dt (32 px). A difference between rows here cannot be attributed to anisotropy. The controlled "
    "comparison (the same process with "
    "lambda1 = inf as the control, the faithful VE-SDE, flow matching, a sharp-edged data set, 5 seeds for the "
    "anisotropic pair, paired differences with t-intervals) is [docs/anisotropy.md](anisotropy.md) "
    "(`validation/anisotropy_study.py`).")

# Ablation rows withdrawn from the document (their raw numbers stay in the JSON): correlated noise, l = 1, 2.
WITHDRAWN_ELL = (1, 2)


def withdrawn_row(key: str) -> bool:
    """A withdrawn ablation row: ``aniso_l1min<lambda1_min>_ell<l>`` with l in WITHDRAWN_ELL."""
    if not key.startswith("aniso_l1min") or "_ell" not in key:
        return False
    return int(key.rsplit("_ell", 1)[1]) in WITHDRAWN_ELL


def _withdrawn_text(gone: dict, labels: dict, check: dict) -> str:
    names = "; ".join(sorted({labels.get(k[0], k[0]) for k in gone}))
    measured = "; ".join(f"l = {ell}: {100 * c['outside']:.1f} % of the pixels outside [-{DIVERGED}, {DIVERGED}], "
                         f"max abs {c['max_abs']:.3g}" for ell, c in sorted(check.items(), key=lambda kv: int(kv[0])))
    return (f"**Withdrawn: {names}.** These correlated-noise variants were trained and sampled (their numbers stay "
            "in the raw JSON next to this file) but are not reported: their score is the Gaussian reference plus "
            "the network's residual, and the reference keeps only the diagonal of the chain's noise covariance in "
            "the DCT-II modes, which for Q-Wiener noise with correlation length l > 0 on this grid is not its full "
            "law. The reference alone already drives the reverse chain out of the data range"
            + (f" (network output set to zero, the moment-matched prior, the Table 1 sampler, "
               f"{next(iter(check.values()))['n']} samples: {measured})" if check else "")
            + ", so those rows measured that reference error, not the effect of l. Redoing them needs a reference "
            "with the full correlated-noise law; it is not built.")
