"""The numba kernels equal the numpy reference (the acceptance criterion of the core issue):
float64 within 1e-12 and float32 within 1e-5 after 100 steps driven by the same increments."""

import numpy as np
import pytest
from _cases import CASES, SOLVERS
from _cases import image_batch as _image_batch

import spdekit as sk
from spdekit.backends import get_backend


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_numba_equals_numpy_after_100_steps(case, solver, dtype, tol):
    spde = CASES[case]()
    u0 = _image_batch(dtype)
    n, dt = 100, 1e-3
    rng = np.random.default_rng(7)
    dW = (np.sqrt(dt) * spde.noise.sample((n,) + u0.shape, rng, dtype)).astype(dtype)
    # start at t = 1.0 where alpha1 is large and lambda1 finite: both terms matter
    runs = {
        name: sk.simulate(spde, u0, 1.0, 1.0 + n * dt, dt, solver=SOLVERS[solver], brownian=dW, backend=name)
        for name in ("numpy", "numba")
    }
    ref, got = runs["numpy"].final, runs["numba"].final
    assert ref.dtype == got.dtype == dtype
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= tol * scale, f"max diff {np.abs(got - ref).max():.3g}"
    # and the run did something: the state moved away from u0 by much more than the tolerance
    assert np.abs(ref - u0).max() > 1e3 * tol * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_per_sample_times(dtype):
    spde = sk.AnisotropicSPDE.paper_anisotropic(32)
    u = _image_batch(dtype, batch=3)
    t = np.array([0.0, 0.9, 1.8])
    dW = np.random.default_rng(1).standard_normal(u.shape).astype(dtype) * dtype(0.03)
    outs = [spde.em_step(t, u, 1e-3, dW, taming=(1.0, "l2"), backend=b)[0] for b in ("numpy", "numba")]
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.abs(outs[0] - outs[1]).max() <= tol * np.abs(outs[0]).max()


def test_auto_backend_is_numba_on_host():
    assert get_backend("auto", np.zeros((3, 3))).name == "numba"


def test_non_contiguous_input_is_handled():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u = np.random.default_rng(0).standard_normal((2, 1, 16, 32))[..., ::2]
    np.testing.assert_allclose(spde.drift(0.3, u, backend="numba"), spde.drift(0.3, u, backend="numpy"),
                               rtol=1e-12, atol=1e-12)


def test_cupy_backend_is_refused_cleanly_without_a_gpu():
    """CI has no GPU: asking for cupy explains what is missing instead of failing obscurely."""
    from spdekit.backends import available

    if available("cupy"):
        pytest.skip("a GPU is present; tests/test_gpu.py covers the cupy backend")
    u = np.zeros((1, 1, 8, 8))
    with pytest.raises((ImportError, ValueError), match="cupy"):
        sk.simulate(sk.AnisotropicSPDE.paper_anisotropic(8), u, 0.0, 0.01, 1e-3, backend="cupy")


def test_numba_results_do_not_depend_on_the_thread_count():
    import numba

    spde = CASES["multiplicative"]()
    u = _image_batch(np.float64, batch=3)
    dW = np.random.default_rng(2).standard_normal(u.shape) * 0.03
    outs = []
    old = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            outs.append(spde.em_step(0.5, u, 1e-3, dW, taming=(1.0, "l2"), backend="numba")[0])
    finally:
        numba.set_num_threads(old)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


@pytest.mark.parametrize("shape", [(2, 1, 3, 3), (2, 2, 5, 7), (3, 1, 7, 4), (2, 3, 32, 32), (1, 1, 40, 9)])
@pytest.mark.parametrize("route", ["sample-task", "row-blocks"])
@pytest.mark.parametrize("case", ["paper-preset", "multiplicative"])
@pytest.mark.parametrize("taming", [None, (1.0, "l2"), (1.5, "rms")])
def test_both_numba_routes_equal_numpy(shape, route, case, taming, monkeypatch):
    """The one-pass per-sample route (small samples, flat loops per plane) and the row-block route
    (large samples) each equal the numpy reference, on grids down to 3x3 and with H != W."""
    from spdekit.backends import numba_backend

    monkeypatch.setattr(numba_backend, "_SAMPLE_TASK_MAX", 1 << 30 if route == "sample-task" else 0)
    spde = CASES[case]()
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, shape)
    dW = rng.standard_normal(shape) * 0.03
    ref, ok_ref = spde.em_step(1.0, u, 1e-3, dW, taming=taming, backend="numpy")
    got, ok = spde.em_step(1.0, u, 1e-3, dW, taming=taming, backend="numba")
    assert ok and ok_ref
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert np.abs(got - u).max() > 1e-4  # the step did something


