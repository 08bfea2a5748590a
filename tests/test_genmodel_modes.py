"""genmodel.modes: the DCT-II coordinates of tensors, as spdekit.spectral computes them."""

import numpy as np
import torch

from genmodel import modes
from spdekit.spectral import from_modes, to_modes


def test_tensor_modes_are_spdekits_dct_ii():
    u = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    z = modes.to_modes(torch.from_numpy(u.copy()))
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float64
    np.testing.assert_allclose(z.numpy(), to_modes(u, "conservative"), atol=1e-13)
    np.testing.assert_allclose(modes.from_modes(z).numpy(), u, atol=1e-13)
    np.testing.assert_allclose(modes.from_modes(torch.from_numpy(u.copy())).numpy(), from_modes(u, "conservative"),
                               atol=1e-13)
    z32 = modes.to_modes(torch.from_numpy(u.astype(np.float32)))
    assert z32.dtype == torch.float32
    np.testing.assert_allclose(z32.numpy(), to_modes(u, "conservative"), atol=1e-5)
