"""genmodel on a CUDA device: training on the GPU, sampling with the network there (the chain on the
device too when cupy is installed: genmodel.distributed.chain_device; else in spdekit's host kernels),
the CLI's --device. Runs when torch sees a CUDA device, skips otherwise;
the CPU side of the same code (``on_device`` on the CPU) is tested in test_genmodel_distributed.py."""

import numpy as np
import pytest
import torch
from tiny_configs import tiny_toml

from genmodel.cli import main
from genmodel.distributed import OnDevice, on_device
from genmodel.runs import load_model, score_function
from genmodel.train import Trainer, load_config

if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device", allow_module_level=True)

pytestmark = pytest.mark.gpu

TINY = tiny_toml(train="""
steps = 3
batch = 8
pool = 16
checkpoint_every = 3
threads = 1
warmup = 1
device = "cuda"
""", sampling="steps = 5")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_run")
    cfg_path = out / "tiny.toml"
    cfg_path.write_text(TINY)
    tr = Trainer(load_config(cfg_path), out, log=lambda *_: None)
    tr.run(progress=False)
    tr.export()
    return tr, out


def test_training_runs_on_the_gpu_and_exports_a_cpu_checkpoint(trained):
    tr, out = trained
    assert tr.device.type == "cuda" and tr.step == 3
    assert all(p.is_cuda for p in tr.net.parameters())
    model, process, prior, ck = load_model(out / "model.pt")  # loads on a CPU-only machine too
    assert all(not p.is_cuda for p in model.parameters())


def test_the_training_chain_lives_on_the_gpu_when_cupy_is_there(trained):
    """Issue 25: with cupy installed, the pools and path targets are on the network's device and the model
    is not wrapped in OnDevice; without cupy the chain stays on the host."""
    from spdekit.backends import available

    tr, _ = trained
    if available("cupy"):
        assert tr.chain_device.type == "cuda" and tr.local_data.is_cuda
        assert not isinstance(tr.forward_model, OnDevice)
    else:
        assert tr.chain_device.type == "cpu" and isinstance(tr.forward_model, OnDevice)


def test_network_on_the_gpu_scores_like_the_cpu(trained):
    _, out = trained
    model, process, prior, _ = load_model(out / "model.pt")
    u = prior.sample(6, np.random.default_rng(0))
    t = torch.full((6,), 0.05)
    ref = score_function(model)(t, u)
    dev = on_device(load_model(out / "model.pt")[0], "cuda")
    assert isinstance(dev, OnDevice)
    got = score_function(dev)(t, u)
    assert got.device.type == "cpu"  # the sampler's state stays on the host
    # cuDNN convolutions may run in TF32 on Ampere and later (torch's default): ~1e-3 relative precision
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_sample_cli_on_either_device(trained, tmp_path, device):
    _, out = trained
    dst = tmp_path / f"s_{device}.npz"
    assert main(["sample", str(out / "model.pt"), "--n", "4", "--out", str(dst), "--device", device, "--quiet"]) == 0
    x = np.load(dst)["images"]
    assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all()


def test_same_seed_same_samples_on_gpu_and_cpu(trained, tmp_path):
    """One network, one seed: the chain's noise is spdekit's Philox streams, the same numbers on the host and
    on the device (the Langevin corrector's torch generator is per device, so it is off here), so the two
    runs differ only by the network's and the kernels' float rounding on the two devices."""
    _, out = trained
    xs = {}
    for device in ("cuda", "cpu"):
        dst = tmp_path / f"{device}.npz"
        main(["sample", str(out / "model.pt"), "--n", "4", "--out", str(dst), "--device", device, "--quiet",
              "--seed", "3", "--corrector", "none"])
        xs[device] = np.load(dst)["images"]
    np.testing.assert_allclose(xs["cuda"], xs["cpu"], atol=1e-3)


def test_resume_on_the_gpu_continues_the_run(tmp_path):
    """2 steps, a new Trainer resuming from last.pt, 2 more == 4 straight steps on the GPU, up to the
    rounding of kernels that are not bitwise reproducible there (cuDNN/cuBLAS; the CPU resume is bitwise,
    tests/test_genmodel_train_cli.py). A resume that lost the Adam moments or the step would move the
    weights by about lr = 1e-3 per step: far outside the tolerance."""
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY.replace("steps = 3", "steps = 4\nlr = 1e-3").replace("checkpoint_every = 3",
                                                                                    "checkpoint_every = 2"))
    cfg = load_config(cfg_path)
    a = Trainer(cfg, tmp_path / "a", log=lambda *_: None)
    a.run(progress=False)
    Trainer(cfg, tmp_path / "b", log=lambda *_: None).run(steps=2, progress=False)
    c = Trainer(cfg, tmp_path / "b", log=lambda *_: None)
    c.resume()
    assert c.step == 2 and c.device.type == "cuda"
    c.run(progress=False)
    wa, wc = a.model.state_dict(), c.model.state_dict()
    for k in wa:
        torch.testing.assert_close(wc[k], wa[k], rtol=0, atol=2e-5, msg=k)


def test_the_chain_runs_on_the_gpu_and_matches_the_host_run(trained):
    """The single code path on CUDA tensors (issue 25, item 1): the prior, the chain's state and its noise on
    the device, spdekit computing on cupy views of the tensors. Philox draws the same numbers on the host and
    on the GPU, so with the em predictor and no corrector (the corrector's torch generator is per device) the
    run equals the CPU one up to the network's and the kernels' rounding."""
    pytest.importorskip("cupy")
    from genmodel import sample

    _, out = trained
    model, process, prior, _ = load_model(out / "model.pt")
    xs = {}
    for device in ("cuda", "cpu"):
        net = model.to(device)
        with torch.no_grad():
            xs[device] = sample(process, score_function(net), 4, steps=5, corrector="none", prior=prior, seed=3,
                                device=device)
        assert xs[device].device.type == device
    torch.testing.assert_close(xs["cuda"].cpu(), xs["cpu"], rtol=2e-3, atol=2e-3)
