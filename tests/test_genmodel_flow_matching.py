"""Flow matching (OT path, Lipman et al. 2023): exact Gaussian velocity + ODE samplers, loss, trainer, CLI."""

import tomllib

import numpy as np
import pytest
import torch
from tiny_configs import tiny_toml

from genmodel.cli import main
from genmodel.flow_matching import (
    FlowMatchingLoss,
    FlowMatchingTrainer,
    GaussianOTVelocity,
    OTPath,
    integrate,
    is_flow_matching,
    sample,
)
from genmodel.runs import load_model, make_trainer
from genmodel.train import load_config

SHAPE = (1, 2, 2)  # D = 4


def gaussian_data(seed=0):
    """m and an SPD C with eigenvalues 0.05 .. 1 on D = 4 pixels."""
    rng = np.random.default_rng(seed)
    m = np.array([0.5, -0.3, 0.2, 1.0])
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    C = Q @ np.diag([1.0, 0.4, 0.15, 0.05]) @ Q.T
    return m, C


def affine_map(field, steps, method):
    """The sampler applied to the exact (affine) field is an affine map x1 = A x0 + b: read off A and b
    by integrating x0 = 0 and x0 = e_i (float64, no Monte Carlo error)."""
    x0 = torch.cat([torch.zeros(1, 4), torch.eye(4)]).reshape((5,) + SHAPE).double()
    x1 = integrate(field, x0, steps, method).reshape(5, 4).numpy()
    b = x1[0]
    return (x1[1:] - b).T, b


def test_heun_on_exact_velocity_reproduces_mean_and_covariance():
    """Exact pushforward of N(0, I) by the OT marginal flow for N(m, C) data: x1 = m + (C + s^2 I)^{1/2} x0
    (per eigen-direction the flow is the monotone affine map between N(t m, a_t^2 + t^2 c) laws). Heun
    with 100 steps reproduces m and the symmetric square root to 1e-4 (its O(h^2) error, h = 0.01,
    measured 4.9e-5; Euler 1.2e-2); halving h divides the error by 3.9 (order 2); the mean is exact (x = t m
    is a trajectory)."""
    m, C = gaussian_data()
    s = 1e-4
    field = GaussianOTVelocity(m.reshape(SHAPE), C, sigma_min=s)
    w, U = np.linalg.eigh(C + s**2 * np.eye(4))
    R = U @ np.diag(np.sqrt(w)) @ U.T
    errs = {}
    for method, steps in (("heun", 50), ("heun", 100), ("euler", 100)):
        A, b = affine_map(field, steps, method)
        errs[method, steps] = max(np.abs(A - R).max(), np.abs(b - m).max())
    assert errs["heun", 100] < 1e-4
    assert 3.0 < errs["heun", 50] / errs["heun", 100] < 5.0  # second order
    assert errs["euler", 100] > 10 * errs["heun", 100]
    A, b = affine_map(field, 100, "heun")
    np.testing.assert_allclose(A @ A.T, C + s**2 * np.eye(4), atol=2e-4)
    np.testing.assert_allclose(b, m, atol=1e-4)


def test_sampler_moments_monte_carlo():
    """n = 20000 samples through :func:`sample` (float32, Heun, 100 steps) from the exact field: the
    sample mean lies within 4.5 standard errors sqrt(C_ii / n) of m per pixel and each covariance entry
    within 4.5 standard errors sqrt((C_ii C_jj + C_ij^2) / n) of C_ij (Gaussian data; the sampler's own
    bias, < 1e-4 by the test above, is far below the standard errors of about 2e-3..7e-3). 14 checks at
    4.5 sigma: false-alarm probability < 1e-4 for a correct sampler (fixed seed here)."""
    m, C = gaussian_data()
    field = GaussianOTVelocity(m.reshape(SHAPE), C)
    n = 20000
    x = sample(field, n, SHAPE, steps=100, method="heun", seed=3, batch_size=5000).double().reshape(n, 4).numpy()
    se_mean = np.sqrt(np.diag(C) / n)
    assert np.all(np.abs(x.mean(0) - m) < 4.5 * se_mean)
    d = np.diag(C)
    se_cov = np.sqrt((np.outer(d, d) + C**2) / n)
    iu = np.triu_indices(4)
    assert np.all((np.abs(np.cov(x.T) - C) < 4.5 * se_cov)[iu])
    # and the test can fail: a wrong field (data covariance doubled) is rejected by the same check
    wrong = GaussianOTVelocity(m.reshape(SHAPE), 2 * C)
    y = sample(wrong, n, SHAPE, steps=100, seed=3, batch_size=5000).double().reshape(n, 4).numpy()
    assert not np.all((np.abs(np.cov(y.T) - C) < 4.5 * se_cov)[iu])


