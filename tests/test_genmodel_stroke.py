"""Stroke-to-image (SDEdit): stroke simulation, exactness on Gaussian data, the t0 trade-off, CLI."""

import json
import tomllib

import numpy as np
import pytest
import torch
from tiny_configs import tiny_toml

import spdekit
from genmodel import GaussianDataScore, SPDEProcess
from genmodel.cli import main
from genmodel.data import load_digits
from genmodel.flow_matching import GaussianOTVelocity
from genmodel.stroke import make_strokes, quantise, sdedit_flow, sdedit_spde, stroke_scores
from genmodel.train import Trainer, load_config


def test_strokes_quantise_and_blur():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(-1, 1, (3, 1, 8, 8)), dtype=torch.float32)
    s = make_strokes(x, levels=3, blur=0)
    for i in range(3):
        assert len(np.unique(s[i, 0].numpy())) <= 3
    # k-means levels: each pixel goes to its nearest level, and the levels are the means of their pixels
    q = quantise(np.array([0.0, 0.1, 0.9, 1.0]), 2)
    np.testing.assert_allclose(q, [0.05, 0.05, 0.95, 0.95])
    b = make_strokes(x, levels=3, blur=1.0)
    tv = lambda a: float(a.diff(dim=-1).abs().sum() + a.diff(dim=-2).abs().sum())  # noqa: E731
    assert tv(b) < 0.6 * tv(s)
    with pytest.raises(ValueError, match="levels"):
        make_strokes(x, levels=1)
    with pytest.raises(ValueError, match="blur"):
        make_strokes(x, blur=-1)


def gaussian_4d():
    m = np.array([0.5, -0.3, 0.2, 1.0])
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    return m, Q @ np.diag([1.0, 0.4, 0.15, 0.05]) @ Q.T


def test_sdedit_flow_is_exact_for_strokes_from_the_data_law():
    """Strokes drawn from the data law N(m, C): x_s = a_s x0 + s stroke has the path's marginal at s, so the
    exact flow from s to 1 returns N(m, C + sigma_min^2 I) for every t0. n = 20000, 4.5-sigma checks on
    the mean and covariance (as in test_genmodel_flow_matching), for t0 = 0.3 and 0.7."""
    m, C = gaussian_4d()
    field = GaussianOTVelocity(m.reshape(1, 2, 2), C)
    n = 20000
    strokes = np.random.default_rng(5).multivariate_normal(m, C, n).reshape(n, 1, 2, 2)
    d = np.diag(C)
    se_cov = np.sqrt((np.outer(d, d) + C**2) / n)
    iu = np.triu_indices(4)
    for t0 in (0.3, 0.7):
        x = sdedit_flow(field, field.path, strokes, t0, steps=100, seed=1).double().reshape(n, 4).numpy()
        assert np.all(np.abs(x.mean(0) - m) < 4.5 * np.sqrt(d / n))
        assert np.all((np.abs(np.cov(x.T) - C) < 4.5 * se_cov)[iu])
    # the test can fail: from the wrong starting time (s = 1 - t0 replaced by 1 - t0 / 2) the law is off
    from genmodel.flow_matching import integrate

    x0 = torch.as_tensor(np.random.default_rng(1).standard_normal(strokes.shape))
    s = 0.3
    bad = integrate(field, field.path.interpolate(x0, torch.as_tensor(strokes), torch.full((n,), 0.65)), 35,
                    t0=s, t1=1.0).reshape(n, 4).numpy()
    assert not np.all((np.abs(np.cov(bad.T) - C) < 4.5 * se_cov)[iu])


def test_sdedit_t0_trades_faithfulness_for_realism():
    """Exact-score SPDE (isotropic heat, 4x4, conservative stencil, T = 1, dt = 0.01) and exact flow: the
    RMS distance of the output to a fixed stroke grows with t0; at the smallest t0 (one chain step /
    t0 = 0.01) the output is the stroke up to the noise injected by that step."""
    spde = spdekit.AnisotropicSPDE.paper_isotropic(4, T=1.0, stencil="conservative")
    process = SPDEProcess(spde, T=1.0, dt=0.01)
    rng = np.random.default_rng(2)
    m = 0.3 * rng.standard_normal((4, 4))
    A = rng.standard_normal((16, 16))
    C = 0.05 * (A @ A.T) / 16 + 0.01 * np.eye(16)
    score = GaussianDataScore(process, m, C)
    stroke = torch.zeros(256, 1, 4, 4) + torch.as_tensor(np.where(np.arange(16).reshape(4, 4) % 5 == 0, 1.0, -1.0),
                                                         dtype=torch.float32)
    dist = [stroke_scores(sdedit_spde(process, score, stroke, t0, steps=100, corrector_steps=0, seed=0),
                          stroke)["l2_to_stroke"] for t0 in (0.01, 0.3, 1.0)]
    assert dist[0] < 0.05 < dist[1] < dist[2], dist
    field = GaussianOTVelocity(m.reshape(1, 4, 4), C)
    fd = [stroke_scores(sdedit_flow(field, field.path, stroke, t0, 100, seed=0), stroke)["l2_to_stroke"]
          for t0 in (0.01, 0.3, 1.0)]
    assert fd[0] < 0.05 < fd[1] < fd[2], fd


