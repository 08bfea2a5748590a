"""Datasets: real images that ship offline, and the user's own.

* :func:`load_digits`: scikit-learn's 1797 real 8x8 handwritten digits (values 0..16), upscaled by
  bilinear interpolation to 16x16 or 32x32, scaled to [-1, 1], with a fixed stratified
  train / held-out split.
* :func:`load_images`: a folder of images (png, jpg, tif, ...), an ``.npz`` or an ``.npy`` file.
* :func:`load_patches`: random square patches of scikit-image's sample images.
* ``dataset = "latents"``: another dataset encoded by a :class:`genmodel.latent.Autoencoder`.

Every loader returns float32 tensors of shape (N, C, H, W) in [-1, 1] and checks its input: NaN or
inf, mixed image sizes, unknown formats give clear errors.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from spdekit.config import image_read_error

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
DIGITS_SIZES = (8, 16, 32)
SKIMAGE_IMAGES = ("camera", "coins", "moon", "page", "text", "clock", "coffee", "astronaut", "chelsea", "rocket")


def check_images(x: np.ndarray, name: str = "images") -> np.ndarray:
    """(N, C, H, W) finite float32 in [-1, 1] (values outside are an error, not clipped)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be floating point here, got {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        n_img = int(bad.reshape(x.shape[0], -1).any(axis=1).sum())
        raise ValueError(f"{name} contains {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} inf values "
                         f"(in {n_img} of {x.shape[0]} images)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - 1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} must lie in [-1, 1]; got values in [{lo:.4g}, {hi:.4g}]")
    return x.astype(np.float32, copy=False)


def _resize(x: np.ndarray, size: int, order: int = 1) -> np.ndarray:
    from skimage.transform import resize

    N, C, H, W = x.shape
    if (H, W) == (size, size):
        return x
    out = np.empty((N, C, size, size), dtype=np.float64)
    for i in range(N):
        for c in range(C):
            out[i, c] = resize(x[i, c], (size, size), order=order, mode="edge", anti_aliasing=False)
    return out


def load_digits(image_size: int = 16, split: str = "train", holdout: float = 0.2, seed: int = 0,
                return_labels: bool = False):
    """scikit-learn digits in [-1, 1] at ``image_size`` (8, 16 or 32), shape (N, 1, S, S).

    ``split``: "train", "test" (the held-out part) or "all". The split is stratified by class and
    fixed by ``seed`` and ``holdout`` (the fraction held out)."""
    from sklearn.datasets import load_digits as sk_digits

    if image_size not in DIGITS_SIZES:
        raise ValueError(f"image_size for digits must be one of {DIGITS_SIZES}, got {image_size}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    d = sk_digits()
    x = d.images[:, None].astype(np.float64) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        test[rng.choice(idx, size=int(round(holdout * len(idx))), replace=False)] = True
    sel = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    x = np.clip(_resize(x[sel], image_size), -1.0, 1.0).astype(np.float32)
    xt = torch.from_numpy(check_images(x, "digits"))
    return (xt, torch.from_numpy(y[sel])) if return_labels else xt


def _to_unit_range(x: np.ndarray, name: str) -> np.ndarray:
    """Integer images -> [-1, 1] by their dtype's range; float images must lie in [0, 1] or [-1, 1]."""
    if np.issubdtype(x.dtype, np.bool_):
        return x.astype(np.float32) * 2 - 1
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        if info.min < 0:
            raise ValueError(f"{name}: signed integer images ({x.dtype}) are ambiguous; convert to float in [-1, 1]")
        top = 255 if x.max() <= 255 else info.max
        return x.astype(np.float64) / top * 2 - 1
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} inf values")
    lo, hi = x.min(), x.max()
    if lo >= 0 and hi <= 1:
        return x * 2 - 1
    if lo >= -1 and hi <= 1:
        return x
    raise ValueError(f"{name}: float images must lie in [0, 1] or [-1, 1]; got [{lo:.4g}, {hi:.4g}]")


def _nchw(x: np.ndarray, name: str, channels_last_ok: bool = True) -> np.ndarray:
    """Accept (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3, 4}."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3) or not channels_last_ok:
            return x
        if x.shape[-1] in (1, 3, 4):
            return np.moveaxis(x[..., :3] if x.shape[-1] == 4 else x, -1, 1)
        return x
    raise ValueError(f"{name} must hold images as (N, H, W), (N, C, H, W) or (N, H, W, C); got shape {x.shape}")


def load_images(path, image_size: int | None = None, grayscale: bool = False) -> torch.Tensor:
    """The user's images from a folder, an ``.npz`` (key ``images``, or its only array) or a ``.npy``.

    Images must all have the same size (a folder with mixed sizes is an error listing them) unless
    ``image_size`` is given, in which case each is resized to ``image_size`` x ``image_size``
    (bilinear). ``grayscale`` converts RGB to one channel. Returns (N, C, H, W) float32 in [-1, 1]."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image source {str(p)!r} does not exist")
    if p.is_dir():
        from skimage import io as skio

        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"folder {str(p)!r} holds no images with extensions {IMAGE_EXTENSIONS}")
        imgs = []
        for f in files:
            try:
                a = np.asarray(skio.imread(f))
            except Exception as exc:  # noqa: BLE001 - report which file is unreadable
                raise ValueError(f"cannot read image {str(f)!r}: {image_read_error(exc)}") from exc
            if a.ndim == 3 and a.shape[-1] == 4:
                a = a[..., :3]
            imgs.append(a)
        shapes = sorted({a.shape[:2] for a in imgs})
        if len(shapes) > 1 and image_size is None:
            examples = {}
            for f, a in zip(files, imgs):
                examples.setdefault(a.shape[:2], f.name)
            listing = ", ".join(f"{s} (e.g. {examples[s]})" for s in shapes)
            raise ValueError(f"folder {str(p)!r} mixes image sizes: {listing}; set [data] image_size = N "
                             "(image_size=N in load_images) to resize all to N x N")
        arrs = []
        for a in imgs:
            x = _to_unit_range(a, str(p))
            x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
            if x.shape[0] == 3 and grayscale:
                x = (0.2125 * x[0] + 0.7154 * x[1] + 0.0721 * x[2])[None]
            if image_size is not None:
                x = _resize(x[None], image_size)[0]
            arrs.append(x)
        chans = sorted({a.shape[0] for a in arrs})
        if len(chans) > 1:
            raise ValueError(f"folder {str(p)!r} mixes grayscale and colour images; set [data] grayscale = true "
                             "(grayscale=True in load_images) to convert all to grey")
        x = np.stack(arrs)
    elif p.suffix.lower() in (".npz", ".npy"):
        try:
            if p.suffix.lower() == ".npy":
                raw = np.load(p, allow_pickle=False)
            else:
                with np.load(p, allow_pickle=False) as z:
                    keys = list(z.keys())
                    if "images" in keys:
                        raw = z["images"]
                    elif len(keys) == 1:
                        raw = z[keys[0]]
                    else:
                        raise ValueError(f"{str(p)!r} has arrays {keys}; name the image array 'images'")
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"cannot read {str(p)!r} as a numpy {p.suffix.lower()} file: "
                             f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            if "name the image array" in str(exc):
                raise
            raise ValueError(f"cannot read {str(p)!r} as a numpy {p.suffix.lower()} file (object arrays are "
                             f"refused): {exc}") from exc
        x = _nchw(_to_unit_range(raw, str(p)), str(p))
        if grayscale and x.shape[1] == 3:
            x = (0.2125 * x[:, 0] + 0.7154 * x[:, 1] + 0.0721 * x[:, 2])[:, None]
        if image_size is not None:
            x = _resize(x, image_size)
    else:
        raise ValueError(f"unknown image source {str(p)!r}: give a folder of images ({', '.join(IMAGE_EXTENSIONS)}), "
                         "a .npz or a .npy file")
    x = np.clip(x, -1.0, 1.0)
    return torch.from_numpy(check_images(x.astype(np.float32), str(p)))


