"""Input checks shared by the public API.

Every check raises an error that names the offending parameter and the allowed range, so a
user sees at once what to change.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def check_real(name: str, value, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float, rejecting NaN, booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a real number, got NaN")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_nonnegative(name: str, value, *, allow_inf: bool = False) -> float:
    v = check_real(name, value, allow_inf=allow_inf)
    if v < 0:
        rng = "[0, inf]" if allow_inf else "[0, inf)"
        raise ValueError(f"{name} must lie in {rng}, got {v}")
    return v


def check_positive(name: str, value, *, allow_inf: bool = False) -> float:
    v = check_real(name, value, allow_inf=allow_inf)
    if v <= 0:
        rng = "(0, inf]" if allow_inf else "(0, inf)"
        raise ValueError(f"{name} must lie in {rng}, got {v}")
    return v


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def check_finite_array(name: str, arr) -> None:
    """Raise if ``arr`` holds NaN or inf (works for numpy and cupy arrays)."""
    xp = array_module(arr)
    if not bool(xp.isfinite(arr).all()):
        n_nan = int(xp.isnan(arr).sum())
        n_inf = int(xp.isinf(arr).sum())
        raise ValueError(f"{name} must be finite; it contains {n_nan} NaN and {n_inf} inf values")


def array_module(arr):
    """numpy or cupy, whichever owns ``arr``."""
    mod = type(arr).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np