def test_exact_velocity_minimises_the_cfm_loss():
    """The CFM loss (same batches) is lower for the exact marginal velocity than for perturbed ones."""
    m, C = gaussian_data()
    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.multivariate_normal(m, C, 20000).reshape((-1,) + SHAPE), dtype=torch.float64)
    loss = FlowMatchingLoss(OTPath(1e-4), data)
    field = GaussianOTVelocity(m.reshape(SHAPE), C)

    def value(fn):
        return float(loss(lambda t, x: fn(t, x).to(torch.float32), 20000, np.random.default_rng(1)))

    base = value(field)
    assert value(lambda t, x: field(t, x) + 0.1) > base + 0.005  # + 0.1^2 in expectation
    assert value(lambda t, x: 1.1 * field(t, x)) > base


def test_bad_input():
    with pytest.raises(ValueError, match="sigma_min"):
        OTPath(1.0)
    with pytest.raises(ValueError, match="method"):
        integrate(lambda t, x: x, torch.zeros(1, 1, 2, 2), 4, "rk4")
    with pytest.raises(ValueError, match="steps"):
        integrate(lambda t, x: x, torch.zeros(1, 1, 2, 2), 0)
    with pytest.raises(ValueError, match="do not go together"):
        is_flow_matching({"process": {"preset": "flow_matching"}, "train": {"loss": "transition"}})


TINY = tiny_toml(process="""
[process]
preset = "flow_matching"
sigma_min = 0.001
""", train="""
steps = 40
batch = 32
lr = 2e-3
warmup = 5
checkpoint_every = 20
threads = 1
""", sampling="""
steps = 4
method = "euler"
""", prior=False)


def test_time_weight_power_is_rejected(tmp_path):
    """The SPDE losses' time measure does not apply to flow matching: a config setting it is an error."""
    cfg_path = tmp_path / "fm.toml"
    cfg_path.write_text(TINY.replace("steps = 40", "steps = 40\ntime_weight_power = 1.0"))
    with pytest.raises(ValueError, match="time_weight_power"):
        make_trainer(load_config(cfg_path), tmp_path / "run", log=lambda *_: None)


def test_training_reduces_the_loss_and_cli(tmp_path):
    """40 Adam steps on 8x8 digits lower the CFM loss on a fixed evaluation set (512 draws of (x0, x1, t),
    the same before and after); then export, load and sample through the CLI."""
    torch.set_num_threads(1)
    cfg_path = tmp_path / "fm.toml"
    cfg_path.write_text(TINY)
    cfg = load_config(cfg_path)
    tr = make_trainer(cfg, tmp_path / "run", log=lambda *_: None)
    assert isinstance(tr, FlowMatchingTrainer) and tr.process.sigma_min == 0.001

    def eval_loss():
        with torch.no_grad():
            return float(tr.loss(tr.forward_model.eval(), 512, np.random.default_rng(123)))  # on the trainer's device

    before = eval_loss()
    tr.run(progress=False)
    after = eval_loss()
    assert after < 0.8 * before, (before, after)
    tr.export()
    model, path, prior, ck = load_model(tmp_path / "run" / "model.pt")
    assert isinstance(path, OTPath) and prior is None and ck["sampling"] == {"steps": 4, "method": "euler"}
    out = tmp_path / "s.npz"
    assert main(["sample", str(tmp_path / "run" / "model.pt"), "--n", "6", "--out", str(out), "--quiet"]) == 0
    x = np.load(out)["images"]
    assert x.shape == (6, 1, 8, 8) and np.isfinite(x).all()
    # [train] loss = "flow_matching" selects it too
    cfg2 = load_config({"train": {"loss": "flow_matching", "steps": 1}, "data": {"image_size": 8},
                        "network": {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                                    "groups": 4}})
    assert is_flow_matching(cfg2)


def test_resume_is_bit_for_bit(tmp_path):
    cfg = load_config(tomllib.loads(TINY))
    cfg["train"]["steps"] = 4
    cfg["train"]["checkpoint_every"] = 2
    cfg["train"]["device"] = "cpu"  # bitwise: the CPU (cuDNN/cuBLAS kernels are not bitwise reproducible)
    a = make_trainer(cfg, tmp_path / "a", log=lambda *_: None)
    a.run(progress=False)
    b = make_trainer(cfg, tmp_path / "b", log=lambda *_: None)
    b.run(steps=2, progress=False)
    c = make_trainer(cfg, tmp_path / "b", log=lambda *_: None)
    c.resume()
    c.run(progress=False)
    sa, sc = a.ema.shadow.state_dict(), c.ema.shadow.state_dict()
    assert all(torch.equal(sa[k], sc[k]) for k in sa)
