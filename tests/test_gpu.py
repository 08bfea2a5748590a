"""GPU backend (cupy): runs when cupy and a CUDA device are present, skips cleanly otherwise."""

import importlib

import numpy as np
import pytest
from _cases import CASES, SOLVERS, image_batch

import spdekit as sk

cp = pytest.importorskip("cupy", reason="cupy is not installed (pip install 'spdekit[gpu-cuda12]' or '[gpu-cuda13]')")
from spdekit.backends import available  # noqa: E402

if not available("cupy"):
    pytest.skip("no CUDA device visible to cupy", allow_module_level=True)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_cupy_equals_numpy_after_100_steps(case, solver, dtype, tol):
    spde = CASES[case]()
    u0 = image_batch(dtype)
    n, dt = 100, 1e-3
    dW = (np.sqrt(dt) * spde.noise.sample((n,) + u0.shape, np.random.default_rng(7), dtype)).astype(dtype)
    ref = sk.simulate(spde, u0, 1.0, 1.0 + n * dt, dt, solver=SOLVERS[solver], brownian=dW, backend="numpy").final
    got = sk.simulate(spde, cp.asarray(u0), 1.0, 1.0 + n * dt, dt, solver=SOLVERS[solver], brownian=dW,
                      backend="cupy").final
    assert isinstance(got, np.ndarray) and got.dtype == dtype  # saved states come back to the host
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_operators_on_device_equal_reference(stencil, dtype):
    spde = sk.AnisotropicSPDE(alpha1=3.0, lambda1=0.1, alpha2=0.5, lambda2=0.2, stencil=stencil, spacing=0.7)
    u = np.random.default_rng(0).standard_normal((3, 2, 17, 23)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for fn in (spde.drift, spde.diffusion_amplitude):
        ref = fn(0.3, u, backend="numpy")
        got = fn(0.3, cp.asarray(u))
        assert isinstance(got, cp.ndarray)
        assert float(cp.abs(got - cp.asarray(ref)).max()) <= tol * np.abs(ref).max()


def test_noise_covariance_on_the_gpu():
    from test_noise import MAX_LAG

    noise = sk.QWienerNoise(3.0)
    H = W = 16
    rng = cp.random.default_rng(0)
    dys, dxs = np.meshgrid(np.arange(MAX_LAG + 1), np.arange(-MAX_LAG, MAX_LAG + 1), indexing="ij")
    counts = (H - dys) * (W - np.abs(dxs))
    stats = []
    for _ in range(10):
        x = noise.sample((2000, H, W), rng)
        assert isinstance(x, cp.ndarray)
        f = cp.fft.rfft2(x, s=(2 * H, 2 * W))
        acf = cp.fft.irfft2(f * cp.conj(f), s=(2 * H, 2 * W)).get()
        stats.append(acf[:, dys, dxs % (2 * W)] / counts)
    s = np.concatenate(stats)
    z = np.abs(s.mean(0) - noise.covariance(dys, dxs)) / (s.std(0, ddof=1) / np.sqrt(len(s)))
    assert z.max() < 4.0


def test_dlpack_round_trips_share_memory():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA support here")
    t = torch.arange(16.0, device="cuda").reshape(4, 4)
    c = cp.from_dlpack(t)
    assert c.data.ptr == t.data_ptr()
    c[0, 0] = 7.0
    assert t[0, 0].item() == 7.0
    t2 = torch.from_dlpack(c)
    assert t2.data_ptr() == c.data.ptr
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u = torch.rand(2, 1, 16, 16, device="cuda", dtype=torch.float64)
    out = spde.drift(0.4, u)
    assert isinstance(out, torch.Tensor) and out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), spde.drift(0.4, u.cpu().numpy(), backend="numpy"), rtol=1e-12,
                               atol=1e-12)


def test_divergence_is_detected_on_the_gpu():
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.0, lambda2=float("inf"))
    u0 = cp.asarray(np.random.default_rng(0).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32))
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged):
        sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama())


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_device_normals_are_the_host_stream(dtype, tol):
    """Same Philox counters on the GPU: equal to the host's normals up to libm rounding."""
    from spdekit.random import SampleStreams

    host = SampleStreams(9, 7).standard_normal((7, 3, 33), dtype=dtype)
    dev = SampleStreams(9, 7, device="cupy").standard_normal((7, 3, 33), dtype=dtype)
    assert isinstance(dev, cp.ndarray)
    np.testing.assert_allclose(dev.get(), host, rtol=tol, atol=tol)


