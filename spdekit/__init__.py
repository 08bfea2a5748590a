"""spdekit: stochastic PDEs on image grids.

The stochastic Perona-Malik equation dU = div(g1(t, grad U) grad U) dt + g2(t, grad U) dW of
"Score-based generative modeling through anisotropic SPDEs" (eq. 6-11), discretised by finite
differences with Neumann borders (Appendix H, eq. 35-37), driven by Q-Wiener noise with
exponential covariance, and stepped by (tamed) Euler-Maruyama (eq. 39).
"""

from . import convergence, linear, problems, reference, reverse, schedules
from ._version import __version__
from .backends import get_backend
from .brownian import BrownianPath
from .convergence import ConvergenceResult, OrderFit, convergence_study, plot_convergence, strong_order, weak_order
from .grid import Grid
from .implicit import AOSEulerMaruyama, LinearlyImplicitTheta
from .linear import LinearChain
from .noise import CirculantEmbedding, QWienerNoise
from .reference import GaussianReference
from .reverse import ReverseSDE
from .simulate import SimulationDiverged, simulate
from .solvers import EulerMaruyama, Solver, TamedEulerMaruyama
from .spde import AnisotropicSPDE, StabilityWarning
from .steps import StabilityBoundSteps, StepSchedule
from .store import DamagedFileError
from .trajectory import Trajectory, open_trajectory

__all__ = [
    "__version__",
    "AOSEulerMaruyama",
    "AnisotropicSPDE",
    "BrownianPath",
    "ConvergenceResult",
    "OrderFit",
    "CirculantEmbedding",
    "DamagedFileError",
    "EulerMaruyama",
    "GaussianReference",
    "Grid",
    "LinearChain",
    "LinearlyImplicitTheta",
    "QWienerNoise",
    "ReverseSDE",
    "SimulationDiverged",
    "Solver",
    "StabilityBoundSteps",
    "StabilityWarning",
    "StepSchedule",
    "TamedEulerMaruyama",
    "Trajectory",
    "convergence",
    "convergence_study",
    "get_backend",
    "linear",
    "open_trajectory",
    "plot_convergence",
    "problems",
    "reference",
    "reverse",
    "schedules",
    "simulate",
    "strong_order",
    "weak_order",
]
