"""The training config: its TOML sections and keys, their defaults and allowed values, checked before any
work (one line naming ``[section] key`` and the allowed range), and the paths in it resolved against the
config file's folder. :mod:`genmodel.train` builds a run from a checked config.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path, PurePath

from .data import DIGITS_SIZES
from .losses import check_time_weight_power
from .processes import PRESETS

DEFAULTS = {
    "data": {"dataset": "digits", "image_size": 16, "holdout": 0.2, "seed": 0},
    "process": {"preset": "paper_anisotropic", "T": 2.0, "dt": 1e-3, "solver": "euler_maruyama"},
    "network": {},
    "train": {"steps": 6000, "batch": 64, "lr": 2e-4, "ema": 0.999, "grad_clip": 1.0, "warmup": 200,
              "loss": "auto", "pool": 2048, "pool_advance": 1, "time_weight_power": 0.0, "antithetic": True,
              "checkpoint_every": 500, "seed": 0,
              "threads": 0, "log_every": 25, "sigma_data": 0.5, "device": "auto", "lr_schedule": "constant",
              "lr_final": 0.1},
    "prior": {"replicates": 4},
    "sampling": {"steps": 500, "corrector_steps": 1, "snr": 0.16},
    "output": {"dir": "runs/genmodel", "half_precision_export": False},
}
SECTIONS = tuple(DEFAULTS)
LR_SCHEDULES = ("constant", "cosine")


def load_config(path_or_dict) -> dict:
    """Read a TOML config (or take a dict) and fill defaults. Unknown sections or keys, values of the
    wrong type (a string where a number belongs) or out of range are errors naming ``[section] key``.
    Relative file paths in a config file (``[data] path``, ``autoencoder``, ``source.path``) are
    relative to the config file's folder; a missing one is reported with the path tried."""
    base = None
    if isinstance(path_or_dict, dict):
        user = copy.deepcopy(path_or_dict)
    else:
        p = Path(path_or_dict)
        if not p.is_file():
            raise FileNotFoundError(f"config {str(p)!r} does not exist")
        try:
            user = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"config {str(p)!r} is not valid TOML: {exc}") from exc
        base = p.absolute().parent
    unknown = set(user) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; allowed: {list(SECTIONS)}")
    cfg = copy.deepcopy(DEFAULTS)
    for sec, vals in user.items():
        if not isinstance(vals, dict):
            raise ValueError(f"config section [{sec}] must be a table")
        if sec == "train":
            bad = set(vals) - set(DEFAULTS["train"])
            if bad:
                raise ValueError(f"unknown [train] keys {sorted(bad)}; allowed: {sorted(DEFAULTS['train'])}")
        if sec == "data" and vals.get("dataset", "digits") != "digits":
            cfg[sec] = {}  # the digits defaults do not apply to other datasets
        if sec == "process" and vals.get("preset", "paper_anisotropic") != cfg[sec]["preset"]:
            cfg[sec] = {k: v for k, v in cfg[sec].items() if k != "preset"}
        cfg[sec].update(vals)
    check_config(cfg)
    if base is not None:
        _resolve_data_paths(cfg["data"], base)
    return cfg


# ---------------------------------------------------------------------------------------------- config checks
# a key's rule: (kind, detail); kinds: "int" (minimum), "real" ((lo, hi, lo_open, hi_open)), "bool", "str"
# (choices or None), "table", "real_or_table", "str_or_table", "ints" (list of integers >= detail)
_SEED = ("int", 0)
DATA_KEYS = {
    "digits": {"dataset": ("str", None), "image_size": ("int", 1), "holdout": ("real", (0, 1, True, True)),
               "seed": _SEED},
    "images": {"dataset": ("str", None), "path": ("str", None), "image_size": ("int", 1), "grayscale": ("bool", None),
               "holdout": ("real", (0, 1, False, True)), "seed": _SEED},
    "patches": {"dataset": ("str", None), "image_size": ("int", 1), "n": ("int", 1), "seed": _SEED,
                "images": ("strs", None)},
    "latents": {"dataset": ("str", None), "autoencoder": ("str", None), "source": ("table", None)},
}
DATA_REQUIRED = {"images": ("path",), "latents": ("autoencoder", "source")}
FLOW_MATCHING_PRESET = "flow_matching"
SPDE_OPTIONS = {"correlation_length": ("real", (0, None, False, False)), "stencil": ("str", None),
                "noise_kind": ("str", None), "spacing": ("real", (0, None, True, False))}
PROCESS_KEYS = {"preset": ("str", None), "T": ("real", (0, None, True, False)), "dt": ("real", (0, None, True, False)),
                "solver": ("str_or_table", None), **SPDE_OPTIONS}
