"""One code path for the chain (issue 25, item 1): genmodel hands its tensors to spdekit as they are.

With ``torch.Tensor.numpy`` and ``torch.Tensor.__array__`` patched to raise (so any conversion of a
tensor to a numpy array fails the test, ``np.asarray(tensor)`` included), every loss takes one training
step through the Trainer (its forward-path pool simulated inside the patch) and every predictor, with
every corrector, one sampling step; the score network must see torch tensors on the chain's device
(the CPU here: a GPU run puts the same code on CUDA) and the results must be tensors there too.
A first test checks that the patch does catch both ways of converting.
"""

import warnings

import numpy as np
import pytest
import torch
from tiny_configs import tiny_toml

from genmodel import GaussianPrior, SPDEProcess, sample
from genmodel.flow_matching import FlowMatchingTrainer, is_flow_matching
from genmodel.losses import LOSSES
from genmodel.networks import MLPScoreNet, ScoreModel
from genmodel.samplers import CORRECTORS, PREDICTORS
from genmodel.stroke import sdedit_spde
from genmodel.train import Trainer, load_config

DEVICE = torch.device("cpu")


class ChainConvertedToNumpy(AssertionError):
    pass


def _refuse(*_args, **_kw):
    raise ChainConvertedToNumpy("the chain converted a torch tensor to a numpy array")


@pytest.fixture
def no_numpy(monkeypatch):
    """Within the test, a tensor cannot become a numpy array (``.numpy()``, ``np.asarray``, ``np.array``)."""
    monkeypatch.setattr(torch.Tensor, "numpy", _refuse)
    monkeypatch.setattr(torch.Tensor, "__array__", _refuse)


def test_the_patch_catches_conversions(no_numpy):
    t = torch.zeros(3)
    for convert in (lambda: t.numpy(), lambda: np.asarray(t), lambda: np.array(t), lambda: np.exp(t) + 0):
        with pytest.raises(ChainConvertedToNumpy):
            convert()


class Recorder(torch.nn.Module):
    """The model the chain calls, recording what it is given: (type, device) of t and u at every call."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seen = []

    def forward(self, t, u):
        self.seen.append((type(t), getattr(t, "device", None), type(u), getattr(u, "device", None)))
        return self.model(t, u)

    def gaussian_reference(self, process):
        return self.model.gaussian_reference(process)

    def check(self):
        assert self.seen, "the model was never called"
        for kinds in self.seen:
            assert kinds == (torch.Tensor, DEVICE, torch.Tensor, DEVICE), kinds


# ------------------------------------------------------------------ training: one step of each loss
PROCESSES = {
    # linear chains for the exact loss: diagonal law (conservative, white) and dense law (paper stencil)
    "heat_conservative": '[process]\npreset = "paper_isotropic"\nT = 0.1\ndt = 0.01\nstencil = "conservative"\n',
    "heat_paper": '[process]\npreset = "paper_isotropic"\nT = 0.1\ndt = 0.01\n',
    "anisotropic": '[process]\npreset = "paper_anisotropic"\nT = 0.1\ndt = 0.01\n',
    # the transition loss's other metrics: additive correlated noise (Q applied), multiplicative white noise
    "correlated": '[process]\npreset = "paper_anisotropic"\nT = 0.1\ndt = 0.01\ncorrelation_length = 1.0\n',
    "multiplicative": ('[process]\npreset = "custom"\nT = 0.1\ndt = 0.01\n[process.spde]\n'
                       'alpha1 = {schedule = "constant", v = 1.0}\nlambda1 = {schedule = "constant", v = 0.3}\n'
                       'alpha2 = {schedule = "constant", v = 0.5}\nlambda2 = {schedule = "constant", v = 0.4}\n'),
    "flow": '[process]\npreset = "flow_matching"\n',
}
CASES = [("exact", "heat_conservative"), ("exact", "heat_paper"), ("transition", "anisotropic"),
         ("transition", "correlated"), ("transition", "multiplicative"), ("path", "anisotropic"),
         ("flow_matching", "flow")]


def test_every_loss_is_covered():
    assert {loss for loss, _ in CASES} == set(LOSSES) | {"flow_matching"}


@pytest.mark.parametrize("loss,process", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_one_training_step_of_each_loss(tmp_path, no_numpy, loss, process):
    toml = tiny_toml(process=PROCESSES[process], prior=loss != "flow_matching", train=f"""