def load_patches(patch_size: int = 16, n: int = 4096, images=("camera", "coins", "moon", "page"),
                 seed: int = 0) -> torch.Tensor:
    """``n`` random ``patch_size`` patches of scikit-image sample images (grayscale), (n, 1, p, p)."""
    from skimage import color, data

    rng = np.random.default_rng(seed)
    sources = []
    for name in images:
        if name not in SKIMAGE_IMAGES:
            raise ValueError(f"unknown scikit-image sample {name!r}; allowed: {SKIMAGE_IMAGES}")
        a = getattr(data, name)()
        if a.ndim == 3:
            a = color.rgb2gray(a[..., :3])
        a = _to_unit_range(np.asarray(a), name)
        if min(a.shape) < patch_size:
            raise ValueError(f"patch_size {patch_size} exceeds the size {a.shape} of image {name!r}")
        sources.append(a)
    out = np.empty((n, 1, patch_size, patch_size), dtype=np.float32)
    which = rng.integers(0, len(sources), n)
    for i, s in enumerate(which):
        a = sources[s]
        y = rng.integers(0, a.shape[0] - patch_size + 1)
        x = rng.integers(0, a.shape[1] - patch_size + 1)
        out[i, 0] = a[y:y + patch_size, x:x + patch_size]
    return torch.from_numpy(check_images(out, "patches"))


