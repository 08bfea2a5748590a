"""TOML run configurations for ``spdekit simulate``.

Example (``examples/demo.toml``)::

    [spde]
    preset = "paper_anisotropic"    # paper_anisotropic | paper_isotropic | pure_noise | custom
    T = 2.0

    [initial]
    image = "camera"                # scikit-image sample name or a file path
    size = 64
    batch = 3

    [run]
    dt = 1e-3
    save_every = 250
    seed = 0

Unknown sections or keys and values of the wrong type are rejected with an error naming the key.
Coefficients of a ``custom`` SPDE are numbers (``inf`` allowed) or schedule tables, e.g.
``alpha1 = {schedule = "geometric", vmin = 0.5, vmax = 128, T = 2.0}``.
"""

from __future__ import annotations

import math
import numbers
import tomllib
from dataclasses import dataclass

import numpy as np

from . import schedules as S
from .solvers import solver_from_dict
from .spde import AnisotropicSPDE

PRESETS = ("paper_anisotropic", "paper_isotropic", "pure_noise", "custom")

_NUM = (numbers.Real,)
_SCHED = (numbers.Real, dict)
# section -> key -> (allowed types, description)
SCHEMA = {
    "spde": {
        "preset": ((str,), f"one of {PRESETS}"),
        "T": (_NUM, "terminal time of the schedules (> 0)"),
        "image_size": ((int,), "image size the preset's alpha1 scales with (default: grid width)"),
        "alpha1": (_SCHED, "number or schedule table"),
        "lambda1": (_SCHED, "number (inf allowed) or schedule table"),
        "alpha2": (_SCHED, "number or schedule table"),
        "lambda2": (_SCHED, "number (inf allowed) or schedule table"),
        "correlation_length": (_NUM, "noise correlation length l >= 0"),
        "noise_kind": ((str,), "'euclidean' or 'separable'"),
        "stencil": ((str,), "'paper' or 'conservative'"),
        "spacing": (_NUM, "grid spacing > 0"),
    },
    "initial": {
        "image": ((str,), "scikit-image sample name or image file path"),
        "size": ((int, list), "int or [H, W]"),
        "channels": ((int,), "1 or 3"),
        "batch": ((int,), "number of independent samples (>= 1)"),
        "value_range": ((list,), "[lo, hi]"),
    },
    "run": {
        "t0": (_NUM, "start time"),
        "t1": (_NUM, "end time (default: T)"),
        "dt": (_NUM, "time step > 0"),
        "solver": ((str, dict), "'tamed', 'em' or a table {solver=..., gamma=..., norm=...}"),
        "save_every": ((int,), "save every this many steps"),
        "seed": ((int,), "random seed"),
        "backend": ((str,), "'auto', 'numpy', 'numba' or 'cupy'"),
        "dtype": ((str,), "'float32' or 'float64'"),
    },
}
REQUIRED = {"spde": ("preset",), "initial": ("image",), "run": ("dt",)}


class ConfigError(ValueError):
    """A configuration file has an unknown key, a missing key or a value of the wrong type."""


@dataclass
class RunConfig:
    spde: AnisotropicSPDE
    u0: np.ndarray
    t0: float
    t1: float
    dt: float
    solver: object
    save_every: int | None
    seed: int
    backend: str
    raw: dict


def load_config(path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from exc
    validate(data, source=str(path))
    return data


def validate(data: dict, source: str = "config") -> None:
    unknown = set(data) - set(SCHEMA)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; allowed: {sorted(SCHEMA)}")
    for section, required in REQUIRED.items():
        if section not in data:
            raise ConfigError(f"{source}: missing section [{section}]")
        for key in required:
            if key not in data[section]:
                raise ConfigError(f"{source}: missing key {section}.{key} ({SCHEMA[section][key][1]})")
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; allowed: {sorted(SCHEMA[section])}"
                )
            types, desc = SCHEMA[section][key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ConfigError(
                    f"{source}: {section}.{key} must be {desc}; got {type(value).__name__} {value!r}"
                )
    preset = data["spde"]["preset"]
    if preset not in PRESETS:
        raise ConfigError(f"{source}: spde.preset must be one of {PRESETS}; got {preset!r}")


def _coefficient(spde_tab, key, source):
    v = spde_tab[key]
    try:
        return S.as_schedule(key, v)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: spde.{key}: {exc}") from exc


def build(data: dict, source: str = "config") -> RunConfig:
    """Turn a validated config into the SPDE, initial state and run parameters."""
    from .images import load_image

    validate(data, source)
    sp = dict(data["spde"])
    ini = data["initial"]
    run = data.get("run", {})
    dtype = np.dtype(run.get("dtype", "float32"))
    if dtype not in (np.float32, np.float64):
        raise ConfigError(f"{source}: run.dtype must be 'float32' or 'float64'; got {run.get('dtype')!r}")
    try:
        u0 = load_image(ini["image"], size=ini.get("size"), channels=ini.get("channels"),
                        value_range=tuple(ini.get("value_range", (0.0, 1.0))), dtype=dtype)
    except (FileNotFoundError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: initial.image: {exc}") from exc
    batch = ini.get("batch", 1)
    if batch < 1:
        raise ConfigError(f"{source}: initial.batch must be >= 1; got {batch}")
    u0 = np.ascontiguousarray(np.broadcast_to(u0, (batch,) + u0.shape))

    preset = sp.pop("preset")
    T = float(sp.pop("T", 2.0))
    image_size = sp.pop("image_size", u0.shape[-1])
    common = {k: sp.pop(k) for k in ("correlation_length", "noise_kind", "stencil", "spacing") if k in sp}
    try:
        if preset == "custom":
            missing = [k for k in ("alpha1", "lambda1", "alpha2", "lambda2") if k not in sp]
            if missing:
                raise ConfigError(f"{source}: preset 'custom' needs spde.{', spde.'.join(missing)}")
            spde = AnisotropicSPDE(*(_coefficient(sp, k, source) for k in ("alpha1", "lambda1", "alpha2", "lambda2")),
                                   **common)
        elif preset == "pure_noise":
            if "alpha2" not in sp:
                raise ConfigError(f"{source}: preset 'pure_noise' needs spde.alpha2")
            spde = AnisotropicSPDE.pure_noise(_coefficient(sp, "alpha2", source), **common)
        else:
            extra = set(sp) & {"alpha1", "lambda1", "alpha2", "lambda2"}
            if extra:
                raise ConfigError(
                    f"{source}: preset {preset!r} fixes the coefficients; remove {sorted(extra)} or use preset 'custom'"
                )
            spde = getattr(AnisotropicSPDE, preset)(int(image_size), T=T, **common)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: spde: {exc}") from exc

    t0 = float(run.get("t0", 0.0))
    t1 = float(run.get("t1", T))
    for name, v in (("t0", t0), ("t1", t1), ("dt", float(run["dt"]))):
        if not math.isfinite(v):
            raise ConfigError(f"{source}: run.{name} must be finite; got {v}")
    try:
        solver = solver_from_dict(run.get("solver", "tamed"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: run.solver: {exc}") from exc
    return RunConfig(spde=spde, u0=u0, t0=t0, t1=t1, dt=float(run["dt"]), solver=solver,
                     save_every=run.get("save_every"), seed=int(run.get("seed", 0)),
                     backend=run.get("backend", "auto"), raw=data)
