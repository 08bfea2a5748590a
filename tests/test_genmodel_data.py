"""genmodel.data: digits, user images (folder / npz / npy), patches; bad input gives clear errors."""

import numpy as np
import pytest
import torch

from genmodel.data import load_dataset, load_digits, load_images, load_patches


def test_digits_shapes_range_and_split():
    x, y = load_digits(16, "train", return_labels=True)
    xt, yt = load_digits(16, "test", return_labels=True)
    assert x.shape[1:] == (1, 16, 16) and x.dtype == torch.float32
    assert x.shape[0] + xt.shape[0] == 1797
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert set(y.tolist()) == set(range(10)) and set(yt.tolist()) == set(range(10))
    # stratified: every class has ~20% held out
    for c in range(10):
        frac = (yt == c).sum() / ((yt == c).sum() + (y == c).sum())
        assert abs(float(frac) - 0.2) < 0.02
    # the two splits partition the data set (as a multiset of 8x8 images)
    parts = torch.cat([load_digits(8, "train"), load_digits(8, "test")]).reshape(-1, 64).numpy()
    whole = load_digits(8, "all").reshape(-1, 64).numpy()
    np.testing.assert_array_equal(np.unique(parts, axis=0, return_counts=True)[1],
                                  np.unique(whole, axis=0, return_counts=True)[1])
    assert load_digits(32, "test").shape == (xt.shape[0], 1, 32, 32)
    with pytest.raises(ValueError, match="image_size"):
        load_digits(20)


def test_folder_npz_npy(tmp_path):
    from skimage import io as skio

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        skio.imsave(folder / f"{i}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8), check_contrast=False)
    x = load_images(folder)
    assert x.shape == (3, 1, 12, 12) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert load_images(folder, image_size=16).shape == (3, 1, 16, 16)
    arr = rng.random((5, 10, 10)).astype(np.float32)  # floats in [0, 1]
    np.save(tmp_path / "a.npy", arr)
    np.testing.assert_allclose(load_images(tmp_path / "a.npy").numpy()[:, 0], arr * 2 - 1, atol=1e-6)
    np.savez(tmp_path / "b.npz", images=rng.integers(0, 256, (4, 10, 10, 3), dtype=np.uint8), labels=np.arange(4))
    assert load_images(tmp_path / "b.npz").shape == (4, 3, 10, 10)
    assert load_images(tmp_path / "b.npz", grayscale=True).shape == (4, 1, 10, 10)


def test_bad_inputs_are_reported(tmp_path):
    from skimage import io as skio

    folder = tmp_path / "mixed"
    folder.mkdir()
    skio.imsave(folder / "a.png", np.zeros((12, 12), np.uint8), check_contrast=False)
    skio.imsave(folder / "b.png", np.zeros((16, 16), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match=r"mixes image sizes: \(12, 12\) \(e.g. a.png\), \(16, 16\) \(e.g. b.png\)"):
        load_images(folder)
    assert load_images(folder, image_size=8).shape == (2, 1, 8, 8)
    nan = np.zeros((3, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match="1 NaN"):
        load_images(tmp_path / "nan.npy")
    np.save(tmp_path / "range.npy", np.full((2, 8, 8), 3.0))
    with pytest.raises(ValueError, match=r"\[0, 1\] or \[-1, 1\]"):
        load_images(tmp_path / "range.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 8, 8)), b=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="name the image array 'images'"):
        load_images(tmp_path / "two.npz")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown image source"):
        (tmp_path / "x.txt").write_text("hi")
        load_images(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown"):
        load_dataset({"dataset": "digits", "imagesize": 16})


def test_patches():
    p = load_patches(16, 50, images=("camera", "astronaut"), seed=1)
    assert p.shape == (50, 1, 16, 16) and float(p.min()) >= -1 and float(p.max()) <= 1
    assert not torch.equal(p[0], p[1])
    with pytest.raises(ValueError, match="unknown scikit-image sample"):
        load_patches(16, 4, images=("lena",))
