"""The diffusivity families of g1 and g2 (spdekit.operators): both stencils and the noise amplitude
against literal transcriptions, the isotropic limit, and the family as part of the SPDE's
description (constructor, dicts, netCDF files, TOML configs).

The transcriptions are written out from the formulas (docs/operators.md), with no spdekit code:
``written_out(family, alpha, lam)`` is g(x1, x2), the paper stencil is
``test_stencil_paper.paper_drift_transcribed`` (eq. 35-36 term by term) with that g, and the
conservative stencil is written node by node below.
"""

import hashlib
import math

import numpy as np
import pytest
from test_stencil_paper import paper_drift_transcribed

import spdekit as sk
from spdekit import operators
from spdekit.backends import numba_backend, numpy_backend

FAMILIES = ["charbonnier", "perona-malik", "exponential", "weickert"]
BACKENDS = [numpy_backend, numba_backend]
INF = float("inf")


def written_out(family, alpha, lam):
    """g(x1, x2) = alpha(t) * phi(|x|^2 / lambda^2) of each family, from its formula (lam = inf allowed)."""

    def z(x1, x2):
        return (x1 * x1 + x2 * x2) / (lam * lam)

    if family == "charbonnier":  # the paper's eq. (9)
        return lambda x1, x2: alpha / math.sqrt(1 + z(x1, x2))
    if family == "perona-malik":
        return lambda x1, x2: alpha / (1 + z(x1, x2))
    if family == "exponential":
        return lambda x1, x2: alpha * math.exp(-z(x1, x2))
    assert family == "weickert"

    def weickert(x1, x2):
        q = z(x1, x2) ** 4
        # 1 - exp(-C4 / z^4), computed as -expm1 so that it keeps its relative precision where it is
        # small (1 - exp(-w) loses it for w << 1); 1 at s = 0
        return alpha if q == 0 else alpha * -math.expm1(-3.31488 / q)

    return weickert


def conservative_drift_transcribed(u, g, h):
    """The conservative stencil node by node: b = (F_east - F_west + F_north - F_south) / h with the
    face flux F = g(face gradient) * (u_n - u_i) / h; the face gradient is ((u_n - u_i) / h, the mean
    of the two nodes' mirrored central differences / (2h)) (mirrored: u[k+1] - u[k-1], 0 on a border
    node); no flux through the border faces."""
    H, W = u.shape

    def cdx(y, x):
        return u[y, x + 1] - u[y, x - 1] if 0 < x < W - 1 else 0.0

    def cdy(y, x):
        return u[y + 1, x] - u[y - 1, x] if 0 < y < H - 1 else 0.0

    def flux_x(y, x):  # through the face between (y, x) and (y, x + 1)
        n = (u[y, x + 1] - u[y, x]) / h
        t = (cdy(y, x) + cdy(y, x + 1)) / 2 / (2 * h)
        return g(n, t) * n

    def flux_y(y, x):  # through the face between (y, x) and (y + 1, x)
        n = (u[y + 1, x] - u[y, x]) / h
        t = (cdx(y, x) + cdx(y + 1, x)) / 2 / (2 * h)
        return g(t, n) * n

    b = np.zeros_like(u)
    for y in range(H):
        for x in range(W):
            east = flux_x(y, x) if x < W - 1 else 0.0
            west = flux_x(y, x - 1) if x > 0 else 0.0
            north = flux_y(y, x) if y < H - 1 else 0.0
            south = flux_y(y - 1, x) if y > 0 else 0.0
            b[y, x] = (east - west + north - south) / h
    return b


def g2_transcribed(u, g, h):
    """Eq. (37): g2 at every node of its mirrored central differences / h (0 across a border)."""
    H, W = u.shape
    out = np.empty_like(u)
    for y in range(H):
        for x in range(W):
            dx = u[y, x + 1] - u[y, x - 1] if 0 < x < W - 1 else 0.0
            dy = u[y + 1, x] - u[y - 1, x] if 0 < y < H - 1 else 0.0
            out[y, x] = g(dx / h, dy / h)
    return out


