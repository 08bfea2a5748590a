"""genmodel: score-based generative models through the discretised anisotropic SPDE.

The learning layer of "Score-based generative modeling through anisotropic SPDEs" (Sections 3-5,
Appendix D), built on spdekit: the forward process is spdekit's discretised chain (simulated by
spdekit kernels on torch memory through DLPack), networks learn its score, and samples are drawn by
reversing it (predictor-corrector, Algorithm 3.1).

Threads: torch's CPU kernels and spdekit's numba kernels (numba's OpenMP layer) alternate many times
per training or sampling step. With OpenMP's default active waiting, the idle threads of one runtime
spin while the other works and take the cores from it: measured on a 2-core machine, 100 digits
sampled for 60 predictor-corrector steps with one thread took 155 s with active waiting and 41 s with
``OMP_WAIT_POLICY=PASSIVE`` (while a training run used the other core). So importing genmodel sets
``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set; it takes effect only if no OpenMP
runtime has started yet (import genmodel before running torch or numba code, as the CLI does).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/numba start OpenMP (module doc)

from .bridge import from_torch, to_torch
from .exact import GaussianDataScore, GaussianMixtureScore
from .likelihood import log_likelihood
from .processes import SPDEProcess
from .samplers import CORRECTORS, PREDICTORS
from .sampling import GaussianPrior, residual_dependence, sample

__all__ = [
    "CORRECTORS",
    "PREDICTORS",
    "GaussianDataScore",
    "GaussianMixtureScore",
    "GaussianPrior",
    "SPDEProcess",
    "from_torch",
    "log_likelihood",
    "residual_dependence",
    "sample",
    "to_torch",
]
