"""The solver base class and the readable generic step (paper, Appendix H.3, eq. 38-39).

:class:`Solver` is what every time stepper of spdekit subclasses: the explicit ones of
:mod:`spdekit.solvers` and the stiff-stable ones of :mod:`spdekit.implicit`; the registry of names
(:func:`spdekit.solvers.solver_from_dict`) lives in :mod:`spdekit.solvers`, above both.
"""

from __future__ import annotations

from ._checks import array_module
from .backends.numpy_backend import taming_factor


def generic_em_step(problem, t, u, dt, dW, taming=None):
    """The readable (tamed) EM step for any problem with drift/noise_term."""
    xp = array_module(u)
    b = problem.drift(t, u)
    factor = xp.asarray(taming_factor(b, dt, taming)).reshape((-1,) + (1,) * (u.ndim - 1))
    out = u + factor.astype(u.dtype) * b + problem.noise_term(t, u, dW)
    return out, bool(xp.isfinite(out).all())


class Solver:
    """Base class. ``strong_order``/``weak_order``: the classical orders for globally Lipschitz
    coefficients (EM: 1/2 strong for multiplicative noise, 1 for additive noise; 1 weak)."""

    name = "solver"
    #: True for solvers stable at any dt (spdekit.implicit); the explicit ones need dt <= h^2/(4 max alpha1)
    stiff_stable = False
    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    taming = None

    def step(self, problem, t, u, dt, dW, backend="auto", **options):
        """(u_next, all_finite). ``options`` go to a fused ``problem.em_step`` (buffers, precomputed
        coefficients); the generic step ignores them."""
        fused = getattr(problem, "em_step", None)
        if fused is not None:
            return fused(t, u, dt, dW, taming=self.taming, backend=backend, **options)
        return generic_em_step(problem, t, u, dt, dW, self.taming)

    def to_dict(self) -> dict:
        return {"solver": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()