def test_seeded_gpu_run_matches_the_host_run():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u0 = np.random.default_rng(0).uniform(0, 1, (3, 1, 16, 16))
    host = sk.simulate(spde, u0, 0.0, 0.05, 1e-3, seed=4, backend="numba").final
    dev = sk.simulate(spde, cp.asarray(u0), 0.0, 0.05, 1e-3, seed=4, backend="cupy").final
    np.testing.assert_allclose(dev, host, rtol=1e-10, atol=1e-10)


# -- issue 25 item 2: the drift's adjoint and the DCT-mode transforms on the device ----------------


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("family", ["charbonnier", "perona-malik", "exponential", "weickert"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_cupy_drift_vjp_equals_numpy(stencil, family, dtype, tol):
    """The gather kernel equals the numpy scatter: per-sample coefficients, every border case."""
    from spdekit.backends import cupy_backend, numpy_backend

    assert "drift_vjp" in cupy_backend.CAPABILITIES
    rng = np.random.default_rng(11)
    u = rng.standard_normal((3, 2, 17, 23)).astype(dtype)
    w = rng.standard_normal(u.shape).astype(dtype)
    alpha, inv_lam2 = np.array([1.0, 2.5, 0.3]), np.array([4.0, 0.5, 1.7])
    ref = numpy_backend.drift_vjp(u, w, alpha, inv_lam2, stencil, 0.7, family)
    got = cupy_backend.drift_vjp(cp.asarray(u), cp.asarray(w), alpha, inv_lam2, stencil, 0.7, family)
    assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == u.shape
    assert float(cp.abs(got - cp.asarray(ref)).max()) <= tol * np.abs(ref).max()


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("family", ["charbonnier", "weickert"])
def test_cupy_drift_vjp_adjoint_identity_on_device(stencil, family):
    """<J v, w> = <v, J^T w> with J v the directional derivative of the cupy drift (central
    differences in float64), all on the device."""
    from spdekit.backends import cupy_backend

    rng = cp.random.default_rng(5)
    u, v, w = (rng.standard_normal((2, 1, 12, 9)) for _ in range(3))
    alpha, inv_lam2 = np.array([1.3, 0.6]), np.array([2.0, 0.8])
    eps = 1e-6
    jv = (cupy_backend.drift(u + eps * v, alpha, inv_lam2, stencil, 1.0, diffusivity=family)
          - cupy_backend.drift(u - eps * v, alpha, inv_lam2, stencil, 1.0, diffusivity=family)) / (2 * eps)
    jtw = cupy_backend.drift_vjp(u, w, alpha, inv_lam2, stencil, 1.0, family)
    lhs, rhs = float((jv * w).sum()), float((v * jtw).sum())
    assert abs(lhs - rhs) <= 1e-6 * max(abs(lhs), 1.0)


def test_cupy_drift_vjp_is_deterministic():
    from spdekit.backends import cupy_backend

    rng = cp.random.default_rng(2)
    u, w = rng.standard_normal((4, 3, 32, 32)), rng.standard_normal((4, 3, 32, 32))
    a, il = np.ones(4), np.full(4, 3.0)
    assert bool((cupy_backend.drift_vjp(u, w, a, il) == cupy_backend.drift_vjp(u, w, a, il)).all())


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
def test_mode_transforms_on_device_equal_host(stencil):
    """to_modes / from_modes / adjoint_modes of cupy arrays and CUDA tensors: same type out, equal to
    the host (scipy.fft) result; DCT-II by cupyx.scipy.fft, the paper stencil's DCT-I by cupy.fft."""
    from spdekit import spectral

    u = np.random.default_rng(4).standard_normal((3, 2, 16, 11))
    for fn in (spectral.to_modes, spectral.from_modes, spectral.adjoint_modes):
        got = fn(cp.asarray(u), stencil)
        assert isinstance(got, cp.ndarray)
        np.testing.assert_allclose(got.get(), fn(u, stencil), rtol=1e-12, atol=1e-12 * np.abs(u).max())
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA support here")
    t = torch.from_numpy(u).cuda()
    z = spectral.to_modes(t, stencil)
    assert isinstance(z, torch.Tensor) and z.is_cuda
    np.testing.assert_allclose(spectral.from_modes(z, stencil).cpu().numpy(), u, rtol=1e-12, atol=1e-12)


def test_exponential_steps_on_device_equal_host():
    """ReverseSDE.exponential_step / exponential_flow_step with a cupy state: cupy out, equal to the
    numpy run (the reference's tables moved to the device once per step; the state stays there)."""
    from spdekit.reference import GaussianReference

    spde = sk.AnisotropicSPDE(alpha1=0.5, lambda1=float("inf"), alpha2=0.3, lambda2=float("inf"),
                              stencil="conservative")
    ref = GaussianReference(spde, (1, 8, 8), dt=0.01, n_steps=20)
    rev = spde.reverse(lambda t, u: ref.score(int(round(float(np.ravel(to_np(t))[0]) / 0.01)), u), reference=ref)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 1, 8, 8))
    xi = rng.standard_normal(u.shape)
    host, ok_h = rev.exponential_step(10, 7, u, xi)
    dev, ok_d = rev.exponential_step(10, 7, cp.asarray(u), cp.asarray(xi))
    assert isinstance(dev, cp.ndarray) and ok_h and ok_d
    np.testing.assert_allclose(dev.get(), host, rtol=1e-10, atol=1e-10)
    host, _ = rev.exponential_flow_step(10, 7, u)
    dev, _ = rev.exponential_flow_step(10, 7, cp.asarray(u))
    assert isinstance(dev, cp.ndarray)
    np.testing.assert_allclose(dev.get(), host, rtol=1e-10, atol=1e-10)


