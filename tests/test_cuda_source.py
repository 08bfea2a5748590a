"""The GPU kernels' CUDA source compiles (float and double instantiations), checked with nvcc
when it is installed, so CUDA errors surface in CI even though CI has no GPU."""

import ast
import pathlib
import re
import shutil
import subprocess

import pytest

import spdekit.backends

NVCC = shutil.which("nvcc")

SIGNATURES = {  # the int after the coefficient arrays: the diffusivity family (kind1, kind2 for the step)
    "drift_kernel": "const T*, const T*, const T*, int, int, int, int, int, T, T, T*",
    "norm_kernel": "const T*, const T*, const T*, int, int, int, int, int, T, T, double*",
    "g2_kernel": "const T*, const T*, const T*, int, int, int, int, T*",
    "step_kernel": "const T*, const T*, const T*, const T*, const T*, const T*, const T*, "
                   "int, int, int, int, int, int, T, T, T*, int*",
}


def _source():
    """The CUDA source, read without importing cupy (not installed in CI)."""
    path = pathlib.Path(spdekit.backends.__file__).with_name("cupy_backend.py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_SOURCE":
            return ast.literal_eval(node.value)
    raise AssertionError("_SOURCE not found in cupy_backend.py")


PLAIN = {
    "normal_f32": "float*, int, long long, unsigned int, unsigned int, unsigned long long, unsigned int, unsigned int",
    "normal_f64": "double*, int, long long, unsigned int, unsigned int, unsigned long long, unsigned int, unsigned int",
}


def test_every_kernel_is_listed():
    src = _source()
    assert set(re.findall(r"__global__ void (\w+)\(", src)) == set(SIGNATURES) | set(PLAIN)


def test_every_diffusivity_family_has_a_case_in_gfun():
    """gfun's switch has a case per family of spdekit.operators, in the order of their codes, and
    Weickert's constant is the one the host backends use."""
    from spdekit import operators

    body = _source().split("gfun(int kind", 1)[1].split("\n}\n", 1)[0]
    labels = re.findall(r"case (\d+): .*// ([\w-]+)", body)
    assert [(int(k), name) for k, name in labels] == list(enumerate(operators.DIFFUSIVITIES))[:3]
    assert "default" in body and "// weickert" in body and len(operators.DIFFUSIVITIES) == 4
    assert float(re.search(r"T\(([\d.]+)\) / \(z \* z \* z \* z\)", body).group(1)) == operators.WEICKERT_C4


def test_kernel_launches_match_the_signatures():
    """Each launch in cupy_backend.py passes as many arguments as its kernel takes (the launch
    arguments are counted from the source: ``*dims`` stands for C, H, W)."""
    path = pathlib.Path(spdekit.backends.__file__).with_name("cupy_backend.py")
    tree = ast.parse(path.read_text())
    counts = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Call)
                and getattr(node.func.func, "id", "") == "_kernel" and len(node.args) == 3):
            name = ast.literal_eval(node.func.args[0])
            args = node.args[2].elts
            n = sum(3 if isinstance(a, ast.Starred) else 1 for a in args)
            counts.setdefault(name, set()).add(n)
    assert set(counts) == set(SIGNATURES)
    for name, sig in SIGNATURES.items():
        assert counts[name] == {len(sig.split(","))}, (name, counts[name])


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_cuda_source_compiles(tmp_path):
    src = _source()
    inst = []
    for name, sig in SIGNATURES.items():
        for t in ("float", "double"):
            inst.append(f"template __global__ void {name}<{t}>({sig.replace('T', t)});")
    cu = tmp_path / "kernels.cu"
    cu.write_text(src + "\n" + "\n".join(inst) + "\n")
    res = subprocess.run([NVCC, "-std=c++14", "-arch=sm_80", "-c", str(cu), "-o", str(tmp_path / "k.o")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
