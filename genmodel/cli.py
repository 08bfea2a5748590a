"""Command line: ``genmodel train | sample | evaluate | train-classifier | info``.

    genmodel train CONFIG.toml [--out DIR] [--resume] [--steps N]
    genmodel sample CKPT --n 64 --out grid.png          (or samples.npz)
    genmodel evaluate CKPT --n 1000                       (FID/KID/IS analogue vs held-out data)
    genmodel train-classifier --out genmodel/assets/digits_classifier_16.pt
    genmodel stroke2img CKPT stroke.png --t0 0.8 --out out.png   (SDEdit; or --from-digits 8)
    genmodel train-autoencoder --out ae.pt                 (latent models: [data] dataset = "latents")
    genmodel likelihood CKPT --n 360                        (bits/dim of held-out images, probability-flow ODE)
    genmodel info CKPT

Samplers: ``--predictor em|exponential|ode|exponential_ode`` and ``--corrector langevin|none``
(:mod:`genmodel.samplers`).

Errors are one line on stderr, ``genmodel COMMAND: error: ...``, naming the option or the config key
(``[section] key``); options and outputs are checked before any training or sampling. Exit status: 0
done; 2 bad options, config, checkpoint or data; 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM
(``genmodel train`` then writes ``last.pt`` at the current step first: ``--resume`` continues it).
Unexpected errors (bugs) keep their traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spdekit.cli import (
    ArgumentParser,
    HelpFormatter,
    UsageError,
    atomic_output,
    check_output_path,
    float_in,
    int_at_least,
    interrupt_status,
    one_line,
    one_line_warnings,
    sigterm_raises,
)

from .samplers import CORRECTORS, PREDICTORS


def save_grid(images, path, nrow: int | None = None, title: str | None = None) -> Path:
    """Tile (N, C, H, W) images in [-1, 1] into one PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(torch.as_tensor(images).detach().float().clamp(-1, 1))
    N, C, H, W = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(N)))
    ncol = int(math.ceil(N / nrow))
    pad = 1
    canvas = np.ones((ncol * (H + pad) + pad, nrow * (W + pad) + pad, C))
    for i in range(N):
        r, c = divmod(i, nrow)
        canvas[pad + r * (H + pad):pad + r * (H + pad) + H, pad + c * (W + pad):pad + c * (W + pad) + W] = \
            (np.moveaxis(x[i], 0, -1) + 1) / 2
    fig = plt.figure(figsize=(max(2.0, nrow * 0.6), max(2.0, ncol * 0.6 + (0.3 if title else 0))), dpi=100)
    ax = fig.add_axes([0, 0, 1, 0.93 if title else 1])
    ax.imshow(canvas[..., 0] if C == 1 else canvas, cmap="gray" if C == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _generate(args, model, process, prior, ck, n):
    from .distributed import on_device, placed
    from .runs import score_function
    from .sampling import sample

    if args.threads:
        from .train import _set_threads

        _set_threads(args.threads)
    samp = ck.get("sampling", {})
    fm = getattr(process, "method", None) == "flow_matching"
    shape = (model.net.cfg.in_channels, model.net.cfg.image_size, model.net.cfg.image_size) if fm else None
    if fm:
        model = on_device(model, args.device)  # the network on the GPU, the ODE state on the host
        from .flow_matching import sample as fm_sample

        steps, method = args.steps or samp.get("steps", 100), samp.get("method", "heun")
        t0 = time.perf_counter()
        x = fm_sample(model, n, shape, steps=steps, method=method, seed=args.seed, batch_size=args.batch_size,
                      progress=not args.quiet)
        return x, time.perf_counter() - t0, {"steps": steps, "method": method}
    model, chain = placed(model, args.device)  # the chain on the network's device when spdekit can run there
    steps = args.steps or samp.get("steps") or process.n_steps
    corr = samp.get("corrector_steps", 1) if args.corrector_steps is None else args.corrector_steps
    snr = samp.get("snr", 0.16) if args.snr is None else args.snr
    data = None
    if args.prior == "forward" or prior is None:
        from .data import load_dataset

        data, _ = load_dataset(ck["config"]["data"])
    t0 = time.perf_counter()
    predictor = args.predictor or samp.get("predictor", "em")
    corrector = args.corrector or samp.get("corrector", "langevin")
    x = sample(process, score_function(model), n, steps=steps, corrector_steps=corr, snr=snr,
               prior=args.prior if prior is not None or args.prior == "forward" else "gaussian",
               data=data, prior_stats=prior if args.prior == "gaussian" else None, seed=args.seed,
               batch_size=args.batch_size, progress=not args.quiet, predictor=predictor, corrector=corrector,
               device=chain).cpu()
    return x, time.perf_counter() - t0, {"steps": steps, "corrector_steps": corr, "snr": snr, "prior": args.prior,
                                         "predictor": predictor, "corrector": corrector}


def _load_samples(paths, shape) -> torch.Tensor:
    """Samples written by ``genmodel sample --out X.npz`` (several files are concatenated)."""
    parts = []
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as z:
                images = z["images"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--samples {path!r} is not a genmodel samples file (.npz with 'images'): {exc}") from exc
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
            raise ValueError(f"--samples {path!r} holds images of shape {images.shape[1:]}, the model's data have "
                             f"{tuple(shape)}")
        if not np.isfinite(images).all():
            raise ValueError(f"--samples {path!r} contains NaN or inf")
        parts.append(torch.as_tensor(images, dtype=torch.float32))
    return torch.cat(parts)


def _decode_if_latent(x, ck):
    """Generated latents -> images for a model trained on an autoencoder's latents (genmodel.latent)."""
    from .latent import decode_latents, decoder_for

    ae = decoder_for(ck.get("config", {}))
    return x if ae is None else decode_latents(ae, x)


GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
OUT_SUFFIXES = (".npz",) + GRID_SUFFIXES
FID_MIN_SAMPLES = 500


def _say(*args, **kw):
    print(*args, **kw, flush=True)  # a line at once, also into a pipe or log file


def _write_images(out: Path, x, extra: dict, grid=None) -> None:
    """Write ``x`` to ``out`` (.npz arrays, or ``grid()`` as an image) atomically: no half-written file."""
    with atomic_output(out) as tmp:
        if out.suffix.lower() == ".npz":
            np.savez_compressed(tmp, images=x.numpy(), **extra)
        else:
            grid(tmp)


def _check_classifier(classifier, shape) -> None:
    """A classifier (DigitsClassifier) reads grey images of at least 8x8: refuse other data before sampling."""
    if classifier is None:
        return
    C, H, W = shape
    want = classifier.arch.get("in_channels", 1)
    if C != want or min(H, W) < 8:
        raise UsageError(f"--classifier: the classifier reads {want}-channel images of at least 8x8, the model's data "
                         f"are {C}x{H}x{W}; use --inception-weights FILE (or train on grey images: [data] "
                         f"grayscale = true)")


def _resume_command(args, out: Path) -> str:
    cmd = f"genmodel train {args.config} --out {out} --resume"
    if args.steps is not None:
        cmd += f" --steps {args.steps}"
    return cmd + (" --no-export" if args.no_export else "")


def cmd_train(args) -> int:
    from . import distributed
    from .runs import make_trainer
    from .train import TrainingInterrupted, load_config, seconds_to_text

    t0 = time.perf_counter()
    cfg = load_config(args.config)  # refuses a config [output] dir outside the working directory
    if args.out:  # the command line chooses any folder
        cfg["output"]["dir"] = args.out
    if args.steps is not None:
        cfg["train"]["steps"] = args.steps
    out = Path(args.out) if args.out else Path(cfg["output"]["dir"])
    check_output_path(out / "last.pt", "--out" if args.out else "[output] dir", shown=out)
    resume_from = None
    if args.resume:
        resume_from = Path(args.resume) if isinstance(args.resume, str) else out / "last.pt"
        if not resume_from.is_file():
            raise UsageError(f"--resume: no checkpoint {str(resume_from)!r} to resume from (a run writes last.pt "
                             f"into its --out folder)")
    ctx = distributed.from_environment(cfg["train"]["device"])  # None outside torchrun
    main_rank = ctx is None or ctx.is_main
    say = _say if main_rank else (lambda *a, **k: None)
    say(f"genmodel train: {args.config} -> {out}")
    tr = None
    try:
        with sigterm_raises() if ctx is None else contextlib.nullcontext():
            tr = make_trainer(cfg, out_dir=args.out, log=say, dist=ctx, progress=main_rank and not args.quiet)
            setup = time.perf_counter() - t0
            where = (f"{ctx.world_size} processes ({ctx.backend}, {tr.device}), batch {tr.local_batch} per process"
                     if ctx else f"device {tr.device}")
            say(f"network: {tr.n_params:,} parameters ({tr.net.cfg.to_dict()}); process: {tr.process!r}; "
                f"loss: {tr.loss.name}; {tr.threads} thread(s); {where}; setup {setup:.1f} s")
            if resume_from is not None:
                tr.resume(resume_from)
            tr.run(progress=not args.quiet, stop_on_signals=ctx is None)
            if main_rank:
                say(f"trained {tr.step} steps in {seconds_to_text(tr.seconds)} (checkpoints in {tr.out})")
                if not args.no_export:
                    say(f"fitting the Gaussian prior of U_T on {tr.train_data.shape[0]} training images and writing "
                        f"{tr.out / 'model.pt'}")
                    path = tr.export()
                    total = time.perf_counter() - t0
                    say(f"wrote {path} (prior fit {getattr(tr, 'prior_seconds', 0.0):.1f} s); wall time of this "
                        f"command {seconds_to_text(total)}")
    except TrainingInterrupted as exc:
        name, status = interrupt_status(exc)
        print(f"genmodel train: interrupted ({name}) at step {exc.step} of {exc.total}: checkpoint written to "
              f"{exc.path}; resume with: {_resume_command(args, out)}", file=sys.stderr)
        return status
    except KeyboardInterrupt as exc:  # during setup or export, or a second Ctrl-C: stop at once
        name, status = interrupt_status(exc)
        if tr is None or not (out / "last.pt").is_file():
            where = "during setup; nothing written"
        else:
            where = (f"at step {tr.step}: the last checkpoint written is {out / 'last.pt'}; resume with: "
                     f"{_resume_command(args, out)}")
        print(f"genmodel train: interrupted ({name}) {where}", file=sys.stderr)
        return status
    finally:
        distributed.shutdown(ctx)
    return 0


def cmd_sample(args) -> int:
    from .runs import load_model

    out = check_output_path(args.out, "--out", suffixes=OUT_SUFFIXES)  # before any work
    model, process, prior, ck = load_model(args.ckpt)
    x, secs, used = _generate(args, model, process, prior, ck, args.n)
    x = _decode_if_latent(x, ck)
    _write_images(out, x, {k: np.asarray(v) for k, v in used.items()},
                  grid=lambda tmp: save_grid(x, tmp, title=args.title))
    print(f"wrote {args.n} samples to {out} in {secs:.1f} s ({used})")
    return 0


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .metrics import InceptionFeatures, evaluate_samples, load_classifier
    from .runs import load_model

    if args.save_samples:
        check_output_path(args.save_samples, "--save-samples", suffixes=(".npz",))
    for path in args.samples or ():
        if not Path(path).is_file():
            raise UsageError(f"--samples {path!r} does not exist")
    model, process, prior, ck = load_model(args.ckpt)
    dcfg = ck["config"]["data"]
    if dcfg.get("dataset") == "latents":  # score the decoded samples against the source images
        dcfg = dcfg["source"]
    _, heldout = load_dataset(dcfg)
    if heldout is None:
        raise ValueError("the model's dataset has no held-out split ([data] holdout = 0); nothing to compare against")
    classifier = None
    extractor = None
    if args.inception_weights:
        extractor = InceptionFeatures(args.inception_weights)
    if dcfg.get("dataset", "digits") == "digits" or args.classifier:
        classifier = load_classifier(args.classifier)
    elif extractor is None:
        raise UsageError("for data other than digits give --inception-weights FILE or --classifier FILE")
    _check_classifier(classifier, tuple(heldout.shape[1:]))
    if args.samples:
        x, secs, used = _load_samples(args.samples, heldout.shape[1:]), None, {"samples": args.samples}
        n = int(x.shape[0])
    else:
        n = args.n
    if n < FID_MIN_SAMPLES:
        print(f"genmodel evaluate: warning: FID from {n} samples is biased upwards (by about 1/n): use "
              f">= {FID_MIN_SAMPLES} (better 1000+) and compare scores only at equal sample counts", file=sys.stderr)
    if not args.samples:
        x, secs, used = _generate(args, model, process, prior, ck, args.n)
        x = _decode_if_latent(x, ck)
    if args.save_samples:
        _write_images(Path(args.save_samples), x, {})
    res = evaluate_samples(x, heldout, classifier=classifier, extractor=extractor, seed=args.seed)
    res.update({"sampling_seconds": secs, **{f"sampler_{k}": v for k, v in used.items()}})
    if classifier is not None:
        # the same metrics for the held-out data against the training data: the floor to compare with
        train, _ = load_dataset(dcfg)
        ref = evaluate_samples(train[: heldout.shape[0]], heldout, classifier=classifier, extractor=extractor,
                               seed=args.seed)
        res["reference_train_vs_heldout"] = {k: ref[k] for k in ("fid", "kid", "confident_fraction", "is_analogue")}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:>28}: {v}")
    return 0


def cmd_train_classifier(args) -> int:
    from .metrics import save_classifier, train_digits_classifier

    check_output_path(args.out)
    torch.set_num_threads(args.threads)
    model, acc = train_digits_classifier(args.image_size, args.epochs, args.seed)
    save_classifier(model, args.out, {"accuracy_heldout": acc, "image_size": args.image_size, "epochs": args.epochs,
                                      "seed": args.seed})
    print(f"wrote {args.out} (held-out accuracy {acc:.4f})")
    return 0


def cmd_stroke2img(args) -> int:
    from .data import load_digits
    from .distributed import on_device, placed
    from .latent import decode_latents, decoder_for, encode_dataset
    from .metrics import load_classifier
    from .runs import load_model
    from .stroke import load_stroke, make_strokes, stroke2img, stroke_scores

    if (args.stroke is None) == (args.from_digits is None):
        raise UsageError("give a stroke image (PNG) or --from-digits N, not both and not neither")
    if args.stroke is not None and not Path(args.stroke).is_file():
        raise UsageError(f"stroke image {args.stroke!r} does not exist")
    out = check_output_path(args.out, "--out", suffixes=OUT_SUFFIXES)
    model, process, prior, ck = load_model(args.ckpt)
    ae = decoder_for(ck.get("config", {}))  # latent models: strokes are encoded, outputs decoded
    size = int(ae.arch["image_size"] if ae is not None else ck["arch"]["image_size"])
    if args.stroke is not None:
        strokes = load_stroke(args.stroke, size, invert=args.invert)
        if args.blur > 0:  # quantise and blur the drawing like the simulated strokes
            strokes = make_strokes(strokes, args.levels, args.blur)
    else:
        strokes = make_strokes(load_digits(size, "test")[: args.from_digits], args.levels, args.blur)
    reps = strokes.repeat_interleave(args.n_per_stroke, 0)
    dcfg = ck["config"]["data"]
    dcfg = dcfg["source"] if dcfg.get("dataset") == "latents" else dcfg
    classifier = load_classifier(args.classifier) if dcfg.get("dataset", "digits") == "digits" or args.classifier \
        else None
    _check_classifier(classifier, tuple(strokes.shape[1:]))
    samp = ck.get("sampling", {})
    t0 = time.perf_counter()
    opts = {k: v for k, v in samp.items() if k in ("method", "corrector_steps", "snr", "predictor", "corrector")}
    opts.update({k: v for k, v in (("predictor", args.predictor), ("corrector", args.corrector)) if v})
    if getattr(process, "method", None) == "flow_matching":
        net, opts["device"] = on_device(model, args.device), None
    else:  # the chain on the network's device when spdekit can run there
        net, opts["device"] = placed(model, args.device)
    x = stroke2img(net, process, reps if ae is None else encode_dataset(ae, reps), args.t0,
                   steps=args.steps or samp.get("steps"), seed=args.seed, progress=not args.quiet, **opts).cpu()
    if ae is not None:
        x = decode_latents(ae, x)
    secs = time.perf_counter() - t0
    res = stroke_scores(x, reps, classifier, args.levels, args.blur)
    res.update({"t0": args.t0, "n": int(x.shape[0]), "seconds": secs})

    def grid(tmp):  # one column per stroke: the stroke on top, its outputs below
        ns, shape = strokes.shape[0], tuple(x.shape[1:])
        outs = x.reshape((ns, args.n_per_stroke) + shape).transpose(0, 1).reshape((-1,) + shape)
        title = args.title or f"strokes (top) and outputs, t0 = {args.t0}"
        save_grid(torch.cat([strokes, outs]), tmp, nrow=ns, title=title)

    _write_images(out, x, {"strokes": strokes.numpy()}, grid=grid)
    if args.json:  # stdout holds the JSON only
        print(json.dumps(res))
        print(f"wrote {out}", file=sys.stderr)
    else:
        print("\n".join(f"{k:>36}: {v}" for k, v in res.items()))
        print(f"wrote {out}")
    return 0


def cmd_likelihood(args) -> int:
    from .data import load_dataset
    from .likelihood import log_likelihood
    from .runs import load_model
    from .train import _set_threads

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.threads:
        _set_threads(args.threads)
    model, process, prior, ck = load_model(args.ckpt)
    if getattr(process, "method", None) == "flow_matching":
        raise ValueError("genmodel likelihood scores SPDE models (the probability-flow ODE of the chain); "
                         "this checkpoint is a flow-matching model")
    if prior is None:
        raise ValueError("the checkpoint stores no Gaussian prior (needed for log p_T)")
    _, heldout = load_dataset(ck["config"]["data"])
    if heldout is None:
        raise ValueError("the model's dataset has no held-out split ([data] holdout = 0); nothing to score")
    x = heldout[: args.n]
    t0 = time.perf_counter()
    bpd = log_likelihood(process, model, x, steps=args.steps, exact_trace=args.exact_trace, seed=args.seed,
                         prior=prior, batch_size=args.batch_size, progress=not args.quiet)
    res = {"bits_per_dim": float(bpd.mean()), "standard_error": float(bpd.std(ddof=1) / np.sqrt(len(bpd)))
           if len(bpd) > 1 else None, "n": int(len(bpd)), "steps": args.steps or process.n_steps,
           "exact_trace": args.exact_trace, "seconds": time.perf_counter() - t0,
           "units": "continuous density of images in [-1, 1], no dequantisation (+6.99 bits/dim on the [0, 255] scale)"}
    print(json.dumps(res) if args.json else "\n".join(f"{k:>16}: {v}" for k, v in res.items()))
    return 0


def cmd_train_autoencoder(args) -> int:
    from .data import load_digits
    from .latent import save_autoencoder, train_autoencoder

    check_output_path(args.out)
    torch.set_num_threads(args.threads)
    train, heldout = load_digits(args.image_size, "train"), load_digits(args.image_size, "test")
    ae, res = train_autoencoder(train, heldout, epochs=args.epochs, seed=args.seed,
                                latent_channels=args.latent_channels, factor=args.factor)
    save_autoencoder(ae, args.out, {**res, "image_size": args.image_size, "epochs": args.epochs, "seed": args.seed})
    print(f"wrote {args.out}: latents {ae.latent_shape}, reconstruction RMS {res}")
    return 0


def cmd_info(args) -> int:
    from .checkpoint import load_checkpoint

    ck = load_checkpoint(args.ckpt)
    show = {k: ck[k] for k in ("kind", "arch", "arch_hash", "process", "step", "seconds", "sampling", "meta")
            if k in ck}
    print(json.dumps(show, indent=2, default=str))
    return 0


def build_parser() -> ArgumentParser:
    from spdekit import __version__

    def sub_parser(name, **kw):
        return sub.add_parser(name, formatter_class=HelpFormatter, **kw)

    p = ArgumentParser(prog="genmodel", description="score-based generative models through anisotropic SPDEs",
                       formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", help="print the version and exit",
                   version=f"genmodel (spdekit {__version__}), torch {torch.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub_parser("train", help="train a score network from a TOML config",
                   description="Train from a TOML config (genmodel/configs/*.toml; README: 'Your own images'). "
                               "Ctrl-C or SIGTERM writes last.pt at the current step and exits with status 130 or "
                               "143; --resume continues the run (bit for bit on the CPU).")
    t.add_argument("config", help="TOML config; relative paths in it are relative to its folder")
    t.add_argument("--out", help="output folder for last.pt and model.pt (default: the config's [output] dir)")
    t.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="resume from OUT/last.pt, or from the given train checkpoint")
    t.add_argument("--steps", type=int_at_least(1), help="train up to this step (default: the config's [train] steps)")
    t.add_argument("--no-export", action="store_true", help="do not write model.pt at the end")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    def predictor_args(q):
        q.add_argument("--predictor", choices=PREDICTORS,
                       help="reverse-step predictor (default: the model's sampling.predictor, else em)")
        q.add_argument("--corrector", choices=CORRECTORS,
                       help="corrector; none for no corrector (default: the model's sampling.corrector, else langevin)")

    def sampler_args(q):
        q.add_argument("ckpt", help="model checkpoint (model.pt written by genmodel train)")
        q.add_argument("--steps", type=int_at_least(1),
                       help="predictor steps over [0, T] (default: the model's sampling.steps)")
        predictor_args(q)
        q.add_argument("--corrector-steps", type=int_at_least(0),
                       help="corrector steps per predictor step (default: the model's sampling.corrector_steps)")
        q.add_argument("--snr", type=float_in(0, None),
                       help="signal-to-noise ratio of the Langevin corrector (default: the model's sampling.snr)")
        q.add_argument("--prior", choices=("gaussian", "forward"), default="gaussian",
                       help="start from the fitted Gaussian prior of U_T, or from forward runs of training images")
        q.add_argument("--seed", type=int_at_least(0), default=0, help="random seed of the sampler")
        q.add_argument("--batch-size", type=int_at_least(1), default=500, help="samples per batch")
        q.add_argument("--threads", type=int_at_least(0), default=0,
                       help="torch and numba threads (0: their defaults); 1 is fastest on a busy machine")
        q.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where the network runs (auto: the GPU when torch sees one); the chain stays on the CPU")
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub_parser("sample", help="draw samples from a model checkpoint")
    sampler_args(s)
    s.add_argument("--n", type=int_at_least(1), default=64, help="number of samples")
    s.add_argument("--out", default="samples.png",
                   help=f"output: a {'/'.join(GRID_SUFFIXES)} grid or .npz arrays (checked before sampling)")
    s.add_argument("--title", help="title of the grid image (default: none)")
    s.set_defaults(func=cmd_sample)

    e = sub_parser("evaluate", help="FID/KID/IS analogue of samples against held-out data")
    sampler_args(e)
    e.add_argument("--n", type=int_at_least(2), default=1000,
                   help=f"samples to draw (FID is biased below about {FID_MIN_SAMPLES})")
    e.add_argument("--classifier",
                   help="classifier checkpoint from 'genmodel train-classifier' (default: the shipped digits one)")
    e.add_argument("--inception-weights",
                   help="local Inception-v3 state_dict file for FID features (needs torchvision; nothing is "
                        "downloaded; default: none)")
    e.add_argument("--save-samples", help="also write the samples to this .npz (default: not written)")
    e.add_argument("--samples", nargs="+", help="evaluate these .npz files of `genmodel sample` (concatenated) "
                   "instead of sampling; e.g. batches drawn in parallel with different --seed (default: sample)")
    e.add_argument("--json", action="store_true", help="print the results as JSON (stdout holds only the JSON)")
    e.set_defaults(func=cmd_evaluate)

    def digits_trainer_args(q, epochs: int):
        """The options shared by the small digits networks (classifier, autoencoder)."""
        q.add_argument("--out", required=True, help="output checkpoint file (.pt)")
        q.add_argument("--image-size", type=int, choices=(8, 16, 32), default=16, help="digits image size")
        q.add_argument("--epochs", type=int_at_least(1), default=epochs, help="training epochs")
        q.add_argument("--seed", type=int_at_least(0), default=0, help="random seed")
        q.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads")

    c = sub_parser("train-classifier", help="train the digits classifier used by evaluate")
    digits_trainer_args(c, epochs=40)
    c.set_defaults(func=cmd_train_classifier)

    k = sub_parser("stroke2img", help="SDEdit: images from a stroke painting (forward to t0, reverse back)")
    k.add_argument("ckpt", help="model checkpoint (model.pt)")
    k.add_argument("stroke", nargs="?", help="stroke image (PNG etc.), light strokes on dark unless --invert "
                                             "(default: none; then give --from-digits)")
    k.add_argument("--t0", type=float_in(0, None), required=True,
                   help="how far to push the stroke: a time in (0, T] (SPDE) or a fraction in (0, 1] (flow matching)")
    k.add_argument("--from-digits", type=int_at_least(1),
                   help="use this many held-out digits turned into strokes instead (default: none)")
    k.add_argument("--levels", type=int_at_least(2), default=3, help="colour levels of simulated strokes")
    k.add_argument("--blur", type=float_in(0, None, lo_open=False), default=1.0,
                   help="Gaussian blur (pixels) of the strokes")
    k.add_argument("--invert", action="store_true", help="the stroke image is dark on light")
    k.add_argument("--n-per-stroke", type=int_at_least(1), default=4, help="outputs per stroke")
    k.add_argument("--steps", type=int_at_least(1),
                   help="sampler steps for the whole time interval (default: the model's sampling steps)")
    predictor_args(k)
    k.add_argument("--seed", type=int_at_least(0), default=0, help="random seed")
    k.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (auto: the GPU when torch sees one)")
    k.add_argument("--classifier", help="classifier for the realism score (default: the shipped digits one)")
    k.add_argument("--out", default="stroke2img.png",
                   help=f"output: a {'/'.join(GRID_SUFFIXES)} grid or .npz arrays (checked before the work)")
    k.add_argument("--title", help="title of the grid image (default: the t0)")
    k.add_argument("--json", action="store_true", help="print the scores as JSON (stdout holds only the JSON)")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    k.set_defaults(func=cmd_stroke2img)

    lk = sub_parser("likelihood", help="negative log-likelihood (bits/dim) of held-out images (probability flow)")
    lk.add_argument("ckpt", help="model checkpoint (model.pt)")
    lk.add_argument("--n", type=int, default=64, help="held-out images to score (the first N of the model's split)")
    lk.add_argument("--steps", type=int_at_least(1), help="Heun steps on chain steps (default: the chain's K)")
    lk.add_argument("--exact-trace", action="store_true", help="exact divergence (D backward passes: small images)")
    lk.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the Hutchinson probes")
    lk.add_argument("--batch-size", type=int_at_least(1), default=128, help="images per batch")
    lk.add_argument("--threads", type=int_at_least(0), default=0, help="torch and numba threads (0: their defaults)")
    lk.add_argument("--json", action="store_true", help="print the result as JSON")
    lk.add_argument("--quiet", action="store_true", help="no progress bar")
    lk.set_defaults(func=cmd_likelihood)

    a = sub_parser("train-autoencoder", help="train the digits autoencoder for latent-space models")
    digits_trainer_args(a, epochs=30)
    a.add_argument("--latent-channels", type=int_at_least(1), default=2, help="channels of the latent images")
    a.add_argument("--factor", type=int, choices=(1, 2, 4), default=2, help="spatial downsampling factor")
    a.set_defaults(func=cmd_train_autoencoder)

    i = sub_parser("info", help="print what a checkpoint holds")
    i.add_argument("ckpt", help="checkpoint file")
    i.set_defaults(func=cmd_info)
    return p


