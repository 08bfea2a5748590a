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

Unknown sections or keys and values of the wrong type or out of range are rejected with an error
naming the key (``section.key``); strings are not accepted for numbers. A relative ``initial.image``
path is relative to the config file's folder (the error names the path tried).

``run.dt`` above the explicit stability bound h^2 / (4 max alpha1) of the SPDE on [t0, t1] is an
error naming the bound: the solution of such a run oscillates or grows without bound (taming keeps
it finite, not accurate). ``run.allow_unstable_dt = true`` runs it anyway (to study the instability);
the command line then warns and records ``unstable_dt`` in the trajectory's attributes. The
stiff-stable solvers (``run.solver = "theta"`` or ``"aos"``: :mod:`spdekit.implicit`) take any dt.
Coefficients of a ``custom`` SPDE are numbers (``inf`` allowed) or schedule tables, e.g.
``alpha1 = {schedule = "geometric", vmin = 0.5, vmax = 128, T = 2.0}``. ``spde.diffusivity`` (any
preset) names the family of g1 and g2 (:mod:`spdekit.operators`): ``"charbonnier"`` (eq. 9, the
default), ``"perona-malik"``, ``"exponential"``, ``"weickert"``, or a pair ``["perona-malik",
"charbonnier"]`` (g1's, g2's).
"""

from __future__ import annotations

import math
import numbers
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import schedules as S
from .operators import DIFFUSIVITIES
from .simulate import n_steps_for
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
        "diffusivity": ((str, list), f"one of {DIFFUSIVITIES} (g1 and g2), or a pair [g1's, g2's]"),
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
        "solver": ((str, dict), "'tamed', 'em', 'theta', 'aos' or a table {solver=..., ...} (e.g. {solver = "
                                "'linearly_implicit_theta', theta = 0.5, rtol = 1e-6})"),
        "save_every": ((int,), "save every this many steps"),
        "seed": ((int,), "random seed"),
        "backend": ((str,), "'auto', 'numpy', 'numba' or 'cupy'"),
        "dtype": ((str,), "'float32' or 'float64'"),
        "allow_unstable_dt": ((bool,), "true to run with dt above the stability bound"),
    },
}
REQUIRED = {"spde": ("preset",), "initial": ("image",), "run": ("dt",)}
BACKENDS = ("auto", "numpy", "numba", "cupy")
IMAGE_FORMATS = "PNG, JPEG, TIFF, BMP, GIF and WebP images (read with Pillow) and .npy arrays"


def image_read_error(message) -> str:
    """An image reader's error without imageio's plugin-install advice, saying what can be read."""
    text = str(message).split("Based on the extension")[0]
    if "Could not find a backend" in text:
        head = text.split("Could not find a backend")[0].rstrip(": ")
        text = (f"{head}: " if head else "") + "not a readable image file (corrupt, or a format Pillow cannot read)"
    text = "; ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return f"{text.rstrip('.; ')}; readable: {IMAGE_FORMATS}"


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
    _resolve_image(data, Path(path), str(path))
    return data


def _resolve_image(data: dict, path: Path, source: str) -> None:
    """A relative ``initial.image`` file path is relative to the config file's folder; a missing file
    is reported with the path tried."""
    from .images import BUILTIN

    image = data["initial"]["image"]
    if not image or image in BUILTIN:
        return
    given = Path(os.path.expanduser(image))
    tried = given if given.is_absolute() else path.absolute().parent / given
    if tried.exists():
        data["initial"]["image"] = str(tried)
        return
    hint = ""
    if not given.is_absolute() and given.exists():
        hint = (f"; {image!r} exists relative to the working directory: write its path relative to the config's "
                f"folder, or absolute")
    raise ConfigError(f"{source}: initial.image: image {image!r} is neither a built-in sample nor a file: tried "
                      f"{str(tried)!r} (a relative path in a config file is relative to the config's folder){hint}; "
                      f"samples: {', '.join(BUILTIN)}")


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
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
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


def _stable_dt(t0: float, t1: float, bound: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) <= ``bound`` that divides t1 - t0, else (t1 - t0) / m."""
    top = math.floor(math.log10(bound))
    for k in range(top, top - 4, -1):
        for mantissa in (5, 2, 1):
            c = mantissa * 10.0**k
            if c <= bound:
                try:
                    n_steps_for(t0, t1, c)
                    return c
                except ValueError:
                    pass
    return (t1 - t0) / math.ceil((t1 - t0) / bound)


