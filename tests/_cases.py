"""Problems shared by the backend-equality tests (numba and cupy against the numpy reference)."""

import numpy as np

import spdekit as sk
from spdekit.images import load_image


def image_batch(dtype, batch=4, size=32):
    rgb = load_image("astronaut", size=size, channels=3, dtype=dtype)
    return np.ascontiguousarray(np.broadcast_to(rgb, (batch,) + rgb.shape))


CASES = {
    "paper-preset": lambda: sk.AnisotropicSPDE.paper_anisotropic(32),
    "conservative": lambda: sk.AnisotropicSPDE.paper_anisotropic(32, stencil="conservative"),
    "multiplicative": lambda: sk.AnisotropicSPDE(
        alpha1=sk.schedules.Geometric(0.5, 16.0, 1.0), lambda1=sk.schedules.AnisotropyRamp(0.05, 0.5, 1.0),
        alpha2=sk.schedules.Geometric(0.05, 0.5, 1.0), lambda2=0.2),
    "correlated": lambda: sk.AnisotropicSPDE.paper_isotropic(32, correlation_length=2.0),
}
SOLVERS = {"tamed-l2": sk.TamedEulerMaruyama(), "tamed-rms": sk.TamedEulerMaruyama(gamma=1.5, norm="rms"),
           "em": sk.EulerMaruyama()}