TINY = tiny_toml(train="""
steps = 2
batch = 8
pool = 16
threads = 1
""", sampling="steps = 10")


def test_cli_stroke2img(tmp_path, capsys):
    from skimage import io

    torch.set_num_threads(1)
    tr = Trainer(load_config(tomllib.loads(TINY)), tmp_path / "run", log=lambda *_: None)
    tr.run(progress=False)
    ckpt = tr.export()
    png = tmp_path / "stroke.png"
    img = np.full((24, 24), 255, np.uint8)
    img[4:20, 10:14] = 0  # a dark vertical bar on white: a "1"
    io.imsave(png, img, check_contrast=False)
    assert main(["stroke2img", str(ckpt), str(png), "--t0", "0.05", "--invert", "--n-per-stroke", "3",
                 "--out", str(tmp_path / "o.png"), "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out.splitlines()[0])
    assert res["n"] == 3 and 0 <= res["confidence_mean"] <= 1 and res["l2_to_stroke"] >= 0
    assert (tmp_path / "o.png").is_file()
    assert main(["stroke2img", str(ckpt), "--from-digits", "2", "--t0", "0.05", "--out", str(tmp_path / "o.npz"),
                 "--quiet"]) == 0
    z = np.load(tmp_path / "o.npz")
    assert z["images"].shape == (8, 1, 8, 8) and z["strokes"].shape == (2, 1, 8, 8)
    assert main(["stroke2img", str(ckpt), str(png), "--t0", "5", "--quiet"]) == 2  # t0 > T: clear error
    assert "t0 must lie in (0, T" in capsys.readouterr().err


def test_outputs_outside_the_data_range_are_flagged_not_counted():
    """An output with a pixel outside [-1.5, 1.5] before clipping is flagged; it is left out of the
    faithfulness and mean confidence and never counted as a confident digit."""
    from genmodel.metrics import load_classifier

    clf = load_classifier()
    digits = load_digits(16, "test")[:6]
    strokes = make_strokes(digits)
    out = digits.clone()
    out[1, 0, 3, 3] = 2.9  # a runaway pixel: clipped, this image would still look like its digit
    out[4] = torch.where(torch.arange(16)[None, :] % 2 == 0, 3.0, -3.0)  # checkerboard-like noise
    res = stroke_scores(out, strokes, clf)
    assert res["outside_fraction"] == pytest.approx(2 / 6) and res["outside_indices"] == [1, 4]
    assert res["labels"][1] == -1 and res["labels"][4] == -1
    clean = stroke_scores(digits[[0, 2, 3, 5]], strokes[[0, 2, 3, 5]], clf)
    assert res["l2_to_stroke"] == pytest.approx(clean["l2_to_stroke"])
    assert res["confidence_mean"] == pytest.approx(clean["confidence_mean"])
    # the flagged ones count as not confident: the fraction is over all 6 outputs
    assert res["confident_fraction"] == pytest.approx(clean["confident_fraction"] * 4 / 6)
    assert stroke_scores(digits, strokes, clf)["outside_fraction"] == 0.0


def test_cli_samplers_and_likelihood(tmp_path, capsys):
    torch.set_num_threads(1)
    toml = tiny_toml(process="""
[process]
preset = "paper_isotropic"
T = 0.1
dt = 0.01
stencil = "conservative"
""", train="""
steps = 2
batch = 8
threads = 1
""", sampling="steps = 10")
    tr = Trainer(load_config(tomllib.loads(toml)), tmp_path / "run", log=lambda *_: None)
    tr.run(progress=False)
    ckpt = str(tr.export())
    for pred in ("exponential", "ode", "exponential_ode"):
        assert main(["sample", ckpt, "--n", "3", "--predictor", pred, "--corrector", "none", "--out",
                     str(tmp_path / f"{pred}.npz"), "--quiet"]) == 0
        assert np.isfinite(np.load(tmp_path / f"{pred}.npz")["images"]).all()
    capsys.readouterr()
    assert main(["stroke2img", ckpt, "--from-digits", "2", "--t0", "0.05", "--predictor", "exponential", "--out",
                 str(tmp_path / "s.npz"), "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out.splitlines()[0])
    assert "outside_fraction" in res
    assert main(["likelihood", ckpt, "--n", "4", "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out.splitlines()[0])
    assert res["n"] == 4 and np.isfinite(res["bits_per_dim"]) and res["standard_error"] > 0
    assert main(["likelihood", ckpt, "--n", "0", "--quiet"]) == 2
    assert "--n must be >= 1" in capsys.readouterr().err
