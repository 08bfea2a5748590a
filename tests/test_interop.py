"""Array-type in = array-type out: numpy, and torch tensors through DLPack without copies (CPU).
The same code path serves cupy and CUDA tensors (tests/test_gpu.py, run when a GPU is present)."""

import numpy as np
import pytest

import spdekit as sk
from spdekit._arrays import as_native

torch = pytest.importorskip("torch")


def _shares_memory(t, a):
    return t.data_ptr() == a.__array_interface__["data"][0]


def test_as_native_is_zero_copy_and_writes_are_shared():
    t = torch.arange(12.0, dtype=torch.float64).reshape(3, 4)
    a, back = as_native(t)
    assert isinstance(a, np.ndarray) and _shares_memory(t, a)
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    t[1, 1] = -1.0
    assert a[1, 1] == -1.0
    r = back(a * 2)
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_operators_accept_and_return_torch_tensors(dtype):
    spde = sk.AnisotropicSPDE.paper_anisotropic(16, correlation_length=1.5)
    u_np = np.random.default_rng(0).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32 if dtype == torch.float32
                                                                           else np.float64)
    u_t = torch.from_numpy(u_np.copy())
    for fn in (spde.drift, spde.diffusion_amplitude):
        out = fn(0.5, u_t)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == u_t.shape
        np.testing.assert_array_equal(out.numpy(), fn(0.5, u_np))
    q = spde.noise.apply_Q(u_t)
    assert isinstance(q, torch.Tensor)
    np.testing.assert_allclose(q.numpy(), spde.noise.apply_Q(u_np), rtol=1e-6)
    out2d = spde.drift(0.5, u_t[0, 0])
    assert isinstance(out2d, torch.Tensor) and out2d.shape == (16, 16)


def test_simulate_accepts_a_torch_tensor():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u0 = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    tr = sk.simulate(spde, u0, 0.0, 0.01, 1e-3, seed=0)
    ref = sk.simulate(spde, u0.numpy(), 0.0, 0.01, 1e-3, seed=0)
    np.testing.assert_array_equal(tr.final, ref.final)


def test_tensor_requiring_grad_gives_a_clear_error():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u = torch.rand(16, 16, requires_grad=True)
    with pytest.raises(TypeError, match="cannot share the memory of this torch array through DLPack"):
        spde.drift(0.1, u)


def test_unknown_array_type():
    with pytest.raises(TypeError, match="expected a numpy, cupy or DLPack-capable array, got builtins.list"):
        sk.AnisotropicSPDE.paper_anisotropic(16).drift(0.1, [[0.0] * 16] * 16)


def test_reverse_sde_steps_take_and_give_torch_tensors():
    """spdekit.ReverseSDE on torch states: the score is called with tensors (t as float64), every step
    returns tensors, equal to the same steps on numpy states with a numpy score."""
    from spdekit.reference import GaussianReference

    spde = sk.AnisotropicSPDE.paper_isotropic(6, 1.0, stencil="conservative", correlation_length=1.0)
    ref = GaussianReference(spde, (1, 6, 6), 0.01, 100, 0.1, 0.5)
    seen = []

    def score(t, u):
        seen.append((type(t), type(u)))
        return -u * (1.0 + t[:, None, None, None])

    u_np = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    xi = np.random.default_rng(1).standard_normal(u_np.shape)
    u_t, xi_t = torch.from_numpy(u_np.copy()), torch.from_numpy(xi.copy())
    rs = spde.reverse(score, ref)
    pairs = [(rs.em_step(0.5, u_t, 0.01, xi_t), rs.em_step(0.5, u_np, 0.01, xi)),
             (rs.exponential_step(50, 40, u_t, xi_t), rs.exponential_step(50, 40, u_np, xi)),
             (rs.exponential_flow_step(50, 40, u_t), rs.exponential_flow_step(50, 40, u_np)),
             ((rs.probability_flow(0.5, u_t), True), (rs.probability_flow(0.5, u_np), True)),
             ((rs.drift(0.5, u_t), True), (rs.drift(0.5, u_np), True))]
    for (got, ok_t), (want, ok_n) in pairs:
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and ok_t == ok_n
        np.testing.assert_array_equal(got.numpy(), want)
    assert (torch.Tensor, torch.Tensor) in seen and (np.ndarray, np.ndarray) in seen
    assert all(a is b for a, b in seen)