def _assert_rows_equal(got, ref, tol=1e-12):
    """Interior rows and boundary rows separately (a closure error shows as a boundary failure)."""
    scale = tol * max(1.0, np.abs(ref).max())
    border = np.ones(ref.shape, bool)
    border[1:-1, 1:-1] = False
    np.testing.assert_allclose(got[~border], ref[~border], rtol=tol, atol=scale, err_msg="interior rows")
    np.testing.assert_allclose(got[border], ref[border], rtol=tol, atol=scale, err_msg="boundary rows")


SHAPES = [(5, 6), (3, 3), (4, 7), (9, 4), (16, 12)]
# (alpha, lambda): lambda about the size of the differences of a standard normal field, so that every
# family is far from both its limits somewhere (Weickert's g falls from 1 to 0 within z in [0.5, 2])
COEFS = [(0.8, 0.7), (1.8, 2.0), (1.3, INF)]


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("coef", COEFS, ids=["lam0.7", "lam2", "lam-inf"])
@pytest.mark.parametrize("h", [1.0, 0.5])
def test_stencil_equals_its_transcription(stencil, family, shape, coef, h):
    """Every interior and boundary row of both stencils, both host backends, spacing 1 and 0.5."""
    alpha, lam = coef
    u = np.random.default_rng(sum(shape)).standard_normal(shape)
    g = written_out(family, alpha, lam)
    if stencil == "paper":  # g1 sees the differences / h, the sum is divided by h^2 (numpy_backend doc)
        ref = paper_drift_transcribed(u, alpha, lam, g=lambda x1, x2: g(x1 / h, x2 / h)) / (h * h)
    else:
        ref = conservative_drift_transcribed(u, g, h)
    il = 0.0 if math.isinf(lam) else 1 / lam**2
    for backend in BACKENDS:
        got = backend.drift(u[None, None], np.array([alpha]), np.array([il]), stencil, h, diffusivity=family)
        _assert_rows_equal(got[0, 0], ref)
        if stencil == "conservative":
            assert abs(got.sum()) <= 1e-12 * np.abs(got).sum()  # the fluxes telescope


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(5, 6), (3, 3), (9, 4)])
@pytest.mark.parametrize("h", [1.0, 0.5])
def test_noise_amplitude_equals_its_transcription(family, shape, h):
    u = np.random.default_rng(7).standard_normal(shape)
    alpha, lam = 0.6, 1.5
    ref = g2_transcribed(u, written_out(family, alpha, lam), h)
    for backend in BACKENDS:
        got = backend.diffusion_amplitude(u[None, None], np.array([alpha]), np.array([1 / lam**2]), h,
                                          diffusivity=family)
        _assert_rows_equal(got[0, 0], ref)


def test_the_families_differ():
    """The tests above would pass for a backend that ignored the family if the families agreed on the
    test fields: they do not."""
    u = np.random.default_rng(0).standard_normal((1, 1, 8, 8))
    drifts = [numpy_backend.drift(u, np.array([1.0]), np.array([1 / 0.7**2]), diffusivity=f) for f in FAMILIES]
    for i in range(len(drifts)):
        for j in range(i):
            assert np.abs(drifts[i] - drifts[j]).max() > 1e-2, (FAMILIES[i], FAMILIES[j])


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_lambda_inf_gives_g_equal_alpha_for_every_family(stencil, backend):
    """lambda = inf (a Constant(inf) schedule, passed as inv_lam2 = 0): g1 = alpha1 and g2 = alpha2
    exactly for every family, so the drift is the Charbonnier one (alpha times the 5-point Laplacian;
    bit for bit in the numpy reference, to rounding in numba, whose fast-math kernels may order the
    sums differently per family) and the noise is additive."""
    u = np.random.default_rng(1).standard_normal((2, 1, 9, 7))
    results = []
    for family in FAMILIES:
        spde = sk.AnisotropicSPDE(alpha1=2.5, lambda1=INF, alpha2=0.3, lambda2=INF, stencil=stencil,
                                  diffusivity=family)
        assert spde.is_additive and spde.is_linear
        g2 = spde.diffusion_amplitude(0.4, u, backend)
        assert np.array_equal(g2, np.full_like(u, 0.3))
        results.append(spde.drift(0.4, u, backend))
    for r in results[1:]:
        if backend == "numpy":
            assert np.array_equal(r, results[0])
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-13 * np.abs(results[0]).max())