def _check_values(data: dict, source: str) -> None:
    """Ranges of the plain-number keys (types are checked by :func:`validate`)."""
    sp, ini, run = data["spde"], data["initial"], data.get("run", {})

    def fail(key, need, value):
        raise ConfigError(f"{source}: {key} must be {need}; got {value!r}")

    if "T" in sp and not (math.isfinite(sp["T"]) and sp["T"] > 0):
        fail("spde.T", "a finite number > 0", sp["T"])
    if "image_size" in sp and sp["image_size"] < 3:
        fail("spde.image_size", "an integer >= 3", sp["image_size"])
    if "channels" in ini and ini["channels"] not in (1, 3):
        fail("initial.channels", "1 or 3", ini["channels"])
    size = ini.get("size")
    if size is not None:
        sizes = [size] if isinstance(size, int) else size
        if (len(sizes) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes)
                or min(sizes) < 3):
            fail("initial.size", "an integer >= 3 or [H, W] of such integers", size)
    if "value_range" in ini:
        vr = ini["value_range"]
        if (len(vr) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vr)
                or not all(math.isfinite(v) for v in vr) or not vr[1] > vr[0]):
            fail("initial.value_range", "[lo, hi] with finite numbers lo < hi", vr)
    if "save_every" in run and run["save_every"] < 1:
        fail("run.save_every", "an integer >= 1", run["save_every"])
    if "seed" in run and run["seed"] < 0:
        fail("run.seed", "an integer >= 0", run["seed"])
    if "backend" in run and run["backend"] not in BACKENDS:
        fail("run.backend", f"one of {BACKENDS}", run["backend"])


def build(data: dict, source: str = "config") -> RunConfig:
    """Turn a validated config into the SPDE, initial state and run parameters."""
    from .images import load_image

    validate(data, source)
    sp = dict(data["spde"])
    ini = data["initial"]
    run = data.get("run", {})
    if run.get("dtype", "float32") not in ("float32", "float64"):
        raise ConfigError(f"{source}: run.dtype must be 'float32' or 'float64'; got {run.get('dtype')!r}")
    dtype = np.dtype(run.get("dtype", "float32"))
    _check_values(data, source)
    try:
        u0 = load_image(ini["image"], size=ini.get("size"), channels=ini.get("channels"),
                        value_range=tuple(ini.get("value_range", (0.0, 1.0))), dtype=dtype)
    except (FileNotFoundError, TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"{source}: initial.image: {image_read_error(exc)}") from exc
    batch = ini.get("batch", 1)
    if batch < 1:
        raise ConfigError(f"{source}: initial.batch must be >= 1; got {batch}")
    u0 = np.ascontiguousarray(np.broadcast_to(u0, (batch,) + u0.shape))

    preset = sp.pop("preset")
    T = float(sp.pop("T", 2.0))
    image_size = sp.pop("image_size", u0.shape[-1])
    common = {k: sp.pop(k) for k in ("correlation_length", "noise_kind", "stencil", "spacing", "diffusivity")
              if k in sp}
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
            extra = sorted(set(sp) & {"alpha1", "lambda1", "lambda2"})
            if extra:
                raise ConfigError(f"{source}: spde.{', spde.'.join(extra)}: preset 'pure_noise' takes spde.alpha2 "
                                  "only (no drift, additive noise); use preset 'custom' for the others")
            spde = AnisotropicSPDE.pure_noise(_coefficient(sp, "alpha2", source), **common)
        else:
            extra = sorted(set(sp) & {"alpha1", "lambda1", "alpha2", "lambda2"})
            if extra:
                raise ConfigError(
                    f"{source}: spde.{', spde.'.join(extra)}: preset {preset!r} fixes the coefficients; remove "
                    f"{'them' if len(extra) > 1 else 'it'} or use preset 'custom'"
                )
            spde = getattr(AnisotropicSPDE, preset)(int(image_size), T=T, **common)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        key = msg.split(" ", 1)[0]  # the SPDE's checks start with the parameter's name
        raise ConfigError(f"{source}: spde.{msg}" if key in SCHEMA["spde"] else f"{source}: spde: {msg}") from exc

    t0 = float(run.get("t0", 0.0))
    t1 = float(run.get("t1", T))
    dt = float(run["dt"])
    for name, v in (("t0", t0), ("t1", t1), ("dt", dt)):
        if not math.isfinite(v):
            raise ConfigError(f"{source}: run.{name} must be finite; got {v}")
    if not dt > 0:
        raise ConfigError(f"{source}: run.dt must be > 0; got {dt:g}")
    if not t1 > t0:
        where = "run.t1" if "t1" in run else "run.t1 (default: spde.T)"
        raise ConfigError(f"{source}: {where} must be > run.t0; got t0 = {t0:g}, t1 = {t1:g}")
    try:
        n_steps_for(t0, t1, dt)
    except ValueError as exc:
        raise ConfigError(f"{source}: run.{exc}") from exc
    try:
        solver = solver_from_dict(run.get("solver", "tamed"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: run.solver: {exc}") from exc
    bound = spde.stability_bound(t0, t1)
    if dt > bound and not run.get("allow_unstable_dt", False) and not solver.stiff_stable:
        raise ConfigError(
            f"{source}: run.dt = {dt:g} exceeds the explicit stability bound h^2/(4 max alpha1) = {bound:.4g} of "
            f"this SPDE on [{t0:g}, {t1:g}]: the run would oscillate or blow up (taming keeps the values finite, "
            f"not accurate); use dt <= {bound:.4g} (e.g. dt = {_stable_dt(t0, t1, bound):.6g}) or set "
            f"run.allow_unstable_dt = true to run it anyway"
        )
    return RunConfig(spde=spde, u0=u0, t0=t0, t1=t1, dt=dt, solver=solver,
                     save_every=run.get("save_every"), seed=int(run.get("seed", 0)),
                     backend=run.get("backend", "auto"), raw=data)