loss = "{loss}"
steps = 1
batch = 4
pool = 6
threads = 1
warmup = 1
device = "cpu"
""")
    path = tmp_path / "tiny.toml"
    path.write_text(toml)
    cfg = load_config(path)
    tr = (FlowMatchingTrainer if is_flow_matching(cfg) else Trainer)(cfg, tmp_path / "run", log=lambda *_: None)
    rec = tr.forward_model = Recorder(tr.forward_model)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    value = tr.train_step()
    assert np.isfinite(value) and tr.step == 1
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())  # it trained
    rec.check()
    pool = getattr(tr.loss, "pool", None)
    if pool is not None:  # the forward paths live where the network's inputs do
        assert isinstance(pool.u, torch.Tensor) and pool.u.device == DEVICE
        if hasattr(pool, "V"):
            assert isinstance(pool.V, torch.Tensor) and pool.V.device == DEVICE


# ------------------------------------------------------------------ sampling: one step of each predictor
H = 6


@pytest.fixture(scope="module")
def chain():
    """A small anisotropic chain, a score model with the Gaussian reference (for the exponential
    predictors) and a Gaussian prior, all built before the patch (setup, not the chain)."""
    spde = __import__("spdekit").AnisotropicSPDE.paper_anisotropic(H, 0.2)
    process = SPDEProcess(spde, 0.2, 0.01)
    torch.manual_seed(0)
    data = torch.rand(16, 1, H, H) * 2 - 1
    model = ScoreModel.for_process(MLPScoreNet((1, H, H), hidden=32), process, parameterization="reference",
                                   data=data).eval()
    prior = GaussianPrior(np.zeros((1, H, H)), 0.5 * np.eye(H * H))
    return process, model, prior, data


@pytest.mark.parametrize("corrector", CORRECTORS)
@pytest.mark.parametrize("predictor", PREDICTORS)
def test_one_sampling_step_of_each_predictor(chain, no_numpy, predictor, corrector):
    process, model, prior, data = chain
    rec = Recorder(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # em above its stability bound: one step only
        x = sample(process, rec, 3, steps=2, predictor=predictor, corrector=corrector, prior=prior, seed=0,
                   device=DEVICE)
    assert isinstance(x, torch.Tensor) and x.device == DEVICE and x.shape == (3, 1, H, H)
    assert torch.isfinite(x).all()
    rec.check()
    assert len(rec.seen) >= 2  # the predictor's score calls (and the corrector's)


def test_forward_prior_and_sdedit_stay_on_the_path(chain, no_numpy):
    """The chain run forward to T as the prior, and SDEdit (forward to t0, then the reverse loop)."""
    process, model, _, data = chain
    rec = Recorder(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        x = sample(process, rec, 2, steps=2, prior="forward", data=data, seed=1, predictor="exponential",
                   device=DEVICE)
        y = sdedit_spde(process, rec, data[:2], 0.1, steps=4, seed=2)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()
    rec.check()


def test_prior_draws_on_the_requested_device(chain, no_numpy):
    _, _, prior, _ = chain
    x = prior.sample(4, np.random.default_rng(0), torch.float64, device=DEVICE)
    assert isinstance(x, torch.Tensor) and x.device == DEVICE and x.dtype == torch.float64
    again = prior.sample(4, np.random.default_rng(0), torch.float64, device=DEVICE)
    assert torch.equal(x, again)  # a pure function of the generator's state
    diag = GaussianPrior(np.zeros((1, H, H)), np.full((1, H, H), 0.3), "dct_diagonal")
    y = diag.sample(4, np.random.default_rng(0), device=DEVICE)
    assert y.device == DEVICE and y.dtype == torch.float32


def test_the_chain_runs_on_the_networks_device_only_where_spdekit_can(monkeypatch):
    """chain_device / placed: a CUDA network gets the chain on its device when spdekit's cupy backend is
    available, else the chain stays on the CPU and the network is wrapped in OnDevice; a CPU network is
    returned as it is."""
    import spdekit.backends
    from genmodel.distributed import OnDevice, chain_device, placed

    monkeypatch.setattr(spdekit.backends, "available", lambda name: name == "cupy")
    assert chain_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(spdekit.backends, "available", lambda name: False)
    assert chain_device("cuda") == torch.device("cpu")
    assert chain_device("cpu") == torch.device("cpu")
    net = torch.nn.Linear(2, 2)
    model, chain = placed(net, "cpu")
    assert model is net and chain == torch.device("cpu")
    monkeypatch.setattr("genmodel.distributed.resolve_device", lambda device, *a: torch.device("cuda"))
    monkeypatch.setattr(torch.nn.Linear, "to", lambda self, dev: self)  # no GPU here: moving is a no-op
    model, chain = placed(net, "cuda")
    assert isinstance(model, OnDevice) and chain == torch.device("cpu")