# sentences of torch.load's error that advise unsafe loading or point to torch's docs (the first one is kept)
_TORCH_ADVICE = ("`weights_only`", "trusted source", "two options", "file an issue", "torch.load to learn more",
                 "safe_globals", "trust the source")


def error_message(exc) -> str:
    """One line for an error: without torch's advice to load with weights_only=False (genmodel never
    unpickles arbitrary objects) and imageio's plugin-install hints."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if any(a in text for a in _TORCH_ADVICE):
        sentences = re.split(r"(?<=[.!?])\s+", one_line(text))
        text = " ".join(x for x in sentences if not any(a in x for a in _TORCH_ADVICE))
        text = text.replace("Weights only load failed.", "the file holds something other than tensors and plain "
                                                         "values, or is damaged (nothing else is unpickled).")
    if "Based on the extension" in text:
        from spdekit.config import image_read_error

        text = image_read_error(text)
    return one_line(text)


def main(argv=None) -> int:
    """Run a command; returns its exit status: 0 done, 2 bad input (one line on stderr), 130/143
    interrupted by SIGINT/SIGTERM. Bad options raise :class:`spdekit.cli.UsageError` (a SystemExit
    with status 2) after printing their line, as argparse does. Unexpected errors (bugs) keep their
    traceback."""
    from .checkpoint import CheckpointError

    args = build_parser().parse_args(argv)

    def error(exc):
        print(f"genmodel {args.command}: error: {error_message(exc)}", file=sys.stderr)

    try:
        with one_line_warnings(f"genmodel {args.command}"):
            return args.func(args)
    except UsageError as exc:
        error(exc)
        raise
    except (CheckpointError, FileNotFoundError, ValueError, ImportError) as exc:
        error(exc)
        return 2
    except OSError as exc:  # a file that cannot be read or written (permissions, disk full, ...)
        error(f"{exc.strerror or exc}: {exc.filename!r}" if exc.filename else exc)
        return 2
    except KeyboardInterrupt as exc:
        name, status = interrupt_status(exc)
        print(f"genmodel {args.command}: interrupted ({name}); nothing written", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
