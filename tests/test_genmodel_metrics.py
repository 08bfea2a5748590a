"""genmodel.metrics: FID/KID with pluggable extractors, the IS analogue, the shipped classifier."""

import numpy as np
import pytest
import torch

from genmodel.data import load_digits
from genmodel.metrics import (
    DEFAULT_CLASSIFIER,
    InceptionFeatures,
    evaluate_samples,
    fid,
    frechet_distance,
    inception_score_analogue,
    kid,
    kid_from_features,
    load_classifier,
)


def tiny_extractor(x):
    """A pluggable extractor: 2x2 average pooling of the image (4 features per channel)."""
    return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_frechet_distance_closed_form():
    a, b = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    expected = 13.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-8)


def test_fid_kid_with_a_tiny_extractor():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(-1, 1, (2000, 1, 8, 8)), dtype=torch.float32)
    y = torch.as_tensor(rng.uniform(-1, 1, (2000, 1, 8, 8)), dtype=torch.float32)
    z = (y * 0.5 + 0.3).clamp(-1, 1)
    same, other = fid(x, y, tiny_extractor), fid(x, z, tiny_extractor)
    assert same < 0.01 < other
    k_same, _ = kid(x, y, tiny_extractor, subsets=5, subset_size=500)
    k_other, _ = kid(x, z, tiny_extractor, subsets=5, subset_size=500)
    assert abs(k_same) < 0.01 < k_other
    res = evaluate_samples(x, z, extractor=tiny_extractor)
    assert res["fid"] == pytest.approx(other) and "confident_fraction" not in res
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        fid(x, y, lambda b: b)  # 4-d "features"
    with pytest.raises(ValueError, match="NaN"):
        fid(x.clone().fill_(float("nan")), y, tiny_extractor)


def test_kid_is_unbiased_for_equal_laws():
    rng = np.random.default_rng(1)
    vals = [kid_from_features(rng.standard_normal((300, 4)), rng.standard_normal((300, 4)), subsets=1, seed=i)[0]
            for i in range(40)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))


def test_inception_score_analogue():
    onehot = np.eye(10)[np.arange(1000) % 10]
    assert inception_score_analogue(onehot) == pytest.approx(10.0, rel=1e-6)
    assert inception_score_analogue(np.tile(np.eye(10)[3], (50, 1))) == pytest.approx(1.0)


def test_inception_needs_local_weights(tmp_path):
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torchvision"):
            InceptionFeatures(tmp_path / "inception.pt")
    else:  # pragma: no cover - torchvision is not in the CPU test environment
        with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
            InceptionFeatures(tmp_path / "inception.pt")


def test_shipped_digits_classifier():
    assert DEFAULT_CLASSIFIER.is_file()
    clf = load_classifier()
    x, y = load_digits(16, "test", return_labels=True)
    p = clf.probabilities(x)
    assert (p.argmax(1) == y.numpy()).mean() > 0.97
    res = evaluate_samples(x, load_digits(16, "train")[:359], classifier=clf)
    assert res["all_classes_present"] and res["confident_fraction"] > 0.9
    assert res["fid"] < 5.0 and res["is_analogue"] > 8.0
    assert clf.feature_extractor()(x[:3]).shape == (3, 128)