COEFFICIENTS = ("alpha1", "lambda1", "alpha2", "lambda2")
NETWORK_KEYS = {"in_channels": ("int", 1), "image_size": ("int", 1), "ch": ("int", 1), "ch_mult": ("ints", 1),
                "num_res_blocks": ("int", 1), "attn_resolutions": ("ints", 1), "dropout": ("real", (0, 1, False, True)),
                "fourier_scale": ("real", (0, None, True, False)), "groups": ("int", 1), "skip_kernel": ("int", 0),
                "score_param": ("str", None)}
TRAIN_KEYS = {**{k: ("int", 1) for k in ("steps", "batch", "checkpoint_every", "pool", "pool_advance", "log_every")},
              "warmup": ("int", 0), "lr": ("real", (0, None, True, False)), "ema": ("real", (0, 1, False, True)),
              "grad_clip": ("real", (0, None, True, False)), "loss": ("str", None),
              "time_weight_power": ("real", (0, None, False, False)), "antithetic": ("bool", None), "seed": _SEED,
              "threads": ("int", 0), "sigma_data": ("real", (0, None, True, False)),
              "device": ("str", ("auto", "cpu", "cuda")), "lr_schedule": ("str", LR_SCHEDULES),
              "lr_final": ("real", (0, 1, False, False))}
PRIOR_KEYS = {"replicates": ("int", 1)}
SAMPLING_KEYS = {"steps": ("int", 1), "corrector_steps": ("int", 0), "snr": ("real", (0, None, True, False)),
                 "predictor": ("str", None), "corrector": ("str", None), "method": ("str", None)}
OUTPUT_KEYS = {"dir": ("str", None), "half_precision_export": ("bool", None)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(where: str, key: str, value, rule) -> None:
    """Raise ValueError "[section] key must be ..., got TYPE VALUE" unless ``value`` follows ``rule``."""
    kind, detail = rule

    def fail(need):
        raise ValueError(f"{where} {key} must be {need}, got {type(value).__name__} {value!r}")

    if kind == "int":
        need = "a positive integer" if detail == 1 else f"an integer >= {detail}"
        if not _is_int(value) or value < detail:
            fail(need)
    elif kind == "real":
        lo, hi, lo_open, hi_open = detail
        rng = (f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}"
               f"{')' if hi_open or hi is None else ']'}")
        if not _is_real(value) or not math.isfinite(value):
            fail(f"a number in {rng} (not a string)" if isinstance(value, str) else f"a number in {rng}")
        if (lo is not None and (value <= lo if lo_open else value < lo)) or \
                (hi is not None and (value >= hi if hi_open else value > hi)):
            fail(f"a number in {rng}")
    elif kind == "bool":
        if not isinstance(value, bool):
            fail("true or false")
    elif kind == "str":
        if not isinstance(value, str):
            fail("a string" if detail is None else f"one of {detail}")
        if detail is not None and value not in detail:
            fail(f"one of {detail}")
    elif kind == "table":
        if not isinstance(value, dict):
            fail("a table")
    elif kind == "real_or_table":
        if not (_is_real(value) or isinstance(value, dict)):
            fail("a number or a schedule table")
    elif kind == "str_or_table":
        if not isinstance(value, (str, dict)):
            fail("a name or a table")
    elif kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail("a list of strings")
    elif kind == "ints":
        if not isinstance(value, list) or not all(_is_int(v) and v >= detail for v in value):
            fail(f"a list of integers >= {detail}")
    else:  # pragma: no cover
        raise AssertionError(kind)


def _check_table(where: str, table: dict, rules: dict, what: str = "") -> None:
    unknown = sorted(set(table) - set(rules))
    if unknown:
        raise ValueError(f"unknown {where} key{'s' if len(unknown) > 1 else ''} {unknown}{what}; "
                         f"allowed: {sorted(rules)}")
    for key, value in table.items():
        _check_value(where, key, value, rules[key])


def _check_data(table: dict, where: str = "[data]") -> None:
    kind = table.get("dataset", "digits")
    if kind not in DATA_KEYS:
        raise ValueError(f"{where} dataset must be one of {tuple(DATA_KEYS)}, got {kind!r}")
    _check_table(where, table, DATA_KEYS[kind], f" for dataset {kind!r}")
    for key in DATA_REQUIRED.get(kind, ()):
        if key not in table:
            need = ("path = 'folder, .npz or .npy file'" if key == "path" else
                    "autoencoder = 'ae.pt'" if key == "autoencoder" else "source = {dataset = 'digits', ...}")
            raise ValueError(f"{where} dataset = {kind!r} needs {need}")
    if kind == "digits" and table.get("image_size", 16) not in DIGITS_SIZES:
        raise ValueError(f"{where} image_size must be one of {DIGITS_SIZES} for dataset 'digits', got "
                         f"{table['image_size']!r}")
    if kind == "latents":
        if table["source"].get("dataset", "digits") == "latents":
            raise ValueError(f"{where} source cannot itself be latents")
        _check_data(table["source"], f"{where} source.")


