"""Conditional generation from strokes (SDEdit, Meng et al. 2022), for SPDE and flow-matching models.

A stroke image (a coarse painting: few colour levels, blurred) is pushed part of the way along the
forward process and brought back by the reverse one:

* SPDE models: run the forward chain (spdekit, the chain the model was trained on) from the stroke
  to t0 = k0 dt, then the reverse predictor-corrector sampler from t0 to 0 (the same steps as
  :func:`genmodel.sample` uses from T, only the first part skipped). The larger t0, the more of the
  stroke is destroyed: realism rises, faithfulness falls (SDEdit's trade-off).
* flow matching: "t0" is the fraction of the way towards noise: x_s = (1 - (1 - sigma_min) s) x0 + s
  stroke with s = 1 - t0, x0 ~ N(0, I), then the ODE is integrated from s to 1.

If the stroke is drawn from the data law itself, both procedures return exact draws of the model's
data law (the forward step produces the time-t0 marginal), which the tests check on Gaussian data
with exact scores/velocities.

Strokes from images (:func:`make_strokes`): per image, colour quantisation to ``levels`` values
(1-D k-means on the pixel values, Lloyd iterations from quantile starts), then a Gaussian blur of
``blur`` pixels (SDEdit's stroke simulation, Appendix: quantisation + smoothing). Scores
(:func:`stroke_scores`): realism = the digits classifier's mean top-class probability (and the
fraction above 0.9); faithfulness = the per-pixel RMS distance between the output and the stroke,
also after passing the output through the same stroke transform (comparing like with like).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .samplers import get_predictor, reverse_run


def quantise(x: np.ndarray, levels: int, iters: int = 20) -> np.ndarray:
    """Replace each pixel of one image by the nearest of ``levels`` values found by 1-D k-means."""
    v = np.asarray(x, dtype=np.float64).ravel()
    c = np.quantile(v, (np.arange(levels) + 0.5) / levels)
    for _ in range(iters):
        lab = np.abs(v[:, None] - c[None]).argmin(1)
        for j in range(levels):
            if np.any(lab == j):
                c[j] = v[lab == j].mean()
    lab = np.abs(v[:, None] - c[None]).argmin(1)
    return c[lab].reshape(np.shape(x))


def make_strokes(images, levels: int = 3, blur: float = 1.0) -> torch.Tensor:
    """Stroke paintings from (N, C, H, W) images in [-1, 1]: quantisation to ``levels`` values per
    image and channel, then a Gaussian blur of standard deviation ``blur`` pixels (0: none)."""
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    if blur < 0:
        raise ValueError(f"blur must be >= 0 pixels, got {blur}")
    x = np.asarray(torch.as_tensor(images, dtype=torch.float64))
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            q = quantise(x[i, c], levels)
            out[i, c] = ndimage.gaussian_filter(q, blur, mode="nearest") if blur > 0 else q
    return torch.as_tensor(np.clip(out, -1, 1), dtype=torch.float32)


def load_stroke(path, image_size: int, invert: bool = False) -> torch.Tensor:
    """A user's stroke PNG (any size, grey or colour) as a (1, 1, S, S) tensor in [-1, 1]. ``invert``
    flips dark-on-light drawings to the digits' light-on-dark convention."""
    from pathlib import Path

    from skimage import color, io

    from .data import _resize, _to_unit_range

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"stroke image {str(p)!r} does not exist")
    try:
        a = np.asarray(io.imread(p))
    except Exception as exc:  # noqa: BLE001 - any reader failure: the file is not a readable image
        from spdekit.config import image_read_error

        raise ValueError(f"cannot read stroke image {str(p)!r}: {image_read_error(exc)}") from exc
    if a.ndim == 3:
        a = color.rgb2gray(a[..., :3]) if a.shape[-1] >= 3 else a[..., 0]
    x = _to_unit_range(a, str(p))
    if invert:
        x = -x
    return torch.as_tensor(np.clip(_resize(x[None, None], image_size), -1, 1), dtype=torch.float32)


