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
    "run_norm_kernel": "const T*, const double*, int, int, int, int, int, int, int, T, T, double*",
    "run_step_kernel": "const T*, const double*, int, const double*, int, int, int, int, int, int, int, T, T, "
                       "unsigned int, unsigned int, unsigned long long, unsigned int, unsigned int, int, "
                       "const double*, double*, int, double, T*, int*",
}


def _source():
    """The CUDA source (spdekit.backends.cuda_kernels: pure text, importable without cupy, not installed in CI)."""
    from spdekit.backends.cuda_kernels import SOURCE

    return SOURCE


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
    arguments are counted from the source: ``*dims`` and ``*self._dims`` stand for C, H, W, ``*self._key``
    for the two key words). Launches go through ``_kernel(name, dtype)(grid, block, args)`` or through an
    attribute bound to ``_kernel(name, ...)`` (EMRun)."""
    path = pathlib.Path(spdekit.backends.__file__).with_name("cupy_backend.py")
    tree = ast.parse(path.read_text())
    bound = {}  # "self._norm" -> kernel name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", "") == "_kernel"):
            bound[ast.unparse(node.targets[0])] = ast.literal_eval(node.value.args[0])
    starred = {"dims": 3, "self._dims": 3, "self._key": 2}
    counts = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) != 3 or not isinstance(node.args[2], ast.Tuple):
            continue
        if isinstance(node.func, ast.Call) and getattr(node.func.func, "id", "") == "_kernel":
            name = ast.literal_eval(node.func.args[0])
        elif ast.unparse(node.func) in bound:
            name = bound[ast.unparse(node.func)]
        else:
            continue
        n = sum(starred[ast.unparse(a.value)] if isinstance(a, ast.Starred) else 1 for a in node.args[2].elts)
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


def _host_run_source():
    """gfun, the stencils, Philox and the fused run's per-block step (the BEGIN run section) as
    __host__ __device__ functions: a whole EMRun executed on the CPU, one (sample, block) at a time."""
    src = _source()
    g = src[: src.index("// dg/ds of gfun")]
    p = src[src.index("// BEGIN philox"): src.index("// END philox")]
    r = src[src.index("// BEGIN run"): src.index("// END run")]
    return (g + p + r).replace("__device__", "__host__ __device__")


RUN_HARNESS = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
template <typename T> std::vector<T> load(const char* path, size_t n) {
    std::vector<T> v(n);
    FILE* f = std::fopen(path, "rb");
    if (!f || std::fread(v.data(), sizeof(T), n, f) != n) std::exit(2);
    std::fclose(f);
    return v;
}
// argv: bytes B C H W nb kind1 kind2 cons tamed rms gamma n key0 key1 first draw0 stream h dir
template <typename T> int run(char** a) {
    const int B = std::atoi(a[2]), C = std::atoi(a[3]), H = std::atoi(a[4]), W = std::atoi(a[5]), nb = std::atoi(a[6]);
    const int kind1 = std::atoi(a[7]), kind2 = std::atoi(a[8]), cons = std::atoi(a[9]), tamed = std::atoi(a[10]);
    const int rms = std::atoi(a[11]), n = std::atoi(a[13]);
    const double gamma = std::atof(a[12]), h = std::atof(a[19]);
    const unsigned int key0 = std::strtoul(a[14], 0, 10), key1 = std::strtoul(a[15], 0, 10);
    const unsigned long long first = std::strtoull(a[16], 0, 10);
    const unsigned int draw0 = std::strtoul(a[17], 0, 10), stream = std::strtoul(a[18], 0, 10);
    const std::string dir = a[20];
    const long long N = (long long)C * H * W;
    std::vector<T> u = load<T>((dir + "/u.bin").c_str(), B * N), v(B * N);
    std::vector<double> coef = load<double>((dir + "/coef.bin").c_str(), (size_t)n * 4 * nb);
    std::vector<double> dts = load<double>((dir + "/dts.bin").c_str(), (size_t)2 * n);
    const T inv_h = T(1.0 / h), inv_h2 = T(1.0 / (h * h));
    const int per = sizeof(T) == 4 ? 4 : 2;
    int first_bad = -1;
    for (int k = 0; k < n; ++k) {
        for (int s = 0; s < B; ++s) {
            double ssq = 0.0;
            if (tamed)
                for (long long i = 0; i < N; ++i) {
                    const T b = run_drift_at(u.data(), coef.data(), nb, k, s, i, kind1, C, H, W, cons, inv_h, inv_h2);
                    ssq += (double)b * (double)b;
                }
            for (long long j = 0; j < (N + per - 1) / per; ++j)
                if (run_step_block(u.data(), v.data(), coef.data(), nb, dts.data(), k, s, j, kind1, kind2, C, H, W,
                                   cons, inv_h, inv_h2, key0, key1, first, draw0 + k, stream, tamed, ssq, rms, gamma)
                    && first_bad < 0)
                    first_bad = k;
        }
        u.swap(v);
    }
    FILE* f = std::fopen((dir + "/out.bin").c_str(), "wb");
    std::fwrite(u.data(), sizeof(T), u.size(), f);
    std::fclose(f);
    std::printf("%d\n", first_bad);
    return 0;
}
int main(int argc, char** argv) { return std::atoi(argv[1]) == 4 ? run<float>(argv) : run<double>(argv); }
"""


