"""Numerical backends. One implementation of the numerics per backend:

* ``numpy``: the readable reference (vectorised numpy);
* ``numba``: fused, parallel CPU kernels, tested equal to the reference;
* ``cupy``: GPU kernels (optional extra ``spdekit[gpu-cuda12]`` or ``spdekit[gpu-cuda13]``, after the CUDA
  major version of the driver).

``get_backend("auto", u)`` picks cupy for cupy arrays, numba for host arrays when numba is
importable, and the numpy reference otherwise. The contract they implement, the coefficient record
they take and their optional capabilities: :mod:`.base`; the math they share: :mod:`spdekit.operators`.
"""

from __future__ import annotations

import importlib

from .._checks import check_choice

BACKENDS = ("auto", "numpy", "numba", "cupy")
_MODULES = {
    "numpy": ".numpy_backend",
    "numba": ".numba_backend",
    "cupy": ".cupy_backend",
}
_cache: dict = {}


def _load(name):
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(_MODULES[name], __name__)
        except ImportError as exc:  # numba or cupy missing
            raise ImportError(
                f"backend {name!r} is not available: {exc}. "
                + ("Install the GPU extra of your CUDA major version (nvidia-smi shows it): "
                   "pip install 'spdekit[gpu-cuda12]' or 'spdekit[gpu-cuda13]'" if name == "cupy" else "")
            ) from exc
    return _cache[name]


def is_device_array(u) -> bool:
    return type(u).__module__.split(".")[0] == "cupy"


def available(name: str) -> bool:
    try:
        mod = _load(name)
    except ImportError:
        return False
    return getattr(mod, "is_available", lambda: True)()


def providers(capability: str) -> list[str]:
    """The importable backends that declare the optional ``capability`` (:data:`.base.OPTIONAL`)."""
    out = []
    for name in _MODULES:
        try:
            mod = _load(name)
        except ImportError:
            continue
        if capability in getattr(mod, "CAPABILITIES", ()):
            out.append(name)
    return out


def get_backend(name: str = "auto", u=None):
    """Return the backend module for ``name`` (one of 'auto', 'numpy', 'numba', 'cupy')."""
    check_choice("backend", name, BACKENDS)
    on_device = u is not None and is_device_array(u)
    if name == "auto":
        if on_device:
            return _load("cupy")
        return _load("numba") if available("numba") else _load("numpy")
    if on_device and name != "cupy":
        raise ValueError(f"backend {name!r} runs on the host but the array is on a GPU; use 'cupy' or 'auto'")
    if name == "cupy" and u is not None and not on_device:
        raise ValueError("backend 'cupy' needs a cupy array; move it with cupy.asarray(u) or use 'auto'")
    return _load(name)