@pytest.mark.parametrize("family", FAMILIES)
def test_flat_regions_and_tiny_lambda_stay_finite(family):
    """A flat region sees g = alpha even when 1/lambda^2 overflows the dtype (clamped), and a large
    gradient with a tiny lambda gives g -> 0, never NaN."""
    u = np.zeros((1, 1, 6, 6), np.float32)
    u[..., 3:] = 1.0
    for backend in BACKENDS:
        for il in (1e300, 1e60):
            g2 = backend.diffusion_amplitude(u, np.array([2.0]), np.array([il]), diffusivity=family)
            assert np.isfinite(g2).all()
            assert g2[0, 0, 0, 0] == 2.0 and 0 <= g2[0, 0, 0, 3] < 1e-18
            assert np.isfinite(backend.drift(u, np.array([2.0]), np.array([il]), diffusivity=family)).all()


# ----------------------------------------------------------------------------- the SPDE's description


def _custom(family="charbonnier", **kw):
    return sk.AnisotropicSPDE(alpha1=sk.schedules.Geometric(0.5, 16.0, 1.0), lambda1=0.3,
                              alpha2=sk.schedules.Geometric(0.05, 0.5, 1.0), lambda2=0.2, diffusivity=family, **kw)


def test_default_is_charbonnier_and_the_record_carries_the_families():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    assert spde.diffusivity == "charbonnier"
    c = spde.coefficients(0.5, 3)
    assert (c.diffusivity1, c.diffusivity2) == ("charbonnier", "charbonnier")
    mixed = _custom(("perona-malik", "exponential"))
    assert mixed.diffusivity == ("perona-malik", "exponential")
    c = mixed.coefficients(0.5, 2)
    assert (c.diffusivity1, c.diffusivity2) == ("perona-malik", "exponential")
    assert [r.diffusivity1 for r in mixed.coefficient_table([0.1, 0.2], 2)] == ["perona-malik"] * 2
    assert _custom(["weickert", "weickert"]).diffusivity == "weickert"


