"""Nonlinear Fokker-Planck generative framework with condensation (Herty-Tettamanti, reconstructed).

    d_t f = div( sigma grad f + lambda x f (1 + kappa f^gamma) )     on a zero-flux box in 1D / 2D

* :class:`NonlinearFokkerPlanck` (model), :class:`BoxGrid` (finite-volume box);
* :mod:`.steady_states`: f_theta, the critical mass m_c, discrete steady states and condensates;
* :class:`StructurePreservingScheme`: Chang-Cooper / Pareschi-Zanella finite volumes, explicit and
  semi-implicit stepping (numba kernels in :mod:`._kernels`);
* :mod:`.diagnostics`: L^2 norm, mass in shrinking balls, threshold times;
* :mod:`.particles`: the McKean-Vlasov particle system (tamed Euler-Maruyama);
* :mod:`.reverse`: the stabilised reverse-time equation (PDE, reverse SDE, probability-flow ODE);
* :mod:`.filtering`: forward-reverse density filtering;
* :class:`DensityTrajectory` with netCDF export (:mod:`.io`).

Every modelling choice and its source is documented in docs/fokker_planck.md.
"""

from .diagnostics import (
    condensate_mass,
    condensation_diagnostics,
    l1_distance,
    l2_norm,
    mass_in_ball,
    origin_cell_mass,
    shrinking_ball_masses,
    threshold_time,
)
from .filtering import FilterResult, forward_reverse_filter
from .grid import BoxGrid
from .io import DensityTrajectory, open_density_trajectory
from .model import NonlinearFokkerPlanck
from .particles import McKeanVlasovParticles, histogram_density, sample_density, simulate_particles
from .reverse import ReverseParticleSampler, ReversePDE
from .schemes import PositivityError, StructurePreservingScheme, time_grid
from .steady_states import (
    critical_mass,
    discrete_critical_mass,
    discrete_steady_state,
    steady_state_mass,
    theta_for_mass,
)

__all__ = [
    "BoxGrid",
    "McKeanVlasovParticles",
    "ReverseParticleSampler",
    "ReversePDE",
    "DensityTrajectory",
    "FilterResult",
    "NonlinearFokkerPlanck",
    "PositivityError",
    "StructurePreservingScheme",
    "condensate_mass",
    "condensation_diagnostics",
    "critical_mass",
    "discrete_critical_mass",
    "discrete_steady_state",
    "forward_reverse_filter",
    "l1_distance",
    "l2_norm",
    "mass_in_ball",
    "open_density_trajectory",
    "origin_cell_mass",
    "shrinking_ball_masses",
    "steady_state_mass",
    "theta_for_mass",
    "threshold_time",
    "time_grid",
    "histogram_density",
    "sample_density",
    "simulate_particles",
]
