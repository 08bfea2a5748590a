"""Initial data from real images: scikit-image's bundled samples or a file on disk."""

from __future__ import annotations

import os

import numpy as np

#: scikit-image sample images shipped with the package (nothing is downloaded)
BUILTIN = ("astronaut", "camera", "cat", "chelsea", "coffee", "coins", "horse", "moon", "page", "text")


def load_image(source: str, size=None, channels: int | None = None, value_range=(0.0, 1.0),
               dtype=np.float64) -> np.ndarray:
    """Load an image as a float array of shape (C, H, W) scaled to ``value_range``.

    Parameters
    ----------
    source : a scikit-image sample name (see ``BUILTIN``) or a path to an image file
        (PNG/JPEG/TIFF, read with scikit-image) or a ``.npy`` array (H, W) or (H, W, C).
    size : int or (H, W): resize with anti-aliasing; None keeps the original size.
    channels : 1 (grey), 3 (RGB) or None (keep what the image has).
    value_range : (lo, hi) of the output intensities; the image's own range [0, max] maps to it.
    """
    img = _read(source)
    if img.ndim == 3 and img.shape[-1] == 4:  # drop alpha
        img = img[..., :3]
    img = _to_unit(img)
    if channels == 1 and img.ndim == 3:
        from skimage.color import rgb2gray

        img = rgb2gray(img)
    elif channels == 3 and img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    elif channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if size is not None:
        from skimage.transform import resize

        hw = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        if len(hw) != 2 or min(hw) < 3:
            raise ValueError(f"size must be an int >= 3 or (H, W), got {size!r}")
        img = resize(img, hw + img.shape[2:], anti_aliasing=True, preserve_range=True)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range!r}")
    img = lo + (hi - lo) * np.clip(img, 0.0, 1.0)
    chw = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)
    return np.ascontiguousarray(chw, dtype=dtype)


def _read(source: str) -> np.ndarray:
    if not isinstance(source, str) or not source:
        raise TypeError(f"image must be a sample name or a file path, got {source!r}")
    if source in BUILTIN:
        import skimage.data

        return np.asarray(getattr(skimage.data, source)())
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"image {source!r} is neither a file nor a built-in sample; samples: {', '.join(BUILTIN)}"
        )
    if source.endswith(".npy"):
        arr = np.load(source, allow_pickle=False)
    else:
        from skimage.io import imread

        try:
            arr = imread(source)
        except Exception as exc:  # unreadable or corrupt image
            raise ValueError(f"cannot read image file {source!r}: {exc}") from exc
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"image {source!r} must be (H, W) or (H, W, C), got shape {arr.shape}")
    return arr


def _to_unit(img: np.ndarray) -> np.ndarray:
    """Integer images by their dtype's range, float images as given (clipped later)."""
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float64) / np.iinfo(img.dtype).max
    if img.dtype == bool:
        return img.astype(np.float64)
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise ValueError("image contains NaN or inf values")
    return img