def _check_strokes(strokes) -> torch.Tensor:
    s = torch.as_tensor(strokes, dtype=torch.float32)
    if s.ndim != 4:
        raise ValueError(f"strokes must be (N, C, H, W), got {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError("strokes contain NaN or inf")
    return s.contiguous()


def sdedit_spde(process, score_fn, strokes, t0: float, steps: int | None = None, corrector_steps: int = 1,
                snr: float = 0.16, seed=None, progress: bool = False, predictor: str = "em",
                corrector: str = "langevin", reference=None, device=None) -> torch.Tensor:
    """SDEdit with an SPDE model: forward chain from the strokes to t0, reverse sampler back to 0.

    ``steps``: predictor steps over the WHOLE interval [0, T] (as in :func:`genmodel.sample`); the
    reverse run takes round(t0 / Delta) of them, Delta = T / steps. t0 is rounded to a chain time
    k0 dt. ``predictor``/``corrector``: as in :func:`genmodel.sample` (the one reverse loop,
    :func:`genmodel.samplers.reverse_run`). ``device``: where the chain runs (default: the strokes' device);
    ``score_fn`` gets tensors there."""
    from tqdm.auto import tqdm

    s = _check_strokes(strokes)
    if device is not None:
        s = s.to(device)
    if not 0 < t0 <= process.T:
        raise ValueError(f"t0 must lie in (0, T = {process.T}], got {t0}")
    steps = process.n_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    k0 = max(1, int(round(t0 / process.dt)))
    t0 = k0 * process.dt
    n_rev = max(1, int(round(t0 / (process.T / steps))))
    if get_predictor(predictor).on_chain_grid:
        n_rev = min(n_rev, k0)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(s.device).manual_seed(int(rng.integers(2**62)))
    u = process.simulate(s, k0, rng).contiguous()
    with tqdm(total=n_rev, disable=not progress, desc="sdedit", unit="step") as bar:
        return reverse_run(process, score_fn, u, t0, n_rev, predictor, corrector, corrector_steps, snr, rng=rng,
                           gen=gen, reference=reference, bar=bar)


def sdedit_flow(velocity_fn, path, strokes, t0: float, steps: int = 100, method: str = "heun", seed=None,
                progress: bool = False) -> torch.Tensor:
    """SDEdit with a flow-matching model: x_s on the OT path from the strokes at s = 1 - t0 (t0 in
    (0, 1]), then the ODE from s to 1 in round(steps * t0) steps (``steps`` for the whole [0, 1])."""
    from .flow_matching import integrate

    s_img = _check_strokes(strokes)
    if not 0 < t0 <= 1:
        raise ValueError(f"t0 must lie in (0, 1] for flow matching, got {t0}")
    rng = np.random.default_rng(seed)
    x0 = torch.as_tensor(rng.standard_normal(s_img.shape), dtype=s_img.dtype)
    s = 1.0 - t0
    x = path.interpolate(x0, s_img, torch.full((s_img.shape[0],), s))
    with torch.no_grad():
        return integrate(velocity_fn, x, max(1, int(round(steps * t0))), method, t0=s, t1=1.0, progress=progress)


OUTSIDE = 1.5  # |pixel| above this before clipping (data lie in [-1, 1]): a failed output, not a digit


def stroke_scores(outputs, strokes, classifier=None, levels: int = 3, blur: float = 1.0) -> dict:
    """Realism (classifier confidence) and faithfulness (RMS distance to the stroke) of SDEdit outputs.

    Outputs with any pixel outside [-1.5, 1.5] before clipping are FLAGGED (``outside_fraction``,
    ``outside_indices``): they are the reverse chain running away, not images. Faithfulness and the
    mean confidence are computed over the other outputs; ``confident_fraction`` counts a flagged
    output as not confident (its label is -1)."""
    raw = torch.as_tensor(outputs, dtype=torch.float32)
    s = torch.as_tensor(strokes, dtype=torch.float32)
    bad = (raw.abs() > OUTSIDE).flatten(1).any(1)
    ok = ~bad
    x = raw.clamp(-1, 1)
    out = {"outside_fraction": float(bad.float().mean()), "outside_indices": torch.nonzero(bad).ravel().tolist(),
           "max_abs_before_clipping": float(raw.abs().max())}
    if ok.any():
        out["l2_to_stroke"] = float((x[ok] - s[ok]).square().flatten(1).mean(1).sqrt().mean())
        out["l2_to_stroke_after_stroke_transform"] = float(
            (make_strokes(x[ok], levels, blur) - s[ok]).square().flatten(1).mean(1).sqrt().mean())
    else:
        out["l2_to_stroke"] = out["l2_to_stroke_after_stroke_transform"] = None
    if classifier is not None:
        f = max(1, x.shape[-1] // 16)
        xs = torch.nn.functional.avg_pool2d(x, f) if f > 1 else x
        p = classifier.probabilities(xs)
        top = p.max(1)
        okn = ok.numpy()
        out.update({"confidence_mean": float(top[okn].mean()) if okn.any() else None,
                    "confident_fraction": float(((top > 0.9) & okn).mean()),
                    "labels": np.where(okn, p.argmax(1), -1).tolist()})
    return out


def stroke2img(model, process, strokes, t0: float, steps: int | None = None, seed=None, progress: bool = False,
               **kw) -> torch.Tensor:
    """Dispatch on the model kind (from :func:`genmodel.runs.load_model`)."""
    if getattr(process, "method", None) == "flow_matching":
        return sdedit_flow(model, process, strokes, t0, steps or 100, kw.get("method", "heun"), seed, progress)
    from .runs import score_function

    return sdedit_spde(process, score_function(model), strokes, t0, steps, kw.get("corrector_steps", 1),
                       kw.get("snr", 0.16), seed, progress, predictor=kw.get("predictor", "em"),
                       corrector=kw.get("corrector", "langevin"), device=kw.get("device"))


__all__ = ["OUTSIDE", "make_strokes", "quantise", "load_stroke", "sdedit_spde", "sdedit_flow", "stroke_scores",
           "stroke2img"]