def test_a_pair_sets_g1_and_g2_apart():
    u = np.random.default_rng(2).uniform(0, 1, (2, 1, 10, 10))
    pm, ch, mixed = _custom("perona-malik"), _custom("charbonnier"), _custom(("perona-malik", "charbonnier"))
    np.testing.assert_array_equal(mixed.drift(0.5, u, "numpy"), pm.drift(0.5, u, "numpy"))
    np.testing.assert_array_equal(mixed.diffusion_amplitude(0.5, u, "numpy"), ch.diffusion_amplitude(0.5, u, "numpy"))
    dW = np.random.default_rng(3).standard_normal(u.shape) * 0.03
    for backend in ("numpy", "numba"):
        step = mixed.em_step(0.5, u, 1e-3, dW, taming=(1.0, "l2"), backend=backend)[0]
        b = pm.drift(0.5, u, "numpy")
        factor = 1e-3 / (1 + 1e-3 * np.sqrt((b[0] ** 2).sum()))
        expected = u[:1] + factor * b[:1] + ch.diffusion_amplitude(0.5, u, "numpy")[:1] * dW[:1]
        np.testing.assert_allclose(step[:1], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", ["perona_malik", "Charbonnier", "tukey", "", 3, None])
def test_bad_names_are_one_line_errors_listing_the_families(bad):
    with pytest.raises((ValueError, TypeError)) as exc:
        _custom(bad)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("diffusivity")
    for name in FAMILIES:
        assert repr(name) in msg


@pytest.mark.parametrize("bad", [("charbonnier",), ("charbonnier", "weickert", "exponential"),
                                 ("charbonnier", "huber"), ("charbonnier", 1)])
def test_bad_pairs_name_the_parameter(bad):
    with pytest.raises(ValueError, match=r"^diffusivity.*'perona-malik'") as exc:
        _custom(bad)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("family", FAMILIES + [("exponential", "weickert")])
def test_dict_round_trip(family):
    spde = _custom(family)
    d = spde.to_dict()
    if family == "charbonnier":  # the default is not written: descriptions stay those of before the families
        assert "diffusivity" not in d
    else:
        assert d["diffusivity"] == (family if isinstance(family, str) else list(family))
    back = sk.AnisotropicSPDE.from_dict(d)
    assert back == spde and back.diffusivity == spde.diffusivity
    if family != "charbonnier":
        assert back != _custom("charbonnier") and "diffusivity=" in repr(back)


def test_descriptions_without_the_family_are_charbonnier():
    """Dicts and files written before the families existed lack the key: they are the paper's g."""
    d = _custom("charbonnier").to_dict()
    assert "diffusivity" not in d
    assert sk.AnisotropicSPDE.from_dict(d) == _custom("charbonnier")
    bad = dict(d, diffusivity="lorentz")
    with pytest.raises(ValueError, match="diffusivity must be one of"):
        sk.AnisotropicSPDE.from_dict(bad)


@pytest.mark.parametrize("family", ["weickert", ("perona-malik", "charbonnier")])
def test_netcdf_files_keep_the_family(tmp_path, family):
    import netCDF4

    spde = _custom(family)
    u0 = np.random.default_rng(4).uniform(0, 1, (2, 1, 8, 8))
    streamed = tmp_path / "streamed.nc"
    traj = sk.simulate(spde, u0, 0.0, 0.01, 1e-3, seed=0, backend="numpy", out=streamed)
    finished = tmp_path / "finished.nc"
    traj.to_netcdf(finished)
    for path in (streamed, finished):
        back = sk.open_trajectory(path)
        assert back.spde == spde and back.spde.diffusivity == spde.diffusivity
        with netCDF4.Dataset(path) as nc:
            attr = nc.getncattr("spde_diffusivity")
        assert attr == (family if isinstance(family, str) else '["perona-malik", "charbonnier"]')
    # and the run used the family: the same path with Charbonnier's g ends elsewhere
    other = sk.simulate(_custom("charbonnier"), u0, 0.0, 0.01, 1e-3, seed=0, backend="numpy")
    assert np.abs(other.final - traj.final).max() > 1e-6


def test_old_files_open_as_charbonnier(tmp_path):
    """A file written before the families (no spde_diffusivity attribute, no key in the run's JSON)
    opens as the paper's Charbonnier g."""
    import netCDF4

    from spdekit.store import META_ATTR, from_json

    spde = _custom("charbonnier")
    u0 = np.random.default_rng(5).uniform(0, 1, (1, 1, 8, 8))
    path = tmp_path / "old.nc"
    sk.simulate(spde, u0, 0.0, 0.005, 1e-3, seed=0, backend="numpy").to_netcdf(path)
    with netCDF4.Dataset(path) as nc:  # the default is not written: the file is as it was before the families
        assert "diffusivity" not in from_json(nc.getncattr(META_ATTR))["spde"]
        assert "spde_diffusivity" not in nc.ncattrs()
    back = sk.open_trajectory(path)
    assert back.spde == spde and back.spde.diffusivity == "charbonnier"


def _toml(tmp_path, line):
    path = tmp_path / "run.toml"
    path.write_text(f'[spde]\npreset = "paper_anisotropic"\nT = 1.0\n{line}\n[initial]\nimage = "camera"\n'
                    'size = 16\n[run]\ndt = 1e-3\n')
    return path


@pytest.mark.parametrize("line,expected", [('diffusivity = "exponential"', "exponential"),
                                           ('diffusivity = ["weickert", "charbonnier"]', ("weickert", "charbonnier")),
                                           ("", "charbonnier")])
def test_toml_configs_name_the_family(tmp_path, line, expected):
    from spdekit.config import build, load_config

    path = _toml(tmp_path, line)
    cfg = build(load_config(path), str(path))
    assert cfg.spde.diffusivity == expected


@pytest.mark.parametrize("line", ['diffusivity = "huber"', 'diffusivity = ["weickert"]', "diffusivity = 2"])
def test_toml_config_errors_name_the_key(tmp_path, line):
    from spdekit.config import ConfigError, build, load_config

    path = _toml(tmp_path, line)
    with pytest.raises(ConfigError, match=r"spde\.diffusivity") as exc:
        build(load_config(path), str(path))
    assert "\n" not in str(exc.value)


def test_every_g2_family_reverses_with_correlated_noise():
    """tr D_u Sigma uses g2's own family (tests/test_reverse_pieces.py checks it against finite
    differences): reverse() accepts every family, also with correlated noise and lambda2 < inf."""
    score = lambda t, u: np.zeros_like(u)  # noqa: E731
    for fam in FAMILIES:
        _custom(fam, correlation_length=2.0).reverse(score)


def test_charbonnier_results_are_the_ones_before_the_families():
    """Bit for bit: the numpy reference's drift (both stencils), g2 and drift adjoint on a fixed field,
    float64 and float32, hashed with the code of commit 2b6cd75 (before spdekit.operators existed)."""
    y, x = np.mgrid[0:7, 0:9]
    digest = hashlib.sha256()
    for dtype in (np.float64, np.float32):
        u = (np.sin(0.7 * x + 0.3 * y) + 0.25 * np.cos(1.3 * x * y))[None, None].astype(dtype)
        w = np.cos(0.4 * x - 0.9 * y)[None, None].astype(dtype)
        a, il = np.array([1.7]), np.array([1 / 0.4**2])
        outs = [numpy_backend.drift(u, a, il, s, h) for s in ("paper", "conservative") for h in (1.0, 0.5)]
        outs += [numpy_backend.diffusion_amplitude(u, a, il, 0.5)]
        outs += [numpy_backend.drift_vjp(u, w, a, il, s, 0.5) for s in ("paper", "conservative")]
        for o in outs:
            assert o.dtype == dtype
            digest.update(np.ascontiguousarray(o, dtype=o.dtype.newbyteorder("<")).tobytes())
    assert digest.hexdigest() == CHARBONNIER_DIGEST


CHARBONNIER_DIGEST = "0afb3630a89a53f86db7ecde78d37e08a64ce903ace50141af553ac3f70f2aa5"


def test_operators_g_is_the_backends_g():
    """numpy_backend.g (gradient components) is operators.g of s = gx^2 + gy^2, family by family."""
    rng = np.random.default_rng(6)
    gx, gy = rng.standard_normal(50), rng.standard_normal(50)
    for family in FAMILIES:
        np.testing.assert_array_equal(numpy_backend.g(1.3, 2.0, gx, gy, family),
                                      operators.g(1.3, 2.0, gx * gx + gy * gy, family))


def test_presets_and_derived_spdes_keep_the_family():
    from spdekit.problems import paper_multiplicative

    assert sk.AnisotropicSPDE.paper_isotropic(16, diffusivity="exponential").diffusivity == "exponential"
    m = paper_multiplicative(16, 2.0, lambda2=0.1, diffusivity="perona-malik")
    assert m.diffusivity == "perona-malik" and not m.is_additive
    assert _custom("weickert").linearised().diffusivity == "weickert"
