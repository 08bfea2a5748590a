"""genmodel.networks: the U-Net, its config/hash, and the score wrapper's preconditioning."""

import numpy as np
import pytest
import torch

from genmodel import SPDEProcess
from genmodel.networks import ScoreModel, UNet, UNetConfig, count_parameters


def test_default_unet_has_a_few_million_parameters():
    for size in (16, 32):
        n = count_parameters(UNet(UNetConfig(image_size=size)))
        assert 2e6 < n < 6e6


def test_unet_shapes_and_time_dependence():
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=3, image_size=16, ch=16, ch_mult=(1, 2, 2), num_res_blocks=1,
                          attn_resolutions=(8, 4), groups=8, dropout=0.0))
    x = torch.randn(5, 3, 16, 16)
    # zero-initialised output convolutions inside the blocks: perturb so the time path matters
    for p in net.parameters():
        p.data += 0.01 * torch.randn_like(p)
    y0, y1 = net(x, torch.zeros(5)), net(x, torch.ones(5))
    assert y0.shape == x.shape and not torch.allclose(y0, y1)


def test_config_validation_and_hash():
    a = UNetConfig(ch=16, groups=8)
    assert a.arch_hash() == UNetConfig.from_dict(a.to_dict()).arch_hash()
    assert a.arch_hash() != UNetConfig(ch=32, groups=8).arch_hash()
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(image_size=12, ch_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(ch=20, groups=8)
    with pytest.raises(ValueError, match="unknown network keys"):
        UNetConfig.from_dict({"chanels": 3})


def test_score_model_preconditioning():
    """s = F(c_in u, t/T) / sigma(t) with sigma^2 the chain's accumulated noise variance."""
    p = SPDEProcess.from_preset("paper_anisotropic", 8, T=0.1, dt=0.01)

    class Probe(torch.nn.Module):
        def forward(self, x, c):
            self.x, self.c = x, c
            return torch.ones_like(x)

    model = ScoreModel(Probe(), p.sigma2, p.dt, p.T)
    u = torch.full((2, 1, 8, 8), 2.0)
    t = torch.tensor([0.03, 0.1])
    s = model(t, u)
    sigma = np.sqrt(p.sigma2[[3, 10]])
    np.testing.assert_allclose(s[:, 0, 0, 0].numpy(), 1 / sigma, rtol=1e-5)
    np.testing.assert_allclose(model.net.x[:, 0, 0, 0].numpy(), 2 / np.sqrt(0.25 + sigma**2), rtol=1e-5)
    np.testing.assert_allclose(model.net.c.numpy(), [0.3, 1.0], rtol=1e-6)


def test_reference_scores():
    """The Gaussian reference of ScoreModel: for the linear conservative chain the measured forward
    moments ("moments") agree with the linearised law (variance ratio ~1, Monte Carlo error ~5%
    for 2000 images), and with F = 0 the reference is the exact score of independent Gaussian modes."""
    import spdekit

    spde = spdekit.AnisotropicSPDE.paper_isotropic(8, 0.5, stencil="conservative")
    p = SPDEProcess(spde, 0.5, 0.01)
    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.normal(0.2, 0.3, (2000, 1, 8, 8)), dtype=torch.float32)
    net = UNet(UNetConfig(image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), groups=4,
                          score_param="moments"))
    model = ScoreModel.for_process(net, p, data=data)
    assert model.parameterization == "moments" and model.mom_ratio_z.shape == (6, 1, 8, 8)
    ratio = model.mom_ratio_z[1:].numpy()
    assert np.abs(ratio - 1).max() < 0.25 and abs(ratio.mean() - 1) < 0.02
    # reference score of i.i.d. N(0.2, 0.09) pixels under the linear chain, checked at k = 0+
    ref = ScoreModel.for_process(UNet(UNetConfig(image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1,
                                                 attn_resolutions=(), groups=4)), p, data=data)
    u = torch.full((1, 1, 8, 8), 0.5)
    s = ref.reference_score(torch.tensor([0.01]), u)
    assert float(s.mean()) == pytest.approx(-(0.5 - 0.2) / 0.09, rel=0.1)
