"""Run every benchmark, write docs/perf/*.json and regenerate docs/performance.md.

    pip install -e ".[bench]"          # py-pde, gstools, torchsde (the contenders)
    python benchmarks/run_all.py       # about 8-10 minutes on 2 idle cores

Run it on an otherwise idle machine: the benchmarks alternate their contenders to share noise,
but a loaded machine inflates everything (and parallel numba regions suffer most when another
process holds a core). The JSON files record the load average at the start of each benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PERF = os.path.join(HERE, "..", "docs", "perf")

JOBS = [
    ("spde_step", ["spde_step.py", "--repeats", "7"]),
    ("noise", ["noise.py"]),
    ("sde_ensemble", ["sde_ensemble.py", "--repeats", "2"]),
    ("scaling", ["scaling.py"]),
    ("threads", ["threads.py"]),
    ("generative", ["generative.py"]),
    ("adjoint", ["adjoint.py"]),
    ("stiff_step", ["stiff_step.py"]),
]


def main():
    os.makedirs(PERF, exist_ok=True)
    total = time.perf_counter()
    for name, cmd in JOBS:
        if not os.path.exists(os.path.join(HERE, cmd[0])):
            print(f"skip {name}: {cmd[0]} not present")
            continue
        t = time.perf_counter()
        res = subprocess.run([sys.executable, *cmd, "--json", os.path.join(PERF, f"{name}.json")], cwd=HERE)
        print(f"{name}: exit {res.returncode}, {time.perf_counter() - t:.0f} s", flush=True)
    subprocess.run([sys.executable, "report.py"], cwd=HERE, check=True)
    print(f"all benchmarks: {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
