"""A run's entry points, whatever its method (SPDE score model or flow matching): the trainer a config asks
for (:func:`make_trainer`), and the model a checkpoint holds with the score function the samplers call
(:func:`load_model`, :func:`score_function`). This module sits above :mod:`genmodel.train` and
:mod:`genmodel.flow_matching`, so neither imports the other to choose between them.
"""

from __future__ import annotations

import torch

from .checkpoint import load_checkpoint, load_state_strict
from .distributed import DistContext
from .flow_matching import FlowMatchingTrainer, is_flow_matching, load_flow_model
from .networks import ScoreModel, unet_from_checkpoint
from .priors import GaussianPrior
from .processes import SPDEProcess
from .train import Trainer


def make_trainer(cfg: dict, out_dir=None, log=print, dist: DistContext | None = None,
                 progress: bool = False) -> Trainer:
    """The trainer a config asks for: :class:`Trainer` (SPDE score model) or, with ``[process] preset =
    "flow_matching"`` or ``[train] loss = "flow_matching"``, :class:`genmodel.flow_matching.FlowMatchingTrainer`."""
    return (FlowMatchingTrainer if is_flow_matching(cfg) else Trainer)(cfg, out_dir, log=log, dist=dist,
                                                                        progress=progress)


def load_model(path) -> tuple[ScoreModel, SPDEProcess, GaussianPrior | None, dict]:
    """(score model with EMA weights, process, prior or None, checkpoint dict) from a checkpoint.
    A flow-matching checkpoint gives (velocity model, :class:`genmodel.flow_matching.OTPath`, None, ck)."""
    ck = load_checkpoint(path, kind="model")
    if ck.get("method") == "flow_matching" or ck.get("process", {}).get("method") == "flow_matching":
        return load_flow_model(ck)
    net = unet_from_checkpoint(ck, repr(str(path)))
    process = SPDEProcess.from_dict(ck["process"])
    sigma_data = float(ck.get("sigma_data", ck.get("config", {}).get("train", {}).get("sigma_data", 0.5)))
    model = ScoreModel.for_process(net, process, sigma_data)
    load_state_strict(model, ck["ema"], "EMA")
    model.eval()
    prior = GaussianPrior.from_state_dict(ck["prior"]) if "prior" in ck else None
    return model, process, prior, ck


def score_function(model: ScoreModel, batch_size: int = 1024):
    """A ``score_fn(t, u)`` for :func:`genmodel.sample` from a model (no grad, chunked)."""

    @torch.no_grad()
    def score_fn(t, u):
        if u.shape[0] <= batch_size:
            return model(t, u)
        return torch.cat([model(t[i:i + batch_size], u[i:i + batch_size]) for i in range(0, u.shape[0], batch_size)])

    score_fn.model = model  # for the samplers' Gaussian reference and the likelihood's autograd
    return score_fn


__all__ = ["make_trainer", "load_model", "score_function"]
