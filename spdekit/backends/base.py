"""The contract every backend implements, and the coefficient record the backends take.

A backend is a module (``numpy_backend``, ``numba_backend``, ``cupy_backend``) that provides the
functions of :class:`Backend` for arrays of shape ``(B, C, H, W)`` of its own kind (host arrays for
numpy and numba, cupy arrays for cupy), float32 or float64, computing in the state's precision.
Per-sample coefficients are arrays of shape ``(B,)``; the diffusivity of eq. (9) is given by its
``alpha``, ``inv_lam2 = 1 / lambda^2`` (exactly 0 for lambda = inf) and a family name of
:data:`spdekit.operators.DIFFUSIVITIES`. The numpy backend is the definition; the others are tested
equal to it (float64 within 1e-12, float32 within 1e-5, relative to the largest value).

Optional capabilities (a backend lists the ones it has in its module-level ``CAPABILITIES``):

* ``drift_vjp``: the adjoint of the drift, J^T w (numpy, numba, cupy);
* ``standard_normal``: Philox normals drawn where the arrays live (cupy; the host backends use
  :mod:`spdekit.backends.philox`);
* ``threads``: the number of threads the kernels run on (numba);
* ``em_run``: a run of many (tamed) Euler-Maruyama steps with white noise fused on the device, the
  coefficients uploaded once and the Philox increments drawn inside the step kernel (cupy; on the
  host, :func:`spdekit.simulate`'s loop of ``em_step`` is the same computation).

:func:`capability` returns one or raises :class:`MissingCapability`, naming the backend, the
capability and the backends that have it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import numpy as np

from ..operators import DIFFUSIVITIES, check_diffusivity

#: optional capability -> what it is (for the error message of a missing one)
OPTIONAL = {
    "drift_vjp": "the adjoint of the drift, J^T w",
    "standard_normal": "Philox normals drawn on the backend's device",
    "threads": "the kernels' thread count",
    "em_run": "a run of many Euler-Maruyama steps fused on the device, noise drawn in the kernel",
}


@dataclass(frozen=True, eq=False)
class Coefficients:
    """The coefficients of g1 and g2 (eq. 9) at one time, per sample: arrays of shape (B,), float64.

    ``alpha1``, ``inv_lam1 = 1 / lambda1^2`` and the family ``diffusivity1`` define the drift's g1;
    ``alpha2``, ``inv_lam2 = 1 / lambda2^2`` and ``diffusivity2`` the noise amplitude g2. Built by
    :meth:`spdekit.AnisotropicSPDE.coefficients`. ``coef["alpha1"]`` (the keys of the dict this
    record replaces) still reads a field."""

    alpha1: np.ndarray
    inv_lam1: np.ndarray
    alpha2: np.ndarray
    inv_lam2: np.ndarray
    diffusivity1: str = "charbonnier"
    diffusivity2: str = "charbonnier"

    def __post_init__(self):
        check_diffusivity(self.diffusivity1, "diffusivity1")
        check_diffusivity(self.diffusivity2, "diffusivity2")

    def __getitem__(self, key: str):
        if key not in _FIELDS:
            raise KeyError(f"{key!r} is not a coefficient; the fields are {', '.join(_FIELDS)}")
        return getattr(self, key)

    def keys(self):
        return _FIELDS


_FIELDS = tuple(f.name for f in fields(Coefficients))


def as_coefficients(coef, diffusivity1: str = "charbonnier", diffusivity2: str = "charbonnier") -> Coefficients:
    """``coef`` as a :class:`Coefficients` record: a record is returned as it is; a dict with the keys
    ``alpha1, inv_lam1, alpha2, inv_lam2`` (the former form) takes its families from the dict if it
    names them, else from ``diffusivity1``/``diffusivity2``."""
    if isinstance(coef, Coefficients):
        return coef
    try:
        return Coefficients(coef["alpha1"], coef["inv_lam1"], coef["alpha2"], coef["inv_lam2"],
                            coef.get("diffusivity1", diffusivity1), coef.get("diffusivity2", diffusivity2))
    except (KeyError, TypeError, AttributeError):
        raise TypeError(
            f"coef must be a spdekit.backends.base.Coefficients record or a dict with the keys alpha1, inv_lam1, "
            f"alpha2, inv_lam2; got {type(coef).__name__}"
        ) from None


def run_table(columns, dts, batch: int, dtype, stencil: str = "paper", spacing: float = 1.0):
    """The coefficient rows of a fused run (capability ``em_run``), scaled and clamped as the backends'
    ``em_step`` scales them per step: ``(table, steps)`` with ``table`` of shape (n, 4, nb), float64,
    rows alpha1, inv_lam1 (/ h^2 for the paper stencil), alpha2, inv_lam2 / h^2, clamped to the
    largest finite value of ``dtype``, nb = 1 (the batch shares the coefficients) or ``batch``; and
    ``steps`` of shape (n, 2): dt and sqrt(dt) of each step. ``columns``: the four coefficients per
    step, arrays of shape (n,) or (n, batch)."""
    dts = np.asarray(dts, dtype=np.float64).ravel()
    n = len(dts)
    cols = [np.asarray(c, dtype=np.float64).reshape(n, -1) for c in columns]
    nb = cols[0].shape[1] if cols else 0
    if len(cols) != 4 or any(c.shape[1] != nb for c in cols) or nb not in (1, batch):
        raise ValueError(f"columns must be 4 arrays of shape (n,) or (n, B) with n = {n}, B = {batch}")
    cols[1] = cols[1] / (1.0 if stencil == "conservative" else spacing**2)
    cols[3] = cols[3] / spacing**2
    table = np.minimum(np.stack(cols, axis=1), np.finfo(dtype).max)
    return np.ascontiguousarray(table), np.ascontiguousarray(np.stack([dts, np.sqrt(dts)], axis=1))


@runtime_checkable
class Backend(Protocol):
    """What every backend module provides (``isinstance(module, Backend)`` checks the names)."""

    #: "numpy", "numba" or "cupy"
    name: str
    #: the optional capabilities it provides (keys of :data:`OPTIONAL`)
    CAPABILITIES: frozenset

    def drift(self, u, alpha, inv_lam2, stencil: str = "paper", spacing: float = 1.0, out=None,
              diffusivity: str = "charbonnier"):
        """b(t, u) of eq. (7): the paper stencil (eq. 35-36) or the conservative one, with g1 of the
        family ``diffusivity`` (:mod:`spdekit.operators`)."""

    def diffusion_amplitude(self, u, alpha, inv_lam2, spacing: float = 1.0, diffusivity: str = "charbonnier"):
        """The g2 field of eq. (37)."""

    def em_step(self, u, dW, dt, coef: Coefficients, stencil: str = "paper", spacing: float = 1.0, taming=None,
                out=None, work=None):
        """One (tamed) Euler-Maruyama step (eq. 39): (u + factor * b + g2 * dW, all_finite)."""

    def circulant_apply(self, v, spectrum_half, emb_shape):
        """The symmetric circulant with half-spectrum ``spectrum_half`` applied to fields ``v``."""


class MissingCapability(NotImplementedError):
    """A backend lacks an optional capability (:data:`OPTIONAL`)."""


def capability(backend, name: str):
    """The function ``name`` of ``backend`` if the backend declares it in ``CAPABILITIES``; else
    :class:`MissingCapability` naming the backend, the capability and the backends that have it."""
    if name not in OPTIONAL:
        raise ValueError(f"capability must be one of {', '.join(map(repr, OPTIONAL))}; got {name!r}")
    if name in getattr(backend, "CAPABILITIES", ()):
        return getattr(backend, name)
    from . import providers

    have = ", ".join(providers(name)) or "none installed"
    raise MissingCapability(
        f"backend {backend.name!r} does not provide {name!r} ({OPTIONAL[name]}); backends that do: {have}"
    )


__all__ = ["Backend", "Coefficients", "DIFFUSIVITIES", "MissingCapability", "OPTIONAL", "as_coefficients",
           "capability", "run_table"]