def to_np(a):
    return a.get() if isinstance(a, cp.ndarray) else np.asarray(a)


# -- issue 25 item 3: the fused device run (EMRun: coefficients uploaded once, noise drawn in the kernel) ------


WHITE = sorted(c for c in CASES if c != "correlated")


@pytest.mark.parametrize("case", WHITE)
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_fused_run_equals_numpy_run(case, solver, dtype, tol):
    """A seeded white-noise run on the GPU goes through the fused EMRun and equals the numpy backend's step
    loop with the same seed (the same Philox increments), also at every saved state and across chunks."""
    sim = importlib.import_module("spdekit.simulate")

    spde = CASES[case]()
    u0 = image_batch(dtype)
    n, dt = sim.CHECK_EVERY + 44, 1e-3
    ref = sk.simulate(spde, u0, 1.0, 1.0 + n * dt, dt, solver=SOLVERS[solver], seed=11, save_every=37,
                      backend="numpy")
    got = sk.simulate(spde, cp.asarray(u0), 1.0, 1.0 + n * dt, dt, solver=SOLVERS[solver], seed=11, save_every=37,
                      backend="cupy")
    np.testing.assert_array_equal(got.times, ref.times)
    assert got.states.dtype == dtype
    assert np.abs(got.states - ref.states).max() <= tol * np.abs(ref.states).max()


def test_fused_run_equals_the_per_step_device_loop(monkeypatch):
    sim = importlib.import_module("spdekit.simulate")

    spde = CASES["multiplicative"]()
    u0 = cp.asarray(image_batch(np.float32))
    fused = sk.simulate(spde, u0, 0.0, 0.3, 1e-3, seed=5, backend="cupy").final
    monkeypatch.setattr(sim, "_fused_run", lambda *a: None)
    loop = sk.simulate(spde, u0, 0.0, 0.3, 1e-3, seed=5, backend="cupy").final
    np.testing.assert_allclose(fused, loop, rtol=1e-5, atol=1e-5 * np.abs(loop).max())


def test_fused_run_reports_the_first_bad_step():
    """The flag is read once per chunk, yet the error names the step where the state first stopped being
    finite (the same step as the numpy loop) and keeps the states saved before it."""
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.01, lambda2=float("inf"))
    u0 = np.random.default_rng(0).uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
    steps = {}
    for backend, u in (("numpy", u0), ("cupy", cp.asarray(u0))):
        with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as exc:
            sk.simulate(spde, u, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), seed=1, save_every=10, backend=backend)
        steps[backend] = (exc.value.step, exc.value.trajectory.times[-1])
    assert steps["cupy"] == steps["numpy"]
