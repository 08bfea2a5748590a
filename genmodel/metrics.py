"""Sample-quality metrics with a pluggable feature extractor.

* FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the features of two
  image sets, |m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2}).
* KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets (mean and standard deviation reported).
* An Inception-Score analogue exp(E_x KL(p(y | x) || p(y))) (Salimans et al. 2016) from any
  classifier's probabilities, and a per-class histogram of the predicted labels.

A feature extractor is any callable mapping images (N, C, H, W) in [-1, 1] to features (N, F).
For digits the project trains and ships a small classifier (:class:`DigitsClassifier`,
``genmodel/assets/digits_classifier_16.pt``): its penultimate layer gives the features, its
softmax the class probabilities. FID with Inception-v3 is available through
:class:`InceptionFeatures` when torchvision is installed and the user gives a local weights file;
nothing is downloaded. Note that the usual FID numbers in the literature use the TF-ported
"pt_inception-2015-12-05" weights; other Inception weights give other (non-comparable) values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import CheckpointError, load_checkpoint, load_state_strict, save_checkpoint

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CLASSIFIER = ASSETS / "digits_classifier_16.pt"


# ----------------------------------------------------------------------------- feature extractors
@torch.no_grad()
def extract(extractor, images, batch_size: int = 500) -> np.ndarray:
    """Apply ``extractor`` in batches; returns float64 features (N, F)."""
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    out = [np.asarray(torch.as_tensor(extractor(images[i:i + batch_size])), dtype=np.float64)
           for i in range(0, images.shape[0], batch_size)]
    feats = np.concatenate(out)
    if feats.ndim != 2 or feats.shape[0] != images.shape[0]:
        raise ValueError(f"the feature extractor must return (N, F) features, got shape {feats.shape}")
    return feats


class DigitsClassifier(nn.Module):
    """A small CNN for digit images (any size >= 8): three conv stages, global average pooling,
    a 128-d feature layer (used for FID/KID) and 10 logits."""

    def __init__(self, in_channels: int = 1, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.arch = {"in_channels": in_channels, "width": width, "feature_dim": feature_dim}
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GroupNorm(8, 4 * w), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(4 * w, feature_dim)
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x):
        return F.silu(self.fc(self.body(x)))

    def forward(self, x):
        return self.head(self.features(x))

    @torch.no_grad()
    def probabilities(self, x) -> np.ndarray:
        self.eval()
        return extract(lambda b: F.softmax(self(b), dim=-1), x)

    @torch.no_grad()
    def feature_extractor(self):
        self.eval()
        return self.features


def train_digits_classifier(image_size: int = 16, epochs: int = 40, seed: int = 0, batch: int = 64,
                            lr: float = 2e-3, log=print) -> tuple[DigitsClassifier, float]:
    """Train :class:`DigitsClassifier` on the digits training split (:func:`genmodel.data.load_digits`)
    with random shifts of up to image_size/16 pixels and additive Gaussian noise (sd up to 0.2) as
    augmentation; returns the classifier and its accuracy on the held-out split."""
    from .data import load_digits

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = load_digits(image_size, "train", return_labels=True)
    xt, yt = load_digits(image_size, "test", return_labels=True)
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    shift = max(1, image_size // 16)
    for _ in range(epochs):
        model.train()
        perm = torch.as_tensor(rng.permutation(x.shape[0]))
        for i in range(0, x.shape[0], batch):
            idx = perm[i:i + batch]
            xb = x[idx]
            dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            sd = torch.as_tensor(rng.uniform(0, 0.2, (xb.shape[0], 1, 1, 1)), dtype=torch.float32)
            xb = xb + sd * torch.as_tensor(rng.standard_normal(xb.shape), dtype=torch.float32)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(-1) == yt).float().mean())
    log(f"digits classifier ({image_size}x{image_size}): held-out accuracy {acc:.4f}")
    return model, acc


def save_classifier(model: DigitsClassifier, path, meta: dict | None = None) -> Path:
    return save_checkpoint(path, {"kind": "classifier", "arch": model.arch, "arch_hash": "classifier-v1",
                                  "state": model.state_dict(), "meta": meta or {}})


def load_classifier(path=None) -> DigitsClassifier:
    """Load a classifier written by :func:`save_classifier` (default: the shipped digits one)."""
    path = Path(path) if path is not None else DEFAULT_CLASSIFIER
    ck = load_checkpoint(path, kind="classifier")
    if ck["arch_hash"] != "classifier-v1":
        raise CheckpointError(f"{str(path)!r}: unknown classifier architecture {ck['arch_hash']!r}")
    model = DigitsClassifier(**ck["arch"])
    load_state_strict(model, ck["state"], "classifier")
    model.eval()
    model.meta = ck.get("meta", {})
    return model


class InceptionFeatures:
    """Inception-v3 pool features (2048-d) from a LOCAL weights file (nothing is downloaded).

    Needs torchvision. ``weights`` is a state_dict saved by torch (loaded with weights_only=True)
    for ``torchvision.models.inception_v3(aux_logits=True, init_weights=False)``. Images in [-1, 1]
    are resized to 299x299 (bilinear) and grayscale is repeated to three channels.
    """

    def __init__(self, weights, device: str = "cpu"):
        try:
            from torchvision.models import inception_v3
        except ImportError as exc:
            raise ImportError("InceptionFeatures needs torchvision (pip install torchvision); or pass another "
                              "feature extractor, e.g. the shipped digits classifier") from exc
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights {str(path)!r} do not exist (nothing is downloaded)")
        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{str(path)!r} is not a readable torch state_dict: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{str(path)!r} is not a state_dict of torchvision's inception_v3: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        net.fc = nn.Identity()
        self.net = net.eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, x):
        x = torch.as_tensor(x, dtype=torch.float32).to(self.device)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x).cpu()


# ----------------------------------------------------------------------------- metrics
def gaussian_stats(features: np.ndarray):
    f = np.asarray(features, dtype=np.float64)
    if f.shape[0] < 2:
        raise ValueError("need at least two feature vectors")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2})."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    cov1, cov2 = np.atleast_2d(cov1), np.atleast_2d(cov2)
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(cov1.shape[0])
        covmean = scipy.linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = np.real(covmean)
    d = mu1 - mu2
    return float(d @ d + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def fid(x, y, extractor, batch_size: int = 500) -> float:
    """FID between image sets x and y under ``extractor``."""
    return frechet_distance(*gaussian_stats(extract(extractor, x, batch_size)),
                            *gaussian_stats(extract(extractor, y, batch_size)))


def kid_from_features(fx: np.ndarray, fy: np.ndarray, subsets: int = 10, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 over random subsets: (mean, std)."""
    fx, fy = np.asarray(fx, np.float64), np.asarray(fy, np.float64)
    d = fx.shape[1]
    m = min(subset_size, fx.shape[0], fy.shape[0])
    if m < 2:
        raise ValueError("KID needs at least two samples in each set")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        a = fx[rng.choice(fx.shape[0], m, replace=False)]
        b = fy[rng.choice(fy.shape[0], m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def kid(x, y, extractor, subsets: int = 10, subset_size: int = 1000, seed: int = 0, batch_size: int = 500):
    return kid_from_features(extract(extractor, x, batch_size), extract(extractor, y, batch_size),
                             subsets, subset_size, seed)


def inception_score_analogue(probs: np.ndarray) -> float:
    """exp(E_x KL(p(y | x) || p(y))) from class probabilities (N, K)."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    py = p.mean(0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(py))).sum(1).mean()))


def class_histogram(probs: np.ndarray, n_classes: int = 10) -> np.ndarray:
    return np.bincount(np.asarray(probs).argmax(1), minlength=n_classes)


def evaluate_samples(samples, reference, classifier: DigitsClassifier | None = None, extractor=None,
                     confidence: float = 0.9, kid_subsets: int = 10, seed: int = 0) -> dict:
    """FID/KID against ``reference`` with the classifier's features (or ``extractor``), and, with
    a classifier, the IS analogue, the fraction of samples labelled with confidence > ``confidence``
    and the per-class histogram."""
    if extractor is None:
        if classifier is None:
            raise ValueError("give a classifier or a feature extractor")
        extractor = classifier.feature_extractor()
    fs, fr = extract(extractor, samples), extract(extractor, reference)
    km, ks = kid_from_features(fs, fr, kid_subsets, min(1000, fs.shape[0], fr.shape[0]), seed)
    out = {"fid": frechet_distance(*gaussian_stats(fs), *gaussian_stats(fr)), "kid": km, "kid_std": ks,
           "n_samples": int(fs.shape[0]), "n_reference": int(fr.shape[0])}
    if classifier is not None:
        p = classifier.probabilities(samples)
        hist = class_histogram(p)
        out.update({"is_analogue": inception_score_analogue(p),
                    "is_analogue_reference": inception_score_analogue(classifier.probabilities(reference)),
                    "confident_fraction": float((p.max(1) > confidence).mean()),
                    "confidence_threshold": confidence,
                    "class_histogram": hist.tolist(),
                    "all_classes_present": bool((hist > 0).all())})
    return out


__all__ = ["DigitsClassifier", "InceptionFeatures", "train_digits_classifier", "save_classifier", "load_classifier",
           "fid", "kid", "kid_from_features", "frechet_distance", "gaussian_stats", "inception_score_analogue",
           "class_histogram", "evaluate_samples", "extract", "DEFAULT_CLASSIFIER"]