@pytest.mark.parametrize("route", ["sample-task", "row-blocks"])
def test_both_numba_routes_report_a_blow_up(route, monkeypatch):
    from spdekit.backends import numba_backend

    monkeypatch.setattr(numba_backend, "_SAMPLE_TASK_MAX", 1 << 30 if route == "sample-task" else 0)
    spde = CASES["paper-preset"]()
    u = np.zeros((2, 1, 8, 8))
    u[1, 0, 3, 4] = np.inf
    _, ok = spde.em_step(1.0, u, 1e-3, np.zeros_like(u), taming=(1.0, "l2"), backend="numba", checked=True)
    assert not ok


@pytest.mark.parametrize("shape", [(2, 1, 3, 3), (2, 2, 5, 7), (1, 3, 32, 32), (1, 1, 40, 9)])
@pytest.mark.parametrize("route", ["sample-task", "row-blocks"])
@pytest.mark.parametrize("spacing", [1.0, 0.5])
def test_both_numba_drift_routes_equal_numpy(shape, route, spacing, monkeypatch):
    from spdekit.backends import numba_backend

    monkeypatch.setattr(numba_backend, "_SAMPLE_TASK_MAX", 1 << 30 if route == "sample-task" else 0)
    spde = sk.AnisotropicSPDE.paper_anisotropic(32, spacing=spacing)
    u = np.random.default_rng(4).uniform(-1, 1, shape)
    ref = spde.drift(1.0, u, backend="numpy")
    got = spde.drift(1.0, u, backend="numba")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


# ----------------------------------------------------------------------------- diffusivity families

FAMILIES = ["perona-malik", "exponential", "weickert"]  # Charbonnier's: the tests above


def _family_case(family, stencil):
    """Multiplicative noise (lambda2 finite) so that both g1 and g2 use the family; lambda1 about the
    size of the image's differences, where the families differ most."""
    return sk.AnisotropicSPDE(
        alpha1=sk.schedules.Geometric(0.5, 16.0, 1.0), lambda1=sk.schedules.AnisotropyRamp(0.05, 0.5, 1.0),
        alpha2=sk.schedules.Geometric(0.05, 0.5, 1.0), lambda2=0.2, stencil=stencil, diffusivity=family)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("solver", ["tamed-l2", "em"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_families_numba_equals_numpy_after_100_steps(family, stencil, solver, dtype, tol):
    """The acceptance criterion of the core issue, for every family: same increments, 100 steps."""
    spde = _family_case(family, stencil)
    u0 = _image_batch(dtype)
    n, dt = 100, 1e-3
    dW = (np.sqrt(dt) * spde.noise.sample((n,) + u0.shape, np.random.default_rng(7), dtype)).astype(dtype)
    runs = {name: sk.simulate(spde, u0, 0.5, 0.5 + n * dt, dt, solver=SOLVERS[solver], brownian=dW, backend=name)
            for name in ("numpy", "numba")}
    ref, got = runs["numpy"].final, runs["numba"].final
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= tol * scale, f"max diff {np.abs(got - ref).max():.3g}"
    assert np.abs(ref - u0).max() > 1e3 * tol * scale
    charbonnier = sk.simulate(_family_case("charbonnier", stencil), u0, 0.5, 0.5 + n * dt, dt,
                              solver=SOLVERS[solver], brownian=dW, backend="numpy").final
    assert np.abs(charbonnier - ref).max() > 1e3 * tol * scale  # the family changed the run


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(2, 1, 3, 3), (2, 2, 5, 7), (1, 1, 40, 9)])
@pytest.mark.parametrize("route", ["sample-task", "row-blocks"])
@pytest.mark.parametrize("taming", [None, (1.0, "l2")])
def test_families_both_numba_routes_equal_numpy(family, shape, route, taming, monkeypatch):
    from spdekit.backends import numba_backend

    monkeypatch.setattr(numba_backend, "_SAMPLE_TASK_MAX", 1 << 30 if route == "sample-task" else 0)
    spde = _family_case(family, "paper")
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, shape)
    dW = rng.standard_normal(shape) * 0.03
    ref = spde.em_step(1.0, u, 1e-3, dW, taming=taming, backend="numpy")[0]
    got, ok = spde.em_step(1.0, u, 1e-3, dW, taming=taming, backend="numba")
    assert ok
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(spde.drift(1.0, u, backend="numba"), spde.drift(1.0, u, backend="numpy"),
                               rtol=0, atol=1e-12 * np.abs(spde.drift(1.0, u, backend="numpy")).max())


