"""The GPU kernels' CUDA source compiles (float and double instantiations), checked with nvcc
when it is installed, so CUDA errors surface in CI even though CI has no GPU."""

import ast
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import spdekit.backends

NVCC = shutil.which("nvcc")

SIGNATURES = {  # the int after the coefficient arrays: the diffusivity family (kind1, kind2 for the step)
    "drift_kernel": "const T*, const T*, const T*, int, int, int, int, int, T, T, T*",
    "drift_vjp_kernel": "const T*, const T*, const T*, const T*, int, int, int, int, int, T, T*",
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


def _host_vjp_source():
    """gfun, dgfun and the drift_vjp section of the CUDA source as __host__ __device__ functions, so
    the GPU kernel's arithmetic runs on the CPU (no GPU is needed to check its numerics)."""
    src = _source()
    g = src[: src.index("template <typename T>\nstruct Plane")]
    v = src[src.index("// dg/ds of gfun"): src.index("// END drift_vjp")]
    return (g + v).replace("__device__", "__host__ __device__")


HARNESS = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
// argv: dtype-bytes P H W kind conservative in.bin out.bin ; in.bin: u (P*H*W), w (P*H*W), a (P), il (P)
template <typename T> int run(int P, int H, int W, int kind, int cons, const char* fin, const char* fout) {
    const long long D = (long long)H * W;
    std::vector<T> buf(2 * P * D + 2 * P), out(P * D);
    FILE* f = std::fopen(fin, "rb");
    if (!f || std::fread(buf.data(), sizeof(T), buf.size(), f) != buf.size()) return 2;
    std::fclose(f);
    const T *u = buf.data(), *w = u + P * D, *a = w + P * D, *il = a + P;
    for (int p = 0; p < P; ++p)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x)
                out[p * D + y * W + x] = drift_vjp_at(u + p * D, w + p * D, a[p], il[p], kind, H, W, cons, y, x);
    f = std::fopen(fout, "wb");
    std::fwrite(out.data(), sizeof(T), out.size(), f);
    std::fclose(f);
    return 0;
}
int main(int argc, char** argv) {
    const int P = std::atoi(argv[2]), H = std::atoi(argv[3]), W = std::atoi(argv[4]);
    const int kind = std::atoi(argv[5]), cons = std::atoi(argv[6]);
    return std::atoi(argv[1]) == 4 ? run<float>(P, H, W, kind, cons, argv[7], argv[8])
                                   : run<double>(P, H, W, kind, cons, argv[7], argv[8]);
}
"""


@pytest.fixture(scope="module")
def vjp_host_binary(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc is not installed")
    d = tmp_path_factory.mktemp("vjp")
    cu = d / "vjp_host.cu"
    cu.write_text("#include <algorithm>\nusing std::min; using std::max;\n" + _host_vjp_source() + HARNESS)
    res = subprocess.run([NVCC, "-std=c++14", "-O2", str(cu), "-o", str(d / "vjp_host")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return d / "vjp_host"


@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("family", ["charbonnier", "perona-malik", "exponential", "weickert"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_cuda_drift_vjp_arithmetic_equals_numpy_reference(vjp_host_binary, tmp_path, stencil, family, dtype, tol):
    """The CUDA drift_vjp (drift_vjp_at, the per-node gather) run on the host equals the numpy
    reference's scatter, per-sample coefficients, on a grid with every border case (5 x 7)."""
    from spdekit import operators
    from spdekit.backends import numpy_backend

    rng = np.random.default_rng(3)
    B, C, H, W, h = 3, 2, 5, 7, 0.8
    u = rng.standard_normal((B, C, H, W)).astype(dtype)
    w = rng.standard_normal((B, C, H, W)).astype(dtype)
    alpha = np.array([1.0, 2.5, 0.3])
    inv_lam2 = np.array([4.0, 0.5, 1.7])
    ref = numpy_backend.drift_vjp(u, w, alpha, inv_lam2, stencil, h, family)
    a = np.repeat(alpha, C).astype(dtype)
    il = np.repeat(inv_lam2 / h**2, C).astype(dtype)
    fin, fout = tmp_path / "in.bin", tmp_path / "out.bin"
    np.concatenate([u.ravel(), w.ravel(), a, il]).astype(dtype).tofile(fin)
    res = subprocess.run([str(vjp_host_binary), str(np.dtype(dtype).itemsize), str(B * C), str(H), str(W),
                          str(operators.diffusivity_code(family)), str(int(stencil == "conservative")),
                          str(fin), str(fout)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = np.fromfile(fout, dtype=dtype).reshape(u.shape) / dtype(h * h)
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()
    assert np.abs(ref).max() > 0.1