@pytest.fixture(scope="module")
def run_host_binary(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc is not installed")
    d = tmp_path_factory.mktemp("run")
    cu = d / "run_host.cu"
    cu.write_text("#include <algorithm>\n#include <cmath>\n#include <string>\nusing std::min; using std::max;\n"
                  + _host_run_source() + RUN_HARNESS)
    res = subprocess.run([NVCC, "-std=c++14", "-O2", str(cu), "-o", str(d / "run_host")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return d / "run_host"


def _host_run(binary, tmp_path, spde, u0, dt, n, solver, seed):
    """The fused run's arithmetic on the CPU: the coefficient rows of EMRun (run_table) for the steps of
    simulate(spde, u0, 0, n dt, dt, solver, seed=seed), the streams simulate would draw from."""
    from spdekit import operators
    from spdekit.backends.base import run_table
    from spdekit.random import SampleStreams

    grid = dt * np.arange(n + 1)
    table, steps = run_table(spde._columns(grid[:-1]), np.diff(grid), u0.shape[0], u0.dtype, spde.stencil,
                             spde.spacing)
    u0.tofile(tmp_path / "u.bin")
    table.tofile(tmp_path / "coef.bin")
    steps.tofile(tmp_path / "dts.bin")
    streams = SampleStreams(seed, u0.shape[0])
    taming = solver.taming
    B, C, H, W = u0.shape
    args = [np.dtype(u0.dtype).itemsize, B, C, H, W, table.shape[2],
            operators.diffusivity_code(spde.diffusivity1), operators.diffusivity_code(spde.diffusivity2),
            int(spde.stencil == "conservative"), int(taming is not None),
            int(taming is not None and taming[1] == "rms"), repr(float(taming[0]) if taming else 1.0), n,
            streams.key[0], streams.key[1], streams.first, streams.draw, streams.stream, repr(float(spde.spacing)),
            tmp_path]
    res = subprocess.run([str(binary)] + [str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return np.fromfile(tmp_path / "out.bin", dtype=u0.dtype).reshape(u0.shape), int(res.stdout)


@pytest.mark.parametrize("family", ["charbonnier", "weickert"])
@pytest.mark.parametrize("stencil", ["paper", "conservative"])
@pytest.mark.parametrize("solver", ["em", "tamed-l2", "tamed-rms"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_cuda_fused_run_arithmetic_equals_numpy_run(run_host_binary, tmp_path, family, stencil, solver, dtype, tol):
    """A whole fused GPU run (EMRun: in-kernel Philox increments, device taming factor, coefficient rows)
    executed on the host equals spdekit.simulate on the numpy backend with the same seed: multiplicative
    noise, time-dependent schedules, odd sizes (Philox blocks straddle rows and channels)."""
    import spdekit as sk

    spde = sk.AnisotropicSPDE(alpha1=sk.schedules.Geometric(0.5, 4.0, 1.0),
                              lambda1=sk.schedules.AnisotropyRamp(0.05, 0.5, 1.0),
                              alpha2=sk.schedules.Geometric(0.05, 0.5, 1.0), lambda2=0.3, stencil=stencil,
                              spacing=0.9, diffusivity=family)
    solvers = {"em": sk.EulerMaruyama(), "tamed-l2": sk.TamedEulerMaruyama(),
               "tamed-rms": sk.TamedEulerMaruyama(gamma=1.5, norm="rms")}
    u0 = np.random.default_rng(2).uniform(-1, 1, (3, 2, 7, 9)).astype(dtype)
    n, dt = 25, 0.02
    ref = sk.simulate(spde, u0, 0.0, n * dt, dt, solver=solvers[solver], seed=8, backend="numpy").final
    got, bad = _host_run(run_host_binary, tmp_path, spde, u0, dt, n, solvers[solver], 8)
    assert bad == -1
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()
    assert np.abs(ref - u0).max() > 0.05  # the run moved the state


def test_cuda_fused_run_reports_the_first_bad_step(run_host_binary, tmp_path):
    """The step kernels record the first step whose result is not finite (the numpy loop's step)."""
    import spdekit as sk

    spde = sk.AnisotropicSPDE(alpha1=100.0, lambda1=float("inf"), alpha2=0.01, lambda2=float("inf"))
    u0 = np.random.default_rng(0).uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
    with pytest.warns(sk.StabilityWarning), pytest.raises(sk.SimulationDiverged) as exc:
        sk.simulate(spde, u0, 0.0, 5.0, 0.125, solver=sk.EulerMaruyama(), seed=1, backend="numpy")
    _, bad = _host_run(run_host_binary, tmp_path, spde, u0, 0.125, 40, sk.EulerMaruyama(), 1)
    assert bad + 1 == exc.value.step
