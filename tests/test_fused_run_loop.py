"""simulate's fused-run branch (backend capability ``em_run``: the cupy EMRun), exercised on the CPU with
a host stand-in that has the contract of EMRun (steps k0 .. k1 - 1 per call, increments at draw
draw0 + k, first non-finite step reported, the streams' draw counter moved on): the chunking at save
points and every CHECK_EVERY steps, the saved states, the error's step and time, and the equality with
the step loop. The GPU kernels themselves are checked in test_cuda_source.py (their arithmetic, on the
host) and test_gpu.py (on a device)."""

import importlib
import types

import numpy as np
import pytest

import spdekit as sk
from spdekit.backends import numpy_backend, philox
from spdekit.backends.base import Coefficients

sim = importlib.import_module("spdekit.simulate")


class HostRun:
    """EMRun's contract with numpy: em_step with the Philox increments of draw draw0 + k."""

    def __init__(self, shape, dtype, columns, dts, streams, stencil, spacing, taming, d1, d2, calls):
        self.cols = [np.asarray(c, dtype=np.float64) for c in columns]
        self.dts, self.streams, self.draw0 = np.asarray(dts), streams, streams.draw
        self.stencil, self.spacing, self.taming, self.d = stencil, spacing, taming, (d1, d2)
        self.shape, self.dtype, self.calls = shape, np.dtype(dtype), calls

    def advance(self, u, k0, k1):
        self.calls.append((k0, k1))
        bad = None
        B = self.shape[0]
        for k in range(k0, k1):
            dW = philox.standard_normal(self.shape, self.streams.key, self.streams.first, self.draw0 + k,
                                        self.streams.stream, self.dtype, scale=np.sqrt(self.dts[k]))
            c = Coefficients(*(np.full(B, col[k]) for col in self.cols), *self.d)
            u, ok = numpy_backend.em_step(u, dW, self.dts[k], c, self.stencil, self.spacing, self.taming)
            if not ok and bad is None:
                bad = k
        self.streams.draw = self.draw0 + k1
        return u, bad


@pytest.fixture
def fused_backend(monkeypatch):
    calls = []
    be = types.SimpleNamespace(**{k: getattr(numpy_backend, k) for k in dir(numpy_backend) if not k.startswith("__")})
    be.CAPABILITIES = numpy_backend.CAPABILITIES | {"em_run"}
    be.em_run = lambda *a: HostRun(*a, calls)
    monkeypatch.setattr(sim, "get_backend", lambda name, u=None: be)
    return calls


@pytest.mark.parametrize("solver", [sk.EulerMaruyama(), sk.TamedEulerMaruyama(), sk.TamedEulerMaruyama(1.5, "rms")])
def test_fused_branch_equals_the_step_loop(fused_backend, solver, monkeypatch):
    monkeypatch.setattr(sim, "CHECK_EVERY", 16)
    spde = sk.AnisotropicSPDE.paper_anisotropic(12)
    u0 = np.random.default_rng(0).uniform(-1, 1, (3, 2, 12, 12))
    got = sk.simulate(spde, u0, 0.0, 0.05, 1e-3, solver=solver, seed=3, save_every=7)
    assert fused_backend, "the fused branch was not taken"
    # chunks end at every save point (7, 14, ...) and never exceed CHECK_EVERY steps
    ends = [k1 for _, k1 in fused_backend]
    assert all(k1 - k0 <= 16 for k0, k1 in fused_backend) and set(range(7, 50, 7)) <= set(ends)
    assert [k0 for k0, _ in fused_backend] == [0] + ends[:-1] and ends[-1] == 50
    monkeypatch.undo()
    ref = sk.simulate(spde, u0, 0.0, 0.05, 1e-3, solver=solver, seed=3, save_every=7, backend="numpy")
    np.testing.assert_array_equal(got.times, ref.times)
    np.testing.assert_allclose(got.states, ref.states, rtol=0, atol=1e-12)


def test_fused_branch_with_a_step_schedule(fused_backend):
    spde = sk.AnisotropicSPDE.paper_anisotropic(12)
    u0 = np.random.default_rng(1).uniform(-1, 1, (2, 1, 12, 12))
    got = sk.simulate(spde, u0, 0.0, 0.2, sk.StabilityBoundSteps(cfl=0.9), seed=2, save_times=[0.1])
    assert fused_backend
    ref = sk.simulate(spde, u0, 0.0, 0.2, sk.StabilityBoundSteps(cfl=0.9), seed=2, save_times=[0.1], backend="numpy")
    np.testing.assert_array_equal(got.times, ref.times)
    np.testing.assert_allclose(got.states, ref.states, rtol=0, atol=1e-12)


def test_fused_branch_reports_the_first_bad_step(fused_backend):
    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.01, lambda2=float("inf"))
    u0 = np.random.default_rng(0).uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as exc:
        sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), seed=1, save_every=10)
    assert fused_backend
    got = exc.value
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as exc:
        sk.simulate(spde, u0, 0.0, 125.0, 0.125, solver=sk.EulerMaruyama(), seed=1, save_every=10, backend="numpy")
    ref = exc.value
    assert (got.step, got.time) == (ref.step, ref.time)
    np.testing.assert_array_equal(got.trajectory.times, ref.trajectory.times)
    assert got.trajectory.stopped_at == ref.trajectory.stopped_at


@pytest.mark.parametrize("case", ["correlated", "brownian", "stiff"])
def test_runs_the_fused_branch_cannot_take_use_the_step_loop(fused_backend, case):
    """Correlated noise (FFT, not fusable), explicit increments and stiff solvers keep the step loop."""
    spde = sk.AnisotropicSPDE.paper_isotropic(8, correlation_length=2.0 if case == "correlated" else 0.0)
    u0 = np.random.default_rng(0).uniform(-1, 1, (1, 1, 8, 8))
    kw = {"seed": 1}
    if case == "brownian":
        kw = {"brownian": np.zeros((10, 1, 1, 8, 8))}
    solver = sk.LinearlyImplicitTheta() if case == "stiff" else sk.EulerMaruyama()
    sk.simulate(spde, u0, 0.0, 0.01, 1e-3, solver=solver, **kw)
    assert fused_backend == []