def _check_process(pc: dict, flow: bool) -> None:
    preset = pc.get("preset")
    presets = PRESETS + (FLOW_MATCHING_PRESET,)
    if preset not in presets:
        raise ValueError(f"[process] preset must be one of {presets}, got {preset!r}")
    rules = dict(PROCESS_KEYS)
    if preset == "pure_noise":
        rules["alpha2"] = ("real_or_table", None)
    if preset == "custom":
        rules["spde"] = ("table", None)
    if flow:
        rules["sigma_min"] = ("real", (0, 1, False, True))
    fixed = sorted(set(pc) & set(COEFFICIENTS) - set(rules))
    if fixed:
        extra = (" (pure_noise takes alpha2 only)" if preset == "pure_noise" else "")
        raise ValueError(f"[process] {', '.join(fixed)}: preset {preset!r} fixes the coefficients{extra}; remove "
                         f"{'them' if len(fixed) > 1 else 'it'}, or use preset = 'custom' with a [process.spde] "
                         "table (AnisotropicSPDE.to_dict layout)")
    _check_table("[process]", pc, rules, f" for preset {preset!r}")
    if preset == "custom" and "spde" not in pc:
        raise ValueError("[process] preset = 'custom' needs an spde table ([process.spde], AnisotropicSPDE.to_dict "
                         "layout)")
    if not flow and pc["dt"] > pc["T"]:
        raise ValueError(f"[process] dt ({pc['dt']}) must not exceed T ({pc['T']})")


def check_config(cfg: dict) -> None:
    """The checks of :func:`load_config` on a filled config (every section present)."""
    from .losses import LOSSES
    from .samplers import CORRECTORS, PREDICTORS

    _check_data(cfg["data"])
    tr = cfg["train"]
    _check_table("[train]", tr, TRAIN_KEYS)
    losses = ("auto",) + LOSSES + (FLOW_MATCHING_PRESET,)
    if tr["loss"] not in losses:
        raise ValueError(f"[train] loss must be one of {losses}, got {tr['loss']!r}")
    flow = cfg["process"].get("preset") == FLOW_MATCHING_PRESET or tr["loss"] == FLOW_MATCHING_PRESET
    _check_process(cfg["process"], flow)
    _check_table("[network]", cfg["network"], NETWORK_KEYS)
    _check_table("[prior]", cfg["prior"], PRIOR_KEYS)
    samp = cfg["sampling"]
    _check_table("[sampling]", samp, SAMPLING_KEYS)
    for key, choices in (("predictor", PREDICTORS), ("corrector", CORRECTORS), ("method", ("euler", "heun"))):
        if key in samp and samp[key] not in choices:
            raise ValueError(f"[sampling] {key} must be one of {choices}, got {samp[key]!r}")
    _check_table("[output]", cfg["output"], OUTPUT_KEYS)
    check_output_dir(cfg["output"]["dir"])
    check_time_weight_power(tr["time_weight_power"])


def _resolve_data_paths(data: dict, base: Path) -> None:
    """Make the file paths of a config file's [data] table absolute, relative to the config's folder
    ``base``; a path that does not exist there is an error naming the path tried."""
    for key, where in (("path", "[data] path"), ("autoencoder", "[data] autoencoder")):
        if key in data:
            data[key] = _resolve(data[key], base, where)
    source = data.get("source")
    if isinstance(source, dict) and "path" in source:
        source["path"] = _resolve(source["path"], base, "[data] source.path")


def _resolve(value: str, base: Path, where: str) -> str:
    given = Path(os.path.expanduser(value))
    tried = given if given.is_absolute() else base / given
    if tried.exists():
        return str(tried)
    hint = ""
    if not given.is_absolute() and given.exists():
        hint = (f"; {value!r} exists relative to the working directory: write its path relative to the config's "
                "folder, or absolute")
    raise FileNotFoundError(f"{where} {value!r} does not exist: tried {str(tried)!r} (a relative path in a config "
                            f"file is relative to the config's folder){hint}")


def check_output_dir(d) -> str:
    """A config-supplied ``[output] dir`` must stay below the working directory: a relative path
    without '..'. (A folder anywhere else is chosen on the command line: ``--out DIR``.) A run
    writes only ``last.pt``, ``model.pt`` and their temporary files, inside that folder."""
    if not isinstance(d, str) or not d.strip():
        raise ValueError(f"[output] dir must be a non-empty folder name, got {d!r}")
    p = PurePath(d)
    if p.is_absolute() or p.anchor or ".." in p.parts:
        raise ValueError(f"[output] dir must be a relative folder below the working directory (no absolute path, "
                         f"no '..'), got {d!r}; to write elsewhere give --out DIR on the command line")
    return d
