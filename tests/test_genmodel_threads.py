"""Thread counts: genmodel's ``threads`` setting must hold for torch after numba's pool has started.

With numba's OpenMP threading layer, starting numba's pool resets the OpenMP thread count that torch
shares with it to numba's default (every core). The Table 1 runs of "one thread each" ran torch on
every core that way (16 threads per process on a 16-core machine). A fresh process is needed: the pool
starts once per process."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

PROBE = """
import numpy as np, torch
from genmodel.train import _set_threads
from spdekit.backends import numba_backend
torch.set_num_threads(1)
x = torch.randn(8, 4, 64, 64)
torch.nn.functional.conv2d(x, torch.randn(4, 4, 3, 3)).sum()  # torch's OpenMP in use first, as in a run
_set_threads(1)
u = np.random.default_rng(0).random((4, 1, 16, 16))
numba_backend.drift(u, np.ones(4), np.ones(4))  # a parallel numba kernel
print(torch.get_num_threads())
"""


def test_torch_keeps_its_thread_count_after_numba_starts():
    env = dict(os.environ, NUMBA_NUM_THREADS="2")  # numba's default above 1 even on a 1-core machine
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"
