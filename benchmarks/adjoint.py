"""Time of the drift's adjoint J^T w (genmodel's "path" loss): numpy reference vs numba kernel.

    python benchmarks/adjoint.py [--batch 2048 1 32 32] [--dtype float64] [--repeats 7] [--json out.json]

The path loss moves its pool of forward chains (2048 digits, 32x32 at Table 1's 32 px) one chain step
per training step, and each chain step needs one adjoint product of the paper stencil's drift
(:func:`spdekit.backends.numba_backend.drift_vjp`). Contenders, in one process, alternating
repetitions: the numpy reference (``np.add.at`` scatters over the stencil tables), the numba kernel,
and, for scale, one numba drift evaluation of the same state. The numpy reference runs on the first
``--ref-batch`` planes only (it is slow) and its time is scaled to the full batch (it is linear in the
number of planes); the row says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

import numpy as np
from _harness import alternate, machine, write_json

from spdekit.backends import numba_backend, numpy_backend


def run(batch=(2048, 1, 32, 32), dtype="float64", repeats=7, ref_batch=64, stencil="paper"):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    B = batch[0]
    u = rng.uniform(-1, 1, batch).astype(dtype)
    w = rng.standard_normal(batch).astype(dtype)
    alpha = rng.uniform(0.5, 2.0, B)
    inv_lam2 = 1.0 / rng.uniform(0.02, 0.1, B) ** 2
    rb = min(ref_batch, B)
    fns = {
        "numpy reference": lambda: numpy_backend.drift_vjp(u[:rb], w[:rb], alpha[:rb], inv_lam2[:rb], stencil),
        "numba": lambda: numba_backend.drift_vjp(u, w, alpha, inv_lam2, stencil),
        "numba drift (for scale)": lambda: numba_backend.drift(u, alpha, inv_lam2, stencil),
    }
    ref = fns["numpy reference"]()
    err = float(np.abs(fns["numba"]()[:rb] - ref).max() / np.abs(ref).max())
    t = alternate(fns, repeats)
    ms = {k: 1e3 * v["median"] for k, v in t.items()}
    ms["numpy reference"] *= B / rb
    return {"batch": list(batch), "dtype": str(dtype), "stencil": stencil, "repeats": repeats, "ref_batch": rb,
            "ms": ms, "max_rel_diff": err, "numba_threads": numba_backend.threads()}


def print_table(res):
    print(f"drift adjoint J^T w, batch {'x'.join(map(str, res['batch']))} {res['dtype']}, stencil {res['stencil']}, "
          f"numba threads {res['numba_threads']}, median of {res['repeats']} alternating repeats")
    print(f"numba vs numpy max relative difference: {res['max_rel_diff']:.1e}")
    ms = res["ms"]
    for k, v in ms.items():
        note = f" (timed on {res['ref_batch']} planes, scaled)" if k == "numpy reference" else ""
        print(f"  {k:26s} {v:10.2f} ms   {v / ms['numba']:6.2f}x numba's time{note}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs=4, default=[2048, 1, 32, 32])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--stencil", default="paper", choices=["paper", "conservative"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--ref-batch", type=int, default=64)
    p.add_argument("--json")
    a = p.parse_args()
    res = run(tuple(a.batch), a.dtype, a.repeats, a.ref_batch, a.stencil)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_table(res)
    print(buf.getvalue(), end="")
    write_json(a.json, {"benchmark": "adjoint", "machine": machine(), "table": buf.getvalue(), **res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
