"""The DCT-mode transforms keep the caller's array type (issue 25 item 2): torch CPU tensors in,
tensors out, equal to the numpy result; the DCT-I by FFT that the GPU path uses equals scipy's.
The cupy / CUDA-tensor versions: tests/test_gpu.py."""

import numpy as np
import pytest
import scipy.fft as sfft

from spdekit import spectral

FUNCS = (spectral.to_modes, spectral.from_modes, spectral.adjoint_modes)


@pytest.mark.parametrize("shape", [(2, 5, 7), (3, 1, 6, 4)])
def test_dct1_by_fft_equals_scipy(shape):
    a = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_allclose(spectral._dct1_by_fft(a, np), sfft.dctn(a, type=1, axes=(-2, -1)),
                               rtol=1e-12, atol=1e-12 * np.abs(a).sum())


@pytest.mark.parametrize("stencil", spectral.STENCILS)
def test_numpy_in_numpy_out_and_round_trip(stencil):
    u = np.random.default_rng(1).standard_normal((2, 3, 6, 9))
    z = spectral.to_modes(u, stencil)
    assert isinstance(z, np.ndarray)
    np.testing.assert_allclose(spectral.from_modes(z, stencil), u, rtol=1e-12, atol=1e-12)
    assert isinstance(spectral.to_modes(u.tolist(), stencil), np.ndarray)  # lists still work


@pytest.mark.parametrize("stencil", spectral.STENCILS)
@pytest.mark.parametrize("func", FUNCS, ids=lambda f: f.__name__)
def test_torch_cpu_tensors_round_trip(stencil, func):
    torch = pytest.importorskip("torch")
    u = np.random.default_rng(2).standard_normal((2, 1, 8, 5))
    t = torch.from_numpy(u.copy())
    out = func(t, stencil)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.device.type == "cpu"
    np.testing.assert_array_equal(out.numpy(), func(u, stencil))
    back = spectral.from_modes(spectral.to_modes(t, stencil), stencil)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), u, rtol=1e-12, atol=1e-12)
