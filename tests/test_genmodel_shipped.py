"""The shipped digits model (genmodel/assets/digits16_anisotropic.pt) loads safely and samples.

Its quality (classifier confidence, FID/KID on 1,000 samples) is measured by `genmodel evaluate`
and reported in docs/genmodel.md; here only what a fresh install must guarantee: the file is a
genmodel "model" checkpoint of the paper's anisotropic preset, read with weights_only=True, and a
short reverse run stays finite."""

from pathlib import Path

import numpy as np
import torch

import genmodel
from genmodel.runs import load_model, score_function
from genmodel.samplers import EulerMaruyamaPredictor, ExponentialPredictor, gaussian_reference, reverse_sde
from genmodel.train import load_config

ASSET = Path(genmodel.__file__).parent / "assets" / "digits16_anisotropic.pt"


def test_shipped_model_is_the_paper_preset_and_samples():
    assert ASSET.is_file() and ASSET.stat().st_size < 8e6
    model, process, prior, ck = load_model(ASSET)
    ref = genmodel.SPDEProcess.from_preset("paper_anisotropic", 16, 2.0, 1e-3)
    assert process.to_dict() == ref.to_dict()
    assert prior is not None and prior.mean.shape == (1, 16, 16)
    assert ck["step"] == ck["config"]["train"]["steps"]
    # made by the shipped config (the command in README/docs/genmodel.md reproduces it); [output] dir is
    # where the run was written (`--out` overrides it), not how it was made
    config = load_config(Path(genmodel.__file__).parent / "configs" / "digits16_anisotropic.toml")
    def how(c):
        return {**c, "output": {k: v for k, v in c["output"].items() if k != "dir"}}
    assert how(ck["config"]) == how(config)
    # the reference that keeps the reverse anisotropic chain bounded ("moments" does not: docs/genmodel.md)
    assert ck["config"]["network"]["score_param"] == "reference" == model.parameterization
    torch.set_num_threads(1)
    # the file, not the quality (1,000-sample figures: docs/genmodel.md): the network's score on prior
    # samples at the start and near the end of the reverse run, and 20 reverse steps from U_T
    rng = np.random.default_rng(0)
    u = prior.sample(4, rng)
    score = score_function(model)
    for t in (process.T, 0.05):
        s = score(torch.full((4,), t), u)
        assert s.shape == u.shape and torch.isfinite(s).all()
    # 264 steps: within the stability bound h^2 / (4 max alpha1) with 3% margin (em)
    rsde = reverse_sde(process, score, gaussian_reference(process, score))
    for pred in (EulerMaruyamaPredictor(), ExponentialPredictor()):
        grid = pred.grid(process, process.T, 264)
        v = u
        for i in range(20):
            v, ok = pred.step(rsde, grid, i, v, rng)
            assert ok
        assert torch.isfinite(v).all() and float(v.abs().max()) < 10.0
