"""genmodel.bridge: zero-copy DLPack exchange; spdekit kernels write into torch memory."""

import numpy as np
import pytest
import torch

import spdekit
from genmodel import SPDEProcess
from genmodel.bridge import from_torch, shares_memory, to_torch


def test_torch_to_numpy_shares_memory_both_ways():
    t = torch.zeros(3, 4)
    a = from_torch(t)
    assert shares_memory(t, a)
    a[1, 2] = 5.0  # write through numpy, read through torch
    assert t[1, 2] == 5.0
    t[0, 0] = -1.0  # write through torch, read through numpy
    assert a[0, 0] == -1.0


def test_numpy_to_torch_shares_memory_both_ways():
    x = np.zeros((2, 1, 5, 5), dtype=np.float32)
    t = to_torch(x)
    assert shares_memory(t, x) and t.dtype == torch.float32
    t[1, 0, 2, 3] = 7.0
    assert x[1, 0, 2, 3] == 7.0
    x[0, 0, 0, 0] = 2.0
    assert t[0, 0, 0, 0] == 2.0


def test_strided_views_and_refusals():
    t = torch.arange(16.0).reshape(4, 4)
    col = from_torch(t[:, 1])
    assert col.strides == (16,) and np.array_equal(col, [1, 5, 9, 13])
    with pytest.raises(ValueError, match="requires grad"):
        from_torch(torch.zeros(2, requires_grad=True))
    with pytest.raises(ValueError, match="negative strides"):
        to_torch(np.arange(5.0)[::-1])
    np.testing.assert_array_equal(to_torch(np.arange(5.0)[::-1], allow_copy=True).numpy(), [4, 3, 2, 1, 0])
    ro = np.zeros(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        to_torch(ro)
    with pytest.raises(TypeError):
        to_torch([1, 2])


def test_spdekit_kernel_writes_into_the_tensor():
    """SPDEProcess.step hands its tensors to spdekit as they are and gets a tensor back, equal to
    spdekit's own step on a numpy copy; spdekit's fused kernel writes into a tensor's memory handed
    over by DLPack as out= (no copy back)."""
    spde = spdekit.AnisotropicSPDE.paper_anisotropic(8, 1.0)
    p = SPDEProcess(spde, 1.0, 1e-3)
    u = torch.randn(3, 1, 8, 8)
    out = p.step(0, u, np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.dtype == u.dtype
    dW = p.wiener_increment(u, np.random.default_rng(0)).numpy()
    ref, _ = spdekit.EulerMaruyama().step(spde, np.zeros(3), u.numpy().copy(), 1e-3, dW, backend="numpy")
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)
    # the fused numba kernel returned a view of the tensor we handed it (no copy back)
    buf = torch.empty_like(u)
    res, _ = spdekit.EulerMaruyama().step(spde, np.zeros(3), from_torch(u), 1e-3, dW, out=from_torch(buf))
    assert shares_memory(buf, res)