def load_dataset(cfg: dict):
    """From a ``[data]`` config table: dataset = "digits" | "images" | "patches" (see the loaders).
    Returns (train, heldout) tensors; heldout may be None."""
    cfg = dict(cfg)
    kind = cfg.pop("dataset", "digits")
    if kind == "digits":
        size = int(cfg.pop("image_size", 16))
        holdout = float(cfg.pop("holdout", 0.2))
        if not 0 < holdout < 1:
            raise ValueError(f"[data] holdout (the held-out fraction) must lie in (0, 1) for digits, got {holdout}")
        seed = int(cfg.pop("seed", 0))
        _reject(cfg, "digits")
        return (load_digits(size, "train", holdout, seed), load_digits(size, "test", holdout, seed))
    if kind == "images":
        if "path" not in cfg:
            raise ValueError("[data] dataset = 'images' needs path = 'folder or .npz/.npy'")
        path = os.path.expanduser(cfg.pop("path"))
        size = cfg.pop("image_size", None)
        gray = bool(cfg.pop("grayscale", False))
        holdout = float(cfg.pop("holdout", 0.1))
        seed = int(cfg.pop("seed", 0))
        _reject(cfg, "images")
        if not 0 <= holdout < 1:
            raise ValueError(f"[data] holdout (the held-out fraction) must lie in [0, 1), got {holdout}")
        if seed < 0:
            raise ValueError(f"[data] seed must be an integer >= 0, got {seed}")
        x = load_images(path, size, gray)
        perm = np.random.default_rng(seed).permutation(x.shape[0])
        n_test = int(round(holdout * x.shape[0]))
        if n_test >= x.shape[0]:
            raise ValueError(f"[data] holdout = {holdout} holds out all {x.shape[0]} images of {path!r}: no "
                             "training image is left; lower holdout")
        if holdout > 0 and n_test == 0:
            raise ValueError(f"[data] holdout = {holdout} of {x.shape[0]} images rounds to no held-out image; raise "
                             "holdout, add images, or set holdout = 0 (no held-out split)")
        return x[torch.as_tensor(perm[n_test:])], (x[torch.as_tensor(perm[:n_test])] if n_test else None)
    if kind == "patches":
        size = int(cfg.pop("image_size", 16))
        n = int(cfg.pop("n", 4096))
        seed = int(cfg.pop("seed", 0))
        imgs = tuple(cfg.pop("images", ("camera", "coins", "moon", "page")))
        _reject(cfg, "patches")
        return load_patches(size, n, imgs, seed), load_patches(size, max(n // 8, 64), imgs, seed + 1)
    if kind == "latents":
        from .latent import encode_dataset, load_autoencoder

        if "autoencoder" not in cfg or "source" not in cfg:
            raise ValueError("[data] dataset = 'latents' needs autoencoder = 'ae.pt' and a source table "
                             "(e.g. source = {dataset = 'digits', image_size = 16})")
        ae = load_autoencoder(os.path.expanduser(cfg.pop("autoencoder")))
        train, heldout = load_dataset(cfg.pop("source"))
        _reject(cfg, "latents")
        return encode_dataset(ae, train), encode_dataset(ae, heldout)
    raise ValueError(f"[data] dataset must be 'digits', 'images', 'patches' or 'latents'; got {kind!r}")


def _reject(cfg, kind):
    if cfg:
        raise ValueError(f"unknown [data] keys for dataset {kind!r}: {sorted(cfg)}")


__all__ = ["load_digits", "load_images", "load_patches", "load_dataset", "check_images"]
