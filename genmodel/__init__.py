"""genmodel: score-based generative models through the discretised anisotropic SPDE.

The learning layer of "Score-based generative modeling through anisotropic SPDEs" (Sections 3-5,
Appendix D), built on spdekit: the forward process is spdekit's discretised chain (simulated by
spdekit kernels on torch memory through DLPack), networks learn its score, and samples are drawn by
reversing it (predictor-corrector, Algorithm 3.1).
"""

from .bridge import from_torch, to_torch
from .processes import GaussianDataScore, SPDEProcess
from .sampling import GaussianPrior, residual_dependence, sample

__all__ = [
    "GaussianDataScore",
    "GaussianPrior",
    "SPDEProcess",
    "from_torch",
    "residual_dependence",
    "sample",
    "to_torch",
]
