"""Fuzzing (hypothesis, fixed CI profile): operators and configs either work or raise a clear
ValueError/TypeError; they never crash with another exception or return malformed results."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import spdekit as sk
from spdekit.config import SCHEMA, ConfigError, build

INF = float("inf")
coefs = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                  st.sampled_from([0.0, 1e-300, 1e-30, 1e30, 1e300, INF, -1.0]))
dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.complex128, np.bool_])


@st.composite
def inputs(draw):
    ndim = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    dtype = draw(dtypes)
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_nan=True, allow_infinity=True)
    return draw(arrays(dtype, shape, elements=elements))


@settings(max_examples=150)
@given(u=inputs(), a1=coefs, l1=coefs, a2=coefs, l2=coefs, stencil=st.sampled_from(["paper", "conservative"]),
       backend=st.sampled_from(["numpy", "numba"]))
def test_operators_never_crash(u, a1, l1, a2, l2, stencil, backend):
    try:
        spde = sk.AnisotropicSPDE(a1, l1, a2, l2, stencil=stencil)
    except (ValueError, TypeError) as exc:
        assert any(name in str(exc) for name in ("alpha1", "alpha2", "lambda1", "lambda2", "Constant"))
        return
    try:
        b = spde.drift(0.0, u, backend=backend)
        g2 = spde.diffusion_amplitude(0.0, u, backend=backend)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert b.shape == u.shape and g2.shape == u.shape
    assert b.dtype == u.dtype and g2.dtype == u.dtype
    if np.isfinite(u).all() and max(abs(float(a1)), abs(float(a2))) < 1e30:
        # finite data and moderate coefficients: finite results, whatever lambda (0 < lambda <= inf)
        with np.errstate(over="ignore"):
            span = float(np.ptp(u.astype(np.float64))) if u.size else 0.0
        if span < 1e30:
            assert np.isfinite(g2).all()
            assert np.isfinite(b).all() or span > 1e10


@settings(max_examples=60)
@given(u=inputs())
def test_simulate_validates_every_input(u):
    spde = sk.AnisotropicSPDE.paper_anisotropic(8, T=0.01)
    try:
        tr = sk.simulate(spde, u, 0.0, 0.002, 1e-3)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert np.isfinite(tr.final).all() and tr.final.shape[-2:] == u.shape[-2:]


def _value_for(types):
    return st.one_of(st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
                     st.lists(st.integers(-3, 64), max_size=3),
                     st.dictionaries(st.sampled_from(["schedule", "v", "vmin", "vmax", "T", "k", "r", "lambda_min"]),
                                     st.one_of(st.floats(-1, 10), st.text(max_size=10)), max_size=4))


@st.composite
def configs(draw):
    data = {}
    for section, keys in SCHEMA.items():
        if draw(st.booleans()) or section in ("spde", "initial", "run"):
            chosen = draw(st.lists(st.sampled_from(sorted(keys) + ["bogus"]), max_size=6, unique=True))
            data[section] = {k: draw(_value_for(keys.get(k, ((), ""))[0])) for k in chosen}
    data.setdefault("spde", {}).setdefault("preset", draw(st.sampled_from(
        ["paper_anisotropic", "paper_isotropic", "pure_noise", "custom", "nope"])))
    data.setdefault("initial", {}).setdefault("image", draw(st.sampled_from(["camera", "coins", "missing.png"])))
    data["initial"]["size"] = draw(st.sampled_from([8, 12, [8, 10], 2, "x"]))
    data.setdefault("run", {}).setdefault("dt", draw(st.sampled_from([1e-3, 0.0, -1.0, "fast"])))
    if draw(st.booleans()):
        data["extra"] = {"x": 1}
    return data


@settings(max_examples=120)
@given(cfg=configs())
def test_configs_either_build_or_raise_config_error(cfg):
    try:
        run = build(cfg)
    except ConfigError as exc:
        assert str(exc).startswith("config:")
        return
    assert run.u0.ndim == 4 and np.isfinite(run.u0).all()


@pytest.mark.parametrize("text", [b"\x00\xff\xfe garbage", b"[spde]\npreset = \n", b"= = =", b"[[spde]]\nx=1"])
def test_unparseable_config_files(tmp_path, text):
    from spdekit.config import load_config

    p = tmp_path / "c.toml"
    p.write_bytes(text)
    with pytest.raises(ConfigError):
        load_config(p)