# ----------------------------------------------------------------------------- the backend contract


def test_host_backends_implement_the_contract():
    from spdekit.backends import base, numba_backend, numpy_backend

    for mod in (numpy_backend, numba_backend):
        assert isinstance(mod, base.Backend), mod.name
        assert set(mod.CAPABILITIES) <= set(base.OPTIONAL)
        for cap in mod.CAPABILITIES:
            assert callable(getattr(mod, cap))
    assert "drift_vjp" in numpy_backend.CAPABILITIES and "threads" in numba_backend.CAPABILITIES
    assert not isinstance(object(), base.Backend)


def test_cupy_backend_declares_the_contract():
    """Read from the source (cupy is not installed in CI): the required functions exist, the declared
    capabilities exist, among them the adjoint (its GPU kernel: issue 25 item 2) and the fused run (item 3)."""
    import ast
    import pathlib

    import spdekit.backends
    from spdekit.backends import base

    tree = ast.parse(pathlib.Path(spdekit.backends.__file__).with_name("cupy_backend.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assigned = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)
                and isinstance(n.targets[0], ast.Name)}
    required = {name for name in dir(base.Backend)
                if not name.startswith("_") and callable(getattr(base.Backend, name))}
    assert required == {"drift", "diffusion_amplitude", "em_step", "circulant_apply"}
    assert required <= functions
    caps = {ast.literal_eval(e) for e in assigned["CAPABILITIES"].args[0].elts}
    assert caps == {"standard_normal", "drift_vjp", "em_run"} and caps <= functions
    assert ast.literal_eval(assigned["name"]) == "cupy"


def test_a_missing_capability_names_backend_and_capability():
    from spdekit.backends import base, numba_backend, numpy_backend

    with pytest.raises(base.MissingCapability) as exc:
        base.capability(numpy_backend, "threads")
    msg = str(exc.value)
    assert "'numpy'" in msg and "'threads'" in msg and "numba" in msg and "\n" not in msg
    assert isinstance(exc.value, NotImplementedError)  # callers that caught the former error still do
    assert base.capability(numba_backend, "drift_vjp") is numba_backend.drift_vjp
    with pytest.raises(ValueError, match="capability must be one of"):
        base.capability(numpy_backend, "teleport")

    class Partial:  # a backend without the adjoint, as cupy is
        name = "partial"
        CAPABILITIES = frozenset()

    with pytest.raises(base.MissingCapability, match="backend 'partial' does not provide 'drift_vjp'"):
        base.capability(Partial, "drift_vjp")


def test_coefficient_record_and_the_former_dict():
    from spdekit.backends import base

    spde = _family_case("weickert", "paper")
    c = spde.coefficients(0.4, 3)
    assert isinstance(c, base.Coefficients)
    assert c["alpha1"] is c.alpha1 and c["inv_lam2"] is c.inv_lam2 and c.diffusivity2 == "weickert"
    assert set(c.keys()) == {"alpha1", "inv_lam1", "alpha2", "inv_lam2", "diffusivity1", "diffusivity2"}
    with pytest.raises(KeyError, match="not a coefficient"):
        c["alpha3"]
    old = {k: c[k] for k in ("alpha1", "inv_lam1", "alpha2", "inv_lam2")}
    assert base.as_coefficients(old).diffusivity1 == "charbonnier"  # a bare dict is the paper's g
    assert base.as_coefficients(c) is c
    with pytest.raises(TypeError, match="coef must be"):
        base.as_coefficients([1, 2, 3, 4])
    with pytest.raises(ValueError, match="diffusivity1 must be one of"):
        base.Coefficients(c.alpha1, c.inv_lam1, c.alpha2, c.inv_lam2, "gauss")
    # the SPDE gives a dict its own families; the backends take records or dicts
    u = _image_batch(np.float64, batch=3, size=16)
    dW = np.random.default_rng(0).standard_normal(u.shape) * 0.01
    for backend in ("numpy", "numba"):
        ref = spde.em_step(0.4, u, 1e-3, dW, backend=backend, coef=c)[0]
        np.testing.assert_array_equal(spde.em_step(0.4, u, 1e-3, dW, backend=backend, coef=old)[0], ref)
        np.testing.assert_array_equal(get_backend(backend).em_step(u, dW, 1e-3, dict(c), "paper")[0], ref)
